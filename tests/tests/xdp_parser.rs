//! Packet-fixture tests of `ka_xdp`'s parser through BPF_PROG_TEST_RUN: one table of good,
//! truncated and malformed frames; each case runs on freshly loaded maps and checks the verdict,
//! the output bytes and every counter.

mod common;

use ka_common::stats::Counter;
use ka_tests::packet::{hex_diff, Frame};

use common::XDP_PASS;
const A4: &str = "198.18.0.1";
const B4: &str = "198.18.0.2";
const A6: &str = "fd00:198:18::1";
const B6: &str = "fd00:198:18::2";
const SYN: u8 = 0x02;

/// One fixture: a frame, the verdict expected, and the counters expected to be 1 (all others 0,
/// except the verdict counter). A frame that fails to parse counts only its error, not the
/// layers before it.
struct PacketCase {
    name: &'static str,
    input: Vec<u8>,
    expected_action: u32,
    counters: &'static [Counter],
}

fn case(name: &'static str, input: Vec<u8>, counters: &'static [Counter]) -> PacketCase {
    PacketCase { name, input, expected_action: XDP_PASS, counters }
}

/// Sets byte `at` of `frame` to `v`.
fn poke(mut frame: Vec<u8>, at: usize, v: u8) -> Vec<u8> {
    frame[at] = v;
    frame
}

fn cut(mut frame: Vec<u8>, len: usize) -> Vec<u8> {
    frame.truncate(len);
    frame
}

/// IPv6 extension header body (after the next-header byte) of `len8` 8-octet units.
fn ext_body(len8: u8) -> Vec<u8> {
    let mut b = vec![len8 - 1];
    b.resize(usize::from(len8) * 8 - 1, 0);
    b
}

