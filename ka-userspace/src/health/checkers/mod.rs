//! The checkers of keepalived.conf(5) 2.2, one module each, on tokio. A [`Probe`] is built once
//! from the configuration and run once per check; every I/O step is bounded by the check's
//! [`Deadline`], so a slow or hung server costs a timer, never a thread, and fails with the
//! stage it hung in.

pub mod dns;
pub mod file;
pub mod http;
pub mod misc;
pub mod ping;
pub mod smtp;
pub mod tcp;
pub mod udp;

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use tokio::time::Instant;

use crate::config::{model::{Checker, CheckerKind, RealServer}, Config};

/// Where and how a checker connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `connect_ip`:`connect_port` (default: the real server's address and port).
    pub addr: SocketAddr,
    /// `bindto` / `bind_port`.
    pub bind: Option<SocketAddr>,
    /// `bind_if`.
    pub bind_if: Option<String>,
    /// `fwmark` (SO_MARK).
    pub fwmark: Option<u32>,
}

impl Target {
    /// The target of `checker` of real server `rs`, with `default_port` when neither gives one.
    pub fn of(checker: &Checker, rs: &RealServer, default_port: u16) -> Target {
        let ip = checker.connect_ip.unwrap_or(rs.address);
        let port = checker.connect_port.unwrap_or(if rs.port == 0 { default_port } else { rs.port });
        let bind = match (checker.bindto, checker.bind_port) {
            (None, None) => None,
            (addr, port) => Some(SocketAddr::new(
                addr.unwrap_or(if ip.is_ipv4() { IpAddr::from([0u8; 4]) } else { IpAddr::from([0u16; 8]) }),
                port.unwrap_or(0),
            )),
        };
        Target { addr: SocketAddr::new(ip, port), bind, bind_if: checker.bind_if.clone(), fwmark: checker.fwmark }
    }
}

/// A passed check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Success {
    /// What was found (`connected`, `HTTP 200`, `exit 0`...).
    pub detail: String,
    /// A dynamic weight (`misc_dynamic`, FILE_CHECK `dynamic`).
    pub weight: Option<u32>,
}

impl Success {
    /// A success without a dynamic weight.
    pub fn new(detail: impl Into<String>) -> Self {
        Self { detail: detail.into(), weight: None }
    }
}

/// Why a check failed; the `Display` text is the reason `ka status` shows.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The check ran out of time.
    #[error("timed out after {after:?} {stage}")]
    Timeout {
        /// What it was doing (`connecting`, `reading the response body`...).
        stage: &'static str,
        /// The budget.
        after: Duration,
    },
    /// Connecting failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Another I/O step failed.
    #[error("{stage}: {source}")]
    Io {
        /// What it was doing.
        stage: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The server answered something the protocol does not allow.
    #[error("bad answer: {0}")]
    Protocol(String),
    /// The server answered properly, but not what the check wants.
    #[error("{0}")]
    Mismatch(String),
    /// TLS failed (handshake, certificate).
    #[error("TLS: {0}")]
    Tls(String),
    /// The script failed (exit code, signal, timeout).
    #[error("{0}")]
    Script(String),
    /// The checker cannot run as configured.
    #[error("misconfigured: {0}")]
    Config(String),
    /// The checker type is not supported by ka.
    #[error("{0} is not supported by ka")]
    Unsupported(&'static str),
}

/// The time budget of one check.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self { at: Instant::now() + budget, budget }
    }

    /// Runs `fut` until the deadline; running out is a [`CheckError::Timeout`] naming `stage`.
    ///
    /// # Errors
    /// The deadline passes first.
    pub async fn run<T>(&self, stage: &'static str, fut: impl Future<Output = T>) -> Result<T, CheckError> {
        tokio::time::timeout_at(self.at, fut).await.map_err(|_| CheckError::Timeout { stage, after: self.budget })
    }

    /// Like [`Deadline::run`] for a fallible I/O step, with the I/O error tagged with `stage`.
    ///
    /// # Errors
    /// The deadline passes first, or `fut` fails.
    pub async fn io<T>(&self, stage: &'static str, fut: impl Future<Output = std::io::Result<T>>) -> Result<T, CheckError> {
        self.run(stage, fut).await?.map_err(|source| CheckError::Io { stage, source })
    }
}

