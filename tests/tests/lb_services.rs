//! End to end through `ka run` for the services a keepalived.conf declares beyond one
//! address and port: a virtual server ka cannot serve (a fwmark) refused alone while the others
//! serve; a port-0 service keeping a client on its real server across ports; a
//! `virtual_server_group` of IPv4 and IPv6 ranges served as one service; and a group replacing a
//! fwmark service (several addresses and ports, persistence shared under `nftables_ipvs`,
//! per address and port without it, as keepalived makes one IPVS service per key then).
//!
//! Lab: the DR LAN of `lb_e2e` (client, one director, three real servers on one bridge, the
//! VIPs on the real servers' loopback), real servers answering on ports 8080 and 8081 with their
//! index. The client has several addresses, so "a client" is one of them. Schedulers are `rr`,
//! and the client sends from CPU 0 (a veth lab has no RSS: the director's XDP runs on the
//! sender's CPU), so the n-th new flow of a service goes to the n-th server of its schedule:
//! which server a flow got tells which scheduler state and persistence template it met.

use std::{
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use ka_tests::{
    daemon::KaDaemon,
    ka_bin,
    lan::{ask, Accepted, EchoServer, Lan, LanSpec},
    require_root, unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);
const DIRECTOR: &str = "198.18.42.1";
const DIRECTOR6: &str = "fd00:198:18:42::1";
const RS: [&str; 3] = ["198.18.42.11", "198.18.42.12", "198.18.42.13"];
const RS6: [&str; 3] = ["fd00:198:18:42::11", "fd00:198:18:42::12", "fd00:198:18:42::13"];
/// The client's addresses: each one a client of its own.
const CLIENTS: [&str; 3] = ["198.18.42.21", "198.18.42.22", "198.18.42.23"];
const CLIENT6: &str = "fd00:198:18:42::21";
const VIPS: [&str; 3] = ["198.18.42.100", "198.18.42.101", "198.18.42.102"];
const VIPS6: [&str; 3] = ["fd00:198:18:42::100", "fd00:198:18:42::101", "fd00:198:18:42::102"];
/// The VIP of the port-0 service.
const VIP_ANY: &str = "198.18.42.110";
const PORTS: [u16; 2] = [8080, 8081];

/// Pins the calling thread (and the threads it spawns afterwards) to CPU 0.
fn pin0() {
    let mut set = nix::sched::CpuSet::new();
    set.set(0).expect("cpu index");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("sched_setaffinity");
}

struct Lab {
    lan: Lan,
    /// Real server `i`'s listener on `PORTS[p]` is at `2 * i + p`.
    servers: Vec<Option<EchoServer>>,
    dir: std::path::PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lab() -> Lab {
    require_root();
    pin0();
    let mut client: Vec<String> = CLIENTS.iter().map(|a| format!("{a}/24")).collect();
    client.push(format!("{CLIENT6}/64"));
    let loopback: Vec<String> =
        VIPS.iter().chain([&VIP_ANY]).map(|a| format!("{a}/32")).chain(VIPS6.iter().map(|a| format!("{a}/128"))).collect();
    let lan = Lan::new(&LanSpec {
        client,
        directors: vec![vec![format!("{DIRECTOR}/24"), format!("{DIRECTOR6}/64")]],
        real_servers: RS.iter().zip(RS6).map(|(a, a6)| vec![format!("{a}/24"), format!("{a6}/64")]).collect(),
        loopback_vips: loopback,
    })
    .expect("LAN");
    let accepted = Accepted::default();
    let servers = lan
        .real_servers
        .iter()
        .enumerate()
        .flat_map(|(i, ns)| PORTS.map(|p| Some(EchoServer::start(ns, i, p, &accepted, &[]).expect("echo server"))))
        .collect();
    let dir = std::env::temp_dir().join(unique_name("ksv"));
    std::fs::create_dir_all(&dir).expect("dir");
    Lab { lan, servers, dir }
}

/// A real server block checked on port 8080 (whatever port the virtual server has).
fn real_server(addr: &str) -> String {
    format!(" real_server {addr} 8080 {{\n  TCP_CHECK {{\n   connect_port 8080\n   connect_timeout 1\n  }}\n  retry 1\n  delay_before_retry 0\n }}\n")
}

/// A DR `rr` virtual server on `key` with the three real servers of `family` (4 or 6).
fn virtual_server(key: &str, extra: &str, family: u8) -> String {
    let rs: String = if family == 4 { RS } else { RS6 }.iter().map(|a| real_server(a)).collect();
    format!("virtual_server {key} {{\n delay_loop 1\n lb_algo rr\n lb_kind DR\n protocol TCP\n{extra}{rs}}}\n")
}

/// The VRRP instance holding every VIP of the lab, then `body`.
fn config(global: &str, body: &str) -> String {
    let v4: String = VIPS.iter().chain([&VIP_ANY]).map(|a| format!("  {a}/24\n")).collect();
    let v6: String = VIPS6.iter().map(|a| format!("  {a}/64\n")).collect();
    format!(
        "global_defs {{\n{global}}}\nvrrp_instance VI_SV {{\n state MASTER\n interface eth0\n virtual_router_id 94\n priority 150\n advert_int 1\n virtual_ipaddress {{\n{v4} }}\n virtual_ipaddress_excluded {{\n{v6} }}\n}}\n{body}"
    )
}

impl Lab {
    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf-8").to_owned()
    }

    /// Starts `ka run -f conf` on the director; waits until it is MASTER and each of the
    /// `services` in `ka status` has its three real servers in the table.
    fn start(&self, conf: &str, services: usize) -> KaDaemon {
        self.start_as(&unique_name("sv"), conf, services, &[])
    }

    /// [`Lab::start`] as `instance`, with `extra` arguments of `ka run`.
    fn start_as(&self, instance: &str, conf: &str, services: usize, extra: &[&str]) -> KaDaemon {
        let args: Vec<&str> = ["-f", conf].into_iter().chain(extra.iter().copied()).collect();
        let ka = KaDaemon::start(&self.lan.directors[0], &ka_bin(), instance, &args).expect("ka run");
        wait_for("MASTER and every real server in the table", WAIT, || {
            let st = ka.status_json().ok()?;
            let svcs = st["services"].as_array()?;
            let ready = st["vrrp"][0]["state"] == "MASTER"
                && svcs.len() == services
                && svcs.iter().all(|s| s["backends"].as_array().is_some_and(|b| b.len() == 3 && b.iter().all(|b| b["in_table"] == true)));
            ready.then_some(())
        });
        ka
    }

    /// One connection from `src` to `vip`:`port`: the index of the real server that answered.
    fn connect(&self, src: &str, vip: &str, port: u16) -> Option<usize> {
        let (src, dst) = (SocketAddr::new(src.parse().expect("addr"), 0), SocketAddr::new(vip.parse().expect("addr"), port));
        self.lan
            .client
            .enter(move || {
                let s = socket2::Socket::new(socket2::Domain::for_address(dst), socket2::Type::STREAM, None).ok()?;
                s.bind(&src.into()).ok()?;
                s.connect_timeout(&dst.into(), Duration::from_secs(2)).ok()?;
                let mut s: TcpStream = s.into();
                s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                ask(&mut s)
            })
            .expect("enter client")
            .join()
            .expect("client thread")
    }
}

/// `ka check -f conf [--strict]` in the director's namespace (`ip netns exec`: its own /sys, so
/// `eth0` is the director's): (exit code, stderr).
fn ka_check(director: &ka_tests::netns::Netns, conf: &str, strict: bool) -> (i32, String) {
    let bin = ka_bin();
    let mut c = director.cmd(bin.to_str().expect("utf-8 path"));
    c.arg("check").args(["-f", conf]);
    if strict {
        c.arg("--strict");
    }
    let out = c.output().expect("run ka check");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A fwmark virtual server is refused alone, loudly: a warning at its line in `ka check`
/// (`--strict` fails), `NOT SERVED` in `ka status` with the reason; the other virtual servers
/// of the file serve. On the old datapath the fwmark emptied the whole state (`services: []`)
/// and nothing was served. The port-0 service of the same file keeps each client on one real
/// server across ports (its first connection's, by rr); per-port persistence would send the
/// next port's first connection to the next server of the schedule.
#[test]
fn refused_alone_and_port_zero_persists_across_ports() {
    let lab = lab();
    let body = virtual_server("fwmark 7", "", 4)
        + &virtual_server(&format!("{VIP_ANY} 0"), " persistence_timeout 600\n", 4)
        + &virtual_server(&format!("{} 8080", VIPS[0]), "", 4);
    let conf = lab.write("refused.conf", &config("", &body));
    let (code, err) = ka_check(&lab.lan.directors[0], &conf, false);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("refused.conf:") && err.contains("virtual server FWM 7 is not served by ka") && err.contains("virtual_server_group"), "{err}");
    assert_eq!(ka_check(&lab.lan.directors[0], &conf, true).0, 1, "--strict refuses what ka does not serve");

    let ka = lab.start(&conf, 2);
    let st = ka.status_json().expect("status");
    let refused = st["refused"].as_array().expect("refused");
    assert_eq!(refused.len(), 1, "{st}");
    assert_eq!(refused[0]["service"], "FWM 7");
    assert!(refused[0]["reason"].as_str().is_some_and(|r| r.contains("firewall mark")), "{st}");
    let text = ka.status_text().expect("status text");
    assert!(text.contains("NOT SERVED: virtual server FWM 7"), "{text}");
    assert!(ka.log_text().contains("virtual server not served"), "the log says it");
    assert!(lab.connect(CLIENTS[0], VIPS[0], 8080).is_some(), "the other virtual servers serve");

    // Port 0: each client's first connection (rr: one server each), then every port of the
    // VIP from each client, in reverse order, goes to its first server.
    let first: Vec<usize> = CLIENTS.iter().map(|c| lab.connect(c, VIP_ANY, 8080).expect("first connection")).collect();
    let mut distinct = first.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "rr gave each client its own server: {first:?}");
    for (c, want) in CLIENTS.iter().zip(&first).rev() {
        for port in [8081, 8080, 8081] {
            assert_eq!(lab.connect(c, VIP_ANY, port), Some(*want), "{c} to port {port} stays on its server");
        }
    }
    ka.stop().expect("stop");
}

