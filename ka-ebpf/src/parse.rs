//! The frame parser every path of `ka_xdp` builds on: Ethernet, up to two VLAN tags, IPv4 with
//! options or IPv6 with a bounded chain of extension headers, then TCP, UDP, ICMP/ICMPv6 or VRRP.
//!
//! Every read is bounds-checked through [`crate::ptr`]; every loop has a constant bound so the
//! verifier can walk it.
//!
//! The common case comes first, in straight-line code of its own ([`fast_ipv4`]): an untagged
//! IPv4 packet without options or fragmentation carrying TCP, UDP or VRRP, checked as the
//! general walk ([`parse`]) checks it; anything else, malformed frames included, takes the
//! general walk, which finds and counts what is wrong. Its first look ([`fast_first`]) asks
//! the caller whether the destination can be ours before the transport header is read, so a
//! segment to another host leaves after a few loads and checks.

use aya_ebpf::programs::XdpContext;
use ka_common::{
    stats::Counter,
    wire::{
        EthHdr, IcmpHdr, Ipv4Hdr, Ipv6ExtHdr, Ipv6FragHdr, Ipv6Hdr, TcpHdr, UdpHdr, VlanHdr,
        ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP,
        IPPROTO_UDP, IPPROTO_VRRP, IPV6_EXT_AH, IPV6_EXT_DSTOPTS, IPV6_EXT_FRAGMENT,
        IPV6_EXT_HOPOPTS, IPV6_EXT_ROUTING, MAX_IPV6_EXT_HDRS, MAX_VLAN_TAGS,
    },
};

use crate::ptr::{load16, load32, ptr_at, read_at};

/// Network layer of a parsed frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum L3 {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
    /// Anything else (ARP, LLDP...): not parsed further.
    Other,
}

/// Transport layer of a parsed IP packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// TCP, header validated.
    Tcp,
    /// UDP, header present.
    Udp,
    /// ICMP or ICMPv6, header present.
    Icmp,
    /// VRRP (IP protocol 112); validated by the VRRP path.
    Vrrp,
    /// A non-first fragment: no transport header.
    Fragment,
    /// Any other protocol.
    Other,
}

/// Why a frame could not be parsed.
#[derive(Clone, Copy)]
pub enum ParseError {
    /// Shorter than an Ethernet header.
    TruncatedEth,
    /// VLAN tag cut short or too many tags.
    BadVlan,
    /// IPv4 header cut short.
    TruncatedIpv4,
    /// IPv4 header inconsistent.
    BadIpv4,
    /// IPv6 header cut short.
    TruncatedIpv6,
    /// IPv6 header or extension chain inconsistent.
    BadIpv6,
    /// Transport header cut short or inconsistent.
    TruncatedL4,
}

impl ParseError {
    /// The counter this error increments.
    #[inline(always)]
    pub fn counter(self) -> Counter {
        match self {
            ParseError::TruncatedEth => Counter::ErrTruncatedEth,
            ParseError::BadVlan => Counter::ErrBadVlan,
            ParseError::TruncatedIpv4 => Counter::ErrTruncatedIpv4,
            ParseError::BadIpv4 => Counter::ErrBadIpv4,
            ParseError::TruncatedIpv6 => Counter::ErrTruncatedIpv6,
            ParseError::BadIpv6 => Counter::ErrBadIpv6,
            ParseError::TruncatedL4 => Counter::ErrTruncatedL4,
        }
    }
}

/// What the parser found, as offsets into the frame plus the few fields every path needs.
#[derive(Clone, Copy)]
pub struct Parsed {
    /// Offset of the IP header.
    pub l3_off: usize,
    /// Offset of the transport header (after IPv4 options / IPv6 extension headers).
    pub l4_off: usize,
    /// TCP/UDP source and destination ports as on the wire (network byte order, in memory
    /// order: the first two bytes are the source port), else 0.
    pub ports: u32,
    /// Length of the IP packet, header included (IPv4 total length, or 40 + IPv6 payload
    /// length), checked against the frame; 0 for non-IP frames.
    pub ip_len: u16,
    /// Number of VLAN tags skipped.
    pub vlan_tags: u8,
    /// Network layer.
    pub l3: L3,
    /// Transport layer.
    pub l4: L4,
    /// IP protocol (the last next-header for IPv6).
    pub ip_proto: u8,
    /// TCP flags, else 0.
    pub tcp_flags: u8,
    /// The destination address folded to one word as the VIP filter hashes it (IPv4: the
    /// address as loaded; IPv6: the XOR of its four words), read while the header is at hand;
    /// 0 for non-IP frames.
    pub dst_fold: u32,
}

