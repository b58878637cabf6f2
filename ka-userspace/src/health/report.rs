//! What the health checkers publish: the desired backend set for the datapath
//! ([`BackendSet`]) and the per-real-server report for `ka status` ([`HealthReport`]).

use std::{collections::BTreeMap, fmt::Write as _, net::IpAddr};

use serde::{Deserialize, Serialize};

/// The desired content of the datapath's backend tables, one entry per `virtual_server`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackendSet {
    /// Services, indexed like `Config::virtual_servers` (`services[i].vs_index == i`).
    pub services: Vec<ServiceBackends>,
}

/// Which set of servers serves a virtual service.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ActiveSet {
    /// The real servers (quorum is up, or there is no sorry server).
    RealServers,
    /// The sorry server (quorum is lost).
    SorryServer,
}

/// What a backend entry stands for.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum BackendRole {
    /// A `real_server`.
    Real {
        /// Its index in `VirtualServer::real_servers`.
        index: usize,
    },
    /// The `sorry_server`.
    Sorry,
}

/// One entry of a service's backend table.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Backend {
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// Weight: 0 means present but drained (no new flows: `inhibit_on_failure`, a dynamic
    /// weight of 0, an idle sorry server with `sorry_server_inhibit`).
    pub weight: u32,
    /// Real or sorry server.
    pub role: BackendRole,
}

/// The backend table of one virtual service.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceBackends {
    /// Index of the `virtual_server` in the configuration.
    pub vs_index: usize,
    /// Display name (`198.18.0.1:80`, `fwmark 1`, `group NAME`).
    pub name: String,
    /// Which set serves.
    pub active: ActiveSet,
    /// Whether the service has quorum.
    pub quorum_up: bool,
    /// Sum of the weights of the live real servers.
    pub weight_sum: u64,
    /// The entries the table should hold; a server not listed must not be in the table.
    pub backends: Vec<Backend>,
}

impl ServiceBackends {
    /// The backends that may take new flows (weight > 0).
    pub fn serving(&self) -> impl Iterator<Item = &Backend> {
        self.backends.iter().filter(|b| b.weight > 0)
    }
}

/// The last result of one checker.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckResultReport {
    /// Whether the check passed.
    pub ok: bool,
    /// Why it failed, or what it found (`HTTP 200`, `exit 0`...).
    pub reason: String,
    /// How long the check took, in microseconds.
    pub latency_us: u64,
    /// Seconds since it completed.
    pub age_s: u64,
}

/// One checker of a real server.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckerReport {
    /// keepalived keyword (`TCP_CHECK`, `HTTP_GET`...).
    pub kind: String,
    /// Where it connects (`198.18.0.2:80`, or the script for MISC_CHECK).
    pub target: String,
    /// Whether the checker is up.
    pub up: bool,
    /// Checks done.
    pub checks: u64,
    /// Checks failed.
    pub failures: u64,
    /// The last result, if any check completed.
    pub last: Option<CheckResultReport>,
}

