//! The dataplane owner: derives the load balancer's [`DesiredState`] from the configuration,
//! the health checkers' [`BackendSet`] and the VRRP mastership, and applies it to the XDP maps
//! through the [`MapWriter`]. The daemon calls it on every change; nothing here touches the
//! packet path directly.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::{
    config::{
        model::{VirtualServer, VsKey, VsgEntry},
        Config,
    },
    health::{BackendRole, BackendSet},
    lb::{
        conns::{ConnLifetimes, SweepTask, Sweeper},
        nexthop::{ForwardingSysctls, NextHopReport},
        resolver::{Resolver, CHECK_INTERVAL},
        writer::{backend_stats, neighbour_entry, service_stats, MapWriter},
        BackendSpec, DesiredState, L4Proto, LbError, Method, Persistence, Scheduler, ServiceSpec, TunnelSource,
    },
};

/// Counters of one real server, as `ka status` shows them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackendCounters {
    /// Address.
    pub address: IpAddr,
    /// Port.
    pub port: u16,
    /// Weight in the datapath (0: drained).
    pub weight: u32,
    /// In the tables (healthy, or inhibited at weight 0).
    pub in_table: bool,
    /// Packets forwarded to it.
    pub packets: u64,
    /// Bytes forwarded to it.
    pub bytes: u64,
    /// Established TCP connections (IPVS ActiveConn), in services that keep counts (a
    /// least-connection scheduler or a `uthreshold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_conns: Option<u32>,
    /// Other connections (IPVS InActConn), likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactive_conns: Option<u32>,
    /// Over its `uthreshold`: no new connections until below its `lthreshold`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overloaded: bool,
    /// Its next hop and whether the XDP program can reach it now (`reachable`; if not, `reach`
    /// says why: no route, no neighbour, forwarding disabled, not checked yet...). `None` while
    /// it is out of the tables.
    #[serde(default)]
    pub next_hop: Option<NextHopReport>,
}

/// Counters of one service (VIP, port, protocol).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceCounters {
    /// VIP.
    pub vip: IpAddr,
    /// Port.
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: String,
    /// Packets to the VIP handled by the datapath.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Real servers.
    pub backends: Vec<BackendCounters>,
}

/// Expands a virtual server into its (VIP, port) pairs.
///
/// # Errors
/// fwmark services (the XDP datapath has no firewall marks) and port-0 (all-port) services.
fn endpoints(cfg: &Config, vs: &VirtualServer) -> Result<Vec<(IpAddr, u16)>, LbError> {
    let out = match &vs.key {
        VsKey::Addr { addr, port } => vec![(*addr, *port)],
        VsKey::Fwmark(m) => return Err(LbError::Unsupported(format!("virtual_server fwmark {m}"))),
        VsKey::Group(name) => {
            let g = cfg
                .virtual_server_groups
                .iter()
                .find(|g| g.name == *name)
                .ok_or_else(|| LbError::Unsupported(format!("unknown virtual_server_group {name}")))?;
            let mut v = Vec::new();
            for e in &g.entries {
                match e {
                    VsgEntry::Range { first, last, port, .. } => v.extend(range(*first, *last)?.into_iter().map(|a| (a, *port))),
                    VsgEntry::Fwmark { mark, .. } => {
                        return Err(LbError::Unsupported(format!("fwmark {mark} in virtual_server_group {name}")))
                    }
                }
            }
            v
        }
    };
    if let Some((a, _)) = out.iter().find(|(_, p)| *p == 0) {
        return Err(LbError::Unsupported(format!("port 0 (all-port) service on {a}")));
    }
    Ok(out)
}

/// The addresses of a `virtual_server_group` range (at most 256).
fn range(first: IpAddr, last: IpAddr) -> Result<Vec<IpAddr>, LbError> {
    let bad = || LbError::Unsupported(format!("address range {first}-{last}"));
    let (a, b) = match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b))),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
        _ => return Err(bad()),
    };
    if b < a || b - a > 255 {
        return Err(bad());
    }
    Ok((a..=b)
        .map(|n| match first {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(0))),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
        })
        .collect())
}

