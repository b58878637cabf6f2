//! The sans-IO health state machines with LVS (keepalived check daemon) semantics: one
//! [`CheckerFsm`] per checker (retry, `delay_before_retry`, `alpha`), and one [`ServiceFsm`] per
//! virtual server (real servers up/down/dynamic weight, `inhibit_on_failure`, `quorum` with
//! `hysteresis`, the sorry server and `sorry_server_inhibit`, `omega` at shutdown).
//!
//! Nothing here does I/O or reads a clock: the runtime (`health::run`) feeds results in and
//! carries out the returned [`Action`]s; delays are returned as `Duration`s.

use std::time::Duration;

use tracing::info;

use super::report::{ActiveSet, Backend, BackendRole, ServiceBackends};

/// Timing of one checker, with keepalived's defaults already resolved by the config parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckerTiming {
    /// `delay_loop`: the interval between checks of a healthy (or failed) server.
    pub delay_loop: Duration,
    /// `retry`: how many more attempts a failing check gets before the checker goes down.
    pub retry: u32,
    /// `delay_before_retry`: the pause before each of those attempts.
    pub delay_before_retry: Duration,
    /// `alpha`: the checker starts down (and silently), not up.
    pub alpha: bool,
}

/// A change of a checker's state reported by [`CheckerFsm::on_result`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckerChange {
    /// The checker went up (one success is enough, as in keepalived).
    Up,
    /// The checker went down: `retry + 1` attempts in a row failed.
    Down,
}

/// When the next attempt of a checker runs (see [`super::schedule::next_deadline`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// `delay_loop` after the previous check *started*: the checker keeps its phase, so
    /// checks spread over the interval stay spread.
    Loop(Duration),
    /// `delay_before_retry` after the failed attempt *ended*, as keepalived arms its retry
    /// timer when an attempt fails.
    Retry(Duration),
}

/// What the runtime should do after one check result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The checker's state change, if any.
    pub change: Option<CheckerChange>,
    /// When to run the next attempt.
    pub next: Next,
}

/// One checker's state: up or down, and the retries left of a failing streak.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckerFsm {
    timing: CheckerTiming,
    up: bool,
    /// Failed attempts in the current streak (while up).
    failures: u32,
}

impl CheckerFsm {
    /// A checker at start-up: up, or down with `alpha`.
    pub fn new(timing: CheckerTiming) -> Self {
        Self { timing, up: !timing.alpha, failures: 0 }
    }

    /// A checker whose state a reload carries over (keepalived: a failed checker stays
    /// failed, an up one stays up).
    pub fn carried(timing: CheckerTiming, up: bool) -> Self {
        Self { timing, up, failures: 0 }
    }

    /// Whether the checker is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Feeds one check result.
    ///
    /// keepalived (check_*.c): a success resets the retry counter and brings a down checker up
    /// at once; a failure of an up checker is retried `retry` times, `delay_before_retry`
    /// apart, and only the last failure takes it down; a down checker is simply checked again
    /// after `delay_loop`.
    pub fn on_result(&mut self, ok: bool) -> Step {
        let t = self.timing;
        if ok {
            self.failures = 0;
            let change = (!self.up).then_some(CheckerChange::Up);
            self.up = true;
            return Step { change, next: Next::Loop(t.delay_loop) };
        }
        if !self.up {
            return Step { change: None, next: Next::Loop(t.delay_loop) };
        }
        if self.failures < t.retry {
            self.failures += 1;
            return Step { change: None, next: Next::Retry(t.delay_before_retry) };
        }
        self.failures = 0;
        self.up = false;
        Step { change: Some(CheckerChange::Down), next: Next::Loop(t.delay_loop) }
    }
}

/// The static description of one real server for [`ServiceFsm`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealServerSpec {
    /// Its address.
    pub addr: std::net::IpAddr,
    /// Its port.
    pub port: u16,
    /// Configured `weight` (negative values count as 0).
    pub weight: u32,
    /// `inhibit_on_failure`: keep it in the table at weight 0 while down.
    pub inhibit: bool,
    /// Initial state of each of its checkers (`false` with `alpha`).
    pub checkers_up: Vec<bool>,
}

