//! What `ka status` shows, as a serializable report and as text.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::{Deserialize, Serialize};

/// One XDP attachment, as reported.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct XdpAttachment {
    /// Interface name.
    pub iface: String,
    /// `native` or `generic`.
    pub mode: String,
}

/// The version of the JSON format of [`StatusReport`] (`format_version`), documented in
/// `docs/status.md`. Adding a field keeps it; renaming, removing or changing the meaning of one
/// bumps it.
pub const STATUS_FORMAT_VERSION: u32 = 1;

/// Configuration reloads since start, as `ka status` and `/metrics` report them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReloadStats {
    /// Reloads asked for and finished (applied or refused).
    pub total: u64,
    /// Reloads refused (the running configuration stayed).
    pub failed: u64,
    /// Whether the last one was applied (`true` before any: the configuration started with).
    pub last_success: bool,
    /// When the last successful load or reload happened, seconds since the Unix epoch.
    pub last_success_unix_s: u64,
}

impl ReloadStats {
    /// The stats of a daemon that loaded its configuration `now`.
    pub fn started(now: std::time::SystemTime) -> ReloadStats {
        ReloadStats { total: 0, failed: 0, last_success: true, last_success_unix_s: unix_s(now) }
    }

    /// Records a finished reload.
    pub fn record(&mut self, applied: bool, now: std::time::SystemTime) {
        self.total += 1;
        self.last_success = applied;
        if applied {
            self.last_success_unix_s = unix_s(now);
        } else {
            self.failed += 1;
        }
    }
}

fn unix_s(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The daemon's state, as `ka status --json` prints it (see `docs/status.md`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusReport {
    /// [`STATUS_FORMAT_VERSION`] of the daemon that wrote it.
    #[serde(default)]
    pub format_version: u32,
    /// Instance name.
    pub instance: String,
    /// ka version.
    pub version: String,
    /// Daemon PID.
    pub pid: u32,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
    /// XDP attachments (empty with `--no-xdp`).
    pub xdp: Vec<XdpAttachment>,
    /// Datapath counters summed over CPUs, by name (see `ka_common::stats::Counter`).
    pub counters: BTreeMap<String, u64>,
    /// VRRP instances.
    #[serde(default)]
    pub vrrp: Vec<crate::engine::InstanceReport>,
    /// Invalid VRRP adverts by reason, wherever they were dropped: in XDP, in the engine before
    /// an instance was found (unknown VRID, too short), and per instance.
    #[serde(default)]
    pub vrrp_dropped: BTreeMap<String, u64>,
    /// Virtual servers and their real servers' health.
    #[serde(default)]
    pub health: Option<crate::health::HealthReport>,
    /// Load-balanced services with per-VIP and per-real-server packet and byte counters.
    #[serde(default)]
    pub services: Vec<crate::dataplane::ServiceCounters>,
    /// Virtual servers (or group entries) the datapath does not serve, and why.
    #[serde(default)]
    pub refused: Vec<crate::lb::plan::Refusal>,
    /// Host settings the services need and miss, found at start ([`crate::preflight`]).
    #[serde(default)]
    pub host: Vec<crate::preflight::Finding>,
    /// Real servers changed at runtime by `ka rs` ([`crate::rs_control`]).
    #[serde(default)]
    pub runtime_overrides: Vec<crate::rs_control::OverrideReport>,
    /// Configuration reloads since start.
    #[serde(default)]
    pub reloads: ReloadStats,
    /// Connection sync between directors (`lvs_sync_daemon`), when running.
    #[serde(default)]
    pub sync: Option<crate::lb::sync::SyncReport>,
    /// `--announce-table`: the routes in the table and the VIPs withheld.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<crate::announce::AnnounceReport>,
    /// The BFD sessions (`bfd_instance`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<crate::bfd::io::BfdReport>,
}

