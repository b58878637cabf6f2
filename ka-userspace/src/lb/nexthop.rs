//! Next hops of the real servers, pure part: which neighbour entries to ask the kernel to
//! resolve or to remove, which next hops go to the XDP neighbour map, whether XDP can reach a
//! real server (what `ka status` shows), and when to log a missing next hop. The runtime that
//! talks to the kernel is [`super::resolver`].
//!
//! The datapath asks `bpf_fib_lookup` first. The kernel refuses that lookup for every packet
//! that entered an interface with forwarding disabled (`net.ipv4.conf.IF.forwarding=0`, the
//! default on a host), and it fails while the next hop's neighbour entry is unresolved. XDP
//! then takes the next hop from the `KA_NEIGH` map, which holds every real server's resolved
//! next hop (egress interface, neighbour MAC, egress MAC: [`map_entry`]); without an entry the
//! packet goes to the kernel (`pass_no_nexthop`). So DR and TUN need no forwarding, as with
//! IPVS; NAT does, for the replies ([`forwarding_needed`]). Every next hop of a real server in
//! the tables gets a kernel-managed neighbour entry (`NTF_EXT_MANAGED`, as Cilium does: the
//! kernel keeps it resolved and re-probes it while it fails), re-requested whenever it is
//! missing (flushed, garbage-collected) or not usable.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt::Write as _,
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use ka_common::lb::NeighValue;
use serde::{Deserialize, Serialize};

use super::Method;
use crate::net::netlink::{NeighInfo, NeighState};

/// Errors of reading the host's next-hop settings.
#[derive(Debug, thiserror::Error)]
pub enum NextHopError {
    /// A sysctl file cannot be read (no such interface, no such family).
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A sysctl file holds something else than a number.
    #[error("{path}: expected a number, found {value:?}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it holds.
        value: String,
    },
}

/// Whether real servers reached by `method` need forwarding enabled on the director, as with
/// IPVS. NAT does: its real servers' replies come back through the director, and they reach
/// the client only if forwarding is on for the interface they arrive on (the XDP reply path
/// asks `bpf_fib_lookup`, which refuses them otherwise, and the kernel would not route them
/// either). DR and TUN do not: XDP forwards their packets with the next hops of the neighbour
/// map when `bpf_fib_lookup` refuses.
pub fn forwarding_needed(method: Method) -> bool {
    method == Method::Nat
}

/// The `forwarding` sysctl of interface `iface`, in `sysctl` notation:
/// `net.ipv4.conf.eth0.forwarding` (`v6`: `net.ipv6...`). A `.` in the interface name (VLAN
/// devices) is written `/`, as `sysctl` wants it.
pub fn forwarding_sysctl(v6: bool, iface: &str) -> String {
    format!("net.{}.conf.{}.forwarding", if v6 { "ipv6" } else { "ipv4" }, iface.replace('.', "/"))
}

/// Reads the `forwarding` sysctls of interfaces, `ipv{4,6}/conf/IF/forwarding` under a root:
/// `/proc/sys/net` on a host, a directory of files in unit tests.
#[derive(Clone, Debug)]
pub struct ForwardingSysctls {
    root: PathBuf,
}

impl Default for ForwardingSysctls {
    fn default() -> ForwardingSysctls {
        ForwardingSysctls::at("/proc/sys/net")
    }
}

impl ForwardingSysctls {
    /// Reads the files under `root` (which holds `ipv4/` and `ipv6/`).
    pub fn at(root: impl Into<PathBuf>) -> ForwardingSysctls {
        ForwardingSysctls { root: root.into() }
    }

    /// Whether forwarding is on for `iface` (`v6`: for IPv6).
    ///
    /// # Errors
    /// The file cannot be read (no such interface; IPv6 disabled) or holds no number.
    pub fn enabled(&self, v6: bool, iface: &str) -> Result<bool, NextHopError> {
        let path = self.root.join(if v6 { "ipv6" } else { "ipv4" }).join("conf").join(iface).join("forwarding");
        let text = std::fs::read_to_string(&path).map_err(|source| NextHopError::Read { path: path.clone(), source })?;
        let v: i64 = text.trim().parse().map_err(|_| NextHopError::Parse { path, value: text.trim().to_owned() })?;
        Ok(v != 0)
    }

