//! Forwarding outlives the daemon (issue 11): the XDP program is attached through pinned
//! bpf_links with pinned maps, so a `kill -9` leaves it forwarding; a restarted `ka` adopts the
//! pins (program swapped on the link, tables kept) and, when it held the VIPs less than
//! Master_Down_Interval ago, resumes as VRRP Master without a transition.
//!
//! Lab: one LAN (198.18.44.0/24) with a client, two directors (director 0 runs ka, director 1
//! a real keepalived BACKUP in the VRRP test) and three DR real servers holding the VIP on
//! loopback. Long-lived TCP connections (one question per check, answered by the real server's
//! index) run through each step; a reset or a timeout fails the test.

use std::{
    net::{SocketAddr, TcpStream},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use ka_tests::{
    daemon::KaDaemon,
    ka_bin,
    keepalived::Keepalived,
    lan::{ask_why, role, tcp_check, Accepted, EchoServer, Lan, LanSpec, LbConf, RealServerConf},
    require_root, unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);
const VIP: &str = "198.18.44.100";
const DIRECTORS: [&str; 2] = ["198.18.44.1", "198.18.44.3"];
const CLIENT: &str = "198.18.44.2";
const RS: [&str; 3] = ["198.18.44.11", "198.18.44.12", "198.18.44.13"];
const PORT: u16 = 8080;
const VRID: u8 = 94;
/// A fourth real server, added by a configuration change.
const RS4: &str = "198.18.44.14";
/// The port of a second service.
const OTHER_PORT: u16 = 9090;

struct Lab {
    lan: Lan,
    dir: std::path::PathBuf,
    _servers: Vec<EchoServer>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lab(directors: usize) -> Lab {
    lab_with(directors, &RS, &[PORT])
}

/// A lab with these real servers, each answering on every port of `ports`.
fn lab_with(directors: usize, real_servers: &[&str], ports: &[u16]) -> Lab {
    lab_with_vips(directors, real_servers, ports, &[VIP])
}

/// A lab whose real servers hold every address of `vips` on loopback.
fn lab_with_vips(directors: usize, real_servers: &[&str], ports: &[u16], vips: &[&str]) -> Lab {
    require_root();
    let lan = Lan::new(&LanSpec {
        client: vec![format!("{CLIENT}/24")],
        directors: DIRECTORS[..directors].iter().map(|a| vec![format!("{a}/24")]).collect(),
        real_servers: real_servers.iter().map(|a| vec![format!("{a}/24")]).collect(),
        loopback_vips: vips.iter().map(|a| format!("{a}/32")).collect(),
    })
    .expect("LAN");
    let accepted = Accepted::default();
    let servers = lan
        .real_servers
        .iter()
        .enumerate()
        .flat_map(|(i, ns)| ports.iter().map(move |p| (i, ns, *p)))
        .map(|(i, ns, p)| EchoServer::start(ns, i, p, &accepted, &[]).expect("echo server"))
        .collect();
    let dir = std::env::temp_dir().join(unique_name("krs"));
    std::fs::create_dir_all(&dir).expect("dir");
    Lab { lan, dir, _servers: servers }
}

impl Lab {
    /// ka's config on director 0: MASTER at priority 150, one DR service with TCP checks.
    fn conf(&self) -> String {
        let text = LbConf {
            instance: "VI_RS".to_owned(),
            vrid: VRID,
            role: role("", true, 150),
            vrrp_vips: vec![format!("{VIP}/24")],
            excluded: vec![],
            vip: VIP.to_owned(),
            port: PORT,
            lb_kind: "DR".to_owned(),
            real_servers: RS.iter().map(|a| RealServerConf { addr: (*a).to_owned(), port: PORT, check: tcp_check() }).collect(),
        }
        .text();
        let p = self.dir.join("ka.conf");
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf-8").to_owned()
    }

    /// Writes a configuration file and returns its path.
    fn write_conf(&self, text: &str) -> String {
        let p = self.dir.join(unique_name("conf"));
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf-8").to_owned()
    }

    fn start_ka(&self, instance: &str) -> KaDaemon {
        self.start_ka_with(instance, &[])
    }

    fn start_ka_with(&self, instance: &str, extra: &[&str]) -> KaDaemon {
        let conf = self.conf();
        let mut args = vec!["-f", conf.as_str()];
        args.extend_from_slice(extra);
        let ka = KaDaemon::start(&self.lan.directors[0], &ka_bin(), instance, &args).expect("ka run");
        wait_for("all real servers in the table", WAIT, || {
            let st = ka.status_json().ok()?;
            let b = st["services"][0]["backends"].as_array()?.clone();
            (b.len() == RS.len() && b.iter().all(|b| b["in_table"] == true)).then_some(())
        });
        ka
    }

    /// A new connection to the VIP from the client, with 2 s timeouts.
    fn connect(&self) -> Result<TcpStream, String> {
        self.connect_to(PORT)
    }

    /// A new connection to the VIP's `port` from the client, with 2 s timeouts.
    fn connect_to(&self, port: u16) -> Result<TcpStream, String> {
        self.connect_addr(VIP, port)
    }

    /// A new connection to `addr`:`port` from the client, with 2 s timeouts.
    fn connect_addr(&self, addr: &str, port: u16) -> Result<TcpStream, String> {
        let addr: std::net::IpAddr = addr.parse().expect("addr");
        self.lan
            .client
            .enter(move || {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).map_err(|e| e.to_string())?;
                let vip = SocketAddr::new(addr, port);
                s.connect_timeout(&vip.into(), Duration::from_secs(2)).map_err(|e| format!("connect: {}", e.kind()))?;
                let s: TcpStream = s.into();
                s.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
                Ok(s)
            })
            .expect("enter client")
            .join()
            .expect("client thread")
    }

    /// A ka started as a new instance named from `tag`, once MASTER, with `n` long-lived
    /// connections open through it: the instance name, the daemon, the connections.
    fn master_with_long(&self, tag: &str, n: usize) -> (String, KaDaemon, Vec<(TcpStream, usize)>) {
        let instance = unique_name(tag);
        let ka = self.start_ka(&instance);
        wait_for("MASTER", WAIT, || (vrrp_state(&ka) == "MASTER").then_some(()));
        let long = self.open_long(n);
        (instance, ka, long)
    }

    /// Opens `n` long-lived connections and records which server answered each.
    fn open_long(&self, n: usize) -> Vec<(TcpStream, usize)> {
        (0..n)
            .map(|i| {
                let mut s = self.connect().unwrap_or_else(|e| panic!("long connection {i}: {e}"));
                let rs = ask_why(&mut s).unwrap_or_else(|e| panic!("long connection {i}: {e}"));
                (s, rs)
            })
            .collect()
    }
}

/// Every long-lived connection answers, from the server it started with.
fn still_answer(long: &mut [(TcpStream, usize)], when: &str) {
    for (i, (s, rs)) in long.iter_mut().enumerate() {
        match ask_why(s) {
            Ok(got) => assert_eq!(got, *rs, "{when}: long connection {i} moved from rs{rs} to rs{got}"),
            Err(e) => panic!("{when}: long connection {i} (rs{rs}) got no answer: {e}"),
        }
    }
}

/// `n` new connections each get an answer.
fn new_flows_answer(lab: &Lab, n: usize, when: &str) {
    for i in 0..n {
        let mut s = lab.connect().unwrap_or_else(|e| panic!("{when}: new connection {i}: {e}"));
        if let Err(e) = ask_why(&mut s) {
            panic!("{when}: new connection {i} got no answer: {e}");
        }
    }
}

fn vrrp_state(ka: &KaDaemon) -> String {
    ka.status_json().ok().and_then(|s| s["vrrp"][0]["state"].as_str().map(str::to_owned)).unwrap_or_default()
}

/// `ip -o monitor address` in a namespace, to prove a VIP was never deleted.
struct AddrMonitor {
    child: Child,
    out: std::path::PathBuf,
}

impl AddrMonitor {
    fn start(lab: &Lab, ns: &ka_tests::netns::Netns) -> AddrMonitor {
        let out = lab.dir.join(unique_name("mon"));
        let file = std::fs::File::create(&out).expect("monitor file");
        let child = ns
            .cmd("ip")
            .args(["-o", "monitor", "address"])
            .stdout(file)
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .expect("ip monitor");
        AddrMonitor { child, out }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for AddrMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// After `kill -9`, the pinned links keep the program attached with the last tables:
/// established connections keep their real server and new connections are served (today's
/// code detaches XDP with the process and the director's kernel, holding the VIP, resets
/// them).
#[test]
fn kill9_keeps_forwarding_established_and_new_flows() {
    let lab = lab(1);
    let (instance, ka, mut long) = lab.master_with_long("kr", 6);
    still_answer(&mut long, "before the crash");
    ka.crash();
    still_answer(&mut long, "after kill -9");
    new_flows_answer(&lab, 20, "after kill -9");
    assert!(
        std::path::Path::new(&format!("/sys/fs/bpf/ka/{instance}/link_eth0")).exists(),
        "the XDP link is not pinned"
    );
    // The next start adopts, and an orderly stop removes everything.
    let ka = lab.start_ka(&instance);
    still_answer(&mut long, "after the restart");
    assert!(ka.log_text().contains("program replaced on the pinned link"), "no adoption:\n{}", ka.log_text());
    ka.stop().expect("stop");
    assert!(!std::path::Path::new(&format!("/sys/fs/bpf/ka/{instance}")).exists(), "pins left after an orderly stop");
    let out = lab.lan.directors[0].run(&["ip", "-d", "link", "show", "dev", "eth0"]).expect("ip link");
    assert!(!out.contains("prog/xdp"), "XDP still attached after an orderly stop:\n{out}");
}

/// `kill -9` and a restart within Master_Down_Interval: the new ka adopts the datapath (the
/// program replaced on the pinned link, no connection reset) and resumes as MASTER at once:
/// the VIP is never deleted from the interface, and a real keepalived BACKUP on the LAN
/// (priority 100, 1 s adverts: Master_Down_Interval 3.6 s) never becomes MASTER.
#[test]
fn kill9_and_restart_adopts_and_resumes_master_without_peer_transition() {
    let lab = lab(2);
    let instance = unique_name("kr");
    let ka = lab.start_ka(&instance);
    wait_for("MASTER", WAIT, || (vrrp_state(&ka) == "MASTER").then_some(()));
    let kd_conf = format!(
        "global_defs {{\n router_id kd\n}}\nvrrp_instance VI_RS {{\n state BACKUP\n interface eth0\n virtual_router_id {VRID}\n priority 100\n advert_int 1\n virtual_ipaddress {{\n  {VIP}/24\n }}\n}}\n"
    );
    let kd = Keepalived::start(&lab.lan.directors[1], "r", &kd_conf).expect("keepalived");
    wait_for("keepalived BACKUP", WAIT, || kd.log_text().contains("Entering BACKUP STATE").then_some(()));
    let mut long = lab.open_long(6);
    still_answer(&mut long, "before the crash");
    let mon = AddrMonitor::start(&lab, &lab.lan.directors[0]);
    let killed = Instant::now();
    ka.crash();
    let ka = lab.start_ka(&instance);
    let restarted = killed.elapsed();
    assert_eq!(vrrp_state(&ka), "MASTER", "not resumed as MASTER:\n{}", ka.log_text());
    assert!(ka.log_text().contains("resuming as Master"), "no resume:\n{}", ka.log_text());
    still_answer(&mut long, "after the restart");
    new_flows_answer(&lab, 10, "after the restart");
    // Beyond keepalived's Master_Down_Interval (3.6 s) from the crash: it must still be BACKUP.
    let until = killed + Duration::from_millis(5000);
    while Instant::now() < until {
        still_answer(&mut long, "while the peer's down timer would run");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !kd.log_text().contains("Entering MASTER STATE"),
        "keepalived took over (restart took {restarted:?}):\n{}",
        kd.log_text()
    );
    assert_eq!(vrrp_state(&ka), "MASTER");
    let events = mon.text();
    assert!(!events.lines().any(|l| l.starts_with("Deleted") && l.contains(VIP)), "the VIP was removed during the restart:\n{events}");
    drop(mon);
    ka.stop().expect("stop");
    kd.stop().expect("keepalived stop");
}

/// A map layout change across a restart (an upgrade that bumped a map's layout revision, as
/// recorded in the pinned `KA_META`): the changed map is set aside, replaced by a fresh one and
/// dropped only after the new program runs; the other maps are adopted and the link updated,
/// so established and new flows are served throughout without a reset.
#[test]
fn layout_change_across_restart_replaces_the_map_without_resets() {
    let lab = lab(1);
    let (instance, ka, mut long) = lab.master_with_long("kr", 6);
    ka.crash();
    // What an older build would have recorded for KA_CONNS4: another fingerprint.
    let pin = format!("/sys/fs/bpf/ka/{instance}");
    let old_id = map_id(&format!("{pin}/KA_CONNS4"));
    record_other_layout(&pin, "KA_CONNS4");
    still_answer(&mut long, "after kill -9");
    let ka = lab.start_ka(&instance);
    still_answer(&mut long, "after the upgrade");
    new_flows_answer(&lab, 10, "after the upgrade");
    let log = ka.log_text();
    assert!(log.contains("pinned map has another layout") && log.contains("KA_CONNS4"), "KA_CONNS4 not replaced:\n{log}");
    assert_ne!(map_id(&format!("{pin}/KA_CONNS4")), old_id, "KA_CONNS4 still the old map");
    assert!(!std::path::Path::new(&format!("{pin}/KA_CONNS4:pending")).exists(), "the old map's pin was not dropped");
    assert!(log.contains("program replaced on the pinned link"), "link not updated:\n{log}");
    ka.stop().expect("stop");
}

/// An upgrade from a ka before issue 15, whose `KA_STATS` held one per-CPU `u64` per counter
/// (now one per-CPU `Counters` entry): the pinned map of the old layout is replaced, the
/// earlier counts are folded into the new map (they do not restart at 0), and established and
/// new flows are served throughout.
#[test]
fn upgrade_from_per_counter_stats_keeps_forwarding_and_counts() {
    use ka_common::stats::{Counter, COUNTER_COUNT};
    if !have_bpftool("KA_STATS") {
        return;
    }
    let lab = lab(1);
    let (instance, ka, mut long) = lab.master_with_long("ks", 6);
    ka.crash();
    // What a ka before issue 15 pinned: KA_STATS as a per-CPU array of one u64 per counter,
    // with an earlier count of `vrrp_bad_ttl` (bpftool writes the value on every CPU).
    let pin = format!("/sys/fs/bpf/ka/{instance}/KA_STATS");
    std::fs::remove_file(&pin).expect("unpin KA_STATS");
    let entries = COUNTER_COUNT.to_string();
    bpftool(&["map", "create", &pin, "type", "percpu_array", "key", "4", "value", "8", "entries", &entries, "name", "KA_STATS"]);
    const EARLIER: u64 = 1_000_003;
    let key = Counter::VrrpBadTtl.index().to_le_bytes().map(|b| b.to_string());
    let value = EARLIER.to_le_bytes().map(|b| b.to_string());
    bpftool(&[&["map", "update", "pinned", &pin, "key"][..], &key.each_ref().map(String::as_str), &["value"], &value.each_ref().map(String::as_str)].concat());
    let old_id = map_id(&pin);
    still_answer(&mut long, "after kill -9");
    let ka = lab.start_ka(&instance);
    still_answer(&mut long, "after the upgrade");
    new_flows_answer(&lab, 10, "after the upgrade");
    let log = ka.log_text();
    assert!(log.contains("folded the per-counter KA_STATS"), "KA_STATS not migrated:\n{log}");
    assert_ne!(map_id(&pin), old_id, "KA_STATS still the old map");
    assert!(!std::path::Path::new(&format!("{pin}:pending")).exists(), "the old map's pin was not dropped");
    let cpus = aya::util::nr_cpus().expect("nr_cpus") as u64;
    let status = ka.status_json().expect("status");
    let bad_ttl = status["counters"]["vrrp_bad_ttl"].as_u64().expect("vrrp_bad_ttl");
    assert!((EARLIER * cpus..EARLIER * cpus + 1000).contains(&bad_ttl), "vrrp_bad_ttl {bad_ttl}, want {} carried over", EARLIER * cpus);
    assert!(status["counters"]["lb_dr"].as_u64().unwrap_or(0) > 0, "the new map counts: {}", status["counters"]);
    ka.stop().expect("stop");
}

/// An upgrade from a ka that placed connection entries by the scheduler's hash (Murmur3,
/// `flow_hash4`; before layout revision 1 of `KA_CONNS4`): the pinned table is rehashed into
/// the new one, so each long connection's entry is found where this build looks for it
/// (`conn_hash4`), with its real server, and the connections keep answering from it.
#[test]
fn upgrade_rehashes_the_connection_table() {
    use ka_common::lb::{conn_check, conn_hash4, conn_set, flow_hash4, ConnSet4, ConnWay4, CONN_SETS};
    let lab = lab(1);
    let (instance, ka, mut long) = lab.master_with_long("kh", 6);
    ka.crash();
    let pin = format!("/sys/fs/bpf/ka/{instance}");
    let conns = || {
        let data = aya::maps::MapData::from_pin(format!("{pin}/KA_CONNS4")).expect("KA_CONNS4 pinned");
        aya::maps::Array::<_, ConnSet4>::try_from(aya::maps::Map::Array(data)).expect("KA_CONNS4 is an array")
    };
    // Lay the table out as the earlier build did: each entry in its Murmur3 set, checked by it.
    let mut table = conns();
    let live: Vec<ConnWay4> = (0..CONN_SETS).flat_map(|i| table.get(&i, 0).expect("set").ways).filter(|w| w.stamp != 0).collect();
    let keys: Vec<_> = long.iter().map(|(s, _)| (s.local_addr().expect("local"), s.peer_addr().expect("peer"))).collect();
    let ours = |w: &ConnWay4| keys.iter().any(|(l, p)| SocketAddr::from((w.key.src, u16::from_be_bytes(w.key.sport))) == *l && SocketAddr::from((w.key.dst, u16::from_be_bytes(w.key.dport))) == *p);
    assert_eq!(live.iter().filter(|w| ours(w)).count(), long.len(), "an entry per long connection before the upgrade");
    for i in 0..CONN_SETS {
        if table.get(&i, 0).expect("set").ways.iter().any(|w| w.stamp != 0) {
            table.set(i, ConnSet4::default(), 0).expect("clear set");
        }
    }
    for w in &live {
        let h = flow_hash4(&w.key);
        let mut set = table.get(&conn_set(h), 0).expect("set");
        let free = set.ways.iter_mut().find(|x| x.stamp == 0).expect("a free way");
        *free = ConnWay4 { check: conn_check(h, w.backend), ..*w };
        table.set(conn_set(h), set, 0).expect("write set");
    }
    // And what the earlier build recorded for KA_CONNS4: another layout fingerprint.
    record_other_layout(&pin, "KA_CONNS4");
    // No packet meanwhile: the program still attached looks up entries where this build
    // does, and would record a missed flow a second time.
    let ka = lab.start_ka(&instance);
    let log = ka.log_text();
    assert!(log.contains("rehashed the connection table of an earlier ka"), "KA_CONNS4 not rehashed:\n{log}");
    // Every long connection's entry, in the set this build looks in, checked by its hash, on
    // the same real server.
    let table = conns();
    for w in live.iter().filter(|w| ours(w)) {
        let h = conn_hash4(&w.key);
        let set = table.get(&conn_set(h), 0).expect("set");
        let got = set.ways.iter().find(|x| x.key == w.key).unwrap_or_else(|| panic!("{:?} not rehashed", w.key));
        assert_eq!((got.backend, got.check), (w.backend, conn_check(h, w.backend)));
    }
    still_answer(&mut long, "after the upgrade");
    new_flows_answer(&lab, 10, "after the upgrade");
    ka.stop().expect("stop");
}

/// An upgrade from a ka whose `KA_STATS_BUNDLES` held two bundles (the non-VIP exits, before
/// the forwarding bundles): the pinned map of the shorter value is replaced, its counts land in
/// the first slots of the new one (`pass_not_vip`, `ipv4`, `tcp` do not restart at 0), and
/// established and new flows are served throughout, counted by the new bundles.
#[test]
fn upgrade_from_two_bundles_keeps_forwarding_and_counts() {
    use ka_common::stats::BUNDLE_NOT_VIP_TCP4;
    if !have_bpftool("KA_STATS_BUNDLES") {
        return;
    }
    let lab = lab(1);
    let (instance, ka, mut long) = lab.master_with_long("kb", 6);
    ka.crash();
    let pin = format!("/sys/fs/bpf/ka/{instance}/KA_STATS_BUNDLES");
    std::fs::remove_file(&pin).expect("unpin KA_STATS_BUNDLES");
    bpftool(&["map", "create", &pin, "type", "percpu_array", "key", "4", "value", "16", "entries", "1", "name", "KA_STATS_BUNDLES"]);
    // An earlier count of the TCP non-VIP bundle (bpftool writes the value on every CPU).
    const EARLIER: u64 = 2_000_003;
    let mut value = [0u8; 16];
    value[BUNDLE_NOT_VIP_TCP4 * 8..BUNDLE_NOT_VIP_TCP4 * 8 + 8].copy_from_slice(&EARLIER.to_le_bytes());
    let value = value.map(|b| b.to_string());
    bpftool(&[&["map", "update", "pinned", &pin, "key", "0", "0", "0", "0", "value"][..], &value.each_ref().map(String::as_str)].concat());
    let old_id = map_id(&pin);
    still_answer(&mut long, "after kill -9");
    let ka = lab.start_ka(&instance);
    still_answer(&mut long, "after the upgrade");
    new_flows_answer(&lab, 10, "after the upgrade");
    let log = ka.log_text();
    assert!(log.contains("folded the bundle counts of an earlier ka"), "KA_STATS_BUNDLES not migrated:\n{log}");
    assert_ne!(map_id(&pin), old_id, "KA_STATS_BUNDLES still the old map");
    assert!(!std::path::Path::new(&format!("{pin}:pending")).exists(), "the old map's pin was not dropped");
    let cpus = aya::util::nr_cpus().expect("nr_cpus") as u64;
    let status = ka.status_json().expect("status");
    let counters = &status["counters"];
    let get = |name: &str| counters[name].as_u64().unwrap_or_else(|| panic!("{name} in {counters}"));
    let pass_not_vip = get("pass_not_vip");
    assert!((EARLIER * cpus..EARLIER * cpus + 1000).contains(&pass_not_vip), "pass_not_vip {pass_not_vip}, want {} carried over", EARLIER * cpus);
    assert!(get("tcp") >= EARLIER * cpus && get("ipv4") >= EARLIER * cpus, "parse counters not carried over: {counters}");
    // The flows served after the upgrade are counted by the forwarding bundles.
    assert!(get("lb_dr") > 0 && get("verdict_tx") + get("verdict_redirect") > 0, "the new bundles count: {counters}");
    ka.stop().expect("stop");
}

/// Whether bpftool is installed; if not, says the test that pins an earlier `map` is skipped.
fn have_bpftool(map: &str) -> bool {
    let ok = std::process::Command::new("bpftool").arg("version").output().is_ok();
    if !ok {
        eprintln!("SKIP: bpftool is not installed (needed to pin a {map} of the earlier layout)");
    }
    ok
}

/// Runs bpftool with `args`; panics with its error output if it fails.
fn bpftool(args: &[&str]) {
    let out = std::process::Command::new("bpftool").args(args).output().expect("bpftool");
    assert!(out.status.success(), "bpftool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Records in the pinned `KA_META` of the instance under `pin` another layout fingerprint for
/// `map`, as an older build would have.
fn record_other_layout(pin: &str, map: &str) {
    let data = aya::maps::MapData::from_pin(format!("{pin}/KA_META")).expect("KA_META pinned");
    let mut meta: aya::maps::HashMap<_, [u8; 32], u64> = aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data)).expect("KA_META is a hash map");
    meta.insert(ka_common::maps::meta_key("layout", map), 0x0bad_1a70, 0).expect("write KA_META");
}

fn map_id(path: &str) -> u32 {
    aya::maps::MapInfo::from_pin(path).map(|i| i.id()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Planned restart (keepalived's `--dont-release-vrrp --dont-release-ipvs`): SIGTERM leaves the
/// VIP on the interface and the program attached, connections keep being served while no ka
/// runs, and the next ka resumes as MASTER; a plain SIGTERM then releases everything.
#[test]
fn planned_restart_with_dont_release_keeps_vips_and_flows() {
    let lab = lab(1);
    let instance = unique_name("kr");
    let keep = ["--dont-release-vrrp", "--dont-release-ipvs"];
    let ka = lab.start_ka_with(&instance, &keep);
    wait_for("MASTER", WAIT, || (vrrp_state(&ka) == "MASTER").then_some(()));
    let mut long = lab.open_long(6);
    ka.stop().expect("stop");
    let addrs = lab.lan.directors[0].run(&["ip", "-o", "addr", "show", "dev", "eth0"]).expect("ip addr");
    assert!(addrs.contains(&format!(" {VIP}/")), "the VIP was released:\n{addrs}");
    still_answer(&mut long, "with no ka running");
    new_flows_answer(&lab, 10, "with no ka running");
    let ka = lab.start_ka(&instance);
    assert_eq!(vrrp_state(&ka), "MASTER", "not resumed:\n{}", ka.log_text());
    still_answer(&mut long, "after the planned restart");
    ka.stop().expect("stop");
    let addrs = lab.lan.directors[0].run(&["ip", "-o", "addr", "show", "dev", "eth0"]).expect("ip addr");
    assert!(!addrs.contains(&format!(" {VIP}/")), "a plain SIGTERM kept the VIP:\n{addrs}");
    assert!(!std::path::Path::new(&format!("/sys/fs/bpf/ka/{instance}")).exists(), "pins left after a plain SIGTERM");
}

/// A keepalived.conf for director 0: the lab's VRRP instance (MASTER, priority 150) and one DR
/// `mh` service (`mh-port`: one client's connections spread over the servers) per (port, real
/// servers), each real server checked by `check`.
fn services_conf(services: &[(u16, &[&str])], check: &str, delay_loop: u32) -> String {
    let mut t = format!(
        "vrrp_instance VI_RS {{\n state MASTER\n priority 150\n interface eth0\n virtual_router_id {VRID}\n advert_int 1\n virtual_ipaddress {{\n  {VIP}/24\n }}\n}}\n"
    );
    for (port, rs) in services {
        t += &format!("virtual_server {VIP} {port} {{\n delay_loop {delay_loop}\n lb_algo mh\n mh-port\n lb_kind DR\n protocol TCP\n");
        for a in *rs {
            t += &format!(" real_server {a} {port} {{\n{check} }}\n");
        }
        t += "}\n";
    }
    t
}

/// Waits until `ka status` lists `counts[i]` real servers for service `i`, all in the tables.
fn wait_all_in_table(ka: &KaDaemon, counts: &[usize]) {
    wait_for("every real server in the tables", WAIT, || {
        let st = ka.status_json().ok()?;
        let services = st["services"].as_array()?.clone();
        let ok = services.len() == counts.len()
            && services.iter().zip(counts).all(|(s, n)| {
                s["backends"].as_array().is_some_and(|b| b.len() == *n && b.iter().all(|b| b["in_table"] == true))
            });
        ok.then_some(())
    });
}

/// Long-lived connections to the VIP until each of the first `servers` real servers has one
/// (at most 60 attempts).
fn open_long_on_each(lab: &Lab, servers: usize) -> Vec<(TcpStream, usize)> {
    let mut long = Vec::new();
    for i in 0..60 {
        if (0..servers).all(|rs| long.iter().any(|(_, r)| *r == rs)) {
            return long;
        }
        let mut s = lab.connect().unwrap_or_else(|e| panic!("long connection {i}: {e}"));
        let rs = ask_why(&mut s).unwrap_or_else(|e| panic!("long connection {i}: {e}"));
        long.push((s, rs));
    }
    panic!("60 connections did not reach each of {servers} real servers: {:?}", long.iter().map(|(_, r)| r).collect::<Vec<_>>());
}

/// The (address, port) keys of the pinned `KA_SERVICES4` of an instance.
fn pinned_service_keys(instance: &str) -> Vec<(std::net::Ipv4Addr, u16)> {
    let data = aya::maps::MapData::from_pin(format!("/sys/fs/bpf/ka/{instance}/KA_SERVICES4")).expect("KA_SERVICES4 pinned");
    let m: aya::maps::HashMap<_, ka_common::lb::ServiceKey4, ka_common::lb::ServiceValue> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data)).expect("KA_SERVICES4 is a hash map");
    let mut keys: Vec<_> = m.keys().map(|k| k.expect("key")).map(|k| (k.addr.into(), u16::from_be_bytes(k.port))).collect();
    keys.sort_unstable();
    keys
}

/// The ports of the services in the pinned `KA_SERVICES4` of an instance.
fn pinned_service_ports(instance: &str) -> Vec<u16> {
    let data = aya::maps::MapData::from_pin(format!("/sys/fs/bpf/ka/{instance}/KA_SERVICES4")).expect("KA_SERVICES4 pinned");
    let m: aya::maps::HashMap<_, ka_common::lb::ServiceKey4, ka_common::lb::ServiceValue> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data)).expect("KA_SERVICES4 is a hash map");
    let mut ports: Vec<u16> = m.keys().map(|k| u16::from_be_bytes(k.expect("key").port)).collect();
    ports.sort_unstable();
    ports
}

/// `kill -9`, then a restart with a changed configuration (the service on 9090 removed, a
/// fourth real server added to 8080): the new ka rebuilds the load balancer from the adopted
/// maps, so the backends of 8080 keep their ids and every established connection keeps its
/// real server; the removed service leaves the map and is no longer forwarded. (A writer that
/// starts empty hands out ids in configuration order: 8080's first real server gets the id a
/// connection entry gives the removed service's, and 9090 stays in the map.)
#[test]
fn restart_with_changed_config_keeps_flows_and_drops_removed_service() {
    let lab = lab_with(1, &[RS[0], RS[1], RS[2], RS4], &[PORT, OTHER_PORT]);
    let instance = unique_name("kr");
    let reversed = [RS[2], RS[1], RS[0]];
    let before = lab.write_conf(&services_conf(&[(OTHER_PORT, &reversed), (PORT, &RS)], &tcp_check(), 1));
    let ka = KaDaemon::start(&lab.lan.directors[0], &ka_bin(), &instance, &["-f", &before]).expect("ka run");
    wait_all_in_table(&ka, &[3, 3]);
    wait_for("MASTER", WAIT, || (vrrp_state(&ka) == "MASTER").then_some(()));
    let mut long = open_long_on_each(&lab, 3);
    let mut other = lab.connect_to(OTHER_PORT).unwrap_or_else(|e| panic!("{OTHER_PORT} before the restart: {e}"));
    ask_why(&mut other).unwrap_or_else(|e| panic!("{OTHER_PORT} before the restart: {e}"));
    assert_eq!(pinned_service_ports(&instance), vec![PORT, OTHER_PORT]);
    ka.crash();
    let after = lab.write_conf(&services_conf(&[(PORT, &[RS[0], RS[1], RS[2], RS4])], &tcp_check(), 1));
    let ka = KaDaemon::start(&lab.lan.directors[0], &ka_bin(), &instance, &["-f", &after]).expect("ka run");
    wait_all_in_table(&ka, &[4]);
    let log = ka.log_text();
    assert!(log.contains("adopting the tables of the earlier run"), "no adoption:\n{log}");
    still_answer(&mut long, "after a restart with a changed configuration");
    new_flows_answer(&lab, 10, "after a restart with a changed configuration");
    assert_eq!(pinned_service_ports(&instance), vec![PORT], "the removed service is still in KA_SERVICES4");
    if let Ok(mut s) = lab.connect_to(OTHER_PORT) {
        if let Ok(rs) = ask_why(&mut s) {
            panic!("the removed service on {OTHER_PORT} is still forwarded (answered by rs{rs})");
        }
    }
    still_answer(&mut long, "at the end");
    ka.stop().expect("stop");
}

/// A restart with `alpha` checkers: the new ka seeds each real server's health from the
/// adopted maps instead of starting them down, so the first tables it writes still hold
/// every real server and new flows reach all of them at once (first checks are spread over
/// the 10 s `delay_loop`; starting down, the servers would come back one by one).
#[test]
fn restart_with_alpha_checkers_serves_new_flows_at_once() {
    let lab = lab(1);
    let instance = unique_name("kr");
    let check = "  TCP_CHECK {\n   connect_timeout 1\n   alpha\n  }\n  retry 1\n  delay_before_retry 0\n";
    let conf = lab.write_conf(&services_conf(&[(PORT, &RS)], check, 10));
    let ka = KaDaemon::start(&lab.lan.directors[0], &ka_bin(), &instance, &["-f", &conf]).expect("ka run");
    wait_all_in_table(&ka, &[3]);
    wait_for("MASTER", WAIT, || (vrrp_state(&ka) == "MASTER").then_some(()));
    let mut long = lab.open_long(3);
    ka.crash();
    let ka = KaDaemon::start(&lab.lan.directors[0], &ka_bin(), &instance, &["-f", &conf]).expect("ka run");
    wait_for("the adopted datapath running", WAIT, || ka.log_text().contains("datapath running").then_some(()));
    let st = ka.status_json().expect("status");
    let in_table: Vec<bool> =
        st["services"][0]["backends"].as_array().expect("backends").iter().map(|b| b["in_table"] == true).collect();
    assert_eq!(in_table, vec![true; 3], "the first tables after the restart lost real servers:\n{}", ka.log_text());
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..30 {
        let mut s = lab.connect().unwrap_or_else(|e| panic!("new connection {i} after the restart: {e}"));
        seen.insert(ask_why(&mut s).unwrap_or_else(|e| panic!("new connection {i} after the restart: {e}")));
    }
    assert_eq!(seen, (0..3).collect(), "new flows after the restart did not reach every real server");
    still_answer(&mut long, "after the restart");
    ka.stop().expect("stop");
}

/// The addresses of a `virtual_server_group` (one service id, one key per address).
const GROUP: [&str; 3] = ["198.18.44.101", "198.18.44.102", "198.18.44.103"];

/// A keepalived.conf for director 0: the VRRP instance holding every address of [`GROUP`],
/// and one DR `mh` service on port [`PORT`] of the group of `members`, over the three real
/// servers.
fn group_conf(members: &[&str]) -> String {
    let vips: String = GROUP.iter().map(|a| format!("  {a}/24\n")).collect();
    let entries: String = members.iter().map(|a| format!(" {a} {PORT}\n")).collect();
    let rs: String = RS.iter().map(|a| format!(" real_server {a} {PORT} {{\n{} }}\n", tcp_check())).collect();
    format!(
        "vrrp_instance VI_RS {{\n state MASTER\n priority 150\n interface eth0\n virtual_router_id {VRID}\n advert_int 1\n virtual_ipaddress {{\n{vips} }}\n}}\n\
virtual_server_group g {{\n{entries}}}\n\
virtual_server group g {{\n delay_loop 1\n lb_algo mh\n mh-port\n lb_kind DR\n protocol TCP\n{rs}}}\n"
    )
}

/// `kill -9`, then a restart where the `virtual_server_group` lost its first address: the
/// service keeps its id and its backends' ids although the key the writer knew it by is gone,
/// so established connections to the remaining addresses keep their real servers; the removed
/// address leaves `KA_SERVICES4` and is no longer forwarded. (The old adoption kept a group's
/// first key only: the dropped address stayed in the map naming a freed id.)
#[test]
fn restart_with_changed_group_keeps_flows_and_drops_removed_address() {
    let lab = lab_with_vips(1, &RS, &[PORT], &GROUP);
    let instance = unique_name("kr");
    let before = lab.write_conf(&group_conf(&GROUP));
    let ka = KaDaemon::start(&lab.lan.directors[0], &ka_bin(), &instance, &["-f", &before]).expect("ka run");
    wait_all_in_table(&ka, &[3]);
    wait_for("MASTER", WAIT, || (vrrp_state(&ka) == "MASTER").then_some(()));
    let key = |a: &str| (a.parse::<std::net::Ipv4Addr>().expect("addr"), PORT);
    assert_eq!(pinned_service_keys(&instance), GROUP.iter().map(|a| key(a)).collect::<Vec<_>>());
    // Three long connections on each address.
    let mut long: Vec<Vec<(TcpStream, usize)>> = GROUP
        .iter()
        .map(|a| {
            (0..3)
                .map(|i| {
                    let mut s = lab.connect_addr(a, PORT).unwrap_or_else(|e| panic!("{a}: long connection {i}: {e}"));
                    let rs = ask_why(&mut s).unwrap_or_else(|e| panic!("{a}: long connection {i}: {e}"));
                    (s, rs)
                })
                .collect()
        })
        .collect();
    ka.crash();
    for (a, l) in GROUP.iter().zip(long.iter_mut()) {
        still_answer(l, &format!("{a} with the daemon killed"));
    }
    let after = lab.write_conf(&group_conf(&GROUP[1..]));
    let ka = KaDaemon::start(&lab.lan.directors[0], &ka_bin(), &instance, &["-f", &after]).expect("ka run");
    wait_all_in_table(&ka, &[3]);
    let log = ka.log_text();
    assert!(log.contains("adopting the tables of the earlier run"), "no adoption:\n{log}");
    wait_for("the removed address out of KA_SERVICES4", WAIT, || {
        (pinned_service_keys(&instance) == GROUP[1..].iter().map(|a| key(a)).collect::<Vec<_>>()).then_some(())
    });
    for (a, l) in GROUP.iter().zip(long.iter_mut()).skip(1) {
        still_answer(l, &format!("{a} after the restart"));
        for i in 0..5 {
            let mut s = lab.connect_addr(a, PORT).unwrap_or_else(|e| panic!("{a}: new connection {i} after the restart: {e}"));
            ask_why(&mut s).unwrap_or_else(|e| panic!("{a}: new connection {i} after the restart: {e}"));
        }
    }
    if let Ok(mut s) = lab.connect_addr(GROUP[0], PORT) {
        if let Ok(rs) = ask_why(&mut s) {
            panic!("the removed address {} is still forwarded (answered by rs{rs})", GROUP[0]);
        }
    }
    ka.stop().expect("stop");
}

/// The established connections of each real server, as `ka status` counts them.
fn active_counts(ka: &KaDaemon) -> Option<Vec<u64>> {
    let st = ka.status_json().ok()?;
    st["services"][0]["backends"].as_array()?.iter().map(|b| b["active_conns"].as_u64()).collect()
}

/// A least-connection service across kill -9 and restart: the connection counts live in a
/// pinned map, so the restarted ka adopts them with the tables (zeroed, `wlc` would send the
/// next connections to servers already holding many), and the held connections keep their
/// real servers.
#[test]
fn restart_with_wlc_keeps_connection_counts() {
    let lab = lab(1);
    let instance = unique_name("kr");
    let conf = lab.write_conf(&services_conf(&[(PORT, &RS)], &tcp_check(), 1).replace(" lb_algo mh\n mh-port\n", " lb_algo wlc\n"));
    let ka = KaDaemon::start(&lab.lan.directors[0], &ka_bin(), &instance, &["-f", &conf]).expect("ka run");
    wait_all_in_table(&ka, &[RS.len()]);
    wait_for("MASTER", WAIT, || (vrrp_state(&ka) == "MASTER").then_some(()));
    let mut long = open_long_on_each(&lab, RS.len());
    let mut held = vec![0u64; RS.len()];
    for (_, rs) in &long {
        held[*rs] += 1;
    }
    wait_for("the held connections counted", WAIT, || (active_counts(&ka).as_deref() == Some(held.as_slice())).then_some(()));
    ka.crash();
    let ka = KaDaemon::start(&lab.lan.directors[0], &ka_bin(), &instance, &["-f", &conf]).expect("ka run");
    wait_all_in_table(&ka, &[RS.len()]);
    let log = ka.log_text();
    assert!(log.contains("adopting the tables of the earlier run"), "no adoption:\n{log}");
    let counts = active_counts(&ka);
    assert_eq!(counts.as_deref(), Some(held.as_slice()), "the counts of the earlier run were not adopted");
    still_answer(&mut long, "after the restart");
    new_flows_answer(&lab, 6, "after the restart");
    still_answer(&mut long, "at the end");
    ka.stop().expect("stop");
}
