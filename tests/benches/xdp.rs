//! XDP datapath benchmark through BPF_PROG_TEST_RUN: mean ns/packet of `ka_xdp` per path, next
//! to the floor (`ka_xdp_tx`: swap MACs, `XDP_TX`). Reproduce with `cargo xtask bench` (or
//! `cargo bench -p ka-tests --bench xdp` as root). Prints a Markdown table.
//!
//! The load-balancer paths run inside a namespace with a veth, a route and a permanent
//! neighbour, so `bpf_fib_lookup` answers as in production (first packet; then the per-backend
//! next-hop cache), with the destination-MAC check on as `ka run` turns it on (the frames'
//! MAC, and the next hop's a repeated frame carries once rewritten, are local). Paths whose output is a valid input of the same path (pass, DR rewrite,
//! steady VRRP drop, the floor) repeat one frame in the kernel (repeat = 1M). A new flow cannot
//! repeat as such (its second run is established), so new flows run through
//! `ka_xdp_bench_new_flow`, the same logic preceded by an in-place bump of the source port (and
//! address on wrap): BPF_PROG_TEST_RUN reuses the buffer between repetitions, so each one is a
//! new 5-tuple, scheduled by Maglev and inserted in the connection table. Two phases: while the
//! table fills, and with the table full (every insert evicts the least recently used entry of
//! this CPU's LRU list, the steady state of a SYN flood). The least-connection schedulers' new
//! flows (`lc`, `wlc`: a walk over the candidates' counts, the new flow counted) are timed
//! against Maglev's on the same service of 4 and of 64 real servers, all weighted.
//!
//! Every row is the minimum of [`ROUNDS`] timed runs (the machine is shared) and carries a
//! stable id (`floor`, `dr_established`, `dr_new_filling`, `dr_new_full`, `nonvip`,
//! `vrrp_steady`, `sched_maglev_4`...): `cargo xtask bench --only xdp` sets some of them side by
//! side with the reference load balancer (xtask's `report::XDP_PAIRS`). A second pass with the kernel's run-time statistics on (`BPF_ENABLE_STATS`,
//! held by a file descriptor, so they are off again when the bench ends, even on a panic; the
//! timed pass runs without them, as they add two clock reads per run) reads each row's
//! `run_cnt`/`run_time_ns` (the fields `bpftool prog show` prints), and the programs' xlated
//! and JIT sizes and verified instructions are listed. With `KA_BENCH_JSON=FILE` the rows are
//! also written to FILE as JSON (`{"rows": [{"id", "path", "ns", "how"}], "programs": [...]}`),
//! for `cargo xtask bench` and its `--report`. `KA_BENCH_ONLY=ID,...` runs only those rows.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use ka::lb::{
    vrrp_fast::{self, FastParams, KnownMaster},
    writer::MapWriter,
    BackendSpec, DesiredState, L4Proto, Method, Scheduler, ServiceSpec,
};
use ka_common::{
    lb::{BENCH_NEW_FLOW_PROGRAM, CONN_TABLE_SIZE, XDP_TX_PROGRAM},
    maps::XDP_PROGRAM,
    vrrp::Family,
};
use ka_tests::{netns::Netns, packet::Frame};

/// Repetitions of a repeated frame per timed run (`KA_BENCH_REPEAT` overrides it, e.g. for a
/// long run under `perf record`).
static REPEAT: std::sync::LazyLock<u32> =
    std::sync::LazyLock::new(|| std::env::var("KA_BENCH_REPEAT").ok().and_then(|r| r.parse().ok()).unwrap_or(1_000_000));
/// Timed runs per row; the row is their minimum.
const ROUNDS: u32 = 3;
/// New flows timed while the connection table fills: a quarter of this CPU's share of it.
const NEW_FLOWS_FILLING: u32 = CONN_TABLE_SIZE / 8;

/// One row of the table.
struct Row {
    /// Stable id (see the module doc).
    id: String,
    path: String,
    /// Minimum over the rounds, ns per run (BPF_PROG_TEST_RUN's own figure).
    ns: f64,
    how: String,
    /// The program the row runs.
    prog: &'static str,
    /// `run_time_ns / run_cnt` over one extra run with the kernel's statistics on.
    stats_ns: Option<f64>,
}

/// What the kernel says about one loaded program.
struct ProgInfo {
    name: &'static str,
    xlated_insns: u32,
    jited_bytes: u32,
    verified_insns: u32,
}

/// One timed measurement: `f(round)` gives the ns of a run; the minimum over [`ROUNDS`].
fn min_of(mut f: impl FnMut(u32) -> f64) -> f64 {
    (0..ROUNDS).map(&mut f).fold(f64::INFINITY, f64::min)
}

