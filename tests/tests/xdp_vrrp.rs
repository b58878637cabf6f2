//! Packet fixtures of `ka_xdp`'s VRRP fast path through BPF_PROG_TEST_RUN: steady-state adverts
//! (last-seen refreshed, dropped or passed, no event), changes reported on the ring buffer (new
//! master, priority and interval change, resignation, a higher-priority peer while MASTER), and
//! invalid adverts, each counted under its own drop reason; and the per-instance budget of
//! adverts below the reference priority (`vrrp_lower_prio_limited`). Fresh maps per case; the
//! interface is `lo` (ifindex 1, present in every namespace).

mod common;

use std::time::Duration;

use ka::lb::vrrp_fast::{self, EventKind, EventReader, FastParams, KnownMaster};
use ka_common::{stats::Counter, vrrp::Family};
use ka_tests::packet::{checksum, hex_diff, Frame};

use common::{vrrp3_msg, vrrp3_v4, XDP_DROP, XDP_PASS};

const LO: u32 = 1;
const MASTER: &str = "198.18.0.2";
const OTHER: &str = "198.18.0.3";
const VIP: &str = "198.51.100.1";

fn params() -> FastParams {
    FastParams {
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
        local_addr: "198.18.0.1".parse().expect("addr"),
        known_master: Some(KnownMaster {
            addr: MASTER.parse().expect("addr"),
            priority: 150,
            adver_int: Duration::from_secs(1),
        }),
    }
}

/// A VRRPv2 advert (no pseudo-header) with PASS authentication `pass`.
fn vrrp2_v4(src: &str, vrid: u8, prio: u8, secs: u8, pass: &[u8; 8]) -> Vec<u8> {
    let a: std::net::Ipv4Addr = VIP.parse().expect("vip");
    let mut msg = vec![0x21, vrid, prio, 1, 1, secs, 0, 0];
    msg.extend_from_slice(&a.octets());
    msg.extend_from_slice(pass);
    let c = checksum(&[&msg]);
    msg[6..8].copy_from_slice(&c.to_be_bytes());
    Frame::raw4(src, "224.0.0.18", 112)
        .ttl(255)
        .payload(&msg)
        .build()
}

/// A v3 advert whose message was edited after checksumming (`f` gets the VRRP message).
fn edited(f: impl Fn(&mut Vec<u8>), fix_checksum: bool) -> Vec<u8> {
    let mut msg = vrrp3_msg(MASTER, "224.0.0.18", 51, 150, 100, &[VIP]);
    f(&mut msg);
    if fix_checksum {
        msg[6..8].copy_from_slice(&[0, 0]);
        let s: std::net::Ipv4Addr = MASTER.parse().expect("src");
        let c = ka_common::vrrp::checksum(
            &msg,
            &ka_common::vrrp::PseudoHeader::V4 {
                src: s.octets(),
                dst: [224, 0, 0, 18],
            },
        );
        msg[6..8].copy_from_slice(&c.to_be_bytes());
    }
    Frame::raw4(MASTER, "224.0.0.18", 112)
        .ttl(255)
        .payload(&msg)
        .build()
}

struct VrrpCase {
    name: &'static str,
    params: FastParams,
    input: Vec<u8>,
    expected_action: u32,
    /// The event expected on the ring buffer (kind, priority), if any.
    event: Option<(EventKind, u8)>,
    /// Whether the last-seen timestamp must have been refreshed.
    seen: bool,
    /// Counters besides ipv4/vrrp/verdict.
    counters: Vec<(Counter, u64)>,
}

