//! `smtp_alert`: an email per state change, through a real SMTP client (lettre), with
//! keepalived's subject line (`[ROUTER_ID] VRRP Instance VI_1 - Entering MASTER state`).

use std::time::Duration;

use lettre::{
    message::Mailbox, AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor,
};

use super::{Event, Subject};

/// Where alerts go (from `global_defs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpConfig {
    /// `smtp_server` host.
    pub server: String,
    /// `smtp_server` port.
    pub port: u16,
    /// `smtp_connect_timeout`.
    pub timeout: Duration,
    /// `notification_email_from`.
    pub from: String,
    /// `notification_email`.
    pub to: Vec<String>,
    /// `router_id` (the subject's prefix).
    pub router_id: String,
    /// `smtp_helo_name`: the name given in `EHLO` (default: the host name).
    pub helo_name: Option<String>,
}

/// Errors of alerts.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// An address is not valid.
    #[error("invalid email address {addr:?}: {source}")]
    Address {
        /// The address.
        addr: String,
        /// Cause.
        #[source]
        source: lettre::address::AddressError,
    },
    /// Building the message failed.
    #[error("building alert: {0}")]
    Build(#[source] lettre::error::Error),
    /// The SMTP exchange failed.
    #[error("sending alert via {server}: {source}")]
    Send {
        /// Server.
        server: String,
        /// Cause.
        #[source]
        source: lettre::transport::smtp::Error,
    },
}

/// keepalived's subject line for `ev`.
pub fn subject(router_id: &str, ev: &Event) -> String {
    let what = match ev.subject {
        Subject::Instance => "VRRP Instance",
        Subject::Group => "VRRP Group",
    };
    format!("[{router_id}] {what} {} - Entering {} state", ev.name, ev.state)
}

fn mailbox(addr: &str) -> Result<Mailbox, SmtpError> {
    addr.parse().map_err(|source| SmtpError::Address { addr: addr.to_owned(), source })
}

/// Sends one alert.
///
/// # Errors
/// Bad addresses or an SMTP failure.
pub async fn send(cfg: &SmtpConfig, ev: &Event) -> Result<(), SmtpError> {
    let mut b = Message::builder().from(mailbox(&cfg.from)?).subject(subject(&cfg.router_id, ev));
    for to in &cfg.to {
        b = b.to(mailbox(to)?);
    }
    let body = format!("=> VRRP {} {} now {} (priority {}) <=\n", ev.subject.word().to_lowercase(), ev.name, ev.state, ev.priority);
    let msg = b.body(body).map_err(SmtpError::Build)?;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.server)
        .port(cfg.port)
        .timeout(Some(cfg.timeout));
    if let Some(h) = &cfg.helo_name {
        builder = builder.hello_name(lettre::transport::smtp::extension::ClientId::Domain(h.clone()));
    }
    let transport = builder.build();
    transport
        .send(msg)
        .await
        .map(|_| ())
        .map_err(|source| SmtpError::Send { server: format!("{}:{}", cfg.server, cfg.port), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

    #[test]
    fn subject_matches_keepalived() {
        let ev = Event { subject: Subject::Instance, name: "VI_1".into(), state: "MASTER", priority: 100 };
        assert_eq!(subject("lb1", &ev), "[lb1] VRRP Instance VI_1 - Entering MASTER state");
    }

    /// A minimal SMTP server on loopback receives the alert with the right envelope and
    /// subject.
    #[tokio::test]
    async fn an_alert_reaches_an_smtp_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.expect("accept");
            let (r, mut w) = s.into_split();
            let mut lines = BufReader::new(r).lines();
            let mut transcript = Vec::new();
            w.write_all(b"220 test ESMTP\r\n").await.expect("greet");
            let mut in_data = false;
            while let Ok(Some(line)) = lines.next_line().await {
                transcript.push(line.clone());
                if in_data {
                    if line == "." {
                        in_data = false;
                        w.write_all(b"250 queued\r\n").await.expect("w");
                    }
                    continue;
                }
                let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
                let reply: &[u8] = match verb.as_str() {
                    "EHLO" | "HELO" => b"250 test\r\n",
                    "DATA" => {
                        in_data = true;
                        b"354 go\r\n"
                    }
                    "QUIT" => {
                        w.write_all(b"221 bye\r\n").await.expect("w");
                        break;
                    }
                    _ => b"250 ok\r\n",
                };
                w.write_all(reply).await.expect("w");
            }
            transcript
        });
        let cfg = SmtpConfig {
            server: "127.0.0.1".into(),
            port,
            timeout: Duration::from_secs(5),
            from: "ka@example.invalid".into(),
            to: vec!["ops@example.invalid".into()],
            router_id: "lb1".into(),
            helo_name: Some("lb1.example.invalid".into()),
        };
        let ev = Event { subject: Subject::Instance, name: "VI_1".into(), state: "BACKUP", priority: 90 };
        send(&cfg, &ev).await.expect("send");
        let t = server.await.expect("server").join("\n");
        assert!(t.contains("EHLO lb1.example.invalid"), "smtp_helo_name is the EHLO name: {t}");
        assert!(t.contains("MAIL FROM:<ka@example.invalid>"), "{t}");
        assert!(t.contains("RCPT TO:<ops@example.invalid>"), "{t}");
        assert!(t.contains("Subject: [lb1] VRRP Instance VI_1 - Entering BACKUP state"), "{t}");
    }
}
