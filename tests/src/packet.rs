//! A small packet builder for fixtures: Ethernet (+VLAN tags), IPv4 (+options, fragments) or
//! IPv6 (+extension headers), then TCP, UDP, ICMP/ICMPv6 (echo, or an error quoting another
//! packet) or a raw protocol. Lengths and checksums are filled in; tests corrupt the result
//! afterwards when they want bad frames.

use std::net::{Ipv4Addr, Ipv6Addr};

/// MAC address used as the source of test frames.
pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
/// MAC address used as the destination of test frames.
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// Network layer of a [`Frame`].
#[derive(Clone, Debug)]
pub enum L3 {
    /// IPv4.
    V4 {
        /// Source.
        src: Ipv4Addr,
        /// Destination.
        dst: Ipv4Addr,
        /// TTL.
        ttl: u8,
        /// Options (padded to a multiple of 4 by the builder).
        options: Vec<u8>,
        /// Flags and fragment offset field, host order (e.g. 0x2000 = MF, 0x4000 = DF,
        /// 0x0001 = offset 8).
        frag: u16,
        /// Identification.
        id: u16,
    },
    /// IPv6.
    V6 {
        /// Source.
        src: Ipv6Addr,
        /// Destination.
        dst: Ipv6Addr,
        /// Hop limit.
        hop_limit: u8,
        /// Extension headers as (type, body without the next-header byte); the builder fills in
        /// the next-header byte and the length byte must already be right in the body.
        ext: Vec<(u8, Vec<u8>)>,
    },
    /// Any other EtherType, with raw bytes after the Ethernet header.
    Raw {
        /// EtherType.
        ether_type: u16,
    },
}

/// Transport layer of a [`Frame`].
#[derive(Clone, Debug)]
pub enum L4 {
    /// TCP with the given ports and flags.
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Flags byte.
        flags: u8,
    },
    /// UDP with the given ports.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// ICMP (IPv4) or ICMPv6 (IPv6) with type, code and rest of header; an error message
    /// carries the quoted packet as its payload.
    Icmp {
        /// Type.
        ty: u8,
        /// Code.
        code: u8,
        /// Rest of header (identifier and sequence, MTU, pointer, unused...).
        rest: [u8; 4],
    },
    /// A raw IP protocol whose header is part of the payload.
    Raw {
        /// IP protocol number.
        proto: u8,
    },
}

/// A frame under construction.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Destination MAC.
    pub eth_dst: [u8; 6],
    /// Source MAC.
    pub eth_src: [u8; 6],
    /// VLAN tags, outermost first, as (TPID, VLAN id).
    pub vlans: Vec<(u16, u16)>,
    /// Network layer.
    pub l3: L3,
    /// Transport layer (ignored for [`L3::Raw`]).
    pub l4: L4,
    /// Payload after the transport header.
    pub payload: Vec<u8>,
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap_or_else(|e| panic!("bad IPv4 {s}: {e}"))
}
fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap_or_else(|e| panic!("bad IPv6 {s}: {e}"))
}