fn cases() -> Vec<VrrpCase> {
    use Counter::*;
    let steady = vrrp3_v4(MASTER, 51, 150, 100, &[VIP]);
    let case = |name, input, action, event, counters| VrrpCase {
        name,
        params: params(),
        input,
        expected_action: action,
        event,
        seen: false,
        counters,
    };
    let as_master = FastParams {
        master: true,
        known_master: None,
        ..params()
    };
    let v2 = FastParams {
        version: 2,
        auth_pass: Some(b"secret".to_vec()),
        ..params()
    };
    let pass = *b"secret\0\0";
    vec![
        VrrpCase {
            seen: true,
            ..case(
                "steady advert from the known master: timestamp, dropped",
                steady.clone(),
                XDP_DROP,
                None,
                vec![(VrrpSteady, 1)],
            )
        },
        VrrpCase {
            params: FastParams {
                drop_steady: false,
                ..params()
            },
            seen: true,
            ..case(
                "steady advert without VRRP_F_DROP_STEADY: passed",
                steady.clone(),
                XDP_PASS,
                None,
                vec![(VrrpSteady, 1)],
            )
        },
        case(
            "advert from another router: new master",
            vrrp3_v4(OTHER, 51, 150, 100, &[VIP]),
            XDP_PASS,
            Some((EventKind::NewMaster, 150)),
            vec![(VrrpChange, 1)],
        ),
        case(
            "master's priority changed",
            vrrp3_v4(MASTER, 51, 200, 100, &[VIP]),
            XDP_PASS,
            Some((EventKind::PriorityChange, 200)),
            vec![(VrrpChange, 1)],
        ),
        case(
            "master's interval changed",
            vrrp3_v4(MASTER, 51, 150, 200, &[VIP]),
            XDP_PASS,
            Some((EventKind::IntervalChange, 150)),
            vec![(VrrpChange, 1)],
        ),
        case(
            "priority 0: the master resigns",
            vrrp3_v4(MASTER, 51, 0, 100, &[VIP]),
            XDP_PASS,
            Some((EventKind::Resign, 0)),
            vec![(VrrpChange, 1)],
        ),
        VrrpCase {
            params: as_master.clone(),
            ..case(
                "while MASTER: a higher-priority peer",
                vrrp3_v4(OTHER, 51, 200, 100, &[VIP]),
                XDP_PASS,
                Some((EventKind::HigherPriority, 200)),
                vec![(VrrpChange, 1)],
            )
        },
        VrrpCase {
            params: as_master,
            ..case(
                "while MASTER: a lower-priority peer",
                vrrp3_v4(OTHER, 51, 50, 100, &[VIP]),
                XDP_PASS,
                Some((EventKind::LowerPriority, 50)),
                vec![(VrrpChange, 1)],
            )
        },
        case(
            "invalid: TTL 64",
            {
                let msg = vrrp3_msg(MASTER, "224.0.0.18", 51, 150, 100, &[VIP]);
                Frame::raw4(MASTER, "224.0.0.18", 112)
                    .ttl(64)
                    .payload(&msg)
                    .build()
            },
            XDP_DROP,
            None,
            vec![(VrrpBadTtl, 1)],
        ),
        case(
            "invalid: version 2 to a v3 instance",
            edited(|m| m[0] = 0x21, true),
            XDP_DROP,
            None,
            vec![(VrrpBadVersion, 1)],
        ),
        case(
            "invalid: type 2",
            edited(|m| m[0] = 0x32, true),
            XDP_DROP,
            None,
            vec![(VrrpBadType, 1)],
        ),
        case(
            "unknown VRID on this interface: counted, passed",
            vrrp3_v4(MASTER, 52, 150, 100, &[VIP]),
            XDP_PASS,
            None,
            vec![(VrrpVridMismatch, 1)],
        ),
        case(
            "invalid: address count beyond the message",
            edited(|m| m[3] = 2, true),
            XDP_DROP,
            None,
            vec![(VrrpBadLength, 1)],
        ),
        case(
            "invalid: checksum",
            edited(|m| m[6] ^= 0xff, false),
            XDP_DROP,
            None,
            vec![(VrrpBadChecksum, 1)],
        ),
        VrrpCase {
            params: v2.clone(),
            seen: true,
            ..case(
                "v2 steady advert with the right password",
                vrrp2_v4(MASTER, 51, 150, 1, &pass),
                XDP_DROP,
                None,
                vec![(VrrpSteady, 1)],
            )
        },
        VrrpCase {
            params: v2,
            ..case(
                "invalid: v2 wrong password",
                vrrp2_v4(MASTER, 51, 150, 1, b"wrong\0\0\0"),
                XDP_DROP,
                None,
                vec![(VrrpAuthFailure, 1)],
            )
        },
    ]
}

