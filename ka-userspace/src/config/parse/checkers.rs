//! Health checkers of a real server (`TCP_CHECK`, `HTTP_GET`, ...) and the `SSL` block.
//!
//! [`Cx::checker`] reads the keywords every checker shares ([`Cx::checker_common`], the
//! timing ones) and hands the rest to the helper of the checker's kind.

use std::time::Duration;

use super::{keywords::*, Cx};
use crate::config::{lexer::Token, model::*, tree::Stmt};

/// Every keyword a checker block may hold (for "did you mean" hints).
const CHECKER_KEYWORDS: &[&str] = &[
    "connect_ip",
    "connect_port",
    "bindto",
    "bind_port",
    "bind_if",
    "fwmark",
    "connect_timeout",
    "retry",
    "delay_before_retry",
    "warmup",
    "delay_loop",
    "alpha",
    "log_all_failures",
    "url",
    "http_protocol",
    "virtualhost",
    "enable_sni",
    "fast_recovery",
    "misc_path",
    "misc_timeout",
    "misc_dynamic",
    "user",
    "helo_name",
    "type",
    "name",
    "payload",
    "require_reply",
    "min_reply_length",
    "max_reply_length",
    "track_file",
    "dynamic",
    "weight",
];

/// The keywords of a `url { }` block.
const URL_KEYWORDS: &[&str] = &[
    "path",
    "digest",
    "status_code",
    "virtualhost",
    "regex",
    "regex_no_match",
    "regex_options",
    "regex_stack",
    "regex_min_offset",
    "regex_max_offset",
];

/// A checker of type `name` (one of [`CHECKERS_SUPPORTED`] / [`CHECKERS_UNSUPPORTED`]) with
/// keepalived 2.2's defaults; HTTP ones inherit the real server's `virtualhost`.
fn new_kind(name: &str, rs: &RealServer) -> CheckerKind {
    match name {
        "TCP_CHECK" => CheckerKind::Tcp,
        "HTTP_GET" | "SSL_GET" => CheckerKind::Http {
            ssl: name == "SSL_GET",
            urls: Vec::new(),
            http_protocol: None,
            virtualhost: rs.virtualhost.clone(),
            enable_sni: false,
            fast_recovery: false,
        },
        "MISC_CHECK" => CheckerKind::Misc {
            path: None,
            timeout: None,
            dynamic: false,
            user: None,
        },
        "SMTP_CHECK" => CheckerKind::Smtp { helo_name: None },
        "DNS_CHECK" => CheckerKind::Dns {
            qtype: "SOA".into(),
            name: ".".into(),
        },
        "UDP_CHECK" => CheckerKind::Udp {
            payload: None,
            require_reply: false,
            min_reply_length: 0,
            max_reply_length: 255,
        },
        "PING_CHECK" => CheckerKind::Ping,
        "BFD_CHECK" => CheckerKind::Bfd { name: None },
        _ => CheckerKind::File {
            track_file: None,
            dynamic: false,
            weight: None,
        },
    }
}

