//! The one grammar of addresses, routes and rules (`virtual_ipaddress`, `static_ipaddress`,
//! `virtual_routes`, `static_routes`, `virtual_rules`, `static_rules`), as keepalived 2.2.7 reads
//! them (vrrp_ipaddress.c `alloc_ipaddress`, vrrp_iproute.c `alloc_route`, vrrp_iprule.c
//! `alloc_rule`). Pure: words in, a typed entry and notes (with the index of the word they are
//! about) out. `ka check` and `ka run` both get their entries from here, through the parser.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::model::{
    AddrFlags, IpPrefix, Nexthop, Route, RouteMetric, RouteType, Rule, RuleAction, VirtualIp,
};
use super::diag::Span;

/// keepalived's own route protocol number (RTPROT_KEEPALIVED), set on tracked routes and rules.
pub const RTPROT_KEEPALIVED: u8 = 18;

/// The first preference keepalived gives a rule written without one (then counting down).
pub const RULE_START_PRIORITY: u32 = 16384;

/// What keepalived does about a problem in an entry, and so what ka does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// keepalived says so and keeps the entry.
    Warn {
        /// Index of the word it is about.
        at: usize,
        /// What it says.
        msg: String,
    },
    /// keepalived says so and skips the entry.
    Skip {
        /// Index of the word it is about.
        at: usize,
        /// What it says.
        msg: String,
    },
    /// keepalived would apply the entry; ka cannot yet (an error for entries ka applies).
    Unsupported {
        /// Index of the word it is about.
        at: usize,
        /// What it says.
        msg: String,
    },
}

/// The outcome of parsing one entry: the entry (`None`: skipped) and what was said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    /// The entry, unless skipped.
    pub value: Option<T>,
    /// Diagnostics, in the order keepalived gives them.
    pub notes: Vec<Note>,
}

/// Where an entry is written: `static_*` blocks allow `track_group` and are not applied by ka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// `virtual_ipaddress`, `virtual_routes`, `virtual_rules` (applied by the engine).
    Virtual,
    /// `static_ipaddress`, `static_routes`, `static_rules` (applied at start, see [`crate::statics`]).
    Static,
}

struct Cursor<'a> {
    w: &'a [&'a str],
    notes: Vec<Note>,
}

/// Ends the parse of an entry: `return skip!(c, at, msg)`.
macro_rules! skip {
    ($c:expr, $at:expr, $($m:tt)+) => {{
        $c.notes.push(Note::Skip { at: $at, msg: format!($($m)+) });
        return Parsed { value: None, notes: std::mem::take(&mut $c.notes) };
    }};
}

macro_rules! unsupported {
    ($c:expr, $at:expr, $($m:tt)+) => {{
        $c.notes.push(Note::Unsupported { at: $at, msg: format!($($m)+) });
        return Parsed { value: None, notes: std::mem::take(&mut $c.notes) };
    }};
}

impl<'a> Cursor<'a> {
    fn warn(&mut self, at: usize, msg: impl Into<String>) {
        self.notes.push(Note::Warn { at, msg: msg.into() });
    }

    fn get(&self, i: usize) -> Option<&'a str> {
        self.w.get(i).copied()
    }
}

/// `strtoul(s, 0)` as keepalived and iproute2 read numbers: decimal, `0x` hex or `0` octal.
fn strtoul(s: &str) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()
    } else if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
        s.parse().ok()
    } else {
        None
    }
}

/// A name of `/etc/iproute2/FILE` (or one of keepalived's built-in names), or a number up to
/// `max` (keepalived's `find_entry`).
fn rt_name(file: &str, builtin: &[(&str, u32)], name: &str, max: u64) -> Option<u32> {
    if let Some(n) = strtoul(name) {
        return (n <= max).then(|| u32::try_from(n).ok()).flatten();
    }
    if let Some((_, v)) = builtin.iter().find(|(n, _)| *n == name) {
        return Some(*v);
    }
    let text = std::fs::read_to_string(std::path::Path::new("/etc/iproute2").join(file)).ok()?;
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?, it.next()?))
        })
        .find(|(_, n)| *n == name)
        .and_then(|(id, _)| strtoul(id))
        .filter(|id| *id <= max)
        .and_then(|id| u32::try_from(id).ok())
}

