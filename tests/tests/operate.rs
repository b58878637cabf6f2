//! Operating ka as a service, in namespaces: a DR director (`ka run`) in front of two line-echo
//! real servers on one LAN, the VIP held by VRRP.
//!
//! - Metrics: `/metrics` (`ka run --metrics`) parsed back agrees with `ka status --json`
//!   (VRRP state, real servers' up and weight, service and real-server packet counts) and passes
//!   `promtool check metrics`.
//! - Runtime control: `ka rs drain` keeps established connections and sends no new flow to the
//!   server; `disable` takes it out of the table; `weight` sets its datapath weight; all of it
//!   survives `ka reload`; `enable` gives the configuration back; `ka status` marks it; every
//!   request is logged; a request for an unknown server is refused.
//! - systemd: with `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` set, ka sends READY=1 (with STATUS=),
//!   WATCHDOG=1 pings, RELOADING=1 + MONOTONIC_USEC then READY=1 around a reload, STATUS= on a
//!   transition, and STOPPING=1 on SIGTERM.
//! - Capabilities: ka runs with exactly the units' CapabilityBoundingSet, and each of the
//!   network, BPF and script capabilities in it is needed.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use ka_tests::{
    daemon::KaDaemon,
    ka_bin,
    lan::{ask, misc_check, Accepted, EchoServer, Lan, LanSpec, LbConf, RealServerConf, role},
    netns::Netns,
    prom, require_root, unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);
const VIP: &str = "198.18.44.100";
const DIRECTOR: &str = "198.18.44.1";
const CLIENT: &str = "198.18.44.2";
const RS: [&str; 2] = ["198.18.44.11", "198.18.44.12"];
const PORT: u16 = 8080;
const METRICS_PORT: u16 = 9650;

/// The namespaces, the real servers' echo servers and the director's config.
struct Lab {
    lan: Lan,
    dir: PathBuf,
    conf: PathBuf,
    _accepted: Accepted,
    _servers: Vec<EchoServer>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `script_user`: the MISC_CHECK scripts run as this user when given (the capability test).
fn lab(script_user: Option<&str>) -> Lab {
    require_root();
    let lan = Lan::new(&LanSpec {
        client: vec![format!("{CLIENT}/24")],
        directors: vec![vec![format!("{DIRECTOR}/24")]],
        real_servers: RS.iter().map(|a| vec![format!("{a}/24")]).collect(),
        loopback_vips: vec![format!("{VIP}/32")],
    })
    .expect("LAN");
    let dir = std::env::temp_dir().join(unique_name("kop"));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let script = dir.join("check.sh");
    std::fs::write(&script, "#!/bin/sh\nread v < \"$1\"\nexit \"$v\"\n").expect("write script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let real_servers = RS
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let state = dir.join(format!("rs{i}"));
            std::fs::write(&state, "3\n").expect("state");
            RealServerConf { addr: (*a).to_owned(), port: PORT, check: misc_check(&script, &state) }
        })
        .collect();
    let text = LbConf {
        instance: "VI_OP".to_owned(),
        vrid: 94,
        role: role("", true, 150),
        vrrp_vips: vec![format!("{VIP}/24")],
        excluded: vec![],
        vip: VIP.to_owned(),
        port: PORT,
        lb_kind: "DR".to_owned(),
        real_servers,
    }
    .text();
    let globals = script_user.map(|u| format!("global_defs {{\n script_user {u}\n}}\n")).unwrap_or_default();
    let conf = dir.join("ka.conf");
    std::fs::write(&conf, format!("{globals}{text}")).expect("write conf");
    std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    let accepted = Accepted::default();
    let clients = [CLIENT.parse().expect("ip")];
    let servers = lan.real_servers.iter().enumerate().map(|(i, ns)| EchoServer::start(ns, i, PORT, &accepted, &clients).expect("echo")).collect();
    Lab { lan, dir, conf, _accepted: accepted, _servers: servers }
}

impl Lab {
    fn director(&self) -> &Netns {
        &self.lan.directors[0]
    }

    fn conf(&self) -> &str {
        self.conf.to_str().expect("utf-8")
    }