/// Whether IPVS accepts a real server's thresholds: it refuses (`ERANGE`) an `lthreshold`
/// above the `uthreshold`, and keepalived then runs without that server (`ka check` warns).
fn thresholds_accepted(rs: &crate::config::model::RealServer) -> bool {
    rs.lthreshold.unwrap_or(0) <= rs.uthreshold.unwrap_or(0)
}

/// The entry lifetimes of `lvs_timeouts` (IPVS's defaults for those not given or 0).
pub fn conn_lifetimes(cfg: &Config) -> ConnLifetimes {
    let d = ConnLifetimes::default();
    let secs = |v: Option<u32>, default: std::time::Duration| {
        v.filter(|s| *s > 0).map_or(default, |s| std::time::Duration::from_secs(s.into()))
    };
    let t = &cfg.global.lvs_timeouts;
    ConnLifetimes { tcp: secs(t.tcp, d.tcp), tcp_fin: secs(t.tcp_fin, d.tcp_fin), udp: secs(t.udp, d.udp) }
}

/// Derives the desired maps. `vip_slot` maps each VRRP-owned VIP to its instance's mastership
/// slot; services on other addresses are always served. Real servers the health checkers do
/// not list stay in the service as unhealthy (out of the tables); listed ones carry the
/// checkers' weight (0 = drained).
///
/// # Errors
/// A service the datapath cannot serve (fwmark, port 0, SCTP, an unsupported scheduler or
/// tunnel type).
pub fn desired(
    cfg: &Config,
    health: &BackendSet,
    vip_slot: &HashMap<IpAddr, u32>,
    tunnel_src_v4: Option<TunnelSource>,
    tunnel_src_v6: Option<TunnelSource>,
) -> Result<DesiredState, LbError> {
    let mut services = Vec::new();
    for (i, vs) in cfg.virtual_servers.iter().enumerate() {
        let scheduler = Scheduler::from_lb_algo(vs.lb_algo)?;
        let method = Method::from_lb_kind(vs.lb_kind)?;
        let proto = L4Proto::from_protocol(vs.protocol)?;
        let listed = health.services.iter().find(|s| s.vs_index == i);
        let mut backends: Vec<BackendSpec> = Vec::new();
        for (k, rs) in vs.real_servers.iter().enumerate() {
            let b = listed.and_then(|s| s.backends.iter().find(|b| b.role == BackendRole::Real { index: k }));
            backends.push(BackendSpec {
                addr: rs.address,
                port: rs.port,
                weight: b.map_or(0, |b| b.weight),
                method: Method::from_lb_kind(rs.lb_kind).unwrap_or(method),
                healthy: b.is_some() && thresholds_accepted(rs),
                uthreshold: rs.uthreshold.unwrap_or(0),
                lthreshold: rs.lthreshold.unwrap_or(0),
            });
        }
        if let Some(sorry) = &vs.sorry_server {
            let b = listed.and_then(|s| s.backends.iter().find(|b| b.role == BackendRole::Sorry));
            backends.push(BackendSpec {
                addr: sorry.address,
                port: sorry.port,
                weight: b.map_or(0, |b| b.weight),
                method,
                healthy: b.is_some() && thresholds_accepted(sorry),
                uthreshold: sorry.uthreshold.unwrap_or(0),
                lthreshold: sorry.lthreshold.unwrap_or(0),
            });
        }
        for (vip, port) in endpoints(cfg, vs)? {
            let persistence = vs.persistence_timeout.map(|timeout| Persistence {
                timeout,
                prefix_len: match vs.persistence_granularity {
                    Some(IpAddr::V4(m)) => u8::try_from(u32::from(m).count_ones()).unwrap_or(32),
                    Some(IpAddr::V6(m)) => u8::try_from(u128::from(m).count_ones()).unwrap_or(128),
                    None if vip.is_ipv4() => 32,
                    None => 128,
                },
            });
            services.push(ServiceSpec {
                vip,
                port,
                proto,
                scheduler,
                persistence,
                master_slot: vip_slot.get(&vip).copied(),
                backends: backends.clone(),
            });
        }
    }
    Ok(DesiredState { services, tunnel_src_v4, tunnel_src_v6, neighbours: Vec::new() })
}