/// `table` names: keepalived's built-ins (`default` 253, `main` 254, `local` 255) and
/// `/etc/iproute2/rt_tables`.
pub fn table(name: &str) -> Option<u32> {
    rt_name("rt_tables", &[("default", 253), ("main", 254), ("local", 255)], name, u64::from(u32::MAX))
}

/// `scope` names (`global` 0, `site` 200, `link` 253, `host` 254, `nowhere` 255) and numbers.
pub fn scope(name: &str) -> Option<u8> {
    let builtin = [("global", 0), ("nowhere", 255), ("host", 254), ("link", 253), ("site", 200)];
    rt_name("rt_scopes", &builtin, name, 255).and_then(|v| u8::try_from(v).ok())
}

/// `protocol` names (`kernel`, `boot`, `static`, ...) and numbers.
pub fn protocol(name: &str) -> Option<u8> {
    let builtin = [
        ("none", 0),
        ("redirect", 1),
        ("kernel", 2),
        ("boot", 3),
        ("static", 4),
        ("gated", 8),
        ("ra", 9),
        ("mrt", 10),
        ("zebra", 11),
        ("bird", 12),
        ("dnrouted", 13),
        ("xorp", 14),
        ("ntk", 15),
        ("dhcp", 16),
        ("babel", 42),
    ];
    rt_name("rt_protos", &builtin, name, 255).and_then(|v| u8::try_from(v).ok())
}

fn dsfield(name: &str) -> Option<u8> {
    rt_name("rt_dsfield", &[], name, 255).and_then(|v| u8::try_from(v).ok())
}

/// A route type name (keepalived's `rtntypes`).
fn route_type(s: &str) -> Option<RouteType> {
    Some(match s {
        "unicast" => RouteType::Unicast,
        "local" => RouteType::Local,
        "nat" => RouteType::Nat,
        "broadcast" | "brd" => RouteType::Broadcast,
        "anycast" => RouteType::Anycast,
        "multicast" => RouteType::Multicast,
        "prohibit" => RouteType::Prohibit,
        "unreachable" => RouteType::Unreachable,
        "blackhole" => RouteType::Blackhole,
        "xresolve" => RouteType::Xresolve,
        "throw" => RouteType::Throw,
        _ => return None,
    })
}

