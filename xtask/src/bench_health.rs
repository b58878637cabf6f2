//! `cargo xtask bench` health part: checks per second and daemon CPU for 1,000 and 10,000 TCP
//! and HTTP real servers served by nginx from a namespace.
//!
//! Layout: namespace `srv` runs nginx listening on the wildcard address with an AnyIP route
//! (`local 198.18.64.0/18 dev lo`), so every address of the range is a real server;
//! namespace `lb` runs `ka run -f generated.conf --no-xdp` with one virtual server holding N
//! real servers (`delay_loop 1`, default warmup: first checks spread over the interval).
//! After a warm-up, checks/s come from `ka status --json` (`health.checks.total`), CPU from
//! `/proc/PID/stat` (utime + stime), and on-time-ness from `health.lateness` (how late each
//! check started against its schedule; p99 and max over the window) over the measurement
//! window.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use ka_tests::{
    daemon::KaDaemon,
    netns::{veth, Netns},
};

/// Options of the health benchmark.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "health_bench")]
pub struct Options {
    /// Real-server counts to measure.
    #[arg(long = "health-servers", value_delimiter = ',', default_value = "1000,10000")]
    pub servers: Vec<u32>,
    /// Checker kinds to measure: tcp, http.
    #[arg(long = "health-kinds", value_delimiter = ',', default_value = "tcp,http")]
    pub kinds: Vec<String>,
    /// Measurement window per case, in seconds (after a warm-up of two delay loops).
    #[arg(long = "health-seconds", default_value_t = 10)]
    pub seconds: u64,
}

/// One measured case.
#[derive(Debug, Clone)]
pub struct Sample {
    /// `tcp` or `http`.
    pub kind: String,
    /// Number of real servers.
    pub servers: u32,
    /// Checks completed per second.
    pub checks_per_s: f64,
    /// Daemon CPU, percent of one core.
    pub cpu_pct: f64,
    /// Failed checks in the window.
    pub failed: u64,
    /// 99th percentile of check-start lateness against the schedule in the window, ms.
    pub late_p99_ms: f64,
    /// Largest check-start lateness in the window, ms (bucket bound, within 12.5 %).
    pub late_max_ms: f64,
    /// Time the daemon's threads spent runnable but waiting for a CPU, percent of the window
    /// (summed over threads): high when other work on the machine starves the daemon.
    pub cpu_wait_pct: f64,
    /// Threaded-NAPI kernel threads found for the two veth ends.
    pub napi_threads: usize,
    /// Their CPU (the receive processing of both ends), % of one core.
    pub napi_cpu_pct: f64,
}

const LB: &str = "198.18.60.1";
const SRV: &str = "198.18.60.2";

/// Runs every case, prints one line each and returns them.
///
/// # Errors
/// A namespace, nginx or the daemon cannot be set up, or the daemon reports no health section.
pub fn run(opts: Options, ka: &Path) -> anyhow::Result<crate::report::Health> {
    let mut rows = Vec::new();
    for kind in &opts.kinds {
        for &n in &opts.servers {
            let step = crate::progress::step(format!("health: {n} {kind} checkers, {} s window", opts.seconds));
            let s = case(kind, n, opts.seconds, ka).with_context(|| format!("health bench {kind} x {n}"))?;
            step.finish();
            println!(
                "health {:<4} {:>6} real servers at delay_loop 1s: {:>8.0} checks/s (expected {n}), daemon CPU {:>5.1}% of a core, {} failed, start lateness p99 {:.1} ms max {:.1} ms, waited for a CPU {:.0}% of the time; both ends' receive processing {:.1}% ({} NAPI threads)",
                s.kind, s.servers, s.checks_per_s, s.cpu_pct, s.failed, s.late_p99_ms, s.late_max_ms, s.cpu_wait_pct, s.napi_cpu_pct, s.napi_threads
            );
            rows.push(crate::report::HealthRow {
                kind: s.kind,
                checkers: s.servers,
                checks_per_s: s.checks_per_s,
                cpu_pct: s.cpu_pct,
                failed: s.failed,
                late_p99_ms: s.late_p99_ms,
                late_max_ms: s.late_max_ms,
                napi_cpu_pct: s.napi_cpu_pct,
            });
        }
    }
    // `config` sets delay_loop 1.
    Ok(crate::report::Health { delay_loop_s: 1.0, window_s: opts.seconds as f64, rows })
}

