//! The soak (`cargo xtask soak --minutes N`, and a short one in `tests/soak.rs`): the lab's LAN
//! carries traffic for a long time while seeded random faults fire, and invariants are checked
//! all along.
//!
//! The LAN is the lab's ([`crate::lan`]): a client, two directors running `ka` with one
//! keepalived.conf (dr1 MASTER priority 150, dr2 BACKUP priority 100, `lvs_sync_daemon`), three
//! real servers behind a DR virtual server with Maglev and a TCP_CHECK each. The client keeps
//! six long-lived connections asking every ~100 ms and opens a short connection every ~100 ms.
//!
//! Faults, one at a time ([`judge::FaultKind`]): a real server dies and comes back, the MASTER's
//! priority drops (failover) and comes back (preempt), both directors reload a changed file, a
//! director's ka is killed with SIGKILL and started again, a director's link flaps. After each,
//! the soak waits (at most [`RECOVERY`]) until dr1 is MASTER, dr2 BACKUP and every real server
//! in both tables, then stays quiet for a random gap.
//!
//! Invariants, checked continuously; each breach is a violation in the report:
//! - no long-lived connection is lost (an error, a timeout, or another server answering)
//!   unless its own real server was dead during its life ([`judge::excused`]);
//! - never two MASTERs for longer than one advert interval, from the adverts captured on the
//!   directors' bridge legs ([`judge::MasterWatch`]);
//! - each daemon's RSS and descriptor count stay within [`judge::Bounds`] of their value after
//!   the warm-up (`/proc/PID/status`, `/proc/PID/fd`, every 5 s);
//! - every fault is recovered from within [`RECOVERY`], and every reload is accepted.

pub mod judge;

use std::{
    fmt,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use judge::{Bounds, Clock, Death, Fault, FaultKind, MasterWatch, Planner, Process, Sample, Timing};

use crate::{
    capture::Capture,
    daemon::KaDaemon,
    lan::{ask_why, tcp_check, Accepted, EchoServer, Lan, LanSpec},
};

const CLIENT: &str = "198.18.20.2";
const DIRECTORS: [&str; 2] = ["198.18.20.1", "198.18.20.3"];
const NAMES: [&str; 2] = ["dr1", "dr2"];
const REAL_SERVERS: [&str; 3] = ["198.18.20.11", "198.18.20.12", "198.18.20.13"];
const VIP: &str = "198.18.20.100";
const PORT: u16 = 8080;
/// The port of the virtual server a reload adds or removes.
const EXTRA_PORT: u16 = 9090;
const VRID: u8 = 20;
const ADVERT_INT: Duration = Duration::from_secs(1);
/// Long-lived connections the client keeps open.
const LONG_LIVED: usize = 6;
/// How long the LAN may take to recover from a fault (and to settle at the start).
pub const RECOVERY: Duration = Duration::from_secs(60);
/// How often daemon memory and descriptors are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// What a soak run does.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `ka` binary.
    pub ka: PathBuf,
    /// How long traffic runs with faults (set-up and recovery from the last fault come on top).
    pub duration: Duration,
    /// The faults' seed.
    pub seed: u64,
    /// The faults' pace.
    pub timing: Timing,
    /// The growth bounds.
    pub bounds: Bounds,
    /// Set to end the run early (Ctrl-C).
    pub stop: Arc<AtomicBool>,
    /// Print events as they happen.
    pub verbose: bool,
}

impl Options {
    /// The defaults for `duration`: the long pace and bounds for runs of 10 minutes or more,
    /// the quick ones below.
    pub fn new(ka: PathBuf, duration: Duration, seed: u64) -> Options {
        let long = duration >= Duration::from_secs(600);
        Options {
            ka,
            duration,
            seed,
            timing: if long { Timing::LONG } else { Timing::QUICK },
            bounds: Bounds {
                warmup: if long { Duration::from_secs(60) } else { Duration::from_secs(15) },
                // Observed: about 43 MiB and 63 descriptors, within 1 MiB and 1 descriptor
                // over a run; twice that a leak shows well before.
                rss_kib: 8 * 1024,
                fds: 8,
            },
            stop: Arc::new(AtomicBool::new(false)),
            verbose: true,
        }
    }
}

