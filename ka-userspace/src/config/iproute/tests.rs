//! Table-driven tests of the address, route and rule grammar against keepalived 2.2.7's
//! `alloc_ipaddress`, `alloc_route` and `alloc_rule` (checked with `keepalived -t`).

use std::net::IpAddr;

use super::*;
use crate::config::model::{RouteMetric as M, RouteType as T};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn pfx(s: &str) -> IpPrefix {
    s.parse().expect("prefix")
}

fn span() -> Span {
    Span::default()
}

fn r(line: &str) -> Parsed<Route> {
    route(&split(line), Block::Virtual, span())
}

fn texts(notes: &[Note]) -> Vec<String> {
    notes
        .iter()
        .map(|n| match n {
            Note::Warn { at, msg } => format!("warn@{at}: {msg}"),
            Note::Skip { at, msg } => format!("skip@{at}: {msg}"),
            Note::Unsupported { at, msg } => format!("unsupported@{at}: {msg}"),
        })
        .collect()
}

/// Every route form keepalived installs parses into the typed route ka installs.
#[test]
fn valid_routes() {
    type Check = fn(&Route) -> bool;
    let cases: &[(&str, Check)] = &[
        ("198.18.9.0/24 via 198.18.0.1 dev eth0", |r| {
            r.dst == pfx("198.18.9.0/24") && r.via == Some(ip("198.18.0.1")) && r.dev.as_deref() == Some("eth0") && r.track
        }),
        ("198.18.9.0/24 dev eth0 src 198.18.0.10", |r| r.src == Some(ip("198.18.0.10")) && r.via.is_none()),
        ("default gw 198.18.0.1", |r| r.dst == pfx("0.0.0.0/0") && r.via == Some(ip("198.18.0.1")) && !r.track),
        ("to 198.18.9.0/24 via 198.18.0.1 dev eth0", |r| r.dst == pfx("198.18.9.0/24")),
        ("inet6 default via fd00:198:18::1 dev eth0", |r| r.dst == pfx("::/0")),
        ("default via fd00:198:18::1 dev eth0", |r| r.dst == pfx("::/0")),
        ("198.18.9.0/24 via 198.18.0.1 dev eth0 table 100", |r| r.table == 100),
        ("198.18.9.0/24 via 198.18.0.1 dev eth0 table main", |r| r.table == 254),
        ("198.18.9.0/24 via 198.18.0.1 dev eth0 table 0x10000", |r| r.table == 65536),
        ("198.18.9.0/24 via 198.18.0.1 dev eth0 metric 5", |r| r.metric == Some(5)),
        ("198.18.9.0/24 via 198.18.0.1 dev eth0 preference 7", |r| r.metric == Some(7)),
        ("198.18.9.0/24 dev eth0 scope link", |r| r.scope == Some(253)),
        ("198.18.9.0/24 dev eth0 scope 200", |r| r.scope == Some(200)),
        // Tracked routes get keepalived's protocol; untracked ones keep the one given.
        ("198.18.9.0/24 dev eth0", |r| r.protocol == Some(RTPROT_KEEPALIVED)),
        ("198.18.9.0/24 dev eth0 protocol static no_track", |r| r.protocol == Some(4) && !r.track),
        ("198.18.9.0/24 dev eth0 protocol 99 no_track", |r| r.protocol == Some(99)),
        ("blackhole 198.18.9.0/24", |r| r.kind == T::Blackhole && r.dst == pfx("198.18.9.0/24")),
        ("unreachable 198.18.9.0/24", |r| r.kind == T::Unreachable),
        ("prohibit fd00:198:18:9::/64", |r| r.kind == T::Prohibit && r.dst == pfx("fd00:198:18:9::/64")),
        ("throw 198.18.9.0/24 table 100", |r| r.kind == T::Throw && r.table == 100),
        ("198.18.9.0/24 via 198.18.0.1 dev eth0 onlink", |r| r.onlink),
        ("198.18.9.0/24 via 198.18.0.1 dev eth0 mtu lock 1400 advmss 1360", |r| {
            r.metrics == vec![M::Mtu(1400), M::Advmss(1360)] && r.lock == 1 << 2
        }),
        ("198.18.9.0/24 via 198.18.0.1 dev eth0 initcwnd 10 features ecn congctl bbr", |r| {
            r.metrics == vec![M::InitCwnd(10), M::Features(1), M::CongCtl("bbr".into())]
        }),
        ("fd00:198:18:9::/64 from fd00:198:18:1::/64 via fd00:198:18::1 dev eth0", |r| {
            r.from == Some(pfx("fd00:198:18:1::/64"))
        }),
        ("fd00:198:18:9::/64 dev eth0 pref high expires 60", |r| r.pref == Some(1) && r.expires == Some(60)),
        ("198.18.9.0/24 tos 0x10 via 198.18.0.1 dev eth0", |r| r.tos == Some(16)),
        ("198.18.9.0/24 nexthop via 198.18.0.1 dev eth0 weight 2 nexthop via 198.18.0.2 dev eth1 onlink", |r| {
            r.nexthops
                == vec![
                    Nexthop { via: Some(ip("198.18.0.1")), dev: Some("eth0".into()), weight: Some(2), onlink: false },
                    Nexthop { via: Some(ip("198.18.0.2")), dev: Some("eth1".into()), weight: None, onlink: true },
                ]
        }),
        ("198.18.9.0/24 via 198.18.0.1 or 198.18.0.2", |r| {
            r.via.is_none() && r.nexthops.iter().map(|n| n.via).collect::<Vec<_>>() == vec![Some(ip("198.18.0.1")), Some(ip("198.18.0.2"))]
        }),
    ];
    for (line, check) in cases {
        let p = r(line);
        let v = p.value.as_ref().unwrap_or_else(|| panic!("{line}: skipped: {:?}", texts(&p.notes)));
        assert!(check(v), "{line}: {v:?}");
        assert!(!p.notes.iter().any(|n| !matches!(n, Note::Warn { .. })), "{line}: {:?}", texts(&p.notes));
    }
}

