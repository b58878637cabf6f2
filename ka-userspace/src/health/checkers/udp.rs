//! UDP_CHECK: sends `payload`; an ICMP error (port unreachable) fails the check. With
//! `require_reply` a reply of `min_reply_length..=max_reply_length` bytes must arrive within
//! `connect_timeout`; without it, silence until then is a pass (as in keepalived).

use std::time::Duration;

use super::{socket, CheckError, Deadline, Success, Target, MAX_REPLY};

/// A UDP_CHECK.
#[derive(Clone, Debug)]
pub struct UdpProbe {
    /// Where to send.
    pub target: Target,
    /// `payload`.
    pub payload: Vec<u8>,
    /// `require_reply`.
    pub require_reply: bool,
    /// `min_reply_length`.
    pub min_len: usize,
    /// `max_reply_length`.
    pub max_len: usize,
    /// `connect_timeout`.
    pub timeout: Duration,
}

impl UdpProbe {
    /// Sends the payload and waits for a reply or an ICMP error.
    ///
    /// # Errors
    /// ICMP error, no reply when one is required, or a reply of the wrong length.
    pub async fn run(&self) -> Result<Success, CheckError> {
        let deadline = Deadline::after(self.timeout);
        let s = socket(&self.target, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        let sock = tokio::net::UdpSocket::from_std(s.into()).map_err(|source| CheckError::Io { stage: "setting up the socket", source })?;
        sock.connect(self.target.addr).await.map_err(|source| CheckError::Connect { addr: self.target.addr, source })?;
        deadline.io("sending", sock.send(&self.payload)).await?;
        let mut buf = vec![0u8; MAX_REPLY];
        match deadline.run("waiting for a reply", sock.recv(&mut buf)).await {
            Ok(Ok(n)) => self.judge(Some(n)),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(CheckError::Mismatch("ICMP port unreachable".into())),
            Ok(Err(source)) => Err(CheckError::Io { stage: "receiving", source }),
            Err(_) => self.judge(None),
        }
    }

    /// The verdict for a reply of `len` bytes, or none (pure).
    ///
    /// # Errors
    /// The reply is missing or has the wrong length.
    pub fn judge(&self, len: Option<usize>) -> Result<Success, CheckError> {
        match len {
            None if self.require_reply => Err(CheckError::Timeout { stage: "waiting for a reply", after: self.timeout }),
            None => Ok(Success::new("no ICMP error")),
            Some(n) if self.require_reply && !(self.min_len..=self.max_len).contains(&n) => {
                Err(CheckError::Mismatch(format!("reply of {n} bytes, expected {}-{}", self.min_len, self.max_len)))
            }
            Some(n) => Ok(Success::new(format!("reply of {n} bytes"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies are judged by require_reply and the length bounds.
    #[test]
    fn reply_rules() {
        let t = Target { addr: "198.18.0.1:53".parse().expect("addr"), bind: None, bind_if: None, fwmark: None };
        let p = UdpProbe { target: t, payload: vec![], require_reply: true, min_len: 2, max_len: 4, timeout: Duration::from_secs(1) };
        assert!(p.judge(None).is_err());
        assert!(p.judge(Some(1)).is_err());
        assert!(p.judge(Some(3)).is_ok());
        assert!(p.judge(Some(5)).is_err());
        let q = UdpProbe { require_reply: false, ..p };
        assert!(q.judge(None).is_ok());
        assert!(q.judge(Some(100)).is_ok());
    }

    /// A closed port fails with the ICMP error; a replying server passes.
    #[tokio::test]
    async fn icmp_error_and_reply() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = server.local_addr().expect("addr");
        let t = Target { addr, bind: None, bind_if: None, fwmark: None };
        let p = UdpProbe { target: t, payload: b"ping".to_vec(), require_reply: true, min_len: 1, max_len: 10, timeout: Duration::from_secs(2) };
        let echo = tokio::spawn(async move {
            let mut b = [0u8; 64];
            let (n, from) = server.recv_from(&mut b).await.expect("recv");
            server.send_to(&b[..n], from).await.expect("send");
        });
        assert!(p.run().await.is_ok());
        echo.await.expect("echo");
        // Every probe of the closed port fails; the kernel's global ICMP rate limit (other
        // tests run in parallel) may swallow an error, so a few tries must show the ICMP one.
        let mut errors = Vec::new();
        for _ in 0..5 {
            let e = p.run().await.expect_err("closed port").to_string();
            let icmp = e.contains("ICMP");
            errors.push(e);
            if icmp {
                break;
            }
        }
        assert!(errors.last().is_some_and(|e| e.contains("ICMP")), "{errors:?}");
    }
}
