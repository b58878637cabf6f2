//! What `ka run` says at start: one line per fact (program attached with mode and reason, VRRP
//! instances, services and real servers, control socket), no multi-hundred-line BTF dump, and
//! the host preflight: a NAT service on a director with forwarding off gets exactly one line
//! naming the sysctl, which `ka status` shows too.

use ka_tests::{
    daemon::KaDaemon,
    ka_bin,
    lan::{role, tcp_check, LbConf, RealServerConf},
    netns::{self, Netns},
    require_root, unique_name,
};

/// `text` without ANSI colour sequences.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A director with `eth0` towards the client and `eth1` towards two NAT real servers, and its
/// config: one VRRP instance on eth0 and one NAT service.
fn director(kind: &str) -> (Netns, Netns, Netns, std::path::PathBuf) {
    let director = Netns::new("sd").expect("netns");
    let client = Netns::new("sc").expect("netns");
    let rs = Netns::new("sr").expect("netns");
    netns::veth(&director, "eth0", &["198.18.46.1/24"], &client, "eth0", &["198.18.46.2/24"]).expect("veth");
    netns::veth(&director, "eth1", &["198.18.47.1/24"], &rs, "eth0", &["198.18.47.11/24", "198.18.47.12/24"]).expect("veth");
    let text = LbConf {
        instance: "VI_START".into(),
        vrid: 46,
        role: role("", true, 150),
        vrrp_vips: vec!["198.18.46.100/24".into()],
        excluded: vec![],
        vip: "198.18.46.100".into(),
        port: 80,
        lb_kind: kind.into(),
        real_servers: ["198.18.47.11", "198.18.47.12"]
            .iter()
            .map(|a| RealServerConf { addr: (*a).into(), port: 80, check: tcp_check() })
            .collect(),
    }
    .text();
    let conf = std::env::temp_dir().join(format!("{}.conf", unique_name("kst")));
    std::fs::write(&conf, text).expect("write conf");
    (director, client, rs, conf)
}

/// Start-up facts, one line each, and the BTF fallback as one debug line at most: the log has
/// few WARN lines and no line-per-BTF-type dump (the old code printed ~350 lines of it as a WARN).
#[test]
fn start_up_facts_are_one_line_each() {
    require_root();
    let (director, _client, _rs, conf) = director("DR");
    let conf_s = conf.to_str().expect("utf-8");
    let ka = KaDaemon::start(&director, &ka_bin(), &unique_name("st"), &["-f", conf_s, "--iface", "eth1"]).expect("ka run");
    let log = plain(&ka.log_text());
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    let attached: Vec<&str> = log.lines().filter(|l| l.contains("XDP program attached")).collect();
    assert_eq!(attached.len(), 2, "one attach line per interface:\n{log}");
    for (iface, line) in ["eth1", "eth0"].iter().zip(&attached) {
        assert!(line.contains(&format!("iface=\"{iface}\"")) && line.contains("mode=") && line.contains("reason="), "{line}");
    }
    assert_eq!(count("VRRP instances"), 1, "{log}");
    assert!(log.lines().any(|l| l.contains("VRRP instances") && l.contains("count=1") && l.contains("VI_START (eth0, vrid 46")), "{log}");
    assert!(log.lines().any(|l| l.contains("virtual servers") && l.contains("services=1") && l.contains("real_servers=2")), "{log}");
    assert_eq!(count("control socket listening"), 1, "{log}");
    assert_eq!(count("object BTF couldn't be loaded"), 0, "aya's BTF dump must not be logged:\n{log}");
    assert!(count("refused the eBPF object's BTF") <= 1, "{log}");
    let warns = count(" WARN ");
    assert!(warns <= 3, "{warns} WARN lines at start:\n{log}");
    // Lines without a timestamp continue the event above: none may follow an INFO, WARN or
    // ERROR event (aya's feature detection is a multi-line DEBUG event; that is fine).
    let mut level = "";
    let mut continued = 0;
    for l in log.lines() {
        match l.split_whitespace().nth(1) {
            Some(lv @ ("TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR")) if l.starts_with("20") => level = lv,
            _ if matches!(level, "INFO" | "WARN" | "ERROR") => continued += 1,
            _ => {}
        }
    }
    assert_eq!(continued, 0, "multi-line INFO/WARN/ERROR events at start:\n{log}");
    ka.stop().expect("stop");
    let _ = std::fs::remove_file(conf);
}

