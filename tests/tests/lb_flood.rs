//! SYN and UDP floods to a VIP (issue 14 item 3): a third host on the LAN sends a million new
//! flows from a million spoofed sources while long-lived TCP connections and UDP flows run
//! through the same round-robin virtual servers. Every long-lived flow keeps answering from the
//! real server it started on, during the flood and after (with the old connection table the
//! flood evicted their entries, and round-robin sent their next packets elsewhere: resets and
//! answers from another server); new connections are served; `ka status` shows the flood
//! (`lb_flood_mode`, `lb_conn_evicted`, `lb_conn_flood_skip` for a Maglev service) and no
//! assured entry evicted. The daemon's CPU under the flood is a benchmark
//! (`cargo xtask bench --only synflood`), not a test.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use ka_tests::{
    daemon::KaDaemon,
    flood::{self, L4Flood, L4Kind, Limits, Sender},
    ka_bin,
    lan::{self, ask_why, tcp_check, Accepted, EchoServer, Lan, LanSpec, UdpEchoServer},
    netns::Netns,
    require_root, unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);
const VIP: &str = "198.18.47.100";
const DIRECTOR: &str = "198.18.47.1";
const CLIENT: &str = "198.18.47.2";
const FLOODER: &str = "198.18.47.5";
const RS: [&str; 3] = ["198.18.47.11", "198.18.47.12", "198.18.47.13"];
/// Round-robin TCP service: the long-lived connections, and the SYN flood.
const TCP_PORT: u16 = 8080;
/// Maglev TCP service: a SYN flood its flood mode records nothing for.
const MH_PORT: u16 = 8081;
/// Round-robin UDP service: the long-lived flows, and the UDP flood.
const UDP_PORT: u16 = 5300;
/// Long-lived flows of each kind.
const LONG: usize = 6;

/// The config: MASTER for the VIP, the three virtual servers, flood mode past 1000 new
/// unassured entries per CPU and second.
fn conf(dir: &std::path::Path) -> String {
    let rs = |port: u16, check: &str| -> String { RS.iter().map(|a| format!(" real_server {a} {port} {{\n{check} }}\n")).collect() };
    let text = format!(
        "global_defs {{\n lvs_flood_rate 1000\n}}\n\
vrrp_instance VI_SF {{\n state MASTER\n interface eth0\n virtual_router_id 97\n priority 150\n advert_int 1\n virtual_ipaddress {{\n {VIP}/24\n }}\n}}\n\
virtual_server {VIP} {TCP_PORT} {{\n delay_loop 1\n lb_algo rr\n lb_kind DR\n protocol TCP\n{}}}\n\
virtual_server {VIP} {MH_PORT} {{\n lb_algo mh\n lb_kind DR\n protocol TCP\n{}}}\n\
virtual_server {VIP} {UDP_PORT} {{\n lb_algo rr\n lb_kind DR\n protocol UDP\n{}}}\n",
        rs(TCP_PORT, &tcp_check()),
        rs(MH_PORT, ""),
        rs(UDP_PORT, ""),
    );
    let p = dir.join("ka.conf");
    std::fs::write(&p, text).expect("write");
    p.to_str().expect("utf-8").to_owned()
}

/// The LAN: client, director, flooder, three real servers with TCP and UDP echo servers.
struct Lab {
    lan: Lan,
    flooder: Netns,
    dir: std::path::PathBuf,
    _tcp: Vec<EchoServer>,
    _udp: Vec<UdpEchoServer>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lab() -> Lab {
    require_root();
    let mut lan = Lan::new(&LanSpec {
        client: vec![format!("{CLIENT}/24")],
        directors: vec![vec![format!("{DIRECTOR}/24")]],
        real_servers: RS.iter().map(|a| vec![format!("{a}/24")]).collect(),
        loopback_vips: vec![format!("{VIP}/32")],
    })
    .expect("LAN");
    let flooder = Netns::new("lf").expect("netns");
    lan.bridge.attach(&flooder, "eth0", &[&format!("{FLOODER}/24")]).expect("attach the flooder");
    let accepted = Accepted::default();
    let tcp = lan.real_servers.iter().enumerate().map(|(i, ns)| EchoServer::start(ns, i, TCP_PORT, &accepted, &[]).expect("echo")).collect();
    let (vip, client) = (VIP.parse().expect("ip"), CLIENT.parse().expect("ip"));
    let udp = lan.real_servers.iter().enumerate().map(|(i, ns)| UdpEchoServer::start(ns, i, vip, UDP_PORT, client).expect("UDP echo")).collect();
    let dir = std::env::temp_dir().join(unique_name("klf"));
    std::fs::create_dir_all(&dir).expect("dir");
    Lab { lan, flooder, dir, _tcp: tcp, _udp: udp }
}

impl Lab {
    fn connect(&self) -> Result<TcpStream, String> {
        self.lan
            .client
            .enter(|| {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).map_err(|e| e.to_string())?;
                let vip: SocketAddr = format!("{VIP}:{TCP_PORT}").parse().map_err(|e| format!("{e}"))?;
                s.connect_timeout(&vip.into(), Duration::from_secs(3)).map_err(|e| format!("connect: {}", e.kind()))?;
                let s: TcpStream = s.into();
                s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
                Ok(s)
            })
            .expect("enter client")
            .join()
            .expect("client thread")
    }

