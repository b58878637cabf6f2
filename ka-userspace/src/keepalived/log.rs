//! Logging as keepalived logs, for the log-parsing rules written against it: syslog with
//! keepalived's identifiers (`Keepalived`, `Keepalived_vrrp`, `Keepalived_healthcheckers`) and
//! facility, and with `-l` the console in keepalived's format (`Sat Dec  5 11:07:05 2026:
//! MESSAGE`).
//!
//! The events keepalived's rules look for are also written in keepalived's words, next to ka's
//! own line (which is kept, with its fields as `key=value`):
//! - `(VI_1) Entering MASTER STATE`, `(VI_1) Entering BACKUP STATE (init)`, `(VI_1) Entering
//!   FAULT STATE`;
//! - `TCP_CHECK on service [198.18.1.1]:tcp:80 failed.`, `TCP connection to
//!   [198.18.1.1]:tcp:80 success.`;
//! - `Removing service [198.18.1.1]:tcp:80 from VS [198.18.0.1]:tcp:80`, `Adding service
//!   [198.18.1.1]:tcp:80 to VS [198.18.0.1]:tcp:80`;
//! - `Lost quorum 1-0=1 > 0 for VS ...`, `Gained quorum 1+0=1 <= 1 for VS ...`.

use std::{
    collections::BTreeMap,
    os::unix::net::UnixDatagram,
    path::PathBuf,
    sync::{Mutex, OnceLock, RwLock},
};

use tracing::{field::Visit, Level, Subscriber};
use tracing_subscriber::{layer::Context, Layer};

/// Which keepalived process would have logged a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ident {
    /// The parent: `Keepalived`.
    Parent,
    /// The VRRP child: `Keepalived_vrrp`.
    Vrrp,
    /// The checkers child: `Keepalived_healthcheckers`.
    Checkers,
}

impl Ident {
    /// The syslog identifier.
    pub fn as_str(self) -> &'static str {
        match self {
            Ident::Parent => "Keepalived",
            Ident::Vrrp => "Keepalived_vrrp",
            Ident::Checkers => "Keepalived_healthcheckers",
        }
    }

    /// The process a ka module's lines belong to, by its `tracing` target.
    pub fn of_target(target: &str) -> Ident {
        let module = target.strip_prefix("ka::").unwrap_or(target);
        let first = module.split("::").next().unwrap_or("");
        match first {
            "engine" | "vrrp" | "sdnotify" => Ident::Vrrp,
            "keepalived" if module.starts_with("keepalived::signals") => Ident::Vrrp,
            "health" | "lb" | "dataplane" | "rs_control" => Ident::Checkers,
            _ => Ident::Parent,
        }
    }
}

/// An event's message and fields, as recorded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields {
    /// The message.
    pub message: String,
    /// The other fields, by name, as displayed.
    pub fields: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.insert(field.name().to_owned(), format!("{value:?}"));
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields.insert(field.name().to_owned(), value.to_owned());
        }
    }
}

impl Fields {
    /// ka's own line: the message, then `key=value` for every field.
    pub fn ka_line(&self) -> String {
        let mut s = self.message.clone();
        for (k, v) in &self.fields {
            s.push(' ');
            s.push_str(k);
            s.push('=');
            if v.contains(' ') {
                s.push_str(&format!("{v:?}"));
            } else {
                s.push_str(v);
            }
        }
        s
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.fields.get(k).map(String::as_str)
    }
}

/// Protocols of the virtual servers by ka's service name (`198.18.0.1:80`), for keepalived's
/// `[ADDR]:PROTO:PORT` (the health checkers' lines name services without it). Kept current
/// from the running configuration by the keepalived front end.
pub fn service_protocols() -> &'static RwLock<BTreeMap<String, String>> {
    static P: OnceLock<RwLock<BTreeMap<String, String>>> = OnceLock::new();
    P.get_or_init(|| RwLock::new(BTreeMap::new()))
}

/// Records the protocols of `config`'s virtual servers ([`service_protocols`]).
pub fn learn_protocols(config: &crate::config::Config) {
    let map = config
        .virtual_servers
        .iter()
        .map(|vs| (crate::health::service_name(&vs.key), vs.protocol.as_str().to_ascii_lowercase()))
        .collect();
    if let Ok(mut w) = service_protocols().write() {
        *w = map;
    }
}

