//! `ka check` as a user runs it: exit codes, diagnostic format, `--strict`, `--dump`, and bad
//! input (binary, huge, include cycle, deep nesting) that must give one clear error, never a panic.

use std::{
    path::{Path, PathBuf},
    process::Output,
};

fn corpus(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus/config")
        .join(rel)
}

fn ka_check(args: &[&str]) -> Output {
    std::process::Command::new(ka_tests::ka_bin())
        .arg("check")
        .args(["-i", "ka-test"])
        .args(args)
        .output()
        .expect("run ka check")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(ka_tests::unique_name(&format!("kacfg-{tag}")));
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

/// Exit codes: 0 without errors (warnings allowed), 1 with errors, 2 when the file cannot be read.
#[test]
fn exit_codes() {
    let full = corpus("valid/full.conf").display().to_string();
    let ranges = corpus("invalid/ranges.conf").display().to_string();
    let missing = corpus("invalid/missing_interface.conf")
        .display()
        .to_string();
    let cases: &[(&[&str], i32)] = &[
        (&["-f", "/nonexistent/keepalived.conf"], 2),
        (&["-f", "/"], 2),
        (&["-f", &full], 0),
        (&["-f", &ranges], 1),
        (&["-f", &missing], 0),
        (&["--strict", "-f", &missing], 1),
    ];
    for (args, want) in cases {
        let o = ka_check(args);
        assert_eq!(
            o.status.code(),
            Some(*want),
            "ka check {args:?}: {}",
            stderr(&o)
        );
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
}

/// Diagnostics read `PATH:LINE:COL: error: MESSAGE`, PATH being the file the token came from
/// (here an included file).
#[test]
fn diagnostics_name_the_included_file() {
    let d = tmpdir("inc");
    std::fs::write(d.join("main.conf"), "include sub/*.conf\n").expect("write");
    std::fs::create_dir_all(d.join("sub")).expect("mkdir");
    let sub = d.join("sub/vi.conf");
    std::fs::write(
        &sub,
        "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 256\n}\n",
    )
    .expect("write");
    let o = ka_check(&["-f", d.join("main.conf").to_str().expect("utf8")]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    // keepalived ignores the bad VRID (a warning), then refuses the instance without one (the
    // error): both name the included file.
    let want = format!(
        "{}:3:23: warning: number '256' outside range [1, 255]; ignored: keepalived 2.2 does the same",
        sub.display()
    );
    assert!(err.lines().any(|l| l == want), "want {want:?} in:\n{err}");
    let want = format!(
        "{}:1:1: error: (VI_1) the virtual router id must be set",
        sub.display()
    );
    assert!(err.lines().any(|l| l == want), "want {want:?} in:\n{err}");
    let _ = std::fs::remove_dir_all(d);
}

/// `--dump` prints the model with keepalived's defaults applied.
#[test]
fn dump_applies_defaults() {
    let d = tmpdir("dump");
    let f = d.join("k.conf");
    std::fs::write(
        &f,
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 7\n virtual_ipaddress {\n  198.18.0.7\n }\n}\n\
         vrrp_instance VI_6 {\n interface eth0\n virtual_router_id 8\n virtual_ipaddress {\n  fd00:198:18::7\n }\n}\n\
         virtual_server 198.18.0.7 80 {\n persistence_timeout\n real_server 198.18.1.7 80 {\n  HTTP_GET {\n   url {\n    path /\n   }\n  }\n }\n}\n",
    )
    .expect("write");
    let o = ka_check(&["--dump", "-f", f.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("dump is JSON");
    let vi = &v["vrrp_instances"][0];
    assert_eq!(vi["name"], "VI_1");
    assert_eq!(vi["state"], "BACKUP");
    assert_eq!(vi["priority"], 100);
    assert_eq!(vi["advert_int_ms"], 1000);
    assert_eq!(vi["version"], 2);
    assert_eq!(vi["virtual_ipaddresses"][0]["address"], "198.18.0.7/32");
    let vi6 = &v["vrrp_instances"][1];
    assert_eq!(
        vi6["virtual_ipaddresses"][0]["address"], "fd00:198:18::7/128",
        "a bare IPv6 VIP gets /128"
    );
    assert_eq!(vi6["version"], 3, "an IPv6 instance uses VRRPv3");
    let vs = &v["virtual_servers"][0];
    assert_eq!(vs["protocol"], "UDP", "keepalived 2.2 defaults to UDP");
    assert_eq!(vs["lb_algo"], "wlc");
    assert_eq!(vs["lb_kind"], "NAT");
    assert_eq!(vs["persistence_timeout_s"], 360);
    let rs = &vs["real_servers"][0];
    assert_eq!(rs["weight"], 1);
    assert_eq!(rs["checkers"][0]["type"], "HTTP_GET");
    assert_eq!(rs["checkers"][0]["connect_timeout_ms"], 5000);
    assert_eq!(rs["checkers"][0]["delay_loop_ms"], 60000);
    let _ = std::fs::remove_dir_all(d);
}

/// Bad input gets exactly one clear error and never a panic; deep nesting of unknown blocks is
/// read as keepalived reads it.
#[test]
fn bad_input_gives_one_error() {
    let d = tmpdir("bad");
    let binary = d.join("binary.conf");
    std::fs::write(&binary, (0u8..=255).cycle().take(4096).collect::<Vec<u8>>()).expect("write");
    let huge = d.join("huge.conf");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&huge).expect("create"));
        let line = "# padding padding padding padding padding padding padding padding padding\n";
        let mut n = 0;
        while n < 100 << 20 {
            f.write_all(line.as_bytes()).expect("write");
            n += line.len();
        }
    }
    std::fs::write(d.join("a.conf"), "include b.conf\n").expect("write");
    std::fs::write(d.join("b.conf"), "include a.conf\n").expect("write");
    let nested = d.join("nested.conf");
    std::fs::write(
        &nested,
        format!("{}{}", "a {\n".repeat(10_000), "}\n".repeat(10_000)),
    )
    .expect("write");
    let unbalanced = d.join("unbalanced.conf");
    std::fs::write(&unbalanced, "x {\n".repeat(10_000)).expect("write");
    let cases = [
        (binary, "binary"),
        (huge, "too large"),
        (d.join("a.conf"), "include cycle"),
    ];
    for (file, what) in cases {
        let o = ka_check(&["-f", file.to_str().expect("utf8")]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{}: {err}", file.display());
        let lines: Vec<&str> = err.lines().filter(|l| l.contains(": error: ")).collect();
        assert_eq!(
            lines.len(),
            1,
            "{}: want one error, got:\n{err}",
            file.display()
        );
        assert!(lines[0].contains(what), "{}: {err}", file.display());
        assert!(!err.contains("panicked"), "{err}");
    }
    // 10,000 nested blocks of an unknown keyword: keepalived 2.2.7 runs the file (`-t` exits
    // 5, "errors, but keepalived will still run"), as an unknown keyword takes no block: each
    // `{` is ignored and each `}` is stray. ka groups braces as keepalived does (issue 17), so it
    // accepts the file too, with a warning at every line, and without nesting anything (the
    // old grouping nested them and refused the file at depth 32).
    for file in [&nested, &unbalanced] {
        let o = ka_check(&["-f", file.to_str().expect("utf8")]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{}: {}", file.display(), err.lines().take(5).collect::<Vec<_>>().join("\n"));
        assert!(!err.contains("panicked") && !err.contains(": error: "), "{}", err.lines().take(5).collect::<Vec<_>>().join("\n"));
        let warned: std::collections::BTreeSet<&str> = err.lines().filter(|l| l.contains(": warning: ")).filter_map(|l| l.split(':').nth(1)).collect();
        let total = std::fs::read_to_string(file).expect("read").lines().count();
        assert_eq!(warned.len(), total, "{}: every line is warned", file.display());
        assert!(err.contains("takes no { } block"), "{}", err.lines().take(5).collect::<Vec<_>>().join("\n"));
    }
    let _ = std::fs::remove_dir_all(d);
}

/// Without `-i`, the config id is the short host name (keepalived's default): in a private UTS
/// namespace named `node7.example.invalid`, `@node7` lines are used, `@^node7` lines are not,
/// and `${_INSTANCE}` is `node7`.
#[test]
fn config_id_defaults_to_short_hostname() {
    ka_tests::require_root();
    let d = tmpdir("host");
    let f = d.join("k.conf");
    std::fs::write(
        &f,
        "global_defs {\n@node7 router_id picked\n@^node7 router_id wrong\n@node7.example.invalid router_id full_name\n}\n\
         vrrp_instance ${_INSTANCE} {\n interface eth0\n virtual_router_id 7\n}\n",
    )
    .expect("write");
    let o = std::process::Command::new("unshare")
        .args(["--uts", "sh", "-c", r#"hostname node7.example.invalid && exec "$0" check --dump -f "$1""#])
        .arg(ka_tests::ka_bin())
        .arg(&f)
        .output()
        .expect("run unshare");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("dump is JSON ({e}): {}", stderr(&o)));
    assert_eq!(v["global_defs"]["router_id"], "picked", "{}", stderr(&o));
    assert_eq!(v["vrrp_instances"][0]["name"], "node7");
    let _ = std::fs::remove_dir_all(d);
}

/// The corpus file using every block and checker loads cleanly, and `--dump` lists its
/// checkers by their keepalived keyword, in file order.
#[test]
fn dump_lists_every_checker_type() {
    let f = corpus("valid/everything.conf");
    let o = ka_check(&["--dump", "-f", f.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("dump is JSON");
    let vs = &v["virtual_servers"][0];
    assert_eq!(vs["group"], "VSG_EVERY");
    let types: Vec<&str> = vs["real_servers"][0]["checkers"]
        .as_array()
        .expect("checkers")
        .iter()
        .map(|c| c["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        [
            "TCP_CHECK",
            "HTTP_GET",
            "SSL_GET",
            "MISC_CHECK",
            "SMTP_CHECK",
            "DNS_CHECK",
            "UDP_CHECK",
            "PING_CHECK",
            "BFD_CHECK",
            "FILE_CHECK"
        ]
    );
}

/// Old and new spellings: `lvs_sched`/`lb_algo` and `lvs_method`/`lb_kind` set the same
/// fields, whichever is used and in any mix (the defaults, wlc and NAT, are overridden).
#[test]
fn dump_old_and_new_lvs_spellings() {
    let d = tmpdir("spell");
    let f = d.join("k.conf");
    let vs = |port: u16, sched: &str, method: &str| {
        format!(
            "virtual_server 198.18.0.8 {port} {{\n protocol TCP\n {sched}\n {method}\n real_server 198.18.1.8 {port} {{\n }}\n}}\n"
        )
    };
    let text = [
        vs(1, "lvs_sched rr", "lvs_method DR"),
        vs(2, "lb_algo rr", "lb_kind DR"),
        vs(3, "lvs_sched sh", "lb_kind TUN"),
        vs(4, "lb_algo lc", "lvs_method NAT"),
    ]
    .concat();
    std::fs::write(&f, text).expect("write");
    let o = ka_check(&["--dump", "-f", f.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("dump is JSON");
    let got: Vec<(u64, &str, &str)> = v["virtual_servers"]
        .as_array()
        .expect("virtual_servers")
        .iter()
        .map(|s| {
            (
                s["port"].as_u64().expect("port"),
                s["lb_algo"].as_str().expect("lb_algo"),
                s["lb_kind"].as_str().expect("lb_kind"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [(1, "rr", "DR"), (2, "rr", "DR"), (3, "sh", "TUN"), (4, "lc", "NAT")]
    );
    let _ = std::fs::remove_dir_all(d);
}
