//! Connection sync between two ka directors (`lvs_sync_daemon`), end to end in namespaces:
//! long-lived TCP connections are scheduled by round robin through the MASTER, the MASTER dies
//! (SIGKILL, links down), the BACKUP takes the VIP, and the same connections go on talking.
//!
//! Round robin is not consistent across directors (Maglev is: it hides the problem, which is
//! why these tests use `rr`). Without sync, the new MASTER schedules each established flow's
//! next packet afresh, and a flow it sends to another real server is reset. To make that
//! deterministic, after the failover the connections are asked in an order where every one of
//! them would land on another server than its own from a fresh round-robin cursor (rs1's
//! first, then rs2's, then rs0's...); with sync they all answer from their own server.
//!
//! - DR: client, directors and real servers on one LAN (real servers reply to the client).
//! - NAT: client and directors on the front LAN, real servers on the back LAN with a
//!   VRRP-held gateway address, so replies go through whichever director is MASTER; the new
//!   MASTER needs the MASTER's translations (NAT reverse entries) as well as its connections.

use std::{
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    time::Duration,
};

use ka::lb::sync::{net::SyncSockets, SyncParams, Timeouts};
use ka_tests::{
    daemon::KaDaemon,
    ka_bin,
    lan::{ask, full_checksums, tcp_check, Accepted, EchoServer},
    netns::{self, Bridge, Netns},
    require_root, unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);
const VPORT: u16 = 8080;
const SERVERS: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Dr,
    Nat,
}