impl StatusReport {
    /// Human-readable rendering.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "instance {} (ka {}, pid {}, up {}s)", self.instance, self.version, self.pid, self.uptime_s);
        if self.xdp.is_empty() {
            let _ = writeln!(s, "xdp: not attached");
        }
        for a in &self.xdp {
            let _ = writeln!(s, "xdp: {} ({})", a.iface, a.mode);
        }
        for f in &self.host {
            let _ = writeln!(s, "host: {}", f.message);
        }
        for v in &self.vrrp {
            let _ = writeln!(
                s,
                "vrrp {} (vrid {}, v{}, {}): {} prio {}/{} master {} for {}s; adverts rx {} tx {} dropped {}",
                v.name,
                v.vrid,
                v.version,
                v.interface,
                v.state,
                v.effective_priority,
                v.priority,
                v.master.map_or_else(|| "-".to_owned(), |m| m.to_string()),
                v.in_state_s,
                v.adverts_rx,
                v.adverts_tx,
                v.adverts_dropped.values().sum::<u64>()
            );
            for (reason, n) in &v.adverts_dropped {
                let _ = writeln!(s, "    dropped {reason}: {n}");
            }
            if v.xdp_fast_path {
                let _ = writeln!(s, "    xdp fast path: {} changes reported, {} master-down expiries deferred", v.xdp_changes, v.xdp_deferrals);
            }
            if v.answers_withheld > 0 {
                let _ = writeln!(s, "    answers to lower-priority adverts withheld (one per advert interval): {}", v.answers_withheld);
            }
            for t in &v.trackers {
                let _ = writeln!(s, "    track {} {} (weight {})", t.name, t.status, t.weight);
            }
        }
        if !self.vrrp_dropped.is_empty() {
            let _ = writeln!(s, "vrrp adverts dropped (XDP and userspace):");
            for (reason, n) in &self.vrrp_dropped {
                let _ = writeln!(s, "    {reason}: {n}");
            }
        }
        for r in &self.refused {
            let _ = writeln!(s, "NOT SERVED: {}", r.message());
        }
        for svc in &self.services {
            let also = if svc.also.is_empty() { String::new() } else { format!(" (and {})", svc.also.join(", ")) };
            let _ = writeln!(s, "service {}:{}{also} {}: {} packets, {} bytes", svc.vip, svc.port, svc.protocol, svc.packets, svc.bytes);
            for b in &svc.backends {
                let _ = write!(
                    s,
                    "    -> {}:{} weight {}{}: {} packets, {} bytes",
                    b.address,
                    b.port,
                    b.weight,
                    if b.in_table { "" } else { " (out)" },
                    b.packets,
                    b.bytes
                );
                if let (Some(a), Some(i)) = (b.active_conns, b.inactive_conns) {
                    let _ = write!(s, ", {a} active / {i} inactive connections{}", if b.overloaded { " (overloaded)" } else { "" });
                }
                match &b.next_hop {
                    Some(n) => {
                        let _ = writeln!(s, "; next hop {}", n.to_text());
                    }
                    None => s.push('\n'),
                }
            }
        }
        if let Some(h) = &self.health {
            s.push_str(&h.to_text());
        }
        for o in &self.runtime_overrides {
            let _ = writeln!(s, "runtime: {} {} (ka rs)", o.key, o.what);
        }
        let r = &self.reloads;
        if r.total > 0 {
            let _ = writeln!(s, "reloads: {} ({} refused), last {}", r.total, r.failed, if r.last_success { "applied" } else { "REFUSED" });
        }
        if let Some(sync) = &self.sync {
            s.push_str(&sync.to_text());
        }
        if let Some(a) = &self.announce {
            s.push_str(&a.to_text());
        }
        if let Some(b) = &self.bfd {
            s.push_str(&b.to_text());
        }
        let _ = writeln!(s, "counters:");
        for (name, v) in &self.counters {
            let _ = writeln!(s, "  {name:<24} {v}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lists_every_counter_and_attachment() {
        let r = StatusReport {
            format_version: STATUS_FORMAT_VERSION,
            runtime_overrides: vec![],
            reloads: ReloadStats::default(),
            instance: "default".into(),
            version: "0.1.0".into(),
            pid: 1,
            uptime_s: 2,
            xdp: vec![XdpAttachment { iface: "eth0".into(), mode: "native".into() }],
            counters: BTreeMap::from([("verdict_pass".to_owned(), 7)]),
            vrrp: vec![],
            vrrp_dropped: BTreeMap::from([("bad_ttl".to_owned(), 3)]),
            health: None,
            services: vec![],
            refused: vec![crate::lb::plan::Refusal { service: "FWM 7".into(), entry: None, reason: "no marks".into(), span: Default::default() }],
            host: vec![],
            sync: Some(crate::lb::sync::SyncReport {
                instance: "VI_1".into(),
                interface: "eth1".into(),
                group: "224.0.0.81:8848".into(),
                syncid: 51,
                maxlen: 1472,
                role: "backup".into(),
                received_messages: 3,
                received_entries: 90,
                installed: 88,
                dropped: BTreeMap::from([("no_real_server".to_owned(), 2)]),
                ..Default::default()
            }),
            announce: None,
            bfd: None,
        };
        let t = r.to_text();
        assert!(t.contains("NOT SERVED: virtual server FWM 7 is not served by ka (the other virtual servers are): no marks\n"), "{t}");
        assert!(t.contains("xdp: eth0 (native)"), "{t}");
        assert!(t.contains("sync VI_1 via eth1 (224.0.0.81:8848, id 51): backup; sent 0 entries in 0 datagrams (0 refreshed); received 90 entries in 3 datagrams, 88 installed\n"), "{t}");
        assert!(t.contains("    sync dropped no_real_server: 2\n"), "{t}");
        assert!(t.contains("verdict_pass") && t.contains(" 7"), "{t}");
        assert!(t.contains("bad_ttl: 3"), "{t}");
        let back: StatusReport = serde_json::from_str(&serde_json::to_string(&r).expect("ser")).expect("de");
        assert_eq!(back, r);
    }

    /// Each real server's line says whether the XDP program can reach it, and why not; the
    /// JSON says it too (`reachable`, `reach`), so no unreachable server looks fine.
    #[test]
    fn text_shows_next_hops() {
        use crate::{
            dataplane::{BackendCounters, ServiceCounters},
            lb::{
                nexthop::{NextHopReport, Reach},
                Method,
            },
        };
        let rs = |last: u8, next_hop| BackendCounters {
            address: std::net::IpAddr::from([198, 18, 1, last]),
            port: 80,
            weight: 1,
            in_table: true,
            packets: 0,
            bytes: 0,
            active_conns: (last == 5).then_some(11),
            inactive_conns: (last == 5).then_some(2),
            overloaded: last == 5,
            next_hop,
        };
        let report = |last: u8, resolved: bool, state: &str| NextHopReport {
            mac: resolved.then(|| format!("02:00:00:00:00:0{last}")),
            via: Some(std::net::IpAddr::from([198, 18, 1, last])),
            iface: Some("eth1".into()),
            state: state.into(),
            ..NextHopReport::not_checked()
        };
        let fine = NextHopReport { resolved: true, ..report(1, true, "REACHABLE") }.judged(Method::Dr, true);
        let failed = report(2, false, "FAILED").judged(Method::Dr, false);
        let fwd_off = NextHopReport { resolved: true, forwarding_off: vec!["net.ipv4.conf.eth0.forwarding".into()], ..report(4, true, "REACHABLE") };
        let r = StatusReport {
            format_version: STATUS_FORMAT_VERSION,
            runtime_overrides: vec![],
            reloads: ReloadStats::default(),
            instance: "default".into(),
            version: "0.1.0".into(),
            pid: 1,
            uptime_s: 2,
            xdp: vec![],
            counters: BTreeMap::new(),
            vrrp_dropped: BTreeMap::new(),
            vrrp: vec![],
            health: None,
            services: vec![ServiceCounters {
                vip: "198.18.0.1".parse().expect("ip"),
                port: 80,
                also: vec![],
                protocol: "TCP".into(),
                packets: 0,
                bytes: 0,
                backends: vec![
                    rs(1, Some(fine)),
                    rs(2, Some(failed)),
                    rs(3, None),
                    rs(4, Some(fwd_off.clone().judged(Method::Dr, false))),
                    rs(5, Some(fwd_off.judged(Method::Dr, true))),
                    rs(6, Some(NextHopReport::not_checked())),
                ],
            }],
            refused: vec![],
            host: vec![],
            sync: None,
            announce: None,
            bfd: None,
        };
        let t = r.to_text();
        assert!(t.contains("-> 198.18.1.1:80 weight 1: 0 packets, 0 bytes; next hop 02:00:00:00:00:01 via 198.18.1.1 dev eth1 (REACHABLE)\n"), "{t}");
        assert!(t.contains("-> 198.18.1.2:80 weight 1: 0 packets, 0 bytes; next hop unresolved (198.18.1.2 dev eth1 FAILED); UNREACHABLE: no neighbour\n"), "{t}");
        assert!(t.contains("-> 198.18.1.3:80 weight 1: 0 packets, 0 bytes\n"), "{t}");
        assert!(
            t.contains("-> 198.18.1.4:80 weight 1: 0 packets, 0 bytes; next hop 02:00:00:00:00:04 via 198.18.1.4 dev eth1 (REACHABLE); UNREACHABLE: forwarding disabled (net.ipv4.conf.eth0.forwarding=0) and no neighbour-map entry\n"),
            "{t}"
        );
        assert!(t.contains("via 198.18.1.4 dev eth1 (REACHABLE), from the neighbour map (forwarding off: net.ipv4.conf.eth0.forwarding=0)\n"), "{t}");
        assert!(t.contains("-> 198.18.1.6:80 weight 1: 0 packets, 0 bytes; next hop not checked yet; UNREACHABLE until resolved\n"), "{t}");
        // Connection counts, in services that keep them.
        assert!(t.contains("-> 198.18.1.5:80 weight 1: 0 packets, 0 bytes, 11 active / 2 inactive connections (overloaded); next hop"), "{t}");
        let json = serde_json::to_value(&r).expect("json");
        let b = &json["services"][0]["backends"];
        assert_eq!((b[4]["active_conns"].as_u64(), b[4]["inactive_conns"].as_u64(), b[4]["overloaded"].as_bool()), (Some(11), Some(2), Some(true)));
        assert!(b[0].get("active_conns").is_none() && b[0].get("overloaded").is_none(), "no counts where none are kept: {b}");
        assert_eq!((b[0]["next_hop"]["resolved"].as_bool(), b[0]["next_hop"]["reachable"].as_bool(), b[0]["next_hop"]["reach"].as_str()), (Some(true), Some(true), Some("fib")));
        assert_eq!(b[1]["next_hop"]["state"], "FAILED");
        assert_eq!((b[1]["next_hop"]["reachable"].as_bool(), b[1]["next_hop"]["reach"].as_str()), (Some(false), Some("no_neighbour")));
        assert_eq!((b[3]["next_hop"]["reachable"].as_bool(), b[3]["next_hop"]["reach"].as_str()), (Some(false), Some("forwarding_disabled")));
        assert_eq!((b[4]["next_hop"]["reachable"].as_bool(), b[4]["next_hop"]["reach"].as_str()), (Some(true), Some("neighbour_map")));
        assert_eq!((b[5]["next_hop"]["reachable"].as_bool(), b[5]["next_hop"]["reach"].as_str()), (Some(false), Some("not_checked")));
        assert_eq!(Reach::default(), Reach::NotChecked);
        let back: StatusReport = serde_json::from_str(&serde_json::to_string(&r).expect("ser")).expect("de");
        assert_eq!(back, r);
    }
}
