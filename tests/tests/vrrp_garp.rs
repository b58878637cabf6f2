//! keepalived's GARP and interface keywords on the wire, `ka run` on a LAN in namespaces:
//! `garp_group` spacing, the gratuitous ARPs a MASTER sends when a lower-priority advert
//! arrives (`garp_lower_prio_repeat` / `_delay`) with `notify_master_rx_lower_pri`, the sysctls
//! of `promote_secondaries` and `disable_local_igmp` (set while running, restored at stop),
//! `unicast_fault_no_peer` and `track_src_ip`.

use std::time::{Duration, Instant};

use ka_tests::{
    vrrp_lan,
    capture::Capture,
    daemon::KaDaemon,
    ka_bin,
    netns::{veth, Bridge, Netns},
    unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);

fn lan(n: usize) -> (Bridge, Vec<Netns>) {
    vrrp_lan::hosts("g", 8, n)
}

fn write_conf(text: &str) -> std::path::PathBuf {
    vrrp_lan::write_conf("kvg", text).into()
}

fn state(ka: &KaDaemon, i: usize) -> String {
    vrrp_lan::state(ka, i)
}

/// A VRRPv2 advert for VRID 73 at `prio`, no authentication, listing both VIPs.
fn advert(prio: u8) -> Vec<u8> {
    let mut m = vec![0x21, 73, prio, 2, 0, 1, 0, 0, 198, 18, 8, 120, 198, 18, 8, 121, 0, 0, 0, 0, 0, 0, 0, 0];
    let c = ka_tests::packet::checksum(&[&m]);
    m[6..8].copy_from_slice(&c.to_be_bytes());
    m
}

/// One captured gratuitous ARP: when the kernel received it (wall clock), and for which address.
type Seen = (Duration, [u8; 4]);

/// The gratuitous ARPs for 198.18.8.120/121 seen on the hub until `until`.
fn arps(cap: &Capture, until: Instant) -> Vec<Seen> {
    let mut out = Vec::new();
    while let Some(f) = cap.next_matching(until, |f| f.get(28..31) == Some(&[198, 18, 8][..]) && matches!(f.get(31), Some(120 | 121))) {
        let mut a = [0; 4];
        a.copy_from_slice(&f[28..32]);
        out.push((cap.last_stamp().expect("receive timestamp"), a));
    }
    out
}

/// Messages of one `garp_group` are at least its interval apart (kernel receive stamps on the
/// hub; a little jitter allowed below it).
fn assert_spaced(what: &str, seen: &[Seen], interval: Duration) {
    for w in seen.windows(2) {
        let gap = w[1].0.saturating_sub(w[0].0);
        assert!(gap + Duration::from_millis(60) >= interval, "{what}: two GARPs {gap:?} apart, garp_group asks {interval:?}: {seen:?}");
    }
}

/// A MASTER answers a lower-priority advert with `garp_lower_prio_repeat` rounds of GARPs
/// and, `garp_lower_prio_delay` later, as many again, running `notify_master_rx_lower_pri`;
/// every GARP on the interface is spaced by its `garp_group`'s `garp_interval`.
#[test]
fn lower_priority_advert_brings_garps_spaced_by_garp_group() {
    let (bridge, hosts) = lan(2);
    let dir = std::env::temp_dir().join(unique_name("kvgn"));
    std::fs::create_dir_all(&dir).expect("dir");
    let log = dir.join("lower.log");
    let conf = write_conf(&format!(
        r#"
garp_group {{
  garp_interval 0.2
  interface eth0
}}
vrrp_instance VI_G {{
  state MASTER
  interface eth0
  virtual_router_id 73
  priority 150
  advert_int 1
  garp_master_repeat 1
  garp_master_delay 0
  garp_lower_prio_repeat 2
  garp_lower_prio_delay 2
  notify_master_rx_lower_pri "/bin/sh -c 'echo lower >> {log}'"
  virtual_ipaddress {{
    198.18.8.120/24
    198.18.8.121/24
  }}
}}
"#,
        log = log.display()
    ));
    let ka = KaDaemon::start(&hosts[0], &ka_bin(), &unique_name("vg"), &["-f", conf.to_str().expect("utf-8"), "--no-xdp"]).expect("ka");
    wait_for("MASTER", WAIT, || (state(&ka, 0) == "MASTER").then_some(()));
    let cap = bridge.hub().enter(|| Capture::open("br0", 0x0806).expect("capture")).expect("enter hub").join().expect("capture");
    // The becoming-MASTER burst (one round, no second one) is over before the advert below:
    // GARPs seen from here on answer it.
    let quiet = arps(&cap, Instant::now() + Duration::from_millis(600));
    assert!(quiet.len() <= 2, "GARPs without a lower-priority advert: {quiet:?}");
    let sent = Instant::now();
    hosts[1]
        .enter(|| {
            let fd = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::RAW, Some(socket2::Protocol::from(112))).expect("raw socket");
            fd.bind_device(Some(b"eth0")).expect("bind device");
            fd.set_multicast_ttl_v4(255).expect("ttl");
            let dst: std::net::SocketAddr = "224.0.0.18:0".parse().expect("addr");
            fd.send_to(&advert(50), &dst.into()).expect("send advert");
        })
        .expect("enter")
        .join()
        .expect("sender");
    // 2 rounds × 2 VIPs now, 0.2 s apart; 2 s later the same again.
    let seen = arps(&cap, sent + Duration::from_secs(6));
    assert!(seen.len() >= 8, "wanted two bursts of 2 rounds × 2 VIPs, saw {}: {seen:?}", seen.len());
    assert_spaced("lower-priority bursts", &seen, Duration::from_millis(200));
    let (first, second) = seen.split_at(4);
    let vips = |s: &[Seen]| s.iter().filter(|(_, a)| a[3] == 120).count() == 2 && s.iter().filter(|(_, a)| a[3] == 121).count() == 2;
    assert!(vips(first) && vips(&second[..4]), "each burst announces each VIP twice: {seen:?}");
    let gap = second[0].0.saturating_sub(first[0].0);
    assert!(gap >= Duration::from_millis(1900), "second burst {gap:?} after the first, garp_lower_prio_delay is 2 s");
    wait_for("notify_master_rx_lower_pri", WAIT, || std::fs::read_to_string(&log).ok().filter(|l| l.contains("lower")).map(|_| ()));
    assert_eq!(state(&ka, 0), "MASTER", "a lower-priority advert must not move the master");
    ka.stop().expect("stop");
}

