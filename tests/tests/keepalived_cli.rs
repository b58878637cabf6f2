//! ka as a drop-in `keepalived`, as the tools around keepalived drive it: started through a
//! symlink named `keepalived` with keepalived's options, signalled with the numbers `keepalived
//! --signum` prints, its dump files read with the parsing keepalived's exporters use, its pid
//! files and fork checked, and `keepalived -t` compared with the real keepalived 2.2.7 on the
//! same configurations.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use ka_tests::{exporter, ka_bin, keepalived::require_keepalived, netns::Netns, require_root, unique_name, wait_for};

const WAIT: Duration = Duration::from_secs(30);

/// A directory with a `keepalived` symlink to the ka binary under test.
fn keepalived_link(tag: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(unique_name(tag));
    std::fs::create_dir_all(&dir).expect("dir");
    let link = dir.join("keepalived");
    std::os::unix::fs::symlink(ka_bin(), &link).expect("symlink");
    (dir, link)
}

/// A namespace with a veth pair `kc0`/`kc1`, `kc0` at 198.18.20.1/24.
fn lan() -> Netns {
    require_root();
    let ns = Netns::new("kc").expect("netns");
    ns.run(&["ip", "link", "add", "kc0", "type", "veth", "peer", "name", "kc1"]).expect("veth");
    ns.run(&["ip", "addr", "add", "198.18.20.1/24", "dev", "kc0"]).expect("addr");
    ns.run(&["ip", "link", "set", "kc0", "up"]).expect("up");
    ns.run(&["ip", "link", "set", "kc1", "up"]).expect("up");
    ns
}

fn conf(extra_vip: &str) -> String {
    format!(
        r#"global_defs {{
    router_id kc_test
    enable_script_security
    script_user root
}}
vrrp_script chk_ok {{
    script "/bin/true"
    interval 1
    weight 10
}}
vrrp_instance VI_1 {{
    state MASTER
    interface kc0
    virtual_router_id 51
    priority 150
    advert_int 1
    virtual_ipaddress {{
        198.18.20.10/24
{extra_vip}    }}
    track_script {{
        chk_ok
    }}
}}
"#
    )
}

/// [`conf`] with a virtual server whose one real server never answers.
fn conf_with_service() -> String {
    conf("")
        + r#"virtual_server 198.18.20.10 80 {
    delay_loop 1
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 198.18.20.99 80 {
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }
}
"#
}

