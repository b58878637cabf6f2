//! Health checks driving the XDP datapath, end to end: `ka run` on a director namespace holds a
//! VRRP VIP and serves one NAT `virtual_server` per checker type (TCP_CHECK, HTTP_GET,
//! SMTP_CHECK, UDP_CHECK, DNS_CHECK, PING_CHECK) over two real servers in their own
//! namespaces. Then real server `rs1` stops answering: an nftables rule in its namespace drops
//! every packet (silence, not a refusal). Each service must
//!
//! - take `rs1` out of the XDP backend set (`ka status --json` `services[].backends[].in_table`,
//!   which the daemon derives from the tables it wrote to the maps) within [`LEAVE_BOUND`];
//! - send no new TCP connection through the VIP to it (every connection is answered by `rs0`,
//!   and `rs1`'s per-backend packet counter stays put);
//! - put it back, and send it new connections again, once the rule is removed.
//!
//! # The bound
//!
//! The issue's `retry × (connect_timeout + delay_before_retry)` counts only the retries: it
//! leaves out the wait for the next scheduled check (a server that dies just after a passing
//! check is next looked at up to `delay_loop` later) and the first failed attempt itself (a
//! silent server fails an attempt only when `connect_timeout` runs out). What ka guarantees is
//!
//! `delay_loop + (retry + 1) × connect_timeout + retry × delay_before_retry`
//!
//! (the next check starts at most `delay_loop` after the cut; each of the `retry + 1` attempts
//! fails after `connect_timeout`; each retry waits `delay_before_retry` after the failed
//! attempt ends, as keepalived does), plus [`MARGIN`] for publishing the new set to the maps
//! and for this test's polling of `ka status` (a process per poll on a busy 2-core machine).

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::{Child, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use ka_tests::{
    daemon::KaDaemon,
    ka_bin,
    netns::{self, Bridge, Netns},
    require_root, unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(60);
const VIP: &str = "198.18.44.100";
const RS: [&str; 2] = ["198.18.45.11", "198.18.45.12"];

/// Checker timing of every service.
const DELAY_LOOP: u64 = 2;
const CONNECT_TIMEOUT: u64 = 1;
const RETRY: u64 = 1;
const DELAY_BEFORE_RETRY: u64 = 1;
/// Slack above the guaranteed bound: map publication and `ka status` polling.
const MARGIN: Duration = Duration::from_secs(1);
/// `delay_loop + (retry + 1) × connect_timeout + retry × delay_before_retry + MARGIN`.
const LEAVE_BOUND: Duration =
    Duration::from_secs(DELAY_LOOP + (RETRY + 1) * CONNECT_TIMEOUT + RETRY * DELAY_BEFORE_RETRY).saturating_add(MARGIN);

/// The services: (VIP port, checker block). Every real server listens on :80 for the client
/// flows; checkers that speak another protocol go to its port with `connect_port`.
const SERVICES: [(u16, &str); 6] = [
    (8001, "TCP_CHECK {\n TIMING }"),
    (8002, "HTTP_GET {\n TIMING url {\n path /\n status_code 200\n }\n }"),
    (8003, "SMTP_CHECK {\n TIMING connect_port 25\n helo_name lb.test\n }"),
    (8004, "UDP_CHECK {\n TIMING connect_port 9000\n payload 70696e67\n require_reply\n min_reply_length 4\n }"),
    (8005, "DNS_CHECK {\n TIMING connect_port 53\n type A\n name www.test\n }"),
    (8006, "PING_CHECK {\n TIMING }"),
];

fn timing() -> String {
    format!("connect_timeout {CONNECT_TIMEOUT}\n retry {RETRY}\n delay_before_retry {DELAY_BEFORE_RETRY}\n")
}

fn require_bin(bin: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).chain(["/usr/sbin".into(), "/sbin".into()]).any(|d: std::path::PathBuf| d.join(bin).exists()))
        .unwrap_or(false);
    assert!(found, "{bin} is missing: install the Debian package {package} (`cargo xtask setup` does)");
}

