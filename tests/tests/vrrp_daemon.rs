//! `ka run` as a VRRP daemon on a LAN in namespaces: what a master puts on the system (VIPs
//! with label/brd, excluded VIPs, virtual routes and rules, a VMAC interface, gratuitous ARPs)
//! and removes at shutdown; notify scripts with keepalived's arguments; malformed adverts
//! counted per reason without changing state; leftovers of a crashed run cleaned at start.

use std::time::{Duration, Instant};

use ka_tests::{
    vrrp_lan,
    capture::Capture,
    daemon::KaDaemon,
    ka_bin,
    netns::{Bridge, Netns},
    unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);

fn lan(n: usize) -> (Bridge, Vec<Netns>) {
    vrrp_lan::hosts("d", 8, n)
}

fn write_conf(text: &str) -> String {
    vrrp_lan::write_conf("kvd", text)
}

fn addrs(ns: &Netns) -> String {
    ns.run(&["ip", "-o", "addr", "show"]).expect("ip addr")
}

fn state(ka: &KaDaemon) -> String {
    vrrp_lan::state(ka, 0)
}

/// A lone master installs everything its config names and removes it all on SIGTERM; the
/// notify scripts run with keepalived's arguments; a gratuitous ARP for the VIP from the VMAC
/// reaches the LAN.
#[test]
fn master_installs_and_removes_vips_routes_rules_vmac_and_notifies() {
    let (bridge, hosts) = lan(1);
    let h = &hosts[0];
    let dir = std::env::temp_dir().join(unique_name("kvn"));
    std::fs::create_dir_all(&dir).expect("dir");
    let log = dir.join("notify.log");
    let conf = write_conf(&format!(
        r#"
vrrp_instance VI_D {{
  state MASTER
  interface eth0
  virtual_router_id 71
  priority 150
  advert_int 1
  use_vmac vrrp.71
  notify_master "/bin/sh -c 'echo master >> {log}'"
  notify "/bin/sh -c 'echo \"$@\" >> {log}' notify"
  notify_stop "/bin/sh -c 'echo stop >> {log}'"
  virtual_ipaddress {{
    198.18.8.100/24 brd 198.18.8.255 label vrrp.71:a
  }}
  virtual_ipaddress_excluded {{
    198.18.8.101/32
  }}
  virtual_routes {{
    198.18.9.0/24 via 198.18.8.254 dev eth0 table 100
  }}
  virtual_rules {{
    from 198.18.8.100 table 100 priority 100
  }}
}}
"#,
        log = log.display()
    ));
    let vmac = [0u8, 0, 0x5e, 0, 1, 71];
    let arp = bridge
        .hub()
        .enter(move || {
            let cap = Capture::open("br0", 0x0806).expect("capture");
            cap.next_matching(Instant::now() + WAIT, |f| f.get(6..12) == Some(&vmac[..]) && f.get(28..32) == Some(&[198, 18, 8, 100][..]))
        })
        .expect("enter hub");
    // use_vmac: the adverts themselves leave from the virtual MAC too.
    let advert_src = bridge
        .hub()
        .enter(move || {
            let cap = Capture::open("br0", 0x0800).expect("capture");
            // IPv4 protocol 112, VRID 71 (Ethernet 14 + IPv4 20 + 1).
            cap.next_matching(Instant::now() + WAIT, |f| f.get(23) == Some(&112) && f.get(35) == Some(&71)).map(|f| f[6..12].to_vec())
        })
        .expect("enter hub");
    let ka = KaDaemon::start(h, &ka_bin(), &unique_name("vd"), &["-f", &conf, "--no-xdp"]).expect("ka");
    wait_for("MASTER", WAIT, || (state(&ka) == "MASTER").then_some(()));
    wait_for("the VIP on the VMAC", WAIT, || addrs(h).contains("198.18.8.100/24").then_some(()));
    let a = addrs(h);
    let vip_line = a.lines().find(|l| l.contains("198.18.8.100/24")).expect("vip line");
    assert!(vip_line.contains("vrrp.71") && vip_line.contains("brd 198.18.8.255") && vip_line.contains("vrrp.71:a"), "{vip_line}");
    assert!(a.contains("198.18.8.101/32"), "excluded VIP missing: {a}");
    let link = h.run(&["ip", "link", "show", "vrrp.71"]).expect("vmac link");
    assert!(link.contains("00:00:5e:00:01:47"), "VMAC address: {link}");
    let routes = h.run(&["ip", "route", "show", "table", "100"]).expect("routes");
    assert!(routes.contains("198.18.9.0/24 via 198.18.8.254"), "{routes}");
    let rules = h.run(&["ip", "rule", "show"]).expect("rules");
    assert!(rules.contains("100:\tfrom 198.18.8.100 lookup 100"), "{rules}");
    let garp = arp.join().expect("capture thread");
    assert!(garp.is_some(), "no gratuitous ARP for the VIP from the VMAC on the LAN");
    assert_eq!(advert_src.join().expect("capture thread"), Some(vmac.to_vec()), "adverts must be sent from the virtual MAC");
    wait_for("notify scripts", WAIT, || {
        let l = std::fs::read_to_string(&log).unwrap_or_default();
        (l.contains("master\n") && l.contains("INSTANCE VI_D MASTER 150")).then_some(())
    });
    ka.stop().expect("stop");
    let a = addrs(h);
    assert!(!a.contains("198.18.8.100") && !a.contains("198.18.8.101"), "VIPs left after stop: {a}");
    assert!(h.run(&["ip", "link", "show", "vrrp.71"]).is_err(), "VMAC left after stop");
    assert!(!h.run(&["ip", "route", "show", "table", "100"]).expect("routes").contains("198.18.9.0"), "route left");
    assert!(!h.run(&["ip", "rule", "show"]).expect("rules").contains("lookup 100"), "rule left");
    let l = std::fs::read_to_string(&log).expect("notify log");
    assert!(l.contains("stop\n") && l.contains("INSTANCE VI_D STOP"), "{l}");
}

