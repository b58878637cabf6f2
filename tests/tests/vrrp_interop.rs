//! Interoperability of ka's VRRP with Debian's keepalived 2.2 on one bridged LAN in
//! namespaces. Both run the very same keepalived.conf syntax. Who holds the VIP is read from the
//! kernel's addresses in each namespace, not only from ka's status. ka runs with its XDP
//! program attached (the VRRP fast path on), as in production.

use std::time::{Duration, Instant};

use ka_tests::{
    daemon::KaDaemon,
    ka_bin,
    keepalived::Keepalived,
    netns::{Bridge, Netns},
    require_root, unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);

/// A LAN of `n` hosts on one bridge: host k has 198.18.6.k/24 and fd00:198:18:6::k/64 on eth0.
struct Lan {
    bridge: Bridge,
    hosts: Vec<Netns>,
}

impl Lan {
    fn new(n: usize) -> Lan {
        require_root();
        let mut bridge = Bridge::new().expect("bridge");
        let hosts = (1..=n)
            .map(|k| {
                let ns = Netns::new(&format!("h{k}")).expect("netns");
                bridge
                    .attach(&ns, "eth0", &[&format!("198.18.6.{k}/24"), &format!("fd00:198:18:6::{k}/64")])
                    .expect("attach");
                ns
            })
            .collect();
        Lan { bridge, hosts }
    }

    fn host(&self, k: usize) -> &Netns {
        &self.hosts[k - 1]
    }
}

/// Whether `ns` holds `vip` on eth0, according to the kernel.
fn holds(ns: &Netns, vip: &str) -> bool {
    ns.run(&["ip", "-o", "addr", "show", "dev", "eth0"]).is_ok_and(|o| o.contains(&format!(" {vip}/")))
}

fn wait_holder(lan: &Lan, holder: usize, vip: &str, why: &str) {
    wait_for(&format!("{why}: host {holder} to hold {vip}"), WAIT, || holds(lan.host(holder), vip).then_some(()));
}

/// Starts capturing, on the bridge, the first IPv4 VRRP advert for `vrid` from `src` with
/// priority 0 (a resignation, RFC 3768 §6.4.3 / RFC 5798 §6.4.3).
/// Returns once the capture socket is open.
fn capture_resign(lan: &Lan, vrid: u8, src: [u8; 4]) -> std::thread::JoinHandle<bool> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = lan
        .bridge
        .hub()
        .enter(move || {
            let cap = ka_tests::capture::Capture::open("br0", 0x0800).expect("capture");
            let _ = ready_tx.send(());
            // Ethernet 14 + IPv4 20: VRRP version/type at 34, VRID 35, priority 36.
            cap.next_matching(Instant::now() + WAIT, |f| {
                f.get(23) == Some(&112) && f.get(26..30) == Some(&src[..]) && f.get(35) == Some(&vrid) && f.get(36) == Some(&0)
            })
            .is_some()
        })
        .expect("enter hub");
    ready_rx.recv_timeout(WAIT).expect("capture socket open");
    h
}

fn wait_released(lan: &Lan, host: usize, vip: &str, why: &str) {
    wait_for(&format!("{why}: host {host} to release {vip}"), WAIT, || (!holds(lan.host(host), vip)).then_some(()));
}

fn ka_state(ka: &KaDaemon) -> String {
    ka.status_json().ok().and_then(|s| s["vrrp"][0]["state"].as_str().map(str::to_owned)).unwrap_or_default()
}

fn wait_ka_state(ka: &KaDaemon, state: &str) {
    wait_for(&format!("ka to be {state}"), WAIT, || (ka_state(ka) == state).then_some(()));
}

fn wait_log(kd: &Keepalived, needle: &str) {
    wait_for(&format!("keepalived to log {needle:?}"), WAIT, || kd.log_text().contains(needle).then_some(()));
}

struct Conf<'a> {
    vrid: u8,
    priority: u8,
    version: u8,
    advert_int: &'a str,
    vip: &'a str,
    extra: String,
}