/// Whether the row `id` runs: every row, or those `KA_BENCH_ONLY` lists (comma-separated ids,
/// for profiling one path).
fn wanted(id: &str) -> bool {
    std::env::var("KA_BENCH_ONLY").map_or(true, |only| only.split(',').any(|k| k == id))
}

fn main() {
    let ns = Netns::new("lbbench").expect("netns");
    for c in [
        "ip link add lb0 type veth peer name lb0p",
        "ip link set lb0 up",
        "ip link set lb0p up",
        "ip addr add 10.1.0.1/24 dev lb0",
        "sysctl -qw net.ipv4.conf.all.forwarding=1",
        "ip neigh replace 10.1.0.10 lladdr 02:00:00:00:10:10 dev lb0 nud permanent",
    ] {
        ns.run(&c.split(' ').collect::<Vec<_>>()).expect(c);
    }
    // Neighbours of the scheduler rows' real servers 10.1.0.100..=10.1.0.163.
    for i in 0..64u8 {
        let (a, m) = (format!("10.1.0.{}", 100 + u16::from(i)), format!("02:00:00:00:11:{i:02x}"));
        ns.run(&["ip", "neigh", "replace", &a, "lladdr", &m, "dev", "lb0", "nud", "permanent"]).expect("neighbour");
    }
    let (rows, progs) = ns.enter(run).expect("enter").join().expect("bench thread");
    println!();
    println!("| path | ns/packet | x floor | ns/run, bpf_stats | how | program |");
    println!("|---|---:|---:|---:|---|---|");
    let floor = rows[0].ns;
    for r in &rows {
        println!(
            "| {} | {:.1} | {:.1} | {} | {} | {} |",
            r.path,
            r.ns,
            r.ns / floor,
            r.stats_ns.map_or("-".into(), |s| format!("{s:.1}")),
            r.how,
            r.prog
        );
    }
    println!();
    println!("| program | xlated insns | JIT bytes | verified insns |");
    println!("|---|---:|---:|---:|");
    for p in &progs {
        println!("| {} | {} | {} | {} |", p.name, p.xlated_insns, p.jited_bytes, p.verified_insns);
    }
    if let Some(path) = std::env::var_os("KA_BENCH_JSON") {
        let json = serde_json::json!({
            "rows": rows.iter().map(|r| serde_json::json!({ "id": r.id, "path": r.path, "ns": r.ns, "how": r.how })).collect::<Vec<_>>(),
            "programs": progs.iter().map(|p| serde_json::json!({
                "name": p.name, "xlated_insns": p.xlated_insns, "jited_bytes": p.jited_bytes,
                "verified_insns": p.verified_insns,
            })).collect::<Vec<_>>(),
        });
        std::fs::write(&path, json.to_string()).expect("writing KA_BENCH_JSON");
    }
}

/// A loaded program's kernel info.
fn info(l: &common::Loaded, name: &'static str) -> aya::programs::ProgramInfo {
    let prog: &aya::programs::Xdp = l.ebpf.program(name).expect("program").try_into().expect("xdp");
    prog.info().expect("program info")
}

fn prog_info(l: &common::Loaded, name: &'static str) -> ProgInfo {
    let i = info(l, name);
    ProgInfo {
        name,
        xlated_insns: i.size_translated().unwrap_or(0) / 8,
        jited_bytes: i.size_jitted(),
        verified_insns: i.verified_instruction_count().unwrap_or(0),
    }
}

/// `run_time_ns / run_cnt` of program `name` over `f()` (statistics on).
fn stats_ns(l: &common::Loaded, name: &'static str, f: impl FnOnce()) -> Option<f64> {
    let before = info(l, name);
    f();
    let after = info(l, name);
    let runs = after.run_count().checked_sub(before.run_count())?;
    let t = after.run_time().checked_sub(before.run_time())?;
    (runs > 0).then(|| t.as_nanos() as f64 / runs as f64)
}