/// Builds a VRRPv2 advert for VRID 72 (PASS "pw") with a valid checksum; `f` may spoil it.
fn advert(prio: u8, f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut m = vec![0x21, 72, prio, 1, 1, 1, 0, 0, 198, 18, 8, 110, b'p', b'w', 0, 0, 0, 0, 0, 0];
    let c = ka_tests::packet::checksum(&[&m]);
    m[6..8].copy_from_slice(&c.to_be_bytes());
    f(&mut m);
    m
}

fn fix_csum(m: &mut [u8]) {
    m[6] = 0;
    m[7] = 0;
    let c = ka_tests::packet::checksum(&[m]);
    m[6..8].copy_from_slice(&c.to_be_bytes());
}

/// Malformed, truncated, wrong-TTL, wrong-version, wrong-auth, wrong-checksum and
/// wrong-interval adverts (and a flood of them) are counted per reason and dropped; the master
/// stays master and keeps answering status. Raw sockets only (`--no-xdp`).
#[test]
fn invalid_adverts_are_counted_per_reason_and_change_nothing() {
    invalid_adverts(false);
}

/// The same flood with the XDP fast path on: the invalid adverts are dropped in XDP, and
/// `ka status` still shows every reason.
#[test]
fn invalid_adverts_dropped_in_xdp_are_shown_per_reason() {
    invalid_adverts(true);
}

