//! The next-hop resolver task: keeps the kernel's neighbour entry of every real server's next
//! hop resolved, and hands the resolved next hops to the XDP neighbour map, so the datapath
//! can forward whether or not `bpf_fib_lookup` answers (it refuses when forwarding is off).
//! Once a second (and whenever the tables change) it looks each real server's route up
//! (`RTM_GETROUTE`), reads the neighbour table, the links and the `forwarding` sysctls of the
//! XDP interfaces, and asks the rtnetlink worker to resolve what [`super::nexthop::plan`]
//! says: managed entries (`NTF_EXT_MANAGED`, kernel 5.16+, marked `proto keepalived`) or,
//! where the kernel refuses them, one-shot `NTF_USE` requests. It removes the managed entries
//! it created (or a previous run marked) when their real servers leave the tables and when it
//! stops. It publishes its findings for `ka status` and the neighbour-map entries
//! ([`super::nexthop::map_entry`]) for the dataplane owner, which writes the changed ones.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use ka_common::lb::NeighValue;
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use super::nexthop::{map_entry, plan, ForwardingSysctls, Hop, LogEvent, LogGate, NextHopReport, Pace, NEIGH_PROTOCOL};
use crate::net::netlink::{NetlinkClient, NetlinkError};

/// How often the resolver checks the next hops.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How long a next hop may stay unresolved before it is logged (a first resolution takes a
/// moment).
const LOG_GRACE: Duration = Duration::from_secs(3);
/// How often an unresolved next hop is logged again.
const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// How long shutdown waits for the resolver to remove its entries.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// Handle of the resolver task. Dropping it aborts the task (leaving its entries); call
/// [`Resolver::shutdown`] to remove them first.
#[derive(Debug)]
pub struct Resolver {
    backends: watch::Sender<Vec<IpAddr>>,
    reports: watch::Receiver<BTreeMap<IpAddr, NextHopReport>>,
    entries: watch::Receiver<BTreeMap<IpAddr, NeighValue>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Resolver {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl Resolver {
    /// Starts the resolver on the current tokio runtime, checking every `interval`. `ingress`:
    /// the interfaces XDP is attached to, whose `forwarding` sysctls (read from `sysctls`)
    /// decide whether `bpf_fib_lookup` can answer.
    pub fn spawn(netlink: NetlinkClient, interval: Duration, ingress: Vec<String>, sysctls: ForwardingSysctls) -> Resolver {
        let (backends, backends_rx) = watch::channel(Vec::new());
        let (reports_tx, reports) = watch::channel(BTreeMap::new());
        let (entries_tx, entries) = watch::channel(BTreeMap::new());
        let (stop, stop_rx) = oneshot::channel();
        let env = Env { netlink, ingress, sysctls };
        let task = tokio::spawn(run(env, interval, backends_rx, Outputs { reports: reports_tx, entries: entries_tx }, stop_rx));
        Resolver { backends, reports, entries, stop: Some(stop), task: Some(task) }
    }

    /// The neighbour-map entries of the real servers whose next hops are resolved, by server
    /// address (the last check's).
    pub fn map_entries(&self) -> BTreeMap<IpAddr, NeighValue> {
        self.entries.borrow().clone()
    }

    /// A receiver told whenever [`Resolver::map_entries`] changes.
    pub fn map_entry_updates(&self) -> watch::Receiver<BTreeMap<IpAddr, NeighValue>> {
        self.entries.clone()
    }

    /// Sets the real servers whose next hops must stay resolved (those in the tables).
    pub fn set_backends(&self, mut addrs: Vec<IpAddr>) {
        addrs.sort_unstable();
        addrs.dedup();
        self.backends.send_if_modified(|cur| {
            let changed = *cur != addrs;
            if changed {
                *cur = addrs;
            }
            changed
        });
    }

    /// The last check's finding for real server `addr` (`None`: not tracked, or not checked yet).
    pub fn report(&self, addr: IpAddr) -> Option<NextHopReport> {
        self.reports.borrow().get(&addr).cloned()
    }

    /// Stops the task after it removed the managed entries it created (bounded wait).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_TIMEOUT, task).await.is_err() {
                warn!("next-hop resolver: cleanup timed out");
                abort.abort();
            }
        }
    }
}

/// The resolver's memory between passes.
struct State {
    /// The kernel accepts managed entries (until it refuses one).
    managed: bool,
    /// Managed entries ka created.
    created: BTreeSet<Hop>,
    gate: LogGate,
}

/// What a pass reads the host through.
struct Env {
    netlink: NetlinkClient,
    /// Interfaces XDP is attached to.
    ingress: Vec<String>,
    sysctls: ForwardingSysctls,
}

/// What the task publishes.
struct Outputs {
    reports: watch::Sender<BTreeMap<IpAddr, NextHopReport>>,
    entries: watch::Sender<BTreeMap<IpAddr, NeighValue>>,
}

