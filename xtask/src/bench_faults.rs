//! `cargo xtask bench --only faults` (issue 14 item 4): the timing side of the fault tests
//! (`tests/faults.rs`), on a LAN of namespaces with a ka MASTER load-balancing a VIP to DR real
//! servers:
//! - a real server replaced by a machine with another MAC (it announces itself with a
//!   gratuitous ARP, `arp_notify`): from the swap to the first new connection answered by the
//!   new machine, polled every 5 ms;
//! - the XDP interface deleted and re-created: from the re-creation to the program attached to
//!   the new interface, polled every 5 ms;
//! - 10,000 virtual servers: from `ka run` to `ka status` answering as MASTER with every virtual
//!   server in the datapath, and the daemon's memory and CPU time then.
//!
//! Everything runs in namespaces this module creates and removes (guards of `ka-tests`).

use std::{
    net::{SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context as _};
use ka_tests::{
    daemon::KaDaemon,
    lan::{ask_why, Accepted, EchoServer, Lan, LanSpec},
    netns::Netns,
    unique_name,
};

/// Options of the faults benchmark.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "faults_bench")]
pub struct Options {
    /// MAC swaps and interface re-creations measured.
    #[arg(long, default_value_t = 5)]
    pub faults_rounds: u32,
    /// Virtual servers of the large configuration.
    #[arg(long, default_value_t = 10_000)]
    pub faults_services: u16,
}

const WAIT: Duration = Duration::from_secs(60);
const VIP: &str = "198.18.53.100";
const DIRECTOR: &str = "198.18.53.1";
const CLIENT: &str = "198.18.53.2";
const RS: [&str; 2] = ["198.18.53.11", "198.18.53.12"];
const PORT: u16 = 8080;

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

fn new_lan() -> anyhow::Result<Lan> {
    Lan::new(&LanSpec {
        client: vec![format!("{CLIENT}/24")],
        directors: vec![vec![format!("{DIRECTOR}/24")]],
        real_servers: RS.iter().map(|a| vec![format!("{a}/24")]).collect(),
        loopback_vips: vec![format!("{VIP}/32")],
    })
}

/// Whether a new connection from the client to `VIP:port` is answered.
fn served(client: &Netns, port: u16) -> bool {
    client
        .enter(move || {
            let vip: SocketAddr = format!("{VIP}:{port}").parse().ok()?;
            let mut s = TcpStream::connect_timeout(&vip, Duration::from_millis(300)).ok()?;
            s.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
            ask_why(&mut s).ok()
        })
        .ok()
        .and_then(|h| h.join().ok())
        .flatten()
        .is_some()
}

fn conf(services: &str) -> String {
    format!("vrrp_instance VI_BF {{\n state MASTER\n interface eth0\n virtual_router_id 96\n priority 150\n advert_int 1\n virtual_ipaddress {{\n {VIP}/24\n }}\n}}\n{services}")
}

fn write_conf(text: &str) -> anyhow::Result<String> {
    let p = std::env::temp_dir().join(format!("{}.conf", unique_name("kbft")));
    std::fs::write(&p, text)?;
    Ok(p.to_str().context("temp path is not UTF-8")?.to_owned())
}

fn master(d: &KaDaemon) -> bool {
    d.status_json().is_ok_and(|s| s["vrrp"][0]["state"] == "MASTER")
}

/// Resident memory of `pid`, MiB, and its CPU time (user + system), seconds.
fn usage(pid: u64) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib: f64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).context("VmRSS")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).context("bad /proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    ensure!(f.len() > 12, "short /proc/{pid}/stat");
    let ticks = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((rss_kib / 1024.0, ticks as f64 / hz))
}

fn ms(d: &[Duration]) -> String {
    d.iter().map(|d| format!("{:.0}", d.as_secs_f64() * 1e3)).collect::<Vec<_>>().join(", ")
}

