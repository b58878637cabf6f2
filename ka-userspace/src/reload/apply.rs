//! The daemon side of a reload (SIGHUP or `ka reload`): the file is read, checked and planned
//! on a blocking thread, off the runtime that runs VRRP, which also cuts the plan down to what
//! the VRRP engine must do (the new and changed instances only, see
//! [`ReloadRequest::new`]); the daemon's loop then applies it to the VRRP engine, the health
//! checkers and the dataplane. One reload runs at a time;
//! requests arriving meanwhile are served by one more reload right after, so two quick HUPs
//! apply the file once more and change nothing else (keepalived #208, #349).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use tokio::{sync::oneshot, task::JoinHandle};
use tracing::{error, info, warn};

use super::{plan_instances, plan_services, ReloadPlan, ReloadSummary, ServiceChange};
use crate::{
    config::{Config, LoadOptions, Severity},
    control::Response,
    engine::{reload::ReloadRequest, setup, EngineHandle},
    health::HealthHandle,
};

/// A new configuration, checked and planned.
#[derive(Debug)]
pub struct Prepared {
    /// The new configuration.
    pub config: Arc<Config>,
    /// What changes, one line per change.
    pub summary: ReloadSummary,
    /// The virtual servers' part of the plan.
    pub services: Vec<ServiceChange>,
    /// Instances renamed: (old name, new name).
    pub renames: Vec<(String, String)>,
    /// What the VRRP engine does (when the new configuration has instances).
    pub vrrp: Option<ReloadRequest>,
    /// When the reload was asked for.
    pub asked: Instant,
}

/// Reads, checks and plans `path` against `current`. Blocking (file I/O, parsing, the diff).
///
/// # Errors
/// The diagnostics of a configuration with errors, or why it cannot be run.
pub fn prepare(path: &Path, config_id: Option<String>, current: &Config) -> Result<Prepared, String> {
    prepare_only(path, config_id, None, current)
}

/// [`prepare`] for a daemon running one subsystem (`keepalived -P` / `-C`): the new
/// configuration is cut down to it before planning.
///
/// # Errors
/// As [`prepare`].
pub fn prepare_only(path: &Path, config_id: Option<String>, only: Option<crate::keepalived::args::Only>, current: &Config) -> Result<Prepared, String> {
    let asked = Instant::now();
    let g = &current.global;
    // reload_file: there while the files are read (keepalived's create/remove_reload_file).
    let reading = g.reload_file.as_ref().map(|f| ReloadFile::create(reload_file_path(f.as_deref(), current.instance.as_deref(), current.use_pid_dir)));
    if let Some(log) = &g.reload_check_config {
        check_first(path, config_id.clone(), Path::new(log))?;
    }
    let opts = LoadOptions { config_id: config_id.clone(), ..Default::default() };
    let loaded = crate::config::load(path, &opts);
    drop(reading);
    let mut loaded = loaded.map_err(|e| format!("configuration {}: {e}\n", path.display()))?;
    if let Some(dir) = &loaded.config.global.config_save_dir {
        save_copy(Path::new(dir), path, &opts);
    }
    if let Some(only) = only {
        only.apply(&mut loaded.config);
    }
    let errors = loaded.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    if errors > 0 {
        let mut text = String::new();
        for d in &loaded.diagnostics {
            text.push_str(&d.render(&loaded.sources, path));
            text.push('\n');
        }
        text.push_str(&format!("configuration {} has {errors} error(s)\n", path.display()));
        return Err(text);
    }
    let mut new = loaded.config;
    // keepalived 2.2.7 (reload_config) refuses a reload that renames the VRRP firewall's table.
    if new.global.vrrp_nftables.table != current.global.vrrp_nftables.table {
        return Err("Cannot change nftables table name at a reload - please restart ka (keepalived 2.2.7 refuses such a reload too)\n".to_owned());
    }
    for finding in crate::notify::security::apply(&mut new) {
        tracing::warn!("{finding}");
    }
    let setups = setup::instances(&new).map_err(|e| format!("{e}\n"))?;
    let globals = if setups.is_empty() { None } else { Some(setup::globals(&new).map_err(|e| format!("{e}\n"))?) };
    let old_setups = setup::instances(current).map_err(|e| format!("{e}\n"))?;
    let plan = ReloadPlan { instances: plan_instances(&old_setups, &setups), services: plan_services(current, &new) };
    let summary = plan.summary();
    let renames = plan.instances.kept.iter().filter(|k| k.name != k.old_name).map(|k| (k.old_name.clone(), k.name.clone())).collect();
    let ReloadPlan { instances, services } = plan;
    // Built here, so the setups of unchanged instances are compared and freed on this thread.
    let vrrp = globals.map(|g| ReloadRequest::new(&old_setups, setups, instances, g));
    Ok(Prepared { config: Arc::new(new), summary, services, renames, vrrp, asked })
}

