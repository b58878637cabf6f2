//! The small VRRP LAN of the daemon tests (`vrrp_daemon`, `vrrp_garp`, `vrrp_vmac`,
//! `vrrp_firewall`): namespaces on one bridge, a configuration file per test, the state
//! `ka status` reports.

use crate::{
    daemon::KaDaemon,
    netns::{Bridge, Netns},
    require_root, unique_name,
};

/// `n` namespaces named `NAME1`, `NAME2`, ... on one bridge, each with `eth0` at
/// `198.18.SUBNET.k/24`.
pub fn hosts(name: &str, subnet: u8, n: usize) -> (Bridge, Vec<Netns>) {
    require_root();
    let mut bridge = Bridge::new().expect("bridge");
    let hosts = (1..=n)
        .map(|k| {
            let ns = Netns::new(&format!("{name}{k}")).expect("netns");
            bridge.attach(&ns, "eth0", &[&format!("198.18.{subnet}.{k}/24")]).expect("attach");
            ns
        })
        .collect();
    (bridge, hosts)
}

/// `text` written to `ka.conf` in a fresh directory named after `tag`; its path.
pub fn write_conf(tag: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(unique_name(tag));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join("ka.conf");
    std::fs::write(&p, text).expect("write");
    p.to_str().expect("utf-8").to_owned()
}

/// The state of the daemon's `i`-th VRRP instance (`ka status --json`), or "" while it does
/// not answer.
pub fn state(ka: &KaDaemon, i: usize) -> String {
    ka.status_json().ok().and_then(|s| s["vrrp"][i]["state"].as_str().map(str::to_owned)).unwrap_or_default()
}
