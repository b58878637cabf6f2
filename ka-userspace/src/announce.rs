//! `ka run --announce-table N`: the VIP routes a BGP daemon announces (BIRD's kernel protocol
//! with `learn`, FRR's `ip import-table N`). ka keeps `VIP/32 dev lo` (`/128` for IPv6) in
//! table N while this director should receive the VIP's traffic; [`decide`] says which VIPs
//! (pure), the [`Announcer`] task makes the table match through the netlink worker.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{config::Config, net::netlink::NetlinkClient};

/// The `protocol` of ka's routes: 18, `RTPROT_KEEPALIVED` (`proto keepalived` in `ip route`).
/// BIRD's `learn` imports any protocol but `kernel` (2) and its own `bird` (12) as alien
/// routes; FRR's `ip import-table` takes every route of the table. It is not one of FRR's own
/// values (186-196), which zebra sweeps from the kernel when it starts.
pub const ROUTE_PROTOCOL: u8 = 18;

/// How long a withdrawal on stop may take before the drain starts anyway.
pub const WITHDRAW_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses `--announce-table N`: a table of its own, not `local` (255), `main` (254),
/// `default` (253) or `unspec` (0).
///
/// # Errors
/// Not a number, or a reserved table.
pub fn parse_table(s: &str) -> Result<u32, String> {
    let t: u32 = s.trim().parse().map_err(|_| format!("{s:?} is not a routing table number"))?;
    match t {
        0 | 253..=255 => Err(format!("table {t} is reserved (unspec, default, main, local): give ka a table of its own, e.g. 100")),
        t => Ok(t),
    }
}

/// Where XDP attaches when no `vrrp_instance` names an interface and no `--iface` is given
/// (active-active directors often run no VRRP): the output interfaces of the real servers'
/// routes, loopback left out, in configuration order. Empty when none can be found.
pub async fn real_server_ifaces(cfg: &Config, netlink: &NetlinkClient) -> Vec<String> {
    let mut out = Vec::new();
    for rs in cfg.virtual_servers.iter().flat_map(|v| &v.real_servers) {
        let Ok(Some(hop)) = netlink.route_get(rs.address).await else { continue };
        let Ok(name) = nix::net::if_::if_indextoname(hop.ifindex) else { continue };
        let name = name.to_string_lossy().into_owned();
        if name != "lo" && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// What the routes depend on besides the configuration.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// Why nothing is forwarded (`None`: the XDP program is attached and forwarding).
    pub not_forwarding: Option<String>,
    /// Quorum of each virtual server, by its index in `Config::virtual_servers`.
    pub quorum: HashMap<usize, bool>,
    /// The VRRP instances that are MASTER.
    pub masters: BTreeSet<String>,
}

/// Which VIPs to announce, and why each other one is not.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// VIPs to announce.
    pub announce: BTreeSet<IpAddr>,
    /// VIPs withheld, with the reason.
    pub withheld: BTreeMap<IpAddr, String>,
}

/// Decides the routes (pure). Every address of a virtual server the datapath serves (groups
/// expanded; fwmark services have none) is announced while:
/// - the XDP program forwards (`facts.not_forwarding` is `None`);
/// - the `vrrp_instance` holding the address, if one does, is MASTER;
/// - every virtual server on the address has quorum (a director that cannot serve one of the
///   address's services leaves all of its traffic to the directors that can).
pub fn decide(cfg: &Config, facts: &Facts) -> Decision {
    let plan = crate::lb::plan::plan(cfg);
    let mut services: BTreeMap<IpAddr, Vec<(usize, String)>> = BTreeMap::new();
    for p in &plan.services {
        for (vip, _) in &p.keys {
            let list = services.entry(*vip).or_default();
            if !list.iter().any(|(i, _)| *i == p.vs_index) {
                list.push((p.vs_index, p.label.clone()));
            }
        }
    }
    let owners = cfg.vip_owners();
    let mut out = Decision::default();
    for (vip, list) in services {
        let owner = owners.get(&vip).and_then(|i| cfg.vrrp_instances.get(*i)).map(|i| i.name.as_str());
        let why = if let Some(reason) = &facts.not_forwarding {
            Some(reason.clone())
        } else if let Some(inst) = owner.filter(|n| !facts.masters.contains(*n)) {
            Some(format!("vrrp_instance {inst} is not MASTER"))
        } else {
            list.iter()
                .find(|(i, _)| !facts.quorum.get(i).copied().unwrap_or(false))
                .map(|(_, label)| format!("virtual server {label} has no quorum"))
        };
        match why {
            Some(w) => {
                out.withheld.insert(vip, w);
            }
            None => {
                out.announce.insert(vip);
            }
        }
    }
    out
}

