//! PING_CHECK: an ICMP (IPv4) or ICMPv6 echo request on a raw socket connected to the target
//! (so only its packets are received); a matching echo reply within `connect_timeout` passes.

use std::{hash::BuildHasher as _, time::Duration};

use super::{socket, CheckError, Deadline, Success, Target};

/// A PING_CHECK.
#[derive(Clone, Debug)]
pub struct PingProbe {
    /// The target (the port is ignored).
    pub target: Target,
    /// `connect_timeout`.
    pub timeout: Duration,
}

/// The echo request: type, code, checksum, id, sequence, 16 bytes of payload.
pub fn echo_request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"ka PING_CHECK..\n");
    if !v6 {
        // ICMPv6 checksums are filled in by the kernel (they cover a pseudo-header).
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// The Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether `pkt` (with its IPv4 header for v4 raw sockets) is the echo reply to `id`/`seq`.
pub fn is_reply(v6: bool, pkt: &[u8], id: u16, seq: u16) -> bool {
    let icmp = if v6 {
        pkt
    } else {
        let ihl = usize::from(pkt.first().map_or(0, |b| b & 0x0f)) * 4;
        if ihl < 20 {
            return false;
        }
        pkt.get(ihl..).unwrap_or(&[])
    };
    icmp.len() >= 8
        && icmp[0] == if v6 { 129 } else { 0 }
        && icmp[4..6] == id.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
}

impl PingProbe {
    /// Pings once.
    ///
    /// # Errors
    /// No reply in time, or the raw socket cannot be opened (ka needs CAP_NET_RAW).
    pub async fn run(&self) -> Result<Success, CheckError> {
        let deadline = Deadline::after(self.timeout);
        let v6 = self.target.addr.is_ipv6();
        let proto = if v6 { socket2::Protocol::ICMPV6 } else { socket2::Protocol::ICMPV4 };
        let target = Target { addr: std::net::SocketAddr::new(self.target.addr.ip(), 0), ..self.target.clone() };
        let s = socket(&target, socket2::Type::RAW, Some(proto))?;
        s.connect(&target.addr.into()).map_err(|source| CheckError::Connect { addr: target.addr, source })?;
        // A raw socket driven through tokio's datagram socket: send/recv are the same calls.
        let sock = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(std::os::fd::OwnedFd::from(s)))
            .map_err(|source| CheckError::Io { stage: "setting up the socket", source })?;
        let r = std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
        let (id, seq) = ((r & 0xffff) as u16, ((r >> 16) & 0xffff) as u16);
        let req = echo_request(v6, id, seq);
        deadline.io("sending the echo request", sock.send(&req)).await?;
        let mut buf = [0u8; 1500];
        // Bounded by the deadline; each pass consumes one packet.
        loop {
            let n = deadline.io("waiting for the echo reply", sock.recv(&mut buf)).await?;
            if is_reply(v6, &buf[..n], id, seq) {
                break;
            }
        }
        Ok(Success::new("echo reply"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v4 request checksums to zero; replies are matched on type, id and sequence, after
    /// the IPv4 header whatever its length.
    #[test]
    fn echo_codec() {
        let r = echo_request(false, 0x1234, 7);
        assert_eq!(checksum(&r), 0);
        let mut reply = vec![0x46u8; 24];
        reply[0] = 0x46;
        let mut icmp = r.clone();
        icmp[0] = 0;
        reply.extend_from_slice(&icmp);
        assert!(is_reply(false, &reply, 0x1234, 7));
        assert!(!is_reply(false, &reply, 0x1234, 8));
        let mut v6 = echo_request(true, 1, 2);
        assert!(!is_reply(true, &v6, 1, 2), "a request is not a reply");
        v6[0] = 129;
        assert!(is_reply(true, &v6, 1, 2));
    }
}
