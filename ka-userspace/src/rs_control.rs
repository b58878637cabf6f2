//! Runtime real-server control (`ka rs weight|drain|disable|enable`): operator overrides laid
//! over the health checkers' backend set, without a reload. Sans-IO: the daemon keeps one
//! [`Overrides`], changes it on each control request ([`Overrides::set`]) and passes every
//! backend set through [`Overrides::apply`] before the dataplane writes it.
//!
//! Semantics, by action:
//! - `weight W`: the server's datapath weight is `W` while its checkers keep it in the table
//!   with a non-zero weight (a checker failure still takes it out; `inhibit_on_failure`, a
//!   dynamic weight of 0 and an active sorry server keep it at 0);
//! - `drain`: weight 0 while it is in the table: no new flows, established ones continue;
//! - `disable`: out of the table: its flows are rescheduled, as when its checkers fail;
//! - `enable`: the override is removed; the configuration and the checkers decide again.
//!
//! An override is keyed by what a reload matches real servers on (the virtual server's key and
//! protocol, the real server's address and port), so it survives a reload while the real
//! server stays in the configuration, and is dropped ([`Overrides::retain_configured`]) when it
//! leaves.

use std::{collections::BTreeMap, fmt, net::IpAddr, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::{
    config::{
        model::{VirtualServer, VsKey},
        Config,
    },
    health::{BackendRole, BackendSet, RealServerReport},
};

/// Which virtual server a request names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceSel {
    /// `virtual_server ADDR PORT`, written `ADDR:PORT` (`[ADDR]:PORT` for IPv6).
    Addr {
        /// Virtual address.
        addr: IpAddr,
        /// Virtual port.
        port: u16,
    },
    /// `virtual_server group NAME`, written `group:NAME`.
    Group(String),
    /// `virtual_server fwmark N`, written `fwmark:N`.
    Fwmark(u32),
}

impl FromStr for ServiceSel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(name) = s.strip_prefix("group:") {
            return if name.is_empty() { Err("group: needs a name".to_owned()) } else { Ok(ServiceSel::Group(name.to_owned())) };
        }
        if let Some(m) = s.strip_prefix("fwmark:") {
            return m.parse().map(ServiceSel::Fwmark).map_err(|_| format!("{s:?}: expected fwmark:NUMBER"));
        }
        let sa: std::net::SocketAddr =
            s.parse().map_err(|_| format!("{s:?}: expected ADDR:PORT ([ADDR]:PORT for IPv6), group:NAME or fwmark:N"))?;
        Ok(ServiceSel::Addr { addr: sa.ip(), port: sa.port() })
    }
}

impl fmt::Display for ServiceSel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceSel::Addr { addr, port } => write!(f, "{}", std::net::SocketAddr::new(*addr, *port)),
            ServiceSel::Group(g) => write!(f, "group:{g}"),
            ServiceSel::Fwmark(m) => write!(f, "fwmark:{m}"),
        }
    }
}

/// Which real server a request names: `ADDR:PORT`, or a bare `ADDR` when only one real server
/// of the virtual server has that address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSel {
    /// Address.
    pub addr: IpAddr,
    /// Port, if given.
    pub port: Option<u16>,
}

impl FromStr for ServerSel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
            return Ok(ServerSel { addr: sa.ip(), port: Some(sa.port()) });
        }
        s.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map(|addr| ServerSel { addr, port: None })
            .map_err(|_| format!("{s:?}: expected ADDR:PORT ([ADDR]:PORT for IPv6) or ADDR"))
    }
}

impl fmt::Display for ServerSel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}", std::net::SocketAddr::new(self.addr, p)),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// What to do to a real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RsAction {
    /// Set its weight.
    Weight(u32),
    /// Weight 0, established flows kept.
    Drain,
    /// Out of the table.
    Disable,
    /// Remove the override.
    Enable,
}

/// A runtime override of one real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Override {
    /// Weight `W` while its checkers keep it in the table with a non-zero weight.
    Weight(u32),
    /// Weight 0 while in the table.
    Drain,
    /// Out of the table.
    Disable,
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Override::Weight(w) => write!(f, "weight {w}"),
            Override::Drain => f.write_str("drained"),
            Override::Disable => f.write_str("disabled"),
        }
    }
}