/// Servers of one real server namespace: HTTP-ish on :80 (answers its name, counts
/// connections), SMTP on :25, UDP on :9000; all stop on drop.
struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Servers {
    fn start(ns: &Netns, name: &'static str) -> Servers {
        let stop = Arc::new(AtomicBool::new(false));
        let (web, smtp, udp) = ns
            .enter(|| {
                (
                    TcpListener::bind(("0.0.0.0", 80)).expect("bind 80"),
                    TcpListener::bind(("0.0.0.0", 25)).expect("bind 25"),
                    UdpSocket::bind(("0.0.0.0", 9000)).expect("bind 9000"),
                )
            })
            .expect("enter")
            .join()
            .expect("bind thread");
        let mut threads = Vec::new();
        let s = stop.clone();
        threads.push(accept_loop(web, s, move |mut c| {
            let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
            let mut req = [0u8; 1024];
            let _ = c.read(&mut req);
            let body = format!("{name}\n");
            let _ = write!(c, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }));
        let s = stop.clone();
        threads.push(accept_loop(smtp, s, |c| {
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut w = c.try_clone().expect("clone");
            if w.write_all(b"220 smtp.test ESMTP\r\n").is_err() {
                return;
            }
            let mut r = BufReader::new(c);
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                let helo = line.starts_with("HELO");
                let _ = w.write_all(if helo { b"250 hello\r\n" } else { b"221 bye\r\n" });
                if !helo {
                    return;
                }
                line.clear();
            }
        }));
        let s = stop.clone();
        udp.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        threads.push(std::thread::spawn(move || {
            let mut b = [0u8; 512];
            while !s.load(Ordering::SeqCst) {
                if let Ok((_, from)) = udp.recv_from(&mut b) {
                    let _ = udp.send_to(b"pong", from);
                }
            }
        }));
        Servers { stop, threads }
    }
}