    /// The sysctls ([`forwarding_sysctl`]) of the interfaces in `ifaces` where forwarding is
    /// off (or unknown: an unreadable file counts as off, as the FIB would refuse).
    pub fn off(&self, v6: bool, ifaces: &[String]) -> Vec<String> {
        ifaces.iter().filter(|i| !self.enabled(v6, i).unwrap_or(false)).map(|i| forwarding_sysctl(v6, i)).collect()
    }
}

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

/// The neighbour-map (`KA_NEIGH`) entry of a real server routed to `hop` (`None`: no route):
/// its egress interface, the next hop's MAC and the egress interface's MAC (`link_macs`, by
/// interface index). `None` unless the next hop's neighbour entry is usable with a 6-byte MAC
/// and the egress interface has one: the datapath must never forward from a stale guess.
pub fn map_entry(hop: Option<Hop>, table: &[NeighInfo], link_macs: &BTreeMap<u32, Vec<u8>>) -> Option<NeighValue> {
    let hop = hop?;
    let n = table.iter().find(|n| n.ifindex == hop.ifindex && n.addr == hop.addr)?;
    if !usable(n.state) {
        return None;
    }
    let dmac: [u8; 6] = n.mac.as_deref()?.try_into().ok()?;
    let smac: [u8; 6] = link_macs.get(&hop.ifindex)?.as_slice().try_into().ok()?;
    if dmac == [0; 6] || smac == [0; 6] {
        return None;
    }
    Some(NeighValue { ifindex: hop.ifindex, smac, dmac })
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

/// What the XDP program does with a new flow to a real server, decided by [`reach`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    /// Forwarded with the next hop `bpf_fib_lookup` finds: forwarding is on for every
    /// interface XDP is attached to, and the route and the neighbour are valid.
    Fib,
    /// Forwarded with the next hop of the neighbour map (`KA_NEIGH`): the FIB cannot answer
    /// (forwarding off on an XDP interface).
    NeighbourMap,
    /// Unreachable: the director has no route to the real server.
    NoRoute,
    /// Unreachable: the next hop's neighbour entry is not resolved (missing, incomplete,
    /// failed), so neither the FIB nor the neighbour map has it.
    NoNeighbour,
    /// Unreachable: forwarding is off on an XDP interface (the FIB refuses) and the neighbour
    /// map has no entry for the real server (yet).
    ForwardingDisabled,
    /// NAT real server, unusable: packets reach it, but its replies cannot go back to the
    /// client because forwarding is off on the interface they arrive on.
    NatNeedsForwarding,
    /// Not checked yet: unreachable until its next hop is resolved.
    #[default]
    NotChecked,
}

impl Reach {
    /// The XDP program can serve the real server (`Fib`, `NeighbourMap`).
    pub fn reachable(self) -> bool {
        matches!(self, Reach::Fib | Reach::NeighbourMap)
    }
}

/// What the XDP program does with a new flow to a real server: `report` is the resolver's
/// last finding (`None`: not checked yet), `method` how the server is reached, `in_map`
/// whether the neighbour map holds an entry for it. The FIB answers when forwarding is on for
/// every interface XDP is attached to and the route and neighbour are valid; otherwise the
/// neighbour map must. A NAT server also needs forwarding where its replies arrive.
pub fn reach(report: Option<&NextHopReport>, method: Method, in_map: bool) -> Reach {
    let Some(r) = report else { return Reach::NotChecked };
    let path = if r.forwarding_off.is_empty() && r.resolved {
        Reach::Fib
    } else if in_map {
        Reach::NeighbourMap
    } else if r.via.is_none() {
        Reach::NoRoute
    } else if !r.resolved {
        Reach::NoNeighbour
    } else {
        Reach::ForwardingDisabled
    };
    if path.reachable() && forwarding_needed(method) && r.egress_forwarding_off.is_some() {
        return Reach::NatNeedsForwarding;
    }
    path
}