impl Override {
    /// The datapath entry of a real server the checkers publish as `entry` (`None`: not in the
    /// table), once this override applies: `None` out of the table, else its weight.
    pub fn apply(self, entry: Option<u32>) -> Option<u32> {
        match (self, entry) {
            (Override::Disable, _) | (_, None) => None,
            (Override::Drain, Some(_)) => Some(0),
            (Override::Weight(w), Some(h)) if h > 0 => Some(w),
            (Override::Weight(_), Some(h)) => Some(h),
        }
    }
}

/// A control request about one real server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RsRequest {
    /// The virtual server.
    pub service: ServiceSel,
    /// Its protocol (`TCP`, `UDP`), when two virtual servers share the key.
    #[serde(default)]
    pub protocol: Option<String>,
    /// The real server.
    pub server: ServerSel,
    /// What to do.
    pub action: RsAction,
}

/// What identifies a real server across reloads.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RsKey {
    /// The virtual server's display name (`198.18.0.1:80`, `group NAME`, `fwmark N`), as
    /// `ka status` shows it.
    pub service: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// Real server address.
    pub address: IpAddr,
    /// Real server port.
    pub port: u16,
}

impl fmt::Display for RsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} -> {}", self.service, self.protocol.to_ascii_lowercase(), std::net::SocketAddr::new(self.address, self.port))
    }
}

/// The answer to a real-server request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RsChanged {
    /// The real server.
    pub key: RsKey,
    /// Its override now (`None`: enabled, the configuration and checkers decide).
    pub now: Option<Override>,
    /// Its override before.
    pub before: Option<Override>,
}

impl fmt::Display for RsChanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = |o: Option<Override>| o.map_or_else(|| "as configured".to_owned(), |o| o.to_string());
        write!(f, "{}: {} (was {})", self.key, word(self.now), word(self.before))
    }
}

/// One override, as `ka status` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideReport {
    /// The real server.
    #[serde(flatten)]
    pub key: RsKey,
    /// The override.
    #[serde(rename = "override")]
    pub what: Override,
}

/// Why a real-server request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RsError {
    /// No virtual server has this key.
    #[error("no virtual_server {service}{}", proto_hint(.protocol))]
    NoService {
        /// The key asked for.
        service: String,
        /// The protocol asked for.
        protocol: Option<String>,
    },
    /// Several virtual servers have this key (different protocols).
    #[error("several virtual_servers are {service} ({protocols}); add --protocol")]
    AmbiguousService {
        /// The key asked for.
        service: String,
        /// Their protocols.
        protocols: String,
    },
    /// The virtual server has no such real server.
    #[error("virtual_server {service} has no real_server {server}")]
    NoServer {
        /// The virtual server.
        service: String,
        /// The real server asked for.
        server: String,
    },
    /// Several real servers have this address (different ports).
    #[error("virtual_server {service} has several real_servers at {addr} (ports {ports}); give ADDR:PORT")]
    AmbiguousServer {
        /// The virtual server.
        service: String,
        /// The address asked for.
        addr: IpAddr,
        /// Their ports.
        ports: String,
    },
}

fn proto_hint(p: &Option<String>) -> String {
    p.as_ref().map(|p| format!(" with protocol {p}")).unwrap_or_default()
}

/// Finds the real server a request names in `cfg`.
///
/// # Errors
/// No such virtual or real server, or the request matches several.
pub fn resolve(cfg: &Config, req: &RsRequest) -> Result<RsKey, RsError> {
    let want_proto = req.protocol.as_ref().map(|p| p.to_ascii_uppercase());
    let key_matches = |vs: &VirtualServer| match (&req.service, &vs.key) {
        (ServiceSel::Addr { addr, port }, VsKey::Addr { addr: a, port: p }) => addr == a && port == p,
        (ServiceSel::Group(g), VsKey::Group(n)) => g == n,
        (ServiceSel::Fwmark(m), VsKey::Fwmark(n)) => m == n,
        _ => false,
    };
    let found: Vec<&VirtualServer> = cfg
        .virtual_servers
        .iter()
        .filter(|vs| key_matches(vs) && want_proto.as_deref().is_none_or(|p| vs.protocol.as_str() == p))
        .collect();
    let vs = match found.as_slice() {
        [] => return Err(RsError::NoService { service: req.service.to_string(), protocol: req.protocol.clone() }),
        [one] => *one,
        many => {
            let protocols = many.iter().map(|v| v.protocol.as_str()).collect::<Vec<_>>().join(", ");
            return Err(RsError::AmbiguousService { service: req.service.to_string(), protocols });
        }
    };
    let service = crate::health::service_name(&vs.key);
    let rs: Vec<_> =
        vs.real_servers.iter().filter(|r| r.address == req.server.addr && req.server.port.is_none_or(|p| p == r.port)).collect();
    let rs = match rs.as_slice() {
        [] => return Err(RsError::NoServer { service, server: req.server.to_string() }),
        [one] => *one,
        many => {
            let ports = many.iter().map(|r| r.port.to_string()).collect::<Vec<_>>().join(", ");
            return Err(RsError::AmbiguousServer { service, addr: req.server.addr, ports });
        }
    };
    Ok(RsKey { service, protocol: vs.protocol.as_str().to_owned(), address: rs.address, port: rs.port })
}