fn signum(link: &Path, name: &str) -> i32 {
    let out = Command::new(link).arg(format!("--signum={name}")).output().expect("signum");
    assert!(out.status.success(), "--signum={name}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("number")
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid and a signal number.
    let rc = unsafe { libc::kill(i32::try_from(pid).expect("pid"), sig) };
    assert_eq!(rc, 0, "kill -{sig} {pid}: {}", std::io::Error::last_os_error());
}

/// Sends `sig` and waits for `dir/name` to be written anew (it is removed first).
fn dump(pid: u32, sig: i32, dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    kill(pid, sig);
    wait_for(&format!("{name} after signal {sig}"), WAIT, || std::fs::read_to_string(&path).ok())
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `keepalived -n -l -D -f FILE` through a symlink: keepalived's console lines, pid files, and
/// every dump signal answered with files the exporters parse; HUP reloads; TERM stops and
/// removes the pid files.
#[test]
fn keepalived_signals_and_dumps() {
    let ns = lan();
    let (dir, link) = keepalived_link("kcs");
    let file = dir.join("keepalived.conf");
    std::fs::write(&file, conf_with_service()).expect("conf");
    let log = dir.join("console.log");
    let out = std::fs::File::create(&log).expect("log");
    let instance = unique_name("kc");
    let mut child = ns
        .nsenter(&link)
        .args(["-n", "-l", "-D", "-d", "-f"])
        .arg(&file)
        .arg("-p")
        .arg(dir.join("keepalived.pid"))
        .arg("-r")
        .arg(dir.join("vrrp.pid"))
        .arg("-c")
        .arg(dir.join("checkers.pid"))
        .env("KA_INSTANCE", &instance)
        .env("TMPDIR", &dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("spawn keepalived (ka)");
    let pid = child.id();
    let guard = Kill(Some(pid), instance.clone());

    // keepalived's words on the console, and ka's own line kept next to them.
    wait_for("(VI_1) Entering MASTER STATE on the console", WAIT, || log_of(&log).contains("(VI_1) Entering MASTER STATE").then_some(()));
    let text = log_of(&log);
    assert!(text.contains("Starting Keepalived v2.2.7"), "{text}");
    assert!(text.contains("state change") && text.contains("to=MASTER"), "ka's own line is kept:\n{text}");
    // -d: the configuration in the log, in the data dump's format.
    wait_for("-d's configuration dump in the log", WAIT, || log_of(&log).contains(": ------< VRRP Topology >------").then_some(()));
    assert!(log_of(&log).contains("  VRRP Instance = VI_1\n"), "{}", log_of(&log));

    // The checker's failure and the real server's removal, in keepalived's words.
    for line in ["TCP_CHECK on service [198.18.20.99]:tcp:80 failed.", "Removing service [198.18.20.99]:tcp:80 from VS [198.18.20.10]:tcp:80"] {
        wait_for(line, WAIT, || log_of(&log).contains(line).then_some(()));
    }

    // Pid files: one process, its pid in the parent's, the VRRP and the checkers' files.
    let read_pid = |f: &str| std::fs::read_to_string(dir.join(f)).ok().and_then(|t| t.trim().parse::<u32>().ok());
    assert_eq!(read_pid("keepalived.pid"), Some(pid));
    assert_eq!(read_pid("vrrp.pid"), Some(pid));
    assert_eq!(read_pid("checkers.pid"), Some(pid));

    // The signal numbers are keepalived's, as the real one prints them on this system.
    let (data_sig, stats_sig, clear_sig, json_sig) = (signum(&link, "DATA"), signum(&link, "STATS"), signum(&link, "STATS_CLEAR"), signum(&link, "JSON"));
    require_keepalived();
    for name in ["STOP", "RELOAD", "DATA", "STATS", "STATS_CLEAR", "JSON"] {
        let real = Command::new("keepalived").arg(format!("--signum={name}")).output().expect("keepalived --signum");
        assert_eq!(String::from_utf8_lossy(&real.stdout).trim().parse::<i32>().ok(), Some(signum(&link, name)), "{name}");
    }

    // USR1: keepalived.data, read as mehdy/keepalived-exporter's ParseVRRPData does. The
    // script's first result may come after the first dump: dump until it is GOOD.
    let start = Instant::now();
    let (data, scripts) = loop {
        let text = dump(pid, data_sig, &dir, "keepalived.data");
        let scripts = exporter::parse_scripts(&text);
        if scripts.iter().any(|s| s.status == "GOOD") || start.elapsed() > WAIT {
            break (exporter::parse_data(&text).expect("exporter parses keepalived.data"), scripts);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let vi = &data["VI_1"];
    assert_eq!((vi.state.as_str(), vi.wantstate.as_str(), vi.intf.as_str(), vi.vrid, vi.garp_delay), ("MASTER", "MASTER", "kc0", 51, 5), "{vi:?}");
    assert_eq!(vi.vips.iter().filter_map(|v| exporter::parse_vip(v)).collect::<Vec<_>>(), [("198.18.20.10/24".to_owned(), "kc0".to_owned())]);
    assert_eq!(scripts, [exporter::DataScript { name: "chk_ok".into(), status: "GOOD".into(), state: "idle".into() }]);
    // The checkers' file comes with it.
    let check = std::fs::read_to_string(dir.join("keepalived_check.data")).expect("keepalived_check.data");
    assert!(check.contains(" VS VIP = 198.18.20.10, VPORT = 80\n") && check.contains("   RIP = 198.18.20.99, RPORT = 80, WEIGHT = 1 EFF WEIGHT = 0\n"), "{check}");
    assert!(check.contains("   alive = 0\n"), "{check}");

    // USR2: keepalived.stats, read as ParseStats does.
    let stats = exporter::parse_stats(&dump(pid, stats_sig, &dir, "keepalived.stats")).expect("exporter parses keepalived.stats");
    let st = &stats["VI_1"];
    assert_eq!(st["become_master"], 1, "{st:?}");
    assert!(st["advert_sent"] >= 1, "{st:?}");

    // JSON: keepalived.json, decoded with the Go types of both exporters.
    let json = exporter::decode_json(&dump(pid, json_sig, &dir, "keepalived.json")).expect("exporters decode keepalived.json");
    assert_eq!(json.len(), 1);
    let j = &json[0];
    assert_eq!((j.iname.as_str(), j.intf.as_str(), j.vrid, j.state, j.wantstate, j.garp_delay), ("VI_1", "kc0", 51, 2, 2, 5), "{j:?}");
    assert_eq!(j.vips, ["198.18.20.10/24 dev kc0 scope global set"]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    assert!(j.last_transition > now - 120.0 && j.last_transition <= now, "last_transition {} vs now {now}", j.last_transition);
    assert_eq!(j.stats["become_master"], 1);
    let sent_before = j.stats["advert_sent"];
    assert!(sent_before >= 1);

    // STATS_CLEAR: the stats are written, then count from zero.
    let cleared = exporter::parse_stats(&dump(pid, clear_sig, &dir, "keepalived.stats")).expect("stats");
    assert_eq!(cleared["VI_1"]["become_master"], 1, "the clearing dump still shows the counts");
    let after = exporter::parse_stats(&dump(pid, stats_sig, &dir, "keepalived.stats")).expect("stats");
    assert_eq!(after["VI_1"]["become_master"], 0, "cleared: {after:?}");
    assert!(after["VI_1"]["advert_sent"] < sent_before.max(2) + 2, "cleared: {after:?} (before {sent_before})");
    let j = exporter::decode_json(&dump(pid, json_sig, &dir, "keepalived.json")).expect("json");
    assert_eq!(j[0].stats["become_master"], 0, "the JSON counts from the clear too");

    // HUP reloads: the new VIP shows in the next data dump.
    std::fs::write(&file, conf("        198.18.20.11/24\n") + &conf_with_service()[conf("").len()..]).expect("conf");
    kill(pid, libc::SIGHUP);
    wait_for("the reloaded VIP in keepalived.data", WAIT, || {
        let d = exporter::parse_data(&dump(pid, data_sig, &dir, "keepalived.data")).ok()?;
        d["VI_1"].vips.iter().any(|v| v.starts_with("198.18.20.11/24 ")).then_some(())
    });

    // TERM stops, cleanly, and the pid files go.
    kill(pid, libc::SIGTERM);
    let status = wait_for("keepalived (ka) to exit on SIGTERM", WAIT, || child.try_wait().expect("wait"));
    std::mem::forget(guard);
    assert!(status.success(), "exit {status}:\n{}", log_of(&log));
    assert!(!dir.join("keepalived.pid").exists() && !dir.join("vrrp.pid").exists() && !dir.join("checkers.pid").exists(), "pid files removed");
    assert!(log_of(&log).contains("Stopped Keepalived v2.2.7"));
    let _ = std::fs::remove_dir_all(dir);
}

/// Without `-n`, ka forks as keepalived does: the command returns 0 at once, the daemon's pid
/// is in the pid file; a second start finds it running and leaves; TERM through the pid file
/// stops it and the file goes.
#[test]
fn keepalived_forks_and_refuses_a_second_start() {
    let ns = lan();
    let (dir, link) = keepalived_link("kcf");
    let file = dir.join("keepalived.conf");
    std::fs::write(&file, conf("")).expect("conf");
    let instance = unique_name("kc");
    let start = |extra: &[&str]| {
        ns.nsenter(&link)
            .args(extra)
            .arg("-f")
            .arg(&file)
            .arg("-p")
            .arg(dir.join("keepalived.pid"))
            .arg("-r")
            .arg(dir.join("vrrp.pid"))
            .arg("-c")
            .arg(dir.join("checkers.pid"))
            .env("KA_INSTANCE", &instance)
            .env("TMPDIR", &dir)
            .stdin(Stdio::null())
            .output()
            .expect("run keepalived (ka)")
    };
    let first = start(&[]);
    assert!(first.status.success(), "{first:?}");
    let pid = wait_for("the daemon's pid file", WAIT, || {
        std::fs::read_to_string(dir.join("keepalived.pid")).ok().and_then(|t| t.trim().parse::<u32>().ok())
    });
    let _guard = Kill(Some(pid), instance.clone());
    assert!(!dir.join("checkers.pid").exists(), "no virtual servers, no checkers pid file");
    let alive = |p: u32| Path::new(&format!("/proc/{p}")).exists();
    assert!(alive(pid), "the forked daemon runs");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let argv0 = cmdline.split(|b| *b == 0).next().map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default();
    assert!(argv0.ends_with("/keepalived"), "ps shows keepalived: {argv0}");
    // Answering on its control socket: up, not just forked.
    wait_for("the daemon to answer", WAIT, || {
        let out = Command::new(ka_bin()).args(["--instance", &instance, "status", "--json", "--timeout", "2s"]).output().ok()?;
        out.status.success().then_some(())
    });

    let second = start(&["-n", "-l"]);
    assert!(second.status.success(), "{second:?}");
    assert!(String::from_utf8_lossy(&second.stderr).contains("daemon is already running"), "{second:?}");
    assert!(alive(pid), "the running daemon is left alone");

    kill(pid, libc::SIGTERM);
    wait_for("the daemon to stop and remove its pid file", WAIT, || (!alive(pid) && !dir.join("keepalived.pid").exists()).then_some(()));
    let _ = std::fs::remove_dir_all(dir);
}

/// `keepalived -t` of the real keepalived 2.2.7 and of ka on the same configurations: the same
/// exit codes (0 fine, 5 errors or warnings, 6 scripts without script security), except the
/// one documented difference: a file that does not exist is 0 for keepalived 2.2.7 (it
/// records no error) and 4 ("cannot be run") for ka.
#[test]
fn config_test_exit_codes_match_keepalived() {
    require_keepalived();
    let ns = lan();
    let (dir, link) = keepalived_link("kct");
    let inst = |body: &str| format!("vrrp_instance VI_1 {{\n    interface kc0\n{body}    virtual_ipaddress {{\n        198.18.20.10/24\n    }}\n}}\n");
    let good = inst("    virtual_router_id 51\n    priority 100\n");
    let vs = "virtual_server 198.18.20.10 80 {\n    lb_kind DR\n    protocol TCP\n    real_server 198.18.20.20 80 {\n        TCP_CHECK {\n            connect_timeout 3\n        }\n    }\n}\n";
    let cases: Vec<(&str, String)> = vec![
        ("good", format!("global_defs {{\n    router_id t1\n}}\n{good}")),
        ("virtual_server", format!("{good}{}", vs.replace("lb_kind DR", "lb_algo rr\n    lb_kind DR"))),
        ("virtual_server_without_scheduler", format!("{good}{vs}")),
        ("empty", String::new()),
        ("unknown_keyword", format!("global_defs {{\n    no_such_keyword 3\n}}\n{good}")),
        ("priority_out_of_range", inst("    virtual_router_id 51\n    priority 300\n")),
        ("missing_interface", good.replace("kc0", "nosuch9")),
        ("missing_brace", good.trim_end().trim_end_matches('}').to_owned()),
        ("vrid_out_of_range", inst("    virtual_router_id 300\n")),
        ("no_vrid", inst("    priority 100\n")),
        ("notify_without_script_security", inst("    virtual_router_id 51\n    notify_master \"/bin/true\"\n")),
        ("vrrp_script_without_script_security", format!("vrrp_script chk {{\n    script \"/bin/true\"\n}}\n{good}")),
        ("misc_check_without_script_security", "virtual_server 198.18.20.10 80 {\n    lb_kind DR\n    protocol TCP\n    real_server 198.18.20.20 80 {\n        MISC_CHECK {\n            misc_path \"/bin/true\"\n        }\n    }\n}\n".to_owned()),
        ("script_security_on", format!("global_defs {{\n    enable_script_security\n    script_user root\n}}\nvrrp_script chk {{\n    script \"/bin/true\"\n}}\n{good}")),
    ];
    let mut table = String::new();
    let mut differ = Vec::new();
    for (name, text) in &cases {
        let file = dir.join(format!("{name}.conf"));
        std::fs::write(&file, text).expect("conf");
        let real = ns.cmd("keepalived").arg("-t").arg("-f").arg(&file).output().expect("keepalived -t");
        // `ip netns exec` for both: it mounts the namespace's /sys, where interfaces are looked up.
        let ka = ns.cmd(link.to_str().expect("utf-8")).arg("-t").arg("-f").arg(&file).output().expect("ka keepalived -t");
        let (r, k) = (real.status.code(), ka.status.code());
        table.push_str(&format!("{name:40} keepalived {r:?} ka {k:?}\n"));
        if r != k {
            differ.push(format!("{name}: keepalived {r:?} ({}) ka {k:?} ({})", String::from_utf8_lossy(&real.stderr).trim(), String::from_utf8_lossy(&ka.stderr).trim()));
        }
    }
    assert!(differ.is_empty(), "{}\n{table}", differ.join("\n"));
    // Every class of keepalived's codes is covered by the table.
    for code in ["Some(0)", "Some(5)", "Some(6)"] {
        assert!(table.contains(&format!("ka {code}")), "{code} not exercised:\n{table}");
    }
    // The documented difference.
    let missing = dir.join("does-not-exist.conf");
    let real = ns.cmd("keepalived").arg("-t").arg("-f").arg(&missing).output().expect("keepalived -t");
    let ka = ns.cmd(link.to_str().expect("utf-8")).arg("-t").arg("-f").arg(&missing).output().expect("ka -t");
    assert_eq!((real.status.code(), ka.status.code()), (Some(0), Some(4)), "keepalived 2.2.7 passes a missing file; ka does not");
    // -t LOG_FILE: the diagnostics go to the file, appended.
    let log = dir.join("test.log");
    let file = dir.join("unknown_keyword.conf");
    let ka = ns.cmd(link.to_str().expect("utf-8")).arg(format!("--config-test={}", log.display())).arg("-f").arg(&file).output().expect("ka -t");
    assert_eq!(ka.status.code(), Some(5));
    assert!(std::fs::read_to_string(&log).unwrap_or_default().contains("no_such_keyword"), "diagnostics in the log file");
    let _ = std::fs::remove_dir_all(dir);
}

/// Kills a daemon left running by a failed test, and removes what it leaves on the host.
struct Kill(Option<u32>, String);

impl Drop for Kill {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            // SAFETY: kill(2).
            unsafe { libc::kill(i32::try_from(pid).unwrap_or(0), libc::SIGKILL) };
            std::thread::sleep(Duration::from_millis(100));
            let _ = std::fs::remove_file(format!("/run/ka/{}.sock", self.1));
            let _ = std::fs::remove_file(format!("/run/ka/{}.vrrp", self.1));
            let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/ka/{}", self.1));
        }
    }
}

/// The configuration's `instance NAME` names the pid files as keepalived's main does
/// (`/run/keepalived/keepalived_NAME.pid`, `vrrp_NAME.pid`; no `-p`/`-r` given), and with
/// `data_use_instance` the dump files (`keepalived.NAME.data`); TERM removes the pid files. On
/// the old daemon `instance` was "accepted, not supported yet": the files were `/run/keepalived.pid`
/// and `keepalived.data`.
#[test]
fn config_instance_names_pid_files_and_dumps() {
    let ns = lan();
    let (dir, link) = keepalived_link("kci");
    let name = unique_name("kci");
    let file = dir.join("keepalived.conf");
    let text = format!("instance {name}\n{}", conf("").replace("router_id kc_test", "router_id kc_test\n    data_use_instance"));
    std::fs::write(&file, text).expect("conf");
    let log = dir.join("console.log");
    let out = std::fs::File::create(&log).expect("log");
    let instance = unique_name("kc");
    let mut child = ns
        .nsenter(&link)
        .args(["-n", "-l", "-f"])
        .arg(&file)
        .env("KA_INSTANCE", &instance)
        .env("TMPDIR", &dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("spawn keepalived (ka)");
    let pid = child.id();
    let guard = Kill(Some(pid), instance.clone());
    let main = PathBuf::from(format!("/run/keepalived/keepalived_{name}.pid"));
    let vrrp = PathBuf::from(format!("/run/keepalived/vrrp_{name}.pid"));
    let read_pid = |f: &Path| std::fs::read_to_string(f).ok().and_then(|t| t.trim().parse::<u32>().ok());
    wait_for("the instance's pid file", WAIT, || (read_pid(&main) == Some(pid)).then_some(()));
    assert_eq!(read_pid(&vrrp), Some(pid), "{}", log_of(&log));
    wait_for("(VI_1) Entering MASTER STATE on the console", WAIT, || log_of(&log).contains("(VI_1) Entering MASTER STATE").then_some(()));
    let data = dump(pid, libc::SIGUSR1, &dir, &format!("keepalived.{name}.data"));
    assert!(data.contains("VRRP Instance = VI_1"), "{data}");
    kill(pid, libc::SIGTERM);
    let status = wait_for("keepalived (ka) to exit on SIGTERM", WAIT, || child.try_wait().expect("wait"));
    std::mem::forget(guard);
    assert!(status.success(), "exit {status}:\n{}", log_of(&log));
    assert!(!main.exists() && !vrrp.exists(), "the pid files are removed at stop");
    let _ = std::fs::remove_dir_all(&dir);
}