async fn run(
    env: Env,
    interval: Duration,
    mut backends: watch::Receiver<Vec<IpAddr>>,
    out: Outputs,
    mut stop: oneshot::Receiver<()>,
) {
    let mut st = State { managed: true, created: BTreeSet::new(), gate: LogGate::new(LOG_GRACE, LOG_INTERVAL) };
    let mut pace = Pace::new(interval);
    // The first check runs at once.
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            changed = backends.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(wait) => {}
        }
        let list = backends.borrow_and_update().clone();
        wait = interval;
        match pass(&env, &list, &mut st).await {
            Ok((reports, entries)) => {
                // A real server with a route but no usable next hop (one just back in the
                // tables, its resolution requested): check again soon, so the neighbour map
                // gets it as soon as the kernel has resolved it.
                wait = pace.next(reports.iter().any(|(b, r)| r.via.is_some() && !entries.contains_key(b)));
                out.reports.send_replace(reports);
                // Only a change wakes the map writer.
                out.entries.send_if_modified(|cur| {
                    let changed = *cur != entries;
                    if changed {
                        *cur = entries;
                    }
                    changed
                });
            }
            Err(e) => warn!(error = %e, "next-hop check failed"),
        }
    }
    let netlink = &env.netlink;
    for hop in std::mem::take(&mut st.created) {
        match netlink.neigh_del(hop.ifindex, hop.addr).await {
            Ok(()) => debug!(next_hop = %hop.addr, ifindex = hop.ifindex, "removed managed neighbour entry"),
            Err(e) => warn!(next_hop = %hop.addr, ifindex = hop.ifindex, error = %e, "removing managed neighbour entry"),
        }
    }
}

/// What one pass found: the reports for `ka status`, and the neighbour-map entries.
type Found = (BTreeMap<IpAddr, NextHopReport>, BTreeMap<IpAddr, NeighValue>);

/// One check: route lookups, the neighbour table, requests, removals, reports and logs.
async fn pass(env: &Env, backends: &[IpAddr], st: &mut State) -> Result<Found, NetlinkError> {
    let netlink = &env.netlink;
    let mut hops: BTreeMap<IpAddr, Option<Hop>> = BTreeMap::new();
    for &b in backends {
        let hop = match netlink.route_get(b).await {
            Ok(r) => r.map(|r| Hop::of(b, r.ifindex, r.gateway)),
            Err(e) => {
                debug!(real_server = %b, error = %e, "route lookup failed");
                None
            }
        };
        hops.insert(b, hop);
    }
    let table = netlink.neighbours().await?;
    // A failed dump fails the pass: the published entries stay as they were.
    let links = netlink.links().await?;
    let names: BTreeMap<u32, String> = links.iter().map(|l| (l.index, l.name.clone())).collect();
    let macs: BTreeMap<u32, Vec<u8>> = links.into_iter().map(|l| (l.index, l.mac)).collect();
    let wanted: BTreeSet<Hop> = hops.values().flatten().copied().collect();
    let p = plan(&wanted, &table, &st.created, st.managed);
    st.created.extend(p.adopt);
    for r in p.resolve {
        let mark = r.claim.then_some(NEIGH_PROTOCOL);
        let mut res = netlink.neigh_resolve(r.hop.ifindex, r.hop.addr, st.managed, mark).await;
        if st.managed && matches!(res.as_ref().err().and_then(NetlinkError::errno), Some(libc::EINVAL | libc::EOPNOTSUPP)) {
            // Kernel gate: managed neighbour entries (NDA_FLAGS_EXT/NTF_EXT_MANAGED) appeared in
            // Linux 5.16; older kernels refuse the attribute. Resolve once per check instead.
            info!("the kernel refuses managed neighbour entries; next hops are re-resolved by each check instead");
            st.managed = false;
            res = netlink.neigh_resolve(r.hop.ifindex, r.hop.addr, false, None).await;
        }
        match res {
            Ok(()) => {
                if r.claim && st.managed {
                    st.created.insert(r.hop);
                }
            }
            Err(e) => debug!(next_hop = %r.hop.addr, ifindex = r.hop.ifindex, error = %e, "next-hop resolution request failed"),
        }
    }
    for hop in p.remove {
        match netlink.neigh_del(hop.ifindex, hop.addr).await {
            Ok(()) => {
                st.created.remove(&hop);
            }
            Err(e) => warn!(next_hop = %hop.addr, ifindex = hop.ifindex, error = %e, "removing managed neighbour entry"),
        }
    }
    let now = Instant::now();
    st.gate.retain(backends);
    let forwarding_off = [false, true].map(|v6| env.sysctls.off(v6, &env.ingress));
    let mut reports = BTreeMap::new();
    let mut entries = BTreeMap::new();
    for (b, hop) in hops {
        let v6 = b.is_ipv6();
        let mut report = NextHopReport::new(hop, &table, &names);
        report.forwarding_off = forwarding_off[usize::from(v6)].clone();
        report.egress_forwarding_off = hop
            .and_then(|h| names.get(&h.ifindex))
            .and_then(|name| env.sysctls.off(v6, std::slice::from_ref(name)).pop());
        if let Some(e) = map_entry(hop, &table, &macs) {
            entries.insert(b, e);
        }
        match st.gate.observe(b, report.resolved, now) {
            LogEvent::Quiet => {}
            LogEvent::Unresolved => warn!(
                real_server = %b,
                next_hop = ?report.via,
                iface = report.iface.as_deref().unwrap_or("-"),
                state = %report.state,
                "real server has no resolved next hop: its packets pass to the kernel (pass_no_nexthop)"
            ),
            LogEvent::Recovered => info!(
                real_server = %b,
                next_hop = ?report.via,
                mac = report.mac.as_deref().unwrap_or("-"),
                iface = report.iface.as_deref().unwrap_or("-"),
                "real server next hop resolved"
            ),
        }
        reports.insert(b, report);
    }
    Ok((reports, entries))
}