/// The key of real server `rs` of virtual server `vs`.
fn key_of(vs: &VirtualServer, rs: &crate::config::model::RealServer) -> RsKey {
    RsKey {
        service: crate::health::service_name(&vs.key),
        protocol: vs.protocol.as_str().to_owned(),
        address: rs.address,
        port: rs.port,
    }
}

/// The runtime overrides of a daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    map: BTreeMap<RsKey, Override>,
}

impl Overrides {
    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The override of `key`, if any.
    pub fn get(&self, key: &RsKey) -> Option<Override> {
        self.map.get(key).copied()
    }

    /// Applies a request to the real server `key`; returns the change.
    pub fn set(&mut self, key: RsKey, action: RsAction) -> RsChanged {
        let now = match action {
            RsAction::Weight(w) => Some(Override::Weight(w)),
            RsAction::Drain => Some(Override::Drain),
            RsAction::Disable => Some(Override::Disable),
            RsAction::Enable => None,
        };
        let before = match now {
            Some(o) => self.map.insert(key.clone(), o),
            None => self.map.remove(&key),
        };
        RsChanged { key, now, before }
    }

    /// Drops the overrides of real servers `cfg` no longer has (after a reload); returns the
    /// dropped keys.
    pub fn retain_configured(&mut self, cfg: &Config) -> Vec<RsKey> {
        let present: std::collections::BTreeSet<RsKey> =
            cfg.virtual_servers.iter().flat_map(|vs| vs.real_servers.iter().map(move |rs| key_of(vs, rs))).collect();
        let gone: Vec<RsKey> = self.map.keys().filter(|k| !present.contains(k)).cloned().collect();
        for k in &gone {
            self.map.remove(k);
        }
        gone
    }

    /// The overrides, for `ka status`.
    pub fn report(&self) -> Vec<OverrideReport> {
        self.map.iter().map(|(key, what)| OverrideReport { key: key.clone(), what: *what }).collect()
    }

    /// The backend set the datapath gets: the checkers' `set` with the overrides applied
    /// (`cfg` is the configuration `set` was built from).
    pub fn apply(&self, cfg: &Config, set: &BackendSet) -> BackendSet {
        let mut out = set.clone();
        if self.map.is_empty() {
            return out;
        }
        for svc in &mut out.services {
            let Some(vs) = cfg.virtual_servers.get(svc.vs_index) else { continue };
            svc.backends.retain_mut(|b| {
                let BackendRole::Real { index } = b.role else { return true };
                let Some(rs) = vs.real_servers.get(index) else { return true };
                match self.map.get(&key_of(vs, rs)).map(|o| o.apply(Some(b.weight))) {
                    None => true,
                    Some(None) => false,
                    Some(Some(w)) => {
                        b.weight = w;
                        true
                    }
                }
            });
        }
        out
    }

    /// Fills in the protocol of the real servers of a health report from `cfg`, and marks those
    /// that have an override, with the weight and table membership the datapath has for them.
    pub fn mark(&self, cfg: &Config, servers: &mut [RealServerReport]) {
        for r in servers.iter_mut() {
            r.protocol = cfg.virtual_servers.get(r.vs_index).map(|vs| vs.protocol.as_str().to_owned());
        }
        for r in servers.iter_mut().filter(|r| r.rs_index.is_some()) {
            let Some(protocol) = r.protocol.clone() else { continue };
            let key = RsKey { service: r.service.clone(), protocol, address: r.addr, port: r.port };
            if let Some(o) = self.map.get(&key) {
                let entry = o.apply(r.in_table.then_some(r.weight));
                r.in_table = entry.is_some();
                r.weight = entry.unwrap_or(0);
                r.runtime = Some(*o);
            }
        }
    }
}

