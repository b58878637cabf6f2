//! Connection synchronisation between directors (keepalived's `lvs_sync_daemon`): the MASTER
//! of the named VRRP instance streams every new connection to the BACKUPs, which install it in
//! their connection table (and NAT reverse table, and persistence templates), so that after a
//! failover established flows keep their real server whatever the scheduler (rr, wrr, lc...
//! are not consistent across directors the way Maglev is) and NAT flows keep their translation.
//!
//! ```text
//!  MASTER                                           BACKUP
//!  ka_xdp: new flow ─► KA_SYNC_EVENTS ring          UDP socket (group:port on INTERFACE)
//!        (only while G_SYNC_MASTER is set)             │ wire::Message::decode (malformed:
//!  task: drain ─► index.outgoing (backend id           │ counted, dropped)
//!        → real server address:port)                   │ index.incoming (address:port →
//!        ─► batch::Batcher (maxlen, 10 ms) ─UDP──────► │ local backend id)
//!                                                      ▼
//!                                       install::Installer: ka_sync_install over
//!                                       batches of 32 records (BPF_PROG_TEST_RUN)
//! ```
//!
//! - Wire format: IPVS's own sync protocol, version 1 ([`wire`]), so a ka director and a
//!   keepalived+IPVS director can sync each other during a migration, and the default group,
//!   port and sync id are the ones firewalls already allow.
//! - Identity: entries name real servers by address and port within their service; each
//!   director maps them to its own backend ids ([`index`]).
//! - Rate: the datapath pushes a 48-byte record per new flow only while sync is on and this
//!   node is MASTER (one flag test otherwise); userspace packs 40 IPv4 entries per 1472-byte
//!   datagram, and the BACKUP installs 32 per system call. `cargo xtask bench --only sync`
//!   measures the whole chain.
//! - Refresh ([`refresh`]): the MASTER also re-announces, once per 32 s pass over its
//!   connection tables, every connection that carried traffic since the previous pass (IPVS
//!   re-sends every 50 packets): a BACKUP that restarted learns the live connections, and
//!   its entries stay young.
//! - Differences from IPVS: TCP entries are sent as ESTABLISHED (ka's datapath tracks no TCP
//!   state) with IPVS's default timeouts. Entries installed on a BACKUP live in its connection
//!   table like its own flows.

pub mod batch;
pub mod index;
pub mod install;
pub mod net;
pub mod refresh;
pub mod task;
pub mod wire;

use std::{net::IpAddr, sync::Arc};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;

pub use index::{SyncIndex, Timeouts};
pub use task::{SyncHandle, SyncReport};