    /// Starts `ka run` and waits until it is MASTER with both real servers in the table.
    fn start(&self, extra: &[&str]) -> KaDaemon {
        let mut args = vec!["-f", self.conf()];
        args.extend(extra);
        let ka = KaDaemon::start(self.director(), &ka_bin(), &unique_name("op"), &args).expect("ka run");
        wait_for("MASTER with both real servers in the table", WAIT, || {
            let st = ka.status_json().ok()?;
            let all_in = RS.iter().all(|rs| backend(&st, rs).is_some_and(|b| b["in_table"] == true));
            (st["vrrp"][0]["state"] == "MASTER" && all_in).then_some(())
        });
        ka
    }

    /// A new connection to the VIP from the client, and the server that answered it.
    fn connect(&self) -> Option<(TcpStream, usize)> {
        self.lan
            .client
            .enter(|| {
                let vip = SocketAddr::new(VIP.parse().expect("vip"), PORT);
                let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(2)).ok()?;
                s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                let i = ask(&mut s)?;
                Some((s, i))
            })
            .expect("enter client")
            .join()
            .expect("client thread")
    }

    /// How many of `n` new connections each server answered.
    fn spread(&self, n: usize) -> [usize; 2] {
        let mut out = [0; 2];
        for _ in 0..n {
            if let Some((_, i)) = self.connect() {
                out[i] += 1;
            }
        }
        out
    }

    /// `GET /metrics` on the director's loopback.
    fn scrape(&self) -> String {
        self.director()
            .enter(|| {
                use std::io::{Read as _, Write as _};
                let mut s = TcpStream::connect(("127.0.0.1", METRICS_PORT)).expect("connect to /metrics");
                s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: ka\r\nConnection: close\r\n\r\n").expect("write");
                let mut out = String::new();
                s.read_to_string(&mut out).expect("read");
                out
            })
            .expect("enter director")
            .join()
            .expect("scrape thread")
    }
}

/// The real server `rs` in the first service of a status report.
fn backend(st: &serde_json::Value, rs: &str) -> Option<serde_json::Value> {
    st["services"][0]["backends"].as_array()?.iter().find(|b| b["address"] == rs).cloned()
}

/// The health report's entry of real server `rs`.
fn health(st: &serde_json::Value, rs: &str) -> Option<serde_json::Value> {
    st["health"]["real_servers"].as_array()?.iter().find(|r| r["addr"] == rs).cloned()
}

