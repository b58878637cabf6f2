//! keepalived's state dumps, rendered from ka's status report and configuration: the files
//! keepalived 2.2.7 writes on its signals, in its formats, so tools that parse them keep
//! working.
//!
//! - `keepalived.data` (SIGUSR1, `vrrp_print_data`): global definitions, VRRP topology, VRRP
//!   scripts;
//! - `keepalived_check.data` (SIGUSR1, the checkers' `print_check_data`): LVS topology;
//! - `keepalived.stats` (SIGUSR2 and STATS_CLEAR, `vrrp_print_stats`);
//! - `keepalived.json` (SIGJSON, `vrrp_print_json` of an `--enable-json` build).
//!
//! Every renderer is pure: the same report, configuration and clock give the same bytes.
//! Values keepalived has and ka does not keep are written as keepalived writes their idle value
//! (`fd_in`/`fd_out` lines, read timers and the like are left out; `master_priority` is 0).

use std::{collections::BTreeMap, fmt::Write as _, net::IpAddr};

use crate::{
    config::model::{AuthType, Config, LbKind, Protocol, Script, VirtualIp, VrrpInstance, VsKey},
    engine::InstanceReport,
    status::StatusReport,
};

/// keepalived's per-instance VRRP statistics (`vrrp_stats`), in its order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Valid adverts received.
    pub advert_rcvd: u64,
    /// Adverts sent.
    pub advert_sent: u64,
    /// Transitions to MASTER.
    pub become_master: u64,
    /// Transitions out of MASTER.
    pub release_master: u64,
    /// Length errors.
    pub packet_len_err: u64,
    /// Advert interval mismatches.
    pub advert_interval_err: u64,
    /// TTL errors.
    pub ip_ttl_err: u64,
    /// Not an advertisement.
    pub invalid_type_rcvd: u64,
    /// Address count or list mismatches.
    pub addr_list_err: u64,
    /// Unknown authentication type.
    pub invalid_authtype: u64,
    /// Authentication type differs from ours.
    pub authtype_mismatch: u64,
    /// Password or AH check failed.
    pub auth_failure: u64,
    /// Priority-0 adverts received.
    pub pri_zero_rcvd: u64,
    /// Priority-0 adverts sent.
    pub pri_zero_sent: u64,
}

impl Stats {
    /// The statistics of one instance of `ka status`: ka's drop reasons are summed into
    /// keepalived's error classes (checksum, version and VRID errors have no keepalived
    /// counter and are left out, as keepalived leaves them out).
    pub fn of(r: &InstanceReport) -> Stats {
        let d = |names: &[&str]| names.iter().filter_map(|n| r.adverts_dropped.get(*n)).sum::<u64>();
        Stats {
            advert_rcvd: r.adverts_rx,
            advert_sent: r.adverts_tx,
            become_master: r.became_master,
            release_master: r.released_master,
            packet_len_err: d(&["too_short", "bad_length"]),
            advert_interval_err: d(&["adver_int_mismatch"]),
            ip_ttl_err: d(&["bad_ttl"]),
            invalid_type_rcvd: d(&["bad_type"]),
            addr_list_err: d(&["addr_count_mismatch", "addr_list_mismatch"]),
            invalid_authtype: d(&["bad_auth_type"]),
            authtype_mismatch: d(&["auth_type_mismatch"]),
            auth_failure: d(&["auth_failure", "ah_bad_header", "ah_bad_icv", "ah_bad_spi", "ah_replay"]),
            pri_zero_rcvd: r.priority_zero_rx,
            pri_zero_sent: r.priority_zero_tx,
        }
    }

    /// `self` counted from `base` (what STATS_CLEAR left), never below zero.
    pub fn since(&self, base: &Stats) -> Stats {
        Stats {
            advert_rcvd: self.advert_rcvd.saturating_sub(base.advert_rcvd),
            advert_sent: self.advert_sent.saturating_sub(base.advert_sent),
            become_master: self.become_master.saturating_sub(base.become_master),
            release_master: self.release_master.saturating_sub(base.release_master),
            packet_len_err: self.packet_len_err.saturating_sub(base.packet_len_err),
            advert_interval_err: self.advert_interval_err.saturating_sub(base.advert_interval_err),
            ip_ttl_err: self.ip_ttl_err.saturating_sub(base.ip_ttl_err),
            invalid_type_rcvd: self.invalid_type_rcvd.saturating_sub(base.invalid_type_rcvd),
            addr_list_err: self.addr_list_err.saturating_sub(base.addr_list_err),
            invalid_authtype: self.invalid_authtype.saturating_sub(base.invalid_authtype),
            authtype_mismatch: self.authtype_mismatch.saturating_sub(base.authtype_mismatch),
            auth_failure: self.auth_failure.saturating_sub(base.auth_failure),
            pri_zero_rcvd: self.pri_zero_rcvd.saturating_sub(base.pri_zero_rcvd),
            pri_zero_sent: self.pri_zero_sent.saturating_sub(base.pri_zero_sent),
        }
    }
}

/// Statistics as of the last STATS_CLEAR, by instance name: the dumps count from there.
pub type Baseline = BTreeMap<String, Stats>;