impl Frame {
    fn new(l3: L3, l4: L4) -> Frame {
        Frame { eth_dst: MAC_B, eth_src: MAC_A, vlans: vec![], l3, l4, payload: vec![] }
    }
    fn l3_v4(src: &str, dst: &str) -> L3 {
        L3::V4 { src: v4(src), dst: v4(dst), ttl: 64, options: vec![], frag: 0, id: 0x1234 }
    }
    fn l3_v6(src: &str, dst: &str) -> L3 {
        L3::V6 { src: v6(src), dst: v6(dst), hop_limit: 64, ext: vec![] }
    }
    /// TCP over IPv4.
    pub fn tcp4(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> Frame {
        Frame::new(Self::l3_v4(src, dst), L4::Tcp { sport, dport, flags })
    }
    /// TCP over IPv6.
    pub fn tcp6(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> Frame {
        Frame::new(Self::l3_v6(src, dst), L4::Tcp { sport, dport, flags })
    }
    /// UDP over IPv4.
    pub fn udp4(src: &str, dst: &str, sport: u16, dport: u16) -> Frame {
        Frame::new(Self::l3_v4(src, dst), L4::Udp { sport, dport })
    }
    /// UDP over IPv6.
    pub fn udp6(src: &str, dst: &str, sport: u16, dport: u16) -> Frame {
        Frame::new(Self::l3_v6(src, dst), L4::Udp { sport, dport })
    }
    /// ICMP echo request over IPv4.
    pub fn icmp4(src: &str, dst: &str) -> Frame {
        Frame::new(Self::l3_v4(src, dst), L4::Icmp { ty: 8, code: 0, rest: [0, 1, 0, 1] })
    }
    /// ICMPv6 echo request.
    pub fn icmp6(src: &str, dst: &str) -> Frame {
        Frame::new(Self::l3_v6(src, dst), L4::Icmp { ty: 128, code: 0, rest: [0, 1, 0, 1] })
    }
    /// An ICMP error over IPv4 (type `ty`, code `code`, rest of header `rest`) quoting
    /// `quoted`, the start of an IP packet (see [`Frame::ip_packet`]).
    pub fn icmp4_error(src: &str, dst: &str, ty: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Frame {
        Frame::new(Self::l3_v4(src, dst), L4::Icmp { ty, code, rest }).payload(quoted)
    }
    /// An ICMPv6 error quoting `quoted` (as [`Frame::icmp4_error`]).
    pub fn icmp6_error(src: &str, dst: &str, ty: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Frame {
        Frame::new(Self::l3_v6(src, dst), L4::Icmp { ty, code, rest }).payload(quoted)
    }
    /// The frame's IP packet (everything after the Ethernet and VLAN headers), as an ICMP
    /// error quotes it.
    pub fn ip_packet(&self) -> Vec<u8> {
        self.build()[14 + 4 * self.vlans.len()..].to_vec()
    }
    /// A raw IP protocol over IPv4 (the payload is the whole L4 message).
    pub fn raw4(src: &str, dst: &str, proto: u8) -> Frame {
        Frame::new(Self::l3_v4(src, dst), L4::Raw { proto })
    }
    /// A raw IP protocol over IPv6.
    pub fn raw6(src: &str, dst: &str, proto: u8) -> Frame {
        Frame::new(Self::l3_v6(src, dst), L4::Raw { proto })
    }
    /// A non-IP frame of the given EtherType; the payload follows the Ethernet header.
    pub fn ether(ether_type: u16) -> Frame {
        Frame::new(L3::Raw { ether_type }, L4::Raw { proto: 0 })
    }
    /// Adds an 802.1Q tag (inner tags are added after outer ones).
    pub fn vlan(mut self, id: u16) -> Frame {
        self.vlans.push((0x8100, id));
        self
    }
    /// Adds a tag with an explicit TPID (0x88a8 for 802.1ad).
    pub fn vlan_tpid(mut self, tpid: u16, id: u16) -> Frame {
        self.vlans.push((tpid, id));
        self
    }
    /// Sets the payload.
    pub fn payload(mut self, p: &[u8]) -> Frame {
        self.payload = p.to_vec();
        self
    }
    /// Sets the IPv4 TTL or IPv6 hop limit.
    pub fn ttl(mut self, v: u8) -> Frame {
        match &mut self.l3 {
            L3::V4 { ttl, .. } => *ttl = v,
            L3::V6 { hop_limit, .. } => *hop_limit = v,
            L3::Raw { .. } => {}
        }
        self
    }
    /// Sets IPv4 options.
    pub fn ipv4_options(mut self, o: &[u8]) -> Frame {
        if let L3::V4 { options, .. } = &mut self.l3 {
            *options = o.to_vec();
        }
        self
    }
    /// Sets the IPv4 flags/fragment-offset field (host order).
    pub fn ipv4_frag(mut self, f: u16) -> Frame {
        if let L3::V4 { frag, .. } = &mut self.l3 {
            *frag = f;
        }
        self
    }
    /// Sets the IPv4 identification.
    pub fn ipv4_id(mut self, v: u16) -> Frame {
        if let L3::V4 { id, .. } = &mut self.l3 {
            *id = v;
        }
        self
    }
    /// Appends an IPv6 extension header (see [`L3::V6`]).
    pub fn ipv6_ext(mut self, ty: u8, body: &[u8]) -> Frame {
        if let L3::V6 { ext, .. } = &mut self.l3 {
            ext.push((ty, body.to_vec()));
        }
        self
    }

    fn proto(&self) -> u8 {
        match self.l4 {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
            L4::Icmp { .. } => match self.l3 {
                L3::V6 { .. } => 58,
                _ => 1,
            },
            L4::Raw { proto } => proto,
        }
    }

    /// Serializes the frame with correct lengths and checksums.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&self.eth_dst);
        out.extend_from_slice(&self.eth_src);
        let ether_type = match self.l3 {
            L3::V4 { .. } => 0x0800,
            L3::V6 { .. } => 0x86dd,
            L3::Raw { ether_type } => ether_type,
        };
        for (tpid, id) in &self.vlans {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&id.to_be_bytes());
        }
        out.extend_from_slice(&ether_type.to_be_bytes());
        match &self.l3 {
            L3::Raw { .. } => out.extend_from_slice(&self.payload),
            L3::V4 { src, dst, ttl, options, frag, id } => {
                let l4 = self.l4_bytes(&PseudoHeader::V4(*src, *dst));
                let mut opts = options.clone();
                while opts.len() % 4 != 0 {
                    opts.push(0);
                }
                let hlen = 20 + opts.len();
                let mut ip = vec![0u8; 20];
                ip[0] = 0x40 | (hlen / 4) as u8;
                ip[2..4].copy_from_slice(&((hlen + l4.len()) as u16).to_be_bytes());
                ip[4..6].copy_from_slice(&id.to_be_bytes());
                ip[6..8].copy_from_slice(&frag.to_be_bytes());
                ip[8] = *ttl;
                ip[9] = self.proto();
                ip[12..16].copy_from_slice(&src.octets());
                ip[16..20].copy_from_slice(&dst.octets());
                ip.extend_from_slice(&opts);
                let c = checksum(&[&ip]);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                out.extend_from_slice(&ip);
                out.extend_from_slice(&l4);
            }
            L3::V6 { src, dst, hop_limit, ext } => {
                let l4 = self.l4_bytes(&PseudoHeader::V6(*src, *dst));
                let mut exts = Vec::new();
                let mut first = self.proto();
                for (i, (ty, body)) in ext.iter().enumerate() {
                    if i == 0 {
                        first = *ty;
                    }
                    let next = ext.get(i + 1).map_or(self.proto(), |(t, _)| *t);
                    exts.push(next);
                    exts.extend_from_slice(body);
                }
                let mut ip = vec![0u8; 40];
                ip[0] = 0x60;
                ip[4..6].copy_from_slice(&((exts.len() + l4.len()) as u16).to_be_bytes());
                ip[6] = first;
                ip[7] = *hop_limit;
                ip[8..24].copy_from_slice(&src.octets());
                ip[24..40].copy_from_slice(&dst.octets());
                out.extend_from_slice(&ip);
                out.extend_from_slice(&exts);
                out.extend_from_slice(&l4);
            }
        }
        out
    }

    fn l4_bytes(&self, ph: &PseudoHeader) -> Vec<u8> {
        let proto = self.proto();
        let mut l4 = match self.l4 {
            L4::Tcp { sport, dport, flags } => {
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[4..8].copy_from_slice(&1u32.to_be_bytes());
                h[12] = 5 << 4;
                h[13] = flags;
                h[14..16].copy_from_slice(&65535u16.to_be_bytes());
                h
            }
            L4::Udp { sport, dport } => {
                let mut h = vec![0u8; 8];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[4..6].copy_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                h
            }
            L4::Icmp { ty, code, rest } => vec![ty, code, 0, 0, rest[0], rest[1], rest[2], rest[3]],
            L4::Raw { .. } => vec![],
        };
        let csum_at = match self.l4 {
            L4::Tcp { .. } => Some(16),
            L4::Udp { .. } => Some(6),
            L4::Icmp { .. } => Some(2),
            L4::Raw { .. } => None,
        };
        l4.extend_from_slice(&self.payload);
        if let Some(at) = csum_at {
            let len = l4.len();
            let c = match (ph, &self.l4) {
                (PseudoHeader::V4(..), L4::Icmp { .. }) => checksum(&[&l4]),
                _ => checksum(&[&ph.bytes(proto, len), &l4]),
            };
            let c = if c == 0 && matches!(self.l4, L4::Udp { .. }) { 0xffff } else { c };
            l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        l4
    }
}

enum PseudoHeader {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl PseudoHeader {
    fn bytes(&self, proto: u8, len: usize) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            PseudoHeader::V4(s, d) => {
                b.extend_from_slice(&s.octets());
                b.extend_from_slice(&d.octets());
                b.extend_from_slice(&[0, proto]);
                b.extend_from_slice(&(len as u16).to_be_bytes());
            }
            PseudoHeader::V6(s, d) => {
                b.extend_from_slice(&s.octets());
                b.extend_from_slice(&d.octets());
                b.extend_from_slice(&(len as u32).to_be_bytes());
                b.extend_from_slice(&[0, 0, 0, proto]);
            }
        }
        b
    }
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &byte in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, byte])),
                None => odd = Some(byte),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Hex dump with a marker on the first differing byte, for assertion messages.