/// `ka --instance I ARGS`; returns (success, stdout, stderr).
fn ka_cli(instance: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(ka_bin()).args(["--instance", instance]).args(args).output().expect("run ka");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The metrics text parsed back agrees with `ka status --json`, family by family, and promtool
/// accepts it.
#[test]
fn metrics_agree_with_status() {
    let lab = lab(None);
    let ka = lab.start(&["--metrics", &format!("127.0.0.1:{METRICS_PORT}")]);
    let served = lab.spread(20);
    assert_eq!(served.iter().sum::<usize>(), 20, "connections through the VIP: {served:?}");
    // The connections are closed: wait until the datapath counters stop moving, then compare
    // a scrape with the status taken right after it.
    let mut last = None;
    let st = wait_for("service counters settle", WAIT, || {
        std::thread::sleep(Duration::from_millis(300));
        let st = ka.status_json().ok()?;
        let now = st["services"][0]["packets"].as_u64();
        let settled = last == Some(now);
        last = Some(now);
        settled.then_some(st)
    });
    std::thread::sleep(Duration::from_millis(1100)); // past the endpoint's snapshot reuse
    let response = lab.scrape();
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("text/plain; version=0.0.4"), "{head}");
    let samples = prom::parse(body).expect("parse /metrics");
    let get = |name: &str, labels: &[(&str, &str)]| prom::value(&samples, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing:\n{body}"));

    let v = &st["vrrp"][0];
    let vrid = v["vrid"].to_string();
    let vl = [("iname", "VI_OP"), ("intf", "eth0"), ("vrid", vrid.as_str())];
    assert_eq!(v["state"], "MASTER");
    assert_eq!(get("ka_vrrp_state", &vl), 2.0, "MASTER is 2");
    assert_eq!(get("ka_vrrp_become_master_total", &vl), v["became_master"].as_f64().expect("became_master"));
    assert!(get("ka_vrrp_become_master_total", &vl) >= 1.0);
    assert!(get("ka_vrrp_adverts_sent_total", &vl) >= 1.0, "a MASTER has sent adverts");

    let svc = &st["services"][0];
    let sl = [("vip", VIP), ("port", "8080"), ("protocol", "TCP")];
    assert_eq!(get("ka_service_packets_total", &sl), svc["packets"].as_f64().expect("packets"));
    assert_eq!(get("ka_service_bytes_total", &sl), svc["bytes"].as_f64().expect("bytes"));
    assert!(get("ka_service_packets_total", &sl) >= 20.0);
    for rs in RS {
        let b = backend(&st, rs).expect("backend");
        let h = health(&st, rs).expect("health");
        let bl = [("local_address", VIP), ("local_port", "8080"), ("proto", "TCP"), ("remote_address", rs), ("remote_port", "8080")];
        assert_eq!(get("ka_real_server_packets_total", &bl), b["packets"].as_f64().expect("packets"), "{rs}");
        assert_eq!(get("ka_real_server_bytes_total", &bl), b["bytes"].as_f64().expect("bytes"), "{rs}");
        assert_eq!(get("ka_real_server_weight", &bl), b["weight"].as_f64().expect("weight"), "{rs}");
        assert_eq!(get("ka_real_server_up", &bl), if h["state"] == "up" { 1.0 } else { 0.0 }, "{rs}");
    }
    // Connection counts (node_exporter's ipvs connections_active): held connections are
    // established entries of the connection table. An `mh` service keeps no counts in the
    // datapath, so these come from the sweeper's tally; metrics and status agree on them.
    let held: Vec<(TcpStream, usize)> = (0..3).map(|_| lab.connect().expect("a held connection")).collect();
    let mut per_rs = [0u64; 2];
    for (_, i) in &held {
        per_rs[*i] += 1;
    }
    wait_for("the held connections counted per real server, in status and metrics alike", WAIT, || {
        std::thread::sleep(Duration::from_millis(300));
        let response = lab.scrape();
        let st = ka.status_json().ok()?;
        let samples = prom::parse(response.split_once("\r\n\r\n")?.1).ok()?;
        RS.iter().enumerate().all(|(i, rs)| {
            let Some(b) = backend(&st, rs) else { return false };
            let bl = [("local_address", VIP), ("local_port", "8080"), ("proto", "TCP"), ("remote_address", *rs), ("remote_port", "8080")];
            let active = prom::value(&samples, "ka_real_server_connections_active", &bl);
            let inactive = prom::value(&samples, "ka_real_server_connections_inactive", &bl);
            b["active_conns"].as_u64() == Some(per_rs[i])
                && active == Some(per_rs[i] as f64)
                && inactive == b["inactive_conns"].as_f64()
        })
        .then_some(())
    });
    drop(held);
    let counters = st["counters"].as_object().expect("counters");
    let tx = counters.get("verdict_tx").and_then(serde_json::Value::as_f64).unwrap_or(0.0);
    assert!(tx > 0.0, "DR forwards with XDP_TX: {counters:?}");
    assert!(get("ka_xdp_packets_total", &[("verdict", "tx")]) >= tx, "counters only grow");
    let checks = st["health"]["checks"]["MISC_CHECK"].as_f64().expect("checks");
    let ok = get("ka_health_checks_total", &[("checker", "MISC_CHECK"), ("result", "success")]);
    let failed = get("ka_health_checks_total", &[("checker", "MISC_CHECK"), ("result", "failure")]);
    assert!(ok + failed >= checks && ok >= 1.0, "{ok} + {failed} vs {checks}");
    assert!(get("ka_health_check_duration_seconds_count", &[("checker", "MISC_CHECK")]) >= checks);
    assert_eq!(get("ka_config_last_reload_success", &[]), 1.0);
    assert_eq!(get("ka_config_reloads_total", &[]), 0.0);
    assert!(samples.iter().any(|s| s.name == "ka_build_info"), "build info");

    // A refused reload shows in the daemon's families.
    let good = std::fs::read_to_string(&lab.conf).expect("read");
    std::fs::write(&lab.conf, "vrrp_instance {\n").expect("break the file");
    let (applied, _, _) = ka_cli(ka.instance(), &["reload"]);
    assert!(!applied, "a broken file is refused");
    std::fs::write(&lab.conf, good).expect("restore");
    std::thread::sleep(Duration::from_millis(1100));
    let samples = prom::parse(lab.scrape().split_once("\r\n\r\n").expect("HTTP").1).expect("parse");
    assert_eq!(prom::value(&samples, "ka_config_reloads_total", &[]), Some(1.0));
    assert_eq!(prom::value(&samples, "ka_config_reload_failures_total", &[]), Some(1.0));
    assert_eq!(prom::value(&samples, "ka_config_last_reload_success", &[]), Some(0.0));

    // `ka status --watch`: bounded by --count; JSON is one versioned document per refresh.
    let (ok, out, err) = ka_cli(ka.instance(), &["status", "--watch", "200ms", "--count", "3", "--json"]);
    assert!(ok, "{err}");
    let docs: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).expect("one JSON document per line")).collect();
    assert_eq!(docs.len(), 3, "{out}");
    assert!(docs.iter().all(|d| d["format_version"] == 1 && d["vrrp"][0]["state"] == "MASTER"), "{out}");
    let (ok, out, _) = ka_cli(ka.instance(), &["status", "--watch", "100ms", "--count", "2"]);
    assert!(ok && out.matches("Every 100ms: ka status").count() == 2 && out.matches("vrrp VI_OP").count() == 2, "{out}");

    // promtool (Debian package prometheus, installed by `cargo xtask setup`) accepts it.
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: `cargo xtask setup` installs it (Debian package prometheus)");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), body.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}");
    ka.stop().expect("stop");
}