/// The statistics of every instance of `status`, counted from `baseline`.
pub fn current_stats(status: &StatusReport, baseline: &Baseline) -> Vec<(String, Stats)> {
    status
        .vrrp
        .iter()
        .map(|r| {
            let s = Stats::of(r);
            (r.name.clone(), baseline.get(&r.name).map_or(s, |b| s.since(b)))
        })
        .collect()
}

/// What the renderers read.
#[derive(Debug, Clone, Copy)]
pub struct DumpInput<'a> {
    /// The daemon's report (the control socket's `status` answer).
    pub status: &'a StatusReport,
    /// The running configuration.
    pub config: &'a Config,
    /// STATS_CLEAR's baseline.
    pub baseline: &'a Baseline,
    /// The host name (`Router ID` when `router_id` is not set).
    pub hostname: &'a str,
    /// Local time's offset from UTC in seconds, for keepalived's `ctime` dates.
    pub utc_offset_s: i64,
}

/// keepalived's state numbers (`VRRP_STATE_INIT` 0, `BACK` 1, `MAST` 2, `FAULT` 3).
pub fn state_number(state: &str) -> u8 {
    match state {
        "BACKUP" => 1,
        "MASTER" => 2,
        "FAULT" => 3,
        _ => 0,
    }
}

/// `keepalived.stats`, as `vrrp_print_stats` writes it.
pub fn stats(input: &DumpInput<'_>) -> String {
    let mut s = String::new();
    for (name, st) in current_stats(input.status, input.baseline) {
        let _ = writeln!(s, "VRRP Instance: {name}");
        let _ = writeln!(s, "  Advertisements:");
        let _ = writeln!(s, "    Received: {}", st.advert_rcvd);
        let _ = writeln!(s, "    Sent: {}", st.advert_sent);
        let _ = writeln!(s, "  Became master: {}", st.become_master);
        let _ = writeln!(s, "  Released master: {}", st.release_master);
        let _ = writeln!(s, "  Packet Errors:");
        let _ = writeln!(s, "    Length: {}", st.packet_len_err);
        let _ = writeln!(s, "    TTL: {}", st.ip_ttl_err);
        let _ = writeln!(s, "    Invalid Type: {}", st.invalid_type_rcvd);
        let _ = writeln!(s, "    Advertisement Interval: {}", st.advert_interval_err);
        let _ = writeln!(s, "    Address List: {}", st.addr_list_err);
        let _ = writeln!(s, "  Authentication Errors:");
        let _ = writeln!(s, "    Invalid Type: {}", st.invalid_authtype);
        let _ = writeln!(s, "    Type Mismatch: {}", st.authtype_mismatch);
        let _ = writeln!(s, "    Failure: {}", st.auth_failure);
        let _ = writeln!(s, "  Priority Zero:");
        let _ = writeln!(s, "    Received: {}", st.pri_zero_rcvd);
        let _ = writeln!(s, "    Sent: {}", st.pri_zero_sent);
    }
    s
}

/// A script as keepalived's `cmd_str` shows it: each word in single quotes.
pub fn cmd_str(command: &str) -> String {
    let words = shlex::split(command).unwrap_or_else(|| command.split_whitespace().map(str::to_owned).collect());
    words
        .iter()
        .enumerate()
        .map(|(i, w)| if i == 0 && (w.starts_with('<') || w.starts_with('>')) { w.clone() } else { format!("'{w}'") })
        .collect::<Vec<_>>()
        .join(" ")
}

fn scope_name(scope: Option<u8>) -> String {
    match scope.unwrap_or(0) {
        0 => "global".to_owned(),
        200 => "site".to_owned(),
        253 => "link".to_owned(),
        254 => "host".to_owned(),
        255 => "nowhere".to_owned(),
        n => n.to_string(),
    }
}

/// A virtual address as keepalived's `format_ipaddress` shows it (`set` when it is on the
/// interface).
pub fn format_vip(v: &VirtualIp, default_dev: &str, set: bool) -> String {
    let full = if v.address.is_ipv6() { 128 } else { 32 };
    let mut s = if v.address.len == full { v.address.addr.to_string() } else { format!("{}/{}", v.address.addr, v.address.len) };
    if let Some(b) = v.broadcast {
        let _ = write!(s, " brd {b}");
    }
    let _ = write!(s, " dev {}", v.dev.as_deref().unwrap_or(default_dev));
    if v.use_vmac {
        s.push_str(" use_vmac");
    }
    let _ = write!(s, " scope {}", scope_name(v.scope));
    if let Some(l) = &v.label {
        let _ = write!(s, " label {l}");
    }
    if let Some(p) = v.peer {
        let _ = write!(s, " peer {p}/{}", v.address.len);
    }
    if set {
        s.push_str(" set");
    }
    s
}

/// Days since 1970-01-01 → (year, month 1-12, day), proleptic Gregorian (H. Hinnant).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// keepalived's `ctime_us_r`: `Sat Dec  5 11:07:08.866825 2026`.
pub fn ctime_us(unix_us: u64, utc_offset_s: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = i64::try_from(unix_us / 1_000_000).unwrap_or(0) + utc_offset_s;
    let us = unix_us % 1_000_000;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    let wd = DAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
    let mon = MONTHS[usize::try_from(m - 1).unwrap_or(0)];
    format!("{wd} {mon} {d:>2} {:02}:{:02}:{:02}.{us:06} {y}", tod / 3600, tod / 60 % 60, tod % 60)
}

