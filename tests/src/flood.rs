//! Floods as a third host on the LAN would send them, written to an `AF_PACKET` socket with
//! `sendmmsg` as fast as the machine allows, bounded in packets and time:
//! - VRRP adverts: forged VRRPv2 adverts (TTL other than 255, a wrong password, a bad checksum,
//!   an unknown VRID, and valid-looking ones with a lower priority than the master's, from
//!   rotating sources); used by `tests/vrrp_flood.rs` and `cargo xtask bench --only flood`;
//! - new flows to a VIP ([`L4Flood`]): TCP SYNs or UDP datagrams from a million spoofed
//!   sources; used by `tests/lb_flood.rs` and `cargo xtask bench --only synflood`.
//!
//! Create the [`Sender`] on a thread inside the sending namespace
//! ([`crate::netns::Netns::enter`]).

use std::{
    io,
    net::Ipv4Addr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use crate::packet::{checksum, Frame};

/// Ethernet address of the VRRP IPv4 group 224.0.0.18.
pub const VRRP_GROUP_MAC: [u8; 6] = [0x01, 0, 0x5e, 0, 0, 0x12];

/// A kind of forged advert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Forged {
    /// Valid but for a TTL of 64 (RFC 5798 §7.1: must be 255).
    BadTtl,
    /// Valid but for the PASS password.
    WrongAuth,
    /// Valid but for the checksum.
    BadChecksum,
    /// Valid for a VRID nobody runs on the LAN.
    UnknownVrid,
    /// Valid in every respect, with a priority below the master's, from rotating sources and
    /// priorities (each advert a "change" for a naive filter).
    LowerPriority,
}

impl Forged {
    /// Every kind.
    pub const ALL: [Forged; 5] = [Forged::BadTtl, Forged::WrongAuth, Forged::BadChecksum, Forged::UnknownVrid, Forged::LowerPriority];

    /// Short name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Forged::BadTtl => "ttl 64",
            Forged::WrongAuth => "wrong password",
            Forged::BadChecksum => "bad checksum",
            Forged::UnknownVrid => "unknown VRID",
            Forged::LowerPriority => "lower priority",
        }
    }

    /// The XDP counter that counts this kind when the fast path drops it.
    pub fn xdp_counter(self) -> &'static str {
        use ka_common::{stats::Counter, vrrp::DropReason};
        match self {
            Forged::BadTtl => Counter::vrrp_drop(DropReason::BadTtl),
            Forged::WrongAuth => Counter::vrrp_drop(DropReason::AuthFailure),
            Forged::BadChecksum => Counter::vrrp_drop(DropReason::BadChecksum),
            Forged::UnknownVrid => Counter::vrrp_drop(DropReason::VridMismatch),
            Forged::LowerPriority => Counter::VrrpLowerPrioLimited,
        }
        .name()
    }
}

/// The VRRPv2 instance under attack (PASS authentication, IPv4 multicast, one VIP).
#[derive(Clone, Debug)]
pub struct Target {
    /// Its VRID.
    pub vrid: u8,
    /// Its PASS password (at most 8 bytes).
    pub password: Vec<u8>,
    /// Its advert interval, seconds.
    pub adver_int: u8,
    /// The VIP it advertises.
    pub vip: Ipv4Addr,
    /// The master's priority (lower-priority adverts stay below it).
    pub master_priority: u8,
    /// The subnet of forged sources (`a.b.c.0/24`; hosts 10-209 are used).
    pub subnet: [u8; 3],
}

/// A VRRPv2 advert in an Ethernet frame to 224.0.0.18, valid for `target` (checksum, PASS
/// password, interval, one VIP) with `priority`, sent from `src` with `ttl`.
pub fn advert_v2(target: &Target, src: Ipv4Addr, priority: u8, ttl: u8) -> Vec<u8> {
    let mut msg = vec![0x21, target.vrid, priority, 1, 1, target.adver_int, 0, 0];
    msg.extend_from_slice(&target.vip.octets());
    let mut pass = [0u8; 8];
    let n = target.password.len().min(8);
    pass[..n].copy_from_slice(&target.password[..n]);
    msg.extend_from_slice(&pass);
    let c = checksum(&[&msg]);
    msg[6..8].copy_from_slice(&c.to_be_bytes());
    let mut f = Frame::raw4(&src.to_string(), "224.0.0.18", 112).ttl(ttl).payload(&msg);
    f.eth_dst = VRRP_GROUP_MAC;
    f.build()
}

/// Offset of the VRRP message in an [`advert_v2`] frame (Ethernet 14 + IPv4 20).
const VRRP_AT: usize = 34;

