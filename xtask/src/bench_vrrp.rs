//! `cargo xtask bench` (VRRP part, issue 4): takeover time after the master is SIGKILLed, and
//! daemon CPU on master and backup, for a ka pair and a keepalived pair in the same run.
//!
//! Everything runs in network namespaces this module creates (one bridge per L2 segment, two
//! nodes), and is removed by the guards of `ka-tests` on exit and on failure.

use std::{
    fmt::Write as _,
    path::Path,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _};
use ka_tests::{
    capture::Capture,
    daemon::KaDaemon,
    keepalived::Keepalived,
    netns::{Bridge, Netns},
    unique_name,
};

/// Options of the VRRP benchmarks.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "vrrp_bench")]
pub struct Options {
    /// Fewer repetitions (2 takeovers per row) and a shorter CPU window (4 s).
    #[arg(long)]
    pub quick: bool,
    /// Skip the CPU benchmark.
    #[arg(long)]
    pub skip_cpu: bool,
    /// Skip the takeover benchmark.
    #[arg(long)]
    pub skip_takeover: bool,
    /// Takeovers per row (default 5, 2 with --quick).
    #[arg(long)]
    pub reps: Option<u32>,
    /// CPU sampling window in seconds (default 10, 4 with --quick).
    #[arg(long)]
    pub cpu_secs: Option<u64>,
}

/// How long any single wait (steady state, a state change, a capture) may take.
const WAIT: Duration = Duration::from_secs(60);

/// The two implementations compared side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impl {
    Ka,
    Keepalived,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Ka => "ka",
            Impl::Keepalived => "keepalived 2.2",
        }
    }
}

/// A running VRRP daemon of either implementation.
enum Daemon {
    Ka(KaDaemon),
    Keepalived(Keepalived),
}

impl Daemon {
    /// Starts `imp` in `ns` with the keepalived.conf text `conf`.
    fn start(imp: Impl, ns: &Netns, ka: &Path, conf: &str) -> anyhow::Result<Daemon> {
        match imp {
            Impl::Ka => {
                let path = std::env::temp_dir().join(format!("{}.conf", unique_name("kabv")));
                std::fs::write(&path, conf)
                    .with_context(|| format!("writing {}", path.display()))?;
                let file = path.to_str().context("temp path is not UTF-8")?.to_owned();
                // `--log info` (the default in production) overrides the harness's debug level.
                let d = KaDaemon::start(
                    ns,
                    ka,
                    &unique_name("bv"),
                    &["--log", "info", "-f", &file],
                );
                let _ = std::fs::remove_file(&path);
                Ok(Daemon::Ka(d?))
            }
            Impl::Keepalived => Ok(Daemon::Keepalived(Keepalived::start(ns, "b", conf)?)),
        }
    }

    /// How many instances are BACKUP: ka's status, or keepalived's "Entering BACKUP STATE"
    /// log lines less its "Entering MASTER STATE" ones.
    fn backups(&self) -> usize {
        match self {
            Daemon::Ka(d) => d.status_json().ok().and_then(|s| {
                s["vrrp"]
                    .as_array()
                    .map(|v| v.iter().filter(|i| i["state"] == "BACKUP").count())
            }),
            Daemon::Keepalived(d) => {
                let log = d.log_text();
                Some(
                    log.matches("Entering BACKUP STATE")
                        .count()
                        .saturating_sub(log.matches("Entering MASTER STATE").count()),
                )
            }
        }
        .unwrap_or(0)
    }

    /// A count that grows with every state change (to detect flapping during a measurement).
    fn state_changes(&self) -> usize {
        match self {
            Daemon::Ka(d) => d.log_text().matches("state change").count(),
            Daemon::Keepalived(d) => d.log_text().matches("Entering ").count(),
        }
    }

    /// SIGKILL, like a crash (no resignation). keepalived's VRRP child asks for SIGTERM when
    /// its parent dies (PR_SET_PDEATHSIG) and then resigns with a priority-0 advert, so killing
    /// the parent first (as `Keepalived::kill` does) is not a crash: every keepalived process in
    /// `ns` is stopped first, then killed.
    fn kill(self, ns: &Netns) {
        match self {
            Daemon::Ka(d) => d.kill(),
            Daemon::Keepalived(d) => {
                let pids = ns_pids(ns).unwrap_or_default();
                for sig in [
                    nix::sys::signal::Signal::SIGSTOP,
                    nix::sys::signal::Signal::SIGKILL,
                ] {
                    for &pid in &pids {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
                    }
                }
                d.kill();
            }
        }
    }

