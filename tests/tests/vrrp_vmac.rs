//! keepalived's interface keywords on the wire, in namespaces: `vmac_prefix` names the VMAC,
//! `vmac_xmit_base` sends the adverts from the base interface while the VIP stays on the VMAC,
//! `vrf` binds an instance without `interface`, `use_ipvlan` makes an L2 ipvlan (or, on a
//! kernel without CONFIG_IPVLAN, fails with an error that says so).

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
    vrrp_lan::hosts("vm", 10, n)
}

fn write_conf(text: &str) -> String {
    vrrp_lan::write_conf("kvm", text)
}

fn state(ka: &KaDaemon) -> String {
    vrrp_lan::state(ka, 0)
}

fn addrs(ns: &Netns) -> String {
    ns.run(&["ip", "-o", "addr", "show"]).expect("ip addr")
}

/// The MAC of `ifname` in `ns`.
fn mac_of(ns: &Netns, ifname: &str) -> Vec<u8> {
    let link = ns.run(&["ip", "-o", "link", "show", ifname]).expect("ip link");
    let mac = link.split("link/ether ").nth(1).and_then(|s| s.split_whitespace().next()).expect("link/ether");
    mac.split(':').map(|b| u8::from_str_radix(b, 16).expect("hex")).collect()
}

/// `vmac_prefix kv` + `use_vmac` (no name) + `vmac_xmit_base`: the VMAC is `kv.73` with the
/// virtual MAC and carries the VIP, while the adverts leave from the base interface's MAC
/// (keepalived sends them on the base interface); the VMAC goes at stop.
#[test]
fn vmac_prefix_names_the_vmac_and_xmit_base_sends_from_the_base() {
    let (bridge, hosts) = lan(1);
    let h = &hosts[0];
    let conf = write_conf(
        "global_defs {\n vmac_prefix kv\n}\nvrrp_instance VI_X {\n state MASTER\n interface eth0\n virtual_router_id 73\n priority 150\n advert_int 1\n use_vmac\n vmac_xmit_base\n virtual_ipaddress {\n 198.18.10.100/24\n }\n}\n",
    );
    let base = mac_of(h, "eth0");
    let advert_src = bridge
        .hub()
        .enter(move || {
            let cap = Capture::open("br0", 0x0800).expect("capture");
            // IPv4 protocol 112, VRID 73 (Ethernet 14 + IPv4 20 + 1).
            cap.next_matching(Instant::now() + WAIT, |f| f.get(23) == Some(&112) && f.get(35) == Some(&73)).map(|f| f[6..12].to_vec())
        })
        .expect("enter hub");
    let ka = KaDaemon::start(h, &ka_bin(), &unique_name("vm"), &["-f", &conf, "--no-xdp"]).expect("ka");
    wait_for("MASTER", WAIT, || (state(&ka) == "MASTER").then_some(()));
    wait_for("the VIP", WAIT, || addrs(h).contains("198.18.10.100/24").then_some(()));
    let a = addrs(h);
    let vip_line = a.lines().find(|l| l.contains("198.18.10.100/24")).expect("vip line");
    assert!(vip_line.contains(" kv.73 ") || vip_line.contains(" kv.73@"), "the VIP must be on kv.73: {vip_line}");
    assert_eq!(mac_of(h, "kv.73"), vec![0, 0, 0x5e, 0, 1, 73], "kv.73 must carry the virtual MAC");
    assert_eq!(advert_src.join().expect("capture thread"), Some(base), "vmac_xmit_base: adverts must leave from the base interface's MAC");
    ka.stop().expect("stop");
    assert!(h.run(&["ip", "link", "show", "kv.73"]).is_err(), "VMAC left after stop");
}

/// `vrf NAME` on an instance with no `interface` (unicast): the instance runs, its sockets
/// bound to that device, and becomes MASTER with its VIP (`dev eth0`). This kernel has no
/// CONFIG_NET_VRF, so a plain interface stands in for the VRF device (keepalived checks
/// nothing about its kind either, only that it is not a loopback).
#[test]
fn vrf_runs_an_instance_without_interface() {
    let (_bridge, hosts) = lan(1);
    let h = &hosts[0];
    let conf = write_conf(
        "vrrp_instance VI_R {\n state MASTER\n vrf eth0\n virtual_router_id 74\n priority 150\n advert_int 1\n unicast_src_ip 198.18.10.1\n unicast_peer {\n 198.18.10.9\n }\n virtual_ipaddress {\n 198.18.10.101/24 dev eth0\n }\n}\n",
    );
    let ka = KaDaemon::start(h, &ka_bin(), &unique_name("vr"), &["-f", &conf, "--no-xdp"]).expect("ka");
    wait_for("MASTER", WAIT, || (state(&ka) == "MASTER").then_some(()));
    wait_for("the VIP on eth0", WAIT, || addrs(h).lines().any(|l| l.contains("eth0") && l.contains("198.18.10.101/24")).then_some(()));
    ka.stop().expect("stop");
    assert!(!addrs(h).contains("198.18.10.101"), "VIP left after stop");
}