/// The static description of a virtual server for [`ServiceFsm`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Index of the `virtual_server` in the configuration.
    pub vs_index: usize,
    /// Display name (`198.18.0.1:80`, `fwmark 1`, `group NAME`).
    pub name: String,
    /// `quorum` (default 1).
    pub quorum: u64,
    /// `hysteresis` (default 0).
    pub hysteresis: u64,
    /// Real servers, in configuration order.
    pub real_servers: Vec<RealServerSpec>,
    /// `sorry_server ADDR PORT`.
    pub sorry: Option<(std::net::IpAddr, u16)>,
    /// `sorry_server_inhibit`: the sorry server stays in the table at weight 0 when unused.
    pub sorry_inhibit: bool,
}

/// Something the runtime must carry out after a state change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A real server came up: run its `notify_up`, send its SMTP alert.
    RealServerUp {
        /// Real server index.
        rs: usize,
    },
    /// A real server went down: run its `notify_down`, send its SMTP alert.
    RealServerDown {
        /// Real server index.
        rs: usize,
    },
    /// The service gained quorum: run `quorum_up`.
    QuorumUp {
        /// Sum of the weights of the live real servers.
        weight_sum: u64,
    },
    /// The service lost quorum: run `quorum_down`.
    QuorumDown {
        /// Sum of the weights of the live real servers.
        weight_sum: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct RsState {
    spec: RealServerSpec,
    checkers_up: Vec<bool>,
    dynamic_weight: Option<u32>,
    alive: bool,
}

impl RsState {
    fn weight(&self) -> u32 {
        self.dynamic_weight.unwrap_or(self.spec.weight)
    }
}

/// One virtual server: the aggregate state of its real servers and its quorum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceFsm {
    spec: ServiceSpec,
    rs: Vec<RsState>,
    quorum_up: bool,
}

impl ServiceFsm {
    /// The service at start-up. A real server is alive when all its checkers are (a real
    /// server without checkers is always alive). The initial quorum state is computed
    /// silently: no scripts run for the start-up state (keepalived's `alpha` rationale).
    pub fn new(spec: ServiceSpec) -> Self {
        let rs = spec
            .real_servers
            .iter()
            .map(|r| RsState {
                spec: r.clone(),
                checkers_up: r.checkers_up.clone(),
                dynamic_weight: None,
                alive: r.checkers_up.iter().all(|u| *u),
            })
            .collect();
        let mut s = Self { spec, rs, quorum_up: false };
        let sum = s.weight_sum();
        s.quorum_up = sum > 0 && sum >= s.spec.quorum;
        s
    }

    /// The service after a reload: real servers take the liveness their checkers carried
    /// over (see [`ServiceSpec`]) and the dynamic weights in `dynamic` (by real server); the
    /// quorum state is carried (`quorum_up`) and then re-evaluated, so a reload that removes
    /// enough servers runs `quorum_down` (and one that adds enough, `quorum_up`).
    pub fn reloaded(spec: ServiceSpec, dynamic: &[Option<u32>], quorum_up: bool) -> (Self, Vec<Action>) {
        let mut s = Self::new(spec);
        for (r, w) in s.rs.iter_mut().zip(dynamic) {
            r.dynamic_weight = *w;
        }
        s.quorum_up = quorum_up;
        let mut actions = Vec::new();
        s.update_quorum(&mut actions);
        (s, actions)
    }

    /// The dynamic weight of real server `rs` (`misc_dynamic`, FILE_CHECK `dynamic`), if any.
    pub fn dynamic_weight(&self, rs: usize) -> Option<u32> {
        self.rs.get(rs).and_then(|r| r.dynamic_weight)
    }

    /// The service's description.
    pub fn spec(&self) -> &ServiceSpec {
        &self.spec
    }

    /// Whether the service has quorum (otherwise the sorry server, if any, serves).
    pub fn quorum_up(&self) -> bool {
        self.quorum_up
    }

    /// Whether real server `rs` is alive.
    pub fn alive(&self, rs: usize) -> bool {
        self.rs.get(rs).is_some_and(|r| r.alive)
    }

    /// The weight real server `rs` has in the datapath now (0 when drained or absent).
    pub fn effective_weight(&self, rs: usize) -> u32 {
        self.backends()
            .backends
            .iter()
            .find(|b| b.role == BackendRole::Real { index: rs })
            .map_or(0, |b| b.weight)
    }

