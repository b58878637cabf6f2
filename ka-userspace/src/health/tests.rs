//! Runtime tests on loopback: real sockets, small servers of ours, real timers.

use std::{net::SocketAddr, path::Path, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

use super::*;

fn config(text: &str) -> Config {
    let loaded = crate::config::parse_str(text, Path::new("test.conf"), &crate::config::LoadOptions::default());
    let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.severity == crate::config::Severity::Error).collect();
    assert!(errors.is_empty(), "config errors: {errors:?}");
    loaded.config
}

/// Waits (on watch changes, bounded by `timeout`) until `pred` holds for the backend set.
async fn wait_set(rx: &mut watch::Receiver<BackendSet>, what: &str, timeout: Duration, pred: impl Fn(&BackendSet) -> bool) -> Duration {
    let start = Instant::now();
    let ok = matches!(tokio::time::timeout(timeout, rx.wait_for(|s| pred(s))).await, Ok(Ok(_)));
    assert!(ok, "timed out after {timeout:?} waiting for {what}: {:?}", rx.borrow());
    start.elapsed()
}

fn serving(s: &BackendSet, vs: usize) -> Vec<SocketAddr> {
    s.services[vs].serving().map(|b| SocketAddr::new(b.addr, b.port)).collect()
}

/// A TCP_CHECKed server that stops listening leaves the set within
/// `delay_loop + (retry + 1) × connect_timeout + retry × delay_before_retry`, and comes back
/// when it listens again; `ka status` data shows the reason, latency and counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_down_and_up() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let accept = tokio::spawn(async move {
        loop {
            let _ = l.accept().await;
        }
    });
    let cfg = config(&format!(
        "virtual_server 127.0.0.1 80 {{\n protocol TCP\n delay_loop 0.2\n real_server 127.0.0.1 {} {{\n  TCP_CHECK {{\n   connect_timeout 0.5\n   retry 1\n   delay_before_retry 0.1\n   warmup 0\n  }}\n }}\n}}\n",
        addr.port()
    ));
    let h = start(&cfg, HealthOptions::default()).expect("start");
    let mut rx = h.backends();
    assert_eq!(serving(&rx.borrow(), 0), vec![addr], "up at start (no alpha)");
    accept.abort();
    let _ = accept.await;
    let took = wait_set(&mut rx, "server down", Duration::from_secs(3), |s| serving(s, 0).is_empty()).await;
    assert!(took <= Duration::from_millis(200 + 1000 + 100 + 500), "took {took:?}");
    let r = h.status().await;
    let rs = &r.real_servers[0];
    assert_eq!((rs.state.as_str(), rs.weight, rs.in_table), ("down", 0, false));
    let last = rs.last_check.as_ref().expect("last check");
    assert!(!last.ok && last.reason.contains("refused"), "{last:?}");
    assert!(r.checks["TCP_CHECK"] >= 2 && r.failures["total"] >= 2, "{:?}", r.checks);
    assert!(r.to_text().contains("down weight 0/1"), "{}", r.to_text());

    let l = TcpListener::bind(addr).await.expect("rebind");
    let accept = tokio::spawn(async move {
        loop {
            let _ = l.accept().await;
        }
    });
    wait_set(&mut rx, "server back", Duration::from_secs(3), |s| serving(s, 0) == vec![addr]).await;
    let r = h.status().await;
    assert_eq!(r.real_servers[0].state, "up");
    assert!(r.real_servers[0].last_check.as_ref().is_some_and(|c| c.ok && c.reason == "connected"));
    h.shutdown().await;
    accept.abort();
}