/// The load balancer's state in the daemon.
pub struct Dataplane {
    writer: MapWriter,
    /// VRRP instance name → mastership slot.
    slots: HashMap<String, u32>,
    vip_slot: HashMap<IpAddr, u32>,
    tunnel_src_v4: Option<TunnelSource>,
    tunnel_src_v6: Option<TunnelSource>,
    applied: Option<DesiredState>,
    /// Keeps the next hops of the real servers in the tables resolved.
    next_hops: Option<Resolver>,
    /// Expires idle connection-table entries; fed the `lvs_timeouts` lifetimes.
    sweeper: Option<(SweepTask, tokio::sync::watch::Sender<ConnLifetimes>)>,
}

impl Dataplane {
    /// Prepares the dataplane for `cfg`: one mastership slot per VRRP instance, owning its VIPs.
    pub fn new(cfg: &Config, tunnel_src_v4: Option<TunnelSource>, tunnel_src_v6: Option<TunnelSource>) -> Dataplane {
        let slot = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
        let slots = cfg.vrrp_instances.iter().enumerate().map(|(i, inst)| (inst.name.clone(), slot(i))).collect();
        let vip_slot = cfg.vip_owners().into_iter().map(|(a, i)| (a, slot(i))).collect();
        Dataplane { writer: MapWriter::new(), slots, vip_slot, tunnel_src_v4, tunnel_src_v6, applied: None, next_hops: None, sweeper: None }
    }

    /// Sweeps the connection table of `ebpf` every second on a task of its own (expired
    /// entries leave it and its connection counts), with the lifetimes of `cfg`'s
    /// `lvs_timeouts` (updated by [`Dataplane::update`]). Without the sweeper program, entries
    /// expire only when a packet finds them (logged).
    #[must_use]
    pub fn sweeping_connections(mut self, ebpf: &aya::Ebpf, cfg: &Config) -> Dataplane {
        match Sweeper::new(ebpf) {
            Ok(s) => {
                let (tx, rx) = tokio::sync::watch::channel(conn_lifetimes(cfg));
                self.sweeper = Some((crate::lb::conns::spawn(s, rx), tx));
            }
            Err(e) => warn!(error = %e, "no connection sweeper: idle entries expire only when a packet finds them"),
        }
        self
    }

    /// Keeps the next hop of every real server in the tables resolved through the rtnetlink
    /// worker (a [`Resolver`] task on the current runtime, checking once a second), hands the
    /// resolved next hops to the neighbour map ([`Dataplane::apply_next_hops`]), and reports
    /// them in [`Dataplane::counters`]. `ingress`: the interfaces XDP is attached to (their
    /// `forwarding` sysctls decide whether `bpf_fib_lookup` can answer).
    #[must_use]
    pub fn resolving_next_hops(mut self, netlink: crate::net::netlink::NetlinkClient, ingress: Vec<String>) -> Dataplane {
        self.next_hops = Some(Resolver::spawn(netlink, CHECK_INTERVAL, ingress, ForwardingSysctls::default()));
        self
    }

    /// A receiver told whenever the resolved next hops change: then call
    /// [`Dataplane::apply_next_hops`]. `None` without a resolver.
    pub fn next_hop_updates(&self) -> Option<tokio::sync::watch::Receiver<std::collections::BTreeMap<IpAddr, ka_common::lb::NeighValue>>> {
        self.next_hops.as_ref().map(Resolver::map_entry_updates)
    }

    /// Writes the resolved next hops that changed to the neighbour map (and removes those of
    /// real servers that left the tables or whose next hop became unusable). Errors are
    /// logged; the next change applies everything again.
    pub fn apply_next_hops(&mut self, ebpf: &mut aya::Ebpf) {
        let Some(r) = &self.next_hops else { return };
        let entries = r.map_entries();
        match self.writer.set_resolved(ebpf, &entries) {
            Ok(0) => {}
            Ok(changed) => debug!(changed, next_hops = entries.len(), "neighbour map updated"),
            Err(e) => warn!(error = %e, "writing the neighbour map failed"),
        }
    }