    /// Sum of the weights of the live real servers (what `quorum` is compared with).
    pub fn weight_sum(&self) -> u64 {
        self.rs.iter().filter(|r| r.alive).map(|r| u64::from(r.weight())).sum()
    }

    /// A checker of real server `rs` changed state (`up`), or reported a dynamic weight
    /// (`weight`, from `misc_dynamic` / FILE_CHECK `dynamic`).
    pub fn checker_changed(&mut self, rs: usize, checker: usize, up: bool, weight: Option<u32>) -> Vec<Action> {
        let Some(r) = self.rs.get_mut(rs) else { return Vec::new() };
        if let Some(slot) = r.checkers_up.get_mut(checker) {
            *slot = up;
        }
        if up && weight.is_some() {
            r.dynamic_weight = weight;
        }
        let alive = r.checkers_up.iter().all(|u| *u);
        let mut actions = Vec::new();
        self.change_state(rs, alive, &mut actions);
        self.update_quorum(&mut actions);
        actions
    }

    /// The one place a real server's liveness changes; logs and emits the notify action.
    fn change_state(&mut self, rs: usize, alive: bool, actions: &mut Vec<Action>) {
        let name = self.spec.name.clone();
        let Some(r) = self.rs.get_mut(rs) else { return };
        if r.alive == alive {
            return;
        }
        r.alive = alive;
        info!(service = %name, real_server = %sock(r.spec.addr, r.spec.port), old = state_word(!alive), new = state_word(alive), weight = r.weight(), "real server state changed");
        actions.push(if alive { Action::RealServerUp { rs } } else { Action::RealServerDown { rs } });
    }

    /// keepalived's `update_quorum_state` (ipwrapper.c): quorum is lost when the live weight
    /// falls below `quorum - hysteresis` (or to 0), and gained at `quorum + hysteresis`.
    fn update_quorum(&mut self, actions: &mut Vec<Action>) {
        let sum = self.weight_sum();
        let (q, h) = (self.spec.quorum, self.spec.hysteresis);
        if self.quorum_up && (sum == 0 || sum < q.saturating_sub(h)) {
            self.quorum_up = false;
            info!(service = %self.spec.name, weight_sum = sum, quorum = q, hysteresis = h, sorry_server = self.spec.sorry.is_some(), "lost quorum");
            actions.push(Action::QuorumDown { weight_sum: sum });
        } else if !self.quorum_up && sum > 0 && sum >= q.saturating_add(h) {
            self.quorum_up = true;
            info!(service = %self.spec.name, weight_sum = sum, quorum = q, hysteresis = h, "gained quorum");
            actions.push(Action::QuorumUp { weight_sum: sum });
        }
    }

    /// Shutdown as keepalived 2.2.7 removes a virtual server without `lvs_flush_on_stop`
    /// (`clear_service_vs` in check/ipwrapper.c): each live real server is removed, and with
    /// `omega` its down notifiers run; the virtual server's own notifiers do not. Without
    /// `omega`, nothing runs.
    pub fn shutdown(&mut self, omega: bool) -> Vec<Action> {
        if !omega {
            return Vec::new();
        }
        let mut actions = Vec::new();
        for rs in 0..self.rs.len() {
            self.change_state(rs, false, &mut actions);
        }
        actions
    }

    /// Shutdown under `lvs_flush_on_stop` (keepalived flushes instead of removing each real
    /// server): with `omega`, the virtual server's quorum-down notifiers run, whatever its
    /// quorum was (`update_vs_notifies(vs, stopping)`), and no real server's.
    pub fn shutdown_flushed(&mut self, omega: bool) -> Vec<Action> {
        self.quorum_up = false;
        if !omega {
            return Vec::new();
        }
        vec![Action::QuorumDown { weight_sum: self.weight_sum() }]
    }

