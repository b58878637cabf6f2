//! Health checkers against real servers in network namespaces: nginx (HTTP_GET, SSL_GET with a
//! test CA and with a wrong certificate, TCP_CHECK), dnsmasq (DNS_CHECK), and small servers of
//! ours where the protocol needs control (SMTP greeting, UDP replies), plus MISC_CHECK exit
//! codes and PING_CHECK against a namespace that drops pings.
//!
//! `ka::health` runs inside the load balancer's namespace; each test makes a server stop
//! answering (an nftables drop rule in the server namespace: packets vanish, nothing is
//! refused), asserts it leaves the published backend set within [`LEAVE_BOUND`], that no
//! new flows may reach it (it is not among the serving backends), that `ka status` data
//! says why, and that it comes back when the rule goes. (`tests/health_xdp.rs` does the same
//! through `ka run` and the XDP maps.)
//!
//! The bound is `delay_loop + (retry + 1) × connect_timeout + retry × delay_before_retry`
//! plus a small margin: the issue's `retry × (connect_timeout + delay_before_retry)` leaves
//! out the wait for the next scheduled check (up to `delay_loop` after the cut) and the first
//! failed attempt (a silent server fails an attempt only when `connect_timeout` runs out);
//! each retry then waits `delay_before_retry` after its failed attempt ends, as in keepalived.
//! The margin covers publishing the set and this test's 20 ms polling.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use ka::health::{BackendSet, HealthOptions, HealthReport};
use ka_tests::{
    netns::{veth, Netns},
    require_root,
};

const LB: &str = "198.18.10.1";
const SRV: &str = "198.18.10.2";
const LB6: &str = "fd00:198:18:10::1";
const SRV6: &str = "fd00:198:18:10::2";

/// Timing of every checker in these tests, and the bound a dead server must leave within.
const TIMING: &str = "delay_loop 1\n connect_timeout 1\n retry 1\n delay_before_retry 1\n warmup 0\n";
/// `delay_loop + (retry + 1) × connect_timeout + retry × delay_before_retry` of [`TIMING`],
/// `1 s + 2 × 1 s + 1 × 1 s = 4 s`, plus 500 ms of margin.
const LEAVE_BOUND: Duration = Duration::from_millis(4_500);

fn require_bin(bin: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")]).any(|d| d.join(bin).exists()))
        .unwrap_or(false);
    assert!(found, "{bin} is missing: install the Debian package {package} (`cargo xtask setup` does)");
}

