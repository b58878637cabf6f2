//! The bundled lab: a client, a director running `ka` and two real servers, each in its own
//! network namespace. The director runs a keepalived.conf: a VRRP instance holding the VIP
//! 198.18.10.100 and a NAT virtual_server on VIP:8080 with a TCP_CHECK per real server. The
//! client opens TCP connections to the VIP (load-balanced by the XDP program to the real
//! servers) and sends UDP to the real servers directly; `ka status` is printed as the counters
//! move. Everything is removed on exit, on Ctrl-C, or after `--duration`.
//!
//! ```text
//!  client 198.18.10.2 ── eth0 [director: ka] eth1 ── bridge ── rs1 198.18.20.11
//!   VIP 198.18.10.100:8080 → 198.18.10.1 198.18.20.1       └─ rs2 198.18.20.12
//! ```

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream, UdpSocket},
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ka_tests::{
    daemon::KaDaemon,
    netns::{self, Bridge, Netns},
};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

const REAL_SERVERS: [&str; 2] = ["198.18.20.11", "198.18.20.12"];
const SERVICE_PORT: u16 = 8080;
const VIP: &str = "198.18.10.100";

/// The director's keepalived.conf.
fn config() -> String {
    let rs: String = REAL_SERVERS
        .iter()
        .map(|a| format!("  real_server {a} {SERVICE_PORT} {{\n    TCP_CHECK {{\n      connect_timeout 1\n    }}\n  }}\n"))
        .collect();
    format!(
        "vrrp_instance VI_LAB {{\n  state MASTER\n  interface eth0\n  virtual_router_id 10\n  priority 150\n  advert_int 1\n  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n\
virtual_server {VIP} {SERVICE_PORT} {{\n  delay_loop 1\n  lb_algo mh\n  lb_kind NAT\n  protocol TCP\n{rs}}}\n"
    )
}

/// veth frames with offloaded (partial) checksums lose that metadata when XDP forwards them,
/// and XDP_REDIRECTed frames reach a veth peer only if it runs GRO: set both up.
fn prepare_veths(client: &Netns, servers: &[Netns], bridge: &Bridge) -> anyhow::Result<()> {
    client.run(&["ethtool", "-K", "eth0", "tx", "off", "gro", "on"])?;
    for s in servers {
        s.run(&["ethtool", "-K", "eth0", "tx", "off"])?;
    }
    let hub = bridge.hub();
    for leg in hub.run(&["ls", "/sys/class/net"])?.split_whitespace().filter(|l| l.starts_with("leg")) {
        hub.run(&["ethtool", "-K", leg, "gro", "on"])?;
    }
    Ok(())
}