/// The announced routes, as `ka status` reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceReport {
    /// The routing table.
    pub table: u32,
    /// The routes' protocol.
    pub protocol: u8,
    /// Routes in the table now.
    pub routes: Vec<String>,
    /// VIPs not announced, with the reason.
    pub withheld: BTreeMap<String, String>,
}

impl AnnounceReport {
    /// The lines of `ka status`.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(s, "announce table {} (proto {}): {} route(s)", self.table, self.protocol, self.routes.len());
        for r in &self.routes {
            let _ = writeln!(s, "    announced {r} dev lo");
        }
        for (vip, why) in &self.withheld {
            let _ = writeln!(s, "    withheld {vip}: {why}");
        }
        s
    }
}

/// The host route of `vip`: `/32` or `/128`.
fn host_prefix(vip: IpAddr) -> String {
    format!("{vip}/{}", if vip.is_ipv4() { 32 } else { 128 })
}

/// The netlink spec of `VIP/32 dev lo table N proto 18`.
fn route_spec(vip: IpAddr, table: u32, lo: u32) -> crate::net::netlink::RouteSpec {
    use crate::config::model::{IpPrefix, Route, RouteType};
    let route = Route {
        dst: IpPrefix { addr: vip, len: if vip.is_ipv4() { 32 } else { 128 } },
        kind: RouteType::Unicast,
        src: None,
        from: None,
        via: None,
        dev: Some("lo".to_owned()),
        table,
        metric: None,
        scope: None,
        protocol: Some(ROUTE_PROTOCOL),
        tos: None,
        onlink: false,
        pref: None,
        expires: None,
        metrics: Vec::new(),
        lock: 0,
        nexthops: Vec::new(),
        track: false,
        track_group: None,
        span: Default::default(),
    };
    crate::net::netlink::RouteSpec { route, ifindex: Some(lo), hop_ifindex: Vec::new() }
}

