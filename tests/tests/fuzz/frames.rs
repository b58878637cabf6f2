//! Pure frame helpers of the XDP fuzzer: a lenient parser (Ethernet, VLAN tags, IPv4 with
//! options, IPv6 with extension headers, TCP/UDP/ICMP), the checksum validity of each layer,
//! a repair step that makes lengths and checksums right again after a mutation, and the
//! structure-aware edits the mutator uses. Nothing here panics on any byte string.
#![allow(dead_code, reason = "the test binary and the campaign binary each use a different subset")]

use std::net::IpAddr;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const VLAN_TPIDS: [u16; 2] = [0x8100, 0x88a8];
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;
pub const VRRP: u8 = 112;
/// IPv6 extension headers the datapath walks (hop-by-hop, routing, fragment, AH, dst opts).
const V6_EXT: [u8; 5] = [0, 43, 44, 51, 60];

/// The IP layer of a frame, as far as it could be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ip {
    /// IPv4 (else IPv6).
    pub v4: bool,
    /// Offset of the IP header in the frame.
    pub off: usize,
    /// Header length (IPv4 IHL * 4; IPv6 40 + extension headers).
    pub hlen: usize,
    /// Length the header claims (IPv4 total length, IPv6 40 + payload length).
    pub len: usize,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub proto: u8,
    /// A fragment: a non-first one (no transport header) or a first one with more to come
    /// (its transport checksum covers bytes not here).
    pub fragment: bool,
}

impl Ip {
    /// Offset of the transport header.
    pub fn l4(&self) -> usize {
        self.off + self.hlen
    }

    /// End of the IP packet the header claims.
    pub fn end(&self) -> usize {
        self.off + self.len
    }
}

fn be16(f: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]))
}