fn cases() -> Vec<PacketCase> {
    use Counter::*;
    let dst_opts = ext_body(1);
    let mut frag_nonfirst = vec![0u8, 0x00, 0x09, 0, 0, 0, 1]; // offset 1, M=1
    let frag_first = vec![0u8, 0x00, 0x01, 0, 0, 0, 2]; // offset 0, M=1
    let mut long_chain = Frame::udp6(A6, B6, 1, 2);
    for _ in 0..5 {
        long_chain = long_chain.ipv6_ext(60, &dst_opts);
    }
    frag_nonfirst.truncate(7);
    vec![
        // Good frames.
        case("tcp4 syn", Frame::tcp4(A4, B4, 40000, 80, SYN).build(), &[Ipv4, Tcp]),
        case("udp4", Frame::udp4(A4, B4, 40000, 53).payload(b"q").build(), &[Ipv4, Udp]),
        case("icmp4 echo", Frame::icmp4(A4, B4).build(), &[Ipv4, Icmp]),
        case("tcp6 syn", Frame::tcp6(A6, B6, 40000, 443, SYN).build(), &[Ipv6, Tcp]),
        case("udp6", Frame::udp6(A6, B6, 40000, 53).build(), &[Ipv6, Udp]),
        case("icmp6 echo", Frame::icmp6(A6, B6).build(), &[Ipv6, Icmp]),
        case("vlan tcp4", Frame::tcp4(A4, B4, 1, 80, SYN).vlan(10).build(), &[Vlan, Ipv4, Tcp]),
        case(
            "qinq udp6",
            Frame::udp6(A6, B6, 1, 2).vlan_tpid(0x88a8, 100).vlan(10).build(),
            &[Vlan, Ipv6, Udp],
        ),
        case(
            "ipv4 options",
            Frame::udp4(A4, B4, 1, 2).ipv4_options(&[0x94, 0x04, 0, 0, 1, 1, 1, 0]).build(),
            &[Ipv4, Udp],
        ),
        case("ipv4 first fragment", Frame::tcp4(A4, B4, 1, 80, SYN).ipv4_frag(0x2000).build(), &[Ipv4, Tcp]),
        case("ipv4 later fragment", Frame::tcp4(A4, B4, 1, 80, SYN).ipv4_frag(0x0010).build(), &[Ipv4, Fragment]),
        case(
            "ipv6 hop-by-hop + dstopts",
            Frame::udp6(A6, B6, 1, 2).ipv6_ext(0, &dst_opts).ipv6_ext(60, &dst_opts).build(),
            &[Ipv6, Udp],
        ),
        case("ipv6 first fragment", Frame::tcp6(A6, B6, 1, 80, SYN).ipv6_ext(44, &frag_first).build(), &[Ipv6, Tcp]),
        case("ipv6 later fragment", Frame::tcp6(A6, B6, 1, 80, SYN).ipv6_ext(44, &frag_nonfirst).build(), &[Ipv6, Fragment]),
        case("vrrp4", Frame::raw4(A4, "224.0.0.18", 112).ttl(255).payload(&[0x21, 1, 100, 1, 0, 1, 0, 0, 198, 18, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0]).build(), &[Ipv4, Vrrp]),
        case("vrrp6", Frame::raw6(A6, "ff02::12", 112).ttl(255).payload(&[0x31, 1, 100, 1, 0, 100, 0, 0]).build(), &[Ipv6, Vrrp]),
        case("gre4", Frame::raw4(A4, B4, 47).payload(&[0; 8]).build(), &[Ipv4, OtherL4]),
        case("arp", Frame::ether(0x0806).payload(&[0; 28]).build(), &[OtherL3]),
        case("ipv4 trailing padding", {
            let mut f = Frame::tcp4(A4, B4, 1, 80, SYN).build();
            f.extend_from_slice(&[0; 6]);
            f
        }, &[Ipv4, Tcp]),
        // Truncated frames.
        case("vlan tag cut short", cut(Frame::udp4(A4, B4, 1, 2).vlan(5).build(), 16), &[ErrBadVlan]),
        case("three vlan tags", Frame::udp4(A4, B4, 1, 2).vlan(1).vlan(2).vlan(3).build(), &[ErrBadVlan]),
        case("ipv4 header cut short", cut(Frame::udp4(A4, B4, 1, 2).build(), 14 + 19), &[ErrTruncatedIpv4]),
        case("ethernet only, ipv4 type", cut(Frame::udp4(A4, B4, 1, 2).build(), 14), &[ErrTruncatedIpv4]),
        case("ipv6 header cut short", cut(Frame::udp6(A6, B6, 1, 2).build(), 14 + 39), &[ErrTruncatedIpv6]),
        case("tcp header cut short", {
            // Consistent IPv4 total length, but only 12 bytes of TCP.
            let mut f = cut(Frame::tcp4(A4, B4, 1, 80, SYN).build(), 14 + 20 + 12);
            f[16..18].copy_from_slice(&32u16.to_be_bytes());
            f
        }, &[ErrTruncatedL4]),
        case("udp header cut short", {
            let mut f = cut(Frame::udp6(A6, B6, 1, 2).build(), 14 + 40 + 4);
            f[18..20].copy_from_slice(&4u16.to_be_bytes());
            f
        }, &[ErrTruncatedL4]),
        case("ipv6 extension header cut short", {
            let mut f = cut(Frame::udp6(A6, B6, 1, 2).ipv6_ext(60, &ext_body(2)).build(), 14 + 40 + 10);
            f[18..20].copy_from_slice(&10u16.to_be_bytes());
            f
        }, &[ErrBadIpv6]),
        // Malformed frames.
        case("ipv4 version 5", poke(Frame::udp4(A4, B4, 1, 2).build(), 14, 0x55), &[ErrBadIpv4]),
        case("ipv4 ihl 4", poke(Frame::udp4(A4, B4, 1, 2).build(), 14, 0x44), &[ErrBadIpv4]),
        case("ipv4 ihl 15 beyond total length", poke(Frame::udp4(A4, B4, 1, 2).build(), 14, 0x4f), &[ErrBadIpv4]),
        case("ipv4 total length beyond frame", poke(Frame::udp4(A4, B4, 1, 2).build(), 16, 0x05), &[ErrBadIpv4]),
        case("ipv6 version 4", poke(Frame::udp6(A6, B6, 1, 2).build(), 14, 0x40), &[ErrBadIpv6]),
        case("ipv6 payload length beyond frame", poke(Frame::udp6(A6, B6, 1, 2).build(), 18, 0x05), &[ErrBadIpv6]),
        case("ipv6 extension chain too long", long_chain.build(), &[ErrBadIpv6]),
        case("tcp data offset 4", poke(Frame::tcp4(A4, B4, 1, 80, SYN).build(), 14 + 20 + 12, 0x40), &[ErrTruncatedL4]),
        case("tcp data offset past frame", poke(Frame::tcp4(A4, B4, 1, 80, SYN).build(), 14 + 20 + 12, 0xf0), &[ErrTruncatedL4]),
        // Found by the XDP fuzzer: a transport header must lie inside the IP packet, not only
        // the frame (Ethernet padding after a short packet is no header), and ICMP is protocol
        // 1 over IPv4 and 58 over IPv6 only.
        case("tcp header running into ethernet padding", {
            // Total length 20 + 12: the last 8 bytes of the TCP header are padding.
            let mut f = Frame::tcp4(A4, B4, 1, 80, SYN).build();
            f[16..18].copy_from_slice(&32u16.to_be_bytes());
            f
        }, &[ErrTruncatedL4]),
        case("udp header in ethernet padding", {
            let mut f = Frame::udp4(A4, B4, 1, 2).build();
            f[16..18].copy_from_slice(&20u16.to_be_bytes());
            f
        }, &[ErrTruncatedL4]),
        case("icmp6 header in ethernet padding", {
            let mut f = Frame::icmp6(A6, B6).build();
            f[18..20].copy_from_slice(&4u16.to_be_bytes());
            f
        }, &[ErrTruncatedL4]),
        case("ipv6 extension header past the payload length", {
            let mut f = Frame::udp6(A6, B6, 1, 2).ipv6_ext(60, &dst_opts).build();
            f[18..20].copy_from_slice(&4u16.to_be_bytes());
            f
        }, &[ErrBadIpv6]),
        case("icmp (protocol 1) over ipv6", Frame::raw6(A6, B6, 1).payload(&[3, 3, 0, 0, 0, 0, 0, 0]).build(), &[Ipv6, OtherL4]),
        case("icmpv6 (protocol 58) over ipv4", Frame::raw4(A4, B4, 58).payload(&[1, 4, 0, 0, 0, 0, 0, 0]).build(), &[Ipv4, OtherL4]),
    ]
}