/// `use_ipvlan iv75 ADDR/24`: on a kernel with ipvlan, an L2 ipvlan `iv75` with that address
/// carries the VIP and goes at stop; on one without (this VM: CONFIG_IPVLAN is not set), the
/// daemon refuses to start the instance with an error naming the ipvlan and the kernel option.
#[test]
fn use_ipvlan_makes_an_l2_ipvlan_or_says_why_not() {
    let (_bridge, hosts) = lan(1);
    let h = &hosts[0];
    let conf = write_conf(
        "vrrp_instance VI_I {\n state MASTER\n interface eth0\n virtual_router_id 75\n priority 150\n advert_int 1\n use_ipvlan iv75 198.18.10.75/24\n virtual_ipaddress {\n 198.18.10.102/24\n }\n}\n",
    );
    let kernel_has_ipvlan = h.run(&["ip", "link", "add", "ivprobe", "link", "eth0", "type", "ipvlan", "mode", "l2"]).is_ok();
    if kernel_has_ipvlan {
        h.run(&["ip", "link", "del", "ivprobe"]).expect("del probe");
        let ka = KaDaemon::start(h, &ka_bin(), &unique_name("vi"), &["-f", &conf, "--no-xdp"]).expect("ka");
        wait_for("MASTER", WAIT, || (state(&ka) == "MASTER").then_some(()));
        wait_for("the VIP on iv75", WAIT, || addrs(h).lines().any(|l| l.contains("iv75") && l.contains("198.18.10.102/24")).then_some(()));
        assert!(addrs(h).lines().any(|l| l.contains("iv75") && l.contains("198.18.10.75/24")), "the ipvlan's own address is missing");
        ka.stop().expect("stop");
        assert!(h.run(&["ip", "link", "show", "iv75"]).is_err(), "ipvlan left after stop");
    } else {
        eprintln!("skip (wire part): this kernel has no ipvlan link type (CONFIG_IPVLAN); checking the error instead");
        let err = match KaDaemon::start(h, &ka_bin(), &unique_name("vi"), &["-f", &conf, "--no-xdp"]) {
            Ok(ka) => {
                let log = ka.log_text();
                ka.stop().expect("stop");
                panic!("ka started an ipvlan instance on a kernel without ipvlan:\n{log}");
            }
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("create ipvlan iv75") && err.contains("CONFIG_IPVLAN"), "the error must name the ipvlan and the kernel option:\n{err}");
    }
}

/// `use_vmac_addr` + `vmac_addr_prefix ka`: an IPv4 instance's IPv6 eVIP (the other family)
/// goes on a VMAC of its own, `ka.76` with the IPv6 virtual MAC 00:00:5e:00:02:4c, on the
/// instance's interface, while the IPv4 VIP stays on eth0; the VMAC goes at stop.
#[test]
fn use_vmac_addr_puts_the_other_family_on_its_own_vmac() {
    let (_bridge, hosts) = lan(1);
    let h = &hosts[0];
    let conf = write_conf(
        "global_defs {\n vmac_addr_prefix ka\n}\nvrrp_instance VI_A {\n state MASTER\n interface eth0\n virtual_router_id 76\n priority 150\n advert_int 1\n use_vmac_addr\n virtual_ipaddress {\n 198.18.10.104/24\n }\n virtual_ipaddress_excluded {\n fd00:198:18:10::104/64\n }\n}\n",
    );
    let ka = KaDaemon::start(h, &ka_bin(), &unique_name("va"), &["-f", &conf, "--no-xdp"]).expect("ka");
    wait_for("MASTER", WAIT, || (state(&ka) == "MASTER").then_some(()));
    wait_for("the eVIP", WAIT, || addrs(h).contains("fd00:198:18:10::104/64").then_some(()));
    let a = addrs(h);
    let ev = a.lines().find(|l| l.contains("fd00:198:18:10::104/64")).expect("eVIP line");
    assert!(ev.contains(" ka.76 ") || ev.contains(" ka.76@"), "the IPv6 eVIP must be on ka.76: {ev}");
    let v4 = a.lines().find(|l| l.contains("198.18.10.104/24")).expect("VIP line");
    assert!(v4.contains(" eth0 "), "the IPv4 VIP must stay on eth0: {v4}");
    assert_eq!(mac_of(h, "ka.76"), vec![0, 0, 0x5e, 0, 2, 76], "ka.76 must carry the IPv6 virtual MAC");
    ka.stop().expect("stop");
    assert!(h.run(&["ip", "link", "show", "ka.76"]).is_err(), "the eVIP's VMAC left after stop");
}
