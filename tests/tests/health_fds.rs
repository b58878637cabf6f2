//! Checks never leak file descriptors: many checks of every network checker type (TCP_CHECK,
//! HTTP_GET, SSL_GET, UDP_CHECK, DNS_CHECK, PING_CHECK, SMTP_CHECK) against bad servers —
//! silent (a neighbour that never answers), refusing, and answering garbage — leave the
//! process with as many open descriptors as before (`/proc/self/fd`), give or take a few.
//!
//! This file holds a single test so nothing else in the process opens descriptors meanwhile.

use std::{
    net::TcpListener as StdTcpListener,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use ka::health::checkers::{BuildContext, Probe};
use ka_tests::{
    netns::{self, Netns},
    require_root,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// No host answers here: its namespace drops every packet.
const SILENT: &str = "198.18.50.2";
/// Rounds of checks; each round runs every probe [`PARALLEL`] times at once.
const ROUNDS: usize = 15;
const PARALLEL: usize = 4;
/// Descriptors the runtime may open lazily (timer, blocking pool, resolver) after the baseline.
const SLACK: usize = 4;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

/// TCP: answers every connection with garbage, then closes.
async fn garbage_tcp() -> u16 {
    let l = tokio::net::TcpListener::from_std({
        let l = StdTcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        l
    })
    .expect("listener");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let _ = s.write_all(b"\x00\xffNOT A PROTOCOL\r\n\r\n").await;
                let mut b = [0u8; 256];
                let _ = tokio::time::timeout(Duration::from_millis(50), s.read(&mut b)).await;
            });
        }
    });
    port
}

/// UDP: answers every datagram with one garbage byte.
async fn garbage_udp() -> u16 {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let port = s.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut b = [0u8; 1500];
        while let Ok((_, from)) = s.recv_from(&mut b).await {
            let _ = s.send_to(b"\xff", from).await;
        }
    });
    port
}

fn probes(garbage: u16, garbage_u: u16, refused: u16) -> Vec<(String, Probe)> {
    let t = "connect_timeout 0.3\n";
    let g = format!("127.0.0.1 {garbage}");
    let r = format!("127.0.0.1 {refused}");
    let gu = format!("127.0.0.1 {garbage_u}");
    let s80 = format!("{SILENT} 80");
    let cases: Vec<(&str, String)> = vec![
        ("TCP_CHECK {\n TIMING }", s80.clone()),
        ("TCP_CHECK {\n TIMING }", r.clone()),
        ("HTTP_GET {\n TIMING url {\n path /\n }\n }", s80.clone()),
        ("HTTP_GET {\n TIMING url {\n path /\n }\n }", r.clone()),
        ("HTTP_GET {\n TIMING url {\n path /\n }\n }", g.clone()),
        ("SSL_GET {\n TIMING url {\n path /\n }\n }", s80.clone()),
        ("SSL_GET {\n TIMING url {\n path /\n }\n }", g.clone()),
        ("SMTP_CHECK {\n TIMING }", s80.clone()),
        ("SMTP_CHECK {\n TIMING }", r.clone()),
        ("SMTP_CHECK {\n TIMING }", g.clone()),
        ("UDP_CHECK {\n TIMING require_reply\n }", s80.clone()),
        ("UDP_CHECK {\n TIMING require_reply\n min_reply_length 4\n }", gu.clone()),
        ("DNS_CHECK {\n TIMING type A\n name www.test\n }", format!("{SILENT} 53")),
        ("DNS_CHECK {\n TIMING type A\n name www.test\n }", gu.clone()),
        ("PING_CHECK {\n TIMING }", s80.clone()),
    ];
    let mut text = String::from("virtual_server 198.18.50.100 80 {\n protocol TCP\n");
    for (i, (checker, target)) in cases.iter().enumerate() {
        let (ip, port) = target.split_once(' ').expect("ip port");
        let timing = format!("{t} connect_ip {ip}\n connect_port {port}\n");
        text.push_str(&format!(" real_server 198.18.51.{} 80 {{\n  {}\n }}\n", i + 1, checker.replace("TIMING ", &timing)));
    }
    text.push_str("}\n");
    let loaded = ka::config::parse_str(&text, Path::new("fds.conf"), &ka::config::LoadOptions::default());
    let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.severity == ka::config::Severity::Error).map(|d| format!("{d:?}")).collect();
    assert!(errors.is_empty(), "config errors: {errors:?}");
    let cfg = loaded.config;
    let vs = &cfg.virtual_servers[0];
    vs.real_servers
        .iter()
        .zip(&cases)
        .map(|(rs, (checker, target))| {
            let name = format!("{} → {target}", checker.split_whitespace().next().unwrap_or("?"));
            (name, Probe::build(&rs.checkers[0], rs, &cfg, &BuildContext::default()))
        })
        .collect()
}

/// Runs every probe `PARALLEL` times at once; every check must fail (the servers are bad).
async fn round(probes: &Arc<Vec<(String, Probe)>>) {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..probes.len() {
        for _ in 0..PARALLEL {
            let p = probes.clone();
            set.spawn(async move {
                let (name, probe) = &p[i];
                let r = tokio::time::timeout(Duration::from_secs(5), probe.run()).await;
                match r {
                    Ok(Err(_)) => None,
                    Ok(Ok(s)) => Some(format!("{name}: passed against a bad server: {}", s.detail)),
                    Err(_) => Some(format!("{name}: ran past its connect_timeout")),
                }
            });
        }
    }
    while let Some(r) = set.join_next().await {
        if let Some(problem) = r.expect("probe task") {
            panic!("{problem}");
        }
    }
}

#[test]
fn many_failed_checks_leak_no_descriptors() {
    require_root();
    let ns = Netns::new("fd").expect("netns");
    // The silent host: a namespace that drops every IP packet it receives.
    let silent = Netns::new("fs").expect("netns");
    netns::veth(&ns, "a0", &["198.18.50.1/24"], &silent, "b0", &[&format!("{SILENT}/24")]).expect("veth");
    silent.run(&["nft", "add", "table", "inet", "katest"]).expect("nft: install Debian's nftables");
    silent.run(&["nft", "add", "chain", "inet", "katest", "in", "{ type filter hook input priority 0 ; policy drop ; }"]).expect("nft chain");
    ns.enter(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async {
            let refused = {
                let l = StdTcpListener::bind("127.0.0.1:0").expect("bind");
                l.local_addr().expect("addr").port()
            };
            let probes = Arc::new(probes(garbage_tcp().await, garbage_udp().await, refused));
            // Warm-up: lazily created runtime and library state is not a leak.
            round(&probes).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let before = open_fds();
            let start = Instant::now();
            for _ in 0..ROUNDS {
                round(&probes).await;
            }
            let checks = ROUNDS * PARALLEL * probes.len();
            eprintln!("{checks} failed checks in {:?}", start.elapsed());
            // The garbage servers close their side within 50 ms; give them a bounded moment.
            let settle = Instant::now();
            let mut after = open_fds();
            while after > before + SLACK && settle.elapsed() < Duration::from_secs(2) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                after = open_fds();
            }
            eprintln!("open descriptors: {before} before, {after} after {checks} checks");
            assert!(after <= before + SLACK, "{checks} failed checks left {} more descriptors open ({before} → {after})", after - before);
        });
    })
    .expect("enter")
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}