/// The `n`th forged advert of `kind` against `target`. Sources rotate over 200 hosts of the
/// subnet; lower-priority adverts also rotate their priority below the master's.
pub fn forged(target: &Target, kind: Forged, n: u32) -> Vec<u8> {
    let [a, b, c] = target.subnet;
    let src = Ipv4Addr::new(a, b, c, 10 + (n % 200) as u8);
    let below = u32::from(target.master_priority.saturating_sub(1).max(1));
    let prio = 1 + (n % below) as u8;
    match kind {
        Forged::BadTtl => advert_v2(target, src, prio, 64),
        Forged::WrongAuth => {
            let t = Target { password: b"forged".to_vec(), ..target.clone() };
            advert_v2(&t, src, prio, 255)
        }
        Forged::BadChecksum => {
            let mut f = advert_v2(target, src, prio, 255);
            f[VRRP_AT + 6] ^= 0x5a;
            f
        }
        Forged::UnknownVrid => {
            let t = Target { vrid: target.vrid.wrapping_add(1 + (n % 8) as u8).max(1), ..target.clone() };
            advert_v2(&t, src, prio, 255)
        }
        Forged::LowerPriority => advert_v2(target, src, prio, 255),
    }
}

/// An `AF_PACKET` socket that writes whole Ethernet frames out of one interface.
#[derive(Debug)]
pub struct Sender {
    fd: OwnedFd,
}