impl Conf<'_> {
    fn text(&self) -> String {
        format!(
            "global_defs {{\n  router_id t\n  vrrp_version {}\n}}\nvrrp_instance VI_T {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {}\n  priority {}\n  advert_int {}\n{}\n  virtual_ipaddress {{\n    {}\n  }}\n}}\n",
            self.version, self.vrid, self.priority, self.advert_int, self.extra, self.vip
        )
    }
}

fn start_ka(lan: &Lan, host: usize, conf: &Conf<'_>) -> KaDaemon {
    let dir = std::env::temp_dir().join(unique_name("kac"));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("ka.conf");
    std::fs::write(&path, conf.text()).expect("write conf");
    let path = path.to_str().expect("utf-8").to_owned();
    KaDaemon::start(lan.host(host), &ka_bin(), &unique_name("vi"), &["-f", &path]).expect("ka run")
}

fn counter(st: &serde_json::Value, name: &str) -> u64 {
    st["counters"][name].as_u64().unwrap_or(0)
}

fn start_kd(lan: &Lan, host: usize, conf: &Conf<'_>) -> Keepalived {
    Keepalived::start(lan.host(host), &format!("{host}"), &conf.text()).expect("keepalived")
}

const PASS: &str = "  authentication {\n    auth_type PASS\n    auth_pass s3cret\n  }";

/// VRRPv2 with PASS auth: ka (150) is master over keepalived (100); ka resigns on SIGTERM and
/// keepalived takes over; ka comes back and preempts.
#[test]
fn v2_pass_ka_master_keepalived_backup_resign_and_preempt() {
    let lan = Lan::new(2);
    let vip = "198.18.6.100";
    let ka_conf = Conf { vrid: 61, priority: 150, version: 2, advert_int: "1", vip: "198.18.6.100/24", extra: PASS.into() };
    let kd_conf = Conf { priority: 100, ..Conf { extra: PASS.into(), ..ka_conf } };
    let kd = start_kd(&lan, 2, &kd_conf);
    let ka = start_ka(&lan, 1, &Conf { extra: PASS.into(), ..ka_conf });
    wait_holder(&lan, 1, vip, "ka has the higher priority");
    wait_log(&kd, "Entering BACKUP STATE");
    assert!(!holds(lan.host(2), vip), "keepalived must not hold the VIP while ka is master");
    assert_eq!(ka_state(&ka), "MASTER");
    let resign = capture_resign(&lan, 61, [198, 18, 6, 1]);
    let stopped = Instant::now();
    ka.stop().expect("ka stops cleanly");
    wait_holder(&lan, 2, vip, "ka resigned");
    // Master_Down_Interval is 3 × 1 s + (256 - 100) / 256 s: a silent ka would be replaced no
    // sooner. A resignation lets keepalived take over after Skew_Time (0.61 s).
    let took = stopped.elapsed();
    assert!(took < Duration::from_millis(3609), "keepalived took over after {took:?}: ka did not resign");
    assert!(resign.join().expect("capture thread"), "no priority-0 advert from ka on the LAN");
    assert!(!holds(lan.host(1), vip), "ka removes the VIP when it stops");
    let ka = start_ka(&lan, 1, &Conf { vrid: 61, priority: 150, version: 2, advert_int: "1", vip: "198.18.6.100/24", extra: PASS.into() });
    wait_holder(&lan, 1, vip, "ka preempts");
    wait_released(&lan, 2, vip, "keepalived yields to ka");
    drop(ka);
    drop(kd);
}

/// VRRPv3 over IPv4: keepalived (150) is master, ka (100) backup; keepalived is SIGKILLed and
/// ka takes over when its master-down timer fires.
#[test]
fn v3_ipv4_keepalived_master_ka_takes_over_on_sigkill() {
    let lan = Lan::new(2);
    let vip = "198.18.6.101";
    let kd_conf = Conf { vrid: 62, priority: 150, version: 3, advert_int: "0.2", vip: "198.18.6.101/24", extra: String::new() };
    let kd = start_kd(&lan, 2, &kd_conf);
    wait_holder(&lan, 2, vip, "keepalived alone becomes master");
    let ka = start_ka(&lan, 1, &Conf { priority: 100, ..kd_conf });
    wait_ka_state(&ka, "BACKUP");
    assert!(!holds(lan.host(1), vip), "ka must not hold the VIP as backup");
    wait_for("ka to see keepalived's adverts as master's", WAIT, || {
        let st = ka.status_json().ok()?;
        (st["vrrp"][0]["master"] == "198.18.6.2" && st["vrrp"][0]["adverts_rx"].as_u64()? > 0).then_some(())
    });
    kd.kill();
    wait_holder(&lan, 1, vip, "keepalived died");
    wait_ka_state(&ka, "MASTER");
}

