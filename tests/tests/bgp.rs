//! Active-active directors announcing VIPs over BGP (`ka run --announce-table N`), with a real
//! BIRD 2 learning ka's routes from the table (`protocol kernel { kernel table N; learn; }`).
//!
//! - The routes follow the state: a VIP no `vrrp_instance` owns is announced while its virtual
//!   servers have quorum; a VRRP-owned VIP only while its instance is MASTER; each goes at once
//!   when quorum is lost and comes back with it; BIRD learns and forgets each.
//! - Stop: SIGTERM withdraws the routes before ka exits; after kill -9 they stay (the pinned
//!   datapath keeps forwarding).

use std::time::Duration;

use ka_tests::{
    bird::Bird,
    daemon::KaDaemon,
    ka_bin,
    lan::{tcp_check, Accepted, EchoServer, Lan, LanSpec},
    netns::Netns,
    require_root, unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);
const TABLE: &str = "100";
/// Owned by VRRP instance VI_BGP.
const VIP_VRRP: &str = "198.18.40.100";
/// Owned by no instance: served active-active.
const VIP_AA: &str = "198.18.40.200";
const VIP_AA6: &str = "fd00:198:18:40::200";
const DIRECTORS: [&str; 2] = ["198.18.40.1", "198.18.40.3"];
const RS: &str = "198.18.40.11";
const RS6: &str = "fd00:198:18:40::11";
const PORT: u16 = 8080;

