//! The sync daemon's task: one owner of the sockets, the ring reader and the installer. As
//! MASTER it drains the ring into datagrams; as BACKUP it decodes datagrams and installs their
//! entries. The daemon's main loop tells it the role ([`SyncHandle::set_master`]) and flips
//! the datapath's flag itself (it owns the eBPF object).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::Instant,
};

use ka_common::sync::{SyncEvent, SyncInstall};
use serde::{Deserialize, Serialize};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
};
use tracing::{debug, info, warn};

use super::{
    batch::Batcher,
    index::SyncIndex,
    install::{Installer, SyncRing},
    net::SyncSockets,
    refresh::{Refresher, STEP_EVERY},
    wire::Message,
    SyncError, SyncParams,
};

/// Events drained from the ring per turn of the loop (the rest wait for the next turn).
const DRAIN_MAX: usize = 4096;

/// Connection sync as `ka status` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncReport {
    /// The VRRP instance followed.
    pub instance: String,
    /// The sync interface.
    pub interface: String,
    /// Group (or address) and port.
    pub group: String,
    /// Sync id.
    pub syncid: u8,
    /// Largest datagram payload sent.
    pub maxlen: usize,
    /// `master` (sending) or `backup` (receiving).
    pub role: String,
    /// Datagrams sent.
    pub sent_messages: u64,
    /// Entries sent (connections and persistence templates).
    pub sent_entries: u64,
    /// Connections re-announced by the refresh (active since its previous pass; counted in
    /// `sent_entries` too).
    #[serde(default)]
    pub refreshed: u64,
    /// Datagrams received.
    pub received_messages: u64,
    /// Entries received in well-formed datagrams.
    pub received_entries: u64,
    /// Entries installed.
    pub installed: u64,
    /// What was not sent or not installed, by reason. Datagrams for `not_backup`, `syncid`,
    /// `send_failed` and the malformed-datagram reasons (`too_short`, `size_mismatch`,
    /// `version_0`, `truncated`, `entry_version`, `entry_type`, `entry_size`, `bad_param`);
    /// entries for the others (`unknown_backend` when sending; `no_service`,
    /// `no_real_server`, `protocol`, `method`, `unknown_param`, `persistence_engine`,
    /// `not_persistent`, `install_failed` when receiving; `ring_full`: new flows the datapath
    /// could not queue).
    pub dropped: BTreeMap<String, u64>,
}

impl SyncReport {
    fn drop(&mut self, reason: &str, n: u64) {
        *self.dropped.entry(reason.to_owned()).or_default() += n;
    }

    /// One line (and one per drop reason) for `ka status`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "sync {} via {} ({}, id {}): {}; sent {} entries in {} datagrams ({} refreshed); received {} entries in {} datagrams, {} installed",
            self.instance,
            self.interface,
            self.group,
            self.syncid,
            self.role,
            self.sent_entries,
            self.sent_messages,
            self.refreshed,
            self.received_entries,
            self.received_messages,
            self.installed
        );
        for (reason, n) in &self.dropped {
            let _ = writeln!(s, "    sync dropped {reason}: {n}");
        }
        s
    }
}

enum Cmd {
    Master(bool),
    Reconfigure(Box<(SyncParams, SyncSockets)>),
}

