//! `virtual_server`, `real_server` and `virtual_server_group`: the load-balanced services.

use std::{net::IpAddr, time::Duration};

use super::{keywords::*, values::*, Cx};
use crate::config::{lexer::Token, model::*, tree::Stmt};

impl Cx<'_> {
    pub(super) fn lb_algo(&mut self, e: &Stmt) -> Option<LbAlgo> {
        let v = self.arg_str(e)?;
        match LbAlgo::ALL.iter().find(|(n, _)| *n == v) {
            Some((_, a)) => Some(*a),
            None => {
                self.err(&e.args[0], format!("unknown scheduler '{v}' (rr|wrr|lc|wlc|lblc|lblcr|sh|mh|dh|fo|ovf|sed|nq|twos)"));
                None
            }
        }
    }

    pub(super) fn lb_kind(&mut self, e: &Stmt) -> Option<LbKind> {
        self.no_block(e);
        if !self.args(e, 1, 6) {
            return None;
        }
        match e.args[0].text.as_str() {
            "NAT" => Some(LbKind::Nat),
            "DR" => Some(LbKind::Dr),
            "TUN" => {
                let mut ty = TunnelType::Ipip;
                if e.args.get(1).map(|t| t.text.as_str()) == Some("type") {
                    match e.args.get(2).map(|t| t.text.as_str()) {
                        Some("ipip") => {}
                        Some("gre") => ty = TunnelType::Gre,
                        Some("gue") => {
                            let port = match (e.args.get(3).map(|t| t.text.as_str()), e.args.get(4))
                            {
                                (Some("port"), Some(p)) => self.port(p),
                                _ => {
                                    self.err(&e.args[2], "tunnel type gue needs 'port NUM'");
                                    None
                                }
                            };
                            ty = TunnelType::Gue(port.unwrap_or(0));
                        }
                        _ => self.err(&e.args[1], "tunnel type must be ipip, gue port NUM or gre"),
                    }
                }
                Some(LbKind::Tun(ty))
            }
            o => {
                self.err(
                    &e.args[0],
                    format!("unknown forwarding method '{o}': expected NAT, DR or TUN"),
                );
                None
            }
        }
    }

    /// Timing keywords shared by virtual servers, real servers and checkers (`checker`: a
    /// checker block, where keepalived accepts `retry 0`; elsewhere ka warns).
    pub(super) fn timing(&mut self, e: &Stmt, t: &mut CheckTiming, checker: bool) -> bool {
        match e.name() {
            "connect_timeout" => {
                t.connect_timeout = self
                    .arg_timer_us(e, 1, U32_US)
                    .unwrap_or(t.connect_timeout)
            }
            "delay_loop" => {
                if let Some(v) = self.arg_timer_us(e, 0, U64_US) {
                    if v.is_zero() {
                        self.err(&e.args[0], "delay_loop must be greater than 0");
                    } else {
                        t.delay_loop = v;
                    }
                }
            }
            "retry" | "nb_get_retry" => {
                t.retry = self.arg_int(e, 0, U32).map(|v| v as u32);
                if !checker && t.retry == Some(0) {
                    self.warn(
                        &e.args[0],
                        "keepalived 2.2.7 rejects 'retry 0' outside a checker (it keeps the default); ka uses 0",
                    );
                }
            }
            "delay_before_retry" => t.delay_before_retry = self.arg_timer_us(e, 0, U64_US),
            "warmup" => t.warmup = self.arg_timer_us(e, 0, U64_US),
            "alpha" => t.alpha = self.arg_bool(e),
            "inhibit_on_failure" => t.inhibit_on_failure = self.arg_bool(e),
            _ => return false,
        }
        true
    }

    /// `sh-port`, `sh-fallback`, `mh-port`, `mh-fallback` as keepalived 2.2.7 reads them
    /// (`lbflags_handler`): they count only after `lb_algo sh` (the `sh-` ones) or `lb_algo mh`
    /// (the `mh-` ones); under another scheduler, or before any, they are ignored.
    pub(super) fn sched_flag(&mut self, e: &Stmt, name: &str, sched: Option<LbAlgo>, vs: &mut VirtualServer) {
        self.no_block(e);
        let (algo, what) = name.split_once('-').unwrap_or((name, ""));
        match sched {
            Some(a) if a.as_str() == algo => {
                if what == "port" {
                    vs.hash_port = true;
                } else {
                    vs.hash_fallback = true;
                }
            }
            Some(a @ (LbAlgo::Sh | LbAlgo::Mh)) => self.err(&e.kw, format!("{name} applies to the {algo} scheduler, not {}", a.as_str())),
            _ => self.err(&e.kw, format!("{name} only applies to the {algo} scheduler (set after 'lb_algo {algo}')")),
        }
    }

    pub(super) fn virtual_server(&mut self, s: &Stmt) {
        let key = match s.args.first().map(|t| t.text.as_str()) {
            None => {
                self.err(
                    &s.kw,
                    "virtual_server needs an address and port, 'fwmark N' or 'group NAME'",
                );
                None
            }
            Some("fwmark") => match s.args.get(1) {
                Some(t) => self
                    .int(t, 1, i64::from(u32::MAX))
                    .map(|m| VsKey::Fwmark(m as u32)),
                None => {
                    self.err(&s.args[0], "'fwmark' needs a number");
                    None
                }
            },
            Some("group") => match s.args.get(1) {
                Some(t) => Some(VsKey::Group(t.text.clone())),
                None => {
                    self.err(&s.args[0], "'group' needs a virtual_server_group name");
                    None
                }
            },
            Some(_) => {
                let addr = self.ip(&s.args[0]);
                let port = match s.args.get(1) {
                    Some(p) => self.port(p),
                    None => Some(0),
                };
                addr.zip(port)
                    .map(|(addr, port)| VsKey::Addr { addr, port })
            }
        };
        if s.args.len() > 2 {
            self.warn(
                &s.args[2],
                format!(
                    "virtual_server: extra argument '{}' ignored",
                    s.args[2].text
                ),
            );
        }
        let mut vs = VirtualServer {
            key: key.clone().unwrap_or(VsKey::Fwmark(0)),
            span: s.span(),
            lb_algo: LbAlgo::Wlc,
            lb_algo_span: None,
            lb_kind: LbKind::Nat,
            protocol: Protocol::Tcp,
            protocol_span: None,
            persistence_timeout: None,
            persistence_granularity: None,
            persistence_engine: None,
            ops: false,
            hash_port: false,
            hash_fallback: false,
            ha_suspend: false,
            omega: false,
            virtualhost: None,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            ipv6_family: None,
            sorry_server: None,
            sorry_server_inhibit: false,
            timing: CheckTiming::default(),
            smtp_alert: None,
            real_servers: Vec::new(),
        };
        let mut rs_stmts = Vec::new();
        let mut sorry = None;
        let mut sorry_kind = None;
        // Whether `lb_kind` / `lvs_method` set the forwarding method (keepalived defaults to NAT).
        let mut kind_set = false;
        // The scheduler as keepalived knows it when a flag is read (none before `lb_algo`).
        let mut sched = None;
        for e in self.block(s) {
            if self.timing(e, &mut vs.timing, false) {
                continue;
            }
            match e.name() {
                "lb_algo" | "lvs_sched" => {
                    vs.lb_algo_span = Some(e.kw.span);
                    if let Some(a) = self.lb_algo(e) {
                        vs.lb_algo = a;
                        sched = Some(a);
                    }
                }
                "flag-1" => vs.hash_fallback = true,
                "flag-2" => vs.hash_port = true,
                // IPVS defines the bit, no scheduler reads it.
                "flag-3" => {}
                n @ ("sh-port" | "sh-fallback" | "mh-port" | "mh-fallback") => self.sched_flag(e, n, sched, &mut vs),
                "sorry_server_lvs_method" => {
                    if sorry.is_none() {
                        self.err(&e.kw, "sorry_server_lvs_method used without (or before) sorry_server");
                    } else if let Some(k) = self.lb_kind(e) {
                        sorry_kind = Some(k);
                    }
                }
                "lb_kind" | "lvs_method" => {
                    if let Some(k) = self.lb_kind(e) {
                        vs.lb_kind = k;
                        kind_set = true;
                    }
                }
                "protocol" => {
                    if let Some(p) = self.arg_str(e) {
                        vs.protocol_span = Some(e.args[0].span);
                        match p.as_str() {
                            "TCP" => vs.protocol = Protocol::Tcp,
                            "UDP" => vs.protocol = Protocol::Udp,
                            "SCTP" => vs.protocol = Protocol::Sctp,
                            _ => self.err(
                                &e.args[0],
                                format!("unknown protocol '{p}': expected TCP, UDP or SCTP"),
                            ),
                        }
                    }
                }
                "persistence_timeout" => {
                    self.no_block(e);
                    vs.persistence_timeout = match e.args.first() {
                        None => Some(Duration::from_secs(360)),
                        // keepalived 2.2.7: at most 31 days.
                        Some(t) => self
                            .int(t, 1, 2_678_400)
                            .map(|v| Duration::from_secs(v as u64)),
                    };
                }
                "persistence_granularity" => {
                    vs.persistence_granularity = self.arg_ip(e);
                }
                "persistence_engine" => {
                    vs.persistence_engine = self.arg_str(e);
                    self.unsupported(e, "virtual_server");
                }
                "quorum" => vs.quorum = self.arg_int(e, 1, i64::from(u32::MAX)).unwrap_or(1) as u32,
                "hysteresis" => {
                    vs.hysteresis = self.arg_int(e, 0, i64::from(u32::MAX)).unwrap_or(0) as u32;
                }
                "quorum_up" | "quorum_down" => {
                    let sc = self.script(e);
                    if e.name() == "quorum_up" {
                        vs.quorum_up = sc;
                    } else {
                        vs.quorum_down = sc;
                    }
                }
                "ip_family" => {
                    match self.arg_str(e).as_deref() {
                        Some("inet") => vs.ipv6_family = Some(false),
                        Some("inet6") => vs.ipv6_family = Some(true),
                        Some(o) => self.err(
                            &e.args[0],
                            format!("ip_family must be inet or inet6, not '{o}'"),
                        ),
                        None => {}
                    }
                    self.unsupported(e, "virtual_server");
                }
                "sorry_server" => {
                    self.no_block(e);
                    if self.args(e, 1, 2) {
                        sorry = Some(e.clone());
                    }
                }
                "sorry_server_inhibit" => vs.sorry_server_inhibit = self.arg_bool(e),
                "ops" => vs.ops = self.arg_bool(e),
                "ha_suspend" => {
                    vs.ha_suspend = self.arg_bool(e);
                }
                "omega" => {
                    vs.omega = self.arg_bool(e);
                }
                "virtualhost" => {
                    // The default Host of the HTTP_GET/SSL_GET checkers below (keepalived:
                    // url > checker > real_server > virtual_server), inherited when they are built.
                    vs.virtualhost = self.arg_str(e);
                }
                "smtp_alert" => {
                    vs.smtp_alert = Some(self.arg_bool(e));
                }
                "real_server" => rs_stmts.push(e),
                n if VS_UNSUPPORTED.contains(&n) => self.unsupported(e, "virtual_server"),
                _ => self.unknown(
                    e,
                    "virtual_server",
                    &[VS_SUPPORTED, VS_UNSUPPORTED, &["nb_get_retry"]],
                ),
            }
        }
        let vs_port = match vs.key {
            VsKey::Addr { port, .. } => port,
            _ => 0,
        };
        if let Some(e) = sorry {
            if let Some(address) = self.ip(&e.args[0]) {
                let port = e.args.get(1).and_then(|p| self.port(p)).unwrap_or(vs_port);
                vs.sorry_server = Some(RealServer {
                    address,
                    port,
                    weight: 1,
                    lb_kind: sorry_kind.unwrap_or(vs.lb_kind),
                    notify_up: None,
                    notify_down: None,
                    uthreshold: None,
                    lthreshold: None,
                    virtualhost: None,
                    timing: vs.timing,
                    smtp_alert: None,
                    checkers: Vec::new(),
                    span: e.span(),
                    end: e.end,
                });
            }
        }
        // keepalived 2.2.7 (validate_check_config): a real server or sorry server without its
        // own method takes the virtual server's, and with none there it is NAT, with a warning.
        let own_kind = |r: &Stmt| {
            r.block.iter().flatten().any(|c| {
                matches!(c.name(), "lb_kind" | "lvs_method")
                    && c.args.first().is_some_and(|a| matches!(a.text.as_str(), "NAT" | "DR" | "TUN"))
            })
        };
        let inherits = rs_stmts.iter().any(|r| !own_kind(r)) || (vs.sorry_server.is_some() && sorry_kind.is_none());
        if !kind_set && inherits {
            self.warn(&s.kw, "virtual server: no forwarding method set (lb_kind), using NAT, as keepalived 2.2 does");
        }
        for e in rs_stmts {
            if let Some(rs) = self.real_server(e, &vs, vs_port) {
                vs.real_servers.push(rs);
            }
        }
        if vs.protocol_span.is_none() && !matches!(vs.key, VsKey::Fwmark(_)) {
            // keepalived 2.2.7 (check_parser.c) falls back to UDP, with this warning.
            vs.protocol = Protocol::Udp;
            let at = Token {
                span: s.end,
                ..s.kw.clone()
            };
            self.warn(&at, "virtual server has no protocol set - defaulting to UDP, as keepalived 2.2 does; add 'protocol TCP' if that is meant");
        }
        if key.is_some() {
            self.cfg.virtual_servers.push(vs);
        }
    }

    pub(super) fn real_server(&mut self, s: &Stmt, vs: &VirtualServer, vs_port: u16) -> Option<RealServer> {
        if s.args.is_empty() {
            self.err(&s.kw, "real_server needs an address and port");
            let _ = self.block(s);
            return None;
        }
        let address = self.ip(&s.args[0]);
        let port = match s.args.get(1) {
            Some(p) => self.port(p),
            None => Some(vs_port),
        };
        let mut rs = RealServer {
            address: address.unwrap_or(IpAddr::from([0, 0, 0, 0])),
            port: port.unwrap_or(0),
            weight: 1,
            lb_kind: vs.lb_kind,
            notify_up: None,
            notify_down: None,
            uthreshold: None,
            lthreshold: None,
            virtualhost: vs.virtualhost.clone(),
            timing: vs.timing,
            smtp_alert: None,
            checkers: Vec::new(),
            span: s.span(),
            end: s.end,
        };
        let mut checker_stmts = Vec::new();
        for e in self.block(s) {
            if self.timing(e, &mut rs.timing, false) {
                continue;
            }
            match e.name() {
                "weight" => rs.weight = self.arg_int(e, 0, I32).unwrap_or(1) as i32,
                "lb_kind" | "lvs_method" => rs.lb_kind = self.lb_kind(e).unwrap_or(rs.lb_kind),
                "notify_up" => {
                    rs.notify_up = self.script(e);
                }
                "notify_down" => {
                    rs.notify_down = self.script(e);
                }
                "uthreshold" | "lthreshold" => {
                    let v = self.arg_int(e, 0, i64::from(u32::MAX)).map(|v| v as u32);
                    if e.name() == "uthreshold" {
                        rs.uthreshold = v;
                    } else {
                        rs.lthreshold = v;
                    }
                }
                "virtualhost" => {
                    // The default Host of this real server's HTTP_GET/SSL_GET checkers.
                    rs.virtualhost = self.arg_str(e);
                }
                "smtp_alert" => {
                    rs.smtp_alert = Some(self.arg_bool(e));
                }
                n if CHECKERS_SUPPORTED.contains(&n) || CHECKERS_UNSUPPORTED.contains(&n) => {
                    checker_stmts.push(e)
                }
                n if RS_UNSUPPORTED.contains(&n) => self.unsupported(e, "real_server"),
                _ => self.unknown(
                    e,
                    "real_server",
                    &[
                        RS_SUPPORTED,
                        RS_UNSUPPORTED,
                        CHECKERS_SUPPORTED,
                        CHECKERS_UNSUPPORTED,
                    ],
                ),
            }
        }
        for e in checker_stmts {
            if let Some(c) = self.checker(e, &rs) {
                rs.checkers.push(c);
            }
        }
        address.zip(port).map(|_| rs)
    }

    pub(super) fn vs_group(&mut self, s: &Stmt) {
        let name = self.name_arg(s);
        let mut g = VirtualServerGroup {
            name,
            entries: Vec::new(),
            span: s.span(),
        };
        for e in self.block(s) {
            self.no_block(e);
            if e.name() == "fwmark" {
                if let Some(m) = self.arg_int(e, 0, U32) {
                    g.entries.push(VsgEntry::Fwmark {
                        mark: m as u32,
                        span: e.span(),
                    });
                }
                continue;
            }
            let port = match e.args.first() {
                Some(p) => self.port(p).unwrap_or(0),
                None => 0,
            };
            match parse_range(&e.kw.text) {
                Some((first, last)) => g.entries.push(VsgEntry::Range {
                    first,
                    last,
                    port,
                    span: e.span(),
                }),
                None => self.err(&e.kw, format!("invalid address or range '{}'", e.kw.text)),
            }
        }
        self.cfg.virtual_server_groups.push(g);
    }
}