/// A real server's next hop, as `ka status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NextHopReport {
    /// The next hop's neighbour entry is usable (it has a link-layer address). Whether XDP can
    /// use it is [`NextHopReport::reachable`].
    pub resolved: bool,
    /// Link-layer address of the next hop, when known (`02:00:5e:00:01:01`).
    pub mac: Option<String>,
    /// Next-hop address (the server itself when on-link); `None` without a route.
    pub via: Option<IpAddr>,
    /// Egress interface.
    pub iface: Option<String>,
    /// Neighbour state (`REACHABLE`, `FAILED`, `missing`...), `no route`, or `not checked`.
    pub state: String,
    /// The `forwarding` sysctls that are 0 on the interfaces XDP is attached to, for the
    /// server's family (`net.ipv4.conf.eth0.forwarding`): `bpf_fib_lookup` refuses the packets
    /// entering there, and the neighbour map must answer.
    #[serde(default)]
    pub forwarding_off: Vec<String>,
    /// The `forwarding` sysctl of the egress interface when it is 0: NAT replies, which come
    /// back through it, cannot reach the clients.
    #[serde(default)]
    pub egress_forwarding_off: Option<String>,
    /// What the XDP program does with a new flow to the server ([`reach`]).
    #[serde(default)]
    pub reach: Reach,
    /// The XDP program can forward to the server right now.
    #[serde(default)]
    pub reachable: bool,
}

impl NextHopReport {
    /// The report for a real server routed to `hop` (`None`: no route), given the kernel's
    /// neighbour table and the interface names. Not judged yet ([`NextHopReport::judged`]).
    pub fn new(hop: Option<Hop>, table: &[NeighInfo], names: &BTreeMap<u32, String>) -> NextHopReport {
        let blank = NextHopReport {
            resolved: false,
            mac: None,
            via: None,
            iface: None,
            state: String::new(),
            forwarding_off: Vec::new(),
            egress_forwarding_off: None,
            reach: Reach::NotChecked,
            reachable: false,
        };
        let Some(hop) = hop else {
            return NextHopReport { state: "no route".into(), ..blank };
        };
        let iface = Some(names.get(&hop.ifindex).cloned().unwrap_or_else(|| format!("ifindex {}", hop.ifindex)));
        let entry = table.iter().find(|n| n.ifindex == hop.ifindex && n.addr == hop.addr);
        match entry {
            None => NextHopReport { via: Some(hop.addr), iface, state: "missing".into(), ..blank },
            Some(n) => NextHopReport {
                resolved: usable(n.state) && n.mac.as_ref().is_some_and(|m| !m.is_empty()),
                mac: n.mac.as_deref().filter(|m| !m.is_empty()).map(mac_text),
                via: Some(hop.addr),
                iface,
                state: n.state.name(),
                ..blank
            },
        }
    }

    /// The report of a real server whose next hop was not checked yet: unreachable.
    pub fn not_checked() -> NextHopReport {
        NextHopReport {
            resolved: false,
            mac: None,
            via: None,
            iface: None,
            state: "not checked".into(),
            forwarding_off: Vec::new(),
            egress_forwarding_off: None,
            reach: Reach::NotChecked,
            reachable: false,
        }
    }

    /// This report with [`reach`] decided for a server reached by `method`, `in_map`: the
    /// neighbour map holds an entry for it.
    #[must_use]
    pub fn judged(mut self, method: Method, in_map: bool) -> NextHopReport {
        self.reach = reach(Some(&self), method, in_map);
        self.reachable = self.reach.reachable();
        self
    }