fn invalid_adverts(xdp: bool) {
    let (_bridge, hosts) = lan(2);
    let conf = write_conf(
        "vrrp_instance VI_B {\n state MASTER\n interface eth0\n virtual_router_id 72\n priority 150\n advert_int 1\n authentication {\n auth_type PASS\n auth_pass pw\n }\n virtual_ipaddress {\n 198.18.8.110/24\n }\n}\n",
    );
    let mut args = vec!["-f", conf.as_str()];
    if !xdp {
        args.push("--no-xdp");
    }
    let ka = KaDaemon::start(&hosts[0], &ka_bin(), &unique_name("vb"), &args).expect("ka");
    wait_for("MASTER", WAIT, || (state(&ka) == "MASTER").then_some(()));
    // Higher priority (200) so that, were any of them accepted, ka would step down.
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        ("bad_checksum", advert(200, |m| m[7] ^= 0xff), 255),
        ("bad_ttl", advert(200, |_| {}), 64),
        ("bad_version", advert(200, |m| { m[0] = 0x41; fix_csum(m) }), 255),
        ("auth_failure", advert(200, |m| { m[12] = b'x'; fix_csum(m) }), 255),
        ("adver_int_mismatch", advert(200, |m| { m[5] = 3; fix_csum(m) }), 255),
        ("too_short", advert(200, |m| m.truncate(5)), 255),
        ("bad_length", advert(200, |m| { m[3] = 2; fix_csum(m) }), 255),
        // No instance runs VRID 99 here; one byte does not even name a VRID.
        ("vrid_mismatch", advert(200, |m| { m[1] = 99; fix_csum(m) }), 255),
        ("too_short", advert(200, |m| m.truncate(1)), 255),
    ];
    let sender = hosts[1]
        .enter(move || {
            let fd = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::RAW, Some(socket2::Protocol::from(112))).expect("raw socket");
            fd.bind_device(Some(b"eth0")).expect("bind device");
            let dst: std::net::SocketAddr = "224.0.0.18:0".parse().expect("addr");
            // A flood: 2,000 rounds of one advert of each kind, interleaved so every kind
            // keeps arriving while the receive queue is under pressure.
            for _ in 0..2000 {
                for (_, msg, ttl) in &cases {
                    fd.set_multicast_ttl_v4(*ttl).expect("ttl");
                    let _ = fd.send_to(msg, &dst.into());
                }
            }
            cases.iter().map(|(r, _, _)| (*r).to_owned()).collect::<Vec<_>>()
        })
        .expect("enter")
        .join()
        .expect("sender");
    let st = wait_for("every reason counted", WAIT, || {
        let st = ka.status_json().ok()?;
        let all = &st["vrrp_dropped"];
        let inst = &st["vrrp"][0]["adverts_dropped"];
        let per_instance = |r: &str| xdp || r == "vrid_mismatch" || inst[r].as_u64().unwrap_or(0) > 0;
        sender.iter().all(|r| all[r].as_u64().unwrap_or(0) > 0 && per_instance(r)).then_some(st)
    });
    if xdp {
        assert!(st["xdp"].as_array().is_some_and(|a| !a.is_empty()), "XDP not attached: {st}");
        for r in &sender {
            let name = format!("vrrp_{r}");
            assert!(st["counters"][&name].as_u64().unwrap_or(0) > 0, "{name} not counted in XDP: {st}");
        }
    }
    let text = ka.status_text().expect("status text");
    for r in &sender {
        assert!(text.contains(&format!("    {r}: ")), "ka status does not show {r}: {text}");
    }
    assert_eq!(st["vrrp"][0]["state"], "MASTER", "invalid adverts changed state: {st}");
    assert_eq!(st["vrrp"][0]["adverts_rx"], 0, "an invalid advert was accepted: {st}");
    assert!(addrs(&hosts[0]).contains("198.18.8.110/24"));
    // The daemon logs invalid adverts at most once per advert interval, not per packet.
    let warnings = ka.log_text().matches("dropped an invalid advert").count();
    assert!(warnings < 50, "{warnings} log lines for 14,000 invalid adverts");
    ka.stop().expect("stop");
}

/// A VIP left on the interface by a crashed run is removed at start by a node that comes up
/// as backup under a higher-priority master.
#[test]
fn leftover_vips_are_removed_at_start() {
    let (_bridge, hosts) = lan(2);
    let conf = |prio: u8| {
        write_conf(&format!(
            "vrrp_instance VI_L {{\n interface eth0\n virtual_router_id 73\n priority {prio}\n advert_int 1\n virtual_ipaddress {{\n 198.18.8.120/24\n }}\n}}\n"
        ))
    };
    let master = KaDaemon::start(&hosts[1], &ka_bin(), &unique_name("vl"), &["-f", &conf(200), "--no-xdp"]).expect("master");
    wait_for("master", WAIT, || (state(&master) == "MASTER").then_some(()));
    hosts[0].run(&["ip", "addr", "add", "198.18.8.120/24", "dev", "eth0"]).expect("leftover vip");
    let backup = KaDaemon::start(&hosts[0], &ka_bin(), &unique_name("vl"), &["-f", &conf(100), "--no-xdp"]).expect("backup");
    wait_for("backup", WAIT, || (state(&backup) == "BACKUP").then_some(()));
    assert!(!addrs(&hosts[0]).contains("198.18.8.120/"), "leftover VIP still on the backup");
    assert!(addrs(&hosts[1]).contains("198.18.8.120/24"));
}

