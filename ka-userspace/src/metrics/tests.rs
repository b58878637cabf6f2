//! The metrics rendering: every family from a status snapshot, valid for promtool, in both
//! formats; the endpoint serves it and reuses one snapshot per [`MIN_REFRESH`].

use std::{collections::BTreeMap, net::IpAddr, sync::atomic::AtomicUsize};

use super::*;
use crate::{
    dataplane::{BackendCounters, ServiceCounters},
    engine::InstanceReport,
    health::{report::CheckLatency, HealthReport, RealServerReport},
    status::{ReloadStats, XdpAttachment, STATUS_FORMAT_VERSION},
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn fixture() -> StatusReport {
    let inst = |name: &str, vrid: u8, state: &str| InstanceReport {
        name: name.into(),
        interface: "eth0".into(),
        vrid,
        version: 3,
        state: state.into(),
        priority: 150,
        effective_priority: 140,
        master: None,
        in_state_s: 3,
        adverts_rx: 12,
        adverts_tx: 34,
        adverts_dropped: BTreeMap::from([("bad_ttl".to_owned(), 2)]),
        became_master: 1,
        released_master: 0,
        priority_zero_rx: 0,
        priority_zero_tx: 0,
        last_transition_unix_us: 0,
        xdp_fast_path: true,
        xdp_changes: 0,
        xdp_deferrals: 0,
        answers_withheld: 0,
        trackers: vec![],
        vips: vec![],
    };
    let backend = |last: u8, weight: u32, packets: u64| BackendCounters {
        address: IpAddr::from([198, 18, 1, last]),
        port: 80,
        weight,
        in_table: true,
        packets,
        bytes: packets * 100,
        active_conns: None,
        inactive_conns: None,
        overloaded: false,
        next_hop: None,
    };
    let rs = |last: u8, state: &str, runtime| RealServerReport {
        vs_index: 0,
        service: "198.18.0.10:80".into(),
        rs_index: Some(usize::from(last)),
        addr: IpAddr::from([198, 18, 1, last]),
        port: 80,
        state: state.into(),
        weight: 1,
        in_table: true,
        configured_weight: 1,
        since_change_s: 0,
        last_check: None,
        checkers: vec![],
        runtime,
        protocol: Some("TCP".into()),
    };
    let mut lat = CheckLatency::default();
    lat.record(std::time::Duration::from_millis(3));
    lat.record(std::time::Duration::from_millis(30));
    StatusReport {
        format_version: STATUS_FORMAT_VERSION,
        instance: "default".into(),
        version: "0.1.0".into(),
        pid: 7,
        uptime_s: 99,
        xdp: vec![XdpAttachment { iface: "eth0".into(), mode: "native".into() }],
        counters: BTreeMap::from([
            ("verdict_pass".to_owned(), 10),
            ("verdict_tx".to_owned(), 20),
            ("pass_not_vip".to_owned(), 4),
            ("drop_adjust".to_owned(), 1),
            ("err_bad_ipv4".to_owned(), 3),
            ("lb_new_flow".to_owned(), 5),
        ]),
        vrrp: vec![inst("VI_1", 51, "MASTER"), inst("VI_2", 52, "BACKUP")],
        vrrp_dropped: BTreeMap::from([("bad_ttl".to_owned(), 4)]),
        health: Some(HealthReport {
            real_servers: vec![rs(1, "up", None), rs(2, "down", Some(crate::rs_control::Override::Drain))],
            checks: BTreeMap::from([("TCP_CHECK".to_owned(), 10), ("total".to_owned(), 10)]),
            failures: BTreeMap::from([("TCP_CHECK".to_owned(), 3), ("total".to_owned(), 3)]),
            latency: BTreeMap::from([("TCP_CHECK".to_owned(), lat)]),
            ..Default::default()
        }),
        services: vec![ServiceCounters {
            vip: ip("198.18.0.10"),
            port: 80,
            protocol: "TCP".into(),
            packets: 30,
            bytes: 3000,
            backends: vec![BackendCounters { active_conns: Some(7), inactive_conns: Some(2), ..backend(1, 1, 20) }, backend(2, 0, 10)],
            also: vec![],
        }],
        host: vec![],
        refused: vec![],
        sync: None,
        announce: None,
        bfd: None,
        runtime_overrides: vec![],
        reloads: ReloadStats { total: 2, failed: 1, last_success: false, last_success_unix_s: 1_700_000_000 },
    }
}

/// Every family the README documents is there, with the value the snapshot holds.
#[test]
fn families_and_values() {
    let t = render(&fixture(), Format::Text);
    let want = [
        r#"ka_build_info{version="0.1.0",instance_name="default"} 1"#,
        r#"ka_vrrp_state{iname="VI_1",intf="eth0",vrid="51"} 2"#,
        r#"ka_vrrp_state{iname="VI_2",intf="eth0",vrid="52"} 1"#,
        r#"ka_vrrp_adverts_sent_total{iname="VI_1",intf="eth0",vrid="51"} 34"#,
        r#"ka_vrrp_adverts_received_total{iname="VI_1",intf="eth0",vrid="51"} 12"#,
        r#"ka_vrrp_become_master_total{iname="VI_1",intf="eth0",vrid="51"} 1"#,
        r#"ka_vrrp_instance_adverts_dropped_total{iname="VI_1",intf="eth0",vrid="51",reason="bad_ttl"} 2"#,
        r#"ka_vrrp_adverts_dropped_total{reason="bad_ttl"} 4"#,
        r#"ka_service_packets_total{vip="198.18.0.10",port="80",protocol="TCP"} 30"#,
        r#"ka_service_bytes_total{vip="198.18.0.10",port="80",protocol="TCP"} 3000"#,
        r#"ka_real_server_packets_total{local_address="198.18.0.10",local_port="80",proto="TCP",remote_address="198.18.1.1",remote_port="80"} 20"#,
        r#"ka_real_server_bytes_total{local_address="198.18.0.10",local_port="80",proto="TCP",remote_address="198.18.1.2",remote_port="80"} 1000"#,
        r#"ka_real_server_weight{local_address="198.18.0.10",local_port="80",proto="TCP",remote_address="198.18.1.2",remote_port="80"} 0"#,
        r#"ka_real_server_up{local_address="198.18.0.10",local_port="80",proto="TCP",remote_address="198.18.1.1",remote_port="80"} 1"#,
        r#"ka_real_server_up{local_address="198.18.0.10",local_port="80",proto="TCP",remote_address="198.18.1.2",remote_port="80"} 0"#,
        r#"ka_real_server_connections_active{local_address="198.18.0.10",local_port="80",proto="TCP",remote_address="198.18.1.1",remote_port="80"} 7"#,
        r#"ka_real_server_connections_inactive{local_address="198.18.0.10",local_port="80",proto="TCP",remote_address="198.18.1.1",remote_port="80"} 2"#,
        r#"ka_real_server_runtime_override{local_address="198.18.0.10",local_port="80",proto="TCP",remote_address="198.18.1.2",remote_port="80",override="drain"} 1"#,
        r#"ka_xdp_packets_total{verdict="pass"} 10"#,
        r#"ka_xdp_packets_total{verdict="tx"} 20"#,
        r#"ka_xdp_pass_total{reason="not_vip"} 4"#,
        r#"ka_xdp_drop_total{reason="adjust"} 1"#,
        r#"ka_xdp_parse_errors_total{reason="bad_ipv4"} 3"#,
        r#"ka_xdp_events_total{event="lb_new_flow"} 5"#,
        r#"ka_xdp_attached{interface="eth0",mode="native"} 1"#,
        r#"ka_health_checks_total{checker="TCP_CHECK",result="success"} 7"#,
        r#"ka_health_checks_total{checker="TCP_CHECK",result="failure"} 3"#,
        r#"ka_health_check_duration_seconds_bucket{checker="TCP_CHECK",le="0.001"} 0"#,
        r#"ka_health_check_duration_seconds_bucket{checker="TCP_CHECK",le="0.005"} 1"#,
        r#"ka_health_check_duration_seconds_bucket{checker="TCP_CHECK",le="0.05"} 2"#,
        r#"ka_health_check_duration_seconds_bucket{checker="TCP_CHECK",le="+Inf"} 2"#,
        r#"ka_health_check_duration_seconds_sum{checker="TCP_CHECK"} 0.033"#,
        r#"ka_health_check_duration_seconds_count{checker="TCP_CHECK"} 2"#,
        "ka_config_reloads_total 2",
        "ka_config_reload_failures_total 1",
        "ka_config_last_reload_success 0",
        "ka_config_last_reload_success_timestamp_seconds 1700000000",
        "ka_uptime_seconds 99",
    ];
    let lines: Vec<&str> = t.lines().collect();
    for w in want {
        assert!(lines.contains(&w), "missing {w}\n{t}");
    }
    assert!(t.contains("# TYPE ka_vrrp_adverts_sent_total counter"), "{t}");
    assert!(t.contains("# TYPE ka_health_check_duration_seconds histogram"), "{t}");
    // OpenMetrics: the same samples, its own framing.
    let om = render(&fixture(), Format::OpenMetrics);
    assert!(om.ends_with("# EOF\n") && om.contains("# TYPE ka_vrrp_adverts_sent counter\n"), "{om}");
    assert!(om.contains(r#"ka_vrrp_state{iname="VI_1",intf="eth0",vrid="51"} 2"#), "{om}");
    assert_eq!(Format::from_accept(Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")), Format::OpenMetrics);
    assert_eq!(Format::from_accept(Some("text/plain")), Format::Text);
}

/// `promtool check metrics` (Debian package prometheus, installed by `cargo xtask setup`)
/// accepts the text format: names, types, units, label syntax, histogram layout.
#[test]
fn promtool_accepts_the_text_format() {
    use std::io::Write as _;
    let text = render(&fixture(), Format::Text);
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = child.expect("promtool not found: `cargo xtask setup` installs it (Debian package prometheus)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");
}

/// The VRRP state values are the keepalived exporters'.
#[test]
fn vrrp_state_values() {
    for (s, v) in [("INIT", 0), ("BACKUP", 1), ("MASTER", 2), ("FAULT", 3), ("STOP", 0)] {
        assert_eq!(vrrp_state_value(s), v, "{s}");
    }
}

/// The endpoint answers /metrics from one snapshot per MIN_REFRESH however many scrapes come,
/// 404s other paths, and answers 503 when the daemon does not.
#[tokio::test]
async fn endpoint_serves_and_shares_snapshots() {
    let fetched = Arc::new(AtomicUsize::new(0));
    let f = fetched.clone();
    let source: Source = Arc::new(move || {
        f.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async { Some(fixture()) })
    });
    let listener = bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = spawn(listener, source);
    let get = |path: &'static str| async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    };
    for _ in 0..5 {
        let r = get("/metrics").await;
        assert!(r.starts_with("HTTP/1.1 200") && r.contains("text/plain; version=0.0.4"), "{r}");
        assert!(r.contains("ka_vrrp_state{"), "{r}");
    }
    assert_eq!(fetched.load(std::sync::atomic::Ordering::SeqCst), 1, "five scrapes within MIN_REFRESH share one snapshot");
    assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
    server.abort();

    let silent: Source = Arc::new(|| Box::pin(async { None }));
    let listener = bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let addr2 = listener.local_addr().expect("addr");
    let server = spawn(listener, silent);
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr2).await.expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    server.abort();
}

/// A real server of a `virtual_server_group` service gets its checkers' state too.
#[test]
fn group_members_find_their_checkers() {
    let mut r = fixture();
    if let Some(h) = r.health.as_mut() {
        for x in &mut h.real_servers {
            x.service = "group web".into();
        }
    }
    let t = render(&r, Format::Text);
    assert!(
        t.lines().any(|l| l == r#"ka_real_server_up{local_address="198.18.0.10",local_port="80",proto="TCP",remote_address="198.18.1.2",remote_port="80"} 0"#),
        "{t}"
    );
}

/// `--metrics PORT` listens on loopback only; other addresses must be spelled out.
#[test]
fn metrics_listen_address() {
    let cases: &[(&str, Option<&str>)] = &[
        ("9650", Some("127.0.0.1:9650")),
        ("127.0.0.1:9650", Some("127.0.0.1:9650")),
        ("0.0.0.0:9650", Some("0.0.0.0:9650")),
        ("[::]:9650", Some("[::]:9650")),
        ("[::1]:9650", Some("[::1]:9650")),
        ("198.18.0.1:80", Some("198.18.0.1:80")),
        (":9650", None),
        ("65536", None),
        ("localhost:9650", None),
        ("", None),
    ];
    for (arg, want) in cases {
        let got = super::listen_addr(arg).ok().map(|a| a.to_string());
        assert_eq!(got.as_deref(), *want, "--metrics {arg:?}");
    }
    assert!(super::listen_addr(":9650").expect_err("no address").contains("0.0.0.0:PORT"));
}

/// BFD sessions: state, what trackers see, packets, and discards by reason; promtool accepts
/// them.
#[test]
fn bfd_families() {
    use crate::bfd::io::{BfdReport, SessionReport};
    let mut r = fixture();
    let session = |name: &str, state: &str, up: bool| SessionReport {
        name: name.into(),
        neighbor: ip("198.18.60.2"),
        state: state.into(),
        remote_state: "Up".into(),
        diag: "No Diagnostic".into(),
        up,
        local_discr: 1,
        remote_discr: 2,
        tx_interval_us: 100_000,
        detection_time_us: 300_000,
        tx: 40,
        rx: 38,
    };
    r.bfd = Some(BfdReport {
        sessions: vec![session("PEER", "Up", true), session("OTHER", "Init", false)],
        dropped: [("ttl".to_owned(), 3)].into_iter().collect(),
    });
    let t = render(&r, Format::Text);
    for w in [
        r#"ka_bfd_session_state{name="PEER",neighbor="198.18.60.2"} 3"#,
        r#"ka_bfd_session_state{name="OTHER",neighbor="198.18.60.2"} 2"#,
        r#"ka_bfd_session_up{name="PEER",neighbor="198.18.60.2"} 1"#,
        r#"ka_bfd_session_up{name="OTHER",neighbor="198.18.60.2"} 0"#,
        r#"ka_bfd_packets_sent_total{name="PEER",neighbor="198.18.60.2"} 40"#,
        r#"ka_bfd_packets_received_total{name="PEER",neighbor="198.18.60.2"} 38"#,
        r#"ka_bfd_packets_dropped_total{reason="ttl"} 3"#,
    ] {
        assert!(t.lines().any(|l| l == w), "missing {w}\n{t}");
    }
    assert!(!render(&fixture(), Format::Text).contains("ka_bfd_"), "no BFD families without sessions");
}