/// `198.18.0.1:80` or `[fd00::1]:80` → `[198.18.0.1]:PROTO:80`; other names unchanged.
fn trio(sock: &str, proto: &str) -> String {
    match sock.parse::<std::net::SocketAddr>() {
        Ok(a) => format!("[{}]:{proto}:{}", a.ip(), a.port()),
        Err(_) => sock.to_owned(),
    }
}

/// keepalived's `FMT_VS` of ka's service name.
fn fmt_vs(service: &str, proto: &str) -> String {
    if let Some(m) = service.strip_prefix("fwmark ") {
        return format!("FWM {m}");
    }
    if let Some(g) = service.strip_prefix("group ") {
        return format!("[{g}]");
    }
    trio(service, proto)
}

/// keepalived's wording of a ka event, when keepalived logs one for it. `protocol` gives a
/// service's protocol (`tcp` when unknown).
pub fn keepalived_line(f: &Fields, protocol: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let proto_of = |svc: &str| protocol(svc).unwrap_or_else(|| "tcp".to_owned());
    match f.message.as_str() {
        "state change" => {
            let inst = f.get("instance")?;
            let to = f.get("to")?;
            let init = if f.get("from") == Some("INIT") && to == "BACKUP" { " (init)" } else { "" };
            Some(format!("({inst}) Entering {to} STATE{init}"))
        }
        "checker down" | "checker up" => {
            let svc = f.get("service")?;
            let rs = trio(f.get("real_server")?, &proto_of(svc));
            let kind = f.get("checker").unwrap_or("TCP_CHECK");
            let up = f.message == "checker up";
            Some(match (kind, up) {
                ("TCP_CHECK", true) => format!("TCP connection to {rs} success."),
                ("UDP_CHECK", true) => format!("UDP connection to {rs} success."),
                ("PING_CHECK", true) => format!("ICMP connection to {rs} success."),
                ("HTTP_GET" | "SSL_GET", true) => format!("HTTP status code success to {rs}."),
                (k, true) => format!("{k} on service {rs} succeeded."),
                ("HTTP_GET" | "SSL_GET", false) => format!("HTTP_CHECK on service {rs} failed."),
                ("PING_CHECK", false) => format!("ICMP CHECK on service {rs} failed."),
                (k, false) => format!("{k} on service {rs} failed."),
            })
        }
        "real server state changed" => {
            let svc = f.get("service")?;
            let proto = proto_of(svc);
            let rs = trio(f.get("real_server")?, &proto);
            let vs = fmt_vs(svc, &proto);
            Some(match f.get("new")? {
                "up" => format!("Adding service {rs} to VS {vs}"),
                _ => format!("Removing service {rs} from VS {vs}"),
            })
        }
        "lost quorum" | "gained quorum" => {
            let svc = f.get("service")?;
            let vs = fmt_vs(svc, &proto_of(svc));
            let n = |k: &str| f.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
            let (q, h, sum) = (n("quorum"), n("hysteresis"), n("weight_sum"));
            Some(if f.message == "lost quorum" {
                format!("Lost quorum {q}-{h}={} > {sum} for VS {vs}", q - h)
            } else {
                format!("Gained quorum {q}+{h}={} <= {sum} for VS {vs}", q + h)
            })
        }
        _ => None,
    }
}

/// syslog's priority of a `tracing` level.
fn severity(level: Level) -> i32 {
    match level {
        Level::ERROR => libc::LOG_ERR,
        Level::WARN => libc::LOG_WARNING,
        Level::INFO => libc::LOG_INFO,
        _ => libc::LOG_DEBUG,
    }
}

/// A datagram for `/dev/log` as glibc's `syslog(3)` sends it: `<PRI>Mmm dd hh:mm:ss
/// IDENT[PID]: MESSAGE`. `stamp` is keepalived's console stamp (`Sat Dec  5 11:07:05 2026`).
pub fn syslog_datagram(facility: i32, level: Level, stamp: &str, ident: Ident, pid: u32, msg: &str) -> String {
    // "Sat Dec  5 11:07:05 2026" → "Dec  5 11:07:05"
    let short = stamp.get(4..19).unwrap_or(stamp);
    format!("<{}>{short} {}[{pid}]: {msg}", facility | severity(level), ident.as_str())
}

/// keepalived's console stamp, local time: `Sat Dec  5 11:07:05 2026`.
pub fn console_stamp(unix_us: u64, utc_offset_s: i64) -> String {
    // ctime_us gives "Sat Dec  5 11:07:05.123456 2026".
    let s = super::dump::ctime_us(unix_us, utc_offset_s);
    match (s.get(..19), s.rfind(' ')) {
        (Some(head), Some(i)) => format!("{head}{}", &s[i..]),
        _ => s,
    }
}

