//! veth, as a new user's namespaces, containers and dev VMs have it: `ka run` in the default
//! `--xdp-mode auto` forwards DR traffic with nothing attached to the bridge's end of the
//! director's veth, large TCP writes (GSO from the client) included; it attaches natively
//! when the peer runs a native XDP program; and `--xdp-mode native` on a bare veth warns that
//! the forwarded traffic will be dropped.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use ka_tests::{
    daemon::KaDaemon,
    ka_bin,
    lan::{ask_why, role, tcp_check, Accepted, EchoServer, Lan, LanSpec, LbConf, RealServerConf},
    netns::{self, Netns},
    require_root, unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);
const VIP: &str = "198.18.44.100";
const DIRECTOR: &str = "198.18.44.1";
const CLIENT: &str = "198.18.44.2";
const RS: &str = "198.18.44.11";
const PORT: u16 = 8080;

/// One director, one client and one DR real server on a bridge; nothing on the bridge legs.
fn dr_lan() -> Lan {
    Lan::new(&LanSpec {
        client: vec![format!("{CLIENT}/24")],
        directors: vec![vec![format!("{DIRECTOR}/24")]],
        real_servers: vec![vec![format!("{RS}/24")]],
        loopback_vips: vec![format!("{VIP}/32")],
    })
    .expect("LAN")
}

fn dr_conf(dir: &std::path::Path) -> String {
    let text = LbConf {
        instance: "VI_VETH".into(),
        vrid: 44,
        role: role("", true, 150),
        vrrp_vips: vec![format!("{VIP}/24")],
        excluded: vec![],
        vip: VIP.into(),
        port: PORT,
        lb_kind: "DR".into(),
        real_servers: vec![RealServerConf { addr: RS.into(), port: PORT, check: tcp_check() }],
    }
    .text();
    let p = dir.join("ka.conf");
    std::fs::write(&p, text).expect("write conf");
    p.to_str().expect("utf-8").to_owned()
}

/// Waits until the real server is in the director's table and the VIP is held.
fn wait_ready(ka: &KaDaemon) {
    wait_for("the real server in the table and VRRP MASTER", WAIT, || {
        let st = ka.status_json().ok()?;
        let up = st["services"][0]["backends"].as_array()?.iter().any(|b| b["in_table"] == true);
        (up && st["vrrp"][0]["state"] == "MASTER").then_some(())
    });
}

