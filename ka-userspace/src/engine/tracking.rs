//! The tracker runtime: runs `vrrp_script`s, watches tracked interfaces, files and processes,
//! and reports each change to the engine as a [`TrackerUpdate`]. The decisions (rise/fall,
//! quorum, delays) are the sans-IO trackers' of [`crate::vrrp::track`]; this module only does
//! the I/O. Every loop here is paced by a timer; a hung script costs a timer, not a thread.

use std::{
    collections::{BTreeSet, HashMap},
    path::PathBuf,
    time::Duration,
};

use tokio::{sync::mpsc, time::Instant};
use tracing::{debug, warn};

use super::{setup::TrackKey, EngineGlobals};
use crate::{
    net::netlink::NetlinkClient,
    notify::script::RunAs,
    vrrp::{
        track::{parse_track_file_value, ProcessParams, ProcessTracker, ScriptParams, ScriptResult, ScriptTracker, TrackStatus},
        Time,
    },
};

/// A tracked value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackValue {
    /// Up/down trackers.
    Status(TrackStatus),
    /// `track_file`: the number in the file.
    File(i64),
}

/// One change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerUpdate {
    /// Which tracker.
    pub key: TrackKey,
    /// Its new value.
    pub value: TrackValue,
}

/// A `vrrp_script`.
#[derive(Clone, Debug)]
pub struct ScriptDef {
    /// Name.
    pub name: String,
    /// Command line.
    pub command: String,
    /// Parameters.
    pub params: ScriptParams,
}

/// A `vrrp_track_file`.
#[derive(Clone, Debug)]
pub struct FileDef {
    /// Name.
    pub name: String,
    /// Path.
    pub path: PathBuf,
}

/// A `vrrp_track_process`.
#[derive(Clone, Debug)]
pub struct ProcessDef {
    /// Name.
    pub name: String,
    /// Process name, or full command line with `full_command`.
    pub process: Vec<String>,
    /// Match the whole command line rather than the name.
    pub full_command: bool,
    /// Parameters.
    pub params: ProcessParams,
}

/// How often interfaces, files and processes are looked at.
const POLL: Duration = Duration::from_millis(250);

/// Starts one task per kind of tracked object in `keys`.
pub fn spawn(keys: BTreeSet<TrackKey>, globals: &EngineGlobals, netlink: NetlinkClient, tx: mpsc::Sender<TrackerUpdate>) {
    let ifaces: Vec<String> = keys.iter().filter_map(|k| if let TrackKey::Interface(n) = k { Some(n.clone()) } else { None }).collect();
    if !ifaces.is_empty() {
        tokio::spawn(interfaces(ifaces, netlink, tx.clone()));
    }
    // By name, once: a linear search per key is quadratic with tens of thousands of trackers.
    let scripts: HashMap<&str, &ScriptDef> = globals.scripts.iter().rev().map(|d| (d.name.as_str(), d)).collect();
    let file_defs: HashMap<&str, &FileDef> = globals.files.iter().rev().map(|d| (d.name.as_str(), d)).collect();
    let processes: HashMap<&str, &ProcessDef> = globals.processes.iter().rev().map(|d| (d.name.as_str(), d)).collect();
    let mut polled = Vec::new();
    for k in &keys {
        match k {
            TrackKey::Script(n) => match scripts.get(n.as_str()) {
                Some(def) => {
                    tokio::spawn(script((*def).clone(), globals.runner.default_user, globals.runner.secure, tx.clone()));
                }
                None => warn!(script = %n, "track_script names an unknown vrrp_script"),
            },
            TrackKey::File(n) => match file_defs.get(n.as_str()) {
                Some(def) => polled.push((*def).clone()),
                None => warn!(file = %n, "track_file names an unknown vrrp_track_file"),
            },
            TrackKey::Process(n) => match processes.get(n.as_str()) {
                Some(def) => {
                    tokio::spawn(process((*def).clone(), tx.clone()));
                }
                None => warn!(process = %n, "track_process names an unknown vrrp_track_process"),
            },
            TrackKey::Bfd(n) => {
                tokio::spawn(bfd(n.clone(), globals.bfd.clone(), tx.clone()));
            }
            TrackKey::Interface(_) => {}
        }
    }
    if !polled.is_empty() {
        tokio::spawn(files(polled, tx));
    }
}

