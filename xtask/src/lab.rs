//! The bundled lab, a failover demo: a client, two directors running `ka` with the same
//! keepalived.conf, and three real servers, each in its own network namespace on one LAN
//! bridge (the topology of the DR end-to-end tests, [`ka_tests::lan`]).
//!
//! The config (one file; `ka run -i dr1` / `-i dr2` picks the `@dr1`/`@dr2` lines) has a VRRP
//! instance owning the VIP (dr1 MASTER priority 150, dr2 BACKUP priority 100) and a DR
//! virtual_server VIP:8080 with Maglev (`mh`) and a TCP_CHECK per real server. The real
//! servers hold the VIP on loopback (`arp_ignore`/`arp_announce`) and reply straight to the
//! client, so a director holds no state a connection needs beyond its connection table, and
//! both directors' Maglev tables, computed from the same config, send a flow to the same real
//! server: established connections survive a failover.
//!
//! ```text
//!   client 198.18.10.2  ── long-lived and short TCP connections to VIP 198.18.10.100:8080
//!      │
//!  ════╪═══════════════ bridge (198.18.10.0/24) ══════════════════════════
//!      │                │                  │              │              │
//!   dr1 .1  ka         dr2 .3  ka         rs1 .11        rs2 .12        rs3 .13
//!   MASTER prio 150    BACKUP prio 100    VIP on lo      VIP on lo      VIP on lo
//!   (holds the VIP)    (takes it over)    line-echo servers on :8080, replying to the client
//!     ╰──── XDP: Maglev → MAC rewrite → XDP_TX ────╯     directly (DR)
//! ```
//!
//! The run, printed as it goes: at `F` (`--failover-after`, default a third of `--duration`,
//! or 10 s) dr1's link goes down and its ka is killed with SIGKILL, as if the node died; dr2
//! takes over. At 1.5 F dr1 comes back (its stale VIP removed, as a reboot would) and preempts
//! as MASTER. At 2 F rs3's listener stops: it fails its check and leaves the table; at 2.5 F it
//! listens again and comes back. Every 2 s both directors' `ka status` is shown compactly.
//! Everything is removed on exit, Ctrl-C or panic (guards).

use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ka_tests::{
    daemon::KaDaemon,
    lan::{ask, ask_why, role, tcp_check, Accepted, EchoServer, Lan, LanSpec, LbConf, RealServerConf},
    netns::Netns,
};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

const CLIENT: &str = "198.18.10.2";
const DIRECTORS: [&str; 2] = ["198.18.10.1", "198.18.10.3"];
const REAL_SERVERS: [&str; 3] = ["198.18.10.11", "198.18.10.12", "198.18.10.13"];
const VIP: &str = "198.18.10.100";
const PORT: u16 = 8080;
/// How many long-lived connections the client keeps open to each real server.
const LONG_LIVED_PER_RS: usize = 2;
/// The real server whose listener stops for a while.
const FAILING_RS: usize = 2;

/// The directors' keepalived.conf: one file for both, `@dr1`/`@dr2` lines set each role.
fn config() -> String {
    LbConf {
        instance: "VI_LAB".to_owned(),
        vrid: 10,
        role: [role("@dr1 ", true, 150), role("@dr2 ", false, 100)].concat(),
        vrrp_vips: vec![format!("{VIP}/24")],
        excluded: vec![],
        vip: VIP.to_owned(),
        port: PORT,
        lb_kind: "DR".to_owned(),
        real_servers: REAL_SERVERS.iter().map(|a| RealServerConf { addr: (*a).to_owned(), port: PORT, check: tcp_check() }).collect(),
    }
    .text()
}

/// When the demo's events happen, from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Schedule {
    kill: Duration,
    restart: Duration,
    rs_down: Duration,
    rs_up: Duration,
}

