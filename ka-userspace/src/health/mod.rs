//! Health checkers with LVS (keepalived check daemon) semantics, driving the datapath.
//!
//! # For the daemon
//!
//! ```ignore
//! let health = ka::health::start(&config, ka::health::HealthOptions::default())?;
//! let mut backends = health.backends();          // watch::Receiver<BackendSet>
//! // map writer: on every `backends.changed()`, write `backends.borrow().services[i]`
//! //   (weight 0 = present but no new flows; servers not listed must not be in the table).
//! let report = health.status().await;            // HealthReport for `ka status` (serde)
//! health.set_master("VI_1", false);              // VI_1 left MASTER: its ha_suspend services pause
//! health.shutdown().await;                       // omega notifiers, then every task stops
//! ```
//!
//! # Structure
//!
//! - [`state`]: the sans-IO state machines (retry, alpha, dynamic weight, inhibit_on_failure,
//!   quorum with hysteresis, sorry server, omega), unit-tested without I/O;
//! - [`schedule`]: spreading first checks over `warmup` and keeping each checker's phase;
//! - [`checkers`]: one module per keepalived checker, each bounded by `connect_timeout`;
//! - [`report`]: the published [`BackendSet`] and the [`HealthReport`] of `ka status`;
//! - [`alert`]: `smtp_alert` emails for real-server transitions;
//! - this module: the owner task, one lightweight task per checker (a timer when idle, one
//!   socket or process while checking), and the [`HealthHandle`].

pub mod alert;
pub mod checkers;
pub mod report;
pub mod schedule;
pub mod state;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinSet,
    time::Instant,
};
use tracing::{info, warn};

pub use report::{ActiveSet, Backend, BackendRole, BackendSet, HealthReport, RealServerReport, ServiceBackends};

use crate::{
    config::{model::{Script, VsKey}, Config},
    notify::{
        script::{RunAs, Runner},
        smtp::SmtpConfig,
    },
};
use checkers::{BuildContext, CheckError, Probe};
use report::{CheckResultReport, CheckerReport};
use state::{Action, CheckerChange, CheckerFsm, CheckerTiming, RealServerSpec, ServiceFsm, ServiceSpec};

/// Errors of the health subsystem's start-up.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// `script_user` cannot be resolved.
    #[error("script_user: {0}")]
    ScriptUser(#[source] crate::notify::script::ScriptError),
    /// Not called from inside a tokio runtime.
    #[error("health::start must be called from inside a tokio runtime")]
    NoRuntime,
}

/// Options of [`start`].
#[derive(Clone, Debug)]
pub struct HealthOptions {
    /// Whether every VRRP instance starts as MASTER. The checks of an `ha_suspend` service run
    /// only while the instance holding its address is MASTER (keepalived: while the VIP is
    /// on the node); services whose address no instance holds are never suspended. Default
    /// `true`; a daemon running the VRRP instances passes `false` and calls
    /// [`HealthHandle::set_master`] on each transition.
    pub master: bool,
    /// notify_up/notify_down/quorum scripts still running after this long are killed.
    pub script_timeout: Duration,
    /// The state each real server starts in, by (virtual server, real server) index, instead
    /// of as its checkers' `alpha` says: a start that adopted the datapath of an earlier run
    /// carries its health over (keepalived carries checker state over a reload), so the first
    /// tables keep serving the servers that were serving. Its checkers then start up (`true`)
    /// or down, silently, and the first checks confirm or change it.
    pub initial: std::collections::HashMap<(usize, usize), bool>,
    /// What the BFD sessions report ([`crate::bfd::io`]), for `BFD_CHECK`; `None`: every
    /// `BFD_CHECK` sees its session down.
    pub bfd: Option<watch::Receiver<crate::bfd::io::ClientStates>>,
}

impl Default for HealthOptions {
    fn default() -> Self {
        Self { master: true, script_timeout: Duration::from_secs(30), initial: std::collections::HashMap::new(), bfd: None }
    }
}

enum Command {
    Status(oneshot::Sender<HealthReport>),
    Reload(Box<(Config, Vec<crate::reload::ServiceChange>)>, oneshot::Sender<()>),
    SetMaster(String, bool),
    Shutdown(oneshot::Sender<()>),
}

/// The running health checkers. Dropping it aborts every checker task at once (without the
/// `omega` notifiers: call [`HealthHandle::shutdown`] for those).
#[derive(Debug)]
pub struct HealthHandle {
    backends: watch::Receiver<BackendSet>,
    cmd: mpsc::UnboundedSender<Command>,
    owner: Option<tokio::task::JoinHandle<()>>,
}

impl HealthHandle {
    /// The desired backend set, updated on every change (one update per batch of results).
    pub fn backends(&self) -> watch::Receiver<BackendSet> {
        self.backends.clone()
    }