/// The tracker runtime: a weighted vrrp_script and a track_file move the effective priority;
/// an unweighted script that fails puts the instance in FAULT and its VIP goes; recovery
/// brings both back.
#[test]
fn scripts_and_files_drive_priority_and_fault() {
    let (_bridge, hosts) = lan(1);
    let dir = std::env::temp_dir().join(unique_name("kvt"));
    std::fs::create_dir_all(&dir).expect("dir");
    let ok = dir.join("ok");
    let up = dir.join("up");
    let tf = dir.join("weight");
    std::fs::write(&ok, "").expect("flag");
    std::fs::write(&up, "").expect("flag");
    std::fs::write(&tf, "2\n").expect("track file");
    let conf = write_conf(&format!(
        r#"
vrrp_script chk_weighted {{
  script "/bin/sh -c 'test -e {ok}'"
  interval 0.1
  weight -60
}}
vrrp_script chk_fatal {{
  script "/bin/sh -c 'test -e {up}'"
  interval 0.1
}}
vrrp_track_file tf {{
  file {tf}
  weight 10
}}
vrrp_instance VI_T {{
  state MASTER
  interface eth0
  virtual_router_id 74
  priority 150
  advert_int 0.1
  version 3
  track_script {{
    chk_weighted
    chk_fatal
  }}
  track_file {{
    tf
  }}
  virtual_ipaddress {{
    198.18.8.130/24
  }}
}}
"#,
        ok = ok.display(),
        up = up.display(),
        tf = tf.display()
    ));
    let ka = KaDaemon::start(&hosts[0], &ka_bin(), &unique_name("vt"), &["-f", &conf, "--no-xdp"]).expect("ka");
    let prio = |ka: &KaDaemon| ka.status_json().ok().and_then(|s| s["vrrp"][0]["effective_priority"].as_u64());
    wait_for("priority 150 + 2 × 10", WAIT, || (prio(&ka) == Some(170) && state(&ka) == "MASTER").then_some(()));
    std::fs::remove_file(&ok).expect("rm");
    wait_for("the weighted script's -60", WAIT, || (prio(&ka) == Some(110)).then_some(()));
    std::fs::write(&tf, "0\n").expect("write");
    wait_for("track file back to 0", WAIT, || (prio(&ka) == Some(90)).then_some(()));
    assert_eq!(state(&ka), "MASTER");
    std::fs::remove_file(&up).expect("rm");
    wait_for("FAULT from the unweighted script", WAIT, || (state(&ka) == "FAULT").then_some(()));
    wait_for("VIP removed in FAULT", WAIT, || (!addrs(&hosts[0]).contains("198.18.8.130/")).then_some(()));
    std::fs::write(&up, "").expect("flag");
    wait_for("MASTER again", WAIT, || (state(&ka) == "MASTER").then_some(()));
    wait_for("VIP back", WAIT, || addrs(&hosts[0]).contains("198.18.8.130/24").then_some(()));
    ka.stop().expect("stop");
}

/// Many instances with 10 ms adverts served on shared ticks: every one of them keeps sending
/// (none loses its advert timer when deadlines fall between ticks). Distinct priorities give
/// distinct skews, so the deadlines are spread over sub-millisecond offsets.
#[test]
fn many_fast_instances_all_keep_advertising() {
    let (_bridge, hosts) = lan(1);
    let mut text = String::from("global_defs {\n vrrp_version 3\n}\n");
    for v in 1..=50 {
        text += &format!(
            "vrrp_instance V{v} {{\n state MASTER\n interface eth0\n virtual_router_id {v}\n priority {}\n advert_int 0.01\n virtual_ipaddress {{\n 198.18.9.{v}/32\n }}\n}}\n",
            100 + v
        );
    }
    let conf = write_conf(&text);
    let ka = KaDaemon::start(&hosts[0], &ka_bin(), &unique_name("vm"), &["-f", &conf, "--no-xdp", "--log", "info"]).expect("ka");
    let st = wait_for("every instance to have sent 20 adverts", WAIT, || {
        let st = ka.status_json().ok()?;
        let v = st["vrrp"].as_array()?;
        (v.len() == 50 && v.iter().all(|i| i["adverts_tx"].as_u64().unwrap_or(0) >= 20)).then_some(st)
    });
    assert!(st["vrrp"].as_array().expect("array").iter().all(|i| i["state"] == "MASTER"), "{st}");
}

