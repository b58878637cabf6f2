//! Active-active directors announcing VIPs over BGP (`ka run --announce-table N`), with a real
//! BIRD 2 learning ka's routes from the table (`protocol kernel { kernel table N; learn; }`).
//!
//! - The routes follow the state: a VIP no `vrrp_instance` owns is announced while its virtual
//!   servers have quorum; a VRRP-owned VIP only while its instance is MASTER; each goes at once
//!   when quorum is lost and comes back with it; BIRD learns and forgets each.
//! - Stop: SIGTERM withdraws the routes before ka exits; after kill -9 they stay (the pinned
//!   datapath keeps forwarding).
//! - ECMP: two active-active directors behind a BIRD router (`merge paths on`, L4 hash) each
//!   forward part of the flows; a graceful drain and a dead link lose none of them.

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

const AA_RS: [&str; 2] = ["198.18.40.11", "198.18.40.12"];
const ROUTER: &str = "198.18.40.254";
const FAR_CLIENT: &str = "198.18.50.2";

/// A director's BIRD for the ECMP lab: learns ka's routes from table 100 and announces them to
/// the router over eBGP (AS 65001 to 65000), next hop itself; short timers for the test.
fn director_bgp_conf(me: &str) -> String {
    format!(
        "router id {me};\nprotocol device {{ }}\n\
protocol kernel k4 {{ ipv4 {{ import all; export none; }}; kernel table {TABLE}; learn; }}\n\
protocol bgp up {{ local {me} as 65001; neighbor {ROUTER} as 65000; hold time 3; keepalive time 1; connect retry time 1;\n ipv4 {{ import none; export all; next hop self; }}; }}\n"
    )
}

/// The router's BIRD: a session with each director, the best paths merged into one ECMP route
/// in its main table (`merge paths on`).
fn router_bgp_conf() -> String {
    let mut s = format!("router id {ROUTER};\nprotocol device {{ }}\nprotocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}\n");
    for (i, d) in DIRECTORS.iter().enumerate() {
        s.push_str(&format!(
            "protocol bgp d{i} {{ local {ROUTER} as 65000; neighbor {d} as 65001; hold time 3; keepalive time 1; connect retry time 1;\n ipv4 {{ import all; export none; }}; }}\n"
        ));
    }
    s
}

/// The next hops of the router's route to `vip` (`ip route show VIP`).
fn router_hops(router: &Netns, vip: &str) -> Vec<String> {
    let text = router.run(&["ip", "-4", "route", "show", vip]).unwrap_or_default();
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut hops: Vec<String> = words.windows(2).filter(|w| w[0] == "via").map(|w| w[1].to_owned()).collect();
    hops.sort();
    hops
}

fn counter(ka: &KaDaemon, name: &str) -> u64 {
    ka.status_json().ok().and_then(|s| s["counters"][name].as_u64()).unwrap_or(0)
}