    /// The current report for `ka status` (empty if the subsystem has stopped).
    pub async fn status(&self) -> HealthReport {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Status(tx)).is_err() {
            return HealthReport::default();
        }
        rx.await.unwrap_or_default()
    }

    /// [`HealthHandle::status`] as a detached future, for a caller that must not wait.
    pub fn status_task(&self) -> impl std::future::Future<Output = HealthReport> + Send + 'static {
        let cmd = self.cmd.clone();
        async move {
            let (tx, rx) = oneshot::channel();
            if cmd.send(Command::Status(tx)).is_err() {
                return HealthReport::default();
            }
            rx.await.unwrap_or_default()
        }
    }

    /// Resolves once the owner task has stopped (for the daemon's supervision: it never stops
    /// on its own).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let cmd = self.cmd.clone();
        async move { cmd.closed().await }
    }

    /// Tells the checkers whether VRRP instance `instance` is MASTER: while it is not, the
    /// checks of the `ha_suspend` services whose address it holds are suspended (their state
    /// is kept). Unknown instances are ignored.
    pub fn set_master(&self, instance: &str, master: bool) {
        let _ = self.cmd.send(Command::SetMaster(instance.to_owned(), master));
    }

    /// Applies a reload (see [`crate::reload`]) and returns once the new backend set is
    /// published: real servers whose checkers did not change keep their state (a failed one
    /// stays failed, keepalived #1163) and take their new weight (#1354); new ones start as
    /// their checkers' `alpha` says; removed ones leave. `services` is the plan from the
    /// running configuration to `cfg`.
    pub async fn reload(&self, cfg: Config, services: Vec<crate::reload::ServiceChange>) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Reload(Box::new((cfg, services)), tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Stops every checker; services with `omega` run their down notifiers and `quorum_down`
    /// first. Returns when the checkers are gone.
    pub async fn shutdown(mut self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
        if let Some(owner) = self.owner.take() {
            let _ = owner.await;
        }
    }
}

impl Drop for HealthHandle {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.take() {
            owner.abort();
        }
    }
}

/// Starts one checker task per configured checker and the owner task that aggregates them.
/// Must be called inside a tokio runtime.
///
/// # Errors
/// `script_user` is unknown, or there is no runtime.
pub fn start(cfg: &Config, opts: HealthOptions) -> Result<HealthHandle, HealthError> {
    let rt = tokio::runtime::Handle::try_current().map_err(|_| HealthError::NoRuntime)?;
    let g = &cfg.global;
    let script_user = crate::notify::security::default_user(g.script_user.as_ref().map(|(u, grp)| (u.as_str(), grp.as_deref())), g.enable_script_security)
        .map_err(HealthError::ScriptUser)?;
    let ctx = BuildContext { script_security: g.enable_script_security, script_user };
    let runner = Runner { default_user: script_user, secure: ctx.script_security, timeout: opts.script_timeout };
    let smtp = match (&cfg.global.smtp_server, &cfg.global.notification_email_from) {
        (Some((server, port)), Some(from)) if !cfg.global.notification_email.is_empty() => Some(SmtpConfig {
            server: server.clone(),
            port: *port,
            timeout: cfg.global.smtp_connect_timeout,
            from: from.clone(),
            to: cfg.global.notification_email.clone(),
            router_id: cfg.global.router_id.clone().unwrap_or_else(|| nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()),
            helo_name: cfg.global.smtp_helo_name.clone(),
        }),
        _ => None,
    };

    let (result_tx, result_rx) = mpsc::channel::<CheckReport>(4096);
    // One suspension flag per VRRP instance (`true`: not MASTER).
    let suspend_tx: Vec<(String, watch::Sender<bool>)> = cfg.vrrp_instances.iter().map(|i| (i.name.clone(), watch::channel(!opts.master).0)).collect();
    let mut tasks = JoinSet::new();
    let env = BuildEnv { ctx: &ctx, suspend_tx: &suspend_tx, result_tx: &result_tx, generation: 0, rt: &rt, bfd: opts.bfd.as_ref() };
    let initial = &opts.initial;
    let (services, infos, _) = build_services(cfg, &env, &mut tasks, &mut |_, _| None, &|_| None, &|vs, rs| initial.get(&(vs, rs)).copied());
    let initial = BackendSet { services: services.iter().map(ServiceFsm::backends).collect() };
    let (backends_tx, backends_rx) = watch::channel(initial);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let owner = Owner {
        services,
        infos,
        ctx,
        result_tx,
        generation: 0,
        default_master: opts.master,
        backends_tx,
        runner,
        smtp,
        fifos: crate::notify::lvs::LvsFifos::open(&[&cfg.global.notify_fifo, &cfg.global.lvs_notify_fifo].into_iter().flatten().map(String::as_str).collect::<Vec<_>>()),
        flush_on_stop: cfg.global.lvs_flush_on_stop,
        suspend_tx,
        checks: BTreeMap::new(),
        failures: BTreeMap::new(),
        lateness: report::Lateness::default(),
        latency: BTreeMap::new(),
        dirty: Vec::new(),
        tasks,
        bfd: opts.bfd,
    };
    let owner = rt.spawn(owner.run(result_rx, cmd_rx));
    Ok(HealthHandle { backends: backends_rx, cmd: cmd_tx, owner: Some(owner) })
}