/// An adopted start seeds each real server's health from the earlier run's maps: an `alpha`
/// server that was serving is in the very first set (without the seed it starts down), and
/// one that was down starts down even without `alpha`; servers not seeded start as `alpha`
/// says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopted_start_seeds_initial_health() {
    let cfg = config(
        "virtual_server 127.0.0.1 80 {\n protocol TCP\n delay_loop 60\n\
         real_server 127.0.0.2 80 {\n  TCP_CHECK {\n   alpha\n   warmup 60\n  }\n }\n\
         real_server 127.0.0.3 80 {\n  TCP_CHECK {\n   warmup 60\n  }\n }\n\
         real_server 127.0.0.4 80 {\n  TCP_CHECK {\n   alpha\n   warmup 60\n  }\n }\n}\n",
    );
    let ip = |last: u8| SocketAddr::from(([127, 0, 0, last], 80));
    let h = start(&cfg, HealthOptions::default()).expect("start");
    assert_eq!(serving(&h.backends().borrow(), 0), vec![ip(3)], "alpha servers start down");
    h.shutdown().await;
    let initial = std::collections::HashMap::from([((0, 0), true), ((0, 1), false)]);
    let h = start(&cfg, HealthOptions { initial, ..Default::default() }).expect("start");
    assert_eq!(serving(&h.backends().borrow(), 0), vec![ip(2)], "seeded: .2 up despite alpha, .3 down, .4 as alpha says");
    let r = h.status().await;
    assert_eq!(r.real_servers.iter().map(|r| r.state.as_str()).collect::<Vec<_>>(), ["up", "down", "down"]);
    h.shutdown().await;
}

/// Serves `response` (raw bytes, written slowly when `drip`) to every connection.
async fn raw_server(response: Vec<u8>, drip: Option<Duration>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            let response = response.clone();
            tokio::spawn(async move {
                let mut req = [0u8; 4096];
                let _ = s.read(&mut req).await;
                match drip {
                    None => {
                        let _ = s.write_all(&response).await;
                    }
                    Some(d) => {
                        for b in response.iter().cycle() {
                            if s.write_all(&[*b]).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(d).await;
                        }
                    }
                }
            });
        }
    });
    (addr, task)
}

fn http_response(status: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
    r.extend_from_slice(body);
    r
}

fn http_probe(addr: SocketAddr, url_block: &str, timeout: &str) -> Probe {
    let cfg = config(&format!(
        "virtual_server 127.0.0.1 80 {{\n protocol TCP\n real_server {} {} {{\n  HTTP_GET {{\n   connect_timeout {timeout}\n   url {{\n{url_block}\n   }}\n  }}\n }}\n}}\n",
        addr.ip(),
        addr.port()
    ));
    let rs = &cfg.virtual_servers[0].real_servers[0];
    Probe::build(&rs.checkers[0], rs, &cfg, &BuildContext::default())
}