/// Two active-active directors (no VRRP: XDP attaches where the real servers are), each
/// announcing the VIP through its BIRD to a router that spreads the client's flows over both
/// with ECMP (L4 hash): each director forwards part of the flows. Then one drains gracefully
/// (SIGTERM: routes withdrawn, forwarding on for the drain): the router moves its flows to the
/// other, whose Maglev table picks the same real servers, and no connection is lost. It comes
/// back; then the other's link dies: the router converges on its hold timer, and the flows
/// that moved keep their real servers too.
#[test]
fn ecmp_across_two_directors_and_graceful_drain() {
    require_root();
    let lab = Lan::new(&LanSpec {
        client: vec!["198.18.40.2/24".into()],
        directors: DIRECTORS.iter().map(|a| vec![format!("{a}/24")]).collect(),
        real_servers: AA_RS.iter().map(|a| vec![format!("{a}/24")]).collect(),
        loopback_vips: vec![format!("{VIP_AA}/32")],
    })
    .expect("lan");
    let mut bridge = lab.bridge;
    let router = Netns::new("rt").expect("router ns");
    bridge.attach(&router, "eth0", &[&format!("{ROUTER}/24")]).expect("router on the lan");
    let client = Netns::new("fc").expect("client ns");
    ka_tests::netns::veth(&router, "eth1", &["198.18.50.1/24"], &client, "eth0", &[&format!("{FAR_CLIENT}/24")]).expect("client link");
    client.run(&["ip", "route", "add", "default", "via", "198.18.50.1"]).expect("client route");
    ka_tests::lan::full_checksums(&client, "eth0").expect("checksums");
    ka_tests::lan::full_checksums(&router, "eth0").expect("checksums");
    // L4 hashing of ECMP, in the router's namespace only.
    router.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"]).expect("router sysctls");
    for rs in &lab.real_servers {
        rs.run(&["ip", "route", "add", "default", "via", ROUTER]).expect("rs route");
    }
    let accepted = Accepted::default();
    let _echo: Vec<EchoServer> = lab.real_servers.iter().enumerate().map(|(i, ns)| EchoServer::start(ns, i, PORT, &accepted, &[]).expect("echo")).collect();

    let dir = std::env::temp_dir().join(unique_name("kabgp"));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("keepalived.conf");
    let rs: String = AA_RS.iter().map(|a| format!(" real_server {a} {PORT} {{\n{} }}\n", tcp_check())).collect();
    std::fs::write(&path, format!("virtual_server {VIP_AA} {PORT} {{\n delay_loop 1\n lb_algo mh\n mh-port\n lb_kind DR\n protocol TCP\n{rs}}}\n")).expect("conf");
    let path = path.to_str().expect("utf-8").to_owned();

    let _router_bird = Bird::start(&router, &router_bgp_conf()).expect("router bird");
    let _birds: Vec<Bird> = DIRECTORS.iter().zip(&lab.directors).map(|(a, ns)| Bird::start(ns, &director_bgp_conf(a)).expect("director bird")).collect();
    let mut kas: Vec<Option<KaDaemon>> = lab
        .directors
        .iter()
        .map(|ns| Some(KaDaemon::start(ns, &ka_bin(), &unique_name("bgpe"), &["-f", &path, "--announce-table", TABLE, "--announce-drain", "3"]).expect("ka run")))
        .collect();
    let both = sorted(&DIRECTORS);
    wait_for("the router's ECMP route over both directors", WAIT, || (router_hops(&router, VIP_AA) == both).then_some(()));
    for ka in kas.iter().flatten() {
        let log = ka.log_text();
        assert!(log.contains("XDP attaches to the real servers' interfaces"), "{log}");
    }

    // Many flows from the far client: each director takes part of them.
    const FLOWS: usize = 32;
    let addr: std::net::SocketAddr = format!("{VIP_AA}:{PORT}").parse().expect("addr");
    let mut conns: Vec<std::net::TcpStream> = client
        .enter(move || (0..FLOWS).map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))).collect::<Result<Vec<_>, _>>())
        .expect("enter")
        .join()
        .expect("connect thread")
        .expect("connections through the router");
    let mut first = Vec::new();
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        first.push(ka_tests::lan::ask(c).expect("answer through the directors"));
    }
    let shares: Vec<u64> = kas.iter().flatten().map(|k| counter(k, "lb_new_flow")).collect();
    assert!(shares.iter().all(|n| *n > 0), "each director forwards part of the flows: {shares:?}");
    assert!(shares.iter().sum::<u64>() >= FLOWS as u64, "{shares:?}");

    // Graceful drain of director 0: withdrawn, the router moves its flows to director 1.
    kas[0].take().expect("ka 0").stop().expect("graceful stop");
    wait_for("the router's route via director 1 only", WAIT, || (router_hops(&router, VIP_AA) == [DIRECTORS[1].to_owned()]).then_some(()));
    let before = counter(kas[1].as_ref().expect("ka 1"), "lb_dr");
    for (i, c) in conns.iter_mut().enumerate() {
        let again = ka_tests::lan::ask_why(c).unwrap_or_else(|e| panic!("connection {i} lost after the drain: {e}"));
        assert_eq!(again, first[i], "connection {i} moved to another real server");
    }
    assert!(counter(kas[1].as_ref().expect("ka 1"), "lb_dr") >= before + FLOWS as u64, "director 1 forwards every flow now");

    // Director 0 comes back; then director 1's link dies (no withdrawal: the router's BGP hold
    // timer, 3 s, ends the session) and every flow moves to director 0, on the same server.
    kas[0] = Some(KaDaemon::start(&lab.directors[0], &ka_bin(), &unique_name("bgpe"), &["-f", &path, "--announce-table", TABLE]).expect("ka 0 again"));
    wait_for("the ECMP route over both directors again", WAIT, || (router_hops(&router, VIP_AA) == both).then_some(()));
    for (i, c) in conns.iter_mut().enumerate() {
        let again = ka_tests::lan::ask_why(c).unwrap_or_else(|e| panic!("connection {i} lost when director 0 came back: {e}"));
        assert_eq!(again, first[i], "connection {i} moved to another real server");
    }
    lab.directors[1].run(&["ip", "link", "set", "eth0", "down"]).expect("link down");
    wait_for("the router's route via director 0 only (hold timer)", WAIT, || (router_hops(&router, VIP_AA) == [DIRECTORS[0].to_owned()]).then_some(()));
    for (i, c) in conns.iter_mut().enumerate() {
        let again = ka_tests::lan::ask_why(c).unwrap_or_else(|e| panic!("connection {i} lost when director 1's link died: {e}"));
        assert_eq!(again, first[i], "connection {i} moved to another real server");
    }
    drop(conns);
    drop(kas);
    let _ = std::fs::remove_dir_all(&dir);
}