/// ka's routes in `table` of `ns` (`ip route show table N proto keepalived`), both families.
fn table_routes(ns: &Netns, table: &str) -> Vec<String> {
    let mut out = Vec::new();
    for fam in ["-4", "-6"] {
        let text = ns.run(&["ip", fam, "route", "show", "table", table, "proto", "18"]).unwrap_or_default();
        out.extend(text.lines().filter_map(|l| l.split_whitespace().next()).map(|a| a.trim_end_matches("/32").trim_end_matches("/128").to_owned()));
    }
    out.sort();
    out
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

/// BIRD's prefixes without their length, sorted.
fn bird_routes(b: &Bird) -> Vec<String> {
    let mut v: Vec<String> = b.prefixes().unwrap_or_default().iter().filter_map(|p| p.split('/').next().map(str::to_owned)).collect();
    v.sort();
    v
}

/// A director's BIRD: learns ka's routes from table 100 (nothing exported to the kernel).
fn director_bird_conf(router_id: &str) -> String {
    format!(
        "router id {router_id};\nprotocol device {{ }}\n\
protocol kernel k4 {{ ipv4 {{ import all; export none; }}; kernel table {TABLE}; learn; }}\n\
protocol kernel k6 {{ ipv6 {{ import all; export none; }}; kernel table {TABLE}; learn; }}\n"
    )
}

/// VI_BGP owns VIP_VRRP (director d1 has the higher priority); VIP_AA (IPv4 and IPv6) is
/// owned by no instance. Every virtual server has the one real server, TCP-checked.
fn conf() -> String {
    let rs = |addr: &str| format!(" real_server {addr} {PORT} {{\n{} }}\n", tcp_check());
    format!(
        "vrrp_instance VI_BGP {{\n @d0 state BACKUP\n @d0 priority 100\n @d1 state MASTER\n @d1 priority 200\n interface eth0\n virtual_router_id 61\n advert_int 1\n virtual_ipaddress {{\n  {VIP_VRRP}/24\n }}\n}}\n\
virtual_server {VIP_VRRP} {PORT} {{\n delay_loop 1\n lb_algo mh\n lb_kind DR\n protocol TCP\n{}}}\n\
virtual_server {VIP_AA} {PORT} {{\n delay_loop 1\n lb_algo mh\n lb_kind DR\n protocol TCP\n{}}}\n\
virtual_server {VIP_AA6} {PORT} {{\n delay_loop 1\n lb_algo mh\n lb_kind DR\n protocol TCP\n{}}}\n",
        rs(RS),
        rs(RS),
        rs(RS6)
    )
}

fn lan() -> Lan {
    Lan::new(&LanSpec {
        client: vec!["198.18.40.2/24".into(), "fd00:198:18:40::2/64".into()],
        directors: DIRECTORS.iter().enumerate().map(|(i, a)| vec![format!("{a}/24"), format!("fd00:198:18:40::{}/64", 2 * i + 1)]).collect(),
        real_servers: vec![vec![format!("{RS}/24"), format!("{RS6}/64")]],
        loopback_vips: vec![format!("{VIP_VRRP}/32"), format!("{VIP_AA}/32"), format!("{VIP_AA6}/128")],
    })
    .expect("lan")
}

/// The routes of table 100 and BIRD's follow quorum and mastership; SIGTERM withdraws them,
/// kill -9 leaves them.
#[test]
fn routes_follow_quorum_and_mastership() {
    require_root();
    let lab = lan();
    let dir = std::env::temp_dir().join(unique_name("kabgp"));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("keepalived.conf");
    std::fs::write(&path, conf()).expect("conf");
    let path = path.to_str().expect("utf-8").to_owned();
    let accepted = Accepted::default();
    let mut echo = Some(EchoServer::start(&lab.real_servers[0], 0, PORT, &accepted, &[]).expect("echo"));

    // d1 is MASTER of VI_BGP (no XDP: it only holds the mastership).
    let peer = KaDaemon::start(&lab.directors[1], &ka_bin(), &unique_name("bgpp"), &["-f", &path, "-i", "d1", "--no-xdp"]).expect("peer ka");
    wait_for("d1 MASTER", WAIT, || peer.status_json().ok().filter(|s| s["vrrp"][0]["state"] == "MASTER").map(|_| ()));
    let bird = Bird::start(&lab.directors[0], &director_bird_conf(DIRECTORS[0])).expect("bird");
    let inst = unique_name("bgpa");
    let ka = KaDaemon::start(&lab.directors[0], &ka_bin(), &inst, &["-f", &path, "-i", "d0", "--announce-table", TABLE, "--announce-drain", "1"])
        .expect("ka run");
    let d0 = &lab.directors[0];

    // Backup: only the active-active VIPs, once their real server passes its check.
    let aa = sorted(&[VIP_AA, VIP_AA6]);
    wait_for("the active-active routes", WAIT, || (table_routes(d0, TABLE) == aa).then_some(()));
    wait_for("BIRD learns them", WAIT, || (bird_routes(&bird) == aa).then_some(()));
    let text = ka.status_text().expect("status");
    assert!(text.contains(&format!("withheld {VIP_VRRP}: vrrp_instance VI_BGP is not MASTER")), "{text}");
    assert!(text.contains(&format!("announced {VIP_AA}/32 dev lo")), "{text}");

    // d1 stops: d0 becomes MASTER and announces the VRRP-owned VIP too.
    peer.stop().expect("peer stop");
    let all = sorted(&[VIP_VRRP, VIP_AA, VIP_AA6]);
    wait_for("the VRRP-owned route after mastership", WAIT, || (table_routes(d0, TABLE) == all).then_some(()));
    wait_for("BIRD learns it", WAIT, || (bird_routes(&bird) == all).then_some(()));

    // The real server fails its checks: quorum is lost, every route goes; it comes back.
    echo.take();
    wait_for("routes withdrawn on lost quorum", WAIT, || table_routes(d0, TABLE).is_empty().then_some(()));
    wait_for("BIRD forgets them", WAIT, || bird_routes(&bird).is_empty().then_some(()));
    let text = ka.status_text().expect("status");
    assert!(text.contains("has no quorum"), "{text}");
    echo = Some(EchoServer::start(&lab.real_servers[0], 0, PORT, &accepted, &[]).expect("echo again"));
    wait_for("routes back with quorum", WAIT, || (table_routes(d0, TABLE) == all).then_some(()));

    // SIGTERM: the routes are withdrawn before ka exits.
    ka.stop().expect("ka stop");
    assert!(table_routes(d0, TABLE).is_empty(), "routes left after SIGTERM: {:?}", table_routes(d0, TABLE));
    wait_for("BIRD forgets them after the stop", WAIT, || bird_routes(&bird).is_empty().then_some(()));
    let log = std::fs::read_to_string(KaDaemon::log_file(&inst)).unwrap_or_default();
    assert!(log.contains("routes withdrawn; forwarding on"), "{log}");

    // kill -9: the routes stay for the datapath that forwards on.
    let inst = unique_name("bgpk");
    let ka = KaDaemon::start(d0, &ka_bin(), &inst, &["-f", &path, "-i", "d0", "--announce-table", TABLE]).expect("ka run again");
    wait_for("routes after the restart", WAIT, || (table_routes(d0, TABLE) == all).then_some(()));
    ka.kill();
    // Nothing is left to remove them: they are checked once, right after the kill.
    assert_eq!(table_routes(d0, TABLE), all, "kill -9 must leave the routes");
    drop(echo);
    let _ = std::fs::remove_dir_all(&dir);
}
