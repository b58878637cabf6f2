//! `static_ipaddress`, `static_routes` and `static_rules` as keepalived 2.2.7 applies them: a
//! leftover of an earlier run is taken over, every entry is installed at start (whatever the
//! VRRP state: here there is no instance at all), a reload removes the dropped entries and adds
//! the new ones while the kept ones stay, and the stop removes them all.

use std::time::Duration;

use ka_tests::{daemon::KaDaemon, ka_bin, netns::Netns, require_root, unique_name, wait_for};

const WAIT: Duration = Duration::from_secs(10);

fn conf(addr2: &str, route: &str) -> String {
    format!(
        "static_ipaddress {{\n 198.18.60.1/24 dev d0\n {addr2}/24 dev d0\n}}\n\
         static_routes {{\n {route} via 198.18.60.254 dev d0 table 100\n}}\n\
         static_rules {{\n from 198.18.60.1 table 100 priority 100\n}}\n"
    )
}

/// The namespace's `ip addr` (of d0), `ip route show table 100` and `ip rule` output.
fn show(ns: &Netns) -> (String, String, String) {
    (
        ns.run(&["ip", "-4", "addr", "show", "dev", "d0"]).expect("ip addr"),
        // A table without routes does not exist: `ip` fails, and the table is empty.
        ns.run(&["ip", "route", "show", "table", "100"]).unwrap_or_default(),
        ns.run(&["ip", "rule"]).expect("ip rule"),
    )
}

#[test]
fn static_entries_installed_diffed_on_reload_and_removed_at_stop() {
    require_root();
    let ns = Netns::new("sta").expect("netns");
    // A veth pair inside the namespace (the dummy driver may be missing).
    ns.run(&["ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1"]).expect("veth");
    ns.run(&["ip", "link", "set", "d0", "up"]).expect("up");
    ns.run(&["ip", "link", "set", "d1", "up"]).expect("up");
    // A leftover of an earlier run: keepalived deletes it first, then adds (and owns) it.
    ns.run(&["ip", "addr", "add", "198.18.60.1/24", "dev", "d0"]).expect("leftover");
    let path = std::env::temp_dir().join(format!("{}.conf", unique_name("ksta")));
    std::fs::write(&path, conf("198.18.60.2", "198.18.61.0/24")).expect("write conf");
    let inst = unique_name("sta");
    let ka = KaDaemon::start(&ns, &ka_bin(), &inst, &["-f", path.to_str().expect("utf-8"), "--no-xdp"]).expect("ka run");

    wait_for("the static entries", WAIT, || {
        let (a, r, u) = show(&ns);
        (a.contains("198.18.60.1/24") && a.contains("198.18.60.2/24") && r.contains("198.18.61.0/24 via 198.18.60.254 dev d0") && u.contains("100:\tfrom 198.18.60.1 lookup 100")).then_some(())
    });
    let log = ka.log_text();
    assert!(!log.contains("not supported yet"), "{log}");

    // One address and the route change; the rule and the first address are kept.
    std::fs::write(&path, conf("198.18.60.3", "198.18.62.0/24")).expect("new conf");
    let out = std::process::Command::new(ka_bin()).args(["--instance", &inst, "reload"]).output().expect("ka reload");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("the reload's diff", WAIT, || {
        let (a, r, _) = show(&ns);
        (a.contains("198.18.60.3/24") && !a.contains("198.18.60.2/") && r.contains("198.18.62.0/24") && !r.contains("198.18.61.0/24")).then_some(())
    });
    let (a, _, u) = show(&ns);
    assert!(a.contains("198.18.60.1/24"), "a kept address stays:\n{a}");
    assert_eq!(u.matches("from 198.18.60.1 lookup 100").count(), 1, "a kept rule stays, once:\n{u}");

    // keepalived removes the static rules, routes and addresses at shutdown.
    ka.stop().expect("stop");
    let (a, r, u) = show(&ns);
    assert!(!a.contains("198.18.60."), "addresses left after stop:\n{a}");
    assert!(r.trim().is_empty(), "routes left in table 100 after stop:\n{r}");
    assert!(!u.contains("lookup 100"), "rule left after stop:\n{u}");
    let _ = std::fs::remove_file(&path);
}
