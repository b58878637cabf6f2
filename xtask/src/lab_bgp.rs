//! `cargo xtask run --scenario bgp`: active-active directors announcing a VIP over BGP. A
//! client behind a BIRD router, three directors each running `ka run --announce-table 100`
//! with its own BIRD (eBGP to the router), and three real servers, on one LAN bridge.
//!
//! ```text
//!   client 198.18.60.2 ── router .254 (BIRD AS 65000, merge paths on, L4 ECMP hash)
//!                            │
//!  ══════════════════════════╪═════ bridge 198.18.61.0/24 ═════════════════════
//!      │             │             │             │         │         │
//!   dr1 .1        dr2 .2        dr3 .3         rs1 .11   rs2 .12   rs3 .13
//!   ka + BIRD     ka + BIRD     ka + BIRD      VIP on lo, line-echo on :8080 (DR)
//!   (AS 65001: VIP/32 from table 100 → BGP, next hop self)
//! ```
//!
//! The run prints the router's ECMP next hops and each director's share of new flows, then
//! dr1 drains gracefully (SIGTERM: routes withdrawn, forwarding on for the drain), then dr2
//! dies hard (link down and SIGKILL: the router notices on its BGP hold timer). The summary
//! counts the long-lived connections that survived both: it must be all of them.

use std::{
    net::{SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context as _};
use ka_tests::{
    bird::Bird,
    daemon::KaDaemon,
    lan::{ask, ask_why, full_checksums, tcp_check, Accepted, EchoServer, Lan, LanSpec},
    netns::{veth, Netns},
};

const DIRECTORS: [&str; 3] = ["198.18.61.1", "198.18.61.2", "198.18.61.3"];
const REAL_SERVERS: [&str; 3] = ["198.18.61.11", "198.18.61.12", "198.18.61.13"];
const ROUTER: &str = "198.18.61.254";
const CLIENT: &str = "198.18.60.2";
const VIP: &str = "198.18.61.100";
const PORT: u16 = 8080;
const TABLE: &str = "100";
/// Long-lived connections the client keeps open.
const LONG_LIVED: usize = 30;

fn director_bird(me: &str) -> String {
    format!(
        "router id {me};\nprotocol device {{ }}\n\
protocol kernel ka4 {{ ipv4 {{ import all; export none; }}; kernel table {TABLE}; learn; }}\n\
protocol bgp uplink {{ local {me} as 65001; neighbor {ROUTER} as 65000; hold time 3; keepalive time 1; connect retry time 1;\n ipv4 {{ import none; export all; next hop self; }}; }}\n"
    )
}

fn router_bird() -> String {
    let mut s = format!("router id {ROUTER};\nprotocol device {{ }}\nprotocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}\n");
    for (i, d) in DIRECTORS.iter().enumerate() {
        s.push_str(&format!(
            "protocol bgp dr{} {{ local {ROUTER} as 65000; neighbor {d} as 65001; hold time 3; keepalive time 1; connect retry time 1;\n ipv4 {{ import all; export none; }}; }}\n",
            i + 1
        ));
    }
    s
}

/// The router's next hops to the VIP.
fn hops(router: &Netns) -> Vec<String> {
    let text = router.run(&["ip", "-4", "route", "show", VIP]).unwrap_or_default();
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut h: Vec<String> = words.windows(2).filter(|w| w[0] == "via").map(|w| w[1].to_owned()).collect();
    h.sort();
    h
}

fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("timed out after {timeout:?} waiting for {what}")
}

fn new_flows(ka: &KaDaemon) -> u64 {
    ka.status_json().ok().and_then(|s| s["counters"]["lb_new_flow"].as_u64()).unwrap_or(0)
}

/// Asks every connection; returns how many answered from the real server they started on.
fn alive(conns: &mut [(TcpStream, usize)]) -> usize {
    conns.iter_mut().filter_map(|(c, rs)| ask_why(c).ok().filter(|got| got == rs)).count()
}

