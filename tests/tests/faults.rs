//! Faults (issue 14 item 4), each in namespaces: the XDP interface going down and up, deleted
//! and re-created; a real server replaced by a machine with another MAC; netlink requests
//! against a vanished interface; a full connection table; notify scripts that hang or flood
//! their output; a second `ka run` on the instance of a running one. Timing goals (how fast
//! the datapath follows a new MAC, how long 10,000 virtual servers take to start) are
//! benchmarks (`cargo xtask bench --only faults`); the tests poll with generous bounds.
//!
//! Lab: one LAN (198.18.49.0/24) with a client, one director running ka (MASTER for the VIP,
//! a DR virtual server with TCP checks) and DR real servers holding the VIP on loopback.

use std::{
    net::{SocketAddr, TcpStream},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use ka_tests::{
    daemon::KaDaemon,
    ka_bin,
    lan::{ask_why, Accepted, EchoServer, Lan, LanSpec},
    netns::Netns,
    require_root, unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);
const VIP: &str = "198.18.49.100";
const DIRECTOR: &str = "198.18.49.1";
const CLIENT: &str = "198.18.49.2";
const RS: [&str; 2] = ["198.18.49.11", "198.18.49.12"];
const PORT: u16 = 8080;
const VRID: u8 = 99;

struct Lab {
    lan: Lan,
    dir: PathBuf,
    _servers: Vec<EchoServer>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The LAN with `n` real servers, each answering on [`PORT`].
fn lab(n: usize) -> Lab {
    require_root();
    let lan = Lan::new(&LanSpec {
        client: vec![format!("{CLIENT}/24")],
        directors: vec![vec![format!("{DIRECTOR}/24")]],
        real_servers: RS[..n].iter().map(|a| vec![format!("{a}/24")]).collect(),
        loopback_vips: vec![format!("{VIP}/32")],
    })
    .expect("LAN");
    let accepted = Accepted::default();
    let servers = lan.real_servers.iter().enumerate().map(|(i, ns)| EchoServer::start(ns, i, PORT, &accepted, &[]).expect("echo server")).collect();
    let dir = std::env::temp_dir().join(unique_name("kft"));
    std::fs::create_dir_all(&dir).expect("dir");
    Lab { lan, dir, _servers: servers }
}

/// The VRRP instance (MASTER, priority 150, the VIP on eth0) with `extra` lines, and a DR
/// virtual server (`lb_algo`) over the first `n` real servers with one-second TCP checks.
fn conf_text(n: usize, lb_algo: &str, extra: &str, global: &str) -> String {
    let rs: String = RS[..n]
        .iter()
        .map(|a| format!(" real_server {a} {PORT} {{\n  TCP_CHECK {{\n   connect_timeout 1\n  }}\n  retry 1\n  delay_before_retry 0\n }}\n"))
        .collect();
    format!(
        "global_defs {{\n{global}}}\n\
vrrp_instance VI_FT {{\n state MASTER\n interface eth0\n virtual_router_id {VRID}\n priority 150\n advert_int 1\n virtual_ipaddress {{\n {VIP}/24\n }}\n{extra}}}\n\
virtual_server {VIP} {PORT} {{\n delay_loop 1\n lb_algo {lb_algo}\n lb_kind DR\n protocol TCP\n{rs}}}\n"
    )
}

impl Lab {
    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf-8").to_owned()
    }

    /// Starts ka on the director with `conf` and waits for MASTER with every real server of the
    /// virtual server in the table.
    fn start(&self, instance: &str, conf: &str, real_servers: usize) -> KaDaemon {
        let ka = KaDaemon::start(&self.lan.directors[0], &ka_bin(), instance, &["-f", conf]).expect("ka run");
        wait_for("MASTER with every real server in the table", WAIT, || {
            let st = ka.status_json().ok()?;
            let b = st["services"][0]["backends"].as_array()?.clone();
            (st["vrrp"][0]["state"] == "MASTER" && b.len() == real_servers && b.iter().all(|b| b["in_table"] == true)).then_some(())
        });
        ka
    }

    /// A new connection to the VIP from the client, with 2 s timeouts.
    fn connect(&self) -> Result<TcpStream, String> {
        self.lan
            .client
            .enter(|| {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).map_err(|e| e.to_string())?;
                let vip: SocketAddr = format!("{VIP}:{PORT}").parse().map_err(|e| format!("{e}"))?;
                s.connect_timeout(&vip.into(), Duration::from_secs(2)).map_err(|e| format!("connect: {}", e.kind()))?;
                let s: TcpStream = s.into();
                s.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
                Ok(s)
            })
            .expect("enter client")
            .join()
            .expect("client thread")
    }

    /// A new connection's answer (the real server's index), or why there is none.
    fn ask_new(&self) -> Result<usize, String> {
        let mut s = self.connect()?;
        ask_why(&mut s).map_err(|e| e.to_string())
    }

    /// Opens `n` long-lived connections and records which server answered each.
    fn open_long(&self, n: usize) -> Vec<(TcpStream, usize)> {
        (0..n)
            .map(|i| {
                let mut s = self.connect().unwrap_or_else(|e| panic!("long connection {i}: {e}"));
                let rs = ask_why(&mut s).unwrap_or_else(|e| panic!("long connection {i}: {e}"));
                (s, rs)
            })
            .collect()
    }
}