/// The running sync daemon; dropping it stops the task.
pub struct SyncHandle {
    cmds: mpsc::UnboundedSender<Cmd>,
    report: Arc<Mutex<SyncReport>>,
    params: SyncParams,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SyncHandle {
    /// Starts the task on the current runtime, as BACKUP (until [`SyncHandle::set_master`]).
    /// `index` follows the tables the map writer applies; `refresher` (if any) re-announces
    /// active connections while MASTER.
    ///
    /// # Errors
    /// The sockets cannot be set up, or the ring cannot be watched.
    pub fn spawn(
        params: SyncParams,
        ring: SyncRing,
        installer: Installer,
        refresher: Option<Refresher>,
        index: watch::Receiver<Arc<SyncIndex>>,
    ) -> Result<SyncHandle, SyncError> {
        let socks = SyncSockets::open(&params)?;
        // SAFETY: the fd is the ring buffer map's, owned by `ring` inside the AsyncFd: it stays
        // open and the same for the AsyncFd's whole life.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| SyncError::Socket { iface: params.interface.clone(), what: "watch the sync ring", source: e.into() })?;
        let report = Arc::new(Mutex::new(SyncReport {
            instance: params.instance.clone(),
            interface: params.interface.clone(),
            group: std::net::SocketAddr::new(params.group, params.port).to_string(),
            syncid: params.syncid,
            maxlen: params.maxlen,
            role: "backup".into(),
            ..Default::default()
        }));
        let (cmds, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(params.clone(), socks, ring, installer, refresher, index, rx, report.clone()));
        info!(instance = %params.instance, iface = %params.interface, group = %params.group, port = params.port, syncid = params.syncid, "connection sync started (lvs_sync_daemon)");
        Ok(SyncHandle { cmds, report, params, task })
    }

    /// The parameters it runs with.
    pub fn params(&self) -> &SyncParams {
        &self.params
    }

    /// Moves the daemon to new parameters (a reload changed `lvs_sync_daemon`): new sockets,
    /// the datagram being filled sent on the old ones first. Call [`SyncHandle::set_master`]
    /// afterwards if the instance changed.
    ///
    /// # Errors
    /// The new sockets cannot be set up (the old ones stay).
    pub fn reconfigure(&mut self, params: SyncParams) -> Result<(), SyncError> {
        let socks = SyncSockets::open(&params)?;
        if let Ok(mut r) = self.report.lock() {
            r.instance = params.instance.clone();
            r.interface = params.interface.clone();
            r.group = std::net::SocketAddr::new(params.group, params.port).to_string();
            r.syncid = params.syncid;
            r.maxlen = params.maxlen;
        }
        info!(instance = %params.instance, iface = %params.interface, group = %params.group, port = params.port, syncid = params.syncid, "connection sync reconfigured");
        self.params = params.clone();
        let _ = self.cmds.send(Cmd::Reconfigure(Box::new((params, socks))));
        Ok(())
    }

    /// Follows the sync instance's state: MASTER sends, anything else receives.
    pub fn set_master(&self, master: bool) {
        let _ = self.cmds.send(Cmd::Master(master));
    }

    /// Counters so far.
    pub fn report(&self) -> SyncReport {
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// What one turn of the loop does with the report locked once.
fn with<T>(report: &Mutex<SyncReport>, f: impl FnOnce(&mut SyncReport) -> T) -> Option<T> {
    report.lock().ok().map(|mut r| f(&mut r))
}

#[allow(clippy::too_many_arguments, reason = "the task's whole state, moved in once")]
async fn run(
    mut p: SyncParams,
    mut socks: SyncSockets,
    mut ring: AsyncFd<SyncRing>,
    mut installer: Installer,
    mut refresher: Option<Refresher>,
    mut index: watch::Receiver<Arc<SyncIndex>>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    report: Arc<Mutex<SyncReport>>,
) {
    let mut batcher = Batcher::new(p.syncid, p.maxlen);
    let mut master = false;
    let mut events: Vec<SyncEvent> = Vec::with_capacity(DRAIN_MAX);
    let mut records: Vec<SyncInstall> = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let mut warned: std::collections::HashSet<&'static str> = std::collections::HashSet::new();
    let mut tick = tokio::time::interval(STEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = batcher.deadline();
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Master(m)) => {
                    if m != master {
                        info!(instance = %p.instance, master = m, "connection sync: {}", if m { "MASTER, sending" } else { "BACKUP, receiving" });
                    }
                    if m && !master {
                        // A new MASTER re-announces everything live: BACKUPs may have missed
                        // what the previous one sent.
                        if let Some(r) = refresher.as_mut() {
                            r.reset();
                        }
                    }
                    master = m;
                    with(&report, |r| r.role = if m { "master" } else { "backup" }.into());
                    if !m {
                        if let Some(d) = batcher.take() {
                            send(&socks, &d, &report).await;
                        }
                    }
                }
                Some(Cmd::Reconfigure(new)) => {
                    if let Some(d) = batcher.take() {
                        send(&socks, &d, &report).await;
                    }
                    (p, socks) = *new;
                    batcher = Batcher::new(p.syncid, p.maxlen);
                }
                None => break,
            },
            guard = ring.readable_mut() => {
                let Ok(mut guard) = guard else { break };
                events.clear();
                let n = guard.get_inner_mut().drain(&mut events, DRAIN_MAX);
                if n < DRAIN_MAX {
                    guard.clear_ready();
                }
                drop(guard);
                let ix = index.borrow().clone();
                let now = Instant::now();
                let mut unknown = 0;
                for ev in &events {
                    match ix.outgoing(ev, p.timeouts) {
                        Ok((conn, template)) => {
                            for c in std::iter::once(conn).chain(template) {
                                if let Some(d) = batcher.push(&c, now) {
                                    send(&socks, &d, &report).await;
                                }
                            }
                        }
                        Err(e) => {
                            unknown += 1;
                            debug!(backend = ev.backend, reason = e.reason(), "sync: new flow not sent");
                        }
                    }
                }
                if unknown > 0 {
                    with(&report, |r| r.drop(super::index::SendDrop::UnknownBackend.reason(), unknown));
                }
            },
            () = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some(d) = batcher.take() {
                    send(&socks, &d, &report).await;
                }
            },
            r = socks.rx.recv(&mut buf) => {
                let Ok(n) = r else { continue };
                received(&p, master, &buf[..n], &index.borrow().clone(), &mut installer, &mut records, &report, &mut warned);
            },
            _ = tick.tick(), if master && refresher.is_some() => {
                let Some(r) = refresher.as_mut() else { continue };
                events.clear();
                if let Err(e) = r.step(&mut events) {
                    debug!(error = %e, "sync refresh: reading the connection table");
                }
                let ix = index.borrow().clone();
                let now = Instant::now();
                let mut sent = 0;
                for ev in &events {
                    // Backends removed since the flow started are skipped silently here.
                    if let Ok((conn, template)) = ix.outgoing(ev, p.timeouts) {
                        sent += 1;
                        for c in std::iter::once(conn).chain(template) {
                            if let Some(d) = batcher.push(&c, now) {
                                send(&socks, &d, &report).await;
                            }
                        }
                    }
                }
                with(&report, |r| r.refreshed += sent);
            },
            Ok(()) = index.changed() => {},
        }
    }
}