/// Runs the scenario with the `ka` binary `ka`.
///
/// # Errors
/// The lab cannot be built, or a connection did not survive.
pub fn run(ka: &Path) -> anyhow::Result<()> {
    ensure!(crate::setup::is_root(), "the lab needs root (network namespaces, XDP)");
    eprintln!("bgp lab: namespaces (router + client, dr1-dr3, rs1-rs3 on one bridge)");
    let lan = Lan::new(&LanSpec {
        client: vec!["198.18.61.50/24".into()],
        directors: DIRECTORS.iter().map(|a| vec![format!("{a}/24")]).collect(),
        real_servers: REAL_SERVERS.iter().map(|a| vec![format!("{a}/24")]).collect(),
        loopback_vips: vec![format!("{VIP}/32")],
    })?;
    let mut bridge = lan.bridge;
    let router = Netns::new("rt")?;
    bridge.attach(&router, "eth0", &[&format!("{ROUTER}/24")])?;
    let client = Netns::new("fc")?;
    veth(&router, "eth1", &["198.18.60.1/24"], &client, "eth0", &[&format!("{CLIENT}/24")])?;
    client.run(&["ip", "route", "add", "default", "via", "198.18.60.1"])?;
    full_checksums(&client, "eth0")?;
    full_checksums(&router, "eth0")?;
    router.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"])?;
    for rs in &lan.real_servers {
        rs.run(&["ip", "route", "add", "default", "via", ROUTER])?;
    }
    let accepted = Accepted::default();
    let _servers: Vec<EchoServer> =
        lan.real_servers.iter().enumerate().map(|(i, ns)| EchoServer::start(ns, i, PORT, &accepted, &[])).collect::<anyhow::Result<_>>()?;
    let dir = std::env::temp_dir().join(ka_tests::unique_name("labbgp"));
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("keepalived.conf");
    let rs: String = REAL_SERVERS.iter().map(|a| format!(" real_server {a} {PORT} {{\n{} }}\n", tcp_check())).collect();
    std::fs::write(&conf, format!("virtual_server {VIP} {PORT} {{\n delay_loop 1\n lb_algo mh\n mh-port\n lb_kind DR\n protocol TCP\n{rs}}}\n"))?;
    let conf = conf.to_str().context("non-UTF-8 temp path")?.to_owned();
    let _router_bird = Bird::start(&router, &router_bird())?;
    let _birds: Vec<Bird> = DIRECTORS.iter().zip(&lan.directors).map(|(a, ns)| Bird::start(ns, &director_bird(a))).collect::<anyhow::Result<_>>()?;
    let mut kas: Vec<Option<KaDaemon>> = Vec::new();
    for (i, ns) in lan.directors.iter().enumerate() {
        let instance = ka_tests::unique_name("lbg");
        eprintln!("bgp lab: dr{}: ka run -f {conf} --announce-table {TABLE} --announce-drain 2 (log {})", i + 1, KaDaemon::log_file(&instance).display());
        kas.push(Some(KaDaemon::start(ns, ka, &instance, &["-f", &conf, "--announce-table", TABLE, "--announce-drain", "2"])?));
    }
    let all: Vec<String> = DIRECTORS.iter().map(|s| (*s).to_owned()).collect();
    wait("the router's ECMP route over the three directors", Duration::from_secs(60), || hops(&router) == all)?;
    println!(">>> router: {}", router.run(&["ip", "route", "show", VIP])?.trim().replace('\n', " | "));

    let addr: SocketAddr = format!("{VIP}:{PORT}").parse()?;
    let mut conns: Vec<(TcpStream, usize)> = client
        .enter(move || -> anyhow::Result<Vec<(TcpStream, usize)>> {
            (0..LONG_LIVED)
                .map(|_| {
                    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
                    c.set_read_timeout(Some(Duration::from_secs(10)))?;
                    let rs = ask(&mut c).context("no answer on a new connection")?;
                    Ok((c, rs))
                })
                .collect()
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    let shares: Vec<String> = kas.iter().flatten().enumerate().map(|(i, k)| format!("dr{} {}", i + 1, new_flows(k))).collect();
    println!(">>> {LONG_LIVED} long-lived connections open; new flows per director: {}", shares.join(", "));

    println!(">>> dr1 drains gracefully (SIGTERM: routes withdrawn, forwarding on for 2 s)");
    if let Some(k) = kas[0].take() {
        k.stop()?;
    }
    wait("the router to drop dr1", Duration::from_secs(30), || hops(&router) == all[1..])?;
    let after_drain = alive(&mut conns);
    println!(">>> router: {:?}; connections alive on their real server: {after_drain}/{LONG_LIVED}", hops(&router));

    println!(">>> dr2 dies hard (link down, SIGKILL): the router notices on its BGP hold timer (3 s)");
    lan.directors[1].run(&["ip", "link", "set", "eth0", "down"])?;
    if let Some(k) = kas[1].take() {
        k.crash();
    }
    wait("the router to drop dr2", Duration::from_secs(30), || hops(&router) == all[2..])?;
    let after_death = alive(&mut conns);
    println!(">>> router: {:?}; connections alive on their real server: {after_death}/{LONG_LIVED}", hops(&router));
    println!("SUMMARY: {after_death}/{LONG_LIVED} long-lived connections survived a graceful drain and a hard death");
    drop(conns);
    drop(kas);
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(after_drain == LONG_LIVED && after_death == LONG_LIVED, "connections were lost");
    Ok(())
}