impl Schedule {
    /// `failover_after`, else a third of `duration`, else 10 s; the others follow at halves.
    fn new(duration: Option<Duration>, failover_after: Option<Duration>) -> Schedule {
        let f = failover_after.or(duration.map(|d| d / 3)).unwrap_or(Duration::from_secs(10));
        Schedule { kill: f, restart: f * 3 / 2, rs_down: f * 2, rs_up: f * 5 / 2 }
    }
}

/// One long-lived connection's record.
#[derive(Debug, Clone, Default)]
struct LongStat {
    server: usize,
    alive: bool,
    answered: u64,
}

/// What the client counts.
#[derive(Debug, Default)]
struct Counters {
    short_ok: AtomicU64,
    short_failed: AtomicU64,
    echoes: AtomicU64,
    echo_errors: AtomicU64,
    /// Slowest echo (ms) since the last [`Counters::take_slowest`].
    slowest_ms: AtomicU64,
    long: Mutex<Vec<LongStat>>,
}

impl Counters {
    fn long(&self) -> Vec<LongStat> {
        self.long.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn alive(&self) -> usize {
        self.long().iter().filter(|l| l.alive).count()
    }

    fn line(&self) -> String {
        let long = self.long();
        format!(
            "client: short connections {} answered, {} failed; long-lived {}/{} alive, {} echoes answered, {} errors, slowest echo {} ms",
            self.short_ok.load(Ordering::Relaxed),
            self.short_failed.load(Ordering::Relaxed),
            long.iter().filter(|l| l.alive).count(),
            long.len(),
            self.echoes.load(Ordering::Relaxed),
            self.echo_errors.load(Ordering::Relaxed),
            self.slowest_ms.swap(0, Ordering::Relaxed),
        )
    }
}

/// A director: its namespace index, name and (while running) its daemon.
struct Director {
    index: usize,
    name: &'static str,
    daemon: Option<KaDaemon>,
}

/// The lab's files on the host (the config directory, the daemons' logs), removed on drop.
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

/// Runs the lab until Ctrl-C/SIGTERM or `duration`.
///
/// # Errors
/// A namespace, a daemon or the traffic cannot be set up, or no echo was answered.
pub fn run(ka: &Path, duration: Option<Duration>, failover_after: Option<Duration>) -> anyhow::Result<()> {
    anyhow::ensure!(crate::setup::is_root(), "the lab needs root (network namespaces, XDP)");
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        let handler = nix::sys::signal::SigHandler::Handler(on_signal);
        nix::sys::signal::signal(nix::sys::signal::Signal::SIGINT, handler)?;
        nix::sys::signal::signal(nix::sys::signal::Signal::SIGTERM, handler)?;
    }
    let sched = Schedule::new(duration, failover_after);
    eprintln!("lab: creating namespaces (client, dr1, dr2, rs1-rs3 on one bridge)");
    let lan = Lan::new(&LanSpec {
        client: vec![format!("{CLIENT}/24")],
        directors: DIRECTORS.iter().map(|a| vec![format!("{a}/24")]).collect(),
        real_servers: REAL_SERVERS.iter().map(|a| vec![format!("{a}/24")]).collect(),
        loopback_vips: vec![format!("{VIP}/32")],
    })?;
    let accepted = Accepted::default();
    let mut servers: Vec<Option<EchoServer>> =
        (0..REAL_SERVERS.len()).map(|i| EchoServer::start(&lan.real_servers[i], i, PORT, &accepted, &[]).map(Some)).collect::<anyhow::Result<_>>()?;
    let mut files = Files { dir: std::env::temp_dir().join(ka_tests::unique_name("lab")), logs: Vec::new() };
    std::fs::create_dir_all(&files.dir)?;
    let conf = files.dir.join("keepalived.conf");
    std::fs::write(&conf, config())?;
    let conf = conf.to_str().context("non-UTF-8 temp path")?.to_owned();
    let mut directors = [Director { index: 0, name: "dr1", daemon: None }, Director { index: 1, name: "dr2", daemon: None }];
    for d in &mut directors {
        d.daemon = Some(start_ka(ka, &lan, d, &conf, &mut files)?);
    }
    eprintln!("lab: waiting for dr1 MASTER, dr2 BACKUP and every real server in both tables");
    wait_until(Duration::from_secs(30), || {
        let s: Vec<_> = directors.iter().map(|d| d.daemon.as_ref().and_then(|k| k.status_json().ok())).collect();
        s.iter().zip(["MASTER", "BACKUP"]).all(|(s, want)| s.as_ref().is_some_and(|s| s["vrrp"][0]["state"] == want && all_in_table(s)))
    })
    .context("the directors did not settle (dr1 MASTER, dr2 BACKUP, every real server up)")?;

