//! `cargo xtask bench --only synflood` (issue 14 item 3): a ka MASTER load-balancing a VIP on a
//! LAN of namespaces (three DR real servers; a round-robin TCP service, a Maglev TCP service and
//! a round-robin UDP service), flooded by a third host with new flows from a million spoofed
//! sources, one `AF_PACKET` sender thread writing as fast as it can (`ka_tests::flood::L4Flood`):
//! SYNs to each TCP service, then UDP datagrams. Long-lived TCP connections and UDP flows run
//! through the round-robin services the whole time. Per row: the rate sent and the rate XDP saw,
//! the daemon's CPU (utime + stime from /proc/PID/stat over the row: the map writer, the
//! sweeper walking a full connection table, the checkers), the flood-mode counters, and
//! whether every long-lived flow still answered from its own real server.
//!
//! Everything runs in namespaces this module creates and removes (guards of `ka-tests`).

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    path::Path,
    sync::{atomic::AtomicBool, Arc},
    time::{Duration, Instant},
};

use anyhow::{ensure, Context as _};
use ka_tests::{
    daemon::KaDaemon,
    flood::{self, L4Flood, L4Kind, Limits, Sender},
    lan::{ask_udp, ask_why, Accepted, EchoServer, Lan, LanSpec, UdpEchoServer},
    netns::Netns,
    unique_name,
};

/// Options of the SYN/UDP flood benchmark.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "synflood_bench")]
pub struct Options {
    /// Seconds of flood per row.
    #[arg(long, default_value_t = 10)]
    pub synflood_secs: u64,
}

const WAIT: Duration = Duration::from_secs(30);
const VIP: &str = "198.18.48.100";
const CLIENT: &str = "198.18.48.2";
const RS: [&str; 3] = ["198.18.48.11", "198.18.48.12", "198.18.48.13"];
const RR_PORT: u16 = 8080;
const MH_PORT: u16 = 8081;
const UDP_PORT: u16 = 5300;
const LONG: usize = 6;

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0)
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

fn mac(ns: &Netns) -> anyhow::Result<[u8; 6]> {
    let text = ns.run(&["cat", "/sys/class/net/eth0/address"])?;
    let b: Vec<u8> = text.trim().split(':').map(|h| u8::from_str_radix(h, 16)).collect::<Result<_, _>>()?;
    b.try_into().map_err(|_| anyhow::anyhow!("MAC of 6 bytes expected: {text}"))
}

/// The long-lived flows through the round-robin services, and the server each started on.
struct Long {
    tcp: Vec<(TcpStream, usize)>,
    udp: Vec<(UdpSocket, usize)>,
}

impl Long {
    fn open(client: &Netns) -> anyhow::Result<Long> {
        let (tcp, udp) = client
            .enter(|| -> anyhow::Result<_> {
                let mut tcp = Vec::new();
                for _ in 0..LONG {
                    let vip: SocketAddr = format!("{VIP}:{RR_PORT}").parse()?;
                    let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(3))?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    let rs = ask_why(&mut s).map_err(|e| anyhow::anyhow!("long connection: {e}"))?;
                    tcp.push((s, rs));
                }
                let mut udp = Vec::new();
                for _ in 0..LONG {
                    let s = UdpSocket::bind((CLIENT, 0))?;
                    s.connect((VIP, UDP_PORT))?;
                    s.set_read_timeout(Some(Duration::from_millis(500)))?;
                    let rs = ask_udp(&s, 10).map_err(|e| anyhow::anyhow!("UDP flow: {e}"))?;
                    ask_udp(&s, 10).map_err(|e| anyhow::anyhow!("UDP flow: {e}"))?;
                    udp.push((s, rs));
                }
                Ok((tcp, udp))
            })?
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
        Ok(Long { tcp, udp })
    }

    /// Long-lived flows that no longer answer from their own server.
    fn lost(&mut self) -> usize {
        let tcp = self.tcp.iter_mut().map(|(s, rs)| ask_why(s).ok() != Some(*rs)).filter(|moved| *moved).count();
        let udp = self.udp.iter().filter(|(s, rs)| ask_udp(s, 10).ok() != Some(*rs)).count();
        tcp + udp
    }
}

