//! What `ka status` shows, as a serializable report and as text.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::{Deserialize, Serialize};

/// One XDP attachment, as reported.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct XdpAttachment {
    /// Interface name.
    pub iface: String,
    /// `native` or `generic`.
    pub mode: String,
}

/// The daemon's state, as `ka status --json` prints it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusReport {
    /// Instance name.
    pub instance: String,
    /// ka version.
    pub version: String,
    /// Daemon PID.
    pub pid: u32,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
    /// XDP attachments (empty with `--no-xdp`).
    pub xdp: Vec<XdpAttachment>,
    /// Datapath counters summed over CPUs, by name (see `ka_common::stats::Counter`).
    pub counters: BTreeMap<String, u64>,
}

impl StatusReport {
    /// Human-readable rendering.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "instance {} (ka {}, pid {}, up {}s)", self.instance, self.version, self.pid, self.uptime_s);
        if self.xdp.is_empty() {
            let _ = writeln!(s, "xdp: not attached");
        }
        for a in &self.xdp {
            let _ = writeln!(s, "xdp: {} ({})", a.iface, a.mode);
        }
        let _ = writeln!(s, "counters:");
        for (name, v) in &self.counters {
            let _ = writeln!(s, "  {name:<24} {v}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lists_every_counter_and_attachment() {
        let r = StatusReport {
            instance: "default".into(),
            version: "0.1.0".into(),
            pid: 1,
            uptime_s: 2,
            xdp: vec![XdpAttachment { iface: "eth0".into(), mode: "native".into() }],
            counters: BTreeMap::from([("verdict_pass".to_owned(), 7)]),
        };
        let t = r.to_text();
        assert!(t.contains("xdp: eth0 (native)"), "{t}");
        assert!(t.contains("verdict_pass") && t.contains(" 7"), "{t}");
        let back: StatusReport = serde_json::from_str(&serde_json::to_string(&r).expect("ser")).expect("de");
        assert_eq!(back, r);
    }
}