    let counters = Arc::new(Counters::default());
    let long = lan.client.enter({
        let c = counters.clone();
        move || long_lived(&c)
    })?;
    let short = lan.client.enter({
        let c = counters.clone();
        move || short_connections(&c)
    })?;
    eprintln!(
        "lab: client → VIP {VIP}:{PORT}; dr1 killed at {:.1?}, back at {:.1?}; rs3 down at {:.1?}, up at {:.1?}; {}",
        sched.kill,
        sched.restart,
        sched.rs_down,
        sched.rs_up,
        duration.map_or("Ctrl-C to stop".to_owned(), |d| format!("stopping after {d:?}"))
    );
    let start = Instant::now();
    let mut last_print = start;
    let mut done = [false; 4];
    let mut after_failover = None;
    let mut after_failback = None;
    let (mut takeover, mut failback) = (None, None);
    let mut prev: Vec<String> = vec![String::new(); 2];
    while !STOP.load(Ordering::SeqCst) && duration.is_none_or(|d| start.elapsed() < d) {
        let t = start.elapsed();
        if !done[0] && t >= sched.kill {
            done[0] = true;
            event(t, &format!("dr1's link goes down and its ka gets SIGKILL (the node dies); {}", counters.line()));
            // Link first: once the crashed ka's pins are cleaned up its XDP program is gone,
            // and a kernel still holding the VIP would reset the connections it receives.
            lan.directors[0].run(&["ip", "link", "set", "eth0", "down"])?;
            if let Some(k) = directors[0].daemon.take() {
                k.kill();
            }
        }
        if !done[1] && t >= sched.restart {
            done[1] = true;
            after_failover = Some(counters.alive());
            event(t, &format!("dr1 comes back (stale VIP removed, link up, ka started); {}", counters.line()));
            let _ = lan.directors[0].run(&["ip", "addr", "del", &format!("{VIP}/24"), "dev", "eth0"]);
            lan.directors[0].run(&["ip", "link", "set", "eth0", "up"])?;
            directors[0].daemon = Some(start_ka(ka, &lan, &directors[0], &conf, &mut files)?);
        }
        if !done[2] && t >= sched.rs_down {
            done[2] = true;
            after_failback = Some(counters.alive());
            event(t, &format!("rs3 stops listening; {}", counters.line()));
            println!("    its TCP_CHECK fails and it leaves both tables; its established flows are rescheduled to the other servers, which reset them (weight 0 would drain it instead)");
            servers[FAILING_RS] = None;
        }
        if !done[3] && t >= sched.rs_up {
            done[3] = true;
            event(t, &format!("rs3 listens again; {}", counters.line()));
            servers[FAILING_RS] = Some(EchoServer::start(&lan.real_servers[FAILING_RS], FAILING_RS, PORT, &accepted, &[])?);
        }
        // State changes, as soon as they show.
        for d in &directors {
            let now = describe_change(d);
            if now != prev[d.index] && !now.is_empty() {
                if !prev[d.index].is_empty() {
                    event(t, &format!("{}: {now}", d.name));
                }
                if now.starts_with("MASTER") {
                    if d.index == 1 && done[0] && takeover.is_none() {
                        takeover = Some(t - sched.kill);
                        println!("    dr2 took over {:.1?} after the kill; {}", t - sched.kill, counters.line());
                    }
                    if d.index == 0 && done[1] && failback.is_none() {
                        failback = Some(t - sched.restart);
                        println!("    dr1 preempted {:.1?} after its restart; {}", t - sched.restart, counters.line());
                    }
                }
                prev[d.index] = now;
            }
        }
        if last_print.elapsed() >= Duration::from_secs(2) {
            last_print = Instant::now();
            println!("--- t={:>3}s  {}", t.as_secs(), counters.line());
            for d in &directors {
                println!("  {}", director_line(d, &lan.directors[d.index]));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    STOP.store(true, Ordering::SeqCst);
    let _ = long.join();
    let _ = short.join();
    for d in &mut directors {
        if let Some(k) = d.daemon.take() {
            k.stop().with_context(|| format!("stopping {}'s ka", d.name))?;
        }
    }
    let long = counters.long();
    let opened = long.len();
    let on_failing = long.iter().filter(|l| l.server == FAILING_RS).count();
    let show = |v: Option<usize>| v.map_or("-".to_owned(), |n| n.to_string());
    let secs = |v: Option<Duration>| v.map_or("-".to_owned(), |d| format!("{:.1?}", d));
    println!("lab: summary after {:.0?}", start.elapsed());
    println!(
        "  short connections: {} answered, {} failed",
        counters.short_ok.load(Ordering::Relaxed),
        counters.short_failed.load(Ordering::Relaxed)
    );
    println!(
        "  long-lived connections: {} opened ({on_failing} to rs3), {} echoes answered, {} errors",
        long.len(),
        counters.echoes.load(Ordering::Relaxed),
        counters.echo_errors.load(Ordering::Relaxed)
    );
    println!(
        "  alive after the failover to dr2: {}/{opened}; after the failback to dr1: {}/{opened} (survived both failovers); at the end: {} ({} of rs3's {on_failing} reset when it left the table)",
        show(after_failover),
        show(after_failback),
        long.iter().filter(|l| l.alive).count(),
        long.iter().filter(|l| l.server == FAILING_RS && !l.alive).count()
    );
    println!("  dr2 MASTER {} after the kill, dr1 MASTER again {} after its restart (seen by polling every 200 ms)", secs(takeover), secs(failback));
    println!("lab: cleaning up");
    anyhow::ensure!(counters.echoes.load(Ordering::Relaxed) > 0, "no echo was answered: the lab is broken");
    anyhow::ensure!(
        after_failback.is_none_or(|n| n == opened),
        "only {} of {opened} long-lived connections survived both failovers",
        show(after_failback)
    );
    Ok(())
}

fn event(t: Duration, what: &str) {
    println!(">>> t={:>3}s  {what}", t.as_secs());
}

/// Polls `cond` every 100 ms for up to `timeout` (or until Ctrl-C).
fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout && !STOP.load(Ordering::SeqCst) {
        if cond() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("timed out after {timeout:?}")
}

fn start_ka(ka: &Path, lan: &Lan, d: &Director, conf: &str, files: &mut Files) -> anyhow::Result<KaDaemon> {
    let instance = ka_tests::unique_name("lab");
    eprintln!("lab: starting ka on {} (instance {instance}): ka run -f {conf} -i {}", d.name, d.name);
    files.logs.push(KaDaemon::log_file(&instance));
    KaDaemon::start(&lan.directors[d.index], ka, &instance, &["-f", conf, "-i", d.name]).with_context(|| format!("starting ka on {}", d.name))
}

fn all_in_table(s: &serde_json::Value) -> bool {
    s["services"][0]["backends"].as_array().is_some_and(|b| b.len() == REAL_SERVERS.len() && b.iter().all(|b| b["in_table"] == true))
}

/// The part of a director's state whose changes are events: VRRP state and each real
/// server's table membership (empty: unknown just now).
fn describe_change(d: &Director) -> String {
    let Some(k) = &d.daemon else {
        return "ka not running".to_owned();
    };
    // A status that fails to come is no change (the printed block shows the error).
    let Ok(s) = k.status_json() else {
        return String::new();
    };
    let state = s["vrrp"][0]["state"].as_str().unwrap_or("?").to_owned();
    let out: Vec<String> = s["services"][0]["backends"]
        .as_array()
        .map(|b| b.iter().filter(|b| b["in_table"] != true).map(|b| format!("{} out of the table", rs_name(&b["address"]))).collect())
        .unwrap_or_default();
    if out.is_empty() {
        format!("{state}, every real server in the table")
    } else {
        format!("{state}, {}", out.join(", "))
    }
}

fn rs_name(addr: &serde_json::Value) -> String {
    REAL_SERVERS.iter().position(|a| addr == a).map_or_else(|| addr.to_string(), |i| format!("rs{}", i + 1))
}

fn director_line(d: &Director, ns: &Netns) -> String {
    let vip = ns.run(&["ip", "-o", "addr", "show", "dev", "eth0"]).is_ok_and(|a| a.contains(&format!(" {VIP}/")));
    let status = d.daemon.as_ref().map(|k| k.status_json());
    match status {
        Some(Ok(s)) => compact(d.name, &s, vip),
        Some(Err(e)) => format!("{}: ka status failed: {e:#}", d.name),
        None => format!("{:<4}{:<7} {:<18} {}", d.name, "-", "", if vip { "holds VIP (stale)" } else { "ka not running" }),
    }
}

/// One line of a director's `ka status --json`: VRRP state and priority, whether its kernel
/// holds the VIP, the service's packets and each real server's health and packets.
fn compact(name: &str, s: &serde_json::Value, holds_vip: bool) -> String {
    let v = &s["vrrp"][0];
    let svc = &s["services"][0];
    let health = |addr: &serde_json::Value| {
        s["health"]["real_servers"].as_array().and_then(|r| r.iter().find(|r| &r["addr"] == addr)).and_then(|r| r["state"].as_str()).unwrap_or("?").to_owned()
    };
    let rs: Vec<String> = svc["backends"]
        .as_array()
        .map(|b| {
            b.iter()
                .map(|b| {
                    let h = health(&b["address"]);
                    let out = if b["in_table"] == true { "" } else { ",out" };
                    format!("{} {h}{out} {}", rs_name(&b["address"]), b["packets"].as_u64().unwrap_or(0))
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{name:<4}{:<7} prio {:<3} {:<9} VIP:{} {} pkts | {}",
        v["state"].as_str().unwrap_or("?"),
        v["effective_priority"].as_u64().unwrap_or(0),
        if holds_vip { "holds VIP" } else { "" },
        svc["port"],
        svc["packets"].as_u64().unwrap_or(0),
        rs.join(" · ")
    )
}

/// Opens a connection to the VIP (from the client's namespace: call on its thread) and
/// asks once; returns it with the server that answered.
fn open(timeout: Duration) -> Option<(TcpStream, usize)> {
    let vip: SocketAddr = format!("{VIP}:{PORT}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    let server = ask(&mut s)?;
    Some((s, server))
}

/// Keeps [`LONG_LIVED_PER_RS`] connections to each real server (at most 60 tries to get
/// them), asking on each every ~100 ms; a connection that errs, or is answered by another
/// server, is closed and counted dead.
fn long_lived(c: &Counters) {
    // The first segment after a failover may go to the dead director's MAC: TCP retransmits
    // it (after up to a few seconds), so the read timeout is generous.
    let mut conns: Vec<Option<TcpStream>> = Vec::new();
    let mut per_rs = [0; REAL_SERVERS.len()];
    for _ in 0..60 {
        if per_rs.iter().all(|&n| n >= LONG_LIVED_PER_RS) || STOP.load(Ordering::SeqCst) {
            break;
        }
        // Connections beyond a server's share are closed at once.
        if let Some((s, server)) = open(Duration::from_secs(15)).filter(|&(_, i)| per_rs[i] < LONG_LIVED_PER_RS) {
            per_rs[server] += 1;
            conns.push(Some(s));
            if let Ok(mut l) = c.long.lock() {
                l.push(LongStat { server, alive: true, answered: 1 });
            }
        }
    }
    while !STOP.load(Ordering::SeqCst) && conns.iter().any(Option::is_some) {
        for (i, slot) in conns.iter_mut().enumerate() {
            let Some(s) = slot else { continue };
            let t = Instant::now();
            let got = ask_why(s);
            let ms = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
            c.slowest_ms.fetch_max(ms, Ordering::Relaxed);
            let Ok(mut long) = c.long.lock() else { return };
            let l = &mut long[i];
            let error = match got {
                Ok(server) if server == l.server => None,
                Ok(server) => Some(format!("answered by rs{} instead of rs{}", server + 1, l.server + 1)),
                Err(e) => Some(e.to_string()),
            };
            if let Some(e) = error {
                println!("    long-lived connection {} (rs{}) lost after {} echoes: {e}", i + 1, l.server + 1, l.answered);
                l.alive = false;
                *slot = None;
                c.echo_errors.fetch_add(1, Ordering::Relaxed);
            } else {
                l.answered += 1;
                c.echoes.fetch_add(1, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A new short connection (one question) every ~100 ms.
fn short_connections(c: &Counters) {
    while !STOP.load(Ordering::SeqCst) {
        if open(Duration::from_secs(2)).is_some() {
            c.short_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            c.short_failed.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One config serves both directors: each `-i` id picks its own state and priority, the
    /// service is DR with Maglev and a TCP_CHECK for each of the three real servers.
    #[test]
    fn config_has_both_roles_and_a_dr_maglev_service() {
        let c = config();
        for line in ["@dr1 state MASTER", "@dr1 priority 150", "@dr2 state BACKUP", "@dr2 priority 100", "lb_algo mh", "lb_kind DR", "198.18.10.100/24"] {
            assert!(c.contains(line), "{line:?} missing from:\n{c}");
        }
        assert_eq!(c.matches("TCP_CHECK").count(), 3, "{c}");
        for rs in REAL_SERVERS {
            assert!(c.contains(&format!("real_server {rs} {PORT} {{")), "{rs} missing from:\n{c}");
        }
    }

    /// The events follow the failover time, in order, and all fall within the run.
    #[test]
    fn schedule_fits_the_duration() {
        let s = Schedule::new(Some(Duration::from_secs(30)), None);
        assert_eq!(
            s,
            Schedule { kill: Duration::from_secs(10), restart: Duration::from_secs(15), rs_down: Duration::from_secs(20), rs_up: Duration::from_secs(25) }
        );
        assert_eq!(Schedule::new(None, Some(Duration::from_secs(4))).kill, Duration::from_secs(4));
        assert_eq!(Schedule::new(None, None).kill, Duration::from_secs(10));
    }

    /// The compact status line names the state, the VIP holder, the counters and the health.
    #[test]
    fn compact_status_line() {
        let s = serde_json::json!({
            "vrrp": [{"state": "MASTER", "effective_priority": 150}],
            "services": [{"port": 8080, "packets": 42, "backends": [
                {"address": "198.18.10.11", "in_table": true, "packets": 20},
                {"address": "198.18.10.13", "in_table": false, "packets": 3}]}],
            "health": {"real_servers": [{"addr": "198.18.10.11", "state": "up"}, {"addr": "198.18.10.13", "state": "down"}]}
        });
        assert_eq!(compact("dr1", &s, true), "dr1 MASTER  prio 150 holds VIP VIP:8080 42 pkts | rs1 up 20 · rs3 down,out 3");
    }
}
