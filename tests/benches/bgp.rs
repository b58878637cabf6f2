//! Active-active scale-out benchmark (issue 16): aggregate throughput through 1, 2 and 3 ka
//! directors that announce the VIP over BGP to an ECMP router, with the scaling factor against
//! one director. Reproduce with `cargo xtask bench --only bgp` (or, as root,
//! `KA_BIN=target/release/ka cargo bench -p ka-tests --bench bgp`). Prints a Markdown table;
//! with `KA_BGP_JSON=PATH` it also writes the rows there as JSON (what `cargo xtask bench`
//! reads back). `KA_BGP_ROUNDS` (default 3) rounds run N = 1, 2, 3 interleaved, each measured
//! for `KA_BGP_SECS` (default 3) seconds; each N reports its best round, since interference
//! from the rest of the machine only makes a round slower.
//!
//! # Topology
//!
//! The end-to-end benchmark's (`benches/e2e.rs`: the same generator, sink and threaded-NAPI
//! accounting, from `benches/live`), with a router in front of three directors:
//!
//! ```text
//!  gen [eth0 .70.2] ══ [R .70.1] router [rdI .7I.254] ══ [DI .7I.1] drI [out .75.1] ══ [SI] sink
//!                      BIRD AS 65000, merge paths on,         ka (XDP, DR) + BIRD AS 65001     ka_xdp_sink
//!                      fib_multipath_hash_policy=1            (I = 1, 2, 3; 198.18.0.0/16)     on S1-S3
//! ```
//!
//! - **gen** runs `ka_xdp_gen` in live-frames mode: 60-byte UDP frames (64 on a wire) to VIP
//!   198.18.76.100:53 from 198.18.70.2, over [`FLOWS`] source ports, addressed to the router.
//! - **router** forwards in the kernel (GRO on its ingress, no XDP), as an ECMP router does: a
//!   multipath route to the VIP over every director that announces it, installed by BIRD from
//!   the directors' BGP announcements, hashed on the 5-tuple (`fib_multipath_hash_policy=1`).
//! - **dr1-dr3** each run `ka run --announce-table 100` with a virtual server no
//!   `vrrp_instance` owns (UDP, `lb_algo mh`, `lb_kind DR`, 4 real servers) and XDP in native
//!   mode on both veths; ka puts `VIP/32 dev lo` in table 100, BIRD learns it and announces it
//!   with next hop self. The real servers 198.18.75.11-14 sit behind each director's `out`
//!   with permanent neighbour entries (the sink's MAC): a frame reaches the sink only if a
//!   director forwarded it.
//! - **sink** counts and drops every frame with `ka_xdp_sink`, one veth per director, so each
//!   director's share is that veth's received frames.
//!
//! N directors: the router's BIRD disables the BGP sessions of the others, and the run waits
//! until the kernel route has exactly the N next hops before measuring.
//!
//! # CPUs
//!
//! Every receive path runs in a threaded-NAPI kernel thread, pinned and SCHED_FIFO (downstream
//! first: sinks 60, directors 55, router 50); the generator runs at nice -20, so the load of the
//! rest of the machine takes little from it. A thread's CPU time is its run time
//! (`/proc/PID/schedstat`) over the measured interval, so the per-core figures hold whatever
//! else runs on the machine.
//!
//! - With at least 5 CPUs: the generator and the sinks on CPU 0, the router on CPU 1, each
//!   director on a CPU of its own (2, 3, 4).
//! - With fewer: the generator and the router share CPU 0 (the router preempts the generator,
//!   so the generator offers what the router can forward instead of overflowing its ring while
//!   it waits for a wake-up from another CPU, which costs tens of microseconds on a nested VM),
//!   and every director and the sinks share CPU 1. The aggregate is then bound by CPU 0 (the
//!   generator and the kernel's forwarding cost more per frame than a director), so the
//!   scaling factor says what adding directors costs, not what it adds; the director-side
//!   columns (directors' CPU, Mpps per director core) are what would scale with a core each.
//!
//! `KA_BGP_ROUTER_CPU`, `KA_BGP_SINK_CPU` and `KA_BGP_DIRECTOR_CPU` override the placement;
//! `KA_BGP_DEBUG=1` prints every veth's non-zero `ethtool -S` counters after each run.

mod live;

