//! Raw IP protocol 112 sockets, one per (interface, address family), as keepalived opens them
//! (RFC 3768 §5.1, RFC 5798 §5.1): bound to the device, TTL/hop limit 255 on every send, every
//! multicast group its instances use joined on that interface (none for unicast peers only),
//! each advert sent from its own instance's source address (IP_PKTINFO / IPV6_PKTINFO), and
//! each received packet's TTL, destination and source reported so the caller can check them.
//!
//! Instances with keepalived's `auth_type AH` (IPv4 only) use raw IP protocol 51 sockets
//! instead ([`VrrpSocket::open_ah`]), as keepalived does: the ICV covers the IPv4 header, so
//! adverts are sent whole with `IP_HDRINCL` ([`ka_common::vrrp::ah::encode_ah_advert`]) and
//! received whole, header included, for [`ka_common::vrrp::ah::AhAdvert::decode`].

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use ka_common::{
    vrrp::VRRP_TTL,
    wire::{IPPROTO_AH, IPPROTO_VRRP},
};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage};
use tokio::io::unix::AsyncFd;

/// One received VRRP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Source address (the sender's primary address; link-local for IPv6).
    pub src: IpAddr,
    /// Destination address (the group or our unicast address).
    pub dst: IpAddr,
    /// TTL (IPv4) or hop limit (IPv6) it arrived with.
    pub ttl: u8,
    /// Start of the VRRP message in the receive buffer (after the IPv4 header); 0 on AH
    /// sockets, whose packets are handed over whole.
    pub offset: usize,
    /// Length of the VRRP message (of the whole IPv4 packet on AH sockets).
    pub len: usize,
}

/// One advert to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The VRRP message, checksummed; on AH sockets the whole IPv4 packet.
    pub data: Vec<u8>,
    /// Destination (group or unicast peer).
    pub dst: IpAddr,
    /// Source address (the instance's `unicast_src_ip` or primary address); `None`: the
    /// socket's default (on AH sockets the source is in `data`'s IPv4 header).
    pub src: Option<IpAddr>,
}

/// A raw VRRP socket on one interface.
#[derive(Debug)]
pub struct VrrpSocket {
    fd: AsyncFd<OwnedFd>,
    v6: bool,
    ifindex: u32,
    src: Option<IpAddr>,
    /// IP protocol 51 with `IP_HDRINCL`: whole IPv4 packets in both directions.
    ah: bool,
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: value points to a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(fd, level, name, (value as *const T).cast(), std::mem::size_of::<T>() as libc::socklen_t)
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn ctx(e: io::Error, what: &str, ifname: &str) -> io::Error {
    io::Error::new(e.kind(), format!("VRRP socket on {ifname}: {what}: {e}"))
}

impl VrrpSocket {
    /// Opens a socket for `ifname` (index `ifindex`). `bind_addr` is the source address of
    /// our adverts (unicast_src_ip, or the interface's primary address; for IPv6 a link-local
    /// address); `None` lets the kernel choose. `group` is the multicast group to join, `None` for unicast-only instances.
    ///
    /// # Errors
    /// Any socket call fails (the error names the interface and the call).
    pub fn open(ifname: &str, ifindex: u32, bind_addr: Option<IpAddr>, group: Option<IpAddr>, v6: bool) -> io::Result<VrrpSocket> {
        Self::open_proto(ifname, ifindex, bind_addr, group, v6, false)
    }

    /// Opens an IPv4 socket of IP protocol 51 (IPsec AH) for `ifname`, for instances with
    /// `auth_type AH` (keepalived opens one likewise): adverts go out whole, IPv4 header
    /// included (`IP_HDRINCL`, the header being covered by the ICV), and every AH packet
    /// arriving on the interface is received whole. `group` as for [`VrrpSocket::open`].
    ///
    /// # Errors
    /// Any socket call fails (the error names the interface and the call).
    pub fn open_ah(ifname: &str, ifindex: u32, group: Option<IpAddr>) -> io::Result<VrrpSocket> {
        let sock = Self::open_proto(ifname, ifindex, None, group, false, true)?;
        let one: libc::c_int = 1;
        setsockopt(sock.fd.get_ref().as_raw_fd(), libc::IPPROTO_IP, libc::IP_HDRINCL, &one)
            .map_err(|e| ctx(e, "IP_HDRINCL", ifname))?;
        Ok(sock)
    }

