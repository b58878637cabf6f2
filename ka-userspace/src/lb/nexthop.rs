//! Next hops of the real servers, pure part: which neighbour entries to ask the kernel to
//! resolve or to remove, what `ka status` shows, and when to log a missing next hop. The
//! runtime that talks to the kernel is [`super::resolver`].
//!
//! The datapath forwards to a real server only when `bpf_fib_lookup` finds a resolved
//! neighbour for its next hop (or the userspace `KA_NEIGH` map has one); otherwise the packet
//! goes to the kernel (`pass_no_nexthop`). So every next hop of a real server in the tables
//! gets a kernel-managed neighbour entry (`NTF_EXT_MANAGED`, as Cilium does: the kernel keeps
//! it resolved and re-probes it while it fails), re-requested whenever it is missing (flushed,
//! garbage-collected) or not usable.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt::Write as _,
    net::IpAddr,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::net::netlink::{NeighInfo, NeighState};

/// The mark (`NDA_PROTOCOL`) of the neighbour entries ka creates: `RTPROT_KEEPALIVED`, so
/// `ip neigh` shows them as `proto keepalived`, and a restarted ka recognises its own.
pub const NEIGH_PROTOCOL: u8 = 18;

/// A next hop: the neighbour the kernel sends a real server's packets to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hop {
    /// Egress interface index.
    pub ifindex: u32,
    /// Neighbour address: the real server itself when on-link, else the route's gateway.
    pub addr: IpAddr,
}

impl Hop {
    /// The next hop of `backend` routed through `ifindex`, via `gateway` if any.
    pub fn of(backend: IpAddr, ifindex: u32, gateway: Option<IpAddr>) -> Hop {
        Hop { ifindex, addr: gateway.unwrap_or(backend) }
    }
}

/// Whether an entry in `state` has a link-layer address the datapath can use
/// (`NUD_VALID`: `bpf_fib_lookup` answers for these).
pub fn usable(state: NeighState) -> bool {
    matches!(
        state,
        NeighState::Reachable | NeighState::Stale | NeighState::Delay | NeighState::Probe | NeighState::Permanent | NeighState::Noarp
    )
}

/// One resolution request of a [`Plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolve {
    /// The next hop.
    pub hop: Hop,
    /// The entry becomes ka's (it was missing or unmanaged): ka removes it when done with it.
    pub claim: bool,
}

/// What one pass asks of the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Next hops to (re)request.
    pub resolve: Vec<Resolve>,
    /// Managed entries ka created that no real server needs any more.
    pub remove: Vec<Hop>,
    /// Wanted managed entries carrying ka's mark that ka does not know it created (a previous
    /// run left them): ka takes them over, and removes them when done.
    pub adopt: Vec<Hop>,
}

/// Plans one pass. `wanted`: the next hops of the real servers in the tables; `table`: the
/// kernel's neighbour entries; `created`: the managed entries ka created; `managed`: the
/// kernel supports managed entries (otherwise resolution is one-shot, `NTF_USE`).
///
/// A wanted next hop is requested when its entry is missing or not usable, and, with managed
/// entries, when its entry is not managed yet. Static entries (`PERMANENT`, `NOARP`) are the
/// administrator's and are left alone. Entries ka did not create (or mark, in an earlier run)
/// are never removed.
pub fn plan(wanted: &BTreeSet<Hop>, table: &[NeighInfo], created: &BTreeSet<Hop>, managed: bool) -> Plan {
    let entries: HashMap<Hop, &NeighInfo> = table.iter().map(|n| (Hop { ifindex: n.ifindex, addr: n.addr }, n)).collect();
    let mut out = Plan::default();
    for hop in wanted {
        match entries.get(hop) {
            None => out.resolve.push(Resolve { hop: *hop, claim: managed }),
            Some(n) if matches!(n.state, NeighState::Permanent | NeighState::Noarp) => {}
            Some(n) if managed && !n.managed => out.resolve.push(Resolve { hop: *hop, claim: true }),
            Some(n) => {
                if n.managed && n.protocol == NEIGH_PROTOCOL && !created.contains(hop) {
                    out.adopt.push(*hop);
                }
                if !usable(n.state) {
                    out.resolve.push(Resolve { hop: *hop, claim: false });
                }
            }
        }
    }
    out.remove = created.difference(wanted).copied().collect();
    out
}