    /// What the datapath should hold for this service now.
    ///
    /// With quorum: live real servers at their (possibly dynamic) weight, failed ones with
    /// `inhibit_on_failure` at weight 0, and the sorry server at weight 0 only with
    /// `sorry_server_inhibit`. Without quorum and with a sorry server: the sorry server alone
    /// serves; real servers with `inhibit_on_failure` stay at weight 0, others leave (keepalived
    /// removes the remaining live servers when the sorry server takes over). Without quorum
    /// and without a sorry server, the live servers keep serving.
    pub fn backends(&self) -> ServiceBackends {
        let sorry_active = !self.quorum_up && self.spec.sorry.is_some();
        let mut backends = Vec::with_capacity(self.rs.len() + 1);
        for (index, r) in self.rs.iter().enumerate() {
            let weight = match (r.alive && !sorry_active, r.spec.inhibit) {
                (true, _) => r.weight(),
                (false, true) => 0,
                (false, false) => continue,
            };
            backends.push(Backend { addr: r.spec.addr, port: r.spec.port, weight, role: BackendRole::Real { index } });
        }
        if let Some((addr, port)) = self.spec.sorry {
            if sorry_active || self.spec.sorry_inhibit {
                backends.push(Backend { addr, port, weight: u32::from(sorry_active), role: BackendRole::Sorry });
            }
        }
        ServiceBackends {
            vs_index: self.spec.vs_index,
            name: self.spec.name.clone(),
            active: if sorry_active { ActiveSet::SorryServer } else { ActiveSet::RealServers },
            quorum_up: self.quorum_up,
            weight_sum: self.weight_sum(),
            backends,
        }
    }
}

fn state_word(alive: bool) -> &'static str {
    if alive {
        "up"
    } else {
        "down"
    }
}