/// What keepalived warns about, skips, or ka cannot apply, at the word it is about.
#[test]
fn route_problems() {
    let cases: &[(&str, bool, &str)] = &[
        // (line, entry kept, the note)
        ("default gw 198.18.0.1 dev eth0", true, "warn@1: \"gw\" for routes is deprecated"),
        ("198.18.9.0/24 via 198.18.0.1", true, "warn@0: cannot track route 198.18.9.0/24 with no interface"),
        ("198.18.9.0/24 dev eth0 protocol static", true, "warn@0: route cannot be tracked if protocol is not RTPROT_KEEPALIVED"),
        ("198.18.9.0/24 via 198.18.0.1 dev eth0 proto static", false, "skip@5: unknown route keyword proto; did you mean 'protocol'?"),
        ("198.18.9.0/24 via 198.18.0.300 dev eth0", false, "skip@2: invalid route via address 198.18.0.300"),
        ("198.18.9.0/24 src nonsense dev eth0", false, "skip@2: invalid route src address nonsense"),
        ("198.18.9.0/24 via fd00::1 dev eth0", false, "skip@2: cannot mix IPv4 and IPv6"),
        ("198.18.9.0/24 dev eth0 table 300x", false, "skip@4: routing table 300x not found"),
        ("198.18.9.0/24 dev eth0 scope bogus", false, "skip@4: scope bogus not found"),
        ("198.18.9.0/24 dev eth0 metric x", false, "skip@4: invalid metric x"),
        ("198.18.9.0/24 dev eth0 mtu lock 1400 bogus", false, "skip@6: unknown route keyword bogus"),
        ("198.18.9.0/24 from 198.18.1.0/24 dev eth0", false, "skip@2: route from address only supported with IPv6"),
        ("via 198.18.0.1 dev eth0", false, "skip@0: route must have a destination"),
        ("198.18.9.0/24 dev", false, "skip@1: 'dev' needs a value"),
        ("198.18.9.0/24 dev eth0 track_group TG", false, "skip@3: unknown route keyword track_group"),
        ("198.18.9.0/24 nexthop via 198.18.0.1 dev eth0 nexthop via bogus", true, "warn@8: invalid nexthop address bogus"),
        ("198.18.9.0/24 nexthop via 198.18.0.1 weight 0", true, "warn@5: invalid weight 0"),
        ("198.18.9.0/24 dev eth0 encap mpls 100", false, "unsupported@3: ka cannot apply 'encap'"),
        ("198.18.9.0/24 dev eth0 rtt 10", false, "unsupported@3: ka cannot apply 'rtt'"),
    ];
    for (line, kept, note) in cases {
        let p = r(line);
        let t = texts(&p.notes);
        assert_eq!(p.value.is_some(), *kept, "{line}: {t:?}");
        assert!(t.iter().any(|m| m.starts_with(note)), "{line}: want {note:?}, got {t:?}");
    }
    // In static_routes, track_group is a keyword.
    let p = route(&split("198.18.9.0/24 dev eth0 track_group TG"), Block::Static, span());
    assert!(p.value.is_some() && p.notes.is_empty(), "{:?}", texts(&p.notes));
    // A nexthop keepalived would apply and ka cannot is refused in a virtual route.
    let p = r("198.18.9.0/24 nexthop via 198.18.0.1 dev eth0 encap mpls 100");
    assert!(p.notes.iter().any(|n| matches!(n, Note::Unsupported { at: 6, .. })), "{:?}", texts(&p.notes));
}

