//! Table-driven tests of the reload plan, one per keepalived reload rule and per keepalived
//! reload bug the plan must make impossible.

use std::{collections::HashSet, fmt::Write as _, net::IpAddr};

use super::*;
use crate::config::{parse_str, LoadOptions};

fn cfg(text: &str) -> Config {
    let l = parse_str(text, std::path::Path::new("t.conf"), &LoadOptions::default());
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    l.config
}

/// `vrrp_instance NAME` on eth0 with `vrid`, `advert_int`, priority and VIPs.
fn inst(name: &str, iface: &str, vrid: u8, advert: &str, prio: u8, vips: &[&str]) -> String {
    let mut s = format!("vrrp_instance {name} {{\n interface {iface}\n virtual_router_id {vrid}\n priority {prio}\n advert_int {advert}\n virtual_ipaddress {{\n");
    for v in vips {
        let _ = writeln!(s, "  {v}");
    }
    s.push_str(" }\n}\n");
    s
}

/// A TCP virtual server with `(addr, weight)` real servers, each with a TCP_CHECK.
fn vs(vip: &str, algo: &str, persistence: Option<u32>, rs: &[(&str, i32)]) -> String {
    let mut s = format!("virtual_server {vip} 80 {{\n lb_algo {algo}\n lb_kind DR\n protocol TCP\n");
    if let Some(p) = persistence {
        let _ = writeln!(s, " persistence_timeout {p}");
    }
    for (a, w) in rs {
        let _ = writeln!(s, " real_server {a} 80 {{\n  weight {w}\n  TCP_CHECK {{\n   connect_timeout 2\n  }}\n }}");
    }
    s.push_str("}\n");
    s
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn kept_names(p: &ReloadPlan) -> Vec<(String, String)> {
    p.instances.kept.iter().map(|k| (k.old_name.clone(), k.name.clone())).collect()
}

fn vips(v: &[VipSetup]) -> Vec<IpAddr> {
    v.iter().map(|v| v.addr).collect()
}

struct Case {
    name: &'static str,
    old: String,
    new: String,
    check: fn(&ReloadPlan),
}

fn cases() -> Vec<Case> {
    let a = inst("VI_1", "eth0", 1, "1", 100, &["198.18.0.10", "198.18.0.11"]);
    let b = inst("VI_2", "eth0", 2, "1", 100, &["198.18.0.20"]);
    vec![
        Case {
            name: "the same file, moved lines and comments: nothing changes (#208, #349: a second quick HUP is a no-op)",
            old: format!("{a}{b}{}", vs("198.18.0.10", "rr", None, &[("198.18.1.1", 1)])),
            new: format!("# reloaded\n\n{b}\n{a}\n{}", vs("198.18.0.10", "rr", None, &[("198.18.1.1", 1)])),
            check: |p| {
                assert!(p.is_empty(), "{p:#?}");
                assert_eq!(p.summary().changes, Vec::<String>::new());
            },
        },
        Case {
            name: "a VIP added and one removed: the instance is kept and its addresses are diffed",
            old: a.clone(),
            new: inst("VI_1", "eth0", 1, "1", 100, &["198.18.0.10", "198.18.0.12"]),
            check: |p| {
                let k = &p.instances.kept[0];
                assert_eq!((vips(&k.vips_added), vips(&k.vips_removed)), (vec![ip("198.18.0.12")], vec![ip("198.18.0.11")]));
                assert!(!k.settings_changed && p.instances.added.is_empty() && p.instances.removed.is_empty());
            },
        },
        Case {
            name: "matched by VRID + family + interface, not by name: a rename keeps the state",
            old: a.clone(),
            new: inst("WEB", "eth0", 1, "1", 100, &["198.18.0.10", "198.18.0.11"]),
            check: |p| {
                assert_eq!(kept_names(p), vec![("VI_1".to_owned(), "WEB".to_owned())]);
                assert!(p.summary().changes[0].contains("renamed from VI_1"));
            },
        },
        Case {
            name: "a new instance starts fresh, a deleted one is removed",
            old: format!("{a}{b}"),
            new: format!("{a}{}", inst("VI_3", "eth0", 3, "1", 100, &["198.18.0.30"])),
            check: |p| {
                assert_eq!(p.instances.added, vec![(1, "VI_3".to_owned())]);
                assert_eq!(p.instances.removed, vec![(1, "VI_2".to_owned())]);
                assert_eq!(kept_names(p), vec![("VI_1".to_owned(), "VI_1".to_owned())]);
            },
        },
        Case {
            name: "another interface, family or unicast/multicast is another instance",
            old: format!("{a}{}", inst("V6", "eth0", 2, "1", 100, &["fd00:198:18::10"])),
            new: format!("{}{}", inst("VI_1", "eth1", 1, "1", 100, &["198.18.0.10"]), inst("V6", "eth0", 2, "1", 100, &["198.18.0.20"])),
            check: |p| {
                assert!(p.instances.kept.is_empty(), "{p:#?}");
                assert_eq!(p.instances.removed.len(), 2);
                assert_eq!(p.instances.added.len(), 2);
            },
        },
        Case {
            name: "#754, #1425: a priority and advert_int change with a small advert_int keeps the instance (no restart, no switchover)",
            old: inst("VI_1", "eth0", 1, "0.05", 100, &["198.18.0.10"]),
            new: inst("VI_1", "eth0", 1, "0.02", 90, &["198.18.0.10"]),
            check: |p| {
                assert_eq!(p.instances.kept.len(), 1);
                assert!(p.instances.kept[0].settings_changed);
                assert!(p.instances.added.is_empty() && p.instances.removed.is_empty());
            },
        },
        Case {
            name: "#1854: a VIP moving between instances is removed from one and added to the other",
            old: format!("{a}{b}"),
            new: format!("{}{}", inst("VI_1", "eth0", 1, "1", 100, &["198.18.0.10"]), inst("VI_2", "eth0", 2, "1", 100, &["198.18.0.20", "198.18.0.11"])),
            check: |p| {
                let k = &p.instances.kept;
                assert_eq!(vips(&k[0].vips_removed), vec![ip("198.18.0.11")]);
                assert_eq!(vips(&k[1].vips_added), vec![ip("198.18.0.11")]);
            },
        },
        Case {
            name: "#2364: VRIDs swapped between two names: each VRID keeps its state and takes the other's addresses",
            old: format!("{a}{b}"),
            new: format!("{}{}", inst("VI_1", "eth0", 2, "1", 100, &["198.18.0.10", "198.18.0.11"]), inst("VI_2", "eth0", 1, "1", 100, &["198.18.0.20"])),
            check: |p| {
                let mut names = kept_names(p);
                names.sort();
                assert_eq!(names, vec![("VI_1".to_owned(), "VI_2".to_owned()), ("VI_2".to_owned(), "VI_1".to_owned())]);
                assert!(p.instances.added.is_empty() && p.instances.removed.is_empty());
            },
        },
        Case {
            name: "real servers added, removed, reweighted (#1354); unchanged ones keep their checker state (#1163)",
            old: vs("198.18.0.10", "rr", None, &[("198.18.1.1", 1), ("198.18.1.2", 1), ("198.18.1.3", 1)]),
            new: vs("198.18.0.10", "rr", None, &[("198.18.1.4", 1), ("198.18.1.3", 1), ("198.18.1.1", 5)]),
            check: |p| {
                let ServiceChange::Kept { real_servers, changed, .. } = &p.services[0] else { panic!("{p:#?}") };
                assert!(changed.is_empty());
                assert!(real_servers.contains(&RealServerChange::Added { new: 0, who: "198.18.1.4:80".into() }));
                assert!(real_servers.contains(&RealServerChange::Removed { old: 1, who: "198.18.1.2:80".into() }));
                assert!(real_servers.iter().any(|r| matches!(r, RealServerChange::Kept { old: 0, new: 2, weight: Some((1, 5)), checkers_changed: false, .. })));
                let carried = carried_checkers(&p.services);
                assert_eq!(carried.get(&(0, 2)), Some(&(0, 0)), "a reweighted server keeps its checker state");
                assert_eq!(carried.get(&(0, 1)), Some(&(0, 2)), "an unchanged server keeps its checker state");
                assert_eq!(carried.get(&(0, 0)), None, "a new server starts as alpha says");
                assert!(p.summary().changes[0].contains("weight 1 -> 5"), "{:?}", p.summary());
            },
        },
        Case {
            name: "a changed checker restarts per alpha; scheduler and persistence change in place",
            old: vs("198.18.0.10", "rr", None, &[("198.18.1.1", 1)]),
            new: vs("198.18.0.10", "mh", Some(60), &[("198.18.1.1", 1)]).replace("connect_timeout 2", "connect_timeout 3"),
            check: |p| {
                let ServiceChange::Kept { real_servers, changed, .. } = &p.services[0] else { panic!("{p:#?}") };
                assert_eq!(changed, &vec!["lb_algo", "persistence"]);
                assert!(matches!(real_servers[0], RealServerChange::Kept { checkers_changed: true, .. }));
                assert!(carried_checkers(&p.services).is_empty());
            },
        },
        Case {
            name: "virtual servers added and removed",
            old: format!("{}{}", vs("198.18.0.10", "rr", None, &[("198.18.1.1", 1)]), vs("198.18.0.11", "rr", None, &[("198.18.1.1", 1)])),
            new: format!("{}{}", vs("198.18.0.12", "rr", None, &[("198.18.1.1", 1)]), vs("198.18.0.10", "rr", None, &[("198.18.1.1", 1)])),
            check: |p| {
                assert!(p.services.contains(&ServiceChange::Added { new: 0, name: "198.18.0.12:80 TCP".into() }));
                assert!(p.services.contains(&ServiceChange::Removed { old: 1, name: "198.18.0.11:80 TCP".into() }));
                assert!(p.services.iter().any(|s| matches!(s, ServiceChange::Kept { old: 0, new: 1, .. }) && s.unchanged()));
            },
        },
    ]
}

/// Every reload rule, one case each.
#[test]
fn reload_plans() {
    for c in cases() {
        let p = plan(&cfg(&c.old), &cfg(&c.new)).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        eprintln!("case: {}", c.name);
        (c.check)(&p);
    }
}

/// Planning the same change twice: the second plan (old = the first's result) is empty, so a
/// second HUP right after the first changes nothing (#208, #349).
#[test]
fn a_second_reload_of_the_same_file_is_empty() {
    for c in cases() {
        let new = cfg(&c.new);
        assert!(plan(&new, &cfg(&c.new)).expect("plan").is_empty(), "{}", c.name);
    }
}

/// The VRRP engine's request for a plan (see `crate::engine::reload`).
fn request(old: &Config, new: &Config) -> (ReloadPlan, crate::engine::reload::ReloadRequest) {
    let (old_setups, new_setups) = (setup::instances(old).expect("setups"), setup::instances(new).expect("setups"));
    let p = plan(old, new).expect("plan");
    let req = crate::engine::reload::ReloadRequest::new(&old_setups, new_setups, p.instances.clone(), setup::globals(new).expect("globals"));
    (p, req)
}

/// #1854, #2364: a VIP another MASTER instance holds after the reload is not deleted, whichever
/// instance held it before.
#[test]
fn vips_kept_by_another_master_are_not_deleted() {
    let old = cfg(&format!("{}{}", inst("VI_1", "eth0", 1, "1", 100, &["198.18.0.10"]), inst("VI_2", "eth0", 2, "1", 100, &["198.18.0.20"])));
    let new = cfg(&format!("{}{}", inst("VI_1", "eth0", 2, "1", 100, &["198.18.0.10"]), inst("VI_2", "eth0", 1, "1", 100, &["198.18.0.20"])));
    let (p, req) = request(&old, &new);
    // Both were MASTER and stay so (state is kept): nothing is deleted.
    for k in &p.instances.kept {
        assert!(k.vips_removed.iter().all(|v| req.held(v.addr, |_| true)), "{k:?}");
    }
    // Only the old VRID 2 was MASTER: its new VIP (198.18.0.10) stays held, 198.18.0.20 goes.
    let held: HashSet<IpAddr> = [ip("198.18.0.10"), ip("198.18.0.20")].into_iter().filter(|a| req.held(*a, |old| old == 1)).collect();
    assert_eq!(held, HashSet::from([ip("198.18.0.10")]));
    // A VIP moving from a removed instance to a kept MASTER stays; nobody holds a removed
    // instance's own VIP.
    let old = cfg(&format!("{}{}", inst("VI_1", "eth0", 1, "1", 100, &["198.18.0.10"]), inst("VI_2", "eth0", 2, "1", 100, &["198.18.0.20", "198.18.0.21"])));
    let new = cfg(&inst("VI_1", "eth0", 1, "1", 100, &["198.18.0.10", "198.18.0.21"]));
    let (_, req) = request(&old, &new);
    assert!(req.held(ip("198.18.0.21"), |old| old == 0));
    assert!(!req.held(ip("198.18.0.21"), |_| false), "held only while its new holder is MASTER");
    assert!(!req.held(ip("198.18.0.20"), |_| true));
}

/// The engine gets only what changed: unchanged instances by their running index, changed
/// ones with their new setup, new ones fresh, removed ones by index; holders are listed only
/// for addresses the reload may delete.
#[test]
fn the_engine_request_carries_only_changes() {
    use crate::engine::reload::NewInstance;
    let a = inst("VI_1", "eth0", 1, "1", 100, &["198.18.0.10"]);
    let b = inst("VI_2", "eth0", 2, "1", 100, &["198.18.0.20"]);
    let c = inst("VI_3", "eth0", 3, "1", 100, &["198.18.0.30"]);
    let d = inst("VI_4", "eth0", 4, "1", 100, &["198.18.0.40"]);
    let b2 = inst("VI_2", "eth0", 2, "1", 120, &["198.18.0.20"]);
    // VI_1 unchanged, VI_2 reprioritised, VI_3 removed, VI_4 new (first), the order changes.
    let (_, req) = request(&cfg(&format!("{a}{b}{c}")), &cfg(&format!("{d}{b2}{a}")));
    let shape: Vec<String> = req
        .instances
        .iter()
        .map(|n| match n {
            NewInstance::Unchanged { old } => format!("unchanged {old}"),
            NewInstance::Changed { kept, setup } => format!("changed {} {} prio {}", kept.old, setup.name, setup.params.priority),
            NewInstance::Fresh(s) => format!("fresh {}", s.name),
        })
        .collect();
    assert_eq!(shape, ["fresh VI_4", "changed 1 VI_2 prio 120", "unchanged 0"]);
    assert_eq!(req.removed, vec![(2, "VI_3".to_owned())]);
    // Deletable: VI_3's VIP (nobody keeps it) and VI_2's (VI_2 keeps it); not VI_1's.
    assert_eq!(req.holders.keys().copied().collect::<HashSet<_>>(), HashSet::from([ip("198.18.0.20")]));
    assert_eq!(req.holders[&ip("198.18.0.20")], vec![1]);
    // Nothing changed: every instance unchanged, nobody to ask about.
    let (_, req) = request(&cfg(&format!("{a}{b}")), &cfg(&format!("{a}{b}")));
    assert!(req.instances.iter().all(|n| matches!(n, NewInstance::Unchanged { .. })) && req.removed.is_empty() && req.holders.is_empty());
}

/// #2318: 2,284 virtual servers with 37,298 real servers are diffed in a bounded time (a sanity
/// bound for a debug build; `cargo xtask bench --only reload` measures it).
#[test]
fn a_large_diff_is_bounded() {
    let mut old = String::new();
    let mut new = String::new();
    for v in 0..2_284usize {
        // 37,298 = 16 × 2,284 + 754.
        let n = if v < 754 { 17 } else { 16 };
        let rs: Vec<(String, i32)> = (0..n).map(|r| (format!("198.19.{}.{}", r / 250, r % 250 + 1), 1)).collect();
        let rs_ref: Vec<(&str, i32)> = rs.iter().map(|(a, w)| (a.as_str(), *w)).collect();
        let vip = format!("198.18.{}.{}", v / 250, v % 250 + 1);
        old.push_str(&vs(&vip, "rr", None, &rs_ref));
        let mut changed = rs_ref.clone();
        if v % 10 == 0 {
            changed[0].1 = 2;
        }
        new.push_str(&vs(&vip, "rr", None, &changed));
    }
    let (old, new) = (cfg(&old), cfg(&new));
    assert_eq!(new.virtual_servers.iter().map(|v| v.real_servers.len()).sum::<usize>(), 37_298);
    let t = std::time::Instant::now();
    let p = plan(&old, &new).expect("plan");
    let took = t.elapsed();
    assert_eq!(p.services.iter().filter(|s| !s.unchanged()).count(), 229);
    assert!(took < std::time::Duration::from_secs(30), "diff took {took:?}");
}

/// A temporary directory removed when dropped.
struct Tmp(std::path::PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("ka-reload-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("dir");
        Tmp(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `reload_check_config FILE` (of the running configuration): a new configuration with a
/// problem `keepalived -t` reports (a warning: an unknown keyword) is refused, its report in
/// FILE; without the keyword the same file reloads; a clean file reloads with it and leaves an
/// empty report.
#[test]
fn reload_check_config_refuses_what_keepalived_t_flags() {
    let t = Tmp::new("check");
    let log = t.0.join("check.log");
    let running = cfg(&format!("global_defs {{\n reload_check_config {}\n}}\n", log.display()));
    let warned = t.0.join("warned.conf");
    std::fs::write(&warned, "global_defs {\n router_id a\n bogus_keyword\n}\n").expect("write");
    let err = apply::prepare(&warned, None, &running).expect_err("refused");
    assert!(err.contains("bogus_keyword") && err.contains("failed validation"), "{err}");
    assert!(std::fs::read_to_string(&log).expect("report").contains("bogus_keyword"));
    assert!(apply::prepare(&warned, None, &Config::default()).is_ok(), "without reload_check_config a warning does not refuse");
    let clean = t.0.join("clean.conf");
    std::fs::write(&clean, "global_defs {\n router_id a\n}\n").expect("write");
    assert!(apply::prepare(&clean, None, &running).is_ok());
    assert_eq!(std::fs::read_to_string(&log).expect("report"), "", "the report is truncated");
}

/// `reload_file`: keepalived's default names, and the file is gone once the reload has read
/// the configuration (created or truncated before, removed after).
#[test]
fn reload_file_is_removed_once_read() {
    let cases = [
        (Some("/x/r"), None, false, "/x/r"),
        (None, Some("red"), false, "/run/keepalived/keepalived_red.reload"),
        (None, None, true, "/run/keepalived/keepalived.reload"),
        (None, None, false, "/run/keepalived.reload"),
    ];
    for (file, inst, pid_dir, want) in cases {
        assert_eq!(apply::reload_file_path(file, inst, pid_dir), std::path::PathBuf::from(want));
    }
    let t = Tmp::new("file");
    let marker = t.0.join("reload");
    std::fs::write(&marker, "waiting").expect("write");
    let running = cfg(&format!("global_defs {{\n reload_file {}\n}}\n", marker.display()));
    let new = t.0.join("new.conf");
    std::fs::write(&new, "global_defs {\n router_id b\n}\n").expect("write");
    apply::prepare(&new, None, &running).expect("reload");
    assert!(!marker.exists(), "the reload file is removed when the configuration is read");
}

/// `config_save_dir`: each read saves the configuration as read (includes expanded) as
/// `keepalived.conf.PID.N`, in a directory made if missing.
#[test]
fn config_save_dir_keeps_each_read() {
    let t = Tmp::new("save");
    let dir = t.0.join("saved");
    let inc = t.0.join("inc.conf");
    std::fs::write(&inc, "vrrp_script chk {\n script \"/bin/true x\"\n}\n").expect("write");
    let main = t.0.join("main.conf");
    std::fs::write(&main, format!("global_defs {{\n config_save_dir {}/\n}}\ninclude {}\n", dir.display(), inc.display())).expect("write");
    apply::prepare(&main, None, &Config::default()).expect("reload");
    apply::prepare(&main, None, &Config::default()).expect("reload");
    let mut saved: Vec<String> = std::fs::read_dir(&dir).expect("dir made").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    saved.sort();
    let pid = std::process::id();
    assert_eq!(saved.len(), 2, "{saved:?}");
    assert!(saved.iter().all(|n| n.starts_with(&format!("keepalived.conf.{pid}."))), "{saved:?}");
    let text = std::fs::read_to_string(dir.join(&saved[0])).expect("copy");
    assert_eq!(text, format!("global_defs {{\nconfig_save_dir {}/\n}}\nvrrp_script chk {{\nscript \"/bin/true x\"\n}}\n", dir.display()));
}