fn yes(b: bool, t: &'static str, f: &'static str) -> &'static str {
    if b {
        t
    } else {
        f
    }
}

fn secs(d: std::time::Duration) -> u64 {
    d.as_secs()
}

/// `%g` as keepalived's JSON writer prints its floats (6 significant digits, no trailing
/// zeros): `5`, `0.5`, `1.25`.
pub fn fmt_g(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e6 {
        return format!("{}", v as i64);
    }
    let digits = 5 - (v.abs().log10().floor() as i32).clamp(-4, 5);
    let s = format!("{:.*}", usize::try_from(digits.max(0)).unwrap_or(0), v);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

fn report_of<'a>(status: &'a StatusReport, name: &str) -> Option<&'a InstanceReport> {
    status.vrrp.iter().find(|r| r.name == name)
}

/// The status of a tracked script as keepalived says it (`GOOD`/`BAD`), from the instances
/// tracking it; `None` when no instance does.
fn script_status(status: &StatusReport, name: &str) -> Option<&'static str> {
    let label = format!("script:{name}");
    let mut seen = None;
    for t in status.vrrp.iter().flat_map(|r| &r.trackers).filter(|t| t.name == label) {
        seen = Some(t.status.as_str());
    }
    seen.map(|s| if s == "up" { "GOOD" } else { "BAD" })
}

fn global_section(s: &mut String, input: &DumpInput<'_>) {
    let g = &input.config.global;
    let on_off = |o: Option<bool>| match o {
        Some(true) => "true",
        Some(false) => "false",
        None => "unset",
    };
    let _ = writeln!(s, "------< Global definitions >------");
    let _ = writeln!(s, " Network namespace = (default)");
    let _ = writeln!(s, " Router ID = {}", g.router_id.as_deref().unwrap_or(input.hostname));
    if let Some((srv, port)) = &g.smtp_server {
        let _ = writeln!(s, " Smtp server = {srv}");
        let _ = writeln!(s, " Smtp server port = {port}");
    }
    if let Some(from) = &g.notification_email_from {
        let _ = writeln!(s, " Email notification from = {from}");
    }
    for e in &g.notification_email {
        let _ = writeln!(s, " Email notification = {e}");
    }
    let _ = writeln!(s, " Default smtp_alert = {}", on_off(g.smtp_alert));
    let _ = writeln!(s, " Default smtp_alert_vrrp = {}", on_off(g.smtp_alert_vrrp));
    let _ = writeln!(s, " Default smtp_alert_checker = {}", on_off(g.smtp_alert_checker));
    let _ = writeln!(s, " Dynamic interfaces = {}", g.dynamic_interfaces);
    let _ = writeln!(s, " Default interface = {}", g.default_interface);
    let _ = writeln!(s, " LVS flush = {}", g.lvs_flush);
    let _ = writeln!(s, " VRRP IPv4 mcast group = {}", g.vrrp_mcast_group4);
    let _ = writeln!(s, " VRRP IPv6 mcast group = {}", g.vrrp_mcast_group6);
    let _ = writeln!(s, " Gratuitous ARP delay = {}", secs(g.vrrp_garp_master_delay));
    let _ = writeln!(s, " Gratuitous ARP repeat = {}", g.vrrp_garp_master_repeat);
    let _ = writeln!(s, " Gratuitous ARP refresh timer = {}", secs(g.vrrp_garp_master_refresh));
    let _ = writeln!(s, " Gratuitous ARP refresh repeat = {}", g.vrrp_garp_master_refresh_repeat);
    let _ = writeln!(s, " Num adverts before down = {}", g.vrrp_down_timer_adverts.unwrap_or(3));
    let _ = writeln!(s, " Send advert after receive lower priority advert = {}", !g.vrrp_lower_prio_no_advert);
    let _ = writeln!(s, " Send advert after receive higher priority advert = {}", g.vrrp_higher_prio_send_advert);
    let _ = writeln!(s, " Gratuitous ARP interval = {:.6}", g.vrrp_garp_interval.as_secs_f64());
    let _ = writeln!(s, " Gratuitous NA interval = {:.6}", g.vrrp_gna_interval.as_secs_f64());
    let _ = writeln!(s, " VRRP default protocol version = {}", g.vrrp_version.number());
    let _ = writeln!(s, " VRRP check unicast_src = {}", g.vrrp_check_unicast_src);
    let _ = writeln!(s, " VRRP skip check advert addresses = {}", g.vrrp_skip_check_adv_addr);
    let _ = writeln!(s, " VRRP strict mode = {}", g.vrrp_strict);
    let _ = writeln!(s, " Script security {}", yes(g.enable_script_security, "enabled", "disabled"));
    if let Some((user, group)) = &g.script_user {
        let _ = writeln!(s, " Default script user = {user}{}", group.as_deref().map(|g| format!(":{g}")).unwrap_or_default());
    }
}

fn notify_line(s: &mut String, kind: &str, script: &Option<Script>) {
    if let Some(sc) = script {
        let _ = writeln!(s, "   {kind} state transition script = {}", cmd_str(&sc.command));
    }
}