/// One real server, as `ka status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RealServerReport {
    /// Index of the virtual server.
    pub vs_index: usize,
    /// The virtual server's display name.
    pub service: String,
    /// Index of the real server in its virtual server (`None`: the sorry server).
    pub rs_index: Option<usize>,
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// `up` or `down`.
    pub state: String,
    /// Weight in the datapath now (0: drained or absent).
    pub weight: u32,
    /// Whether it is in the backend table at all (with weight 0 when inhibited).
    pub in_table: bool,
    /// Configured weight.
    pub configured_weight: u32,
    /// Seconds since its last state change (or since start).
    pub since_change_s: u64,
    /// The most recent check result of any of its checkers.
    pub last_check: Option<CheckResultReport>,
    /// Its checkers.
    pub checkers: Vec<CheckerReport>,
    /// The runtime override set by `ka rs` (`weight`/`in_table` then show its effect); `None`:
    /// as configured.
    #[serde(default)]
    pub runtime: Option<crate::rs_control::Override>,
    /// The virtual server's protocol (`TCP`, `UDP`, `SCTP`), filled in by the daemon.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// Everything the health subsystem reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthReport {
    /// Real servers (and sorry servers), by service.
    pub real_servers: Vec<RealServerReport>,
    /// Checks done since start, by checker keyword, plus `total`.
    pub checks: BTreeMap<String, u64>,
    /// Failed checks since start, by checker keyword, plus `total`.
    pub failures: BTreeMap<String, u64>,
    /// Whether the checks of some `ha_suspend` service are suspended (the VRRP instance
    /// holding its address is not MASTER).
    pub suspended: bool,
    /// The `ha_suspend` services whose checks are suspended now.
    #[serde(default)]
    pub suspended_services: Vec<String>,
    /// How late checks started against their schedule, since start.
    #[serde(default)]
    pub lateness: Lateness,
    /// How long checks took, by checker keyword, since start.
    #[serde(default)]
    pub latency: BTreeMap<String, CheckLatency>,
}

/// Upper bounds (µs) of the buckets of [`CheckLatency`]: 1 ms to 10 s, the range of
/// `connect_timeout`s, as a Prometheus histogram's `le` labels.
pub const CHECK_LATENCY_BOUNDS_US: [u64; 12] =
    [1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 10_000_000];

/// A histogram of check durations with fixed buckets ([`CHECK_LATENCY_BOUNDS_US`]), cumulative
/// since start.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckLatency {
    /// Checks recorded.
    pub count: u64,
    /// Sum of their durations, µs.
    pub sum_us: u64,
    /// Checks per bucket (not cumulative): `buckets[i]` took at most
    /// `CHECK_LATENCY_BOUNDS_US[i]` and more than the previous bound; the last entry counts
    /// those above every bound.
    pub buckets: Vec<u64>,
}

impl CheckLatency {
    /// Records one check that took `took`.
    pub fn record(&mut self, took: std::time::Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        if self.buckets.len() != CHECK_LATENCY_BOUNDS_US.len() + 1 {
            self.buckets.resize(CHECK_LATENCY_BOUNDS_US.len() + 1, 0);
        }
        let i = CHECK_LATENCY_BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(CHECK_LATENCY_BOUNDS_US.len());
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }
}

/// A histogram of how late checks started against their schedule (the deadline each checker
/// slept until), in microseconds: exact below 16 µs, then 8 buckets per power of two (at
/// most 12.5 % wide). Cumulative since start: subtract two snapshots for a window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lateness {
    /// Checks recorded.
    pub checks: u64,
    /// The largest lateness seen, µs.
    pub max_us: u64,
    /// Non-empty buckets as `(upper bound µs, count)`, ascending.
    pub buckets: Vec<(u64, u64)>,
}

impl Lateness {
    /// The bucket index of `us` and its inclusive upper bound.
    fn bucket(us: u64) -> (usize, u64) {
        if us < 16 {
            return (us as usize, us);
        }
        let e = 63 - u64::from(us.leading_zeros());
        let sub = (us >> (e - 3)) & 7;
        let idx = 16 + (e as usize - 4) * 8 + sub as usize;
        let upper = ((8 + sub + 1) << (e - 3)) - 1;
        (idx, upper)
    }

    /// Records one check that started `late` after its deadline.
    pub fn record(&mut self, late: std::time::Duration) {
        let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        self.checks += 1;
        self.max_us = self.max_us.max(us);
        let (_, upper) = Self::bucket(us);
        match self.buckets.binary_search_by_key(&upper, |b| b.0) {
            Ok(i) => self.buckets[i].1 += 1,
            Err(i) => self.buckets.insert(i, (upper, 1)),
        }
    }

