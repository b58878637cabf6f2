//! Corpus and golden tests: `tests/corpus/config/{valid,invalid,preprocess}`.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use super::{
    diag::{Diagnostics, SourceMap},
    load,
    preprocess::Preprocessor,
    InterfaceCheck, LoadOptions, Severity,
};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/config")
}

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus().join(dir))
        .expect("corpus directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn opts() -> LoadOptions {
    LoadOptions {
        config_id: Some("ka-test".into()),
        interfaces: InterfaceCheck::Known(["eth0", "eth1"].iter().map(|s| s.to_string()).collect()),
    }
}

/// Every valid configuration loads without errors.
#[test]
fn valid_corpus_has_no_errors() {
    let list = files("valid", "conf");
    assert!(list.len() >= 4);
    for f in list {
        let l = load(&f, &opts()).expect("readable");
        let errs: Vec<String> = l
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.render(&l.sources, &f))
            .collect();
        assert!(errs.is_empty(), "{}:\n{}", f.display(), errs.join("\n"));
    }
}

/// Each invalid configuration gets exactly the diagnostics its `# expect: LINE SEVERITY: TEXT`
/// comments list (every error must be expected; listed warnings must be present).
#[test]
fn invalid_corpus_matches_expectations() {
    let list = files("invalid", "conf");
    assert!(list.len() >= 10);
    let mut failures = Vec::new();
    for f in list {
        let text = std::fs::read_to_string(&f).expect("read");
        let expects: Vec<(u32, Severity, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(|e| {
                let (line, rest) = e.split_once(' ').expect("LINE SEV: TEXT");
                let (sev, msg) = rest.split_once(": ").expect("SEV: TEXT");
                let sev = if sev == "error" {
                    Severity::Error
                } else {
                    Severity::Warning
                };
                (line.parse().expect("line number"), sev, msg.to_string())
            })
            .collect();
        assert!(!expects.is_empty(), "{} has no expectations", f.display());
        let l = load(&f, &opts()).expect("readable");
        let rendered: Vec<String> = l
            .diagnostics
            .iter()
            .map(|d| d.render(&l.sources, &f))
            .collect();
        let mut used = HashSet::new();
        for (line, sev, msg) in &expects {
            let hit = l.diagnostics.iter().position(|d| {
                d.severity == *sev
                    && d.span.map(|s| s.line) == Some(*line)
                    && d.message.contains(msg.as_str())
            });
            match hit {
                Some(i) => {
                    used.insert(i);
                }
                None => failures.push(format!(
                    "{}: missing {line} {sev}: {msg}\n  got:\n    {}",
                    f.display(),
                    rendered.join("\n    ")
                )),
            }
        }
        for (i, d) in l.diagnostics.iter().enumerate() {
            if d.severity == Severity::Error && !used.contains(&i) {
                failures.push(format!("{}: unexpected {}", f.display(), rendered[i]));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn expand_golden(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read");
    let mut sources = SourceMap::default();
    let mut diags = Diagnostics::default();
    let mut out = String::new();
    {
        let mut pp = Preprocessor::from_str(path, &text, "main", &mut sources, &mut diags);
        while let Some(line) = pp.next_line() {
            let sp = line[0].span;
            let via = line[0]
                .via
                .map(|v| format!(" (via {})", v.line))
                .unwrap_or_default();
            let words: Vec<String> = line.iter().map(|t| t.text.clone()).collect();
            out.push_str(&format!(
                "{}:{}{via} | {}\n",
                sp.line,
                sp.col,
                words.join(" ")
            ));
        }
    }
    for d in diags.into_sorted() {
        out.push_str(&format!("DIAG {}\n", d.render(&sources, path)));
    }
    out
}

/// The preprocessor output (tokens with their origin) matches the `.expanded` golden files.
/// Set `KA_UPDATE_GOLDEN=1` to rewrite them.
#[test]
fn preprocessor_golden() {
    let list = files("preprocess", "conf");
    assert!(!list.is_empty());
    for f in list {
        let got = expand_golden(&f);
        let golden = f.with_extension("expanded");
        if std::env::var_os("KA_UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &got).expect("write golden");
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        assert_eq!(
            got,
            want,
            "{} differs from {}",
            f.display(),
            golden.display()
        );
    }
}

/// docs/config.md lists every keyword of the keyword tables.
#[test]
fn docs_list_every_keyword() {
    use super::parse::*;
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md"))
            .expect("docs/config.md");
    let tables: &[&[&str]] = &[
        TOP_SUPPORTED,
        TOP_UNSUPPORTED,
        GLOBAL_SUPPORTED,
        GLOBAL_UNSUPPORTED,
        VRRP_SUPPORTED,
        VRRP_UNSUPPORTED,
        VS_SUPPORTED,
        VS_UNSUPPORTED,
        RS_SUPPORTED,
        RS_UNSUPPORTED,
        CHECKERS_SUPPORTED,
        CHECKERS_UNSUPPORTED,
        &REPLACED.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
    ];
    let missing: Vec<&str> = tables
        .iter()
        .flat_map(|t| t.iter())
        .filter(|k| !doc.contains(&format!("`{k}`")))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "docs/config.md does not list {missing:?}"
    );
}

/// `parse_bytes` (what the fuzzer feeds) gives the same diagnostics as `load` on a file with
/// the same bytes: a NUL byte is one error at its line; invalid UTF-8 (text in another
/// encoding, which keepalived reads as bytes) is one warning at its line; text parses normally.
#[test]
fn parse_bytes_matches_load() {
    let dir = std::env::temp_dir().join(format!("ka-bytes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let cases: &[(&[u8], Option<u32>)] = &[
        (b"global_defs {\n router_id a\n}\n\0\n", Some(4)),
        (b"global_defs {\n\xff\xfe\n}\n", None),
        (b"global_defs {\n router_id a\n}\n", None),
    ];
    for (i, (bytes, err_line)) in cases.iter().enumerate() {
        let path = dir.join(format!("c{i}.conf"));
        std::fs::write(&path, bytes).expect("write");
        let from_file = load(&path, &opts()).expect("readable");
        let from_bytes = super::parse_bytes(bytes, &path, &opts());
        let render = |l: &super::Loaded| -> Vec<String> {
            l.diagnostics.iter().map(|d| d.render(&l.sources, &path)).collect()
        };
        assert_eq!(render(&from_bytes), render(&from_file), "case {i}");
        let errs: Vec<u32> = from_bytes
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .filter_map(|d| d.span.map(|s| s.line))
            .collect();
        assert_eq!(errs, err_line.iter().copied().collect::<Vec<_>>(), "case {i}");
        if i == 1 {
            let warned: Vec<u32> = from_bytes
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Warning && d.message.contains("invalid UTF-8"))
                .filter_map(|d| d.span.map(|s| s.line))
                .collect();
            assert_eq!(warned, vec![2], "case {i}: one warning at the line of the bad bytes");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Each problem keepalived 2.2 runs past is a warning at its line saying what was done, the
/// model gets keepalived's fallback, and only what keepalived refuses stays an error. One row
/// per rule: (what, config, line, severity, text in the message, check on the model).
#[test]
fn leniency_rules() {
    type Check = fn(&super::Config) -> bool;
    let vi = |body: &str| {
        format!("vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 5\n{body}\n virtual_ipaddress {{\n 198.18.0.10\n }}\n}}\n")
    };
    let vs = |body: &str| {
        format!("virtual_server 198.18.0.10 80 {{\n protocol TCP\n{body}\n real_server 198.18.1.1 80 {{\n TCP_CHECK {{\n }}\n }}\n}}\n")
    };
    let cases: Vec<(&str, String, u32, Severity, &str, Check)> = vec![
        ("nat_mask in virtual_server", vs(" nat_mask 255.255.255.0"), 3, Severity::Warning, "unknown keyword 'nat_mask' in virtual_server", |c| c.virtual_servers.len() == 1),
        ("a time of 0", "global_defs {\n vrrp_garp_interval 0\n}\n".into(), 2, Severity::Warning, "ignored: keepalived 2.2 does the same", |c| c.global.vrrp_garp_interval.is_zero()),
        ("typo vvrp_script", "vvrp_script chk {\n script /bin/true\n}\n".into(), 1, Severity::Warning, "did you mean 'vrrp_script'", |c| c.vrrp_scripts.is_empty()),
        ("typo static_route", "static_route {\n 198.18.9.0/24 dev eth0\n}\n".into(), 1, Severity::Warning, "did you mean 'static_routes'", |c| c.static_routes.is_empty()),
        ("typo lvs_sync_daemon_inteface", vi(" lvs_sync_daemon_inteface eth0"), 4, Severity::Warning, "did you mean 'lvs_sync_daemon_interface'", |c| c.vrrp_instances.len() == 1),
        ("typo lb", vs(" lb rr"), 3, Severity::Warning, "unknown keyword 'lb'", |c| c.virtual_servers[0].lb_algo == super::model::LbAlgo::Wlc),
        ("garp_master_delay in global_defs", "global_defs {\n garp_master_delay 10\n}\n".into(), 2, Severity::Warning, "did you mean 'vrrp_garp_master_delay'", |c| c.global.vrrp_garp_master_delay.as_secs() == 5),
        ("lb_kind dr", vs(" lb_kind dr"), 3, Severity::Warning, "unknown forwarding method 'dr'", |c| c.virtual_servers[0].lb_kind == super::model::LbKind::Nat),
        ("lb_algo loadbalance", vs(" lb_algo loadbalance"), 3, Severity::Warning, "unknown scheduler 'loadbalance'", |c| c.virtual_servers[0].lb_algo == super::model::LbAlgo::Wlc),
        ("placeholder VIP", "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n virtual_ipaddress {\n __VIRTUAL_IP__/27\n 198.18.0.10\n }\n}\n".into(), 5, Severity::Warning, "invalid address '__VIRTUAL_IP__/27'", |c| c.vrrp_instances[0].virtual_ipaddresses.len() == 1),
        ("placeholder real server", "virtual_server 198.18.0.10 80 {\n protocol TCP\n real_server XX.XX.XX.116 80 {\n }\n}\n".into(), 3, Severity::Warning, "'XX.XX.XX.116' is not a valid IP address", |c| c.virtual_servers.is_empty()),
        ("authentication on IPv6", "vrrp_instance V6 {\n interface eth0\n virtual_router_id 5\n authentication {\n auth_type PASS\n auth_pass x\n }\n virtual_ipaddress {\n fd00:198:18::10\n }\n}\n".into(), 4, Severity::Warning, "authentication ignored", |c| c.vrrp_instances[0].authentication.is_none()),
        ("authentication without auth_pass", vi(" authentication {\n auth_type PASS\n }"), 4, Severity::Warning, "no auth_pass given; authentication ignored", |c| c.vrrp_instances[0].authentication.is_none()),
        ("AH with initial state MASTER", vi(" state MASTER\n priority 100\n authentication {\n auth_type AH\n auth_pass s3cret\n }"), 6, Severity::Warning, "incompatible with AH authentication; using BACKUP", |c| c.vrrp_instances[0].state == super::model::VrrpState::Backup),
        ("enable_script_security 0", "global_defs {\n enable_script_security 0\n}\n".into(), 2, Severity::Warning, "turns enable_script_security on", |c| c.global.enable_script_security),
        ("vrrp_strict off is still strict", "global_defs {\n vrrp_strict off\n}\n".into(), 2, Severity::Warning, "turns vrrp_strict on", |c| c.global.vrrp_strict),
        ("undefined track script", vi(" track_script {\n chk_none\n }"), 5, Severity::Warning, "track script chk_none is not defined; ignored", |c| c.vrrp_instances[0].track_scripts.is_empty()),
        ("undefined sync group member", format!("{}vrrp_sync_group G {{\n group {{\n VI_1\n VI_9\n }}\n}}\n", vi("")), 12, Severity::Warning, "VI_9 is not defined; ignored", |c| c.sync_groups[0].members.len() == 1),
        ("stray brace", "}\nglobal_defs {\n router_id a\n}\n".into(), 1, Severity::Warning, "unexpected '}'", |c| c.global.router_id.as_deref() == Some("a")),
        ("HTTP_GET without url", "virtual_server 198.18.0.10 80 {\n protocol TCP\n real_server 198.18.1.1 80 {\n HTTP_GET {\n }\n }\n}\n".into(), 5, Severity::Warning, "the checker is ignored", |c| c.virtual_servers[0].real_servers[0].checkers.is_empty()),
        ("track_script defined below the instance", format!("{}vrrp_script chk_late {{\n script /bin/true\n}}\n", vi(" track_script {\n chk_late\n }")), 5, Severity::Warning, "is defined below this reference (line 11)", |c| c.vrrp_instances[0].track_scripts.is_empty() && c.vrrp_scripts.len() == 1),
        ("track_script listed twice counts once", format!("vrrp_script chk {{\n script /bin/true\n}}\n{}", vi(" track_script {\n chk weight 5\n chk weight 9\n }")), 9, Severity::Warning, "duplicate track_script chk", |c| c.vrrp_instances[0].track_scripts.len() == 1 && c.vrrp_instances[0].track_scripts[0].weight == Some(5)),
        ("track_script with an unknown option is dropped", format!("vrrp_script chk {{\n script /bin/true\n}}\n{}", vi(" track_script {\n chk wieght 5\n }")), 8, Severity::Warning, "unknown track script option 'wieght'", |c| c.vrrp_instances[0].track_scripts.is_empty()),
        ("track_script weight 254 becomes 253", format!("vrrp_script chk {{\n script /bin/true\n}}\n{}", vi(" track_script {\n chk weight 254\n }")), 8, Severity::Warning, "cannot be +/-254", |c| c.vrrp_instances[0].track_scripts[0].weight == Some(253)),
        ("track_script without weight takes the script's reverse", format!("vrrp_script chk {{\n script /bin/true\n weight 10 reverse\n}}\n{}", vi(" track_script {\n chk\n }\n track_file {\n nofile\n }")), 12, Severity::Warning, "track file nofile is not defined", |c| c.vrrp_instances[0].track_scripts[0].reverse),
        ("track_interface naming the own interface", vi(" track_interface {\n eth0 weight -20\n eth1\n }"), 5, Severity::Warning, "is the instance's own interface: ignored", |c| c.vrrp_instances[0].track_interfaces.len() == 1 && c.vrrp_instances[0].track_interfaces[0].name == "eth1"),
        ("no VIP over VRRPv2 runs", "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n}\n".into(), 1, Severity::Warning, "at least one is sensible", |c| c.vrrp_instances.len() == 1),
        ("no VIP over VRRPv3: keepalived refuses", "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n version 3\n}\n".into(), 1, Severity::Error, "at least one is required with VRRP version 3", |_| true),
        ("no VIP in strict mode: keepalived refuses", "global_defs {\n vrrp_strict\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n}\n".into(), 4, Severity::Error, "at least one is required with strict mode", |_| true),
        ("no VIP with IPv6 peers: keepalived refuses", "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n unicast_peer {\n fd00:198:18::2\n }\n}\n".into(), 1, Severity::Error, "at least one is required with", |_| true),
        ("virtual_server without lb_kind is NAT", "virtual_server 198.18.0.10 80 {\n protocol TCP\n real_server 198.18.1.1 80 {\n }\n}\n".into(), 1, Severity::Warning, "no forwarding method set (lb_kind), using NAT", |c| c.virtual_servers[0].lb_kind == super::model::LbKind::Nat),
        ("virtual_server without real servers is ignored", "virtual_server 198.18.0.10 80 {\n protocol TCP\n lb_kind DR\n sorry_server 198.18.1.9 80\n}\n".into(), 1, Severity::Warning, "has no real servers; ignored", |c| c.virtual_servers.is_empty()),
        ("group block around virtual servers", "group web {\n virtual_server 198.18.0.10 80 {\n protocol TCP\n lb_kind DR\n real_server 198.18.1.1 80 {\n }\n }\n virtual_server 198.18.0.11 80 {\n protocol TCP\n lb_kind DR\n real_server 198.18.1.1 80 {\n }\n }\n}\n".into(), 14, Severity::Warning, "unexpected '}' with no open block", |c| c.virtual_servers.len() == 2),
        ("smtp_server that is no host name", "global_defs {\n smtp_server **\n}\n".into(), 2, Severity::Warning, "invalid smtp server '**'", |c| c.global.smtp_server.is_none()),
        ("missing parameter: keepalived refuses", vi(" state"), 4, Severity::Error, "'state' needs a value", |_| true),
        ("no virtual router id: keepalived refuses", "vrrp_instance VI_1 {\n interface eth0\n virtual_ipaddress {\n 198.18.0.10\n }\n}\n".into(), 1, Severity::Error, "the virtual router id must be set", |_| true),
    ];
    let mut failures = Vec::new();
    for (what, text, line, sev, msg, check) in &cases {
        let l = super::parse_str(text, Path::new("t.conf"), &opts());
        let hit = l.diagnostics.iter().any(|d| d.severity == *sev && d.span.map(|s| s.line) == Some(*line) && d.message.contains(msg));
        let errors = l.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
        let rendered: Vec<String> = l.diagnostics.iter().map(|d| d.render(&l.sources, Path::new("t.conf"))).collect();
        if !hit {
            failures.push(format!("{what}: no {sev} at line {line} containing {msg:?}; got {rendered:?}"));
        }
        if *sev == Severity::Warning && errors > 0 {
            failures.push(format!("{what}: keepalived runs it but ka has errors: {rendered:?}"));
        }
        if !check(&l.config) {
            failures.push(format!("{what}: the model does not hold keepalived's fallback; got {rendered:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// keepalived's `auth_type AH` is run as keepalived runs it: no warning that the daemon
/// refuses it (it no longer does), keepalived's own AH rule only (an address owner may start
/// as MASTER), and the authentication is kept in the model for the daemon.
#[test]
fn auth_ah_is_supported() {
    let text = "vrrp_instance VI_1 {\n state MASTER\n priority 255\n interface eth0\n virtual_router_id 5\n authentication {\n auth_type AH\n auth_pass s3cret\n }\n virtual_ipaddress {\n 198.18.0.10\n }\n}\n";
    let l = super::parse_str(text, Path::new("t.conf"), &opts());
    let about_ah: Vec<&str> = l
        .diagnostics
        .iter()
        .filter(|d| d.message.contains("incompatible with AH") || d.message.contains("refused") || d.message.contains("not supported"))
        .map(|d| d.message.as_str())
        .collect();
    assert!(about_ah.is_empty(), "{about_ah:?}");
    let vi = &l.config.vrrp_instances[0];
    assert_eq!(vi.state, super::model::VrrpState::Master);
    assert_eq!(vi.authentication.as_ref().map(|a| (a.auth_type, a.auth_pass.as_str())), Some((super::model::AuthType::Ah, "s3cret")));
}

/// The prefix keepalived ignores on `unicast_src_ip`/`unicast_peer` (`192.168.0.91/24`) is
/// accepted, and interfaces named by routes and static addresses are checked through the
/// injected interface list.
#[test]
fn unicast_prefix_and_route_interfaces() {
    let text = "static_ipaddress {\n 198.18.0.9/24 dev eth7\n}\nstatic_routes {\n 198.18.9.0/24 dev eth8\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n unicast_src_ip 198.18.0.91/24\n unicast_peer {\n 198.18.0.92/24\n }\n virtual_routes {\n 198.18.10.0/24 via 198.18.0.1 dev eth9\n }\n virtual_ipaddress {\n 198.18.0.10\n }\n}\n";
    let l = super::parse_str(text, Path::new("t.conf"), &opts());
    let errs: Vec<_> = l.diagnostics.iter().filter(|d| d.severity == Severity::Error).map(|d| d.message.clone()).collect();
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(l.config.vrrp_instances[0].src_ip, Some("198.18.0.91".parse().expect("ip")));
    assert_eq!(l.config.vrrp_instances[0].unicast_peers[0].address, "198.18.0.92".parse::<std::net::IpAddr>().expect("ip"));
    let missing: Vec<(u32, String)> = l
        .diagnostics
        .iter()
        .filter(|d| d.message.contains("doesn't exist"))
        .map(|d| (d.span.map_or(0, |s| s.line), d.message.clone()))
        .collect();
    let lines: Vec<u32> = missing.iter().map(|m| m.0).collect();
    assert_eq!(lines, vec![2, 5, 15], "{missing:?}");
}

/// keepalived skips an address, route or rule whose interface does not exist (unless
/// `dynamic_interfaces`); ka drops it from the model too, so `ka run` does not install it on
/// some other interface.
#[test]
fn entries_on_missing_interfaces_are_skipped() {
    let body = "static_ipaddress {\n 198.18.0.9/24 dev eth7\n}\nstatic_routes {\n 198.18.9.0/24 dev eth8\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n virtual_routes {\n 198.18.10.0/24 via 198.18.0.1 dev eth9\n 198.18.11.0/24 via 198.18.0.1 dev eth0\n }\n virtual_rules {\n from 198.18.0.10 iif eth9 table 100 priority 10\n }\n virtual_ipaddress {\n 198.18.0.10\n 198.18.0.11 dev eth9\n }\n}\n";
    let l = super::parse_str(body, Path::new("t.conf"), &opts());
    let vi = &l.config.vrrp_instances[0];
    assert!(l.config.static_ipaddresses.is_empty() && l.config.static_routes.is_empty());
    assert_eq!(vi.virtual_routes.len(), 1, "{:?}", vi.virtual_routes);
    assert!(vi.virtual_rules.is_empty());
    assert_eq!(vi.virtual_ipaddresses.len(), 1);
    let ignored = l.diagnostics.iter().filter(|d| d.message.contains("doesn't exist; ignored")).count();
    assert_eq!(ignored, 5, "{:?}", l.diagnostics);
    let l = super::parse_str(&format!("global_defs {{\n dynamic_interfaces\n}}\n{body}"), Path::new("t.conf"), &opts());
    assert_eq!(l.config.vrrp_instances[0].virtual_routes.len(), 2);
    assert_eq!(l.config.vrrp_instances[0].virtual_ipaddresses.len(), 2);
}

/// A bad `brd` or `peer` value is reported at its own line and column (it used to be re-read
/// by the engine and dropped silently): keepalived skips the address with a bad broadcast and
/// keeps the one with a bad peer, without the peer; ka does the same and says so.
#[test]
fn bad_brd_and_peer_are_reported_at_their_word() {
    let text = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n virtual_ipaddress {\n 198.18.0.10/24\n 198.18.0.11/24 brd 198.18.0.300\n 198.18.0.12 peer 198.18.0.1/24\n }\n}\n";
    let l = super::parse_str(text, Path::new("t.conf"), &opts());
    let at = |needle: &str| {
        l.diagnostics
            .iter()
            .find(|d| d.message.contains(needle))
            .map(|d| (d.severity, d.span.map(|s| (s.line, s.col))))
    };
    assert_eq!(at("invalid broadcast address '198.18.0.300'"), Some((Severity::Warning, Some((6, 21)))), "{:?}", l.diagnostics);
    assert_eq!(at("invalid peer address '198.18.0.1/24'"), Some((Severity::Warning, Some((7, 19)))), "{:?}", l.diagnostics);
    let vips = &l.config.vrrp_instances[0].virtual_ipaddresses;
    assert_eq!(vips.iter().map(|v| v.address.to_string()).collect::<Vec<_>>(), vec!["198.18.0.10/24", "198.18.0.12/32"]);
    assert_eq!(vips[1].peer, None);
}

/// What ka cannot apply in a `virtual_routes` / `virtual_rules` entry, or in a `static_*` block
/// (which ka installs too), is an error, so `ka check` exits 1 exactly when `ka run` would not
/// install what keepalived installs.
#[test]
fn unsupported_route_options_are_errors_where_applied() {
    let text = "static_routes {\n 198.18.9.0/24 dev eth0 encap mpls 100\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n virtual_routes {\n 198.18.10.0/24 dev eth0 encap mpls 100\n }\n virtual_ipaddress {\n 198.18.0.10\n }\n}\n";
    let l = super::parse_str(text, Path::new("t.conf"), &opts());
    let sev: Vec<(u32, Severity)> = l
        .diagnostics
        .iter()
        .filter(|d| d.message.contains("ka cannot apply 'encap'"))
        .map(|d| (d.span.map_or(0, |s| s.line), d.severity))
        .collect();
    assert_eq!(sev, vec![(2, Severity::Error), (8, Severity::Error)], "{:?}", l.diagnostics);
}

/// keepalived 2.2 derives a missing `priority` from `state` and a missing `state` from
/// `priority` (`vrrp_complete_instance`): `state MASTER` alone is the address owner (255).
#[test]
fn state_and_priority_default_from_each_other() {
    use super::model::VrrpState::{Backup, Master};
    let cases: &[(&str, u8, super::model::VrrpState)] = &[
        (" state MASTER\n", 255, Master),
        (" state BACKUP\n", 100, Backup),
        ("", 100, Backup),
        (" priority 255\n", 255, Master),
        (" priority 150\n", 150, Backup),
        (" state MASTER\n priority 150\n", 150, Master),
        (" state BACKUP\n priority 255\n", 255, Backup),
    ];
    for (body, prio, state) in cases {
        let text = format!("vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 7\n{body} virtual_ipaddress {{\n 198.18.0.10/24\n }}\n}}\n");
        let l = super::parse_str(&text, Path::new("t.conf"), &opts());
        let vi = &l.config.vrrp_instances[0];
        assert_eq!((vi.priority, vi.state), (*prio, *state), "{body:?}");
    }
}

/// The LVS flags and methods as keepalived 2.2.7 reads them, one row each: (what, lines of
/// the virtual server, the warning expected (empty: none), check on the model). On the old
/// parser each of these keywords was "accepted, not supported yet" and left the model as is.
#[test]
fn lvs_flags_and_methods() {
    type Check = fn(&super::model::VirtualServer) -> bool;
    let vs = |body: &str| format!("virtual_server 198.18.0.10 80 {{\n protocol TCP\n lb_kind NAT\n{body}\n real_server 198.18.1.1 80 {{\n }}\n}}\n");
    let cases: Vec<(&str, String, &str, Check)> = vec![
        ("sh-port after lb_algo sh", vs(" lb_algo sh\n sh-port"), "", |v| v.hash_port && !v.hash_fallback),
        ("sh-fallback after lb_algo sh", vs(" lb_algo sh\n sh-fallback"), "", |v| v.hash_fallback && !v.hash_port),
        ("mh-port and mh-fallback after lb_algo mh", vs(" lvs_sched mh\n mh-port\n mh-fallback"), "", |v| v.hash_port && v.hash_fallback),
        ("sh-port before lb_algo", vs(" sh-port\n lb_algo sh"), "sh-port only applies to the sh scheduler", |v| !v.hash_port),
        ("sh-port under rr", vs(" lb_algo rr\n sh-port"), "sh-port only applies to the sh scheduler", |v| !v.hash_port),
        ("mh-port under sh", vs(" lb_algo sh\n mh-port"), "mh-port applies to the mh scheduler, not sh", |v| !v.hash_port),
        ("flag-1 and flag-2 whatever the scheduler", vs(" flag-1\n flag-2\n flag-3\n lb_algo mh"), "", |v| v.hash_port && v.hash_fallback),
        ("ops on UDP", vs(" ops").replace("protocol TCP", "protocol UDP"), "", |v| v.ops),
        ("ops on TCP is reset", vs(" ops"), "one packet scheduling (ops) requires UDP - resetting", |v| !v.ops),
        ("port 0 made persistent", vs("").replace("198.18.0.10 80", "198.18.0.10 0"), "zero port only valid for persistent services", |v| v.persistence_timeout == Some(std::time::Duration::from_secs(360))),
        ("real server lvs_method", vs("").replace(" real_server 198.18.1.1 80 {\n", " real_server 198.18.1.1 80 {\n lvs_method DR\n"), "", |v| v.real_servers[0].lb_kind == super::model::LbKind::Dr && v.lb_kind == super::model::LbKind::Nat),
        ("sorry_server_lvs_method", vs(" lb_kind DR\n sorry_server 198.18.1.9 80\n sorry_server_lvs_method NAT"), "", |v| v.sorry_server.as_ref().map(|s| s.lb_kind) == Some(super::model::LbKind::Nat)),
        ("sorry server defaults to the virtual server's method", vs(" sorry_server 198.18.1.9 80\n lb_kind TUN"), "", |v| matches!(v.sorry_server.as_ref().map(|s| s.lb_kind), Some(super::model::LbKind::Tun(_)))),
        ("sorry_server_lvs_method before sorry_server", vs(" sorry_server_lvs_method DR\n sorry_server 198.18.1.9 80"), "sorry_server_lvs_method used without (or before) sorry_server", |v| v.sorry_server.as_ref().map(|s| s.lb_kind) == Some(super::model::LbKind::Nat)),
    ];
    let mut failures = Vec::new();
    for (what, text, warning, check) in &cases {
        let l = super::parse_str(text, Path::new("t.conf"), &opts());
        let rendered: Vec<String> = l.diagnostics.iter().map(|d| d.render(&l.sources, Path::new("t.conf"))).collect();
        let warned = l.diagnostics.iter().any(|d| d.severity == Severity::Warning && !warning.is_empty() && d.message.contains(warning));
        if warning.is_empty() && !l.diagnostics.is_empty() {
            failures.push(format!("{what}: expected no diagnostic, got {rendered:?}"));
        }
        if !warning.is_empty() && !warned {
            failures.push(format!("{what}: no warning containing {warning:?}: {rendered:?}"));
        }
        if l.diagnostics.iter().any(|d| d.severity == Severity::Error) {
            failures.push(format!("{what}: keepalived runs it, ka has errors: {rendered:?}"));
        }
        if !l.config.virtual_servers.first().is_some_and(check) {
            failures.push(format!("{what}: model check failed: {:?}; {rendered:?}", l.config.virtual_servers.first()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The LVS globals reach the model: `lvs_notify_fifo`, `lvs_flush`, both spellings of
/// `lvs_flush_on_stop` (and its `VS` form), `nftables_ipvs` with its default table.
#[test]
fn lvs_globals() {
    use super::model::{GlobalDefs, LvsFlushOnStop};
    type Check = fn(&GlobalDefs) -> bool;
    let cases: &[(&str, Check)] = &[
        ("lvs_notify_fifo /run/ka-lvs.fifo", |g| g.lvs_notify_fifo.as_deref() == Some("/run/ka-lvs.fifo")),
        ("lvs_flush", |g| g.lvs_flush),
        ("lvs_flush_on_stop", |g| g.lvs_flush_on_stop == LvsFlushOnStop::Full),
        ("lvs_flush_onstop VS", |g| g.lvs_flush_on_stop == LvsFlushOnStop::Vs),
        ("nftables_ipvs", |g| g.nftables_ipvs.as_deref() == Some("keepalived_ipvs")),
    ];
    for (line, check) in cases {
        let l = super::parse_str(&format!("global_defs {{\n {line}\n}}\n"), Path::new("t.conf"), &opts());
        assert!(l.diagnostics.is_empty(), "{line}: {:?}", l.diagnostics);
        assert!(check(&l.config.global), "{line}");
    }
    let l = super::parse_str("global_defs {\n lvs_flush_on_stop ALL\n}\n", Path::new("t.conf"), &opts());
    assert!(l.diagnostics.iter().any(|d| d.message.contains("unknown lvs_flush_on_stop type ALL")), "{:?}", l.diagnostics);
    assert_eq!(l.config.global.lvs_flush_on_stop, LvsFlushOnStop::No);
}

/// What ka's datapath refuses is a warning at the virtual server or the group entry in `ka
/// check` (so `--strict` fails), and a `virtual_server_group` of ranges is not one any more.
#[test]
fn refusals_are_warnings_at_their_line() {
    let text = "virtual_server_group g {\n 198.18.0.1-3 80\n fwmark 4\n}\nvirtual_server group g {\n protocol TCP\n lb_kind DR\n real_server 198.18.1.1 80 {\n }\n}\nvirtual_server fwmark 9 {\n lb_kind DR\n real_server 198.18.1.1 80 {\n }\n}\n";
    let l = super::parse_str(text, Path::new("t.conf"), &opts());
    let warnings: Vec<(u32, String)> = l.diagnostics.iter().map(|d| (d.span.map_or(0, |s| s.line), d.message.clone())).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(warnings[0].0, 3, "{warnings:?}");
    assert!(warnings[0].1.contains("fwmark 4 of virtual_server_group g is not served by ka") && warnings[0].1.contains("virtual_server_group"), "{warnings:?}");
    assert_eq!(warnings[1].0, 11, "{warnings:?}");
    assert!(warnings[1].1.contains("FWM 9 is not served by ka (the other virtual servers are)"), "{warnings:?}");
    assert!(l.diagnostics.iter().all(|d| d.severity == Severity::Warning));
}

/// `vrrp_priority` and `vrrp_rt_priority` are acted on (no "not supported" warning) and kept
/// in the model; a value out of keepalived's range is reported and leaves the default.
#[test]
fn vrrp_scheduling_keywords() {
    let cases: [(&str, Option<i32>, Option<i32>, bool); 5] = [
        ("vrrp_priority -10", Some(-10), None, true),
        ("vrrp_priority 19", Some(19), None, true),
        ("vrrp_rt_priority 50", None, Some(50), true),
        ("vrrp_priority -21", None, None, false),
        ("vrrp_rt_priority 0", None, None, false),
    ];
    for (line, nice, rt, clean) in cases {
        let text = format!("global_defs {{\n {line}\n}}\n");
        let l = super::parse_str(&text, Path::new("t.conf"), &opts());
        let rendered: Vec<String> = l.diagnostics.iter().map(|d| d.render(&l.sources, Path::new("t.conf"))).collect();
        assert_eq!((l.config.global.vrrp_priority, l.config.global.vrrp_rt_priority), (nice, rt), "{line}: {rendered:?}");
        assert!(!rendered.iter().any(|r| r.contains("not supported")), "{line}: {rendered:?}");
        assert_eq!(l.diagnostics.is_empty(), clean, "{line}: {rendered:?}");
    }
}

/// The checker and BFD priorities, CPU affinities, no_swap, RTTIME limits and process names are
/// acted on (no "not supported" warning) and kept in the model as keepalived 2.2.7 reads them.
#[test]
fn thread_tuning_keywords() {
    use crate::config::model::GlobalDefs;
    type Get = fn(&GlobalDefs) -> String;
    let cases: [(&str, Get, &str, usize); 16] = [
        ("checker_priority -5", |g| format!("{:?}", g.checker_priority), "Some(-5)", 0),
        ("bfd_priority 19", |g| format!("{:?}", g.bfd_priority), "Some(19)", 0),
        ("bfd_priority 20", |g| format!("{:?}", g.bfd_priority), "None", 1),
        ("checker_rt_priority 10", |g| format!("{:?}", g.checker_rt_priority), "Some(10)", 0),
        ("bfd_rt_priority 99", |g| format!("{:?}", g.bfd_rt_priority), "Some(99)", 0),
        ("vrrp_cpu_affinity 0", |g| format!("{:?}", g.vrrp_cpu_affinity), "[0]", 0),
        // keepalived: one CPU id beyond the online CPUs empties the set.
        ("checker_cpu_affinity 0 100000", |g| format!("{:?}", g.checker_cpu_affinity), "[]", 1),
        ("bfd_no_swap", |g| format!("{}", g.bfd_no_swap), "true", 0),
        ("vrrp_no_swap", |g| format!("{}", g.vrrp_no_swap), "true", 0),
        ("vrrp_rlimit_rttime 5000", |g| format!("{:?}", g.vrrp_rlimit_rttime), "Some(5000)", 0),
        // keepalived reads 1 as 2: the soft limit is half of it.
        ("checker_rlimit_rttime 1", |g| format!("{:?}", g.checker_rlimit_rttime), "Some(2)", 0),
        ("bfd_rlimit_rttime 0", |g| format!("{:?}", g.bfd_rlimit_rttime), "None", 1),
        ("process_names", |g| format!("{:?}", (&g.vrrp_process_name, &g.checker_process_name, &g.bfd_process_name)), "(Some(\"keepalived_vrrp\"), Some(\"keepalived_lvs\"), Some(\"keepalived_bfd\"))", 0),
        ("process_name lb-front", |g| format!("{:?}", g.process_name), "Some(\"lb-front\")", 0),
        ("vrrp_process_name a_very_long_thread_name", |g| format!("{:?}", g.vrrp_process_name), "Some(\"a_very_long_thr\")", 1),
        ("checker_process_name chk", |g| format!("{:?}", g.checker_process_name), "Some(\"chk\")", 0),
    ];
    for (line, get, want, diags) in cases {
        let text = format!("global_defs {{\n {line}\n}}\n");
        let l = super::parse_str(&text, Path::new("t.conf"), &opts());
        let rendered: Vec<String> = l.diagnostics.iter().map(|d| d.render(&l.sources, Path::new("t.conf"))).collect();
        assert_eq!(get(&l.config.global), want, "{line}: {rendered:?}");
        assert!(!rendered.iter().any(|r| r.contains("not supported")), "{line}: {rendered:?}");
        assert_eq!(l.diagnostics.len(), diags, "{line}: {rendered:?}");
    }
}

/// The netlink buffer keywords: ka's one rtnetlink socket takes `vrrp_netlink_cmd_rcv_bufs`;
/// the others name a socket ka does not have, and the warning says which. `log_unknown_vrids`
/// and `random_seed` are kept in the model.
#[test]
fn netlink_bufs_and_misc_keywords() {
    use crate::config::model::GlobalDefs;
    type Get = fn(&GlobalDefs) -> String;
    let none: Get = |_| String::new();
    let cases: [(&str, Get, &str, Option<&str>); 11] = [
        ("vrrp_netlink_cmd_rcv_bufs 1048576", |g| format!("{:?}", (g.vrrp_netlink_cmd_rcv_bufs, g.vrrp_netlink_cmd_rcv_bufs_force)), "(1048576, false)", None),
        ("vrrp_netlink_cmd_rcv_bufs_force", |g| format!("{}", g.vrrp_netlink_cmd_rcv_bufs_force), "true", None),
        ("vrrp_netlink_cmd_rcv_bufs_force false", |g| format!("{}", g.vrrp_netlink_cmd_rcv_bufs_force), "false", None),
        ("vrrp_netlink_monitor_rcv_bufs 4096", none, "", Some("ignored: ka has no netlink monitor socket")),
        ("lvs_netlink_cmd_rcv_bufs_force", none, "", Some("ignored: ka has no IPVS generic-netlink socket")),
        ("lvs_netlink_monitor_rcv_bufs 1", none, "", Some("ignored: ka has no IPVS netlink monitor socket")),
        ("process_monitor_rcv_bufs 8192", none, "", Some("ignored: ka has no process-event (proc connector) netlink socket")),
        ("log_unknown_vrids", |g| format!("{}", g.log_unknown_vrids), "true", None),
        ("random_seed 42", |g| format!("{:?}", g.random_seed), "Some(42)", None),
        ("random_seed 0", |g| format!("{:?}", g.random_seed), "Some(0)", None),
        ("random_seed -1", |g| format!("{:?}", g.random_seed), "None", Some("")),
    ];
    for (line, get, want, warning) in cases {
        let text = format!("global_defs {{\n {line}\n}}\n");
        let l = super::parse_str(&text, Path::new("t.conf"), &opts());
        let rendered: Vec<String> = l.diagnostics.iter().map(|d| d.render(&l.sources, Path::new("t.conf"))).collect();
        assert_eq!(get(&l.config.global), want, "{line}: {rendered:?}");
        assert!(!rendered.iter().any(|r| r.contains("not supported")), "{line}: {rendered:?}");
        match warning {
            None => assert!(rendered.is_empty(), "{line}: {rendered:?}"),
            Some(w) => assert!(rendered.len() == 1 && rendered[0].contains(w), "{line}: {rendered:?}"),
        }
    }
}

/// `child_wait_time` is read at the top level (seconds, as keepalived's `child_wait_handler`);
/// inside `global_defs` it is ignored with a warning, as keepalived 2.2.7 ignores it there.
#[test]
fn child_wait_time_keyword() {
    let cases: [(&str, Option<std::time::Duration>, usize); 4] = [
        ("child_wait_time 3\n", Some(std::time::Duration::from_secs(3)), 0),
        ("child_wait_time 0\n", Some(std::time::Duration::ZERO), 0),
        ("child_wait_time x\n", None, 1),
        ("global_defs {\n child_wait_time 3\n}\n", None, 1),
    ];
    for (text, want, diags) in cases {
        let l = super::parse_str(text, Path::new("t.conf"), &opts());
        let rendered: Vec<String> = l.diagnostics.iter().map(|d| d.render(&l.sources, Path::new("t.conf"))).collect();
        assert_eq!(l.config.global.child_wait_time, want, "{text}: {rendered:?}");
        assert_eq!(l.diagnostics.len(), diags, "{text}: {rendered:?}");
        assert!(!rendered.iter().any(|r| r.contains("not supported")), "{text}: {rendered:?}");
    }
}

/// `debug` in a `vrrp_instance`: a level 0..4 as keepalived 2.2.7 reads it, kept for the dump.
#[test]
fn vrrp_instance_debug_level() {
    let cases: [(&str, u8, usize); 4] = [("", 0, 0), ("debug 3", 3, 0), ("debug 0", 0, 0), ("debug 5", 0, 1)];
    for (line, want, diags) in cases {
        let text = format!("vrrp_instance V {{\n interface eth0\n virtual_router_id 1\n {line}\n virtual_ipaddress {{\n  198.18.0.1\n }}\n}}\n");
        let l = super::parse_str(&text, Path::new("t.conf"), &opts());
        let rendered: Vec<String> = l.diagnostics.iter().map(|d| d.render(&l.sources, Path::new("t.conf"))).collect();
        assert_eq!(l.config.vrrp_instances.first().map(|v| v.debug), Some(want), "{line}: {rendered:?}");
        assert_eq!(l.diagnostics.len(), diags, "{line}: {rendered:?}");
    }
}

/// A `vrrp_script` whose program does not exist is disabled, as keepalived 2.2.7 disables it
/// ("Disabling track script X since not found/accessible"): `ka check` warns at its `script`
/// line and names the instances that stop tracking it.
#[test]
fn missing_track_script_is_disabled_at_its_line() {
    let text = "vrrp_script chk_gone {\n interval 2\n script \"/nonexistent/ka-test/chk_gone.sh\"\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n track_script {\n chk_gone\n }\n virtual_ipaddress {\n 198.18.0.10\n }\n}\n";
    let l = super::parse_str(text, Path::new("t.conf"), &opts());
    let findings = crate::notify::security::audit(&l.config);
    let got: Vec<(u32, String)> = super::check::script_refusals(&l.config, &findings)
        .into_iter()
        .map(|d| (d.span.map_or(0, |s| s.line), d.message))
        .collect();
    assert_eq!(got.len(), 1, "{got:?} from {findings:?}");
    assert_eq!(got[0].0, 3, "{got:?}");
    assert!(got[0].1.contains("the tracker is disabled (VI_1 stop tracking it)"), "{got:?}");
    let mut cfg = l.config.clone();
    let _ = crate::notify::security::apply(&mut cfg);
    assert!(cfg.vrrp_instances[0].track_scripts.is_empty() && cfg.vrrp_scripts.is_empty());
}

/// A script whose user cannot be used is removed as keepalived 2.2.7 removes it while reading
/// the configuration: `ka check` says so at the script's `user` line (the end of the block when
/// it names none) and at each `track_script` reference, and an unknown global `script_user` at
/// its own line.
#[test]
fn script_user_problems_at_keepalived_lines() {
    let text = "global_defs {\n script_user ka-test-no-such-user\n}\nvrrp_script chk {\n script /bin/true\n user ka-test-no-such-user\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n track_script {\n chk\n }\n virtual_ipaddress {\n 198.18.0.10\n }\n}\n";
    let l = super::parse_str(text, Path::new("t.conf"), &opts());
    let findings = crate::notify::security::audit(&l.config);
    let got: Vec<(u32, String)> = super::check::script_refusals(&l.config, &findings)
        .into_iter()
        .map(|d| (d.span.map_or(0, |s| s.line), d.message))
        .collect();
    let lines: Vec<u32> = got.iter().map(|g| g.0).collect();
    assert_eq!(lines, vec![2, 6, 12], "{got:?}");
    assert!(got[1].1.contains("the vrrp_script is removed (VI_1 stop tracking it)"), "{got:?}");
    assert!(got[2].1.contains("(VI_1) track script chk was removed"), "{got:?}");
}

/// `ka check` sums up the keywords it ignores in one line: unknown ones and keepalived
/// keywords ka does not act on, counted apart; nothing ignored, no line.
#[test]
fn ignored_keywords_summary_line() {
    let l = super::parse_str("global_defs {\n router_id a\n vrrp_ipsets k4 k6\n bogus_keyword 1\n}\nbogus_top\n", Path::new("t.conf"), &opts());
    assert_eq!(
        super::cli::ignored_summary(&l.diagnostics).as_deref(),
        Some("ka check: 3 keywords ignored: 2 unknown, 1 accepted but not acted on (see the warnings above)"),
        "{:?}",
        l.diagnostics
    );
    let l = super::parse_str("global_defs {\n router_id a\n}\n", Path::new("t.conf"), &opts());
    assert_eq!(super::cli::ignored_summary(&l.diagnostics), None);
}

/// The process and notification keywords of `global_defs` reach the model as keepalived 2.2.7
/// reads them (one row each: text, whether clean, check), and the SNMP/D-Bus keywords are
/// answered with what replaces them.
#[test]
fn process_and_notify_keywords() {
    type Check = fn(&super::Config) -> bool;
    let cases: &[(&str, bool, Check)] = &[
        ("global_defs {\n umask 0027\n}\n", true, |c| c.global.umask == Some(0o027)),
        ("global_defs {\n umask 18\n}\n", true, |c| c.global.umask == Some(18)),
        ("global_defs {\n umask IWGRP|IWOTH\n}\n", true, |c| c.global.umask == Some(0o022)),
        ("global_defs {\n umask IWGRP | IRWXO\n}\n", false, |c| c.global.umask.is_none()),
        ("global_defs {\n umask 01777\n}\n", false, |c| c.global.umask.is_none()),
        ("global_defs {\n startup_script \"/bin/true x\" root\n startup_script_timeout 30\n shutdown_script /bin/true\n}\n", true, |c| {
            c.global.startup_script.as_ref().map(|s| (s.command.as_str(), s.user.clone())) == Some(("/bin/true x", Some(("root".into(), None))))
                && c.global.startup_script_timeout.as_secs() == 30
                && c.global.shutdown_script_timeout.as_secs() == 10
                && c.global.shutdown_script.is_some()
        }),
        ("global_defs {\n startup_script_timeout 1001\n}\n", false, |c| c.global.startup_script_timeout.as_secs() == 10),
        ("global_defs {\n no_email_faults\n smtp_helo_name lb1.example.org\n}\n", true, |c| c.global.no_email_faults && c.global.smtp_helo_name.as_deref() == Some("lb1.example.org")),
        // notify_priority_changes: the instance's, else its sync group's, else the global one.
        (
            "global_defs {\n vrrp_notify_priority_changes\n}\nvrrp_instance A {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n 198.18.0.1\n }\n}\nvrrp_instance B {\n interface eth0\n virtual_router_id 2\n notify_priority_changes off\n virtual_ipaddress {\n 198.18.0.2\n }\n}\nvrrp_instance C {\n interface eth0\n virtual_router_id 3\n virtual_ipaddress {\n 198.18.0.3\n }\n}\nvrrp_sync_group G {\n group {\n C\n }\n notify_priority_changes false\n}\n",
            true,
            |c| c.vrrp_instances.iter().map(|i| i.notify_priority_changes).collect::<Vec<_>>() == vec![Some(true), Some(false), Some(false)],
        ),
    ];
    for (text, clean, check) in cases {
        let l = super::parse_str(text, Path::new("t.conf"), &opts());
        let rendered: Vec<String> = l.diagnostics.iter().map(|d| d.render(&l.sources, Path::new("t.conf"))).collect();
        // A sync group of one instance draws keepalived's "probably isn't what you want".
        let noise = |r: &String| r.contains("only 1 virtual router");
        assert_eq!(rendered.iter().filter(|r| !noise(r)).count() == 0, *clean, "{text}: {rendered:?}");
        assert!(!rendered.iter().any(|r| r.contains("not supported")), "{text}: {rendered:?}");
        assert!(check(&l.config), "{text}: {rendered:?} {:?}", l.config.global);
    }
    let l = super::parse_str("global_defs {\n enable_snmp_vrrp\n enable_dbus\n}\n", Path::new("t.conf"), &opts());
    let msgs: Vec<&str> = l.diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert!(msgs[0].starts_with("'enable_snmp_vrrp' replaced by") && msgs[0].contains("--metrics") && msgs[0].contains("ka_vrrp_state"), "{msgs:?}");
    assert!(msgs[1].starts_with("'enable_dbus' replaced by") && msgs[1].contains("control socket /run/ka/NAME.sock"), "{msgs:?}");
    assert_eq!(msgs.len(), 2, "{msgs:?}");
}