/// Offset of the EtherType in an Ethernet header (and of the next one in a VLAN tag, 2).
const ETHER_TYPE_OFF: usize = 12;

/// Parses one frame.
///
/// Fields are read with one word or half-word load each ([`crate::ptr::load32`]) from a
/// header whose whole length was bounds-checked once.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Parsed, ParseError> {
    let frame_len = ctx.data_end() - ctx.data();
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(ParseError::TruncatedEth)?;
    // SAFETY: bounds-checked by ptr_at.
    let mut ether_type = u16::from_be(unsafe { load16((eth as *const u8).add(ETHER_TYPE_OFF)) });
    let mut off = core::mem::size_of::<EthHdr>();
    let mut vlan_tags = 0u8;
    for _ in 0..MAX_VLAN_TAGS {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let vlan = ptr_at::<VlanHdr>(ctx, off).ok_or(ParseError::BadVlan)?;
        // SAFETY: bounds-checked by ptr_at; the EtherType follows the 2-byte TCI.
        ether_type = u16::from_be(unsafe { load16((vlan as *const u8).add(2)) });
        off += core::mem::size_of::<VlanHdr>();
        vlan_tags += 1;
    }
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        return Err(ParseError::BadVlan);
    }

    let mut pkt = Parsed {
        l3_off: off,
        l4_off: off,
        ports: 0,
        ip_len: 0,
        vlan_tags,
        l3: L3::Other,
        l4: L4::Other,
        ip_proto: 0,
        tcp_flags: 0,
        dst_fold: 0,
    };
    let l3_off = off;
    let fragment = match ether_type {
        ETH_P_IP => {
            let ip = ptr_at::<Ipv4Hdr>(ctx, l3_off).ok_or(ParseError::TruncatedIpv4)?;
            let p = ip as *const u8;
            // SAFETY: bounds-checked by ptr_at (20 bytes). Word 0: version/IHL, TOS, total
            // length; word 1: id, flags/fragment offset; byte 9: protocol; word 4: destination.
            let (w0, w1, proto, dst) = unsafe { (load32(p), load32(p.add(4)), *p.add(9), load32(p.add(16))) };
            let version_ihl = w0 as u8;
            let hlen = usize::from(version_ihl & 0x0f) * 4;
            if version_ihl >> 4 != 4 || hlen < core::mem::size_of::<Ipv4Hdr>() {
                return Err(ParseError::BadIpv4);
            }
            let tot = usize::from(u16::from_be((w0 >> 16) as u16));
            if tot < hlen || l3_off + tot > frame_len {
                return Err(ParseError::BadIpv4);
            }
            pkt.l3 = L3::Ipv4;
            pkt.ip_len = tot as u16;
            pkt.ip_proto = proto;
            pkt.dst_fold = dst;
            pkt.l4_off = l3_off + hlen;
            u16::from_be((w1 >> 16) as u16) & 0x1fff != 0
        }
        ETH_P_IPV6 => {
            let ip = ptr_at::<Ipv6Hdr>(ctx, l3_off).ok_or(ParseError::TruncatedIpv6)?;
            let p = ip as *const u8;
            // SAFETY: bounds-checked by ptr_at (40 bytes): version at byte 0, payload length
            // at 4, next header at 6, destination at 24..40.
            let (v, payload, next) = unsafe { (*p, usize::from(u16::from_be(load16(p.add(4)))), *p.add(6)) };
            // SAFETY: as above.
            let dst = unsafe { load32(p.add(24)) ^ load32(p.add(28)) ^ load32(p.add(32)) ^ load32(p.add(36)) };
            if v >> 4 != 6 {
                return Err(ParseError::BadIpv6);
            }
            let hdr_len = core::mem::size_of::<Ipv6Hdr>();
            if l3_off + hdr_len + payload > frame_len {
                return Err(ParseError::BadIpv6);
            }
            pkt.l3 = L3::Ipv6;
            pkt.ip_len = (hdr_len + payload) as u16;
            pkt.dst_fold = dst;
            let end = l3_off + hdr_len + payload;
            let (proto, l4_off, fragment) = skip_ipv6_ext(ctx, next, l3_off + hdr_len, end)?;
            pkt.ip_proto = proto;
            pkt.l4_off = l4_off;
            fragment
        }
        _ => return Ok(pkt),
    };
    if fragment {
        pkt.l4 = L4::Fragment;
        return Ok(pkt);
    }
    parse_l4(ctx, &mut pkt)?;
    Ok(pkt)
}