/// VRRPv3 over IPv6: ka (150) master, keepalived (100) backup; cutting ka's link makes
/// keepalived take over.
#[test]
fn v3_ipv6_ka_master_link_cut_keepalived_takes_over() {
    let lan = Lan::new(2);
    let vip = "fd00:198:18:6::100";
    let conf = Conf { vrid: 63, priority: 150, version: 3, advert_int: "0.2", vip: "fd00:198:18:6::100/64", extra: String::new() };
    let kd = start_kd(&lan, 2, &Conf { priority: 100, ..Conf { extra: String::new(), ..conf } });
    let ka = start_ka(&lan, 1, &conf);
    wait_holder(&lan, 1, vip, "ka has the higher priority");
    wait_log(&kd, "Entering BACKUP STATE");
    // keepalived may have become MASTER before ka's first advert (a slow start under load: its
    // "(init)" BACKUP line is already in the log then); it releases the VIP on ka's advert.
    wait_released(&lan, 2, vip, "keepalived is BACKUP");
    lan.host(1).run(&["ip", "link", "set", "eth0", "down"]).expect("cut link");
    wait_holder(&lan, 2, vip, "ka's link is down");
    wait_ka_state(&ka, "FAULT");
}

/// Unicast peers (VRRPv2): ka and keepalived name each other with unicast_peer; ka is master,
/// resigns, keepalived takes over.
#[test]
fn v2_unicast_peers() {
    let lan = Lan::new(2);
    let vip = "198.18.6.102";
    let peers = |src: u8, peer: u8| format!("  unicast_src_ip 198.18.6.{src}\n  unicast_peer {{\n    198.18.6.{peer}\n  }}");
    let kd = start_kd(&lan, 2, &Conf { vrid: 64, priority: 100, version: 2, advert_int: "1", vip: "198.18.6.102/24", extra: peers(2, 1) });
    let ka = start_ka(&lan, 1, &Conf { vrid: 64, priority: 150, version: 2, advert_int: "1", vip: "198.18.6.102/24", extra: peers(1, 2) });
    wait_holder(&lan, 1, vip, "ka has the higher priority");
    wait_log(&kd, "Entering BACKUP STATE");
    // keepalived may have become MASTER before ka's first advert reached it (ka starts
    // second): ka's higher priority then preempts it, and it must release the VIP.
    wait_for("keepalived releases the VIP to ka", WAIT, || (!holds(lan.host(2), vip)).then_some(()));
    assert!(holds(lan.host(1), vip), "ka still holds the VIP");
    let stopped = Instant::now();
    ka.stop().expect("stop");
    wait_holder(&lan, 2, vip, "ka resigned over unicast");
    // Sooner than a silent ka's Master_Down_Interval (3 × 1 s + 156/256 s).
    let took = stopped.elapsed();
    assert!(took < Duration::from_millis(3609), "keepalived took over after {took:?}: ka did not resign");
}

