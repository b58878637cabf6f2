//! End to end through the XDP load balancer, for NAT, DR and TUN: real TCP connections from a
//! client namespace to a VIP served by `ka run` on a director, forwarded to line-echo servers
//! in real-server namespaces. The director's VIP is held by VRRP (mastership gates the
//! service) and the real servers are health-checked.
//!
//! - Distribution: Maglev spreads new connections over the servers.
//! - Health: a server whose check fails leaves the backend set and gets no new flows; it comes
//!   back when it recovers.
//! - Stickiness: long-lived connections (exchanging data before and after) to the servers that
//!   stay keep working, on the same server, while another server is removed or added; and
//!   Maglev moves few of the other servers' flows.
//! - Draining: at weight 0 a server keeps its established connections and gets no new ones.
//! - Failover: two directors with the same config; when the VRRP master is killed, the backup
//!   takes the VIP and established connections keep going to the same real server.
//!
//! - Forwarding: DR and TUN directors keep forwarding off, as on a default host (ka forwards
//!   from the next hops it resolves; `ka status` says how each real server is reached); NAT
//!   needs it, and without it `ka status` marks its real servers unreachable, naming the sysctl.
//!
//! Lab notes. The real servers' health comes from a MISC_CHECK script reading a state file the
//! test writes (up, drained at weight 0, or down), except in the tests that stop a listener.
//! Nothing runs on the far ends of the directors' veths: `ka run` attaches in generic mode
//! there (auto mode), which delivers what the datapath sends with `XDP_TX`. A veth lab has no RSS: a packet is
//! processed on the CPU that sent it. The tests establish their connections from CPU 0 and
//! keep talking on them from CPU 1, so a flow's packets change CPU as they can on a NIC when
//! its RSS indirection changes. The Maglev checks reuse the same client ports for new
//! connections before and after a change: a SYN is scheduled by the table without a
//! connection-table lookup, so each answer is the table's, compared with userspace's
//! [`ka::lb::writer::service_table`].

use std::{
    collections::HashMap,
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use ka_tests::{
    daemon::KaDaemon,
    ka_bin,
    lan::{ask, full_checksums, misc_check, tcp_check, Accepted, EchoServer, Lan, LanSpec, LbConf, RealServerConf, role},
    netns::{self, Bridge, Netns},
    require_root, unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);
const VIP: &str = "198.18.40.100";
const DIRECTORS: [&str; 2] = ["198.18.40.1", "198.18.40.3"];
const CLIENT: &str = "198.18.40.2";
/// Real servers on the client's LAN (DR, TUN).
const RS_LAN: [&str; 3] = ["198.18.40.11", "198.18.40.12", "198.18.40.13"];
/// Real servers behind the director (NAT).
const RS_NAT: [&str; 3] = ["198.18.41.11", "198.18.41.12", "198.18.41.13"];
/// The IPv6 side of the LAN (every lab is dual-stack).
const VIP6: &str = "fd00:198:18:40::100";
const DIRECTORS6: [&str; 2] = ["fd00:198:18:40::1", "fd00:198:18:40::3"];
const CLIENT6: &str = "fd00:198:18:40::2";
const RS_LAN6: [&str; 3] = ["fd00:198:18:40::11", "fd00:198:18:40::12", "fd00:198:18:40::13"];
/// The IPv6 side of the NAT real servers' network.
const RS_NAT6: [&str; 3] = ["fd00:198:18:41::11", "fd00:198:18:41::12", "fd00:198:18:41::13"];
const VPORT: u16 = 8080;
const RPORT: u16 = 80;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Nat,
    Dr,
    Tun,
}

impl Kind {
    fn lb_kind(self) -> &'static str {
        match self {
            Kind::Nat => "NAT",
            Kind::Dr => "DR",
            Kind::Tun => "TUN",
        }
    }

    fn real_servers(self) -> [&'static str; 3] {
        if self == Kind::Nat {
            RS_NAT
        } else {
            RS_LAN
        }
    }

    /// DR and TUN real servers answer on the VIP itself; NAT ones on their own address.
    fn rport(self) -> u16 {
        if self == Kind::Nat {
            RPORT
        } else {
            VPORT
        }
    }
}

/// Pins the calling thread (and the threads it spawns afterwards) to `cpu`.
fn pin(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).expect("cpu index");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("sched_setaffinity");
}

/// CPUs online (not just the ones this thread may use).
fn cpus() -> usize {
    // SAFETY: plain sysconf(3).
    usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(1)
}

/// `ka decap` attached on a TUN real server's eth0; detached (and its pins removed) on drop.
struct Decap {
    ns_path: String,
    instance: String,
}

impl Decap {
    fn attach(ns: &Netns) -> Decap {
        let instance = unique_name("dc");
        netns::run(ns.nsenter(&ka_bin()).args(["--instance", &instance, "decap", "attach", "--iface", "eth0", "--vip", VIP, "--vip", VIP6]))
            .expect("ka decap attach");
        Decap { ns_path: ns.path(), instance }
    }
}

impl Drop for Decap {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nsenter")
            .arg(format!("--net={}", self.ns_path))
            .arg("--")
            .arg(ka_bin())
            .args(["--instance", &self.instance, "decap", "detach", "--iface", "eth0"])
            .output();
        let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/ka/{}", self.instance));
    }
}