    fn log_text(&self) -> String {
        match self {
            Daemon::Ka(d) => d.log_text(),
            Daemon::Keepalived(d) => d.log_text(),
        }
    }
}

/// Two nodes (master, backup) joined by `ifaces` separate bridges: node m's `ethK` has
/// 198.18.(7+K).m/24. Separate segments let one VRID be reused once per interface, as
/// keepalived forbids duplicate VRIDs on one interface. Dropping it removes every namespace.
struct Lan {
    // Dropped first: the hubs and their legs.
    bridges: Vec<Bridge>,
    master: Netns,
    backup: Netns,
}

impl Lan {
    fn new(ifaces: usize) -> anyhow::Result<Lan> {
        let mut bridges = (0..ifaces)
            .map(|_| Bridge::new())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let master = Netns::new("m")?;
        let backup = Netns::new("b")?;
        for (k, br) in bridges.iter_mut().enumerate() {
            for (host, ns) in [(1, &master), (2, &backup)] {
                br.attach(
                    ns,
                    &format!("eth{k}"),
                    &[&format!("198.18.{}.{host}/24", 7 + k)],
                )?;
            }
        }
        Ok(Lan {
            bridges,
            master,
            backup,
        })
    }

    fn hub(&self, k: usize) -> &Netns {
        self.bridges[k].hub()
    }
}

/// The IPv4 addresses `ns` holds (from the kernel, `ip -o -4 addr`).
fn addrs(ns: &Netns) -> anyhow::Result<Vec<String>> {
    let out = ns.run(&["ip", "-o", "-4", "addr", "show"])?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.find(|t| *t == "inet")?;
            w.next()
                .and_then(|a| a.split('/').next())
                .map(str::to_owned)
        })
        .collect())
}

/// How many of `vips` `ns` holds.
fn held(ns: &Netns, vips: &std::collections::HashSet<String>) -> usize {
    addrs(ns).map_or(0, |a| a.iter().filter(|a| vips.contains(*a)).count())
}

/// Polls `cond` every 20 ms until it holds, failing after `timeout` with `what`.
fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// One load: `instances` VRRP instances spread over as few interfaces as VRIDs allow.
#[derive(Debug, Clone, Copy)]
struct Load {
    instances: usize,
    version: u8,
    /// keepalived's `advert_int`, in centiseconds.
    advert_cs: u32,
}

impl Load {
    /// VRIDs used per interface (at most 250).
    fn per_iface(&self) -> usize {
        self.instances.div_ceil(self.ifaces()).max(1)
    }

    fn ifaces(&self) -> usize {
        self.instances.div_ceil(250).max(1)
    }

    fn advert_int(&self) -> String {
        if self.advert_cs.is_multiple_of(100) {
            format!("{}", self.advert_cs / 100)
        } else {
            format!("{}.{:02}", self.advert_cs / 100, self.advert_cs % 100)
        }
    }

    fn advert(&self) -> Duration {
        Duration::from_millis(u64::from(self.advert_cs) * 10)
    }

    /// Instance i: (interface index, VRID, VIP).
    fn instance(&self, i: usize) -> (usize, usize, String) {
        let (k, vrid) = (i / self.per_iface(), i % self.per_iface() + 1);
        if self.instances == 1 {
            return (0, 7, "198.18.7.100".to_owned());
        }
        (k, vrid, format!("198.19.{k}.{vrid}"))
    }

    fn vips(&self) -> std::collections::HashSet<String> {
        (0..self.instances).map(|i| self.instance(i).2).collect()
    }

    /// The keepalived.conf both implementations run: every instance starts BACKUP, one VIP each.
    fn config(&self, priority: u8) -> String {
        let mut c = format!(
            "global_defs {{\n  router_id bench\n  vrrp_version {}\n}}\n",
            self.version
        );
        for i in 0..self.instances {
            let (k, vrid, vip) = self.instance(i);
            let prefix = if self.instances == 1 { 24 } else { 32 };
            let _ = write!(
                c,
                "vrrp_instance VI_{i} {{\n  state BACKUP\n  interface eth{k}\n  virtual_router_id {vrid}\n  \
                 priority {priority}\n  advert_int {}\n  virtual_ipaddress {{\n    {vip}/{prefix}\n  }}\n}}\n",
                self.advert_int()
            );
        }
        c
    }