/// Where the lines go.
#[derive(Debug)]
pub struct Sinks {
    /// `-l`: stderr.
    pub console: bool,
    /// syslog socket (`/dev/log`), unless `-G`.
    pub syslog: Option<PathBuf>,
    /// `-S`.
    pub facility: i32,
}

/// The `tracing` layer writing keepalived's log.
pub struct KeepalivedLayer {
    sinks: Sinks,
    socket: Mutex<Option<UnixDatagram>>,
    utc_offset_s: i64,
}

impl KeepalivedLayer {
    /// A layer writing to `sinks`.
    pub fn new(sinks: Sinks, utc_offset_s: i64) -> KeepalivedLayer {
        let socket = sinks.syslog.as_ref().and_then(|_| UnixDatagram::unbound().ok());
        KeepalivedLayer { sinks, socket: Mutex::new(socket), utc_offset_s }
    }

    fn emit(&self, level: Level, ident: Ident, msg: &str) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(0));
        let stamp = console_stamp(now, self.utc_offset_s);
        if self.sinks.console {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr().lock(), "{stamp}: {msg}");
        }
        if let (Some(path), Ok(sock)) = (&self.sinks.syslog, self.socket.lock()) {
            if let Some(sock) = sock.as_ref() {
                let d = syslog_datagram(self.sinks.facility, level, &stamp, ident, std::process::id(), msg);
                // No syslog daemon: the line is lost, as with syslog(3).
                let _ = sock.send_to(d.as_bytes(), path);
            }
        }
    }
}

impl<S: Subscriber> Layer<S> for KeepalivedLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut f = Fields::default();
        event.record(&mut f);
        let ident = Ident::of_target(meta.target());
        let lookup = |svc: &str| service_protocols().read().ok().and_then(|m| m.get(svc).cloned());
        if let Some(line) = keepalived_line(&f, &lookup) {
            self.emit(*meta.level(), ident, &line);
        }
        self.emit(*meta.level(), ident, &f.ka_line());
    }
}