/// HTTP_GET: status ranges, digest (MD5 of the body) and regex; and the bad inputs
/// (garbage, a huge body, a slowloris drip) fail with a clear reason within the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_checks_and_bad_servers() {
    let (ok, _t1) = raw_server(http_response("200 OK", b"hello\n"), None).await;
    let p = http_probe(ok, "path /\n digest b1946ac92492d2347c6235b4d2611184\n regex \"hel+o\"", "10");
    assert_eq!(p.run().await.expect("up").detail, "HTTP / 200");
    let p = http_probe(ok, "path /\n digest 00000000000000000000000000000000", "10");
    let e = p.run().await.expect_err("digest");
    assert!(e.to_string().contains("digest b1946ac92492d2347c6235b4d2611184"), "{e}");
    let p = http_probe(ok, "path /\n status_code 300-399", "10");
    assert!(p.run().await.expect_err("status").to_string().contains("HTTP status 200 not in 300-399"));

    let (not_found, _t2) = raw_server(http_response("404 Not Found", b"no"), None).await;
    let p = http_probe(not_found, "path /missing\n status_code 404", "10");
    assert!(p.run().await.is_ok());
    let p = http_probe(not_found, "path /missing", "10");
    assert!(p.run().await.expect_err("404").to_string().contains("404"));

    let (garbage, _t3) = raw_server(b"\x16\x03\x01garbage that is not HTTP\r\n\r\n".to_vec(), None).await;
    let e = http_probe(garbage, "path /", "10").run().await.expect_err("garbage");
    assert!(e.to_string().contains("invalid HTTP response"), "{e}");

    let mut huge = b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'x', checkers::http::MAX_BODY + 65536));
    let (huge, _t4) = raw_server(huge, None).await;
    let e = http_probe(huge, "path /", "5").run().await.expect_err("huge");
    assert!(e.to_string().contains("larger than"), "{e}");

    let (drip, _t5) = raw_server(http_response("200 OK", b"slow"), Some(Duration::from_millis(50))).await;
    let start = Instant::now();
    let e = http_probe(drip, "path /", "0.5").run().await.expect_err("slowloris");
    assert!(e.to_string().starts_with("timed out after 500ms"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

/// Quorum, sorry server and inhibit_on_failure end to end: with both servers refused, the
/// sorry server takes over; the inhibited server stays at weight 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorry_server_and_inhibit() {
    let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let cfg = config(&format!(
        "virtual_server 127.0.0.1 80 {{\n protocol TCP\n delay_loop 0.2\n sorry_server 127.0.0.9 80\n \
         real_server 127.0.0.1 {port} {{\n  inhibit_on_failure\n  TCP_CHECK {{\n   retry 0\n   warmup 0\n  }}\n }}\n \
         real_server 127.0.0.2 {port} {{\n  TCP_CHECK {{\n   retry 0\n   warmup 0\n  }}\n }}\n}}\n"
    ));
    let h = start(&cfg, HealthOptions::default()).expect("start");
    let mut rx = h.backends();
    wait_set(&mut rx, "sorry server", Duration::from_secs(3), |s| s.services[0].active == ActiveSet::SorryServer).await;
    let s = rx.borrow().clone();
    let svc = &s.services[0];
    assert!(!svc.quorum_up);
    let entries: Vec<_> = svc.backends.iter().map(|b| (b.role, b.weight)).collect();
    assert_eq!(entries, vec![(BackendRole::Real { index: 0 }, 0), (BackendRole::Sorry, 1)]);
    let r = h.status().await;
    assert_eq!(r.real_servers.last().map(|r| r.state.as_str()), Some("active"));
    drop(h);
}

/// Checks done so far by the first checker of service `vs`.
async fn checks_of(h: &HealthHandle, vs: usize) -> u64 {
    h.status().await.real_servers.iter().find(|r| r.vs_index == vs).and_then(|r| r.checkers.first()).map_or(0, |c| c.checks)
}

/// Polls (every 10 ms, bounded) until `pred` holds for the report.
async fn wait_report(h: &HealthHandle, what: &str, timeout: Duration, pred: impl Fn(&HealthReport) -> bool) -> HealthReport {
    let start = Instant::now();
    loop {
        let r = h.status().await;
        if pred(&r) {
            return r;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}: {}", r.to_text());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// ha_suspend follows the VRRP instance that holds each service's address, not "any
/// instance": VI_A's service is checked only while VI_A is MASTER, VI_B's only while VI_B is,
/// and a service whose address no instance holds is never suspended (it is the clock here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_suspend_follows_the_owning_instance() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let accept = tokio::spawn(async move {
        loop {
            let _ = l.accept().await;
        }
    });
    let vs = |addr: &str| {
        format!(
            "virtual_server {addr} 80 {{\n protocol TCP\n delay_loop 0.05\n ha_suspend\n real_server 127.0.0.1 {port} {{\n  TCP_CHECK {{\n   connect_timeout 1\n   warmup 0\n  }}\n }}\n}}\n"
        )
    };
    let cfg = config(&format!(
        "vrrp_instance VI_A {{\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {{\n 198.18.0.10\n }}\n}}\n\
         vrrp_instance VI_B {{\n interface eth0\n virtual_router_id 2\n virtual_ipaddress {{\n 198.18.0.20\n }}\n}}\n{}{}{}",
        vs("198.18.0.10"),
        vs("198.18.0.20"),
        vs("198.18.0.30")
    ));
    let h = start(&cfg, HealthOptions { master: false, ..Default::default() }).expect("start");
    let t = Duration::from_secs(5);
    let r = wait_report(&h, "the unowned service checked", t, |r| r.real_servers[2].checkers[0].checks >= 5).await;
    assert_eq!((r.real_servers[0].checkers[0].checks, r.real_servers[1].checkers[0].checks), (0, 0), "no MASTER: owned services not checked");
    assert_eq!(r.suspended_services, vec!["198.18.0.10:80", "198.18.0.20:80"]);

    h.set_master("VI_A", true);
    let r = wait_report(&h, "VI_A's service checked", t, |r| r.real_servers[0].checkers[0].checks >= 3).await;
    assert_eq!(r.real_servers[1].checkers[0].checks, 0, "VI_B is not MASTER: its service stays suspended");
    assert_eq!(r.suspended_services, vec!["198.18.0.20:80"]);

    h.set_master("VI_A", false);
    wait_report(&h, "VI_A suspended", t, |r| r.suspended_services.len() == 2).await;
    let (a, clock) = (checks_of(&h, 0).await, checks_of(&h, 2).await);
    wait_report(&h, "10 more checks of the unowned service", t, |r| r.real_servers[2].checkers[0].checks >= clock + 10).await;
    let a2 = checks_of(&h, 0).await;
    assert!(a2 <= a + 1, "VI_A left MASTER: its checks stop (at most one in flight finishes): {a} -> {a2}");

    h.set_master("VI_B", true);
    wait_report(&h, "VI_B's service checked", t, |r| r.real_servers[1].checkers[0].checks >= 3).await;
    h.set_master("VI_A", true);
    wait_report(&h, "VI_A's service resumes", t, |r| r.real_servers[0].checkers[0].checks >= a2 + 3 && r.suspended_services.is_empty()).await;
    h.shutdown().await;
    accept.abort();
}