/// `addr:port`, with brackets for IPv6.
pub fn sock(addr: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn timing(retry: u32, alpha: bool) -> CheckerTiming {
        CheckerTiming { delay_loop: 6 * S, retry, delay_before_retry: 2 * S, alpha }
    }

    fn rs(last: u8, weight: u32, inhibit: bool, checkers: usize) -> RealServerSpec {
        RealServerSpec { addr: [198, 18, 0, last].into(), port: 80, weight, inhibit, checkers_up: vec![true; checkers] }
    }

    fn svc(rss: Vec<RealServerSpec>, quorum: u64, hysteresis: u64, sorry: bool, sorry_inhibit: bool) -> ServiceFsm {
        ServiceFsm::new(ServiceSpec {
            vs_index: 0,
            name: "198.18.1.1:80".into(),
            quorum,
            hysteresis,
            real_servers: rss,
            sorry: sorry.then_some(([198, 18, 0, 99].into(), 80)),
            sorry_inhibit,
        })
    }

    fn serving(s: &ServiceFsm) -> Vec<(BackendRole, u32)> {
        s.backends().backends.iter().map(|b| (b.role, b.weight)).collect()
    }

    /// A failing up checker is retried `retry` times `delay_before_retry` apart and goes
    /// down on the last failure; then it is checked every `delay_loop`; one success brings
    /// it back up at once.
    #[test]
    fn retry_then_down_then_single_success_up() {
        let mut c = CheckerFsm::new(timing(2, false));
        assert!(c.is_up());
        assert_eq!(c.on_result(true), Step { change: None, next: Next::Loop(6 * S) });
        assert_eq!(c.on_result(false), Step { change: None, next: Next::Retry(2 * S) });
        assert_eq!(c.on_result(false), Step { change: None, next: Next::Retry(2 * S) });
        assert_eq!(c.on_result(false), Step { change: Some(CheckerChange::Down), next: Next::Loop(6 * S) });
        assert_eq!(c.on_result(false), Step { change: None, next: Next::Loop(6 * S) });
        assert_eq!(c.on_result(true), Step { change: Some(CheckerChange::Up), next: Next::Loop(6 * S) });
    }

    /// A success in the middle of a failing streak resets the retry budget.
    #[test]
    fn success_resets_retries() {
        let mut c = CheckerFsm::new(timing(1, false));
        assert_eq!(c.on_result(false).change, None);
        assert_eq!(c.on_result(true).change, None);
        assert_eq!(c.on_result(false).change, None);
        assert_eq!(c.on_result(false).change, Some(CheckerChange::Down));
    }

    /// `retry 0` takes the checker down on the first failure.
    #[test]
    fn retry_zero_fails_at_once() {
        let mut c = CheckerFsm::new(timing(0, false));
        assert_eq!(c.on_result(false).change, Some(CheckerChange::Down));
    }

    /// With `alpha` a checker starts down, and its first success brings it up.
    #[test]
    fn alpha_starts_down() {
        let mut c = CheckerFsm::new(timing(1, true));
        assert!(!c.is_up());
        assert_eq!(c.on_result(false).change, None);
        assert_eq!(c.on_result(true).change, Some(CheckerChange::Up));
    }

    /// A real server is alive only while every one of its checkers is up; notify actions
    /// fire on its transitions, not on each checker's.
    #[test]
    fn real_server_needs_all_checkers() {
        let mut s = svc(vec![rs(1, 1, false, 2), rs(2, 1, false, 1)], 1, 0, false, false);
        assert_eq!(s.checker_changed(0, 0, false, None), vec![Action::RealServerDown { rs: 0 }]);
        assert_eq!(s.checker_changed(0, 1, false, None), vec![]);
        assert_eq!(s.checker_changed(0, 0, true, None), vec![]);
        assert_eq!(s.checker_changed(0, 1, true, None), vec![Action::RealServerUp { rs: 0 }]);
    }

    /// A failed server leaves the table; with `inhibit_on_failure` it stays at weight 0.
    #[test]
    fn inhibit_on_failure_keeps_weight_zero() {
        let mut s = svc(vec![rs(1, 3, false, 1), rs(2, 5, true, 1), rs(3, 1, false, 1)], 1, 0, false, false);
        s.checker_changed(0, 0, false, None);
        s.checker_changed(1, 0, false, None);
        assert_eq!(serving(&s), vec![(BackendRole::Real { index: 1 }, 0), (BackendRole::Real { index: 2 }, 1)]);
        assert_eq!(s.effective_weight(1), 0);
        s.checker_changed(1, 0, true, None);
        assert_eq!(s.effective_weight(1), 5);
    }

    /// A dynamic weight (misc_dynamic) replaces the configured weight while the server is up,
    /// and weight 0 keeps it alive but drained.
    #[test]
    fn dynamic_weight() {
        let mut s = svc(vec![rs(1, 1, false, 1)], 1, 0, false, false);
        assert_eq!(s.checker_changed(0, 0, true, Some(7)), vec![]);
        assert_eq!(s.effective_weight(0), 7);
        let a = s.checker_changed(0, 0, true, Some(0));
        assert!(s.alive(0));
        assert_eq!(s.effective_weight(0), 0);
        assert_eq!(a, vec![Action::QuorumDown { weight_sum: 0 }], "weight 0 counts nothing for quorum");
    }

    /// The sorry server takes over when quorum is lost (every server down with the default
    /// quorum 1), and leaves when a server comes back; with `sorry_server_inhibit` it stays at
    /// weight 0 while unused.
    #[test]
    fn sorry_server_takes_over() {
        for inhibit in [false, true] {
            let mut s = svc(vec![rs(1, 1, false, 1), rs(2, 1, false, 1)], 1, 0, true, inhibit);
            let idle: Vec<_> = if inhibit { vec![(BackendRole::Sorry, 0)] } else { vec![] };
            let mut both = vec![(BackendRole::Real { index: 0 }, 1), (BackendRole::Real { index: 1 }, 1)];
            both.extend(idle.clone());
            assert_eq!(serving(&s), both);
            assert_eq!(s.checker_changed(0, 0, false, None), vec![Action::RealServerDown { rs: 0 }]);
            assert_eq!(s.backends().active, ActiveSet::RealServers);
            assert_eq!(
                s.checker_changed(1, 0, false, None),
                vec![Action::RealServerDown { rs: 1 }, Action::QuorumDown { weight_sum: 0 }]
            );
            assert_eq!(s.backends().active, ActiveSet::SorryServer);
            assert_eq!(serving(&s), vec![(BackendRole::Sorry, 1)]);
            assert_eq!(
                s.checker_changed(1, 0, true, None),
                vec![Action::RealServerUp { rs: 1 }, Action::QuorumUp { weight_sum: 1 }]
            );
            let mut one = vec![(BackendRole::Real { index: 1 }, 1)];
            one.extend(idle);
            assert_eq!(serving(&s), one);
        }
    }

    /// While the sorry server serves, live real servers below quorum leave the table, and
    /// inhibited failed ones stay at weight 0.
    #[test]
    fn below_quorum_with_sorry_server_only_sorry_serves() {
        let mut s = svc(vec![rs(1, 1, false, 1), rs(2, 1, true, 1), rs(3, 1, false, 1)], 3, 0, true, false);
        s.checker_changed(1, 0, false, None);
        assert!(!s.quorum_up());
        assert_eq!(serving(&s), vec![(BackendRole::Real { index: 1 }, 0), (BackendRole::Sorry, 1)]);
    }

    /// Without a sorry server, losing quorum runs quorum_down but the live servers keep
    /// serving.
    #[test]
    fn quorum_without_sorry_keeps_live_servers() {
        let mut s = svc(vec![rs(1, 2, false, 1), rs(2, 2, false, 1)], 4, 0, false, false);
        assert_eq!(s.checker_changed(0, 0, false, None), vec![Action::RealServerDown { rs: 0 }, Action::QuorumDown { weight_sum: 2 }]);
        assert_eq!(serving(&s), vec![(BackendRole::Real { index: 1 }, 2)]);
    }

    /// Hysteresis: with quorum 3 and hysteresis 1, quorum is lost below 2 and regained at 4.
    #[test]
    fn quorum_hysteresis() {
        let mut s = svc((1..=5).map(|i| rs(i, 1, false, 1)).collect(), 3, 1, true, false);
        assert!(s.quorum_up());
        s.checker_changed(0, 0, false, None);
        s.checker_changed(1, 0, false, None);
        s.checker_changed(2, 0, false, None);
        assert!(s.quorum_up(), "weight 2 is not below quorum - hysteresis = 2");
        let a = s.checker_changed(3, 0, false, None);
        assert_eq!(a, vec![Action::RealServerDown { rs: 3 }, Action::QuorumDown { weight_sum: 1 }]);
        s.checker_changed(0, 0, true, None);
        let a = s.checker_changed(1, 0, true, None);
        assert_eq!(a, vec![Action::RealServerUp { rs: 1 }], "weight 3 < quorum + hysteresis = 4");
        let a = s.checker_changed(2, 0, true, None);
        assert_eq!(a, vec![Action::RealServerUp { rs: 2 }, Action::QuorumUp { weight_sum: 4 }]);
    }

    /// With `alpha` every server starts down, silently: no notify at start-up, the sorry
    /// server serves, and the first success brings a server and quorum up.
    #[test]
    fn alpha_start_is_silent() {
        let mut r = rs(1, 1, false, 1);
        r.checkers_up = vec![false];
        let mut s = svc(vec![r], 1, 0, true, false);
        assert!(!s.quorum_up());
        assert_eq!(s.backends().active, ActiveSet::SorryServer);
        assert_eq!(s.checker_changed(0, 0, true, None), vec![Action::RealServerUp { rs: 0 }, Action::QuorumUp { weight_sum: 1 }]);
    }

    /// `omega`: shutdown runs the real servers' down notifiers (keepalived removes each real
    /// server, and no virtual-server notifier runs then); under `lvs_flush_on_stop` the
    /// virtual server's quorum-down notifiers run instead, even for a service without quorum;
    /// without `omega`, nothing runs.
    #[test]
    fn omega_runs_down_notifiers_at_shutdown() {
        let mut s = svc(vec![rs(1, 1, false, 1), rs(2, 1, false, 1)], 1, 0, false, false);
        assert_eq!(s.clone().shutdown(false), vec![]);
        assert_eq!(s.clone().shutdown_flushed(false), vec![]);
        assert_eq!(s.clone().shutdown_flushed(true), vec![Action::QuorumDown { weight_sum: 2 }]);
        assert_eq!(s.shutdown(true), vec![Action::RealServerDown { rs: 0 }, Action::RealServerDown { rs: 1 }]);
        let mut r = rs(1, 1, false, 1);
        r.checkers_up = vec![false];
        let mut down = svc(vec![r], 1, 0, false, false);
        assert!(!down.quorum_up());
        assert_eq!(down.shutdown_flushed(true), vec![Action::QuorumDown { weight_sum: 0 }]);
    }
}
