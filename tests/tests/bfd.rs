//! BFD (`bfd_instance`, `track_bfd`, `BFD_CHECK`) against real peers, in namespaces joined by
//! a bridge (so a peer's link can go down while ka's stays up):
//!
//! - BIRD 2's `protocol bfd`, one IPv4 and one IPv6 session: the VRRP instance that tracks
//!   both is FAULT while they are down (keepalived starts it so), MASTER once ka's sessions
//!   are Up (BIRD sees them Up too), and FAULT again within the detection time when BIRD dies
//!   (SIGKILL: no goodbye) and when BIRD's link goes down, ka's own interface staying up;
//! - keepalived 2.2.7's BFD process: a weighted `track_bfd` lowers the instance's priority
//!   instead of faulting it, and the `BFD_CHECK`ed real server is out while the session is
//!   down, in while it is Up, and out again when keepalived dies.

use std::time::{Duration, Instant};

use ka_tests::{
    bird::Bird,
    daemon::KaDaemon,
    ka_bin,
    keepalived::Keepalived,
    netns::{Bridge, Netns},
    require_root, unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);
/// The sessions' detection time: multiplier 3 × 100 ms.
const DETECTION: Duration = Duration::from_millis(300);
/// A generous bound on noticing a failure: the detection time, plus `ka status` polling and a
/// loaded machine. A polled BFD_CHECK (delay_loop 60 s) or a missing event would blow it.
const NOTICE: Duration = Duration::from_secs(5);
const KA4: &str = "198.18.60.1";
const PEER4: &str = "198.18.60.2";
const KA6: &str = "fd00:198:18:60::1";
const PEER6: &str = "fd00:198:18:60::2";

struct Lab {
    ka: Netns,
    peer: Netns,
    _bridge: Bridge,
}

fn lab() -> Lab {
    let ka = Netns::new("bk").expect("ka namespace");
    let peer = Netns::new("bp").expect("peer namespace");
    let mut bridge = Bridge::new().expect("bridge");
    bridge.attach(&ka, "eth0", &[&format!("{KA4}/24"), &format!("{KA6}/64")]).expect("ka leg");
    bridge.attach(&peer, "eth0", &[&format!("{PEER4}/24"), &format!("{PEER6}/64")]).expect("peer leg");
    Lab { ka, peer, _bridge: bridge }
}

fn write_conf(text: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(unique_name("kabfd"));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("keepalived.conf");
    std::fs::write(&path, text).expect("conf");
    let p = path.to_str().expect("utf-8").to_owned();
    (dir, p)
}

fn vrrp(ka: &KaDaemon, field: &str) -> Option<serde_json::Value> {
    ka.status_json().ok().map(|s| s["vrrp"][0][field].clone())
}

fn vrrp_state(ka: &KaDaemon) -> String {
    vrrp(ka, "state").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// (name, state, what trackers see) of ka's sessions.
fn sessions(ka: &KaDaemon) -> Vec<(String, String, bool)> {
    let s = ka.status_json().unwrap_or_default();
    s["bfd"]["sessions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| (b["name"].as_str().unwrap_or("").to_owned(), b["state"].as_str().unwrap_or("").to_owned(), b["up"].as_bool().unwrap_or(false)))
                .collect()
        })
        .unwrap_or_default()
}

fn wait_state(ka: &KaDaemon, want: &str, what: &str) -> Duration {
    let start = Instant::now();
    wait_for(what, WAIT, || (vrrp_state(ka) == want).then_some(()));
    start.elapsed()
}

/// BIRD with explicit sessions to ka, timers as ka's (100 ms, multiplier 3).
fn bird_conf() -> String {
    format!(
        "router id {PEER4};\nprotocol device {{ }}\n\
protocol bfd {{\n interface \"eth0\" {{ min rx interval 100 ms; min tx interval 100 ms; idle tx interval 1000 ms; multiplier 3; }};\n\
 neighbor {KA4} local {PEER4};\n neighbor {KA6} local {PEER6};\n}}\n"
    )
}