/// An HTTP server that records the head of every request (request line and headers, lower
/// cased names) and answers 200.
async fn recording_server() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<Vec<String>>>>, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h2 = heads.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            let heads = h2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buf).into_owned();
                let lines: Vec<String> = text.split("\r\n").take_while(|l| !l.is_empty()).map(str::to_owned).collect();
                heads.lock().expect("lock").push(lines);
                let _ = s.write_all(&http_response("200 OK", b"ok")).await;
            });
        }
    });
    (addr, heads, task)
}

/// The header `name` (case-insensitive) of a recorded request head.
fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
}

/// One case of [`http_request_line_and_host_chain`]: virtualhost lines at the virtual_server,
/// real_server, checker and url levels; the expected request line, Connection and Host.
type HostCase = (&'static str, &'static str, &'static str, &'static str, &'static str, Option<&'static str>, String);

/// keepalived's request: HTTP/1.0 without `Connection` by default, `1.0C` adds
/// `Connection: close`, `1.1` is HTTP/1.1 with it; the Host is the first virtualhost of url >
/// checker > real_server > virtual_server, else the target's `ADDR:PORT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_line_and_host_chain() {
    let (addr, heads, _srv) = recording_server().await;
    let port = addr.port();
    let run = |vs_vh: &str, rs_vh: &str, ck: &str, url_vh: &str| {
        let cfg = config(&format!(
            "virtual_server 127.0.0.1 80 {{\n protocol TCP\n {vs_vh}\n real_server 127.0.0.1 {port} {{\n  {rs_vh}\n  HTTP_GET {{\n   connect_timeout 5\n   {ck}\n   url {{\n    path /probe\n    {url_vh}\n   }}\n  }}\n }}\n}}\n"
        ));
        let rs = &cfg.virtual_servers[0].real_servers[0];
        Probe::build(&rs.checkers[0], rs, &cfg, &BuildContext::default())
    };
    let cases: [HostCase; 8] = [
        ("", "", "", "", "GET /probe HTTP/1.0", None, format!("127.0.0.1:{port}")),
        ("", "", "http_protocol 1.0", "", "GET /probe HTTP/1.0", None, format!("127.0.0.1:{port}")),
        ("", "", "http_protocol 1.0C", "", "GET /probe HTTP/1.0", Some("close"), format!("127.0.0.1:{port}")),
        ("", "", "http_protocol 1.1", "", "GET /probe HTTP/1.1", Some("close"), format!("127.0.0.1:{port}")),
        ("virtualhost vs.test", "", "", "", "GET /probe HTTP/1.0", None, "vs.test".into()),
        ("virtualhost vs.test", "virtualhost rs.test", "", "", "GET /probe HTTP/1.0", None, "rs.test".into()),
        ("virtualhost vs.test", "virtualhost rs.test", "virtualhost ck.test", "", "GET /probe HTTP/1.0", None, "ck.test".into()),
        ("virtualhost vs.test", "virtualhost rs.test", "virtualhost ck.test", "virtualhost url.test", "GET /probe HTTP/1.0", None, "url.test".into()),
    ];
    for (vs_vh, rs_vh, ck, url_vh, line, connection, host) in &cases {
        heads.lock().expect("lock").clear();
        let p = run(vs_vh, rs_vh, ck, url_vh);
        p.run().await.unwrap_or_else(|e| panic!("{vs_vh}/{rs_vh}/{ck}/{url_vh}: {e}"));
        let head = heads.lock().expect("lock").pop().expect("a request");
        let what = format!("case {vs_vh:?} {rs_vh:?} {ck:?} {url_vh:?}: {head:?}");
        assert_eq!(head[0], *line, "{what}");
        assert_eq!(header(&head, "host"), Some(host.as_str()), "{what}");
        assert_eq!(header(&head, "connection"), *connection, "{what}");
        assert_eq!(header(&head, "user-agent"), Some("KeepAliveClient"), "{what}");
    }
}