/// A socket of `target`'s family with its bind address, device and mark applied.
///
/// # Errors
/// The socket cannot be created or bound.
pub fn socket(target: &Target, ty: socket2::Type, proto: Option<socket2::Protocol>) -> Result<socket2::Socket, CheckError> {
    let domain = if target.addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let setup = || -> std::io::Result<socket2::Socket> {
        // One syscall: non-blocking and close-on-exec from creation (socket2 adds CLOEXEC).
        let s = socket2::Socket::new(domain, ty.nonblocking(), proto)?;
        if let Some(dev) = &target.bind_if {
            s.bind_device(Some(dev.as_bytes()))?;
        }
        if let Some(mark) = target.fwmark {
            s.set_mark(mark)?;
        }
        if let Some(bind) = target.bind {
            if bind.port() != 0 {
                s.set_reuse_address(true)?;
            }
            s.bind(&bind.into())?;
        }
        Ok(s)
    };
    setup().map_err(|source| CheckError::Io { stage: "setting up the socket", source })
}

/// Connects a TCP stream to `target` before `deadline`.
///
/// # Errors
/// Socket setup fails, the connection is refused or the deadline passes.
pub async fn connect_tcp(target: &Target, deadline: &Deadline) -> Result<tokio::net::TcpStream, CheckError> {
    deadline.run("connecting", connect_tcp_unbounded(target, true)).await?
}