/// The addresses of one lab.
struct Plan {
    vip: &'static str,
    client: &'static str,
    directors: [&'static str; 2],
    /// NAT: the directors' back addresses and the VRRP-held gateway of the real servers.
    back: Option<([&'static str; 2], &'static str)>,
    rs: [&'static str; SERVERS],
    rport: u16,
}

const DR_PLAN: Plan = Plan {
    vip: "198.18.44.100",
    client: "198.18.44.2",
    directors: ["198.18.44.1", "198.18.44.3"],
    back: None,
    rs: ["198.18.44.11", "198.18.44.12", "198.18.44.13"],
    rport: VPORT,
};

const NAT_PLAN: Plan = Plan {
    vip: "198.18.45.100",
    client: "198.18.45.2",
    directors: ["198.18.45.1", "198.18.45.3"],
    back: Some((["198.18.46.2", "198.18.46.3"], "198.18.46.1")),
    rs: ["198.18.46.11", "198.18.46.12", "198.18.46.13"],
    rport: 80,
};

/// The namespaces of one test. Fields drop in order: namespaces, then bridges.
struct Lab {
    kind: Kind,
    plan: &'static Plan,
    client: Netns,
    directors: Vec<Netns>,
    rs: Vec<Netns>,
    _bridges: Vec<Bridge>,
    dir: PathBuf,
    accepted: Accepted,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lab(kind: Kind) -> Lab {
    require_root();
    let plan = if kind == Kind::Dr { &DR_PLAN } else { &NAT_PLAN };
    let mut front = Bridge::new().expect("bridge");
    let client = Netns::new("sc").expect("netns");
    front.attach(&client, "eth0", &[&format!("{}/24", plan.client)]).expect("attach");
    full_checksums(&client, "eth0").expect("checksums");
    let mut directors = Vec::new();
    for a in plan.directors {
        let d = Netns::new("sd").expect("netns");
        front.attach(&d, "eth0", &[&format!("{a}/24")]).expect("attach");
        directors.push(d);
    }
    let mut rs = Vec::new();
    let mut bridges = vec![front];
    match plan.back {
        None => {
            for a in plan.rs {
                let ns = Netns::new("sr").expect("netns");
                bridges[0].attach(&ns, "eth0", &[&format!("{a}/24")]).expect("attach");
                // DR: the VIP on loopback, never answered for in ARP.
                ns.run(&["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2"]).expect("sysctl");
                ns.run(&["ip", "addr", "add", &format!("{}/32", plan.vip), "dev", "lo"]).expect("vip on lo");
                full_checksums(&ns, "eth0").expect("checksums");
                rs.push(ns);
            }
            for d in &directors {
                d.run(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]).expect("sysctl");
            }
        }
        Some((back_addrs, gw)) => {
            let mut back = Bridge::new().expect("bridge");
            for (d, a) in directors.iter().zip(back_addrs) {
                back.attach(d, "eth1", &[&format!("{a}/24")]).expect("attach");
                // NAT needs forwarding, as IPVS NAT does.
                d.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]).expect("sysctl");
            }
            for a in plan.rs {
                let ns = Netns::new("sr").expect("netns");
                back.attach(&ns, "eth0", &[&format!("{a}/24")]).expect("attach");
                ns.run(&["ip", "route", "add", "default", "via", gw]).expect("route");
                full_checksums(&ns, "eth0").expect("checksums");
                rs.push(ns);
            }
            bridges.push(back);
        }
    }
    let dir = std::env::temp_dir().join(unique_name("ksy"));
    std::fs::create_dir_all(&dir).expect("dir");
    Lab { kind, plan, client, directors, rs, _bridges: bridges, dir, accepted: Accepted::default() }
}

impl Lab {
    /// The config of director `d`: a VRRP instance holding the VIP (and, for NAT, the real
    /// servers' gateway), one round-robin virtual server, and `lvs_sync_daemon` when `sync`.
    fn conf(&self, d: usize, sync: bool) -> String {
        let p = self.plan;
        // `ka run` entered with nsenter checks interfaces in the host's /sys/class/net, where
        // the namespace's eth1 is missing: `dynamic_interfaces` keeps the gateway VIP on it.
        let global = match (sync, p.back.is_some()) {
            (true, true) => "global_defs {\n dynamic_interfaces\n lvs_sync_daemon eth0 VI_SYNC\n}\n",
            (true, false) => "global_defs {\n lvs_sync_daemon eth0 VI_SYNC\n}\n",
            (false, true) => "global_defs {\n dynamic_interfaces\n}\n",
            (false, false) => "",
        };
        let (state, prio) = if d == 0 { ("MASTER", 150) } else { ("BACKUP", 100) };
        let vips = match p.back {
            None => format!("  {}/24\n", p.vip),
            Some((_, gw)) => format!("  {}/24 dev eth0\n  {gw}/24 dev eth1\n", p.vip),
        };
        let kind = if self.kind == Kind::Dr { "DR" } else { "NAT" };
        let rs: String = p.rs.iter().map(|a| format!(" real_server {a} {} {{\n{} }}\n", p.rport, tcp_check())).collect();
        let text = format!(
            "{global}vrrp_instance VI_SYNC {{\n state {state}\n priority {prio}\n interface eth0\n virtual_router_id 93\n advert_int 1\n virtual_ipaddress {{\n{vips} }}\n}}\n\
virtual_server {} {VPORT} {{\n delay_loop 1\n lb_algo rr\n lb_kind {kind}\n protocol TCP\n{rs}}}\n",
            p.vip
        );
        let path = self.dir.join(format!("ka{d}.conf"));
        std::fs::write(&path, text).expect("write");
        path.to_str().expect("utf-8").to_owned()
    }