    /// Master_Down_Interval of the backup (priority 100) as keepalived 2.2 computes it, in µs:
    /// 3 × advert_int + skew, with skew = (256 - prio) / 256 s for v2 (RFC 3768 §6.1, not scaled
    /// by advert_int) and (256 - prio) × advert_int / 256 for v3 (RFC 5798 §6.1).
    fn master_down(&self) -> Duration {
        let adv_us = u64::from(self.advert_cs) * 10_000;
        let skew_us = if self.version == 2 {
            156 * 1_000_000 / 256
        } else {
            156 * adv_us / 256
        };
        Duration::from_micros(3 * adv_us + skew_us)
    }
}

/// Brings a pair up: master (150) first, then, once it holds every VIP, the backup (100), and
/// waits until every backup instance is BACKUP and the master still holds every VIP.
fn pair(imp: Impl, lan: &Lan, ka: &Path, load: &Load) -> anyhow::Result<(Daemon, Daemon, Instant)> {
    let vips = load.vips();
    let n = load.instances;
    let master = Daemon::start(imp, &lan.master, ka, &load.config(150))?;
    wait_until(
        &format!("{} master to hold {n} VIPs", imp.name()),
        WAIT,
        || held(&lan.master, &vips) == n,
    )
    .with_context(|| format!("master log tail:\n{}", tail(&master.log_text(), 30)))?;
    let master_since = Instant::now();
    eprintln!(
        "    {}: master holds {n} VIPs; starting the backup",
        imp.name()
    );
    let backup = Daemon::start(imp, &lan.backup, ka, &load.config(100))?;
    wait_until(
        &format!(
            "{} pair steady: backup has {n} instances BACKUP and no VIP, master holds {n} VIPs",
            imp.name()
        ),
        WAIT,
        || backup.backups() >= n && held(&lan.backup, &vips) == 0 && held(&lan.master, &vips) == n,
    )
    .with_context(|| format!("backup log tail:\n{}", tail(&backup.log_text(), 30)))?;
    Ok((master, backup, master_since))
}

/// The MAC address of `ifname` in `ns`.
fn mac(ns: &Netns, ifname: &str) -> anyhow::Result<[u8; 6]> {
    let text = ns.run(&["cat", &format!("/sys/class/net/{ifname}/address")])?;
    let mut m = [0u8; 6];
    let parts: Vec<&str> = text.trim().split(':').collect();
    ensure!(parts.len() == 6, "bad MAC address {text:?}");
    for (b, p) in m.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).with_context(|| format!("bad MAC address {text:?}"))?;
    }
    Ok(m)
}

/// Whether `frame` is a VRRP advert (IPv4 protocol 112) sent by `src`.
fn is_advert(frame: &[u8], src: &[u8; 6]) -> bool {
    frame.len() > 34 && frame[6..12] == src[..] && frame[12..14] == [0x08, 0x00] && frame[23] == 112
}

/// Whether `frame` is a gratuitous ARP for `vip` sent by `src` (ARP sender MAC and IP).
fn is_garp(frame: &[u8], src: &[u8; 6], vip: [u8; 4]) -> bool {
    frame.len() >= 42
        && frame[12..14] == [0x08, 0x06]
        && frame[6..12] == src[..]
        && frame[22..28] == src[..]
        && frame[28..32] == vip
        && frame[38..42] == vip
}

/// One takeover: times from the SIGKILL to the VIP on the backup and to its first GARP.
struct Takeover {
    vip: Duration,
    garp: Option<Duration>,
}