/// A `virtual_server_group` of address ranges (IPv4, and IPv6 whose last 16 bits vary) is one
/// service per group: `ka check --strict` accepts it (it was "not supported yet"), `ka status`
/// shows one service with the other addresses, every address is served, and the group has one
/// scheduler state: rr gives the first connections to its three addresses three different
/// servers, where three services each starting their own schedule would give the same one.
#[test]
fn group_ranges_are_one_service() {
    let lab = lab();
    let body = format!("virtual_server_group g4 {{\n {}-102 8080\n}}\nvirtual_server_group g6 {{\n {}-102 8080\n}}\n", VIPS[0], VIPS6[0])
        + &virtual_server("group g4", "", 4)
        + &virtual_server("group g6", "", 6);
    let conf = lab.write("groups.conf", &config("", &body));
    let (code, err) = ka_check(&lab.lan.directors[0], &conf, true);
    assert_eq!(code, 0, "ka check --strict: {err}");
    assert!(err.is_empty(), "no warning: {err}");

    let ka = lab.start(&conf, 2);
    let st = ka.status_json().expect("status");
    for (svc, vips) in st["services"].as_array().expect("services").iter().zip([VIPS, VIPS6]) {
        assert_eq!(svc["vip"], vips[0], "{st}");
        let also: Vec<String> = vips[1..].iter().map(|v| SocketAddr::new(v.parse().expect("ip"), 8080).to_string()).collect();
        assert_eq!(svc["also"], serde_json::json!(also), "{st}");
    }
    for (vips, src) in [(VIPS, CLIENTS[0]), (VIPS6, CLIENT6)] {
        let got: Vec<Option<usize>> = vips.iter().map(|v| lab.connect(src, v, 8080)).collect();
        let mut servers: Vec<usize> = got.iter().map(|g| g.unwrap_or_else(|| panic!("every address served: {got:?}"))).collect();
        servers.sort_unstable();
        servers.dedup();
        assert_eq!(servers.len(), 3, "one rr schedule across the group's addresses: {got:?}");
    }
    ka.stop().expect("stop");
}

