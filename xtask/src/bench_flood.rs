//! `cargo xtask bench --only flood` (issue 14 item 2): a ka MASTER with the XDP fast path on a
//! LAN of namespaces, flooded by a third host with forged VRRP adverts of each kind in turn (TTL
//! 64, a wrong password, a bad checksum, unknown VRIDs, valid-looking lower-priority adverts
//! from rotating sources), then all five interleaved, one sender thread writing as fast as it
//! can (`ka_tests::flood`). Per row: the rate sent and the rate XDP saw, the daemon's CPU (user
//! and system time from /proc/PID/stat over the window), what reached the engine and what the
//! master sent, and whether anything changed state. Then, during the mixed flood, how long a
//! higher-priority peer's first advert takes to make ka BACKUP.
//!
//! Everything runs in namespaces this module creates and removes (guards of `ka-tests`).

use std::{
    net::Ipv4Addr,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{ensure, Context as _};
use ka_tests::{
    daemon::KaDaemon,
    flood::{self, Forged, Limits, Sender, Target},
    netns::{Bridge, Netns},
    unique_name,
};

/// Options of the flood benchmark.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "flood_bench")]
pub struct Options {
    /// Seconds of flood per row.
    #[arg(long, default_value_t = 5)]
    pub flood_secs: u64,
    /// Takeovers by a higher-priority peer measured during the flood.
    #[arg(long, default_value_t = 3)]
    pub flood_takeovers: u32,
}

const WAIT: Duration = Duration::from_secs(30);
const MASTER_PRIO: u8 = 150;

fn target() -> Target {
    Target { vrid: 91, password: b"pw".to_vec(), adver_int: 1, vip: Ipv4Addr::new(198, 18, 13, 100), master_priority: MASTER_PRIO, subnet: [198, 18, 13] }
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Polls `cond` every 5 ms until it holds, or fails after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while !cond() {
        ensure!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(start.elapsed())
}

/// utime + stime of process `pid`, in seconds.
fn cpu_seconds(pid: u64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("/proc/{pid}/stat"))?;
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).context("bad /proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    ensure!(f.len() > 12, "short /proc/{pid}/stat");
    let ticks = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 / hz)
}

/// One row of the table.
struct Row {
    name: String,
    sent_rate: f64,
    xdp_rate: f64,
    counted: u64,
    xdp_seen: u64,
    cpu_pct: f64,
    engine_rx: u64,
    tx: u64,
    withheld: u64,
    secs: f64,
    state_ok: bool,
}

