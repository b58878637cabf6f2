//! BFD over IPv6 link-local addresses (RFC 5881 §4 allows them for single-hop sessions): ka's
//! `bfd_instance` with a link-local `neighbor_ip` and `source_ip` runs its session through the
//! source's interface, against BIRD 2's `protocol bfd` (`neighbor fe80::… dev "eth0"`), in
//! namespaces joined by a bridge.

use std::time::Duration;

use ka_tests::{
    bird::Bird,
    daemon::KaDaemon,
    ka_bin,
    netns::{Bridge, Netns},
    require_root, unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);

/// The link-local address of `ns`'s eth0 once DAD is done.
fn link_local(ns: &Netns) -> String {
    wait_for("a link-local address past DAD", WAIT, || {
        let out = ns.run(&["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]).ok()?;
        let line = out.lines().find(|l| l.contains("inet6 fe80:") && !l.contains("tentative"))?;
        line.split("inet6 ").nth(1)?.split('/').next().map(str::to_owned)
    })
}

/// (state, up) of ka's first session.
fn session(ka: &KaDaemon) -> (String, bool) {
    let s = ka.status_json().unwrap_or_default();
    let b = &s["bfd"]["sessions"][0];
    (b["state"].as_str().unwrap_or("").to_owned(), b["up"].as_bool().unwrap_or(false))
}

/// ka and BIRD bring a link-local session Up on both sides (ka's socket bound with eth0's
/// scope: without it the kernel refuses to send to fe80::), and ka sees it go down when BIRD
/// is killed.
#[test]
fn link_local_session_with_bird() {
    require_root();
    let ka_ns = Netns::new("bl").expect("ka namespace");
    let peer = Netns::new("bq").expect("peer namespace");
    let mut bridge = Bridge::new().expect("bridge");
    bridge.attach(&ka_ns, "eth0", &["198.18.61.1/24"]).expect("ka leg");
    bridge.attach(&peer, "eth0", &["198.18.61.2/24"]).expect("peer leg");
    let (ka_ll, peer_ll) = (link_local(&ka_ns), link_local(&peer));
    let dir = std::env::temp_dir().join(unique_name("kabfl"));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("keepalived.conf");
    std::fs::write(
        &path,
        format!("bfd_instance LL {{\n neighbor_ip {peer_ll}\n source_ip {ka_ll}\n hoplimit 255\n min_rx 100\n min_tx 100\n multiplier 3\n}}\n"),
    )
    .expect("conf");
    let ka = KaDaemon::start(&ka_ns, &ka_bin(), &unique_name("bfl"), &["-f", path.to_str().expect("utf-8"), "--no-xdp"]).expect("ka run");
    let bird_conf = format!(
        "router id 198.18.61.2;\nprotocol device {{ }}\n\
protocol bfd {{\n interface \"eth0\" {{ min rx interval 100 ms; min tx interval 100 ms; idle tx interval 1000 ms; multiplier 3; }};\n\
 neighbor {ka_ll} dev \"eth0\" local {peer_ll};\n}}\n"
    );
    let bird = Bird::start(&peer, &bird_conf).expect("bird");
    wait_for("ka's link-local session Up", WAIT, || (session(&ka) == ("Up".to_owned(), true)).then_some(()));
    let shown = bird.cli("show bfd sessions").expect("birdcl");
    assert!(shown.lines().any(|l| l.starts_with(&ka_ll) && l.contains(" Up ")), "BIRD's session to {ka_ll} is not Up:\n{shown}");
    drop(bird);
    wait_for("the session down after BIRD is killed", WAIT, || (session(&ka).0 == "Down").then_some(()));
    ka.stop().expect("ka stop");
    let _ = std::fs::remove_dir_all(dir);
}