/// One row of the table.
struct Row {
    name: &'static str,
    sent: u64,
    sent_rate: f64,
    xdp_rate: f64,
    cpu_pct: f64,
    counters: Vec<(&'static str, u64)>,
    lost: usize,
}

const SHOWN: [&str; 5] = ["lb_flood_mode", "lb_conn_flood_skip", "lb_conn_evicted", "lb_conn_evicted_assured", "lb_conn_set_full"];

/// Floods `port` with `kind` for `secs` and measures.
fn row(name: &'static str, ka: &KaDaemon, flooder: &Netns, spec: L4Flood, first: u64, secs: u64, long: &mut Long) -> anyhow::Result<Row> {
    let st0 = ka.status_json()?;
    let pid = u(&st0["pid"]);
    let cpu0 = cpu_seconds(pid)?;
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let l4 = if spec.kind == L4Kind::Syn { "tcp" } else { "udp" };
    let sent = flooder
        .enter(move || {
            let sender = Sender::open("eth0")?;
            flood::flood_l4(&sender, &spec, first, Limits { packets: u64::MAX, time: Duration::from_secs(secs) }, &stop)
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("flood thread panicked"))??;
    let cpu1 = cpu_seconds(pid)?;
    let wall = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(200));
    let st1 = ka.status_json()?;
    let d = |c: &str| u(&st1["counters"][c]).saturating_sub(u(&st0["counters"][c]));
    Ok(Row {
        name,
        sent: sent.total(),
        sent_rate: sent.rate(),
        xdp_rate: d(l4) as f64 / sent.elapsed.as_secs_f64().max(1e-9),
        cpu_pct: (cpu1 - cpu0) / wall * 100.0,
        counters: SHOWN.iter().map(|c| (*c, d(c))).collect(),
        lost: long.lost(),
    })
}

/// Runs the benchmark with the release `ka` binary at `ka` and prints a Markdown table.
///
/// # Errors
/// Not root, a namespace cannot be set up, or the daemon does not serve. Everything created is
/// removed either way.
pub fn run(opts: &Options, ka: &Path) -> anyhow::Result<()> {
    ensure!(nix::unistd::Uid::effective().is_root(), "the flood benchmark needs root (network namespaces)");
    ensure!(ka.exists(), "{} not found; build it with `cargo build --release -p ka-userspace`", ka.display());
    let mut lan = Lan::new(&LanSpec {
        client: vec![format!("{CLIENT}/24")],
        directors: vec![vec!["198.18.48.1/24".to_owned()]],
        real_servers: RS.iter().map(|a| vec![format!("{a}/24")]).collect(),
        loopback_vips: vec![format!("{VIP}/32")],
    })?;
    let flooder = Netns::new("bsf")?;
    lan.bridge.attach(&flooder, "eth0", &["198.18.48.5/24"])?;
    let accepted = Accepted::default();
    let (vip, client): (IpAddr, IpAddr) = (VIP.parse()?, CLIENT.parse()?);
    let mut servers = Vec::new();
    let mut udp_servers = Vec::new();
    for (i, ns) in lan.real_servers.iter().enumerate() {
        servers.push(EchoServer::start(ns, i, RR_PORT, &accepted, &[])?);
        udp_servers.push(UdpEchoServer::start(ns, i, vip, UDP_PORT, client)?);
    }
    let rs = |port: u16| -> String { RS.iter().map(|a| format!(" real_server {a} {port} {{\n }}\n")).collect() };
    let conf = std::env::temp_dir().join(format!("{}.conf", unique_name("kbsf")));
    std::fs::write(
        &conf,
        format!(
            "vrrp_instance VI_SF {{\n state MASTER\n interface eth0\n virtual_router_id 98\n priority 150\n advert_int 1\n virtual_ipaddress {{\n {VIP}/24\n }}\n}}\n\
virtual_server {VIP} {RR_PORT} {{\n lb_algo rr\n lb_kind DR\n protocol TCP\n{}}}\n\
virtual_server {VIP} {MH_PORT} {{\n lb_algo mh\n lb_kind DR\n protocol TCP\n{}}}\n\
virtual_server {VIP} {UDP_PORT} {{\n lb_algo rr\n lb_kind DR\n protocol UDP\n{}}}\n",
            rs(RR_PORT),
            rs(MH_PORT),
            rs(UDP_PORT)
        ),
    )?;
    let conf_s = conf.to_str().context("temp path is not UTF-8")?.to_owned();
    let d = KaDaemon::start(&lan.directors[0], ka, &unique_name("bsf"), &["--log", "info", "-f", &conf_s]);
    let _ = std::fs::remove_file(&conf);
    let d = d?;
    let start = Instant::now();
    while !d.status_json().is_ok_and(|s| s["vrrp"][0]["state"] == "MASTER") {
        ensure!(start.elapsed() < WAIT, "ka did not become MASTER");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every real server in the tables, and the kernel's tick rate measured (flood mode needs it).
    std::thread::sleep(Duration::from_secs(3));
    let mode = d.status_json()?["xdp"][0]["mode"].as_str().unwrap_or("?").to_owned();
    let mut long = Long::open(&lan.client)?;
    let spec = |kind, dport| -> anyhow::Result<L4Flood> {
        Ok(L4Flood {
            kind,
            dst_mac: mac(&lan.directors[0])?,
            src_mac: mac(&flooder)?,
            vip: VIP.parse()?,
            dport,
            src_base: Ipv4Addr::new(10, 64, 0, 0),
            sources: 1 << 20,
        })
    };
    let mut rows = Vec::new();
    let secs = opts.synflood_secs;
    eprintln!("bench: SYN flood to the round-robin service, {secs} s");
    rows.push(row("SYN, rr service", &d, &flooder, spec(L4Kind::Syn, RR_PORT)?, 0, secs, &mut long)?);
    eprintln!("bench: SYN flood to the Maglev service, {secs} s");
    rows.push(row("SYN, mh service", &d, &flooder, spec(L4Kind::Syn, MH_PORT)?, 1 << 24, secs, &mut long)?);
    eprintln!("bench: UDP flood to the round-robin service, {secs} s");
    rows.push(row("UDP, rr service", &d, &flooder, spec(L4Kind::Udp, UDP_PORT)?, 2 << 24, secs, &mut long)?);
    let idle0 = cpu_seconds(u(&d.status_json()?["pid"]))?;
    std::thread::sleep(Duration::from_secs(5));
    let idle = (cpu_seconds(u(&d.status_json()?["pid"]))? - idle0) / 5.0 * 100.0;
    d.stop()?;

    println!("## SYN and UDP floods to a VIP (`cargo xtask bench --only synflood`)");
    println!();
    println!(
        "A ka MASTER (XDP in {mode} mode on a veth, default `lvs_flood_rate` 10,000 per CPU) serving\n\
         a VIP with three DR real servers: round-robin TCP, Maglev TCP, round-robin UDP. A third\n\
         namespace floods it for {secs} s per row with new flows from 2^20 spoofed sources (one\n\
         `AF_PACKET` sender thread, `sendmmsg` 64 per call); {LONG} long-lived TCP connections and\n\
         {LONG} UDP flows run through the round-robin services throughout. CPU: utime+stime of the ka\n\
         process over the row (XDP runs in the sender's softirq context, not in it). Counters: moved\n\
         during the row. Shared 2-core machine."
    );
    println!();
    println!("| flood | sent | sent/s | seen by XDP/s | daemon CPU % | {} | long-lived flows moved |", SHOWN.join(" | "));
    println!("| --- | ---: | ---: | ---: | ---: |{} ---: |", " ---: |".repeat(SHOWN.len()));
    for r in &rows {
        let c: Vec<String> = r.counters.iter().map(|(_, v)| v.to_string()).collect();
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {} | {} of {} |",
            r.name,
            r.sent,
            r.sent_rate,
            r.xdp_rate,
            r.cpu_pct,
            c.join(" | "),
            r.lost,
            2 * LONG
        );
    }
    println!();
    println!("Daemon CPU in the 5 s after the floods (table full of SYN and UDP entries, swept each second): {idle:.2} %.");
    drop(servers);
    drop(udp_servers);
    ensure!(rows.iter().all(|r| r.lost == 0), "a long-lived flow lost its real server");
    Ok(())
}