/// A scratch directory removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ka-health-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    /// Writes an executable `/bin/sh` script.
    fn script(&self, name: &str, body: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        p.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls (bounded) until `path` holds exactly the lines `want`, in any order (scripts started
/// together run concurrently).
async fn wait_lines(path: &Path, want: &[&str], timeout: Duration) {
    let start = Instant::now();
    let mut want = want.to_vec();
    want.sort_unstable();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        if lines == want {
            return;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?}: {} holds {lines:?}, want {want:?}", path.display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Accepts (and drops) connections until aborted.
fn listen_on(l: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let _ = l.accept().await;
        }
    })
}

/// notify_down/quorum_down really run when the only real server fails, notify_up/quorum_up
/// when it recovers (each writes a marker line); nothing runs for the start-up state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_and_quorum_scripts_run() {
    let dir = TempDir::new("scripts");
    let log = dir.0.join("log");
    let mark = dir.script("mark.sh", &format!("echo \"$1\" >> {}", log.display()));
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let accept = listen_on(l);
    let cfg = config(&format!(
        "virtual_server 127.0.0.1 80 {{\n protocol TCP\n delay_loop 0.1\n quorum 1\n quorum_up \"{mark} quorum_up\"\n quorum_down \"{mark} quorum_down\"\n\
         real_server 127.0.0.1 {} {{\n  notify_up \"{mark} notify_up\"\n  notify_down \"{mark} notify_down\"\n  TCP_CHECK {{\n   retry 0\n   warmup 0\n   connect_timeout 1\n  }}\n }}\n}}\n",
        addr.port()
    ));
    let h = start(&cfg, HealthOptions::default()).expect("start");
    let mut rx = h.backends();
    wait_report(&h, "a few passing checks", Duration::from_secs(5), |r| r.checks.get("total").copied().unwrap_or(0) >= 3).await;
    assert!(!log.exists(), "no script for the start-up state: {:?}", std::fs::read_to_string(&log));
    accept.abort();
    let _ = accept.await;
    wait_set(&mut rx, "server down", Duration::from_secs(5), |s| serving(s, 0).is_empty()).await;
    wait_lines(&log, &["notify_down", "quorum_down"], Duration::from_secs(5)).await;
    let accept = listen_on(TcpListener::bind(addr).await.expect("rebind"));
    wait_set(&mut rx, "server back", Duration::from_secs(5), |s| serving(s, 0) == vec![addr]).await;
    wait_lines(&log, &["notify_down", "quorum_down", "notify_up", "quorum_up"], Duration::from_secs(5)).await;
    h.shutdown().await;
    accept.abort();
}