fn ka_bird_conf() -> String {
    format!(
        "bfd_instance PEER4 {{\n neighbor_ip {PEER4}\n source_ip {KA4}\n min_rx 100\n min_tx 100\n multiplier 3\n}}\n\
bfd_instance PEER6 {{\n neighbor_ip {PEER6}\n source_ip {KA6}\n hoplimit 255\n min_rx 100\n min_tx 100\n multiplier 3\n}}\n\
vrrp_instance VI_BFD {{\n state MASTER\n interface eth0\n virtual_router_id 60\n priority 150\n advert_int 1\n\
 track_bfd {{\n  PEER4\n  PEER6\n }}\n virtual_ipaddress {{\n  198.18.60.100/24\n }}\n}}\n"
    )
}

/// The BIRD lab of the module doc: FAULT → MASTER → FAULT on SIGKILL → MASTER → FAULT on the
/// peer's link down → MASTER.
#[test]
fn track_bfd_with_bird() {
    require_root();
    let lab = lab();
    let (dir, path) = write_conf(&ka_bird_conf());
    let inst = unique_name("bfdb");
    let ka = KaDaemon::start(&lab.ka, &ka_bin(), &inst, &["-f", &path, "--no-xdp"]).expect("ka run");

    // No peer: the sessions are Down, and an unweighted track_bfd holds the instance in FAULT.
    wait_state(&ka, "FAULT", "FAULT while no BFD peer answers");
    let s = sessions(&ka);
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(s.iter().all(|(_, st, up)| st == "Down" && !up), "{s:?}");

    // BIRD answers: both sessions Up on both sides, the instance becomes MASTER.
    let bird = Bird::start(&lab.peer, &bird_conf()).expect("bird");
    wait_for("ka's sessions Up", WAIT, || sessions(&ka).iter().all(|(_, st, up)| st == "Up" && *up).then_some(()));
    wait_state(&ka, "MASTER", "MASTER once BFD is Up");
    let shown = bird.cli("show bfd sessions").expect("birdcl");
    for ip in [KA4, KA6] {
        assert!(shown.lines().any(|l| l.starts_with(ip) && l.contains(" Up ")), "BIRD's session to {ip} is not Up:\n{shown}");
    }
    let text = ka.status_text().expect("status");
    assert!(text.contains("bfd PEER4 (198.18.60.2): Up"), "{text}");

    // A reload that slows the sessions down keeps them (same discriminators, still Up, nothing
    // told to the instance) and negotiates the new interval with BIRD by a Poll Sequence.
    let discrs = |ka: &KaDaemon| ka.status_json().ok().map(|s| s["bfd"]["sessions"].as_array().map(|a| a.iter().map(|b| b["local_discr"].clone()).collect::<Vec<_>>()));
    let before = discrs(&ka);
    std::fs::write(&path, ka_bird_conf().replace("min_tx 100", "min_tx 200")).expect("new conf");
    let out = std::process::Command::new(ka_bin()).args(["--instance", &inst, "reload"]).output().expect("ka reload");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("the 200 ms interval negotiated", WAIT, || {
        let s = ka.status_json().ok()?;
        s["bfd"]["sessions"].as_array()?.iter().all(|b| b["tx_interval_us"] == 200_000 && b["state"] == "Up").then_some(())
    });
    assert_eq!(discrs(&ka), before, "the reload kept the sessions");
    assert_eq!(vrrp_state(&ka), "MASTER");
    assert!(!ka.log_text().contains("BFD session down"), "the reload took a session down:\n{}", ka.log_text());

    // BIRD dies without a word: the detection time expires, the instance goes FAULT.
    drop(bird);
    let took = wait_state(&ka, "FAULT", "FAULT after BIRD is killed");
    eprintln!("FAULT {took:?} after BIRD was killed (detection time {DETECTION:?})");
    assert!(took < NOTICE, "FAULT took {took:?}");
    // The first expiry faulted the instance; the other session follows within its own
    // detection time.
    wait_for("both sessions expired", WAIT, || {
        let st = ka.status_json().ok()?;
        st["bfd"]["sessions"].as_array().is_some_and(|a| a.iter().all(|b| b["state"] == "Down" && b["diag"] == "Control Detection Time Expired")).then_some(())
    });

    // BIRD back: MASTER again. Then BIRD's link goes down while ka's stays up.
    let bird = Bird::start(&lab.peer, &bird_conf()).expect("bird again");
    wait_state(&ka, "MASTER", "MASTER once BIRD is back");
    // Its IPv6 address must survive the link going down (the namespace's own sysctl).
    lab.peer.run(&["sysctl", "-qw", "net.ipv6.conf.eth0.keep_addr_on_down=1"]).expect("keep_addr_on_down");
    lab.peer.run(&["ip", "link", "set", "eth0", "down"]).expect("peer link down");
    let took = wait_state(&ka, "FAULT", "FAULT after the peer's link went down");
    eprintln!("FAULT {took:?} after the peer's link went down");
    assert!(took < NOTICE, "FAULT took {took:?}");
    let trackers = vrrp(&ka, "trackers").unwrap_or_default();
    let iface = trackers.as_array().and_then(|a| a.iter().find(|t| t["name"] == "interface:eth0")).cloned().unwrap_or_default();
    assert_eq!(iface["status"], "up", "ka's own link is up: BFD alone faulted the instance: {trackers}");
    lab.peer.run(&["ip", "link", "set", "eth0", "up"]).expect("peer link up");
    wait_state(&ka, "MASTER", "MASTER once the peer's link is back");
    drop(bird);
    ka.stop().expect("ka stop");
    let _ = std::fs::remove_dir_all(dir);
}