use std::{
    path::PathBuf,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use aya::Ebpf;
use ka_common::bench::SINK_PROGRAM;
use ka_tests::{
    bird::Bird,
    daemon::KaDaemon,
    ka_bin,
    netns::{veth, Netns},
    unique_name, wait_for,
};
use live::{mac, nap, napi_thread, pin, realtime, run_ns, xdp_rx_packets};

/// Directors in the topology; runs use the first 1, 2, ... of them.
const MAX_DIRECTORS: usize = 3;
/// Flows (UDP source ports) the generator cycles through: enough for the router's hash to
/// spread them over three next hops.
const FLOWS: u32 = 64;
/// The service, announced by every director.
const VIP: &str = "198.18.76.100";
/// The service's port (the real servers listen on the same one).
const PORT: u16 = 53;
/// The generator's address.
const CLIENT: &str = "198.18.70.2";
/// The router's address on the generator's link (and its BGP router id).
const ROUTER_IN: &str = "198.18.70.1";
/// The real servers, behind every director.
const RS: [&str; 4] = ["198.18.75.11", "198.18.75.12", "198.18.75.13", "198.18.75.14"];
/// The table ka announces into (`--announce-table`).
const TABLE: &str = "100";
/// Warm-up before each measured interval.
const WARMUP: Duration = Duration::from_secs(1);
/// The longest wait for BGP to converge, a daemon or a table.
const CONVERGE: Duration = Duration::from_secs(60);
/// The generator's and the sinks' CPU.
const GEN_CPU: usize = 0;
/// The generator's nice value: on a machine busy with other work it still gets most of its
/// CPU, so the run measures the topology rather than the machine's load.
const GEN_NICE: i32 = -20;
/// The router's CPU on a machine with at least 5 CPUs (it shares [`GEN_CPU`] on smaller ones).
const ROUTER_CPU: usize = 1;
/// The directors' and the sinks' CPU on a machine with fewer than 5 CPUs.
const SHARED_CPU: usize = 1;

/// Director `i`'s (0-based) address on its link to the router.
fn director_addr(i: usize) -> String {
    format!("198.18.{}.1", 71 + i)
}

/// The router's address on its link to director `i`.
fn router_addr(i: usize) -> String {
    format!("198.18.{}.254", 71 + i)
}

/// Where the receive threads run (the generator is on [`GEN_CPU`]).
#[derive(Clone, Debug)]
struct Placement {
    router: usize,
    sinks: usize,
    directors: [usize; MAX_DIRECTORS],
}

impl Placement {
    /// The default for a machine with `cpus` CPUs (module doc), with `KA_BGP_ROUTER_CPU`,
    /// `KA_BGP_SINK_CPU` and `KA_BGP_DIRECTOR_CPU` (one CPU for every director) overriding it.
    fn new(cpus: usize) -> Placement {
        let mut p = if cpus >= 2 + MAX_DIRECTORS {
            Placement { router: ROUTER_CPU, sinks: GEN_CPU, directors: std::array::from_fn(|i| 2 + i) }
        } else {
            Placement { router: GEN_CPU, sinks: SHARED_CPU, directors: [SHARED_CPU; MAX_DIRECTORS] }
        };
        let var = |name: &str| std::env::var(name).ok().map(|v| v.parse::<usize>().unwrap_or_else(|_| panic!("{name}={v}: not a CPU number")));
        if let Some(c) = var("KA_BGP_ROUTER_CPU") {
            p.router = c;
        }
        if let Some(c) = var("KA_BGP_SINK_CPU") {
            p.sinks = c;
        }
        if let Some(c) = var("KA_BGP_DIRECTOR_CPU") {
            p.directors = [c; MAX_DIRECTORS];
        }
        for c in [p.router, p.sinks].iter().chain(&p.directors) {
            assert!(*c < cpus, "CPU {c} does not exist ({cpus} CPUs)");
        }
        p
    }

    fn describe(&self) -> String {
        let d: Vec<String> = self.directors.iter().map(usize::to_string).collect();
        format!("generator on CPU {GEN_CPU}, router on CPU {}, directors on CPU {}, sinks on CPU {}", self.router, d.join("/"), self.sinks)
    }
}

/// A director's BIRD: learns ka's routes from the table, announces them with next hop self.
fn director_bird(i: usize) -> String {
    let (me, router) = (director_addr(i), router_addr(i));
    format!(
        "router id {me};\nprotocol device {{ }}\n\
protocol kernel ka4 {{ ipv4 {{ import all; export none; }}; kernel table {TABLE}; learn; }}\n\
protocol bgp uplink {{ local {me} as 65001; neighbor {router} as 65000; hold time 3; keepalive time 1; connect retry time 1;\n \
ipv4 {{ import none; export all; next hop self; }}; }}\n"
    )
}

/// The router's BIRD: one session per director (`dr1`...), every path merged into one ECMP
/// kernel route.
fn router_bird() -> String {
    let mut s = format!("router id {ROUTER_IN};\nprotocol device {{ }}\nprotocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}\n");
    for i in 0..MAX_DIRECTORS {
        s.push_str(&format!(
            "protocol bgp dr{} {{ local {} as 65000; neighbor {} as 65001; hold time 3; keepalive time 1; connect retry time 1;\n \
ipv4 {{ import all; export none; }}; }}\n",
            i + 1,
            router_addr(i),
            director_addr(i)
        ));
    }
    s
}

/// The directors' configuration: one active-active virtual server (no `vrrp_instance`).
fn ka_conf() -> PathBuf {
    let rs: String = RS.iter().map(|a| format!(" real_server {a} {PORT} {{\n  weight 1\n }}\n")).collect();
    let text = format!("virtual_server {VIP} {PORT} {{\n lb_algo mh\n mh-port\n lb_kind DR\n protocol UDP\n{rs}}}\n");
    let dir = std::env::temp_dir().join(unique_name("kbgpb"));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join("ka.conf");
    std::fs::write(&p, text).expect("write");
    p
}

/// The router's next hops to the VIP, sorted.
fn hops(router: &Netns) -> Vec<String> {
    let text = router.run(&["ip", "-4", "route", "show", VIP]).unwrap_or_default();
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut h: Vec<String> = words.windows(2).filter(|w| w[0] == "via").map(|w| w[1].to_owned()).collect();
    h.sort();
    h
}

/// One director: its namespace, interface names, daemon and BIRD. Field order is drop order.
struct Director {
    ka: Option<KaDaemon>,
    bird: Option<Bird>,
    ns: Netns,
    /// Its veth from the router (named uniquely on the machine: it names the NAPI thread).
    dev_in: String,
    /// The sink's veth from this director (in the sink's namespace).
    sink_dev: String,
}

/// The whole topology (module doc). Field order is drop order: the bench programs are detached
/// inside the sink's namespace first (in `Drop`), then the daemons and BIRDs stop, then the
/// namespaces go.
struct Topo {
    progs: Option<Ebpf>,
    router_bird: Option<Bird>,
    directors: Vec<Director>,
    gen: Netns,
    router: Netns,
    sink: Netns,
    router_in: String,
    conf: PathBuf,
}

impl Drop for Topo {
    fn drop(&mut self) {
        if let Some(p) = self.progs.take() {
            live::drop_in(&self.sink, p);
        }
        if let Some(dir) = self.conf.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Topo {
    fn new() -> Topo {
        // Unique interface names: they name the NAPI threads, which are global.
        let tag = format!("kg{}", std::process::id() % 10_000);
        let gen = Netns::new("bg").expect("netns");
        let router = Netns::new("br").expect("netns");
        let sink = Netns::new("bs").expect("netns");
        let router_in = format!("{tag}r");
        veth(&gen, "eth0", &[&format!("{CLIENT}/24")], &router, &router_in, &[&format!("{ROUTER_IN}/24")]).expect("veth");
        router.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"]).expect("router sysctls");
        live::threaded_napi(&router, &router_in);
        let mut directors = Vec::new();
        for i in 0..MAX_DIRECTORS {
            let ns = Netns::new("bd").expect("netns");
            let (dev_in, sink_dev) = (format!("{tag}d{}", i + 1), format!("{tag}s{}", i + 1));
            veth(&router, &format!("rd{}", i + 1), &[&format!("{}/24", router_addr(i))], &ns, &dev_in, &[&format!("{}/24", director_addr(i))])
                .expect("veth");
            veth(&ns, "out", &["198.18.75.1/24"], &sink, &sink_dev, &[]).expect("veth");
            ns.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]).expect("forwarding");
            let lladdr = mac(&sink, &sink_dev).map(|b| format!("{b:02x}")).join(":");
            for rs in RS {
                ns.run(&["ip", "neigh", "replace", rs, "lladdr", &lladdr, "dev", "out", "nud", "permanent"]).expect("neigh");
            }
            live::threaded_napi(&ns, &dev_in);
            live::threaded_napi(&sink, &sink_dev);
            directors.push(Director { ka: None, bird: None, ns, dev_in, sink_dev });
        }
        let mut t = Topo { progs: None, router_bird: None, directors, gen, router, sink, router_in, conf: ka_conf() };
        let mut ebpf = live::load_programs();
        for d in &t.directors {
            live::attach(&t.sink, &mut ebpf, SINK_PROGRAM, &d.sink_dev);
        }
        t.progs = Some(ebpf);
        t
    }

    /// Starts BIRD on the router and ka + BIRD on every director, and waits until the router's
    /// route to the VIP goes through all of them.
    fn start(&mut self) {
        self.router_bird = Some(Bird::start(&self.router, &router_bird()).expect("the router's BIRD"));
        let conf = self.conf.to_str().expect("utf-8").to_owned();
        for (i, d) in self.directors.iter_mut().enumerate() {
            d.bird = Some(Bird::start(&d.ns, &director_bird(i)).expect("a director's BIRD"));
            // Native mode on purpose, for speed, as in the e2e benchmark: the sink's veths run
            // XDP programs, so the frames ka redirects to `out` are delivered.
            let args = ["-f", &conf, "--iface", &d.dev_in, "--iface", "out", "--xdp-mode", "native", "--announce-table", TABLE, "--announce-drain", "0"];
            let ka = KaDaemon::start(&d.ns, &ka_bin(), &unique_name("bgpb"), &args).expect("ka run");
            d.ka = Some(ka);
        }
        for (i, d) in self.directors.iter().enumerate() {
            let ka = d.ka.as_ref().expect("started");
            wait_for(&format!("dr{}: every real server in the table", i + 1), CONVERGE, || {
                let st = ka.status_json().ok()?;
                let b = st["services"][0]["backends"].as_array()?.clone();
                (b.len() == RS.len() && b.iter().all(|b| b["in_table"] == true)).then_some(())
            });
            let st = ka.status_json().expect("status");
            let modes = st["xdp"].as_array().expect("xdp attachments");
            assert!(modes.len() == 2 && modes.iter().all(|a| a["mode"] == "native"), "ka must attach natively: {st}");
        }
        self.use_directors(MAX_DIRECTORS).expect("interrupted");
    }

    /// Leaves the first `n` directors in the router's ECMP route (the router's BIRD disables
    /// the others' sessions) and waits until the kernel route has exactly their next hops.
    /// `None` if a signal asked to stop.
    fn use_directors(&self, n: usize) -> Option<()> {
        let bird = self.router_bird.as_ref().expect("router BIRD");
        for i in 0..MAX_DIRECTORS {
            let verb = if i < n { "enable" } else { "disable" };
            bird.cli(&format!("{verb} dr{}", i + 1)).expect("birdcl");
        }
        let mut want: Vec<String> = (0..n).map(director_addr).collect();
        want.sort();
        let start = Instant::now();
        while hops(&self.router) != want {
            assert!(start.elapsed() < CONVERGE, "the router's route to {VIP} never went through {want:?}: {:?}\n{}", hops(&self.router), bird.log_text());
            if !nap(Duration::from_millis(100)) {
                return None;
            }
        }
        Some(())
    }
}

/// What one run with N directors measured (rates per second of wall time).
#[derive(Clone, Debug)]
struct Row {
    directors: usize,
    secs: f64,
    /// Frames the generator sent.
    offered: f64,
    /// Frames the router took off its ingress ring.
    received: f64,
    /// Frames the sink counted, all directors.
    delivered: f64,
    /// Frames the sink counted, split over the directors in proportion to what each director's
    /// sink veth received.
    per_director: Vec<f64>,
    /// CPU of the router's NAPI thread (1.0: one core).
    router_cpu: f64,
    /// CPU of each director's NAPI thread.
    director_cpu: Vec<f64>,
}

impl Row {
    fn directors_cpu(&self) -> f64 {
        self.director_cpu.iter().sum()
    }

    /// Frames delivered per second of director CPU.
    fn per_director_core(&self) -> f64 {
        let c = self.directors_cpu();
        if c > 0.0 {
            self.delivered / c
        } else {
            0.0
        }
    }
}

/// A snapshot of every counter the rows are made of.
struct Sample {
    at: Instant,
    sent: u64,
    router_rx: u64,
    sink: u64,
    per_sink: Vec<u64>,
    router_ns: u64,
    director_ns: Vec<u64>,
}

fn sample(t: &Topo, progs: &Ebpf, sent: &AtomicU64, router_napi: libc::pid_t, director_napi: &[libc::pid_t]) -> Sample {
    // The cheap reads first, with the timestamp; then the `ethtool` ones, which take a process
    // each (the per-director counts only split the sink's total, so their skew cancels out).
    let (at, sent, sink) = (Instant::now(), sent.load(Ordering::Relaxed), live::sink_packets(progs));
    let router_ns = run_ns(router_napi);
    let director_ns = director_napi.iter().map(|&p| run_ns(p)).collect();
    Sample {
        at,
        sent,
        sink,
        router_ns,
        director_ns,
        router_rx: xdp_rx_packets(&t.router, &t.router_in),
        per_sink: t.directors.iter().map(|d| xdp_rx_packets(&t.sink, &d.sink_dev)).collect(),
    }
}

/// Measures with the first `n` directors in the route.
fn measure(t: &Topo, n: usize, frame: &[u8], secs: Duration, router_napi: libc::pid_t, director_napi: &[libc::pid_t]) -> Option<Row> {
    t.use_directors(n)?;
    let progs = t.progs.as_ref().expect("programs");
    let stop = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    std::thread::scope(|s| {
        let g = s.spawn(|| live::generate(&t.gen, "eth0", progs, frame, GEN_CPU, GEN_NICE, &stop, &sent));
        let row = (|| {
            if !nap(WARMUP) {
                return None;
            }
            let a = sample(t, progs, &sent, router_napi, director_napi);
            if !nap(secs) {
                return None;
            }
            let b = sample(t, progs, &sent, router_napi, director_napi);
            let wall = (b.at - a.at).as_secs_f64();
            let rate = |x: u64, y: u64| (y - x) as f64 / wall;
            Some(Row {
                directors: n,
                secs: wall,
                offered: rate(a.sent, b.sent),
                received: rate(a.router_rx, b.router_rx),
                delivered: rate(a.sink, b.sink),
                per_director: split(rate(a.sink, b.sink), &a.per_sink.iter().zip(&b.per_sink).map(|(&x, &y)| y - x).collect::<Vec<_>>()),
                router_cpu: rate(a.router_ns, b.router_ns) / 1e9,
                director_cpu: a.director_ns.iter().zip(&b.director_ns).map(|(&x, &y)| rate(x, y) / 1e9).collect(),
            })
        })();
        stop.store(true, Ordering::SeqCst);
        g.join().expect("generator thread");
        if std::env::var_os("KA_BGP_DEBUG").is_some() {
            let mut devs = vec![(&t.gen, "eth0".to_owned()), (&t.router, t.router_in.clone())];
            for (i, d) in t.directors.iter().enumerate() {
                devs.extend([(&t.router, format!("rd{}", i + 1)), (&d.ns, d.dev_in.clone()), (&d.ns, "out".to_owned()), (&t.sink, d.sink_dev.clone())]);
            }
            for (ns, dev) in devs {
                let stats = ns.run(&["ethtool", "-S", &dev]).unwrap_or_default();
                let nonzero: Vec<&str> = stats.lines().map(str::trim).filter(|l| !l.ends_with(": 0") && l.contains(':')).collect();
                eprintln!("{dev}: {}", nonzero.join(", "));
            }
            eprintln!("{}", std::fs::read_to_string("/proc/softirqs").unwrap_or_default());
        }
        row
    })
}

/// Splits `total` in proportion to `counts`.
fn split(total: f64, counts: &[u64]) -> Vec<f64> {
    let sum: u64 = counts.iter().sum();
    counts.iter().map(|&c| if sum > 0 { total * c as f64 / sum as f64 } else { 0.0 }).collect()
}

fn env_u64(name: &str, default: u64, max: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default).clamp(1, max)
}