    /// Whether this is an AH socket ([`VrrpSocket::open_ah`]).
    pub fn is_ah(&self) -> bool {
        self.ah
    }

    fn open_proto(ifname: &str, ifindex: u32, bind_addr: Option<IpAddr>, group: Option<IpAddr>, v6: bool, ah: bool) -> io::Result<VrrpSocket> {
        let domain = if v6 { libc::AF_INET6 } else { libc::AF_INET };
        let proto = if ah { IPPROTO_AH } else { IPPROTO_VRRP };
        // SAFETY: plain socket(2) call.
        let raw = unsafe {
            libc::socket(domain, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, i32::from(proto))
        };
        if raw < 0 {
            return Err(ctx(io::Error::last_os_error(), "socket", ifname));
        }
        // SAFETY: raw is a fresh, owned descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let r = fd.as_raw_fd();
        let name = ifname.as_bytes();
        // SAFETY: name is a valid buffer of the given length.
        let rc = unsafe {
            libc::setsockopt(r, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, name.as_ptr().cast(), name.len() as libc::socklen_t)
        };
        if rc < 0 {
            return Err(ctx(io::Error::last_os_error(), "SO_BINDTODEVICE", ifname));
        }
        // A roomy receive queue (keepalived's kernel_rx_buf_size idea): bursts of adverts,
        // valid or not, wait for the next drain instead of being dropped by the kernel.
        let rcvbuf: libc::c_int = 4 << 20;
        if setsockopt(r, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &rcvbuf).is_err() {
            let _ = setsockopt(r, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf);
        }
        let ttl = i32::from(VRRP_TTL);
        let one: libc::c_int = 1;
        let zero: libc::c_int = 0;
        if v6 {
            setsockopt(r, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &ttl).map_err(|e| ctx(e, "IPV6_MULTICAST_HOPS", ifname))?;
            setsockopt(r, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &ttl).map_err(|e| ctx(e, "IPV6_UNICAST_HOPS", ifname))?;
            setsockopt(r, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, &zero).map_err(|e| ctx(e, "IPV6_MULTICAST_LOOP", ifname))?;
            setsockopt(r, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, &one).map_err(|e| ctx(e, "IPV6_RECVHOPLIMIT", ifname))?;
            setsockopt(r, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, &one).map_err(|e| ctx(e, "IPV6_RECVPKTINFO", ifname))?;
            let idx = ifindex as libc::c_int;
            setsockopt(r, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, &idx).map_err(|e| ctx(e, "IPV6_MULTICAST_IF", ifname))?;
            if let Some(IpAddr::V6(g)) = group {
                let mreq = libc::ipv6_mreq { ipv6mr_multiaddr: libc::in6_addr { s6_addr: g.octets() }, ipv6mr_interface: ifindex };
                setsockopt(r, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &mreq).map_err(|e| ctx(e, "join group", ifname))?;
            }
        } else {
            setsockopt(r, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &ttl).map_err(|e| ctx(e, "IP_MULTICAST_TTL", ifname))?;
            setsockopt(r, libc::IPPROTO_IP, libc::IP_TTL, &ttl).map_err(|e| ctx(e, "IP_TTL", ifname))?;
            setsockopt(r, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, &zero).map_err(|e| ctx(e, "IP_MULTICAST_LOOP", ifname))?;
            // Only the groups joined on this socket, not every group of the host.
            setsockopt(r, libc::IPPROTO_IP, libc::IP_MULTICAST_ALL, &zero).map_err(|e| ctx(e, "IP_MULTICAST_ALL", ifname))?;
            let mreqn = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr { s_addr: 0 },
                imr_address: libc::in_addr { s_addr: 0 },
                imr_ifindex: ifindex as libc::c_int,
            };
            setsockopt(r, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreqn).map_err(|e| ctx(e, "IP_MULTICAST_IF", ifname))?;
            if let Some(IpAddr::V4(g)) = group {
                let m = libc::ip_mreqn { imr_multiaddr: libc::in_addr { s_addr: u32::from(g).to_be() }, ..mreqn };
                setsockopt(r, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &m).map_err(|e| ctx(e, "join group", ifname))?;
            }
        }
        // SAFETY: OwnedFd always returns the descriptor it owns, which stays open until the
        // AsyncFd drops it.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| ctx(e.into(), "register with tokio", ifname))?;
        // The source address is not bound (a raw socket bound to an address only receives
        // packets sent to that address, which would lose the group's); it is set per send
        // with IP_PKTINFO / IPV6_PKTINFO instead.
        Ok(VrrpSocket { fd, v6, ifindex, src: bind_addr, ah })
    }