fn instance_section(s: &mut String, input: &DumpInput<'_>, i: &VrrpInstance) {
    let g = &input.config.global;
    let r = report_of(input.status, &i.name);
    let state = r.map_or("INIT", |r| r.state.as_str());
    let iface = i.interface.as_deref().unwrap_or("not configured");
    let v6 = i.virtual_ipaddresses.first().is_some_and(|v| v.address.is_ipv6());
    let version = if v6 { 3 } else { i.version.number() };
    let _ = writeln!(s, " VRRP Instance = {}", i.name);
    let _ = writeln!(s, "   VRRP Version = {version}");
    if let Some(sg) = &i.sync_group {
        let _ = writeln!(s, "   Sync group = {sg}");
    }
    if v6 {
        let _ = writeln!(s, "   Using Native IPv6");
    }
    let _ = writeln!(s, "   State = {state}");
    if state == "BACKUP" {
        if let Some(m) = r.and_then(|r| r.master) {
            let _ = writeln!(s, "   Master router = {m}");
        }
    }
    if i.unicast_peers.is_empty() {
        let _ = writeln!(s, "   Flags: none");
    } else {
        let _ = writeln!(s, "   Flags:");
        let _ = writeln!(s, "     Using unicast");
    }
    let _ = writeln!(s, "   Wantstate = {state}");
    if let Some(r) = r {
        let _ = writeln!(s, "   Last transition = {}.{:06} ({})", r.last_transition_unix_us / 1_000_000, r.last_transition_unix_us % 1_000_000, ctime_us(r.last_transition_unix_us, input.utc_offset_s));
    }
    let _ = writeln!(s, "   Interface = {iface}");
    if i.dont_track_primary {
        let _ = writeln!(s, "   VRRP interface tracking disabled");
    }
    if i.skip_check_adv_addr.unwrap_or(g.vrrp_skip_check_adv_addr) {
        let _ = writeln!(s, "   Skip checking advert IP addresses");
    }
    if i.strict_mode {
        let _ = writeln!(s, "   Enforcing strict VRRP compliance");
    }
    match i.src_ip {
        Some(a) => {
            let _ = writeln!(s, "   Using src_ip = {a} (from configuration)");
        }
        None => {
            let _ = writeln!(s, "   Using src_ip = (none)");
        }
    }
    if i.unicast_peers.is_empty() {
        let group = i.mcast_dst_ip.unwrap_or(if v6 { g.vrrp_mcast_group6 } else { g.vrrp_mcast_group4 });
        let _ = writeln!(s, "   Multicast address {group}");
    }
    let _ = writeln!(s, "   Gratuitous ARP delay = {}", secs(i.garp_master_delay));
    let _ = writeln!(s, "   Gratuitous ARP repeat = {}", i.garp_master_repeat);
    let _ = writeln!(s, "   Gratuitous ARP refresh = {}", secs(i.garp_master_refresh));
    let _ = writeln!(s, "   Gratuitous ARP refresh repeat = {}", i.garp_master_refresh_repeat);
    let _ = writeln!(s, "   Down timer adverts = {}", i.down_timer_adverts.or(g.vrrp_down_timer_adverts).unwrap_or(3));
    let lower_no = i.lower_prio_no_advert.unwrap_or(g.vrrp_lower_prio_no_advert);
    let higher = i.higher_prio_send_advert.unwrap_or(g.vrrp_higher_prio_send_advert);
    let _ = writeln!(s, "   Send advert after receive lower priority advert = {}", !lower_no);
    let _ = writeln!(s, "   Send advert after receive higher priority advert = {higher}");
    let _ = writeln!(s, "   Virtual Router ID = {}", i.virtual_router_id);
    let _ = writeln!(s, "   Priority = {}", i.priority);
    if let Some(r) = r {
        let _ = writeln!(s, "   Effective priority = {}", r.effective_priority);
        let _ = writeln!(s, "   Total priority = {}", r.effective_priority);
    }
    match version {
        2 => {
            let _ = writeln!(s, "   Advert interval = {} sec", i.advert_int.as_secs());
        }
        _ => {
            let _ = writeln!(s, "   Advert interval = {} milli-sec", i.advert_int.as_millis());
        }
    }
    let _ = writeln!(s, "   Accept = {}", yes(i.accept.unwrap_or(!i.strict_mode), "enabled", "disabled"));
    let _ = writeln!(s, "   Preempt = {}", yes(i.preempt, "enabled", "disabled"));
    if !i.preempt_delay.is_zero() {
        let _ = writeln!(s, "   Preempt delay = {} secs", fmt_g(i.preempt_delay.as_secs_f64()));
    }
    let _ = writeln!(s, "   Promote_secondaries = disabled");
    match &i.authentication {
        Some(a) if a.auth_type == AuthType::Ah => {
            let _ = writeln!(s, "   Authentication type = IPSEC_AH");
        }
        Some(a) => {
            let _ = writeln!(s, "   Authentication type = SIMPLE_PASSWORD");
            let _ = writeln!(s, "   Password = {}", a.auth_pass.chars().take(8).collect::<String>());
        }
        None if version == 2 => {
            let _ = writeln!(s, "   Authentication type = none");
        }
        None => {}
    }
    if i.debug > 0 {
        let _ = writeln!(s, "   Debug level = {}", i.debug);
    }
    let set = state == "MASTER";
    if !i.virtual_ipaddresses.is_empty() {
        let _ = writeln!(s, "   Virtual IP ({}):", i.virtual_ipaddresses.len());
        for v in &i.virtual_ipaddresses {
            let _ = writeln!(s, "     {}", format_vip(v, iface, set));
        }
    }
    if !i.virtual_ipaddresses_excluded.is_empty() {
        let _ = writeln!(s, "   Virtual IP Excluded :");
        for v in &i.virtual_ipaddresses_excluded {
            let _ = writeln!(s, "     {}", format_vip(v, iface, set));
        }
    }
    if !i.unicast_peers.is_empty() {
        let _ = writeln!(s, "   Unicast TTL = {}", i.unicast_ttl);
        let _ = writeln!(s, "   Check unicast src : {}", yes(i.check_unicast_src.unwrap_or(g.vrrp_check_unicast_src), "yes", "no"));
        let _ = writeln!(s, "   Unicast Peer :");
        for p in &i.unicast_peers {
            let _ = writeln!(s, "     {}", p.address);
        }
    }
    let tracked = Tracked { interfaces: &i.track_interfaces, scripts: &i.track_scripts, files: &i.track_files, processes: &i.track_processes };
    tracked_section(s, input, &tracked, "Tracked processes :");
    let smtp = i.smtp_alert.or(g.smtp_alert_vrrp).or(g.smtp_alert).unwrap_or(false);
    let _ = writeln!(s, "   Using smtp notification = {}", yes(smtp, "yes", "no"));
    let _ = writeln!(s, "   Notify deleted = {}", yes(i.notify_deleted, "Deleted", "Fault"));
    notify_line(s, "Backup", &i.notify.backup);
    notify_line(s, "Master", &i.notify.master);
    notify_line(s, "Fault", &i.notify.fault);
    notify_line(s, "Stop", &i.notify.stop);
    notify_line(s, "Generic", &i.notify.any);
    let _ = writeln!(s, "   Notify priority changes = false");
}