/// keepalived's `reload_file`: `file`, else its default name in the pid directory
/// (`/run/keepalived/keepalived_NAME.reload` with `instance`, `/run/keepalived/keepalived.reload`
/// with `use_pid_dir`, else `/run/keepalived.reload`).
pub fn reload_file_path(file: Option<&str>, instance: Option<&str>, use_pid_dir: bool) -> PathBuf {
    match (file, instance) {
        (Some(f), _) => PathBuf::from(f),
        (None, Some(i)) => PathBuf::from(format!("/run/keepalived/keepalived_{i}.reload")),
        (None, None) if use_pid_dir => PathBuf::from("/run/keepalived/keepalived.reload"),
        (None, None) => PathBuf::from("/run/keepalived.reload"),
    }
}

/// The reload file, removed when dropped.
struct ReloadFile(PathBuf);

impl ReloadFile {
    /// Creates (or truncates) it, mode 0644 (keepalived's `creat(..., rw-r--r--)`).
    fn create(path: PathBuf) -> ReloadFile {
        use std::os::unix::fs::OpenOptionsExt as _;
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&path) {
            warn!(file = %path.display(), error = %e, "reload_file: cannot create it");
        }
        ReloadFile(path)
    }
}

impl Drop for ReloadFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `reload_check_config`: the new configuration is checked as `keepalived -t` checks it, the
/// report written to `log` (truncated first); a configuration that fails the check (any
/// problem keepalived -t reports, or a script security violation) is refused.
fn check_first(path: &Path, config_id: Option<String>, log: &Path) -> Result<(), String> {
    let mut report = Vec::new();
    let code = crate::keepalived::config_test::run(path, config_id, &mut report);
    if let Err(e) = std::fs::write(log, &report) {
        warn!(file = %log.display(), error = %e, "reload_check_config: cannot write the report");
    }
    if code == crate::keepalived::config_test::TestExit::Ok {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&report).into_owned();
    text.push_str(&format!("New config failed validation (reload_check_config), see {} for details\n", log.display()));
    Err(text)
}

/// `config_save_dir`: saves the configuration as read to `dir/keepalived.conf.PID.N` (N counts
/// the reads of this process), creating `dir` (mode 0700) if needed, as keepalived does.
pub fn save_copy(dir: &Path, path: &Path, opts: &LoadOptions) {
    use std::os::unix::fs::DirBuilderExt as _;
    static SAVED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let text = match crate::config::consolidated(path, opts) {
        Ok(t) => t,
        Err(e) => {
            warn!(error = %e, "config_save_dir: cannot read the configuration");
            return;
        }
    };
    let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir);
    let n = SAVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = dir.join(format!("keepalived.conf.{}.{n}", std::process::id()));
    match std::fs::write(&file, text) {
        Ok(()) => info!(file = %file.display(), "config_save_dir: configuration saved"),
        Err(e) => warn!(file = %file.display(), error = %e, "config_save_dir: cannot save the configuration"),
    }
}

