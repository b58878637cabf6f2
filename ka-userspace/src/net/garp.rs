//! Gratuitous ARP (RFC 5798 §8.1.2, RFC 3768 §8.1.2) and unsolicited neighbour advertisements
//! (RFC 4861 §7.2.6) for VIPs, built as whole Ethernet frames and sent on an `AF_PACKET` socket
//! so the source MAC can be the VRRP virtual MAC when `use_vmac` is set.

use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use ka_common::vrrp::{csum_add, csum_fold};

/// Ethernet broadcast.
const BROADCAST: [u8; 6] = [0xff; 6];
/// ff02::1, all nodes.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The virtual MAC of a VRID (RFC 5798 §7.3): 00-00-5E-00-01-{VRID} for IPv4,
/// 00-00-5E-00-02-{VRID} for IPv6.
pub fn virtual_mac(vrid: u8, v6: bool) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, if v6 { 0x02 } else { 0x01 }, vrid]
}

/// A gratuitous ARP request for `ip` from `mac`: sender and target protocol address both
/// `ip`, broadcast destination (42 bytes).
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[32..38].copy_from_slice(&BROADCAST);
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// An unsolicited neighbour advertisement for `target` from `mac`, sent from the link-local
/// `src` to all nodes with hop limit 255, Override set and a target link-layer address option
/// (86 bytes).
pub fn na_frame(mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> [u8; 86] {
    let mut f = [0u8; 86];
    f[0..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let ip = 14;
    f[ip] = 0x60;
    let icmp_len: u16 = 32;
    f[ip + 4..ip + 6].copy_from_slice(&icmp_len.to_be_bytes());
    f[ip + 6] = 58; // ICMPv6
    f[ip + 7] = 255;
    f[ip + 8..ip + 24].copy_from_slice(&src.octets());
    f[ip + 24..ip + 40].copy_from_slice(&ALL_NODES.octets());
    let icmp = ip + 40;
    f[icmp] = 136; // neighbour advertisement
    f[icmp + 4] = 0x20; // Override
    f[icmp + 8..icmp + 24].copy_from_slice(&target.octets());
    f[icmp + 24] = 2; // target link-layer address
    f[icmp + 25] = 1; // 8 octets
    f[icmp + 26..icmp + 32].copy_from_slice(&mac);
    let mut sum = csum_add(0, &src.octets());
    sum = csum_add(sum, &ALL_NODES.octets());
    sum = csum_add(sum, &u32::from(icmp_len).to_be_bytes());
    sum = csum_add(sum, &[0, 0, 0, 58]);
    sum = csum_add(sum, &f[icmp..icmp + 32]);
    f[icmp + 2..icmp + 4].copy_from_slice(&csum_fold(sum).to_be_bytes());
    f
}

/// An `AF_PACKET` socket that sends whole frames out of one interface.
#[derive(Debug)]
pub struct FrameSender {
    fd: OwnedFd,
    ifindex: u32,
}

impl FrameSender {
    /// Opens a sender for `ifindex`.
    ///
    /// # Errors
    /// socket(2) fails (needs CAP_NET_RAW).
    pub fn open(ifindex: u32) -> io::Result<FrameSender> {
        // Protocol 0: this socket only sends, it never receives.
        // SAFETY: plain socket(2) call.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh, owned descriptor.
        Ok(FrameSender { fd: unsafe { OwnedFd::from_raw_fd(raw) }, ifindex })
    }

    /// Sends one frame (it carries its own Ethernet header).
    ///
    /// # Errors
    /// sendto(2) fails.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: zeroed sockaddr_ll is valid; the fields set below are the ones sendto reads.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = self.ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(frame.get(..6).unwrap_or(&BROADCAST));
        // SAFETY: frame and sll are valid for the lengths given.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x33];

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn garp_fixture() {
        let f = garp_frame(MAC, Ipv4Addr::new(198, 18, 0, 10));
        assert_eq!(
            hex(&f),
            concat!(
                "ffffffffffff", "00005e000133", "0806",
                "0001", "0800", "06", "04", "0001",
                "00005e000133", "c612000a", "ffffffffffff", "c612000a"
            )
        );
    }

    #[test]
    fn na_fixture_checksum_verifies() {
        let src: Ipv6Addr = "fe80::1".parse().expect("addr");
        let target: Ipv6Addr = "fd00:198:18::10".parse().expect("addr");
        let f = na_frame(MAC, src, target);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(f[14 + 7], 255, "hop limit");
        assert_eq!(f[54], 136);
        assert_eq!(&f[62..78], &target.octets());
        // The checksum over pseudo-header + message verifies to zero.
        let mut sum = csum_add(0, &src.octets());
        sum = csum_add(sum, &ALL_NODES.octets());
        sum = csum_add(sum, &32u32.to_be_bytes());
        sum = csum_add(sum, &[0, 0, 0, 58]);
        sum = csum_add(sum, &f[54..86]);
        assert_eq!(csum_fold(sum), 0);
    }

    #[test]
    fn virtual_macs_follow_rfc5798() {
        assert_eq!(virtual_mac(51, false), [0, 0, 0x5e, 0, 1, 51]);
        assert_eq!(virtual_mac(51, true), [0, 0, 0x5e, 0, 2, 51]);
    }
}
