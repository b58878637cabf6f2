//! `ka run` attaches `ka_xdp` natively to a veth in a namespace; real packets sent from a peer
//! namespace show up in the counters read back through `ka status`; SIGTERM detaches and
//! removes the pins and the control socket.

use std::{net::UdpSocket, path::Path, time::Duration};

use ka_tests::{daemon::KaDaemon, ka_bin, netns, netns::Netns, require_root, unique_name, wait_for};

fn counter(status: &serde_json::Value, name: &str) -> u64 {
    status["counters"][name].as_u64().unwrap_or_else(|| panic!("counter {name} missing in {status}"))
}

#[test]
fn counters_move_with_real_traffic() {
    require_root();
    let director = Netns::new("d").expect("netns");
    let client = Netns::new("c").expect("netns");
    netns::veth(&director, "eth0", &["198.18.1.1/24", "fd00:198:18:1::1/64"], &client, "eth0", &["198.18.1.2/24", "fd00:198:18:1::2/64"])
        .expect("veth");
    let instance = unique_name("it");
    let ka = KaDaemon::start(&director, &ka_bin(), &instance, &["--iface", "eth0", "--xdp-mode", "native"]).expect("ka run");
    let st = ka.status_json().expect("status");
    assert_eq!(st["xdp"][0]["iface"], "eth0");
    assert_eq!(st["xdp"][0]["mode"], "native");
    assert!(Path::new(&format!("/sys/fs/bpf/ka/{instance}/KA_STATS")).exists(), "stats map not pinned");
    let before_udp = counter(&st, "udp");

    // 20 UDP datagrams over IPv4 and 20 TCP SYNs over IPv6 from the client.
    client
        .enter(|| {
            let s = UdpSocket::bind("198.18.1.2:0").expect("bind");
            for _ in 0..20 {
                s.send_to(b"ping", "198.18.1.1:9").expect("send");
            }
            for _ in 0..20 {
                // Nobody listens: each attempt is a SYN answered by a RST.
                let _ = std::net::TcpStream::connect_timeout(
                    &"[fd00:198:18:1::1]:9".parse().expect("addr"),
                    Duration::from_secs(1),
                );
            }
        })
        .expect("enter client")
        .join()
        .expect("client thread");

    let st = wait_for("counters to show the traffic", Duration::from_secs(10), || {
        let st = ka.status_json().ok()?;
        (counter(&st, "udp") >= before_udp + 20 && counter(&st, "tcp") >= 20).then_some(st)
    });
    assert!(counter(&st, "ipv4") >= 20, "{st}");
    assert!(counter(&st, "ipv6") >= 20, "{st}");
    assert!(counter(&st, "verdict_pass") >= 40, "{st}");
    assert_eq!(counter(&st, "verdict_drop"), 0, "{st}");
    let text = ka.status_text().expect("status text");
    assert!(text.contains("xdp: eth0 (native)"), "{text}");

    let pin_dir = format!("/sys/fs/bpf/ka/{instance}");
    let sock = format!("/run/ka/{instance}.sock");
    ka.stop().expect("clean stop");
    assert!(!Path::new(&pin_dir).exists(), "pins left behind");
    assert!(!Path::new(&sock).exists(), "control socket left behind");
    let link = director.run(&["ip", "link", "show", "eth0"]).expect("ip link");
    assert!(!link.contains("xdp"), "XDP still attached after stop: {link}");
}

#[test]
fn a_second_daemon_on_the_same_instance_is_refused_and_others_run_side_by_side() {
    require_root();
    let a = Netns::new("a").expect("netns");
    let b = Netns::new("b").expect("netns");
    netns::veth(&a, "eth0", &["198.18.2.1/24"], &b, "eth0", &["198.18.2.2/24"]).expect("veth");
    let name_a = unique_name("sa");
    let name_b = unique_name("sb");
    let ka_a = KaDaemon::start(&a, &ka_bin(), &name_a, &["--iface", "eth0"]).expect("ka a");
    let ka_b = KaDaemon::start(&b, &ka_bin(), &name_b, &["--iface", "eth0"]).expect("ka b");
    let err = KaDaemon::start(&a, &ka_bin(), &name_a, &["--no-xdp"]).expect_err("duplicate instance must fail");
    assert!(format!("{err:#}").contains("in use"), "{err:#}");
    // The first daemon is unharmed.
    assert_eq!(ka_a.status_json().expect("status a")["instance"], name_a.as_str());
    assert_eq!(ka_b.status_json().expect("status b")["instance"], name_b.as_str());
    ka_a.stop().expect("stop a");
    ka_b.stop().expect("stop b");
}

#[test]
fn stale_pins_and_socket_of_a_crashed_run_are_cleaned_up() {
    require_root();
    let ns = Netns::new("s").expect("netns");
    // No dummy module on this kernel: a veth pair inside one namespace stands in.
    ns.run(&["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"]).expect("veth");
    ns.run(&["ip", "link", "set", "eth0", "up"]).expect("up");
    let name = unique_name("cr");
    let ka = KaDaemon::start(&ns, &ka_bin(), &name, &["--iface", "eth0", "--xdp-mode", "generic"]).expect("ka");
    ka.crash(); // SIGKILL: pins and socket stay behind.
    assert!(Path::new(&format!("/run/ka/{name}.sock")).exists(), "socket should survive a SIGKILL");
    let ka = KaDaemon::start(&ns, &ka_bin(), &name, &["--iface", "eth0", "--xdp-mode", "generic"]).expect("restart over leftovers");
    assert_eq!(ka.status_json().expect("status")["xdp"][0]["mode"], "generic");
    ka.stop().expect("stop");
}