async fn send(socks: &SyncSockets, d: &[u8], report: &Mutex<SyncReport>) {
    let entries = u64::from(d.get(4).copied().unwrap_or(0));
    match socks.tx.send(d).await {
        Ok(_) => {
            with(report, |r| {
                r.sent_messages += 1;
                r.sent_entries += entries;
            });
        }
        Err(e) => {
            debug!(error = %e, "sync: sending a datagram failed");
            with(report, |r| r.drop("send_failed", 1));
        }
    }
}

/// Handles one received datagram: decode, map to local backends, install.
#[allow(clippy::too_many_arguments, reason = "the loop's state, borrowed piecewise")]
fn received(
    p: &SyncParams,
    master: bool,
    d: &[u8],
    ix: &SyncIndex,
    installer: &mut Installer,
    records: &mut Vec<SyncInstall>,
    report: &Mutex<SyncReport>,
    warned: &mut std::collections::HashSet<&'static str>,
) {
    let mut first = |reason: &'static str, detail: String| {
        if warned.insert(reason) {
            warn!(reason, detail = %detail, "sync: dropped (first of its kind; counted in ka status)");
        } else {
            debug!(reason, detail = %detail, "sync: dropped");
        }
    };
    with(report, |r| r.received_messages += 1);
    if master {
        // IPVS runs one role at a time too: a MASTER ignores other senders.
        with(report, |r| r.drop("not_backup", 1));
        return;
    }
    let m = match Message::decode(d) {
        Ok(m) => m,
        Err(e) => {
            first(e.reason(), e.to_string());
            with(report, |r| r.drop(e.reason(), 1));
            return;
        }
    };
    if p.syncid != 0 && m.syncid != p.syncid {
        with(report, |r| r.drop("syncid", 1));
        return;
    }
    records.clear();
    let mut drops: BTreeMap<&'static str, u64> = BTreeMap::new();
    for c in &m.conns {
        match ix.incoming(c) {
            Ok(rec) => records.push(rec),
            Err(e) => {
                first(e.reason(), format!("{}:{} -> {}:{} via {}:{}", c.caddr, c.cport, c.vaddr, c.vport, c.daddr, c.dport));
                *drops.entry(e.reason()).or_default() += 1;
            }
        }
    }
    let result = installer.install(records);
    if let Err(e) = &result {
        first("install_failed", e.to_string());
    }
    with(report, |r| {
        r.received_entries += m.conns.len() as u64;
        match result {
            Ok(()) => r.installed += records.len() as u64,
            Err(_) => r.drop("install_failed", records.len() as u64),
        }
        for (reason, n) in drops {
            r.drop(reason, n);
        }
    });
}
