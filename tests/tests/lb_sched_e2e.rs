//! End to end through `ka run` with a least-connection scheduler: real TCP connections from a
//! client namespace to a DR virtual server with `lb_algo wlc` (ipvsadm's and keepalived's
//! default), in namespaces built by [`ka_tests::lan`].
//!
//! wlc against long-held connections: a real server holding 11 established connections gets
//! none of 40 new short ones while an equal server holds none (IPVS: 11 × 256 of overhead
//! against at most 40 inactive), and `ka status` shows the counts the datapath keeps.

use std::{
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use ka_tests::{
    daemon::KaDaemon,
    ka_bin,
    lan::{ask, misc_check, role, Accepted, EchoServer, Lan, LanSpec, LbConf, RealServerConf},
    require_root, unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);
const VIP: &str = "198.18.42.100";
const DIRECTOR: &str = "198.18.42.1";
const CLIENT: &str = "198.18.42.2";
const RS: [&str; 2] = ["198.18.42.11", "198.18.42.12"];
const PORT: u16 = 8080;

/// The lab: the LAN, a MISC_CHECK state file per real server (up at weight 1: exit 3; up at
/// weight 0: exit 2), its directory removed on drop.
struct Lab {
    lan: Lan,
    dir: std::path::PathBuf,
    state: Vec<std::path::PathBuf>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    fn new() -> Lab {
        let lan = Lan::new(&LanSpec {
            client: vec![format!("{CLIENT}/24")],
            directors: vec![vec![format!("{DIRECTOR}/24")]],
            real_servers: RS.iter().map(|a| vec![format!("{a}/24")]).collect(),
            loopback_vips: vec![format!("{VIP}/32")],
        })
        .expect("LAN");
        let dir = std::env::temp_dir().join(unique_name("ksch"));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("check.sh"), "#!/bin/sh\nread v < \"$1\"\nexit \"$v\"\n").expect("script");
        std::fs::set_permissions(dir.join("check.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let state: Vec<_> = (0..RS.len()).map(|i| dir.join(format!("rs{i}"))).collect();
        let lab = Lab { lan, dir, state };
        for i in 0..RS.len() {
            lab.set_weight(i, 1);
        }
        lab
    }

    /// Real server `i` up at weight 1 or 0 (drained).
    fn set_weight(&self, i: usize, weight: u32) {
        std::fs::write(&self.state[i], if weight == 0 { "2\n" } else { "3\n" }).expect("state");
    }

    /// The director's config: a VRRP instance owning the VIP, and the virtual server with
    /// `lb_algo wlc`.
    fn conf(&self) -> String {
        let text = LbConf {
            instance: "VI_SCH".into(),
            vrid: 91,
            role: role("", true, 150),
            vrrp_vips: vec![format!("{VIP}/24")],
            excluded: vec![],
            vip: VIP.into(),
            port: PORT,
            lb_kind: "DR".into(),
            real_servers: (0..RS.len())
                .map(|i| RealServerConf { addr: RS[i].into(), port: PORT, check: misc_check(&self.dir.join("check.sh"), &self.state[i]) })
                .collect(),
        }
        .text()
        .replace("lb_algo mh", "lb_algo wlc");
        assert!(text.contains("lb_algo wlc"), "{text}");
        let p = self.dir.join("ka.conf");
        std::fs::write(&p, text).expect("conf");
        p.to_str().expect("utf-8").to_owned()
    }

    /// Opens `n` connections from the client, asking each once; returns them with the server
    /// that answered.
    fn connect(&self, n: usize) -> Vec<(TcpStream, usize)> {
        let h = self
            .lan
            .client
            .enter(move || {
                let vip: SocketAddr = format!("{VIP}:{PORT}").parse().expect("addr");
                (0..n)
                    .map(|_| {
                        let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(3)).expect("connect to the VIP");
                        s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
                        let server = ask(&mut s).expect("an answer through the VIP");
                        (s, server)
                    })
                    .collect::<Vec<_>>()
            })
            .expect("enter the client");
        h.join().expect("client thread")
    }
}

/// (in the table, weight, active, inactive) of real server `rs` in `ka status`.
fn backend(ka: &KaDaemon, rs: &str) -> Option<(bool, u64, u64, u64)> {
    let st = ka.status_json().ok()?;
    let b = st["services"][0]["backends"].as_array()?.iter().find(|b| b["address"] == rs)?.clone();
    Some((b["in_table"].as_bool()?, b["weight"].as_u64()?, b["active_conns"].as_u64()?, b["inactive_conns"].as_u64()?))
}

/// wlc against long-held connections, as the issue found it: rs0 holds 11 open connections
/// (opened while rs1 was drained), then 40 short connections (open, ask, close) go to the
/// VIP with both servers at weight 1. IPVS sends them all to rs1; ka did 20/20 with `wlc`
/// approximated by `wrr`.
#[test]
fn wlc_against_long_held_connections() {
    require_root();
    let lab = Lab::new();
    let accepted = Accepted::default();
    let client = [CLIENT.parse().expect("ip")];
    let _servers: Vec<EchoServer> =
        (0..RS.len()).map(|i| EchoServer::start(&lab.lan.real_servers[i], i, PORT, &accepted, &client).expect("echo server")).collect();
    let ka = KaDaemon::start(&lab.lan.directors[0], &ka_bin(), &unique_name("sch"), &["-f", &lab.conf()]).expect("ka run");
    wait_for("VRRP master", WAIT, || ka.status_json().ok().filter(|s| s["vrrp"][0]["state"] == "MASTER").map(|_| ()));
    for rs in RS {
        wait_for(&format!("{rs} in the table"), WAIT, || (backend(&ka, rs).map(|b| (b.0, b.1)) == Some((true, 1))).then_some(()));
    }
    // 11 long-held connections, all on rs0 (rs1 drained meanwhile).
    lab.set_weight(1, 0);
    wait_for("rs1 drained", WAIT, || (backend(&ka, RS[1]).map(|b| b.1) == Some(0)).then_some(()));
    let mut held = lab.connect(11);
    assert!(held.iter().all(|(_, s)| *s == 0), "the held connections went to rs0: {:?}", held.iter().map(|h| h.1).collect::<Vec<_>>());
    lab.set_weight(1, 1);
    wait_for("rs1 back at weight 1", WAIT, || (backend(&ka, RS[1]).map(|b| b.1) == Some(1)).then_some(()));
    wait_for("rs0's 11 established connections in ka status", WAIT, || (backend(&ka, RS[0]).map(|b| b.2) == Some(11)).then_some(()));
    // 40 short connections, one after the other.
    let mut per = [0usize; 2];
    for _ in 0..40 {
        let (s, server) = lab.connect(1).pop().expect("one connection");
        per[server] += 1;
        drop(s);
    }
    assert!(per[0] <= 2, "rs0, holding 11 connections, got {} of 40 new ones (IPVS wlc: almost none): {per:?}", per[0]);
    // The held connections still answer from rs0; the counts are IPVS's.
    for (s, server) in &mut held {
        assert_eq!(ask(s), Some(*server), "a held connection still answers");
    }
    let (_, _, active0, _) = backend(&ka, RS[0]).expect("rs0 in status");
    let (_, _, active1, inactive1) = backend(&ka, RS[1]).expect("rs1 in status");
    assert_eq!(active0, 11, "rs0: 11 active");
    assert!(active1 <= 1 && inactive1 + active1 >= 38, "rs1: the closed connections count inactive: {active1} active, {inactive1} inactive");
    drop(held);
    ka.stop().expect("stop");
}