/// The `track_*` lists of an instance or a sync group.
struct Tracked<'a> {
    interfaces: &'a [crate::config::model::TrackedInterface],
    scripts: &'a [crate::config::model::TrackRef],
    files: &'a [crate::config::model::TrackRef],
    processes: &'a [crate::config::model::TrackRef],
}

/// keepalived's "Tracked interfaces :" ... lists (`process_label`: keepalived writes "Tracked
/// processes :" for an instance, "Tracked process :" for a sync group).
fn tracked_section(s: &mut String, input: &DumpInput<'_>, t: &Tracked<'_>, process_label: &str) {
    if !t.interfaces.is_empty() {
        let _ = writeln!(s, "   Tracked interfaces :");
        for t in t.interfaces {
            let _ = writeln!(s, "     {} weight {}{}", t.name, t.weight, yes(t.reverse, " reverse", ""));
        }
    }
    if !t.scripts.is_empty() {
        let _ = writeln!(s, "   Tracked scripts :");
        for t in t.scripts {
            let w = t.weight.or_else(|| input.config.vrrp_scripts.iter().find(|v| v.name == t.name).map(|v| i64::from(v.weight))).unwrap_or(0);
            let _ = writeln!(s, "     {} weight {w}{}", t.name, yes(t.reverse, " reverse", ""));
        }
    }
    if !t.files.is_empty() {
        let _ = writeln!(s, "   Tracked files :");
        for t in t.files {
            let _ = writeln!(s, "     {}", t.name);
        }
    }
    if !t.processes.is_empty() {
        let _ = writeln!(s, "   {process_label}");
        for t in t.processes {
            let _ = writeln!(s, "     {}", t.name);
        }
    }
}