/// Every long-lived connection answers, from the server it started with.
fn still_answer(long: &mut [(TcpStream, usize)], when: &str) {
    for (i, (s, rs)) in long.iter_mut().enumerate() {
        match ask_why(s) {
            Ok(got) => assert_eq!(got, *rs, "{when}: long connection {i} moved from rs{rs} to rs{got}"),
            Err(e) => panic!("{when}: long connection {i} (rs{rs}) got no answer: {e}"),
        }
    }
}

fn counter(st: &serde_json::Value, name: &str) -> u64 {
    st["counters"][name].as_u64().unwrap_or_else(|| panic!("counter {name} missing: {}", st["counters"]))
}

/// Whether an XDP program is attached to eth0 in `ns`.
fn xdp_attached(ns: &Netns) -> bool {
    ns.run(&["ip", "-d", "link", "show", "eth0"]).is_ok_and(|t| t.contains("prog/xdp"))
}

/// New connections answer within `within` (polled).
fn serves_within(lab: &Lab, what: &str, within: Duration) {
    wait_for(what, within, || lab.ask_new().ok());
}

/// A second `ka run` on the instance of a running daemon is refused with a clear message
/// before it touches anything: the first one stays MASTER without a transition, its XDP link,
/// pins and VIP stay, established connections keep their real server and new ones are served.
#[test]
fn second_daemon_on_one_instance_is_refused_and_the_first_is_untouched() {
    let lab = lab(2);
    let conf = lab.write("ka.conf", &conf_text(2, "rr", "", ""));
    let instance = unique_name("f2");
    let ka = lab.start(&instance, &conf, 2);
    let mut long = lab.open_long(4);
    let before = ka.status_json().expect("status");
    let pid = before["pid"].as_u64().expect("pid");
    let pins = std::fs::read_dir(format!("/sys/fs/bpf/ka/{instance}")).expect("pins").count();

    // The same command again, by mistake (another namespace would do the same: the instance's
    // lock, pins and socket are host-wide).
    let log = lab.dir.join("second.log");
    let err = KaDaemon::start_logging_to(&lab.lan.directors[0], &ka_bin(), &instance, &["-f", &conf], log).expect_err("a second daemon must be refused");
    let msg = format!("{err:#}");
    assert!(msg.contains(&format!("instance {instance} is in use by a running ka (pid {pid})")), "unclear refusal: {msg}");
    assert!(msg.contains("another --instance"), "the refusal says what to do: {msg}");
    // The refused daemon logged nothing it did to the instance: no attach, no VIP, no map.
    for done in ["XDP attached", "adopting", "VIP added", "became MASTER", "lvs_flush"] {
        assert!(!msg.contains(done), "the refused daemon did {done:?} before stopping: {msg}");
    }

    let after = ka.status_json().expect("status of the first daemon");
    assert_eq!(after["pid"].as_u64(), Some(pid), "the first daemon still answers on the socket");
    assert_eq!(after["vrrp"][0]["state"], "MASTER");
    assert_eq!(after["vrrp"][0]["became_master"], before["vrrp"][0]["became_master"], "no transition");
    assert!(xdp_attached(&lab.lan.directors[0]), "XDP still attached");
    assert_eq!(std::fs::read_dir(format!("/sys/fs/bpf/ka/{instance}")).expect("pins").count(), pins, "pins untouched");
    let addrs = lab.lan.directors[0].run(&["ip", "-o", "addr", "show", "dev", "eth0"]).expect("ip addr");
    assert!(addrs.contains(VIP), "the VIP stays on eth0: {addrs}");
    still_answer(&mut long, "after the refused start");
    for i in 0..4 {
        lab.ask_new().unwrap_or_else(|e| panic!("new connection {i} after the refused start: {e}"));
    }

    // Even with the first daemon's control socket gone (a /run cleanup), the instance's lock
    // refuses the second one; before the lock, it took the first one's XDP links and maps.
    std::fs::remove_file(format!("/run/ka/{instance}.sock")).expect("remove the socket");
    let log = lab.dir.join("third.log");
    let err = KaDaemon::start_logging_to(&lab.lan.directors[0], &ka_bin(), &instance, &["-f", &conf], log).expect_err("still refused");
    assert!(format!("{err:#}").contains(&format!("(pid {pid})")), "{err:#}");
    assert!(xdp_attached(&lab.lan.directors[0]), "XDP still attached");
    still_answer(&mut long, "after the second refused start");
    lab.ask_new().expect("new connection after the second refused start");
    ka.stop().expect("clean stop");
}