/// drain keeps established flows and sends no new one; disable takes the server out; weight
/// sets the datapath weight; a reload keeps all of it; enable gives the configuration back.
#[test]
fn runtime_controls_change_the_datapath() {
    let lab = lab(None);
    let ka = lab.start(&["--metrics", &format!("127.0.0.1:{METRICS_PORT}")]);
    let inst = ka.instance().to_owned();
    let vs = format!("{VIP}:{PORT}");
    let rs1 = format!("{}:{PORT}", RS[1]);
    // Long-lived connections until rs1 holds one.
    let mut long = Vec::new();
    for _ in 0..40 {
        if long.iter().any(|(_, i)| *i == 1) {
            break;
        }
        long.extend(lab.connect());
    }
    let (mut held, _) = long.into_iter().find(|(_, i)| *i == 1).expect("a connection to rs1 in 40 tries");

    // drain: weight 0, still in the table, established flow kept, no new flow.
    let (ok, out, err) = ka_cli(&inst, &["rs", "drain", &vs, &rs1]);
    assert!(ok, "ka rs drain: {err}");
    assert!(out.contains("drained"), "{out}");
    let st = ka.status_json().expect("status");
    let b = backend(&st, RS[1]).expect("rs1");
    assert_eq!((b["in_table"].as_bool(), b["weight"].as_u64()), (Some(true), Some(0)), "{b}");
    assert_eq!(health(&st, RS[1]).expect("rs1")["runtime"], "drain");
    assert_eq!(st["runtime_overrides"][0]["override"], "drain");
    assert!(ka.status_text().expect("status").contains("[runtime: drained]"));
    assert_eq!(ask(&mut held), Some(1), "the established connection to a drained server keeps working");
    let spread = lab.spread(30);
    assert_eq!((spread[1], spread[0]), (0, 30), "no new flow to a drained server: {spread:?}");

    // disable: out of the table, no new flow.
    let (ok, _, err) = ka_cli(&inst, &["rs", "disable", &vs, RS[1]]);
    assert!(ok, "ka rs disable: {err}");
    let b = backend(&ka.status_json().expect("status"), RS[1]).expect("rs1");
    assert_eq!(b["in_table"].as_bool(), Some(false), "{b}");
    let spread = lab.spread(30);
    assert_eq!((spread[1], spread[0]), (0, 30), "no new flow to a disabled server: {spread:?}");

    // weight, then a reload of the same file: the override stays.
    let (ok, _, err) = ka_cli(&inst, &["rs", "weight", &vs, &rs1, "3", "--protocol", "tcp"]);
    assert!(ok, "ka rs weight: {err}");
    let (ok, _, err) = ka_cli(&inst, &["reload"]);
    assert!(ok, "ka reload: {err}");
    let st = ka.status_json().expect("status");
    let b = backend(&st, RS[1]).expect("rs1");
    assert_eq!((b["in_table"].as_bool(), b["weight"].as_u64()), (Some(true), Some(3)), "after reload: {b}");
    assert_eq!(health(&st, RS[1]).expect("rs1")["runtime"]["weight"], 3);
    std::thread::sleep(Duration::from_millis(1100));
    let samples = prom::parse(lab.scrape().split_once("\r\n\r\n").expect("HTTP").1).expect("parse");
    let bl = [("remote_address", RS[1]), ("remote_port", "8080")];
    assert_eq!(prom::value(&samples, "ka_real_server_weight", &bl), Some(3.0));
    assert_eq!(prom::value(&samples, "ka_real_server_runtime_override", &[("remote_address", RS[1]), ("override", "weight")]), Some(1.0));

    // enable: the configuration decides again; rs1 gets new flows.
    let (ok, _, err) = ka_cli(&inst, &["rs", "enable", &vs, &rs1]);
    assert!(ok, "ka rs enable: {err}");
    let st = ka.status_json().expect("status");
    assert_eq!(backend(&st, RS[1]).expect("rs1")["weight"].as_u64(), Some(1));
    assert!(health(&st, RS[1]).expect("rs1")["runtime"].is_null());
    assert_eq!(st["runtime_overrides"].as_array().map(Vec::len), Some(0));
    let spread = wait_for("rs1 takes new flows again", WAIT, || {
        let s = lab.spread(20);
        (s[1] > 0).then_some(s)
    });
    assert!(spread[0] > 0, "{spread:?}");

    // Unknown servers are refused, clearly; every request is in the log.
    let (ok, _, err) = ka_cli(&inst, &["rs", "drain", &vs, "198.18.44.99:8080"]);
    assert!(!ok && err.contains("has no real_server 198.18.44.99:8080"), "{err}");
    let log = ka.log_text();
    assert_eq!(log.matches("control: real server changed at runtime").count(), 4, "{log}");
    assert!(log.contains("control: real-server request refused"), "{log}");
    drop(held);
    ka.stop().expect("stop");
}