/// Instances sharing one interface share its socket, yet each keeps its own addressing: two
/// unicast instances, the first of which opens the socket, send from their own
/// `unicast_src_ip` (two secondary addresses); a multicast instance on the default group and
/// one on another `mcast_dst_ip` both hear their master (so both groups are joined although a
/// unicast instance opened the socket) and stay BACKUP.
/// Raw sockets only (`--no-xdp`: XDP sees multicast frames whatever the socket joined).
#[test]
fn shared_socket_joins_every_group_and_sends_from_each_source() {
    let (_bridge, hosts) = lan(2);
    for a in ["198.18.8.11/24", "198.18.8.12/24"] {
        hosts[0].run(&["ip", "addr", "add", a, "dev", "eth0"]).expect("secondary address");
    }
    let inst = |name: &str, vrid: u8, prio: u8, extra: &str| {
        format!(
            "vrrp_instance {name} {{\n interface eth0\n version 3\n virtual_router_id {vrid}\n priority {prio}\n advert_int 0.1\n{extra}\n virtual_ipaddress {{\n 198.18.8.{vrid}/24\n }}\n}}\n"
        )
    };
    let unicast = |src: u8| format!(" unicast_src_ip 198.18.8.{src}\n unicast_peer {{\n 198.18.8.2\n }}");
    let group = " mcast_dst_ip 224.0.0.19";
    // Host 1: the unicast instance first (it opens the socket), then two multicast ones as
    // backups. Host 2: master of the two multicast instances.
    let conf1 = write_conf(&format!(
        "{}{}{}{}",
        inst("VI_U", 181, 200, &unicast(11)),
        inst("VI_M", 182, 100, ""),
        inst("VI_G", 183, 100, group),
        inst("VI_V", 185, 200, &unicast(12))
    ));
    let conf2 = write_conf(&format!("{}{}", inst("VI_M", 182, 200, ""), inst("VI_G", 183, 200, group)));
    // Captured where it arrives: unicast frames between two ports never reach br0 itself.
    let src = hosts[1]
        .enter(move || {
            let cap = Capture::open("eth0", 0x0800).expect("capture");
            // IPv4 protocol 112 to the peer: the IP source of VRIDs 181 and 185.
            let mut seen = std::collections::BTreeMap::new();
            let _ = cap.next_matching(Instant::now() + WAIT, |f| {
                if f.get(23) == Some(&112) && f.get(30..34) == Some(&[198, 18, 8, 2][..]) {
                    if let (Some(&vrid), Some(src)) = (f.get(35), f.get(26..30)) {
                        seen.entry(vrid).or_insert_with(|| src.to_vec());
                    }
                }
                seen.contains_key(&181) && seen.contains_key(&185)
            });
            seen
        })
        .expect("enter hub");
    let master = KaDaemon::start(&hosts[1], &ka_bin(), &unique_name("vs"), &["-f", &conf2, "--no-xdp"]).expect("master");
    wait_for("host 2 master of both groups", WAIT, || {
        let st = master.status_json().ok()?;
        st["vrrp"].as_array()?.iter().all(|i| i["state"] == "MASTER").then_some(())
    });
    let ka = KaDaemon::start(&hosts[0], &ka_bin(), &unique_name("vs"), &["-f", &conf1, "--no-xdp"]).expect("ka");
    let by_name = |st: &serde_json::Value, n: &str| st["vrrp"].as_array().and_then(|v| v.iter().find(|i| i["name"] == n).cloned()).unwrap_or_default();
    let st = wait_for("both multicast instances hearing host 2", WAIT, || {
        let st = ka.status_json().ok()?;
        let ok = ["VI_M", "VI_G"].iter().all(|n| {
            let i = by_name(&st, n);
            i["state"] == "BACKUP" && i["master"] == "198.18.8.2" && i["adverts_rx"].as_u64().unwrap_or(0) >= 30
        });
        (ok && by_name(&st, "VI_U")["state"] == "MASTER" && by_name(&st, "VI_V")["state"] == "MASTER").then_some(st)
    });
    let a = addrs(&hosts[0]);
    assert!(!a.contains("198.18.8.182/") && !a.contains("198.18.8.183/"), "a backup holds a VIP: {a}\n{st}");
    assert!(a.contains("198.18.8.181/24") && a.contains("198.18.8.185/24"), "a unicast master lacks its VIP: {a}");
    let src = src.join().expect("capture thread");
    assert_eq!(src.get(&181), Some(&vec![198, 18, 8, 11]), "VI_U's adverts must come from its unicast_src_ip: {src:?}");
    assert_eq!(src.get(&185), Some(&vec![198, 18, 8, 12]), "VI_V's adverts must come from its unicast_src_ip: {src:?}");
    ka.stop().expect("stop");
}