/// The calling thread at the lowest CPU priority (nice 19) until dropped: parsing and planning
/// a large configuration takes seconds of CPU, and on a busy host it must yield to the VRRP
/// engine's threads rather than share the CPU with them equally. Blocking-pool threads are
/// reused, so the previous value comes back on drop.
struct Nice {
    before: Option<i32>,
}

impl Nice {
    fn lowest() -> Nice {
        // SAFETY: plain syscalls on the calling thread (PRIO_PROCESS with a thread id applies
        // to that thread on Linux).
        let tid = unsafe { libc::gettid() } as libc::id_t;
        nix::errno::Errno::clear();
        // SAFETY: as above.
        let before = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
        if before == -1 && nix::errno::Errno::last_raw() != 0 {
            return Nice { before: None };
        }
        // SAFETY: as above.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 19) } != 0 {
            warn!(error = %std::io::Error::last_os_error(), "reload: cannot lower the priority of the reading thread");
            return Nice { before: None };
        }
        Nice { before: Some(before) }
    }
}

impl Drop for Nice {
    fn drop(&mut self) {
        if let Some(before) = self.before {
            // SAFETY: as in `lowest`; lowering the nice value back needs CAP_SYS_NICE, which the
            // daemon has as root.
            unsafe {
                let tid = libc::gettid() as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, before);
            }
        }
    }
}

/// Frees `value` on a blocking thread at the lowest CPU priority, off the caller's runtime
/// (a replaced configuration of tens of thousands of instances takes a while to free).
pub fn drop_aside<T: Send + 'static>(value: T) {
    tokio::task::spawn_blocking(move || {
        let _nice = Nice::lowest();
        drop(value);
    });
}

/// Runs reloads one at a time.
#[derive(Debug)]
pub struct Reloader {
    path: Option<PathBuf>,
    config_id: Option<String>,
    /// `keepalived -P` / `-C`.
    only: Option<crate::keepalived::args::Only>,
    task: Option<JoinHandle<Result<Prepared, String>>>,
    /// Clients waiting for the reload in progress.
    waiting: Vec<oneshot::Sender<Response>>,
    /// Clients (and signals) that came during it: one more reload follows.
    next: Option<Vec<oneshot::Sender<Response>>>,
}

impl Reloader {
    /// Reloads `path` (none: the daemon runs without a file, and reloads are refused).
    pub fn new(path: Option<PathBuf>, config_id: Option<String>) -> Reloader {
        Reloader { path, config_id, only: None, task: None, waiting: Vec::new(), next: None }
    }

    /// Reloads cut down to one subsystem (`ka run --only`).
    pub fn only(mut self, only: Option<crate::keepalived::args::Only>) -> Reloader {
        self.only = only;
        self
    }

    /// Asks for a reload against `current`; `reply` gets the outcome (`None`: SIGHUP).
    pub fn request(&mut self, current: &Arc<Config>, reply: Option<oneshot::Sender<Response>>) {
        if self.task.is_some() {
            let next = self.next.get_or_insert_with(Vec::new);
            next.extend(reply);
            return;
        }
        let Some(path) = self.path.clone() else {
            warn!("reload: the daemon runs without a configuration file; nothing to reload");
            if let Some(r) = reply {
                let _ = r.send(Response::Error { message: "the daemon runs without a configuration file (-f)".to_owned() });
            }
            return;
        };
        self.waiting.extend(reply);
        let current = current.clone();
        let config_id = self.config_id.clone();
        let only = self.only;
        info!(file = %path.display(), "reload: reading the configuration");
        self.task = Some(tokio::task::spawn_blocking(move || {
            let _nice = Nice::lowest();
            prepare_only(&path, config_id, only, &current)
        }));
    }

    /// Whether a reload is being prepared or applied.
    pub fn busy(&self) -> bool {
        self.task.is_some()
    }