/// Three nodes: two ka (150, 120) and keepalived (100). The highest wins; when it is killed the
/// second ka, not keepalived, takes over; when that one stops, keepalived does.
#[test]
fn three_node_election_two_ka_one_keepalived() {
    let lan = Lan::new(3);
    let vip = "198.18.6.103";
    let base = Conf { vrid: 65, priority: 100, version: 3, advert_int: "0.2", vip: "198.18.6.103/24", extra: String::new() };
    let kd = start_kd(&lan, 3, &base);
    let ka2 = start_ka(&lan, 2, &Conf { priority: 120, extra: String::new(), ..base });
    let ka1 = start_ka(&lan, 1, &Conf { priority: 150, extra: String::new(), vrid: 65, version: 3, advert_int: "0.2", vip: "198.18.6.103/24" });
    wait_holder(&lan, 1, vip, "highest priority");
    wait_ka_state(&ka2, "BACKUP");
    wait_log(&kd, "Entering BACKUP STATE");
    assert!(!holds(lan.host(2), vip) && !holds(lan.host(3), vip));
    ka1.kill();
    wait_holder(&lan, 2, vip, "the second ka has the next priority");
    assert!(!holds(lan.host(3), vip), "keepalived must stay backup under ka2");
    ka2.stop().expect("stop ka2");
    wait_holder(&lan, 3, vip, "only keepalived is left");
    drop(kd);
}

/// The XDP fast path on a backup: behind a keepalived master (VRRPv3, 0.1 s), ka stays BACKUP
/// for many intervals while its steady adverts are absorbed in XDP (the `vrrp_steady` counter
/// grows, ka's userspace receive counter stays flat: the master-down timer is re-armed from
/// XDP's last-seen timestamp). When keepalived dies, ka still takes over.
#[test]
fn xdp_fast_path_backup_stays_backup_then_takes_over() {
    let lan = Lan::new(2);
    let vip = "198.18.6.104";
    let kd_conf = Conf { vrid: 66, priority: 150, version: 3, advert_int: "0.1", vip: "198.18.6.104/24", extra: String::new() };
    let kd = start_kd(&lan, 2, &kd_conf);
    wait_holder(&lan, 2, vip, "keepalived alone becomes master");
    let ka = start_ka(&lan, 1, &Conf { priority: 100, ..kd_conf });
    let st = wait_for("ka to follow keepalived as BACKUP with the fast path on", WAIT, || {
        let st = ka.status_json().ok()?;
        let i = &st["vrrp"][0];
        (i["state"] == "BACKUP" && i["master"] == "198.18.6.2" && i["xdp_fast_path"] == true && counter(&st, "vrrp_steady") > 0)
            .then_some(st)
    });
    let rx0 = st["vrrp"][0]["adverts_rx"].as_u64().expect("adverts_rx");
    let steady0 = counter(&st, "vrrp_steady");
    // 50 adverts (5 s, about 16 Master_Down_Intervals) while checking ka never takes over.
    let st = wait_for("50 more steady adverts absorbed in XDP", WAIT, || {
        let st = ka.status_json().ok()?;
        assert_eq!(st["vrrp"][0]["state"], "BACKUP", "ka left BACKUP while keepalived was master: {st}");
        assert!(!holds(lan.host(1), vip), "ka took the VIP while keepalived was master");
        (counter(&st, "vrrp_steady") >= steady0 + 50).then_some(st)
    });
    let rx1 = st["vrrp"][0]["adverts_rx"].as_u64().expect("adverts_rx");
    assert!(rx1 <= rx0 + 2, "steady adverts reached userspace: adverts_rx {rx0} -> {rx1}: {st}");
    assert!(st["vrrp"][0]["xdp_deferrals"].as_u64().unwrap_or(0) >= 10, "the master-down timer was not re-armed from XDP: {st}");
    assert!(holds(lan.host(2), vip), "keepalived must still hold the VIP");
    kd.kill();
    wait_holder(&lan, 1, vip, "keepalived died");
    wait_ka_state(&ka, "MASTER");
}

const AH: &str = "  authentication {\n    auth_type AH\n    auth_pass s3cret\n  }";

/// keepalived's log lines for an AH advert it refused (vrrp.c).
const KD_AH_ERRORS: [&str; 6] = [
    "IPSEC-AH : invalid",
    "invalid IPSEC SPI",
    "already processed",
    "No AH header",
    "Received AH header but auth type not AH",
    "auth, expecting",
];

fn kd_ah_errors(kd: &Keepalived) -> Vec<String> {
    kd.log_text().lines().filter(|l| KD_AH_ERRORS.iter().any(|e| l.contains(e))).map(str::to_owned).collect()
}