#[test]
fn vrrp_fast_path_fixtures() {
    ka_tests::require_root();
    let mut failures = Vec::new();
    for c in cases() {
        let mut loaded = common::Loaded::new();
        vrrp_fast::set_enabled(&mut loaded.ebpf, true, false).expect("enable");
        vrrp_fast::configure(&mut loaded.ebpf, LO, 51, Family::V4, &c.params).expect("configure");
        let key = vrrp_fast::key(LO, 51, Family::V4);
        let mut reader = EventReader::new(&mut loaded.ebpf).expect("ring buffer");
        let out = loaded.run_on(&c.input, LO);
        if out.action != c.expected_action {
            failures.push(format!(
                "{}: action {} != {}",
                c.name, out.action, c.expected_action
            ));
        }
        if out.data != c.input {
            failures.push(format!(
                "{}: frame changed\n{}",
                c.name,
                hex_diff(&c.input, &out.data)
            ));
        }
        let seen = vrrp_fast::last_seen(&loaded.ebpf, key).expect("last seen");
        if seen.is_some() != c.seen {
            failures.push(format!(
                "{}: last seen {seen:?}, expected set: {}",
                c.name, c.seen
            ));
        }
        let events = reader.poll();
        match (c.event, events.as_slice()) {
            (None, []) => {}
            (Some((kind, prio)), [e]) => {
                if e.kind != kind || e.priority != prio || e.vrid != 51 || e.ifindex != LO {
                    failures.push(format!("{}: event {e:?}", c.name));
                }
            }
            (want, got) => failures.push(format!("{}: events {got:?}, expected {want:?}", c.name)),
        }
        let counters = loaded.counters();
        let verdict = if c.expected_action == XDP_DROP {
            Counter::VerdictDrop
        } else {
            Counter::VerdictPass
        };
        let mut want = c.counters.clone();
        want.extend([(Counter::Ipv4, 1), (Counter::Vrrp, 1), (verdict, 1)]);
        for counter in Counter::ALL {
            let w = want
                .iter()
                .find(|(k, _)| k == counter)
                .map_or(0, |(_, v)| *v);
            let got = counters[counter.name()];
            if got != w {
                failures.push(format!(
                    "{}: counter {} = {got}, expected {w}",
                    c.name,
                    counter.name()
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

/// The instance is found through its copy in `KA_VRRP_VRID` (a few interfaces per VRID and
/// family) and, when every slot of its VRID holds another interface's instance, through
/// `KA_VRRP`: either way the master's steady advert is absorbed and stamped; a rewritten
/// instance (a new known master) is what XDP classifies against; a removed one is unknown.
/// Other interfaces' instances use made-up ifindexes (only `lo` receives adverts here).
#[test]
fn instance_found_by_vrid_slot_or_hash_fallback() {
    ka_tests::require_root();
    let advert = |src: &str| vrrp3_v4(src, 51, 150, 100, &[VIP]);
    for others in [0u32, ka_common::vrrp_fast::VRRP_VRID_SLOTS as u32] {
        let mut loaded = common::Loaded::new();
        vrrp_fast::set_enabled(&mut loaded.ebpf, true, false).expect("enable");
        for i in 0..others {
            vrrp_fast::configure(&mut loaded.ebpf, 1000 + i, 51, Family::V4, &params()).expect("configure another interface");
        }
        vrrp_fast::configure(&mut loaded.ebpf, LO, 51, Family::V4, &params()).expect("configure lo");
        let key = vrrp_fast::key(LO, 51, Family::V4);
        let mut reader = EventReader::new(&mut loaded.ebpf).expect("ring buffer");
        let ctx = format!("{others} other interfaces with VRID 51");
        assert_eq!(loaded.run_on(&advert(MASTER), LO).action, XDP_DROP, "{ctx}: steady advert dropped");
        assert!(vrrp_fast::last_seen(&loaded.ebpf, key).expect("last seen").is_some(), "{ctx}: stamped");
        assert_eq!(loaded.counters()[Counter::VrrpSteady.name()], 1, "{ctx}: vrrp_steady");
        assert!(reader.poll().is_empty(), "{ctx}: no event");
        // The known master changes: OTHER's adverts are now the steady ones.
        let mut p = params();
        p.known_master = Some(KnownMaster { addr: OTHER.parse().expect("addr"), priority: 150, adver_int: Duration::from_secs(1) });
        vrrp_fast::configure(&mut loaded.ebpf, LO, 51, Family::V4, &p).expect("reconfigure lo");
        assert_eq!(loaded.run_on(&advert(OTHER), LO).action, XDP_DROP, "{ctx}: the new master's advert is steady");
        assert_eq!(loaded.counters()[Counter::VrrpSteady.name()], 2, "{ctx}: vrrp_steady after the rewrite");
        assert_eq!(loaded.run_on(&advert(MASTER), LO).action, XDP_PASS, "{ctx}: the old master's is a change");
        let events = reader.poll();
        assert!(matches!(events.as_slice(), [e] if e.kind == EventKind::NewMaster), "{ctx}: {events:?}");
        vrrp_fast::remove(&mut loaded.ebpf, LO, 51, Family::V4).expect("remove lo");
        assert_eq!(loaded.run_on(&advert(OTHER), LO).action, XDP_PASS, "{ctx}: removed: passed (drop_unknown off)");
        assert_eq!(loaded.counters()[Counter::VrrpVridMismatch.name()], 1, "{ctx}: removed: vrrp_vrid_mismatch");
    }
}

/// keepalived's `auth_type AH` adverts (IPv4 protocol 51, VRRP after the AH header) are passed
/// to userspace and counted (`vrrp_ah_pass`), never dropped as invalid or unknown VRRP, even
/// with an instance of the same VRID in the fast path: only userspace validates AH. Other AH
/// traffic passes uncounted; with the fast path off nothing is counted.
#[test]
fn ah_adverts_pass_to_userspace_counted() {
    ka_tests::require_root();
    // keepalived 2.2.7's first AH advert (ka-common's fixture), from the AH header on.
    let keepalived = "70040000c612070100000001b9b0eaa954bc7d06b014f708213364020201dddac6120764c61207650000000000000000";
    let ah_vrrp: Vec<u8> = (0..keepalived.len()).step_by(2).map(|i| u8::from_str_radix(&keepalived[i..i + 2], 16).expect("hex")).collect();
    let mut ah_tcp = ah_vrrp.clone();
    ah_tcp[0] = 6;
    let frame = |payload: &[u8]| Frame::raw4("198.18.7.1", "224.0.0.18", 51).ttl(255).payload(payload).build();
    let cases = [
        ("keepalived's AH advert", frame(&ah_vrrp), true, 1),
        ("AH carrying TCP", frame(&ah_tcp), true, 0),
        ("fast path off", frame(&ah_vrrp), false, 0),
    ];
    let mut failures = Vec::new();
    for (name, input, fast, want_ah) in cases {
        let mut loaded = common::Loaded::new();
        vrrp_fast::set_enabled(&mut loaded.ebpf, fast, false).expect("enable");
        vrrp_fast::configure(&mut loaded.ebpf, LO, 51, Family::V4, &FastParams { version: 2, ..params() }).expect("configure");
        let out = loaded.run_on(&input, LO);
        if out.action != XDP_PASS || out.data != input {
            failures.push(format!("{name}: action {} (want pass), frame changed: {}", out.action, out.data != input));
        }
        let counters = loaded.counters();
        let want = [(Counter::Ipv4, 1), (Counter::OtherL4, 1), (Counter::VerdictPass, 1), (Counter::VrrpAhPass, want_ah)];
        for counter in Counter::ALL {
            let w = want.iter().find(|(k, _)| k == counter).map_or(0, |(_, v)| *v);
            let got = counters[counter.name()];
            if got != w {
                failures.push(format!("{name}: counter {} = {got}, expected {w}", counter.name()));
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// One advert of a [`BudgetCase`] and what XDP must do with it.
struct Step {
    input: Vec<u8>,
    expected_action: u32,
    /// The event expected on the ring buffer for this advert (kind, priority), if any.
    event: Option<(EventKind, u8)>,
}

/// A sequence of adverts through one instance's budget of below-reference adverts.
struct BudgetCase {
    name: &'static str,
    params: FastParams,
    /// The instance's `KA_VRRP_RATE` entry before the first advert, as (window start relative
    /// to now in seconds, adverts passed in it, source, priority); `None` for no entry.
    rate: Option<(i64, u32, &'static str, u8)>,
    steps: Vec<Step>,
    /// Counters besides ipv4/vrrp/verdicts (which are derived from the steps).
    counters: Vec<(Counter, u64)>,
}

fn step(input: Vec<u8>, expected_action: u32, event: Option<(EventKind, u8)>) -> Step {
    Step {
        input,
        expected_action,
        event,
    }
}

/// `n` copies of one advert: the first passes with `event`, the rest are limited.
fn flood(input: Vec<u8>, n: usize, event: (EventKind, u8)) -> Vec<Step> {
    (0..n)
        .map(|i| {
            if i == 0 {
                step(input.clone(), XDP_PASS, Some(event))
            } else {
                step(input.clone(), XDP_DROP, None)
            }
        })
        .collect()
}

fn budget_cases() -> Vec<BudgetCase> {
    use Counter::*;
    use EventKind::{HigherPriority, LowerPriority, NewMaster, PriorityChange, Resign};
    let as_master = FastParams {
        master: true,
        known_master: None,
        ..params()
    };
    let lower = |src: &str, prio| vrrp3_v4(src, 51, prio, 100, &[VIP]);
    let rotating: Vec<Step> = (10..20)
        .map(|i| {
            let src = format!("198.18.0.{i}");
            if i < 14 {
                step(lower(&src, 50), XDP_PASS, Some((LowerPriority, 50)))
            } else {
                step(lower(&src, 50), XDP_DROP, None)
            }
        })
        .collect();
    let mut higher_after = flood(lower(OTHER, 50), 10, (LowerPriority, 50));
    higher_after.push(step(
        lower("198.18.0.9", 200),
        XDP_PASS,
        Some((HigherPriority, 200)),
    ));
    higher_after.push(step(
        lower("198.18.0.9", 200),
        XDP_PASS,
        Some((HigherPriority, 200)),
    ));
    let mut backup = flood(lower(OTHER, 120), 5, (NewMaster, 120));
    backup.push(step(vrrp3_v4(MASTER, 51, 150, 100, &[VIP]), XDP_DROP, None));
    backup.push(step(
        vrrp3_v4(MASTER, 51, 200, 100, &[VIP]),
        XDP_PASS,
        Some((PriorityChange, 200)),
    ));
    backup.push(step(
        vrrp3_v4(OTHER, 51, 150, 100, &[VIP]),
        XDP_PASS,
        Some((NewMaster, 150)),
    ));
    let long = FastParams {
        adver_int: Duration::from_secs(40),
        ..as_master.clone()
    };
    vec![
        BudgetCase {
            name: "MASTER: one lower-priority advert repeated: the first passes, the rest are limited",
            params: as_master.clone(),
            rate: None,
            steps: flood(lower(OTHER, 50), 20, (LowerPriority, 50)),
            counters: vec![(VrrpChange, 1), (VrrpLowerPrioLimited, 19)],
        },
        BudgetCase {
            name: "MASTER: rotating sources: four per interval",
            params: as_master.clone(),
            rate: None,
            steps: rotating,
            counters: vec![(VrrpChange, 4), (VrrpLowerPrioLimited, 6)],
        },
        BudgetCase {
            name: "MASTER: priority changes pass until the budget is spent",
            params: as_master.clone(),
            rate: None,
            steps: vec![
                step(lower(OTHER, 50), XDP_PASS, Some((LowerPriority, 50))),
                step(lower(OTHER, 50), XDP_DROP, None),
                step(lower(OTHER, 60), XDP_PASS, Some((LowerPriority, 60))),
                step(lower(OTHER, 60), XDP_DROP, None),
                step(lower(OTHER, 70), XDP_PASS, Some((LowerPriority, 70))),
                step(lower(OTHER, 80), XDP_PASS, Some((LowerPriority, 80))),
                step(lower(OTHER, 90), XDP_DROP, None),
            ],
            counters: vec![(VrrpChange, 4), (VrrpLowerPrioLimited, 3)],
        },
        BudgetCase {
            name: "MASTER: a higher-priority peer is never limited, even with the budget spent",
            params: as_master.clone(),
            rate: None,
            steps: higher_after,
            counters: vec![(VrrpChange, 3), (VrrpLowerPrioLimited, 9)],
        },
        BudgetCase {
            name: "MASTER: priority 0 goes through the budget",
            params: as_master.clone(),
            rate: None,
            steps: flood(lower(OTHER, 0), 3, (Resign, 0)),
            counters: vec![(VrrpChange, 1), (VrrpLowerPrioLimited, 2)],
        },
        BudgetCase {
            name: "BACKUP: below the master's priority from another router is limited; the master's own adverts and higher ones are not",
            params: params(),
            rate: None,
            steps: backup,
            counters: vec![(VrrpChange, 3), (VrrpLowerPrioLimited, 4), (VrrpSteady, 1)],
        },
        BudgetCase {
            name: "MASTER: a spent budget in the current window: a repeat is limited",
            params: long.clone(),
            rate: Some((0, ka_common::vrrp_fast::VRRP_RATE_PER_INTERVAL, OTHER, 50)),
            steps: vec![step(lower(OTHER, 50), XDP_DROP, None), step(lower("198.18.0.9", 40), XDP_DROP, None)],
            counters: vec![(VrrpLowerPrioLimited, 2)],
        },
        BudgetCase {
            name: "MASTER: a spent budget in a window one interval old: the next advert passes (keepalive)",
            params: long,
            rate: Some((-41, ka_common::vrrp_fast::VRRP_RATE_PER_INTERVAL, OTHER, 50)),
            steps: vec![step(lower(OTHER, 50), XDP_PASS, Some((LowerPriority, 50))), step(lower(OTHER, 50), XDP_DROP, None)],
            counters: vec![(VrrpChange, 1), (VrrpLowerPrioLimited, 1)],
        },
    ]
}

/// CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns`, in nanoseconds.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we pass.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) },
        0
    );
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Below-reference adverts (lower than ours while MASTER, than the known master's as BACKUP)
/// go through a per-instance budget of `VRRP_RATE_PER_INTERVAL` per advert interval: the first
/// of each interval passes, then only changes (source, priority) until the budget is spent;
/// the rest are dropped, counted as `vrrp_lower_prio_limited`, and never reach the ring
/// buffer. Adverts that can change mastership are never limited. Fresh maps per case.
#[test]
fn lower_priority_budget_fixtures() {
    ka_tests::require_root();
    let mut failures = Vec::new();
    for c in budget_cases() {
        let mut loaded = common::Loaded::new();
        vrrp_fast::set_enabled(&mut loaded.ebpf, true, false).expect("enable");
        vrrp_fast::configure(&mut loaded.ebpf, LO, 51, Family::V4, &c.params).expect("configure");
        let key = vrrp_fast::key(LO, 51, Family::V4);
        if let Some((rel_s, passed, src, prio)) = c.rate {
            let mut m: aya::maps::HashMap<
                _,
                ka_common::vrrp_fast::VrrpKey,
                ka_common::vrrp_fast::VrrpRate,
            > = aya::maps::HashMap::try_from(
                loaded
                    .ebpf
                    .map_mut(ka_common::vrrp_fast::VRRP_RATE_MAP)
                    .expect("rate map"),
            )
            .expect("hash map");
            let mut last_src = [0u8; 16];
            last_src[..4]
                .copy_from_slice(&src.parse::<std::net::Ipv4Addr>().expect("addr").octets());
            let start = monotonic_ns().saturating_add_signed(rel_s * 1_000_000_000);
            m.insert(
                key,
                ka_common::vrrp_fast::VrrpRate {
                    window_start_ns: start,
                    last_src,
                    passed,
                    last_prio: prio,
                    _pad: [0; 3],
                },
                0,
            )
            .expect("insert");
        }
        let mut reader = EventReader::new(&mut loaded.ebpf).expect("ring buffer");
        let (mut passed, mut dropped) = (0, 0);
        for (i, s) in c.steps.iter().enumerate() {
            let out = loaded.run_on(&s.input, LO);
            if out.action != s.expected_action {
                failures.push(format!(
                    "{}: advert {i}: action {} != {}",
                    c.name, out.action, s.expected_action
                ));
            }
            if s.expected_action == XDP_DROP {
                dropped += 1
            } else {
                passed += 1
            }
            let events = reader.poll();
            match (s.event, events.as_slice()) {
                (None, []) => {}
                (Some((kind, prio)), [e]) if e.kind == kind && e.priority == prio => {}
                (want, got) => failures.push(format!(
                    "{}: advert {i}: events {got:?}, expected {want:?}",
                    c.name
                )),
            }
        }
        let counters = loaded.counters();
        let n = c.steps.len() as u64;
        let mut want = c.counters.clone();
        want.extend([
            (Counter::Ipv4, n),
            (Counter::Vrrp, n),
            (Counter::VerdictDrop, dropped),
            (Counter::VerdictPass, passed),
        ]);
        for counter in Counter::ALL {
            let w = want
                .iter()
                .find(|(k, _)| k == counter)
                .map_or(0, |(_, v)| *v);
            let got = counters[counter.name()];
            if got != w {
                failures.push(format!(
                    "{}: counter {} = {got}, expected {w}",
                    c.name,
                    counter.name()
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
