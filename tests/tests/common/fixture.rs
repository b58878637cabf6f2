//! The one packet-fixture runner of the `ka_xdp` load-balancer tests (`xdp_lb`, `xdp_icmp`),
//! Katran's BpfTester shape: each [`PacketCase`] runs its [`Step`]s on a fresh load seeded
//! through the userspace map writer; it checks every verdict, every output byte (hex diff),
//! every counter (those not listed must be 0) and the listed services' and backends' packets.

use ka::lb::{
    writer::{backend_stats, service_stats, MapWriter},
    DesiredState,
};
use ka_common::stats::Counter;
use ka_tests::packet::hex_diff;

use super::Loaded;

/// One packet of a case: what goes in on which interface, and what must come out.
pub struct Step {
    /// The frame.
    pub input: Vec<u8>,
    /// Index of the ingress interface in the runner's `ifs`.
    pub iface: usize,
    /// The XDP action.
    pub expected_action: u32,
    /// The frame after the program (every byte: an IP6IP6 flow label included, see
    /// `ka_tests::packet::set_flow_label`).
    pub expected_output: Vec<u8>,
}

/// A fixture: packets run in order on one fresh load; afterwards the listed counters must have
/// these values and every other counter 0, and the listed services and their (first) backends
/// these packet counts.
pub struct PacketCase {
    /// What the case shows.
    pub name: &'static str,
    /// The packets, in order.
    pub steps: Vec<Step>,
    /// Counters and their values (every other one 0).
    pub counters: Vec<(Counter, u64)>,
    /// (service index in the desired state, service packets, packets of its first backend).
    pub service_packets: Vec<(usize, u64, u64)>,
}

/// Runs `step` number `i` of case `name` on `loaded` (interfaces `ifs`) and records what
/// differs in `failures`.
pub fn check_step(loaded: &Loaded, name: &str, i: usize, step: &Step, ifs: &[u32], failures: &mut Vec<String>) {
    let out = loaded.run_on(&step.input, ifs[step.iface]);
    if out.action != step.expected_action {
        failures.push(format!("{name} step {i}: action {} != {}", out.action, step.expected_action));
    }
    if out.data != step.expected_output {
        failures.push(format!("{name} step {i}: output\n{}", hex_diff(&step.expected_output, &out.data)));
    }
}

/// Records in `failures` every counter of `loaded` that differs from `expected` (0 unless
/// listed).
pub fn check_counters(loaded: &Loaded, name: &str, expected: &[(Counter, u64)], failures: &mut Vec<String>) {
    let counters = loaded.counters();
    for counter in Counter::ALL {
        let want = expected.iter().find(|(k, _)| k == counter).map_or(0, |(_, v)| *v);
        let got = counters[counter.name()];
        if got != want {
            failures.push(format!("{name}: counter {} = {got}, expected {want}", counter.name()));
        }
    }
}

/// Runs `cases`, each on a fresh load with `desired` applied, frames received on `ifs`;
/// returns the failures of all of them.
pub fn run_cases(cases: &[PacketCase], desired: &DesiredState, ifs: &[u32]) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        let mut loaded = Loaded::new();
        let mut writer = MapWriter::new();
        writer.apply(&mut loaded.ebpf, desired).expect("apply");
        for (i, s) in c.steps.iter().enumerate() {
            check_step(&loaded, c.name, i, s, ifs, &mut failures);
        }
        check_counters(&loaded, c.name, &c.counters, &mut failures);
        for &(i, packets, backend) in &c.service_packets {
            let spec = &desired.services[i];
            let id = writer.service_id(spec).expect("service id");
            let got = service_stats(&loaded.ebpf, id).expect("stats").packets;
            if got != packets {
                failures.push(format!("{}: service {i} packets {got} != {packets}", c.name));
            }
            let b = &spec.backends[0];
            let bid = writer.backend_id(spec, b.addr, b.port, b.method).expect("backend id");
            let got = backend_stats(&loaded.ebpf, bid).expect("stats").packets;
            if got != backend {
                failures.push(format!("{}: backend of service {i} packets {got} != {backend}", c.name));
            }
        }
    }
    failures
}