fn connect(client: &Netns) -> std::io::Result<TcpStream> {
    client
        .enter(|| {
            let s = TcpStream::connect_timeout(&SocketAddr::new(VIP.parse().expect("ip"), PORT), Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.set_write_timeout(Some(Duration::from_secs(10)))?;
            Ok(s)
        })
        .expect("enter client")
        .join()
        .expect("client thread")
}

/// `text` without ANSI colour sequences.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The director's `xdp` attachments as `(iface, mode)`.
fn modes(ka: &KaDaemon) -> Vec<(String, String)> {
    let st = ka.status_json().expect("status");
    st["xdp"]
        .as_array()
        .expect("xdp")
        .iter()
        .map(|a| (a["iface"].as_str().unwrap_or("").to_owned(), a["mode"].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// The new user: DR on a veth in auto mode, no XDP program on the bridge's side. A
/// client connection to the VIP is answered by the real server, and so is a 4 MiB request sent
/// with the client's offloads on (TSO/GSO: the director's generic XDP sees 64 KiB skbs). On
/// the old code auto mode attached natively and the connection timed out.
#[test]
fn dr_on_a_veth_in_auto_mode_needs_nothing_on_the_peer() {
    require_root();
    let lan = dr_lan();
    let dir = std::env::temp_dir().join(unique_name("kvt"));
    std::fs::create_dir_all(&dir).expect("dir");
    let conf = dr_conf(&dir);
    let accepted = Accepted::default();
    let _server = EchoServer::start(&lan.real_servers[0], 0, PORT, &accepted, &[]).expect("echo server");
    let ka = KaDaemon::start(&lan.directors[0], &ka_bin(), &unique_name("vt"), &["-f", &conf]).expect("ka run");
    assert_eq!(modes(&ka), [("eth0".to_owned(), "generic".to_owned())]);
    let log = plain(&ka.log_text());
    let line = log.lines().find(|l| l.contains("XDP program attached")).unwrap_or_else(|| panic!("no attach line:\n{log}"));
    assert!(line.contains("iface=\"eth0\"") || line.contains("iface=eth0"), "{line}");
    assert!(line.contains("generic") && line.contains("veth") && line.contains("another network namespace"), "{line}");
    wait_ready(&ka);

    let mut s = wait_for("a connection to the VIP", WAIT, || connect(&lan.client).ok());
    assert_eq!(ask_why(&mut s).map_err(|e| e.to_string()), Ok(0), "the real server did not answer through the VIP");

    // Offloads back on at the client: its TCP hands the veth 64 KiB GSO skbs.
    lan.client.run(&["ethtool", "-K", "eth0", "tx", "on", "tso", "on", "gso", "on"]).expect("ethtool");
    let mut s = connect(&lan.client).expect("connect with TSO on");
    let big = vec![b'x'; 4 << 20];
    if let Err(e) = s.write_all(&big) {
        panic!("4 MiB through the VIP: {e}; counters {}", ka.status_json().expect("status")["counters"]);
    }
    s.write_all(b"\n").expect("newline");
    let mut answer = [0u8; 4];
    s.read_exact(&mut answer).expect("answer after the large request");
    assert_eq!(&answer, b"rs0\n");
    let counters = &ka.status_json().expect("status")["counters"];
    assert!(counters["lb_dr"].as_u64().unwrap_or(0) > 0, "nothing went through the DR path: {counters}");
    ka.stop().expect("stop");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A veth whose peer in the same namespace runs a native XDP program gets native mode in auto
/// mode; without that program it gets generic mode. `--xdp-mode native` on a veth whose peer is
/// elsewhere attaches natively and warns exactly what will be dropped.
#[test]
fn auto_mode_follows_the_peer_and_native_mode_warns() {
    require_root();
    let ns = Netns::new("vp").expect("netns");
    ns.run(&["ip", "link", "add", "va", "type", "veth", "peer", "name", "vb"]).expect("veth");
    for l in ["va", "vb"] {
        ns.run(&["ip", "link", "set", l, "up"]).expect("up");
    }
    let ka = KaDaemon::start(&ns, &ka_bin(), &unique_name("vp"), &["--iface", "va"]).expect("ka run");
    assert_eq!(modes(&ka), [("va".to_owned(), "generic".to_owned())]);
    let log = plain(&ka.log_text());
    assert!(log.contains("peer vb runs no native XDP program"), "{log}");
    ka.stop().expect("stop");

    let pass = ns.enter(|| ka_tests::xdp::attach_pass("vb")).expect("enter").join().expect("thread").expect("XDP_PASS on vb");
    let ka = KaDaemon::start(&ns, &ka_bin(), &unique_name("vp"), &["--iface", "va"]).expect("ka run");
    assert_eq!(modes(&ka), [("va".to_owned(), "native".to_owned())]);
    let log = plain(&ka.log_text());
    assert!(log.contains("peer vb runs a native XDP program"), "{log}");
    ka.stop().expect("stop");
    drop(pass);

    let other = Netns::new("vo").expect("netns");
    netns::veth(&ns, "vc", &[], &other, "vd", &[]).expect("veth");
    let ka = KaDaemon::start(&ns, &ka_bin(), &unique_name("vp"), &["--iface", "vc", "--xdp-mode", "native"]).expect("ka run");
    assert_eq!(modes(&ka), [("vc".to_owned(), "native".to_owned())]);
    let log = plain(&ka.log_text());
    let warn = log.lines().find(|l| l.contains("WARN") && l.contains("native XDP on a veth")).unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(warn.contains("XDP_TX or XDP_REDIRECT") && warn.contains("all forwarded VIP traffic"), "{warn}");
    ka.stop().expect("stop");
}
