//! Connection-sync throughput (`lvs_sync_daemon`): entries per second through each stage of the
//! chain, on one CPU, and what the MASTER's ring push adds to a new flow in XDP. Reproduce
//! with `cargo xtask bench --only sync` (or `cargo bench -p ka-tests --bench sync` as root).
//! Prints a Markdown table.
//!
//! - encode: ring records (as `ka_xdp` queues them) named by real server and packed into
//!   1472-byte IPVS sync v1 datagrams (the MASTER's task, without the socket);
//! - decode + map: datagrams decoded and their entries mapped to local backend ids (the
//!   BACKUP's task, without the socket);
//! - install: `ka_sync_install` over the records, 32 per BPF_PROG_TEST_RUN, into the real
//!   connection table (the BACKUP's system calls);
//! - XDP: `ka_xdp_bench_new_flow` (a new IPv4 flow per run) with the sync flag off and on
//!   (fewer runs than the ring holds, so every push succeeds).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use ka::lb::{
    sync::{
        batch::Batcher,
        index::Timeouts,
        install::{set_master_flag, Installer},
        wire::Message,
        SyncIndex,
    },
    writer::MapWriter,
    BackendSpec, DesiredState, L4Proto, Method, Scheduler, ServiceSpec,
};
use ka_common::{
    lb::{FlowKey, BENCH_NEW_FLOW_PROGRAM, FAMILY_V4},
    sync::{SyncEvent, SyncInstall, SYNC_EV_NEW},
};
use ka_tests::packet::Frame;

/// Connections per round.
const N: usize = 200_000;
/// Rounds (each stage reports its best).
const ROUNDS: usize = 3;
/// New flows timed in XDP (below the ring's 18,724 records).
const XDP_FLOWS: u32 = 16_000;

fn desired() -> DesiredState {
    let backends = |rs: &[&str], method| rs.iter().map(|a| BackendSpec { addr: a.parse().expect("ip"), port: 80, weight: 1, method, healthy: true, uthreshold: 0, lthreshold: 0 }).collect();
    let svc = |vip: &str, method| ServiceSpec {
        vip: vip.parse().expect("ip"),
        port: 80,
        proto: L4Proto::Tcp,
        scheduler: Scheduler::RoundRobin,
        persistence: None,
        master_slot: None,
        backends: backends(&["10.1.0.10", "10.1.0.11", "10.1.0.12"], method),
        options: Default::default(),
    };
    DesiredState { services: vec![svc("198.51.100.1", Method::Dr), svc("198.51.100.4", Method::Nat)], ..Default::default() }
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    common::pin_to_cpu0();
    let mut loaded = common::Loaded::program(BENCH_NEW_FLOW_PROGRAM);
    let d = desired();
    let mut writer = MapWriter::new();
    writer.apply(&mut loaded.ebpf, &d).expect("apply");
    let index = SyncIndex::build(&d, &writer);
    let mut installer = Installer::load(&mut loaded.ebpf).expect("load ka_sync_install");
    // Backend ids of the two services, as the datapath would report them.
    let ids: Vec<u32> = d
        .services
        .iter()
        .flat_map(|s| s.backends.iter().map(move |b| (s, b)))
        .map(|(s, b)| writer.backend_id(s, b.addr, b.port, b.method).expect("id"))
        .collect();
    let events: Vec<SyncEvent> = (0..N)
        .map(|i| {
            let svc = i % 2;
            let mut key = FlowKey { sport: ((i % 60_000) as u16 + 1024).to_be_bytes(), dport: 80u16.to_be_bytes(), proto: 6, family: FAMILY_V4, ..Default::default() };
            key.src[..4].copy_from_slice(&[198, 18, (i / 60_000) as u8, (i % 251) as u8]);
            key.dst[..4].copy_from_slice(if svc == 0 { &[198, 51, 100, 1] } else { &[198, 51, 100, 4] });
            SyncEvent { key, backend: ids[svc * 3 + i % 3], kind: SYNC_EV_NEW }
        })
        .collect();

    let (mut encode, mut decode, mut install, mut whole) = (Duration::MAX, Duration::MAX, Duration::MAX, Duration::MAX);
    let mut datagrams = Vec::new();
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        let mut b = Batcher::new(1, 1472);
        datagrams.clear();
        for ev in &events {
            let (conn, _) = index.outgoing(ev, Timeouts::default()).expect("known backend");
            datagrams.extend(b.push(&conn, t0));
        }
        datagrams.extend(b.take());
        let t1 = Instant::now();
        let mut batches: Vec<Vec<SyncInstall>> = Vec::with_capacity(datagrams.len());
        for dg in &datagrams {
            let m = Message::decode(dg).expect("decode");
            batches.push(m.conns.iter().map(|c| index.incoming(c).expect("mapped")).collect());
        }
        let t2 = Instant::now();
        for recs in &batches {
            installer.install(recs).expect("install");
        }
        let t3 = Instant::now();
        encode = encode.min(t1 - t0);
        decode = decode.min(t2 - t1);
        install = install.min(t3 - t2);
        whole = whole.min(t3 - t0);
    }
    let installed = loaded.counters()["sync_installed"];
    assert_eq!(installed, (N * ROUNDS) as u64, "every record installed");

    let syn = Frame::tcp4("198.18.0.1", "198.51.100.1", 1024, 80, 0x02).build();
    set_master_flag(&mut loaded.ebpf, false).expect("flag");
    let off = loaded.time(&syn, XDP_FLOWS);
    set_master_flag(&mut loaded.ebpf, true).expect("flag");
    let on = loaded.time(&syn, XDP_FLOWS);
    let pushed = loaded.counters()["sync_event"];
    assert_eq!(pushed, u64::from(XDP_FLOWS), "every new flow pushed to the ring");

    println!();
    println!("| stage (one CPU) | entries/s | how |");
    println!("|---|---:|---|");
    let dg = datagrams.len();
    println!("| encode: ring records to IPVS sync datagrams | {:.0} | {N} IPv4 connections, {dg} datagrams of at most 1472 bytes |", per_sec(N, encode));
    println!("| decode + map to local backend ids | {:.0} | the same datagrams |", per_sec(N, decode));
    println!("| install (`ka_sync_install`, 32 per run) | {:.0} | into the connection table, NAT entries for half |", per_sec(N, install));
    println!("| whole chain, without the network | {:.0} | best of {ROUNDS} rounds |", per_sec(N, whole));
    println!();
    println!("| XDP new flow (`ka_xdp_bench_new_flow`) | ns/packet |");
    println!("|---|---:|");
    println!("| sync off | {off:.1} |");
    println!("| sync MASTER (ring push) | {on:.1} |");
}
