//! Golden tests of keepalived's dump formats.
//!
//! Two kinds: against keepalived itself (`golden/keepalived-2.2.7.*` were written by Debian's
//! keepalived 2.2.7 running `golden/keepalived-2.2.7.conf` in a namespace: fed the state
//! keepalived had, ka must write the same bytes), and ka's own renderings of a richer
//! configuration (`golden/ka.*`; `KA_UPDATE_GOLDEN=1` rewrites them after a deliberate change).

use std::{collections::BTreeMap, path::Path};

use super::*;
use crate::{
    engine::{InstanceReport, TrackerReport},
    health::{report::CheckerReport, HealthReport, RealServerReport},
    status::{ReloadStats, StatusReport},
};

fn config(text: &str) -> Config {
    let loaded = crate::config::parse_str(text, Path::new("/etc/keepalived/keepalived.conf"), &Default::default());
    let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.severity == crate::config::Severity::Error).collect();
    assert!(errors.is_empty(), "{errors:?}");
    loaded.config
}

fn instance(name: &str, vrid: u8, state: &str) -> InstanceReport {
    InstanceReport {
        name: name.into(),
        interface: "d0".into(),
        vrid,
        version: 2,
        state: state.into(),
        priority: 100,
        effective_priority: 100,
        master: None,
        in_state_s: 3,
        adverts_rx: 0,
        adverts_tx: 0,
        adverts_dropped: BTreeMap::new(),
        became_master: 0,
        released_master: 0,
        priority_zero_rx: 0,
        priority_zero_tx: 0,
        last_transition_unix_us: 0,
        xdp_fast_path: false,
        xdp_changes: 0,
        xdp_deferrals: 0,
        answers_withheld: 0,
        trackers: vec![],
        vips: vec![],
    }
}

fn status(vrrp: Vec<InstanceReport>, health: Option<HealthReport>) -> StatusReport {
    StatusReport {
        format_version: crate::status::STATUS_FORMAT_VERSION,
        instance: "default".into(),
        version: "0.1.0".into(),
        pid: 1,
        uptime_s: 10,
        xdp: vec![],
        counters: BTreeMap::new(),
        vrrp,
        vrrp_dropped: BTreeMap::new(),
        health,
        services: vec![],
        refused: vec![],
        host: vec![],
        runtime_overrides: vec![],
        reloads: ReloadStats::default(),
        sync: None,
        announce: None,
        bfd: None,
    }
}

/// The state keepalived 2.2.7 had when it wrote `golden/keepalived-2.2.7.json`: VI_1 MASTER
/// since 1796468828.866825, its script up (priority 100 + 10), 4 adverts sent.
fn reference_state(adverts_tx: u64) -> StatusReport {
    let mut i = instance("VI_1", 51, "MASTER");
    i.effective_priority = 110;
    i.adverts_tx = adverts_tx;
    i.became_master = 1;
    i.last_transition_unix_us = 1_796_468_828_866_825;
    i.trackers = vec![TrackerReport { name: "script:chk_ok".into(), status: "up".into(), weight: 10 }];
    status(vec![i], None)
}

fn input<'a>(s: &'a StatusReport, c: &'a Config, b: &'a Baseline) -> DumpInput<'a> {
    DumpInput { status: s, config: c, baseline: b, hostname: "lb1", utc_offset_s: 0 }
}

/// Fed keepalived's own state, ka writes keepalived's `keepalived.json` byte for byte.
#[test]
fn json_is_keepalived_s_bytes() {
    let c = config(include_str!("golden/keepalived-2.2.7.conf"));
    let s = reference_state(4);
    let b = Baseline::new();
    assert_eq!(json(&input(&s, &c, &b)), include_str!("golden/keepalived-2.2.7.json"));
}

/// Fed keepalived's own state, ka writes keepalived's `keepalived.stats` byte for byte.
#[test]
fn stats_are_keepalived_s_bytes() {
    let c = config(include_str!("golden/keepalived-2.2.7.conf"));
    let s = reference_state(3);
    let b = Baseline::new();
    assert_eq!(stats(&input(&s, &c, &b)), include_str!("golden/keepalived-2.2.7.stats"));
}