/// A real server's next hop, as `ka status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NextHopReport {
    /// The datapath can forward to it (a usable neighbour entry).
    pub resolved: bool,
    /// Link-layer address of the next hop, when known (`02:00:5e:00:01:01`).
    pub mac: Option<String>,
    /// Next-hop address (the server itself when on-link); `None` without a route.
    pub via: Option<IpAddr>,
    /// Egress interface.
    pub iface: Option<String>,
    /// Neighbour state (`REACHABLE`, `FAILED`, `missing`...), or `no route`.
    pub state: String,
}

impl NextHopReport {
    /// The report for a real server routed to `hop` (`None`: no route), given the kernel's
    /// neighbour table and the interface names.
    pub fn new(hop: Option<Hop>, table: &[NeighInfo], names: &BTreeMap<u32, String>) -> NextHopReport {
        let Some(hop) = hop else {
            return NextHopReport { resolved: false, mac: None, via: None, iface: None, state: "no route".into() };
        };
        let iface = Some(names.get(&hop.ifindex).cloned().unwrap_or_else(|| format!("ifindex {}", hop.ifindex)));
        let entry = table.iter().find(|n| n.ifindex == hop.ifindex && n.addr == hop.addr);
        match entry {
            None => NextHopReport { resolved: false, mac: None, via: Some(hop.addr), iface, state: "missing".into() },
            Some(n) => NextHopReport {
                resolved: usable(n.state) && n.mac.as_ref().is_some_and(|m| !m.is_empty()),
                mac: n.mac.as_deref().filter(|m| !m.is_empty()).map(mac_text),
                via: Some(hop.addr),
                iface,
                state: n.state.name(),
            },
        }
    }

    /// `02:00:00:00:00:01 via 198.18.0.1 dev eth1 (REACHABLE)` or
    /// `unresolved (198.18.0.1 dev eth1 FAILED)`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let place = match (&self.via, &self.iface) {
            (Some(v), Some(i)) => format!("{v} dev {i}"),
            (Some(v), None) => v.to_string(),
            _ => String::new(),
        };
        if self.resolved {
            let _ = write!(s, "{} via {place} ({})", self.mac.as_deref().unwrap_or("?"), self.state);
        } else if place.is_empty() {
            let _ = write!(s, "unresolved ({})", self.state);
        } else {
            let _ = write!(s, "unresolved ({place} {})", self.state);
        }
        s
    }
}

/// `aa:bb:cc:dd:ee:ff`.
fn mac_text(m: &[u8]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// What to log about a real server after a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogEvent {
    /// Nothing.
    Quiet,
    /// Its next hop has been unresolved for a while (again, at most once per interval).
    Unresolved,
    /// Its next hop is resolved again, after an [`LogEvent::Unresolved`].
    Recovered,
}

/// Rate limit of the "no next hop" log: a real server is reported once its next hop has been
/// unresolved for `grace` (a first resolution takes a moment), then at most once per
/// `interval`, and once more when it recovers.
#[derive(Debug)]
pub struct LogGate {
    grace: Duration,
    interval: Duration,
    /// Real server → (unresolved since, last logged).
    unresolved: HashMap<IpAddr, (Instant, Option<Instant>)>,
}

impl LogGate {
    /// A gate with the given grace period and repeat interval.
    pub fn new(grace: Duration, interval: Duration) -> LogGate {
        LogGate { grace, interval, unresolved: HashMap::new() }
    }