/// Walks at most [`MAX_IPV6_EXT_HDRS`] extension headers (RFC 8200 §4) of the packet ending at
/// `end` (its payload length; the frame may be longer). Returns the upper-layer protocol, its
/// offset, and whether this is a non-first fragment.
#[inline(always)]
fn skip_ipv6_ext(
    ctx: &XdpContext,
    mut next: u8,
    mut off: usize,
    end: usize,
) -> Result<(u8, usize, bool), ParseError> {
    for _ in 0..MAX_IPV6_EXT_HDRS {
        // An extension header that claims to run past the packet is a broken chain, not a
        // truncated transport header (found by the XDP fuzzer: the chain was bounded by the
        // frame, so one running into Ethernet padding made a header longer than the packet).
        if off > end {
            return Err(ParseError::BadIpv6);
        }
        match next {
            IPV6_EXT_HOPOPTS | IPV6_EXT_ROUTING | IPV6_EXT_DSTOPTS => {
                let ext: Ipv6ExtHdr = read_at(ctx, off).ok_or(ParseError::BadIpv6)?;
                next = ext.next_hdr;
                off += (ext.hdr_len as usize + 1) * 8;
            }
            IPV6_EXT_AH => {
                let ext: Ipv6ExtHdr = read_at(ctx, off).ok_or(ParseError::BadIpv6)?;
                next = ext.next_hdr;
                off += (ext.hdr_len as usize + 2) * 4;
            }
            IPV6_EXT_FRAGMENT => {
                let frag: Ipv6FragHdr = read_at(ctx, off).ok_or(ParseError::BadIpv6)?;
                off += core::mem::size_of::<Ipv6FragHdr>();
                if frag.fragment_offset() != 0 {
                    return Ok((frag.next_hdr, off, true));
                }
                next = frag.next_hdr;
            }
            _ => return Ok((next, off, false)),
        }
    }
    if off > end {
        return Err(ParseError::BadIpv6);
    }
    match next {
        IPV6_EXT_HOPOPTS | IPV6_EXT_ROUTING | IPV6_EXT_DSTOPTS | IPV6_EXT_AH
        | IPV6_EXT_FRAGMENT => Err(ParseError::BadIpv6),
        _ => Ok((next, off, false)),
    }
}