/// `no_accept` (RFC 5798 Accept_Mode false): while ka is a non-owner Master, packets to its
/// VIP are dropped (a TCP connection from the LAN to a listener on the node fails through the
/// VIP and succeeds through the node's own address); the nftables table goes when ka stops.
/// With `accept` the same connection through the VIP succeeds.
#[test]
fn no_accept_drops_packets_to_the_vip_accept_lets_them_in() {
    let (_bridge, hosts) = lan(2);
    let conf = |mode: &str| {
        write_conf(&format!(
            "vrrp_instance VI_A {{\n state MASTER\n interface eth0\n virtual_router_id 84\n priority 150\n advert_int 0.1\n version 3\n {mode}\n virtual_ipaddress {{\n 198.18.8.184/24\n }}\n}}\n"
        ))
    };
    // A listener on every address of host 1; the kernel completes handshakes without accept().
    let _listener = hosts[0]
        .enter(|| std::net::TcpListener::bind("0.0.0.0:8484").expect("listen"))
        .expect("enter")
        .join()
        .expect("listener");
    let connects = |addr: &'static str| {
        hosts[1]
            .enter(move || {
                let sa: std::net::SocketAddr = format!("{addr}:8484").parse().expect("addr");
                std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(1)).is_ok()
            })
            .expect("enter")
            .join()
            .expect("connect thread")
    };
    let name = unique_name("va");
    let ka = KaDaemon::start(&hosts[0], &ka_bin(), &name, &["-f", &conf("no_accept"), "--no-xdp"]).expect("ka");
    wait_for("MASTER with the VIP", WAIT, || (state(&ka) == "MASTER" && addrs(&hosts[0]).contains("198.18.8.184/24")).then_some(()));
    let table = format!("ka_{}", name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
    wait_for("the no_accept table", WAIT, || {
        hosts[0].run(&["nft", "list", "table", "ip", &table]).ok().filter(|t| t.contains("198.18.8.184")).map(|_| ())
    });
    assert!(connects("198.18.8.1"), "the node's own address must accept connections");
    for _ in 0..3 {
        assert!(!connects("198.18.8.184"), "no_accept: a connection to the VIP succeeded");
    }
    ka.stop().expect("stop");
    assert!(hosts[0].run(&["nft", "list", "table", "ip", &table]).is_err(), "no_accept table left after stop");
    let ka = KaDaemon::start(&hosts[0], &ka_bin(), &unique_name("va"), &["-f", &conf("accept"), "--no-xdp"]).expect("ka");
    wait_for("MASTER with the VIP", WAIT, || (state(&ka) == "MASTER" && addrs(&hosts[0]).contains("198.18.8.184/24")).then_some(()));
    wait_for("accept: a connection to the VIP succeeds", WAIT, || connects("198.18.8.184").then_some(()));
    ka.stop().expect("stop");
}