/// The XDP interface goes down and comes back: ka logs both, the program stays attached, the
/// VRRP instance goes FAULT and back to MASTER, and new connections are served again.
#[test]
fn xdp_interface_down_and_up_is_logged_and_served_again() {
    let lab = lab(1);
    let conf = lab.write("ka.conf", &conf_text(1, "rr", "", ""));
    let instance = unique_name("fi");
    let ka = lab.start(&instance, &conf, 1);
    lab.ask_new().expect("served before the fault");
    let director = &lab.lan.directors[0];
    director.run(&["ip", "link", "set", "eth0", "down"]).expect("down");
    wait_for("ka to log eth0 down", WAIT, || ka.log_text().contains("XDP interface down").then_some(()));
    wait_for("FAULT while eth0 is down", WAIT, || (ka.status_json().ok()?["vrrp"][0]["state"] == "FAULT").then_some(()));
    director.run(&["ip", "link", "set", "eth0", "up"]).expect("up");
    wait_for("ka to log eth0 up", WAIT, || ka.log_text().contains("XDP interface up again").then_some(()));
    assert!(xdp_attached(director), "the program stays attached across down/up");
    wait_for("MASTER again", WAIT, || (ka.status_json().ok()?["vrrp"][0]["state"] == "MASTER").then_some(()));
    serves_within(&lab, "new connections served after down/up", WAIT);
    let before = counter(&ka.status_json().expect("status"), "lb_dr");
    lab.ask_new().expect("served");
    assert!(counter(&ka.status_json().expect("status"), "lb_dr") > before, "forwarded by XDP");
    ka.stop().expect("clean stop");
}

/// The XDP interface gets a new MAC address (`ip link set dev eth0 address ...`, as a replaced
/// NIC or a bond's new active port gives): ka logs it and its destination-MAC check follows, so
/// frames to the VIP addressed to the new MAC are load-balanced. Before, the check kept the old
/// MAC: every such frame passed (`pass_not_our_mac`) to the director's kernel, which answered
/// the VIP's clients with resets.
#[test]
fn xdp_interface_with_a_new_mac_is_still_served() {
    let lab = lab(1);
    let conf = lab.write("ka.conf", &conf_text(1, "rr", "", ""));
    let instance = unique_name("fm");
    let ka = lab.start(&instance, &conf, 1);
    lab.ask_new().expect("served before the change");
    let director = &lab.lan.directors[0];
    director.run(&["ip", "link", "set", "dev", "eth0", "address", "02:00:c6:12:00:99"]).expect("new MAC");
    wait_for("ka to log eth0's new MAC", WAIT, || ka.log_text().contains("XDP interface has a new MAC address").then_some(()));
    // The client learns the new MAC (its cached entry would take minutes to go stale).
    lab.lan.client.run(&["ip", "neigh", "flush", "all"]).expect("flush the client's neighbours");
    serves_within(&lab, "new connections served at the new MAC", WAIT);
    let before = counter(&ka.status_json().expect("status"), "lb_dr");
    lab.ask_new().expect("served");
    assert!(counter(&ka.status_json().expect("status"), "lb_dr") > before, "forwarded by XDP");
    assert!(lab.lan.client.run(&["ip", "neigh", "show"]).expect("neighbours").contains("02:00:c6:12:00:99"), "the client reached the VIP at the new MAC");
    ka.stop().expect("clean stop");
}