/// `keepalived.data`, as the VRRP process's `vrrp_print_data` writes it.
pub fn data(input: &DumpInput<'_>) -> String {
    let mut s = String::new();
    global_section(&mut s, input);
    let cfg = input.config;
    if !cfg.sync_groups.is_empty() {
        let _ = writeln!(s, "------< VRRP Sync groups >------");
        for g in &cfg.sync_groups {
            let members: Vec<&InstanceReport> = g.members.iter().filter_map(|(n, _)| report_of(input.status, n)).collect();
            let state = members.first().map_or("INIT", |r| r.state.as_str());
            let _ = writeln!(s, " VRRP Sync Group = {}, {state}", g.name);
            let _ = writeln!(s, "   VRRP member instances :");
            for (n, _) in &g.members {
                let _ = writeln!(s, "     {n}");
            }
            if g.sync_group_tracking_weight {
                let _ = writeln!(s, "   sync group tracking weight set");
            }
            let tracked = Tracked { interfaces: &g.track_interfaces, scripts: &g.track_scripts, files: &g.track_files, processes: &g.track_processes };
            tracked_section(&mut s, input, &tracked, "Tracked process :");
        }
    }
    if !cfg.vrrp_instances.is_empty() {
        let _ = writeln!(s, "------< VRRP Topology >------");
        for i in &cfg.vrrp_instances {
            instance_section(&mut s, input, i);
        }
    }
    if !cfg.vrrp_scripts.is_empty() {
        let _ = writeln!(s, "------< VRRP Scripts >------");
        for v in &cfg.vrrp_scripts {
            let status = script_status(input.status, &v.name);
            let good = status == Some("GOOD");
            let _ = writeln!(s, " VRRP Script = {}", v.name);
            let _ = writeln!(s, "   Command = {}", v.script.as_deref().map(cmd_str).unwrap_or_default());
            let _ = writeln!(s, "   Interval = {} sec", v.interval.as_secs());
            let _ = writeln!(s, "   Timeout = {} sec", v.timeout.as_secs());
            let _ = writeln!(s, "   Weight = {}{}", v.weight, yes(v.reverse, " reverse", ""));
            let _ = writeln!(s, "   Rise = {}", v.rise);
            let _ = writeln!(s, "   Fall = {}", v.fall);
            let _ = writeln!(s, "   Result = {}", if good { v.rise } else { 0 });
            let _ = writeln!(s, "   Insecure = no");
            let _ = writeln!(s, "   Init state = {}", if status.is_none() || script_init(input.status, &v.name) { "INIT" } else { "unknown" });
            let _ = writeln!(s, "   Status = {}", status.unwrap_or("BAD"));
            let _ = writeln!(s, "   VRRP instances :");
            let _ = writeln!(s, "   Tracking instances :");
            for i in cfg.vrrp_instances.iter().filter(|i| i.track_scripts.iter().any(|t| t.name == v.name)) {
                let w = i.track_scripts.iter().find(|t| t.name == v.name).and_then(|t| t.weight).unwrap_or(i64::from(v.weight));
                let _ = writeln!(s, "     {}, weight {w}", i.name);
            }
            let _ = writeln!(s, "   State = idle");
        }
    }
    s
}

fn script_init(status: &StatusReport, name: &str) -> bool {
    let label = format!("script:{name}");
    status.vrrp.iter().flat_map(|r| &r.trackers).any(|t| t.name == label && t.status == "init")
}

fn kind_line(kind: LbKind) -> &'static str {
    match kind {
        LbKind::Nat => "NAT",
        LbKind::Dr => "DR",
        LbKind::Tun(_) => "TUN, type = IPIP",
    }
}

/// `keepalived_check.data`, as the checkers process's `print_check_data` writes it: the
/// virtual servers with their real servers' weights and health.
pub fn check_data(input: &DumpInput<'_>) -> String {
    let mut s = String::new();
    let cfg = input.config;
    if cfg.virtual_servers.is_empty() {
        return s;
    }
    let rs_reports = input.status.health.as_ref().map(|h| h.real_servers.as_slice()).unwrap_or_default();
    let _ = writeln!(s, "------< LVS Topology >------");
    let _ = writeln!(s, " System is compiled with LVS v1.2.1");
    for (vi, vs) in cfg.virtual_servers.iter().enumerate() {
        let _ = writeln!(s, " ------< Virtual server >------");
        let v6 = match &vs.key {
            VsKey::Addr { addr, port } => {
                let _ = writeln!(s, " VS VIP = {addr}, VPORT = {port}");
                addr.is_ipv6()
            }
            VsKey::Fwmark(m) => {
                let _ = writeln!(s, " VS FWMARK = {m}");
                vs.ipv6_family == Some(true)
            }
            VsKey::Group(g) => {
                let _ = writeln!(s, " VS GROUP = {g}");
                vs.ipv6_family == Some(true)
            }
        };
        if let Some(h) = &vs.virtualhost {
            let _ = writeln!(s, "   VirtualHost = {h}");
        }
        let _ = writeln!(s, "   Address family = inet{}", yes(v6, "6", ""));
        let _ = writeln!(s, "   delay_loop = {}", fmt_g(vs.timing.delay_loop.as_secs_f64()));
        let algo = crate::config::model::LbAlgo::ALL.iter().find(|(_, a)| *a == vs.lb_algo).map_or("wlc", |(n, _)| n);
        let _ = writeln!(s, "   lvs_sched = {algo}");
        if let Some(p) = vs.persistence_timeout {
            let _ = writeln!(s, "   persistence timeout = {}", p.as_secs());
        }
        let _ = writeln!(
            s,
            "   protocol = {}",
            match vs.protocol {
                Protocol::Tcp => "TCP",
                Protocol::Udp => "UDP",
                Protocol::Sctp => "SCTP",
            }
        );
        let _ = writeln!(s, "   alpha is {}", yes(vs.timing.alpha, "ON", "OFF"));
        let _ = writeln!(s, "   omega is {}", yes(vs.omega, "ON", "OFF"));
        let _ = writeln!(s, "   Inhibit on failure is {}", yes(vs.timing.inhibit_on_failure, "ON", "OFF"));
        let _ = writeln!(s, "   quorum = {}, hysteresis = {}", vs.quorum, vs.hysteresis);
        if vs.ha_suspend {
            let _ = writeln!(s, "   Using HA suspend");
        }
        let _ = writeln!(s, "   default forwarding method = {}", kind_line(vs.lb_kind));
        if let Some(sorry) = &vs.sorry_server {
            let _ = writeln!(s, "   sorry server = [{}]:{}", sorry.address, sorry.port);
        }
        for (ri, rs) in vs.real_servers.iter().enumerate() {
            let rep = rs_reports.iter().find(|r| r.vs_index == vi && r.rs_index == Some(ri));
            let weight = rep.map_or(rs.weight.max(0).unsigned_abs(), |r| r.weight);
            let alive = rep.is_some_and(|r| r.in_table && r.weight > 0 || r.state == "up");
            let _ = writeln!(s, "   ------< Real server >------");
            let _ = writeln!(s, "   RIP = {}, RPORT = {}, WEIGHT = {} EFF WEIGHT = {}", rs.address, rs.port, rs.weight, weight);
            let _ = writeln!(s, "   forwarding method = {}", kind_line(rs.lb_kind));
            let _ = writeln!(s, "   Alpha is {}", yes(rs.timing.alpha, "ON", "OFF"));
            let _ = writeln!(s, "   connection timeout = {}", fmt_g(rs.timing.connect_timeout.as_secs_f64()));
            let _ = writeln!(s, "   connection limit range = {} -> {}", rs.lthreshold.unwrap_or(0), rs.uthreshold.unwrap_or(0));
            let _ = writeln!(s, "   Delay loop = {}", fmt_g(rs.timing.delay_loop.as_secs_f64()));
            let _ = writeln!(s, "   Inhibit on failure is {}", yes(rs.timing.inhibit_on_failure, "ON", "OFF"));
            if let Some(n) = &rs.notify_up {
                let _ = writeln!(s, "     RS up notify script = {}", cmd_str(&n.command));
            }
            if let Some(n) = &rs.notify_down {
                let _ = writeln!(s, "     RS down notify script = {}", cmd_str(&n.command));
            }
            let _ = writeln!(s, "   initial weight = {}", rs.weight);
            let _ = writeln!(s, "   effective weight = {weight}");
            let _ = writeln!(s, "   alive = {}", u8::from(alive));
            let failed = rep.map_or(0, |r| r.checkers.iter().filter(|c| !c.up).count());
            let _ = writeln!(s, "   num failed checkers = {failed}");
        }
    }
    let checkers: Vec<_> = rs_reports.iter().flat_map(|r| r.checkers.iter().map(move |c| (r, c))).collect();
    if !checkers.is_empty() {
        let _ = writeln!(s, "------< Health checkers >------");
        for (r, c) in checkers {
            let _ = writeln!(s, " {}", fmt_rs(r.addr, r.port, r.protocol.as_deref()));
            let _ = writeln!(s, "   Keepalive method = {}", c.kind);
            let _ = writeln!(s, "   Enabled = yes");
            let _ = writeln!(s, "   Is up = {}", yes(c.up, "yes", "no"));
        }
    }
    s
}