/// The keepalived.conf of one case.
pub fn config(kind: &str, n: u32) -> String {
    let mut c = String::from("virtual_server 198.18.59.1 80 {\n protocol TCP\n delay_loop 1\n connect_timeout 2\n");
    let base = u32::from(std::net::Ipv4Addr::new(198, 18, 64, 0));
    for i in 0..n {
        let addr = std::net::Ipv4Addr::from(base + i + 1);
        let check = if kind == "http" { "HTTP_GET { url { path / } }" } else { "TCP_CHECK { }" };
        c.push_str(&format!(" real_server {addr} 80 {{\n  {check}\n }}\n"));
    }
    c.push_str("}\n");
    c
}

fn nginx_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 8192; }}\nhttp {{\n access_log off;\n \
         client_body_temp_path {d}/cb; proxy_temp_path {d}/px; fastcgi_temp_path {d}/fc; uwsgi_temp_path {d}/uw; scgi_temp_path {d}/sc;\n \
         server {{ listen 80 backlog=8192; location / {{ return 200 \"ok\\n\"; }} }}\n}}\n"
    )
}

/// The pids of the threaded-NAPI kernel threads of these interfaces (`napi/DEV-ID`).
fn napi_threads(devs: &[&str]) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| devs.iter().any(|d| c.trim().starts_with(&format!("napi/{d}-"))))
        })
        .collect()
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u64) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc/PID/stat")?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 0 here, utime 11, stime 12.
    let u: u64 = f.get(11).context("no utime")?.parse()?;
    let s: u64 = f.get(12).context("no stime")?.parse()?;
    Ok(u + s)
}

/// Nanoseconds all threads of `pid` have spent runnable but waiting on a run queue
/// (`/proc/PID/task/TID/schedstat`, second field).
fn runqueue_wait_ns(pid: u64) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// A lateness histogram from `ka status --json`: `(upper bound µs, count)`, ascending.
type Buckets = Vec<(u64, u64)>;

/// Checks and failures so far, and the lateness histogram.
fn checks_total(d: &KaDaemon) -> anyhow::Result<(u64, u64, Buckets)> {
    let st = d.status_json()?;
    let h = st
        .get("health")
        .context("`ka status --json` has no `health` section: ka::health is not wired into the daemon yet")?;
    let buckets = h["lateness"]["buckets"]
        .as_array()
        .map(|a| a.iter().filter_map(|b| Some((b[0].as_u64()?, b[1].as_u64()?))).collect())
        .unwrap_or_default();
    Ok((h["checks"]["total"].as_u64().unwrap_or(0), h["failures"]["total"].as_u64().unwrap_or(0), buckets))
}