#[test]
fn parser_fixtures() {
    assert_fixtures(false);
}

/// The same frames while a service is loaded (on a VIP none of them goes to). In both runs
/// the common case (an untagged IPv4 TCP/UDP segment) leaves through the fast non-VIP exit,
/// counted as one bundle that reads as its four counters, the others through the general
/// parser; every TCP/UDP frame the parser accepts is counted `pass_not_vip` (with a service,
/// an ICMP message that is no error `pass_icmp_not_error`), and every malformed one counts its
/// error only.
#[test]
fn parser_fixtures_with_a_service() {
    assert_fixtures(true);
}

fn assert_fixtures(with_service: bool) {
    let mut failures = Vec::new();
    for c in cases() {
        let mut loaded = common::Loaded::new();
        if with_service {
            load_service(&mut loaded);
        }
        let out = loaded.run(&c.input);
        if out.action != c.expected_action {
            failures.push(format!("{}: action {} != expected {}", c.name, out.action, c.expected_action));
        }
        if out.data != c.input {
            failures.push(format!("{}: output differs from input\n{}", c.name, hex_diff(&c.input, &out.data)));
        }
        let counters = loaded.counters();
        // TCP/UDP to no VIP (with no service at all, nothing is one), and with a service ICMP
        // messages that are no errors.
        let extra = match () {
            _ if c.counters.contains(&Counter::Tcp) || c.counters.contains(&Counter::Udp) => Some(Counter::PassNotVip),
            _ if with_service && c.counters.contains(&Counter::Icmp) => Some(Counter::PassIcmpNotError),
            _ => None,
        };
        for counter in Counter::ALL {
            let expected =
                u64::from(c.counters.contains(counter) || *counter == Counter::VerdictPass || extra == Some(*counter));
            let got = counters[counter.name()];
            if got != expected {
                failures.push(format!("{}: counter {} = {got}, expected {expected}", c.name, counter.name()));
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// A DR service on a VIP no fixture frame goes to (the VIP filter on).
fn load_service(loaded: &mut common::Loaded) {
    use ka::lb::{writer::MapWriter, BackendSpec, DesiredState, L4Proto, Method, Scheduler, ServiceSpec};
    let spec = ServiceSpec {
        vip: "198.19.0.100".parse().expect("address"),
        port: 80,
        proto: L4Proto::Tcp,
        scheduler: Scheduler::Maglev,
        persistence: None,
        master_slot: None,
        backends: vec![BackendSpec {
            addr: "198.19.1.10".parse().expect("address"),
            port: 80,
            weight: 1,
            method: Method::Dr,
            healthy: true,
            uthreshold: 0,
            lthreshold: 0,
        }],
        options: Default::default(),
    };
    MapWriter::new()
        .apply(&mut loaded.ebpf, &DesiredState { services: vec![spec], ..Default::default() })
        .expect("apply");
}