    fn udp_flow(&self) -> UdpSocket {
        self.lan
            .client
            .enter(|| {
                let s = UdpSocket::bind((CLIENT, 0)).expect("bind");
                s.connect((VIP, UDP_PORT)).expect("connect");
                s.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
                s
            })
            .expect("enter client")
            .join()
            .expect("client thread")
    }

    fn director_mac(&self) -> [u8; 6] {
        mac(&self.lan.directors[0])
    }
}

fn mac(ns: &Netns) -> [u8; 6] {
    let text = ns.run(&["cat", "/sys/class/net/eth0/address"]).expect("read MAC");
    let b: Vec<u8> = text.trim().split(':').map(|h| u8::from_str_radix(h, 16).expect("hex")).collect();
    b.try_into().expect("6 bytes")
}

/// The server answering a UDP flow: a lost datagram (the real servers' queues are flooded
/// too) is sent again, up to 10 times.
fn ask_udp(s: &UdpSocket) -> Result<usize, String> {
    lan::ask_udp(s, 10)
}

/// The long-lived flows and the server each started on.
struct Long {
    tcp: Vec<(TcpStream, usize)>,
    udp: Vec<(UdpSocket, usize)>,
}

impl Long {
    fn open(lab: &Lab) -> Long {
        let tcp: Vec<(TcpStream, usize)> = (0..LONG)
            .map(|i| {
                let mut s = lab.connect().unwrap_or_else(|e| panic!("long connection {i}: {e}"));
                let rs = ask_why(&mut s).unwrap_or_else(|e| panic!("long connection {i}: {e}"));
                (s, rs)
            })
            .collect();
        let udp: Vec<(UdpSocket, usize)> = (0..LONG)
            .map(|i| {
                let s = lab.udp_flow();
                let rs = ask_udp(&s).unwrap_or_else(|e| panic!("UDP flow {i}: {e}"));
                // A second datagram: the entry is assured (a UDP flow seen twice).
                assert_eq!(ask_udp(&s), Ok(rs), "UDP flow {i} answered by one server");
                (s, rs)
            })
            .collect();
        let spread = |v: Vec<usize>| v.into_iter().collect::<std::collections::BTreeSet<_>>().len();
        assert!(spread(tcp.iter().map(|t| t.1).collect()) > 1, "round-robin spreads the connections");
        assert!(spread(udp.iter().map(|t| t.1).collect()) > 1, "round-robin spreads the UDP flows");
        Long { tcp, udp }
    }

    /// Every long-lived flow answers, from its own server.
    fn check(&mut self, when: &str) {
        for (i, (s, rs)) in self.tcp.iter_mut().enumerate() {
            match ask_why(s) {
                Ok(got) => assert_eq!(got, *rs, "{when}: long connection {i} moved from rs{rs} to rs{got}"),
                Err(e) => panic!("{when}: long connection {i} (rs{rs}) got no answer: {e}"),
            }
        }
        for (i, (s, rs)) in self.udp.iter().enumerate() {
            match ask_udp(s) {
                Ok(got) => assert_eq!(got, *rs, "{when}: UDP flow {i} moved from rs{rs} to rs{got}"),
                Err(e) => panic!("{when}: UDP flow {i} (rs{rs}): {e}"),
            }
        }
    }
}

fn counter(st: &serde_json::Value, name: &str) -> u64 {
    st["counters"][name].as_u64().unwrap_or_else(|| panic!("counter {name} missing: {}", st["counters"]))
}