fn put16(f: &mut [u8], at: usize, v: u16) {
    if let Some(s) = f.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// Offset of the EtherType after up to `max` VLAN tags, and the number of tags.
pub fn ether_type(f: &[u8]) -> Option<(u16, usize, usize)> {
    let mut off = 12;
    let mut tags = 0;
    let mut t = be16(f, off)?;
    while VLAN_TPIDS.contains(&t) && tags < 4 {
        off += 4;
        tags += 1;
        t = be16(f, off)?;
    }
    Some((t, off + 2, tags))
}

/// The IP layer of `f`, if its header (and IPv6 extension chain) is there.
pub fn ip(f: &[u8]) -> Option<Ip> {
    let (t, off, _) = ether_type(f)?;
    ip_at(f, off, t == ETH_P_IP, t == ETH_P_IPV6)
}

/// The IP layer of an IP packet starting at `off` (`v4` or `v6` from the context).
pub fn ip_at(f: &[u8], off: usize, v4: bool, v6: bool) -> Option<Ip> {
    if v4 {
        let b0 = *f.get(off)?;
        if b0 >> 4 != 4 {
            return None;
        }
        let hlen = usize::from(b0 & 0x0f) * 4;
        let frag = be16(f, off + 6)?;
        if hlen < 20 || f.len() < off + hlen {
            return None;
        }
        Some(Ip {
            v4: true,
            off,
            hlen,
            len: usize::from(be16(f, off + 2)?),
            proto: *f.get(off + 9)?,
            fragment: frag & 0x3fff != 0,
        })
    } else if v6 {
        if *f.get(off)? >> 4 != 6 {
            return None;
        }
        let len = 40 + usize::from(be16(f, off + 4)?);
        let mut next = *f.get(off + 6)?;
        let mut hlen = 40;
        let mut fragment = false;
        for _ in 0..8 {
            if !V6_EXT.contains(&next) {
                break;
            }
            let at = off + hlen;
            let n = *f.get(at)?;
            let l = *f.get(at + 1)?;
            match next {
                44 => {
                    let fo = be16(f, at + 2)?;
                    fragment |= fo & 0xfff9 != 0;
                    hlen += 8;
                }
                51 => hlen += (usize::from(l) + 2) * 4,
                _ => hlen += (usize::from(l) + 1) * 8,
            }
            next = n;
        }
        if f.len() < off + hlen {
            return None;
        }
        Some(Ip { v4: false, off, hlen, len, proto: next, fragment })
    } else {
        None
    }
}

/// One's complement sum of `b` added to `sum`.
fn add(mut sum: u32, b: &[u8]) -> u32 {
    let mut it = b.chunks_exact(2);
    for w in &mut it {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [x] = it.remainder() {
        sum += u32::from(u16::from_be_bytes([*x, 0]));
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The pseudo-header sum of `ip` for `len` transport bytes.
fn pseudo(f: &[u8], ip: &Ip, len: usize) -> Option<u32> {
    let s = if ip.v4 {
        add(add(0, f.get(ip.off + 12..ip.off + 20)?), &[0, ip.proto]) + len as u32
    } else {
        add(0, f.get(ip.off + 8..ip.off + 40)?) + (len as u32 >> 16) + (len as u32 & 0xffff) + u32::from(ip.proto)
    };
    Some(s)
}

/// Checksum validity of each layer of a frame: `None` where it does not apply or cannot be
/// judged (no such layer, a fragment, a packet cut short).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Validity {
    /// IPv4 header checksum.
    pub ip4: Option<bool>,
    /// TCP, UDP, ICMP or ICMPv6 checksum over the whole transport payload.
    pub l4: Option<bool>,
    /// The IPv4 header quoted by an ICMP error.
    pub inner_ip4: Option<bool>,
}

impl Validity {
    /// Every layer valid in `self` is valid in `out` (`names` the first that is not).
    pub fn kept_by(&self, out: &Validity) -> Result<(), &'static str> {
        let pairs = [("IPv4 header", self.ip4, out.ip4), ("transport", self.l4, out.l4), ("quoted IPv4 header", self.inner_ip4, out.inner_ip4)];
        for (name, a, b) in pairs {
            if a == Some(true) && b != Some(true) {
                return Err(name);
            }
        }
        Ok(())
    }
}

/// Whether the ICMP/ICMPv6 type is an error quoting a packet.
pub fn icmp_is_error(v4: bool, ty: u8) -> bool {
    if v4 {
        matches!(ty, 3 | 11 | 12)
    } else {
        (1..=4).contains(&ty)
    }
}

/// The checksum validity of the IP packet `ip` of `f` (see [`Validity`]).
pub fn validity(f: &[u8], ip: &Ip) -> Validity {
    let mut v = Validity::default();
    if ip.v4 {
        v.ip4 = f.get(ip.off..ip.off + ip.hlen).map(|h| fold(add(0, h)) == 0xffff);
    }
    let (l4, end) = (ip.l4(), ip.end());
    if ip.fragment || end > f.len() || l4 > end {
        return v;
    }
    let seg = &f[l4..end];
    let check_at = match ip.proto {
        TCP if seg.len() >= 20 => Some(16),
        UDP if seg.len() >= 8 => Some(6),
        ICMP | ICMPV6 if seg.len() >= 8 => Some(2),
        _ => None,
    };
    if let Some(at) = check_at {
        if ip.proto == UDP && ip.v4 && be16(seg, at) == Some(0) {
            v.l4 = Some(true);
        } else {
            let ph = if ip.proto == ICMP { Some(0) } else { pseudo(f, ip, seg.len()) };
            v.l4 = ph.map(|p| fold(add(p, seg)) == 0xffff);
        }
    }
    if (ip.proto == ICMP || ip.proto == ICMPV6) && seg.len() >= 8 && icmp_is_error(ip.v4, seg[0]) {
        if let Some(inner) = ip_at(f, l4 + 8, ip.v4, false) {
            v.inner_ip4 = f.get(inner.off..inner.off + inner.hlen).map(|h| fold(add(0, h)) == 0xffff);
        }
    }
    v
}

/// Makes lengths and checksums right: the IP length fills the frame (IPv4: an IHL below 5 or
/// past the frame becomes 5), a TCP data offset below 5 becomes 5, the UDP length and every
/// checksum (the IPv4 header's, the transport's, and the header an ICMP error quotes) are
/// recomputed. Fragments keep their transport checksum.
pub fn repair(f: &mut [u8]) {
    let Some((t, off, _)) = ether_type(f) else { return };
    let n = f.len();
    if t == ETH_P_IP && n >= off + 20 {
        f[off] = 0x40 | (f[off] & 0x0f);
        if usize::from(f[off] & 0x0f) < 5 || off + usize::from(f[off] & 0x0f) * 4 > n {
            f[off] = 0x45;
        }
        put16(f, off + 2, (n - off).min(65535) as u16);
    } else if t == ETH_P_IPV6 && n >= off + 40 {
        f[off] = 0x60 | (f[off] & 0x0f);
        put16(f, off + 4, (n - off - 40).min(65535) as u16);
    } else {
        return;
    }
    let Some(ip) = ip(f) else { return };
    repair_l4(f, &ip);
    if ip.v4 {
        put16(f, ip.off + 10, 0);
        let c = !fold(add(0, &f[ip.off..ip.off + ip.hlen]));
        put16(f, ip.off + 10, c);
    }
}

fn repair_l4(f: &mut [u8], ip: &Ip) {
    let (l4, end) = (ip.l4(), ip.end().min(f.len()));
    if ip.fragment || l4 > end {
        return;
    }
    let at = match ip.proto {
        TCP if end - l4 >= 20 => {
            if f[l4 + 12] >> 4 < 5 {
                f[l4 + 12] = 0x50 | (f[l4 + 12] & 0x0f);
            }
            16
        }
        UDP if end - l4 >= 8 => {
            put16(f, l4 + 4, (end - l4).min(65535) as u16);
            6
        }
        ICMP | ICMPV6 if end - l4 >= 8 => {
            // The quoted IPv4 header of an error first.
            if icmp_is_error(ip.v4, f[l4]) {
                if let Some(inner) = ip_at(f, l4 + 8, ip.v4, false) {
                    put16(f, inner.off + 10, 0);
                    let c = !fold(add(0, &f[inner.off..inner.off + inner.hlen]));
                    put16(f, inner.off + 10, c);
                }
            }
            2
        }
        _ => return,
    };
    put16(f, l4 + at, 0);
    let ph = if ip.proto == ICMP { Some(0) } else { pseudo(f, ip, end - l4) };
    let Some(ph) = ph else { return };
    let mut c = !fold(add(ph, &f[l4..end]));
    if ip.proto == UDP && c == 0 {
        c = 0xffff;
    }
    put16(f, l4 + at, c);
}

/// The destination (`dst`) or source address of the IP packet of `f`.
pub fn addr(f: &[u8], dst: bool) -> Option<IpAddr> {
    let ip = ip(f)?;
    addr_of(f, &ip, dst)
}

fn addr_of(f: &[u8], ip: &Ip, dst: bool) -> Option<IpAddr> {
    if ip.v4 {
        let at = ip.off + if dst { 16 } else { 12 };
        let b: [u8; 4] = f.get(at..at + 4)?.try_into().ok()?;
        Some(IpAddr::from(b))
    } else {
        let at = ip.off + if dst { 24 } else { 8 };
        let b: [u8; 16] = f.get(at..at + 16)?.try_into().ok()?;
        Some(IpAddr::from(b))
    }
}

/// Sets the destination (`dst`) or source address; false if the family differs.
pub fn set_addr(f: &mut [u8], dst: bool, a: IpAddr) -> bool {
    let Some(ip) = ip(f) else { return false };
    match (ip.v4, a) {
        (true, IpAddr::V4(a)) => {
            let at = ip.off + if dst { 16 } else { 12 };
            f[at..at + 4].copy_from_slice(&a.octets());
            true
        }
        (false, IpAddr::V6(a)) => {
            let at = ip.off + if dst { 24 } else { 8 };
            f[at..at + 16].copy_from_slice(&a.octets());
            true
        }
        _ => false,
    }
}

/// The (source, destination) ports of a TCP/UDP packet.
pub fn ports(f: &[u8]) -> Option<(u16, u16)> {
    let ip = ip(f)?;
    if ip.proto != TCP && ip.proto != UDP {
        return None;
    }
    Some((be16(f, ip.l4())?, be16(f, ip.l4() + 2)?))
}

/// Sets the destination (`dst`) or source port of a TCP/UDP packet.
pub fn set_port(f: &mut [u8], dst: bool, port: u16) {
    if let Some(ip) = ip(f) {
        if ip.proto == TCP || ip.proto == UDP {
            put16(f, ip.l4() + if dst { 2 } else { 0 }, port);
        }
    }
}

/// Sets the TCP flags byte.
pub fn set_tcp_flags(f: &mut [u8], flags: u8) {
    if let Some(ip) = ip(f) {
        if ip.proto == TCP {
            if let Some(b) = f.get_mut(ip.l4() + 13) {
                *b = flags;
            }
        }
    }
}

/// Sets the IP protocol of the header (the last next-header field for IPv6 without
/// extension headers).
pub fn set_proto(f: &mut [u8], proto: u8) {
    if let Some(ip) = ip(f) {
        let at = ip.off + if ip.v4 { 9 } else { 6 };
        if ip.v4 || ip.hlen == 40 {
            f[at] = proto;
        }
    }
}

/// Sets the IPv4 TTL / IPv6 hop limit.
pub fn set_ttl(f: &mut [u8], ttl: u8) {
    if let Some(ip) = ip(f) {
        f[ip.off + if ip.v4 { 8 } else { 7 }] = ttl;
    }
}

/// Sets the IPv4 flags and fragment offset field.
pub fn set_frag(f: &mut [u8], v: u16) {
    if let Some(ip) = ip(f) {
        if ip.v4 {
            put16(f, ip.off + 6, v);
        }
    }
}

/// Inserts a VLAN tag after the MAC addresses.
pub fn push_vlan(f: &mut Vec<u8>, tpid: u16, id: u16) {
    if f.len() >= 12 {
        let mut tag = tpid.to_be_bytes().to_vec();
        tag.extend_from_slice(&id.to_be_bytes());
        f.splice(12..12, tag);
    }
}

/// Removes the outermost VLAN tag.
pub fn pop_vlan(f: &mut Vec<u8>) {
    if f.len() >= 18 && be16(f, 12).is_some_and(|t| VLAN_TPIDS.contains(&t)) {
        f.drain(12..16);
    }
}

/// Inserts `opts` (padded to 4 bytes, at most 40) as IPv4 options.
pub fn add_ipv4_options(f: &mut Vec<u8>, opts: &[u8]) {
    let Some(ip) = ip(f) else { return };
    if !ip.v4 {
        return;
    }
    let mut o = opts.to_vec();
    o.truncate(40usize.saturating_sub(ip.hlen - 20));
    while o.len() & 3 != 0 {
        o.push(0);
    }
    let at = ip.off + ip.hlen;
    f.splice(at..at, o.iter().copied());
    f[ip.off] = 0x40 | ((ip.hlen + o.len()) / 4) as u8;
}

/// Inserts an IPv6 extension header of type `ty` (`len8` 8-octet units, or the fragment
/// header with `frag` as its offset field) right after the fixed header.
pub fn add_ipv6_ext(f: &mut Vec<u8>, ty: u8, len8: u8, frag: u16) {
    let Some(ip) = ip(f) else { return };
    if ip.v4 {
        return;
    }
    let next = f[ip.off + 6];
    let mut h = match ty {
        44 => {
            let mut h = vec![next, 0, 0, 0, 0, 0, 0, 1];
            h[2..4].copy_from_slice(&frag.to_be_bytes());
            h
        }
        51 => {
            let units = usize::from(len8.max(1));
            let mut h = vec![0u8; (units + 2) * 4];
            h[0] = next;
            h[1] = units as u8;
            h
        }
        _ => {
            let units = usize::from(len8);
            let mut h = vec![0u8; (units + 1) * 8];
            h[0] = next;
            h[1] = units as u8;
            h
        }
    };
    h[0] = next;
    let at = ip.off + 40;
    f.splice(at..at, h);
    f[ip.off + 6] = ty;
}

/// The reply a real server sends to `f` (a TCP/UDP packet to a service it was forwarded to by
/// NAT, `rs`:`rs_port`): from the real server to the client, MACs swapped.
pub fn nat_reply(f: &[u8], rs: IpAddr, rs_port: u16) -> Option<Vec<u8>> {
    let ip = ip(f)?;
    let (sport, _) = ports(f)?;
    let client = addr_of(f, &ip, false)?;
    let mut r = f.to_vec();
    swap_macs(&mut r);
    if !set_addr(&mut r, false, rs) {
        return None;
    }
    set_addr(&mut r, true, client);
    set_port(&mut r, false, rs_port);
    set_port(&mut r, true, sport);
    Some(r)
}

fn swap_macs(f: &mut [u8]) {
    if f.len() >= 12 {
        let (d, s) = f.split_at_mut(6);
        d.swap_with_slice(&mut s[..6]);
    }
}

/// An ICMP error (`v4`: type 3 code `code`; IPv6: type 1 code `code`, or type 2 "packet
/// too big" when `code` is 0xff) from `from` to `to`, quoting `quoted` (an IP packet, cut to
/// `quote_len` bytes), in an Ethernet frame with the MACs of `template`.
pub fn icmp_error(template: &[u8], from: IpAddr, to: IpAddr, quoted: &[u8], quote_len: usize, code: u8) -> Vec<u8> {
    let mut f = template.get(..12).map_or_else(|| vec![0u8; 12], <[u8]>::to_vec);
    let q = &quoted[..quoted.len().min(quote_len)];
    match (from, to) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&ETH_P_IP.to_be_bytes());
            let mut h = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, ICMP, 0, 0];
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            f.extend_from_slice(&h);
            f.extend_from_slice(&[3, code, 0, 0, 0, 0, 0x05, 0xdc]);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
            let mut h = vec![0x60, 0, 0, 0, 0, 0, ICMPV6, 64];
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            f.extend_from_slice(&h);
            if code == 0xff {
                f.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0x05, 0x00]);
            } else {
                f.extend_from_slice(&[1, code, 0, 0, 0, 0, 0, 0]);
            }
        }
        _ => return f,
    }
    f.extend_from_slice(q);
    repair(&mut f);
    f
}