    /// The next prepared reload (pending while none runs).
    pub async fn prepared(&mut self) -> Result<Prepared, String> {
        let Some(task) = self.task.as_mut() else { return std::future::pending().await };
        let res = task.await.unwrap_or_else(|e| Err(format!("reload task failed: {e}\n")));
        self.task = None;
        res
    }

    /// Answers the clients of the reload just finished and starts the one queued meanwhile.
    pub fn finish(&mut self, outcome: &Response, current: &Arc<Config>) {
        for w in self.waiting.drain(..) {
            let _ = w.send(outcome.clone());
        }
        if let Some(next) = self.next.take() {
            info!(waiting = next.len(), "reload: another reload was asked for meanwhile");
            self.request(current, None);
            self.waiting.extend(next);
        }
    }
}

/// The parts of the daemon a reload changes.
pub struct Targets<'a> {
    /// The VRRP engine, if running.
    pub engine: Option<&'a EngineHandle>,
    /// The health checkers, if running.
    pub health: Option<&'a HealthHandle>,
    /// The dataplane and the eBPF object it writes, if loaded.
    pub dataplane: Option<(&'a mut crate::dataplane::Dataplane, &'a mut aya::Ebpf)>,
    /// The runtime real-server overrides (`ka rs`), laid over the new backend set.
    pub overrides: &'a crate::rs_control::Overrides,
}

/// Applies a prepared reload. On error nothing has changed (the engine is the only part that
/// can refuse, and it is asked first).
///
/// # Errors
/// Why the reload was refused.
pub async fn apply(p: Prepared, t: Targets<'_>) -> Result<ReloadSummary, String> {
    let Prepared { config, summary, services, renames, vrrp, asked } = p;
    info!(took_ms = u64::try_from(asked.elapsed().as_millis()).unwrap_or(u64::MAX), "reload: configuration read, checked and planned; applying");
    if t.engine.is_none() && vrrp.is_some() {
        return Err("the daemon was started without vrrp_instances; adding the first one needs a restart\n".to_owned());
    }
    if t.health.is_none() && !config.virtual_servers.is_empty() {
        return Err("the daemon was started without virtual_servers; adding the first one needs a restart\n".to_owned());
    }
    if let (Some(engine), Some(req)) = (t.engine, vrrp) {
        engine.reload(req).await.map_err(|e| format!("{e}\n"))?;
    }
    // Every instance's mastership, for the parts that follow instances by name (names and
    // states only: a full status report of every instance would cost the engine far more).
    let states = match (t.engine, t.health.is_some() || t.dataplane.is_some()) {
        (Some(engine), true) => engine.states().await,
        _ => Vec::new(),
    };
    if let Some(h) = t.health {
        h.reload((*config).clone(), services).await;
    }
    if let Some((dp, ebpf)) = t.dataplane {
        dp.reload(ebpf, &config, &renames);
        if let Some(h) = t.health {
            let set = t.overrides.apply(&config, &h.backends().borrow());
            dp.update(ebpf, &config, &set);
        }
        // Mastership slots of kept instances are kept; re-assert them all (new ones included).
        for i in &states {
            dp.set_master(ebpf, &i.name, i.state == "MASTER");
        }
    }
    // ha_suspend follows the instances by name: renamed and new ones get their state now.
    if let Some(h) = t.health {
        for i in &states {
            h.set_master(&i.name, i.state == "MASTER");
        }
    }
    info!(took_ms = u64::try_from(asked.elapsed().as_millis()).unwrap_or(u64::MAX), changes = summary.changes.len(), "reload applied");
    for c in &summary.changes {
        info!(change = %c, "reload");
    }
    Ok(summary)
}

/// Logs a refused reload as one entry and builds the client's answer.
pub fn refused(diagnostics: String) -> Response {
    error!(diagnostics = %diagnostics.trim_end(), "reload refused: the running configuration is unchanged");
    Response::ReloadRefused { diagnostics }
}