impl Sender {
    /// Opens the socket on `ifname` in the calling thread's network namespace (bypassing the
    /// qdisc, as a packet generator does).
    ///
    /// # Errors
    /// The socket cannot be opened or bound.
    pub fn open(ifname: &str) -> io::Result<Sender> {
        // Protocol 0: this socket sends only, it receives nothing.
        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let ifindex = nix::net::if_::if_nametoindex(ifname).map_err(io::Error::from)?;
        // SAFETY: a zeroed sockaddr_ll is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is valid for its size.
        let rc = unsafe { libc::bind(fd.as_raw_fd(), (&raw const sll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as u32) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        // SAFETY: an int option of the right size. Best effort: without it frames go through
        // the (noqueue) qdisc of a veth anyway.
        unsafe {
            libc::setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, (&raw const one).cast(), std::mem::size_of::<libc::c_int>() as u32);
        }
        Ok(Sender { fd })
    }

    /// Sends `frames` with one `sendmmsg`; returns how many went out.
    ///
    /// # Errors
    /// `sendmmsg` fails before sending any.
    pub fn send_batch(&self, frames: &[&[u8]]) -> io::Result<usize> {
        let mut iov: Vec<libc::iovec> = frames.iter().map(|f| libc::iovec { iov_base: f.as_ptr() as *mut libc::c_void, iov_len: f.len() }).collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: a zeroed mmsghdr is valid; the iovec outlives the call.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: msgs and the buffers they point to are valid for the call.
        let n = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), msgs.len() as u32, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

/// Bounds of a [`flood`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Frames to send in all.
    pub packets: u64,
    /// Longest the flood may last.
    pub time: Duration,
}

/// What a [`flood`] sent.
#[derive(Clone, Debug, Default)]
pub struct Sent {
    /// Frames sent, by index in the list given.
    pub per_frame: Vec<u64>,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Sent {
    /// Frames sent in all.
    pub fn total(&self) -> u64 {
        self.per_frame.iter().sum()
    }

    /// Frames per second.
    pub fn rate(&self) -> f64 {
        self.total() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends `frames` round-robin through `sender` in batches of 64 until `limits` is reached or
/// `stop` is set.
///
/// # Errors
/// A send fails (the frames sent so far are lost to the report).
pub fn flood(sender: &Sender, frames: &[Vec<u8>], limits: Limits, stop: &AtomicBool) -> io::Result<Sent> {
    const BATCH: usize = 64;
    let mut sent = Sent { per_frame: vec![0; frames.len()], elapsed: Duration::ZERO };
    if frames.is_empty() {
        return Ok(sent);
    }
    let start = Instant::now();
    let mut next = 0usize;
    let mut total = 0u64;
    while total < limits.packets && start.elapsed() < limits.time && !stop.load(Ordering::Relaxed) {
        let want = BATCH.min(usize::try_from(limits.packets - total).unwrap_or(BATCH));
        let batch: Vec<&[u8]> = (0..want).map(|k| frames[(next + k) % frames.len()].as_slice()).collect();
        let n = match sender.send_batch(&batch) {
            Ok(n) => n,
            // The interface's queue is full (ENOBUFS): try again.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => 0,
            Err(e) => return Err(e),
        };
        for k in 0..n {
            sent.per_frame[(next + k) % frames.len()] += 1;
        }
        next = (next + n) % frames.len();
        total += n as u64;
    }
    sent.elapsed = start.elapsed();
    Ok(sent)
}

/// What a flood of new flows to a VIP sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Kind {
    /// TCP SYNs (a SYN flood).
    Syn,
    /// UDP datagrams of 16 bytes (a UDP flood).
    Udp,
}

/// A flood of new flows to a VIP, as a botnet (or spoofing host) on the LAN sends it: TCP SYNs
/// or UDP datagrams, each from a source address of `sources` consecutive ones from
/// `src_base` (every one in turn, in a scattered order) and a scattered source port, with valid
/// IPv4 and TCP/UDP checksums. The sources exist only on the test bridge: nothing routes them
/// anywhere.
#[derive(Clone, Debug)]
pub struct L4Flood {
    /// SYNs or UDP datagrams.
    pub kind: L4Kind,
    /// The director's MAC (the VIP's owner).
    pub dst_mac: [u8; 6],
    /// The sending interface's MAC.
    pub src_mac: [u8; 6],
    /// The VIP.
    pub vip: Ipv4Addr,
    /// The virtual server's port.
    pub dport: u16,
    /// The first source address.
    pub src_base: Ipv4Addr,
    /// Source addresses (a power of two: frame `n` comes from `src_base + (n × odd mod sources)`,
    /// so `sources` frames come from `sources` distinct addresses).
    pub sources: u32,
}

/// Offset of the transport header in an [`L4Flood`] frame (Ethernet 14 + IPv4 20).
const L4_AT: usize = 34;

impl L4Flood {
    /// The first frame; [`L4Flood::write`] patches it for each `n`.
    pub fn template(&self) -> Vec<u8> {
        let (src, dst) = (self.src_base.to_string(), self.vip.to_string());
        let mut f = match self.kind {
            L4Kind::Syn => Frame::tcp4(&src, &dst, 1024, self.dport, 0x02),
            L4Kind::Udp => Frame::udp4(&src, &dst, 1024, self.dport).payload(&[0x5a; 16]),
        };
        f.eth_dst = self.dst_mac;
        f.eth_src = self.src_mac;
        f.build()
    }

    /// The source address and port of frame `n`.
    pub fn source(&self, n: u64) -> (Ipv4Addr, u16) {
        let sources = u64::from(self.sources.max(1));
        // An odd multiplier permutes 0..sources when sources is a power of two.
        let i = n.wrapping_mul(0x9e37_79b9) % sources;
        let addr = u32::from(self.src_base).wrapping_add(i as u32);
        let port = 1024 + (n.wrapping_mul(0x85eb_ca6b) >> 7) % 64_000;
        (Ipv4Addr::from(addr), port as u16)
    }

    /// Turns `frame` (a copy of [`L4Flood::template`]) into frame `n`: its source address and
    /// port, and both checksums.
    pub fn write(&self, n: u64, frame: &mut [u8]) {
        let (src, sport) = self.source(n);
        frame[26..30].copy_from_slice(&src.octets());
        frame[24..26].copy_from_slice(&[0, 0]);
        let c = checksum(&[&frame[14..34]]);
        frame[24..26].copy_from_slice(&c.to_be_bytes());
        frame[L4_AT..L4_AT + 2].copy_from_slice(&sport.to_be_bytes());
        let at = L4_AT + if self.kind == L4Kind::Syn { 16 } else { 6 };
        frame[at..at + 2].copy_from_slice(&[0, 0]);
        let l4_len = (frame.len() - L4_AT) as u16;
        let proto = if self.kind == L4Kind::Syn { 6 } else { 17 };
        let pseudo = [&frame[26..34], &[0, proto][..], &l4_len.to_be_bytes()[..]].concat();
        let mut c = checksum(&[&pseudo, &frame[L4_AT..]]);
        if c == 0 && proto == 17 {
            c = 0xffff;
        }
        frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Sends the frames of `spec` ([`L4Flood::write`], from frame `first` on) through `sender`
/// in batches of 64 until `limits` is reached or `stop` is set. `per_frame` of the answer
/// holds one count: the frames sent.
///
/// # Errors
/// A send fails (other than a full queue, which is retried).
pub fn flood_l4(sender: &Sender, spec: &L4Flood, first: u64, limits: Limits, stop: &AtomicBool) -> io::Result<Sent> {
    const BATCH: usize = 64;
    let template = spec.template();
    let mut bufs: Vec<Vec<u8>> = vec![template; BATCH];
    let start = Instant::now();
    let mut total = 0u64;
    while total < limits.packets && start.elapsed() < limits.time && !stop.load(Ordering::Relaxed) {
        let want = BATCH.min(usize::try_from(limits.packets - total).unwrap_or(BATCH));
        for (k, b) in bufs.iter_mut().take(want).enumerate() {
            spec.write(first + total + k as u64, b);
        }
        let batch: Vec<&[u8]> = bufs.iter().take(want).map(Vec::as_slice).collect();
        let n = match sender.send_batch(&batch) {
            Ok(n) => n,
            // The interface's queue is full (ENOBUFS): try again.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => 0,
            Err(e) => return Err(e),
        };
        total += n as u64;
    }
    Ok(Sent { per_frame: vec![total], elapsed: start.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target { vrid: 91, password: b"pw".to_vec(), adver_int: 1, vip: Ipv4Addr::new(198, 18, 12, 100), master_priority: 150, subnet: [198, 18, 12] }
    }

    fn vrrp(f: &[u8]) -> &[u8] {
        &f[VRRP_AT..]
    }

    /// Each kind spoils exactly what its name says: the valid advert checksums to zero, names
    /// the VRID, the password and TTL 255; each forged one differs in its own field only.
    #[test]
    fn forged_kinds_spoil_one_field() {
        let t = target();
        let valid = advert_v2(&t, Ipv4Addr::new(198, 18, 12, 10), 1, 255);
        assert_eq!(checksum(&[vrrp(&valid)]), 0);
        assert_eq!(&valid[..6], &VRRP_GROUP_MAC);
        assert_eq!(vrrp(&valid)[..6], [0x21, 91, 1, 1, 1, 1]);
        assert_eq!(&vrrp(&valid)[12..14], b"pw");
        assert_eq!(forged(&t, Forged::LowerPriority, 0), valid);
        let ttl = forged(&t, Forged::BadTtl, 0);
        assert_eq!((ttl[22], vrrp(&ttl)), (64, vrrp(&valid)));
        let auth = forged(&t, Forged::WrongAuth, 0);
        assert_eq!((checksum(&[vrrp(&auth)]), &vrrp(&auth)[12..18]), (0, &b"forged"[..]));
        assert_ne!(checksum(&[vrrp(&forged(&t, Forged::BadChecksum, 0))]), 0);
        let vrid = forged(&t, Forged::UnknownVrid, 3);
        assert_eq!((checksum(&[vrrp(&vrid)]), vrrp(&vrid)[1]), (0, 95));
    }

    /// Lower-priority adverts rotate their source and priority, always below the master's.
    #[test]
    fn lower_priority_rotates_below_the_master() {
        let t = target();
        let frames: Vec<Vec<u8>> = (0..1000).map(|n| forged(&t, Forged::LowerPriority, n)).collect();
        assert!(frames.iter().all(|f| (1..150).contains(&vrrp(f)[2])));
        let sources: std::collections::BTreeSet<&[u8]> = frames.iter().map(|f| &f[26..30]).collect();
        assert_eq!(sources.len(), 200);
    }

    fn l4(kind: L4Kind) -> L4Flood {
        L4Flood {
            kind,
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_mac: [2, 0, 0, 0, 0, 2],
            vip: Ipv4Addr::new(198, 18, 12, 100),
            dport: 80,
            src_base: Ipv4Addr::new(10, 64, 0, 0),
            sources: 1 << 12,
        }
    }

    /// Frame `n` of a flood is the frame the packet builder makes for its source: same bytes,
    /// so both checksums are right; `sources` frames come from `sources` distinct addresses.
    #[test]
    fn l4_frames_are_valid_and_cover_the_sources() {
        for kind in [L4Kind::Syn, L4Kind::Udp] {
            let spec = l4(kind);
            let mut f = spec.template();
            let mut seen = std::collections::HashSet::new();
            for n in 0..u64::from(spec.sources) {
                spec.write(n, &mut f);
                let (src, sport) = spec.source(n);
                seen.insert(src);
                if n % 97 == 0 {
                    let mut want = match kind {
                        L4Kind::Syn => Frame::tcp4(&src.to_string(), "198.18.12.100", sport, 80, 0x02),
                        L4Kind::Udp => Frame::udp4(&src.to_string(), "198.18.12.100", sport, 80).payload(&[0x5a; 16]),
                    };
                    want.eth_dst = spec.dst_mac;
                    want.eth_src = spec.src_mac;
                    assert_eq!(f, want.build(), "{kind:?} frame {n}");
                }
            }
            assert_eq!(seen.len(), spec.sources as usize, "{kind:?}");
        }
    }
}