/// NAT with forwarding off (every namespace's default): exactly one start-up line names the
/// sysctl of the interface the real servers' replies come in on, with the command that fixes
/// it; `ka status` shows the same finding. DR on the same host gets no such line.
#[test]
fn nat_with_forwarding_off_says_which_sysctl() {
    require_root();
    let (director, _client, _rs, conf) = director("NAT");
    director.run(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]).expect("forwarding off");
    let conf_s = conf.to_str().expect("utf-8");
    let ka = KaDaemon::start(&director, &ka_bin(), &unique_name("sn"), &["-f", conf_s, "--iface", "eth1"]).expect("ka run");
    let log = plain(&ka.log_text());
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("forwarding")).collect();
    assert_eq!(lines.len(), 1, "exactly one line about forwarding:\n{log}");
    let line = lines[0];
    assert!(line.contains(" WARN "), "{line}");
    assert!(
        line.contains("NAT service 198.18.46.100:80 needs net.ipv4.conf.eth1.forwarding=1 for replies to reach clients")
            && line.contains("sysctl -w net.ipv4.conf.eth1.forwarding=1"),
        "{line}"
    );
    let st = ka.status_json().expect("status");
    assert_eq!(st["host"][0]["setting"], "net.ipv4.conf.eth1.forwarding", "{st}");
    let text = ka.status_text().expect("status text");
    assert!(text.contains("host: NAT service 198.18.46.100:80 needs net.ipv4.conf.eth1.forwarding=1"), "{text}");
    ka.stop().expect("stop");

    // With forwarding on, nothing is said.
    director.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]).expect("forwarding on");
    let ka = KaDaemon::start(&director, &ka_bin(), &unique_name("sn"), &["-f", conf_s, "--iface", "eth1"]).expect("ka run");
    let log = plain(&ka.log_text());
    assert!(!log.contains("needs net.ipv4"), "{log}");
    assert_eq!(ka.status_json().expect("status")["host"], serde_json::json!([]));
    ka.stop().expect("stop");
    let _ = std::fs::remove_file(conf);
}

/// keepalived's `startup_script` runs, and is waited for, before ka starts anything (its file
/// exists once the control socket answers, with no wait of ours), `shutdown_script` runs when
/// ka has stopped (its file exists once the process has exited), and both create their files
/// under the configuration's `umask 0077` (mode 0600). On the old daemon the three keywords
/// were "accepted, not supported yet": neither file was ever written.
#[test]
fn startup_and_shutdown_scripts_under_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    require_root();
    let ns = Netns::new("ss").expect("netns");
    let dir = std::env::temp_dir().join(unique_name("kass"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let (started, stopped) = (dir.join("started"), dir.join("stopped"));
    let text = format!(
        "global_defs {{\n umask 0077\n startup_script \"/bin/sh -c 'echo up > {}'\"\n startup_script_timeout 5\n shutdown_script \"/bin/sh -c 'echo down > {}'\"\n}}\n",
        started.display(),
        stopped.display()
    );
    let conf = dir.join("keepalived.conf");
    std::fs::write(&conf, text).expect("write conf");
    let instance = unique_name("kss");
    let d = KaDaemon::start(&ns, &ka_bin(), &instance, &["--no-xdp", "--use-file", conf.to_str().expect("utf-8")]).expect("ka run");
    let log = d.log_text();
    let md = std::fs::metadata(&started).unwrap_or_else(|e| panic!("startup_script did not run before ka answered ({e}):\n{log}"));
    assert_eq!(md.permissions().mode() & 0o777, 0o600, "the configuration's umask applies:\n{log}");
    assert!(!stopped.exists(), "shutdown_script ran while ka was running:\n{log}");
    d.stop().expect("stop");
    assert_eq!(std::fs::read_to_string(&stopped).expect("shutdown_script ran before ka exited").trim(), "down");
    let _ = std::fs::remove_dir_all(dir);
}

/// `net_namespace NAME` (top level): ka enters `/run/netns/NAME` before it starts, as keepalived
/// does. ka is started in an empty decoy namespace; the VRRP instance's interface exists only
/// in the configured namespace, and the instance (the address owner) puts its VIP there. On the
/// old daemon the keyword was "accepted, not supported yet": ka stayed in the decoy, where the
/// interface does not exist, and the VIP never appeared.
#[test]
fn net_namespace_is_entered() {
    require_root();
    let decoy = Netns::new("nd").expect("netns");
    let target = Netns::new("nt").expect("netns");
    if target.run(&["ip", "link", "add", "eth0", "type", "dummy"]).is_err() {
        target.run(&["ip", "link", "add", "eth0", "type", "bridge"]).expect("create eth0");
    }
    target.run(&["ip", "addr", "add", "198.18.48.1/24", "dev", "eth0"]).expect("addr");
    target.run(&["ip", "link", "set", "eth0", "up"]).expect("up");
    let text = format!(
        "net_namespace {}\nvrrp_instance VI_NS {{\n interface eth0\n state MASTER\n priority 255\n virtual_router_id 48\n advert_int 0.1\n virtual_ipaddress {{\n 198.18.48.100/24\n }}\n}}\n",
        target.name()
    );
    let conf = std::env::temp_dir().join(format!("{}.conf", unique_name("kans")));
    std::fs::write(&conf, text).expect("write conf");
    let instance = unique_name("kns");
    let d = KaDaemon::start(&decoy, &ka_bin(), &instance, &["--no-xdp", "--use-file", conf.to_str().expect("utf-8")]).expect("ka run");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut addrs = String::new();
    while std::time::Instant::now() < deadline {
        addrs = target.run(&["ip", "-4", "addr", "show", "dev", "eth0"]).unwrap_or_default();
        if addrs.contains("198.18.48.100") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(addrs.contains("198.18.48.100"), "the VIP is not in the configured namespace:\n{addrs}\n{}", d.log_text());
    assert!(decoy.run(&["ip", "-4", "addr"]).unwrap_or_default().lines().all(|l| !l.contains("198.18.48.100")));
    d.stop().expect("stop");
    let _ = std::fs::remove_file(conf);
}