/// A systemd notify socket: the datagrams ka sends.
struct NotifySocket {
    sock: std::os::unix::net::UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        NotifySocket { sock, path }
    }

    /// Collects datagrams until one satisfies `want` (returning it), or `timeout`.
    fn until(&self, seen: &mut Vec<String>, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        let mut buf = vec![0u8; 4096];
        while start.elapsed() < timeout {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                seen.push(m.clone());
                if want(&m) {
                    return m;
                }
            }
        }
        panic!("no matching notification within {timeout:?}; got {seen:?}");
    }
}

/// The notification sequence of a real daemon under a fake service manager.
#[test]
fn systemd_notifications_and_watchdog() {
    let lab = lab(None);
    let notify = NotifySocket::bind(&lab.dir);
    let inst = unique_name("sd");
    let log = KaDaemon::log_file(&inst);
    let mut child = lab
        .director()
        .nsenter(&ka_bin())
        .args(["--instance", &inst, "run", "-f", lab.conf()])
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn ka");
    let guard = ChildGuard(&mut child, inst.clone());
    let mut seen = Vec::new();
    let ready = notify.until(&mut seen, WAIT, |m| m.contains("READY=1"));
    assert!(ready.starts_with("READY=1\nSTATUS=VI_OP "), "{ready:?}");
    assert_eq!(seen.len(), 1, "READY=1 is the first notification: {seen:?}");
    // The status answers once READY=1 was sent: the datapath is attached and VRRP runs.
    let st = wait_for("status", WAIT, || KaStatus(&inst).json());
    assert!(st["xdp"].as_array().is_some_and(|a| !a.is_empty()), "{st}");
    notify.until(&mut seen, WAIT, |m| m == "STATUS=VI_OP MASTER\n");
    notify.until(&mut seen, Duration::from_secs(3), |m| m == "WATCHDOG=1\n");
    let (ok, _, err) = ka_cli(&inst, &["reload"]);
    assert!(ok, "reload: {err}");
    let reloading = notify.until(&mut seen, WAIT, |m| m.starts_with("RELOADING=1"));
    assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading:?}");
    let usec: u64 = reloading.trim_end().rsplit('=').next().and_then(|v| v.parse().ok()).expect("MONOTONIC_USEC value");
    assert!(usec > 0);
    let after = seen.len();
    notify.until(&mut seen, WAIT, |m| m == "READY=1\n");
    assert!(!seen[after..].iter().any(|m| m.contains("RELOADING")), "{seen:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(guard.0.id()).expect("pid")), nix::sys::signal::Signal::SIGTERM).expect("kill");
    notify.until(&mut seen, WAIT, |m| m == "STOPPING=1\n");
    let status = guard.0.wait().expect("wait");
    assert!(status.success(), "{status}: {}", std::fs::read_to_string(&log).unwrap_or_default());
    let stopping = seen.iter().position(|m| m == "STOPPING=1\n").expect("stopping");
    assert!(!seen[stopping + 1..].iter().any(|m| m.contains("READY")), "nothing but the end after STOPPING=1: {seen:?}");
}

