//! Fixtures of `ka_decap` (the TUN real server's program) through BPF_PROG_TEST_RUN: IPIP and
//! IP6IP6 to a local VIP come out as the inner packet; a tunnel packet to another address and
//! malformed outer or inner headers pass untouched, counted. Then `ka::decap::{attach,
//! detach}` in a namespace: pins appear and go.

mod common;

use std::net::IpAddr;

use aya::maps::HashMap as BpfHashMap;
use ka_common::{
    lb::{AddrKey, DECAP_PROGRAM, LOCAL_VIPS_MAP},
    stats::Counter,
};
use ka_tests::{
    netns::Netns,
    packet::{checksum, hex_diff, Frame},
};

use common::XDP_PASS;

const VIP4: &str = "198.51.100.1";
const VIP6: &str = "2001:db8::1";

/// `inner` (an Ethernet frame) wrapped in an outer IPv4 (IPIP) or IPv6 (IP6IP6) header.
fn tunnel(inner: &[u8], src: &str, dst: &str) -> Vec<u8> {
    let payload = &inner[14..];
    let mut out = inner[..12].to_vec();
    match (src.parse::<IpAddr>(), dst.parse::<IpAddr>()) {
        (Ok(IpAddr::V4(s)), Ok(IpAddr::V4(d))) => {
            out.extend_from_slice(&[0x08, 0x00]);
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&((payload.len() + 20) as u16).to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, 0, 64, 4, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let c = checksum(&[&h]);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            out.extend_from_slice(&h);
        }
        (Ok(IpAddr::V6(s)), Ok(IpAddr::V6(d))) => {
            out.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            out.extend_from_slice(&[41, 64]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    out.extend_from_slice(payload);
    out
}

/// A fixture. `ka_decap` counts only its own verdicts and decap counters (not what it parsed).
struct PacketCase {
    name: &'static str,
    input: Vec<u8>,
    expected_action: u32,
    expected_output: Vec<u8>,
    counters: Vec<(Counter, u64)>,
}

fn cases() -> Vec<PacketCase> {
    use Counter::*;
    let syn4 = Frame::tcp4("198.18.0.1", VIP4, 40000, 80, 0x02).build();
    let syn6 = Frame::tcp6("fd00:198:18::1", VIP6, 40000, 80, 0x02).build();
    let other4 = Frame::tcp4("198.18.0.1", "198.51.100.99", 40000, 80, 0x02).build();
    let ipip = tunnel(&syn4, "198.18.1.1", "198.18.1.2");
    let ip6ip6 = tunnel(&syn6, "fd00:198:18::a", "fd00:198:18::b");
    let not_local = tunnel(&other4, "198.18.1.1", "198.18.1.2");
    let truncated_inner = {
        // Outer header claims only 10 inner bytes: the inner IPv4 header is cut short.
        let mut f = tunnel(&syn4, "198.18.1.1", "198.18.1.2");
        f.truncate(14 + 20 + 10);
        f[16..18].copy_from_slice(&30u16.to_be_bytes());
        f[24..26].copy_from_slice(&[0, 0]);
        let c = checksum(&[&f[14..34]]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    };
    let bad_outer = {
        let mut f = ipip.clone();
        f[14] = 0x44;
        f
    };
    // Found by the XDP fuzzer: an inner header of the wrong version, or one in the Ethernet
    // padding after the outer packet, was passed on as IPv4.
    let wrong_version = {
        let mut f = ipip.clone();
        f[14 + 20] = 0x65;
        f
    };
    let inner_in_padding = {
        // The outer packet ends after 10 inner bytes; the frame goes on with the inner header.
        let mut f = ipip.clone();
        f[16..18].copy_from_slice(&30u16.to_be_bytes());
        f[24..26].copy_from_slice(&[0, 0]);
        let c = checksum(&[&f[14..34]]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    };
    let ip6ip6_carrying_v4 = {
        let mut f = ip6ip6.clone();
        f[14 + 40] = 0x45;
        f
    };
    vec![
        PacketCase {
            name: "IPIP to a local VIP: inner packet passed",
            input: ipip,
            expected_action: XDP_PASS,
            expected_output: syn4,
            counters: vec![(DecapIpip, 1)],
        },
        PacketCase {
            name: "IP6IP6 to a local VIP: inner packet passed",
            input: ip6ip6,
            expected_action: XDP_PASS,
            expected_output: syn6,
            counters: vec![(DecapIp6ip6, 1)],
        },
        PacketCase {
            name: "inner destination not a local VIP: passed unchanged",
            input: not_local.clone(),
            expected_action: XDP_PASS,
            expected_output: not_local,
            counters: vec![(DecapNotLocal, 1)],
        },
        PacketCase {
            name: "inner header cut short: passed unchanged, counted",
            input: truncated_inner.clone(),
            expected_action: XDP_PASS,
            expected_output: truncated_inner,
            counters: vec![(DecapMalformed, 1)],
        },
        PacketCase {
            name: "IPIP whose inner header is not IPv4: passed unchanged, counted",
            input: wrong_version.clone(),
            expected_action: XDP_PASS,
            expected_output: wrong_version,
            counters: vec![(DecapMalformed, 1)],
        },
        PacketCase {
            name: "IPIP whose inner header lies past the outer packet: passed unchanged, counted",
            input: inner_in_padding.clone(),
            expected_action: XDP_PASS,
            expected_output: inner_in_padding,
            counters: vec![(DecapMalformed, 1)],
        },
        PacketCase {
            name: "IP6IP6 whose inner header is not IPv6: passed unchanged, counted",
            input: ip6ip6_carrying_v4.clone(),
            expected_action: XDP_PASS,
            expected_output: ip6ip6_carrying_v4,
            counters: vec![(DecapMalformed, 1)],
        },
        PacketCase {
            name: "malformed outer header: parse error, passed",
            input: bad_outer.clone(),
            expected_action: XDP_PASS,
            expected_output: bad_outer,
            counters: vec![(ErrBadIpv4, 1)],
        },
    ]
}

#[test]
fn decap_fixtures() {
    ka_tests::require_root();
    let mut failures = Vec::new();
    for c in cases() {
        let mut loaded = common::Loaded::program(DECAP_PROGRAM);
        {
            let mut m: BpfHashMap<_, AddrKey, u32> =
                BpfHashMap::try_from(loaded.ebpf.map_mut(LOCAL_VIPS_MAP).expect("map"))
                    .expect("hash map");
            for v in [VIP4, VIP6] {
                let (addr, family) = ka::lb::addr16(v.parse().expect("vip"));
                m.insert(
                    AddrKey {
                        addr,
                        family,
                        _pad: [0; 3],
                    },
                    1,
                    0,
                )
                .expect("insert");
            }
        }
        let out = loaded.run(&c.input);
        if out.action != c.expected_action {
            failures.push(format!("{}: action {}", c.name, out.action));
        }
        if out.data != c.expected_output {
            failures.push(format!(
                "{}: output\n{}",
                c.name,
                hex_diff(&c.expected_output, &out.data)
            ));
        }
        let counters = loaded.counters();
        let mut want = c.counters.clone();
        want.push((Counter::VerdictPass, 1));
        for counter in Counter::ALL {
            let w = want
                .iter()
                .find(|(k, _)| k == counter)
                .map_or(0, |(_, v)| *v);
            if counters[counter.name()] != w {
                failures.push(format!(
                    "{}: counter {} = {}, expected {w}",
                    c.name,
                    counter.name(),
                    counters[counter.name()]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `attach` pins the link and maps under the instance's directory; `detach` removes them and
/// the program from the interface.
#[test]
fn decap_attach_detach_pins() {
    ka_tests::require_root();
    let ns = Netns::new("decap").expect("netns");
    for c in [
        "ip link add rs0 type veth peer name rs0p",
        "ip link set rs0 up",
        "ip link set rs0p up",
    ] {
        ns.run(&c.split(' ').collect::<Vec<_>>()).expect(c);
    }
    let instance: ka::instance::InstanceName = format!("t{}", std::process::id())
        .parse()
        .expect("instance name");
    let dir = ka::decap::pin_dir(&instance, "rs0");
    let d2 = dir.clone();
    let out = ns
        .enter(move || {
            ka::decap::attach(&instance, "rs0", &[VIP4.parse().expect("vip")]).expect("attach");
            let pinned = ["link", LOCAL_VIPS_MAP, ka_common::maps::STATS_MAP]
                .iter()
                .all(|p| d2.join(p).exists());
            let shown = std::process::Command::new("ip")
                .args(["link", "show", "rs0"])
                .output()
                .expect("ip link");
            let attached = String::from_utf8_lossy(&shown.stdout).contains("xdp");
            ka::decap::detach(&instance, "rs0").expect("detach");
            let shown = std::process::Command::new("ip")
                .args(["link", "show", "rs0"])
                .output()
                .expect("ip link");
            let still = String::from_utf8_lossy(&shown.stdout).contains("xdp");
            let _ = std::fs::remove_dir(instance.pin_dir());
            (pinned, attached, still, d2.exists())
        })
        .expect("enter")
        .join()
        .expect("thread");
    assert_eq!(
        out,
        (true, true, false, false),
        "(pinned, attached, attached after detach, pin dir left) under {}",
        dir.display()
    );
}