impl Cx<'_> {
    pub(super) fn checker(&mut self, s: &Stmt, rs: &RealServer) -> Option<Checker> {
        let name = s.name();
        if CHECKERS_UNSUPPORTED.contains(&name) {
            self.unsupported(s, "real_server");
        }
        if !s.args.is_empty() {
            self.warn(
                &s.args[0],
                format!("{name}: extra argument '{}' ignored", s.args[0].text),
            );
        }
        let mut kind = new_kind(name, rs);
        let mut t = rs.timing;
        t.retry = None;
        t.delay_before_retry = None;
        let mut c = Checker {
            kind: CheckerKind::Tcp,
            connect_ip: None,
            connect_port: None,
            bindto: None,
            bind_port: None,
            bind_if: None,
            fwmark: None,
            connect_timeout: Duration::ZERO,
            delay_loop: Duration::ZERO,
            retry: 0,
            delay_before_retry: Duration::ZERO,
            warmup: Duration::ZERO,
            alpha: false,
            log_all_failures: false,
            span: s.span(),
        };
        for e in self.block(s) {
            if e.name() == "nb_get_retry" {
                if matches!(kind, CheckerKind::Http { .. }) {
                    // keepalived 2.2 (check_http.c) still reads it for HTTP_GET/SSL_GET.
                    self.warn(&e.kw, "nb_get_retry is deprecated - please use 'retry'");
                } else {
                    self.err(
                        &e.kw,
                        format!("unknown keyword 'nb_get_retry' in {name} (keepalived 2.2 reads it only in HTTP_GET/SSL_GET); did you mean 'retry'?"),
                    );
                    continue;
                }
            }
            let handled = self.timing(e, &mut t, true)
                || self.checker_common(e, &mut c)
                || self.http_keyword(e, &mut kind)
                || self.misc_keyword(e, &mut kind)
                || self.smtp_keyword(e, &mut kind)
                || self.dns_keyword(e, &mut kind)
                || self.udp_keyword(e, &mut kind)
                || self.file_keyword(e, &mut kind)
                || self.bfd_check_keyword(e, &mut kind);
            if !handled {
                let ctx = name.to_string();
                self.unknown(e, &ctx, &[CHECKER_KEYWORDS]);
            }
        }
        // keepalived's per-type defaults (check_*.c): retry 1 (DNS 3, MISC 0), delay_before_retry
        // 3 s for HTTP/SSL, delay_loop for DNS, 1 s otherwise.
        let (def_retry, def_dbr) = match &kind {
            CheckerKind::Dns { .. } => (3, t.delay_loop),
            CheckerKind::Misc { .. } => (0, Duration::from_secs(1)),
            CheckerKind::Http { .. } => (1, Duration::from_secs(3)),
            _ => (1, Duration::from_secs(1)),
        };
        c.retry = t.retry.or(rs.timing.retry).unwrap_or(def_retry);
        c.delay_before_retry = t.delay_before_retry.or(rs.timing.delay_before_retry).unwrap_or(def_dbr);
        c.connect_timeout = t.connect_timeout;
        c.delay_loop = t.delay_loop;
        c.warmup = t.warmup.unwrap_or(t.delay_loop);
        c.alpha = t.alpha;
        if self.checker_unusable(s, &kind) {
            return None;
        }
        c.kind = kind;
        Some(c)
    }

    /// keepalived 2.2 removes a checker that cannot check anything ("- ignoring"); so does ka.
    /// Says so and returns true for such a checker.
    fn checker_unusable(&mut self, s: &Stmt, kind: &CheckerKind) -> bool {
        let name = s.name();
        let unusable = match kind {
            CheckerKind::Http { urls, .. } if urls.is_empty() => Some((
                Token {
                    span: s.end,
                    ..s.kw.clone()
                },
                format!("{name} has no url {{ path ... }}; it cannot check anything; the checker is"),
            )),
            CheckerKind::Misc { path: None, .. } => {
                Some((s.kw.clone(), "MISC_CHECK needs a misc_path; the checker is".to_owned()))
            }
            // A `name` that named no usable bfd_instance was reported where it was written.
            CheckerKind::Bfd { name: None } if s.block.iter().flatten().any(|e| e.name() == "name") => return true,
            CheckerKind::Bfd { name: None } => {
                Some((s.kw.clone(), "BFD_CHECK needs a name; the checker is".to_owned()))
            }
            CheckerKind::File {
                track_file: None, ..
            } => Some((s.kw.clone(), "FILE_CHECK needs a track_file; the checker is".to_owned())),
            _ => None,
        };
        match unusable {
            Some((at, msg)) => {
                self.err(&at, msg);
                true
            }
            None => false,
        }
    }

    /// Where every checker connects from and to: `connect_ip`, `connect_port`, `bindto`,
    /// `bind_port`, `bind_if`, `fwmark`, `log_all_failures`.
    fn checker_common(&mut self, e: &Stmt, c: &mut Checker) -> bool {
        match e.name() {
            "connect_ip" => c.connect_ip = self.arg_ip(e),
            "connect_port" => c.connect_port = self.arg_str(e).and_then(|_| self.port(&e.args[0])),
            "bindto" => c.bindto = self.arg_ip(e),
            "bind_port" => c.bind_port = self.arg_str(e).and_then(|_| self.port(&e.args[0])),
            "bind_if" => c.bind_if = self.arg_str(e),
            "fwmark" => c.fwmark = self.arg_int(e, 0, i64::from(u32::MAX)).map(|v| v as u32),
            "log_all_failures" => c.log_all_failures = self.arg_bool(e),
            _ => return false,
        }
        true
    }

    /// `HTTP_GET` / `SSL_GET`: `url`, `http_protocol`, `virtualhost`, `enable_sni`,
    /// `fast_recovery`.
    fn http_keyword(&mut self, e: &Stmt, kind: &mut CheckerKind) -> bool {
        let CheckerKind::Http { urls, http_protocol, virtualhost, enable_sni, fast_recovery, .. } = kind else {
            return false;
        };
        match e.name() {
            "url" => urls.push(self.http_url(e)),
            "http_protocol" => {
                if let Some(p) = self.arg_str(e) {
                    if !matches!(p.as_str(), "1.0" | "1.0C" | "1.0c" | "1.1") {
                        self.err(&e.args[0], format!("http_protocol must be 1.0, 1.0C or 1.1, not '{p}'"));
                    }
                    *http_protocol = Some(p);
                }
            }
            "virtualhost" => *virtualhost = self.arg_str(e),
            "enable_sni" => *enable_sni = self.arg_bool(e),
            "fast_recovery" => *fast_recovery = self.arg_bool(e),
            _ => return false,
        }
        true
    }

    /// One `url { path ...; digest ...; status_code ... }` block.
    fn http_url(&mut self, e: &Stmt) -> HttpUrl {
        let mut u = HttpUrl {
            path: String::new(),
            digest: None,
            status_codes: Vec::new(),
            virtualhost: None,
            regex: None,
            regex_no_match: false,
            span: e.span(),
        };
        let mut has_path = false;
        for x in self.block(e) {
            match x.name() {
                "path" => {
                    if let Some(p) = self.arg_str(x) {
                        u.path = p;
                        has_path = true;
                    }
                }
                "digest" => {
                    if let Some(dg) = self.arg_str(x) {
                        if dg.len() != 32 || !dg.chars().all(|c| c.is_ascii_hexdigit()) {
                            self.err(&x.args[0], format!("digest '{dg}' is not 32 hex digits (an MD5 sum)"));
                        }
                        u.digest = Some(dg);
                    }
                }
                "status_code" => self.status_codes(x, &mut u.status_codes),
                "virtualhost" => u.virtualhost = self.arg_str(x),
                "regex" => {
                    u.regex = self.arg_str(x);
                    self.unsupported(x, "url");
                }
                "regex_no_match" => {
                    u.regex_no_match = true;
                    self.unsupported(x, "url");
                }
                "regex_options" | "regex_stack" | "regex_min_offset" | "regex_max_offset" => {
                    self.unsupported(x, "url")
                }
                _ => self.unknown(x, "url", &[URL_KEYWORDS]),
            }
        }
        if !has_path {
            self.err(&e.kw, "url needs a path");
        }
        if u.status_codes.is_empty() && u.digest.is_none() {
            u.status_codes.push(StatusRange {
                first: 200,
                last: 299,
            });
        }
        u
    }

    /// `status_code CODE|FIRST-LAST ...`.
    fn status_codes(&mut self, x: &Stmt, out: &mut Vec<StatusRange>) {
        self.no_block(x);
        if !self.args(x, 1, usize::MAX) {
            return;
        }
        for a in &x.args {
            let r = match a.text.split_once('-') {
                Some((lo, hi)) => lo.parse::<u16>().ok().zip(hi.parse::<u16>().ok()),
                None => a.text.parse::<u16>().ok().map(|v| (v, v)),
            };
            match r {
                Some((lo, hi)) if (100..=599).contains(&lo) && (lo..=599).contains(&hi) => {
                    out.push(StatusRange { first: lo, last: hi })
                }
                _ => self.err(a, format!("invalid status code '{}' (100-599 or a range like 200-299)", a.text)),
            }
        }
    }

    /// `MISC_CHECK`: `misc_path`, `misc_timeout`, `misc_dynamic`, `user`.
    fn misc_keyword(&mut self, e: &Stmt, kind: &mut CheckerKind) -> bool {
        let CheckerKind::Misc { path, timeout, dynamic, user } = kind else {
            return false;
        };
        match e.name() {
            "misc_path" => *path = self.arg_str(e),
            // keepalived: whole seconds, 0 meaning the default (the delay_loop).
            "misc_timeout" => *timeout = self.arg_secs(e, 0, 4294).filter(|d| !d.is_zero()),
            "misc_dynamic" => *dynamic = self.arg_bool(e),
            "user" => {
                self.no_block(e);
                if self.args(e, 1, 2) {
                    *user = self.user(e, 0);
                }
            }
            _ => return false,
        }
        true
    }

    /// `SMTP_CHECK`: `helo_name`, and the deprecated `host { }` blocks (checked, not run).
    fn smtp_keyword(&mut self, e: &Stmt, kind: &mut CheckerKind) -> bool {
        let CheckerKind::Smtp { helo_name } = kind else {
            return false;
        };
        match e.name() {
            "helo_name" => *helo_name = self.arg_str(e),
            "host" => {
                self.warn(&e.kw, "'host' in SMTP_CHECK is deprecated (use one SMTP_CHECK per host with connect_ip); accepted, not supported yet");
                for x in self.block(e) {
                    match x.name() {
                        "connect_ip" | "bindto" => {
                            let _ = self.arg_ip(x);
                        }
                        "connect_port" | "bind_port" => {
                            if self.args(x, 1, 1) {
                                let _ = self.port(&x.args[0]);
                            }
                        }
                        "bind_if" | "fwmark" | "connect_timeout" | "retry" | "delay_before_retry" | "warmup" => {}
                        _ => self.unknown(
                            x,
                            "host",
                            &[&["connect_ip", "connect_port", "bindto", "bind_port", "bind_if", "fwmark", "connect_timeout"]],
                        ),
                    }
                }
            }
            _ => return false,
        }
        true
    }

    /// `DNS_CHECK`: `type`, `name`.
    fn dns_keyword(&mut self, e: &Stmt, kind: &mut CheckerKind) -> bool {
        let CheckerKind::Dns { qtype, name } = kind else {
            return false;
        };
        match e.name() {
            "type" => {
                if let Some(v) = self.arg_str(e) {
                    if !matches!(v.as_str(), "A" | "NS" | "CNAME" | "SOA" | "MX" | "TXT" | "AAAA") {
                        self.err(&e.args[0], format!("unknown DNS query type '{v}' (A|NS|CNAME|SOA|MX|TXT|AAAA)"));
                    }
                    *qtype = v;
                }
            }
            "name" => *name = self.arg_str(e).unwrap_or_else(|| ".".into()),
            _ => return false,
        }
        true
    }

    /// `UDP_CHECK`: `payload`, `require_reply`, `min_reply_length`, `max_reply_length`.
    fn udp_keyword(&mut self, e: &Stmt, kind: &mut CheckerKind) -> bool {
        let CheckerKind::Udp { payload, require_reply, min_reply_length, max_reply_length } = kind else {
            return false;
        };
        match e.name() {
            "payload" => *payload = Some(self.hex(e)),
            "require_reply" => {
                *require_reply = true;
                if !e.args.is_empty() {
                    let _ = self.hex(e);
                }
            }
            "min_reply_length" => *min_reply_length = self.arg_int(e, 0, 65535).unwrap_or(0) as u32,
            "max_reply_length" => *max_reply_length = self.arg_int(e, 0, 65535).unwrap_or(255) as u32,
            _ => return false,
        }
        true
    }

    /// `FILE_CHECK`: `track_file`, `dynamic`, `weight`.
    fn file_keyword(&mut self, e: &Stmt, kind: &mut CheckerKind) -> bool {
        let CheckerKind::File { track_file, dynamic, weight } = kind else {
            return false;
        };
        match e.name() {
            "track_file" => *track_file = self.arg_str(e),
            "dynamic" => *dynamic = self.arg_bool(e),
            "weight" => {
                self.no_block(e);
                if self.args(e, 1, 2) {
                    *weight = self.int(&e.args[0], -2_147_483_647, 2_147_483_647);
                    let _ = self.reverse(e, 1);
                }
            }
            _ => return false,
        }
        true
    }

    /// `BFD_CHECK`: `name` (the `bfd_instance` it follows).
    fn bfd_check_keyword(&mut self, e: &Stmt, kind: &mut CheckerKind) -> bool {
        let CheckerKind::Bfd { name } = kind else {
            return false;
        };
        if e.name() != "name" {
            return false;
        }
        *name = self.bfd_check_name(e);
        true
    }

    pub(super) fn ssl(&mut self, s: &Stmt) {
        self.unsupported(s, "the configuration");
        let mut c = SslConfig {
            span: s.span(),
            ..Default::default()
        };
        for e in self.block(s) {
            match e.name() {
                "password" => c.password = self.arg_str(e),
                "ca" => c.ca = self.arg_str(e),
                "certificate" => c.certificate = self.arg_str(e),
                "key" => c.key = self.arg_str(e),
                _ => self.unknown(e, "SSL", &[&["password", "ca", "certificate", "key"]]),
            }
        }
        self.cfg.ssl = Some(c);
    }
}