/// Runs the benchmark with the `ka` binary at `ka` and prints Markdown.
///
/// # Errors
/// Not root, a namespace cannot be set up, or a fault is not recovered from in time.
/// Everything created is removed either way.
pub fn run(opts: &Options, ka: &Path) -> anyhow::Result<()> {
    ensure!(nix::unistd::Uid::effective().is_root(), "the faults benchmark needs root (network namespaces)");
    ensure!(ka.exists(), "{} not found", ka.display());

    // MAC swaps and interface re-creations: one real server.
    let mut lan = new_lan()?;
    let accepted = Accepted::default();
    let servers: Vec<EchoServer> = lan.real_servers.iter().enumerate().map(|(i, ns)| EchoServer::start(ns, i, PORT, &accepted, &[])).collect::<Result<_, _>>()?;
    let one = format!("virtual_server {VIP} {PORT} {{\n delay_loop 1\n lb_algo rr\n lb_kind DR\n protocol TCP\n real_server {} {PORT} {{\n  TCP_CHECK {{\n   connect_timeout 1\n  }}\n }}\n}}\n", RS[0]);
    let path = write_conf(&conf(&one))?;
    let d = KaDaemon::start(&lan.directors[0], ka, &unique_name("bft"), &["--log", "info", "-f", &path])?;
    wait_until("MASTER, served", WAIT, || master(&d) && served(&lan.client, PORT))?;
    let rs = &lan.real_servers[0];
    rs.run(&["sysctl", "-qw", "net.ipv4.conf.eth0.arp_notify=1"])?;
    let mut macs = Vec::new();
    for k in 0..opts.faults_rounds {
        eprintln!("bench: real server MAC swap {}/{}", k + 1, opts.faults_rounds);
        let mac = format!("02:00:5e:10:98:{:02x}", k + 1);
        let t = Instant::now();
        rs.run(&["ip", "link", "set", "eth0", "address", &mac])?;
        rs.run(&["ip", "neigh", "flush", "all"])?;
        wait_until("new connections to the new MAC", WAIT, || served(&lan.client, PORT))?;
        macs.push(t.elapsed());
        std::thread::sleep(Duration::from_secs(2));
    }
    let mut reattach = Vec::new();
    for k in 0..opts.faults_rounds {
        eprintln!("bench: XDP interface re-created {}/{}", k + 1, opts.faults_rounds);
        lan.directors[0].run(&["ip", "link", "del", "eth0"])?;
        wait_until("ka to see eth0 gone", WAIT, || d.log_text().matches("XDP interface gone").count() > k as usize)?;
        let t = Instant::now();
        lan.bridge.attach(&lan.directors[0], "eth0", &[&format!("{DIRECTOR}/24")])?;
        wait_until("XDP on the new eth0", WAIT, || lan.directors[0].run(&["ip", "-d", "link", "show", "eth0"]).is_ok_and(|t| t.contains("prog/xdp")))?;
        reattach.push(t.elapsed());
        wait_until("MASTER again", WAIT, || master(&d))?;
    }
    d.stop()?;
    let _ = std::fs::remove_file(&path);
    drop(servers);
    drop(lan);

    // 10,000 virtual servers.
    let n = opts.faults_services;
    let lan = new_lan()?;
    let many: String = (0..n)
        .map(|k| {
            let p = 10_000 + k;
            format!("virtual_server {VIP} {p} {{\n lb_algo mh\n lb_kind DR\n protocol TCP\n real_server {} {p} {{\n }}\n real_server {} {p} {{\n }}\n}}\n", RS[0], RS[1])
        })
        .collect();
    let path = write_conf(&conf(&many))?;
    eprintln!("bench: {n} virtual servers");
    let t = Instant::now();
    let instance = unique_name("bfv");
    let d = KaDaemon::start_waiting(&lan.directors[0], ka, &instance, &["--log", "info", "-f", &path], KaDaemon::log_file(&instance), Duration::from_secs(300));
    let d = d?;
    let answered = t.elapsed();
    let mut st = serde_json::Value::Null;
    wait_until("MASTER with every virtual server", WAIT, || {
        st = d.status_json().unwrap_or_default();
        st["vrrp"][0]["state"] == "MASTER" && st["services"].as_array().is_some_and(|s| s.len() == usize::from(n))
    })?;
    let ready = t.elapsed();
    let pid = u(&st["pid"]);
    let (rss, cpu) = usage(pid)?;
    let status_t = Instant::now();
    d.status_json()?;
    let status_ms = status_t.elapsed().as_secs_f64() * 1e3;
    let refused = st["refused"].as_array().map_or(0, Vec::len);
    d.stop()?;
    let _ = std::fs::remove_file(&path);

    println!("## Faults (`cargo xtask bench --only faults`)");
    println!();
    println!("ka MASTER for a VIP on a LAN of namespaces (XDP in generic mode on a veth), DR real servers; {} rounds.", opts.faults_rounds);
    println!();
    println!("| fault | recovered after (ms, each round) |");
    println!("| --- | --- |");
    println!("| real server replaced by a machine with another MAC (gratuitous ARP): first new connection answered by it | {} |", ms(&macs));
    println!("| XDP interface deleted and re-created: program attached to the new interface | {} |", ms(&reattach));
    println!();
    println!(
        "{n} virtual servers (`mh`, two real servers each, no checkers): control socket answering after {:.1} s, MASTER with every \
         virtual server in the datapath after {:.1} s ({refused} refused); daemon RSS {rss:.0} MiB, {cpu:.1} s of CPU for the start; \
         `ka status --json` of all of them in {status_ms:.0} ms.",
        answered.as_secs_f64(),
        ready.as_secs_f64()
    );
    ensure!(refused == 0, "{refused} virtual servers refused");
    Ok(())
}