/// The IP packet of `f` (from the IP header to the end of the frame).
pub fn ip_packet(f: &[u8]) -> Option<&[u8]> {
    let (_, off, _) = ether_type(f)?;
    f.get(off..)
}

/// The same packet with source and destination (addresses and ports) swapped: what the
/// other side would send back.
pub fn reversed(f: &[u8]) -> Option<Vec<u8>> {
    let ip = ip(f)?;
    let (s, d) = (addr_of(f, &ip, false)?, addr_of(f, &ip, true)?);
    let mut r = f.to_vec();
    swap_macs(&mut r);
    set_addr(&mut r, false, d);
    set_addr(&mut r, true, s);
    if let Some((sp, dp)) = ports(f) {
        set_port(&mut r, false, dp);
        set_port(&mut r, true, sp);
    }
    Some(r)
}

/// A VRRP advert frame: version 2 or 3, `vrid`, `prio`, interval (seconds for v2, centiseconds
/// for v3), the addresses `vips` and, for v2, PASS authentication `pass` (type 1) when given,
/// from `src` to the VRRP group (TTL 255), checksummed (v3 with the pseudo-header).
pub fn vrrp_advert(src: IpAddr, v3: bool, vrid: u8, prio: u8, interval: u16, vips: &[IpAddr], pass: Option<&[u8; 8]>) -> Vec<u8> {
    let mut msg = vec![if v3 { 0x31 } else { 0x21 }, vrid, prio, vips.len() as u8];
    if v3 {
        msg.extend_from_slice(&(interval & 0x0fff).to_be_bytes());
    } else {
        msg.extend_from_slice(&[u8::from(pass.is_some()), interval as u8]);
    }
    msg.extend_from_slice(&[0, 0]);
    for v in vips {
        match v {
            IpAddr::V4(a) => msg.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => msg.extend_from_slice(&a.octets()),
        }
    }
    if !v3 {
        msg.extend_from_slice(pass.unwrap_or(&[0; 8]));
    }
    let mut f = vec![0x01, 0x00, 0x5e, 0, 0, 0x12, 0x02, 0, 0, 0, 0, 0x02];
    let ip = match src {
        IpAddr::V4(s) => {
            f.extend_from_slice(&ETH_P_IP.to_be_bytes());
            let mut h = vec![0x45, 0xc0, 0, 0, 0, 0, 0, 0, 255, VRRP, 0, 0];
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&[224, 0, 0, 18]);
            h
        }
        IpAddr::V6(s) => {
            f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
            let mut h = vec![0x60, 0, 0, 0, 0, 0, VRRP, 255];
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12]);
            h
        }
    };
    f.extend_from_slice(&ip);
    let msg_off = f.len();
    f.extend_from_slice(&msg);
    repair(&mut f);
    // VRRP's checksum: v3 over the pseudo-header, v2 over the message alone.
    let sum = if v3 { self::ip(&f).and_then(|i| pseudo(&f, &i, msg.len())).unwrap_or(0) } else { 0 };
    let c = !fold(add(sum, &f[msg_off..]));
    put16(&mut f, msg_off + 6, c);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Vec<u8> {
        ka_tests::packet::Frame::tcp4("198.18.0.1", "198.18.0.2", 40000, 80, 0x02).payload(b"hello").build()
    }

    /// The builder's frames are valid at every layer; a flipped byte is seen in the layer it
    /// belongs to; `repair` makes it valid again.
    #[test]
    fn validity_and_repair() {
        let f = frame();
        let ip = ip(&f).expect("ip");
        assert_eq!(validity(&f, &ip), Validity { ip4: Some(true), l4: Some(true), inner_ip4: None });
        let mut bad = f.clone();
        bad[14 + 8] ^= 1;
        let v = validity(&bad, &ip);
        assert_eq!((v.ip4, v.l4), (Some(false), Some(true)));
        let mut bad = f.clone();
        let n = bad.len() - 1;
        bad[n] ^= 1;
        assert_eq!(validity(&bad, &ip).l4, Some(false));
        repair(&mut bad);
        assert_eq!(validity(&bad, &ip), Validity { ip4: Some(true), l4: Some(true), inner_ip4: None });
        let mut grown = f.clone();
        grown.extend_from_slice(b"more");
        repair(&mut grown);
        let gip = self::ip(&grown).expect("ip");
        assert_eq!(gip.end(), grown.len());
        assert_eq!(validity(&grown, &gip).l4, Some(true));
    }

    /// IPv6 with extension headers, ICMP errors quoting IPv4, and the VRRP adverts the
    /// builder makes all check out.
    #[test]
    fn v6_icmp_and_vrrp_frames_are_valid() {
        let mut f = ka_tests::packet::Frame::udp6("fd00:198:18::1", "fd00:198:18::2", 1, 2).payload(b"x").build();
        add_ipv6_ext(&mut f, 60, 1, 0);
        add_ipv6_ext(&mut f, 44, 0, 0);
        repair(&mut f);
        let ip = ip(&f).expect("ip");
        assert_eq!((ip.proto, ip.hlen, ip.fragment), (UDP, 40 + 8 + 16, false));
        assert_eq!(validity(&f, &ip).l4, Some(true));
        let q = frame();
        let e = icmp_error(&q, "198.18.9.9".parse().expect("a"), "198.18.0.2".parse().expect("a"), ip_packet(&q).expect("ip"), 28, 3);
        let eip = self::ip(&e).expect("ip");
        assert_eq!(validity(&e, &eip), Validity { ip4: Some(true), l4: Some(true), inner_ip4: Some(true) });
        let a = vrrp_advert("198.18.0.2".parse().expect("a"), true, 51, 150, 100, &["198.18.0.9".parse().expect("a")], None);
        let msg = &a[34..];
        let want = ka_common::vrrp::checksum(
            &[&msg[..6], &[0, 0], &msg[8..]].concat(),
            &ka_common::vrrp::PseudoHeader::V4 { src: [198, 18, 0, 2], dst: [224, 0, 0, 18] },
        );
        assert_eq!(u16::from_be_bytes([msg[6], msg[7]]), want);
        assert_eq!(reversed(&q).and_then(|r| addr(&r, true)), Some("198.18.0.1".parse().expect("a")));
        // Nothing panics on junk.
        for n in 0..64 {
            let mut j: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            if j.len() > 13 {
                j[12] = 0x86;
                j[13] = 0xdd;
            }
            repair(&mut j);
            let _ = (self::ip(&j), addr(&j, true), ports(&j), reversed(&j));
        }
    }
}