const RICH: &str = r#"
global_defs {
    router_id lb1
    enable_script_security
    vrrp_garp_master_refresh 60
}
vrrp_script chk_web {
    script "/usr/local/bin/check web"
    interval 2
    timeout 1
    weight -20
    fall 2
    rise 3
}
vrrp_sync_group SG {
    group {
        VI_1
        VI_6
    }
}
vrrp_instance VI_1 {
    state MASTER
    interface d0
    virtual_router_id 51
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass secret12345
    }
    virtual_ipaddress {
        198.18.0.10/24 brd 198.18.0.255
        198.18.0.11 label d0:vip
    }
    virtual_ipaddress_excluded {
        198.18.0.12
    }
    track_interface {
        d1 weight -10
    }
    track_script {
        chk_web weight 0
    }
    notify_master "/usr/local/bin/notify master"
}
vrrp_instance VI_6 {
    interface d0
    virtual_router_id 52
    priority 100
    advert_int 0.5
    nopreempt
    unicast_src_ip fd00:198:18::1
    unicast_peer {
        fd00:198:18::2
    }
    virtual_ipaddress {
        fd00:198:18::10/64
    }
}
virtual_server 198.18.0.10 80 {
    delay_loop 3
    lb_algo wrr
    lb_kind DR
    protocol TCP
    quorum 2
    real_server 198.18.1.1 80 {
        weight 3
        TCP_CHECK {
            connect_timeout 2
        }
    }
    real_server 198.18.1.2 80 {
        weight 1
        HTTP_GET {
            url {
                path /health
                status_code 200
            }
        }
    }
}
"#;

fn rich_state() -> StatusReport {
    let mut v1 = instance("VI_1", 51, "MASTER");
    v1.priority = 150;
    v1.effective_priority = 150;
    v1.adverts_rx = 12;
    v1.adverts_tx = 3400;
    v1.became_master = 2;
    v1.released_master = 1;
    v1.priority_zero_rx = 1;
    v1.last_transition_unix_us = 1_796_468_828_000_001;
    v1.adverts_dropped = BTreeMap::from([("bad_ttl".to_owned(), 2), ("too_short".to_owned(), 1), ("bad_length".to_owned(), 1), ("auth_failure".to_owned(), 5)]);
    v1.trackers = vec![
        TrackerReport { name: "interface:d1".into(), status: "up".into(), weight: -10 },
        TrackerReport { name: "script:chk_web".into(), status: "up".into(), weight: -20 },
    ];
    let mut v6 = instance("VI_6", 52, "BACKUP");
    v6.version = 3;
    v6.master = Some("fd00:198:18::2".parse().expect("ip"));
    v6.adverts_rx = 7000;
    v6.last_transition_unix_us = 1_796_468_829_250_000;
    let rs = |ri: usize, last: u8, weight: u32, state: &str, kind: &str, up: bool| RealServerReport {
        vs_index: 0,
        service: "198.18.0.10:80".into(),
        rs_index: Some(ri),
        addr: std::net::IpAddr::from([198, 18, 1, last]),
        port: 80,
        state: state.into(),
        weight,
        in_table: up,
        configured_weight: weight,
        since_change_s: 5,
        last_check: None,
        checkers: vec![CheckerReport { kind: kind.into(), target: format!("198.18.1.{last}:80"), up, checks: 10, failures: u64::from(!up) * 3, last: None }],
        runtime: None,
        protocol: Some("TCP".into()),
    };
    let health = HealthReport { real_servers: vec![rs(0, 1, 3, "up", "TCP_CHECK", true), rs(1, 2, 0, "down", "HTTP_GET", false)], ..Default::default() };
    status(vec![v1, v6], Some(health))
}

fn golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/keepalived/golden").join(name);
    if std::env::var_os("KA_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).expect("write golden");
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(got == want, "{name} differs from {} (KA_UPDATE_GOLDEN=1 rewrites it):\n--- want\n{want}\n--- got\n{got}", path.display());
}

/// ka's renderings of a configuration with every section: two instances (v2 with a password
/// and v3 unicast), a sync group, a tracked script, a virtual server with one real server up
/// and one down.
#[test]
fn rich_configuration_golden() {
    let c = config(RICH);
    let s = rich_state();
    let b = Baseline::new();
    let i = input(&s, &c, &b);
    golden("ka.data", &data(&i));
    golden("ka_check.data", &check_data(&i));
    golden("ka.stats", &stats(&i));
    golden("ka.json", &json(&i));
}