async fn interfaces(names: Vec<String>, netlink: NetlinkClient, tx: mpsc::Sender<TrackerUpdate>) {
    let mut last: HashMap<String, TrackStatus> = HashMap::new();
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        let links = match netlink.links().await {
            Ok(l) => l,
            Err(e) => {
                debug!(error = %e, "listing links for tracking");
                if tx.is_closed() {
                    return;
                }
                continue;
            }
        };
        for n in &names {
            let st = match links.iter().find(|l| l.name == *n) {
                Some(l) if l.running => TrackStatus::Up,
                _ => TrackStatus::Down,
            };
            if last.insert(n.clone(), st) != Some(st)
                && tx.send(TrackerUpdate { key: TrackKey::Interface(n.clone()), value: TrackValue::Status(st) }).await.is_err()
            {
                return;
            }
        }
    }
}

async fn script(def: ScriptDef, default_user: crate::notify::security::DefaultUser, secure: bool, tx: mpsc::Sender<TrackerUpdate>) {
    let epoch = Instant::now();
    let now = || Time::from_epoch(epoch.elapsed());
    let mut t = ScriptTracker::new(def.params.clone(), now());
    let key = TrackKey::Script(def.name.clone());
    let user = match &def.params.user {
        Some((u, g)) => match RunAs::resolve(u, g.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                warn!(script = %def.name, error = %e, "vrrp_script user");
                return;
            }
        },
        None => match default_user.get() {
            Ok(u) => u,
            Err(e) => {
                warn!(script = %def.name, error = %e, "vrrp_script disabled");
                return;
            }
        },
    };
    let mut words = match crate::notify::script::split(&def.command) {
        Ok(w) => w,
        Err(e) => {
            warn!(script = %def.name, error = %e, "vrrp_script");
            return;
        }
    };
    // Checked once, as keepalived does at load: an unsafe or unusable script is not run.
    match crate::notify::security::check(&words[0], user, secure) {
        Ok(c) => {
            for w in &c.warnings {
                warn!(script = %def.name, "{w}");
            }
            words[0] = c.program.to_string_lossy().into_owned();
        }
        Err(e) => {
            warn!(script = %def.name, error = %e, "vrrp_script disabled");
            return;
        }
    }
    if tx.send(TrackerUpdate { key: key.clone(), value: TrackValue::Status(t.status()) }).await.is_err() {
        return;
    }
    loop {
        if let Some(at) = t.next_run() {
            tokio::time::sleep_until(epoch + at.since_epoch()).await;
        }
        let Some(kill_at) = t.poll(now()) else { continue };
        let timeout = kill_at.saturating_since(now());
        let res = run_once(&words, user, timeout).await;
        if let Some(st) = t.result(now(), res) {
            if tx.send(TrackerUpdate { key: key.clone(), value: TrackValue::Status(st) }).await.is_err() {
                return;
            }
        }
    }
}

async fn run_once(words: &[String], user: RunAs, timeout: Duration) -> ScriptResult {
    let Some((prog, args)) = words.split_first() else { return ScriptResult::Exited(127) };
    let mut cmd = crate::notify::script::command(std::path::Path::new(prog), args, user);
    let Ok(mut child) = cmd.spawn() else { return ScriptResult::Exited(127) };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(st)) => {
            use std::os::unix::process::ExitStatusExt as _;
            match (st.code(), st.signal()) {
                (Some(c), _) => ScriptResult::Exited(c),
                (None, Some(s)) => ScriptResult::Signaled(s),
                _ => ScriptResult::Exited(1),
            }
        }
        Ok(Err(_)) => ScriptResult::Exited(1),
        Err(_) => {
            // The script runs in its own process group: what it started goes too.
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            let _ = child.kill().await;
            ScriptResult::TimedOut
        }
    }
}

