//! XDP datapath benchmark through BPF_PROG_TEST_RUN: mean ns/packet of `ka_xdp` per path, next
//! to the floor (`ka_xdp_tx`: swap MACs, `XDP_TX`). Reproduce with `cargo xtask bench` (or
//! `cargo bench -p ka-tests --bench xdp` as root). Prints a Markdown table.
//!
//! The load-balancer paths run inside a namespace with a veth, a route and a permanent
//! neighbour, so `bpf_fib_lookup` answers as in production (first packet; then the per-backend
//! next-hop cache). Paths whose output is a valid input of the same path (pass, DR rewrite,
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
//! With `KA_BENCH_JSON=FILE` the rows are also written to FILE as JSON (`{"rows": [{"id",
//! "path", "ns", "how"}]}`), for `cargo xtask bench --report`.

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
    vrrp::Family,
};
use ka_tests::{netns::Netns, packet::Frame};

const REPEAT: u32 = 1_000_000;
/// New flows timed while the connection table fills: a quarter of this CPU's share of it.
const NEW_FLOWS_FILLING: u32 = CONN_TABLE_SIZE / 8;

struct Row {
    /// Stable key for the report (`floor`, `dr_established`, `dr_new_full`...).
    id: String,
    path: String,
    ns: f64,
    how: String,
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
    let rows = ns.enter(run).expect("enter").join().expect("bench thread");
    println!();
    println!("| path | ns/packet | x floor | how |");
    println!("|---|---:|---:|---|");
    let floor = rows[0].ns;
    for r in &rows {
        println!(
            "| {} | {:.1} | {:.1} | {} |",
            r.path,
            r.ns,
            r.ns / floor,
            r.how
        );
    }
    if let Some(path) = std::env::var_os("KA_BENCH_JSON") {
        let rows: Vec<_> = rows.iter().map(|r| serde_json::json!({ "id": r.id, "path": r.path, "ns": r.ns, "how": r.how })).collect();
        std::fs::write(&path, serde_json::json!({ "rows": rows }).to_string()).expect("writing KA_BENCH_JSON");
    }
}

fn run() -> Vec<Row> {
    let ifindex = nix::net::if_::if_nametoindex("lb0").expect("lb0");
    let mut rows = Vec::new();
    let rep = format!("repeat {REPEAT}");

    // The floor, both ways.
    let tx = common::Loaded::program(XDP_TX_PROGRAM);
    let probe = Frame::tcp4("198.18.0.1", "198.51.100.1", 40000, 80, 0x10).build();
    let floor = tx.time_on(&probe, ifindex, REPEAT);
    rows.push(Row {
        id: "floor".into(),
        path: "floor: ka_xdp_tx (swap MACs, XDP_TX)".into(),
        ns: floor,
        how: rep.clone(),
    });
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

    // New flows: a new 5-tuple on every repetition.
    loaded.load_also(BENCH_NEW_FLOW_PROGRAM);
    let syn = Frame::tcp4("198.18.0.2", "198.51.100.1", 1024, 80, 0x02).build();
    rows.push(Row {
        id: "dr_new_filling".into(),
        path: "tcp4 DR new flow (SYN, Maglev), table filling".into(),
        ns: loaded.time_program_on(BENCH_NEW_FLOW_PROGRAM, &syn, ifindex, NEW_FLOWS_FILLING),
        how: format!("{NEW_FLOWS_FILLING} new flows in one run (ka_xdp_bench_new_flow)"),
    });
    // Fill the table (this CPU's share of it, twice over) from 198.18.128.0/17, then time
    // flows from 198.19.0.0/16: none of them is in the table.
    let fill = Frame::tcp4("198.18.128.2", "198.51.100.1", 1024, 80, 0x02).build();
    let _ = loaded.time_program_on(BENCH_NEW_FLOW_PROGRAM, &fill, ifindex, CONN_TABLE_SIZE);
    let syn = Frame::tcp4("198.19.0.2", "198.51.100.1", 1024, 80, 0x02).build();
    rows.push(Row {
        id: "dr_new_full".into(),
        path: "tcp4 DR new flow (SYN, Maglev), table full".into(),
        ns: loaded.time_program_on(BENCH_NEW_FLOW_PROGRAM, &syn, ifindex, REPEAT),
        how: format!("{rep} after {CONN_TABLE_SIZE} flows filled the table; each insert evicts"),
    });

    // New flows by scheduler: Maglev against the least-connection walk, 4 and 64 servers.
    for servers in [4u16, 64] {
        for (name, sched) in [("Maglev", Scheduler::Maglev), ("lc", Scheduler::LeastConn), ("wlc", Scheduler::WeightedLeastConn)] {
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
            let syn = Frame::tcp4("198.18.0.2", "198.51.100.1", 1024, 80, 0x02).build();
            rows.push(Row {
                id: format!("sched_{}_{servers}", name.to_lowercase()),
                path: format!("tcp4 DR new flow (SYN, {name}, {servers} real servers), table filling"),
                ns: l.time_program_on(BENCH_NEW_FLOW_PROGRAM, &syn, ifindex, NEW_FLOWS_FILLING),
                how: format!("{NEW_FLOWS_FILLING} new flows in one run (ka_xdp_bench_new_flow)"),
            });
        }
    }

    let est = Frame::tcp4("198.18.0.1", "198.51.100.1", 40000, 80, 0x10).build();
    let _ = loaded.run_on(&est, ifindex);
    rows.push(Row {
        id: "dr_established".into(),
        path: "tcp4 DR established (conn hit)".into(),
        ns: loaded.time_on(&est, ifindex, REPEAT),
        how: rep.clone(),
    });

    let nonvip = Frame::tcp4("198.18.0.1", "198.51.100.200", 40000, 80, 0x10).build();
    rows.push(Row {
        id: "nonvip".into(),
        path: "tcp4 non-VIP pass (services loaded)".into(),
        ns: loaded.time_on(&nonvip, ifindex, REPEAT),
        how: rep.clone(),
    });

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
    rows.push(Row {
        id: "vrrp_steady".into(),
        path: "VRRPv3 advert, steady state (dropped)".into(),
        ns: loaded.time_on(&advert, ifindex, REPEAT),
        how: rep.clone(),
    });

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
        rows.push(Row {
            id: id.into(),
            path: path.into(),
            ns: loaded.time_on(&frame, ifindex, REPEAT),
            how: rep.clone(),
        });
    }
    rows
}