    /// The checks recorded in `self` but not in `earlier` (a window between two snapshots);
    /// `max_us` becomes the upper bound of the window's highest bucket.
    pub fn since(&self, earlier: &Lateness) -> Lateness {
        let mut buckets = Vec::new();
        for &(upper, n) in &self.buckets {
            let before = earlier.buckets.iter().find(|b| b.0 == upper).map_or(0, |b| b.1);
            if n > before {
                buckets.push((upper, n - before));
            }
        }
        let max_us = buckets.last().map_or(0, |b| b.0.min(self.max_us));
        Lateness { checks: self.checks.saturating_sub(earlier.checks), max_us, buckets }
    }

    /// The `q` quantile (0..=1), µs: the upper bound of the bucket holding it.
    pub fn quantile_us(&self, q: f64) -> u64 {
        let total: u64 = self.buckets.iter().map(|b| b.1).sum();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for &(upper, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return upper.min(self.max_us);
            }
        }
        self.max_us
    }
}

impl HealthReport {
    /// Human-readable rendering, one line per real server.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let total = self.checks.get("total").copied().unwrap_or(0);
        let failed = self.failures.get("total").copied().unwrap_or(0);
        let _ = writeln!(
            s,
            "health: {} real servers, {total} checks, {failed} failed, start lateness p99 {:.1} ms max {:.1} ms{}",
            self.real_servers.len(),
            self.lateness.quantile_us(0.99) as f64 / 1000.0,
            self.lateness.max_us as f64 / 1000.0,
            if self.suspended { format!(" (ha_suspend: suspended for {})", self.suspended_services.join(", ")) } else { String::new() }
        );
        for r in &self.real_servers {
            let who = r.rs_index.map_or("sorry", |_| "real");
            let last = r.last_check.as_ref().map_or_else(
                || "no check yet".to_owned(),
                |c| format!("{} {} in {}ms, {}s ago", if c.ok { "ok" } else { "FAILED" }, c.reason, c.latency_us / 1000, c.age_s),
            );
            let _ = writeln!(
                s,
                "  {} {who} {}: {} weight {}/{}{}{} for {}s; last check {last}",
                r.service,
                std::net::SocketAddr::new(r.addr, r.port),
                r.state,
                r.weight,
                r.configured_weight,
                if r.in_table { "" } else { " (not in table)" },
                r.runtime.map(|o| format!(" [runtime: {o}]")).unwrap_or_default(),
                r.since_change_s
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Lateness;

    /// Buckets are at most 12.5 % wide, quantiles come from the bucket bounds, and a window
    /// between two snapshots holds only the checks recorded in between.
    #[test]
    fn lateness_histogram() {
        let us = Duration::from_micros;
        for v in [0u64, 15, 16, 17, 100, 1000, 12_345, 999_999, 5_000_000] {
            let (_, upper) = Lateness::bucket(v);
            assert!(upper >= v && (upper - v) as f64 <= (v as f64) * 0.125 + 1.0, "{v} -> {upper}");
        }
        let mut l = Lateness::default();
        for _ in 0..990 {
            l.record(us(100));
        }
        let before = l.clone();
        for _ in 0..10 {
            l.record(us(50_000));
        }
        assert_eq!((l.checks, l.max_us), (1000, 50_000));
        assert!((100..=113).contains(&l.quantile_us(0.99)), "{}", l.quantile_us(0.99));
        assert!((49_152..=50_000).contains(&l.quantile_us(0.999)), "{}", l.quantile_us(0.999));
        let w = l.since(&before);
        assert_eq!(w.checks, 10);
        assert!((49_152..=50_000).contains(&w.quantile_us(0.5)) && w.max_us == 50_000, "{w:?}");
    }

    /// Check durations land in the bucket of the first bound at or above them.
    #[test]
    fn check_latency_buckets() {
        let mut h = super::CheckLatency::default();
        for ms in [0, 1, 2, 30, 20_000] {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!((h.count, h.sum_us), (5, 20_033_000));
        assert_eq!(h.buckets.len(), super::CHECK_LATENCY_BOUNDS_US.len() + 1);
        assert_eq!((h.buckets[0], h.buckets[1], h.buckets[5], h.buckets[12]), (2, 1, 1, 1));
    }
}