/// The namespaces of one test. Fields drop in order: decap attachments first, then the
/// namespaces.
struct Lab {
    kind: Kind,
    _decap: Vec<Decap>,
    client: Netns,
    directors: Vec<Netns>,
    rs: Vec<Netns>,
    _bridges: Vec<Bridge>,
    /// The MISC_CHECK state file of each real server.
    state: Vec<std::path::PathBuf>,
    dir: std::path::PathBuf,
    accepted: Accepted,
    /// The service under test is the IPv6 one.
    v6: bool,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// DR and TUN: the client, the directors and the real servers on one LAN (198.18.40.0/24); the
/// real servers hold the VIP on loopback without answering ARP for it, and reply straight to
/// the client. TUN real servers decapsulate with `ka decap` (this kernel has no ipip module).
/// NAT: the client on one side of the director (198.18.40.0/24, fd00:198:18:40::/64), the real
/// servers behind it (198.18.41.0/24, fd00:198:18:41::/64) with the director as their gateway,
/// so replies come back through it.
fn lab(kind: Kind, directors: usize, v6: bool) -> Lab {
    require_root();
    let mut bridges = Vec::new();
    let mut rs = Vec::new();
    let mut decap = Vec::new();
    let mut dirs = Vec::new();
    let client;
    if kind == Kind::Nat {
        assert_eq!(directors, 1, "the NAT lab has one director");
        client = Netns::new("lc").expect("netns");
        let director = Netns::new("ld").expect("netns");
        let mut back = Bridge::new().expect("bridge");
        let (d4, d6) = (format!("{}/24", DIRECTORS[0]), format!("{}/64", DIRECTORS6[0]));
        let (c4, c6) = (format!("{CLIENT}/24"), format!("{CLIENT6}/64"));
        netns::veth(&director, "eth0", &[&d4, &d6], &client, "eth0", &[&c4, &c6]).expect("veth");
        back.attach(&director, "eth1", &["198.18.41.1/24", "fd00:198:18:41::1/64"]).expect("attach");
        client.run(&["ip", "route", "add", "default", "via", DIRECTORS[0]]).expect("route");
        client.run(&["ip", "-6", "route", "add", "default", "via", DIRECTORS6[0]]).expect("route");
        // NAT needs forwarding, as IPVS NAT does: the real servers' replies are routed back to
        // the client through the director (DR and TUN labs leave it off).
        director.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]).expect("forwarding");
        for (i, (addr, addr6)) in RS_NAT.iter().zip(RS_NAT6).enumerate() {
            let ns = Netns::new(&format!("r{i}")).expect("netns");
            back.attach(&ns, "eth0", &[&format!("{addr}/24"), &format!("{addr6}/64")]).expect("attach");
            ns.run(&["ip", "route", "add", "default", "via", "198.18.41.1"]).expect("route");
            ns.run(&["ip", "-6", "route", "add", "default", "via", "fd00:198:18:41::1"]).expect("route");
            full_checksums(&ns, "eth0").expect("checksums");
            rs.push(ns);
        }
        full_checksums(&client, "eth0").expect("checksums");
        dirs.push(director);
        bridges.push(back);
    } else {
        let dual = |a: &str, a6: &str| vec![format!("{a}/24"), format!("{a6}/64")];
        let lan = Lan::new(&LanSpec {
            client: dual(CLIENT, CLIENT6),
            directors: DIRECTORS[..directors].iter().zip(DIRECTORS6).map(|(a, a6)| dual(a, a6)).collect(),
            real_servers: RS_LAN.iter().zip(RS_LAN6).map(|(a, a6)| dual(a, a6)).collect(),
            loopback_vips: vec![format!("{VIP}/32"), format!("{VIP6}/128")],
        })
        .expect("LAN");
        let Lan { client: lan_client, directors: lan_dirs, real_servers, bridge } = lan;
        if kind == Kind::Tun {
            decap.extend(real_servers.iter().map(Decap::attach));
        }
        (client, dirs, rs) = (lan_client, lan_dirs, real_servers);
        bridges.push(bridge);
    }
    // Ephemeral ports stay clear of the probes' fixed ports (41000-44999).
    client.run(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=50000 60999"]).expect("port range");
    let dir = std::env::temp_dir().join(unique_name("klb"));
    std::fs::create_dir_all(&dir).expect("dir");
    let script = dir.join("check.sh");
    std::fs::write(&script, "#!/bin/sh\nread v < \"$1\"\nexit \"$v\"\n").expect("write script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let state: Vec<_> = (0..rs.len()).map(|i| dir.join(format!("rs{i}"))).collect();
    let lab = Lab { kind, _decap: decap, client, directors: dirs, rs, _bridges: bridges, state, dir, accepted: Accepted::default(), v6 };
    for i in 0..lab.rs.len() {
        lab.set_health(i, Health::Up);
    }
    lab
}

/// What a real server's MISC_CHECK (with `misc_dynamic`) reports.
#[derive(Clone, Copy)]
enum Health {
    /// Exit 3: up, weight 1.
    Up,
    /// Exit 2: up, weight 0.
    Drained,
    /// Exit 1: down.
    Down,
}

impl Lab {
    fn vip(&self) -> &'static str {
        if self.v6 {
            VIP6
        } else {
            VIP
        }
    }

    fn client_ip(&self) -> &'static str {
        if self.v6 {
            CLIENT6
        } else {
            CLIENT
        }
    }

    fn real_servers(&self) -> [&'static str; 3] {
        match (self.v6, self.kind) {
            (true, Kind::Nat) => RS_NAT6,
            (true, _) => RS_LAN6,
            (false, kind) => kind.real_servers(),
        }
    }

    fn domain(&self) -> socket2::Domain {
        if self.v6 {
            socket2::Domain::IPV6
        } else {
            socket2::Domain::IPV4
        }
    }

    fn set_health(&self, rs: usize, h: Health) {
        let code = match h {
            Health::Up => "3",
            Health::Drained => "2",
            Health::Down => "1",
        };
        std::fs::write(&self.state[rs], format!("{code}\n")).expect("write state");
    }

    /// A config for `ka run` on director `d`: a VRRP instance owning the VIP, one virtual
    /// server with the real servers, checked by MISC_CHECK (`misc`) or TCP_CHECK.
    fn conf(&self, d: usize, misc: bool) -> String {
        let rport = self.kind.rport();
        let real_servers = self
            .real_servers()
            .iter()
            .enumerate()
            .map(|(i, a)| RealServerConf {
                addr: (*a).to_owned(),
                port: rport,
                check: if misc { misc_check(&self.dir.join("check.sh"), &self.state[i]) } else { tcp_check() },
            })
            .collect();
        let text = LbConf {
            instance: "VI_LB".to_owned(),
            vrid: 90,
            role: role("", d == 0, if d == 0 { 150 } else { 100 }),
            vrrp_vips: vec![format!("{VIP}/24")],
            excluded: if self.v6 { vec![format!("{VIP6}/64")] } else { vec![] },
            vip: self.vip().to_owned(),
            port: VPORT,
            lb_kind: self.kind.lb_kind().to_owned(),
            real_servers,
        }
        .text();
        let p = self.dir.join(format!("ka{d}.conf"));
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf-8").to_owned()
    }

    /// Starts `ka run` on director `d` and waits until every real server is in the table.
    fn start_ka(&self, d: usize, misc: bool) -> KaDaemon {
        let mut args = vec!["-f".to_owned(), self.conf(d, misc)];
        if self.kind == Kind::Nat {
            args.extend(["--iface".to_owned(), "eth1".to_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ka = KaDaemon::start(&self.directors[d], &ka_bin(), &unique_name("lb"), &args).expect("ka run");
        for rs in self.real_servers() {
            wait_for(&format!("{rs} in the table"), WAIT, || (backend(&ka, rs).map(|b| b.0) == Some(true)).then_some(()));
        }
        ka
    }

    fn start_servers(&self) -> Vec<EchoServer> {
        (0..self.rs.len()).map(|i| self.start_server(i)).collect()
    }

    /// Starts real server `i`'s echo server, recording the client's connections.
    fn start_server(&self, i: usize) -> EchoServer {
        let clients = [CLIENT.parse().expect("ip"), CLIENT6.parse().expect("ip")];
        EchoServer::start(&self.rs[i], i, self.kind.rport(), &self.accepted, &clients).expect("echo server")
    }

    /// Opens a connection to the VIP from the client (from source port `sport` if given).
    fn connect(&self, sport: Option<u16>) -> Option<TcpStream> {
        let (domain, client, vip) = (self.domain(), self.client_ip(), self.vip());
        self.client
            .enter(move || {
                let s = socket2::Socket::new(domain, socket2::Type::STREAM, None).ok()?;
                if let Some(p) = sport {
                    s.set_reuse_address(true).ok()?;
                    let a = SocketAddr::new(client.parse().expect("addr"), p);
                    s.bind(&a.into()).ok()?;
                }
                let vip = SocketAddr::new(vip.parse().expect("addr"), VPORT);
                s.connect_timeout(&vip.into(), Duration::from_secs(2)).ok()?;
                let s: TcpStream = s.into();
                s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                Some(s)
            })
            .expect("enter client")
            .join()
            .expect("client thread")
    }

    /// Opens `n` short connections (one question each); returns how many each server answered.
    fn connect_many(&self, n: usize) -> Vec<usize> {
        let mut counts = vec![0; self.rs.len()];
        for _ in 0..n {
            if let Some(i) = self.connect(None).as_mut().and_then(ask) {
                counts[i] += 1;
            }
        }
        counts
    }

    /// Opens long-lived connections until every server has at least two (at most 60 tries).
    fn open_long(&self) -> Vec<Long> {
        let mut out: Vec<Long> = Vec::new();
        for _ in 0..60 {
            if (0..self.rs.len()).all(|i| out.iter().filter(|l| l.server == i).count() >= 2) {
                return out;
            }
            if let Some(mut s) = self.connect(None) {
                if let Some(server) = ask(&mut s) {
                    out.push(Long { s, server });
                }
            }
        }
        panic!("{:?}: 60 connections did not give every server two: {:?}", self.kind, out.iter().map(|l| l.server).collect::<Vec<_>>());
    }

    /// Connects from each of `ports`, waits until a server accepted the connection, and resets
    /// it (no TIME_WAIT, so the port can connect again). Returns the server of each port.
    fn probe(&self, ports: std::ops::Range<u16>) -> HashMap<u16, usize> {
        let client = self.client.path();
        let accepted = self.accepted.clone();
        let (domain, client_ip, vip) = (self.domain(), self.client_ip(), self.vip());
        let h = std::thread::spawn(move || {
            let file = std::fs::File::open(&client).expect("open netns");
            nix::sched::setns(std::os::fd::AsFd::as_fd(&file), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let mut out = HashMap::new();
            for p in ports {
                accepted.lock().expect("lock").remove(&p);
                let s = socket2::Socket::new(domain, socket2::Type::STREAM, None).expect("socket");
                s.set_reuse_address(true).expect("reuse");
                let a = SocketAddr::new(client_ip.parse().expect("addr"), p);
                if s.bind(&a.into()).is_err() {
                    continue;
                }
                let vip = SocketAddr::new(vip.parse().expect("addr"), VPORT);
                if s.connect_timeout(&vip.into(), Duration::from_secs(2)).is_err() {
                    continue;
                }
                let start = std::time::Instant::now();
                while start.elapsed() < Duration::from_secs(2) {
                    if let Some(&i) = accepted.lock().expect("lock").get(&p) {
                        out.insert(p, i);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                s.set_linger(Some(Duration::ZERO)).expect("linger");
            }
            out
        });
        h.join().expect("probe thread")
    }
}

/// A long-lived connection and the server that answered it first.
struct Long {
    s: TcpStream,
    server: usize,
}

/// Every long-lived connection to a server in `servers` still answers, from the same server.
/// The questions go from CPU 1 (the connections were opened from CPU 0).
fn still_answer(kind: Kind, long: &mut [Long], servers: &[usize], when: &str) {
    let cpu = usize::from(cpus() >= 2);
    let servers = servers.to_vec();
    let when = when.to_owned();
    std::thread::scope(|sc| {
        let h = sc.spawn(move || {
            pin(cpu);
            for l in long.iter_mut().filter(|l| servers.contains(&l.server)) {
                let got = ask(&mut l.s);
                assert_eq!(got, Some(l.server), "{kind:?} {when}: a connection established to rs{} answered {got:?}", l.server);
            }
        });
        h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
    });
}

/// (in the table, weight) of real server `rs` in `ka status`.
fn backend(ka: &KaDaemon, rs: &str) -> Option<(bool, u64)> {
    let st = ka.status_json().ok()?;
    let svc = st["services"].as_array()?.first()?.clone();
    let b = svc["backends"].as_array()?.iter().find(|b| b["address"] == rs)?.clone();
    Some((b["in_table"].as_bool()?, b["weight"].as_u64()?))
}

fn wait_master(ka: &KaDaemon) {
    wait_for("VRRP master", WAIT, || ka.status_json().ok().filter(|s| s["vrrp"][0]["state"] == "MASTER").map(|_| ()));
}

/// Distribution, then health: a server whose listener closes fails its TCP_CHECK, leaves the
/// table and gets no new flows; it comes back when it listens again.
fn distribution_health_and_recovery(kind: Kind) {
    pin(0);
    let lab = lab(kind, 1, false);
    let rs = kind.real_servers();
    let mut servers = lab.start_servers();
    let ka = lab.start_ka(0, false);
    wait_master(&ka);
    let counts = wait_for("connections through the VIP", WAIT, || {
        let c = lab.connect_many(90);
        (c.iter().sum::<usize>() >= 85).then_some(c)
    });
    assert!(counts.iter().all(|&c| c >= 12), "{kind:?}: distribution {counts:?} over 90 connections");
    let st = ka.status_json().expect("status");
    let svc = &st["services"][0];
    assert!(svc["packets"].as_u64().unwrap_or(0) >= 90, "{kind:?}: VIP counters: {svc}");
    for b in svc["backends"].as_array().expect("backends") {
        assert!(b["packets"].as_u64().unwrap_or(0) > 0, "{kind:?}: real server counters: {b}");
    }
    // rs1 stops listening: the checker takes it out and no new flow reaches it.
    drop(servers.remove(1));
    wait_for("rs1 out of the table", WAIT, || (backend(&ka, rs[1]).map(|b| b.0) == Some(false)).then_some(()));
    let counts = lab.connect_many(40);
    assert_eq!(counts[1], 0, "{kind:?}: after rs1 failed, no new connection goes to it: {counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 40, "{kind:?}: every connection is served: {counts:?}");
    // It recovers and comes back.
    servers.push(lab.start_server(1));
    wait_for("rs1 back in the table", WAIT, || (backend(&ka, rs[1]).map(|b| b.0) == Some(true)).then_some(()));
    let counts = lab.connect_many(60);
    assert!(counts[1] >= 5, "{kind:?}: rs1 gets new flows again: {counts:?}");
    ka.stop().expect("stop");
}

/// NAT: destination and port translated to the real server, replies translated back to the
/// VIP on their way through the director.
#[test]
fn nat_distribution_health_and_recovery() {
    distribution_health_and_recovery(Kind::Nat);
}

/// DR: the director rewrites the MACs and sends the frame back out (`XDP_TX`); the real
/// servers answer the client directly from the VIP on their loopback.
#[test]
fn dr_distribution_health_and_recovery() {
    distribution_health_and_recovery(Kind::Dr);
}

/// TUN: the director encapsulates in IPIP; `ka decap` on the real servers takes the outer
/// header off, and they answer the client directly.
#[test]
fn tun_distribution_health_and_recovery() {
    distribution_health_and_recovery(Kind::Tun);
}

/// The real server the pure Maglev table of userspace gives the client's flow from `sport`,
/// with the servers in `up` at weight 1 (what the datapath must choose for a flow it has not
/// seen).
fn maglev_choice(kind: Kind, v6: bool, servers: [&str; 3], up: &[usize], sport: u16) -> usize {
    use ka::lb::{BackendSpec, L4Proto, Method, Scheduler, ServiceSpec};
    let method = match kind {
        Kind::Nat => Method::Nat,
        Kind::Dr => Method::Dr,
        Kind::Tun => Method::Tun,
    };
    let spec = ServiceSpec {
        vip: if v6 { VIP6 } else { VIP }.parse().expect("vip"),
        port: VPORT,
        proto: L4Proto::Tcp,
        scheduler: Scheduler::Maglev,
        persistence: None,
        master_slot: None,
        backends: servers
            .iter()
            .enumerate()
            .map(|(i, a)| BackendSpec { addr: a.parse().expect("rs"), port: kind.rport(), weight: 1, method, healthy: up.contains(&i), uthreshold: 0, lthreshold: 0 })
            .collect(),
        options: Default::default(),
    };
    let table = ka::lb::writer::service_table(&spec);
    let bytes = |a: &str| match a.parse::<std::net::IpAddr>().expect("ip") {
        std::net::IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        std::net::IpAddr::V6(a) => a.octets(),
    };
    let (client, vip) = if v6 { (CLIENT6, VIP6) } else { (CLIENT, VIP) };
    let key = ka_common::lb::FlowKey {
        src: bytes(client),
        dst: bytes(vip),
        sport: sport.to_be_bytes(),
        dport: VPORT.to_be_bytes(),
        proto: 6,
        family: if v6 { ka_common::lb::FAMILY_V6 } else { ka_common::lb::FAMILY_V4 },
        _pad: [0; 2],
    };
    table[(ka_common::lb::flow_hash(&key) % table.len() as u32) as usize] as usize
}

/// Every probe flow went where userspace's Maglev table for the servers `up` sends it.
fn assert_maglev(lab: &Lab, got: &HashMap<u16, usize>, up: &[usize], when: &str) {
    let kind = lab.kind;
    let wrong: Vec<_> = got.iter().filter(|&(&p, &s)| maglev_choice(kind, lab.v6, lab.real_servers(), up, p) != s).collect();
    assert!(wrong.is_empty(), "{kind:?} {when}: (client port, server) not where the Maglev table sends them: {wrong:?}");
}

/// Of the probe flows that were on a server in `stay` before, how many kept their server, and
/// how many there were.
fn kept(before: &HashMap<u16, usize>, after: &HashMap<u16, usize>, stay: &[usize]) -> (usize, usize) {
    let moved_from_stay: Vec<_> = before.iter().filter(|(_, s)| stay.contains(s)).collect();
    let kept = moved_from_stay.iter().filter(|(p, s)| after.get(p) == Some(s)).count();
    (kept, moved_from_stay.len())
}

/// Stickiness while a real server is removed and added back, Maglev's minimal disruption, and
/// draining at weight 0, with long-lived connections exchanging data throughout.
fn stickiness_and_draining(kind: Kind, v6: bool) {
    pin(0);
    let lab = lab(kind, 1, v6);
    let rs = lab.real_servers();
    let _servers = lab.start_servers();
    let ka = lab.start_ka(0, true);
    wait_master(&ka);
    let counts = wait_for("connections through the VIP", WAIT, || {
        let c = lab.connect_many(60);
        (c.iter().sum::<usize>() >= 58).then_some(c)
    });
    // Each server's share is binomial (mean 20): 4 or fewer of 60 has odds of about 10^-6.
    assert!(counts.iter().all(|&c| c >= 5), "{kind:?}: distribution {counts:?} over 60 connections");
    let mut long = lab.open_long();
    still_answer(kind, &mut long, &[0, 1, 2], "before any change");
    let before = lab.probe(41000..41060);

    // rs2 fails its check and leaves.
    lab.set_health(2, Health::Down);
    wait_for("rs2 out of the table", WAIT, || (backend(&ka, rs[2]).map(|b| b.0) == Some(false)).then_some(()));
    still_answer(kind, &mut long, &[0, 1], "after rs2 left");
    let counts = lab.connect_many(40);
    assert_eq!((counts[2], counts.iter().sum::<usize>()), (0, 40), "{kind:?}: after rs2 left, new connections go to rs0 and rs1 only: {counts:?}");
    assert!(counts[0] >= 5 && counts[1] >= 5, "{kind:?}: after rs2 left: {counts:?}");
    {
        let after = lab.probe(41000..41060);
        assert_maglev(&lab, &before, &[0, 1, 2], "with every server up");
        assert_maglev(&lab, &after, &[0, 1], "after rs2 left");
        let (k, n) = kept(&before, &after, &[0, 1]);
        assert!(before.len() >= 55 && after.len() >= 55, "{kind:?}: probes answered before {} after {}", before.len(), after.len());
        assert!(k * 10 >= n * 9, "{kind:?}: Maglev kept only {k} of {n} flows of rs0/rs1 when rs2 left");
        assert!(after.values().all(|&s| s != 2), "{kind:?}: a probe reached rs2 after it left");
    }

    // rs2 recovers and comes back.
    let before = lab.probe(42000..42060);
    long.retain(|l| l.server != 2);
    lab.set_health(2, Health::Up);
    wait_for("rs2 back in the table", WAIT, || (backend(&ka, rs[2]) == Some((true, 1))).then_some(()));
    still_answer(kind, &mut long, &[0, 1], "after rs2 came back");
    let counts = lab.connect_many(60);
    assert!(counts[2] >= 5, "{kind:?}: rs2 gets new flows again: {counts:?}");
    {
        let after = lab.probe(42000..42060);
        assert_maglev(&lab, &before, &[0, 1], "with rs2 down");
        assert_maglev(&lab, &after, &[0, 1, 2], "after rs2 came back");
        let to_rs2 = after.values().filter(|&&s| s == 2).count();
        let (k, n) = kept(&before, &after, &[0, 1]);
        assert!(after.len() >= 55, "{kind:?}: probes answered after rs2 came back: {}", after.len());
        assert!((k + to_rs2) * 10 >= n * 9, "{kind:?}: of {n} flows, {k} kept their server and {to_rs2} moved to rs2 (others moved between rs0 and rs1)");
        assert!(to_rs2 >= 8, "{kind:?}: only {to_rs2} probes moved to rs2");
    }

    // rs1 is drained: weight 0 keeps its connections, new ones go elsewhere.
    let mut more = lab.open_long();
    long.append(&mut more);
    lab.set_health(1, Health::Drained);
    wait_for("rs1 drained (in the table at weight 0)", WAIT, || (backend(&ka, rs[1]) == Some((true, 0))).then_some(()));
    still_answer(kind, &mut long, &[0, 1, 2], "while rs1 is drained");
    let counts = lab.connect_many(40);
    assert_eq!((counts[1], counts.iter().sum::<usize>()), (0, 40), "{kind:?}: no new connection goes to drained rs1: {counts:?}");
    still_answer(kind, &mut long, &[1], "after new connections while rs1 is drained");
    ka.stop().expect("stop");
}

#[test]
fn nat_stickiness_and_draining() {
    stickiness_and_draining(Kind::Nat, false);
}

#[test]
fn dr_stickiness_and_draining() {
    stickiness_and_draining(Kind::Dr, false);
}

#[test]
fn tun_stickiness_and_draining() {
    stickiness_and_draining(Kind::Tun, false);
}

fn vrrp_state(ka: &KaDaemon) -> String {
    ka.status_json().ok().and_then(|s| s["vrrp"][0]["state"].as_str().map(str::to_owned)).unwrap_or_default()
}

fn service_packets(ka: &KaDaemon) -> u64 {
    ka.status_json().ok().and_then(|s| s["services"][0]["packets"].as_u64()).unwrap_or(0)
}

/// VRRP failover between two directors with the same config (DR: replies go straight to the
/// client, so the only state a director holds is its connection table, and the backup's
/// Maglev table, computed from the same config, sends every flow to the same real server; NAT
/// would also need the translations, which are not shared). Long-lived connections are
/// established through the master; the master's node dies (ka killed with SIGKILL, its link
/// down); the backup becomes MASTER, holds the VIP, and the same TCP connections keep
/// exchanging data with the same real servers, now through it.
#[test]
fn dr_vrrp_failover_keeps_connections() {
    pin(0);
    let lab = lab(Kind::Dr, 2, false);
    let _servers = lab.start_servers();
    let ka0 = lab.start_ka(0, true);
    wait_master(&ka0);
    let ka1 = lab.start_ka(1, true);
    wait_for("director 1 BACKUP", WAIT, || (vrrp_state(&ka1) == "BACKUP").then_some(()));
    let mut long = lab.open_long();
    still_answer(Kind::Dr, &mut long, &[0, 1, 2], "through the master");
    assert!(service_packets(&ka0) > 0, "the master forwarded nothing");
    assert_eq!(service_packets(&ka1), 0, "the backup forwarded VIP traffic");
    ka0.kill();
    lab.directors[0].run(&["ip", "link", "set", "eth0", "down"]).expect("link down");
    wait_for("director 1 MASTER", WAIT, || (vrrp_state(&ka1) == "MASTER").then_some(()));
    wait_for("the VIP on director 1", WAIT, || {
        lab.directors[1].run(&["ip", "-o", "addr", "show", "dev", "eth0"]).ok().filter(|a| a.contains(&format!(" {VIP}/"))).map(|_| ())
    });
    // The first segment may still go to the dead director's MAC: TCP retransmits it.
    for l in &long {
        l.s.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    }
    still_answer(Kind::Dr, &mut long, &[0, 1, 2], "after the failover");
    assert!(service_packets(&ka1) > 0, "the new master forwarded nothing: {}", ka1.status_text().unwrap_or_default());
    let counts = lab.connect_many(30);
    assert_eq!(counts.iter().sum::<usize>(), 30, "new connections through the new master: {counts:?}");
    ka1.stop().expect("stop");
}

/// NAT over IPv6: destination and port translated to IPv6 real servers behind the director,
/// their replies translated back to the VIP, Maglev distribution, stickiness and draining as
/// over IPv4.
#[test]
fn nat6_stickiness_and_draining() {
    stickiness_and_draining(Kind::Nat, true);
}

/// DR over IPv6: the same as over IPv4, with the service on an IPv6 VIP.
#[test]
fn dr6_stickiness_and_draining() {
    stickiness_and_draining(Kind::Dr, true);
}

/// TUN over IPv6: IP6IP6 from the director, decapsulated by `ka decap` on the real servers.
#[test]
fn tun6_stickiness_and_draining() {
    stickiness_and_draining(Kind::Tun, true);
}

/// Real server `rs`'s `next_hop` in `ka status --json` (null while out of the tables), once
/// the resolver checked it.
fn next_hop(ka: &KaDaemon, rs: &str) -> Option<serde_json::Value> {
    let st = ka.status_json().ok()?;
    let b = st["services"][0]["backends"].as_array()?.iter().find(|b| b["address"] == rs)?.clone();
    Some(b["next_hop"].clone()).filter(|n| !n.is_null() && n["reach"] != "not_checked")
}

/// The director's neighbour entry for `addr` on eth0 (`ip -d neigh show`), if any.
fn neigh_line(director: &Netns, addr: &str) -> String {
    director.run(&["ip", "-d", "neigh", "show", addr, "dev", "eth0"]).unwrap_or_default().trim().to_owned()
}

/// A usable (resolved) state in an `ip neigh` line.
fn neigh_usable(line: &str) -> bool {
    ["REACHABLE", "STALE", "DELAY", "PROBE"].iter().any(|s| line.contains(s))
}

/// Next hops get resolved without traffic to them and without table changes. rs0's link is
/// down when ka starts, so its first resolution fails; when it comes up, ka's managed
/// neighbour entry resolves, `ka status` says so and connections through the VIP reach it.
/// Then the director's neighbour table is flushed: nothing on the director talks to rs0 (its
/// health comes from a MISC_CHECK script), yet ka requests the entry again and it resolves.
/// ka removes a real server's entry when it leaves the tables, and the others' when it stops.
#[test]
fn dr_next_hops_resolve_after_link_up_and_flush() {
    pin(0);
    let lab = lab(Kind::Dr, 1, false);
    let rs = RS_LAN;
    let director = &lab.directors[0];
    let _servers = lab.start_servers();
    lab.rs[0].run(&["ip", "link", "set", "eth0", "down"]).expect("rs0 down");
    let ka = lab.start_ka(0, true);
    wait_master(&ka);
    let n = wait_for("rs1 next hop resolved", WAIT, || next_hop(&ka, rs[1]).filter(|n| n["resolved"] == true));
    assert_eq!((n["via"].as_str(), n["iface"].as_str()), (Some(rs[1]), Some("eth0")), "on-link next hop: {n}");
    assert!(n["mac"].as_str().is_some_and(|m| m.len() == 17), "{n}");
    let n = wait_for("rs0 next hop checked", WAIT, || next_hop(&ka, rs[0]));
    assert_eq!(n["resolved"], false, "rs0's link is down: {n}");
    let line = neigh_line(director, rs[0]);
    assert!(line.contains("managed") && !neigh_usable(&line), "rs0's entry is ka's managed one, unresolved: {line:?}");
    let text = ka.status_text().expect("status text");
    assert!(text.contains(&format!("next hop unresolved ({} dev eth0", rs[0])), "{text}");
    wait_for("the unresolved next hop logged", WAIT, || {
        ka.log_text().lines().any(|l| l.contains("real server has no resolved next hop") && l.contains(rs[0])).then_some(())
    });
    // rs0 comes up: resolved without any table change, and it gets connections.
    lab.rs[0].run(&["ip", "link", "set", "eth0", "up"]).expect("rs0 up");
    wait_for("rs0 next hop resolved", WAIT, || next_hop(&ka, rs[0]).filter(|n| n["resolved"] == true).map(|_| ()));
    let text = ka.status_text().expect("status text");
    assert!(text.contains(&format!(" via {} dev eth0 (", rs[0])), "{text}");
    wait_for("connections reach rs0", WAIT, || {
        let c = lab.connect_many(30);
        (c[0] > 0 && c.iter().sum::<usize>() == 30).then_some(())
    });
    // The neighbour table is flushed: ka requests the entries again and they resolve.
    director.run(&["ip", "neigh", "flush", "dev", "eth0"]).expect("flush");
    let line = wait_for("rs0's entry back and resolved", WAIT, || {
        let l = neigh_line(director, rs[0]);
        (l.contains("managed") && neigh_usable(&l)).then_some(l)
    });
    assert!(line.contains("lladdr") && line.contains("proto keepalived"), "ka's marked entry: {line}");
    wait_for("rs0 next hop resolved after the flush", WAIT, || next_hop(&ka, rs[0]).filter(|n| n["resolved"] == true).map(|_| ()));
    let c = lab.connect_many(30);
    assert!(c[0] > 0 && c.iter().sum::<usize>() == 30, "after the flush, every server gets connections: {c:?}");
    // rs2 leaves the tables: ka removes its managed entry, and keeps the others'.
    lab.set_health(2, Health::Down);
    wait_for("rs2 out of the table", WAIT, || (backend(&ka, rs[2]).map(|b| b.0) == Some(false)).then_some(()));
    wait_for("rs2's managed entry removed", WAIT, || (!neigh_line(director, rs[2]).contains("managed")).then_some(()));
    assert!(neigh_line(director, rs[1]).contains("managed"), "rs1 keeps its entry: {}", neigh_line(director, rs[1]));
    ka.stop().expect("stop");
    for a in rs {
        let l = neigh_line(director, a);
        assert!(!l.contains("managed"), "ka removed its managed entry for {a}: {l:?}");
    }
}

/// The keepalived.conf of the reload test: VI_LB (VRID 90, MASTER at 150) with `vips`, the
/// virtual server with real servers `(index, weight)` checked by MISC_CHECK, and `extra`.
fn reload_conf(lab: &Lab, rs: &[(usize, i32)], vips: &[String], extra: &str) -> String {
    let real_servers = rs
        .iter()
        .map(|(i, w)| RealServerConf {
            addr: RS_LAN[*i].to_owned(),
            port: Kind::Dr.rport(),
            check: format!("  weight {w}\n{}", misc_check(&lab.dir.join("check.sh"), &lab.state[*i])),
        })
        .collect();
    let text = LbConf {
        instance: "VI_LB".to_owned(),
        vrid: 90,
        role: role("", true, 150),
        vrrp_vips: vips.to_vec(),
        excluded: vec![],
        vip: VIP.to_owned(),
        port: VPORT,
        lb_kind: "DR".to_owned(),
        real_servers,
    }
    .text();
    format!("{text}{extra}")
}

/// A MASTER `vrrp_instance` on eth0 with one VIP.
fn extra_instance(name: &str, vrid: u8, vip: &str) -> String {
    format!("vrrp_instance {name} {{\n state MASTER\n interface eth0\n virtual_router_id {vrid}\n priority 150\n advert_int 1\n virtual_ipaddress {{\n {vip}\n }}\n}}\n")
}

/// `ka reload` for the daemon: (success, stdout, stderr).
fn ka_reload(ka: &KaDaemon) -> (bool, String, String) {
    let out = std::process::Command::new(ka_bin()).args(["--instance", ka.instance(), "reload"]).output().expect("ka reload");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn has_addr(ns: &Netns, addr: &str) -> bool {
    ns.run(&["ip", "-o", "addr", "show", "dev", "eth0"]).is_ok_and(|a| a.contains(&format!(" {addr}/")))
}

fn instance_state(ka: &KaDaemon, name: &str) -> String {
    let st = ka.status_json().unwrap_or_default();
    st["vrrp"].as_array().and_then(|v| v.iter().find(|i| i["name"] == name)).map(|i| i["state"].as_str().unwrap_or_default().to_owned()).unwrap_or_default()
}

/// Live reload (keepalived 2.2 semantics) with a real keepalived BACKUP on the LAN and
/// long-lived connections through the director. The reload changes rs0's weight, removes rs1,
/// keeps the failed rs2, adds a VIP to the running instance, deletes one instance and adds
/// another. Connections to rs0 keep working; VI_LB stays MASTER without a state change, and
/// keepalived never becomes MASTER; the failed rs2 stays out of the tables (keepalived #1163)
/// and enters them when its check passes; the new configuration's weight is applied (#1354).
/// Then a bad file: `ka reload` exits 1 with the diagnostics, one log entry, nothing changes.
#[test]
fn dr_reload_applies_the_diff_and_keeps_state_and_connections() {
    pin(0);
    let lab = lab(Kind::Dr, 2, false);
    let _servers = lab.start_servers();
    lab.set_health(2, Health::Down);
    let path = lab.dir.join("reload.conf");
    let vip_old = "198.18.40.103";
    let vip_new = "198.18.40.102";
    let vip_added = "198.18.40.101";
    let conf_a = reload_conf(&lab, &[(0, 1), (1, 1), (2, 1)], &[format!("{VIP}/24")], &extra_instance("VI_OLD", 92, &format!("{vip_old}/24")));
    std::fs::write(&path, &conf_a).expect("write");
    let path_s = path.to_str().expect("utf-8");
    let ka = KaDaemon::start(&lab.directors[0], &ka_bin(), &unique_name("lb"), &["-f", path_s]).expect("ka run");
    for rs in &RS_LAN[..2] {
        wait_for(&format!("{rs} in the table"), WAIT, || (backend(&ka, rs).map(|b| b.0) == Some(true)).then_some(()));
    }
    wait_for("VI_LB and VI_OLD MASTER", WAIT, || (instance_state(&ka, "VI_LB") == "MASTER" && instance_state(&ka, "VI_OLD") == "MASTER").then_some(()));
    assert_eq!(backend(&ka, RS_LAN[2]).map(|b| b.0), Some(false), "rs2 fails its check");
    let kd_conf = format!("vrrp_instance VI_LB {{\n state BACKUP\n interface eth0\n virtual_router_id 90\n priority 100\n advert_int 1\n virtual_ipaddress {{\n {VIP}/24\n }}\n}}\n");
    let kd = ka_tests::keepalived::Keepalived::start(&lab.directors[1], "rl", &kd_conf).expect("keepalived");
    wait_for("keepalived BACKUP", WAIT, || kd.log_text().contains("Entering BACKUP STATE").then_some(()));
    // Long-lived connections to rs0 and rs1.
    let mut long: Vec<Long> = Vec::new();
    for _ in 0..60 {
        if (0..2).all(|i| long.iter().filter(|l| l.server == i).count() >= 2) {
            break;
        }
        if let Some(mut s) = lab.connect(None) {
            if let Some(server) = ask(&mut s) {
                long.push(Long { s, server });
            }
        }
    }
    still_answer(Kind::Dr, &mut long, &[0, 1], "before the reload");
    let changes = |ka: &KaDaemon| ka.log_text().lines().filter(|l| l.contains("state change") && l.contains("VI_LB")).count();
    let changes_before = changes(&ka);

    // The reload.
    let conf_b = reload_conf(
        &lab,
        &[(0, 5), (2, 1)],
        &[format!("{VIP}/24"), format!("{vip_added}/24")],
        &extra_instance("VI_NEW", 91, &format!("{vip_new}/24")),
    );
    std::fs::write(&path, &conf_b).expect("write");
    let (ok, out, err) = ka_reload(&ka);
    assert!(ok, "ka reload failed: {out}{err}");
    for want in [
        "vrrp_instance VI_NEW: added",
        "vrrp_instance VI_OLD: removed",
        &format!("+vip {vip_added}/24"),
        &format!("-real_server {}:{}", RS_LAN[1], Kind::Dr.rport()),
        &format!("real_server {}:{} weight 1 -> 5", RS_LAN[0], Kind::Dr.rport()),
    ] {
        assert!(out.contains(want), "ka reload output lacks {want:?}:\n{out}");
    }
    // Applied when `ka reload` returns.
    assert!(has_addr(&lab.directors[0], vip_added), "the added VIP is on the interface");
    assert!(!has_addr(&lab.directors[0], vip_old), "the deleted instance's VIP is gone");
    assert!(has_addr(&lab.directors[0], VIP), "the kept VIP stays");
    assert_eq!(backend(&ka, RS_LAN[2]).map(|b| b.0), Some(false), "a failed checker does not turn OK on reload (#1163)");
    assert_eq!(backend(&ka, RS_LAN[1]), None, "the removed real server left the service");
    let st = ka.status_json().expect("status");
    let rs0 = st["health"]["real_servers"].as_array().and_then(|v| v.iter().find(|r| r["addr"] == RS_LAN[0]).cloned()).expect("rs0 in the health report");
    assert_eq!(rs0["configured_weight"], 5, "the new weight is applied (#1354): {rs0}");
    assert_eq!(rs0["state"], "up", "rs0 kept its state: {rs0}");
    still_answer(Kind::Dr, &mut long, &[0], "after the reload");
    assert_eq!(instance_state(&ka, "VI_LB"), "MASTER");
    assert_eq!(changes(&ka), changes_before, "VI_LB changed state during the reload:\n{}", ka.log_text());
    wait_for("VI_NEW MASTER with its VIP", WAIT, || (instance_state(&ka, "VI_NEW") == "MASTER" && has_addr(&lab.directors[0], vip_new)).then_some(()));
    // The kept checker still runs: rs2 enters the tables once its check passes.
    lab.set_health(2, Health::Up);
    wait_for("rs2 in the table", WAIT, || (backend(&ka, RS_LAN[2]).map(|b| b.0) == Some(true)).then_some(()));

    // A bad file changes nothing.
    std::fs::write(&path, format!("{conf_b}vrrp_instance BROKEN {{\n virtual_router_id 300\n}}\n")).expect("write");
    let (ok, out, err) = ka_reload(&ka);
    assert!(!ok, "a bad file must make ka reload fail: {out}");
    assert!(err.contains("outside range [1, 255]") && err.contains("refused"), "the diagnostics are printed: {err}");
    assert_eq!(ka.log_text().lines().filter(|l| l.contains("reload refused")).count(), 1, "one log entry:\n{}", ka.log_text());
    assert!(has_addr(&lab.directors[0], vip_added) && has_addr(&lab.directors[0], vip_new) && has_addr(&lab.directors[0], VIP));
    assert_eq!(instance_state(&ka, "VI_LB"), "MASTER");
    assert_eq!(backend(&ka, RS_LAN[2]).map(|b| b.0), Some(true));
    still_answer(Kind::Dr, &mut long, &[0], "after the bad reload");
    assert_eq!(changes(&ka), changes_before, "VI_LB changed state:\n{}", ka.log_text());
    assert!(!kd.log_text().contains("Entering MASTER STATE"), "the keepalived peer saw a transition:\n{}", kd.log_text());
    ka.stop().expect("stop");
    kd.stop().expect("stop keepalived");
}

/// Idle control clients delay nothing: while clients connect to the control socket and never
/// send a request (one always open, reconnecting as soon as the daemon drops it), the
/// keepalived MASTER dies, ka takes over, `ka status` answers, and new connections to the VIP
/// are forwarded by the new master's datapath.
#[test]
fn idle_control_clients_do_not_delay_a_takeover() {
    pin(0);
    let lab = lab(Kind::Dr, 2, false);
    let _servers = lab.start_servers();
    let kd_conf = format!("vrrp_instance VI_LB {{\n state MASTER\n interface eth0\n virtual_router_id 90\n priority 200\n advert_int 1\n virtual_ipaddress {{\n {VIP}/24\n }}\n}}\n");
    let kd = ka_tests::keepalived::Keepalived::start(&lab.directors[0], "idle", &kd_conf).expect("keepalived");
    wait_for("keepalived MASTER", WAIT, || kd.log_text().contains("Entering MASTER STATE").then_some(()));
    let ka = lab.start_ka(1, true);
    wait_for("ka BACKUP", WAIT, || (vrrp_state(&ka) == "BACKUP").then_some(()));
    let sock = std::path::PathBuf::from(format!("/run/ka/{}.sock", ka.instance()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let idle = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut held = 0u32;
            // Bounded: at most 10,000 connections, and only until the test is done.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && held < 10_000 {
                let Ok(mut c) = std::os::unix::net::UnixStream::connect(&sock) else { break };
                held += 1;
                c.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
                // Silent until the daemon gives up on this client (or the test ends).
                let mut buf = [0u8; 64];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match std::io::Read::read(&mut c, &mut buf) {
                        Ok(_) => break,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
            }
            held
        })
    };
    kd.kill();
    lab.directors[0].run(&["ip", "link", "set", "eth0", "down"]).expect("link down");
    wait_for("ka MASTER while idle clients wait", WAIT, || (vrrp_state(&ka) == "MASTER").then_some(()));
    wait_for("new connections through the new master", WAIT, || {
        let c = lab.connect_many(10);
        (c.iter().sum::<usize>() == 10).then_some(())
    });
    assert!(service_packets(&ka) > 0, "the new master forwarded nothing");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let held = idle.join().expect("idle thread");
    assert!(held >= 1, "an idle client was connected");
    ka.stop().expect("stop");
}

/// The director's `forwarding` sysctl of `iface` (IPv4) is 0, as on a default host.
fn assert_forwarding_off(director: &Netns, iface: &str) {
    let v = director.run(&["cat", &format!("/proc/sys/net/ipv4/conf/{iface}/forwarding")]).expect("read sysctl");
    assert_eq!(v.trim(), "0", "forwarding on {iface} must be off, as on a default host");
}

/// A datapath counter of `ka status --json`.
fn counter(ka: &KaDaemon, name: &str) -> u64 {
    ka.status_json().ok().and_then(|s| s["counters"][name].as_u64()).unwrap_or(0)
}

/// Waits until real server `rs` is reached as `reach` says (`neighbour_map`, `fib`...), and
/// returns its next hop.
fn wait_reach(ka: &KaDaemon, rs: &str, reach: &str) -> serde_json::Value {
    wait_for(&format!("{rs} reached by {reach}"), WAIT, || next_hop(ka, rs).filter(|n| n["reach"] == reach))
}

/// A new user's LVS-DR setup on a default host: forwarding is off on the director, as LVS
/// needs none for DR. New flows are forwarded all the same (XDP takes the next hops ka
/// resolved from the neighbour map when `bpf_fib_lookup` refuses, counted
/// `lb_fib_fwd_disabled`), and `ka status` tells the truth per real server: rs0, whose link
/// is down, is UNREACHABLE (no neighbour), never shown as fine; once it is up it is reached
/// from the neighbour map and gets connections. On the old datapath every new connection was
/// reset by the kernel while the status showed every server's next hop REACHABLE.
#[test]
fn dr_forwarding_off_serves_and_status_tells_the_truth() {
    pin(0);
    let lab = lab(Kind::Dr, 1, false);
    let rs = RS_LAN;
    assert_forwarding_off(&lab.directors[0], "eth0");
    let _servers = lab.start_servers();
    lab.rs[0].run(&["ip", "link", "set", "eth0", "down"]).expect("rs0 down");
    let ka = lab.start_ka(0, true);
    wait_master(&ka);
    for a in &rs[1..] {
        let n = wait_reach(&ka, a, "neighbour_map");
        assert_eq!(n["reachable"], true, "{a}: {n}");
        assert!(n["forwarding_off"].as_array().is_some_and(|v| v.iter().any(|x| x == "net.ipv4.conf.eth0.forwarding")), "{a}: {n}");
    }
    let n = wait_for("rs0 next hop checked", WAIT, || next_hop(&ka, rs[0]));
    assert_eq!((n["reachable"].as_bool(), n["reach"].as_str()), (Some(false), Some("no_neighbour")), "rs0's link is down: {n}");
    let text = ka.status_text().expect("status text");
    let line = text.lines().find(|l| l.contains(&format!("-> {}:", rs[0]))).unwrap_or_default();
    assert!(line.contains("UNREACHABLE: no neighbour"), "rs0 is not shown as fine: {text}");
    let line = text.lines().find(|l| l.contains(&format!("-> {}:", rs[1]))).unwrap_or_default();
    assert!(line.contains("from the neighbour map (forwarding off: net.ipv4.conf.eth0.forwarding=0)") && !line.contains("UNREACHABLE"), "{text}");
    // Every connection to rs1 and rs2 is answered; none hashed to rs0 is (the kernel resets it).
    wait_for("connections reach rs1 and rs2", WAIT, || {
        let c = lab.connect_many(30);
        (c[0] == 0 && c[1] > 0 && c[2] > 0).then_some(())
    });
    // rs0 comes up: reachable from the neighbour map, and every connection is answered.
    lab.rs[0].run(&["ip", "link", "set", "eth0", "up"]).expect("rs0 up");
    wait_reach(&ka, rs[0], "neighbour_map");
    wait_for("every connection answered, by every server", WAIT, || {
        let c = lab.connect_many(30);
        (c.iter().all(|&n| n > 0) && c.iter().sum::<usize>() == 30).then_some(())
    });
    assert!(counter(&ka, "lb_fib_fwd_disabled") > 0, "the FIB's refusals are counted: {}", ka.status_text().unwrap_or_default());
    assert!(counter(&ka, "lb_neigh_hit") > 0 && counter(&ka, "lb_dr") > 0, "{}", ka.status_text().unwrap_or_default());
}

/// TUN (IPIP) on a default host, forwarding off on the director: every new flow is
/// encapsulated to its real server with the next hop from the neighbour map.
#[test]
fn tun_forwarding_off_serves_new_flows() {
    pin(0);
    let lab = lab(Kind::Tun, 1, false);
    assert_forwarding_off(&lab.directors[0], "eth0");
    let _servers = lab.start_servers();
    let ka = lab.start_ka(0, true);
    wait_master(&ka);
    for a in RS_LAN {
        let n = wait_reach(&ka, a, "neighbour_map");
        assert_eq!(n["reachable"], true, "{a}: {n}");
    }
    let c = lab.connect_many(30);
    assert!(c.iter().all(|&n| n > 0) && c.iter().sum::<usize>() == 30, "every connection answered, by every server: {c:?}");
    assert!(counter(&ka, "lb_tun") > 0 && counter(&ka, "lb_fib_fwd_disabled") > 0 && counter(&ka, "lb_neigh_hit") > 0, "{}", ka.status_text().unwrap_or_default());
    assert_eq!(counter(&ka, "pass_no_nexthop"), 0, "no new flow passed to the kernel: {}", ka.status_text().unwrap_or_default());
}

/// NAT on a default host: forwarding off, so the real servers' replies cannot be routed back
/// to the client (as with IPVS NAT). `ka status --json` marks every NAT real server
/// unreachable and names the sysctl (`net.ipv4.conf.eth1.forwarding`, the interface the
/// replies arrive on), and the text says so; with forwarding switched on they become
/// reachable through the FIB and connections are answered.
#[test]
fn nat_forwarding_off_status_says_so() {
    pin(0);
    let lab = lab(Kind::Nat, 1, false);
    let director = &lab.directors[0];
    director.run(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]).expect("forwarding off");
    assert_forwarding_off(director, "eth1");
    let _servers = lab.start_servers();
    let ka = lab.start_ka(0, true);
    wait_master(&ka);
    for a in RS_NAT {
        let n = wait_reach(&ka, a, "nat_needs_forwarding");
        assert_eq!(n["reachable"], false, "{a}: {n}");
        assert_eq!(n["egress_forwarding_off"], "net.ipv4.conf.eth1.forwarding", "{a}: {n}");
    }
    let text = ka.status_text().expect("status text");
    for a in RS_NAT {
        let line = text.lines().find(|l| l.contains(&format!("-> {a}:"))).unwrap_or_default();
        assert!(line.contains("UNREACHABLE: NAT replies need forwarding (net.ipv4.conf.eth1.forwarding=0)"), "{a}: {text}");
    }
    director.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]).expect("forwarding on");
    for a in RS_NAT {
        let n = wait_reach(&ka, a, "fib");
        assert_eq!(n["reachable"], true, "{a}: {n}");
    }
    wait_for("every connection answered", WAIT, || {
        let c = lab.connect_many(30);
        (c.iter().all(|&n| n > 0) && c.iter().sum::<usize>() == 30).then_some(())
    });
}
