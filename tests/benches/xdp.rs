//! XDP datapath benchmark through BPF_PROG_TEST_RUN: mean ns/packet of `ka_xdp` per path.
//! Reproduce with `cargo xtask bench` (or `cargo bench -p ka-tests --bench xdp` as root).

#[path = "../tests/common/mod.rs"]
mod common;

use ka_tests::packet::Frame;

fn main() {
    let loaded = common::Loaded::new();
    let repeat = 1_000_000;
    let cases = [
        ("tcp4 syn (parse + pass)", Frame::tcp4("198.18.0.1", "198.18.0.2", 40000, 80, 0x02).build()),
        ("udp6 (parse + pass)", Frame::udp6("fd00:198:18::1", "fd00:198:18::2", 40000, 53).build()),
        ("vlan tcp4 (parse + pass)", Frame::tcp4("198.18.0.1", "198.18.0.2", 40000, 80, 0x10).vlan(7).build()),
        ("arp (non-IP pass)", Frame::ether(0x0806).payload(&[0; 28]).build()),
    ];
    println!("{:<28} {:>10}", "path", "ns/packet");
    for (name, frame) in &cases {
        // Pass-only paths leave the frame untouched, so repeat > 1 measures the same input.
        let ns = loaded.time(frame, repeat);
        println!("{name:<28} {ns:>10.1}");
    }
}