/// Floods with `frames` for `secs` and measures.
fn row(name: &str, ka: &KaDaemon, flooder: &Netns, frames: Vec<Vec<u8>>, counters: &[&'static str], secs: u64) -> anyhow::Result<Row> {
    let st0 = ka.status_json()?;
    let pid = u(&st0["pid"]);
    let cpu0 = cpu_seconds(pid)?;
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = flooder
        .enter(move || {
            let sender = Sender::open("eth0")?;
            flood::flood(&sender, &frames, Limits { packets: u64::MAX, time: Duration::from_secs(secs) }, &stop)
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("flood thread panicked"))??;
    let cpu1 = cpu_seconds(pid)?;
    let wall = t0.elapsed().as_secs_f64();
    // Let the last frames be counted.
    std::thread::sleep(Duration::from_millis(200));
    let st1 = ka.status_json()?;
    let d = |a: &serde_json::Value, b: &serde_json::Value| u(b).saturating_sub(u(a));
    let (i0, i1) = (&st0["vrrp"][0], &st1["vrrp"][0]);
    let xdp_seen = d(&st0["counters"]["vrrp"], &st1["counters"]["vrrp"]);
    Ok(Row {
        name: name.to_owned(),
        sent_rate: sent.rate(),
        xdp_rate: xdp_seen as f64 / sent.elapsed.as_secs_f64().max(1e-9),
        counted: counters.iter().map(|c| d(&st0["counters"][*c], &st1["counters"][*c])).sum(),
        xdp_seen,
        cpu_pct: (cpu1 - cpu0) / wall * 100.0,
        engine_rx: d(&i0["adverts_rx"], &i1["adverts_rx"]),
        tx: d(&i0["adverts_tx"], &i1["adverts_tx"]),
        withheld: d(&i0["answers_withheld"], &i1["answers_withheld"]),
        secs: wall,
        state_ok: i1["state"] == "MASTER" && i1["became_master"] == i0["became_master"],
    })
}

/// Runs the benchmark with the release `ka` binary at `ka` and prints a Markdown table.
///
/// # Errors
/// Not root, a namespace cannot be set up, the daemon does not reach MASTER, or a takeover does
/// not happen in time. Everything created is removed either way.
pub fn run(opts: &Options, ka: &Path) -> anyhow::Result<()> {
    ensure!(nix::unistd::Uid::effective().is_root(), "the flood benchmark needs root (network namespaces)");
    ensure!(ka.exists(), "{} not found; build it with `cargo build --release -p ka-userspace`", ka.display());
    let mut bridge = Bridge::new()?;
    let mut hosts = Vec::new();
    for (k, tag) in ["bfm", "bff", "bfp"].iter().enumerate() {
        let ns = Netns::new(tag)?;
        bridge.attach(&ns, "eth0", &[&format!("198.18.13.{}/24", k + 1)])?;
        hosts.push(ns);
    }
    let conf = std::env::temp_dir().join(format!("{}.conf", unique_name("kbf")));
    std::fs::write(
        &conf,
        format!(
            "vrrp_instance VI_F {{\n state MASTER\n interface eth0\n virtual_router_id 91\n priority {MASTER_PRIO}\n advert_int 1\n authentication {{\n auth_type PASS\n auth_pass pw\n }}\n virtual_ipaddress {{\n 198.18.13.100/24\n }}\n}}\n"
        ),
    )?;
    let conf_s = conf.to_str().context("temp path is not UTF-8")?.to_owned();
    let d = KaDaemon::start(&hosts[0], ka, &unique_name("bf"), &["--log", "info", "-f", &conf_s]);
    let _ = std::fs::remove_file(&conf);
    let d = d?;
    let master = |d: &KaDaemon| d.status_json().ok().is_some_and(|s| s["vrrp"][0]["state"] == "MASTER" && s["vrrp"][0]["xdp_fast_path"] == true);
    wait_until("MASTER with the XDP fast path", WAIT, || master(&d))?;
    let st = d.status_json()?;
    let mode = st["xdp"][0]["mode"].as_str().unwrap_or("?").to_owned();

    let t = target();
    let mut rows = Vec::new();
    for kind in Forged::ALL {
        eprintln!("bench: flood of {} adverts, {} s", kind.name(), opts.flood_secs);
        let frames = (0..1000).map(|n| flood::forged(&t, kind, n)).collect();
        rows.push(row(kind.name(), &d, &hosts[1], frames, &[kind.xdp_counter(), "vrrp_change"], opts.flood_secs)?);
    }
    eprintln!("bench: flood of all five kinds interleaved, {} s", opts.flood_secs);
    let mixed: Vec<Vec<u8>> = (0..200).flat_map(|n| Forged::ALL.map(|k| flood::forged(&t, k, n))).collect();
    let all_counters: Vec<&'static str> = Forged::ALL.iter().map(|k| k.xdp_counter()).chain(["vrrp_change"]).collect();
    rows.push(row("all five interleaved", &d, &hosts[1], mixed.clone(), &all_counters, opts.flood_secs)?);

    // A higher-priority peer's first advert during the mixed flood.
    let mut takeovers = Vec::new();
    for k in 0..opts.flood_takeovers {
        eprintln!("bench: higher-priority peer during the flood ({}/{})", k + 1, opts.flood_takeovers);
        wait_until("MASTER again", WAIT, || master(&d))?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let frames = mixed.clone();
        let flooding = hosts[1].enter(move || {
            let sender = Sender::open("eth0")?;
            flood::flood(&sender, &frames, Limits { packets: u64::MAX, time: Duration::from_secs(30) }, &s)
        })?;
        let vrrp0 = u(&d.status_json()?["counters"]["vrrp"]);
        let flowing = wait_until("the flood to reach XDP", WAIT, || d.status_json().is_ok_and(|s| u(&s["counters"]["vrrp"]) > vrrp0 + 50_000));
        let advert = flood::advert_v2(&t, Ipv4Addr::new(198, 18, 13, 3), 200, 255);
        let sent_at = Instant::now();
        let peer = hosts[2].enter(move || Sender::open("eth0").and_then(|s| s.send_batch(&[&advert])))?;
        let sent = peer.join().map_err(|_| anyhow::anyhow!("peer thread panicked"))?;
        let took = sent.map_err(anyhow::Error::from).and_then(|_| {
            wait_until("BACKUP after the peer's first advert", Duration::from_secs(3), || {
                d.status_json().is_ok_and(|s| s["vrrp"][0]["state"] == "BACKUP")
            })
            .map(|_| sent_at.elapsed())
        });
        stop.store(true, Ordering::Relaxed);
        let _ = flooding.join();
        flowing?;
        takeovers.push(took?);
    }
    d.stop()?;

    println!("## VRRP advert flood (`cargo xtask bench --only flood`)");
    println!();
    println!(
        "A ka MASTER (one VRRPv2 instance, PASS auth, 1 s adverts, XDP in {mode} mode on a veth) on a bridge;\n\
         a third namespace floods it with one `AF_PACKET` sender thread (`sendmmsg`, 64 per call) for\n\
         {} s per row. CPU: utime+stime of the ka process from /proc/PID/stat over the row (XDP itself\n\
         runs in the sender's softirq context and is not in it). \"engine rx\": adverts the engine\n\
         accepted; \"tx\": adverts the master sent (periodic + answers); \"withheld\": answers the\n\
         state machine held back. Counted: the kind's own XDP counter (+ `vrrp_change` for the few\n\
         passed) over what XDP saw. Shared 2-core machine.",
        opts.flood_secs
    );
    println!();
    println!("| flood | sent/s | seen by XDP/s | counted / seen | daemon CPU % | engine rx | tx | withheld | state unchanged |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {} / {} | {:.2} | {} ({:.1}/s) | {} ({:.1}/s) | {} | {} |",
            r.name,
            r.sent_rate,
            r.xdp_rate,
            r.counted,
            r.xdp_seen,
            r.cpu_pct,
            r.engine_rx,
            r.engine_rx as f64 / r.secs,
            r.tx,
            r.tx as f64 / r.secs,
            r.withheld,
            if r.state_ok { "yes" } else { "NO" }
        );
    }
    println!();
    let ms: Vec<String> = takeovers.iter().map(|t| format!("{:.0}", t.as_secs_f64() * 1e3)).collect();
    println!(
        "A priority-200 peer's first advert, sent in the middle of the mixed flood, made ka BACKUP in {} ms\n\
         (from the send to `ka status` showing BACKUP, polled every 5 ms; the advert interval is 1,000 ms).",
        ms.join(", ")
    );
    ensure!(rows.iter().all(|r| r.state_ok), "a flood changed the state");
    Ok(())
}
