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
}

impl HealthReport {
    /// Human-readable rendering, one line per real server.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let total = self.checks.get("total").copied().unwrap_or(0);
        let failed = self.failures.get("total").copied().unwrap_or(0);
        let _ = writeln!(s, "health: {} real servers, {total} checks, {failed} failed{}", self.real_servers.len(), if self.suspended { format!(" (ha_suspend: suspended for {})", self.suspended_services.join(", ")) } else { String::new() });
        for r in &self.real_servers {
            let who = r.rs_index.map_or("sorry", |_| "real");
            let last = r.last_check.as_ref().map_or_else(
                || "no check yet".to_owned(),
                |c| format!("{} {} in {}ms, {}s ago", if c.ok { "ok" } else { "FAILED" }, c.reason, c.latency_us / 1000, c.age_s),
            );
            let _ = writeln!(
                s,
                "  {} {who} {}: {} weight {}/{}{} for {}s; last check {last}",
                r.service,
                std::net::SocketAddr::new(r.addr, r.port),
                r.state,
                r.weight,
                r.configured_weight,
                if r.in_table { "" } else { " (not in table)" },
                r.since_change_s
            );
        }
        s
    }
}