/// Kills a child process when dropped (also while panicking).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tracker_status(st: &serde_json::Value, name: &str) -> String {
    st["vrrp"][0]["trackers"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == name))
        .and_then(|t| t["status"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `track_process` at runtime: the effective priority drops by the weight while no process
/// of that name runs, and comes back when one starts (and drops again when it is killed).
#[test]
fn track_process_follows_a_process() {
    let (_bridge, hosts) = lan(1);
    let dir = std::env::temp_dir().join(unique_name("kvp"));
    std::fs::create_dir_all(&dir).expect("dir");
    // A copy of sleep under a unique name (at most 15 bytes: the kernel's comm).
    let pname = unique_name("kp");
    assert!(pname.len() <= 15, "{pname}");
    let bin = dir.join(&pname);
    std::fs::copy("/bin/sleep", &bin).expect("copy sleep");
    let conf = write_conf(&format!(
        "vrrp_track_process tp {{\n process {pname}\n weight -50\n}}\nvrrp_instance VI_P {{\n state MASTER\n interface eth0\n virtual_router_id 86\n priority 150\n advert_int 1\n track_process {{\n tp\n }}\n virtual_ipaddress {{\n 198.18.8.186/24\n }}\n}}\n"
    ));
    let ka = KaDaemon::start(&hosts[0], &ka_bin(), &unique_name("vp"), &["-f", &conf, "--no-xdp"]).expect("ka");
    let prio = |ka: &KaDaemon| ka.status_json().ok().and_then(|s| s["vrrp"][0]["effective_priority"].as_u64());
    wait_for("no such process: 150 - 50", WAIT, || (prio(&ka) == Some(100)).then_some(()));
    let child = KillOnDrop(std::process::Command::new(&bin).arg("300").spawn().expect("spawn"));
    let st = wait_for("the process runs: 150", WAIT, || {
        let st = ka.status_json().ok()?;
        (st["vrrp"][0]["effective_priority"] == 150).then_some(st)
    });
    assert_eq!(tracker_status(&st, "process:tp"), "up", "{st}");
    drop(child);
    wait_for("the process is gone: 100 again", WAIT, || (prio(&ka) == Some(100)).then_some(()));
    ka.stop().expect("stop");
}

/// `vrrp_script` `user` and `timeout` at runtime: an unweighted script that succeeds only when
/// run as `nobody` keeps the instance out of FAULT (so it runs as that user); a weighted script
/// that would succeed after 5 s but has `timeout 0.3` counts as failed (its weight applies).
#[test]
fn vrrp_script_user_and_timeout() {
    let (_bridge, hosts) = lan(1);
    let dir = std::env::temp_dir().join(unique_name("kvu"));
    std::fs::create_dir_all(&dir).expect("dir");
    let check_user = dir.join("check_user.sh");
    std::fs::write(&check_user, "#!/bin/sh\n[ \"$(id -u)\" = 65534 ]\n").expect("script");
    let slow = dir.join("slow.sh");
    std::fs::write(&slow, "#!/bin/sh\nsleep 5\nexit 0\n").expect("script");
    for f in [&check_user, &slow] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    }
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod dir");
    let conf = write_conf(&format!(
        r#"
vrrp_script chk_user {{
  script "{check_user}"
  interval 0.2
  user nobody
}}
vrrp_script chk_slow {{
  script "{slow}"
  interval 0.5
  timeout 0.3
  weight -50
}}
vrrp_instance VI_U {{
  state MASTER
  interface eth0
  virtual_router_id 87
  priority 150
  advert_int 1
  track_script {{
    chk_user
    chk_slow
  }}
  virtual_ipaddress {{
    198.18.8.187/24
  }}
}}
"#,
        check_user = check_user.display(),
        slow = slow.display()
    ));
    let ka = KaDaemon::start(&hosts[0], &ka_bin(), &unique_name("vu"), &["-f", &conf, "--no-xdp"]).expect("ka");
    let st = wait_for("MASTER at 150 - 50 with the user check up and the slow one timed out", WAIT, || {
        let st = ka.status_json().ok()?;
        let i = &st["vrrp"][0];
        (i["state"] == "MASTER" && i["effective_priority"] == 100).then_some(st)
    });
    assert_eq!(tracker_status(&st, "script:chk_user"), "up", "{st}");
    assert_eq!(tracker_status(&st, "script:chk_slow"), "down", "{st}");
    ka.stop().expect("stop");
}

/// A `vrrp_sync_group`'s own `track_file` and `track_interface` act on every member, as
/// keepalived 2.2.7 runs them: a weighted group `track_file` moves both members' effective
/// priorities (no `sync_group_tracking_weight` needed: that keyword is about the members' own
/// weights), an unweighted one that reads non-zero puts both members in FAULT (their VIPs go),
/// and so does the group's tracked interface going down; restoring each brings both back.
#[test]
fn sync_group_trackers_act_on_every_member() {
    let (_bridge, hosts) = lan(1);
    let ns = &hosts[0];
    // The group's tracked interface: one end of a veth pair whose peer we take down.
    ns.run(&["ip", "link", "add", "sgt0", "type", "veth", "peer", "name", "sgt1"]).expect("veth");
    ns.run(&["ip", "link", "set", "sgt0", "up"]).expect("up");
    ns.run(&["ip", "link", "set", "sgt1", "up"]).expect("up");
    let dir = std::env::temp_dir().join(unique_name("kvs"));
    std::fs::create_dir_all(&dir).expect("dir");
    let (fault, prio) = (dir.join("fault"), dir.join("prio"));
    std::fs::write(&fault, "0\n").expect("track file");
    std::fs::write(&prio, "0\n").expect("track file");
    let vi = |name: &str, vrid: u8, priority: u8| {
        format!(
            "vrrp_instance {name} {{\n state MASTER\n interface eth0\n virtual_router_id {vrid}\n priority {priority}\n advert_int 0.1\n version 3\n virtual_ipaddress {{\n 198.18.8.{vrid}/24\n }}\n}}\n"
        )
    };
    let conf = write_conf(&format!(
        "vrrp_track_file tf_fault {{\n file {}\n weight 0\n}}\nvrrp_track_file tf_prio {{\n file {}\n}}\n{}{}\
         vrrp_sync_group G {{\n group {{\n VI_SA\n VI_SB\n }}\n track_file {{\n tf_fault\n tf_prio weight -10\n }}\n track_interface {{\n sgt0\n }}\n}}\n",
        fault.display(),
        prio.display(),
        vi("VI_SA", 141, 150),
        vi("VI_SB", 142, 140),
    ));
    let ka = KaDaemon::start(ns, &ka_bin(), &unique_name("vs"), &["-f", &conf, "--no-xdp"]).expect("ka");
    // (state, effective priority) of both members, in configuration order.
    let both = |ka: &KaDaemon| -> Vec<(String, u64)> {
        let st = ka.status_json().unwrap_or_default();
        ["VI_SA", "VI_SB"]
            .iter()
            .map(|n| {
                st["vrrp"]
                    .as_array()
                    .and_then(|a| a.iter().find(|i| i["name"] == *n))
                    .map(|i| (i["state"].as_str().unwrap_or_default().to_owned(), i["effective_priority"].as_u64().unwrap_or(0)))
                    .unwrap_or_default()
            })
            .collect()
    };
    // Polls until both members are in `want` (a priority of `None`: any), or fails showing the
    // last state seen.
    let wait = |what: &str, want: [(&str, Option<u64>); 2]| {
        let start = Instant::now();
        loop {
            let got = both(&ka);
            if got.len() == 2 && got.iter().zip(want).all(|((s, p), (ws, wp))| s == ws && wp.is_none_or(|wp| *p == wp)) {
                return;
            }
            assert!(start.elapsed() < WAIT, "timed out waiting for {what}: {got:?}, want {want:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait("both MASTER at their own priorities", [("MASTER", Some(150)), ("MASTER", Some(140))]);
    let st = ka.status_json().expect("status");
    for i in st["vrrp"].as_array().expect("instances") {
        let names: Vec<&str> = i["trackers"].as_array().expect("trackers").iter().filter_map(|t| t["name"].as_str()).collect();
        for t in ["file:tf_fault", "file:tf_prio", "interface:sgt0"] {
            assert!(names.contains(&t), "{} does not track {t}: {names:?}", i["name"]);
        }
    }
    std::fs::write(&prio, "3\n").expect("write");
    wait("the group's weight -10 × 3 on both", [("MASTER", Some(120)), ("MASTER", Some(110))]);
    std::fs::write(&fault, "1\n").expect("write");
    wait("the group's unweighted file: both FAULT", [("FAULT", None), ("FAULT", None)]);
    wait_for("both VIPs removed in FAULT", WAIT, || {
        let a = addrs(ns);
        (!a.contains("198.18.8.141/") && !a.contains("198.18.8.142/")).then_some(())
    });
    std::fs::write(&fault, "0\n").expect("write");
    wait("file restored: both MASTER", [("MASTER", Some(120)), ("MASTER", Some(110))]);
    ns.run(&["ip", "link", "set", "sgt1", "down"]).expect("peer down");
    wait("the group's interface down: both FAULT", [("FAULT", None), ("FAULT", None)]);
    ns.run(&["ip", "link", "set", "sgt1", "up"]).expect("peer up");
    wait("interface up: both MASTER", [("MASTER", Some(120)), ("MASTER", Some(110))]);
    wait_for("both VIPs back", WAIT, || {
        let a = addrs(ns);
        (a.contains("198.18.8.141/24") && a.contains("198.18.8.142/24")).then_some(())
    });
    ka.stop().expect("stop");
}