/// keepalived's exporters decode the JSON with fixed Go types: every field they read is there
/// with the right JSON type (integers never written as `5.0`).
#[test]
fn json_fields_exporters_read() {
    let c = config(RICH);
    let s = rich_state();
    let b = Baseline::new();
    let v: serde_json::Value = serde_json::from_str(&json(&input(&s, &c, &b))).expect("valid JSON");
    let a = v.as_array().expect("array");
    assert_eq!(a.len(), 2);
    let d = &a[0]["data"];
    assert_eq!(d["iname"], "VI_1");
    assert_eq!(d["ifp_ifname"], "d0");
    assert_eq!((d["vrid"].as_i64(), d["state"].as_i64(), d["wantstate"].as_i64(), d["garp_delay"].as_i64()), (Some(51), Some(2), Some(2), Some(5)));
    assert!(d["last_transition"].as_f64().is_some_and(|t| (t - 1_796_468_828.000_001).abs() < 1e-3));
    assert_eq!(d["vips"][0], "198.18.0.10/24 brd 198.18.0.255 dev d0 scope global set");
    assert_eq!(d["evips"][0], "198.18.0.12 dev d0 scope global set");
    assert_eq!(a[1]["data"]["state"].as_i64(), Some(1));
    assert_eq!(a[1]["data"]["adver_int"].as_f64(), Some(0.5));
    let st = &a[0]["stats"];
    for (k, n) in [("advert_rcvd", 12), ("advert_sent", 3400), ("become_master", 2), ("release_master", 1), ("packet_len_err", 2), ("ip_ttl_err", 2), ("auth_failure", 5), ("pri_zero_rcvd", 1)] {
        assert_eq!(st[k].as_i64(), Some(n), "{k}");
    }
    for k in ["advert_interval_err", "invalid_type_rcvd", "addr_list_err", "invalid_authtype", "authtype_mismatch", "pri_zero_sent"] {
        assert_eq!(st[k].as_i64(), Some(0), "{k}");
    }
}

/// STATS_CLEAR's baseline: counts restart from zero, and never go below it.
#[test]
fn stats_count_from_the_baseline() {
    let c = config(RICH);
    let mut s = rich_state();
    let b: Baseline = s.vrrp.iter().map(|r| (r.name.clone(), Stats::of(r))).collect();
    s.vrrp[0].adverts_tx += 5;
    let text = stats(&input(&s, &c, &b));
    assert!(text.starts_with("VRRP Instance: VI_1\n  Advertisements:\n    Received: 0\n    Sent: 5\n  Became master: 0\n"), "{text}");
    // A restarted counter (a reloaded instance) shows 0, not a wrapped number.
    s.vrrp[0].adverts_tx = 1;
    assert!(stats(&input(&s, &c, &b)).contains("    Sent: 0\n"));
}

#[test]
fn formats_of_numbers_commands_and_dates() {
    assert_eq!(fmt_g(5.0), "5");
    assert_eq!(fmt_g(0.5), "0.5");
    assert_eq!(fmt_g(1.25), "1.25");
    assert_eq!(fmt_g(0.001), "0.001");
    assert_eq!(cmd_str("/usr/bin/true"), "'/usr/bin/true'");
    assert_eq!(cmd_str("/x/check \"a b\" c"), "'/x/check' 'a b' 'c'");
    assert_eq!(cmd_str(">/tmp/flag"), ">/tmp/flag");
    assert_eq!(ctime_us(1_796_468_828_866_825, 0), "Sat Dec  5 11:07:08.866825 2026");
    assert_eq!(ctime_us(0, 0), "Thu Jan  1 00:00:00.000000 1970");
    assert_eq!(ctime_us(951_782_400_000_000, 0), "Tue Feb 29 00:00:00.000000 2000");
    assert_eq!(state_number("FAULT"), 3);
    assert_eq!(state_number("INIT"), 0);
}

/// A sync group's own tracked objects and `sync_group_tracking_weight` are in its section of
/// keepalived.data, as keepalived's `dump_sync_group` writes them.
#[test]
fn sync_group_trackers_are_dumped() {
    let c = config(concat!(
        "vrrp_script chk {\n script /bin/true\n weight -5\n}\n",
        "track_file tf {\n file /tmp/ka-tf\n}\n",
        "vrrp_instance VI_1 {\n interface d0\n virtual_router_id 5\n virtual_ipaddress {\n 198.18.0.10\n }\n}\n",
        "vrrp_sync_group SG {\n group {\n VI_1\n }\n sync_group_tracking_weight\n track_interface {\n d1 weight -3\n }\n track_script {\n chk\n }\n track_file {\n tf\n }\n}\n",
    ));
    let s = status(vec![instance("VI_1", 5, "BACKUP")], None);
    let b = Baseline::new();
    let text = data(&input(&s, &c, &b));
    let group = text.split("------< VRRP Topology >------").next().unwrap_or_default();
    let want = "   VRRP member instances :\n     VI_1\n   sync group tracking weight set\n   Tracked interfaces :\n     d1 weight -3\n   Tracked scripts :\n     chk weight -5\n   Tracked files :\n     tf\n";
    assert!(group.contains(want), "{group}");
}
