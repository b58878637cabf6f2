//! Fixtures of the end-to-end benchmark's tools through BPF_PROG_TEST_RUN (layouts in
//! `ka_common::bench`): the generator rewrites a frame that a load balancer scribbled on back
//! into the template, cycling the source port over its flows with a valid UDP checksum; the
//! sink counts and drops; the floor redirects to its configured interface.

mod common;

use aya::maps::{Array, PerCpuArray};
use ka_common::bench::{
    GenConfig, FWD_MAP, FWD_PROGRAM, FWD_TOUCH_PROGRAM, GEN_HDR_LEN, GEN_HDR_ROOM, GEN_MAP, GEN_PROGRAM, SINK_BYTES,
    SINK_MAP, SINK_PACKETS, SINK_PROGRAM,
};
use ka_tests::packet::{hex_diff, Frame};

use common::{XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX};

fn udp(sport: u16) -> Vec<u8> {
    Frame::udp4("198.18.10.2", "198.18.11.100", sport, 53)
        .payload(b"ka end-to-end bench")
        .build()
}

/// Five runs over four flows: the `n`th output is the template with source port base + n % 4,
/// byte for byte (so the IPv4 and UDP checksums are the builder's), whatever the input
/// header held (a NATed frame with other MACs and addresses).
#[test]
fn generator_rewrites_the_header_and_cycles_flows() {
    let mut gen = common::Loaded::program(GEN_PROGRAM);
    let template = udp(10_000);
    let mut cfg = GenConfig { hdr: [0; GEN_HDR_ROOM], flows: 4, _pad: 0 };
    cfg.hdr[..GEN_HDR_LEN].copy_from_slice(&template[..GEN_HDR_LEN]);
    let mut m: Array<_, GenConfig> = Array::try_from(gen.ebpf.map_mut(GEN_MAP).expect("map")).expect("array");
    m.set(0, cfg, 0).expect("template");
    // What a NAT load balancer leaves behind: new MACs, a real server's address, checksums
    // updated for it.
    let mut scribbled = Frame::udp4("198.18.10.2", "198.18.12.11", 10_003, 53).payload(b"ka end-to-end bench");
    scribbled.eth_dst = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    scribbled.eth_src = [0x02, 0x66, 0x77, 0x88, 0x99, 0xaa];
    let input = scribbled.build();
    for n in 1..=5u16 {
        let out = gen.run(&input);
        assert_eq!(out.action, XDP_TX, "run {n}");
        let want = udp(10_000 + n % 4);
        assert_eq!(out.data, want, "run {n}:\n{}", hex_diff(&want, &out.data));
    }
}

/// One flow: the template as is, every time.
#[test]
fn generator_with_one_flow_keeps_the_template() {
    let mut gen = common::Loaded::program(GEN_PROGRAM);
    let template = udp(10_000);
    let mut cfg = GenConfig { hdr: [0; GEN_HDR_ROOM], flows: 1, _pad: 0 };
    cfg.hdr[..GEN_HDR_LEN].copy_from_slice(&template[..GEN_HDR_LEN]);
    let mut m: Array<_, GenConfig> = Array::try_from(gen.ebpf.map_mut(GEN_MAP).expect("map")).expect("array");
    m.set(0, cfg, 0).expect("template");
    let input = udp(12_345);
    for _ in 0..3 {
        let out = gen.run(&input);
        assert_eq!(out.action, XDP_TX);
        assert_eq!(out.data, template, "{}", hex_diff(&template, &out.data));
    }
}

/// A frame shorter than the header is not sent.
#[test]
fn generator_refuses_a_short_frame() {
    let mut gen = common::Loaded::program(GEN_PROGRAM);
    let mut m: Array<_, GenConfig> = Array::try_from(gen.ebpf.map_mut(GEN_MAP).expect("map")).expect("array");
    m.set(0, GenConfig { hdr: [0; GEN_HDR_ROOM], flows: 1, _pad: 0 }, 0).expect("template");
    let out = gen.run(&[0u8; GEN_HDR_LEN - 1]);
    assert_eq!(out.action, 0, "XDP_ABORTED");
}

/// The sink drops every frame and counts frames and bytes.
#[test]
fn sink_counts_and_drops() {
    let sink = common::Loaded::program(SINK_PROGRAM);
    let f = udp(1);
    for _ in 0..3 {
        assert_eq!(sink.run(&f).action, XDP_DROP);
    }
    let m: PerCpuArray<_, u64> = PerCpuArray::try_from(sink.ebpf.map(SINK_MAP).expect("map")).expect("array");
    let sum = |i| -> u64 { m.get(&i, 0).expect("counter").iter().sum() };
    assert_eq!(sum(SINK_PACKETS), 3);
    assert_eq!(sum(SINK_BYTES), 3 * f.len() as u64);
}

/// The floor redirects, leaving the frame untouched.
#[test]
fn floor_redirects_untouched() {
    let mut fwd = common::Loaded::program(FWD_PROGRAM);
    let mut m: Array<_, u32> = Array::try_from(fwd.ebpf.map_mut(FWD_MAP).expect("map")).expect("array");
    m.set(0, 1, 0).expect("target");
    let f = udp(1);
    let out = fwd.run(&f);
    assert_eq!(out.action, XDP_REDIRECT);
    assert_eq!(out.data, f);
}

/// The touching floor swaps the Ethernet addresses and redirects; a frame too short for the
/// IPv4 header passes.
#[test]
fn touching_floor_swaps_the_macs_and_redirects() {
    let mut fwd = common::Loaded::program(FWD_TOUCH_PROGRAM);
    let mut m: Array<_, u32> = Array::try_from(fwd.ebpf.map_mut(FWD_MAP).expect("map")).expect("array");
    m.set(0, 1, 0).expect("target");
    let f = udp(1);
    let out = fwd.run(&f);
    assert_eq!(out.action, XDP_REDIRECT);
    let mut want = f.clone();
    want[..6].copy_from_slice(&f[6..12]);
    want[6..12].copy_from_slice(&f[..6]);
    assert_ne!(want, f, "the frame's two MACs differ");
    assert_eq!(out.data, want);
    assert_eq!(fwd.run(&f[..20]).action, XDP_PASS);
}