/// Two namespaces joined by a veth: the load balancer's and the servers'.
struct Lab {
    srv: Netns,
    lb: Netns,
    dir: PathBuf,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        require_root();
        require_bin("nft", "nftables");
        let lb = Netns::new("hl").expect("netns lb");
        let srv = Netns::new("hs").expect("netns srv");
        veth(&lb, "lb0", &[&format!("{LB}/24"), &format!("{LB6}/64")], &srv, "srv0", &[&format!("{SRV}/24"), &format!("{SRV6}/64")]).expect("veth");
        let dir = std::env::temp_dir().join(format!("ka-health-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        srv.run(&["nft", "add", "table", "inet", "katest"]).expect("nft table");
        srv.run(&["nft", "add", "chain", "inet", "katest", "in", "{ type filter hook input priority 0 ; policy accept ; }"]).expect("nft chain");
        Lab { srv, lb, dir }
    }

    /// Drops matching packets arriving at the server namespace (`rule`: nft match words).
    fn drop_rule(&self, rule: &str) {
        let mut args = vec!["nft", "add", "rule", "inet", "katest", "in"];
        args.extend(rule.split_whitespace());
        args.push("drop");
        self.srv.run(&args).expect("nft add rule");
    }

    fn clear_rules(&self) {
        self.srv.run(&["nft", "flush", "chain", "inet", "katest", "in"]).expect("nft flush");
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    /// Runs `body` with `ka::health` started from `conf` inside the lb namespace.
    fn with_health<T: Send + 'static>(&self, conf: &str, body: impl FnOnce(&Health) -> T + Send + 'static) -> T {
        let loaded = ka::config::parse_str(conf, Path::new("health.conf"), &ka::config::LoadOptions::default());
        let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.severity == ka::config::Severity::Error).map(|d| format!("{d:?}")).collect();
        assert!(errors.is_empty(), "config errors: {errors:?}");
        let cfg = loaded.config;
        self.lb
            .enter(move || {
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
                let handle = rt.block_on(async { ka::health::start(&cfg, HealthOptions::default()).expect("health start") });
                let h = Health { rt, handle: Some(handle) };
                let out = body(&h);
                let mut h = h;
                if let Some(handle) = h.handle.take() {
                    h.rt.block_on(handle.shutdown());
                }
                out
            })
            .expect("enter lb")
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The running health subsystem, driven from the test thread.
struct Health {
    rt: tokio::runtime::Runtime,
    handle: Option<ka::health::HealthHandle>,
}

impl Health {
    fn set(&self) -> BackendSet {
        self.handle.as_ref().expect("handle").backends().borrow().clone()
    }

    fn status(&self) -> HealthReport {
        let h = self.handle.as_ref().expect("handle");
        self.rt.block_on(h.status())
    }

    /// Polls the backend set (every 20 ms) until `pred` holds; returns how long it took.
    fn wait(&self, what: &str, timeout: Duration, pred: impl Fn(&BackendSet) -> bool) -> Duration {
        let start = Instant::now();
        ka_tests::wait_for(what, timeout, || pred(&self.set()).then_some(()));
        start.elapsed()
    }

    /// Whether real server `rs` of service `vs` may take new flows.
    fn serving(&self, vs: usize, rs: usize) -> bool {
        serving(&self.set(), vs, rs)
    }

    /// The last check reason of real server `rs` of service `vs`.
    fn reason(&self, vs: usize, rs: usize) -> String {
        let r = self.status();
        let rs = r.real_servers.iter().find(|x| x.vs_index == vs && x.rs_index == Some(rs)).expect("real server in report");
        rs.last_check.as_ref().map(|c| c.reason.clone()).unwrap_or_default()
    }

    /// Asserts server `rs` leaves within [`LEAVE_BOUND`] after `cut` and comes back after `heal`.
    fn down_and_back(&self, vs: usize, rs: usize, cut: impl FnOnce(), heal: impl FnOnce(), reason_has: &str) {
        self.wait("server up before the cut", Duration::from_secs(10), |s| serving(s, vs, rs));
        cut();
        let took = self.wait("server leaves the backend set", LEAVE_BOUND + Duration::from_secs(2), |s| !serving(s, vs, rs));
        assert!(took <= LEAVE_BOUND, "server {vs}/{rs} left after {took:?}, bound {LEAVE_BOUND:?}");
        let status = self.status();
        let r = status.real_servers.iter().find(|x| x.vs_index == vs && x.rs_index == Some(rs)).expect("report");
        assert_eq!((r.state.as_str(), r.weight), ("down", 0), "{}", status.to_text());
        let reason = self.reason(vs, rs);
        assert!(reason.contains(reason_has), "reason {reason:?} lacks {reason_has:?}");
        heal();
        self.wait("server comes back", Duration::from_secs(10), |s| serving(s, vs, rs));
        assert_eq!(self.status().real_servers.iter().find(|x| x.vs_index == vs && x.rs_index == Some(rs)).map(|r| r.state.clone()).as_deref(), Some("up"));
    }
}

fn serving(s: &BackendSet, vs: usize, rs: usize) -> bool {
    s.services[vs].serving().any(|b| b.role == ka::health::BackendRole::Real { index: rs })
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(ns: &Netns, proto: &str, port: u16) {
    let flag = if proto == "udp" { "-lnu" } else { "-lnt" };
    ka_tests::wait_for(&format!("{proto} port {port} listening"), Duration::from_secs(10), || {
        ns.run(&["ss", "-H", flag, &format!("sport = :{port}")]).ok().filter(|o| !o.trim().is_empty())
    });
}

fn md5_hex(data: &[u8]) -> String {
    let mut c = Command::new("md5sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("md5sum");
    c.stdin.take().expect("stdin").write_all(data).expect("write");
    let out = c.wait_with_output().expect("md5sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("hash").to_owned()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a server certificate it signs, for 198.18.10.2 and www.test: `{tag}-ca.pem`,
/// `{tag}-srv.pem`, `{tag}-srv.key`.
fn make_ca(dir: &Path, tag: &str) {
    let (ca_key, ca, key, csr, crt) = (format!("{tag}-ca.key"), format!("{tag}-ca.pem"), format!("{tag}-srv.key"), format!("{tag}-srv.csr"), format!("{tag}-srv.pem"));
    openssl(dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &ca_key, "-out", &ca, "-days", "2", "-subj", &format!("/CN=ka test CA {tag}")]);
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", "/CN=www.test"]);
    std::fs::write(dir.join("ext.cnf"), format!("subjectAltName=IP:{SRV},DNS:www.test\n")).expect("ext");
    openssl(dir, &["x509", "-req", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key, "-CAcreateserial", "-out", &crt, "-days", "2", "-extfile", "ext.cnf"]);
}

/// nginx in the server namespace: HTTP on :80 (index + /missing → 404), HTTPS on :443 with
/// the good CA's certificate and on :8443 with the wrong CA's, and on :9443 only for SNI
/// `www.test` (a handshake without that SNI is rejected: `ssl_reject_handshake`).
fn start_nginx(lab: &Lab, index: &str) -> Proc {
    require_bin("nginx", "nginx-light");
    require_bin("openssl", "openssl");
    let d = lab.dir.display();
    std::fs::create_dir_all(lab.dir.join("www")).expect("www");
    std::fs::write(lab.dir.join("www/index.html"), index).expect("index");
    make_ca(&lab.dir, "good");
    make_ca(&lab.dir, "bad");
    let conf = lab.write(
        "nginx.conf",
        &format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 256; }}\nhttp {{\n access_log off;\n \
             client_body_temp_path {d}/cb; proxy_temp_path {d}/px; fastcgi_temp_path {d}/fc; uwsgi_temp_path {d}/uw; scgi_temp_path {d}/sc;\n \
             server {{ listen {SRV}:80; listen [{SRV6}]:80; root {d}/www; location = /missing {{ return 404; }} }}\n \
             server {{ listen {SRV}:443 ssl; root {d}/www; ssl_certificate {d}/good-srv.pem; ssl_certificate_key {d}/good-srv.key; }}\n \
             server {{ listen {SRV}:8443 ssl; root {d}/www; ssl_certificate {d}/bad-srv.pem; ssl_certificate_key {d}/bad-srv.key; }}\n \
             server {{ listen {SRV}:9443 ssl default_server; ssl_reject_handshake on; }}\n \
             server {{ listen {SRV}:9443 ssl; server_name www.test; root {d}/www; ssl_certificate {d}/good-srv.pem; ssl_certificate_key {d}/good-srv.key; }}\n}}\n"
        ),
    );
    let child = lab
        .srv
        .cmd("nginx")
        .args(["-c", &conf.display().to_string(), "-g", "daemon off; master_process off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nginx");
    let p = Proc(child);
    wait_port(&lab.srv, "tcp", 80);
    wait_port(&lab.srv, "tcp", 8443);
    wait_port(&lab.srv, "tcp", 9443);
    p
}

/// TCP_CHECK and HTTP_GET (status codes, digest, IPv6) against nginx: a server that stops
/// answering leaves within the bound and comes back.
#[test]
fn tcp_and_http_against_nginx() {
    let lab = Lab::new("http");
    let index = "hello from nginx\n";
    let _nginx = start_nginx(&lab, index);
    let digest = md5_hex(index.as_bytes());
    let conf = format!(
        "virtual_server 198.18.10.100 80 {{\n protocol TCP\n {TIMING}\n\
         real_server 198.18.10.11 80 {{\n  TCP_CHECK {{\n connect_ip {SRV}\n }}\n }}\n\
         real_server 198.18.10.12 80 {{\n  weight 3\n  HTTP_GET {{\n connect_ip {SRV}\n   url {{ path / \n digest {digest}\n }}\n   url {{ path /missing\n status_code 404\n }}\n  }}\n }}\n\
         real_server 198.18.10.13 80 {{\n  HTTP_GET {{\n connect_ip {SRV}\n   url {{ path /\n digest 0123456789abcdef0123456789abcdef\n }}\n  }}\n }}\n\
         }}\nvirtual_server fd00:198:18:10::100 80 {{\n protocol TCP\n {TIMING}\n\
         real_server {SRV6} 80 {{\n  HTTP_GET {{\n   url {{ path /missing\n }}\n  }}\n }}\n}}\n"
    );
    let lab = Arc::new(lab);
    let lab2 = lab.clone();
    let digest2 = digest.clone();
    lab.with_health(&conf, move |h| {
        h.wait("bad digest and 404 servers down", Duration::from_secs(10), |s| !serving(s, 0, 2) && !serving(s, 1, 0));
        assert!(h.reason(0, 2).contains(&format!("digest {digest2}")), "{}", h.reason(0, 2));
        assert!(h.reason(1, 0).contains("HTTP status 404"), "{}", h.reason(1, 0));
        let weight = h.set().services[0].backends.iter().find(|b| b.role == ka::health::BackendRole::Real { index: 1 }).map(|b| b.weight);
        assert_eq!(weight, Some(3));
        h.down_and_back(0, 0, || lab2.drop_rule("tcp dport 80"), || lab2.clear_rules(), "timed out");
        h.wait("http server up", Duration::from_secs(10), |s| serving(s, 0, 1));
        h.down_and_back(0, 1, || lab2.drop_rule("tcp dport 80"), || lab2.clear_rules(), "timed out");
        let r = h.status();
        assert!(r.checks["HTTP_GET"] > 0 && r.checks["TCP_CHECK"] > 0, "{:?}", r.checks);
        let text = r.to_text();
        assert!(text.contains("198.18.10.11:80: up weight 1/1") && text.contains("last check ok connected"), "{text}");
    });
}

/// SSL_GET with the test CA: the server with a certificate from the CA is up, the one with a
/// certificate from another CA is down with a certificate error. SNI: nginx on :9443 rejects
/// every handshake without SNI `www.test`, so the checker with `virtualhost www.test` and
/// `enable_sni` is up and the same checker without `enable_sni` is down.
#[test]
fn ssl_get_with_test_ca_and_wrong_certificate() {
    let lab = Lab::new("tls");
    let _nginx = start_nginx(&lab, "tls\n");
    let ca = lab.dir.join("good-ca.pem");
    let conf = format!(
        "SSL {{\n ca {}\n}}\nvirtual_server 198.18.10.100 443 {{\n protocol TCP\n {TIMING}\n\
         real_server 198.18.10.11 443 {{\n  SSL_GET {{\n connect_ip {SRV}\n   url {{ path / }}\n  }}\n }}\n\
         real_server 198.18.10.12 443 {{\n  SSL_GET {{\n connect_ip {SRV}\n connect_port 8443\n   url {{ path / }}\n  }}\n }}\n\
         real_server 198.18.10.13 443 {{\n  SSL_GET {{\n connect_ip {SRV}\n connect_port 9443\n   virtualhost www.test\n   enable_sni\n   url {{ path / }}\n  }}\n }}\n\
         real_server 198.18.10.14 443 {{\n  SSL_GET {{\n connect_ip {SRV}\n connect_port 9443\n   virtualhost www.test\n   url {{ path / }}\n  }}\n }}\n}}\n",
        ca.display()
    );
    let lab = Arc::new(lab);
    let lab2 = lab.clone();
    lab.with_health(&conf, move |h| {
        h.wait("wrong certificate down", Duration::from_secs(10), |s| !serving(s, 0, 1));
        let reason = h.reason(0, 1);
        assert!(reason.starts_with("TLS:") && reason.to_lowercase().contains("certificate"), "{reason}");
        h.wait("no SNI, handshake rejected", Duration::from_secs(10), |s| !serving(s, 0, 3));
        let reason = h.reason(0, 3);
        assert!(reason.starts_with("TLS:") && reason.contains("UnrecognisedName"), "without enable_sni: {reason}");
        assert!(h.serving(0, 2), "with enable_sni: {}", h.reason(0, 2));
        assert!(h.reason(0, 2).starts_with("HTTP / 200"), "with enable_sni: {}", h.reason(0, 2));
        h.down_and_back(0, 0, || lab2.drop_rule("tcp dport 443"), || lab2.clear_rules(), "timed out");
    });
}

/// DNS_CHECK against dnsmasq: an A record is found, a missing name is not; dropping DNS
/// takes the server down.
#[test]
fn dns_against_dnsmasq() {
    require_bin("dnsmasq", "dnsmasq-base");
    let lab = Lab::new("dns");
    let child = lab
        .srv
        .cmd("dnsmasq")
        .args(["--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces", &format!("--listen-address={SRV}"), "--port=53", "--host-record=www.test,198.18.10.50", "--pid-file=", "--user=root"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dnsmasq");
    let _dnsmasq = Proc(child);
    wait_port(&lab.srv, "udp", 53);
    let conf = format!(
        "virtual_server 198.18.10.100 53 {{\n protocol UDP\n {TIMING}\n\
         real_server 198.18.10.11 53 {{\n  DNS_CHECK {{\n connect_ip {SRV}\n   type A\n   name www.test\n  }}\n }}\n\
         real_server 198.18.10.12 53 {{\n  DNS_CHECK {{\n connect_ip {SRV}\n   type A\n   name nowhere.test\n  }}\n }}\n}}\n"
    );
    let lab = Arc::new(lab);
    let lab2 = lab.clone();
    lab.with_health(&conf, move |h| {
        h.wait("missing name down", Duration::from_secs(10), |s| !serving(s, 0, 1));
        assert!(h.reason(0, 0).contains("A record"), "{}", h.reason(0, 0));
        h.down_and_back(0, 0, || lab2.drop_rule("udp dport 53"), || lab2.clear_rules(), "timed out");
    });
}

/// A small SMTP server: greets with 220 (or 554 when `broken`), answers HELO with 250.
fn smtp_server(lab: &Lab, broken: Arc<AtomicBool>) {
    let l = lab.srv.enter(|| std::net::TcpListener::bind(format!("{SRV}:25")).expect("bind 25")).expect("enter").join().expect("join");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let broken = broken.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let greet: &[u8] = if broken.load(Ordering::Relaxed) { b"554 go away\r\n" } else { b"220-smtp.test ESMTP\r\n220 ready\r\n" };
                if s.write_all(greet).is_err() {
                    return;
                }
                let mut r = BufReader::new(s.try_clone().expect("clone"));
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let reply: &[u8] = if line.starts_with("HELO") { b"250 hello\r\n" } else { b"221 bye\r\n" };
                    let _ = s.write_all(reply);
                    if !line.starts_with("HELO") {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
}

/// A small UDP server: answers each datagram with `reply`.
fn udp_server(lab: &Lab, reply: &'static [u8]) {
    let s = lab.srv.enter(|| std::net::UdpSocket::bind(format!("{SRV}:9000")).expect("bind udp")).expect("enter").join().expect("join");
    std::thread::spawn(move || {
        let mut b = [0u8; 512];
        while let Ok((_, from)) = s.recv_from(&mut b) {
            let _ = s.send_to(reply, from);
        }
    });
}

/// SMTP greeting, UDP reply matching, MISC_CHECK exit codes (with misc_dynamic) and PING_CHECK
/// (IPv4 and IPv6) against a namespace that starts dropping pings.
#[test]
fn smtp_udp_misc_ping() {
    let lab = Lab::new("misc");
    let broken = Arc::new(AtomicBool::new(false));
    smtp_server(&lab, broken.clone());
    udp_server(&lab, b"pong");
    let code = lab.write("code", "0\n");
    let script = lab.write("check.sh", &format!("#!/bin/sh\nexit $(cat {})\n", code.display()));
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let conf = format!(
        "virtual_server 198.18.10.100 25 {{\n protocol TCP\n {TIMING}\n\
         real_server 198.18.10.11 25 {{\n  SMTP_CHECK {{\n connect_ip {SRV}\n   helo_name lb.test\n  }}\n }}\n\
         real_server 198.18.10.12 9000 {{\n  UDP_CHECK {{\n connect_ip {SRV}\n   payload 70696e67\n   require_reply\n   min_reply_length 4\n   max_reply_length 4\n  }}\n }}\n\
         real_server 198.18.10.13 9000 {{\n  UDP_CHECK {{\n connect_ip {SRV}\n   require_reply\n   min_reply_length 10\n  }}\n }}\n\
         real_server 198.18.10.14 25 {{\n  weight 5\n  MISC_CHECK {{\n   misc_path {}\n   misc_dynamic\n   misc_timeout 2\n  }}\n }}\n\
         real_server {SRV} 25 {{\n  PING_CHECK {{ }}\n }}\n}}\n\
         virtual_server fd00:198:18:10::100 25 {{\n protocol TCP\n {TIMING}\n\
         real_server {SRV6} 25 {{\n  PING_CHECK {{ }}\n }}\n}}\n",
        script.display()
    );
    let lab = Arc::new(lab);
    let lab2 = lab.clone();
    let code2 = code.clone();
    lab.with_health(&conf, move |h| {
        h.wait("short UDP reply down", Duration::from_secs(10), |s| !serving(s, 0, 2));
        assert!(h.reason(0, 2).contains("reply of 4 bytes"), "{}", h.reason(0, 2));
        assert!(h.reason(0, 0).starts_with("220"), "{}", h.reason(0, 0));
        // MISC: exit 12 with misc_dynamic → weight 10; exit 1 → down.
        std::fs::write(&code2, "12\n").expect("write");
        h.wait("dynamic weight 10", Duration::from_secs(10), |s| s.services[0].backends.iter().any(|b| b.role == ka::health::BackendRole::Real { index: 3 } && b.weight == 10));
        let c = code2.clone();
        h.down_and_back(0, 3, move || std::fs::write(&c, "1\n").expect("write"), || std::fs::write(&code2, "0\n").expect("write"), "exited with 1");
        let b = broken.clone();
        h.down_and_back(0, 0, move || b.store(true, Ordering::Relaxed), move || broken.store(false, Ordering::Relaxed), "greeting 554");
        h.down_and_back(0, 1, || lab2.drop_rule("udp dport 9000"), || lab2.clear_rules(), "timed out");
        h.down_and_back(0, 4, || lab2.drop_rule("icmp type echo-request"), || lab2.clear_rules(), "timed out");
        h.down_and_back(1, 0, || lab2.drop_rule("icmpv6 type echo-request"), || lab2.clear_rules(), "timed out");
        let r = h.status();
        for k in ["SMTP_CHECK", "UDP_CHECK", "MISC_CHECK", "PING_CHECK"] {
            assert!(r.checks.get(k).copied().unwrap_or(0) > 0, "no {k} counted: {:?}", r.checks);
        }
    });
}

/// Bad input: a TLS handshake that never ends and a server that answers garbage fail within
/// connect_timeout with a clear reason; checks never pile up file descriptors.
#[test]
fn bad_servers_fail_cleanly_without_leaks() {
    let lab = Lab::new("bad");
    let silent = lab.srv.enter(|| std::net::TcpListener::bind(format!("{SRV}:4443")).expect("bind")).expect("enter").join().expect("join");
    let garbage = lab.srv.enter(|| std::net::TcpListener::bind(format!("{SRV}:8080")).expect("bind")).expect("enter").join().expect("join");
    // Accept and hold connections without a word (a handshake that never ends).
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().flatten() {
            held.push(s);
            if held.len() > 64 {
                held.remove(0);
            }
        }
    });
    std::thread::spawn(move || {
        for mut s in garbage.incoming().flatten() {
            let mut b = [0u8; 512];
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let _ = s.read(&mut b);
            let _ = s.write_all(b"\x00\xffNOT HTTP AT ALL\r\n\r\n");
        }
    });
    let conf = format!(
        "virtual_server 198.18.10.100 443 {{\n protocol TCP\n delay_loop 0.3\n connect_timeout 0.5\n retry 0\n warmup 0\n\
         real_server {SRV} 4443 {{\n  SSL_GET {{\n   url {{ path / }}\n  }}\n }}\n\
         real_server {SRV} 8080 {{\n  HTTP_GET {{\n   url {{ path / }}\n  }}\n }}\n}}\n"
    );
    lab.with_health(&conf, move |h| {
        h.wait("both down", Duration::from_secs(5), |s| !serving(s, 0, 0) && !serving(s, 0, 1));
        assert!(h.reason(0, 0).contains("timed out after 500ms in the TLS handshake"), "{}", h.reason(0, 0));
        assert!(h.reason(0, 1).contains("invalid HTTP response"), "{}", h.reason(0, 1));
        // Sockets of the lb namespace that are not closed: at most one per checker in flight.
        let open = || {
            let out = Command::new("ss").args(["-H", "-tn", "state", "established", "state", "syn-sent", "src", LB]).output().expect("ss");
            String::from_utf8_lossy(&out.stdout).lines().count()
        };
        let checks = |h: &Health| h.status().checks.get("total").copied().unwrap_or(0);
        let n = checks(h);
        let mut most = 0;
        ka_tests::wait_for("20 more checks", Duration::from_secs(10), || {
            most = most.max(open());
            (checks(h) >= n + 20).then_some(())
        });
        assert!(most <= 2, "{most} sockets open at once for 2 checkers");
    });
}

/// The `SSL` block's client identity: nginx on :7443 requires a client certificate from the
/// client CA (`ssl_verify_client on`). SSL_GET with `certificate` and an encrypted PKCS#8 `key`
/// unlocked by `password` is up; with a wrong password the checker has no identity and fails,
/// saying why. On the old daemon `password` was ignored
/// and the encrypted key could not be read.
#[test]
fn ssl_get_client_certificate_with_encrypted_key() {
    let lab = Lab::new("tlsc");
    require_bin("nginx", "nginx-light");
    require_bin("openssl", "openssl");
    make_ca(&lab.dir, "srv");
    // The client CA and a client certificate it signs, its key encrypted with "s3cret".
    openssl(&lab.dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "cli-ca.key", "-out", "cli-ca.pem", "-days", "2", "-subj", "/CN=ka client CA"]);
    openssl(&lab.dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "cli.key", "-out", "cli.csr", "-subj", "/CN=ka checker"]);
    // X.509 v3 (extensions given): rustls, as webpki, takes no v1 certificate.
    std::fs::write(lab.dir.join("ext-cli.cnf"), "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n").expect("ext");
    openssl(&lab.dir, &["x509", "-req", "-in", "cli.csr", "-CA", "cli-ca.pem", "-CAkey", "cli-ca.key", "-CAcreateserial", "-out", "cli.pem", "-days", "2", "-extfile", "ext-cli.cnf"]);
    openssl(&lab.dir, &["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", "cli.key", "-out", "cli-enc.key", "-passout", "pass:s3cret"]);
    let d = lab.dir.display();
    std::fs::create_dir_all(lab.dir.join("www")).expect("www");
    std::fs::write(lab.dir.join("www/index.html"), "mtls\n").expect("index");
    let conf = lab.write(
        "nginx.conf",
        &format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 256; }}\nhttp {{\n access_log off;\n \
             client_body_temp_path {d}/cb; proxy_temp_path {d}/px; fastcgi_temp_path {d}/fc; uwsgi_temp_path {d}/uw; scgi_temp_path {d}/sc;\n \
             server {{ listen {SRV}:7443 ssl; root {d}/www; ssl_certificate {d}/srv-srv.pem; ssl_certificate_key {d}/srv-srv.key; \
             ssl_client_certificate {d}/cli-ca.pem; ssl_verify_client on; }}\n}}\n"
        ),
    );
    let child = lab
        .srv
        .cmd("nginx")
        .args(["-c", &conf.display().to_string(), "-g", "daemon off; master_process off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nginx");
    let _nginx = Proc(child);
    wait_port(&lab.srv, "tcp", 7443);
    let checker = |password: &str| {
        format!(
            "SSL {{\n certificate {d}/cli.pem\n key {d}/cli-enc.key\n password {password}\n}}\nvirtual_server 198.18.10.100 443 {{\n protocol TCP\n {TIMING}\n\
             real_server 198.18.10.11 443 {{\n  SSL_GET {{\n connect_ip {SRV}\n connect_port 7443\n   url {{ path / }}\n  }}\n }}\n}}\n"
        )
    };
    lab.with_health(&checker("s3cret"), |h| {
        // It starts up (no alpha); the first check's result says whether the handshake passed.
        ka_tests::wait_for("a first check", Duration::from_secs(10), || Some(h.reason(0, 0)).filter(|r| !r.is_empty()));
        assert!(h.reason(0, 0).starts_with("HTTP / 200"), "{}", h.reason(0, 0));
        assert!(h.serving(0, 0));
    });
    lab.with_health(&checker("wrong"), |h| {
        h.wait("a wrong password: no client identity, the checker fails", Duration::from_secs(10), |s| !serving(s, 0, 0));
        let r = h.reason(0, 0);
        assert!(r.contains("cannot decrypt the key with the SSL block's password"), "{r}");
    });
}
