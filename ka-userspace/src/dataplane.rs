//! The dataplane owner: derives the load balancer's [`DesiredState`] from the configuration,
//! the health checkers' [`BackendSet`] and the VRRP mastership, and applies it to the XDP maps
//! through the [`MapWriter`]. The daemon calls it on every change; nothing here touches the
//! packet path directly.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use ka_common::lb::{ServiceKey, MAX_MASTER_SLOTS};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::{
    config::Config,
    health::{BackendRole, BackendSet},
    lb::{
        conns::{ConnLifetimes, SweepTask, Sweeper},
        nexthop::{ForwardingSysctls, NextHopReport},
        plan::{plan, Refusal},
        resolver::{Resolver, CHECK_INTERVAL},
        adopt::{reconcile, AdoptedServer, AdoptedTables},
        writer::{backend_stats, check_service, neighbour_entry, service_stats, MapWriter},
        BackendSpec, DesiredState, L4Proto, Member, Method, ServiceOptions, ServiceSpec, TunnelSource,
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
    /// Established TCP connections (IPVS ActiveConn): counted by the datapath in services that
    /// keep counts (a least-connection scheduler or a `uthreshold`), else the sweeper's tally
    /// of the connection table (at most a second old); `None` before the first sweep.
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
    /// The service's other addresses and ports (`ADDR:PORT`, a `virtual_server_group`'s).
    #[serde(default)]
    pub also: Vec<String>,
    /// `TCP` or `UDP`.
    pub protocol: String,
    /// Packets to the VIP handled by the datapath.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Real servers.
    pub backends: Vec<BackendCounters>,
}

/// What the datapath is to hold, and what it does not serve.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// The services served.
    pub state: DesiredState,
    /// The virtual servers (or group entries) refused, each alone.
    pub refused: Vec<Refusal>,
}

/// Whether IPVS accepts a real server's thresholds: it refuses (`ERANGE`) an `lthreshold`
/// above the `uthreshold`, and keepalived then runs without that server (`ka check` warns).
fn thresholds_accepted(rs: &crate::config::model::RealServer) -> bool {
    rs.lthreshold.unwrap_or(0) <= rs.uthreshold.unwrap_or(0)
}

/// The entry lifetimes of `lvs_timeouts` (IPVS's defaults for those not given or 0) and the
/// flood-mode rate of `lvs_flood_rate` (default [`ka_common::sched::DEFAULT_FLOOD_RATE`]).
pub fn conn_lifetimes(cfg: &Config) -> ConnLifetimes {
    let d = ConnLifetimes::default();
    let secs = |v: Option<u32>, default: std::time::Duration| {
        v.filter(|s| *s > 0).map_or(default, |s| std::time::Duration::from_secs(s.into()))
    };
    let t = &cfg.global.lvs_timeouts;
    ConnLifetimes {
        tcp: secs(t.tcp, d.tcp),
        tcp_fin: secs(t.tcp_fin, d.tcp_fin),
        udp: secs(t.udp, d.udp),
        flood_rate: cfg.global.lvs_flood_rate.unwrap_or(d.flood_rate),
    }
}