/// Floods `port` with `packets` new flows of `kind` from the flooder (at most 60 s), checking
/// the long-lived flows every 500 ms while it runs. Frames sent and the send rate.
fn flood_while_checking(lab: &Lab, long: &mut Long, kind: L4Kind, port: u16, packets: u64, first: u64) -> (u64, f64) {
    let spec = L4Flood {
        kind,
        dst_mac: lab.director_mac(),
        src_mac: mac(&lab.flooder),
        vip: VIP.parse().expect("ip"),
        dport: port,
        src_base: Ipv4Addr::new(10, 64, 0, 0),
        sources: 1 << 20,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = lab
        .flooder
        .enter(move || {
            let sender = Sender::open("eth0")?;
            flood::flood_l4(&sender, &spec, first, Limits { packets, time: Duration::from_secs(60) }, &s)
        })
        .expect("enter the flooder");
    let started = Instant::now();
    let mut checks = 0;
    while !thread.is_finished() && started.elapsed() < Duration::from_secs(90) {
        long.check(&format!("{kind:?} flood, {:.1} s in", started.elapsed().as_secs_f64()));
        checks += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = thread.join().expect("flood thread").expect("flood");
    assert!(checks > 0 || sent.total() >= packets, "the flood ended before any check");
    (sent.total(), sent.rate())
}

/// A million SYNs, then a million UDP datagrams, from a million sources each, to the VIP's
/// round-robin services while long-lived flows run through them; then SYNs to its Maglev
/// service.
#[test]
fn established_flows_keep_their_real_server_through_syn_and_udp_floods() {
    let lab = lab();
    let conf = conf(&lab.dir);
    let instance = unique_name("lf");
    let ka = KaDaemon::start(&lab.lan.directors[0], &ka_bin(), &instance, &["-f", &conf]).expect("ka run");
    wait_for("MASTER with every real server in the tables", WAIT, || {
        let st = ka.status_json().ok()?;
        let master = st["vrrp"][0]["state"] == "MASTER";
        let services = st["services"].as_array()?;
        let all = services.len() == 3
            && services.iter().all(|s| s["backends"].as_array().is_some_and(|b| b.len() == RS.len() && b.iter().all(|b| b["in_table"] == true)));
        (master && all).then_some(())
    });
    let mut long = Long::open(&lab);
    let st = ka.status_json().expect("status");
    assert_eq!(counter(&st, "lb_flood_mode"), 0, "no flood yet");

    let (syn_sent, syn_rate) = flood_while_checking(&lab, &mut long, L4Kind::Syn, TCP_PORT, 1 << 20, 0);
    println!("SYN flood: {syn_sent} frames at {syn_rate:.0}/s");
    assert!(syn_sent >= 1 << 19, "the SYN flood sent {syn_sent} frames (at least half a million wanted)");
    long.check("after the SYN flood");
    let st = ka.status_json().expect("status");
    println!("after the SYN flood: {}", st["counters"]);
    assert!(counter(&st, "lb_flood_mode") >= 1, "flood mode entered: {}", st["counters"]);
    assert!(counter(&st, "lb_conn_evicted") >= 1000, "the flood's entries replaced each other: {}", st["counters"]);
    assert_eq!(counter(&st, "lb_conn_evicted_assured"), 0, "no established connection evicted: {}", st["counters"]);
    for i in 0..5 {
        let mut s = lab.connect().unwrap_or_else(|e| panic!("new connection {i} after the SYN flood: {e}"));
        ask_why(&mut s).unwrap_or_else(|e| panic!("new connection {i} after the SYN flood: {e}"));
    }

    let (udp_sent, udp_rate) = flood_while_checking(&lab, &mut long, L4Kind::Udp, UDP_PORT, 1 << 20, 1 << 20);
    println!("UDP flood: {udp_sent} frames at {udp_rate:.0}/s");
    assert!(udp_sent >= 1 << 19, "the UDP flood sent {udp_sent} frames");
    long.check("after the UDP flood");
    let before = ka.status_json().expect("status");
    assert_eq!(counter(&before, "lb_conn_evicted_assured"), 0, "no assured flow evicted: {}", before["counters"]);

    let (mh_sent, _) = flood_while_checking(&lab, &mut long, L4Kind::Syn, MH_PORT, 1 << 18, 2 << 20);
    long.check("after the SYN flood to the Maglev service");
    let st = ka.status_json().expect("status");
    println!("after the floods: {}", st["counters"]);
    let skipped = counter(&st, "lb_conn_flood_skip");
    assert!(skipped >= mh_sent / 4, "flood mode recorded no entry for most Maglev SYNs: {skipped} of {mh_sent}");
    assert!(counter(&st, "lb_flood_mode") > counter(&before, "lb_flood_mode"), "flood mode entered again");
    assert_eq!(counter(&st, "lb_conn_evicted_assured"), 0);
    assert_eq!(counter(&st, "verdict_aborted"), 0);
    ka.stop().expect("clean stop");
}
