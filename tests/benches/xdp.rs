//! XDP datapath benchmark through BPF_PROG_TEST_RUN: mean ns/packet of `ka_xdp` per path.
//! Reproduce with `cargo xtask bench` (or `cargo bench -p ka-tests --bench xdp` as root).
//!
//! The load-balancer paths run inside a namespace with a veth, a route and a permanent
//! neighbour, so `bpf_fib_lookup` answers as in production. "established" repeats one frame
//! (the DR rewrite leaves it addressed to the VIP, so every repeat hits the connection table);
//! "new flow" runs distinct source ports once each and averages the in-kernel durations.

#[path = "../tests/common/mod.rs"]
mod common;

use ka::lb::{
    writer::MapWriter, BackendSpec, DesiredState, L4Proto, Method, Scheduler, ServiceSpec,
};
use ka_tests::{netns::Netns, packet::Frame};

fn main() {
    let loaded = common::Loaded::new();
    let repeat = 1_000_000;
    let cases = [
        (
            "tcp4 syn (parse + pass)",
            Frame::tcp4("198.18.0.1", "198.18.0.2", 40000, 80, 0x02).build(),
        ),
        (
            "udp6 (parse + pass)",
            Frame::udp6("fd00:198:18::1", "fd00:198:18::2", 40000, 53).build(),
        ),
        (
            "vlan tcp4 (parse + pass)",
            Frame::tcp4("198.18.0.1", "198.18.0.2", 40000, 80, 0x10)
                .vlan(7)
                .build(),
        ),
        (
            "arp (non-IP pass)",
            Frame::ether(0x0806).payload(&[0; 28]).build(),
        ),
    ];
    println!("{:<36} {:>10}", "path", "ns/packet");
    for (name, frame) in &cases {
        // Pass-only paths leave the frame untouched, so repeat > 1 measures the same input.
        let ns = loaded.time(frame, repeat);
        println!("{name:<36} {ns:>10.1}");
    }
    drop(loaded);
    lb_paths();
}

fn lb_paths() {
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
    let h = ns
        .enter(|| {
            let ifindex = nix::net::if_::if_nametoindex("lb0").expect("lb0");
            let mut loaded = common::Loaded::new();
            let spec = ServiceSpec {
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
                    })
                    .collect(),
            };
            // Only 10.1.0.10 has a neighbour: keep the flows on it by giving the others weight 0.
            let mut spec = spec;
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
            let est = Frame::tcp4("198.18.0.1", "198.51.100.1", 40000, 80, 0x10).build();
            let _ = loaded.run_on(&est, ifindex);
            let est_ns = loaded.time_on(&est, ifindex, 1_000_000);
            let n = 20_000u32;
            let mut total = 0f64;
            for i in 0..n {
                let syn = Frame::tcp4(
                    "198.18.0.2",
                    "198.51.100.1",
                    1024 + (i % 60000) as u16,
                    80,
                    0x02,
                )
                .build();
                total += loaded.time_on(&syn, ifindex, 1);
            }
            let vrrp_like = Frame::tcp4("198.18.0.1", "198.51.100.200", 40000, 80, 0x10).build();
            let nonvip_ns = loaded.time_on(&vrrp_like, ifindex, 1_000_000);
            (est_ns, total / f64::from(n), nonvip_ns)
        })
        .expect("enter");
    let (est, new, nonvip) = h.join().expect("bench thread");
    println!("{:<36} {est:>10.1}", "tcp4 DR established (conn hit)");
    println!("{:<36} {new:>10.1}", "tcp4 DR new flow (Maglev)");
    println!("{:<36} {nonvip:>10.1}", "tcp4 non-VIP (services loaded)");
}