fn main() {
    ka_tests::require_root();
    assert!(!ka::EBPF_OBJECT.is_empty(), "the ka library was built with KA_SKIP_EBPF=1: no eBPF object");
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(cpus >= 2, "needs 2 CPUs");
    assert!(std::path::Path::new("/usr/sbin/bird").exists(), "needs BIRD 2 (/usr/sbin/bird): run `cargo xtask setup`");
    live::catch_signals();
    let secs = Duration::from_secs(env_u64("KA_BGP_SECS", 3, 60));
    let rounds = env_u64("KA_BGP_ROUNDS", 3, 9) as usize;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?").to_owned();

    eprintln!("bgp: namespaces, BIRD on the router and {MAX_DIRECTORS} directors, ka on each (the XDP verifier takes seconds)");
    let mut t = Topo::new();
    t.start();
    let frame = live::udp_frame(CLIENT, VIP, PORT, mac(&t.gen, "eth0"), mac(&t.router, &t.router_in));
    live::set_template(t.progs.as_mut().expect("programs"), &frame, FLOWS);
    let router_napi = napi_thread(&t.router_in);
    let place = Placement::new(cpus);
    eprintln!("bgp: {}", place.describe());
    pin(router_napi, place.router);
    realtime(router_napi, 50);
    let mut director_napi = Vec::new();
    for (i, d) in t.directors.iter().enumerate() {
        let p = napi_thread(&d.dev_in);
        pin(p, place.directors[i]);
        realtime(p, 55);
        director_napi.push(p);
        let s = napi_thread(&d.sink_dev);
        pin(s, place.sinks);
        realtime(s, 60);
    }

    let mut rows: Vec<Row> = Vec::new();
    for round in 0..rounds {
        for n in 1..=MAX_DIRECTORS {
            eprintln!("bgp: round {}/{rounds}: {n} director(s)", round + 1);
            let Some(r) = measure(&t, n, &frame, secs, router_napi, &director_napi) else {
                eprintln!("bgp: interrupted; namespaces removed");
                drop(t);
                std::process::exit(130);
            };
            assert!(r.delivered > 0.0, "{n} director(s): nothing reached the real servers");
            let shares: Vec<String> = r.per_director[..n].iter().map(|d| format!("{:.2}", d / 1e6)).collect();
            eprintln!(
                "bgp:   {:.2} Mpps delivered ({} per director), router CPU {:.0} %, directors' CPU {:.0} %",
                r.delivered / 1e6,
                shares.join(" + "),
                r.router_cpu * 100.0,
                r.directors_cpu() * 100.0
            );
            match rows.iter_mut().find(|b| b.directors == n) {
                Some(best) if best.delivered >= r.delivered => {}
                Some(best) => *best = r,
                None => rows.push(r),
            }
        }
    }
    for (i, d) in t.directors.iter_mut().enumerate() {
        if let Some(ka) = d.ka.take() {
            ka.stop().unwrap_or_else(|e| panic!("dr{}: ka stops cleanly: {e:#}", i + 1));
        }
    }
    drop(t);

    let base = rows.first().map_or(0.0, |r| r.delivered);
    println!();
    println!("| directors | offered Mpps | router received Mpps | delivered Mpps | × 1 director | per director Mpps | router CPU | router ns/packet | directors' CPU | director ns/packet | Mpps per director core |");
    println!("|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|");
    let mut json = Vec::new();
    for r in &rows {
        let scaling = if base > 0.0 { r.delivered / base } else { 0.0 };
        let shares: Vec<String> = r.per_director[..r.directors].iter().map(|d| format!("{:.2}", d / 1e6)).collect();
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.0} % | {:.0} | {:.0} % | {:.0} | {:.2} |",
            r.directors,
            r.offered / 1e6,
            r.received / 1e6,
            r.delivered / 1e6,
            scaling,
            shares.join(" / "),
            r.router_cpu * 100.0,
            r.router_cpu * 1e9 / r.received.max(1.0),
            r.directors_cpu() * 100.0,
            1e9 / r.per_director_core(),
            r.per_director_core() / 1e6
        );
        json.push(serde_json::json!({
            "directors": r.directors,
            "mpps": r.delivered / 1e6,
            "scaling": scaling,
            "offered_mpps": r.offered / 1e6,
            "router_received_mpps": r.received / 1e6,
            "per_director_mpps": r.per_director[..r.directors].iter().map(|d| d / 1e6).collect::<Vec<f64>>(),
            "router_cpu": r.router_cpu,
            "director_cpu": r.director_cpu[..r.directors].to_vec(),
            "mpps_per_director_core": r.per_director_core() / 1e6,
        }));
    }
    println!();
    println!(
        "Scaling with {MAX_DIRECTORS} directors: {:.2}x one director. Best of {rounds} rounds of {:.1} s per N, 60-byte UDP frames, {FLOWS} flows, \
         router forwarding in the kernel (ECMP, L4 hash); {} ({cpus} CPUs); \
         load average {load} at the start. Reproduce: `cargo xtask bench --only bgp`.",
        rows.last().map_or(0.0, |r| r.delivered) / base.max(1.0),
        rows.first().map_or(0.0, |r| r.secs),
        place.describe(),
    );
    if let Some(path) = std::env::var_os("KA_BGP_JSON") {
        let text = serde_json::to_string_pretty(&serde_json::Value::Array(json)).expect("json");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", PathBuf::from(&path).display()));
    }
}