/// What building the checkers needs besides the configuration.
struct BuildEnv<'a> {
    ctx: &'a BuildContext,
    suspend_tx: &'a [(String, watch::Sender<bool>)],
    result_tx: &'a mpsc::Sender<CheckReport>,
    generation: u64,
    rt: &'a tokio::runtime::Handle,
    bfd: Option<&'a watch::Receiver<crate::bfd::io::ClientStates>>,
}

/// A real server's state that a reload carries over.
struct CarriedRs {
    checkers: Vec<CheckerStats>,
    dynamic: Option<u32>,
    last_change: Instant,
    last_reason: String,
}

/// Quorum actions a reload must carry out, per new service index.
type QuorumActions = Vec<(usize, Vec<Action>)>;

/// Builds every service of `cfg` and spawns its checkers into `tasks`. `carry(vs, rs)` gives
/// the state a real server keeps across a reload (its checkers then keep their up/down state
/// and are first checked within one `delay_loop`); others start as their checkers' `alpha`
/// says. `quorum(vs)` gives a kept service's quorum state.
fn build_services(
    cfg: &Config,
    env: &BuildEnv<'_>,
    tasks: &mut JoinSet<()>,
    carry: &mut dyn FnMut(usize, usize) -> Option<CarriedRs>,
    quorum: &dyn Fn(usize) -> Option<bool>,
    seed: &dyn Fn(usize, usize) -> Option<bool>,
) -> (Vec<ServiceFsm>, Vec<SvcInfo>, QuorumActions) {
    let mut services = Vec::new();
    let mut infos = Vec::new();
    let mut quorum_actions = Vec::new();
    let mut n_checker = 0usize;
    let owners = cfg.vip_owners();
    for (vs_index, vs) in cfg.virtual_servers.iter().enumerate() {
        let name = service_name(&vs.key);
        let owner = if vs.ha_suspend { vs_owner(cfg, vs, &owners) } else { None };
        if vs.ha_suspend {
            match owner {
                Some(i) => info!(service = %name, instance = %env.suspend_tx[i].0, "ha_suspend: checks run only while the instance is MASTER"),
                None => warn!(service = %name, "ha_suspend: no vrrp_instance holds the address; checks are never suspended"),
            }
        }
        let mut rs_specs = Vec::new();
        let mut rs_infos = Vec::new();
        let mut dynamic = Vec::new();
        for (rs_index, rs) in vs.real_servers.iter().enumerate() {
            let mut carried = carry(vs_index, rs_index).filter(|c| c.checkers.len() == rs.checkers.len());
            let mut old_stats = carried.as_mut().map(|c| std::mem::take(&mut c.checkers).into_iter());
            let mut checkers = Vec::new();
            for (ck_index, ck) in rs.checkers.iter().enumerate() {
                let probe = Arc::new(Probe::build(ck, rs, cfg, env.ctx));
                let timing = CheckerTiming { delay_loop: ck.delay_loop, retry: ck.retry, delay_before_retry: ck.delay_before_retry, alpha: ck.alpha };
                let (fsm, stats, first) = match old_stats.as_mut().and_then(Iterator::next) {
                    Some(mut old) => {
                        old.target = probe.target();
                        old.log_all_failures = ck.log_all_failures;
                        (CheckerFsm::carried(timing, old.up), old, schedule::first_check_offset(n_checker, ck.delay_loop))
                    }
                    None => {
                        let fsm = match seed(vs_index, rs_index) {
                            Some(up) => CheckerFsm::carried(timing, up),
                            None => CheckerFsm::new(timing),
                        };
                        let stats = CheckerStats {
                            kind: ck.kind.keyword(),
                            target: probe.target(),
                            up: fsm.is_up(),
                            checks: 0,
                            failures: 0,
                            last: None,
                            log_all_failures: ck.log_all_failures,
                        };
                        (fsm, stats, schedule::first_check_offset(n_checker, ck.warmup))
                    }
                };
                checkers.push(stats);
                if let Probe::Bfd(bfd) = &*probe {
                    let job = BfdJob {
                        id: CheckerId { vs: vs_index, rs: rs_index, ck: ck_index },
                        generation: env.generation,
                        name: bfd.clone(),
                        up: fsm.is_up(),
                        states: env.bfd.cloned(),
                        tx: env.result_tx.clone(),
                    };
                    n_checker += 1;
                    tasks.spawn_on(job.run(), env.rt);
                    continue;
                }
                let job = CheckerJob {
                    id: CheckerId { vs: vs_index, rs: rs_index, ck: ck_index },
                    generation: env.generation,
                    probe,
                    fsm,
                    first,
                    budget: check_budget(ck),
                    suspend: owner.map(|i| env.suspend_tx[i].1.subscribe()),
                    tx: env.result_tx.clone(),
                };
                n_checker += 1;
                tasks.spawn_on(job.run(), env.rt);
            }
            rs_specs.push(RealServerSpec {
                addr: rs.address,
                port: rs.port,
                weight: u32::try_from(rs.weight.max(0)).unwrap_or(0),
                inhibit: rs.timing.inhibit_on_failure,
                checkers_up: checkers.iter().map(|c| c.up).collect(),
            });
            dynamic.push(carried.as_ref().and_then(|c| c.dynamic));
            let (last_change, last_reason) = carried.map_or_else(|| (Instant::now(), String::new()), |c| (c.last_change, c.last_reason));
            rs_infos.push(RsInfo {
                lvs_label: crate::notify::lvs::rs_label(rs.address, rs.port, vs),
                notify_up: rs.notify_up.clone(),
                notify_down: rs.notify_down.clone(),
                smtp_alert: rs_smtp_alert(rs.smtp_alert, cfg.global.smtp_alert_checker, cfg.global.smtp_alert),
                last_change,
                last_reason,
                checkers,
            });
        }
        let spec = ServiceSpec {
            vs_index,
            name: name.clone(),
            quorum: u64::from(vs.quorum),
            hysteresis: u64::from(vs.hysteresis),
            real_servers: rs_specs,
            sorry: vs.sorry_server.as_ref().map(|s| (s.address, s.port)),
            sorry_inhibit: vs.sorry_server_inhibit,
        };
        let svc = match quorum(vs_index) {
            Some(q) => {
                let (svc, actions) = ServiceFsm::reloaded(spec, &dynamic, q);
                if !actions.is_empty() {
                    quorum_actions.push((vs_index, actions));
                }
                svc
            }
            None => {
                info!(service = %name, real_servers = vs.real_servers.len(), quorum = vs.quorum, sorry_server = vs.sorry_server.is_some(), "health checks configured");
                ServiceFsm::new(spec)
            }
        };
        services.push(svc);
        infos.push(SvcInfo { lvs_label: crate::notify::lvs::vs_label(vs), quorum_up: vs.quorum_up.clone(), quorum_down: vs.quorum_down.clone(), omega: vs.omega, rs: rs_infos, sorry_since: Instant::now(), owner });
    }
    (services, infos, quorum_actions)
}