    /// Stops the next-hop resolver after it removed the neighbour entries it created.
    pub async fn shutdown(self) {
        if let Some(r) = self.next_hops {
            r.shutdown().await;
        }
    }

    /// Recomputes the desired state and applies what changed. Errors are logged: a service the
    /// datapath refuses leaves the previous tables in place.
    pub fn update(&mut self, ebpf: &mut aya::Ebpf, cfg: &Config, health: &BackendSet) {
        if let Some((_, tx)) = &self.sweeper {
            tx.send_if_modified(|l| {
                let new = conn_lifetimes(cfg);
                let changed = *l != new;
                *l = new;
                changed
            });
        }
        let d = match desired(cfg, health, &self.vip_slot, self.tunnel_src_v4, self.tunnel_src_v6) {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "load balancer: configuration not applied");
                return;
            }
        };
        if self.applied.as_ref() == Some(&d) {
            return;
        }
        match self.writer.apply(ebpf, &d) {
            Ok(report) => {
                info!(services = d.services.len(), ?report, "load balancer tables applied");
                if let Some(r) = &self.next_hops {
                    r.set_backends(d.services.iter().flat_map(|s| &s.backends).filter(|b| b.healthy).map(|b| b.addr).collect());
                }
                self.applied = Some(d);
            }
            Err(e) => warn!(error = %e, "load balancer: applying tables failed"),
        }
    }

    /// A reload: mastership slots follow the instances (a kept instance keeps its slot, under
    /// its new name when `renames` (old, new) says so; a new one takes a free slot, not served
    /// until it is Master; a deleted one's slot is freed and cleared). The tables are then
    /// rewritten by [`Dataplane::update`] with the new configuration (only changed slots).
    pub fn reload(&mut self, ebpf: &mut aya::Ebpf, cfg: &Config, renames: &[(String, String)]) {
        let mut old = std::mem::take(&mut self.slots);
        let renamed_from: HashMap<&str, &str> = renames.iter().map(|(from, to)| (to.as_str(), from.as_str())).collect();
        let mut slots: HashMap<String, u32> = HashMap::new();
        for inst in &cfg.vrrp_instances {
            let from = renamed_from.get(inst.name.as_str()).copied().unwrap_or(inst.name.as_str());
            if let Some(slot) = old.remove(from) {
                slots.insert(inst.name.clone(), slot);
            }
        }
        let mut free: Vec<u32> = old.into_values().collect();
        let mut next = slots.values().chain(&free).copied().max().map_or(0, |m| m + 1);
        free.sort_unstable_by(|a, b| b.cmp(a));
        for slot in &free {
            if let Err(e) = MapWriter::set_master(ebpf, *slot, false) {
                warn!(slot, error = %e, "clearing a freed mastership slot");
            }
        }
        for inst in &cfg.vrrp_instances {
            if slots.contains_key(&inst.name) {
                continue;
            }
            let slot = free.pop().unwrap_or_else(|| {
                next += 1;
                next - 1
            });
            if let Err(e) = MapWriter::set_master(ebpf, slot, false) {
                warn!(instance = %inst.name, slot, error = %e, "clearing a new mastership slot");
            }
            slots.insert(inst.name.clone(), slot);
        }
        let by_index: Vec<u32> = cfg.vrrp_instances.iter().map(|i| slots.get(&i.name).copied().unwrap_or(u32::MAX)).collect();
        self.vip_slot = cfg.vip_owners().into_iter().filter_map(|(a, i)| by_index.get(i).map(|s| (a, *s))).collect();
        self.slots = slots;
    }

    /// Follows a VRRP mastership change: the instance's VIPs are served only while Master.
    pub fn set_master(&mut self, ebpf: &mut aya::Ebpf, instance: &str, master: bool) {
        let Some(&slot) = self.slots.get(instance) else { return };
        match MapWriter::set_master(ebpf, slot, master) {
            Ok(()) => info!(instance, master, slot, "datapath mastership"),
            Err(e) => warn!(instance, error = %e, "setting datapath mastership"),
        }
    }

    /// Per-service and per-real-server counters.
    pub fn counters(&self, ebpf: &aya::Ebpf) -> Vec<ServiceCounters> {
        let Some(d) = &self.applied else { return Vec::new() };
        d.services
            .iter()
            .map(|s| {
                let st = self.writer.service_id(s).and_then(|id| service_stats(ebpf, id).ok()).unwrap_or_default();
                ServiceCounters {
                    vip: s.vip,
                    port: s.port,
                    protocol: match s.proto {
                        L4Proto::Tcp => "TCP".into(),
                        L4Proto::Udp => "UDP".into(),
                    },
                    packets: st.packets,
                    bytes: st.bytes,
                    backends: s
                        .backends
                        .iter()
                        .map(|b| {
                            let bs = self
                                .writer
                                .backend_id(s, b.addr, b.port, b.method)
                                .and_then(|id| backend_stats(ebpf, id).ok())
                                .unwrap_or_default();
                            // Judged as XDP will act: the FIB, else the neighbour map as it is.
                            let next_hop = b.healthy.then(|| {
                                let in_map = neighbour_entry(ebpf, b.addr).ok().flatten().is_some();
                                match self.next_hops.as_ref().and_then(|r| r.report(b.addr)) {
                                    Some(r) => r.judged(b.method, in_map),
                                    None => NextHopReport::not_checked(),
                                }
                            });
                            let conns = crate::lb::writer::keeps_counts(s)
                                .then(|| self.writer.backend_id(s, b.addr, b.port, b.method).and_then(|id| self.writer.conn_counts(id)))
                                .flatten();
                            BackendCounters {
                                address: b.addr,
                                port: b.port,
                                weight: b.weight,
                                in_table: b.healthy,
                                packets: bs.packets,
                                bytes: bs.bytes,
                                active_conns: conns.map(|c| c.active),
                                inactive_conns: conns.map(|c| c.inactive),
                                overloaded: conns.is_some_and(|c| c.overloaded != 0),
                                next_hop,
                            }
                        })
                        .collect(),
                }
            })
            .collect()
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

    const CONF: &str = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n 198.18.0.10\n }\n}\n\