fn ru(line: &str, prios: &mut RulePriorities) -> Parsed<Rule> {
    rule(&split(line), Block::Virtual, span(), prios)
}

/// Rule forms keepalived installs, and the preference it gives a rule without one.
#[test]
fn rules() {
    let mut prios = RulePriorities::default();
    type Check = fn(&Rule) -> bool;
    let cases: &[(&str, Check)] = &[
        ("from 198.18.0.10 table 100 priority 100", |r| {
            r.from == Some(pfx("198.18.0.10/32")) && r.action == RuleAction::Table(100) && r.priority == 100 && !r.v6
        }),
        ("to 198.18.1.0/24 lookup main preference 5", |r| r.to == Some(pfx("198.18.1.0/24")) && r.action == RuleAction::Table(254)),
        ("from all fwmark 0x10/0xff table 7 order 9", |r| r.from.is_none() && r.fwmark == Some((16, Some(255))) && r.priority == 9),
        ("fwmark 5 table 7 priority 9", |r| r.fwmark == Some((5, None))),
        ("iif eth0 oif eth1 table 7 priority 9", |r| r.iif.as_deref() == Some("eth0") && r.oif.as_deref() == Some("eth1")),
        ("from fd00:198:18::/64 table 7 priority 9", |r| r.v6),
        ("inet6 not from all blackhole priority 9", |r| r.v6 && r.invert && r.action == RuleAction::Blackhole),
        ("from 198.18.0.0/24 goto 200 priority 100", |r| r.action == RuleAction::Goto(200)),
        ("from 198.18.0.0/24 type nop priority 100", |r| r.action == RuleAction::Nop),
        ("from 198.18.0.0/24 table 100 priority 9 protocol 42 no_track", |r| r.protocol == Some(42)),
        ("from 198.18.0.0/24 table 100 priority 9", |r| r.protocol == Some(RTPROT_KEEPALIVED)),
        ("from 198.18.0.0/24 table 100 priority 9 suppress_prefixlength 0", |r| r.suppress_prefixlen == Some(0)),
    ];
    for (line, check) in cases {
        let p = ru(line, &mut prios);
        let v = p.value.as_ref().unwrap_or_else(|| panic!("{line}: skipped: {:?}", texts(&p.notes)));
        assert!(check(v), "{line}: {v:?}");
        assert!(p.notes.is_empty(), "{line}: {:?}", texts(&p.notes));
    }
    // Without a preference, keepalived counts down from 16384 per family, with a warning.
    let a = ru("from 198.18.0.0/24 table 100", &mut prios);
    let b = ru("from 198.18.1.0/24 table 100", &mut prios);
    let c = ru("from fd00::/64 table 100", &mut prios);
    let got: Vec<u32> = [&a, &b, &c].iter().filter_map(|p| p.value.as_ref().map(|r| r.priority)).collect();
    assert_eq!(got, vec![16384, 16383, 16384]);
    assert!(texts(&a.notes)[0].starts_with("warn@0: rule has no preference specified; setting it to 16384"));
    let cases: &[(&str, &str)] = &[
        ("from 198.18.0.0/24 priority 11", "skip@0: no action specified for rule"),
        ("from 198.18.0.0/24 lookup main pref 13", "skip@4: unknown rule option pref"),
        ("from 198.18.0.300 table 100 priority 1", "skip@1: invalid rule from address 198.18.0.300"),
        ("from 198.18.0.0/24 to fd00::/64 table 100 priority 1", "skip@3: rule specification has mixed IPv4 and IPv6"),
        ("from 198.18.0.0/24 table 0 priority 1", "skip@3: table 0 is not valid"),
        ("table 100 blackhole priority 1", "skip@2: cannot specify more than one of"),
        ("from 198.18.0.0/24 goto 5 priority 10", "skip@0: invalid rule: preference 10 >= goto target 5"),
        ("fwmark 0x10/x table 7 priority 9", "skip@1: invalid rule fwmark 0x10/x"),
        ("from 198.18.0.0/24 local priority 9", "skip@2: invalid rule action local"),
        ("from 198.18.0.0/24 table 7 priority 9 uidrange 1-2", "unsupported@6: ka cannot apply 'uidrange'"),
    ];
    for (line, note) in cases {
        let p = ru(line, &mut prios);
        let t = texts(&p.notes);
        assert!(p.value.is_none(), "{line}: {t:?}");
        assert!(t.iter().any(|m| m.starts_with(note)), "{line}: want {note:?}, got {t:?}");
    }
}