/// A breach of an invariant.
#[derive(Clone, Debug)]
pub struct Violation {
    /// When (since the soak started).
    pub at: Duration,
    /// What.
    pub what: String,
}

/// What a soak run saw.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// How long it ran.
    pub elapsed: Duration,
    /// The load averages (1 min) at the start and at the end.
    pub load: (f64, f64),
    /// Faults fired, per kind.
    pub faults: Vec<(FaultKind, u32)>,
    /// Long-lived connections opened.
    pub long_opened: u64,
    /// Echoes answered on them.
    pub echoes: u64,
    /// Long-lived connections lost with their real server (excused).
    pub lost_excused: u64,
    /// Short connections answered, and failed.
    pub short: (u64, u64),
    /// The dual-master watch at the end.
    pub masters: MasterWatch,
    /// Every daemon process's samples.
    pub processes: Vec<Process>,
    /// The bounds applied.
    pub bounds: Bounds,
    /// Every violation.
    pub violations: Vec<Violation>,
}

impl Report {
    /// How many faults fired.
    pub fn fault_count(&self) -> u32 {
        self.faults.iter().map(|(_, n)| n).sum()
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "soak: {} of traffic and faults, seed {}", Clock(self.elapsed), self.seed)?;
        writeln!(f, "  load average (1 min): {:.1} at the start, {:.1} at the end (2 vCPUs shared)", self.load.0, self.load.1)?;
        let kinds: Vec<String> = self.faults.iter().map(|(k, n)| format!("{} {n}", k.name())).collect();
        writeln!(f, "  faults: {} ({})", self.fault_count(), kinds.join(", "))?;
        writeln!(
            f,
            "  long-lived connections: {} opened, {} echoes answered; lost with their own real server: {}; lost otherwise: {}",
            self.long_opened,
            self.echoes,
            self.lost_excused,
            self.violations.iter().filter(|v| v.what.starts_with("connection")).count()
        )?;
        writeln!(f, "  short connections: {} answered, {} failed (retried by the client; not an invariant)", self.short.0, self.short.1)?;
        writeln!(
            f,
            "  adverts: {} captured, {} handovers, two MASTERs at once {} times, longest {} ms (limit {} ms)",
            self.masters.adverts,
            self.masters.handovers,
            self.masters.dual.len(),
            self.masters.longest().as_millis(),
            ADVERT_INT.as_millis()
        )?;
        for d in &self.masters.dual {
            writeln!(f, "    two MASTERs at t={} for {} ms ({} kept sending)", Clock(d.start), d.overlap.as_millis(), NAMES[d.winner])?;
        }
        writeln!(
            f,
            "  daemons (baseline after {}s of warm-up; bounds +{} MiB RSS, +{} descriptors):",
            self.bounds.warmup.as_secs(),
            mib(self.bounds.rss_kib),
            self.bounds.fds
        )?;
        for p in &self.processes {
            let life = format!("{}-{}", Clock(p.started), p.ended.map_or("end".to_owned(), |e| Clock(e).to_string()));
            match p.figures(self.bounds.warmup) {
                Some(g) => writeln!(
                    f,
                    "    {} pid {:<7} {:<11} RSS {} → {} MiB (max {}), fds {} → {} (max {})",
                    p.director,
                    p.pid,
                    life,
                    mib(g.start.rss_kib),
                    mib(g.end.rss_kib),
                    mib(g.max.rss_kib),
                    g.start.fds,
                    g.end.fds,
                    g.max.fds
                )?,
                None => writeln!(f, "    {} pid {:<7} {:<11} (killed during its warm-up)", p.director, p.pid, life)?,
            }
        }
        writeln!(f, "  violations: {}", self.violations.len())?;
        for v in &self.violations {
            writeln!(f, "    t={} {}", Clock(v.at), v.what)?;
        }
        Ok(())
    }
}

/// State shared with the client and capture threads.
struct Shared {
    start: Instant,
    stop: AtomicBool,
    deaths: Mutex<Vec<Death>>,
    violations: Mutex<Vec<Violation>>,
    adverts: Mutex<Vec<(Duration, usize, u8)>>,
    long_opened: AtomicU64,
    echoes: AtomicU64,
    lost_excused: AtomicU64,
    short_ok: AtomicU64,
    short_failed: AtomicU64,
    verbose: bool,
}