/// A bare address (keepalived's `parse_ipaddress` without a prefix): the family follows a `:`.
fn bare_addr(s: &str) -> Option<IpAddr> {
    if s.contains(':') {
        s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// `ADDR[/LEN]` as keepalived reads it: an invalid length is warned about and the full length
/// used; an invalid address is `None`.
fn addr_prefix(s: &str) -> Option<(IpPrefix, Option<String>)> {
    let (a, l) = s.split_once('/').map_or((s, None), |(a, l)| (a, Some(l)));
    let addr = bare_addr(a)?;
    let max = if addr.is_ipv6() { 128 } else { 32 };
    match l {
        None => Some((IpPrefix { addr, len: max }, None)),
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max && !l.starts_with('+') => Some((IpPrefix { addr, len: n }, None)),
            _ => Some((
                IpPrefix { addr, len: max },
                Some(format!("invalid prefix length {l} for address {s}; using /{max} as keepalived 2.2 does")),
            )),
        },
    }
}

/// A route destination or rule prefix (keepalived's `parse_route`): `default`/`any`/`all` are
/// the whole family (`Some(None)`), `default6` the whole IPv6 space.
fn route_prefix(s: &str) -> Option<(Option<IpPrefix>, Option<bool>, Option<String>)> {
    match s {
        "default" | "any" | "all" => Some((None, None, None)),
        "default6" => Some((None, Some(true), None)),
        _ => addr_prefix(s).map(|(p, w)| (Some(p), Some(p.is_ipv6()), w)),
    }
}

fn any(v6: bool) -> IpPrefix {
    IpPrefix { addr: if v6 { IpAddr::V6(Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) }, len: 0 }
}

fn words_of(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Parses one address line (`w[0]` is the address), as keepalived's `alloc_ipaddress`.
pub fn address(w: &[&str], block: Block, span: Span) -> Parsed<VirtualIp> {
    let mut c = Cursor { w, notes: Vec::new() };
    let Some(first) = c.get(0) else { skip!(c, 0, "empty address entry") };
    let Some((address, warn)) = addr_prefix(first) else {
        skip!(c, 0, "invalid address '{first}'");
    };
    if let Some(m) = warn {
        c.warn(0, m);
    }
    let mut v = VirtualIp {
        address,
        dev: None,
        broadcast: None,
        scope: None,
        label: None,
        peer: None,
        no_track: false,
        flags: AddrFlags::default(),
        preferred_lft: None,
        use_vmac: false,
        track_group: None,
        span,
    };
    let v6 = address.is_ipv6();
    // `brd +` / `brd -`: computed once the prefix is final.
    let mut brd_compute: Option<bool> = None;
    let mut have_brd = false;
    let mut i = 1;
    while i < w.len() {
        let kw = w[i];
        let takes_value = matches!(kw, "dev" | "scope" | "broadcast" | "brd" | "label" | "peer" | "preferred_lft")
            || (block == Block::Static && kw == "track_group");
        let val = if takes_value {
            match c.get(i + 1) {
                Some(v) => v,
                None => skip!(c, i, "no {kw} parameter specified for {first}"),
            }
        } else {
            ""
        };
        match kw {
            "dev" => {
                if v.dev.is_some() {
                    skip!(c, i, "cannot specify the device of {first} more than once");
                }
                v.dev = Some(val.to_owned());
            }
            "scope" => match scope(val) {
                Some(s) => v.scope = Some(s),
                None => c.warn(i + 1, format!("invalid scope '{val}' specified for {first} (global|site|link|host|nowhere or a number); scope ignored")),
            },
            "broadcast" | "brd" => {
                if v6 {
                    skip!(c, i + 1, "a broadcast address ({val}) cannot be given to the IPv6 address {first}");
                }
                have_brd = true;
                match val {
                    "+" => brd_compute = Some(true),
                    "-" => brd_compute = Some(false),
                    _ => match val.parse::<Ipv4Addr>() {
                        Ok(b) => v.broadcast = Some(b),
                        Err(_) => skip!(c, i + 1, "invalid broadcast address '{val}' for {first}"),
                    },
                }
            }
            "label" => {
                if val.len() >= 16 {
                    skip!(c, i + 1, "address label {val} is longer than the maximum length 15");
                }
                v.label = Some(val.to_owned());
            }
            "peer" => {
                if v.peer.is_some() {
                    c.warn(i + 1, format!("peer {val}: another peer has already been specified; ignored"));
                } else {
                    match bare_addr(val) {
                        None => {
                            let hint = if val.contains('/') { " (a peer takes no prefix)" } else { "" };
                            c.warn(i + 1, format!("invalid peer address '{val}'{hint}; peer ignored"));
                        }
                        Some(p) if p.is_ipv6() != v6 => c.warn(i + 1, format!("peer address {val} does not match the family of {first}; peer ignored")),
                        Some(p) => {
                            let full = if v6 { 128 } else { 32 };
                            if v.address.len != full {
                                c.warn(0, "cannot specify an address prefix with a peer address; prefix ignored");
                            }
                            v.address.len = full;
                            v.peer = Some(p);
                        }
                    }
                }
            }
            "home" => v.flags.home = true,
            "-nodad" => v.flags.dad = true,
            "mngtmpaddr" => v.flags.mngtmpaddr = true,
            "noprefixroute" => v.flags.noprefixroute = true,
            "autojoin" => v.flags.autojoin = true,
            "no_track" => v.no_track = true,
            "preferred_lft" => {
                if val == "forever" {
                    v.preferred_lft = Some(u32::MAX);
                } else {
                    match val.parse::<u32>() {
                        Ok(n) => v.preferred_lft = Some(n),
                        Err(_) => c.warn(i + 1, format!("preferred_lft {val} is invalid; ignored")),
                    }
                }
            }
            "track_group" if block == Block::Static => v.track_group = Some(val.to_owned()),
            "use_vmac" if block == Block::Virtual => v.use_vmac = true,
            other => c.warn(i, format!("unknown address option '{other}'; ignored")),
        }
        i += if takes_value { 2 } else { 1 };
    }
    if have_brd && v.peer.is_some() {
        c.warn(0, "cannot specify broadcast and peer addresses; broadcast ignored");
        v.broadcast = None;
    } else if let Some(plus) = brd_compute {
        match (v.address.addr, v.address.len <= 30) {
            (IpAddr::V4(a), true) => {
                let host = u32::MAX >> v.address.len;
                let base = u32::from(a);
                v.broadcast = Some(Ipv4Addr::from(if plus { base | host } else { base & !host }));
            }
            _ => c.warn(0, format!("address prefix length {} too long for broadcast", v.address.len)),
        }
    }
    if v6 {
        if v.scope.take().is_some() {
            c.warn(0, format!("cannot specify scope for IPv6 addresses ({first}); scope ignored"));
        }
        if v.label.take().is_some() {
            c.warn(0, format!("cannot specify label for IPv6 addresses ({first}); label ignored"));
        }
    }
    if v.track_group.is_some() && v.dev.is_none() {
        c.warn(0, "a static address cannot have track_group if no interface is specified; track_group ignored");
        v.track_group = None;
    }
    Parsed { value: Some(v), notes: c.notes }
}

/// Family bookkeeping of a route or rule: the first word that tells sets it, a later one that
/// disagrees ends the entry.
fn family(cur: &mut Option<bool>, v6: bool) -> bool {
    match *cur {
        None => {
            *cur = Some(v6);
            true
        }
        Some(f) => f == v6,
    }
}

/// Parses a `u32` metric value, keepalived's `get_u32` (numbers up to `max`).
fn num(s: Option<&str>, max: u64) -> Option<u32> {
    s.and_then(strtoul).filter(|v| *v <= max).and_then(|v| u32::try_from(v).ok())
}

/// Parses one route line, as keepalived's `alloc_route`.
pub fn route(w: &[&str], block: Block, span: Span) -> Parsed<Route> {
    let mut c = Cursor { w, notes: Vec::new() };
    let mut fam: Option<bool> = None;
    let mut dst: Option<(Option<IpPrefix>, usize)> = None;
    let mut r = Route {
        dst: any(false),
        kind: RouteType::Unicast,
        src: None,
        from: None,
        via: None,
        dev: None,
        table: 254,
        metric: None,
        scope: None,
        protocol: None,
        tos: None,
        onlink: false,
        pref: None,
        expires: None,
        metrics: Vec::new(),
        lock: 0,
        nexthops: Vec::new(),
        track: false,
        span,
    };
    let mut no_track = false;
    let mut track_group: Option<usize> = None;
    let mut do_nexthop = false;
    const MIX: &str = "cannot mix IPv4 and IPv6 addresses for route";
    let mut i = 0;
    while i < w.len() {
        let kw = w[i];
        // The value after the keyword; a keyword at the end of the line has none.
        macro_rules! val {
            () => {{
                i += 1;
                match c.get(i) {
                    Some(v) => v,
                    None => skip!(c, i - 1, "'{kw}' needs a value"),
                }
            }};
        }
        // `KW [lock] N` metrics (RTAX_* bit for the lock).
        macro_rules! metric {
            ($bit:expr, $max:expr, $make:expr, $lockable:expr) => {{
                let mut v = val!();
                if $lockable && v == "lock" {
                    r.lock |= 1 << $bit;
                    v = val!();
                }
                match num(Some(v), $max) {
                    Some(n) => r.metrics.push($make(n)),
                    None => skip!(c, i, "invalid {kw} {v} specified for route"),
                }
            }};
        }
        match kw {
            "inet6" | "inet" => {
                if !family(&mut fam, kw == "inet6") {
                    skip!(c, i, "{kw} specified for {} route", if kw == "inet6" { "an IPv4" } else { "an IPv6" });
                }
            }
            "src" => {
                let v = val!();
                let Some(a) = bare_addr(v) else { skip!(c, i, "invalid route src address {v}") };
                if !family(&mut fam, a.is_ipv6()) {
                    skip!(c, i, "{MIX}");
                }
                r.src = Some(a);
            }
            "as" => {
                if c.get(i + 1) == Some("to") {
                    i += 1;
                }
                i += 1;
                c.warn(i.min(w.len().saturating_sub(1)), "\"as to\" is for MPLS only; ignored");
            }
            "via" | "gw" => {
                if kw == "gw" {
                    c.warn(i, "\"gw\" for routes is deprecated; use \"via\"");
                }
                let mut v = val!();
                if v == "inet" || v == "inet6" {
                    if !family(&mut fam, v == "inet6") {
                        skip!(c, i, "{MIX}");
                    }
                    v = val!();
                }
                let Some(a) = bare_addr(v) else { skip!(c, i, "invalid route via address {v}") };
                if !family(&mut fam, a.is_ipv6()) {
                    skip!(c, i, "{MIX}");
                }
                r.via = Some(a);
            }
            "from" => {
                let v = val!();
                let Some((p, v6, _)) = route_prefix(v) else { skip!(c, i, "invalid route from address {v}") };
                if v6 != Some(true) {
                    skip!(c, i, "route from address only supported with IPv6 ({v})");
                }
                if !family(&mut fam, true) {
                    skip!(c, i, "{MIX}");
                }
                r.from = Some(p.unwrap_or_else(|| any(true)));
            }
            "tos" | "dsfield" => {
                let v = val!();
                match dsfield(v) {
                    Some(t) => r.tos = Some(t),
                    None => skip!(c, i, "TOS value {v} is invalid"),
                }
            }
            "table" => {
                let v = val!();
                match table(v) {
                    Some(t) => r.table = t,
                    None => skip!(c, i, "routing table {v} not found for route"),
                }
            }
            "protocol" => {
                let v = val!();
                match protocol(v) {
                    Some(p) => r.protocol = Some(p),
                    None => skip!(c, i, "protocol {v} not found or invalid for route"),
                }
            }
            "scope" => {
                let v = val!();
                match scope(v) {
                    Some(s) => r.scope = Some(s),
                    None => skip!(c, i, "scope {v} not found or invalid for route"),
                }
            }
            "metric" | "priority" | "preference" => {
                let v = val!();
                match num(Some(v), u64::from(u32::MAX)) {
                    Some(m) => r.metric = Some(m),
                    None => skip!(c, i, "invalid metric {v} specified for route"),
                }
            }
            "dev" | "oif" => r.dev = Some(val!().to_owned()),
            "onlink" => r.onlink = true,
            "expires" => {
                let v = val!();
                if fam == Some(false) {
                    skip!(c, i - 1, "expires is only valid for IPv6");
                }
                fam = Some(true);
                match num(Some(v), u64::from(u32::MAX)) {
                    Some(e) => r.expires = Some(e),
                    None => skip!(c, i, "invalid expires time {v} specified for route"),
                }
            }
            "mtu" => metric!(2, u64::from(u32::MAX), RouteMetric::Mtu, true),
            "hoplimit" => metric!(10, 255, RouteMetric::Hoplimit, false),
            "advmss" => metric!(8, u64::from(u32::MAX), RouteMetric::Advmss, true),
            "reordering" => metric!(9, u64::from(u32::MAX), RouteMetric::Reordering, true),
            "window" => metric!(3, u64::from(u32::MAX), RouteMetric::Window, false),
            "cwnd" => metric!(7, u64::from(u32::MAX), RouteMetric::Cwnd, true),
            "ssthresh" => metric!(6, u64::from(u32::MAX), RouteMetric::SsThresh, true),
            "initcwnd" => metric!(11, u64::from(u32::MAX), RouteMetric::InitCwnd, false),
            "initrwnd" => metric!(14, u64::from(u32::MAX), RouteMetric::InitRwnd, false),
            "quickack" => metric!(15, 1, RouteMetric::QuickAck, false),
            "fastopen_no_cookie" => metric!(17, 1, RouteMetric::FastopenNoCookie, false),
            "features" => {
                let v = val!();
                if v == "ecn" {
                    r.metrics.push(RouteMetric::Features(1));
                } else {
                    c.warn(i, format!("feature {v} not supported"));
                }
            }
            "congctl" => {
                let mut v = val!();
                if v == "lock" {
                    r.lock |= 1 << 16;
                    v = val!();
                }
                r.metrics.push(RouteMetric::CongCtl(v.to_owned()));
            }
            "pref" => {
                let v = val!();
                if fam == Some(false) {
                    skip!(c, i - 1, "pref is only valid for IPv6");
                }
                fam = Some(true);
                r.pref = Some(match v {
                    "low" => 3,
                    "medium" => 0,
                    "high" => 1,
                    n => match num(Some(n), 255).and_then(|n| u8::try_from(n).ok()) {
                        Some(n) => n,
                        None => skip!(c, i, "invalid pref value {v} specified for route"),
                    },
                });
            }
            "rtt" | "rttvar" | "rto_min" | "realms" | "encap" | "ttl-propagate" | "vrf" | "append" => {
                unsupported!(c, i, "ka cannot apply '{kw}' in a route yet (keepalived would)");
            }
            "add" | "prepend" => {}
            "or" => {
                c.warn(i, "\"or\" for routes is deprecated; use \"nexthop\"");
                if !r.nexthops.is_empty() {
                    c.warn(i, "\"or\" route already specified; ignoring subsequent");
                    i += 2;
                    continue;
                }
                let v = val!();
                let Some(a) = bare_addr(v) else { skip!(c, i, "invalid \"or\" address {v}") };
                r.nexthops.push(Nexthop { via: r.via.take(), ..Nexthop::default() });
                r.nexthops.push(Nexthop { via: Some(a), ..Nexthop::default() });
            }
            "nexthop" => {
                if r.nexthops.is_empty() {
                    do_nexthop = true;
                } else {
                    c.warn(i, "cannot specify nexthops with \"or\" route");
                }
                break;
            }
            "no_track" => no_track = true,
            "track_group" if block == Block::Static => {
                if track_group.is_some() {
                    c.warn(i + 1, "track_group is a duplicate");
                    break;
                }
                let _ = val!();
                track_group = Some(i);
            }
            _ => {
                if kw == "to" {
                    i += 1;
                }
                if let Some(t) = route_type(kw) {
                    r.kind = t;
                    i += 1;
                }
                let Some(d) = c.get(i) else { skip!(c, i - 1, "route must have a destination") };
                let Some((p, v6, warn)) = route_prefix(d) else {
                    let hint = if d == "proto" { "; did you mean 'protocol'?" } else { "" };
                    skip!(c, i, "unknown route keyword {d}{hint}");
                };
                if let Some(m) = warn {
                    c.warn(i, m);
                }
                if let Some(v6) = v6 {
                    if !family(&mut fam, v6) {
                        skip!(c, i, "cannot mix IPv4 and IPv6 addresses for route ({d})");
                    }
                }
                dst = Some((p, i));
            }
        }
        i += 1;
    }
    if do_nexthop {
        nexthops(&mut c, &mut r, &mut fam, i);
    }
    let Some((dst, dst_at)) = dst else { skip!(c, 0, "route must have a destination") };
    let v6 = fam.unwrap_or(false);
    r.dst = dst.unwrap_or_else(|| any(v6));
    if !no_track {
        if r.protocol.is_some_and(|p| p != RTPROT_KEEPALIVED) {
            c.warn(0, format!("route cannot be tracked if protocol is not RTPROT_KEEPALIVED({RTPROT_KEEPALIVED}); protocol reset"));
        }
        r.protocol = Some(RTPROT_KEEPALIVED);
        if r.dev.is_none() {
            let d = w.get(dst_at).copied().unwrap_or_default();
            c.warn(0, format!("cannot track route {d} with no interface specified, not tracking"));
        } else {
            r.track = true;
        }
    }
    if let (Some(t), None) = (track_group, &r.dev) {
        c.warn(t, "a static route cannot have track_group if no oif is specified; track_group ignored");
    }
    Parsed { value: Some(r), notes: c.notes }
}

/// keepalived's `parse_nexthops`: a problem in one next hop drops it and the ones after it,
/// and keeps the route.
fn nexthops(c: &mut Cursor<'_>, r: &mut Route, fam: &mut Option<bool>, mut i: usize) {
    let w = c.w;
    while c.get(i) == Some("nexthop") {
        i += 1;
        let mut nh = Nexthop::default();
        while let Some(kw) = c.get(i) {
            let Some(v) = (match kw {
                "onlink" => Some(""),
                "via" | "dev" | "weight" | "encap" | "realms" | "as" => c.get(i + 1),
                _ => break,
            }) else {
                c.warn(i, format!("'{kw}' needs a value; this nexthop and those after it are ignored"));
                return;
            };
            match kw {
                "via" => {
                    let mut v = v;
                    if v == "inet" || v == "inet6" {
                        if !family(fam, v == "inet6") {
                            c.warn(i, "IPv4/6 mismatch for nexthop; this nexthop and those after it are ignored");
                            return;
                        }
                        i += 1;
                        v = c.get(i + 1).unwrap_or_default();
                    }
                    match bare_addr(v) {
                        Some(a) if family(fam, a.is_ipv6()) => nh.via = Some(a),
                        Some(_) => {
                            c.warn(i + 1, "address family mismatch for next hop; this nexthop and those after it are ignored");
                            return;
                        }
                        None => {
                            c.warn(i + 1, format!("invalid nexthop address {v}; this nexthop and those after it are ignored"));
                            return;
                        }
                    }
                    i += 1;
                }
                "dev" => {
                    nh.dev = Some(v.to_owned());
                    i += 1;
                }
                "weight" => {
                    match num(Some(v), 256).and_then(|n| u16::try_from(n).ok()) {
                        Some(0) | None => {
                            c.warn(i + 1, format!("invalid weight {v} specified for route; this nexthop and those after it are ignored"));
                            return;
                        }
                        Some(n) => nh.weight = Some(n),
                    }
                    i += 1;
                }
                "onlink" => nh.onlink = true,
                _ => {
                    // encap, realms, as: ka cannot apply them; the route is installed without
                    // this next hop, as keepalived does after an error here.
                    c.notes.push(Note::Unsupported { at: i, msg: format!("ka cannot apply '{kw}' in a nexthop yet (keepalived would)") });
                    return;
                }
            }
            i += 1;
        }
        r.nexthops.push(nh);
    }
    if let Some(t) = w.get(i) {
        c.warn(i, format!("route has trailing nonsense after nexthops - {t}; ignored"));
    }
}

/// The next preference keepalived gives a rule without one, per family (counting down).
#[derive(Debug, Clone, Copy)]
pub struct RulePriorities {
    v4: u32,
    v6: u32,
}

impl Default for RulePriorities {
    fn default() -> Self {
        Self { v4: RULE_START_PRIORITY, v6: RULE_START_PRIORITY }
    }
}

/// Parses one rule line, as keepalived's `alloc_rule`.
pub fn rule(w: &[&str], block: Block, span: Span, prios: &mut RulePriorities) -> Parsed<Rule> {
    let mut c = Cursor { w, notes: Vec::new() };
    let mut fam: Option<bool> = None;
    let mut action: Option<RuleAction> = None;
    let mut priority: Option<u32> = None;
    let mut table_option = false;
    let mut no_track = false;
    let mut track_group: Option<usize> = None;
    let mut r = Rule {
        v6: false,
        from: None,
        to: None,
        invert: false,
        action: RuleAction::Nop,
        priority: 0,
        tos: None,
        fwmark: None,
        iif: None,
        oif: None,
        protocol: None,
        suppress_prefixlen: None,
        span,
    };
    const MIXED: &str = "rule specification has mixed IPv4 and IPv6";
    let mut i = 0;
    while i < w.len() {
        let kw = w[i];
        macro_rules! val {
            () => {{
                i += 1;
                match c.get(i) {
                    Some(v) => v,
                    None => skip!(c, i - 1, "'{kw}' needs a value"),
                }
            }};
        }
        macro_rules! set_action {
            ($a:expr) => {{
                if action.is_some() {
                    skip!(c, i, "cannot specify more than one of table/nop/goto/blackhole/prohibit/unreachable for rule");
                }
                action = Some($a);
            }};
        }
        match kw {
            "inet6" | "inet" => {
                if !family(&mut fam, kw == "inet6") {
                    skip!(c, i, "{kw} specified for {} rule", if kw == "inet6" { "an IPv4" } else { "an IPv6" });
                }
            }
            "from" | "to" => {
                let v = val!();
                let Some((p, v6, warn)) = route_prefix(v) else { skip!(c, i, "invalid rule {kw} address {v}") };
                if let Some(m) = warn {
                    c.warn(i, m);
                }
                if let Some(v6) = v6 {
                    if !family(&mut fam, v6) {
                        skip!(c, i, "{MIXED}");
                    }
                }
                // `all`/`default` match everything: no selector.
                let p = p.filter(|p| p.len > 0);
                if kw == "from" {
                    r.from = p;
                } else {
                    r.to = p;
                }
            }
            "table" | "lookup" => {
                let v = val!();
                match table(v) {
                    None => skip!(c, i, "routing table {v} not found for rule"),
                    Some(0) => skip!(c, i, "table 0 is not valid"),
                    Some(t) => set_action!(RuleAction::Table(t)),
                }
            }
            "not" => r.invert = true,
            "preference" | "order" | "priority" => {
                let v = val!();
                match num(Some(v), u64::from(u32::MAX)) {
                    Some(p) => priority = Some(p),
                    None => skip!(c, i, "invalid rule preference {v} specified"),
                }
            }
            "tos" | "dsfield" => {
                let v = val!();
                match dsfield(v) {
                    Some(t) => r.tos = Some(t),
                    None => skip!(c, i, "TOS value {v} is invalid"),
                }
            }
            "fwmark" => {
                let v = val!();
                let (m, mask) = v.split_once('/').map_or((v, None), |(m, k)| (m, Some(k)));
                let m = num(Some(m), u64::from(u32::MAX));
                let mask = mask.map(|k| num(Some(k), u64::from(u32::MAX)));
                match (m, mask) {
                    (Some(m), None) => r.fwmark = Some((m, None)),
                    (Some(m), Some(Some(k))) => r.fwmark = Some((m, Some(k))),
                    _ => skip!(c, i, "invalid rule fwmark {v} specified"),
                }
            }
            "suppress_prefixlength" | "sup_pl" => {
                let v = val!();
                match num(Some(v), u64::from(i32::MAX.unsigned_abs())) {
                    Some(n) => r.suppress_prefixlen = Some(n),
                    None => skip!(c, i, "invalid suppress_prefixlength {v} specified"),
                }
                table_option = true;
            }
            "dev" | "iif" => r.iif = Some(val!().to_owned()),
            "oif" => r.oif = Some(val!().to_owned()),
            "protocol" => {
                let v = val!();
                match num(Some(v), 255).and_then(|n| u8::try_from(n).ok()) {
                    Some(p) => r.protocol = Some(p),
                    None => c.warn(i, format!("invalid protocol {v}; ignored")),
                }
            }
            "realms" | "suppress_ifgroup" | "sup_group" | "tunnel-id" | "uidrange" | "l3mdev" | "ipproto" | "sport" | "dport" => {
                unsupported!(c, i, "ka cannot apply '{kw}' in a rule yet (keepalived would)");
            }
            "no_track" => no_track = true,
            "track_group" if block == Block::Static => {
                if track_group.is_some() {
                    c.warn(i + 1, "track_group is a duplicate");
                    break;
                }
                let _ = val!();
                track_group = Some(i - 1);
            }
            _ => {
                let a = if kw == "type" { val!() } else { kw };
                match a {
                    "goto" => {
                        let v = val!();
                        match num(Some(v), u64::from(u32::MAX)) {
                            Some(t) => set_action!(RuleAction::Goto(t)),
                            None => skip!(c, i, "invalid goto target {v} specified"),
                        }
                    }
                    "nop" => set_action!(RuleAction::Nop),
                    "blackhole" => set_action!(RuleAction::Blackhole),
                    "unreachable" => set_action!(RuleAction::Unreachable),
                    "prohibit" => set_action!(RuleAction::Prohibit),
                    t if route_type(t).is_some() => skip!(c, i, "invalid rule action {t}"),
                    t => {
                        let hint = if t == "pref" { "; keepalived knows 'preference', 'priority' and 'order'" } else { "" };
                        skip!(c, i, "unknown rule option {t}{hint}");
                    }
                }
            }
        }
        i += 1;
    }
    let Some(action) = action else { skip!(c, 0, "no action specified for rule") };
    if let (RuleAction::Goto(t), p) = (action, priority) {
        match p {
            Some(p) if p >= t => skip!(c, 0, "invalid rule: preference {p} >= goto target {t}"),
            None => skip!(c, 0, "invalid rule: goto target {t} specified without preference"),
            _ => {}
        }
    }
    if table_option && !matches!(action, RuleAction::Table(_)) {
        skip!(c, 0, "suppressor/realm specified for non table action");
    }
    r.action = action;
    if !no_track {
        if r.protocol.is_some_and(|p| p != RTPROT_KEEPALIVED) {
            c.warn(0, format!("rule cannot be tracked if protocol is not RTPROT_KEEPALIVED({RTPROT_KEEPALIVED}); protocol reset"));
        }
        r.protocol = Some(RTPROT_KEEPALIVED);
    }
    if let (Some(t), None) = (track_group, &r.iif) {
        c.warn(t, "a rule cannot have track_group if dev/iif is not specified; track_group ignored");
    }
    r.v6 = fam.unwrap_or(false);
    r.priority = match priority {
        Some(p) => p,
        None => {
            let next = if r.v6 { &mut prios.v6 } else { &mut prios.v4 };
            let p = *next;
            *next = next.saturating_sub(1);
            c.warn(0, format!("rule has no preference specified; setting it to {p}, which is probably not what you want"));
            p
        }
    };
    Parsed { value: Some(r), notes: c.notes }
}

/// Splits a line into words (for tests and callers holding text).
pub fn split(line: &str) -> Vec<&str> {
    words_of(line)
}

#[cfg(test)]
mod tests;