    /// Sets the socket's `SO_RCVBUF` to `bytes` (`vrrp_rx_bufs_policy`, `kernel_rx_buf_size`:
    /// keepalived sets it plainly, so the kernel caps it at `net.core.rmem_max`).
    ///
    /// # Errors
    /// The kernel refuses it.
    pub fn set_rcvbuf(&self, bytes: u32) -> io::Result<()> {
        let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        setsockopt(self.fd.get_ref().as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &v)
    }

    /// Joins one more multicast group on the socket's interface (an instance's `mcast_dst_ip`).
    ///
    /// # Errors
    /// The group is of the other family, or the kernel refuses the membership.
    pub fn join(&self, group: IpAddr) -> io::Result<()> {
        let r = self.fd.get_ref().as_raw_fd();
        match (group, self.v6) {
            (IpAddr::V6(g), true) => {
                let mreq = libc::ipv6_mreq { ipv6mr_multiaddr: libc::in6_addr { s6_addr: g.octets() }, ipv6mr_interface: self.ifindex };
                setsockopt(r, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &mreq)
            }
            (IpAddr::V4(g), false) => {
                let m = libc::ip_mreqn {
                    imr_multiaddr: libc::in_addr { s_addr: u32::from(g).to_be() },
                    imr_address: libc::in_addr { s_addr: 0 },
                    imr_ifindex: self.ifindex as libc::c_int,
                };
                setsockopt(r, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &m)
            }
            _ => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("group {group} is not of the socket's family"))),
        }
        .map_err(|e| io::Error::new(e.kind(), format!("joining {group} on ifindex {}: {e}", self.ifindex)))
    }

    /// Makes the socket send-only: a socket filter drops every packet it would receive (the
    /// VMAC's send socket, whose adverts are received on the base interface's socket).
    ///
    /// # Errors
    /// The kernel refuses the filter.
    pub fn discard_input(&self) -> io::Result<()> {
        // Classic BPF "ret #0": accept nothing.
        let mut insn = [libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0 }];
        let prog = libc::sock_fprog { len: 1, filter: insn.as_mut_ptr() };
        setsockopt(self.fd.get_ref().as_raw_fd(), libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
            .map_err(|e| io::Error::new(e.kind(), format!("SO_ATTACH_FILTER on ifindex {}: {e}", self.ifindex)))
    }

    /// Interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sends one VRRP message (already checksummed) to `dst`.
    ///
    /// # Errors
    /// The send fails (a full buffer is retried when the socket is writable).
    pub async fn send_to(&self, msg: &[u8], dst: IpAddr) -> io::Result<()> {
        let sa = match dst {
            IpAddr::V4(a) => SockaddrStorage::from(SocketAddrV4::new(a, 0)),
            IpAddr::V6(a) => {
                let scope = if a.is_multicast() || a.is_unicast_link_local() { self.ifindex } else { 0 };
                SockaddrStorage::from(SocketAddrV6::new(a, 0, 0, scope))
            }
        };
        let pi4 = match self.src {
            Some(IpAddr::V4(a)) => Some(libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr { s_addr: u32::from(a).to_be() },
                ipi_addr: libc::in_addr { s_addr: 0 },
            }),
            _ => None,
        };
        let pi6 = match self.src {
            Some(IpAddr::V6(a)) => Some(libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr { s6_addr: a.octets() },
                ipi6_ifindex: self.ifindex,
            }),
            _ => None,
        };
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| {
                let iov = [io::IoSlice::new(msg)];
                let cmsg: Vec<ControlMessage<'_>> = match (&pi4, &pi6) {
                    (Some(p), _) => vec![ControlMessage::Ipv4PacketInfo(p)],
                    (_, Some(p)) => vec![ControlMessage::Ipv6PacketInfo(p)],
                    _ => vec![],
                };
                nix::sys::socket::sendmsg(fd.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), Some(&sa))
                    .map_err(io::Error::from)
            }) {
                Ok(res) => return res.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends several messages with one `sendmmsg(2)` call per batch (adverts of many instances
    /// due at the same tick). Returns how many were sent.
    ///
    /// # Errors
    /// The first send error.
    pub async fn send_batch(&self, msgs: &[Outgoing]) -> io::Result<usize> {
        const MAX: usize = 64;
        let mut sent = 0;
        while sent < msgs.len() {
            let chunk = &msgs[sent..(sent + MAX).min(msgs.len())];
            let n = loop {
                let mut guard = self.fd.writable().await?;
                match guard.try_io(|fd| self.sendmmsg_now(fd.as_raw_fd(), chunk)) {
                    Ok(res) => break res?,
                    Err(_would_block) => continue,
                }
            };
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "sendmmsg sent nothing"));
            }
            sent += n;
        }
        Ok(sent)
    }

    /// The control message setting `src` as the source address: (level, type, payload).
    fn pktinfo(&self, src: Option<IpAddr>) -> (i32, i32, Vec<u8>) {
        match src {
            Some(IpAddr::V4(a)) => {
                let pi = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr { s_addr: u32::from(a).to_be() },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                // SAFETY: in_pktinfo is plain old data.
                (libc::IPPROTO_IP, libc::IP_PKTINFO, unsafe { std::slice::from_raw_parts((&raw const pi).cast::<u8>(), std::mem::size_of_val(&pi)) }.to_vec())
            }
            Some(IpAddr::V6(a)) => {
                let pi = libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: a.octets() }, ipi6_ifindex: self.ifindex };
                // SAFETY: in6_pktinfo is plain old data.
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, unsafe { std::slice::from_raw_parts((&raw const pi).cast::<u8>(), std::mem::size_of_val(&pi)) }.to_vec())
            }
            None => (0, 0, Vec::new()),
        }
    }

    fn sendmmsg_now(&self, fd: RawFd, chunk: &[Outgoing]) -> io::Result<usize> {
        // One control message per message: its own source address (instances sharing the
        // socket may have different ones).
        let mut controls: Vec<[u64; 8]> = vec![[0u64; 8]; chunk.len()];
        let mut spaces: Vec<usize> = Vec::with_capacity(chunk.len());
        for (o, control) in chunk.iter().zip(controls.iter_mut()) {
            let (level, kind, payload) = self.pktinfo(o.src.or(self.src));
            if payload.is_empty() {
                spaces.push(0);
                continue;
            }
            // SAFETY: CMSG_SPACE/CMSG_LEN are pure computations.
            let (space, len) = unsafe { (libc::CMSG_SPACE(payload.len() as u32) as usize, libc::CMSG_LEN(payload.len() as u32) as usize) };
            // SAFETY: control is 64 bytes, aligned for cmsghdr, and space <= 64 for both
            // pktinfo kinds; the header and data are written inside it.
            unsafe {
                let h = control.as_mut_ptr().cast::<libc::cmsghdr>();
                (*h).cmsg_level = level;
                (*h).cmsg_type = kind;
                (*h).cmsg_len = len as _;
                std::ptr::copy_nonoverlapping(payload.as_ptr(), libc::CMSG_DATA(h), payload.len());
            }
            spaces.push(space);
        }
        let mut addrs: Vec<libc::sockaddr_in6> = Vec::with_capacity(chunk.len());
        let mut iovs: Vec<libc::iovec> = Vec::with_capacity(chunk.len());
        for Outgoing { data: msg, dst, .. } in chunk {
            // SAFETY: zeroed sockaddr_in6 is valid; it is large enough for a sockaddr_in too.
            let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            match dst {
                IpAddr::V4(a) => {
                    let sin = (&raw mut sa).cast::<libc::sockaddr_in>();
                    // SAFETY: sockaddr_in fits inside sockaddr_in6.
                    unsafe {
                        (*sin).sin_family = libc::AF_INET as u16;
                        (*sin).sin_addr = libc::in_addr { s_addr: u32::from(*a).to_be() };
                    }
                }
                IpAddr::V6(a) => {
                    sa.sin6_family = libc::AF_INET6 as u16;
                    sa.sin6_addr = libc::in6_addr { s6_addr: a.octets() };
                    if a.is_multicast() || a.is_unicast_link_local() {
                        sa.sin6_scope_id = self.ifindex;
                    }
                }
            }
            addrs.push(sa);
            iovs.push(libc::iovec { iov_base: msg.as_ptr() as *mut libc::c_void, iov_len: msg.len() });
        }
        let salen = if self.v6 { std::mem::size_of::<libc::sockaddr_in6>() } else { std::mem::size_of::<libc::sockaddr_in>() };
        let mut hdrs: Vec<libc::mmsghdr> = (0..chunk.len())
            .map(|i| {
                // SAFETY: zeroed msghdr is valid; pointers set below outlive the call.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = (&raw mut addrs[i]).cast();
                h.msg_hdr.msg_namelen = salen as u32;
                h.msg_hdr.msg_iov = &raw mut iovs[i];
                h.msg_hdr.msg_iovlen = 1;
                if spaces[i] > 0 {
                    h.msg_hdr.msg_control = controls[i].as_mut_ptr().cast();
                    h.msg_hdr.msg_controllen = spaces[i] as _;
                }
                h
            })
            .collect();
        // SAFETY: hdrs, addrs, iovs and control live across the call.
        let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as u32, 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Waits until the socket is readable, then drains up to `max` queued packets without
    /// waiting again, appending `(metadata, VRRP message)` to `out`. One wake-up serves every
    /// packet that arrived meanwhile.
    ///
    /// # Errors
    /// A receive error other than "nothing more queued".
    pub async fn recv_batch(&self, scratch: &mut RxScratch, out: &mut Vec<(Received, Vec<u8>)>, max: usize) -> io::Result<()> {
        let mut guard = self.fd.readable().await?;
        if !self.v6 {
            // IPv4: every packet carries its own header, so no control messages are needed and
            // one recvmmsg(2) takes up to RX_BATCH packets.
            let bufs = &mut scratch.0;
            let mut taken = 0;
            while taken < max {
                match guard.try_io(|fd| recvmmsg_now(fd.as_raw_fd(), bufs)) {
                    Ok(Ok(lens)) => {
                        for (i, len) in lens.iter().enumerate() {
                            if let Ok(r) = parse_v4(&bufs[i], *len, self.ah) {
                                let msg = bufs[i].get(r.offset..r.offset + r.len).map(<[u8]>::to_vec).unwrap_or_default();
                                out.push((r, msg));
                            }
                        }
                        taken += lens.len();
                        if lens.len() < RX_BATCH {
                            break;
                        }
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => break,
                }
            }
            return Ok(());
        }
        let mut buf = [0u8; 65536];
        for _ in 0..max {
            match guard.try_io(|fd| recv_now(fd.as_raw_fd(), &mut buf, self.v6, self.ah)) {
                Ok(Ok(r)) => {
                    let msg = buf.get(r.offset..r.offset + r.len).map(<[u8]>::to_vec).unwrap_or_default();
                    out.push((r, msg));
                }
                // A malformed IPv4 header: skip it, keep draining.
                Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {}
                Ok(Err(e)) => return Err(e),
                // Drained: readiness is cleared, the next call waits.
                Err(_would_block) => break,
            }
        }
        Ok(())
    }

    /// Waits for one packet and returns where its VRRP message lies in `buf`.
    ///
    /// # Errors
    /// The receive fails, or (IPv4) the packet is shorter than its IP header.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| recv_now(fd.as_raw_fd(), buf, self.v6, self.ah)) {
                Ok(res) => return res,
                Err(_would_block) => continue,
            }
        }
    }
}

