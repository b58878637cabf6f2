//! Security at run time, in namespaces:
//! - the control socket is root's alone (mode 0600), an unprivileged `ka status` is told
//!   "permission denied: run as root", and even through a socket opened to everyone the daemon
//!   refuses a peer that is not root;
//! - `--metrics PORT` listens on 127.0.0.1 only; an explicit `0.0.0.0:PORT` is honoured and
//!   logged as reachable from the network;
//! - scripts follow keepalived's `enable_script_security` rules (a root script in a directory
//!   others can write is not run; without `script_user` or a `keepalived_script` user, a
//!   script that names no user is not run) and see a sanitised environment;
//! - `vrrp_strict` leaves a non-owner MASTER in no_accept mode (its VIP drops what is sent to
//!   it), while the address owner accepts.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use ka_tests::{
    daemon::KaDaemon,
    ka_bin,
    netns::{Bridge, Netns},
    require_root, unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);

fn host(third: u8) -> (Bridge, Netns) {
    require_root();
    let mut bridge = Bridge::new().expect("bridge");
    let ns = Netns::new("sec").expect("netns");
    bridge.attach(&ns, "eth0", &[&format!("198.18.{third}.1/24")]).expect("attach");
    (bridge, ns)
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(mode: u32) -> TempDir {
        let d = std::env::temp_dir().join(unique_name("ksec"));
        std::fs::create_dir_all(&d).expect("dir");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).expect("chmod");
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn instance_conf(third: u8, vrid: u8, priority: u8, extra: &str) -> String {
    format!(
        "vrrp_instance VI_S {{\n state BACKUP\n interface eth0\n virtual_router_id {vrid}\n priority {priority}\n advert_int 1\n{extra}\n virtual_ipaddress {{\n  198.18.{third}.100/24\n }}\n}}\n"
    )
}

fn state(ka: &KaDaemon) -> String {
    ka.status_json().ok().and_then(|s| s["vrrp"][0]["state"].as_str().map(str::to_owned)).unwrap_or_default()
}

/// `ka status` as user nobody: the socket refuses it at connect, with a clear message. The
/// binary is copied where nobody may run it (the build tree may be closed to it).
fn status_as_nobody(ka: &Path, instance: &str, dir: &Path) -> std::process::Output {
    let copy = dir.join("ka");
    if !copy.exists() {
        std::fs::copy(ka, &copy).expect("copy ka");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&copy)
        .args(["--instance", instance, "status", "--timeout", "5s"])
        .output()
        .expect("setpriv")
}

/// The control socket is mode 0600 and root's; `ka status` as nobody fails with "permission
/// denied: run as root" (not "is ka running?"); with the socket opened to everyone, the daemon
/// itself refuses the peer by its credentials; root is still served.
#[test]
fn control_socket_is_root_only() {
    let (_bridge, ns) = host(60);
    let dir = TempDir::new(0o755);
    let conf = dir.0.join("ka.conf");
    write(&conf, &instance_conf(60, 60, 100, ""), 0o644);
    let instance = unique_name("sec");
    let ka = KaDaemon::start(&ns, &ka_bin(), &instance, &["-f", conf.to_str().expect("utf-8"), "--no-xdp"]).expect("ka");
    let sock = PathBuf::from(format!("/run/ka/{instance}.sock"));
    let md = std::fs::metadata(&sock).expect("socket");
    assert_eq!(md.permissions().mode() & 0o7777, 0o600, "socket mode {:o}", md.permissions().mode());
    assert_eq!(md.uid(), 0, "socket owner");

    let out = status_as_nobody(&ka_bin(), &instance, &dir.0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nobody's ka status succeeded: {err}");
    assert!(err.contains("permission denied: run as root"), "{err}");
    assert!(!err.contains("is `ka run` running"), "a permission problem is not an absent daemon: {err}");

    // A socket someone opened to everyone: the daemon still refuses the peer.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).expect("chmod socket");
    let out = status_as_nobody(&ka_bin(), &instance, &dir.0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nobody got a status through a 0666 socket: {}", String::from_utf8_lossy(&out.stdout));
    assert!(err.contains("daemon: permission denied: run as root"), "{err}");
    assert!(ka.log_text().contains("control request refused: the peer is not root"), "{}", ka.log_text());
    assert!(ka.status_json().is_ok(), "root is still served");
    ka.stop().expect("stop");
}

/// One HTTP GET of /metrics from inside `ns`: the status line, or the connect error.
fn scrape(ns: &Netns, addr: SocketAddr) -> Result<String, String> {
    ns.enter(move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        Ok(out.lines().next().unwrap_or_default().to_owned())
    })
    .expect("enter")
    .join()
    .expect("scrape thread")
}

/// `--metrics PORT` serves on 127.0.0.1 only; `--metrics 0.0.0.0:PORT` on every address, with
/// a warning in the log.
#[test]
fn metrics_listen_on_loopback_unless_told() {
    let (_bridge, ns) = host(61);
    let dir = TempDir::new(0o755);
    let conf = dir.0.join("ka.conf");
    write(&conf, &instance_conf(61, 61, 100, ""), 0o644);
    let conf = conf.to_str().expect("utf-8");
    let lan_addr: std::net::IpAddr = "198.18.61.1".parse().expect("addr");
    let ka = KaDaemon::start(&ns, &ka_bin(), &unique_name("sec"), &["-f", conf, "--no-xdp", "--metrics", "19650"]).expect("ka");
    let local = scrape(&ns, SocketAddr::from(([127, 0, 0, 1], 19650)));
    assert!(local.as_deref().is_ok_and(|l| l.contains("200")), "{local:?}");
    let remote = scrape(&ns, SocketAddr::new(lan_addr, 19650));
    assert!(remote.as_ref().is_err_and(|e| e.contains("refused")), "--metrics PORT must not listen on the LAN: {remote:?}");
    let log = ka.log_text();
    assert!(log.contains("127.0.0.1:19650") && !log.contains("beyond this host"), "{log}");
    ka.stop().expect("stop");

    let ka = KaDaemon::start(&ns, &ka_bin(), &unique_name("sec"), &["-f", conf, "--no-xdp", "--metrics", "0.0.0.0:19651"]).expect("ka");
    let remote = scrape(&ns, SocketAddr::new(lan_addr, 19651));
    assert!(remote.as_deref().is_ok_and(|l| l.contains("200")), "an explicit 0.0.0.0 is honoured: {remote:?}");
    assert!(ka.log_text().contains("the metrics endpoint listens beyond this host"), "{}", ka.log_text());
    ka.stop().expect("stop");
}

/// With `enable_script_security` and no `script_user` (and no `keepalived_script` user):
/// the generic notify script, which names root and sits in a safe directory, runs for BACKUP and
/// MASTER, with the sanitised environment and `/` as its directory; `notify_master` names root
/// but sits in a world-writable directory: never run; `notify_backup` names no user: never run.
/// The log carries keepalived's words for both refusals.
#[test]
fn scripts_follow_keepalived_security_and_get_a_clean_environment() {
    assert!(Command::new("id").arg("keepalived_script").output().is_ok_and(|o| !o.status.success()), "this test assumes no keepalived_script user");
    let (_bridge, ns) = host(62);
    let dir = TempDir::new(0o755);
    let (safe, open, out) = (dir.0.join("safe"), dir.0.join("open"), dir.0.join("out"));
    for (d, mode) in [(&safe, 0o755), (&open, 0o777), (&out, 0o755)] {
        std::fs::create_dir_all(d).expect("dir");
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let o = out.display();
    write(&safe.join("notify.sh"), &format!("#!/bin/sh\nenv > {o}/env.$3.tmp\npwd >> {o}/env.$3.tmp\nmv {o}/env.$3.tmp {o}/env.$3\n"), 0o755);
    write(&safe.join("backup.sh"), &format!("#!/bin/sh\ntouch {o}/backup-ran\n"), 0o755);
    write(&open.join("master.sh"), &format!("#!/bin/sh\ntouch {o}/master-ran\n"), 0o755);
    let scripts = format!(
        " notify \"{}\" root\n notify_master \"{}\" root\n notify_backup \"{}\"",
        safe.join("notify.sh").display(),
        open.join("master.sh").display(),
        safe.join("backup.sh").display()
    );
    let conf = dir.0.join("ka.conf");
    write(&conf, &format!("global_defs {{\n enable_script_security\n}}\n{}", instance_conf(62, 62, 100, &scripts)), 0o644);
    let env = [
        ("KA_TEST_SECRET", "s3cret"),
        ("LD_LIBRARY_PATH", "/nonexistent-ka-test"),
        ("BASH_ENV", "/nonexistent-ka-test"),
        ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin:/opt/ka-test-path"),
        ("LANG", "C.UTF-8"),
    ];
    let ka = KaDaemon::start_with_env(&ns, &ka_bin(), &unique_name("sec"), &["-f", conf.to_str().expect("utf-8"), "--no-xdp"], &env).expect("ka");
    wait_for("MASTER", WAIT, || (state(&ka) == "MASTER").then_some(()));
    let master_env = wait_for("the notify script for MASTER", WAIT, || std::fs::read_to_string(out.join("env.MASTER")).ok());
    assert!(out.join("env.BACKUP").exists(), "the notify script ran for BACKUP too");
    let mut lines: Vec<&str> = master_env.lines().collect();
    assert_eq!(lines.pop(), Some("/"), "working directory:\n{master_env}");
    let keys: Vec<&str> = lines.iter().map(|l| l.split('=').next().unwrap_or_default()).collect();
    for k in &keys {
        assert!(["PATH", "LANG", "PWD", "SHLVL", "_"].contains(k), "{k} leaked into the script's environment:\n{master_env}");
    }
    assert!(lines.contains(&"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), "{master_env}");
    assert!(lines.contains(&"LANG=C.UTF-8"), "the locale is kept:\n{master_env}");
    assert!(!out.join("master-ran").exists(), "a root script in a world-writable directory ran");
    assert!(!out.join("backup-ran").exists(), "a script without a user ran without script_user or keepalived_script");
    let log = ka.log_text();
    assert!(log.contains("Unsafe permissions found for script") && log.contains(&format!("{} is writable by a non-root user", open.display())), "{log}");
    assert!(log.contains("Unable to set default user keepalived_script"), "{log}");
    assert!(!log.contains("SECURITY VIOLATION"), "{log}");
    ka.stop().expect("stop");
}

/// Sends one UDP datagram to `to` from `ns` and reports whether `listener` got it.
fn udp_reaches(from: &Netns, to: SocketAddr, listener: &std::net::UdpSocket) -> bool {
    let payload = unique_name("p");
    let p = payload.clone();
    from.enter(move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        for _ in 0..3 {
            let _ = s.send_to(p.as_bytes(), to);
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .expect("enter")
    .join()
    .expect("send thread");
    listener.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
    let mut buf = [0u8; 64];
    while let Ok(n) = listener.recv(&mut buf) {
        if &buf[..n] == payload.as_bytes() {
            return true;
        }
    }
    false
}

/// `vrrp_strict`: a MASTER below priority 255 is in no_accept mode, even when the file says
/// `accept` (keepalived resets it on VRRPv2, where RFC 3768 has no Accept_Mode; ka used to
/// refuse the file): a datagram to its VIP is dropped, while one to its own address arrives;
/// the address owner (255) accepts.
#[test]
fn strict_mode_no_accept_unless_owner() {
    require_root();
    let mut bridge = Bridge::new().expect("bridge");
    let director = Netns::new("sed").expect("netns");
    let client = Netns::new("sec").expect("netns");
    bridge.attach(&director, "eth0", &["198.18.63.1/24"]).expect("attach");
    bridge.attach(&client, "eth0", &["198.18.63.2/24"]).expect("attach");
    let dir = TempDir::new(0o755);
    for (priority, accepts) in [(100u8, false), (255, true)] {
        let conf = dir.0.join(format!("ka{priority}.conf"));
        write(&conf, &format!("global_defs {{\n vrrp_strict\n}}\n{}", instance_conf(63, 63, priority, " accept")), 0o644);
        let ka = KaDaemon::start(&director, &ka_bin(), &unique_name("sec"), &["-f", conf.to_str().expect("utf-8"), "--no-xdp"]).expect("ka");
        wait_for("MASTER", WAIT, || (state(&ka) == "MASTER").then_some(()));
        let listener = director.enter(|| std::net::UdpSocket::bind("0.0.0.0:7777").expect("bind")).expect("enter").join().expect("bind thread");
        // Wait until the firewall (or its absence) settles: the own address always answers.
        let own = SocketAddr::from(([198, 18, 63, 1], 7777));
        wait_for("the director's own address", WAIT, || udp_reaches(&client, own, &listener).then_some(()));
        let vip = SocketAddr::from(([198, 18, 63, 100], 7777));
        if accepts {
            wait_for("the owner accepting on its VIP", WAIT, || udp_reaches(&client, vip, &listener).then_some(()));
        } else {
            // no_accept: the VIP is in ka's nftables set once MASTER; from then every try
            // must be dropped.
            wait_for("the no_accept set", WAIT, || director.run(&["nft", "list", "ruleset"]).ok().filter(|r| r.contains("198.18.63.100")).map(drop));
            for _ in 0..3 {
                assert!(!udp_reaches(&client, vip, &listener), "vrrp_strict priority {priority}: the VIP accepted traffic");
            }
        }
        drop(listener);
        ka.stop().expect("stop");
    }
}

/// Adverts from `src` seen on `ns`'s eth0 within `window`, while a thread sends `frame` every
/// 250 ms from the same namespace.
fn adverts_while_sending(ns: &Netns, src: [u8; 4], frame: Vec<u8>, window: Duration) -> usize {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let sender = ns
        .enter(move || {
            let tx = ka_tests::flood::Sender::open("eth0").expect("sender");
            while !s2.load(std::sync::atomic::Ordering::SeqCst) {
                tx.send_batch(&[&frame]).expect("send");
                std::thread::sleep(Duration::from_millis(250));
            }
        })
        .expect("enter");
    let count = ns
        .enter(move || {
            let cap = ka_tests::capture::Capture::open("eth0", 0x0800).expect("capture");
            let end = std::time::Instant::now() + window;
            let mut n = 0;
            while cap.next_matching(end, |f| f.get(23) == Some(&112) && f.get(26..30) == Some(&src[..])).is_some() {
                n += 1;
            }
            n
        })
        .expect("enter")
        .join()
        .expect("capture thread");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    sender.join().expect("sender thread");
    count
}

/// `vrrp_strict` forces `lower_prio_no_advert`: a MASTER that hears lower-priority adverts (four
/// a second from a peer) keeps to its one advert a second, where without strict mode it
/// answers them (keepalived 2.2's default, at most once per interval in ka).
#[test]
fn strict_master_does_not_answer_lower_priorities() {
    require_root();
    let mut bridge = Bridge::new().expect("bridge");
    let director = Netns::new("sed").expect("netns");
    let peer = Netns::new("sep").expect("netns");
    bridge.attach(&director, "eth0", &["198.18.64.1/24"]).expect("attach");
    bridge.attach(&peer, "eth0", &["198.18.64.2/24"]).expect("attach");
    let target = ka_tests::flood::Target {
        vrid: 64,
        password: Vec::new(),
        adver_int: 1,
        vip: "198.18.64.100".parse().expect("vip"),
        master_priority: 200,
        subnet: [198, 18, 64],
    };
    let mut frame = ka_tests::flood::advert_v2(&target, "198.18.64.2".parse().expect("src"), 100, 255);
    // No authentication: type 0, checksum again (Ethernet 14 + IPv4 20, then the message).
    frame[34 + 4] = 0;
    frame[34 + 6..34 + 8].copy_from_slice(&[0, 0]);
    let c = ka_tests::packet::checksum(&[&frame[34..]]);
    frame[34 + 6..34 + 8].copy_from_slice(&c.to_be_bytes());
    let dir = TempDir::new(0o755);
    let window = Duration::from_secs(6);
    let mut seen = Vec::new();
    for strict in [false, true] {
        let conf = dir.0.join(format!("ka{strict}.conf"));
        let global = if strict { "global_defs {\n vrrp_strict\n}\n" } else { "" };
        write(&conf, &format!("{global}{}", instance_conf(64, 64, 200, "")), 0o644);
        let ka = KaDaemon::start(&director, &ka_bin(), &unique_name("sec"), &["-f", conf.to_str().expect("utf-8"), "--no-xdp"]).expect("ka");
        wait_for("MASTER", WAIT, || (state(&ka) == "MASTER").then_some(()));
        seen.push(adverts_while_sending(&peer, [198, 18, 64, 1], frame.clone(), window));
        ka.stop().expect("stop");
    }
    // One a second makes 6 (7 at the edges); answering makes about twice that.
    assert!(seen[0] >= 9, "without vrrp_strict the master answers lower priorities: {seen:?}");
    assert!(seen[1] <= 7, "with vrrp_strict the master must not answer lower priorities: {seen:?}");
}