/// The reconciler: a task that makes table N hold exactly the routes it is given.
pub struct Announcer {
    table: u32,
    /// The last decision (for the status's reasons).
    decision: Decision,
    desired: watch::Sender<Option<BTreeSet<IpAddr>>>,
    installed: watch::Receiver<BTreeSet<IpAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Announcer {
    fn drop(&mut self) {
        // The routes stay: a ka that stops without withdrawing (a crash, a kept datapath)
        // leaves them for the datapath that keeps forwarding.
        self.task.abort();
    }
}

impl Announcer {
    /// Starts the task for `table`. It touches nothing before the first [`Announcer::set`];
    /// then routes of ka's protocol left in the table by an earlier run are kept if wanted and
    /// removed if not.
    pub fn spawn(netlink: NetlinkClient, table: u32) -> Announcer {
        let (desired, mut want_rx) = watch::channel::<Option<BTreeSet<IpAddr>>>(None);
        let (installed_tx, installed) = watch::channel(BTreeSet::new());
        let lo = nix::net::if_::if_nametoindex("lo").unwrap_or(1);
        let task = tokio::spawn(async move {
            let mut have: Option<BTreeSet<IpAddr>> = None;
            loop {
                let want = want_rx.borrow_and_update().clone();
                let mut failed = false;
                if let Some(want) = want {
                    if have.is_none() {
                        match netlink.routes(table, ROUTE_PROTOCOL).await {
                            Ok(rs) => {
                                let found: BTreeSet<IpAddr> = rs
                                    .iter()
                                    .filter(|r| r.oif == Some(lo))
                                    .filter_map(|r| r.dst.filter(|d| r.len == if d.is_ipv4() { 32 } else { 128 }))
                                    .collect();
                                if !found.is_empty() {
                                    info!(table, routes = found.len(), "announce: routes of an earlier run found in the table");
                                }
                                have = Some(found);
                            }
                            Err(e) => {
                                warn!(table, error = %e, "announce: cannot list the table; retrying");
                                failed = true;
                            }
                        }
                    }
                    if let Some(h) = have.as_mut() {
                        let gone: Vec<IpAddr> = h.difference(&want).copied().collect();
                        let new: Vec<IpAddr> = want.difference(h).copied().collect();
                        for (add, vip) in gone.into_iter().map(|v| (false, v)).chain(new.into_iter().map(|v| (true, v))) {
                            match netlink.route(add, route_spec(vip, table, lo)).await {
                                Ok(()) => {
                                    info!(table, route = %host_prefix(vip), "{}", if add { "announce: route added" } else { "announce: route withdrawn" });
                                    if add {
                                        h.insert(vip);
                                    } else {
                                        h.remove(&vip);
                                    }
                                }
                                Err(e) => {
                                    warn!(table, route = %host_prefix(vip), add, error = %e, "announce: route change failed; retrying");
                                    failed = true;
                                }
                            }
                        }
                        installed_tx.send_replace(h.clone());
                    }
                }
                if failed {
                    tokio::select! {
                        r = want_rx.changed() => if r.is_err() { return },
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                } else if want_rx.changed().await.is_err() {
                    return;
                }
            }
        });
        Announcer { table, decision: Decision::default(), desired, installed, task }
    }

    /// The routing table.
    pub fn table(&self) -> u32 {
        self.table
    }

    /// Makes the table hold the routes of `vips` (and only them).
    pub fn set(&self, vips: BTreeSet<IpAddr>) {
        self.desired.send_if_modified(|d| {
            let changed = d.as_ref() != Some(&vips);
            *d = Some(vips);
            changed
        });
    }

    /// The routes in the table now.
    pub fn installed(&self) -> BTreeSet<IpAddr> {
        self.installed.borrow().clone()
    }

    /// Withdraws every route and waits (at most `within`) until they are gone; `false` if
    /// some are left.
    pub async fn withdraw_all(&mut self, within: Duration) -> bool {
        self.set(BTreeSet::new());
        let gone = tokio::time::timeout(within, self.installed.wait_for(BTreeSet::is_empty)).await;
        matches!(gone, Ok(Ok(_)))
    }

    /// Decides the routes from `cfg`, the checkers' `backends` (their quorum), the MASTER
    /// instances and whether the datapath forwards, and makes the table follow.
    pub fn refresh(&mut self, cfg: &Config, not_forwarding: Option<String>, backends: &crate::health::BackendSet, masters: &BTreeSet<String>) {
        let facts = Facts {
            not_forwarding,
            quorum: backends.services.iter().map(|s| (s.vs_index, s.quorum_up)).collect(),
            masters: masters.clone(),
        };
        let decision = decide(cfg, &facts);
        if decision != self.decision {
            info!(table = self.table, announce = decision.announce.len(), withheld = decision.withheld.len(), "announce: routes decided");
        }
        self.set(decision.announce.clone());
        self.decision = decision;
    }

    /// The status report.
    pub fn report(&self) -> AnnounceReport {
        let decision = &self.decision;
        AnnounceReport {
            table: self.table,
            protocol: ROUTE_PROTOCOL,
            routes: self.installed().into_iter().map(host_prefix).collect(),
            withheld: decision.withheld.iter().map(|(a, w)| (a.to_string(), w.clone())).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        let l = crate::config::parse_str(text, std::path::Path::new("t.conf"), &crate::config::LoadOptions::default());
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        l.config
    }

    const CONF: &str = "vrrp_instance VI_1 {\n state BACKUP\n interface eth0\n virtual_router_id 51\n priority 100\n virtual_ipaddress {\n  198.18.0.10/32\n }\n}\n\
virtual_server 198.18.0.10 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.1.1 80 {\n }\n}\n\
virtual_server 198.18.0.20 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.1.1 80 {\n }\n}\n\
virtual_server 198.18.0.20 443 {\n lb_kind DR\n protocol TCP\n real_server 198.18.1.1 443 {\n }\n}\n\
virtual_server fd00:198:18::20 80 {\n lb_kind DR\n protocol TCP\n real_server fd00:198:18:1::1 80 {\n }\n}\n\
virtual_server fwmark 7 {\n lb_kind DR\n real_server 198.18.1.1 80 {\n }\n}\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    /// Each rule of [`decide`], one row each: forwarding, mastership of the owning instance,
    /// quorum of every service on the address; fwmark services have no route.
    #[test]
    fn routes_follow_forwarding_mastership_and_quorum() {
        let c = cfg(CONF);
        struct Case {
            name: &'static str,
            not_forwarding: Option<&'static str>,
            no_quorum: &'static [usize],
            masters: &'static [&'static str],
            announce: &'static [&'static str],
            withheld: &'static [(&'static str, &'static str)],
        }
        let cases = [
            Case {
                name: "all up, master",
                not_forwarding: None,
                no_quorum: &[],
                masters: &["VI_1"],
                announce: &["198.18.0.10", "198.18.0.20", "fd00:198:18::20"],
                withheld: &[],
            },
            Case {
                name: "backup: only the VRRP-owned VIP goes",
                not_forwarding: None,
                no_quorum: &[],
                masters: &[],
                announce: &["198.18.0.20", "fd00:198:18::20"],
                withheld: &[("198.18.0.10", "vrrp_instance VI_1 is not MASTER")],
            },
            Case {
                name: "one of two services on an address loses quorum: the address goes",
                not_forwarding: None,
                no_quorum: &[2],
                masters: &["VI_1"],
                announce: &["198.18.0.10", "fd00:198:18::20"],
                withheld: &[("198.18.0.20", "virtual server [198.18.0.20]:tcp:443 has no quorum")],
            },
            Case {
                name: "not forwarding: nothing",
                not_forwarding: Some("draining"),
                no_quorum: &[],
                masters: &["VI_1"],
                announce: &[],
                withheld: &[("198.18.0.10", "draining"), ("198.18.0.20", "draining"), ("fd00:198:18::20", "draining")],
            },
        ];
        for case in cases {
            let facts = Facts {
                not_forwarding: case.not_forwarding.map(str::to_owned),
                quorum: (0..c.virtual_servers.len()).map(|i| (i, !case.no_quorum.contains(&i))).collect(),
                masters: case.masters.iter().map(|s| (*s).to_owned()).collect(),
            };
            let d = decide(&c, &facts);
            let announce: BTreeSet<IpAddr> = case.announce.iter().map(|s| ip(s)).collect();
            assert_eq!(d.announce, announce, "{}", case.name);
            let withheld: BTreeMap<IpAddr, String> = case.withheld.iter().map(|(a, w)| (ip(a), (*w).to_owned())).collect();
            assert_eq!(d.withheld, withheld, "{}", case.name);
        }
    }

    /// A virtual server the checkers have not reported on yet has no quorum: nothing is
    /// announced before the first health report.
    #[test]
    fn unknown_quorum_is_no_quorum() {
        let c = cfg(CONF);
        let d = decide(&c, &Facts { masters: ["VI_1".to_owned()].into(), ..Default::default() });
        assert!(d.announce.is_empty(), "{d:?}");
    }

    #[test]
    fn reserved_tables_are_refused() {
        assert_eq!(parse_table("100"), Ok(100));
        assert_eq!(parse_table("1000"), Ok(1000));
        for t in ["0", "253", "254", "255", "main", "-1"] {
            assert!(parse_table(t).is_err(), "{t}");
        }
    }

    #[test]
    fn routes_are_host_routes_on_lo_with_our_protocol() {
        let s = route_spec(ip("fd00:198:18::20"), 100, 1);
        assert_eq!((s.route.dst.len, s.route.table, s.route.protocol, s.ifindex), (128, 100, Some(ROUTE_PROTOCOL), Some(1)));
        let s = route_spec(ip("198.18.0.10"), 100, 1);
        assert_eq!(s.route.dst.len, 32);
        assert_eq!(host_prefix(ip("198.18.0.10")), "198.18.0.10/32");
    }
}