/// Polls every file of `defs` in one blocking call per tick and reports those whose value
/// changed. One task and one blocking call per file and tick made 65,024 `track_file`s cost
/// 260,000 thread hand-offs a second, which kept the VRRP engine waiting for a worker.
async fn files(defs: Vec<FileDef>, tx: mpsc::Sender<TrackerUpdate>) {
    let defs = std::sync::Arc::new(defs);
    let mut last: Vec<Option<i64>> = vec![None; defs.len()];
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let read = defs.clone();
        // keepalived reads an unreadable file as 0.
        let values = tokio::task::spawn_blocking(move || {
            read.iter().map(|d| std::fs::read_to_string(&d.path).map(|s| parse_track_file_value(&s)).unwrap_or(0)).collect::<Vec<i64>>()
        })
        .await;
        let Ok(values) = values else { return };
        for ((def, v), seen) in defs.iter().zip(values).zip(last.iter_mut()) {
            if *seen != Some(v) {
                *seen = Some(v);
                if tx.send(TrackerUpdate { key: TrackKey::File(def.name.clone()), value: TrackValue::File(v) }).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Counts processes whose name (or full command line) matches.
fn count_processes(def: &ProcessDef) -> u32 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    let mut n = 0;
    for e in dir.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let matched = if def.full_command {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let words: Vec<String> = c.split(|b| *b == 0).filter(|w| !w.is_empty()).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
                words == def.process
            })
        } else {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| def.process.first().is_some_and(|p| c.trim_end() == p))
        };
        n += u32::from(matched);
    }
    n
}

async fn process(def: ProcessDef, tx: mpsc::Sender<TrackerUpdate>) {
    let epoch = Instant::now();
    let now = || Time::from_epoch(epoch.elapsed());
    let key = TrackKey::Process(def.name.clone());
    let mut t = ProcessTracker::new(def.params.clone());
    let mut tick = tokio::time::interval(POLL);
    let mut sent = None;
    loop {
        tick.tick().await;
        let d = def.clone();
        let count = tokio::task::spawn_blocking(move || count_processes(&d)).await.unwrap_or(0);
        t.update(now(), count);
        t.poll(now());
        let st = t.status();
        if sent != Some(st) {
            sent = Some(st);
            if tx.send(TrackerUpdate { key: key.clone(), value: TrackValue::Status(st) }).await.is_err() {
                return;
            }
        }
    }
}

/// Follows one BFD session as its clients see it (keepalived's BFD events): down until it
/// reports up, and down if there is no BFD runtime or no such session.
async fn bfd(name: String, states: Option<tokio::sync::watch::Receiver<crate::bfd::io::ClientStates>>, tx: mpsc::Sender<TrackerUpdate>) {
    let key = TrackKey::Bfd(name.clone());
    let status = |up: bool| TrackValue::Status(if up { TrackStatus::Up } else { TrackStatus::Down });
    let Some(mut states) = states else {
        let _ = tx.send(TrackerUpdate { key, value: status(false) }).await;
        return;
    };
    let mut sent = None;
    loop {
        let up = states.borrow_and_update().get(&name).copied().unwrap_or(false);
        if sent != Some(up) {
            sent = Some(up);
            if tx.send(TrackerUpdate { key: key.clone(), value: status(up) }).await.is_err() {
                return;
            }
        }
        if states.changed().await.is_err() {
            // The BFD runtime stopped (the daemon is going down): the session is gone.
            let _ = tx.send(TrackerUpdate { key, value: status(false) }).await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `track_bfd` follows its session as the BFD runtime reports it: down first (before any
    /// report, and for a name it does not know), then each change once; without a BFD runtime,
    /// down.
    #[tokio::test]
    async fn bfd_tracker_follows_reports() {
        let (states, rx) = tokio::sync::watch::channel(crate::bfd::io::ClientStates::from([("other".to_owned(), true)]));
        let (tx, mut updates) = mpsc::channel(8);
        let task = tokio::spawn(bfd("b1".into(), Some(rx), tx));
        let down = TrackerUpdate { key: TrackKey::Bfd("b1".into()), value: TrackValue::Status(TrackStatus::Down) };
        let up = TrackerUpdate { key: TrackKey::Bfd("b1".into()), value: TrackValue::Status(TrackStatus::Up) };
        assert_eq!(updates.recv().await, Some(down.clone()));
        states.send_modify(|m| {
            m.insert("b1".into(), false);
        });
        states.send_modify(|m| {
            m.insert("b1".into(), true);
        });
        assert_eq!(updates.recv().await, Some(up), "an unchanged value is not repeated");
        states.send_modify(|m| {
            m.insert("b1".into(), false);
        });
        assert_eq!(updates.recv().await, Some(down.clone()));
        task.abort();

        let (tx, mut updates) = mpsc::channel(8);
        tokio::spawn(bfd("b1".into(), None, tx));
        assert_eq!(updates.recv().await, Some(down));
    }
}