/// [`Config::vs_owner`] with the VIP owners computed once.
fn vs_owner(cfg: &Config, vs: &crate::config::model::VirtualServer, owners: &std::collections::HashMap<std::net::IpAddr, usize>) -> Option<usize> {
    match &vs.key {
        VsKey::Addr { addr, .. } => owners.get(addr).copied(),
        _ => cfg.vs_owner(vs),
    }
}

/// The display name of a virtual server.
pub fn service_name(key: &VsKey) -> String {
    match key {
        VsKey::Addr { addr, port } => state::sock(*addr, *port),
        VsKey::Fwmark(m) => format!("fwmark {m}"),
        VsKey::Group(g) => format!("group {g}"),
    }
}

/// The outer bound of one check: a safety net above the checker's own deadlines.
fn check_budget(ck: &crate::config::model::Checker) -> Duration {
    let own = match &ck.kind {
        crate::config::model::CheckerKind::Misc { timeout, .. } => timeout.unwrap_or(ck.delay_loop),
        crate::config::model::CheckerKind::Http { urls, .. } => ck.connect_timeout * u32::try_from(urls.len().max(1)).unwrap_or(u32::MAX),
        _ => ck.connect_timeout,
    };
    own + Duration::from_secs(5)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CheckerId {
    vs: usize,
    rs: usize,
    ck: usize,
}

/// One result, from a checker task to the owner.
#[derive(Debug)]
struct CheckReport {
    id: CheckerId,
    /// The reload generation of the checker (results of a previous one are dropped).
    generation: u64,
    ok: bool,
    unsupported: bool,
    reason: String,
    weight: Option<u32>,
    latency: Duration,
    /// How late the check started against its deadline.
    late: Duration,
    change: Option<CheckerChange>,
    up: bool,
}

struct CheckerJob {
    id: CheckerId,
    generation: u64,
    probe: Arc<Probe>,
    fsm: CheckerFsm,
    first: Duration,
    budget: Duration,
    suspend: Option<watch::Receiver<bool>>,
    tx: mpsc::Sender<CheckReport>,
}

impl CheckerJob {
    /// The checker loop: wait for the deadline (and for the node to be MASTER under
    /// ha_suspend), check, report, schedule the next check. Runs until the owner goes away.
    async fn run(mut self) {
        let mut next = Instant::now() + self.first;
        loop {
            if let Some(s) = &mut self.suspend {
                // Bounded: returns as soon as checks are allowed again, or the owner is gone.
                while *s.borrow_and_update() {
                    if s.changed().await.is_err() {
                        return;
                    }
                    next = next.max(Instant::now());
                }
            }
            tokio::time::sleep_until(next).await;
            let started = Instant::now();
            let late = started.saturating_duration_since(next);
            let res = match tokio::time::timeout(self.budget, self.probe.run()).await {
                Ok(r) => r,
                Err(_) => Err(CheckError::Timeout { stage: "in the check", after: self.budget }),
            };
            let ended = Instant::now();
            let latency = ended - started;
            let unsupported = matches!(res, Err(CheckError::Unsupported(_)));
            let (ok, reason, weight) = match res {
                Ok(s) => (true, s.detail, s.weight),
                Err(e) => (false, e.to_string(), None),
            };
            let step = if unsupported { state::Step { change: None, next: self.fsm_delay() } } else { self.fsm.on_result(ok) };
            let report = CheckReport { id: self.id, generation: self.generation, ok, unsupported, reason, weight, latency, late, change: step.change, up: self.fsm.is_up() };
            if self.tx.send(report).await.is_err() {
                return;
            }
            next = started + schedule::next_deadline(Duration::ZERO, ended - started, step.next);
        }
    }

    fn fsm_delay(&self) -> state::Next {
        // An unsupported checker is reported once per delay_loop; its state never changes.
        match self.fsm.clone().on_result(true).next {
            state::Next::Loop(d) | state::Next::Retry(d) => state::Next::Loop(d),
        }
    }
}

/// A `BFD_CHECK`: keepalived's `bfd_check_handle_event` — the checker follows the session's
/// reports at once (no `retry`, no `delay_loop`), the first report applying when it differs
/// from the checker's start state (`alpha`).
struct BfdJob {
    id: CheckerId,
    generation: u64,
    name: String,
    up: bool,
    states: Option<watch::Receiver<crate::bfd::io::ClientStates>>,
    tx: mpsc::Sender<CheckReport>,
}

impl BfdJob {
    async fn run(mut self) {
        loop {
            let up = self.states.as_mut().is_some_and(|s| s.borrow_and_update().get(&self.name).copied().unwrap_or(false));
            if up != self.up {
                self.up = up;
                let report = CheckReport {
                    id: self.id,
                    generation: self.generation,
                    ok: up,
                    unsupported: false,
                    reason: format!("BFD {} is {}", self.name, if up { "up" } else { "down" }),
                    weight: None,
                    latency: Duration::ZERO,
                    late: Duration::ZERO,
                    change: Some(if up { CheckerChange::Up } else { CheckerChange::Down }),
                    up,
                };
                if self.tx.send(report).await.is_err() {
                    return;
                }
            }
            let more = match self.states.as_mut() {
                Some(s) => s.changed().await.is_ok(),
                None => false,
            };
            if !more {
                // No BFD runtime, or it stopped: nothing will change again.
                return std::future::pending().await;
            }
        }
    }
}

struct CheckerStats {
    kind: &'static str,
    target: String,
    up: bool,
    checks: u64,
    failures: u64,
    last: Option<(bool, String, Duration, Instant)>,
    log_all_failures: bool,
}

struct RsInfo {
    /// keepalived's label in the LVS FIFO lines.
    lvs_label: String,
    notify_up: Option<Script>,
    notify_down: Option<Script>,
    smtp_alert: bool,
    last_change: Instant,
    last_reason: String,
    checkers: Vec<CheckerStats>,
}

struct SvcInfo {
    /// keepalived's label in the LVS FIFO lines.
    lvs_label: String,
    quorum_up: Option<Script>,
    quorum_down: Option<Script>,
    omega: bool,
    rs: Vec<RsInfo>,
    sorry_since: Instant,
    /// With `ha_suspend`: the VRRP instance (index) whose mastership gates the checks.
    owner: Option<usize>,
}

/// The key of the all-checkers count in the check and failure counts.
const TOTAL: &str = "total";

struct Owner {
    services: Vec<ServiceFsm>,
    infos: Vec<SvcInfo>,
    ctx: BuildContext,
    /// Kept for the checkers a reload starts.
    result_tx: mpsc::Sender<CheckReport>,
    /// Bumped by each reload.
    generation: u64,
    /// Whether instances the reload adds start as MASTER ([`HealthOptions::master`]).
    default_master: bool,
    backends_tx: watch::Sender<BackendSet>,
    runner: Runner,
    smtp: Option<SmtpConfig>,
    /// `notify_fifo` / `lvs_notify_fifo`: the `VS` and `RS` lines.
    fifos: crate::notify::lvs::LvsFifos,
    /// `lvs_flush_on_stop`: which notifiers run at shutdown.
    flush_on_stop: crate::config::model::LvsFlushOnStop,
    suspend_tx: Vec<(String, watch::Sender<bool>)>,
    /// Checks per checker keyword, and [`TOTAL`].
    checks: BTreeMap<&'static str, u64>,
    /// Failed checks per checker keyword, and [`TOTAL`].
    failures: BTreeMap<&'static str, u64>,
    lateness: report::Lateness,
    /// Check durations per checker keyword.
    latency: BTreeMap<&'static str, report::CheckLatency>,
    dirty: Vec<usize>,
    tasks: JoinSet<()>,
    /// The BFD reports `BFD_CHECK`s follow, for the checkers a reload starts.
    bfd: Option<watch::Receiver<crate::bfd::io::ClientStates>>,
}

/// At most this many queued results are applied before the backend set is published.
const BATCH: usize = 1024;

impl Owner {
    async fn run(mut self, mut results: mpsc::Receiver<CheckReport>, mut cmds: mpsc::UnboundedReceiver<Command>) {
        loop {
            tokio::select! {
                r = results.recv() => {
                    let Some(r) = r else {
                        // No checker at all: keep serving commands.
                        self.serve_until_shutdown(&mut cmds).await;
                        return;
                    };
                    self.apply(r);
                    for _ in 0..BATCH {
                        match results.try_recv() {
                            Ok(r) => self.apply(r),
                            Err(_) => break,
                        }
                    }
                    self.publish();
                }
                c = cmds.recv() => match c {
                    Some(c) => if self.command(c) { return },
                    None => return,
                },
            }
        }
    }

    async fn serve_until_shutdown(&mut self, cmds: &mut mpsc::UnboundedReceiver<Command>) {
        while let Some(c) = cmds.recv().await {
            if self.command(c) {
                return;
            }
        }
    }

    /// Handles a command; returns whether to stop.
    fn command(&mut self, c: Command) -> bool {
        match c {
            Command::Status(tx) => {
                let _ = tx.send(self.report());
                false
            }
            Command::Reload(req, done) => {
                let (cfg, plan) = *req;
                self.reload(&cfg, &plan);
                let _ = done.send(());
                false
            }
            Command::SetMaster(instance, master) => {
                let Some(i) = self.suspend_tx.iter().position(|(n, _)| *n == instance) else { return false };
                let tx = &self.suspend_tx[i].1;
                if *tx.borrow() == master {
                    let n = self.infos.iter().filter(|s| s.owner == Some(i)).count();
                    if n > 0 {
                        info!(instance = %instance, master, services = n, "ha_suspend: {} health checks", if master { "resuming" } else { "suspending" });
                    }
                }
                // send_replace: the value must change even when no ha_suspend checker listens.
                tx.send_replace(!master);
                false
            }
            Command::Shutdown(done) => {
                self.tasks.abort_all();
                for vs in 0..self.services.len() {
                    let omega = self.infos[vs].omega;
                    // keepalived's clear_services: removing each real server runs their down
                    // notifiers; a flush (lvs_flush_on_stop) runs the virtual server's instead.
                    let actions = match self.flush_on_stop {
                        crate::config::model::LvsFlushOnStop::No => self.services[vs].shutdown(omega),
                        _ => self.services[vs].shutdown_flushed(omega),
                    };
                    self.carry_out(vs, actions);
                }
                self.publish();
                let _ = done.send(());
                true
            }
        }
    }

    fn apply(&mut self, r: CheckReport) {
        if r.generation != self.generation {
            return;
        }
        let CheckerId { vs, rs, ck } = r.id;
        let Some(info) = self.infos.get_mut(vs).and_then(|s| s.rs.get_mut(rs)) else { return };
        let Some(stats) = info.checkers.get_mut(ck) else { return };
        stats.checks += 1;
        self.lateness.record(r.late);
        *self.checks.entry(stats.kind).or_default() += 1;
        *self.checks.entry(TOTAL).or_default() += 1;
        self.latency.entry(stats.kind).or_default().record(r.latency);
        if !r.ok {
            stats.failures += 1;
            *self.failures.entry(stats.kind).or_default() += 1;
            *self.failures.entry(TOTAL).or_default() += 1;
        }
        let logs = (r.unsupported && stats.last.is_none()) || (!r.ok && stats.log_all_failures) || r.change.is_some();
        if logs {
            // Names are formatted only for a log line: a passing check logs nothing.
            let service = &self.services[vs].spec().name;
            let spec = &self.services[vs].spec().real_servers[rs];
            let who = state::sock(spec.addr, spec.port);
            if r.unsupported && stats.last.is_none() {
                warn!(service = %service, real_server = %who, checker = stats.kind, "{}; the checker is ignored", r.reason);
            } else if !r.ok && stats.log_all_failures {
                warn!(service = %service, real_server = %who, checker = stats.kind, reason = %r.reason, latency_ms = r.latency.as_millis() as u64, "check failed");
            }
            match r.change {
                Some(CheckerChange::Down) => warn!(service = %service, real_server = %who, checker = stats.kind, target = %stats.target, reason = %r.reason, "checker down"),
                Some(CheckerChange::Up) => info!(service = %service, real_server = %who, checker = stats.kind, target = %stats.target, detail = %r.reason, "checker up"),
                None => {}
            }
        }
        stats.up = r.up;
        if r.change.is_some() || (r.ok && r.weight.is_some()) {
            stats.last = Some((r.ok, r.reason.clone(), r.latency, Instant::now()));
            info.last_reason = r.reason;
            let actions = self.services[vs].checker_changed(rs, ck, r.up, if r.ok { r.weight } else { None });
            self.carry_out(vs, actions);
            self.dirty.push(vs);
        } else {
            stats.last = Some((r.ok, r.reason, r.latency, Instant::now()));
        }
    }

    /// Rebuilds the services of `cfg`, carrying over what `plan` keeps, and publishes them.
    fn reload(&mut self, cfg: &Config, plan: &[crate::reload::ServiceChange]) {
        self.tasks.abort_all();
        self.generation += 1;
        let carried = crate::reload::carried_checkers(plan);
        let kept_vs: std::collections::HashMap<usize, usize> = plan
            .iter()
            .filter_map(|c| match c {
                crate::reload::ServiceChange::Kept { old, new, .. } => Some((*new, *old)),
                _ => None,
            })
            .collect();
        let old_services = std::mem::take(&mut self.services);
        let mut old_infos: Vec<Vec<Option<RsInfo>>> = std::mem::take(&mut self.infos).into_iter().map(|s| s.rs.into_iter().map(Some).collect()).collect();
        let mut carry = |vs: usize, rs: usize| {
            let (ovs, ors) = *carried.get(&(vs, rs))?;
            let info = old_infos.get_mut(ovs)?.get_mut(ors)?.take()?;
            Some(CarriedRs {
                checkers: info.checkers,
                dynamic: old_services.get(ovs).and_then(|s| s.dynamic_weight(ors)),
                last_change: info.last_change,
                last_reason: info.last_reason,
            })
        };
        let quorum = |vs: usize| kept_vs.get(&vs).and_then(|o| old_services.get(*o)).map(ServiceFsm::quorum_up);
        // Suspension flags follow the instances by name; the daemon re-sends mastership.
        let default = !self.default_master;
        let suspend_tx: Vec<(String, watch::Sender<bool>)> = cfg
            .vrrp_instances
            .iter()
            .map(|i| {
                let v = self.suspend_tx.iter().find(|(n, _)| *n == i.name).map_or(default, |(_, t)| *t.borrow());
                (i.name.clone(), watch::channel(v).0)
            })
            .collect();
        let rt = tokio::runtime::Handle::current();
        let env = BuildEnv { ctx: &self.ctx, suspend_tx: &suspend_tx, result_tx: &self.result_tx, generation: self.generation, rt: &rt, bfd: self.bfd.as_ref() };
        let mut tasks = JoinSet::new();
        let (services, infos, quorum_actions) = build_services(cfg, &env, &mut tasks, &mut carry, &quorum, &|_, _| None);
        self.flush_on_stop = cfg.global.lvs_flush_on_stop;
        self.tasks = tasks;
        self.services = services;
        self.infos = infos;
        self.suspend_tx = suspend_tx;
        for (vs, actions) in quorum_actions {
            self.carry_out(vs, actions);
        }
        self.dirty.clear();
        self.backends_tx.send_replace(BackendSet { services: self.services.iter().map(ServiceFsm::backends).collect() });
        info!(services = self.services.len(), generation = self.generation, "health checks reloaded");
    }

    fn carry_out(&mut self, vs: usize, actions: Vec<Action>) {
        let service = self.services[vs].spec().name.clone();
        for a in actions {
            match a {
                Action::RealServerUp { rs } | Action::RealServerDown { rs } => {
                    let up = matches!(a, Action::RealServerUp { .. });
                    let spec = &self.services[vs].spec().real_servers[rs];
                    let who = format!("[{}]:{}", spec.addr, spec.port);
                    let line = crate::notify::lvs::rs_line(&self.infos[vs].rs[rs].lvs_label, &self.infos[vs].lvs_label, up);
                    self.fifos.send(&line);
                    let info = &mut self.infos[vs].rs[rs];
                    info.last_change = Instant::now();
                    let script = if up { info.notify_up.clone() } else { info.notify_down.clone() };
                    let alert = info.smtp_alert.then(|| info.last_reason.clone());
                    if let Some(s) = script {
                        self.run_script(&s, if up { "notify_up" } else { "notify_down" });
                    }
                    if let (Some(reason), Some(smtp)) = (alert, self.smtp.clone()) {
                        let service = alert::service_label(&service);
                        tokio::spawn(async move {
                            if let Err(e) = alert::send(&smtp, &who, &service, up, &reason).await {
                                warn!(error = %e, "checker smtp_alert");
                            }
                        });
                    }
                }
                Action::QuorumUp { .. } | Action::QuorumDown { .. } => {
                    let up = matches!(a, Action::QuorumUp { .. });
                    self.infos[vs].sorry_since = Instant::now();
                    self.fifos.send(&crate::notify::lvs::vs_line(&self.infos[vs].lvs_label, up));
                    let script = if up { self.infos[vs].quorum_up.clone() } else { self.infos[vs].quorum_down.clone() };
                    if let Some(s) = script {
                        self.run_script(&s, if up { "quorum_up" } else { "quorum_down" });
                    }
                }
            }
        }
    }

    fn run_script(&self, s: &Script, what: &'static str) {
        let user = match &s.user {
            Some((u, g)) => match RunAs::resolve(u, g.as_deref()) {
                Ok(r) => Some(r),
                Err(e) => {
                    warn!(script = %s.command, error = %e, "{what}: unknown user");
                    return;
                }
            },
            None => None,
        };
        if let Err(e) = self.runner.spawn(&s.command, &[], user) {
            warn!(script = %s.command, error = %e, "{what} script");
        }
    }

    /// Publishes the services changed since the last call.
    fn publish(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        self.dirty.sort_unstable();
        self.dirty.dedup();
        let dirty = std::mem::take(&mut self.dirty);
        let services = &self.services;
        self.backends_tx.send_if_modified(|set| {
            let mut changed = false;
            for &vs in &dirty {
                let new = services[vs].backends();
                if let Some(slot) = set.services.get_mut(vs) {
                    if *slot != new {
                        *slot = new;
                        changed = true;
                    }
                }
            }
            changed
        });
    }

    fn report(&self) -> HealthReport {
        let now = Instant::now();
        let mut out = Vec::new();
        for (vs, svc) in self.services.iter().enumerate() {
            let backends = svc.backends();
            let info = &self.infos[vs];
            for (i, rs) in svc.spec().real_servers.iter().enumerate() {
                let ri = &info.rs[i];
                let entry = backends.backends.iter().find(|b| b.role == BackendRole::Real { index: i });
                let checkers: Vec<CheckerReport> = ri
                    .checkers
                    .iter()
                    .map(|c| CheckerReport {
                        kind: c.kind.to_owned(),
                        target: c.target.clone(),
                        up: c.up,
                        checks: c.checks,
                        failures: c.failures,
                        last: c.last.as_ref().map(|l| result_report(l, now)),
                    })
                    .collect();
                let last_check = ri.checkers.iter().filter_map(|c| c.last.as_ref()).max_by_key(|l| l.3).map(|l| result_report(l, now));
                out.push(RealServerReport {
                    vs_index: vs,
                    service: svc.spec().name.clone(),
                    rs_index: Some(i),
                    addr: rs.addr,
                    port: rs.port,
                    state: if svc.alive(i) { "up" } else { "down" }.to_owned(),
                    weight: entry.map_or(0, |b| b.weight),
                    in_table: entry.is_some(),
                    configured_weight: rs.weight,
                    since_change_s: now.duration_since(ri.last_change).as_secs(),
                    last_check,
                    checkers,
                    runtime: None,
                    protocol: None,
                });
            }
            if let Some((addr, port)) = svc.spec().sorry {
                let entry = backends.backends.iter().find(|b| b.role == BackendRole::Sorry);
                out.push(RealServerReport {
                    vs_index: vs,
                    service: svc.spec().name.clone(),
                    rs_index: None,
                    addr,
                    port,
                    state: if backends.active == ActiveSet::SorryServer { "active" } else { "idle" }.to_owned(),
                    weight: entry.map_or(0, |b| b.weight),
                    in_table: entry.is_some(),
                    configured_weight: 1,
                    since_change_s: now.duration_since(info.sorry_since).as_secs(),
                    last_check: None,
                    checkers: Vec::new(),
                    runtime: None,
                    protocol: None,
                });
            }
        }
        let suspended_services: Vec<String> = self
            .services
            .iter()
            .zip(&self.infos)
            .filter(|(_, i)| i.owner.is_some_and(|o| *self.suspend_tx[o].1.borrow()))
            .map(|(s, _)| s.spec().name.clone())
            .collect();
        HealthReport {
            real_servers: out,
            checks: self.checks.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            failures: self.failures.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            suspended: !suspended_services.is_empty(),
            suspended_services,
            lateness: self.lateness.clone(),
            latency: self.latency.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
        }
    }
}

fn result_report(l: &(bool, String, Duration, Instant), now: Instant) -> CheckResultReport {
    CheckResultReport {
        ok: l.0,
        reason: l.1.clone(),
        latency_us: u64::try_from(l.2.as_micros()).unwrap_or(u64::MAX),
        age_s: now.duration_since(l.3).as_secs(),
    }
}

/// Whether a real server's transitions are mailed, as keepalived 2.2 resolves it
/// (`check_data.c`): its own `smtp_alert`, else global `smtp_alert_checker`, else global
/// `smtp_alert`, else yes (keepalived keeps this default, unlike every other `smtp_alert`, for
/// backwards compatibility; the virtual server's own `smtp_alert` is for its quorum alerts and
/// is not inherited). Mail needs `smtp_server` too.
fn rs_smtp_alert(own: Option<bool>, global_checker: Option<bool>, global: Option<bool>) -> bool {
    own.or(global_checker).or(global).unwrap_or(true)
}

#[cfg(test)]
mod tests;