/// Runs the lab until Ctrl-C/SIGTERM or `duration`.
///
/// # Errors
/// A namespace, the daemon or the traffic cannot be set up.
pub fn run(ka: &Path, duration: Option<Duration>) -> anyhow::Result<()> {
    anyhow::ensure!(crate::setup::is_root(), "the lab needs root (network namespaces, XDP)");
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        let handler = nix::sys::signal::SigHandler::Handler(on_signal);
        nix::sys::signal::signal(nix::sys::signal::Signal::SIGINT, handler)?;
        nix::sys::signal::signal(nix::sys::signal::Signal::SIGTERM, handler)?;
    }
    eprintln!("lab: creating namespaces");
    let client = Netns::new("cl")?;
    let director = Netns::new("dr")?;
    let mut bridge = Bridge::new()?;
    netns::veth(&client, "eth0", &["198.18.10.2/24"], &director, "eth0", &["198.18.10.1/24"])?;
    bridge.attach(&director, "eth1", &["198.18.20.1/24"])?;
    client.run(&["ip", "route", "add", "default", "via", "198.18.10.1"])?;
    director.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    let mut servers = Vec::new();
    for (i, addr) in REAL_SERVERS.iter().enumerate() {
        let ns = Netns::new(&format!("rs{}", i + 1))?;
        bridge.attach(&ns, "eth0", &[&format!("{addr}/24")])?;
        ns.run(&["ip", "route", "add", "default", "via", "198.18.20.1"])?;
        let name = format!("rs{}", i + 1);
        let listener = ns
            .enter({
                let addr = format!("{addr}:{SERVICE_PORT}");
                move || TcpListener::bind(addr)
            })?
            .join()
            .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
        std::thread::spawn(move || serve(listener, name));
        servers.push(ns);
    }

    prepare_veths(&client, &servers, &bridge)?;
    let dir = std::env::temp_dir().join(ka_tests::unique_name("lab"));
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("keepalived.conf");
    std::fs::write(&conf, config())?;
    let conf_path = conf.to_str().context("non-UTF-8 temp path")?.to_owned();
    let instance = ka_tests::unique_name("lab");
    eprintln!("lab: starting ka (instance {instance}) on the director with {}", conf.display());
    let daemon = KaDaemon::start(&director, ka, &instance, &["-f", &conf_path, "--iface", "eth1"])?;

    let sent = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let traffic = client.enter({
        let (sent, answered) = (sent.clone(), answered.clone());
        move || traffic(&sent, &answered)
    })?;

    eprintln!(
        "lab: client → VIP {VIP}:{SERVICE_PORT} (XDP NAT to {REAL_SERVERS:?}); {}",
        duration.map_or("Ctrl-C to stop".to_owned(), |d| format!("stopping after {d:?}"))
    );
    let start = Instant::now();
    let mut last_print = Instant::now() - Duration::from_secs(10);
    while !STOP.load(Ordering::SeqCst) && duration.is_none_or(|d| start.elapsed() < d) {
        if last_print.elapsed() >= Duration::from_secs(2) {
            last_print = Instant::now();
            println!(
                "--- t={:>4}s  client: {} requests, {} answered",
                start.elapsed().as_secs(),
                sent.load(Ordering::Relaxed),
                answered.load(Ordering::Relaxed)
            );
            match daemon.status_text() {
                Ok(t) => print!("{t}"),
                Err(e) => eprintln!("lab: ka status failed: {e:#}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    STOP.store(true, Ordering::SeqCst);
    let _ = traffic.join();
    let final_status = daemon.status_json().context("final ka status")?;
    daemon.stop().context("stopping ka")?;
    let _ = std::fs::remove_dir_all(&dir);
    let c = &final_status["counters"];
    let pass = c["verdict_pass"].as_u64().unwrap_or(0);
    let forwarded = c["verdict_redirect"].as_u64().unwrap_or(0) + c["verdict_tx"].as_u64().unwrap_or(0);
    println!(
        "lab: done: {} requests, {} answered; ka forwarded {forwarded} packets in XDP and passed {pass}; cleaning up",
        sent.load(Ordering::Relaxed),
        answered.load(Ordering::Relaxed)
    );
    anyhow::ensure!(answered.load(Ordering::Relaxed) > 0, "no request was answered: the lab is broken");
    Ok(())
}

/// Answers every connection with a greeting naming the server.
fn serve(listener: TcpListener, name: String) {
    for stream in listener.incoming() {
        if STOP.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(mut s) = stream {
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
            let _ = writeln!(s, "hello from {name}");
        }
    }
}

/// The client's load: about 20 TCP requests and 20 UDP datagrams per second, alternating
/// real servers, until STOP.
fn traffic(sent: &AtomicU64, answered: &AtomicU64) {
    let udp = UdpSocket::bind("198.18.10.2:0").ok();
    let mut i = 0usize;
    while !STOP.load(Ordering::SeqCst) {
        let rs = REAL_SERVERS[i % REAL_SERVERS.len()];
        i += 1;
        sent.fetch_add(1, Ordering::Relaxed);
        let addr = format!("{VIP}:{SERVICE_PORT}");
        if let Ok(addr) = addr.parse() {
            if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = s.write_all(b"GET\n");
                let mut buf = String::new();
                if s.read_to_string(&mut buf).is_ok() && buf.starts_with("hello") {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let Some(u) = &udp {
            let _ = u.send_to(b"lab", format!("{rs}:9"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