/// The daemon's answer to a `ka rs` request: resolves the real server in the running configuration and records the override
/// (the caller rewrites the tables). Every request is logged.
pub fn handle(
    req: &RsRequest,
    config: Option<&crate::config::Config>,
    forwarding: bool,
    overrides: &mut Overrides,
) -> crate::control::Response {
    let refuse = |message: String| {
        tracing::warn!(service = %req.service, real_server = %req.server, action = ?req.action, reason = %message, "control: real-server request refused");
        crate::control::Response::Error { message }
    };
    let Some(cfg) = config else { return refuse("the daemon runs without a configuration".to_owned()) };
    if !forwarding {
        return refuse("the daemon does not forward (--no-xdp, or no virtual_server): real servers have no datapath weight".to_owned());
    }
    match resolve(cfg, req) {
        Ok(key) => {
            let changed = overrides.set(key, req.action);
            tracing::info!(
                service = %changed.key.service,
                protocol = %changed.key.protocol,
                real_server = %std::net::SocketAddr::new(changed.key.address, changed.key.port),
                action = ?req.action,
                before = ?changed.before,
                "control: real server changed at runtime"
            );
            crate::control::Response::RealServer(changed)
        }
        Err(e) => refuse(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{parse_str, LoadOptions},
        health::{ActiveSet, Backend, ServiceBackends},
    };

    fn cfg(text: &str) -> Config {
        let l = parse_str(text, std::path::Path::new("t.conf"), &LoadOptions::default());
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        l.config
    }

    const CONF: &str = "virtual_server 198.18.0.10 80 {\n lb_algo mh\n lb_kind DR\n protocol TCP\n\
 real_server 198.18.1.1 80 {\n weight 2\n }\n real_server 198.18.1.2 80 {\n }\n real_server 198.18.1.3 80 {\n }\n}\n\
virtual_server 198.18.0.10 80 {\n lb_algo rr\n lb_kind DR\n protocol UDP\n real_server 198.18.1.1 80 {\n }\n real_server 198.18.1.1 81 {\n }\n}\n";

    fn req(service: &str, protocol: Option<&str>, server: &str, action: RsAction) -> RsRequest {
        RsRequest {
            service: service.parse().expect("service"),
            protocol: protocol.map(str::to_owned),
            server: server.parse().expect("server"),
            action,
        }
    }

    fn key(service: &str, protocol: &str, addr: &str, port: u16) -> RsKey {
        RsKey { service: service.into(), protocol: protocol.into(), address: addr.parse().expect("ip"), port }
    }

    /// Requests name servers as an operator writes them; every ambiguity or miss is a clear
    /// error.
    #[test]
    fn requests_resolve_or_say_why_not() {
        let c = cfg(CONF);
        type Case<'a> = (&'a str, Option<&'a str>, &'a str, Result<RsKey, &'a str>);
        let cases: &[Case<'_>] = &[
            ("198.18.0.10:80", Some("tcp"), "198.18.1.2:80", Ok(key("198.18.0.10:80", "TCP", "198.18.1.2", 80))),
            ("198.18.0.10:80", Some("TCP"), "198.18.1.2", Ok(key("198.18.0.10:80", "TCP", "198.18.1.2", 80))),
            ("198.18.0.10:80", Some("udp"), "198.18.1.1:81", Ok(key("198.18.0.10:80", "UDP", "198.18.1.1", 81))),
            ("198.18.0.10:80", None, "198.18.1.2:80", Err("several virtual_servers are 198.18.0.10:80 (TCP, UDP); add --protocol")),
            ("198.18.0.10:81", None, "198.18.1.2:80", Err("no virtual_server 198.18.0.10:81")),
            ("198.18.0.10:80", Some("udp"), "198.18.1.1", Err("virtual_server 198.18.0.10:80 has several real_servers at 198.18.1.1 (ports 80, 81); give ADDR:PORT")),
            ("198.18.0.10:80", Some("tcp"), "198.18.1.9:80", Err("virtual_server 198.18.0.10:80 has no real_server 198.18.1.9:80")),
            ("group:web", None, "198.18.1.9:80", Err("no virtual_server group:web")),
        ];
        for (service, proto, server, want) in cases {
            let got = resolve(&c, &req(service, *proto, server, RsAction::Drain)).map_err(|e| e.to_string());
            assert_eq!(got, want.clone().map_err(str::to_owned), "{service} {proto:?} {server}");
        }
        for bad in ["198.18.0.10", "x:80", "fwmark:x", "group:"] {
            assert!(bad.parse::<ServiceSel>().is_err(), "{bad}");
        }
        assert_eq!("[fd00:198:18::1]:80".parse::<ServerSel>(), Ok(ServerSel { addr: "fd00:198:18::1".parse().expect("ip"), port: Some(80) }));
        assert_eq!("fd00:198:18::1".parse::<ServerSel>().map(|s| s.port), Ok(None));
    }

    /// Each override's effect on a checker's entry, including the cases where health wins.
    #[test]
    fn override_table() {
        let cases = [
            (Override::Weight(5), Some(1), Some(5)),
            (Override::Weight(5), Some(0), Some(0)),
            (Override::Weight(5), None, None),
            (Override::Weight(0), Some(3), Some(0)),
            (Override::Drain, Some(3), Some(0)),
            (Override::Drain, None, None),
            (Override::Disable, Some(3), None),
            (Override::Disable, None, None),
        ];
        for (o, entry, want) in cases {
            assert_eq!(o.apply(entry), want, "{o:?} on {entry:?}");
        }
    }

    /// The datapath's backend set follows the overrides; enable gives the checkers' set back;
    /// an override outlives a reload that keeps its server and goes with one that drops it.
    #[test]
    fn backend_set_follows_overrides_across_reloads() {
        let c = cfg(CONF);
        let b = |i: usize, last: u8, port: u16, weight: u32| Backend {
            addr: IpAddr::from([198, 18, 1, last]),
            port,
            weight,
            role: BackendRole::Real { index: i },
        };
        let svc = |vs_index, backends| ServiceBackends { vs_index, name: String::new(), active: ActiveSet::RealServers, quorum_up: true, weight_sum: 0, backends };
        let set = BackendSet { services: vec![svc(0, vec![b(0, 1, 80, 2), b(1, 2, 80, 1), b(2, 3, 80, 1)]), svc(1, vec![b(0, 1, 80, 1), b(1, 1, 81, 1)])] };
        let mut o = Overrides::default();
        assert_eq!(o.apply(&c, &set), set);
        let k = resolve(&c, &req("198.18.0.10:80", Some("tcp"), "198.18.1.1:80", RsAction::Weight(7))).expect("resolve");
        let ch = o.set(k.clone(), RsAction::Weight(7));
        assert_eq!((ch.before, ch.now), (None, Some(Override::Weight(7))));
        o.set(key("198.18.0.10:80", "TCP", "198.18.1.2", 80), RsAction::Drain);
        o.set(key("198.18.0.10:80", "TCP", "198.18.1.3", 80), RsAction::Disable);
        let got = o.apply(&c, &set);
        assert_eq!(got.services[0].backends, vec![b(0, 1, 80, 7), b(1, 2, 80, 0)]);
        assert_eq!(got.services[1], set.services[1], "the UDP service's 198.18.1.1:80 is another real server");
        // A reload that keeps .1 and .2 and drops .3.
        let reloaded = cfg("virtual_server 198.18.0.10 80 {\n lb_algo mh\n lb_kind DR\n protocol TCP\n\
 real_server 198.18.1.2 80 {\n }\n real_server 198.18.1.1 80 {\n }\n}\n");
        assert_eq!(o.retain_configured(&reloaded), vec![key("198.18.0.10:80", "TCP", "198.18.1.3", 80)]);
        let set2 = BackendSet { services: vec![svc(0, vec![Backend { role: BackendRole::Real { index: 0 }, ..b(1, 2, 80, 1) }, Backend { role: BackendRole::Real { index: 1 }, ..b(0, 1, 80, 1) }])] };
        let got = o.apply(&reloaded, &set2);
        assert_eq!(got.services[0].backends.iter().map(|b| (b.addr, b.weight)).collect::<Vec<_>>(), vec![(IpAddr::from([198, 18, 1, 2]), 0), (IpAddr::from([198, 18, 1, 1]), 7)]);
        let ch = o.set(k, RsAction::Enable);
        assert_eq!((ch.before, ch.now), (Some(Override::Weight(7)), None));
        assert_eq!(o.report().len(), 1);
        assert_eq!(serde_json::to_value(&o.report()[0]).expect("json")["override"], "drain");
    }

    /// The wire form of a request is stable.
    #[test]
    fn request_wire_form() {
        let r = req("198.18.0.10:80", None, "198.18.1.1:80", RsAction::Weight(3));
        let j = serde_json::to_string(&r).expect("ser");
        assert_eq!(
            j,
            r#"{"service":{"addr":{"addr":"198.18.0.10","port":80}},"protocol":null,"server":{"addr":"198.18.1.1","port":80},"action":{"weight":3}}"#
        );
        assert_eq!(serde_json::from_str::<RsRequest>(&j).expect("de"), r);
    }
}