fn sysctl(ns: &Netns, path: &str) -> String {
    ns.run(&["cat", path]).expect("read sysctl").trim().to_owned()
}

/// `promote_secondaries` and `disable_local_igmp` set their sysctls in ka's namespace while it
/// runs and put back the old values at stop; `unicast_fault_no_peer` without peers keeps its
/// instance in FAULT; `track_src_ip` puts its instance in FAULT while its `mcast_src_ip` is
/// missing from the interface, and back when it returns.
#[test]
fn interface_keywords_act_and_sysctls_are_restored() {
    let (_bridge, hosts) = lan(1);
    let h = &hosts[0];
    let ps = "/proc/sys/net/ipv4/conf/eth0/promote_secondaries";
    let igmp = "/proc/sys/net/ipv4/igmp_link_local_mcast_reports";
    h.run(&["sh", "-c", &format!("echo 0 > {ps}; echo 1 > {igmp}")]).expect("initial sysctls");
    h.run(&["ip", "addr", "add", "198.18.8.50/24", "dev", "eth0"]).expect("second address");
    let conf = write_conf(
        r#"
global_defs {
  disable_local_igmp
}
vrrp_instance VI_P {
  state MASTER
  interface eth0
  virtual_router_id 74
  priority 150
  promote_secondaries
  mcast_src_ip 198.18.8.50
  track_src_ip
  virtual_ipaddress {
    198.18.8.130/24
  }
}
vrrp_instance VI_U {
  state BACKUP
  interface eth0
  virtual_router_id 75
  priority 100
  unicast_fault_no_peer
  virtual_ipaddress {
    198.18.8.131/24
  }
}
"#,
    );
    let ka = KaDaemon::start(h, &ka_bin(), &unique_name("vp"), &["-f", conf.to_str().expect("utf-8"), "--no-xdp"]).expect("ka");
    wait_for("VI_P MASTER", WAIT, || (state(&ka, 0) == "MASTER").then_some(()));
    assert_eq!(sysctl(h, ps), "1", "promote_secondaries not set");
    assert_eq!(sysctl(h, igmp), "0", "igmp_link_local_mcast_reports not cleared");
    wait_for("VI_U in FAULT", WAIT, || (state(&ka, 1) == "FAULT").then_some(()));
    h.run(&["ip", "addr", "del", "198.18.8.50/24", "dev", "eth0"]).expect("remove source");
    wait_for("VI_P in FAULT without its source", WAIT, || (state(&ka, 0) == "FAULT").then_some(()));
    h.run(&["ip", "addr", "add", "198.18.8.50/24", "dev", "eth0"]).expect("source back");
    wait_for("VI_P MASTER again", WAIT, || (state(&ka, 0) == "MASTER").then_some(()));
    assert_eq!(state(&ka, 1), "FAULT", "unicast_fault_no_peer: still no peers");
    ka.stop().expect("stop");
    assert_eq!(sysctl(h, ps), "0", "promote_secondaries not restored");
    assert_eq!(sysctl(h, igmp), "1", "igmp_link_local_mcast_reports not restored");
}