/// Reads the transport header at `pkt.l4_off`, which must lie inside the IP packet (not only
/// the frame: Ethernet padding after a short packet is no transport header). ICMP is protocol
/// 1 over IPv4 and 58 over IPv6; the other number is an unknown protocol of that family.
#[inline(always)]
fn parse_l4(ctx: &XdpContext, pkt: &mut Parsed) -> Result<(), ParseError> {
    let off = pkt.l4_off;
    // Checked against the frame by the caller.
    let end = pkt.l3_off + usize::from(pkt.ip_len);
    let v4 = pkt.l3 == L3::Ipv4;
    match pkt.ip_proto {
        IPPROTO_TCP => {
            let tcp = ptr_at::<TcpHdr>(ctx, off).ok_or(ParseError::TruncatedL4)?;
            let p = tcp as *const u8;
            // SAFETY: bounds-checked by ptr_at (20 bytes): ports at 0, data offset at 12,
            // flags at 13.
            let (ports, doff, flags) = unsafe { (load32(p), *p.add(12), *p.add(13)) };
            let hlen = usize::from(doff >> 4) * 4;
            if hlen < core::mem::size_of::<TcpHdr>() || off + hlen > end {
                return Err(ParseError::TruncatedL4);
            }
            pkt.l4 = L4::Tcp;
            pkt.ports = ports;
            pkt.tcp_flags = flags;
        }
        IPPROTO_UDP => {
            let udp = ptr_at::<UdpHdr>(ctx, off).ok_or(ParseError::TruncatedL4)?;
            if off + core::mem::size_of::<UdpHdr>() > end {
                return Err(ParseError::TruncatedL4);
            }
            pkt.l4 = L4::Udp;
            // SAFETY: bounds-checked by ptr_at (8 bytes): the ports first.
            pkt.ports = unsafe { load32(udp as *const u8) };
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 if v4 == (pkt.ip_proto == IPPROTO_ICMP) => {
            ptr_at::<IcmpHdr>(ctx, off).ok_or(ParseError::TruncatedL4)?;
            if off + core::mem::size_of::<IcmpHdr>() > end {
                return Err(ParseError::TruncatedL4);
            }
            pkt.l4 = L4::Icmp;
        }
        IPPROTO_VRRP => pkt.l4 = L4::Vrrp,
        _ => pkt.l4 = L4::Other,
    }
    Ok(())
}

/// Offset of the IPv4 header of an untagged frame.
const FAST_L3: usize = core::mem::size_of::<EthHdr>();
/// Offset of its transport header when it has no options.
const FAST_L4: usize = FAST_L3 + core::mem::size_of::<Ipv4Hdr>();

/// The IPv4 header of the fast case: an untagged frame, version 4 and IHL 5, neither a
/// fragment offset nor more fragments, a total length that covers the header and fits the
/// frame. Returns the total length, the protocol and the destination as loaded.
#[inline(always)]
fn fast_ipv4_header(ctx: &XdpContext) -> Option<(usize, u8, u32)> {
    let start = ctx.data();
    let end = ctx.data_end();
    // Ethernet and IPv4 without options.
    if start + FAST_L4 > end {
        return None;
    }
    let p = start as *const u8;
    // SAFETY: bounds-checked above: 34 bytes.
    let (et, w0, w1, w2, dst) = unsafe {
        (
            load16(p.add(ETHER_TYPE_OFF)),
            load32(p.add(FAST_L3)),
            load32(p.add(FAST_L3 + 4)),
            load32(p.add(FAST_L3 + 8)),
            load32(p.add(FAST_L3 + 16)),
        )
    };
    if et != ETH_P_IP.to_be() || w0 & 0xff != 0x45 || w1 & 0xff3f_0000 != 0 {
        return None;
    }
    let tot = usize::from(u16::from_be((w0 >> 16) as u16));
    if FAST_L3 + tot > end - start || tot < core::mem::size_of::<Ipv4Hdr>() {
        return None;
    }
    Some((tot, (w2 >> 8) as u8, dst))
}

/// The transport header of a fast-case TCP (`tcp`) or UDP segment of `tot` bytes, whole (a
/// TCP header's data offset too), as [`parse_l4`] checks it: its ports word and TCP flags.
#[inline(always)]
fn fast_l4(ctx: &XdpContext, tcp: bool, tot: usize) -> Option<(u32, u8)> {
    let start = ctx.data();
    let end = ctx.data_end();
    let l4_len = if tcp { core::mem::size_of::<TcpHdr>() } else { core::mem::size_of::<UdpHdr>() };
    if start + FAST_L4 + l4_len > end || core::mem::size_of::<Ipv4Hdr>() + l4_len > tot {
        return None;
    }
    let p = start as *const u8;
    // SAFETY: bounds-checked above: the ports are the first word of either header.
    let ports = unsafe { load32(p.add(FAST_L4)) };
    if !tcp {
        return Some((ports, 0));
    }
    // Verifier: checked again in this branch (LLVM may merge the check above into one the
    // verifier cannot tie to the protocol).
    if start + FAST_L4 + core::mem::size_of::<TcpHdr>() > end {
        return None;
    }
    // SAFETY: bounds-checked just above: data offset and flags at 12 and 13.
    let w3 = unsafe { load32(p.add(FAST_L4 + 12)) };
    let hlen = usize::from((w3 as u8) >> 4) * 4;
    if hlen < core::mem::size_of::<TcpHdr>() || core::mem::size_of::<Ipv4Hdr>() + hlen > tot {
        return None;
    }
    Some((ports, (w3 >> 8) as u8))
}

/// What [`fast_first`] made of a frame (every field always written: an enum with payloads
/// would leave an undefined payload in a register the verifier then refuses to spill).
#[derive(Clone, Copy)]
pub struct Fast {
    /// [`FAST_OTHER`], [`FAST_NOT_OURS_TCP`], [`FAST_NOT_OURS_UDP`] or [`FAST_IPV4`].
    pub kind: u32,
    /// [`FAST_IPV4`]: the total length.
    pub tot: usize,
    /// [`FAST_IPV4`]: the protocol.
    pub proto: u8,
    /// [`FAST_IPV4`]: the destination as loaded.
    pub dst: u32,
}

/// [`Fast::kind`]: any other frame, for [`parse`]'s general walk.
pub const FAST_OTHER: u32 = 0;
/// [`Fast::kind`]: an untagged IPv4 TCP segment, whole, to a destination that is not ours.
pub const FAST_NOT_OURS_TCP: u32 = 1;
/// [`Fast::kind`]: the same for UDP.
pub const FAST_NOT_OURS_UDP: u32 = 2;
/// [`Fast::kind`]: a fast-case IPv4 header, for [`fast_ipv4`].
pub const FAST_IPV4: u32 = 3;

/// The fast case's first look: the IPv4 header, then, for a TCP/UDP segment whose destination
/// `not_ours` (asked with the address as loaded, before the transport header is read) answers
/// true for, the transport header checked whole: such a segment leaves here. A malformed one
/// is [`FAST_OTHER`], for the general walk that counts its error.
#[inline(always)]
pub fn fast_first(ctx: &XdpContext, not_ours: impl Fn(u32) -> bool) -> Fast {
    let other = Fast { kind: FAST_OTHER, tot: 0, proto: 0, dst: 0 };
    let Some((tot, proto, dst)) = fast_ipv4_header(ctx) else {
        return other;
    };
    let tcp = proto == IPPROTO_TCP;
    if (tcp || proto == IPPROTO_UDP) && not_ours(dst) {
        if fast_l4(ctx, tcp, tot).is_none() {
            return other;
        }
        return Fast { kind: if tcp { FAST_NOT_OURS_TCP } else { FAST_NOT_OURS_UDP }, ..other };
    }
    Fast { kind: FAST_IPV4, tot, proto, dst }
}

/// The common case, parsed from its header ([`FAST_IPV4`]): an untagged IPv4 packet without
/// options or fragmentation carrying a whole TCP or UDP header, or VRRP. `None`: any other
/// frame, for [`parse`]'s general walk (which also finds and counts what is wrong with it).
#[inline(always)]
pub fn fast_ipv4(ctx: &XdpContext, tot: usize, proto: u8, dst: u32) -> Option<Parsed> {
    let mut pkt = Parsed {
        l3_off: FAST_L3,
        l4_off: FAST_L4,
        ports: 0,
        ip_len: tot as u16,
        vlan_tags: 0,
        l3: L3::Ipv4,
        l4: L4::Vrrp,
        ip_proto: proto,
        tcp_flags: 0,
        dst_fold: dst,
    };
    match proto {
        IPPROTO_VRRP => {}
        IPPROTO_TCP | IPPROTO_UDP => {
            let tcp = proto == IPPROTO_TCP;
            let (ports, tcp_flags) = fast_l4(ctx, tcp, tot)?;
            pkt.l4 = if tcp { L4::Tcp } else { L4::Udp };
            pkt.ports = ports;
            pkt.tcp_flags = tcp_flags;
        }
        _ => return None,
    }
    Some(pkt)
}