/// The keepalived lab of the module doc.
#[test]
fn track_bfd_weight_and_bfd_check_with_keepalived() {
    require_root();
    let lab = lab();
    let (dir, path) = write_conf(&format!(
        "bfd_instance KAD {{\n neighbor_ip {PEER4}\n source_ip {KA4}\n min_rx 100\n min_tx 100\n multiplier 3\n}}\n\
vrrp_instance VI_W {{\n state MASTER\n interface eth0\n virtual_router_id 61\n priority 150\n advert_int 1\n\
 track_bfd {{\n  KAD weight -50\n }}\n virtual_ipaddress {{\n  198.18.60.101/24\n }}\n}}\n\
virtual_server 198.18.60.101 80 {{\n protocol TCP\n delay_loop 60\n real_server {PEER4} 80 {{\n  BFD_CHECK {{\n   name KAD\n  }}\n }}\n}}\n"
    ));
    let inst = unique_name("bfdk");
    let ka = KaDaemon::start(&lab.ka, &ka_bin(), &inst, &["-f", &path, "--no-xdp"]).expect("ka run");
    let rs_state = |ka: &KaDaemon| ka.status_json().ok().and_then(|s| s["health"]["real_servers"][0]["state"].as_str().map(str::to_owned)).unwrap_or_default();
    let prio = |ka: &KaDaemon| vrrp(ka, "effective_priority").and_then(|v| v.as_u64()).unwrap_or(0);

    // Session down: the weight is subtracted (no FAULT) and the real server is out.
    wait_state(&ka, "MASTER", "MASTER: a weighted track_bfd does not fault");
    wait_for("priority 150 - 50", WAIT, || (prio(&ka) == 100).then_some(()));
    wait_for("real server down", WAIT, || (rs_state(&ka) == "down").then_some(()));

    let kad = Keepalived::start_all(
        &lab.peer,
        "bfd",
        &format!("bfd_instance KA {{\n neighbor_ip {KA4}\n source_ip {PEER4}\n min_rx 100\n min_tx 100\n multiplier 3\n}}\n"),
    )
    .expect("keepalived");
    wait_for("ka's session Up with keepalived", WAIT, || sessions(&ka).iter().all(|(_, st, up)| st == "Up" && *up).then_some(()));
    wait_for("priority back to 150", WAIT, || (prio(&ka) == 150).then_some(()));
    wait_for("real server up", WAIT, || (rs_state(&ka) == "up").then_some(()));
    wait_for("keepalived's session Up", WAIT, || kad.log_text().contains("(KA) Entering Up state").then_some(()));

    kad.kill();
    let start = Instant::now();
    wait_for("real server down after keepalived died", WAIT, || (rs_state(&ka) == "down").then_some(()));
    let took = start.elapsed();
    wait_for("priority 100 again", WAIT, || (prio(&ka) == 100).then_some(()));
    eprintln!("real server out {took:?} after keepalived was killed (detection time {DETECTION:?})");
    assert!(took < NOTICE, "the real server left after {took:?}");
    assert_eq!(vrrp_state(&ka), "MASTER");
    ka.stop().expect("ka stop");
    let _ = std::fs::remove_dir_all(dir);
}