/// A group replacing `virtual_server fwmark` (the migration of docs/config.md): two ports of one
/// address and a second address, one service. Under `nftables_ipvs` (keepalived's one fwmark
/// service per group) a client keeps its first connection's real server on every key of the
/// group; without it (keepalived's one service per key) persistence is per key, and a client's
/// first connection to another key is scheduled on its own.
#[test]
fn group_replaces_fwmark_with_shared_persistence() {
    let lab = lab();
    let body = format!("virtual_server_group web {{\n {v} 8080\n {v} 8081\n {w} 8080\n}}\n", v = VIPS[0], w = VIPS[1])
        + &virtual_server("group web", " persistence_timeout 600\n", 4);
    let keys = [(VIPS[0], 8081), (VIPS[1], 8080), (VIPS[0], 8080)];

    let conf = lab.write("shared.conf", &config(" nftables_ipvs\n", &body));
    assert_eq!(ka_check(&lab.lan.directors[0], &conf, true), (0, String::new()), "ka check --strict");
    let ka = lab.start(&conf, 1);
    let first: Vec<usize> = CLIENTS.iter().map(|c| lab.connect(c, VIPS[0], 8080).expect("first connection")).collect();
    assert_eq!({ let mut d = first.clone(); d.sort_unstable(); d.dedup(); d.len() }, 3, "rr: {first:?}");
    for (c, want) in CLIENTS.iter().zip(&first).rev() {
        for (vip, port) in keys {
            assert_eq!(lab.connect(c, vip, port), Some(*want), "{c} to {vip}:{port} keeps its server across the group");
        }
    }
    ka.stop().expect("stop");

    // Without nftables_ipvs: the last client's first connection to another key is the 4th new
    // flow of the schedule, so it goes to the first client's server, not its own.
    let conf = lab.write("per-key.conf", &config("", &body));
    let ka = lab.start(&conf, 1);
    let first: Vec<usize> = CLIENTS.iter().map(|c| lab.connect(c, VIPS[0], 8080).expect("first connection")).collect();
    let other = lab.connect(CLIENTS[2], VIPS[0], 8081).expect("another key");
    assert_eq!(other, first[0], "per-key persistence: a new template for {}:8081 ({first:?})", VIPS[0]);
    assert_ne!(other, first[2]);
    assert_eq!(lab.connect(CLIENTS[2], VIPS[0], 8081), Some(other), "and that key's template holds");
    ka.stop().expect("stop");
}

