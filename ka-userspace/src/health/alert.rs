//! `smtp_alert` for checkers: an email when a real server goes up or down, with keepalived's
//! subject line (`[ROUTER_ID] Realserver [198.18.0.2]:80 of virtual server [198.18.0.1]:80 - DOWN`).

use lettre::{message::Mailbox, AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

use crate::notify::smtp::SmtpConfig;

/// Errors of checker alerts.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
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

/// keepalived's subject of a checker alert.
pub fn subject(router_id: &str, real_server: &str, service: &str, up: bool) -> String {
    format!("[{router_id}] Realserver {real_server} of virtual server {service} - {}", if up { "UP" } else { "DOWN" })
}

/// keepalived's label of a virtual server in alerts: `[ADDR]:PORT` for an address service
/// (IPv4 too), the display name (`fwmark 1`, `group NAME`) otherwise.
pub fn service_label(name: &str) -> String {
    match name.parse::<std::net::SocketAddr>() {
        Ok(a) => format!("[{}]:{}", a.ip(), a.port()),
        Err(_) => name.to_owned(),
    }
}

fn mailbox(addr: &str) -> Result<Mailbox, AlertError> {
    addr.parse().map_err(|source| AlertError::Address { addr: addr.to_owned(), source })
}

/// Sends one alert.
///
/// # Errors
/// Bad addresses or an SMTP failure.
pub async fn send(cfg: &SmtpConfig, real_server: &str, service: &str, up: bool, reason: &str) -> Result<(), AlertError> {
    let mut b = Message::builder().from(mailbox(&cfg.from)?).subject(subject(&cfg.router_id, real_server, service, up));
    for to in &cfg.to {
        b = b.to(mailbox(to)?);
    }
    let body = if up { "=> CHECK succeed on service <=\n".to_owned() } else { format!("=> CHECK failed on service : {reason} <=\n") };
    let msg = b.body(body).map_err(AlertError::Build)?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.server).port(cfg.port).timeout(Some(cfg.timeout)).build();
    transport.send(msg).await.map_err(|source| AlertError::Send { server: cfg.server.clone(), source })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn service_label_like_keepalived() {
        assert_eq!(super::service_label("198.18.0.1:80"), "[198.18.0.1]:80");
        assert_eq!(super::service_label("[fd00:198:18::1]:80"), "[fd00:198:18::1]:80");
        assert_eq!(super::service_label("fwmark 7"), "fwmark 7");
    }

    #[test]
    fn subject_like_keepalived() {
        assert_eq!(
            super::subject("lb1", "[198.18.0.2]:80", "[198.18.0.1]:80", false),
            "[lb1] Realserver [198.18.0.2]:80 of virtual server [198.18.0.1]:80 - DOWN"
        );
    }
}