/// Processes whose command line contains `needle`.
fn pgrep(needle: &str) -> Vec<String> {
    let out = std::process::Command::new("pgrep").args(["-f", needle]).output().expect("pgrep");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// A notify_down script that hangs (a shell waiting on a child `sleep`) is killed with its
/// whole process group at the script timeout: no process is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_notify_script_is_bounded() {
    let dir = TempDir::new("hung");
    let needle = format!("617.{}", std::process::id());
    let hang = dir.script("hang.sh", &format!("sleep {needle}\nexit 0"));
    let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let cfg = config(&format!(
        "virtual_server 127.0.0.1 80 {{\n protocol TCP\n delay_loop 0.2\n real_server 127.0.0.1 {port} {{\n  notify_down {hang}\n  TCP_CHECK {{\n   retry 0\n   warmup 0\n  }}\n }}\n}}\n"
    ));
    let timeout = Duration::from_millis(500);
    let h = start(&cfg, HealthOptions { script_timeout: timeout, ..Default::default() }).expect("start");
    let start_wait = Instant::now();
    loop {
        if !pgrep(&needle).is_empty() {
            break;
        }
        assert!(start_wait.elapsed() < Duration::from_secs(5), "the hung notify_down script never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    loop {
        let left = pgrep(&needle);
        if left.is_empty() {
            break;
        }
        assert!(started.elapsed() < timeout + Duration::from_secs(2), "processes left after the script timeout: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.shutdown().await;
}

/// A loopback SMTP server (the one of `notify::smtp`'s test, serving any number of
/// sessions): each session's transcript is sent on the channel.
async fn smtp_sink() -> (u16, mpsc::UnboundedReceiver<String>, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncBufReadExt as _;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { return };
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut lines = tokio::io::BufReader::new(r).lines();
                let mut transcript = Vec::new();
                if w.write_all(b"220 test ESMTP\r\n").await.is_err() {
                    return;
                }
                let mut in_data = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    transcript.push(line.clone());
                    if in_data {
                        if line == "." {
                            in_data = false;
                            let _ = w.write_all(b"250 queued\r\n").await;
                        }
                        continue;
                    }
                    let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 test\r\n",
                        "DATA" => {
                            in_data = true;
                            b"354 go\r\n"
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    if w.write_all(reply).await.is_err() {
                        break;
                    }
                }
                let _ = tx.send(transcript.join("\n"));
            });
        }
    });
    (port, rx, task)
}

/// A transcript with folded headers unfolded and the quoted-printable body decoded (enough
/// for ASCII text).
fn readable(transcript: &str) -> String {
    transcript.replace("\n ", " ").replace("=\n", "").replace("=3D", "=")
}