/// Connects a TCP stream to `target` with no time bound of its own: for callers that bound
/// the whole check with one timer. `nodelay` sets TCP_NODELAY, which only matters to checks
/// that write more than once before reading (TLS, SMTP): a check that sends one request or
/// nothing skips the syscall, with the same packets on the wire.
///
/// # Errors
/// Socket setup fails or the connection is refused.
pub async fn connect_tcp_unbounded(target: &Target, nodelay: bool) -> Result<tokio::net::TcpStream, CheckError> {
    let s = socket(target, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    let sock = tokio::net::TcpSocket::from_std_stream(s.into());
    let stream = sock.connect(target.addr).await.map_err(|source| CheckError::Connect { addr: target.addr, source })?;
    if nodelay {
        let _ = stream.set_nodelay(true);
    }
    Ok(stream)
}

/// A checker, built once from the configuration.
#[derive(Debug)]
pub enum Probe {
    /// TCP_CHECK.
    Tcp(tcp::TcpProbe),
    /// HTTP_GET / SSL_GET.
    Http(Box<http::HttpProbe>),
    /// MISC_CHECK.
    Misc(misc::MiscProbe),
    /// SMTP_CHECK.
    Smtp(smtp::SmtpProbe),
    /// DNS_CHECK.
    Dns(dns::DnsProbe),
    /// UDP_CHECK.
    Udp(udp::UdpProbe),
    /// PING_CHECK.
    Ping(ping::PingProbe),
    /// FILE_CHECK.
    File(file::FileProbe),
    /// BFD_CHECK of this `bfd_instance`: it follows the session's reports (the health
    /// subsystem's BFD job), and is never run as a probe.
    Bfd(String),
    /// A checker that could not be built; every check fails with this reason.
    Broken(String),
}

/// Everything a probe needs from outside its checker block.
#[derive(Clone, Debug, Default)]
pub struct BuildContext {
    /// `enable_script_security`.
    pub script_security: bool,
    /// Who runs a script that names no user (`script_user`, `keepalived_script`, root).
    pub script_user: crate::notify::security::DefaultUser,
}

impl Probe {
    /// Builds the probe of `checker` of real server `rs` of `cfg`. Problems that only show at
    /// run time (a missing CA file, a bad regex) give a [`Probe::Broken`] that fails every
    /// check with the reason, so they show in `ka status`.
    pub fn build(checker: &Checker, rs: &RealServer, cfg: &Config, ctx: &BuildContext) -> Probe {
        let built = match &checker.kind {
            CheckerKind::Tcp => Ok(Probe::Tcp(tcp::TcpProbe { target: Target::of(checker, rs, 0), timeout: checker.connect_timeout })),
            CheckerKind::Http { .. } => http::HttpProbe::build(checker, rs, cfg).map(|p| Probe::Http(Box::new(p))),
            CheckerKind::Misc { .. } => misc::MiscProbe::build(checker, ctx).map(Probe::Misc),
            CheckerKind::Smtp { helo_name } => Ok(Probe::Smtp(smtp::SmtpProbe {
                target: Target::of(checker, rs, 25),
                helo: helo_name.clone().unwrap_or_else(|| smtp::DEFAULT_HELO.to_owned()),
                timeout: checker.connect_timeout,
            })),
            CheckerKind::Dns { qtype, name } => dns::DnsProbe::build(Target::of(checker, rs, 53), qtype, name, checker.connect_timeout).map(Probe::Dns),
            CheckerKind::Udp { payload, require_reply, min_reply_length, max_reply_length } => Ok(Probe::Udp(udp::UdpProbe {
                target: Target::of(checker, rs, 0),
                payload: payload.clone().unwrap_or_default(),
                require_reply: *require_reply,
                min_len: *min_reply_length as usize,
                max_len: *max_reply_length as usize,
                timeout: checker.connect_timeout,
            })),
            CheckerKind::Ping => Ok(Probe::Ping(ping::PingProbe { target: Target::of(checker, rs, 0), timeout: checker.connect_timeout })),
            CheckerKind::File { .. } => file::FileProbe::build(checker, rs, cfg).map(Probe::File),
            CheckerKind::Bfd { name } => Ok(Probe::Bfd(name.clone().unwrap_or_default())),
        };
        built.unwrap_or_else(|e| Probe::Broken(e.to_string()))
    }

    /// A short description of what is checked (`198.18.0.2:80`, the script...).
    pub fn target(&self) -> String {
        match self {
            Probe::Tcp(p) => p.target.addr.to_string(),
            Probe::Http(p) => p.target.addr.to_string(),
            Probe::Misc(p) => p.command.clone(),
            Probe::Smtp(p) => p.target.addr.to_string(),
            Probe::Dns(p) => p.target.addr.to_string(),
            Probe::Udp(p) => p.target.addr.to_string(),
            Probe::Ping(p) => p.target.addr.ip().to_string(),
            Probe::File(p) => p.path.clone(),
            Probe::Bfd(name) => format!("bfd {name}"),
            Probe::Broken(_) => "-".into(),
        }
    }

    /// Runs one check.
    ///
    /// # Errors
    /// The check failed; the error says why.
    pub async fn run(&self) -> Result<Success, CheckError> {
        match self {
            Probe::Tcp(p) => p.run().await,
            Probe::Http(p) => p.run().await,
            Probe::Misc(p) => p.run().await,
            Probe::Smtp(p) => p.run().await,
            Probe::Dns(p) => p.run().await,
            Probe::Udp(p) => p.run().await,
            Probe::Ping(p) => p.run().await,
            Probe::File(p) => p.run().await,
            Probe::Bfd(_) => Err(CheckError::Config("BFD_CHECK follows its BFD session; it runs no probe".into())),
            Probe::Broken(reason) => Err(CheckError::Config(reason.clone())),
        }
    }
}

/// A reply is read into at most this many bytes (SMTP replies, UDP and DNS datagrams).
pub const MAX_REPLY: usize = 64 * 1024;
