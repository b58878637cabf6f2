//! Wire formats of the headers the XDP parser reads, with every multi-byte field kept in network
//! byte order as a byte array (so the structs have alignment 1 and no padding, and can sit at
//! any offset in a frame).

use bytemuck::{Pod, Zeroable};

/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86DD;
/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// EtherType of an 802.1Q VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// EtherType of an 802.1ad (QinQ service) VLAN tag.
pub const ETH_P_8021AD: u16 = 0x88A8;

/// IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of IPv4-in-IP encapsulation.
pub const IPPROTO_IPIP: u8 = 4;
/// IP protocol number of IPv6 encapsulation.
pub const IPPROTO_IPV6: u8 = 41;
/// IP protocol number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
/// IP protocol number of VRRP (RFC 3768 §5.1.1.3, RFC 5798 §5.1.1.4).
pub const IPPROTO_VRRP: u8 = 112;
/// IP protocol number of the IP Authentication Header (RFC 2402): keepalived's `auth_type AH`
/// adverts are IPv4 packets of this protocol with the VRRP message after the AH header.
pub const IPPROTO_AH: u8 = 51;
/// IPv6 extension header: hop-by-hop options.
pub const IPV6_EXT_HOPOPTS: u8 = 0;
/// IPv6 extension header: routing.
pub const IPV6_EXT_ROUTING: u8 = 43;
/// IPv6 extension header: fragment.
pub const IPV6_EXT_FRAGMENT: u8 = 44;
/// IPv6 extension header: authentication header (length in 4-octet units, RFC 4302).
pub const IPV6_EXT_AH: u8 = IPPROTO_AH;
/// IPv6 extension header: destination options.
pub const IPV6_EXT_DSTOPTS: u8 = 60;

/// How many VLAN tags the parser follows (QinQ).
pub const MAX_VLAN_TAGS: usize = 2;
/// How many IPv6 extension headers the parser follows before giving up.
pub const MAX_IPV6_EXT_HDRS: usize = 4;

/// Ethernet II header (14 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct EthHdr {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// EtherType, network byte order.
    pub ether_type: [u8; 2],
}

impl EthHdr {
    /// EtherType in host order.
    #[inline(always)]
    pub fn ether_type(&self) -> u16 {
        u16::from_be_bytes(self.ether_type)
    }
}

/// The 4 bytes that follow an 802.1Q/802.1ad TPID.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct VlanHdr {
    /// PCP, DEI and VLAN id, network byte order.
    pub tci: [u8; 2],
    /// EtherType of what follows, network byte order.
    pub ether_type: [u8; 2],
}

impl VlanHdr {
    /// Encapsulated EtherType in host order.
    #[inline(always)]
    pub fn ether_type(&self) -> u16 {
        u16::from_be_bytes(self.ether_type)
    }
}

/// IPv4 header without options (20 bytes, RFC 791 §3.1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Ipv4Hdr {
    /// Version (high nibble) and IHL in 32-bit words (low nibble).
    pub version_ihl: u8,
    /// DSCP and ECN.
    pub tos: u8,
    /// Total length, network byte order.
    pub tot_len: [u8; 2],
    /// Identification, network byte order.
    pub id: [u8; 2],
    /// Flags (3 bits) and fragment offset (13 bits), network byte order.
    pub frag_off: [u8; 2],
    /// Time to live.
    pub ttl: u8,
    /// Protocol of the payload.
    pub protocol: u8,
    /// Header checksum, network byte order.
    pub check: [u8; 2],
    /// Source address, network byte order.
    pub src: [u8; 4],
    /// Destination address, network byte order.
    pub dst: [u8; 4],
}

impl Ipv4Hdr {
    /// Header length in bytes (IHL × 4).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        ((self.version_ihl & 0x0f) as usize) * 4
    }
    /// IP version nibble.
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.version_ihl >> 4
    }
    /// Total length in host order.
    #[inline(always)]
    pub fn total_len(&self) -> usize {
        u16::from_be_bytes(self.tot_len) as usize
    }
    /// Fragment offset in 8-byte units; non-zero for every fragment but the first.
    #[inline(always)]
    pub fn fragment_offset(&self) -> u16 {
        u16::from_be_bytes(self.frag_off) & 0x1fff
    }
    /// "More fragments" flag.
    #[inline(always)]
    pub fn more_fragments(&self) -> bool {
        self.frag_off[0] & 0x20 != 0
    }
}

/// IPv6 fixed header (40 bytes, RFC 8200 §3).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Ipv6Hdr {
    /// Version (4 bits), traffic class (8 bits) and flow label (20 bits), network byte order.
    pub vtc_flow: [u8; 4],
    /// Payload length, network byte order.
    pub payload_len: [u8; 2],
    /// Next header.
    pub next_hdr: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
}

impl Ipv6Hdr {
    /// IP version nibble.
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.vtc_flow[0] >> 4
    }
    /// Payload length in host order.
    #[inline(always)]
    pub fn payload_len(&self) -> usize {
        u16::from_be_bytes(self.payload_len) as usize
    }
}

/// The first two bytes shared by every IPv6 extension header (RFC 8200 §4).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Ipv6ExtHdr {
    /// Next header.
    pub next_hdr: u8,
    /// Length in 8-octet units not counting the first 8 (4-octet units minus 2 for AH).
    pub hdr_len: u8,
}