/// `ka status --json` of an instance, without a daemon guard.
struct KaStatus<'a>(&'a str);

impl KaStatus<'_> {
    fn json(&self) -> Option<serde_json::Value> {
        let (ok, out, _) = ka_cli(self.0, &["status", "--json", "--timeout", "2s"]);
        ok.then(|| serde_json::from_str(&out).ok()).flatten()
    }
}

/// Kills a daemon spawned by hand when the test fails, and removes what it left.
struct ChildGuard<'a>(&'a mut std::process::Child, String);

impl Drop for ChildGuard<'_> {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_file(format!("/run/ka/{}.sock", self.1));
            let _ = std::fs::remove_file(format!("/run/ka/{}.vrrp", self.1));
            let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/ka/{}", self.1));
        }
    }
}

/// The capabilities of the units' CapabilityBoundingSet, as `setpriv --bounding-set` takes them.
fn unit_caps() -> Vec<String> {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ka-userspace/debian/ka.service");
    let text = std::fs::read_to_string(&unit).expect("read ka.service");
    let line = text.lines().find_map(|l| l.strip_prefix("CapabilityBoundingSet=")).expect("CapabilityBoundingSet");
    line.split_whitespace().map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase()).collect()
}

/// What a daemon limited to `caps` achieved: (MASTER with the VIP, both real servers in the
/// table with XDP attached), and its log.
fn run_with_caps(lab: &Lab, caps: &[String]) -> (bool, String) {
    let inst = unique_name("cap");
    let log = KaDaemon::log_file(&inst);
    let set = std::iter::once("-all".to_owned()).chain(caps.iter().map(|c| format!("+{c}"))).collect::<Vec<_>>().join(",");
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", lab.director().path()))
        .args(["--", "setpriv", "--bounding-set", &set, "--inh-caps", "-all", "--"])
        .arg(ka_bin())
        .args(["--instance", &inst, "run", "-f", lab.conf()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"));
    let mut child = cmd.spawn().expect("spawn");
    let guard = ChildGuard(&mut child, inst.clone());
    let start = Instant::now();
    let mut ok = false;
    while start.elapsed() < Duration::from_secs(15) {
        if let Ok(Some(_)) = guard.0.try_wait() {
            break;
        }
        if let Some(st) = KaStatus(&inst).json() {
            let vip = lab.director().run(&["ip", "-4", "addr", "show", "dev", "eth0"]).unwrap_or_default().contains(VIP);
            let all_in = RS.iter().all(|rs| backend(&st, rs).is_some_and(|b| b["in_table"] == true));
            if st["vrrp"][0]["state"] == "MASTER" && vip && all_in && st["xdp"].as_array().is_some_and(|a| !a.is_empty()) {
                ok = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if matches!(guard.0.try_wait(), Ok(None)) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(guard.0.id()).expect("pid")), nix::sys::signal::Signal::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) && matches!(guard.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(guard);
    // A daemon refused a capability may exit on its own after creating its pin directory:
    // the instance is this test's own, remove what it left.
    let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/ka/{inst}"));
    let _ = std::fs::remove_file(format!("/run/ka/{inst}.sock"));
    let _ = std::fs::remove_file(format!("/run/ka/{inst}.vrrp"));
    (ok, std::fs::read_to_string(&log).unwrap_or_default())
}

/// ka does everything with the units' bounding set, and loses something without each of the
/// capabilities in it that a namespace lab can exercise (CAP_KILL, for timed-out scripts of
/// another user, is argued in README.Debian).
#[test]
fn unit_capabilities_are_needed_and_enough() {
    if Command::new("setpriv").arg("--version").output().is_err() {
        panic!("setpriv (util-linux) is needed for this test");
    }
    let lab = lab(Some("nobody"));
    let caps = unit_caps();
    let mut expected: BTreeMap<&str, bool> = BTreeMap::new();
    for c in ["net_admin", "net_raw", "bpf", "perfmon", "setuid", "setgid", "kill"] {
        expected.insert(c, caps.iter().any(|x| x == c));
    }
    assert!(expected.values().all(|v| *v), "the unit's set {caps:?} lacks one of {expected:?}");
    assert!(!caps.iter().any(|c| c == "sys_admin"), "CAP_SYS_ADMIN is not needed where bpffs is mounted: {caps:?}");
    let (ok, log) = run_with_caps(&lab, &caps);
    assert!(ok, "ka with {caps:?} did not reach MASTER with its VIP, XDP and both real servers:\n{log}");
    for drop in ["net_admin", "net_raw", "bpf", "perfmon", "setuid", "setgid"] {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != drop).cloned().collect();
        let (ok, log) = run_with_caps(&lab, &fewer);
        assert!(!ok, "ka without CAP_{} still did everything; the unit need not grant it:\n{log}", drop.to_ascii_uppercase());
    }
}

/// `ka prepare-restart` (what the package's postinst runs before restarting the unit) makes the
/// next stop hitless: the VIP stays, the established connection keeps working while no daemon
/// runs and after the next one adopted the datapath, and the new daemon resumes as MASTER
/// without a transition on the wire.
#[test]
fn prepare_restart_makes_the_stop_hitless() {
    let lab = lab(None);
    let ka = lab.start(&[]);
    let inst = ka.instance().to_owned();
    let (mut held, server) = lab.connect().expect("a connection through the VIP");
    let (ok, out, err) = ka_cli(&inst, &["prepare-restart"]);
    assert!(ok && out.contains("keeps its VIPs and datapath"), "{out}{err}");
    assert!(ka.log_text().contains("control: prepare-restart"), "logged");
    ka.stop().expect("stop");
    let addrs = lab.director().run(&["ip", "-4", "addr", "show", "dev", "eth0"]).expect("ip addr");
    assert!(addrs.contains(VIP), "the VIP stays through the stop: {addrs}");
    assert_eq!(ask(&mut held), Some(server), "XDP keeps forwarding the established connection with no daemon");
    let ka2 = KaDaemon::start(lab.director(), &ka_bin(), &inst, &["-f", lab.conf()]).expect("restart");
    let st = ka2.status_json().expect("status");
    assert_eq!(st["vrrp"][0]["state"], "MASTER", "resumed as MASTER: {st}");
    assert_eq!(ask(&mut held), Some(server), "the connection survives the adoption");
    assert!(ka2.log_text().contains("adopting the pinned"), "the new daemon adopted the datapath:\n{}", ka2.log_text());
    // The flag was for one stop: this daemon releases everything on SIGTERM.
    ka2.stop().expect("stop");
    let addrs = lab.director().run(&["ip", "-4", "addr", "show", "dev", "eth0"]).expect("ip addr");
    assert!(!addrs.contains(VIP), "a plain stop releases the VIP: {addrs}");
}
