//! `ka run` in a namespace, for keepalived's notify FIFO scripts and scheduled reloads: the
//! `vrrp_notify_fifo_script` reads the FIFO ka made and gets keepalived's lines, a reload keeps
//! FIFO and script and (`fifo_write_vrrp_states_on_reload`) writes the states again, the script
//! gets SIGTERM and the FIFO goes at stop; `reload_time_file` reloads at the time it says.

use std::time::Duration;

use ka_tests::{
    daemon::KaDaemon,
    ka_bin,
    netns::{Bridge, Netns},
    require_root, unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);

/// A temporary directory removed when dropped.
struct Dir(std::path::PathBuf);

impl Dir {
    fn new() -> Dir {
        let p = std::env::temp_dir().join(unique_name("knr"));
        std::fs::create_dir_all(&p).expect("dir");
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn host() -> (Bridge, Netns) {
    require_root();
    let mut bridge = Bridge::new().expect("bridge");
    let ns = Netns::new("nr").expect("netns");
    bridge.attach(&ns, "eth0", &["198.18.14.1/24"]).expect("attach");
    (bridge, ns)
}

const INSTANCE: &str = "vrrp_instance VI_F {\n state MASTER\n interface eth0\n virtual_router_id 114\n priority 150\n advert_int 1\n virtual_ipaddress {\n  198.18.14.100/24\n }\n}\n";

fn state(ka: &KaDaemon) -> String {
    ka.status_json().ok().and_then(|s| s["vrrp"][0]["state"].as_str().map(str::to_owned)).unwrap_or_default()
}

/// The FIFO script starts with the FIFO's path, reads keepalived's lines from the FIFO ka
/// created (`INSTANCE "VI_F" MASTER 150`); `ka reload` keeps the FIFO and the script (started
/// once) and writes the state line again (`fifo_write_vrrp_states_on_reload`); at stop the
/// script gets SIGTERM and the FIFO ka made is removed. On the old daemon the script never ran
/// (the keyword was "accepted, not supported yet") and no FIFO was made.
#[test]
fn fifo_script_reads_lines_kept_on_reload_terminated_at_stop() {
    let (_bridge, ns) = host();
    let dir = Dir::new();
    let fifo = dir.0.join("vrrp.fifo");
    let log = dir.0.join("reader.log");
    let reader = dir.0.join("reader.sh");
    std::fs::write(
        &reader,
        format!("#!/bin/sh\necho \"arg $1\" >> {log}\ntrap 'echo TERM >> {log}; exit 0' TERM\ncat \"$1\" >> {log} &\nwait\n", log = log.display()),
    )
    .expect("script");
    std::fs::set_permissions(&reader, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let conf = dir.0.join("ka.conf");
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n script_user root\n vrrp_notify_fifo {}\n vrrp_notify_fifo_script {}\n fifo_write_vrrp_states_on_reload\n}}\n{INSTANCE}",
            fifo.display(),
            reader.display()
        ),
    )
    .expect("conf");
    let ka = KaDaemon::start(&ns, &ka_bin(), &unique_name("nr"), &["-f", conf.to_str().expect("utf-8"), "--no-xdp"]).expect("ka");
    wait_for("MASTER", WAIT, || (state(&ka) == "MASTER").then_some(()));
    let master = "INSTANCE \"VI_F\" MASTER 150\n";
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("the script reads the MASTER line", WAIT, || text().contains(master).then_some(()));
    assert!(text().starts_with(&format!("arg {}\n", fifo.display())), "the FIFO's path is the script's argument: {}", text());
    let meta = std::fs::symlink_metadata(&fifo).expect("ka made the FIFO");
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()));

    let out = std::process::Command::new(ka_bin()).args(["--instance", ka.instance(), "reload"]).output().expect("ka reload");
    assert!(out.status.success(), "reload: {}", String::from_utf8_lossy(&out.stderr));
    wait_for("the state written again after the reload", WAIT, || (text().matches(master).count() == 2).then_some(()));
    assert_eq!(text().matches("arg ").count(), 1, "the script was not restarted: {}", text());

    ka.stop().expect("stop");
    wait_for("the script got SIGTERM", WAIT, || text().ends_with("TERM\n").then_some(()));
    assert!(!fifo.exists(), "the FIFO ka made is removed at stop");
}

/// `reload_time_file`: a time written in the file (UTC, two seconds ahead) makes the daemon
/// reload then, and the file is removed (no `reload_repeat`). On the old daemon nothing
/// reloaded and the file stayed.
#[test]
fn reload_time_file_reloads_at_the_time_written() {
    let (_bridge, ns) = host();
    let dir = Dir::new();
    let at = dir.0.join("reload.time");
    let conf = dir.0.join("ka.conf");
    std::fs::write(&conf, format!("global_defs {{\n reload_time_file {}\n}}\n{INSTANCE}", at.display())).expect("conf");
    let ka = KaDaemon::start(&ns, &ka_bin(), &unique_name("nt"), &["-f", conf.to_str().expect("utf-8"), "--no-xdp"]).expect("ka");
    let reloads = |ka: &KaDaemon| ka.status_json().ok().and_then(|s| s["reloads"]["total"].as_u64()).unwrap_or(0);
    assert_eq!(reloads(&ka), 0);
    let out = std::process::Command::new("date").args(["-u", "-d", "+3 seconds", "+%H:%M:%SZ"]).output().expect("date");
    let when = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    std::fs::write(&at, format!("{when}\n")).expect("time file");
    wait_for("a reload at the time written", WAIT, || (reloads(&ka) == 1).then_some(()));
    assert!(!at.exists(), "the time file is removed at the reload");
    ka.stop().expect("stop");
}