/// Receive buffers reused across [`VrrpSocket::recv_batch`] calls.
#[derive(Debug)]
pub struct RxScratch(Vec<[u8; RX_BUF]>);

impl RxScratch {
    /// Buffers for one batch.
    pub fn new() -> RxScratch {
        RxScratch(vec![[0u8; RX_BUF]; RX_BATCH])
    }
}

impl Default for RxScratch {
    fn default() -> Self {
        Self::new()
    }
}

/// Packets taken per recvmmsg(2) call.
const RX_BATCH: usize = 32;
/// Receive buffer per packet: the largest VRRP message plus a full IPv4 header and an AH header
/// (longer packets arrive truncated and fail validation as too long).
const RX_BUF: usize = ka_common::vrrp::VRRP_MAX_LEN + 60 + ka_common::vrrp::ah::AH_LEN;

/// Receives up to `bufs.len()` IPv4 packets without blocking; returns their lengths.
fn recvmmsg_now(fd: RawFd, bufs: &mut [[u8; RX_BUF]]) -> io::Result<Vec<usize>> {
    let mut iovs: Vec<libc::iovec> =
        bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }).collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: a zeroed mmsghdr is valid; the iovec outlives the call.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: hdrs and the buffers they point to live across the call.
    let n = unsafe { libc::recvmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as u32, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(hdrs.iter().take(n as usize).map(|h| h.msg_len as usize).collect())
}