/// The XDP interface is deleted and re-created with the same name (a new ifindex, as a driver
/// reload or a veth re-created by a container runtime gives): ka logs that it is gone, attaches
/// the program to the new interface as soon as it exists (a new pinned link), logs it, and
/// forwards again. The VIP here is the director's own address, not a VRRP one, so that only
/// the datapath is under test. Before, ka noticed nothing: the re-created interface forwarded
/// nothing, and the director's kernel answered the VIP's clients with resets.
#[test]
fn xdp_interface_deleted_and_recreated_is_reattached() {
    let mut lab = lab(1);
    let rs = format!(" real_server {} {PORT} {{\n  TCP_CHECK {{\n   connect_timeout 1\n  }}\n }}\n", RS[0]);
    let conf = lab.write("ka.conf", &format!("virtual_server {VIP} {PORT} {{\n delay_loop 1\n lb_algo rr\n lb_kind DR\n protocol TCP\n{rs}}}\n"));
    lab.lan.directors[0].run(&["ip", "addr", "add", &format!("{VIP}/32"), "dev", "eth0"]).expect("VIP");
    let instance = unique_name("fr");
    let ka = KaDaemon::start(&lab.lan.directors[0], &ka_bin(), &instance, &["-f", &conf, "--iface", "eth0"]).expect("ka run");
    wait_for("the real server in the table", WAIT, || (ka.status_json().ok()?["services"][0]["backends"][0]["in_table"] == true).then_some(()));
    serves_within(&lab, "served before the fault", WAIT);
    let pin = format!("/sys/fs/bpf/ka/{instance}/link_eth0");
    let old_link = std::fs::metadata(&pin).expect("link pin").ino();

    let director = &lab.lan.directors[0];
    let old_index = director.run(&["cat", "/sys/class/net/eth0/ifindex"]).expect("ifindex");
    director.run(&["ip", "link", "del", "eth0"]).expect("delete");
    wait_for("ka to log eth0 gone", WAIT, || ka.log_text().contains("XDP interface gone").then_some(()));
    lab.lan.bridge.attach(&lab.lan.directors[0], "eth0", &[&format!("{DIRECTOR}/24"), &format!("{VIP}/32")]).expect("re-create eth0");
    let director = &lab.lan.directors[0];
    assert_ne!(director.run(&["cat", "/sys/class/net/eth0/ifindex"]).expect("ifindex"), old_index, "a new interface");
    wait_for("ka to log the re-attach", WAIT, || ka.log_text().contains("XDP re-attached").then_some(()));
    assert!(xdp_attached(director), "the program is attached to the new eth0");
    assert_ne!(std::fs::metadata(&pin).expect("link pin").ino(), old_link, "a new link is pinned in place of the defunct one");
    let st = ka.status_json().expect("status");
    assert_eq!(st["xdp"].as_array().map(Vec::len), Some(1), "one attachment, not two: {}", st["xdp"]);
    assert_eq!(st["xdp"][0]["iface"], "eth0");
    // The new eth0 has a new MAC: the client learns it (its cached entry would take minutes to
    // go stale; until then its frames, flooded by the bridge, are addressed to no interface).
    lab.lan.client.run(&["ip", "neigh", "flush", "all"]).expect("flush the client's neighbours");
    serves_within(&lab, "new connections served on the re-created interface", WAIT);
    let before = counter(&ka.status_json().expect("status"), "lb_dr");
    lab.ask_new().expect("served");
    assert!(counter(&ka.status_json().expect("status"), "lb_dr") > before, "forwarded by XDP, not answered by the director");
    let pin_dir = format!("/sys/fs/bpf/ka/{instance}");
    ka.stop().expect("clean stop");
    assert!(!Path::new(&pin_dir).exists(), "the new link's pin is released at stop");
    assert!(!xdp_attached(&lab.lan.directors[0]), "detached at stop");
}

/// The MAC of `ns`'s eth0, as `ip` prints it.
fn mac_of(ns: &Netns) -> String {
    ns.run(&["cat", "/sys/class/net/eth0/address"]).expect("MAC").trim().to_owned()
}

/// A real server is replaced by a machine with another MAC and the same address, which
/// announces itself as a booting host does (a gratuitous ARP: `arp_notify`); its ARP cache is
/// empty. The datapath follows: new connections reach the new machine within a few seconds
/// (the bound here is generous; `cargo xtask bench --only faults` measures it), `ka status`
/// shows the new MAC, and an established connection survives the swap by retransmission.
#[test]
fn replaced_real_server_with_a_new_mac_is_followed() {
    let lab = lab(1);
    let conf = lab.write("ka.conf", &conf_text(1, "rr", "", ""));
    let instance = unique_name("fm");
    let ka = lab.start(&instance, &conf, 1);
    let mut long = lab.open_long(2);
    let rs = &lab.lan.real_servers[0];
    let old = mac_of(rs);
    let shown = |ka: &KaDaemon| ka.status_json().ok().and_then(|st| st["services"][0]["backends"][0]["next_hop"]["mac"].as_str().map(str::to_owned));
    wait_for("the old MAC in ka status", WAIT, || (shown(&ka).as_deref() == Some(old.as_str())).then_some(()));

    let new = "02:00:5e:10:99:01";
    rs.run(&["sysctl", "-qw", "net.ipv4.conf.eth0.arp_notify=1"]).expect("arp_notify");
    let swapped = std::time::Instant::now();
    rs.run(&["ip", "link", "set", "eth0", "address", new]).expect("new MAC");
    rs.run(&["ip", "neigh", "flush", "all"]).expect("flush");
    wait_for("new connections to reach the new machine", Duration::from_secs(10), || lab.ask_new().ok());
    let took = swapped.elapsed();
    println!("the datapath followed the new MAC in {} ms", took.as_millis());
    wait_for("the new MAC in ka status", Duration::from_secs(5), || (shown(&ka).as_deref() == Some(new)).then_some(()));
    still_answer(&mut long, "after the swap");
    for i in 0..5 {
        lab.ask_new().unwrap_or_else(|e| panic!("new connection {i} after the swap: {e}"));
    }
    ka.stop().expect("clean stop");
}