virtual_server 198.18.0.10 80 {\n lb_algo mh\n lb_kind DR\n protocol TCP\n persistence_timeout 60\n\
 real_server 198.18.1.1 80 {\n weight 2\n TCP_CHECK {\n }\n }\n real_server 198.18.1.2 80 {\n TCP_CHECK {\n }\n }\n}\n\
virtual_server 198.18.0.20 53 {\n lb_algo rr\n lb_kind NAT\n protocol UDP\n real_server 198.18.1.3 5353 {\n }\n}\n";

    /// Health decides membership and weight; VRRP-owned VIPs get their instance's slot.
    #[test]
    fn desired_state_follows_health_and_vrrp() {
        let c = cfg(CONF);
        let health = BackendSet {
            services: vec![
                ServiceBackends {
                    vs_index: 0,
                    name: "a".into(),
                    active: ActiveSet::RealServers,
                    quorum_up: true,
                    weight_sum: 2,
                    backends: vec![Backend { addr: "198.18.1.1".parse().expect("ip"), port: 80, weight: 2, role: BackendRole::Real { index: 0 } }],
                },
                ServiceBackends {
                    vs_index: 1,
                    name: "b".into(),
                    active: ActiveSet::RealServers,
                    quorum_up: true,
                    weight_sum: 1,
                    backends: vec![Backend { addr: "198.18.1.3".parse().expect("ip"), port: 5353, weight: 1, role: BackendRole::Real { index: 0 } }],
                },
            ],
        };
        let dp = Dataplane::new(&c, None, None);
        let d = desired(&c, &health, &dp.vip_slot, None, None).expect("desired");
        assert_eq!(d.services.len(), 2);
        let web = &d.services[0];
        assert_eq!((web.port, web.proto, web.scheduler, web.master_slot), (80, L4Proto::Tcp, Scheduler::Maglev, Some(0)));
        assert_eq!(web.persistence.map(|p| p.prefix_len), Some(32));
        assert!(web.backends[0].healthy && web.backends[0].weight == 2);
        assert!(!web.backends[1].healthy && web.backends[1].weight == 0, "unlisted server leaves the tables");
        let dns = &d.services[1];
        assert_eq!((dns.proto, dns.master_slot, dns.backends[0].method), (L4Proto::Udp, None, Method::Nat));
    }

    /// Every IPVS scheduler maps to its datapath scheduler (none approximated), real-server
    /// thresholds reach the backends, and a real server IPVS would refuse for its thresholds
    /// (lthreshold above uthreshold) stays out of the tables.
    #[test]
    fn schedulers_and_thresholds_reach_the_desired_state() {
        let cases = [
            ("lc", Scheduler::LeastConn),
            ("wlc", Scheduler::WeightedLeastConn),
            ("sed", Scheduler::ShortestExpectedDelay),
            ("nq", Scheduler::NeverQueue),
            ("fo", Scheduler::FailOver),
            ("ovf", Scheduler::Overflow),
            ("lblc", Scheduler::LocalityLeastConn),
            ("lblcr", Scheduler::LocalityLeastConnReplicated),
            ("twos", Scheduler::TwoChoices),
            ("rr", Scheduler::RoundRobin),
            ("mh", Scheduler::Maglev),
        ];
        for (algo, want) in cases {
            let c = cfg(&format!(
                "virtual_server 198.18.0.1 80 {{\n lb_algo {algo}\n lb_kind DR\n protocol TCP\n\
 real_server 198.18.1.1 80 {{\n uthreshold 10\n lthreshold 4\n }}\n real_server 198.18.1.2 80 {{\n lthreshold 4\n }}\n}}\n"
            ));
            let health = BackendSet {
                services: vec![ServiceBackends {
                    vs_index: 0,
                    name: "a".into(),
                    active: ActiveSet::RealServers,
                    quorum_up: true,
                    weight_sum: 2,
                    backends: (0..2)
                        .map(|i| Backend { addr: format!("198.18.1.{}", i + 1).parse().expect("ip"), port: 80, weight: 1, role: BackendRole::Real { index: i } })
                        .collect(),
                }],
            };
            let d = desired(&c, &health, &HashMap::new(), None, None).expect("desired");
            let s = &d.services[0];
            assert_eq!(s.scheduler, want, "{algo}");
            assert_eq!((s.backends[0].uthreshold, s.backends[0].lthreshold, s.backends[0].healthy), (10, 4, true), "{algo}");
            assert!(!s.backends[1].healthy, "{algo}: lthreshold 4 above uthreshold 0 is refused, as IPVS does");
        }
    }

    /// `lvs_timeouts` sets the lifetimes it names; the others (and 0) keep IPVS's defaults.
    #[test]
    fn lvs_timeouts_give_the_lifetimes() {
        let secs = std::time::Duration::from_secs;
        assert_eq!(conn_lifetimes(&cfg("")), ConnLifetimes::default());
        let c = cfg("global_defs {\n lvs_timeouts tcp 7200 tcpfin 60 udp 0\n}\n");
        assert_eq!(conn_lifetimes(&c), ConnLifetimes { tcp: secs(7200), tcp_fin: secs(60), udp: secs(300) });
        let c = cfg("global_defs {\n lvs_timeouts udp 5\n}\n");
        assert_eq!(conn_lifetimes(&c), ConnLifetimes { tcp: secs(900), tcp_fin: secs(120), udp: secs(5) });
    }

    /// Services the datapath cannot serve are refused with a clear reason.
    #[test]
    fn fwmark_and_port_zero_are_refused() {
        let c = cfg("virtual_server fwmark 7 {\n lb_algo rr\n lb_kind DR\n real_server 198.18.1.1 80 {\n }\n}\n");
        let e = desired(&c, &BackendSet::default(), &HashMap::new(), None, None).expect_err("fwmark");
        assert!(e.to_string().contains("fwmark"), "{e}");
        let c = cfg("virtual_server 198.18.0.1 0 {\n lb_algo rr\n lb_kind DR\n protocol TCP\n persistence_timeout 60\n real_server 198.18.1.1 0 {\n }\n}\n");
        let e = desired(&c, &BackendSet::default(), &HashMap::new(), None, None).expect_err("port 0");
        assert!(e.to_string().contains("port 0"), "{e}");
    }
}