/// Derives the desired maps from the [`plan`] of `cfg`. `vip_slot` maps each VRRP-owned VIP to
/// its instance's mastership slot; other addresses are always served. Real servers the health
/// checkers do not list stay in the service as unhealthy (out of the tables); listed ones
/// carry the checkers' weight (0 = drained).
///
/// A virtual server the datapath cannot serve (a fwmark, SCTP, a GUE tunnel, TUN without a
/// tunnel source...) is refused alone, in [`Desired::refused`]; every other one is served.
pub fn desired(
    cfg: &Config,
    health: &BackendSet,
    vip_slot: &HashMap<IpAddr, u32>,
    tunnel_src_v4: Option<TunnelSource>,
    tunnel_src_v6: Option<TunnelSource>,
) -> Desired {
    let plan = plan(cfg);
    let mut refused = plan.refused;
    let mut services = Vec::new();
    for p in plan.services {
        let Some(vs) = cfg.virtual_servers.get(p.vs_index) else { continue };
        let listed = health.services.iter().find(|s| s.vs_index == p.vs_index);
        let mut backends: Vec<BackendSpec> = Vec::new();
        for (k, (rs, method)) in vs.real_servers.iter().zip(&p.methods).enumerate() {
            let b = listed.and_then(|s| s.backends.iter().find(|b| b.role == BackendRole::Real { index: k }));
            backends.push(BackendSpec {
                addr: rs.address,
                port: rs.port,
                weight: b.map_or(0, |b| b.weight),
                method: *method,
                healthy: b.is_some() && thresholds_accepted(rs),
                uthreshold: rs.uthreshold.unwrap_or(0),
                lthreshold: rs.lthreshold.unwrap_or(0),
            });
        }
        if let (Some(sorry), Some(method)) = (&vs.sorry_server, p.sorry_method) {
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
        let member = |(vip, port): (IpAddr, u16)| Member { vip, port, master_slot: vip_slot.get(&vip).copied() };
        let mut members = p.keys.iter().copied().map(member);
        let Some(first) = members.next() else { continue };
        let spec = ServiceSpec {
            vip: first.vip,
            port: first.port,
            proto: p.proto,
            scheduler: p.scheduler,
            persistence: p.persistence,
            master_slot: first.master_slot,
            backends,
            options: ServiceOptions { also: members.collect(), ..p.options },
        };
        let tunnel_src = if spec.vip.is_ipv4() { tunnel_src_v4 } else { tunnel_src_v6 };
        let why = if spec.backends.iter().any(|b| b.method == Method::Tun) && tunnel_src.is_none() {
            Some(format!(
                "its TUN real servers need an IPv{} tunnel source address: give --tunnel-source or an address on an XDP interface",
                if spec.vip.is_ipv4() { 4 } else { 6 }
            ))
        } else {
            check_service(&spec).err().map(|e| e.to_string())
        };
        match why {
            Some(reason) => refused.push(Refusal { service: p.label, entry: None, reason, span: vs.span }),
            None => services.push(spec),
        }
    }
    Desired { state: DesiredState { services, tunnel_src_v4, tunnel_src_v6, neighbours: Vec::new() }, refused }
}

/// Mastership slots on an adopted start (pure): an instance takes the slot its VIPs were
/// served under in the earlier run (the first of its VIPs that has one still free), the
/// others the lowest free slots. Returns the slots by instance name and the slots kept.
pub fn adopted_slots(instances: &[(String, Vec<IpAddr>)], vip_slots: &HashMap<IpAddr, u32>) -> (HashMap<String, u32>, BTreeSet<u32>) {
    let mut slots = HashMap::new();
    let mut kept = BTreeSet::new();
    for (name, vips) in instances {
        if let Some(s) = vips.iter().filter_map(|v| vip_slots.get(v)).find(|s| !kept.contains(*s) && **s < MAX_MASTER_SLOTS) {
            kept.insert(*s);
            slots.insert(name.clone(), *s);
        }
    }
    let mut next = 0u32;
    for (name, _) in instances {
        if slots.contains_key(name) {
            continue;
        }
        while kept.contains(&next) {
            next += 1;
        }
        slots.insert(name.clone(), next);
        next += 1;
    }
    (slots, kept)
}

/// The service-map key of (VIP, port, protocol).
fn key_of(vip: IpAddr, port: u16, proto: L4Proto) -> ServiceKey {
    let (addr, family) = crate::lb::addr16(vip);
    ServiceKey { addr, port: port.to_be_bytes(), proto: proto.number(), family }
}

/// The health each real server starts with on an adopted start, by (virtual server, real
/// server) index (see [`crate::health::HealthOptions::initial`]): up when the earlier run had
/// it in its table (or out of it at a configured weight of 0: drained), down when it had it
/// out of its table otherwise (failed, or inhibited after a failure). Real servers the maps do
/// not have (new ones) are left out: they start as their checkers' `alpha` says.
pub fn adopted_health(cfg: &Config, adopted: &AdoptedTables) -> HashMap<(usize, usize), bool> {
    let mut out = HashMap::new();
    for p in plan(cfg).services {
        let Some(vs) = cfg.virtual_servers.get(p.vs_index) else { continue };
        let i = p.vs_index;
        for (k, rs) in vs.real_servers.iter().enumerate() {
            let Some(&m) = p.methods.get(k) else { continue };
            let state = p.keys.iter().find_map(|(vip, port)| adopted.server_state(&key_of(*vip, *port, p.proto), rs.address, rs.port, m));
            let up = match state {
                None => continue,
                Some(AdoptedServer::InTable) => true,
                Some(AdoptedServer::Out { down }) => !down && rs.weight <= 0,
            };
            out.insert((i, k), up);
        }
    }
    out
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
    /// What the last update refused (logged when it changes).
    refused: Vec<Refusal>,
    /// Keeps the next hops of the real servers in the tables resolved.
    next_hops: Option<Resolver>,
    /// The maps of an earlier run, reconciled with the first desired state by the first
    /// [`Dataplane::update`].
    adopted: Option<AdoptedTables>,
    /// Mastership slots kept from the earlier run (their values stay until the engine reports).
    kept_slots: BTreeSet<u32>,
    /// Backend ids by real-server name, for connection sync ([`crate::lb::sync`]).
    sync_index: tokio::sync::watch::Sender<std::sync::Arc<crate::lb::sync::SyncIndex>>,
    /// Expires idle connection-table entries; fed the `lvs_timeouts` lifetimes.
    sweeper: Option<(SweepTask, tokio::sync::watch::Sender<ConnLifetimes>)>,
}

impl Dataplane {
    /// Prepares the dataplane for `cfg`: one mastership slot per VRRP instance, owning its VIPs.
    pub fn new(cfg: &Config, tunnel_src_v4: Option<TunnelSource>, tunnel_src_v6: Option<TunnelSource>) -> Dataplane {
        let slot = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
        let slots = cfg.vrrp_instances.iter().enumerate().map(|(i, inst)| (inst.name.clone(), slot(i))).collect();
        let vip_slot = cfg.vip_owners().into_iter().map(|(a, i)| (a, slot(i))).collect();
        Dataplane { writer: MapWriter::new(), slots, vip_slot, tunnel_src_v4, tunnel_src_v6, applied: None, refused: Vec::new(), next_hops: None, sweeper: None, adopted: None, kept_slots: BTreeSet::new(), sync_index: tokio::sync::watch::Sender::new(std::sync::Arc::default()) }
    }

    /// Starts from the maps of an earlier run (read with [`AdoptedTables::read`]): each VRRP
    /// instance keeps the mastership slot its VIPs were served under, and the first
    /// [`Dataplane::update`] reconciles the maps with the desired state
    /// ([`crate::lb::adopt::reconcile`]): unchanged services and real servers keep their ids
    /// and their tables, stale ones are removed, only the slots that changed are written.
    #[must_use]
    pub fn adopting(mut self, cfg: &Config, adopted: AdoptedTables) -> Dataplane {
        let instances: Vec<(String, Vec<IpAddr>)> = cfg
            .vrrp_instances
            .iter()
            .map(|i| (i.name.clone(), i.virtual_ipaddresses.iter().chain(&i.virtual_ipaddresses_excluded).map(|v| v.address.addr).collect()))
            .collect();
        let (slots, kept) = adopted_slots(&instances, &adopted.vip_slots());
        let by_index: Vec<u32> = cfg.vrrp_instances.iter().map(|i| slots.get(&i.name).copied().unwrap_or(u32::MAX)).collect();
        self.vip_slot = cfg.vip_owners().into_iter().filter_map(|(a, i)| by_index.get(i).map(|s| (a, *s))).collect();
        self.slots = slots;
        self.kept_slots = kept;
        self.adopted = Some(adopted);
        self
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

    /// The backends of the applied tables by real-server name, updated on every change (the
    /// connection-sync task follows it).
    pub fn sync_index(&self) -> tokio::sync::watch::Receiver<std::sync::Arc<crate::lb::sync::SyncIndex>> {
        self.sync_index.subscribe()
    }

    /// Stops the next-hop resolver after it removed the neighbour entries it created.
    pub async fn shutdown(self) {
        if let Some(r) = self.next_hops {
            r.shutdown().await;
        }
    }

    /// Recomputes the desired state and applies what changed. A virtual server the datapath
    /// cannot serve is refused alone (logged once, listed by [`Dataplane::refused`]); the
    /// others are applied. Map errors are logged: the next update applies everything again.
    pub fn update(&mut self, ebpf: &mut aya::Ebpf, cfg: &Config, health: &BackendSet) {
        if let Some((_, tx)) = &self.sweeper {
            tx.send_if_modified(|l| {
                let new = conn_lifetimes(cfg);
                let changed = *l != new;
                *l = new;
                changed
            });
        }
        let Desired { state: d, refused } = desired(cfg, health, &self.vip_slot, self.tunnel_src_v4, self.tunnel_src_v6);
        if refused != self.refused {
            for r in refused.iter().filter(|r| !self.refused.contains(r)) {
                warn!(service = %r.service, entry = r.entry.as_deref().unwrap_or("all"), reason = %r.reason, "load balancer: virtual server not served");
            }
            self.refused = refused;
        }
        if let Some(adopted) = self.adopted.take() {
            let r = reconcile(&adopted, &d);
            info!(
                services = r.services.len(),
                backends = r.backends.len(),
                backends_identified = r.backend_ids.len(),
                retired_backends = r.retired_backends.len(),
                "load balancer: adopting the tables of the earlier run"
            );
            self.writer = MapWriter::adopt(r);
            // Slots no instance keeps are cleared; kept ones stay until the engine reports.
            for slot in (0..MAX_MASTER_SLOTS).filter(|s| !self.kept_slots.contains(s)) {
                if let Err(e) = MapWriter::set_master(ebpf, slot, false) {
                    warn!(slot, error = %e, "clearing a mastership slot");
                }
            }
        }
        if self.applied.as_ref() == Some(&d) {
            return;
        }
        match self.writer.apply(ebpf, &d) {
            Ok(report) => {
                info!(services = d.services.len(), ?report, "load balancer tables applied");
                if let Some(r) = &self.next_hops {
                    r.set_backends(d.services.iter().flat_map(|s| &s.backends).filter(|b| b.healthy).map(|b| b.addr).collect());
                }
                self.sync_index.send_replace(std::sync::Arc::new(crate::lb::sync::SyncIndex::build(&d, &self.writer)));
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

    /// The virtual servers (or group entries) the last update refused, and why.
    pub fn refused(&self) -> &[Refusal] {
        &self.refused
    }

    /// Per-service and per-real-server counters.
    pub fn counters(&self, ebpf: &aya::Ebpf) -> Vec<ServiceCounters> {
        let Some(d) = &self.applied else { return Vec::new() };
        let tally = self.sweeper.as_ref().and_then(|(t, _)| t.tally());
        d.services
            .iter()
            .map(|s| {
                let st = self.writer.service_id(s).and_then(|id| service_stats(ebpf, id).ok()).unwrap_or_default();
                ServiceCounters {
                    vip: s.vip,
                    port: s.port,
                    also: s.options.also.iter().map(|m| std::net::SocketAddr::new(m.vip, m.port).to_string()).collect(),
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
                            // Counted by the datapath where the service keeps counts (exact),
                            // else the sweeper's tally (at most a sweep period old).
                            let id = self.writer.backend_id(s, b.addr, b.port, b.method);
                            let counted = crate::lb::writer::keeps_counts(s);
                            let conns = match id {
                                Some(id) if counted => self.writer.conn_counts(id),
                                Some(id) => tally.as_ref().and_then(|t| t.get(id as usize).copied()),
                                None => None,
                            };
                            BackendCounters {
                                address: b.addr,
                                port: b.port,
                                weight: b.weight,
                                in_table: b.healthy,
                                packets: bs.packets,
                                bytes: bs.bytes,
                                active_conns: conns.map(|c| c.active),
                                inactive_conns: conns.map(|c| c.inactive),
                                overloaded: counted && conns.is_some_and(|c| c.overloaded != 0),
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
        lb::Scheduler,
    };

    fn cfg(text: &str) -> Config {
        let l = parse_str(text, std::path::Path::new("t.conf"), &LoadOptions::default());
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        l.config
    }

    const CONF: &str = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n 198.18.0.10\n }\n}\n\
virtual_server 198.18.0.10 80 {\n lb_algo mh\n mh-port\n lb_kind DR\n protocol TCP\n persistence_timeout 60\n\
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
        let d = desired(&c, &health, &dp.vip_slot, None, None);
        assert!(d.refused.is_empty(), "{:?}", d.refused);
        let d = d.state;
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
            // Without `mh-port`, IPVS's mh hashes the client address only.
            ("mh", Scheduler::SourceHash),
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
            let d = desired(&c, &health, &HashMap::new(), None, None).state;
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
        let d = ConnLifetimes::default();
        assert_eq!(conn_lifetimes(&c), ConnLifetimes { tcp: secs(7200), tcp_fin: secs(60), udp: secs(300), ..d });
        let c = cfg("global_defs {\n lvs_timeouts udp 5\n}\n");
        assert_eq!(conn_lifetimes(&c), ConnLifetimes { tcp: secs(900), tcp_fin: secs(120), udp: secs(5), ..d });
        assert_eq!(d.flood_rate, ka_common::sched::DEFAULT_FLOOD_RATE);
        let c = cfg("global_defs {\n lvs_flood_rate 0\n}\n");
        assert_eq!(conn_lifetimes(&c), ConnLifetimes { flood_rate: 0, ..d }, "0 turns flood mode off");
        let c = cfg("global_defs {\n lvs_flood_rate 250\n}\n");
        assert_eq!(conn_lifetimes(&c).flood_rate, 250);
    }

    /// Services the datapath cannot serve are refused with a clear reason.
    /// An adopted start keeps each instance on the slot its VIPs were served under; new
    /// instances take the lowest slots nobody keeps.
    #[test]
    fn adopted_slots_follow_the_vips() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let instances = vec![
            ("NEW".to_owned(), vec![ip("198.18.0.30")]),
            ("B".to_owned(), vec![ip("198.18.0.20")]),
            ("A".to_owned(), vec![ip("198.18.0.9"), ip("198.18.0.10")]),
        ];
        let vip_slots = HashMap::from([(ip("198.18.0.10"), 0), (ip("198.18.0.20"), 1), (ip("198.18.0.99"), 2)]);
        let (slots, kept) = adopted_slots(&instances, &vip_slots);
        assert_eq!(slots["A"], 0);
        assert_eq!(slots["B"], 1);
        assert_eq!(slots["NEW"], 2, "the slot of a removed instance is free again");
        assert_eq!(kept, BTreeSet::from([0, 1]));
    }

    /// The health seed follows what the earlier run's maps say of each real server.
    #[test]
    fn adopted_health_follows_the_maps() {
        use ka_common::lb::{Backend, ServiceValue, BACKEND_F_DOWN, METHOD_DR};
        let c = cfg(CONF);
        let key = key_of("198.18.0.10".parse().expect("ip"), 80, L4Proto::Tcp);
        let be = |last: u8, flags: u32| Backend { addr: crate::lb::addr16(std::net::IpAddr::from([198, 18, 1, last])).0, port: 80u16.to_be_bytes(), family: 4, method: METHOD_DR, flags, uthreshold: 0, lthreshold: 0 };
        let adopted = AdoptedTables {
            services: vec![(key, ServiceValue { id: 0, len: [2, 0], master_slot: 0, ..Default::default() })],
            backends: std::collections::BTreeMap::from([(0, be(1, 0)), (1, be(2, BACKEND_F_DOWN))]),
            banks: HashMap::from([(0, [vec![0, 0], vec![]])]),
        };
        let seed = adopted_health(&c, &adopted);
        assert_eq!(seed, HashMap::from([((0, 0), true), ((0, 1), false)]), "the UDP service was not in the maps: not seeded");
    }

    /// A `virtual_server_group` is seeded from whichever of its keys the maps have: here only
    /// the group's second address was in the earlier run's maps (the first is new).
    #[test]
    fn adopted_health_of_a_group_uses_any_member_key() {
        use ka_common::lb::{Backend, ServiceValue, BACKEND_F_DOWN, METHOD_DR};
        let c = cfg("virtual_server_group g {\n 198.18.0.10 80\n 198.18.0.11 80\n}\nvirtual_server group g {\n lb_algo rr\n lb_kind DR\n protocol TCP\n\
 real_server 198.18.1.1 80 {\n }\n real_server 198.18.1.2 80 {\n }\n}\n");
        let key = key_of("198.18.0.11".parse().expect("ip"), 80, L4Proto::Tcp);
        let be = |last: u8, flags: u32| Backend { addr: crate::lb::addr16(std::net::IpAddr::from([198, 18, 1, last])).0, port: 80u16.to_be_bytes(), family: 4, method: METHOD_DR, flags, uthreshold: 0, lthreshold: 0 };
        let adopted = AdoptedTables {
            services: vec![(key, ServiceValue { id: 0, len: [2, 0], ..Default::default() })],
            backends: std::collections::BTreeMap::from([(0, be(1, 0)), (1, be(2, BACKEND_F_DOWN))]),
            banks: HashMap::from([(0, [vec![0, 0], vec![]])]),
        };
        assert_eq!(adopted_health(&c, &adopted), HashMap::from([((0, 0), true), ((0, 1), false)]));
    }

    const SERVED: &str = "virtual_server 198.18.0.30 80 {\n lb_algo rr\n lb_kind DR\n protocol TCP\n real_server 198.18.1.9 80 {\n }\n}\n";

    /// A virtual server the datapath cannot serve is refused alone, with its reason; the
    /// others are served. On the old datapath one refusal emptied the whole state.
    #[test]
    fn a_refused_virtual_server_does_not_take_the_others_down() {
        struct Case {
            name: &'static str,
            conf: &'static str,
            /// Substrings of the refusal's reason.
            reason: &'static [&'static str],
            /// (tunnel source v4 given).
            tunnel: bool,
        }
        let cases = [
            Case { name: "fwmark", conf: "virtual_server fwmark 7 {\n lb_algo rr\n lb_kind DR\n real_server 198.18.1.1 80 {\n }\n}\n", reason: &["firewall mark", "virtual_server_group"], tunnel: false },
            Case { name: "SCTP", conf: "virtual_server 198.18.0.1 80 {\n lb_kind DR\n protocol SCTP\n real_server 198.18.1.1 80 {\n }\n}\n", reason: &["SCTP"], tunnel: false },
            Case { name: "GUE real server", conf: "virtual_server 198.18.0.1 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.1.1 80 {\n lvs_method TUN type gue port 6080\n }\n}\n", reason: &["GUE", "198.18.1.1"], tunnel: true },
            Case { name: "TUN without tunnel source", conf: "virtual_server 198.18.0.1 80 {\n lb_kind TUN\n protocol TCP\n real_server 198.18.1.1 80 {\n }\n}\n", reason: &["tunnel source"], tunnel: false },
            Case { name: "group of fwmarks only", conf: "virtual_server_group g {\n fwmark 3\n}\nvirtual_server group g {\n lb_kind DR\n real_server 198.18.1.1 80 {\n }\n}\n", reason: &["no address entry", "firewall mark"], tunnel: false },
            Case { name: "key already served", conf: "virtual_server 198.18.0.30 80 {\n lb_kind NAT\n protocol TCP\n real_server 198.18.1.1 80 {\n }\n}\n", reason: &["already serves", "[198.18.0.30]:tcp:80"], tunnel: false },
        ];
        for c in cases {
            let text = format!("{SERVED}{}", c.conf);
            let l = parse_str(&text, std::path::Path::new("t.conf"), &LoadOptions::default());
            let health = BackendSet::default();
            let tun = c.tunnel.then(|| TunnelSource { addr: "198.18.0.99".parse().expect("ip"), host_bits: 0 });
            let d = desired(&l.config, &health, &HashMap::new(), tun, None);
            assert_eq!(d.state.services.len(), 1, "{}: the other virtual server is served", c.name);
            assert_eq!(d.state.services[0].vip, "198.18.0.30".parse::<IpAddr>().expect("ip"), "{}", c.name);
            assert_eq!(d.refused.len(), 1, "{}: one refusal: {:?}", c.name, d.refused);
            let msg = d.refused[0].message();
            for want in c.reason {
                assert!(msg.contains(want), "{}: {msg:?} lacks {want:?}", c.name);
            }
        }
    }

    /// A group is one service with every address of its ranges (IPv4 and IPv6) as keys, the
    /// fwmark entry refused alone; port 0 is served as the VIP's all-port key; mh without
    /// mh-port hashes the client address; `ops`, `sh-fallback`, per-real-server methods, the
    /// sorry server's own method and `nftables_ipvs` reach the spec.
    #[test]
    fn groups_port_zero_flags_and_methods_reach_the_spec() {
        let c = cfg("global_defs {\n nftables_ipvs\n}\n\
virtual_server_group g4 {\n 198.18.0.10-12 80\n 198.18.0.20 443\n fwmark 9\n}\n\
virtual_server_group g6 {\n fd00:198:18::a-c 80\n}\n\
virtual_server group g4 {\n lb_algo mh\n lb_kind DR\n protocol TCP\n persistence_timeout 30\n real_server 198.18.1.1 80 {\n }\n real_server 198.18.1.2 8080 {\n lvs_method NAT\n }\n sorry_server 198.18.1.3 80\n sorry_server_lvs_method NAT\n}\n\
virtual_server group g6 {\n lb_algo sh\n sh-fallback\n lb_kind DR\n protocol UDP\n ops\n real_server fd00:198:18::1 80 {\n }\n}\n\
virtual_server 198.18.0.40 0 {\n lb_algo sh\n sh-port\n lb_kind DR\n protocol TCP\n persistence_timeout 60\n real_server 198.18.1.1 0 {\n }\n}\n");
        let slots = HashMap::from([("198.18.0.11".parse().expect("ip"), 3u32)]);
        let d = desired(&c, &BackendSet::default(), &slots, None, None);
        assert_eq!(d.refused.len(), 1, "{:?}", d.refused);
        assert_eq!(d.refused[0].entry.as_deref(), Some("fwmark 9 of virtual_server_group g4"));
        let s = &d.state.services;
        assert_eq!(s.len(), 3);
        let keys = |x: &ServiceSpec| x.members().map(|m| (m.vip.to_string(), m.port, m.master_slot)).collect::<Vec<_>>();
        assert_eq!(
            keys(&s[0]),
            vec![("198.18.0.10".into(), 80, None), ("198.18.0.11".into(), 80, Some(3)), ("198.18.0.12".into(), 80, None), ("198.18.0.20".into(), 443, None)]
        );
        assert_eq!(s[0].scheduler, Scheduler::SourceHash, "mh without mh-port hashes the client address, as IPVS");
        assert!(s[0].options.persist_service_wide && !s[0].options.one_packet);
        let methods: Vec<Method> = s[0].backends.iter().map(|b| b.method).collect();
        assert_eq!(methods, vec![Method::Dr, Method::Nat, Method::Nat], "per-real-server method, sorry server's own");
        assert_eq!(keys(&s[1]).iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), vec!["fd00:198:18::a", "fd00:198:18::b", "fd00:198:18::c"]);
        assert!(s[1].options.one_packet && s[1].options.fallback && s[1].options.persist_service_wide);
        assert_eq!((s[2].port, s[2].scheduler), (0, Scheduler::Maglev), "port 0 served; sh-port hashes the source port too");
        assert!(!s[2].options.persist_service_wide && !s[2].options.fallback);
    }
}
