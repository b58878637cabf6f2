//! `cargo xtask bench --only restart` (issue 11): time from `kill -9` of a MASTER `ka` to a
//! restarted daemon that adopted the pinned datapath and resumed as MASTER, in a namespace
//! with one VRRP instance and the XDP program on a veth (generic mode).
//!
//! Two numbers per repetition: the wall time from the SIGKILL until the new process answers
//! `ka status` as MASTER (polled every 50 ms by the harness, so up to 50 ms coarse), and the
//! daemon's own start (its first log line to `ka running`, from its log timestamps).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use ka_tests::{daemon::KaDaemon, netns::Netns, unique_name};

/// Runs the benchmark with `reps` restarts.
///
/// # Errors
/// The namespace or the daemon cannot be set up, or a restart does not resume as MASTER.
pub fn run(ka: &std::path::Path, reps: u32) -> anyhow::Result<()> {
    let ns = Netns::new("brs")?;
    ns.run(&["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"])?;
    ns.run(&["ip", "addr", "add", "198.18.50.1/24", "dev", "eth0"])?;
    ns.run(&["ip", "link", "set", "eth0", "up"])?;
    ns.run(&["ip", "link", "set", "eth1", "up"])?;
    let conf = std::env::temp_dir().join(format!("{}.conf", unique_name("kbrs")));
    std::fs::write(
        &conf,
        "vrrp_instance VI_R {\n state MASTER\n interface eth0\n virtual_router_id 51\n priority 150\n advert_int 1\n virtual_ipaddress {\n  198.18.50.100/24\n }\n}\n",
    )?;
    let conf_s = conf.to_str().context("temp path is not UTF-8")?.to_owned();
    let instance = unique_name("brs");
    let args = ["--log", "info", "-f", conf_s.as_str(), "--xdp-mode", "generic"];
    let master = |d: &KaDaemon| d.status_json().ok().is_some_and(|s| s["vrrp"][0]["state"] == "MASTER");
    let mut d = KaDaemon::start(&ns, ka, &instance, &args)?;
    let t = Instant::now();
    while !master(&d) {
        ensure!(t.elapsed() < Duration::from_secs(10), "no MASTER:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut wall = Vec::new();
    let mut inner = Vec::new();
    // The moment peers care about: the resumed MASTER's first advert (before the verifier ran).
    let mut resumed = Vec::new();
    let mut verified = Vec::new();
    for _ in 0..reps {
        let killed = Instant::now();
        d.crash();
        d = KaDaemon::start(&ns, ka, &instance, &args)?;
        while !master(&d) {
            ensure!(killed.elapsed() < Duration::from_secs(10), "restart did not resume MASTER:\n{}", d.log_text());
            std::thread::sleep(Duration::from_millis(5));
        }
        wall.push(killed.elapsed());
        let log = d.log_text();
        ensure!(log.contains("resuming as Master") && log.contains("program replaced on the pinned link"), "no adoption:\n{log}");
        if let Some(ms) = own_start_ms(&log, "ka running") {
            inner.push(ms);
        }
        if let Some(ms) = own_start_ms(&log, "resuming as Master") {
            resumed.push(ms);
        }
        if let Some(ms) = took_ms(&log, "XDP programs verified") {
            verified.push(ms);
        }
    }
    d.stop()?;
    let _ = std::fs::remove_file(&conf);
    wall.sort();
    inner.sort_by(f64::total_cmp);
    resumed.sort_by(f64::total_cmp);
    verified.sort_by(f64::total_cmp);
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    println!("\nrestart (kill -9 → adopted, resumed MASTER), {reps} repetitions");
    println!("| measure | min | median | max |\n|---|---|---|---|");
    if let (Some(a), Some(m), Some(z)) = (wall.first(), wall.get(wall.len() / 2), wall.last()) {
        println!("| kill -9 → status MASTER (wall, 50 ms polling) | {:.0} ms | {:.0} ms | {:.0} ms |", ms(a), ms(m), ms(z));
    }
    for (what, v) in [
        ("daemon start → resumed as MASTER, first advert sent (log)", &resumed),
        ("XDP programs verified (after the resume; the old program forwards meanwhile)", &verified),
        ("daemon start → `ka running` (log)", &inner),
    ] {
        if let (Some(a), Some(m), Some(z)) = (v.first(), v.get(v.len() / 2), v.last()) {
            println!("| {what} | {a:.1} ms | {m:.1} ms | {z:.1} ms |");
        }
    }
    println!("reproduce: cargo xtask bench --only restart");
    Ok(())
}

/// The `took_ms` field of the first log line containing `marker`.
fn took_ms(log: &str, marker: &str) -> Option<f64> {
    let line = strip_ansi(log.lines().find(|l| l.contains(marker))?);
    let v = line.split("took_ms=").nth(1)?;
    v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Milliseconds between the first log line and the first containing `marker`, from the RFC
/// 3339 timestamps.
fn own_start_ms(log: &str, marker: &str) -> Option<f64> {
    let ts = |l: &str| -> Option<f64> {
        let clean: String = strip_ansi(l);
        let t = clean.split_whitespace().next()?;
        let time = t.split('T').nth(1)?.trim_end_matches('Z');
        let mut parts = time.split(':');
        let h: f64 = parts.next()?.parse().ok()?;
        let m: f64 = parts.next()?.parse().ok()?;
        let s: f64 = parts.next()?.parse().ok()?;
        Some((h * 3600.0 + m * 60.0 + s) * 1e3)
    };
    let first = log.lines().find_map(ts)?;
    let running = log.lines().find(|l| l.contains(marker)).and_then(ts)?;
    Some(running - first)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}