impl Shared {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn violation(&self, what: String) {
        let at = self.now();
        if self.verbose {
            println!("!!! t={} VIOLATION: {what}", Clock(at));
        }
        if let Ok(mut v) = self.violations.lock() {
            v.push(Violation { at, what });
        }
    }

    fn event(&self, what: &str) {
        if self.verbose {
            println!(">>> t={} {what}", Clock(self.now()));
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// The directors' keepalived.conf; `extra` adds a second virtual server (what a reload fault
/// toggles).
fn config(dir: &Path, extra: bool) -> String {
    let rs: String = REAL_SERVERS.iter().map(|a| format!(" real_server {a} {PORT} {{\n{} }}\n", tcp_check())).collect();
    let extra_vs = if extra {
        let rs: String = REAL_SERVERS.iter().map(|a| format!(" real_server {a} {EXTRA_PORT} {{\n }}\n")).collect();
        format!("virtual_server {VIP} {EXTRA_PORT} {{\n lb_algo rr\n lb_kind DR\n protocol TCP\n{rs}}}\n")
    } else {
        String::new()
    };
    let d = dir.display();
    format!(
        "global_defs {{\n lvs_sync_daemon eth0 VI_SOAK\n}}\n\
vrrp_track_file soak_prio {{\n @dr1 file {d}/dr1.prio\n @dr2 file {d}/dr2.prio\n weight -60\n}}\n\
vrrp_instance VI_SOAK {{\n @dr1 state MASTER\n @dr1 priority 150\n @dr2 state BACKUP\n @dr2 priority 100\n interface eth0\n virtual_router_id {VRID}\n advert_int 1\n track_file {{\n  soak_prio\n }}\n virtual_ipaddress {{\n  {VIP}/24\n }}\n}}\n\
virtual_server {VIP} {PORT} {{\n delay_loop 1\n lb_algo mh\n mh-port\n lb_kind DR\n protocol TCP\n{rs}}}\n{extra_vs}"
    )
}

/// A director: its daemon while running, and its processes' samples.
struct Director {
    index: usize,
    instance: String,
    daemon: Option<KaDaemon>,
    process: Option<Process>,
}

/// The soak's files (config, track files, daemons' logs), removed on drop.
struct Files {
    dir: PathBuf,
    logs: Vec<PathBuf>,
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        for l in &self.logs {
            let _ = std::fs::remove_file(l);
        }
    }
}

/// Everything the main loop drives.
struct Soak<'a> {
    opts: &'a Options,
    lan: Lan,
    shared: Arc<Shared>,
    servers: Vec<Option<EchoServer>>,
    accepted: Accepted,
    directors: [Director; 2],
    files: Files,
    conf: String,
    extra: bool,
    done: Vec<Process>,
}

/// Runs a soak.
///
/// # Errors
/// The LAN or the daemons cannot be set up, or the start does not settle. Breaches of the
/// invariants are not errors: they are in the report.
pub fn run(opts: &Options) -> anyhow::Result<Report> {
    let load_start = load_average();
    let lan = Lan::new(&LanSpec {
        client: vec![format!("{CLIENT}/24")],
        directors: DIRECTORS.iter().map(|a| vec![format!("{a}/24")]).collect(),
        real_servers: REAL_SERVERS.iter().map(|a| vec![format!("{a}/24")]).collect(),
        loopback_vips: vec![format!("{VIP}/32")],
    })?;
    let accepted = Accepted::default();
    let servers = (0..REAL_SERVERS.len()).map(|i| EchoServer::start(&lan.real_servers[i], i, PORT, &accepted, &[]).map(Some)).collect::<anyhow::Result<_>>()?;
    let files = Files { dir: std::env::temp_dir().join(crate::unique_name("soak")), logs: Vec::new() };
    std::fs::create_dir_all(&files.dir)?;
    for n in NAMES {
        std::fs::write(files.dir.join(format!("{n}.prio")), "0\n")?;
    }
    let conf_path = files.dir.join("keepalived.conf");
    std::fs::write(&conf_path, config(&files.dir, false))?;
    let conf = conf_path.to_str().context("non-UTF-8 temp path")?.to_owned();
    let shared = Arc::new(Shared {
        start: Instant::now(),
        stop: AtomicBool::new(false),
        deaths: Mutex::new(Vec::new()),
        violations: Mutex::new(Vec::new()),
        adverts: Mutex::new(Vec::new()),
        long_opened: AtomicU64::new(0),
        echoes: AtomicU64::new(0),
        lost_excused: AtomicU64::new(0),
        short_ok: AtomicU64::new(0),
        short_failed: AtomicU64::new(0),
        verbose: opts.verbose,
    });
    let directors = [0, 1].map(|index| Director { index, instance: crate::unique_name("soak"), daemon: None, process: None });
    let mut soak = Soak { opts, lan, shared, servers, accepted, directors, files, conf, extra: false, done: Vec::new() };
    let res = soak.run(load_start);
    soak.shared.stop.store(true, Ordering::SeqCst);
    res
}

impl Soak<'_> {
    fn run(&mut self, load_start: f64) -> anyhow::Result<Report> {
        let shared = self.shared.clone();
        for d in 0..2 {
            self.start_ka(d)?;
        }
        shared.event("waiting for dr1 MASTER, dr2 BACKUP and every real server in both tables");
        let settle_start = Instant::now();
        while let Err(why) = self.settled() {
            anyhow::ensure!(settle_start.elapsed() < RECOVERY, "the LAN did not settle within {RECOVERY:?}: {why}");
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut threads = Vec::new();
        for d in 0..2 {
            let s = shared.clone();
            let leg = format!("leg{}", d + 1);
            threads.push(self.lan.bridge.hub().enter(move || capture_adverts(&s, &leg, d))?);
        }
        let s = shared.clone();
        threads.push(self.lan.client.enter(move || long_lived(&s))?);
        let s = shared.clone();
        threads.push(self.lan.client.enter(move || short_connections(&s))?);
        shared.event(&format!("traffic to {VIP}:{PORT}; faults for {}, seed {}", Clock(self.opts.duration), self.opts.seed));
        let traffic_start = shared.now();
        let mut planner = Planner::new(self.opts.seed, self.opts.timing, 2, REAL_SERVERS.len());
        let mut counts: Vec<(FaultKind, u32)> = FaultKind::ALL.iter().map(|k| (*k, 0)).collect();
        let mut watch = MasterWatch::new(ADVERT_INT);
        let mut seen_dual = 0;
        let mut last_sample = Instant::now() - SAMPLE_EVERY;
        let mut last_progress = Instant::now();
        let mut next_fault_at = Instant::now() + Duration::from_secs(5);
        let mut numbered = 0;
        loop {
            let ending = self.opts.stop.load(Ordering::SeqCst) || shared.now() >= traffic_start + self.opts.duration;
            if ending {
                break;
            }
            if Instant::now() >= next_fault_at {
                let fault = planner.next_fault();
                numbered += 1;
                if let Some(c) = counts.iter_mut().find(|(k, _)| *k == fault.kind) {
                    c.1 += 1;
                }
                self.fire(numbered, fault, &mut watch, &mut seen_dual, &mut last_sample)?;
                next_fault_at = Instant::now() + fault.gap;
            }
            self.tick(&mut watch, &mut seen_dual, &mut last_sample);
            if last_progress.elapsed() >= Duration::from_secs(30) {
                last_progress = Instant::now();
                shared.event(&self.progress(&watch));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        shared.event(&format!("stopping; {}", self.progress(&watch)));
        shared.stop.store(true, Ordering::SeqCst);
        for t in threads {
            let _ = t.join();
        }
        self.tick(&mut watch, &mut seen_dual, &mut last_sample);
        watch.close();
        self.check_dual(&watch, &mut seen_dual);
        for (d, name) in NAMES.iter().enumerate() {
            self.retire(d);
            if let Some(k) = self.directors[d].daemon.take() {
                if let Err(e) = k.stop() {
                    shared.violation(format!("{name}'s ka did not stop cleanly: {e:#}"));
                }
            }
        }
        let bounds = self.opts.bounds;
        for p in &self.done {
            for g in p.growth(&bounds) {
                shared.violation(g);
            }
        }
        self.done.sort_by_key(|p| p.started);
        let violations = shared.violations.lock().map(|v| v.clone()).unwrap_or_default();
        Ok(Report {
            seed: self.opts.seed,
            elapsed: shared.now(),
            load: (load_start, load_average()),
            faults: counts,
            long_opened: shared.long_opened.load(Ordering::Relaxed),
            echoes: shared.echoes.load(Ordering::Relaxed),
            lost_excused: shared.lost_excused.load(Ordering::Relaxed),
            short: (shared.short_ok.load(Ordering::Relaxed), shared.short_failed.load(Ordering::Relaxed)),
            masters: watch,
            processes: self.done.clone(),
            bounds,
            violations,
        })
    }

    fn progress(&self, watch: &MasterWatch) -> String {
        let s = &self.shared;
        let mem: Vec<String> = self
            .directors
            .iter()
            .filter_map(|d| d.process.as_ref().and_then(|p| p.samples.last().map(|x| format!("{} {} MiB {} fds", NAMES[d.index], mib(x.rss_kib), x.fds))))
            .collect();
        format!(
            "long-lived: {} opened, {} echoes, {} lost with their server; short: {} ok, {} failed; handovers {}, dual masters {} (longest {} ms); {}; violations {}",
            s.long_opened.load(Ordering::Relaxed),
            s.echoes.load(Ordering::Relaxed),
            s.lost_excused.load(Ordering::Relaxed),
            s.short_ok.load(Ordering::Relaxed),
            s.short_failed.load(Ordering::Relaxed),
            watch.handovers,
            watch.dual.len(),
            watch.longest().as_millis(),
            mem.join(", "),
            s.violations.lock().map(|v| v.len()).unwrap_or(0)
        )
    }

    /// The continuous checks: adverts into the dual-master watch, samples every 5 s.
    fn tick(&mut self, watch: &mut MasterWatch, seen_dual: &mut usize, last_sample: &mut Instant) {
        // Adverts older than 100 ms, in time order (two capture threads push them).
        let horizon = self.shared.now().saturating_sub(Duration::from_millis(100));
        let mut ready: Vec<(Duration, usize, u8)> = match self.shared.adverts.lock() {
            Ok(mut a) => {
                let (old, young): (Vec<_>, Vec<_>) = a.drain(..).partition(|(t, _, _)| *t <= horizon);
                *a = young;
                old
            }
            Err(_) => Vec::new(),
        };
        ready.sort_by_key(|a| a.0);
        for (t, who, prio) in ready {
            watch.advert(t, who, prio);
        }
        watch.close_if_quiet(horizon);
        self.check_dual(watch, seen_dual);
        if last_sample.elapsed() >= SAMPLE_EVERY {
            *last_sample = Instant::now();
            let now = self.shared.now();
            for d in &mut self.directors {
                if let Some(p) = &mut d.process {
                    if let Some((rss_kib, fds)) = proc_figures(p.pid) {
                        p.samples.push(Sample { at: now, rss_kib, fds });
                    }
                }
            }
        }
    }

    fn check_dual(&self, watch: &MasterWatch, seen: &mut usize) {
        for d in &watch.dual[*seen..] {
            if d.overlap > ADVERT_INT {
                self.shared.violation(format!(
                    "two MASTERs for {} ms from t={} ({} kept sending)",
                    d.overlap.as_millis(),
                    Clock(d.start),
                    NAMES[d.winner]
                ));
            }
        }
        *seen = watch.dual.len();
    }

    /// Fires one fault, undoes it after its hold, and waits for the LAN to recover.
    fn fire(&mut self, n: u32, fault: Fault, watch: &mut MasterWatch, seen_dual: &mut usize, last_sample: &mut Instant) -> anyhow::Result<()> {
        let s = self.shared.clone();
        let hold = format!("{:.1}s", fault.hold.as_secs_f64());
        match fault.kind {
            FaultKind::RealServerDies => {
                let rs = fault.target;
                s.event(&format!("fault {n}: rs{} dies (link down, listener closed) for {hold}", rs + 1));
                if let Ok(mut d) = s.deaths.lock() {
                    d.push(Death { rs, down: s.now(), up: None });
                }
                self.lan.real_servers[rs].run(&["ip", "link", "set", "eth0", "down"])?;
                self.servers[rs] = None;
                self.hold(fault.hold, watch, seen_dual, last_sample);
                self.lan.real_servers[rs].run(&["ip", "link", "set", "eth0", "up"])?;
                self.servers[rs] = Some(EchoServer::start(&self.lan.real_servers[rs], rs, PORT, &self.accepted, &[])?);
                let up = s.now();
                if let Ok(mut d) = s.deaths.lock() {
                    if let Some(death) = d.iter_mut().rev().find(|d| d.rs == rs && d.up.is_none()) {
                        death.up = Some(up);
                    }
                }
                s.event(&format!("rs{} is back", rs + 1));
            }
            FaultKind::Failover => {
                let master = self.master().unwrap_or(0);
                s.event(&format!("fault {n}: {}'s priority drops by 60 (track_file) for {hold}: the other takes over", NAMES[master]));
                let file = self.files.dir.join(format!("{}.prio", NAMES[master]));
                std::fs::write(&file, "1\n")?;
                self.hold(fault.hold, watch, seen_dual, last_sample);
                std::fs::write(&file, "0\n")?;
                s.event(&format!("{}'s priority is restored", NAMES[master]));
            }
            FaultKind::Reload => {
                self.extra = !self.extra;
                s.event(&format!(
                    "fault {n}: both directors reload ({} the virtual server on :{EXTRA_PORT})",
                    if self.extra { "adding" } else { "removing" }
                ));
                std::fs::write(&self.conf, config(&self.files.dir, self.extra))?;
                for (d, name) in self.directors.iter().zip(NAMES) {
                    let out = std::process::Command::new(&self.opts.ka)
                        .args(["--instance", &d.instance, "reload", "--timeout", "30s"])
                        .output()
                        .context("running ka reload")?;
                    if !out.status.success() {
                        s.violation(format!("{name}'s reload failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
                    }
                }
            }
            FaultKind::KillRestart => {
                let d = fault.target;
                s.event(&format!("fault {n}: {}'s ka gets SIGKILL, restarted after {hold}", NAMES[d]));
                self.retire(d);
                if let Some(k) = self.directors[d].daemon.take() {
                    k.crash();
                }
                self.hold(fault.hold, watch, seen_dual, last_sample);
                self.start_ka(d)?;
                s.event(&format!("{}'s ka is running again", NAMES[d]));
            }
            FaultKind::LinkFlap => {
                let d = fault.target;
                s.event(&format!("fault {n}: {}'s link goes down for {hold}", NAMES[d]));
                self.lan.directors[d].run(&["ip", "link", "set", "eth0", "down"])?;
                self.hold(fault.hold, watch, seen_dual, last_sample);
                self.lan.directors[d].run(&["ip", "link", "set", "eth0", "up"])?;
                s.event(&format!("{}'s link is up", NAMES[d]));
            }
        }
        let since = Instant::now();
        loop {
            match self.settled() {
                Ok(()) => {
                    s.event(&format!("recovered in {:.1}s", since.elapsed().as_secs_f64()));
                    return Ok(());
                }
                Err(why) if since.elapsed() >= RECOVERY => {
                    s.violation(format!("no recovery within {}s after fault {n} ({}): {why}", RECOVERY.as_secs(), fault.kind.name()));
                    return Ok(());
                }
                Err(_) => {}
            }
            self.tick(watch, seen_dual, last_sample);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits `d` while the continuous checks go on.
    fn hold(&mut self, d: Duration, watch: &mut MasterWatch, seen_dual: &mut usize, last_sample: &mut Instant) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.tick(watch, seen_dual, last_sample);
            std::thread::sleep(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())));
        }
    }

    fn start_ka(&mut self, d: usize) -> anyhow::Result<()> {
        let dir = &mut self.directors[d];
        self.files.logs.push(KaDaemon::log_file(&dir.instance));
        let k = KaDaemon::start(&self.lan.directors[d], &self.opts.ka, &dir.instance, &["-f", &self.conf, "-i", NAMES[d]])
            .with_context(|| format!("starting ka on {}", NAMES[d]))?;
        let pid = k.status_json()?["pid"].as_u64().and_then(|p| u32::try_from(p).ok()).context("ka status has no pid")?;
        dir.daemon = Some(k);
        dir.process = Some(Process { director: NAMES[d], pid, started: self.shared.now(), ended: None, samples: Vec::new() });
        Ok(())
    }

    /// Files director `d`'s current process among the finished ones.
    fn retire(&mut self, d: usize) {
        if let Some(mut p) = self.directors[d].process.take() {
            p.ended = Some(self.shared.now());
            self.done.push(p);
        }
    }

    /// The director whose ka says MASTER.
    fn master(&self) -> Option<usize> {
        self.directors.iter().position(|d| d.daemon.as_ref().and_then(|k| k.status_json().ok()).is_some_and(|s| s["vrrp"][0]["state"] == "MASTER"))
    }

    /// `Ok` once dr1 is MASTER, dr2 BACKUP and every real server in both directors' tables.
    fn settled(&self) -> Result<(), String> {
        for (d, want) in self.directors.iter().zip(["MASTER", "BACKUP"]) {
            let name = NAMES[d.index];
            let k = d.daemon.as_ref().ok_or(format!("{name}'s ka is not running"))?;
            let s = k.status_json().map_err(|e| format!("{name}: {e:#}"))?;
            let state = s["vrrp"][0]["state"].as_str().unwrap_or("?");
            if state != want {
                return Err(format!("{name} is {state}, not {want}"));
            }
            let svc = s["services"].as_array().and_then(|v| v.iter().find(|v| v["port"] == PORT)).ok_or(format!("{name} has no service on :{PORT}"))?;
            let in_table = svc["backends"].as_array().map_or(0, |b| b.iter().filter(|b| b["in_table"] == true).count());
            if in_table != REAL_SERVERS.len() {
                return Err(format!("{name} has {in_table} of {} real servers in its table", REAL_SERVERS.len()));
            }
        }
        Ok(())
    }
}

/// `VmRSS` (KiB) and the number of open descriptors of `pid`.
fn proc_figures(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok())).unwrap_or(f64::NAN)
}

/// Captures the adverts director `who` sends, on its bridge leg (run in the hub's namespace).
fn capture_adverts(s: &Shared, leg: &str, who: usize) {
    // ETH_P_ALL: a socket bound to one protocol does not see what a bridge port receives
    // (the bridge takes the frame first); the taps for every protocol do.
    let Ok(cap) = Capture::open(leg, 0x0003) else {
        s.violation(format!("cannot capture adverts on {leg}"));
        return;
    };
    let Ok(src) = DIRECTORS[who].parse::<std::net::Ipv4Addr>() else { return };
    while !s.stopped() {
        let Some(frame) = cap.next(Duration::from_millis(200)) else { continue };
        if let Some(prio) = advert_priority(&frame, src) {
            let t = s.now();
            if let Ok(mut a) = s.adverts.lock() {
                a.push((t, who, prio));
            }
        }
    }
}

/// The priority of a VRRP advert for [`VRID`] from `src` in an Ethernet frame.
fn advert_priority(frame: &[u8], src: std::net::Ipv4Addr) -> Option<u8> {
    let ip = frame.get(14..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 || *ip.get(9)? != 112 || ip.get(12..16)? != src.octets() {
        return None;
    }
    let vrrp = ip.get(usize::from(ip[0] & 0x0f) * 4..)?;
    (*vrrp.get(1)? == VRID).then_some(*vrrp.get(2)?)
}

/// Opens a connection to the VIP (on a thread in the client's namespace) and asks once.
fn open(timeout: Duration) -> Option<(TcpStream, usize)> {
    let vip: SocketAddr = format!("{VIP}:{PORT}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    let server = ask_why(&mut s).ok()?;
    Some((s, server))
}

struct LongLived {
    stream: TcpStream,
    rs: usize,
    opened: Duration,
    answered: u64,
}

/// Keeps [`LONG_LIVED`] connections open, asking on each every ~100 ms. A lost one (error,
/// timeout, another server answering) is excused if its real server was dead during its life,
/// else a violation; either way it is replaced.
fn long_lived(s: &Shared) {
    // A segment sent during a failover may wait for TCP's retransmission (seconds): the read
    // timeout is generous.
    let timeout = Duration::from_secs(20);
    let mut conns: Vec<LongLived> = Vec::new();
    let mut last_try = Instant::now() - Duration::from_secs(1);
    while !s.stopped() {
        if conns.len() < LONG_LIVED && last_try.elapsed() >= Duration::from_millis(300) {
            last_try = Instant::now();
            let opened = s.now();
            if let Some((stream, rs)) = open(timeout) {
                s.long_opened.fetch_add(1, Ordering::Relaxed);
                conns.push(LongLived { stream, rs, opened, answered: 1 });
            }
        }
        let mut i = 0;
        while i < conns.len() {
            if s.stopped() {
                return;
            }
            let c = &mut conns[i];
            let lost = match ask_why(&mut c.stream) {
                Ok(rs) if rs == c.rs => None,
                Ok(rs) => Some(format!("answered by rs{} instead of rs{}", rs + 1, c.rs + 1)),
                Err(e) => Some(e.to_string()),
            };
            let Some(why) = lost else {
                c.answered += 1;
                s.echoes.fetch_add(1, Ordering::Relaxed);
                i += 1;
                continue;
            };
            let now = s.now();
            let deaths = s.deaths.lock().map(|d| d.clone()).unwrap_or_default();
            if judge::excused(c.rs, c.opened, now, &deaths) {
                s.lost_excused.fetch_add(1, Ordering::Relaxed);
            } else {
                s.violation(format!(
                    "connection to rs{} (open since t={}, {} echoes) lost: {why}",
                    c.rs + 1,
                    Clock(c.opened),
                    c.answered
                ));
            }
            conns.swap_remove(i);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A new short connection (one question) every ~100 ms.
fn short_connections(s: &Shared) {
    while !s.stopped() {
        if open(Duration::from_secs(2)).is_some() {
            s.short_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            s.short_failed.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config has both roles, sync, the track file that drives failovers, the DR Maglev
    /// service, and the extra virtual server only when asked.
    #[test]
    fn config_text() {
        let c = config(Path::new("/tmp/s"), false);
        for line in [
            "lvs_sync_daemon eth0 VI_SOAK",
            "@dr1 file /tmp/s/dr1.prio",
            "@dr2 file /tmp/s/dr2.prio",
            "weight -60",
            "@dr1 priority 150",
            "@dr2 priority 100",
            "lb_algo mh",
            "lb_kind DR",
        ] {
            assert!(c.contains(line), "{line:?} missing from:\n{c}");
        }
        assert_eq!(c.matches("TCP_CHECK").count(), 3, "{c}");
        assert!(!c.contains("9090"), "{c}");
        assert!(config(Path::new("/tmp/s"), true).contains(&format!("virtual_server {VIP} {EXTRA_PORT} {{")));
    }

    /// Adverts are recognised by sender and VRID, whatever the IPv4 header length.
    #[test]
    fn advert_priority_from_frames() {
        let src: std::net::Ipv4Addr = DIRECTORS[0].parse().expect("addr");
        let frame = |ihl: u8, proto: u8, vrid: u8, from: [u8; 4]| {
            let mut f = vec![0u8; 12];
            f.extend([0x08, 0x00]);
            let mut ip = vec![0u8; usize::from(ihl) * 4];
            ip[0] = 0x40 | ihl;
            ip[9] = proto;
            ip[12..16].copy_from_slice(&from);
            f.extend(ip);
            f.extend([0x21, vrid, 150, 1]);
            f
        };
        assert_eq!(advert_priority(&frame(5, 112, VRID, src.octets()), src), Some(150));
        assert_eq!(advert_priority(&frame(6, 112, VRID, src.octets()), src), Some(150));
        assert_eq!(advert_priority(&frame(5, 6, VRID, src.octets()), src), None);
        assert_eq!(advert_priority(&frame(5, 112, VRID + 1, src.octets()), src), None);
        assert_eq!(advert_priority(&frame(5, 112, VRID, [198, 18, 20, 3]), src), None);
        assert_eq!(advert_priority(&[0u8; 20], src), None);
    }
}