/// Accepts until `stop`, serving each connection on its own thread.
fn accept_loop(l: TcpListener, stop: Arc<AtomicBool>, serve: impl Fn(TcpStream) + Send + Sync + Copy + 'static) -> std::thread::JoinHandle<()> {
    l.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((c, _)) => {
                    let _ = c.set_nonblocking(false);
                    std::thread::spawn(move || serve(c));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    })
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// dnsmasq answering `www.test A` in `ns`.
fn dnsmasq(ns: &Netns, addr: &str) -> Proc {
    let child = ns
        .cmd("dnsmasq")
        .args(["--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces", &format!("--listen-address={addr}"), "--port=53", "--host-record=www.test,198.18.45.50", "--pid-file=", "--user=root"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dnsmasq");
    let p = Proc(child);
    wait_for("dnsmasq listening", Duration::from_secs(10), || ns.run(&["ss", "-H", "-lnu", "sport = :53"]).ok().filter(|o| !o.trim().is_empty()));
    p
}

/// Client and director on one veth (198.18.44.0/24, the VIP held by VRRP on the director's
/// eth0), the real servers behind the director on a bridge (198.18.45.0/24) with the director
/// as their gateway, so NAT replies come back through it.
struct Lab {
    client: Netns,
    director: Netns,
    rs: Vec<Netns>,
    _bridge: Bridge,
    dir: std::path::PathBuf,
}

impl Lab {
    fn new() -> Lab {
        require_root();
        require_bin("nft", "nftables");
        require_bin("dnsmasq", "dnsmasq-base");
        let client = Netns::new("xc").expect("netns");
        let director = Netns::new("xd").expect("netns");
        let mut back = Bridge::new().expect("bridge");
        netns::veth(&director, "eth0", &["198.18.44.1/24"], &client, "eth0", &["198.18.44.2/24"]).expect("veth");
        back.attach(&director, "eth1", &["198.18.45.1/24"]).expect("attach");
        client.run(&["ip", "route", "add", "default", "via", "198.18.44.1"]).expect("route");
        client.run(&["ethtool", "-K", "eth0", "gro", "on"]).expect("ethtool");
        // NAT needs forwarding, as IPVS NAT does: the real servers' replies are routed back to
        // the client through the director (DR and TUN labs leave it off).
        director.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]).expect("forwarding");
        let mut rs = Vec::new();
        for (i, addr) in RS.iter().enumerate() {
            let ns = Netns::new(&format!("x{i}")).expect("netns");
            back.attach(&ns, "eth0", &[&format!("{addr}/24")]).expect("attach");
            ns.run(&["ip", "route", "add", "default", "via", "198.18.45.1"]).expect("route");
            full_checksums(&ns, "eth0");
            ns.run(&["nft", "add", "table", "inet", "katest"]).expect("nft table");
            ns.run(&["nft", "add", "chain", "inet", "katest", "in", "{ type filter hook input priority 0 ; policy accept ; }"]).expect("nft chain");
            rs.push(ns);
        }
        gro_on_legs(&back);
        full_checksums(&client, "eth0");
        let dir = std::env::temp_dir().join(unique_name("khx"));
        std::fs::create_dir_all(&dir).expect("dir");
        Lab { client, director, rs, _bridge: back, dir }
    }

    fn conf(&self) -> String {
        let mut text = format!(
            "vrrp_instance VI_HX {{\n state MASTER\n interface eth0\n virtual_router_id 91\n priority 150\n advert_int 1\n virtual_ipaddress {{\n {VIP}/24\n }}\n}}\n"
        );
        for (port, checker) in SERVICES {
            let checker = checker.replace("TIMING ", &timing());
            text.push_str(&format!("virtual_server {VIP} {port} {{\n delay_loop {DELAY_LOOP}\n lb_algo mh\n mh-port\n lb_kind NAT\n protocol TCP\n"));
            for a in RS {
                text.push_str(&format!(" real_server {a} 80 {{\n  {checker}\n }}\n"));
            }
            text.push_str("}\n");
        }
        let p = self.dir.join("ka.conf");
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf-8").to_owned()
    }

    /// Makes real server `i` silent: every packet reaching its namespace is dropped.
    fn silence(&self, i: usize) {
        self.rs[i].run(&["nft", "add", "rule", "inet", "katest", "in", "meta", "nfproto", "ipv4", "drop"]).expect("nft add rule");
    }

    fn heal(&self, i: usize) {
        self.rs[i].run(&["nft", "flush", "chain", "inet", "katest", "in"]).expect("nft flush");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A veth frame with a partial checksum loses its offload metadata when XDP forwards it.
fn full_checksums(ns: &Netns, dev: &str) {
    ns.run(&["ethtool", "-K", dev, "tx", "off"]).expect("ethtool: install Debian's ethtool (cargo xtask setup)");
}

/// XDP_TX/XDP_REDIRECTed frames reach a veth peer only if it runs XDP or GRO.
fn gro_on_legs(bridge: &Bridge) {
    let hub = bridge.hub();
    for leg in hub.run(&["ls", "/sys/class/net"]).expect("ls").split_whitespace() {
        if leg.starts_with("leg") {
            hub.run(&["ethtool", "-K", leg, "gro", "on"]).expect("ethtool");
        }
    }
}

/// Opens `n` connections to VIP:`port` from the client; returns how many each real server
/// answered, and how many got no answer.
fn connect_many(client: &Netns, port: u16, n: usize) -> [usize; 3] {
    client
        .enter(move || {
            let mut counts = [0usize; 3];
            let addr: SocketAddr = format!("{VIP}:{port}").parse().expect("addr");
            for _ in 0..n {
                let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
                    counts[2] += 1;
                    continue;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                match buf.lines().last().map(str::trim) {
                    Some("rs0") => counts[0] += 1,
                    Some("rs1") => counts[1] += 1,
                    _ => counts[2] += 1,
                }
            }
            counts
        })
        .expect("enter client")
        .join()
        .expect("client thread")
}

/// One real server of one service in `ka status --json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    in_table: bool,
    packets: u64,
}

/// VIP port → real server address → entry, from `ka status --json` `services`.
fn table(ka: &KaDaemon) -> Option<BTreeMap<u16, BTreeMap<String, Entry>>> {
    let st = ka.status_json().ok()?;
    let mut out = BTreeMap::new();
    for svc in st["services"].as_array()? {
        let port = u16::try_from(svc["port"].as_u64()?).ok()?;
        let mut m = BTreeMap::new();
        for b in svc["backends"].as_array()? {
            m.insert(b["address"].as_str()?.to_owned(), Entry { in_table: b["in_table"].as_bool()?, packets: b["packets"].as_u64()? });
        }
        out.insert(port, m);
    }
    Some(out)
}

fn all_in(t: &BTreeMap<u16, BTreeMap<String, Entry>>, rs: &str, want: bool) -> bool {
    SERVICES.iter().all(|(p, _)| t.get(p).and_then(|m| m.get(rs)).is_some_and(|e| e.in_table == want))
}

/// Every checker type: a real server that goes silent leaves the XDP backend set within the
/// bound, gets no new flow through the VIP, and comes back (with new flows) when it answers
/// again.
#[test]
fn silent_server_leaves_xdp_set_within_bound_and_returns() {
    let lab = Lab::new();
    let _s0 = Servers::start(&lab.rs[0], "rs0");
    let _s1 = Servers::start(&lab.rs[1], "rs1");
    let _d0 = dnsmasq(&lab.rs[0], RS[0]);
    let _d1 = dnsmasq(&lab.rs[1], RS[1]);
    let conf = lab.conf();
    let ka = KaDaemon::start(&lab.director, &ka_bin(), &unique_name("hx"), &["-f", &conf, "--iface", "eth1"]).expect("ka run");
    wait_for("VRRP master", WAIT, || ka.status_json().ok().filter(|s| s["vrrp"][0]["state"] == "MASTER").map(|_| ()));
    wait_for("both real servers of every service in the table", WAIT, || {
        table(&ka).filter(|t| all_in(t, RS[0], true) && all_in(t, RS[1], true))
    });
    for (port, _) in SERVICES {
        let c = wait_for(&format!("connections through VIP:{port}"), WAIT, || {
            let c = connect_many(&lab.client, port, 30);
            (c[2] == 0).then_some(c)
        });
        assert!(c[0] >= 3 && c[1] >= 3, "VIP:{port}: both real servers take new flows before the cut: {c:?}");
    }

    // rs1 goes silent: each service must drop it within the bound.
    lab.silence(1);
    let cut = Instant::now();
    let mut left: BTreeMap<u16, Duration> = BTreeMap::new();
    while left.len() < SERVICES.len() && cut.elapsed() < LEAVE_BOUND + Duration::from_secs(10) {
        if let Some(t) = table(&ka) {
            let now = cut.elapsed();
            for (port, _) in SERVICES {
                if t.get(&port).and_then(|m| m.get(RS[1])).is_some_and(|e| !e.in_table) {
                    left.entry(port).or_insert(now);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("rs1 left the XDP backend set after (VIP port → time): {left:?}; bound {LEAVE_BOUND:?}");
    let status = ka.status_text().unwrap_or_default();
    for (port, checker) in SERVICES {
        let took = left.get(&port).copied();
        assert!(took.is_some_and(|t| t <= LEAVE_BOUND), "VIP:{port} ({checker}): rs1 left after {took:?}, bound {LEAVE_BOUND:?}\n{status}");
    }
    // No new flow reaches it: every connection is answered by rs0, and rs1's counters stay.
    let before = table(&ka).expect("status");
    for (port, _) in SERVICES {
        let c = connect_many(&lab.client, port, 20);
        assert_eq!(c, [20, 0, 0], "VIP:{port}: after rs1 went silent every new connection goes to rs0");
    }
    let after = table(&ka).expect("status");
    for (port, _) in SERVICES {
        let (b, a) = (before[&port][RS[1]], after[&port][RS[1]]);
        assert_eq!(a.packets, b.packets, "VIP:{port}: no packet forwarded to rs1 once it left");
        assert!(after[&port][RS[0]].packets > before[&port][RS[0]].packets, "VIP:{port}: rs0 counters grow");
    }

    // It answers again: back in every table, and new flows reach it.
    lab.heal(1);
    wait_for("rs1 back in every table", WAIT, || table(&ka).filter(|t| all_in(t, RS[1], true)));
    for (port, _) in SERVICES {
        let c = connect_many(&lab.client, port, 30);
        assert!(c[1] >= 3 && c[2] == 0, "VIP:{port}: rs1 gets new flows again: {c:?}");
    }
    ka.stop().expect("stop");
}

/// Checks done so far by service `name`'s first real server, from `ka status --json`.
fn checks_of(ka: &KaDaemon, name: &str) -> Option<u64> {
    let st = ka.status_json().ok()?;
    st["health"]["real_servers"].as_array()?.iter().find(|r| r["service"] == name)?["checkers"][0]["checks"].as_u64()
}

fn vrrp_state(ka: &KaDaemon, instance: &str) -> Option<String> {
    let st = ka.status_json().ok()?;
    st["vrrp"].as_array()?.iter().find(|i| i["name"] == instance)?["state"].as_str().map(str::to_owned)
}

/// `ha_suspend` through the daemon: each service's checks follow the VRRP instance holding
/// its VIP. The director is MASTER of VI_HX and, while a peer with a higher priority runs,
/// BACKUP of VI_BK: VI_HX's service is checked, VI_BK's is not; when the peer stops and
/// VI_BK becomes MASTER, its service's checks start.
#[test]
fn ha_suspend_follows_the_instance_holding_the_vip() {
    const VIP2: &str = "198.18.44.101";
    let lab = Lab::new();
    let _s0 = Servers::start(&lab.rs[0], "rs0");
    let vs = |vip: &str| {
        format!(
            "virtual_server {vip} 8001 {{\n delay_loop 0.2\n lb_algo mh\n mh-port\n lb_kind NAT\n protocol TCP\n ha_suspend\n real_server {} 80 {{\n  TCP_CHECK {{\n   connect_timeout 1\n  }}\n }}\n}}\n",
            RS[0]
        )
    };
    let text = format!(
        "vrrp_instance VI_HX {{\n state MASTER\n interface eth0\n virtual_router_id 91\n priority 150\n advert_int 1\n virtual_ipaddress {{\n {VIP}/24\n }}\n}}\n\
         vrrp_instance VI_BK {{\n state BACKUP\n interface eth0\n virtual_router_id 92\n priority 50\n advert_int 1\n virtual_ipaddress {{\n {VIP2}/24\n }}\n}}\n{}{}",
        vs(VIP),
        vs(VIP2)
    );
    let conf = lab.dir.join("ha.conf");
    std::fs::write(&conf, text).expect("write");
    let peer_conf = lab.dir.join("peer.conf");
    std::fs::write(
        &peer_conf,
        format!("vrrp_instance VI_BK {{\n state MASTER\n interface eth0\n virtual_router_id 92\n priority 200\n advert_int 1\n virtual_ipaddress {{\n {VIP2}/24\n }}\n}}\n"),
    )
    .expect("write");
    let peer = KaDaemon::start(&lab.client, &ka_bin(), &unique_name("hp"), &["-f", peer_conf.to_str().expect("utf-8"), "--no-xdp"]).expect("peer ka run");
    wait_for("peer MASTER of VI_BK", WAIT, || (vrrp_state(&peer, "VI_BK").as_deref() == Some("MASTER")).then_some(()));
    let ka = KaDaemon::start(&lab.director, &ka_bin(), &unique_name("ha"), &["-f", conf.to_str().expect("utf-8"), "--iface", "eth1"]).expect("ka run");
    let (a, b) = (format!("{VIP}:8001"), format!("{VIP2}:8001"));
    wait_for("VI_HX MASTER, VI_BK BACKUP", WAIT, || {
        (vrrp_state(&ka, "VI_HX").as_deref() == Some("MASTER") && vrrp_state(&ka, "VI_BK").as_deref() == Some("BACKUP")).then_some(())
    });
    wait_for("VI_HX's service checked", WAIT, || checks_of(&ka, &a).filter(|c| *c >= 10));
    assert_eq!(checks_of(&ka, &b), Some(0), "VI_BK is BACKUP: its ha_suspend service is not checked\n{}", ka.status_text().unwrap_or_default());
    let st = ka.status_json().expect("status");
    assert_eq!(st["health"]["suspended_services"], serde_json::json!([b]), "{st}");
    // The peer goes away: VI_BK becomes MASTER here and its service's checks start.
    peer.stop().expect("stop peer");
    wait_for("VI_BK MASTER", WAIT, || (vrrp_state(&ka, "VI_BK").as_deref() == Some("MASTER")).then_some(()));
    wait_for("VI_BK's service checked", WAIT, || checks_of(&ka, &b).filter(|c| *c >= 5));
    let st = ka.status_json().expect("status");
    assert_eq!(st["health"]["suspended_services"], serde_json::json!([]), "{st}");
    ka.stop().expect("stop");
}