    /// Records what a pass at `now` found for `backend`.
    pub fn observe(&mut self, backend: IpAddr, resolved: bool, now: Instant) -> LogEvent {
        if resolved {
            return match self.unresolved.remove(&backend) {
                Some((_, Some(_))) => LogEvent::Recovered,
                _ => LogEvent::Quiet,
            };
        }
        let (since, last) = self.unresolved.entry(backend).or_insert((now, None));
        let due = now.saturating_duration_since(*since) >= self.grace
            && last.is_none_or(|l| now.saturating_duration_since(l) >= self.interval);
        if due {
            *last = Some(now);
            LogEvent::Unresolved
        } else {
            LogEvent::Quiet
        }
    }

    /// Forgets real servers that left the tables.
    pub fn retain(&mut self, backends: &[IpAddr]) {
        self.unresolved.retain(|b, _| backends.contains(b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn entry(addr: &str, state: NeighState, managed: bool) -> NeighInfo {
        NeighInfo { ifindex: 2, addr: ip(addr), mac: Some(vec![2, 0, 0, 0, 0, 1]), state, managed, protocol: 0 }
    }

    fn hop(addr: &str) -> Hop {
        Hop { ifindex: 2, addr: ip(addr) }
    }

    /// The next hop is the gateway when the route has one, the server itself when on-link.
    #[test]
    fn next_hop_is_gateway_or_server() {
        assert_eq!(Hop::of(ip("198.18.1.1"), 3, None), Hop { ifindex: 3, addr: ip("198.18.1.1") });
        assert_eq!(Hop::of(ip("198.18.9.1"), 3, Some(ip("198.18.1.254"))), Hop { ifindex: 3, addr: ip("198.18.1.254") });
    }

    /// Missing entries (flushed, garbage-collected) and failed ones are requested again,
    /// unmanaged ones are made managed and claimed, managed usable ones and static ones are
    /// left alone; ka removes only the entries it created, once no server needs them.
    #[test]
    fn plan_requests_missing_failed_and_unmanaged_and_removes_only_own() {
        let wanted: BTreeSet<Hop> = ["198.18.1.1", "198.18.1.2", "198.18.1.3", "198.18.1.4", "198.18.1.5", "198.18.1.6"].into_iter().map(hop).collect();
        let table = vec![
            // 1.1 missing.
            entry("198.18.1.2", NeighState::Failed, true),
            entry("198.18.1.3", NeighState::Reachable, false),
            entry("198.18.1.4", NeighState::Stale, true),
            entry("198.18.1.5", NeighState::Permanent, false),
            entry("198.18.1.6", NeighState::Incomplete, true),
            entry("198.18.1.7", NeighState::Reachable, true),
        ];
        let created: BTreeSet<Hop> = ["198.18.1.2", "198.18.1.7", "198.18.1.8"].into_iter().map(hop).collect();
        let p = plan(&wanted, &table, &created, true);
        assert_eq!(
            p.resolve,
            vec![
                Resolve { hop: hop("198.18.1.1"), claim: true },
                Resolve { hop: hop("198.18.1.2"), claim: false },
                Resolve { hop: hop("198.18.1.3"), claim: true },
                Resolve { hop: hop("198.18.1.6"), claim: false },
            ]
        );
        assert_eq!(p.remove, vec![hop("198.18.1.7"), hop("198.18.1.8")]);
        assert!(p.adopt.is_empty(), "no entry carries ka's mark");
        // Marked managed entries a previous run left are taken over, foreign ones are not.
        let mut marked = table.clone();
        marked[2] = NeighInfo { protocol: NEIGH_PROTOCOL, ..entry("198.18.1.4", NeighState::Stale, true) };
        marked[4] = NeighInfo { protocol: NEIGH_PROTOCOL, ..entry("198.18.1.6", NeighState::Failed, true) };
        let p = plan(&wanted, &marked, &BTreeSet::new(), true);
        assert_eq!(p.adopt, vec![hop("198.18.1.4"), hop("198.18.1.6")]);
        assert!(p.resolve.contains(&Resolve { hop: hop("198.18.1.6"), claim: false }), "{:?}", p.resolve);
        // Without managed entries: one-shot requests for unusable entries only, nothing claimed.
        let p = plan(&wanted, &table, &BTreeSet::new(), false);
        let asked: Vec<_> = p.resolve.iter().map(|r| (r.hop.addr, r.claim)).collect();
        assert_eq!(asked, vec![(ip("198.18.1.1"), false), (ip("198.18.1.2"), false), (ip("198.18.1.6"), false)]);
        assert!(p.remove.is_empty());
        // The same address on another interface is another next hop.
        let other = BTreeSet::from([Hop { ifindex: 9, addr: ip("198.18.1.4") }]);
        assert_eq!(plan(&other, &table, &BTreeSet::new(), true).resolve.len(), 1);
    }

    /// The status line says whether the server can be forwarded to, and why not.
    #[test]
    fn report_text_and_resolution() {
        let names = BTreeMap::from([(2, "eth1".to_owned())]);
        let table = vec![entry("198.18.1.1", NeighState::Reachable, true), NeighInfo { mac: None, ..entry("198.18.1.2", NeighState::Failed, true) }];
        let r = NextHopReport::new(Some(hop("198.18.1.1")), &table, &names);
        assert!(r.resolved);
        assert_eq!(r.to_text(), "02:00:00:00:00:01 via 198.18.1.1 dev eth1 (REACHABLE)");
        let r = NextHopReport::new(Some(hop("198.18.1.2")), &table, &names);
        assert!(!r.resolved);
        assert_eq!(r.to_text(), "unresolved (198.18.1.2 dev eth1 FAILED)");
        let r = NextHopReport::new(Some(hop("198.18.1.3")), &table, &names);
        assert_eq!((r.resolved, r.to_text()), (false, "unresolved (198.18.1.3 dev eth1 missing)".to_owned()));
        let r = NextHopReport::new(None, &table, &names);
        assert_eq!((r.resolved, r.to_text()), (false, "unresolved (no route)".to_owned()));
        let back: NextHopReport = serde_json::from_str(&serde_json::to_string(&r).expect("ser")).expect("de");
        assert_eq!(back, r);
    }

    /// Logged after the grace period, then once per interval, and once on recovery.
    #[test]
    fn log_gate_rate_limits() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut g = LogGate::new(Duration::from_secs(3), Duration::from_secs(30));
        let b = ip("198.18.1.1");
        assert_eq!(g.observe(b, false, s(0)), LogEvent::Quiet, "grace");
        assert_eq!(g.observe(b, false, s(2)), LogEvent::Quiet, "grace");
        assert_eq!(g.observe(b, false, s(3)), LogEvent::Unresolved);
        assert_eq!(g.observe(b, false, s(4)), LogEvent::Quiet, "rate limited");
        assert_eq!(g.observe(b, false, s(32)), LogEvent::Quiet, "rate limited");
        assert_eq!(g.observe(b, false, s(33)), LogEvent::Unresolved);
        assert_eq!(g.observe(b, true, s(34)), LogEvent::Recovered);
        assert_eq!(g.observe(b, true, s(35)), LogEvent::Quiet);
        // Resolved within the grace period: never logged.
        assert_eq!(g.observe(b, false, s(40)), LogEvent::Quiet);
        assert_eq!(g.observe(b, true, s(41)), LogEvent::Quiet);
        // Forgotten when it leaves the tables.
        assert_eq!(g.observe(b, false, s(50)), LogEvent::Quiet);
        g.retain(&[]);
        assert_eq!(g.observe(b, false, s(60)), LogEvent::Quiet, "grace starts again");
    }
}