fn run() -> (Vec<Row>, Vec<ProgInfo>) {
    let ifindex = nix::net::if_::if_nametoindex("lb0").expect("lb0");
    let mut rows = Vec::new();
    let rep = format!("repeat {}, min of {ROUNDS}", *REPEAT);
    let mut progs = Vec::new();

    // The floor, both ways.
    let tx = common::Loaded::program(XDP_TX_PROGRAM);
    let probe = Frame::tcp4("198.18.0.1", "198.51.100.1", 40000, 80, 0x10).build();
    let floor = min_of(|_| tx.time_on(&probe, ifindex, *REPEAT));
    let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS");
    let floor_stats = stats_ns(&tx, XDP_TX_PROGRAM, || {
        tx.time_on(&probe, ifindex, *REPEAT);
    });
    drop(stats);
    rows.push(Row {
        id: "floor".into(),
        path: "floor: ka_xdp_tx (swap MACs, XDP_TX)".into(),
        ns: floor,
        how: rep.clone(),
        prog: XDP_TX_PROGRAM,
        stats_ns: floor_stats,
    });
    progs.push(prog_info(&tx, XDP_TX_PROGRAM));
    drop(tx);

    let mut loaded = common::Loaded::new();
    let mut spec = ServiceSpec {
        vip: "198.51.100.1".parse().expect("vip"),
        port: 80,
        proto: L4Proto::Tcp,
        scheduler: Scheduler::Maglev,
        persistence: None,
        master_slot: None,
        backends: (10..14)
            .map(|i| BackendSpec {
                addr: format!("10.1.0.{i}").parse().expect("rs"),
                port: 80,
                weight: 1,
                method: Method::Dr,
                healthy: true,
                uthreshold: 0,
                lthreshold: 0,
            })
            .collect(),
        options: Default::default(),
    };
    // Only 10.1.0.10 has a neighbour: keep the flows on it by giving the others weight 0.
    for b in spec.backends.iter_mut().skip(1) {
        b.weight = 0;
    }
    let desired = DesiredState {
        services: vec![spec],
        ..Default::default()
    };
    MapWriter::new()
        .apply(&mut loaded.ebpf, &desired)
        .expect("apply");
    // The destination-MAC check `ka run` turns on (its interfaces' MACs): the frames' MAC, and
    // the real server's next hop, which a repeated frame carries once rewritten.
    let local: std::collections::BTreeSet<[u8; 6]> = [ka_tests::packet::MAC_B, [0x02, 0, 0, 0, 0x10, 0x10]].into_iter().collect();
    assert_eq!(ka::lb::local_macs::install(&mut loaded.ebpf, &local).expect("local MACs"), 2);

    // New flows: a new 5-tuple on every repetition, from a source address of its own in each
    // round (the bench program bumps the port, and the address's low 16 bits on wrap).
    loaded.load_also(BENCH_NEW_FLOW_PROGRAM);
    let syn = |a: &str| Frame::tcp4(a, "198.51.100.1", 1024, 80, 0x02).build();
    if wanted("dr_new_filling") {
        let filling = min_of(|r| {
            loaded.time_program_on(BENCH_NEW_FLOW_PROGRAM, &syn(&format!("198.18.{r}.2")), ifindex, NEW_FLOWS_FILLING)
        });
        rows.push(Row {
            id: "dr_new_filling".into(),
            path: "tcp4 DR new flow (SYN, Maglev), table filling".into(),
            ns: filling,
            how: format!("{NEW_FLOWS_FILLING} new flows in one run (ka_xdp_bench_new_flow), min of {ROUNDS}"),
            prog: BENCH_NEW_FLOW_PROGRAM,
            stats_ns: None,
        });
    }
    if wanted("dr_new_full") {
        // Fill the table (this CPU's share of it, twice over) from 198.18.128.0/17, then time
        // flows from 198.19.0.0/16: none of them is in the table.
        let _ = loaded.time_program_on(BENCH_NEW_FLOW_PROGRAM, &syn("198.18.128.2"), ifindex, CONN_TABLE_SIZE);
        let full = min_of(|r| {
            loaded.time_program_on(BENCH_NEW_FLOW_PROGRAM, &syn(&format!("198.19.{}.2", r * 32)), ifindex, *REPEAT)
        });
        let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS");
        let full_stats = stats_ns(&loaded, BENCH_NEW_FLOW_PROGRAM, || {
            loaded.time_program_on(BENCH_NEW_FLOW_PROGRAM, &syn("198.19.128.2"), ifindex, *REPEAT);
        });
        drop(stats);
        rows.push(Row {
            id: "dr_new_full".into(),
            path: "tcp4 DR new flow (SYN, Maglev), table full".into(),
            ns: full,
            how: format!("{rep} after {CONN_TABLE_SIZE} flows filled the table; each insert evicts"),
            prog: BENCH_NEW_FLOW_PROGRAM,
            stats_ns: full_stats,
        });
    }

    // New flows by scheduler: Maglev against the least-connection walk, 4 and 64 servers.
    for servers in [4u16, 64] {
        for (name, sched) in [("Maglev", Scheduler::Maglev), ("lc", Scheduler::LeastConn), ("wlc", Scheduler::WeightedLeastConn)] {
            let id = format!("sched_{}_{servers}", name.to_lowercase());
            if !wanted(&id) {
                continue;
            }
            let mut l = common::Loaded::new();
            let spec = ServiceSpec {
                vip: "198.51.100.1".parse().expect("vip"),
                port: 80,
                proto: L4Proto::Tcp,
                scheduler: sched,
                persistence: None,
                master_slot: None,
                backends: (0..servers)
                    .map(|i| BackendSpec {
                        addr: format!("10.1.0.{}", 100 + i).parse().expect("rs"),
                        port: 80,
                        weight: 1,
                        method: Method::Dr,
                        healthy: true,
                        uthreshold: 0,
                        lthreshold: 0,
                    })
                    .collect(),
                options: Default::default(),
            };
            MapWriter::new().apply(&mut l.ebpf, &DesiredState { services: vec![spec], ..Default::default() }).expect("apply");
            l.load_also(BENCH_NEW_FLOW_PROGRAM);
            rows.push(Row {
                id,
                path: format!("tcp4 DR new flow (SYN, {name}, {servers} real servers), table filling"),
                ns: l.time_program_on(BENCH_NEW_FLOW_PROGRAM, &syn("198.18.0.2"), ifindex, NEW_FLOWS_FILLING),
                how: format!("{NEW_FLOWS_FILLING} new flows in one run (ka_xdp_bench_new_flow)"),
                prog: BENCH_NEW_FLOW_PROGRAM,
                stats_ns: None,
            });
        }
    }

    let est = Frame::tcp4("198.18.0.1", "198.51.100.1", 40000, 80, 0x10).build();
    let _ = loaded.run_on(&est, ifindex);
    if wanted("dr_established") {
        rows.push(timed(&loaded, "dr_established", "tcp4 DR established (conn hit)", &est, ifindex, &rep));
    }

    let nonvip = Frame::tcp4("198.18.0.1", "198.51.100.200", 40000, 80, 0x10).build();
    if wanted("nonvip") {
        rows.push(timed(&loaded, "nonvip", "tcp4 non-VIP pass (services loaded)", &nonvip, ifindex, &rep));
    }

    // VRRP steady state: the known master's advert, dropped in XDP.
    vrrp_fast::set_enabled(&mut loaded.ebpf, true, false).expect("fast path on");
    vrrp_fast::configure(
        &mut loaded.ebpf,
        ifindex,
        51,
        Family::V4,
        &FastParams {
            version: 3,
            check_ttl: true,
            drop_invalid: true,
            drop_steady: true,
            master: false,
            auth_pass: None,
            checksum: Default::default(),
            group_v4: None,
            adver_int: Duration::from_secs(1),
            local_priority: 100,
            local_addr: "10.1.0.1".parse().expect("addr"),
            known_master: Some(KnownMaster {
                addr: "10.1.0.2".parse().expect("addr"),
                priority: 150,
                adver_int: Duration::from_secs(1),
            }),
        },
    )
    .expect("configure");
    let advert = common::vrrp3_v4("10.1.0.2", 51, 150, 100, &["198.51.100.1"]);
    assert_eq!(loaded.run_on(&advert, ifindex).action, common::XDP_DROP);
    if wanted("vrrp_steady") {
        rows.push(timed(&loaded, "vrrp_steady", "VRRPv3 advert, steady state (dropped)", &advert, ifindex, &rep));
    }

    for (id, path, frame) in [
        (
            "syn_no_service",
            "tcp4 SYN, no service (parse + pass)",
            Frame::tcp4("198.18.0.1", "198.18.0.2", 40000, 80, 0x02).build(),
        ),
        (
            "udp6",
            "udp6 (parse + pass)",
            Frame::udp6("fd00:198:18::1", "fd00:198:18::2", 40000, 53).build(),
        ),
        (
            "arp",
            "arp (non-IP pass)",
            Frame::ether(0x0806).payload(&[0; 28]).build(),
        ),
    ] {
        if wanted(id) {
            rows.push(timed(&loaded, id, path, &frame, ifindex, &rep));
        }
    }
    progs.push(prog_info(&loaded, XDP_PROGRAM));
    progs.push(prog_info(&loaded, BENCH_NEW_FLOW_PROGRAM));
    (rows, progs)
}

/// A row of `ka_xdp` repeating one frame: timed, then run once more with statistics on.
fn timed(l: &common::Loaded, id: &str, path: &str, frame: &[u8], ifindex: u32, how: &str) -> Row {
    let ns = min_of(|_| l.time_on(frame, ifindex, *REPEAT));
    let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS");
    let stats_ns = stats_ns(l, XDP_PROGRAM, || {
        l.time_on(frame, ifindex, *REPEAT);
    });
    drop(stats);
    Row { id: id.into(), path: path.into(), ns, how: how.into(), prog: XDP_PROGRAM, stats_ns }
}
