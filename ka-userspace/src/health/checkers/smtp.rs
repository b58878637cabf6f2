//! SMTP_CHECK: the server greets with 2xx, answers `HELO helo_name` with 250, and is left with
//! `QUIT`. Replies are bounded (multi-line replies included) and the whole exchange must end
//! within `connect_timeout`.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{connect_tcp, CheckError, Deadline, Success, Target};

/// keepalived's default `helo_name`.
pub const DEFAULT_HELO: &str = "smtpchecker.keepalived.org";

/// A reply longer than this fails the check.
const MAX_SMTP_REPLY: usize = 8 * 1024;

/// An SMTP_CHECK.
#[derive(Clone, Debug)]
pub struct SmtpProbe {
    /// Where to connect.
    pub target: Target,
    /// `helo_name`.
    pub helo: String,
    /// `connect_timeout`.
    pub timeout: Duration,
}

impl SmtpProbe {
    /// Greeting, HELO, QUIT.
    ///
    /// # Errors
    /// A reply is missing, malformed, too long or has the wrong code.
    pub async fn run(&self) -> Result<Success, CheckError> {
        let deadline = Deadline::after(self.timeout);
        let mut s = connect_tcp(&self.target, &deadline).await?;
        let mut buf = Vec::new();
        let (code, text) = read_reply(&mut s, &mut buf, &deadline, "reading the greeting").await?;
        if !(200..300).contains(&code) {
            return Err(CheckError::Mismatch(format!("greeting {code} {text}")));
        }
        deadline.io("sending HELO", s.write_all(format!("HELO {}\r\n", self.helo).as_bytes())).await?;
        let (code, text2) = read_reply(&mut s, &mut buf, &deadline, "reading the HELO reply").await?;
        if code != 250 {
            return Err(CheckError::Mismatch(format!("HELO answered {code} {text2}")));
        }
        let _ = deadline.io("sending QUIT", s.write_all(b"QUIT\r\n")).await;
        Ok(Success::new(format!("220 {text}")))
    }
}

/// Reads one (possibly multi-line) reply: `NNN-...` lines continue it, `NNN ...` ends it.
async fn read_reply(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, deadline: &Deadline, stage: &'static str) -> Result<(u16, String), CheckError> {
    let mut reply_len = 0;
    loop {
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            reply_len += line.len();
            let line = String::from_utf8_lossy(&line).trim_end().to_owned();
            let (code, rest) = parse_line(&line)?;
            if !rest.starts_with('-') {
                return Ok((code, rest.trim_start_matches(' ').to_owned()));
            }
            if reply_len > MAX_SMTP_REPLY {
                return Err(CheckError::Protocol(format!("reply longer than {MAX_SMTP_REPLY} bytes")));
            }
        }
        if buf.len() + reply_len > MAX_SMTP_REPLY {
            return Err(CheckError::Protocol(format!("reply longer than {MAX_SMTP_REPLY} bytes")));
        }
        let mut chunk = [0u8; 1024];
        let n = deadline.io(stage, s.read(&mut chunk)).await?;
        if n == 0 {
            return Err(CheckError::Protocol("connection closed before a complete reply".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse_line(line: &str) -> Result<(u16, &str), CheckError> {
    let code = line.get(..3).and_then(|c| c.parse::<u16>().ok()).filter(|c| (100..600).contains(c));
    match code {
        Some(c) => Ok((c, &line[3..])),
        None => Err(CheckError::Protocol(format!("not an SMTP reply: {:?}", line.chars().take(80).collect::<String>()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines() {
        assert_eq!(parse_line("220 mx ESMTP").expect("ok"), (220, " mx ESMTP"));
        assert_eq!(parse_line("250-PIPELINING").expect("ok"), (250, "-PIPELINING"));
        assert!(parse_line("HTTP/1.1 400").is_err());
        assert!(parse_line("").is_err());
    }
}