/// Runs one takeover on a fresh LAN.
fn takeover_once(imp: Impl, ka: &Path, load: &Load) -> anyhow::Result<Takeover> {
    let lan = Lan::new(1)?;
    let (master, backup, _) = pair(imp, &lan, ka, load)?;
    let (_, _, vip) = load.instance(0);
    let vip_octets: [u8; 4] = vip.parse::<std::net::Ipv4Addr>()?.octets();
    let master_mac = mac(&lan.master, "eth0")?;
    let backup_mac = mac(&lan.backup, "eth0")?;
    let limit = load.master_down() * 3 + Duration::from_secs(5);

    // Adverts from the master, to kill it right after one (the worst phase: the backup waits a
    // full Master_Down_Interval, so runs are comparable).
    let adverts = lan
        .hub(0)
        .enter(|| Capture::open("br0", 0x0800))?
        .join()
        .map_err(|_| anyhow::anyhow!("capture thread panicked"))??;
    // The backup's first GARP for the VIP, timestamped when read.
    let (ready_tx, ready_rx) = mpsc::channel();
    let garp = lan
        .hub(0)
        .enter(move || -> anyhow::Result<Option<Instant>> {
            let cap = Capture::open("br0", 0x0806)?;
            let _ = ready_tx.send(());
            Ok(cap
                .next_matching(Instant::now() + WAIT, |f| {
                    is_garp(f, &backup_mac, vip_octets)
                })
                .map(|_| Instant::now()))
        })?;
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .context("GARP capture did not start")?;
    // The VIP on the backup: binding to it succeeds only once the kernel holds it (no
    // ip_nonlocal_bind in our namespaces), a cheap probe that can run every millisecond.
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<Instant>();
    let vip_addr = std::net::SocketAddr::from((vip_octets, 0));
    let probe = lan.backup.enter(move || -> anyhow::Result<Instant> {
        let holds = || std::net::UdpSocket::bind(vip_addr).is_ok();
        let _ = ready_tx.send(holds());
        let t0 = go_rx.recv_timeout(WAIT).context("no kill signal")?;
        loop {
            if holds() {
                return Ok(Instant::now());
            }
            if t0.elapsed() > limit {
                bail!("the backup did not take the VIP within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })?;
    let held_before = ready_rx
        .recv_timeout(Duration::from_secs(5))
        .context("VIP probe did not start")?;
    ensure!(
        !held_before,
        "the backup's VIP probe succeeds before the takeover (ip_nonlocal_bind set?)"
    );

    // Let the backup see a couple of adverts, then kill right after the next one.
    let deadline = Instant::now() + load.advert() * 3 + Duration::from_secs(5);
    for _ in 0..2 {
        adverts
            .next_matching(deadline, |f| is_advert(f, &master_mac))
            .context("no advert from the master")?;
    }
    let t0 = Instant::now();
    master.kill(&lan.master);
    let _ = go_tx.send(t0);

    let t_vip = probe
        .join()
        .map_err(|_| anyhow::anyhow!("probe thread panicked"))??;
    let t_garp = garp
        .join()
        .map_err(|_| anyhow::anyhow!("capture thread panicked"))??;
    ensure!(
        addrs(&lan.backup)?.contains(&vip),
        "ip addr does not show {vip} on the backup after the probe saw it"
    );
    if t_vip - t0 < load.master_down() * 9 / 10 {
        eprintln!(
            "    warning: {} took over {:.1} ms after the kill, before its Master_Down_Interval; backup log tail:\n{}",
            imp.name(),
            (t_vip - t0).as_secs_f64() * 1e3,
            tail(&backup.log_text(), 12)
        );
    }
    drop(backup);
    Ok(Takeover {
        vip: t_vip - t0,
        garp: t_garp.map(|t| t.saturating_duration_since(t0)),
    })
}

/// Median, min and max in milliseconds.
fn stats(v: &[Duration]) -> Option<(f64, f64, f64)> {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median = match n {
        0 => return None,
        _ if n % 2 == 1 => ms[n / 2],
        _ => (ms[n / 2 - 1] + ms[n / 2]) / 2.0,
    };
    Some((median, ms[0], ms[n - 1]))
}

fn fmt_stats(v: &[Duration]) -> String {
    stats(v).map_or_else(
        || "n/a".to_owned(),
        |(med, lo, hi)| format!("{med:.1} ({lo:.1}–{hi:.1})"),
    )
}

/// The takeover benchmark: prints one Markdown table and returns every run's times.
fn takeover(ka: &Path, reps: u32) -> anyhow::Result<crate::report::Takeover> {
    let cases = [
        Load {
            instances: 1,
            version: 2,
            advert_cs: 100,
        },
        Load {
            instances: 1,
            version: 3,
            advert_cs: 5,
        },
    ];
    let mut rows = Vec::new();
    for load in &cases {
        for imp in [Impl::Ka, Impl::Keepalived] {
            let (mut vip, mut garp, mut missed) = (Vec::new(), Vec::new(), 0);
            let step = crate::progress::step(format!("takeover v{} advert_int {} s, {}", load.version, load.advert_int(), imp.name()));
            for r in 0..reps {
                step.set_message(format!("run {}/{reps}", r + 1));
                let t = takeover_once(imp, ka, load).with_context(|| {
                    format!(
                        "takeover v{} advert_int {} with {} (run {})",
                        load.version,
                        load.advert_int(),
                        imp.name(),
                        r + 1
                    )
                })?;
                eprintln!(
                    "  v{} advert_int {} {}: run {}: VIP {:.1} ms, GARP {}",
                    load.version,
                    load.advert_int(),
                    imp.name(),
                    r + 1,
                    t.vip.as_secs_f64() * 1e3,
                    t.garp.map_or("none".to_owned(), |g| format!(
                        "{:.1} ms",
                        g.as_secs_f64() * 1e3
                    ))
                );
                vip.push(t.vip);
                match t.garp {
                    Some(g) => garp.push(g),
                    None => missed += 1,
                }
            }
            step.finish();
            rows.push((*load, imp, vip, garp, missed));
        }
    }
    println!("\n### VRRP takeover after SIGKILL of the master\n");
    println!("ms from the SIGKILL (sent right after one of the master's adverts) to the VIP on the backup");
    println!("(kernel address table, polled every 1 ms) and to the backup's first gratuitous ARP seen on");
    println!("the bridge; median (min–max) of {reps} runs. Backup priority 100. keepalived's processes are");
    println!("stopped before they are killed, so its VRRP child cannot resign (priority 0) when its parent dies.\n");
    println!("| VRRP | advert_int | implementation | Master_Down_Interval | VIP on backup, ms | first GARP, ms |");
    println!("|---|---|---|---|---|---|");
    for (load, imp, vip, garp, missed) in &rows {
        let garp = if *missed > 0 {
            format!("{} ({missed} missed)", fmt_stats(garp))
        } else {
            fmt_stats(garp)
        };
        println!(
            "| v{} | {} s | {} | {:.0} ms | {} | {} |",
            load.version,
            load.advert_int(),
            imp.name(),
            load.master_down().as_secs_f64() * 1e3,
            fmt_stats(vip),
            garp
        );
    }
    let ms = |v: &[Duration]| v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    Ok(crate::report::Takeover {
        cases: rows
            .iter()
            .map(|(load, imp, vip, garp, missed)| crate::report::TakeoverCase {
                version: load.version,
                advert_int_ms: load.advert().as_secs_f64() * 1e3,
                implementation: imp.name().to_owned(),
                master_down_ms: load.master_down().as_secs_f64() * 1e3,
                vip_ms: ms(vip),
                garp_ms: ms(garp),
                garp_missed: *missed,
            })
            .collect(),
    })
}

/// The processes in `ns` (`ip netns pids`).
fn ns_pids(ns: &Netns) -> anyhow::Result<Vec<i32>> {
    let out =
        ka_tests::netns::run(std::process::Command::new("ip").args(["netns", "pids", ns.name()]))?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Total CPU time (user + system, in clock ticks) of every process in `ns`, and their RSS in KiB.
fn ns_cpu(ns: &Netns) -> anyhow::Result<(u64, u64, usize)> {
    let (mut ticks, mut rss, mut n) = (0u64, 0u64, 0usize);
    for pid in ns_pids(ns)? {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after "(comm)": state is field 3, utime 14, stime 15.
        let rest = stat
            .rsplit_once(") ")
            .map(|(_, r)| r)
            .context("bad /proc/PID/stat")?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        ensure!(f.len() > 12, "short /proc/{pid}/stat");
        ticks += f[11].parse::<u64>()? + f[12].parse::<u64>()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        rss += status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        n += 1;
    }
    ensure!(n > 0, "no process in namespace {}", ns.name());
    Ok((ticks, rss, n))
}

/// What the bridges carried: VRRP adverts per second, and the largest gap between two adverts
/// of one (bridge, VRID), over `span`.
struct Wire {
    rate: f64,
    max_gap: Duration,
    /// Instances (bridge, VRID) with at least one advert seen.
    seen: usize,
}

/// Counts the VRRP adverts on every bridge during `span` (timestamps taken when read, so the
/// gaps include this process's own scheduling delays).
fn wire(lan: &Lan, span: Duration) -> anyhow::Result<Wire> {
    let handles = (0..lan.bridges.len())
        .map(|k| {
            lan.hub(k)
                .enter(move || -> anyhow::Result<(u64, Duration, usize)> {
                    let cap = Capture::open("br0", 0x0800)?;
                    let end = Instant::now() + span;
                    let (mut n, mut max_gap) = (0, Duration::ZERO);
                    let mut last: [Option<Instant>; 256] = [None; 256];
                    while let Some(f) = cap.next_matching(end, |f| f.len() > 23 && f[23] == 112) {
                        let now = Instant::now();
                        n += 1;
                        let ihl = usize::from(f[14] & 0x0f) * 4;
                        if let Some(&vrid) = f.get(14 + ihl + 1) {
                            if let Some(prev) = last[usize::from(vrid)].replace(now) {
                                max_gap = max_gap.max(now - prev);
                            }
                        }
                    }
                    Ok((n, max_gap, last.iter().flatten().count()))
                })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (mut n, mut max_gap, mut seen) = (0, Duration::ZERO, 0);
    for h in handles {
        let (c, g, v) = h
            .join()
            .map_err(|_| anyhow::anyhow!("capture thread panicked"))??;
        n += c;
        max_gap = max_gap.max(g);
        seen += v;
    }
    Ok(Wire {
        rate: n as f64 / span.as_secs_f64(),
        max_gap,
        seen,
    })
}

/// One CPU measurement of a pair.
struct CpuRow {
    load: Load,
    imp: Impl,
    master_pct: f64,
    backup_pct: f64,
    master_rss_kib: u64,
    backup_rss_kib: u64,
    wire: Wire,
    /// State changes during the window on (master, backup): (0, 0) when steady.
    flaps: (usize, usize),
}

fn cpu_once(imp: Impl, ka: &Path, load: &Load, window: Duration) -> anyhow::Result<CpuRow> {
    let lan = Lan::new(load.ifaces())?;
    let (master, backup, master_since) = pair(imp, &lan, ka, load)?;
    // Let start-up work end: keepalived's second GARP burst comes vrrp_garp_master_delay (5 s)
    // after the transition; the backup's start-up, a few seconds.
    let settle_until =
        (master_since + Duration::from_secs(7)).max(Instant::now() + Duration::from_secs(3));
    eprintln!(
        "    {}: pair steady; settling, then sampling CPU for {} s",
        imp.name(),
        window.as_secs()
    );
    std::thread::sleep(settle_until.saturating_duration_since(Instant::now()));
    let changes = (master.state_changes(), backup.state_changes());
    let (m0, b0, t0) = (ns_cpu(&lan.master)?, ns_cpu(&lan.backup)?, Instant::now());
    std::thread::sleep(window);
    let (m1, b1, t1) = (ns_cpu(&lan.master)?, ns_cpu(&lan.backup)?, Instant::now());
    let flaps = (
        master.state_changes() - changes.0,
        backup.state_changes() - changes.1,
    );
    let wire = wire(&lan, load.advert().max(Duration::from_millis(500)) * 3)?;
    let vips = load.vips();
    let (m_held, b_held) = (held(&lan.master, &vips), held(&lan.backup, &vips));
    if flaps != (0, 0) || m_held != load.instances || b_held != 0 {
        eprintln!(
            "    warning: not steady: {} state changes on the master and {} on the backup during the window; \
             afterwards the master holds {m_held}/{} VIPs, the backup {b_held}\n    backup log tail:\n{}",
            flaps.0,
            flaps.1,
            load.instances,
            tail(&backup.log_text(), 6)
        );
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let secs = (t1 - t0).as_secs_f64();
    let pct = |a: (u64, u64, usize), b: (u64, u64, usize)| {
        (b.0.saturating_sub(a.0)) as f64 / hz / secs * 100.0
    };
    Ok(CpuRow {
        load: *load,
        imp,
        master_pct: pct(m0, m1),
        backup_pct: pct(b0, b1),
        master_rss_kib: m1.1,
        backup_rss_kib: b1.1,
        wire,
        flaps,
    })
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The CPU benchmark: prints one Markdown table and returns its rows.
fn cpu(ka: &Path, window: Duration) -> anyhow::Result<crate::report::VrrpCpu> {
    let loads = [
        Load {
            instances: 100,
            version: 3,
            advert_cs: 1,
        },
        Load {
            instances: 1000,
            version: 2,
            advert_cs: 100,
        },
    ];
    let mut rows = Vec::new();
    for load in &loads {
        for imp in [Impl::Ka, Impl::Keepalived] {
            let step = crate::progress::step(format!(
                "CPU: {} instances @ {} s (v{}), {}, {} s window",
                load.instances,
                load.advert_int(),
                load.version,
                imp.name(),
                window.as_secs()
            ));
            let row = cpu_once(imp, ka, load, window).with_context(|| {
                format!(
                    "CPU {} instances @ {} s with {}",
                    load.instances,
                    load.advert_int(),
                    imp.name()
                )
            })?;
            eprintln!(
                "    master {:.1}%, backup {:.1}%, {:.0} adverts/s from {} instances, max gap {:.1} ms, state changes {:?}",
                row.master_pct,
                row.backup_pct,
                row.wire.rate,
                row.wire.seen,
                row.wire.max_gap.as_secs_f64() * 1e3,
                row.flaps
            );
            step.finish();
            rows.push(row);
        }
    }
    println!("\n### VRRP daemon CPU (% of one core)\n");
    println!(
        "utime+stime from /proc/PID/stat of every process of the daemon (keepalived: parent and VRRP\n\
         child; ka: its one process) over {} s, starting in steady state (master holds every VIP,\n\
         backup is BACKUP). Same keepalived.conf for both; one VIP per instance; master priority 150,\n\
         backup 100. Kernel work done in the daemons' syscalls (veth, bridge) counts. After the window,\n\
         the adverts on the bridges are counted for a few intervals: a row is a fair comparison only\n\
         when every instance is heard at the configured rate (instances / advert_int per second) and no\n\
         state changed during the window. Shared 2-core machine: expect noise of a few tenths of a\n\
         percent.\n",
        window.as_secs()
    );
    println!(
        "| load | implementation | master CPU % | backup CPU % | ka / keepalived (master, backup) | adverts/s on the wire | instances heard | max gap per VRID, ms | state changes in window | RSS MiB (master, backup) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for pair in rows.chunks(2) {
        let [k, kd] = pair else { continue };
        for r in pair {
            let ratio = if r.imp == Impl::Ka {
                format!(
                    "{:.2}, {:.2}",
                    k.master_pct / kd.master_pct.max(1e-9),
                    k.backup_pct / kd.backup_pct.max(1e-9)
                )
            } else {
                String::new()
            };
            println!(
                "| {} × {} s (v{}) | {} | {:.1} | {:.1} | {} | {:.0} | {}/{} | {:.1} | {} | {:.1}, {:.1} |",
                r.load.instances,
                r.load.advert_int(),
                r.load.version,
                r.imp.name(),
                r.master_pct,
                r.backup_pct,
                ratio,
                r.wire.rate,
                r.wire.seen,
                r.load.instances,
                r.wire.max_gap.as_secs_f64() * 1e3,
                r.flaps.0 + r.flaps.1,
                r.master_rss_kib as f64 / 1024.0,
                r.backup_rss_kib as f64 / 1024.0,
            );
        }
    }
    Ok(crate::report::VrrpCpu {
        window_s: window.as_secs_f64(),
        rows: rows
            .iter()
            .map(|r| crate::report::VrrpCpuRow {
                instances: u32::try_from(r.load.instances).unwrap_or(u32::MAX),
                version: r.load.version,
                advert_int_ms: r.load.advert().as_secs_f64() * 1e3,
                implementation: r.imp.name().to_owned(),
                master_pct: r.master_pct,
                backup_pct: r.backup_pct,
                adverts_per_s: r.wire.rate,
                instances_heard: u32::try_from(r.wire.seen).unwrap_or(u32::MAX),
                max_gap_ms: r.wire.max_gap.as_secs_f64() * 1e3,
                state_changes: u32::try_from(r.flaps.0 + r.flaps.1).unwrap_or(u32::MAX),
                master_rss_mib: r.master_rss_kib as f64 / 1024.0,
                backup_rss_mib: r.backup_rss_kib as f64 / 1024.0,
            })
            .collect(),
    })
}

/// Removes this process's namespaces when SIGINT or SIGTERM arrives: the guards only run on
/// return and unwinding, not when a signal ends the process. The signals are blocked in the
/// calling thread (and so in every thread it spawns later) and taken by a waiter thread, which
/// deletes the namespaces named by `ka_tests::unique_name` for our pid with the tags this module
/// uses (`kabrPIDxN`, `kamPIDxN`, `kabPIDxN`) and ka's control sockets, and exits 130. Dropping the guard unblocks them.
struct SignalCleanup {
    set: nix::sys::signal::SigSet,
}

impl SignalCleanup {
    fn install() -> anyhow::Result<SignalCleanup> {
        use nix::sys::signal::{SigSet, Signal};
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set.thread_block().context("blocking SIGINT/SIGTERM")?;
        std::thread::spawn(move || {
            let Ok(sig) = set.wait() else { return };
            eprintln!("bench: {sig}: removing the benchmark's namespaces");
            let pid = std::process::id() % 100_000;
            let list =
                ka_tests::netns::run(std::process::Command::new("ip").args(["netns", "list"]))
                    .unwrap_or_default();
            for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
                let ours = ["kabr", "kam", "kab"].iter().any(|tag| {
                    name.strip_prefix(tag)
                        .and_then(|rest| rest.strip_prefix(&pid.to_string()))
                        .and_then(|rest| rest.strip_prefix('x'))
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                });
                if !ours {
                    continue;
                }
                let pids = ka_tests::netns::run(
                    std::process::Command::new("ip").args(["netns", "pids", name]),
                )
                .unwrap_or_default();
                for p in pids
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), Signal::SIGKILL);
                }
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", name])
                    .status();
            }
            // ka's control sockets (instances are named `bvPIDxN`), left behind by SIGKILL.
            for entry in std::fs::read_dir("/run/ka").into_iter().flatten().flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&format!("bv{pid}x"))
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
            std::process::exit(130);
        });
        Ok(SignalCleanup { set })
    }
}

impl Drop for SignalCleanup {
    fn drop(&mut self) {
        let _ = self.set.thread_unblock();
    }
}

/// What the VRRP benchmarks measured (each part unless skipped).
#[derive(Debug, Default)]
pub struct Results {
    /// Takeover times.
    pub takeover: Option<crate::report::Takeover>,
    /// Daemon CPU.
    pub cpu: Option<crate::report::VrrpCpu>,
}

/// Runs the VRRP benchmarks with the release `ka` binary at `ka`, prints Markdown tables and
/// returns the results.
///
/// # Errors
/// Not root, keepalived missing, a namespace cannot be set up, a daemon fails to reach steady
/// state, or a takeover does not happen in time. Everything created is removed either way.
pub fn run(opts: Options, ka: &Path) -> anyhow::Result<Results> {
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "the VRRP benchmarks need root (network namespaces)"
    );
    ensure!(
        ka.exists(),
        "{} not found; build it with `cargo build --release -p ka-userspace`",
        ka.display()
    );
    ensure!(
        std::process::Command::new("keepalived")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "keepalived is not installed; `cargo xtask setup` installs it"
    );
    let _cleanup = SignalCleanup::install()?;
    let reps = opts.reps.unwrap_or(if opts.quick { 2 } else { 5 });
    let window = Duration::from_secs(opts.cpu_secs.unwrap_or(if opts.quick { 4 } else { 10 }));
    println!("## VRRP benchmarks: ka vs keepalived 2.2 (`cargo xtask bench`)");
    let mut results = Results::default();
    if !opts.skip_takeover {
        eprintln!("bench: VRRP takeover after SIGKILL ({reps} runs per row)");
        results.takeover = Some(takeover(ka, reps)?);
    }
    if !opts.skip_cpu {
        eprintln!("bench: VRRP daemon CPU ({} s windows)", window.as_secs());
        results.cpu = Some(cpu(ka, window)?);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1,000 instances need four interfaces of 250 VRIDs; every (interface, VRID) is distinct.
    #[test]
    fn instances_get_distinct_interface_vrid_pairs() {
        let load = Load {
            instances: 1000,
            version: 2,
            advert_cs: 100,
        };
        assert_eq!(load.ifaces(), 4);
        let pairs: std::collections::HashSet<(usize, usize)> = (0..1000)
            .map(|i| {
                let (k, v, _) = load.instance(i);
                (k, v)
            })
            .collect();
        assert_eq!(pairs.len(), 1000);
        assert!(pairs.iter().all(|&(k, v)| k < 4 && (1..=255).contains(&v)));
        assert_eq!(load.vips().len(), 1000);
    }

    /// advert_int is written the way keepalived.conf spells it.
    #[test]
    fn advert_int_text_and_master_down() {
        assert_eq!(
            Load {
                instances: 1,
                version: 3,
                advert_cs: 5
            }
            .advert_int(),
            "0.05"
        );
        assert_eq!(
            Load {
                instances: 1,
                version: 2,
                advert_cs: 100
            }
            .advert_int(),
            "1"
        );
        assert_eq!(
            Load {
                instances: 1,
                version: 3,
                advert_cs: 1
            }
            .advert_int(),
            "0.01"
        );
        // 3 s + 156/256 s.
        assert_eq!(
            Load {
                instances: 1,
                version: 2,
                advert_cs: 100
            }
            .master_down(),
            Duration::from_micros(3_609_375)
        );
    }

    /// A gratuitous ARP is recognised by sender MAC and sender/target IP.
    #[test]
    fn garp_filter() {
        let mac = [2, 0, 0, 0, 0, 2];
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[198, 18, 7, 100]);
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&[198, 18, 7, 100]);
        assert!(is_garp(&f, &mac, [198, 18, 7, 100]));
        assert!(!is_garp(&f, &[2, 0, 0, 0, 0, 1], [198, 18, 7, 100]));
        assert!(!is_garp(&f, &mac, [198, 18, 7, 101]));
    }
}