fn recv_now(fd: RawFd, buf: &mut [u8], v6: bool, whole: bool) -> io::Result<Received> {
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = nix::sys::socket::recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty())
        .map_err(io::Error::from)?;
    let len = msg.bytes;
    let src_sa = msg.address;
    let mut ttl = None;
    let mut dst6 = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv6HopLimit(h) => ttl = u8::try_from(h).ok(),
                ControlMessageOwned::Ipv6PacketInfo(pi) => dst6 = Some(Ipv6Addr::from(pi.ipi6_addr.s6_addr)),
                _ => {}
            }
        }
    }
    if v6 {
        let src = src_sa.and_then(|s| s.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip()))).unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        return Ok(Received {
            src,
            dst: IpAddr::V6(dst6.unwrap_or(Ipv6Addr::UNSPECIFIED)),
            ttl: ttl.unwrap_or(0),
            offset: 0,
            len,
        });
    }
    parse_v4(buf, len, whole)
}

/// IPv4 raw sockets deliver the IP header: reads TTL, addresses and IHL from it. `whole`: the
/// packet is handed over with its header (AH sockets).
fn parse_v4(buf: &[u8], len: usize, whole: bool) -> io::Result<Received> {
    let hdr = buf.get(..len.min(20)).filter(|h| h.len() == 20).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short IPv4 packet"))?;
    let ihl = usize::from(hdr[0] & 0x0f) * 4;
    if ihl < 20 || ihl > len {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "bad IPv4 header length"));
    }
    Ok(Received {
        src: IpAddr::V4(Ipv4Addr::new(hdr[12], hdr[13], hdr[14], hdr[15])),
        dst: IpAddr::V4(Ipv4Addr::new(hdr[16], hdr[17], hdr[18], hdr[19])),
        ttl: hdr[8],
        offset: if whole { 0 } else { ihl },
        len: if whole { len } else { len - ihl },
    })
}

/// The MTU of interface `name` in this network namespace (`SIOCGIFMTU`), if it exists.
pub fn interface_mtu(name: &str) -> Option<u32> {
    // SAFETY: a plain socket call; the descriptor is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return None;
    }
    // SAFETY: raw is a fresh, owned descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: an all-zero ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return None;
    }
    for (d, b) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads ifr_name and writes ifru_mtu of a valid ifreq.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFMTU, &mut req) } < 0 {
        return None;
    }
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    u32::try_from(unsafe { req.ifr_ifru.ifru_mtu }).ok()
}