/// Reads what is in the FIFO now (non-blocking).
fn drain(f: &mut std::fs::File) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = std::io::Read::read(f, &mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `lvs_notify_fifo`: ka creates the FIFO and writes keepalived's lines, `RS ... DOWN` when a
/// real server fails and `VS ... DOWN` when that loses the quorum. At stop, with `omega`,
/// keepalived's notifiers: without `lvs_flush_on_stop` the live real servers' (`RS ... DOWN`
/// each, no `VS`), with it the virtual server's (`VS ... DOWN`, no `RS`). The FIFO ka created is
/// removed when it stops. On the old daemon `lvs_notify_fifo` was ignored: no FIFO, no line.
#[test]
fn lvs_notify_fifo_lines_and_notifiers_at_stop() {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut lab = lab();
    let vs = format!("[{}]:tcp:8080", VIPS[0]);
    let rs = |i: usize| format!("[{}]:tcp:8080", RS[i]);
    for flush in [false, true] {
        let fifo = lab.dir.join(format!("lvs-{flush}.fifo"));
        let global = format!(" lvs_notify_fifo {}
{}", fifo.display(), if flush { " lvs_flush_on_stop
" } else { "" });
        let body = virtual_server(&format!("{} 8080", VIPS[0]), " quorum 3
 omega
", 4);
        let conf = lab.write(&format!("fifo-{flush}.conf"), &config(&global, &body));
        if flush {
            lab.servers[2] = Some(EchoServer::start(&lab.lan.real_servers[1], 1, 8080, &Accepted::default(), &[]).expect("echo server"));
        }
        let ka = lab.start(&conf, 1);
        let meta = std::fs::symlink_metadata(&fifo).expect("ka made the FIFO");
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()), "{}", fifo.display());
        let mut reader = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).expect("open FIFO");
        // rs1 stops listening on 8080: its TCP_CHECK fails, the quorum (3) is lost.
        lab.servers[2] = None;
        let mut got = String::new();
        let want_down = format!("RS {} {vs} DOWN\nVS {vs} DOWN\n", rs(1));
        wait_for("RS and VS DOWN lines", WAIT, || {
            got.push_str(&drain(&mut reader));
            got.contains(&want_down).then_some(())
        });
        got.clear();
        ka.stop().expect("stop");
        got.push_str(&drain(&mut reader));
        if flush {
            assert_eq!(got, format!("VS {vs} DOWN\n"), "lvs_flush_on_stop: the virtual server's notifiers");
        } else {
            assert_eq!(got, format!("RS {} {vs} DOWN\nRS {} {vs} DOWN\n", rs(0), rs(2)), "the live real servers' notifiers");
        }
        assert!(!fifo.exists(), "the FIFO ka made is removed at exit");
    }
}