/// IPv6 fragment header (8 bytes, RFC 8200 §4.5).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Ipv6FragHdr {
    /// Next header.
    pub next_hdr: u8,
    /// Reserved.
    pub reserved: u8,
    /// Fragment offset (13 bits), reserved (2 bits) and M flag, network byte order.
    pub frag_off: [u8; 2],
    /// Identification, network byte order.
    pub id: [u8; 4],
}

impl Ipv6FragHdr {
    /// Fragment offset in 8-byte units; non-zero for every fragment but the first.
    #[inline(always)]
    pub fn fragment_offset(&self) -> u16 {
        u16::from_be_bytes(self.frag_off) >> 3
    }
}

/// TCP header without options (20 bytes, RFC 9293 §3.1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct TcpHdr {
    /// Source port, network byte order.
    pub src_port: [u8; 2],
    /// Destination port, network byte order.
    pub dst_port: [u8; 2],
    /// Sequence number, network byte order.
    pub seq: [u8; 4],
    /// Acknowledgment number, network byte order.
    pub ack: [u8; 4],
    /// Data offset in 32-bit words (high nibble).
    pub doff: u8,
    /// Flags (CWR ECE URG ACK PSH RST SYN FIN).
    pub flags: u8,
    /// Window, network byte order.
    pub window: [u8; 2],
    /// Checksum, network byte order.
    pub check: [u8; 2],
    /// Urgent pointer, network byte order.
    pub urg_ptr: [u8; 2],
}

impl TcpHdr {
    /// Header length in bytes (data offset × 4).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        ((self.doff >> 4) as usize) * 4
    }
}

/// TCP flag SYN.
pub const TCP_SYN: u8 = 0x02;
/// TCP flag RST.
pub const TCP_RST: u8 = 0x04;
/// TCP flag FIN.
pub const TCP_FIN: u8 = 0x01;
/// TCP flag ACK.
pub const TCP_ACK: u8 = 0x10;

/// UDP header (8 bytes, RFC 768).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct UdpHdr {
    /// Source port, network byte order.
    pub src_port: [u8; 2],
    /// Destination port, network byte order.
    pub dst_port: [u8; 2],
    /// Length of header and payload, network byte order.
    pub len: [u8; 2],
    /// Checksum, network byte order.
    pub check: [u8; 2],
}

/// ICMP/ICMPv6 header (8 bytes: type, code, checksum and the 4-byte rest of header).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IcmpHdr {
    /// Message type.
    pub icmp_type: u8,
    /// Message code.
    pub code: u8,
    /// Checksum, network byte order.
    pub check: [u8; 2],
    /// Rest of header (identifier/sequence, MTU, unused...).
    pub rest: [u8; 4],
}

/// ICMP type: destination unreachable (RFC 792).
pub const ICMP_DEST_UNREACH: u8 = 3;
/// ICMP destination-unreachable code: fragmentation needed and DF set (RFC 792; the next-hop
/// MTU in the low 16 bits of the rest of header, RFC 1191 §4).
pub const ICMP_FRAG_NEEDED: u8 = 4;
/// ICMP type: time exceeded (RFC 792).
pub const ICMP_TIME_EXCEEDED: u8 = 11;
/// ICMP type: parameter problem (RFC 792).
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;
/// ICMPv6 type: destination unreachable (RFC 4443 §3.1).
pub const ICMPV6_DEST_UNREACH: u8 = 1;
/// ICMPv6 type: packet too big (RFC 4443 §3.2; the MTU in the rest of header).
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
/// ICMPv6 type: time exceeded (RFC 4443 §3.3).
pub const ICMPV6_TIME_EXCEEDED: u8 = 3;
/// ICMPv6 type: parameter problem (RFC 4443 §3.4).
pub const ICMPV6_PARAMETER_PROBLEM: u8 = 4;
/// Longest ICMP error datagram, IP header included (RFC 1812 §4.3.2.3).
pub const ICMP_ERROR_MAX_LEN: usize = 576;
/// Longest ICMPv6 error packet, IPv6 header included: the IPv6 minimum MTU (RFC 4443 §2.4 (c)).
pub const ICMPV6_ERROR_MAX_LEN: usize = 1280;
/// Smallest MTU an IPv4 host must accept (RFC 791): a "fragmentation needed" never
/// advertises less.
pub const IPV4_MIN_MTU: u16 = 68;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn header_sizes_match_the_rfcs() {
        assert_eq!(size_of::<EthHdr>(), 14);
        assert_eq!(size_of::<VlanHdr>(), 4);
        assert_eq!(size_of::<Ipv4Hdr>(), 20);
        assert_eq!(size_of::<Ipv6Hdr>(), 40);
        assert_eq!(size_of::<Ipv6FragHdr>(), 8);
        assert_eq!(size_of::<TcpHdr>(), 20);
        assert_eq!(size_of::<UdpHdr>(), 8);
        assert_eq!(size_of::<IcmpHdr>(), 8);
    }

    #[test]
    fn accessors_decode_network_order() {
        let ip = Ipv4Hdr {
            version_ihl: 0x46,
            tot_len: [0x01, 0x02],
            frag_off: [0x20, 0x01],
            ..Default::default()
        };
        assert_eq!(ip.version(), 4);
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.total_len(), 0x0102);
        assert_eq!(ip.fragment_offset(), 1);
        assert!(ip.more_fragments());
        let frag = Ipv6FragHdr { frag_off: [0x00, 0x09], ..Default::default() };
        assert_eq!(frag.fragment_offset(), 1);
    }
}
