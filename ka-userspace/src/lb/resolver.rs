//! The next-hop resolver task: keeps the kernel's neighbour entry of every real server's next
//! hop resolved, so `bpf_fib_lookup` answers for it. Once a second (and whenever the tables
//! change) it looks each real server's route up (`RTM_GETROUTE`), reads the neighbour table,
//! and asks the rtnetlink worker to resolve what [`super::nexthop::plan`] says: managed entries
//! (`NTF_EXT_MANAGED`, kernel 5.16+, marked `proto keepalived`) or, where the kernel refuses
//! them, one-shot `NTF_USE` requests. It removes the managed entries it created (or a previous
//! run marked) when their real servers leave the tables and when it stops. What it finds is published for `ka status`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use super::nexthop::{plan, Hop, LogEvent, LogGate, NextHopReport, NEIGH_PROTOCOL};
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
    /// Starts the resolver on the current tokio runtime, checking every `interval`.
    pub fn spawn(netlink: NetlinkClient, interval: Duration) -> Resolver {
        let (backends, backends_rx) = watch::channel(Vec::new());
        let (reports_tx, reports) = watch::channel(BTreeMap::new());
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(netlink, interval, backends_rx, reports_tx, stop_rx));
        Resolver { backends, reports, stop: Some(stop), task: Some(task) }
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

async fn run(
    netlink: NetlinkClient,
    interval: Duration,
    mut backends: watch::Receiver<Vec<IpAddr>>,
    reports: watch::Sender<BTreeMap<IpAddr, NextHopReport>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut st = State { managed: true, created: BTreeSet::new(), gate: LogGate::new(LOG_GRACE, LOG_INTERVAL) };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            changed = backends.changed() => if changed.is_err() { break },
            _ = tick.tick() => {}
        }
        let list = backends.borrow_and_update().clone();
        match pass(&netlink, &list, &mut st).await {
            Ok(r) => {
                reports.send_replace(r);
            }
            Err(e) => warn!(error = %e, "next-hop check failed"),
        }
    }
    for hop in std::mem::take(&mut st.created) {
        match netlink.neigh_del(hop.ifindex, hop.addr).await {
            Ok(()) => debug!(next_hop = %hop.addr, ifindex = hop.ifindex, "removed managed neighbour entry"),
            Err(e) => warn!(next_hop = %hop.addr, ifindex = hop.ifindex, error = %e, "removing managed neighbour entry"),
        }
    }
}

/// One check: route lookups, the neighbour table, requests, removals, reports and logs.
async fn pass(netlink: &NetlinkClient, backends: &[IpAddr], st: &mut State) -> Result<BTreeMap<IpAddr, NextHopReport>, NetlinkError> {
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
    let names: BTreeMap<u32, String> = netlink.links().await.unwrap_or_default().into_iter().map(|l| (l.index, l.name)).collect();
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
    let mut out = BTreeMap::new();
    for (b, hop) in hops {
        let report = NextHopReport::new(hop, &table, &names);
        match st.gate.observe(b, report.resolved, now) {
            LogEvent::Quiet => {}
            LogEvent::Unresolved => warn!(
                real_server = %b,
                next_hop = ?report.via,
                iface = report.iface.as_deref().unwrap_or("-"),
                state = %report.state,
                "real server has no resolved next hop: its packets pass to the kernel (pass_no_nexthop)"
            ),
            LogEvent::Recovered => info!(real_server = %b, next_hop = %report.to_text(), "real server next hop resolved"),
        }
        out.insert(b, report);
    }
    Ok(out)
}