/// `lvs_flush`: a restart does not adopt the tables of the earlier run (`--dont-release-ipvs`
/// left them pinned): the service's counters start at 0, where a restart without it carries
/// them on (the same pinned maps). On the old daemon `lvs_flush` was ignored.
#[test]
fn lvs_flush_starts_from_empty_tables() {
    let lab = lab();
    let instance = unique_name("svf");
    let body = virtual_server(&format!("{} 8080", VIPS[0]), "", 4);
    let keep = lab.write("keep.conf", &config("", &body));
    let flush = lab.write("flush.conf", &config(" lvs_flush
", &body));
    let packets = |ka: &KaDaemon| ka.status_json().ok().and_then(|s| s["services"][0]["packets"].as_u64()).unwrap_or(0);

    let ka = lab.start_as(&instance, &keep, 1, &["--dont-release-ipvs"]);
    for _ in 0..3 {
        assert!(lab.connect(CLIENTS[0], VIPS[0], 8080).is_some(), "served");
    }
    let before = packets(&ka);
    assert!(before > 0, "counted");
    ka.stop().expect("stop");

    let ka = lab.start_as(&instance, &keep, 1, &["--dont-release-ipvs"]);
    assert!(packets(&ka) >= before, "without lvs_flush the pinned tables are adopted: {} < {before}", packets(&ka));
    ka.stop().expect("stop");

    let ka = lab.start_as(&instance, &flush, 1, &[]);
    assert_eq!(packets(&ka), 0, "lvs_flush: the tables start empty");
    assert!(ka.log_text().contains("lvs_flush"), "the log says it");
    assert!(lab.connect(CLIENTS[0], VIPS[0], 8080).is_some(), "and the service serves");
    ka.stop().expect("stop");
}