/// The connection table is full of established connections (every way of every set of the
/// IPv4 table holds one, written into the daemon's pinned map as 262,144 live flows would
/// leave them): established connections keep answering from their real server, new
/// connections are still served (each takes the way of the least recently seen connection of
/// its set, never one of the live connections under test, which are seen more recently), and
/// each such eviction is counted (`lb_conn_evicted_assured`), as is the table's occupancy in
/// the real server's connection count.
#[test]
fn full_connection_table_still_forwards_and_is_counted() {
    use aya::maps::{Array, MapData};
    use ka_common::{
        lb::{conn_check, conn_hash4, ConnSet4, ConnWay4, FlowKey4, CONN_SETS, CONN_TABLE_SIZE, CONN_WAYS},
        sched::CONN_S_EST,
    };
    let lab = lab(2);
    let conf = lab.write("ka.conf", &conf_text(2, "rr", "", ""));
    let instance = unique_name("ff");
    let ka = lab.start(&instance, &conf, 2);
    let mut long = lab.open_long(4);
    let pin = format!("/sys/fs/bpf/ka/{instance}/KA_CONNS4");
    let mut table: Array<MapData, ConnSet4> = Array::try_from(aya::maps::Map::Array(MapData::from_pin(&pin).expect("pinned table"))).expect("array");
    let client: [u8; 4] = CLIENT.parse::<std::net::Ipv4Addr>().expect("ip").octets();
    // The long connections' ways: their stamp is the kernel's clock, their backend a real one.
    let ours: Vec<(u32, ConnWay4)> = (0..CONN_SETS)
        .flat_map(|s| table.get(&s, 0).map(|set| set.ways.iter().map(|w| (s, *w)).collect::<Vec<_>>()).unwrap_or_default())
        .filter(|(_, w)| w.stamp != 0 && w.key.src == client)
        .collect();
    assert!(ours.len() >= 4, "the long connections are in the table: {ours:?}");
    let now = ours.iter().map(|(_, w)| w.stamp).max().expect("stamp");
    let backend = ours[0].1.backend;
    // Fill every free way with an established flow last seen 10 s ago (4 s at 1000 Hz).
    let mut n = 0u32;
    for s in 0..CONN_SETS {
        let mut set = table.get(&s, 0).expect("set");
        let mut changed = false;
        for w in set.ways.iter_mut().filter(|w| w.stamp == 0 && w.state == 0) {
            n += 1;
            let key = FlowKey4 { src: [10, 70 + (n >> 16) as u8, (n >> 8) as u8, n as u8], dst: ours[0].1.key.dst, sport: 4242u16.to_be_bytes(), dport: PORT.to_be_bytes(), proto: 6, _pad: [0; 3] };
            *w = ConnWay4 { key, backend, check: conn_check(conn_hash4(&key), backend), stamp: now.wrapping_sub(2500) | 1, state: CONN_S_EST };
            changed = true;
        }
        if changed {
            table.set(s, set, 0).expect("write set");
        }
    }
    let full = (0..CONN_SETS).all(|s| table.get(&s, 0).is_ok_and(|set| set.ways.iter().all(|w| w.stamp != 0)));
    assert!(full, "every way of the {CONN_TABLE_SIZE}-entry table holds a connection ({n} written, {CONN_WAYS} ways per set)");
    // The sweeper counts them: the real server shows the table's connections.
    let counted = wait_for("the sweeper to count the full table", WAIT, || {
        let st = ka.status_json().ok()?;
        let total: u64 = st["services"][0]["backends"].as_array()?.iter().map(|b| b["active_conns"].as_u64().unwrap_or(0)).sum();
        (total >= u64::from(n)).then_some(total)
    });
    println!("{counted} active connections counted after filling {n} ways");
    let before = counter(&ka.status_json().expect("status"), "lb_conn_evicted_assured");
    still_answer(&mut long, "with the table full");
    for i in 0..20 {
        lab.ask_new().unwrap_or_else(|e| panic!("new connection {i} with the table full: {e}"));
    }
    still_answer(&mut long, "after 20 new connections into the full table");
    let st = ka.status_json().expect("status");
    assert!(counter(&st, "lb_conn_evicted_assured") >= before + 20, "each new connection's entry took an established one's way, counted: {}", st["counters"]);
    assert_eq!(counter(&st, "verdict_aborted"), 0);
    ka.stop().expect("clean stop");
}