/// The `q` quantile and the maximum (µs, bucket upper bounds) of the checks in `after` but not
/// in `before`.
fn window_lateness(before: &[(u64, u64)], after: &[(u64, u64)], q: f64) -> (u64, u64) {
    let w: Vec<(u64, u64)> = after
        .iter()
        .map(|&(ub, n)| (ub, n.saturating_sub(before.iter().find(|b| b.0 == ub).map_or(0, |b| b.1))))
        .filter(|b| b.1 > 0)
        .collect();
    let total: u64 = w.iter().map(|b| b.1).sum();
    let max = w.last().map_or(0, |b| b.0);
    if total == 0 {
        return (0, 0);
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for &(ub, n) in &w {
        seen += n;
        if seen >= rank {
            return (ub, max);
        }
    }
    (max, max)
}

fn case(kind: &str, n: u32, seconds: u64, ka: &Path) -> anyhow::Result<Sample> {
    let lb = Netns::new("bl")?;
    let srv = Netns::new("bs")?;
    veth(&lb, "lb0", &[&format!("{LB}/24")], &srv, "srv0", &[&format!("{SRV}/24")])?;
    srv.run(&["ip", "route", "add", "local", "198.18.64.0/18", "dev", "lo"])?;
    lb.run(&["ip", "route", "add", "198.18.64.0/18", "via", SRV])?;
    for ns in [&lb, &srv] {
        ns.run(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000", "net.ipv4.tcp_tw_reuse=1"])?;
    }
    // Over a veth, the receiving end of every segment is processed in the sender's context:
    // the daemon would be charged for nginx's TCP receive work too (on real hardware it runs in
    // the NIC's softirq, on any core). Threaded NAPI moves each end's receive processing into a
    // kernel thread of its own (a veth uses NAPI for TCP once GRO is switched on while up and
    // TSO is off), so the daemon's CPU is its own and the packet processing is shown apart.
    for (ns, dev) in [(&lb, "lb0"), (&srv, "srv0")] {
        ns.run(&["ethtool", "-K", dev, "tso", "off", "gro", "off"])?;
        ns.run(&["ethtool", "-K", dev, "gro", "on"])?;
        ns.run(&["sh", "-c", &format!("echo 1 > /sys/class/net/{dev}/threaded")])?;
    }
    let dir = std::env::temp_dir().join(format!("ka-bench-health-{}-{kind}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let nginx_conf_path = dir.join("nginx.conf");
    std::fs::write(&nginx_conf_path, nginx_conf(&dir))?;
    let mut nginx = srv
        .cmd("nginx")
        // No master process: killing this one process leaves no worker behind.
        .args(["-c", &nginx_conf_path.display().to_string(), "-g", "daemon off; master_process off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning nginx (install nginx-light: `cargo xtask setup`)")?;
    let conf = dir.join("ka.conf");
    std::fs::write(&conf, config(kind, n))?;
    let instance = format!("bh{}{kind}{n}", std::process::id() % 10_000);
    let result = (|| -> anyhow::Result<Sample> {
        let daemon = KaDaemon::start(&lb, ka, &instance, &["-f", &conf.display().to_string(), "--no-xdp"])?;
        let pid = daemon.status_json()?["pid"].as_u64().context("no pid in status")?;
        // Warm-up: first checks are spread over delay_loop (1 s); let two loops pass.
        let warm = Instant::now();
        loop {
            let (c, _, _) = checks_total(&daemon)?;
            if c >= u64::from(n) && warm.elapsed() >= Duration::from_secs(2) {
                break;
            }
            if warm.elapsed() > Duration::from_secs(60) {
                bail!("only {c} checks after 60 s:\n{}", daemon.log_text());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let (c0, f0, l0) = checks_total(&daemon)?;
        let napi = napi_threads(&["lb0", "srv0"]);
        let napi_ticks = || napi.iter().filter_map(|&p| cpu_ticks(p).ok()).sum::<u64>();
        let (t0, cpu0, wait0, napi0) = (Instant::now(), cpu_ticks(pid)?, runqueue_wait_ns(pid), napi_ticks());
        std::thread::sleep(Duration::from_secs(seconds));
        let (c1, f1, l1) = checks_total(&daemon)?;
        let (p99, max) = window_lateness(&l0, &l1, 0.99);
        let (dt, cpu1, wait1, napi1) = (t0.elapsed().as_secs_f64(), cpu_ticks(pid)?, runqueue_wait_ns(pid), napi_ticks());
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
        daemon.stop()?;
        Ok(Sample {
            kind: kind.to_owned(),
            servers: n,
            checks_per_s: (c1 - c0) as f64 / dt,
            cpu_pct: (cpu1 - cpu0) as f64 / hz / dt * 100.0,
            failed: f1 - f0,
            late_p99_ms: p99 as f64 / 1000.0,
            late_max_ms: max as f64 / 1000.0,
            cpu_wait_pct: wait1.saturating_sub(wait0) as f64 / 1e9 / dt * 100.0,
            napi_threads: napi.len(),
            napi_cpu_pct: napi1.saturating_sub(napi0) as f64 / hz / dt * 100.0,
        })
    })();
    let _ = nginx.kill();
    let _ = nginx.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
