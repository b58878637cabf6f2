//! Value parsers: integers, decimals and timers, booleans, addresses, ports, users, scripts.

use std::{net::IpAddr, time::Duration};

use super::{keywords::FLAG_KEYWORDS, Cx};
use crate::config::{lexer::Token, model::*, tree::Stmt};

/// `u32::MAX`, the upper bound keepalived puts on most unsigned values.
pub(super) const U32: i64 = u32::MAX as i64;
/// `i32::MAX`, keepalived's bound for signed values (weights, rise, fall).
pub(super) const I32: i64 = i32::MAX as i64;
/// `u32::MAX` microseconds (4294.967295 s), keepalived's bound for most timers.
pub(super) const U32_US: u64 = u32::MAX as u64;
/// `i32::MAX` microseconds (2147.483647 s), keepalived's bound for `garp_group` intervals.
pub(super) const I32_US: u64 = i32::MAX as u64;
/// The largest timer keepalived reads for checker delays (a `u64` of microseconds).
pub(super) const U64_US: u64 = u64::MAX - 1;
/// One hour in microseconds (`vrrp_track_process` delays).
pub(super) const HOUR_US: u64 = 3_600_000_000;

impl Cx<'_> {
    pub(super) fn int(&mut self, t: &Token, lo: i64, hi: i64) -> Option<i64> {
        let txt = t.text.as_str();
        let v = match txt.strip_prefix("0x") {
            Some(h) => i64::from_str_radix(h, 16).ok(),
            None => txt.parse::<i64>().ok(),
        };
        match v {
            Some(v) if (lo..=hi).contains(&v) => Some(v),
            Some(_) => {
                self.err(t, format!("number '{txt}' outside range [{lo}, {hi}]"));
                None
            }
            None => {
                self.err(t, format!("'{txt}' is not a valid integer"));
                None
            }
        }
    }

    pub(super) fn arg_int(&mut self, s: &Stmt, lo: i64, hi: i64) -> Option<i64> {
        self.no_block(s);
        if !self.args(s, 1, 1) {
            return None;
        }
        self.int(&s.args[0], lo, hi)
    }

    /// Parses a decimal number with at most `decimals` fractional digits, as keepalived's
    /// `read_decimal_unsigned` does, into units of 10^-`decimals`, checked against `[lo, hi]`.
    pub(super) fn decimal(&mut self, t: &Token, decimals: u32, lo: u64, hi: u64, unit: &str) -> Option<u64> {
        let txt = t.text.as_str();
        let (int, frac) = txt.split_once('.').unwrap_or((txt, ""));
        let digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
        if int.is_empty() && frac.is_empty() || !digits(int) || !digits(frac) {
            self.err(t, format!("'{txt}' is not a valid time in {unit}"));
            return None;
        }
        if frac.len() > decimals as usize {
            self.err(
                t,
                format!("time '{txt}' has too many decimal places (at most {decimals})"),
            );
            return None;
        }
        let scale = 10u128.pow(decimals);
        let parse = |s: &str| if s.is_empty() { Some(0) } else { s.parse::<u128>().ok() };
        let frac_units = parse(frac).map(|f| f * 10u128.pow(decimals - frac.len() as u32));
        let v = parse(int)
            .and_then(|i| i.checked_mul(scale))
            .zip(frac_units)
            .and_then(|(i, f)| i.checked_add(f));
        match v {
            Some(v) if (u128::from(lo)..=u128::from(hi)).contains(&v) => Some(v as u64),
            _ => {
                let show = |x: u64| {
                    let (i, f) = (u128::from(x) / scale, u128::from(x) % scale);
                    if f == 0 {
                        i.to_string()
                    } else {
                        let f = format!("{f:0w$}", w = decimals as usize);
                        format!("{i}.{}", f.trim_end_matches('0'))
                    }
                };
                self.err(
                    t,
                    format!("time '{txt}' outside range [{}, {}] {unit}", show(lo), show(hi)),
                );
                None
            }
        }
    }

    /// A time in seconds with microsecond resolution, within `[lo_us, hi_us]` microseconds.
    pub(super) fn timer_tok_us(&mut self, t: &Token, lo_us: u64, hi_us: u64) -> Option<Duration> {
        self.decimal(t, 6, lo_us, hi_us, "seconds")
            .map(Duration::from_micros)
    }

    pub(super) fn arg_timer(&mut self, s: &Stmt, max_secs: u64) -> Option<Duration> {
        self.arg_timer_us(s, 0, max_secs.saturating_mul(1_000_000))
    }

    /// `KEYWORD TIME`, TIME in seconds with up to 6 decimals, within `[lo_us, hi_us]` µs.
    pub(super) fn arg_timer_us(&mut self, s: &Stmt, lo_us: u64, hi_us: u64) -> Option<Duration> {
        self.no_block(s);
        if !self.args(s, 1, 1) {
            return None;
        }
        self.timer_tok_us(&s.args[0], lo_us, hi_us)
    }

    /// `KEYWORD SECONDS` in `(0, max]` where keepalived reads whole seconds but ka can use a
    /// fraction (fast `vrrp_script` intervals): a fraction is a warning, not an error.
    pub(super) fn arg_secs_frac(&mut self, s: &Stmt, max: u64) -> Option<Duration> {
        let v = self.arg_timer_us(s, 1, max.saturating_mul(1_000_000))?;
        if v.subsec_micros() != 0 {
            self.warn(
                &s.args[0],
                format!(
                    "'{}' {}: keepalived 2.2.7 accepts only whole seconds here; ka uses the fraction",
                    s.name(),
                    s.args[0].text
                ),
            );
        }
        Some(v)
    }

    /// `KEYWORD SECONDS` where keepalived reads a whole number of seconds.
    pub(super) fn arg_secs(&mut self, s: &Stmt, lo: i64, hi: i64) -> Option<Duration> {
        self.arg_int(s, lo, hi)
            .map(|v| Duration::from_secs(v as u64))
    }

    /// `KEYWORD [on|off|true|false|yes|no]`; no argument means true.
    pub(super) fn arg_bool(&mut self, s: &Stmt) -> bool {
        self.no_block(s);
        let Some(t) = s.args.first() else { return true };
        if s.args.len() > 1 {
            self.warn(
                &s.args[1],
                format!(
                    "'{}': extra argument '{}' ignored",
                    s.name(),
                    s.args[1].text
                ),
            );
        }
        if FLAG_KEYWORDS.contains(&s.name()) {
            self.warn(
                t,
                format!(
                    "'{}': value '{}' ignored: keepalived 2.2 turns {} on whatever follows it; so does ka",
                    s.name(),
                    t.text,
                    s.name()
                ),
            );
            return true;
        }
        match t.text.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" => true,
            "off" | "false" | "no" => false,
            _ => {
                // keepalived (check_true_false): "invalid value", the keyword is ignored and the
                // setting keeps its default, off.
                self.err(
                    t,
                    format!(
                        "'{}': '{}' is not a boolean (on|off|true|false|yes|no); left off",
                        s.name(),
                        t.text
                    ),
                );
                false
            }
        }
    }

    /// An address where keepalived 2.2 also takes `ADDR/LEN` and uses the address alone
    /// (`unicast_src_ip`, `unicast_peer`).
    pub(super) fn ip_or_prefix(&mut self, t: &Token) -> Option<IpAddr> {
        match t.text.split_once('/') {
            Some((a, _)) if t.text.parse::<IpPrefix>().is_ok() => {
                self.warn(
                    t,
                    format!("prefix of '{}' ignored: keepalived 2.2 uses the address {a} alone; so does ka", t.text),
                );
                a.parse().ok()
            }
            _ => self.ip(t),
        }
    }

    pub(super) fn ip(&mut self, t: &Token) -> Option<IpAddr> {
        match t.text.parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(t, format!("'{}' is not a valid IP address", t.text));
                None
            }
        }
    }

    pub(super) fn arg_ip(&mut self, s: &Stmt) -> Option<IpAddr> {
        self.no_block(s);
        if !self.args(s, 1, 1) {
            return None;
        }
        self.ip(&s.args[0])
    }

    pub(super) fn port(&mut self, t: &Token) -> Option<u16> {
        match t.text.parse::<u16>() {
            Ok(p) => Some(p),
            Err(_) => {
                self.err(t, format!("'{}' is not a valid port (0-65535)", t.text));
                None
            }
        }
    }

    pub(super) fn arg_str(&mut self, s: &Stmt) -> Option<String> {
        self.no_block(s);
        if !self.args(s, 1, 1) {
            return None;
        }
        Some(s.args[0].text.clone())
    }

    pub(super) fn user(&mut self, s: &Stmt, from: usize) -> Option<(String, Option<String>)> {
        if s.args.len() > from + 2 {
            self.warn(
                &s.args[from + 2],
                format!("'{}': extra argument ignored", s.name()),
            );
        }
        s.args
            .get(from)
            .map(|u| (u.text.clone(), s.args.get(from + 1).map(|g| g.text.clone())))
    }

    pub(super) fn script(&mut self, s: &Stmt) -> Option<Script> {
        self.no_block(s);
        if !self.args(s, 1, 3) {
            return None;
        }
        Some(Script {
            command: s.args[0].text.clone(),
            user: self.user(s, 1),
            span: s.span(),
        })
    }

    pub(super) fn reverse(&mut self, s: &Stmt, at: usize) -> bool {
        match s.args.get(at).map(|t| t.text.as_str()) {
            None => false,
            Some("reverse") => true,
            Some("noreverse" | "no_reverse") => false,
            Some(_) => {
                self.err(
                    &s.args[at],
                    format!(
                        "expected 'reverse' or 'noreverse', not '{}'",
                        s.args[at].text
                    ),
                );
                false
            }
        }
    }

    pub(super) fn hex(&mut self, e: &Stmt) -> Vec<u8> {
        let mut out = Vec::new();
        for a in &e.args {
            let digits: Vec<u32> = a
                .text
                .chars()
                .filter_map(|c| {
                    c.to_digit(16)
                        .or(if c == 'x' || c == 'X' { Some(0) } else { None })
                })
                .collect();
            if digits.len() != a.text.len() {
                self.err(a, format!("'{}' is not a hex string", a.text));
                continue;
            }
            if digits.len() % 2 == 1 {
                out.push(digits[0] as u8);
            }
            for p in digits[digits.len() % 2..].chunks(2) {
                out.push((p[0] << 4 | p[1]) as u8);
            }
        }
        out
    }
}