/// Resident memory of process `pid`, KiB.
fn rss_kib(pid: u64) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).expect("VmRSS")
}

/// The pids of the processes whose command line contains `what`.
fn pids(what: &str) -> Vec<i32> {
    std::process::Command::new("pgrep").args(["-f", what]).output().map_or(Vec::new(), |o| String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// How many processes have `what` in their command line.
fn running(what: &str) -> usize {
    pids(what).len()
}

/// Kills, by pid, the processes a test's scripts started (their command lines carry the
/// test's unique tag), should the test end before ka killed them.
struct Reaper(String);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in pids(&self.0) {
            if pid != i32::try_from(std::process::id()).unwrap_or(0) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// Notify scripts that hang (ignoring SIGTERM) and that flood their output (hundreds of MB
/// on stdout and stderr, without end) run on every transition. ka does not wait for them: each
/// transition, driven by a `track_file`, still happens within a second or two, `ka status`
/// answers at once, the daemon's memory stays flat and its log does not take the output; and
/// at the notify timeout (60 s) every script still running is killed with its process group.
#[test]
fn hanging_and_flooding_notify_scripts_do_not_block_ka() {
    let lab = lab(1);
    let tag = unique_name("ns");
    // Every process the scripts start carries the tag in its command line (found, and killed
    // by pid if the test fails before ka kills them).
    let _reaper = Reaper(tag.clone());
    let hang = lab.write(&format!("{tag}-hang.sh"), &format!("#!/bin/sh\ntrap '' TERM HUP INT\nsleep 600 {tag} &\nwait\nsleep 600\n"));
    let flood = lab.write(&format!("{tag}-flood.sh"), &format!("#!/bin/sh\n(yes {tag}-flood-stderr >&2) &\nyes {tag}-flood-stdout\n"));
    for s in [&hang, &flood] {
        std::fs::set_permissions(s, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    }
    let track = lab.dir.join("fault");
    std::fs::write(&track, "0\n").expect("track file");
    let extra = format!(" track_file {{\n  TF\n }}\n notify_master \"{hang}\"\n notify_fault \"{hang}\"\n notify \"{flood}\"\n");
    let conf = lab.write(
        "ka.conf",
        &format!("vrrp_track_file TF {{\n file {}\n weight 0\n}}\n{}", track.display(), conf_text(1, "rr", &extra, "")),
    );
    let instance = unique_name("fn");
    let ka = lab.start(&instance, &conf, 1);
    let pid = ka.status_json().expect("status")["pid"].as_u64().expect("pid");
    wait_for("the scripts to run", WAIT, || (running(&format!("{tag}-hang")) > 0 && running(&format!("{tag}-flood")) > 0).then_some(()));
    let rss0 = rss_kib(pid);
    let state = |ka: &KaDaemon| ka.status_json().ok().and_then(|s| s["vrrp"][0]["state"].as_str().map(str::to_owned));
    let mut peak = rss0;
    for (value, want) in [("1", "FAULT"), ("0", "MASTER"), ("1", "FAULT"), ("0", "MASTER")] {
        std::fs::write(&track, format!("{value}\n")).expect("track file");
        let t = std::time::Instant::now();
        wait_for(&format!("{want} while the scripts hang and flood"), Duration::from_secs(10), || (state(&ka).as_deref() == Some(want)).then_some(()));
        println!("{want} after {} ms", t.elapsed().as_millis());
        let t = std::time::Instant::now();
        ka.status_json().expect("status");
        assert!(t.elapsed() < Duration::from_secs(1), "ka status took {:?} while the scripts run", t.elapsed());
        peak = peak.max(rss_kib(pid));
    }
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(500));
        peak = peak.max(rss_kib(pid));
    }
    println!("daemon RSS {rss0} KiB at first, {peak} KiB at most");
    assert!(peak < rss0 + 20 * 1024, "daemon memory grew from {rss0} to {peak} KiB while scripts flood their output");
    let log = ka.log_text();
    assert!(!log.contains("-flood-std"), "the scripts' output reached ka's log");
    assert!(log.len() < 4 << 20, "ka's log grew to {} bytes", log.len());
    serves_within(&lab, "served while the scripts hang", WAIT);
    // The notify timeout kills every script still running, with what it started.
    wait_for("the hung and flooding scripts killed at the notify timeout", Duration::from_secs(90), || {
        (running(&format!("{tag}-hang")) == 0 && running(&format!("{tag}-flood")) == 0).then_some(())
    });
    assert!(ka.log_text().contains("notify script timed out"), "the kill is logged");
    ka.stop().expect("clean stop");
}

/// Netlink errors from the kernel, at the daemon's level: a VIP the kernel refuses to add
/// (IPv6 disabled on its interface: `EACCES`), and a VRRP interface deleted under a MASTER
/// (every later request about it fails with `ENODEV`). ka logs each refusal with what it asked,
/// puts the instance whose interface vanished in FAULT, and goes on: the other instance stays
/// MASTER and keeps forwarding, `ka status` answers, and the stop is clean.
#[test]
fn netlink_errors_and_a_vanished_interface_are_survived() {
    let lab = lab(1);
    let director = &lab.lan.directors[0];
    director.run(&["ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"]).expect("eth1");
    director.run(&["sysctl", "-qw", "net.ipv6.conf.eth1.disable_ipv6=1"]).expect("no IPv6 on eth1");
    for dev in ["eth1", "eth1p"] {
        director.run(&["ip", "link", "set", dev, "up"]).expect("up");
    }
    director.run(&["ip", "addr", "add", "198.18.50.1/24", "dev", "eth1"]).expect("addr");
    let second = "vrrp_instance VI_B {\n state MASTER\n interface eth1\n virtual_router_id 98\n priority 150\n advert_int 1\n \
virtual_ipaddress {\n 198.18.50.100/24\n }\n virtual_ipaddress_excluded {\n fd00:198:18:50::100/64\n }\n}\n";
    let conf = lab.write("ka.conf", &format!("{}{second}", conf_text(1, "rr", "", "")));
    let instance = unique_name("fn");
    let ka = lab.start(&instance, &conf, 1);
    let state = |name: &str| {
        let st = ka.status_json().ok()?;
        st["vrrp"].as_array()?.iter().find(|i| i["name"] == name).and_then(|i| i["state"].as_str().map(str::to_owned))
    };
    wait_for("VI_B MASTER", WAIT, || (state("VI_B").as_deref() == Some("MASTER")).then_some(()));
    let refused = wait_for("the refused VIP in the log", WAIT, || {
        ka.log_text().lines().find(|l| l.contains("fd00:198:18:50::100") && (l.contains("ermission denied") || l.contains("os error"))).map(str::to_owned)
    });
    println!("logged: {refused}");
    assert!(refused.contains("add fd00:198:18:50::100/64 on ifindex"), "the log names the request: {refused}");
    let addrs = director.run(&["ip", "-o", "addr", "show", "dev", "eth1"]).expect("ip addr");
    assert!(addrs.contains("198.18.50.100/24"), "the other VIP of the instance is in place: {addrs}");
    lab.ask_new().expect("VI_FT serves");

    // eth1 deleted under VI_B.
    director.run(&["ip", "link", "del", "eth1"]).expect("delete eth1");
    wait_for("VI_B in FAULT", WAIT, || (state("VI_B").as_deref() == Some("FAULT")).then_some(()));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(state("VI_FT").as_deref(), Some("MASTER"), "the other instance is untouched");
    for i in 0..5 {
        lab.ask_new().unwrap_or_else(|e| panic!("new connection {i} after eth1 vanished: {e}"));
    }
    let log = ka.log_text();
    assert!(!log.contains("panicked"), "{log}");
    ka.stop().expect("a clean stop with the interface gone");
}

/// The netlink worker asked about an interface that vanished: each request fails on its own
/// with the kernel's errno and what was asked (adding an address, resolving a neighbour), or
/// succeeds where the answer is "nothing there" (deleting an address or a neighbour entry,
/// listing its addresses, a route via it), and the worker goes on serving.
#[test]
fn netlink_requests_about_a_vanished_interface() {
    use ka::net::netlink::{self, AddrSpec, NetlinkError};
    let lab = lab(1);
    let director = &lab.lan.directors[0];
    director.run(&["ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"]).expect("eth1");
    director.run(&["ip", "link", "set", "eth1", "up"]).expect("up");
    director.run(&["ip", "addr", "add", "198.18.51.1/24", "dev", "eth1"]).expect("addr");
    let index: u32 = director.run(&["cat", "/sys/class/net/eth1/ifindex"]).expect("ifindex").trim().parse().expect("number");
    director.run(&["ip", "link", "del", "eth1"]).expect("delete");
    director
        .enter(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(async move {
                let (nl, _task) = netlink::spawn(None).expect("netlink");
                let vip = AddrSpec::new(index, "198.18.51.100".parse().expect("ip"), 24);
                let e = nl.add_addr(vip.clone()).await.expect_err("no such device");
                assert_eq!(e.errno(), Some(libc::ENODEV), "{e}");
                assert!(e.to_string().contains(&format!("add 198.18.51.100/24 on ifindex {index}")), "{e}");
                nl.del_addr(vip).await.expect("deleting an address of a vanished interface: nothing there");
                nl.neigh_del(index, "198.18.51.9".parse().expect("ip")).await.expect("deleting its neighbour: nothing there");
                let e = nl.neigh_resolve(index, "198.18.51.9".parse().expect("ip"), true, None).await.expect_err("no such device");
                assert!(matches!(e.errno(), Some(libc::ENODEV | libc::EINVAL)), "{e}");
                assert!(e.to_string().contains(&format!("resolve 198.18.51.9 on ifindex {index}")), "{e}");
                assert!(matches!(nl.link("eth1").await, Err(NetlinkError::NoSuchLink(_))));
                assert_eq!(nl.list_addrs(Some(index)).await.expect("list"), Vec::new());
                assert_eq!(nl.route_get("198.18.51.9".parse().expect("ip")).await.expect("route get"), None, "no route left via it");
                assert_eq!(nl.link("eth0").await.expect("the worker still serves").name, "eth0");
            })
        })
        .expect("enter the director")
        .join()
        .expect("netlink thread");
}

/// Virtual servers of the 10,000-server configuration.
const MANY: u16 = 10_000;
/// Their first port.
const MANY_PORT: u16 = 10_000;

/// A configuration of 10,000 virtual servers (the VIP on ports 10000–19999, `mh` over the same
/// two DR real servers, no checkers) and the VRRP instance owning the VIP.
fn many_conf() -> String {
    let mut text = format!(
        "vrrp_instance VI_FT {{\n state MASTER\n interface eth0\n virtual_router_id {VRID}\n priority 150\n advert_int 1\n virtual_ipaddress {{\n {VIP}/24\n }}\n}}\n"
    );
    for p in MANY_PORT..MANY_PORT + MANY {
        text.push_str(&format!(
            "virtual_server {VIP} {p} {{\n lb_algo mh\n lb_kind DR\n protocol TCP\n real_server {} {p} {{\n }}\n real_server {} {p} {{\n }}\n}}\n",
            RS[0], RS[1]
        ));
    }
    text
}

/// A configuration of 10,000 virtual servers starts and serves every one of them: none is
/// refused (before, the datapath held 64 and refused the rest), `ka status` lists them all in
/// the tables, and connections to the first, a middle and the last one are answered. How long
/// the start takes is a benchmark (`cargo xtask bench --only faults`); here the bound is only
/// generous.
#[test]
fn ten_thousand_virtual_servers_start_and_serve() {
    let lab = lab(2);
    let accepted = Accepted::default();
    let sample = [MANY_PORT, MANY_PORT + MANY / 2, MANY_PORT + MANY - 1];
    let _servers: Vec<EchoServer> = lab
        .lan
        .real_servers
        .iter()
        .enumerate()
        .flat_map(|(i, ns)| sample.iter().map(move |&p| (i, ns, p)))
        .map(|(i, ns, p)| EchoServer::start(ns, i, p, &accepted, &[]).expect("echo server"))
        .collect();
    let conf = lab.write("many.conf", &many_conf());
    let instance = unique_name("fv");
    let started = std::time::Instant::now();
    let ka = KaDaemon::start_waiting(&lab.lan.directors[0], &ka_bin(), &instance, &["-f", &conf], KaDaemon::log_file(&instance), Duration::from_secs(120))
        .expect("ka run");
    let st = wait_for("MASTER with the 10,000 services", Duration::from_secs(120), || {
        let st = ka.status_json().ok()?;
        (st["vrrp"][0]["state"] == "MASTER").then_some(st)
    });
    println!("10,000 virtual servers: control socket and MASTER after {} ms", started.elapsed().as_millis());
    let services = st["services"].as_array().expect("services");
    assert_eq!(services.len(), usize::from(MANY), "every virtual server is in the datapath");
    let refused = st["refused"].as_array().map_or(0, Vec::len);
    assert_eq!(refused, 0, "none refused: {}", st["refused"]);
    let in_tables = services.iter().filter(|s| s["backends"].as_array().is_some_and(|b| b.len() == 2 && b.iter().all(|b| b["in_table"] == true))).count();
    assert_eq!(in_tables, usize::from(MANY), "every real server of every virtual server in its table");
    for port in sample {
        let answer = wait_for(&format!("port {port} served"), WAIT, || {
            lab.lan
                .client
                .enter(move || {
                    let vip: SocketAddr = format!("{VIP}:{port}").parse().ok()?;
                    let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(2)).ok()?;
                    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                    ask_why(&mut s).ok()
                })
                .ok()?
                .join()
                .ok()
                .flatten()
        });
        assert!(answer < 2, "answered by real server {answer}");
    }
    let st = ka.status_json().expect("status");
    assert!(counter(&st, "lb_dr") >= 3, "forwarded by XDP: {}", st["counters"]);
    ka.stop().expect("clean stop");
}
