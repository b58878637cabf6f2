//! A minimal packet capture for tests and benchmarks: an `AF_PACKET` socket bound to one
//! interface and EtherType, read with a deadline. Create it on a thread inside the namespace
//! (see [`crate::netns::Netns::enter`]).

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

/// `SIOCGSTAMP` (linux/sockios.h; the `timeval` form, 64-bit here), which the libc crate lacks.
const SIOCGSTAMP: libc::c_ulong = 0x8906;

/// A capture socket.
#[derive(Debug)]
pub struct Capture {
    fd: OwnedFd,
}

impl Capture {
    /// Captures frames of `ether_type` (e.g. 0x0806 ARP, 0x86dd IPv6, 0x0003 all) arriving on
    /// or leaving `ifname`, in the calling thread's network namespace.
    ///
    /// # Errors
    /// The socket cannot be opened or bound.
    pub fn open(ifname: &str, ether_type: u16) -> io::Result<Capture> {
        let proto = i32::from(ether_type.to_be());
        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh owned descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let ifindex = nix::net::if_::if_nametoindex(ifname).map_err(io::Error::from)?;
        // SAFETY: zeroed sockaddr_ll is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ether_type.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is valid for its size.
        let rc = unsafe {
            libc::bind(fd.as_raw_fd(), (&raw const sll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as u32)
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // The first SIOCGSTAMP turns on the kernel's receive timestamps for this socket (and
        // fails: nothing received yet); from then on each frame read updates `last_stamp`.
        // (SO_TIMESTAMP would instead deliver them as control messages only.)
        let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
        // SAFETY: SIOCGSTAMP writes at most one timeval into `tv`.
        let _ = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCGSTAMP, &raw mut tv) };
        Ok(Capture { fd })
    }

    /// The next frame for which `pred` holds, or `None` at `deadline`.
    pub fn next_matching(&self, deadline: Instant, mut pred: impl FnMut(&[u8]) -> bool) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let tv = libc::timeval {
                tv_sec: left.as_secs() as libc::time_t,
                tv_usec: libc::suseconds_t::from(left.subsec_micros().max(1)),
            };
            // SAFETY: tv is a valid timeval.
            unsafe {
                libc::setsockopt(
                    self.fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&raw const tv).cast(),
                    std::mem::size_of::<libc::timeval>() as u32,
                );
            }
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                let frame = &buf[..n as usize];
                if pred(frame) {
                    return Some(frame.to_vec());
                }
            } else if Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// When the kernel received the frame last returned (wall clock, `SIOCGSTAMP`): unlike the
    /// time it was read, it does not move when the reader runs late.
    ///
    /// # Errors
    /// No frame was received yet.
    pub fn last_stamp(&self) -> io::Result<Duration> {
        let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
        // SAFETY: SIOCGSTAMP writes one timeval into `tv`.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), SIOCGSTAMP, &raw mut tv) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Duration::new(tv.tv_sec as u64, (tv.tv_usec as u32) * 1000))
    }

    /// The next frame within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.next_matching(Instant::now() + timeout, |_| true)
    }
}