/// Parses `A`, `A-B` (last byte/group), `A-FULL` or `A/nn` into an inclusive address range.
pub fn parse_range(s: &str) -> Option<(IpAddr, IpAddr)> {
    if let Some((a, l)) = s.split_once('/') {
        let p: IpPrefix = s.parse().ok()?;
        let _ = (a, l);
        return Some(match p.addr {
            IpAddr::V4(v) => {
                let mask = if p.len == 0 {
                    0
                } else {
                    u32::MAX << (32 - p.len)
                };
                let base = u32::from(v) & mask;
                (
                    IpAddr::from(base.to_be_bytes()),
                    IpAddr::from((base | !mask).to_be_bytes()),
                )
            }
            IpAddr::V6(v) => {
                let mask = if p.len == 0 {
                    0
                } else {
                    u128::MAX << (128 - p.len)
                };
                let base = u128::from(v) & mask;
                (
                    IpAddr::from(base.to_be_bytes()),
                    IpAddr::from((base | !mask).to_be_bytes()),
                )
            }
        });
    }
    let Some((a, b)) = s.rsplit_once('-') else {
        let ip: IpAddr = s.parse().ok()?;
        return Some((ip, ip));
    };
    let first: IpAddr = a.parse().ok()?;
    if let Ok(last) = b.parse::<IpAddr>() {
        return (last.is_ipv4() == first.is_ipv4() && last >= first).then_some((first, last));
    }
    match first {
        IpAddr::V4(v) => {
            let end: u8 = b.parse().ok()?;
            let mut o = v.octets();
            if end < o[3] {
                return None;
            }
            o[3] = end;
            Some((first, IpAddr::from(o)))
        }
        IpAddr::V6(v) => {
            let end = u16::from_str_radix(b, 16).ok()?;
            let mut seg = v.segments();
            if end < seg[7] {
                return None;
            }
            seg[7] = end;
            Some((first, IpAddr::from(seg)))
        }
    }
}