fn addr(line: &str) -> Parsed<VirtualIp> {
    address(&split(line), Block::Virtual, span())
}

/// Address options: `brd` (+/- computed), `peer`, `label`, `scope`, `dev`, flags.
#[test]
fn addresses() {
    type Check = fn(&VirtualIp) -> bool;
    let cases: &[(&str, Check)] = &[
        ("198.18.0.10", |v| v.address == pfx("198.18.0.10/32")),
        ("198.18.0.10/24 dev eth1", |v| v.address.len == 24 && v.dev.as_deref() == Some("eth1")),
        ("198.18.0.10/24 brd 198.18.0.255", |v| v.broadcast == Some("198.18.0.255".parse().expect("ip"))),
        ("198.18.0.10/24 broadcast +", |v| v.broadcast == Some("198.18.0.255".parse().expect("ip"))),
        ("198.18.0.10/24 brd -", |v| v.broadcast == Some("198.18.0.0".parse().expect("ip"))),
        ("198.18.0.10 peer 198.18.0.1", |v| v.peer == Some(ip("198.18.0.1")) && v.address.len == 32),
        ("fd00:198:18::10 peer fd00:198:18::1", |v| v.peer == Some(ip("fd00:198:18::1"))),
        ("198.18.0.10/24 label eth0:vip", |v| v.label.as_deref() == Some("eth0:vip")),
        ("198.18.0.10/24 scope link", |v| v.scope == Some(253)),
        ("198.18.0.10/24 scope host", |v| v.scope == Some(254)),
        ("fd00:198:18::10/64 home -nodad mngtmpaddr noprefixroute autojoin", |v| {
            v.flags == AddrFlags { home: true, dad: true, mngtmpaddr: true, noprefixroute: true, autojoin: true }
        }),
        ("198.18.0.10 no_track use_vmac preferred_lft forever", |v| v.no_track && v.use_vmac && v.preferred_lft == Some(u32::MAX)),
    ];
    for (line, check) in cases {
        let p = addr(line);
        let v = p.value.as_ref().unwrap_or_else(|| panic!("{line}: skipped: {:?}", texts(&p.notes)));
        assert!(check(v), "{line}: {v:?}");
        assert!(p.notes.is_empty(), "{line}: {:?}", texts(&p.notes));
    }
    let cases: &[(&str, bool, &str)] = &[
        // keepalived: "VRRP is trying to assign invalid broadcast ... skipping VIP".
        ("198.18.0.10/24 brd 198.18.0.300", false, "skip@2: invalid broadcast address '198.18.0.300'"),
        ("fd00:198:18::10 brd fd00::ff", false, "skip@2: a broadcast address (fd00::ff) cannot be given"),
        // keepalived: "Invalid peer address ..." and keeps the address without a peer.
        ("198.18.0.11/24 peer 198.18.0.1/24", true, "warn@2: invalid peer address '198.18.0.1/24'"),
        ("198.18.0.12 peer nonsense", true, "warn@2: invalid peer address 'nonsense'"),
        ("198.18.0.12 peer fd00::1", true, "warn@2: peer address fd00::1 does not match the family"),
        ("198.18.0.12/24 peer 198.18.0.1", true, "warn@0: cannot specify an address prefix with a peer address"),
        ("198.18.0.13/33", true, "warn@0: invalid prefix length 33 for address 198.18.0.13/33; using /32"),
        ("198.18.0.14 scope bogus", true, "warn@2: invalid scope 'bogus'"),
        ("198.18.0.15 label waytoolonglabel1234", false, "skip@2: address label waytoolonglabel1234 is longer"),
        ("198.18.0.16 dev eth0 dev eth1", false, "skip@3: cannot specify the device"),
        ("198.18.0.17 dev", false, "skip@1: no dev parameter specified"),
        ("198.18.0.300/24", false, "skip@0: invalid address '198.18.0.300/24'"),
        ("198.18.0.18 bogus", true, "warn@1: unknown address option 'bogus'"),
        ("198.18.0.19/24 brd + peer 198.18.0.1", true, "warn@0: cannot specify broadcast and peer"),
        ("fd00::1 scope link label x", true, "warn@0: cannot specify scope for IPv6"),
    ];
    for (line, kept, note) in cases {
        let p = addr(line);
        let t = texts(&p.notes);
        assert_eq!(p.value.is_some(), *kept, "{line}: {t:?}");
        assert!(t.iter().any(|m| m.starts_with(note)), "{line}: want {note:?}, got {t:?}");
    }
    // A peer that was refused is not kept under another name.
    assert_eq!(addr("198.18.0.11/24 peer 198.18.0.1/24").value.and_then(|v| v.peer), None);
}