/// Adverts the instance dropped for an AH reason, from `ka status`.
fn ka_ah_drops(st: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    st["vrrp"][0]["adverts_dropped"]
        .as_object()
        .map(|m| m.iter().filter(|(k, _)| k.starts_with("ah_") || k.contains("auth")).map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// VRRPv2 with IPsec AH (keepalived's `auth_type AH`, same auth_pass): ka validates
/// keepalived's AH adverts (HMAC-MD5-96, SPI, sequence number) and keepalived accepts ka's, in
/// both directions of every change. keepalived (100) is master alone; ka (150) starts as BACKUP,
/// accepts keepalived's adverts (its sequence counter follows them) and preempts with numbers
/// above them, which keepalived accepts (it yields). ka resigns on SIGTERM and keepalived takes
/// over at once (it accepted the priority-0 advert); ka comes back from a fresh counter,
/// follows keepalived's numbers again and preempts again. keepalived logs no AH error, ka drops
/// nothing, and XDP passed the AH adverts to userspace (`vrrp_ah_pass`).
#[test]
fn v2_ah_ka_and_keepalived_elect_and_fail_over_both_ways() {
    let lan = Lan::new(2);
    let vip = "198.18.6.105";
    let kd_conf = Conf { vrid: 67, priority: 100, version: 2, advert_int: "1", vip: "198.18.6.105/24", extra: AH.into() };
    let kd = start_kd(&lan, 2, &kd_conf);
    wait_holder(&lan, 2, vip, "keepalived alone becomes master");
    let ka_conf = || Conf { vrid: 67, priority: 150, version: 2, advert_int: "1", vip: "198.18.6.105/24", extra: AH.into() };
    let ka = start_ka(&lan, 1, &ka_conf());
    // Before ka's master-down timer fires (3 s + skew), keepalived's adverts arrive valid.
    wait_for("ka to accept keepalived's AH adverts", WAIT, || {
        let st = ka.status_json().ok()?;
        (st["vrrp"][0]["adverts_rx"].as_u64()? > 0).then_some(())
    });
    wait_holder(&lan, 1, vip, "ka has the higher priority and preempts");
    wait_released(&lan, 2, vip, "keepalived accepts ka's AH adverts and yields");
    wait_log(&kd, "Entering BACKUP STATE");
    let st = ka.status_json().expect("status");
    assert_eq!(st["vrrp"][0]["state"], "MASTER", "{st}");
    assert_eq!(st["vrrp"][0]["xdp_fast_path"], false, "AH instances stay out of the XDP fast path: {st}");
    assert!(counter(&st, "vrrp_ah_pass") > 0, "XDP did not pass keepalived's AH adverts: {st}");
    assert!(ka_ah_drops(&st).is_empty(), "ka dropped keepalived's AH adverts: {st}");

    let stopped = Instant::now();
    ka.stop().expect("ka stops cleanly");
    wait_holder(&lan, 2, vip, "ka resigned");
    let took = stopped.elapsed();
    assert!(took < Duration::from_millis(3609), "keepalived took over after {took:?}: it did not accept ka's priority-0 AH advert");

    let ka = start_ka(&lan, 1, &ka_conf());
    wait_holder(&lan, 1, vip, "ka comes back and preempts");
    wait_released(&lan, 2, vip, "keepalived accepts the restarted ka's AH adverts");
    // A few more adverts both ways in steady state.
    let st = wait_for("ka master with keepalived following", WAIT, || {
        let st = ka.status_json().ok()?;
        (st["vrrp"][0]["state"] == "MASTER" && st["vrrp"][0]["adverts_tx"].as_u64()? >= 4).then_some(st)
    });
    assert!(st["vrrp"][0]["adverts_rx"].as_u64().unwrap_or(0) > 0, "the restarted ka never accepted keepalived's adverts: {st}");
    assert!(ka_ah_drops(&st).is_empty(), "ka dropped keepalived's AH adverts: {st}");
    assert!(!holds(lan.host(2), vip), "keepalived must be backup");
    let errors = kd_ah_errors(&kd);
    assert!(errors.is_empty(), "keepalived refused ka's AH adverts:\n{}", errors.join("\n"));
}

/// VRRPv2 with IPsec AH and different auth_pass on each side: neither accepts the other's
/// adverts, so both become MASTER and hold the VIP; ka counts keepalived's adverts as bad ICVs
/// (those it hears as BACKUP before its master-down timer fires: once ka is MASTER too,
/// keepalived 2.2.7 re-arms its own advert timer on every packet it receives, valid or not, so
/// it hardly sends), and keepalived logs ka's as invalid HMAC-MD5.
#[test]
fn v2_ah_wrong_auth_pass_both_master_bad_icv_counted() {
    let lan = Lan::new(2);
    let vip = "198.18.6.106";
    let kd_conf = Conf { vrid: 68, priority: 150, version: 2, advert_int: "1", vip: "198.18.6.106/24", extra: AH.into() };
    let kd = start_kd(&lan, 2, &kd_conf);
    wait_holder(&lan, 2, vip, "keepalived alone becomes master");
    let other = "  authentication {\n    auth_type AH\n    auth_pass 0ther\n  }";
    let ka = start_ka(&lan, 1, &Conf { priority: 100, extra: other.into(), ..kd_conf });
    wait_holder(&lan, 1, vip, "ka cannot authenticate keepalived's adverts");
    let st = wait_for("ka to count keepalived's adverts as bad ICVs while MASTER", WAIT, || {
        let st = ka.status_json().ok()?;
        (st["vrrp"][0]["state"] == "MASTER" && st["vrrp"][0]["adverts_dropped"]["ah_bad_icv"].as_u64()? >= 2).then_some(st)
    });
    assert_eq!(st["vrrp"][0]["adverts_rx"], 0, "ka accepted an advert signed with another password: {st}");
    assert!(st["vrrp_dropped"]["ah_bad_icv"].as_u64().unwrap_or(0) >= 2, "{st}");
    wait_log(&kd, "IPSEC-AH : invalid IPSEC HMAC-MD5 value");
    assert!(holds(lan.host(2), vip) && holds(lan.host(1), vip), "both must be MASTER");
}

/// VRRPv2 with IPsec AH over unicast peers (the TTL is then left out of the ICV): keepalived
/// (100) is master alone, ka (150) accepts its unicast AH adverts, preempts, keepalived yields;
/// ka resigns and keepalived takes over at once. No AH error on either side.
#[test]
fn v2_ah_unicast_peers() {
    let lan = Lan::new(2);
    let vip = "198.18.6.107";
    let extra = |src: u8, peer: u8| format!("{AH}\n  unicast_src_ip 198.18.6.{src}\n  unicast_peer {{\n    198.18.6.{peer}\n  }}");
    let kd = start_kd(&lan, 2, &Conf { vrid: 69, priority: 100, version: 2, advert_int: "1", vip: "198.18.6.107/24", extra: extra(2, 1) });
    wait_holder(&lan, 2, vip, "keepalived alone becomes master");
    let ka = start_ka(&lan, 1, &Conf { vrid: 69, priority: 150, version: 2, advert_int: "1", vip: "198.18.6.107/24", extra: extra(1, 2) });
    wait_for("ka to accept keepalived's unicast AH adverts", WAIT, || {
        let st = ka.status_json().ok()?;
        (st["vrrp"][0]["adverts_rx"].as_u64()? > 0).then_some(())
    });
    wait_holder(&lan, 1, vip, "ka has the higher priority and preempts");
    wait_released(&lan, 2, vip, "keepalived accepts ka's unicast AH adverts and yields");
    let st = ka.status_json().expect("status");
    assert!(ka_ah_drops(&st).is_empty(), "ka dropped keepalived's AH adverts: {st}");
    let stopped = Instant::now();
    ka.stop().expect("stop");
    wait_holder(&lan, 2, vip, "ka resigned over unicast");
    let took = stopped.elapsed();
    assert!(took < Duration::from_millis(3609), "keepalived took over after {took:?}: it did not accept ka's priority-0 AH advert");
    let errors = kd_ah_errors(&kd);
    assert!(errors.is_empty(), "keepalived refused ka's AH adverts:\n{}", errors.join("\n"));
}