    /// Starts `ka run` on director `d` and waits until every real server is in its table.
    fn start_ka(&self, d: usize, sync: bool) -> KaDaemon {
        let mut args = vec!["-f".to_owned(), self.conf(d, sync)];
        if self.kind == Kind::Nat {
            args.extend(["--iface".to_owned(), "eth1".to_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ka = KaDaemon::start(&self.directors[d], &ka_bin(), &unique_name("sy"), &args).expect("ka run");
        for rs in self.plan.rs {
            wait_for(&format!("{rs} in the table of director {d}"), WAIT, || {
                let st = ka.status_json().ok()?;
                let b = st["services"][0]["backends"].as_array()?.iter().find(|b| b["address"] == rs)?.clone();
                b["in_table"].as_bool().filter(|&t| t).map(|_| ())
            });
        }
        ka
    }

    fn start_servers(&self) -> Vec<EchoServer> {
        let client = [self.plan.client.parse().expect("ip")];
        (0..SERVERS).map(|i| EchoServer::start(&self.rs[i], i, self.plan.rport, &self.accepted, &client).expect("echo server")).collect()
    }

    /// Opens a connection to the VIP from the client (from CPU 0).
    fn connect(&self) -> Option<TcpStream> {
        let vip = SocketAddr::new(self.plan.vip.parse().expect("addr"), VPORT);
        self.client
            .enter(move || {
                pin(0);
                let s = TcpStream::connect_timeout(&vip, Duration::from_secs(2)).ok()?;
                s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                Some(s)
            })
            .expect("enter client")
            .join()
            .expect("client thread")
    }

    /// Two long-lived connections per real server (round robin gives them in turn).
    fn open_long(&self) -> Vec<Long> {
        let mut out: Vec<Long> = Vec::new();
        for _ in 0..30 {
            if (0..SERVERS).all(|i| out.iter().filter(|l| l.server == i).count() >= 2) {
                break;
            }
            if let Some(mut s) = self.connect() {
                if let Some(server) = ask(&mut s) {
                    if out.iter().filter(|l| l.server == server).count() < 2 {
                        out.push(Long { s, server });
                    }
                }
            }
        }
        assert!((0..SERVERS).all(|i| out.iter().filter(|l| l.server == i).count() == 2), "round robin: {:?}", out.iter().map(|l| l.server).collect::<Vec<_>>());
        out
    }
}

/// A long-lived connection and the server that answered it first.
struct Long {
    s: TcpStream,
    server: usize,
}

fn pin(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    let cpus = usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(1);
    set.set(cpu.min(cpus.saturating_sub(1))).expect("cpu index");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("sched_setaffinity");
}

/// The connections in an order where a fresh round-robin cursor (rs0, rs1, rs2, ...) sends
/// every one of them to another server than its own: rs1's, rs2's, rs0's, twice.
fn adversarial(long: Vec<Long>) -> Vec<Long> {
    let mut by_server: Vec<Vec<Long>> = (0..SERVERS).map(|_| Vec::new()).collect();
    for l in long {
        by_server[l.server].push(l);
    }
    let mut out = Vec::new();
    for _ in 0..2 {
        for s in [1, 2, 0] {
            if let Some(l) = by_server[s].pop() {
                out.push(l);
            }
        }
    }
    out
}

fn vrrp_state(ka: &KaDaemon) -> String {
    ka.status_json().ok().and_then(|s| s["vrrp"][0]["state"].as_str().map(str::to_owned)).unwrap_or_default()
}

/// How a failover test runs sync.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// No `lvs_sync_daemon`.
    Off,
    /// Both directors sync from the start.
    On,
    /// The BACKUP starts after the connections were opened: it learns them from the
    /// MASTER's refresh, while they carry traffic.
    LateBackup,
}

/// Runs a failover with long-lived connections; returns, per connection in the order asked,
/// whether it answered from its own server afterwards.
fn failover(kind: Kind, mode: Mode) -> Vec<bool> {
    let sync = mode != Mode::Off;
    pin(0);
    let lab = lab(kind);
    let _servers = lab.start_servers();
    let ka0 = lab.start_ka(0, sync);
    wait_for("director 0 MASTER", WAIT, || (vrrp_state(&ka0) == "MASTER").then_some(()));
    let start_backup = || {
        let ka1 = lab.start_ka(1, sync);
        wait_for("director 1 BACKUP", WAIT, || (vrrp_state(&ka1) == "BACKUP").then_some(()));
        ka1
    };
    let early = (mode != Mode::LateBackup).then(start_backup);
    if kind == Kind::Nat {
        // The new MASTER must know the client's MAC to send it the translated replies, as it
        // knows its gateway's in a routed network: XDP cannot resolve a neighbour itself (an
        // unresolved reply would pass to the kernel untranslated).
        // A datagram from the client to each director's address makes the client ask for its
        // MAC, and the director learns the client's from the request.
        let to: Vec<SocketAddr> = lab.plan.directors.iter().map(|a| SocketAddr::new(a.parse().expect("ip"), 9)).collect();
        lab.client
            .enter(move || {
                let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
                for a in &to {
                    let _ = s.send_to(b"hello", a);
                }
            })
            .expect("enter client")
            .join()
            .expect("client thread");
        for d in &lab.directors {
            wait_for("the director's neighbour entry of the client", WAIT, || {
                d.run(&["ip", "neigh", "show", lab.plan.client, "dev", "eth0"]).ok().filter(|l| l.contains("lladdr")).map(|_| ())
            });
        }
    }
    let mut long = lab.open_long();
    for l in &long {
        l.s.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    }
    let n = long.len() as u64;
    let ka1 = early.unwrap_or_else(start_backup);
    if sync {
        let st = ka0.status_json().expect("status");
        assert_eq!(st["sync"]["role"], "master", "{st}");
        // A late BACKUP waits for the MASTER's refresh (a pass every 32 s re-announces the
        // connections that carried traffic since the previous one): they talk once a second.
        let wait = if mode == Mode::LateBackup { Duration::from_secs(90) } else { WAIT };
        let mut last = std::time::Instant::now();
        wait_for("the BACKUP installed every connection", wait, || {
            if mode == Mode::LateBackup && last.elapsed() >= Duration::from_secs(1) {
                last = std::time::Instant::now();
                for l in long.iter_mut() {
                    assert_eq!(ask(&mut l.s), Some(l.server), "through the MASTER");
                }
            }
            let st = ka1.status_json().ok()?;
            (st["sync"]["installed"].as_u64()? >= n).then_some(())
        });
        if mode == Mode::LateBackup {
            let st = ka0.status_json().expect("status");
            assert!(st["sync"]["refreshed"].as_u64() >= Some(n), "the refresh re-announced them: {}", st["sync"]);
        }
        let st = ka1.status_json().expect("status");
        assert_eq!(st["sync"]["role"], "backup", "{st}");
        assert!(st["sync"]["dropped"].as_object().is_none_or(|m| m.is_empty()), "nothing dropped: {}", st["sync"]);
    } else {
        assert!(ka1.status_json().expect("status")["sync"].is_null(), "no lvs_sync_daemon, no sync section");
    }
    ka0.kill();
    for iface in if kind == Kind::Nat { &["eth0", "eth1"][..] } else { &["eth0"][..] } {
        lab.directors[0].run(&["ip", "link", "set", iface, "down"]).expect("link down");
    }
    wait_for("director 1 MASTER", WAIT, || (vrrp_state(&ka1) == "MASTER").then_some(()));
    let mut long = adversarial(long);
    let servers: Vec<usize> = long.iter().map(|l| l.server).collect();
    let kept: Vec<bool> = std::thread::scope(|sc| {
        sc.spawn(|| {
            pin(1);
            long.iter_mut().map(|l| ask(&mut l.s) == Some(l.server)).collect()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    });
    eprintln!("{kind:?} sync {mode:?}: servers asked {servers:?}, kept {kept:?}");
    if sync {
        let st = ka1.status_json().expect("status");
        assert_eq!(st["sync"]["role"], "master", "the new MASTER took the sending role: {st}");
    }
    ka1.stop().expect("stop");
    kept
}

/// DR, rr, sync on: every established connection survives the failover on its own server.
#[test]
fn dr_rr_failover_with_sync_keeps_every_connection() {
    let kept = failover(Kind::Dr, Mode::On);
    assert!(kept.iter().all(|&k| k), "connections lost despite sync: {kept:?}");
}

/// DR, rr, a BACKUP started after the connections were opened (or restarted): the MASTER's
/// refresh re-announces the connections carrying traffic, and they survive the failover.
#[test]
fn dr_rr_failover_to_a_late_backup_keeps_active_connections() {
    let kept = failover(Kind::Dr, Mode::LateBackup);
    assert!(kept.iter().all(|&k| k), "connections lost despite the refresh: {kept:?}");
}

/// DR, rr, sync off (the contrast): the new MASTER reschedules established flows, and those
/// sent to another real server are reset.
#[test]
fn dr_rr_failover_without_sync_resets_connections() {
    let kept = failover(Kind::Dr, Mode::Off);
    assert!(kept.iter().any(|&k| !k), "without sync every connection survived: the sync test proves nothing: {kept:?}");
}

/// NAT, rr, sync on: connections keep their real server and their translation (replies come
/// back through the new MASTER's reverse entries).
#[test]
fn nat_rr_failover_with_sync_keeps_every_connection() {
    let kept = failover(Kind::Nat, Mode::On);
    assert!(kept.iter().all(|&k| k), "connections lost despite sync: {kept:?}");
}

/// NAT, rr, sync off (the contrast): the new MASTER has neither the connections nor the
/// translations.
#[test]
fn nat_rr_failover_without_sync_breaks_connections() {
    let kept = failover(Kind::Nat, Mode::Off);
    assert!(kept.iter().any(|&k| !k), "without sync every connection survived: the sync test proves nothing: {kept:?}");
}

/// The sync sockets as the daemon opens them carry a datagram from one director to the other
/// over the IPv4 group (IPVS's default) and over an IPv6 link-local group, bound to the sync
/// interface; the sender does not hear itself (multicast loop off).
#[test]
fn sync_sockets_carry_datagrams_on_ipv4_and_ipv6_groups() {
    require_root();
    let a = Netns::new("sa").expect("netns");
    let b = Netns::new("sb").expect("netns");
    netns::veth(&a, "eth0", &["198.18.47.1/24"], &b, "eth0", &["198.18.47.2/24"]).expect("veth");
    for group in ["224.0.0.81", "ff02::81"] {
        let p = SyncParams {
            interface: "eth0".into(),
            instance: "VI_1".into(),
            syncid: 1,
            maxlen: 1472,
            port: 8848,
            ttl: 1,
            group: group.parse().expect("group"),
            timeouts: Timeouts::default(),
        };
        let run = |p: SyncParams, send: bool| {
            move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async move {
                    // IPv6 needs the link-local address, which waits for DAD: retry a while.
                    let start = std::time::Instant::now();
                    let s = loop {
                        match SyncSockets::open(&p) {
                            Ok(s) => break s,
                            Err(e) if start.elapsed() > WAIT => panic!("{}: {e}", p.group),
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    };
                    let mut buf = [0u8; 64];
                    let mut got = Vec::new();
                    while start.elapsed() < WAIT {
                        if send {
                            let _ = s.tx.send(b"sync").await;
                        }
                        // The receiver waits for the datagram; the sender checks it hears nothing.
                        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), s.rx.recv(&mut buf)).await {
                            got = buf[..n].to_vec();
                            break;
                        }
                        if send && start.elapsed() > Duration::from_secs(5) {
                            break;
                        }
                    }
                    got
                })
            }
        };
        let rx = b.enter(run(p.clone(), false)).expect("enter b");
        let tx = a.enter(run(p, true)).expect("enter a");
        assert_eq!(rx.join().expect("receiver"), b"sync", "{group}: received on the other director");
        assert_eq!(tx.join().expect("sender"), b"", "{group}: the sender does not hear itself");
    }
}

/// A reload follows `lvs_sync_daemon`: new parameters take effect at once (new sockets, the
/// MASTER keeps sending, its new connections go out with the new sync id and port), and
/// removing the keyword stops sync.
#[test]
fn reload_applies_lvs_sync_daemon_changes() {
    pin(0);
    let lab = lab(Kind::Dr);
    let _servers = lab.start_servers();
    let ka = lab.start_ka(0, true);
    wait_for("MASTER", WAIT, || (vrrp_state(&ka) == "MASTER").then_some(()));
    let sync = |ka: &KaDaemon| ka.status_json().expect("status")["sync"].clone();
    let s = sync(&ka);
    assert_eq!((s["role"].as_str(), s["syncid"].as_u64(), s["group"].as_str()), (Some("master"), Some(93), Some("224.0.0.81:8848")), "{s}");
    let conf = lab.dir.join("ka0.conf");
    let reload = |line: &str| {
        let text = std::fs::read_to_string(&conf).expect("read");
        let text = text.lines().map(|l| if l.contains("lvs_sync_daemon") { line } else { l }).collect::<Vec<_>>().join("\n") + "\n";
        std::fs::write(&conf, text).expect("write");
        let out = std::process::Command::new(ka_bin()).args(["--instance", ka.instance(), "reload"]).output().expect("ka reload");
        assert!(out.status.success(), "ka reload: {}", String::from_utf8_lossy(&out.stderr));
    };
    reload(" lvs_sync_daemon eth0 VI_SYNC id 7 port 9848");
    let s = sync(&ka);
    assert_eq!((s["role"].as_str(), s["syncid"].as_u64(), s["group"].as_str()), (Some("master"), Some(7), Some("224.0.0.81:9848")), "{s}");
    let before = s["sent_entries"].as_u64().unwrap_or(0);
    let mut c = lab.connect().expect("connect");
    assert!(ask(&mut c).is_some());
    wait_for("the new connection sent on the new socket", WAIT, || (sync(&ka)["sent_entries"].as_u64()? > before).then_some(()));
    reload(" router_id a");
    assert!(sync(&ka).is_null(), "lvs_sync_daemon removed: sync stopped");
    ka.stop().expect("stop");
}