/// Installs keepalived's logging as the global subscriber: `filter` (EnvFilter syntax), the
/// [`KeepalivedLayer`], and the `log` bridge (aya).
pub fn init(filter: &str, sinks: Sinks, utc_offset_s: i64) {
    use tracing_subscriber::layer::SubscriberExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let layer = KeepalivedLayer::new(sinks, utc_offset_s);
    if tracing::subscriber::set_global_default(tracing_subscriber::registry().with(filter).with(layer)).is_ok() {
        crate::logging::install_log_bridge();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(message: &str, fields: &[(&str, &str)]) -> Fields {
        Fields { message: message.to_owned(), fields: fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect() }
    }

    /// ka's events and the line keepalived 2.2.7 writes for the same event.
    #[test]
    fn key_events_in_keepalived_s_words() {
        let protos = |svc: &str| (svc == "198.18.0.2:53").then(|| "udp".to_owned());
        let cases = [
            (ev("state change", &[("instance", "VI_1"), ("from", "BACKUP"), ("to", "MASTER")]), Some("(VI_1) Entering MASTER STATE")),
            (ev("state change", &[("instance", "VI_1"), ("from", "INIT"), ("to", "BACKUP")]), Some("(VI_1) Entering BACKUP STATE (init)")),
            (ev("state change", &[("instance", "VI_1"), ("from", "MASTER"), ("to", "BACKUP")]), Some("(VI_1) Entering BACKUP STATE")),
            (ev("state change", &[("instance", "VI_1"), ("from", "MASTER"), ("to", "FAULT")]), Some("(VI_1) Entering FAULT STATE")),
            (
                ev("checker down", &[("service", "198.18.0.1:80"), ("real_server", "198.18.1.1:80"), ("checker", "TCP_CHECK")]),
                Some("TCP_CHECK on service [198.18.1.1]:tcp:80 failed."),
            ),
            (
                ev("checker up", &[("service", "198.18.0.1:80"), ("real_server", "198.18.1.1:80"), ("checker", "TCP_CHECK")]),
                Some("TCP connection to [198.18.1.1]:tcp:80 success."),
            ),
            (
                ev("checker down", &[("service", "198.18.0.1:80"), ("real_server", "198.18.1.1:8080"), ("checker", "HTTP_GET")]),
                Some("HTTP_CHECK on service [198.18.1.1]:tcp:8080 failed."),
            ),
            (
                ev("real server state changed", &[("service", "198.18.0.1:80"), ("real_server", "198.18.1.1:80"), ("new", "down")]),
                Some("Removing service [198.18.1.1]:tcp:80 from VS [198.18.0.1]:tcp:80"),
            ),
            (
                ev("real server state changed", &[("service", "198.18.0.2:53"), ("real_server", "198.18.1.1:53"), ("new", "up")]),
                Some("Adding service [198.18.1.1]:udp:53 to VS [198.18.0.2]:udp:53"),
            ),
            (
                ev("real server state changed", &[("service", "[fd00:198:18::1]:80"), ("real_server", "[fd00:198:18::2]:80"), ("new", "up")]),
                Some("Adding service [fd00:198:18::2]:tcp:80 to VS [fd00:198:18::1]:tcp:80"),
            ),
            (
                ev("real server state changed", &[("service", "fwmark 7"), ("real_server", "198.18.1.1:0"), ("new", "up")]),
                Some("Adding service [198.18.1.1]:tcp:0 to VS FWM 7"),
            ),
            (
                ev("lost quorum", &[("service", "198.18.0.1:80"), ("quorum", "2"), ("hysteresis", "0"), ("weight_sum", "1")]),
                Some("Lost quorum 2-0=2 > 1 for VS [198.18.0.1]:tcp:80"),
            ),
            (ev("ka running", &[("instance", "default")]), None),
        ];
        for (f, want) in cases {
            assert_eq!(keepalived_line(&f, &protos).as_deref(), want, "{f:?}");
        }
    }

    #[test]
    fn idents_follow_the_subsystem() {
        assert_eq!(Ident::of_target("ka::engine"), Ident::Vrrp);
        assert_eq!(Ident::of_target("ka::vrrp::fsm"), Ident::Vrrp);
        assert_eq!(Ident::of_target("ka::keepalived::signals"), Ident::Vrrp);
        assert_eq!(Ident::of_target("ka::health::state"), Ident::Checkers);
        assert_eq!(Ident::of_target("ka::lb::writer"), Ident::Checkers);
        assert_eq!(Ident::of_target("ka::daemon"), Ident::Parent);
        assert_eq!(Ident::of_target("aya::bpf"), Ident::Parent);
    }

    #[test]
    fn syslog_and_console_formats() {
        // 2026-12-05 11:07:05.5 UTC was a Saturday.
        let us = 1_796_468_825_500_000;
        assert_eq!(console_stamp(us, 0), "Sat Dec  5 11:07:05 2026");
        assert_eq!(console_stamp(us, 3600), "Sat Dec  5 12:07:05 2026");
        let d = syslog_datagram(libc::LOG_DAEMON, Level::INFO, &console_stamp(us, 0), Ident::Vrrp, 42, "(VI_1) Entering MASTER STATE");
        assert_eq!(d, "<30>Dec  5 11:07:05 Keepalived_vrrp[42]: (VI_1) Entering MASTER STATE");
        let d = syslog_datagram(libc::LOG_LOCAL3, Level::WARN, &console_stamp(us, 0), Ident::Checkers, 7, "x");
        assert_eq!(d, "<156>Dec  5 11:07:05 Keepalived_healthcheckers[7]: x");
    }

    #[test]
    fn ka_lines_keep_their_fields() {
        let f = ev("checker down", &[("reason", "connection refused"), ("service", "198.18.0.1:80")]);
        assert_eq!(f.ka_line(), "checker down reason=\"connection refused\" service=198.18.0.1:80");
    }

    /// Lines reach a syslog socket with the identifier and facility asked for.
    #[test]
    fn lines_reach_the_syslog_socket() {
        let dir = std::env::temp_dir().join(format!("ka-syslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("log.sock");
        let rx = UnixDatagram::bind(&path).expect("bind");
        let layer = KeepalivedLayer::new(Sinks { console: false, syslog: Some(path), facility: libc::LOG_LOCAL0 }, 0);
        layer.emit(Level::INFO, Ident::Vrrp, "(VI_1) Entering BACKUP STATE (init)");
        let mut buf = [0u8; 512];
        let n = rx.recv(&mut buf).expect("recv");
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(got.starts_with("<134>") && got.ends_with(&format!(" Keepalived_vrrp[{}]: (VI_1) Entering BACKUP STATE (init)", std::process::id())), "{got}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
