//! The tracker runtime: runs `vrrp_script`s, watches tracked interfaces, files and processes,
//! and reports each change to the engine as a [`TrackerUpdate`]. The decisions (rise/fall,
//! quorum, delays) are the sans-IO trackers' of [`crate::vrrp::track`]; this module only does
//! the I/O. Every loop here is paced by a timer; a hung script costs a timer, not a thread.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
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
    let srcs: Vec<(String, IpAddr)> = keys.iter().filter_map(|k| if let TrackKey::SrcAddr(n, a) = k { Some((n.clone(), *a)) } else { None }).collect();
    if !ifaces.is_empty() || !srcs.is_empty() {
        tokio::spawn(interfaces(ifaces, srcs, globals.if_delays.clone(), netlink, tx.clone()));
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
            TrackKey::Interface(_) | TrackKey::SrcAddr(..) => {}
        }
    }
    if !polled.is_empty() {
        tokio::spawn(files(polled, tx));
    }
}

/// `interface_up_down_delays` for one interface (keepalived 2.2.7's debounce timers): a change
/// of its raw state is reported once it has lasted the delay of its direction (down delay
/// before reporting down, up delay before reporting up); a change that reverts sooner is never
/// reported. The first state is reported at once. Pure: the poller feeds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Debounce {
    down: Duration,
    up: Duration,
    reported: Option<TrackStatus>,
    pending: Option<(TrackStatus, Time)>,
}

impl Debounce {
    /// Delays `down` and `up` (zero: at once).
    pub fn new(down: Duration, up: Duration) -> Debounce {
        Debounce { down, up, reported: None, pending: None }
    }

    /// New delays (a reload), from the next observation on.
    pub fn set_delays(&mut self, down: Duration, up: Duration) {
        (self.down, self.up) = (down, up);
    }

    /// The raw state `raw` seen at `now`: the state to report, if it changes.
    pub fn observe(&mut self, now: Time, raw: TrackStatus) -> Option<TrackStatus> {
        let Some(rep) = self.reported else {
            self.reported = Some(raw);
            return Some(raw);
        };
        if raw == rep {
            self.pending = None;
            return None;
        }
        let since = match self.pending {
            Some((st, t)) if st == raw => t,
            _ => {
                self.pending = Some((raw, now));
                now
            }
        };
        let delay = if raw == TrackStatus::Up { self.up } else { self.down };
        if now.saturating_since(since) >= delay {
            self.pending = None;
            self.reported = Some(raw);
            return Some(raw);
        }
        None
    }
}

/// Whether `addr` is on interface `iface` (`track_src_ip`).
fn src_addr_status(links: &[crate::net::netlink::LinkInfo], addrs: &[(u32, IpAddr, u8)], iface: &str, addr: IpAddr) -> TrackStatus {
    let present = links.iter().find(|l| l.name == iface).is_some_and(|l| addrs.iter().any(|(i, a, _)| *i == l.index && *a == addr));
    if present {
        TrackStatus::Up
    } else {
        TrackStatus::Down
    }
}

async fn interfaces(
    names: Vec<String>,
    srcs: Vec<(String, IpAddr)>,
    delays: std::sync::Arc<std::sync::RwLock<HashMap<String, (Duration, Duration)>>>,
    netlink: NetlinkClient,
    tx: mpsc::Sender<TrackerUpdate>,
) {
    let epoch = Instant::now();
    let mut debounce: HashMap<String, Debounce> = names.iter().map(|n| (n.clone(), Debounce::new(Duration::ZERO, Duration::ZERO))).collect();
    let mut last_src: HashMap<(String, IpAddr), TrackStatus> = HashMap::new();
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
        let now = Time::from_epoch(epoch.elapsed());
        if let Ok(d) = delays.read() {
            for (n, db) in &mut debounce {
                let (down, up) = d.get(n).copied().unwrap_or_default();
                db.set_delays(down, up);
            }
        }
        for n in &names {
            let raw = match links.iter().find(|l| l.name == *n) {
                Some(l) if l.running => TrackStatus::Up,
                _ => TrackStatus::Down,
            };
            let Some(st) = debounce.get_mut(n).and_then(|d| d.observe(now, raw)) else { continue };
            if tx.send(TrackerUpdate { key: TrackKey::Interface(n.clone()), value: TrackValue::Status(st) }).await.is_err() {
                return;
            }
        }
        if srcs.is_empty() {
            continue;
        }
        let addrs = match netlink.list_addrs(None).await {
            Ok(a) => a,
            Err(e) => {
                debug!(error = %e, "listing addresses for track_src_ip");
                continue;
            }
        };
        for (n, a) in &srcs {
            let st = src_addr_status(&links, &addrs, n, *a);
            if last_src.insert((n.clone(), *a), st) != Some(st)
                && tx.send(TrackerUpdate { key: TrackKey::SrcAddr(n.clone(), *a), value: TrackValue::Status(st) }).await.is_err()
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

    /// `interface_up_down_delays`: a flap shorter than the delay is never seen; a change
    /// lasting the delay is, once; each direction has its own delay; the first state is at once.
    #[test]
    fn debounce_steps() {
        use TrackStatus::{Down, Up};
        let t = |ms: u64| Time::from_millis(ms);
        type Case = (&'static str, u64, u64, &'static [(u64, TrackStatus)], &'static [Option<TrackStatus>]);
        let cases: &[Case] = &[
            ("no delays", 0, 0, &[(0, Up), (250, Down), (500, Up)], &[Some(Up), Some(Down), Some(Up)]),
            ("short flap hidden", 1000, 0, &[(0, Up), (250, Down), (500, Down), (750, Up), (1000, Up)], &[Some(Up), None, None, None, None]),
            ("down after the delay, once", 500, 0, &[(0, Up), (250, Down), (500, Down), (750, Down), (1000, Down)], &[Some(Up), None, None, Some(Down), None]),
            ("up delay of its own", 0, 500, &[(0, Down), (250, Up), (500, Up), (750, Up)], &[Some(Down), None, None, Some(Up)]),
            ("first state at once despite delays", 1000, 1000, &[(0, Down)], &[Some(Down)]),
        ];
        for (name, down, up, seq, want) in cases {
            let mut d = Debounce::new(Duration::from_millis(*down), Duration::from_millis(*up));
            let got: Vec<Option<TrackStatus>> = seq.iter().map(|(at, st)| d.observe(t(*at), *st)).collect();
            assert_eq!(&got, want, "{name}");
        }
    }

    /// `track_src_ip`: up only while the address is on that interface.
    #[test]
    fn src_addr_presence() {
        use crate::net::netlink::LinkInfo;
        let links = vec![LinkInfo { index: 2, name: "eth0".into(), mac: vec![], running: true }, LinkInfo { index: 3, name: "eth1".into(), mac: vec![], running: true }];
        let a: IpAddr = "198.18.0.1".parse().expect("addr");
        let b: IpAddr = "198.18.0.2".parse().expect("addr");
        let addrs = vec![(2, a, 24), (3, b, 24)];
        assert_eq!(src_addr_status(&links, &addrs, "eth0", a), TrackStatus::Up);
        assert_eq!(src_addr_status(&links, &addrs, "eth0", b), TrackStatus::Down, "on another interface");
        assert_eq!(src_addr_status(&links, &addrs, "eth9", a), TrackStatus::Down, "no such interface");
    }
}