    /// `02:00:00:00:00:01 via 198.18.0.1 dev eth1 (REACHABLE)`, `unresolved (198.18.0.1 dev
    /// eth1 FAILED)`, followed by how XDP reaches it when not through the FIB
    /// (`, from the neighbour map (forwarding off: net.ipv4.conf.eth0.forwarding=0)`) or why it
    /// cannot (`; UNREACHABLE: no neighbour`).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        if self.reach == Reach::NotChecked {
            return "not checked yet; UNREACHABLE until resolved".into();
        }
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
        let off = || self.forwarding_off.iter().map(|n| format!("{n}=0")).collect::<Vec<_>>().join(", ");
        match self.reach {
            Reach::Fib | Reach::NotChecked => {}
            Reach::NeighbourMap if self.forwarding_off.is_empty() => s.push_str(", from the neighbour map"),
            Reach::NeighbourMap => {
                let _ = write!(s, ", from the neighbour map (forwarding off: {})", off());
            }
            Reach::NoRoute => s.push_str("; UNREACHABLE: no route"),
            Reach::NoNeighbour => s.push_str("; UNREACHABLE: no neighbour"),
            Reach::ForwardingDisabled => {
                let _ = write!(s, "; UNREACHABLE: forwarding disabled ({}) and no neighbour-map entry", off());
            }
            Reach::NatNeedsForwarding => {
                let _ = write!(
                    s,
                    "; UNREACHABLE: NAT replies need forwarding ({}=0)",
                    self.egress_forwarding_off.as_deref().unwrap_or("forwarding")
                );
            }
        }
        s
    }
}