/// keepalived's `FMT_RS`: `[198.18.0.20]:tcp:80`.
pub fn fmt_rs(addr: IpAddr, port: u16, protocol: Option<&str>) -> String {
    format!("[{addr}]:{}:{port}", protocol.unwrap_or("tcp").to_ascii_lowercase())
}

/// A JSON string as keepalived's `json_writer` escapes it (`/` included).
fn json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{c}' => out.push_str("\\f"),
            '\u{8}' => out.push_str("\\b"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '/' => out.push_str("\\/"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON object writer keeping keepalived's field order.
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn new(out: &'a mut String) -> Obj<'a> {
        out.push('{');
        Obj { out, first: true }
    }
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        json_str(self.out, k);
        self.out.push(':');
    }
    fn raw(&mut self, k: &str, v: impl std::fmt::Display) {
        self.key(k);
        let _ = write!(self.out, "{v}");
    }
    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        json_str(self.out, v);
    }
    fn strs(&mut self, k: &str, v: &[String]) {
        if v.is_empty() {
            return;
        }
        self.key(k);
        self.out.push('[');
        for (i, s) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            json_str(self.out, s);
        }
        self.out.push(']');
    }
    fn end(self) {
        self.out.push('}');
    }
}

/// `keepalived.json`, as `vrrp_print_json` of an `--enable-json` keepalived 2.2.7 writes it:
/// one object per instance with `data` and `stats`, keepalived's field names, order and
/// number formats (gen2brain/keepalived_exporter and mehdy/keepalived-exporter decode it
/// with fixed Go types: integers stay integers).
pub fn json(input: &DumpInput<'_>) -> String {
    let g = &input.config.global;
    let stats: BTreeMap<String, Stats> = current_stats(input.status, input.baseline).into_iter().collect();
    let mut out = String::from("[");
    for (n, i) in input.config.vrrp_instances.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let r = report_of(input.status, &i.name);
        let state = state_number(r.map_or("INIT", |r| r.state.as_str()));
        let iface = i.interface.as_deref().unwrap_or("");
        let v6 = i.virtual_ipaddresses.first().is_some_and(|v| v.address.is_ipv6());
        let version = if v6 { 3 } else { i.version.number() };
        let mut top = Obj::new(&mut out);
        top.key("data");
        let mut d = Obj::new(&mut *top.out);
        d.str("iname", &i.name);
        d.raw("dont_track_primary", u8::from(i.dont_track_primary));
        d.raw("skip_check_adv_addr", u8::from(i.skip_check_adv_addr.unwrap_or(g.vrrp_skip_check_adv_addr)));
        d.raw("strict_mode", u8::from(i.strict_mode));
        let vmac = match &i.use_vmac {
            Some(Some(name)) => name.clone(),
            Some(None) => format!("vrrp.{}", i.virtual_router_id),
            None => String::new(),
        };
        d.str("vmac_ifname", &vmac);
        if !iface.is_empty() {
            d.str("ifp_ifname", iface);
        }
        d.raw("master_priority", 0);
        let lt = r.map_or(0, |r| r.last_transition_unix_us);
        d.raw("last_transition", format!("{}.{:06}", lt / 1_000_000, lt % 1_000_000));
        d.raw("garp_delay", fmt_g(i.garp_master_delay.as_secs_f64()));
        d.raw("garp_refresh", i.garp_master_refresh.as_secs());
        d.raw("garp_rep", i.garp_master_repeat);
        d.raw("garp_refresh_rep", i.garp_master_refresh_repeat);
        d.raw("garp_lower_prio_delay", i.garp_master_delay.as_secs());
        d.raw("garp_lower_prio_rep", i.garp_master_repeat);
        d.raw("lower_prio_no_advert", u8::from(i.lower_prio_no_advert.unwrap_or(g.vrrp_lower_prio_no_advert)));
        d.raw("higher_prio_send_advert", u8::from(i.higher_prio_send_advert.unwrap_or(g.vrrp_higher_prio_send_advert)));
        d.raw("vrid", i.virtual_router_id);
        d.raw("base_priority", i.priority);
        d.raw("effective_priority", r.map_or(i.priority, |r| r.effective_priority));
        d.raw("vipset", state == 2);
        d.raw("promote_secondaries", false);
        d.raw("adver_int", fmt_g(i.advert_int.as_secs_f64()));
        d.raw("master_adver_int", fmt_g(i.advert_int.as_secs_f64()));
        d.raw("accept", u8::from(i.accept.unwrap_or(!i.strict_mode)));
        d.raw("nopreempt", !i.preempt);
        d.raw("preempt_delay", i.preempt_delay.as_secs());
        d.raw("state", state);
        d.raw("wantstate", state);
        d.raw("version", version);
        d.raw("smtp_alert", i.smtp_alert.or(g.smtp_alert_vrrp).or(g.smtp_alert).unwrap_or(false));
        d.raw("notify_deleted", i.notify_deleted);
        for (k, sc) in [
            ("script_backup", &i.notify.backup),
            ("script_master", &i.notify.master),
            ("script_fault", &i.notify.fault),
            ("script_stop", &i.notify.stop),
            ("script", &i.notify.any),
        ] {
            if let Some(sc) = sc {
                d.str(k, &cmd_str(&sc.command));
            }
        }
        let set = state == 2;
        d.strs("vips", &i.virtual_ipaddresses.iter().map(|v| format_vip(v, iface, set)).collect::<Vec<_>>());
        d.strs("evips", &i.virtual_ipaddresses_excluded.iter().map(|v| format_vip(v, iface, set)).collect::<Vec<_>>());
        d.strs("track_ifp", &i.track_interfaces.iter().map(|t| t.name.clone()).collect::<Vec<_>>());
        let scripts: Vec<String> = i
            .track_scripts
            .iter()
            .filter_map(|t| input.config.vrrp_scripts.iter().find(|v| v.name == t.name))
            .filter_map(|v| v.script.as_deref().map(cmd_str))
            .collect();
        d.strs("track_script", &scripts);
        let auth_type = match &i.authentication {
            None => 0,
            Some(a) if a.auth_type == AuthType::Pass => 1,
            Some(_) => 2,
        };
        d.raw("auth_type", auth_type);
        if let Some(a) = &i.authentication {
            let pass: String = if a.auth_type == AuthType::Pass { a.auth_pass.chars().take(8).collect() } else { String::new() };
            d.str("auth_data", &pass);
        }
        d.end();
        let st = stats.get(&i.name).copied().unwrap_or_default();
        top.key("stats");
        let mut o = Obj::new(&mut *top.out);
        o.raw("advert_rcvd", st.advert_rcvd);
        o.raw("advert_sent", st.advert_sent);
        o.raw("become_master", st.become_master);
        o.raw("release_master", st.release_master);
        o.raw("packet_len_err", st.packet_len_err);
        o.raw("advert_interval_err", st.advert_interval_err);
        o.raw("ip_ttl_err", st.ip_ttl_err);
        o.raw("invalid_type_rcvd", st.invalid_type_rcvd);
        o.raw("addr_list_err", st.addr_list_err);
        o.raw("invalid_authtype", st.invalid_authtype);
        o.raw("authtype_mismatch", st.authtype_mismatch);
        o.raw("auth_failure", st.auth_failure);
        o.raw("pri_zero_rcvd", st.pri_zero_rcvd);
        o.raw("pri_zero_sent", st.pri_zero_sent);
        o.end();
        top.end();
    }
    out.push_str("]\n");
    out
}

#[cfg(test)]
#[path = "dump_tests.rs"]
mod tests;