/// `interface_up_down_delays`: a tracked interface that goes down puts its instance in FAULT
/// only once it has stayed down for the down delay (not at the next link poll), and the
/// instance leaves FAULT once the link has been up for the up delay.
#[test]
fn interface_down_delay_postpones_fault() {
    let (_bridge, hosts) = lan(1);
    let h = &hosts[0];
    // A veth pair inside the namespace (no dummy module here): dum0 is tracked.
    h.run(&["ip", "link", "add", "dum0", "type", "veth", "peer", "name", "dum1"]).expect("veth");
    h.run(&["ip", "link", "set", "dum1", "up"]).expect("peer up");
    h.run(&["ip", "link", "set", "dum0", "up"]).expect("dum0 up");
    let conf = write_conf(
        r#"
interface_up_down_delays {
  dum0 3 1
}
vrrp_instance VI_D {
  state MASTER
  interface eth0
  virtual_router_id 76
  priority 150
  track_interface {
    dum0
  }
  virtual_ipaddress {
    198.18.8.140/24
  }
}
"#,
    );
    let ka = KaDaemon::start(h, &ka_bin(), &unique_name("vdl"), &["-f", conf.to_str().expect("utf-8"), "--no-xdp"]).expect("ka");
    wait_for("MASTER", WAIT, || (state(&ka, 0) == "MASTER").then_some(()));
    let down = Instant::now();
    h.run(&["ip", "link", "set", "dum0", "down"]).expect("dummy down");
    wait_for("FAULT after the down delay", WAIT, || (state(&ka, 0) == "FAULT").then_some(()));
    let took = down.elapsed();
    assert!(took >= Duration::from_millis(2900), "FAULT {took:?} after the link went down; the down delay is 3 s");
    let up = Instant::now();
    h.run(&["ip", "link", "set", "dum0", "up"]).expect("dummy up");
    wait_for("out of FAULT after the up delay", WAIT, || (state(&ka, 0) != "FAULT").then_some(()));
    let took = up.elapsed();
    assert!(took >= Duration::from_millis(900), "out of FAULT {took:?} after the link came up; the up delay is 1 s");
    ka.stop().expect("stop");
}

/// A VIP on another interface (`dev eth1`) is announced there, from that interface's MAC, as
/// keepalived does: once on becoming MASTER (`garp_master_repeat 1`), then, with
/// `garp_extra_if all 1`, every second while MASTER.
#[test]
fn garp_extra_if_refreshes_other_interfaces() {
    let (_bridge, hosts) = lan(1);
    let h = &hosts[0];
    let peer = Netns::new("gx").expect("netns");
    veth(h, "eth1", &["198.18.9.1/24"], &peer, "p0", &[]).expect("veth");
    let mac = h.run(&["cat", "/sys/class/net/eth1/address"]).unwrap_or_default();
    let conf = write_conf(
        r#"
vrrp_instance VI_X {
  state MASTER
  interface eth0
  virtual_router_id 77
  priority 150
  garp_extra_if all 1
  garp_master_repeat 1
  garp_master_delay 0
  virtual_ipaddress {
    198.18.8.150/24
    198.18.9.150/24 dev eth1
  }
}
"#,
    );
    let cap = peer.enter(|| Capture::open("p0", 0x0806).expect("capture")).expect("enter").join().expect("capture");
    let ka = KaDaemon::start(h, &ka_bin(), &unique_name("vx"), &["-f", conf.to_str().expect("utf-8"), "--no-xdp"]).expect("ka");
    wait_for("MASTER", WAIT, || (state(&ka, 0) == "MASTER").then_some(()));
    let mut seen: Vec<(Duration, Vec<u8>)> = Vec::new();
    let until = Instant::now() + Duration::from_secs(6);
    while seen.len() < 3 {
        let Some(f) = cap.next_matching(until, |f| f.get(28..32) == Some(&[198, 18, 9, 150][..])) else { break };
        seen.push((cap.last_stamp().expect("receive timestamp"), f));
    }
    assert!(seen.len() >= 3, "wanted GARPs for the eth1 VIP on eth1 every second, saw {}", seen.len());
    for w in seen.windows(2) {
        let gap = w[1].0.saturating_sub(w[0].0);
        assert!(gap >= Duration::from_millis(900), "garp_extra_if 1: two GARPs {gap:?} apart");
    }
    // Sender hardware address (bytes 22..28) is eth1's own MAC.
    let hw: Vec<String> = seen[0].1[22..28].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hw.join(":"), mac.trim(), "GARP not from eth1's MAC");
    ka.stop().expect("stop");
}