/// `aa:bb:cc:dd:ee:ff`.
fn mac_text(m: &[u8]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The first re-check after a pass that left a next hop pending.
pub const FAST_RECHECK: Duration = Duration::from_millis(10);

/// When the resolver checks again: every `interval` while every next hop is settled; while
/// one is pending (a route, no usable neighbour yet: typically a real server just back in the
/// tables, whose entry was removed when it left), after [`FAST_RECHECK`], doubling up to the
/// interval. Until its next hop is in the neighbour map, a server's new flows pass to the
/// kernel when forwarding is off; so the map must learn it within milliseconds of the kernel.
#[derive(Debug)]
pub struct Pace {
    interval: Duration,
    fast: Duration,
}

impl Pace {
    /// A pace with the given steady interval.
    pub fn new(interval: Duration) -> Pace {
        Pace { interval, fast: FAST_RECHECK.min(interval) }
    }

    /// The wait before the next check, after a pass that found a next hop `pending` or not.
    pub fn next(&mut self, pending: bool) -> Duration {
        if !pending {
            self.fast = FAST_RECHECK.min(self.interval);
            return self.interval;
        }
        let wait = self.fast;
        self.fast = (self.fast * 2).min(self.interval);
        wait
    }
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
        let judged = |hop: Option<Hop>| NextHopReport::new(hop, &table, &names).judged(Method::Dr, false);
        let r = judged(Some(hop("198.18.1.1")));
        assert!(r.resolved && r.reachable && r.reach == Reach::Fib, "{r:?}");
        assert_eq!(r.to_text(), "02:00:00:00:00:01 via 198.18.1.1 dev eth1 (REACHABLE)");
        let r = judged(Some(hop("198.18.1.2")));
        assert!(!r.resolved && !r.reachable);
        assert_eq!(r.to_text(), "unresolved (198.18.1.2 dev eth1 FAILED); UNREACHABLE: no neighbour");
        let r = judged(Some(hop("198.18.1.3")));
        assert_eq!((r.resolved, r.to_text()), (false, "unresolved (198.18.1.3 dev eth1 missing); UNREACHABLE: no neighbour".to_owned()));
        let r = judged(None);
        assert_eq!((r.resolved, r.reach, r.to_text()), (false, Reach::NoRoute, "unresolved (no route); UNREACHABLE: no route".to_owned()));
        let back: NextHopReport = serde_json::from_str(&serde_json::to_string(&r).expect("ser")).expect("de");
        assert_eq!(back, r);
        let r = NextHopReport::not_checked();
        assert!(!r.reachable);
        assert_eq!(r.to_text(), "not checked yet; UNREACHABLE until resolved");
        // Forwarding off: the neighbour map answers, or nothing does.
        let mut off = NextHopReport::new(Some(hop("198.18.1.1")), &table, &names);
        off.forwarding_off = vec!["net.ipv4.conf.eth0.forwarding".into()];
        let r = off.clone().judged(Method::Dr, true);
        assert_eq!(
            (r.reachable, r.to_text()),
            (true, "02:00:00:00:00:01 via 198.18.1.1 dev eth1 (REACHABLE), from the neighbour map (forwarding off: net.ipv4.conf.eth0.forwarding=0)".to_owned())
        );
        let r = off.clone().judged(Method::Tun, false);
        assert_eq!(
            (r.reachable, r.to_text()),
            (
                false,
                "02:00:00:00:00:01 via 198.18.1.1 dev eth1 (REACHABLE); UNREACHABLE: forwarding disabled (net.ipv4.conf.eth0.forwarding=0) and no neighbour-map entry"
                    .to_owned()
            )
        );
        // NAT: replies need forwarding on the egress interface.
        off.egress_forwarding_off = Some("net.ipv4.conf.eth1.forwarding".into());
        let r = off.judged(Method::Nat, true);
        assert_eq!(r.reach, Reach::NatNeedsForwarding);
        assert!(r.to_text().ends_with("; UNREACHABLE: NAT replies need forwarding (net.ipv4.conf.eth1.forwarding=0)"), "{}", r.to_text());
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!((json["reach"].as_str(), json["reachable"].as_bool()), (Some("nat_needs_forwarding"), Some(false)));
    }

    /// What XDP does, decided as the datapath decides it: the FIB answers only with forwarding
    /// on for every XDP interface and a usable neighbour; otherwise the neighbour map must hold
    /// the server. A server nobody checked yet is never reachable.
    #[test]
    fn reach_follows_the_datapath() {
        let names = BTreeMap::from([(2, "eth1".to_owned())]);
        let table = vec![entry("198.18.1.1", NeighState::Reachable, true), entry("198.18.1.2", NeighState::Incomplete, true)];
        let report = |h: Option<&str>, fwd_off: bool, egress_off: bool| {
            let mut r = NextHopReport::new(h.map(hop), &table, &names);
            if fwd_off {
                r.forwarding_off = vec!["net.ipv4.conf.eth0.forwarding".into()];
            }
            if egress_off {
                r.egress_forwarding_off = Some("net.ipv4.conf.eth1.forwarding".into());
            }
            r
        };
        use Method::{Dr, Nat, Tun};
        /// (next hop, forwarding off on an XDP interface, off on the egress, method, in the map, reach)
        type Case = (Option<&'static str>, bool, bool, Method, bool, Reach);
        let cases: &[Case] = &[
            (Some("198.18.1.1"), false, false, Dr, false, Reach::Fib),
            (Some("198.18.1.1"), false, false, Dr, true, Reach::Fib),
            (Some("198.18.1.1"), true, false, Dr, true, Reach::NeighbourMap),
            (Some("198.18.1.1"), true, false, Tun, false, Reach::ForwardingDisabled),
            (Some("198.18.1.2"), false, false, Dr, false, Reach::NoNeighbour),
            (Some("198.18.1.2"), true, false, Dr, false, Reach::NoNeighbour),
            (Some("198.18.1.9"), true, false, Tun, false, Reach::NoNeighbour),
            (None, true, false, Dr, false, Reach::NoRoute),
            (None, false, false, Nat, false, Reach::NoRoute),
            (Some("198.18.1.1"), false, false, Nat, false, Reach::Fib),
            (Some("198.18.1.1"), false, true, Nat, false, Reach::NatNeedsForwarding),
            (Some("198.18.1.1"), true, true, Nat, true, Reach::NatNeedsForwarding),
            // DR and TUN do not care about the egress interface's forwarding.
            (Some("198.18.1.1"), true, true, Dr, true, Reach::NeighbourMap),
        ];
        for (i, &(h, fwd_off, egress_off, method, in_map, want)) in cases.iter().enumerate() {
            let r = report(h, fwd_off, egress_off);
            assert_eq!(reach(Some(&r), method, in_map), want, "case {i}: {r:?}");
            let j = r.judged(method, in_map);
            assert_eq!((j.reach, j.reachable), (want, want.reachable()), "case {i}");
        }
        assert_eq!(reach(None, Dr, true), Reach::NotChecked);
        assert!(!Reach::NotChecked.reachable() && !Reach::ForwardingDisabled.reachable() && !Reach::NatNeedsForwarding.reachable());
    }

    /// Only usable neighbours with a MAC, on an interface with a MAC, become map entries.
    #[test]
    fn map_entries_only_for_usable_next_hops() {
        let macs = BTreeMap::from([(2, vec![2, 0, 0, 0, 0, 0xaa]), (3, Vec::new())]);
        let table = vec![
            entry("198.18.1.1", NeighState::Stale, true),
            entry("198.18.1.2", NeighState::Failed, true),
            NeighInfo { mac: None, ..entry("198.18.1.3", NeighState::Reachable, true) },
            NeighInfo { ifindex: 3, ..entry("198.18.1.4", NeighState::Reachable, true) },
        ];
        assert_eq!(
            map_entry(Some(hop("198.18.1.1")), &table, &macs),
            Some(NeighValue { ifindex: 2, smac: [2, 0, 0, 0, 0, 0xaa], dmac: [2, 0, 0, 0, 0, 1] })
        );
        assert_eq!(map_entry(Some(hop("198.18.1.2")), &table, &macs), None, "failed");
        assert_eq!(map_entry(Some(hop("198.18.1.3")), &table, &macs), None, "no MAC");
        assert_eq!(map_entry(Some(Hop { ifindex: 3, addr: ip("198.18.1.4") }), &table, &macs), None, "egress without a MAC");
        assert_eq!(map_entry(Some(hop("198.18.1.9")), &table, &macs), None, "missing");
        assert_eq!(map_entry(None, &table, &macs), None, "no route");
    }

    /// The sysctls are read per interface and family; unreadable ones count as off.
    #[test]
    fn forwarding_sysctls_are_read_per_interface() {
        let dir = std::env::temp_dir().join(format!("ka-fwd-{}", std::process::id()));
        let write = |fam: &str, ifname: &str, v: &str| {
            let d = dir.join(fam).join("conf").join(ifname);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("forwarding"), v).expect("write");
        };
        write("ipv4", "eth0", "1\n");
        write("ipv4", "eth1", "0\n");
        write("ipv6", "eth0", "0\n");
        write("ipv4", "bad", "yes\n");
        let s = ForwardingSysctls::at(&dir);
        assert!(s.enabled(false, "eth0").expect("eth0"));
        assert!(!s.enabled(false, "eth1").expect("eth1"));
        assert!(!s.enabled(true, "eth0").expect("eth0 v6"));
        assert!(matches!(s.enabled(false, "gone"), Err(NextHopError::Read { .. })));
        assert!(matches!(s.enabled(false, "bad"), Err(NextHopError::Parse { .. })));
        let ifs = ["eth0".to_owned(), "eth1".to_owned(), "gone".to_owned()];
        assert_eq!(s.off(false, &ifs), vec!["net.ipv4.conf.eth1.forwarding".to_owned(), "net.ipv4.conf.gone.forwarding".to_owned()]);
        assert_eq!(s.off(true, &ifs[..1]), vec!["net.ipv6.conf.eth0.forwarding".to_owned()]);
        assert_eq!(forwarding_sysctl(false, "eth0.100"), "net.ipv4.conf.eth0/100.forwarding");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Only NAT needs forwarding, as with IPVS.
    #[test]
    fn only_nat_needs_forwarding() {
        assert!(forwarding_needed(Method::Nat));
        assert!(!forwarding_needed(Method::Dr) && !forwarding_needed(Method::Tun));
    }

    /// A pending next hop is checked again after 10 ms, doubling up to the interval; a settled
    /// pass goes back to the interval and resets the backoff.
    #[test]
    fn pace_rechecks_pending_next_hops_fast() {
        let ms = Duration::from_millis;
        let mut p = Pace::new(Duration::from_secs(1));
        assert_eq!(p.next(false), ms(1000));
        let waits: Vec<_> = (0..9).map(|_| p.next(true)).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000].map(ms));
        assert_eq!(p.next(false), ms(1000));
        assert_eq!(p.next(true), ms(10), "reset after a settled pass");
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
