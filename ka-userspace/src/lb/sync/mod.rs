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
//! - Differences from IPVS: a connection is sent once, when the datapath gives it a real
//!   server (new flow, persistence hit, reschedule), not again every 50 packets; TCP entries
//!   are sent as ESTABLISHED (ka's datapath tracks no TCP state); timeouts are IPVS's defaults.
//!   Entries installed on a BACKUP live in its connection table like its own flows.

pub mod batch;
pub mod index;
pub mod install;
pub mod net;
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
/// MASTER): loads the install program, takes the sync ring out of `ebpf`, opens the sockets.
/// Also clears the datapath's sync flag an earlier process may have left set. Failures are
/// logged and ka runs without sync (`ka status` then shows no sync section).
pub fn start(cfg: &Config, ebpf: &mut aya::Ebpf, index: watch::Receiver<Arc<SyncIndex>>) -> Option<SyncHandle> {
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
        .and_then(|(installer, ring)| SyncHandle::spawn(params, ring, installer, index));
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
        (None, Some(_)) => *sync = start(cfg, ebpf, index),
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

    /// A sync daemon on an instance the configuration lacks is refused.
    #[test]
    fn unknown_instance() {
        let e = params("lvs_sync_daemon eth1 VI_9").expect_err("no such instance");
        assert!(e.to_string().contains("VI_9"), "{e}");
    }
}