pub fn hex_diff(expected: &[u8], actual: &[u8]) -> String {
    let first = expected.iter().zip(actual).position(|(a, b)| a != b).unwrap_or(expected.len().min(actual.len()));
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ");
    format!(
        "first difference at byte {first} (lengths {} vs {})\nexpected: {}\nactual:   {}",
        expected.len(),
        actual.len(),
        hex(expected),
        hex(actual)
    )
}

/// `inner` (an Ethernet frame) tunnelled as the director sends it: a new Ethernet header, then
/// an outer IPv4 (IPIP, TTL 64, checksummed) or IPv6 (IP6IP6, hop limit 64) header from `src` to
/// `dst`. The IPv6 flow label is left 0 (ka puts the flow hash there: callers copy it from the
/// output).
pub fn tunnel(inner: &[u8], dst_mac: [u8; 6], src_mac: [u8; 6], src: &str, dst: &str) -> Vec<u8> {
    let payload = &inner[14..];
    let mut out = Vec::new();
    out.extend_from_slice(&dst_mac);
    out.extend_from_slice(&src_mac);
    let addr = |a: &str| a.parse::<std::net::IpAddr>().expect("address");
    match (addr(src), addr(dst)) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            out.extend_from_slice(&[0x08, 0x00]);
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&((payload.len() + 20) as u16).to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, 0, 64, 4, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let c = checksum(&[&h]);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            out.extend_from_slice(&h);
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            out.extend_from_slice(&[0x86, 0xdd]);
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            out.extend_from_slice(&[41, 64]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    out.extend_from_slice(payload);
    out
}

/// The IPv6 flow label ka puts on an IP6IP6 packet of the flow `src`:`sport` -> `dst`:`dport`
/// (protocol `proto`): the low 20 bits of `ka_common::lb::flow_hash`, the hash that also picks
/// its backend, so a real server's RSS spreads the tunnelled flows.
pub fn flow_label(src: &str, dst: &str, sport: u16, dport: u16, proto: u8) -> u32 {
    let addr = |a: &str| match a.parse::<std::net::IpAddr>().expect("address") {
        std::net::IpAddr::V6(v6) => v6.octets(),
        std::net::IpAddr::V4(_) => panic!("an IP6IP6 flow is IPv6"),
    };
    let key = ka_common::lb::FlowKey {
        src: addr(src),
        dst: addr(dst),
        sport: sport.to_be_bytes(),
        dport: dport.to_be_bytes(),
        proto,
        family: ka_common::lb::FAMILY_V6,
        _pad: [0; 2],
    };
    ka_common::lb::flow_hash(&key) & 0x000f_ffff
}

/// Sets the flow label of the (outer) IPv6 header of an untagged Ethernet frame.
pub fn set_flow_label(mut frame: Vec<u8>, label: u32) -> Vec<u8> {
    let l = label.to_be_bytes();
    frame[15] = (frame[15] & 0xf0) | (l[1] & 0x0f);
    frame[16] = l[2];
    frame[17] = l[3];
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies_to_zero() {
        let f = Frame::udp4("198.18.0.1", "198.18.0.2", 1, 2).ipv4_options(&[1, 1, 1]).build();
        let ip = &f[14..14 + 24];
        assert_eq!(ip[0], 0x46);
        assert_eq!(checksum(&[ip]), 0);
    }

    #[test]
    fn tcp_checksum_verifies_with_pseudo_header() {
        let f = Frame::tcp6("fd00:198:18::1", "fd00:198:18::2", 1000, 80, 0x02).payload(b"abc").build();
        let l4 = &f[14 + 40..];
        let ph = PseudoHeader::V6(v6("fd00:198:18::1"), v6("fd00:198:18::2")).bytes(6, l4.len());
        assert_eq!(checksum(&[&ph, l4]), 0);
    }

    #[test]
    fn icmp_error_quotes_the_packet_and_checksums_verify() {
        let inner = Frame::tcp4("198.18.0.2", "198.18.0.1", 80, 40000, 0x12).ip_packet();
        assert_eq!(inner.len(), 40);
        let f = Frame::icmp4_error("198.18.0.1", "198.18.0.2", 3, 3, [0; 4], &inner).build();
        assert_eq!(&f[14 + 20..14 + 24], &[3, 3, f[36], f[37]]);
        assert_eq!(&f[14 + 28..], &inner[..]);
        assert_eq!(checksum(&[&f[14 + 20..]]), 0);
        let inner = Frame::udp6("fd00:198:18::2", "fd00:198:18::1", 53, 40000).ip_packet();
        let f = Frame::icmp6_error("fd00:198:18::1", "fd00:198:18::2", 2, 0, 1280u32.to_be_bytes(), &inner).build();
        let l4 = &f[14 + 40..];
        assert_eq!(&l4[4..8], &1280u32.to_be_bytes());
        let ph = PseudoHeader::V6(v6("fd00:198:18::1"), v6("fd00:198:18::2")).bytes(58, l4.len());
        assert_eq!(checksum(&[&ph, l4]), 0);
    }

    #[test]
    fn vlan_tags_sit_before_the_ethertype() {
        let f = Frame::icmp4("198.18.0.1", "198.18.0.2").vlan(7).build();
        assert_eq!(&f[12..18], &[0x81, 0x00, 0x00, 0x07, 0x08, 0x00]);
    }
}