/// Errors of connection sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// `lvs_sync_daemon` names a VRRP instance the configuration does not have.
    #[error("lvs_sync_daemon: no vrrp_instance {0}")]
    NoInstance(String),
    /// The install program is missing from the eBPF object.
    #[error("the eBPF object has no ka_sync_install program")]
    MissingProgram,
    /// The install program cannot be loaded.
    #[error("loading ka_sync_install: {0}")]
    Program(#[source] Box<aya::programs::ProgramError>),
    /// A map is missing from the eBPF object (or was taken already).
    #[error("map {0} is missing from the eBPF object")]
    MissingMap(&'static str),
    /// A map operation failed.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Cause.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// BPF_PROG_TEST_RUN of the install program failed.
    #[error("running ka_sync_install: {0}")]
    TestRun(#[source] std::io::Error),
    /// A sync socket cannot be set up.
    #[error("sync socket on {iface} ({what}): {source}")]
    Socket {
        /// Interface.
        iface: String,
        /// The step that failed.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// What the sync daemon runs with, resolved from `lvs_sync_daemon` and the VRRP instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncParams {
    /// Interface the datagrams go out and come in on.
    pub interface: String,
    /// The VRRP instance whose state decides the role.
    pub instance: String,
    /// Sync id: sent in every message; a BACKUP with a non-zero id ignores other ids.
    pub syncid: u8,
    /// Largest datagram payload.
    pub maxlen: usize,
    /// UDP port.
    pub port: u16,
    /// Multicast TTL / hop limit.
    pub ttl: u8,
    /// Multicast group.
    pub group: IpAddr,
    /// Lifetimes announced in the entries.
    pub timeouts: Timeouts,
}

impl SyncParams {
    /// The parameters of `cfg`'s `lvs_sync_daemon` (`None`: not configured), with keepalived's
    /// and IPVS's defaults: sync id the instance's VRID, group 224.0.0.81, port 8848, TTL 1,
    /// maxlen 1500 minus the IP and UDP headers.
    ///
    /// # Errors
    /// The VRRP instance does not exist (`ka check` reports it too).
    pub fn from_config(cfg: &Config) -> Result<Option<SyncParams>, SyncError> {
        let Some(d) = &cfg.global.lvs_sync_daemon else { return Ok(None) };
        let inst = cfg.vrrp_instances.iter().find(|i| i.name == d.instance).ok_or_else(|| SyncError::NoInstance(d.instance.clone()))?;
        let group = d.group.unwrap_or(IpAddr::V4(wire::IPVS_SYNC_GROUP));
        let headers = if group.is_ipv4() { 20 + 8 } else { 40 + 8 };
        Ok(Some(SyncParams {
            interface: d.interface.clone(),
            instance: d.instance.clone(),
            syncid: d.syncid.unwrap_or(inst.virtual_router_id),
            maxlen: d.maxlen.map_or(1500 - headers, usize::from),
            port: d.port.unwrap_or(wire::IPVS_SYNC_PORT),
            ttl: d.ttl.unwrap_or(1),
            group,
            timeouts: Timeouts::default(),
        }))
    }
}

/// Starts connection sync for `cfg`'s `lvs_sync_daemon` (as BACKUP until the instance is
/// MASTER): loads the install program, takes the sync ring out of `ebpf`, opens the sockets,
/// and the connection tables pinned under `pin_dir` for the refresh. Also clears the datapath's
/// sync flag an earlier process may have left set. Failures are logged and ka runs without
/// sync (`ka status` then shows no sync section), or without the refresh.
pub fn start(cfg: &Config, ebpf: &mut aya::Ebpf, pin_dir: &std::path::Path, index: watch::Receiver<Arc<SyncIndex>>) -> Option<SyncHandle> {
    if let Err(e) = install::set_master_flag(ebpf, false) {
        warn!(error = %e, "clearing the datapath's sync flag");
    }
    let params = match SyncParams::from_config(cfg) {
        Ok(Some(p)) => p,
        Ok(None) => return None,
        Err(e) => {
            warn!(error = %e, "connection sync is off");
            return None;
        }
    };
    let started = install::Installer::load(ebpf)
        .and_then(|installer| Ok((installer, install::SyncRing::take(ebpf)?)))
        .and_then(|(installer, ring)| {
            let refresher = refresh::Refresher::open(pin_dir)
                .inspect_err(|e| warn!(error = %e, "connection sync runs without its refresh (re-announcing active connections)"))
                .ok();
            SyncHandle::spawn(params, ring, installer, refresher, index)
        });
    match started {
        Ok(h) => Some(h),
        Err(e) => {
            warn!(error = %e, "connection sync (lvs_sync_daemon) cannot start; running without it");
            None
        }
    }
}

/// Follows a VRRP state change: for the sync instance, the datapath's flag (new flows go to the
/// ring only while MASTER) and the task's role.
pub fn follow(sync: Option<&SyncHandle>, ebpf: &mut aya::Ebpf, instance: &str, master: bool) {
    let Some(s) = sync.filter(|s| s.params().instance == instance) else { return };
    if let Err(e) = install::set_master_flag(ebpf, master) {
        warn!(error = %e, master, "setting the datapath's sync flag");
    }
    s.set_master(master);
}

/// Applies a reload's `lvs_sync_daemon`: started, stopped, or restarted on new parameters (the
/// ring and the installer are kept). `master(name)`: whether instance `name` is MASTER now.
pub fn reload(
    sync: &mut Option<SyncHandle>,
    cfg: &Config,
    ebpf: &mut aya::Ebpf,
    pin_dir: &std::path::Path,
    index: watch::Receiver<Arc<SyncIndex>>,
    master: impl Fn(&str) -> bool,
) {
    let want = SyncParams::from_config(cfg).ok().flatten();
    match (sync.as_mut(), want) {
        (None, None) => return,
        (Some(_), None) => {
            *sync = None;
            if let Err(e) = install::set_master_flag(ebpf, false) {
                warn!(error = %e, "clearing the datapath's sync flag");
            }
            info!("connection sync stopped (lvs_sync_daemon removed)");
            return;
        }
        (Some(h), Some(p)) if *h.params() == p => {}
        (Some(h), Some(p)) => {
            if let Err(e) = h.reconfigure(p) {
                warn!(error = %e, "lvs_sync_daemon changed but the new sockets cannot be set up; the old ones stay");
            }
        }
        (None, Some(_)) => *sync = start(cfg, ebpf, pin_dir, index),
    }
    if let Some(h) = sync.as_ref() {
        let m = master(&h.params().instance);
        follow(Some(h), ebpf, &h.params().instance.clone(), m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, LoadOptions};

    fn params(global: &str) -> Result<Option<SyncParams>, SyncError> {
        let text = format!("global_defs {{\n{global}\n}}\nvrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {{\n 198.18.0.10\n }}\n}}\n");
        let l = parse_str(&text, std::path::Path::new("t.conf"), &LoadOptions::default());
        SyncParams::from_config(&l.config)
    }

    /// Defaults come from IPVS and keepalived; each option overrides its own.
    #[test]
    fn defaults_and_options() {
        let base = SyncParams {
            interface: "eth1".into(),
            instance: "VI_1".into(),
            syncid: 51,
            maxlen: 1472,
            port: 8848,
            ttl: 1,
            group: "224.0.0.81".parse().expect("ip"),
            timeouts: Timeouts::default(),
        };
        let cases: Vec<(&str, Option<SyncParams>)> = vec![
            ("", None),
            ("lvs_sync_daemon eth1 VI_1", Some(base.clone())),
            ("lvs_sync_daemon eth1 VI_1 id 7 maxlen 9000 port 9848 ttl 3", Some(SyncParams { syncid: 7, maxlen: 9000, port: 9848, ttl: 3, ..base.clone() })),
            ("lvs_sync_daemon eth1 VI_1 group 239.1.2.3", Some(SyncParams { group: "239.1.2.3".parse().expect("ip"), ..base.clone() })),
            ("lvs_sync_daemon eth1 VI_1 group ff02::81", Some(SyncParams { group: "ff02::81".parse().expect("ip"), maxlen: 1452, ..base.clone() })),
        ];
        for (global, want) in cases {
            assert_eq!(params(global).expect(global), want, "{global}");
        }
    }

    /// The keyword as keepalived 2.2 reads it (each message checked against `keepalived -t`):
    /// a bad option is ignored alone with a warning at its line, the others apply; a second
    /// `lvs_sync_daemon` (or the deprecated `lvs_sync_daemon_interface`) is ignored; one on a
    /// missing instance turns sync off. One row per rule: (config, warnings, resulting model).
    #[test]
    fn parsed_as_keepalived_does() {
        use crate::config::{model::LvsSyncDaemon, Severity};
        let vi = |extra: &str| format!("vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 51\n{extra} virtual_ipaddress {{\n 198.18.0.10\n }}\n}}\n");
        let d = |iface: &str, inst: &str| LvsSyncDaemon { interface: iface.into(), instance: inst.into(), syncid: None, maxlen: None, port: None, ttl: None, group: None, span: Default::default() };
        let cases: Vec<(String, Vec<&str>, Option<LvsSyncDaemon>)> = vec![
            (format!("global_defs {{\n lvs_sync_daemon eth1 VI_1\n}}\n{}", vi("")), vec![], Some(d("eth1", "VI_1"))),
            (
                format!("global_defs {{\n lvs_sync_daemon eth1 VI_1 id 9 maxlen 9000 port 9848 ttl 2 group 239.0.0.9\n}}\n{}", vi("")),
                vec![],
                Some(LvsSyncDaemon { syncid: Some(9), maxlen: Some(9000), port: Some(9848), ttl: Some(2), group: "239.0.0.9".parse().ok(), ..d("eth1", "VI_1") }),
            ),
            (
                format!("global_defs {{\n lvs_sync_daemon eth1 VI_1 5 maxlen 0 port 9000 ttl 300 group 10.1.1.1 bogus\n}}\n{}", vi("")),
                vec!["use the keyword 'id'", "'0' outside range [1, 65507]", "'300' outside range [1, 255]", "group 10.1.1.1 is not a multicast address", "unknown lvs_sync_daemon option 'bogus'"],
                Some(LvsSyncDaemon { syncid: Some(5), port: Some(9000), ..d("eth1", "VI_1") }),
            ),
            (
                format!("global_defs {{\n lvs_sync_daemon eth1 VI_1\n lvs_sync_daemon eth2 VI_1\n}}\n{}", vi("")),
                vec!["lvs_sync_daemon has already been specified as eth1 VI_1"],
                Some(d("eth1", "VI_1")),
            ),
            (format!("global_defs {{\n lvs_sync_daemon eth1\n}}\n{}", vi("")), vec!["requires an interface and a VRRP instance"], None),
            (format!("global_defs {{\n lvs_sync_daemon eth1 VI_1 port\n}}\n{}", vi("")), vec!["'port' needs a value"], Some(d("eth1", "VI_1"))),
            (vi(" lvs_sync_daemon_interface eth1\n"), vec!["lvs_sync_daemon_interface in a vrrp_instance is deprecated"], Some(d("eth1", "VI_1"))),
            (
                format!("global_defs {{\n lvs_sync_daemon eth1 VI_1\n}}\n{}", vi(" lvs_sync_daemon_interface eth2\n")),
                vec!["deprecated", "lvs_sync_daemon_interface has already been specified as eth1"],
                Some(d("eth1", "VI_1")),
            ),
            (format!("global_defs {{\n lvs_sync_daemon eth1 VI_9\n}}\n{}", vi("")), vec!["no vrrp_instance VI_9; connection sync is off"], None),
        ];
        for (text, warnings, want) in cases {
            let l = parse_str(&text, std::path::Path::new("t.conf"), &LoadOptions::default());
            let msgs: Vec<&str> = l.diagnostics.iter().map(|d| d.message.as_str()).collect();
            assert!(l.diagnostics.iter().all(|d| d.severity == Severity::Warning), "{text}: only warnings, as keepalived runs it: {msgs:?}");
            for w in &warnings {
                assert!(msgs.iter().any(|m| m.contains(w)), "{text}: no warning containing {w:?} in {msgs:?}");
            }
            assert!(msgs.iter().all(|m| !m.contains("not supported")), "{text}: {msgs:?}");
            let got = l.config.global.lvs_sync_daemon.clone().map(|g| LvsSyncDaemon { span: Default::default(), ..g });
            assert_eq!(got, want, "{text}");
        }
        assert!(matches!(SyncParams::from_config(&Default::default()), Ok(None)));
    }

    /// `ka check --dump` shows the sync daemon with its defaults resolved, as it runs.
    #[test]
    fn dump_resolves_defaults() {
        let text = "global_defs {\n lvs_sync_daemon eth1 VI_1 ttl 2\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n 198.18.0.10\n }\n}\n";
        let l = parse_str(text, std::path::Path::new("t.conf"), &LoadOptions::default());
        let v = crate::config::dump::to_json(&l.config, &l.sources);
        assert_eq!(
            v["global_defs"]["lvs_sync_daemon"],
            serde_json::json!({"interface": "eth1", "vrrp_instance": "VI_1", "id": 51, "maxlen": 1472, "port": 8848, "ttl": 2, "group": "224.0.0.81"})
        );
        let l = parse_str("vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n}\n", std::path::Path::new("t.conf"), &LoadOptions::default());
        assert!(crate::config::dump::to_json(&l.config, &l.sources)["global_defs"]["lvs_sync_daemon"].is_null());
    }
}