/// Checker smtp_alert end to end: with global `smtp_alert_checker`, a real server without its
/// own `smtp_alert` mails keepalived's DOWN and UP alerts (subject and reason) to the
/// configured SMTP server; one with `smtp_alert off` mails nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checker_smtp_alerts_reach_the_smtp_server() {
    let (smtp_port, mut mails, _sink) = smtp_sink().await;
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let accept = listen_on(l);
    let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead_port = dead.local_addr().expect("addr").port();
    drop(dead);
    let cfg = config(&format!(
        "global_defs {{\n router_id lb1\n notification_email {{\n ops@example.invalid\n }}\n notification_email_from ka@example.invalid\n \
         smtp_server 127.0.0.1 {smtp_port}\n smtp_connect_timeout 5\n smtp_alert_checker on\n}}\n\
         virtual_server 127.0.0.1 80 {{\n protocol TCP\n delay_loop 0.1\n\
         real_server 127.0.0.1 {} {{\n  TCP_CHECK {{\n   retry 0\n   warmup 0\n  }}\n }}\n\
         real_server 127.0.0.1 {dead_port} {{\n  smtp_alert off\n  TCP_CHECK {{\n   retry 0\n   warmup 0\n  }}\n }}\n}}\n",
        addr.port()
    ));
    let h = start(&cfg, HealthOptions::default()).expect("start");
    let mut rx = h.backends();
    wait_set(&mut rx, "the smtp_alert-off server down", Duration::from_secs(5), |s| serving(s, 0) == vec![addr]).await;
    accept.abort();
    let _ = accept.await;
    let down = readable(&tokio::time::timeout(Duration::from_secs(10), mails.recv()).await.expect("no DOWN alert").expect("sink"));
    let want = format!("Subject: [lb1] Realserver [127.0.0.1]:{} of virtual server [127.0.0.1]:80 - DOWN", addr.port());
    assert!(down.contains(&want), "{want:?} not in\n{down}");
    assert!(down.contains("MAIL FROM:<ka@example.invalid>") && down.contains("RCPT TO:<ops@example.invalid>"), "{down}");
    // The listener is gone: the failed check says so, refused (or reset, for a connection
    // the dying listener had already queued).
    let reason = format!("=> CHECK failed on service : connect to 127.0.0.1:{}: Connection ", addr.port());
    assert!(
        down.contains(&reason) && (down.contains("refused") || down.contains("reset")),
        "the reason is in the body:\n{down}"
    );
    let _accept = listen_on(TcpListener::bind(addr).await.expect("rebind"));
    let up = readable(&tokio::time::timeout(Duration::from_secs(10), mails.recv()).await.expect("no UP alert").expect("sink"));
    assert!(up.contains(&format!("Realserver [127.0.0.1]:{} of virtual server [127.0.0.1]:80 - UP", addr.port())), "{up}");
    assert!(mails.try_recv().is_err(), "the smtp_alert-off server sent an alert");
    h.shutdown().await;
}

/// keepalived's resolution of a real server's `smtp_alert`: its own, else global
/// `smtp_alert_checker`, else global `smtp_alert`, else yes.
#[test]
fn real_server_smtp_alert_defaults_as_keepalived() {
    use super::rs_smtp_alert;
    let cases: [(Option<bool>, Option<bool>, Option<bool>, bool); 6] = [
        (None, None, None, true),
        (Some(false), None, None, false),
        (None, Some(false), Some(true), false),
        (None, None, Some(false), false),
        (Some(true), Some(false), Some(false), true),
        (None, Some(true), Some(false), true),
    ];
    for (own, checker, global, want) in cases {
        assert_eq!(rs_smtp_alert(own, checker, global), want, "own {own:?}, smtp_alert_checker {checker:?}, smtp_alert {global:?}");
    }
}

/// A BFD_CHECK follows its session's reports at once (delay_loop is 60 s: no check loop does
/// it): a server that starts up (no alpha) leaves while the session is down, comes back when
/// it is up, and leaves again when it goes down; the reason names the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bfd_check_follows_the_session() {
    let cfg = config(
        "bfd_instance b1 {\n neighbor_ip 127.0.0.9\n}\n\
         virtual_server 127.0.0.1 80 {\n protocol TCP\n delay_loop 60\n real_server 127.0.0.2 80 {\n  BFD_CHECK {\n   name b1\n  }\n }\n}\n",
    );
    let states = |up: bool| crate::bfd::io::ClientStates::from([("b1".to_owned(), up)]);
    let (tx, rx) = watch::channel(states(false));
    let h = start(&cfg, HealthOptions { bfd: Some(rx), ..Default::default() }).expect("start");
    let mut set = h.backends();
    let rs = SocketAddr::from(([127, 0, 0, 2], 80));
    wait_set(&mut set, "out while the session is down", Duration::from_secs(2), |s| serving(s, 0).is_empty()).await;
    tx.send_replace(states(true));
    wait_set(&mut set, "in once it is up", Duration::from_secs(2), |s| serving(s, 0) == vec![rs]).await;
    tx.send_replace(states(false));
    wait_set(&mut set, "out when it goes down", Duration::from_secs(2), |s| serving(s, 0).is_empty()).await;
    let r = h.status().await;
    let last = r.real_servers[0].last_check.as_ref().expect("last check");
    assert_eq!((last.ok, last.reason.as_str()), (false, "BFD b1 is down"));
    assert_eq!(r.real_servers[0].checkers[0].kind, "BFD_CHECK");
    h.shutdown().await;
}
