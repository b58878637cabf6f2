//! Advert floods (issue 14 item 2): a third host on the LAN floods a ka MASTER with forged VRRP
//! adverts (TTL 64, a wrong password, a bad checksum, unknown VRIDs, and valid-looking adverts
//! below the master's priority from rotating sources) as fast as this machine sends them. Nothing
//! changes state; every kind is counted under its own reason in XDP and shows in `ka status`
//! and the metrics; the engine hears at most a few below-priority adverts per advert interval,
//! and the master answers at most one per interval; a legitimate higher-priority peer still
//! takes over with its first advert in the middle of the flood. The daemon's CPU under the same
//! flood is a benchmark (`cargo xtask bench --only flood`), not a test.

use std::{
    net::Ipv4Addr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use ka_tests::{
    daemon::KaDaemon,
    flood::{self, Forged, Limits, Sender, Target},
    ka_bin,
    netns::{Bridge, Netns},
    prom, require_root, unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);
const METRICS_PORT: u16 = 9612;
const MASTER_PRIO: u8 = 150;

fn target() -> Target {
    Target { vrid: 91, password: b"pw".to_vec(), adver_int: 1, vip: Ipv4Addr::new(198, 18, 12, 100), master_priority: MASTER_PRIO, subnet: [198, 18, 12] }
}

/// The master (198.18.12.1), the flooder (.2) and a peer (.3) on one bridge.
fn lan() -> (Bridge, Vec<Netns>) {
    require_root();
    let mut bridge = Bridge::new().expect("bridge");
    let hosts = ["fm", "ff", "fp"]
        .iter()
        .enumerate()
        .map(|(k, tag)| {
            let ns = Netns::new(tag).expect("netns");
            bridge.attach(&ns, "eth0", &[&format!("198.18.12.{}/24", k + 1)]).expect("attach");
            ns
        })
        .collect();
    (bridge, hosts)
}

fn conf() -> String {
    let dir = std::env::temp_dir().join(unique_name("kvf"));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join("ka.conf");
    std::fs::write(
        &p,
        format!(
            "vrrp_instance VI_F {{\n state MASTER\n interface eth0\n virtual_router_id 91\n priority {MASTER_PRIO}\n advert_int 1\n authentication {{\n auth_type PASS\n auth_pass pw\n }}\n virtual_ipaddress {{\n 198.18.12.100/24\n }}\n}}\n"
        ),
    )
    .expect("write");
    p.to_str().expect("utf-8").to_owned()
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// A flood running on its own thread in the flooder's namespace until stopped (or 60 s).
struct Flood {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<std::io::Result<flood::Sent>>>,
    kinds: Vec<Forged>,
}

impl Flood {
    /// Every kind interleaved, 200 variants each (sources, priorities, VRIDs rotate).
    fn start(ns: &Netns) -> Flood {
        let t = target();
        let mut frames = Vec::new();
        let mut kinds = Vec::new();
        for n in 0..200 {
            for kind in Forged::ALL {
                frames.push(flood::forged(&t, kind, n));
                kinds.push(kind);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = ns
            .enter(move || {
                let sender = Sender::open("eth0")?;
                flood::flood(&sender, &frames, Limits { packets: 200_000_000, time: Duration::from_secs(60) }, &s)
            })
            .expect("enter the flooder");
        Flood { stop, thread: Some(thread), kinds }
    }

    fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the flood; frames sent by kind.
    fn finish(mut self) -> (std::collections::BTreeMap<Forged, u64>, flood::Sent) {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.thread.take().expect("thread").join().expect("flood thread").expect("flood");
        let mut by_kind = std::collections::BTreeMap::new();
        for (i, n) in sent.per_frame.iter().enumerate() {
            *by_kind.entry(self.kinds[i]).or_insert(0) += n;
        }
        (by_kind, sent)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every XDP counter that classifies a VRRP advert, summed: each advert XDP parses lands in
/// exactly one of them.
fn classified(counters: &serde_json::Value) -> u64 {
    let reasons = ka_common::vrrp::DropReason::ALL.iter().map(|r| ka_common::stats::Counter::vrrp_drop(*r).name());
    let classes = ["vrrp_steady", "vrrp_change", "vrrp_event_lost", "vrrp_pass_long", "vrrp_lower_prio_limited"];
    classes.into_iter().chain(reasons).map(|c| u(&counters[c])).sum()
}

fn scrape(ns: &Netns) -> String {
    ns.enter(|| {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", METRICS_PORT)).expect("connect to /metrics");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: ka\r\nConnection: close\r\n\r\n").expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    })
    .expect("enter the master")
    .join()
    .expect("scrape thread")
}

/// The flood against a MASTER with the XDP fast path, then a higher-priority peer in the middle
/// of it. Fails on a fast path that hands every lower-priority advert to the engine (no
/// `vrrp_lower_prio_limited`, thousands of adverts received) or a master that answers each.
#[test]
fn forged_advert_flood_changes_nothing_and_is_counted_by_reason() {
    let (_bridge, hosts) = lan();
    let conf = conf();
    let metrics = format!("127.0.0.1:{METRICS_PORT}");
    let ka = KaDaemon::start(&hosts[0], &ka_bin(), &unique_name("vf"), &["-f", &conf, "--metrics", &metrics]).expect("ka");
    let st0 = wait_for("MASTER with the XDP fast path", WAIT, || {
        let st = ka.status_json().ok()?;
        let i = &st["vrrp"][0];
        (i["state"] == "MASTER" && i["xdp_fast_path"] == true && st["xdp"].as_array().is_some_and(|a| !a.is_empty())).then_some(st)
    });
    let i0 = &st0["vrrp"][0];
    let vrrp0 = u(&st0["counters"]["vrrp"]);

    // Phase 1: the flood alone, until XDP has seen 200,000 forged adverts.
    let started = Instant::now();
    let flood = Flood::start(&hosts[1]);
    let st1 = wait_for("XDP to see 200,000 forged adverts", Duration::from_secs(60), || {
        assert!(flood.running(), "the flood stopped early");
        let st = ka.status_json().ok()?;
        (u(&st["counters"]["vrrp"]) >= vrrp0 + 200_000).then_some(st)
    });
    let secs = started.elapsed().as_secs() + 2;
    let i1 = &st1["vrrp"][0];
    assert_eq!(i1["state"], "MASTER", "the flood changed state: {st1}");
    assert_eq!(i1["became_master"], i0["became_master"], "the flood made ka leave MASTER: {st1}");
    let rx = u(&i1["adverts_rx"]) - u(&i0["adverts_rx"]);
    let budget = u64::from(ka_common::vrrp_fast::VRRP_RATE_PER_INTERVAL);
    assert!(rx <= budget * secs, "the engine accepted {rx} forged adverts in {secs} s (at most {budget} per advert interval may pass XDP): {st1}");
    let tx = u(&i1["adverts_tx"]) - u(&i0["adverts_tx"]);
    assert!(tx <= 2 * secs, "the master sent {tx} adverts in {secs} s of flood (periodic + at most one answer per interval): {st1}");
    assert!(u(&i1["answers_withheld"]) > 0, "no answer was withheld although several lower-priority adverts reached the engine per interval: {st1}");
    for kind in Forged::ALL {
        assert!(u(&st1["counters"][kind.xdp_counter()]) > 0, "{} not counted as {}: {st1}", kind.name(), kind.xdp_counter());
    }

    // Phase 2: a legitimate peer with priority 200 advertises once, in the middle of the flood:
    // that one advert makes ka BACKUP (were it lost, nothing else would: the peer waits).
    let peer = target();
    let peer_advert = flood::advert_v2(&peer, Ipv4Addr::new(198, 18, 12, 3), 200, 255);
    let send_peer = |frame: Vec<u8>| {
        hosts[2]
            .enter(move || Sender::open("eth0").and_then(|s| s.send_batch(&[&frame])))
            .expect("enter the peer")
            .join()
            .expect("peer thread")
            .expect("peer advert")
    };
    assert_eq!(send_peer(peer_advert.clone()), 1);
    // The master-down timer of a backup that heard one advert is 3.4 s away: BACKUP is seen
    // long before it could expire, and never without that advert.
    wait_for("BACKUP after the peer's first advert", Duration::from_secs(3), || {
        let st = ka.status_json().ok()?;
        (st["vrrp"][0]["state"] == "BACKUP" && st["vrrp"][0]["master"] == "198.18.12.3").then_some(())
    });
    assert!(flood.running(), "the flood must still run during the takeover");
    // The peer keeps advertising as a master does; ka keeps following it through the flood.
    for _ in 0..3 {
        let sent_at = Instant::now();
        assert_eq!(send_peer(peer_advert.clone()), 1);
        let st = ka.status_json().expect("status");
        assert_eq!(st["vrrp"][0]["state"], "BACKUP", "ka left BACKUP while the peer advertises: {st}");
        std::thread::sleep(Duration::from_secs(1).saturating_sub(sent_at.elapsed()));
    }
    assert!(flood.running(), "the flood must still run");
    let (by_kind, sent) = flood.finish();

    // Every advert XDP parsed is counted under exactly one reason; each kind under its own.
    let st = wait_for("the counters to settle", WAIT, || {
        let st = ka.status_json().ok()?;
        (u(&st["counters"]["vrrp"]) == classified(&st["counters"])).then_some(st)
    });
    let c = &st["counters"];
    let mut seen = 0;
    for kind in Forged::ALL {
        let n = u(&c[kind.xdp_counter()]) + if kind == Forged::LowerPriority { u(&c["vrrp_change"]) } else { 0 };
        // The LAN may lose a frame under load, XDP never misses one it gets (the peer's first
        // advert is a change too).
        let sent = by_kind[&kind];
        assert!(n * 100 >= sent * 99 && n <= sent + 1, "{}: {n} counted, {sent} sent: {st}", kind.name());
        seen += n;
    }
    eprintln!("flood: {} frames in {:.1} s ({:.0}/s), {seen} reached XDP, by kind {by_kind:?}", sent.total(), sent.elapsed.as_secs_f64(), sent.rate());
    assert_eq!(st["vrrp"][0]["state"], "BACKUP", "{st}");
    let dropped = &st["vrrp_dropped"];
    for reason in ["bad_ttl", "auth_failure", "bad_checksum", "vrid_mismatch", "lower_prio_limited"] {
        assert!(u(&dropped[reason]) > 0, "vrrp_dropped lacks {reason}: {st}");
    }
    let text = ka.status_text().expect("status text");
    for line in ["    lower_prio_limited: ", "    bad_ttl: ", "    auth_failure: ", "    bad_checksum: ", "    vrid_mismatch: ", "answers to lower-priority adverts withheld"] {
        assert!(text.contains(line), "ka status does not show {line:?}:\n{text}");
    }
    std::thread::sleep(Duration::from_millis(1100)); // past the endpoint's snapshot reuse
    let response = scrape(&hosts[0]);
    let body = response.split_once("\r\n\r\n").expect("HTTP answer").1;
    let samples = prom::parse(body).expect("parse /metrics");
    let get = |name: &str, labels: &[(&str, &str)]| prom::value(&samples, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing:\n{body}"));
    assert!(get("ka_xdp_events_total", &[("event", "vrrp_lower_prio_limited")]) > 0.0);
    assert!(get("ka_vrrp_adverts_dropped_total", &[("reason", "lower_prio_limited")]) > 0.0);
    assert!(get("ka_vrrp_adverts_dropped_total", &[("reason", "bad_ttl")]) > 0.0);
    assert!(get("ka_vrrp_answers_withheld_total", &[("iname", "VI_F"), ("intf", "eth0"), ("vrid", "91")]) > 0.0);
    ka.stop().expect("stop");
}

/// Without XDP (`--no-xdp`) every forged advert reaches the engine, and the state machine's
/// own limit still bounds the master's answers to one per advert interval: no amplifier.
#[test]
fn without_xdp_the_master_still_answers_at_most_once_per_interval() {
    let (_bridge, hosts) = lan();
    let conf = conf();
    let ka = KaDaemon::start(&hosts[0], &ka_bin(), &unique_name("vf"), &["-f", &conf, "--no-xdp"]).expect("ka");
    let st0 = wait_for("MASTER", WAIT, || {
        let st = ka.status_json().ok()?;
        (st["vrrp"][0]["state"] == "MASTER").then_some(st)
    });
    let i0 = &st0["vrrp"][0];
    let started = Instant::now();
    let flood = Flood::start(&hosts[1]);
    let st1 = wait_for("the engine to accept 2,000 forged lower-priority adverts", Duration::from_secs(60), || {
        assert!(flood.running(), "the flood stopped early");
        let st = ka.status_json().ok()?;
        (u(&st["vrrp"][0]["adverts_rx"]) >= u(&i0["adverts_rx"]) + 2000).then_some(st)
    });
    let secs = started.elapsed().as_secs() + 2;
    drop(flood);
    let i1 = &st1["vrrp"][0];
    assert_eq!(i1["state"], "MASTER", "{st1}");
    let tx = u(&i1["adverts_tx"]) - u(&i0["adverts_tx"]);
    assert!(tx <= 2 * secs, "the master sent {tx} adverts in {secs} s for {} lower-priority ones: {st1}", u(&i1["adverts_rx"]));
    assert!(u(&i1["answers_withheld"]) >= 1000, "{st1}");
    ka.stop().expect("stop");
}
