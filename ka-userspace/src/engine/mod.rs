//! The VRRP runtime: one owner task runs every instance's sans-IO state machine
//! ([`crate::vrrp`]) and carries out its actions — adverts on raw sockets, VIPs through the
//! netlink worker, gratuitous ARP/NA, notify scripts, FIFO and SMTP alerts — with timers on a
//! monotonic clock. Received adverts are validated with the shared codec rules and counted per
//! reason before they reach a state machine. Trackers ([`tracking`]) report in through a
//! channel. With XDP attached, the fast path ([`fast`]) absorbs the current master's steady
//! adverts in the kernel; the master-down timer then consults XDP's last-seen time before
//! taking over, and everything else still arrives on the raw sockets.
//!
//! Instances with `auth_type AH` (keepalived's VRRPv2 IPsec AH, [`ka_common::vrrp::ah`]) send
//! and receive whole IPv4 packets on protocol-51 sockets; their ICV, SPI and sequence number
//! are checked here before the shared validation, and the sequence counter follows
//! keepalived's rules. XDP leaves them out of its fast path.

pub mod fast;
pub mod reload;
pub mod resume;
pub mod setup;
pub mod tracking;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use ka_common::vrrp::{
    ah::{encode_ah_advert, AhAdvert, AhIpFields, AhSeq, AH_IP_HDR_LEN, AH_LEN},
    validate, AddrList, AdvertV2, AdvertV3, DropReason, Family, PseudoHeader, RxCheck, Version, VRRP_MAX_LEN, VRRP_TTL,
};
use serde::{Deserialize, Serialize};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use tracing::{debug, info, warn};

use crate::lb::vrrp_fast::{AsyncEventReader, EventKind, FastParams};

use crate::{
    net::{
        garp::{garp_frame, na_frame, virtual_mac, FrameSender},
        netlink::{AddrSpec, NetlinkClient, NetlinkError},
        vrrp_socket::{Outgoing, Received, VrrpSocket},
    },
    notify::{self, script::Runner, smtp::SmtpConfig, Subject},
    vrrp::{
        track::{contribution, file_contribution, TrackSet, TrackStatus},
        Action, Event, Instance, MemberStatus, Notify, RxAdvert, State, SyncAction, SyncGroup, Time, TimerKind,
    },
};
use setup::{InstanceSetup, TrackKey, VipSetup};
use tracking::TrackerUpdate;

/// Errors that stop the engine from starting.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Netlink trouble.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// An interface has no usable address for adverts.
    #[error("vrrp_instance {instance}: interface {iface} has no {family} address to send adverts from")]
    NoSource {
        /// Instance.
        instance: String,
        /// Interface.
        iface: String,
        /// `IPv4` or `IPv6 link-local`.
        family: &'static str,
    },
    /// A socket could not be opened.
    #[error("vrrp_instance {instance}: {source}")]
    Socket {
        /// Instance.
        instance: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The engine has stopped.
    #[error("the VRRP engine has stopped")]
    Gone,
    /// The engine's own thread or runtime cannot be started.
    #[error("the VRRP engine's thread cannot be started: {0}")]
    Thread(#[source] std::io::Error),
    /// Another reload is being applied.
    #[error("the VRRP engine is applying another reload")]
    ReloadBusy,
    /// The reload was planned against other instances than the running ones.
    #[error("the reload does not match the {running} running VRRP instances")]
    ReloadMismatch {
        /// Instances running.
        running: usize,
    },
    /// Parameters refused by the state machine.
    #[error("vrrp_instance {instance}: {source}")]
    Params {
        /// Instance.
        instance: String,
        /// Cause.
        #[source]
        source: crate::vrrp::ParamsError,
    },
}

/// Global settings the engine needs besides the instances.
#[derive(Clone, Debug)]
pub struct EngineGlobals {
    /// Notify script runner (script_user, enable_script_security).
    pub runner: Runner,
    /// `notify_fifo` and `vrrp_notify_fifo` (each line goes to both, as keepalived writes it),
    /// with the scripts the engine starts for them ([`notify::fifo::specs`]).
    pub fifos: Vec<notify::fifo::FifoSpec>,
    /// `fifo_write_vrrp_states_on_reload`.
    pub fifo_states_on_reload: bool,
    /// `no_email_faults`: no SMTP alert for a transition to FAULT.
    pub no_email_faults: bool,
    /// SMTP settings, when `smtp_server` and `notification_email` are set.
    pub smtp: Option<SmtpConfig>,
    /// How gratuitous ARPs / NAs are spaced (`garp_group`, `vrrp_garp_interval`,
    /// `vrrp_gna_interval`).
    pub garp_pacing: setup::GarpPacing,
    /// `disable_local_igmp`: `net.ipv4.igmp_link_local_mcast_reports` off while running.
    pub disable_local_igmp: bool,
    /// `vrrp_rx_bufs_policy` and `vrrp_rx_bufs_multiplier`.
    pub rx_bufs: (Option<crate::config::model::RxBufsPolicy>, u32),
    /// `max_auto_priority` / `min_auto_priority_delay` for the engine's thread.
    pub auto_priority: crate::threads::AutoPriority,
    /// `interface_up_down_delays`: per interface, (down, up) delays of its tracked state;
    /// shared with the link poller, so that a reload's new delays reach it.
    pub if_delays: Arc<std::sync::RwLock<HashMap<String, (Duration, Duration)>>>,
    /// Sync groups: name and notify scripts.
    pub groups: Vec<(String, setup::NotifySetup, bool)>,
    /// `vrrp_script` definitions by name.
    pub scripts: Vec<tracking::ScriptDef>,
    /// `vrrp_track_file` definitions by name.
    pub files: Vec<tracking::FileDef>,
    /// `vrrp_track_process` definitions by name.
    pub processes: Vec<tracking::ProcessDef>,
    /// Where mastership changes go (the datapath and the health checkers follow them).
    pub events: Option<mpsc::UnboundedSender<EngineEvent>>,
    /// The `no_accept` firewall's tables ([`crate::net::firewall::Settings`]).
    pub firewall: crate::net::firewall::Settings,
    /// The mastership record ([`resume`]): read at start to resume as Master after a
    /// restart, kept up to date while running. `None`: never resume.
    pub state_file: Option<std::path::PathBuf>,
    /// Tuning of the engine's thread (`vrrp_priority`, `vrrp_rt_priority`,
    /// `vrrp_cpu_affinity`, `vrrp_process_name`), set at start.
    pub sched: crate::threads::Tuning,
    /// `log_unknown_vrids`: log each advert for a VRID no instance runs on its socket.
    pub log_unknown_vrids: bool,
    /// What the BFD sessions report ([`crate::bfd::io`]); `None`: every `track_bfd` sees its
    /// session down.
    pub bfd: Option<tokio::sync::watch::Receiver<crate::bfd::io::ClientStates>>,
}

/// What the engine tells the rest of the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineEvent {
    /// An instance became Master (`master`) or stopped being one.
    Mastership {
        /// Instance name.
        instance: String,
        /// Its virtual addresses (excluded ones included).
        vips: Vec<IpAddr>,
        /// Master now.
        master: bool,
        /// Packets to the VIPs are accepted (owner or accept mode).
        accept: bool,
    },
}

/// One tracker's state, as reported.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TrackerReport {
    /// `kind:name`.
    pub name: String,
    /// `init`, `up` or `down` (files: `value N`).
    pub status: String,
    /// Weight applied.
    pub weight: i32,
}

/// One instance's state, as `ka status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstanceReport {
    /// Name.
    pub name: String,
    /// Interface.
    pub interface: String,
    /// VRID.
    pub vrid: u8,
    /// VRRP version.
    pub version: u8,
    /// State: INIT, BACKUP, MASTER or FAULT.
    pub state: String,
    /// Configured priority.
    pub priority: u8,
    /// Effective priority (tracking applied).
    pub effective_priority: u8,
    /// Address of the current master (ourselves when MASTER), if known.
    pub master: Option<IpAddr>,
    /// Seconds in the current state.
    pub in_state_s: u64,
    /// Adverts received and accepted.
    pub adverts_rx: u64,
    /// Adverts sent.
    pub adverts_tx: u64,
    /// Adverts dropped, by reason.
    pub adverts_dropped: BTreeMap<String, u64>,
    /// Transitions to MASTER since start.
    #[serde(default)]
    pub became_master: u64,
    /// Transitions out of MASTER since start.
    #[serde(default)]
    pub released_master: u64,
    /// Valid adverts received with priority 0 (a master resigning).
    #[serde(default)]
    pub priority_zero_rx: u64,
    /// Adverts sent with priority 0 (resigning).
    #[serde(default)]
    pub priority_zero_tx: u64,
    /// When the state last changed (or the instance started), microseconds since the Unix
    /// epoch.
    #[serde(default)]
    pub last_transition_unix_us: u64,
    /// The XDP fast path validates this instance's adverts (steady ones never reach
    /// userspace).
    #[serde(default)]
    pub xdp_fast_path: bool,
    /// Changes the XDP fast path reported on its ring buffer for this instance.
    #[serde(default)]
    pub xdp_changes: u64,
    /// Master-down expiries deferred because XDP had seen the master recently.
    #[serde(default)]
    pub xdp_deferrals: u64,
    /// As MASTER, answers to adverts below our priority withheld: at most one goes out per
    /// advert interval (`crate::vrrp::AnswerLimit`).
    #[serde(default)]
    pub answers_withheld: u64,
    /// Trackers.
    pub trackers: Vec<TrackerReport>,
    /// Virtual addresses.
    pub vips: Vec<String>,
}

/// The engine's state, as `ka status` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EngineReport {
    /// Every instance.
    pub instances: Vec<InstanceReport>,
    /// Adverts dropped before reaching an instance (unknown VRID, too short to name one), by
    /// reason.
    pub dropped: BTreeMap<String, u64>,
}

/// One instance's name and state: the cheap part of [`InstanceReport`], for callers that
/// need every instance's mastership (the dataplane and the checkers after a reload, systemd's
/// status line) without building a full report of tens of thousands of instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceState {
    /// Name.
    pub name: String,
    /// INIT, BACKUP, MASTER or FAULT.
    pub state: &'static str,
}

/// Requests to the engine.
#[derive(Debug)]
pub enum Command {
    /// Report every instance.
    Status(oneshot::Sender<EngineReport>),
    /// Every instance's name and state, in configuration order.
    States(oneshot::Sender<Vec<InstanceState>>),
    /// Resign (priority 0 adverts), remove VIPs, notify STOP, and stop.
    Shutdown(oneshot::Sender<()>),
    /// Apply a reload (see [`reload`]); the answer says whether it was applied (on error,
    /// nothing changed).
    Reload(Box<reload::ReloadRequest>, oneshot::Sender<Result<(), EngineError>>),
    /// Stop without resigning (keepalived `--dont-release-vrrp`): the VIPs stay, the
    /// mastership record is refreshed for the next process to resume from.
    Detach(oneshot::Sender<()>),
}

/// A handle on the running engine.
#[derive(Debug)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
    /// Closed when the engine's thread has finished.
    task: oneshot::Receiver<()>,
}

impl EngineHandle {
    /// Every instance's report, and the engine's own counters.
    pub async fn status(&self) -> EngineReport {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Status(tx)).await.is_err() {
            return EngineReport::default();
        }
        rx.await.unwrap_or_default()
    }

    /// [`EngineHandle::status`] as a detached future: a caller that must not wait (the
    /// daemon's loop) hands it to a task of its own.
    pub fn status_task(&self) -> impl std::future::Future<Output = EngineReport> + Send + 'static {
        let tx = self.tx.clone();
        async move {
            let (reply, rx) = oneshot::channel();
            if tx.send(Command::Status(reply)).await.is_err() {
                return EngineReport::default();
            }
            rx.await.unwrap_or_default()
        }
    }

    /// A cheap, cloneable way to ask for [`EngineHandle::status`] from a task of its own.
    pub fn probe(&self) -> StatusProbe {
        StatusProbe(self.tx.clone())
    }

    /// Every instance's name and state, in configuration order (empty once the engine has
    /// stopped); much cheaper for the engine than [`EngineHandle::status`].
    pub async fn states(&self) -> Vec<InstanceState> {
        self.probe().states().await
    }

    /// Applies a reload and waits until it is applied.
    ///
    /// # Errors
    /// An interface, socket or parameter of the new configuration cannot be used (nothing
    /// changed then), or the engine has stopped.
    pub async fn reload(&self, req: reload::ReloadRequest) -> Result<(), EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Reload(Box::new(req), tx)).await.map_err(|_| EngineError::Gone)?;
        rx.await.map_err(|_| EngineError::Gone)?
    }

    /// Resolves once the engine's task has stopped (for the daemon's supervision: it never
    /// stops on its own).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let tx = self.tx.clone();
        async move { tx.closed().await }
    }

    /// Stops the engine without resigning or removing VIPs, and waits for it.
    pub async fn detach(self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Detach(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let _ = self.task.await;
    }

    /// Shuts the engine down cleanly and waits for it.
    pub async fn shutdown(self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let _ = self.task.await;
    }
}

/// Asks a running engine for its report (see [`EngineHandle::probe`]).
#[derive(Clone, Debug)]
pub struct StatusProbe(mpsc::Sender<Command>);

impl StatusProbe {
    /// Every instance's report (empty once the engine has stopped).
    pub async fn report(&self) -> EngineReport {
        let (reply, rx) = oneshot::channel();
        if self.0.send(Command::Status(reply)).await.is_err() {
            return EngineReport::default();
        }
        rx.await.unwrap_or_default()
    }

    /// Every instance's name and state (see [`EngineHandle::states`]).
    pub async fn states(&self) -> Vec<InstanceState> {
        let (reply, rx) = oneshot::channel();
        if self.0.send(Command::States(reply)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

/// A received packet, from a socket task to the engine.
struct RxPacket {
    sock: usize,
    meta: Received,
    data: Vec<u8>,
}

const KIND_SLOTS: [TimerKind; 5] =
    [TimerKind::Advert, TimerKind::MasterDown, TimerKind::StartupDelay, TimerKind::GarpDelay, TimerKind::LowerPrioGarp];
/// Engine-owned timer slot for `garp_master_refresh`.
const SLOT_REFRESH: usize = 5;
/// Engine-owned timer slot for `garp_extra_if` (the last slot: reloads move slots
/// `0..=SLOT_EXTRA_IF`).
const SLOT_EXTRA_IF: usize = 6;

/// The time a fired timer is handled at: its deadline, so adverts keep their phase; but an
/// advert timer found a whole `interval` late or more is handled at `now`, so one advert goes
/// out and the next follows an interval later (RFC 5798 §6.4.3: reset the Adver_Timer to
/// Advertisement_Interval) instead of a burst of every advert missed, which would make an
/// engine that was held up fall further behind.
fn fired_at(kind: TimerKind, deadline: Time, now: Time, interval: Duration) -> Time {
    if kind == TimerKind::Advert && now.saturating_since(deadline) >= interval {
        now
    } else {
        deadline
    }
}

fn slot(kind: TimerKind) -> usize {
    KIND_SLOTS.iter().position(|k| *k == kind).unwrap_or(0)
}

struct Counters {
    rx: u64,
    tx: u64,
    /// Transitions to MASTER.
    became_master: u64,
    xdp_changes: u64,
    xdp_deferrals: u64,
    drops: BTreeMap<DropReason, u64>,
    last_drop_log: Option<Instant>,
    /// keepalived's other statistics (its `/tmp/keepalived.stats`).
    more: MoreCounters,
}

/// Counters keepalived keeps and ka shows only in keepalived's dumps.
#[derive(Default)]
struct MoreCounters {
    /// Transitions out of MASTER.
    released_master: u64,
    /// Valid adverts received with priority 0.
    pri_zero_rx: u64,
    /// Adverts queued with priority 0 (resignations).
    pri_zero_tx: u64,
    /// When the state last changed (or the instance started), wall clock.
    last_transition: Option<std::time::SystemTime>,
}

/// A gratuitous ARP or unsolicited NA frame, and whether it is an NA.
type Frame = (Vec<u8>, bool);

/// An interface other than the instance's own holding some of its VIPs (`dev`): their
/// gratuitous ARPs / NAs go out there, from its MAC, as keepalived sends them on the VIP's
/// interface; `garp_extra_if` refreshes it.
struct VipIf {
    ifindex: u32,
    iface: String,
    mac: [u8; 6],
    link_local: Option<std::net::Ipv6Addr>,
    sender: Arc<FrameSender>,
}

struct Rt {
    setup: InstanceSetup,
    /// The socket its adverts are received on.
    rx_sock: usize,
    fsm: Instance,
    ifindex: u32,
    /// Interface the VIPs and GARPs go on (the VMAC when use_vmac).
    vip_ifindex: u32,
    /// The VMACs of VIPs that have their own (`use_vmac_addr`): (interface, IPv6) -> ifindex.
    addr_vmacs: Vec<((String, bool), u32)>,
    /// The index of each interface those VMACs are made on.
    addr_vmac_bases: Vec<(String, u32)>,
    mac: [u8; 6],
    /// Socket its adverts are sent on: the VMAC's with use_vmac (IPv4), so they carry the
    /// virtual MAC; else the base interface's, which receives them (see `by_vrid`).
    tx_sock: usize,
    src: IpAddr,
    link_local: Option<std::net::Ipv6Addr>,
    vips: Vec<AddrSpec>,
    routes: Vec<crate::net::netlink::RouteSpec>,
    adv_addrs: Vec<IpAddr>,
    adv_bytes: Vec<u8>,
    armed: [Option<Time>; SLOT_EXTRA_IF + 1],
    track: TrackSet<TrackKey>,
    track_status: BTreeMap<TrackKey, String>,
    state_since: Instant,
    counters: Counters,
    garp: Option<Arc<FrameSender>>,
    /// The other interfaces holding its VIPs.
    vip_ifs: Vec<VipIf>,
    /// `garp_extra_if`: the VIP announced on each interface refreshed while Master (an index
    /// into `vip_ifs`).
    extra_if: Vec<(usize, IpAddr)>,
    /// The instance's key in the XDP fast path, when XDP is attached to its interface.
    fast_key: Option<ka_common::vrrp_fast::VrrpKey>,
    /// What was last written to its fast-path entry (rewritten only when it changes).
    fast_written: Option<FastParams>,
    /// Its VIPs are in the no_accept drop sets.
    blocked: bool,
    /// `auth_type AH`: keepalived's sequence counter (shared by sending and receiving).
    ah_seq: AhSeq,
    /// `auth_type AH`: IP ID of the last advert (keepalived numbers them from 1, never 0).
    ip_id: u16,
}

struct Engine {
    epoch: Instant,
    /// GARP/NA spacing per delay group ([`setup::GarpPacing`]), shared by every instance.
    pacers: std::sync::Mutex<HashMap<String, crate::vrrp::garp::Pacer>>,
    /// Sysctls changed at start (`promote_secondaries`, `disable_local_igmp`), restored at stop.
    sysctls: Vec<crate::net::sysctl::Saved>,
    /// The instances, each in a slot of its own that it keeps across reloads (timers,
    /// `by_vrid` and sync groups name slots); a deleted instance's slot is taken by the last
    /// one (see [`reload`]).
    inst: Vec<Rt>,
    /// The slots in configuration order (as `ka status` lists the instances).
    order: Vec<usize>,
    sockets: Sockets,
    by_vrid: HashMap<(usize, u8), usize>,
    timers: BTreeSet<(Time, usize, usize)>,
    groups: Vec<(SyncGroup<usize>, String, setup::NotifySetup, bool)>,
    group_of: HashMap<usize, usize>,
    globals: EngineGlobals,
    /// The notify FIFOs, open (created if missing, removed at stop) while the engine runs.
    fifos: std::sync::Mutex<notify::fifo::NotifyFifos>,
    /// Slots a reload being applied started fresh (`fifo_write_vrrp_states_on_reload` skips
    /// them).
    fresh_slots: Vec<usize>,
    netlink: NetlinkClient,
    unknown_vrid: u64,
    too_short: u64,
    /// AH packets too malformed to name an instance, by reason.
    ah_malformed: BTreeMap<DropReason, u64>,
    fast: Option<fast::FastPath>,
    /// The no_accept firewall, when an instance needs it.
    no_accept: Option<crate::net::firewall::NoAcceptWorker>,
    /// Adverts built during this turn of the loop, per socket: sent together by
    /// [`Engine::flush`] with one sendmmsg per socket, and counted per instance.
    outbox: Vec<Vec<Outgoing>>,
    outbox_owner: Vec<Vec<usize>>,
    /// Where receive tasks of sockets opened by a reload send.
    rx_tx: mpsc::Sender<Vec<RxPacket>>,
    /// Where trackers started by a reload report.
    track_tx: mpsc::Sender<TrackerUpdate>,
    /// Tracked objects with a running tracker.
    tracked: BTreeSet<TrackKey>,
    /// Each tracker's last value, carried over to the instances of a reload.
    last_track: HashMap<TrackKey, tracking::TrackValue>,
    /// Interfaces XDP is attached to (the fast path's), for instances a reload adds.
    fast_ifindexes: Option<BTreeSet<u32>>,
    /// Keeps the mastership record for a restart.
    recorder: Option<resume::Recorder>,
    /// Instances that resume as Master (see [`resume::resumable`]).
    resuming: BTreeSet<usize>,
}

/// The updates of a batch (`by_key`: tracked object → positions in the batch) that concern an
/// instance tracking `track`, in arrival order, with the weight it gives each (an object
/// tracked twice counts once, with its first weight).
fn updates_of<'k>(track: &'k [(TrackKey, crate::vrrp::track::Weight)], by_key: &HashMap<&'k TrackKey, Vec<usize>>) -> Vec<(usize, crate::vrrp::track::Weight)> {
    let mut mine = Vec::new();
    for (n, (k, w)) in track.iter().enumerate() {
        if track[..n].iter().any(|(seen, _)| seen == k) {
            continue;
        }
        mine.extend(by_key.get(k).into_iter().flatten().map(|u| (*u, *w)));
    }
    mine.sort_unstable_by_key(|(u, _)| *u);
    mine
}

/// Tracker updates handled in one pass over the instances, at most (see `Engine::trackers`).
const TRACK_BATCH: usize = 1024;

/// Timer resolution: deadlines are served on 1 ms ticks, so instances whose adverts fall in
/// the same millisecond share one wake-up and one sendmmsg.
const TICK: Duration = Duration::from_millis(1);

/// With the XDP fast path, how far ahead of their deadline master-down timers are looked at
/// (and re-armed from XDP's last-seen time) when the engine is awake anyway.
const FAST_EARLY: Duration = Duration::from_millis(4);

/// The ifindex of interface `name`: `env_links` as read from the kernel, plus the instance's
/// own VMAC interface (`vmac`, at `vmac_ifindex`), which may be newer than the read. Looked up
/// rather than merged into a copy of the map: a copy per instance made a reload of 65,024
/// instances copy 16 million names.
fn link_of<'a>(env_links: &'a HashMap<String, u32>, vmac: Option<&'a str>, vmac_ifindex: u32) -> impl Fn(&str) -> Option<u32> + 'a {
    move |name| if vmac == Some(name) { Some(vmac_ifindex) } else { env_links.get(name).copied() }
}

/// [`addr_spec`] with the VIP's [`setup::Placement`]: the instance's own interface
/// (`ifindex`, named `iface`) or a VMAC of its own from `vmacs`.
fn placed_spec(v: &VipSetup, vip_ifindex: u32, ifindex: u32, iface: &str, vmacs: &[((String, bool), u32)], links: &impl Fn(&str) -> Option<u32>) -> AddrSpec {
    let mut a = addr_spec(v, vip_ifindex, links);
    match v.placement {
        setup::Placement::Instance => {}
        setup::Placement::Base => {
            if v.dev.is_none() {
                a.ifindex = ifindex;
            }
        }
        setup::Placement::OwnVmac => {
            let base = v.dev.as_deref().unwrap_or(iface);
            if let Some((_, idx)) = vmacs.iter().find(|((b, v6), _)| b == base && *v6 == v.addr.is_ipv6()) {
                a.ifindex = *idx;
            }
        }
    }
    a
}

fn addr_spec(v: &VipSetup, default_ifindex: u32, links: &impl Fn(&str) -> Option<u32>) -> AddrSpec {
    AddrSpec {
        ifindex: v.dev.as_deref().and_then(links).unwrap_or(default_ifindex),
        addr: v.addr,
        prefix: v.prefix,
        broadcast: v.broadcast,
        peer: v.peer,
        scope: v.scope,
        label: v.label.clone(),
        flags: v.flags,
    }
}

/// A tracker value's contribution to an instance with weight `w`, and its status label.
fn track_value(value: tracking::TrackValue, w: crate::vrrp::track::Weight) -> (crate::vrrp::track::Contribution, String) {
    match value {
        tracking::TrackValue::Status(st) => (contribution(st, w), match st {
            TrackStatus::Init => "init".to_owned(),
            TrackStatus::Up => "up".to_owned(),
            TrackStatus::Down => "down".to_owned(),
        }),
        tracking::TrackValue::File(v) => (file_contribution(v, w), format!("value {v}")),
    }
}

/// A `virtual_routes` entry with its interfaces resolved. The config check dropped entries
/// naming an interface that did not exist; one that went away since is left for the kernel to
/// decide (no `dev`), with a warning.
pub(crate) fn route_spec(r: &crate::config::model::Route, links: &impl Fn(&str) -> Option<u32>) -> crate::net::netlink::RouteSpec {
    let resolve = |d: &Option<String>| {
        d.as_ref().and_then(|d| {
            let i = links(d);
            if i.is_none() {
                warn!(route = %r.dst, dev = %d, "route interface not found at start");
            }
            i
        })
    };
    crate::net::netlink::RouteSpec { route: r.clone(), ifindex: resolve(&r.dev), hop_ifindex: r.nexthops.iter().map(|n| resolve(&n.dev)).collect() }
}

fn state_name(s: State) -> &'static str {
    s.name()
}

/// Starts the engine on a thread of its own with its own single-threaded tokio runtime (as
/// keepalived runs VRRP in a process of its own): no other task of the daemon, and no blocking
/// work such as parsing a reloaded configuration, shares its worker, so adverts go out on time
/// whatever the rest of the daemon does. The thread takes the scheduling of
/// [`EngineGlobals::sched`]. The engine resolves interfaces, opens sockets, cleans up leftover
/// VIPs of a crashed run (a Backup must not hold them; nothing flaps because nothing was
/// Master yet), starts the trackers and every instance.
///
/// # Errors
/// See [`EngineError`].
pub async fn start(
    setups: Vec<InstanceSetup>,
    globals: EngineGlobals,
    netlink: NetlinkClient,
    fast_input: Option<fast::FastInput>,
) -> Result<EngineHandle, EngineError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let scheduling = globals.sched.clone();
    std::thread::Builder::new()
        .name("ka-vrrp".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(EngineError::Thread(e)));
                    return;
                }
            };
            crate::threads::apply_self(crate::threads::Part::Vrrp, &scheduling);
            rt.block_on(async move {
                match open(setups, globals, netlink, fast_input).await {
                    Ok((tx, run)) => {
                        let _ = ready_tx.send(Ok(tx));
                        run.await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
            // Receivers, trackers and scripts still running stop with the runtime; nothing
            // waits for a script that hangs.
            rt.shutdown_background();
            drop(done_tx);
        })
        .map_err(EngineError::Thread)?;
    let tx = ready_rx.await.map_err(|_| EngineError::Gone)??;
    Ok(EngineHandle { tx, task: done_rx })
}

/// The engine set up on the calling (engine) thread's runtime: its command channel and its
/// main loop, to run there.
async fn open(
    setups: Vec<InstanceSetup>,
    globals: EngineGlobals,
    netlink: NetlinkClient,
    fast_input: Option<fast::FastInput>,
) -> Result<(mpsc::Sender<Command>, impl std::future::Future<Output = ()>), EngineError> {
    let env = SysView::read(&netlink).await?;
    let record = globals.state_file.as_deref().and_then(resume::read);
    let start = StartUp { record: record.as_ref(), mono_now: fast::monotonic_now() };
    let mut resuming = BTreeSet::new();
    let (rx_tx, rx_rx) = mpsc::channel::<Vec<RxPacket>>(256);
    let mut sockets = Sockets::default();
    let fast_ifindexes = fast_input.as_ref().map(|f| f.ifindexes.clone());
    let mut inst = Vec::new();
    let mut by_vrid = HashMap::new();
    for s in setups {
        let (r, resume) = build_instance(s, &env, &mut sockets, &netlink, fast_ifindexes.as_ref(), Some(&start)).await?;
        if resume {
            resuming.insert(inst.len());
        }
        by_vrid.insert((r.rx_sock, r.setup.params.vrid), inst.len());
        inst.push(r);
    }
    sockets.spawn_receivers(&rx_tx);
    let mut groups = Vec::new();
    let mut group_of = HashMap::new();
    for (name, notify, smtp) in &globals.groups {
        let members: Vec<usize> = inst.iter().enumerate().filter(|(_, r)| r.setup.sync_group.as_deref() == Some(name)).map(|(i, _)| i).collect();
        // A sync group resumes as a whole or not at all.
        if !members.iter().all(|m| resuming.contains(m)) {
            for m in &members {
                resuming.remove(m);
            }
        }
        for m in &members {
            group_of.insert(*m, groups.len());
        }
        groups.push((SyncGroup::new(members), name.clone(), notify.clone(), *smtp));
    }
    let (track_tx, track_rx) = mpsc::channel::<TrackerUpdate>(1024);
    let keys: BTreeSet<TrackKey> = inst.iter().flat_map(|r| r.setup.track.iter().map(|(k, _)| k.clone())).collect();
    tracking::spawn(keys.clone(), &globals, netlink.clone(), track_tx.clone());
    let (tx, cmd_rx) = mpsc::channel(64);
    let epoch = Instant::now();
    let (fast, fast_events) = match fast_input {
        Some(f) => {
            let events = match f.events.into_async() {
                Ok(e) => Some(e),
                Err(e) => {
                    warn!(error = %e, "XDP VRRP fast path: cannot watch its ring buffer; changes still arrive on the raw sockets");
                    None
                }
            };
            (Some(fast::FastPath { maps: f.maps, mono_epoch: fast::monotonic_now() }), events)
        }
        None => (None, None),
    };
    for r in &inst {
        match r.fast_key {
            Some(_) => info!(instance = %r.setup.name, iface = %r.setup.iface, steady_in_xdp = fast::steady_drop_allowed(&r.setup), "XDP VRRP fast path on"),
            None if r.setup.auth.ah_key().is_some() => {
                info!(instance = %r.setup.name, iface = %r.setup.iface, "auth_type AH: adverts are IPsec AH packets, validated in userspace only (no XDP fast path)")
            }
            None if fast.is_some() => warn!(instance = %r.setup.name, iface = %r.setup.iface, "XDP is not attached to this interface: every advert is received on the raw socket"),
            None => {}
        }
    }
    let mut engine = Engine {
        epoch,
        pacers: std::sync::Mutex::new(HashMap::new()),
        sysctls: Vec::new(),
        order: (0..inst.len()).collect(),
        inst,
        sockets,
        by_vrid,
        timers: BTreeSet::new(),
        groups,
        group_of,
        fifos: std::sync::Mutex::new(notify::fifo::NotifyFifos::open(&globals.fifos, Some(&globals.runner))),
        fresh_slots: Vec::new(),
        globals,
        netlink,
        unknown_vrid: 0,
        too_short: 0,
        ah_malformed: BTreeMap::new(),
        fast,
        no_accept: None,
        outbox: Vec::new(),
        outbox_owner: Vec::new(),
        rx_tx,
        track_tx,
        tracked: keys,
        last_track: HashMap::new(),
        fast_ifindexes,
        recorder: None,
        resuming,
    };
    engine.sysctls = start_sysctls(engine.inst.iter(), engine.globals.disable_local_igmp);
    set_rx_bufs(&engine.inst, &engine.sockets, engine.globals.rx_bufs);
    engine.recorder = engine.globals.state_file.clone().map(resume::Recorder::new);
    engine.outbox = vec![Vec::new(); engine.sockets.socks.len()];
    engine.outbox_owner = vec![Vec::new(); engine.sockets.socks.len()];
    for i in 0..engine.inst.len() {
        engine.sync_fast(i);
    }
    // no_accept (RFC 5798 Accept_Mode false) for a non-owner, or a VMAC (keepalived's IGMP/MLD
    // rules): the tables are (re)created now, so ones left by a crashed run go.
    if engine.inst.iter().any(needs_firewall) {
        let fw = crate::net::firewall::NoAcceptWorker::spawn(engine.globals.firewall.clone());
        fw.vmacs(engine.inst.iter().flat_map(fw_vmacs).collect(), true);
        engine.no_accept = Some(fw);
    }
    Ok((tx, async move { engine.run(rx_rx, track_rx, cmd_rx, fast_events).await }))
}

/// A reload request with the kernel's view read for it.
struct ReloadRead {
    req: Box<reload::ReloadRequest>,
    env: Result<SysView, EngineError>,
    done: oneshot::Sender<Result<(), EngineError>>,
}

/// Interfaces and addresses as the kernel has them, read once per start or reload.
struct SysView {
    links: HashMap<String, u32>,
    macs: HashMap<u32, Vec<u8>>,
    /// Addresses by interface, in the kernel's order: a host with tens of thousands of VIPs
    /// is not searched whole for each instance.
    addrs: HashMap<u32, Vec<IpAddr>>,
}

impl SysView {
    async fn read(netlink: &NetlinkClient) -> Result<SysView, EngineError> {
        let all = netlink.links().await?;
        let macs = all.iter().map(|l| (l.index, l.mac.clone())).collect();
        let links = all.into_iter().map(|l| (l.name, l.index)).collect();
        let mut addrs: HashMap<u32, Vec<IpAddr>> = HashMap::new();
        for (ifindex, addr, _) in netlink.list_addrs(None).await? {
            addrs.entry(ifindex).or_default().push(addr);
        }
        Ok(SysView { links, macs, addrs })
    }

    /// The addresses on interface `ifindex`.
    fn addrs_of(&self, ifindex: u32) -> &[IpAddr] {
        self.addrs.get(&ifindex).map_or(&[], Vec::as_slice)
    }

    /// Whether `addr` is on interface `ifindex`.
    fn has_addr(&self, ifindex: u32, addr: IpAddr) -> bool {
        self.addrs_of(ifindex).contains(&addr)
    }
}

/// The sockets instances share, kept so that a reload reuses them.
#[derive(Default)]
struct Sockets {
    socks: Vec<Arc<VrrpSocket>>,
    /// Receiving socket per (ifindex, IPv6, AH).
    sock_key: HashMap<(u32, bool, bool), usize>,
    /// Groups joined per socket: every multicast instance's own (`mcast_dst_ip` may differ).
    joined: HashMap<usize, BTreeSet<IpAddr>>,
    /// Send-only sockets on VMAC interfaces, by (ifindex, AH).
    tx_key: HashMap<(u32, bool), usize>,
    garps: HashMap<u32, Arc<FrameSender>>,
    /// Sockets whose receive task runs.
    receiving: BTreeSet<usize>,
}

impl Sockets {
    /// The receiving socket of an instance on `ifindex` (opened and shared per interface,
    /// family and AH), with its multicast group joined unless it has unicast peers.
    fn receiving(&mut self, s: &InstanceSetup, ifindex: u32, src: IpAddr) -> Result<usize, EngineError> {
        let v6 = s.params.family == Family::V6;
        let ah = s.auth.ah_key().is_some();
        let key = (ifindex, v6, ah);
        // One socket per (interface, family), shared by its instances: each advert carries its
        // instance's source address, and every multicast instance's group is joined. AH
        // instances share an IP protocol 51 socket of their own (keepalived's likewise).
        let sock = match self.sock_key.get(&key) {
            Some(i) => *i,
            None => {
                let sk = if ah { VrrpSocket::open_ah(&s.iface, ifindex, None) } else { VrrpSocket::open(&s.iface, ifindex, Some(src), None, v6) }
                    .map_err(|source| EngineError::Socket { instance: s.name.clone(), source })?;
                self.socks.push(Arc::new(sk));
                self.sock_key.insert(key, self.socks.len() - 1);
                self.socks.len() - 1
            }
        };
        if s.peers.is_empty() && self.joined.entry(sock).or_default().insert(s.group) {
            self.socks[sock].join(s.group).map_err(|source| EngineError::Socket { instance: s.name.clone(), source })?;
        }
        Ok(sock)
    }

    /// The socket an instance sends on: with use_vmac (IPv4), a send-only socket on the VMAC
    /// interface `vip_ifindex` (named `vmac`), so adverts carry the virtual MAC; else `rx`.
    fn sending(&mut self, s: &InstanceSetup, rx: usize, ifindex: u32, vip_ifindex: u32, src: IpAddr) -> Result<usize, EngineError> {
        let v6 = s.params.family == Family::V6;
        let ah = s.auth.ah_key().is_some();
        // keepalived use_vmac: adverts leave through the VMAC, from the virtual MAC (IPv4; an
        // IPv6 advert's link-local source belongs to the base interface, so those stay there).
        // vmac_xmit_base: adverts stay on the base interface, from its MAC (keepalived).
        match (&s.vmac, v6) {
            (Some(name), false) if vip_ifindex != ifindex && !s.vmac_xmit_base => match self.tx_key.get(&(vip_ifindex, ah)) {
                Some(t) => Ok(*t),
                None => {
                    let sk = if ah { VrrpSocket::open_ah(name, vip_ifindex, None) } else { VrrpSocket::open(name, vip_ifindex, Some(src), None, false) }
                        .and_then(|sk| sk.discard_input().map(|()| sk))
                        .map_err(|source| EngineError::Socket { instance: s.name.clone(), source })?;
                    self.socks.push(Arc::new(sk));
                    self.tx_key.insert((vip_ifindex, ah), self.socks.len() - 1);
                    Ok(self.socks.len() - 1)
                }
            },
            _ => Ok(rx),
        }
    }

    /// Starts a receive task for every receiving socket that has none yet.
    fn spawn_receivers(&mut self, tx: &mpsc::Sender<Vec<RxPacket>>) {
        let send_only: BTreeSet<usize> = self.tx_key.values().copied().collect();
        for (i, s) in self.socks.iter().enumerate() {
            if !send_only.contains(&i) && self.receiving.insert(i) {
                spawn_rx(i, s.clone(), tx.clone());
            }
        }
    }
}

/// What start-up knows that a reload does not: the mastership record of the previous process.
struct StartUp<'a> {
    /// The record, if one was left.
    record: Option<&'a resume::Record>,
    /// CLOCK_MONOTONIC now.
    mono_now: std::time::Duration,
}

/// Sets the sysctls keepalived sets at start: `promote_secondaries` on the interfaces of the
/// instances asking for it, `igmp_link_local_mcast_reports` off with `disable_local_igmp`.
/// Returns those changed, to restore at stop.
fn start_sysctls<'a>(inst: impl Iterator<Item = &'a Rt>, disable_local_igmp: bool) -> Vec<crate::net::sysctl::Saved> {
    use crate::net::sysctl;
    let mut paths: Vec<std::path::PathBuf> = Vec::new();
    for r in inst.filter(|r| r.setup.promote_secondaries) {
        let p = sysctl::promote_secondaries_path(&r.setup.iface);
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    let mut wanted: Vec<(std::path::PathBuf, &str)> = paths.into_iter().map(|p| (p, "1")).collect();
    if disable_local_igmp {
        wanted.push((sysctl::IGMP_LINK_LOCAL_REPORTS.into(), "0"));
    }
    let mut saved = Vec::new();
    for (p, v) in wanted {
        match sysctl::set(&p, v) {
            Ok(Some(s)) => saved.push(s),
            Ok(None) => {}
            Err(e) => warn!(sysctl = %p.display(), error = %e, "cannot set sysctl"),
        }
    }
    saved
}

/// `vrrp_rx_bufs_policy` / `kernel_rx_buf_size`: each receive socket's `SO_RCVBUF`, summed over
/// its instances as keepalived 2.2.7 does; unset, ka's own default stays.
fn set_rx_bufs(inst: &[Rt], sockets: &Sockets, (policy, mult): (Option<crate::config::model::RxBufsPolicy>, u32)) {
    for (n, sock) in sockets.socks.iter().enumerate() {
        let members: Vec<RxBufMember> = inst
            .iter()
            .filter(|r| r.rx_sock == n)
            .map(|r| RxBufMember {
                kernel: r.setup.kernel_rx_buf_size,
                mtu: crate::net::vrrp_socket::interface_mtu(&r.setup.iface).unwrap_or(1500),
                advert: advert_len(r),
            })
            .collect();
        if let Some(bytes) = rx_buf_size(policy, mult, &members) {
            match sock.set_rcvbuf(bytes) {
                Ok(()) => info!(socket = n, bytes, "VRRP receive buffer (vrrp_rx_bufs_policy / kernel_rx_buf_size)"),
                Err(e) => warn!(socket = n, bytes, error = %e, "cannot set the VRRP receive buffer"),
            }
        }
    }
}

/// What one instance adds to its socket's receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RxBufMember {
    /// `kernel_rx_buf_size`.
    kernel: Option<u32>,
    /// Its interface's MTU.
    mtu: u32,
    /// Its advert's size (IP header included).
    advert: u32,
}

/// keepalived 2.2.7 (`vrrp_create_sockpool`): per instance, its `kernel_rx_buf_size`, else the
/// policy's size, `multiplier` × its advert size (ADVERT) or × its MTU (MTU); `None` when that
/// sums to nothing (the socket keeps ka's default).
fn rx_buf_size(policy: Option<crate::config::model::RxBufsPolicy>, mult: u32, members: &[RxBufMember]) -> Option<u32> {
    use crate::config::model::RxBufsPolicy;
    let total: u64 = members
        .iter()
        .map(|m| match (m.kernel, policy) {
            (Some(k), _) => u64::from(k),
            (None, Some(RxBufsPolicy::Size(n))) => u64::from(n),
            (None, Some(RxBufsPolicy::Advert)) => u64::from(mult) * u64::from(m.advert),
            (None, Some(RxBufsPolicy::Mtu)) => u64::from(mult) * u64::from(m.mtu),
            (None, None) => 0,
        })
        .sum();
    (total > 0).then(|| u32::try_from(total).unwrap_or(u32::MAX))
}

/// The size of instance `r`'s advert: IP header, VRRP header, addresses, VRRPv2 auth data.
fn advert_len(r: &Rt) -> u32 {
    let v6 = r.setup.params.family == Family::V6;
    let ip = if v6 { 40 } else { 20 };
    let per = if v6 { 16 } else { 4 };
    let auth = if r.setup.params.version == Version::V2 { 8 } else { 0 };
    u32::try_from(ip + 8 + per * r.adv_addrs.len() + auth).unwrap_or(u32::MAX)
}

/// The gratuitous ARP socket of interface `ifindex`, shared by the instances using it.
fn garp_sender(sockets: &mut Sockets, ifindex: u32, instance: &str) -> Option<Arc<FrameSender>> {
    if let Some(g) = sockets.garps.get(&ifindex) {
        return Some(g.clone());
    }
    match FrameSender::open(ifindex) {
        Ok(g) => {
            let g = Arc::new(g);
            sockets.garps.insert(ifindex, g.clone());
            Some(g)
        }
        Err(e) => {
            warn!(%instance, error = %e, "cannot open a gratuitous ARP socket");
            None
        }
    }
}

/// Resolves one instance's interface and addresses and opens (or shares) its sockets. At
/// start-up (`start` is `Some`), an instance that was Master before a restart, still holds its
/// VIPs and is within Master_Down_Interval resumes as Master (the returned flag); otherwise
/// VIPs left on the interface by a crashed run are removed.
async fn build_instance(
    s: InstanceSetup,
    env: &SysView,
    sockets: &mut Sockets,
    netlink: &NetlinkClient,
    fast_ifindexes: Option<&BTreeSet<u32>>,
    start: Option<&StartUp<'_>>,
) -> Result<(Rt, bool), EngineError> {
    let ifindex = *env.links.get(&s.iface).ok_or_else(|| NetlinkError::NoSuchLink(s.iface.clone()))?;
    let v6 = s.params.family == Family::V6;
    let link_local = env.addrs_of(ifindex).iter().find_map(|a| match a {
        IpAddr::V6(a) if a.is_unicast_link_local() => Some(*a),
        _ => None,
    });
    let vip_set: Vec<IpAddr> = s.vips.iter().chain(&s.excluded).map(|v| v.addr).collect();
    let src = match (s.src_ip, v6) {
        (Some(a), _) => a,
        (None, true) => IpAddr::V6(link_local.ok_or_else(|| EngineError::NoSource {
            instance: s.name.clone(),
            iface: s.iface.clone(),
            family: "IPv6 link-local",
        })?),
        (None, false) => env
            .addrs_of(ifindex)
            .iter()
            .find(|a| a.is_ipv4() && !vip_set.contains(a))
            .copied()
            .ok_or_else(|| EngineError::NoSource { instance: s.name.clone(), iface: s.iface.clone(), family: "IPv4" })?,
    };
    let sock = sockets.receiving(&s, ifindex, src)?;
    let base_mac = || {
        let m = env.macs.get(&ifindex).cloned().unwrap_or_default();
        m.get(..6).and_then(|m| <[u8; 6]>::try_from(m).ok()).unwrap_or([0; 6])
    };
    let (vip_ifindex, mac) = match (&s.vmac, &s.vmac_kind) {
        (Some(name), setup::VmacKind::Macvlan) => {
            let vmac = virtual_mac(s.params.vrid, v6);
            let idx = netlink.add_macvlan(ifindex, name, vmac).await?;
            (idx, vmac)
        }
        // keepalived's use_ipvlan: an L2 ipvlan (the parent's MAC) with its own address.
        (Some(name), setup::VmacKind::Ipvlan { flags, addr }) => {
            let idx = netlink.add_ipvlan(ifindex, name, *flags).await?;
            if let Some((a, len)) = addr {
                netlink.add_addr(AddrSpec::new(idx, *a, *len)).await?;
            }
            (idx, base_mac())
        }
        (None, _) => (ifindex, base_mac()),
    };
    // use_vmac_addr: a VMAC per interface and family for the VIPs that have their own.
    let mut addr_vmacs = Vec::new();
    let mut addr_vmac_bases = Vec::new();
    for av in &s.addr_vmacs {
        let parent = *env.links.get(&av.base).ok_or_else(|| NetlinkError::NoSuchLink(av.base.clone()))?;
        addr_vmac_bases.push((av.base.clone(), parent));
        let idx = netlink.add_macvlan(parent, &av.name, virtual_mac(s.params.vrid, av.v6)).await?;
        addr_vmacs.push(((av.base.clone(), av.v6), idx));
    }
    let tx_sock = sockets.sending(&s, sock, ifindex, vip_ifindex, src)?;
    let (vips, routes): (Vec<AddrSpec>, Vec<_>) = {
        let links2 = link_of(&env.links, s.vmac.as_deref(), vip_ifindex);
        (
            s.vips.iter().chain(&s.excluded).map(|v| placed_spec(v, vip_ifindex, ifindex, &s.iface, &addr_vmacs, &links2)).collect(),
            s.routes.iter().map(|r| route_spec(r, &links2)).collect(),
        )
    };
    let (adv_addrs, adv_bytes) = reload::advert_addrs(&s);
    let vips_present = vips.iter().all(|v| env.has_addr(v.ifindex, v.addr));
    let resume = start.and_then(|st| st.record.map(|r| (r, st.mono_now))).is_some_and(|(r, now)| {
        resume::resumable(r, now, &s.name, s.params.advert_int, s.params.down_timer_adverts, vips_present)
    });
    // An AH instance never resumes: its sequence counter starts again from 0, below what the
    // peers accepted, so its adverts would be refused as replays while it held the VIPs. Like
    // keepalived, it starts as BACKUP and learns the current number from the master first.
    let resume = resume && s.auth.ah_key().is_none();
    if resume {
        info!(instance = %s.name, "Master before the restart, VIPs still up and within Master_Down_Interval: resuming as Master");
    }
    // Leftovers of a crashed run: remove VIPs we hold unless we are the address owner
    // (which becomes Master at once and would only flap them) or resume as Master.
    if start.is_some() && s.params.priority != 255 && !resume {
        for v in &vips {
            if env.has_addr(v.ifindex, v.addr) {
                info!(instance = %s.name, vip = %v.addr, "removing a VIP left over by an earlier run");
                netlink.del_addr(v.clone()).await?;
            }
        }
    }
    let mut params = s.params.clone();
    params.primary_addr = src;
    let fsm = Instance::new(params).map_err(|source| EngineError::Params { instance: s.name.clone(), source })?;
    let garp = garp_sender(sockets, vip_ifindex, &s.name);
    let mut vip_ifs: Vec<VipIf> = Vec::new();
    for v in vips.iter().filter(|v| v.ifindex != vip_ifindex) {
        if vip_ifs.iter().any(|x| x.ifindex == v.ifindex) {
            continue;
        }
        let ifx = v.ifindex;
        let found = (|| {
            Some(VipIf {
                ifindex: ifx,
                iface: env.links.iter().find(|(_, i)| **i == ifx).map(|(n, _)| n.clone())?,
                mac: env.macs.get(&ifx).and_then(|m| m.get(..6)).and_then(|m| <[u8; 6]>::try_from(m).ok())?,
                link_local: env.addrs_of(ifx).iter().find_map(|a| match a {
                    IpAddr::V6(a) if a.is_unicast_link_local() => Some(*a),
                    _ => None,
                }),
                sender: garp_sender(sockets, ifx, &s.name)?,
            })
        })();
        vip_ifs.extend(found);
    }
    let extra_if = match s.garp_extra_if {
        Some(x) => {
            let list: Vec<(u32, IpAddr)> = vips.iter().map(|v| (v.ifindex, v.addr)).collect();
            // ka makes no VMAC but the instance's own (its VIP interface, never an extra one),
            // so without `all` there is none, and keepalived then turns the feature off too.
            crate::vrrp::garp::extra_if_targets(vip_ifindex, &list, x.all, |_| false)
                .into_iter()
                .filter_map(|(ifx, addr)| vip_ifs.iter().position(|v| v.ifindex == ifx).map(|n| (n, addr)))
                .collect()
        }
        None => Vec::new(),
    };
    Ok((Rt {
        rx_sock: sock,
        fsm,
        ifindex,
        vip_ifindex,
        addr_vmacs,
        addr_vmac_bases,
        mac,
        tx_sock,
        src,
        link_local,
        vips,
        routes,
        adv_addrs,
        adv_bytes,
        armed: [None; SLOT_EXTRA_IF + 1],
        track: TrackSet::default(),
        track_status: BTreeMap::new(),
        state_since: Instant::now(),
        counters: Counters { rx: 0, tx: 0, became_master: 0, xdp_changes: 0, xdp_deferrals: 0, drops: BTreeMap::new(), last_drop_log: None, more: MoreCounters { last_transition: Some(std::time::SystemTime::now()), ..Default::default() } },
        garp,
        vip_ifs,
        extra_if,
        fast_key: fast_key(fast_ifindexes, ifindex, &s),
        fast_written: None,
        blocked: false,
        ah_seq: AhSeq::new(),
        ip_id: 0,
        setup: s,
    }, resume))
}

/// The instance's key in the XDP fast path: when XDP is attached to its interface, and unless
/// its adverts are AH packets, which XDP only passes (see `ka-ebpf/src/vrrp.rs`).
fn fast_key(fast_ifindexes: Option<&BTreeSet<u32>>, ifindex: u32, s: &InstanceSetup) -> Option<ka_common::vrrp_fast::VrrpKey> {
    fast_ifindexes.filter(|f| f.contains(&ifindex) && s.auth.ah_key().is_none()).map(|_| fast::key(ifindex, s))
}

/// Receive pacing: a socket task drains everything queued, then rests this long, so a steady
/// stream of adverts costs one wake-up per pace rather than one per packet. Safe for the
/// shortest advert interval (10 ms): processing an advert late only moves the master-down
/// deadline later, and that deadline is three intervals plus skew away.
const RX_PACE: Duration = Duration::from_millis(4);

fn spawn_rx(idx: usize, sock: Arc<VrrpSocket>, tx: mpsc::Sender<Vec<RxPacket>>) {
    tokio::spawn(async move {
        let mut overflow: u64 = 0;
        let mut batch = Vec::with_capacity(64);
        let mut scratch = crate::net::vrrp_socket::RxScratch::new();
        loop {
            batch.clear();
            if let Err(e) = sock.recv_batch(&mut scratch, &mut batch, 1024).await {
                debug!(error = %e, "VRRP receive error");
            }
            if !batch.is_empty() {
                let pkts: Vec<RxPacket> = batch.drain(..).map(|(meta, data)| RxPacket { sock: idx, meta, data }).collect();
                // A flood must not queue without bound: drop when the engine is behind.
                if let Err(e) = tx.try_send(pkts) {
                    if matches!(e, mpsc::error::TrySendError::Closed(_)) {
                        return;
                    }
                    overflow += 1;
                    if overflow.is_power_of_two() {
                        warn!(overflow, "VRRP receive queue full, dropping adverts");
                    }
                }
            }
            tokio::time::sleep(RX_PACE).await;
        }
    });
}

impl Engine {
    fn now(&self) -> Time {
        Time::from_epoch(self.epoch.elapsed())
    }

    fn arm(&mut self, i: usize, slot: usize, at: Option<Time>) {
        if let Some(old) = self.inst[i].armed[slot].take() {
            self.timers.remove(&(old, i, slot));
        }
        if let Some(at) = at {
            self.inst[i].armed[slot] = Some(at);
            self.timers.insert((at, i, slot));
        }
    }

    async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Vec<RxPacket>>,
        mut track: mpsc::Receiver<TrackerUpdate>,
        mut cmd: mpsc::Receiver<Command>,
        mut fast_events: Option<AsyncEventReader>,
    ) {
        for i in 0..self.inst.len() {
            let ev = if self.resuming.contains(&i) { Event::ResumeMaster } else { Event::Startup };
            self.dispatch(i, ev).await;
        }
        // A reload waiting for the kernel's interfaces and addresses: the read is a future this
        // loop polls (so a dump of tens of thousands of addresses does not hold up the timers),
        // not a task of its own, which would queue behind every other task of this runtime
        // (at start, one GARP task per instance turning MASTER).
        let mut reading: Option<futures::future::BoxFuture<'static, ReloadRead>> = None;
        loop {
            self.flush().await;
            if let Some(r) = self.recorder.as_mut() {
                r.tick(fast::monotonic_now());
            }
            let next = self.timers.first().map(|(t, _, _)| *t);
            // Round up to the next tick so deadlines a few hundred µs apart fire together.
            let sleep_until = next.map_or_else(
                || Instant::now() + Duration::from_secs(3600),
                |t| {
                    let d = t.since_epoch();
                    let ticks = d.as_nanos().div_ceil(TICK.as_nanos());
                    self.epoch + Duration::from_nanos(u64::try_from(ticks * TICK.as_nanos()).unwrap_or(u64::MAX))
                },
            );
            tokio::select! {
                biased;
                c = cmd.recv() => match c {
                    Some(Command::Status(reply)) => {
                        let mut dropped = BTreeMap::new();
                        dropped.insert(DropReason::VridMismatch.name().to_owned(), self.unknown_vrid);
                        dropped.insert(DropReason::TooShort.name().to_owned(), self.too_short);
                        for (reason, n) in &self.ah_malformed {
                            *dropped.entry(reason.name().to_owned()).or_default() += n;
                        }
                        let _ = reply.send(EngineReport { instances: self.report(), dropped });
                    }
                    Some(Command::States(reply)) => {
                        let states = self.order.iter().map(|&e| InstanceState { name: self.inst[e].setup.name.clone(), state: state_name(self.inst[e].fsm.state()) }).collect();
                        let _ = reply.send(states);
                    }
                    Some(Command::Shutdown(done)) => { self.shutdown().await; let _ = done.send(()); return; }
                    Some(Command::Detach(done)) => { self.detach().await; let _ = done.send(()); return; }
                    Some(Command::Reload(req, done)) => {
                        if reading.is_some() {
                            let _ = done.send(Err(EngineError::ReloadBusy));
                        } else {
                            info!(instances = req.instances.len(), removed = req.removed.len(), "VRRP engine: reload received; reading the interfaces and addresses");
                            let netlink = self.netlink.clone();
                            reading = Some(Box::pin(async move {
                                let t = Instant::now();
                                let env = SysView::read(&netlink).await;
                                info!(took_ms = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX), ok = env.is_ok(), "VRRP engine: interfaces and addresses read for the reload");
                                ReloadRead { req, env, done }
                            }));
                        }
                    }
                    None => { self.shutdown().await; return; }
                },
                Some(read) = async {
                    match reading.as_mut() {
                        Some(f) => Some(f.await),
                        None => std::future::pending().await,
                    }
                } => {
                    reading = None;
                    let ReloadRead { req, env, done } = read;
                    let started = Instant::now();
                    let res = match env {
                        Ok(env) => self.reload(*req, env, &mut rx).await,
                        Err(e) => Err(e),
                    };
                    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                    match &res {
                        Ok(st) => info!(
                            took_ms = ms(started.elapsed()),
                            checked_ms = ms(st.checked),
                            instances = self.inst.len(),
                            added = st.added,
                            changed = st.changed,
                            removed = st.removed,
                            slices = st.slices,
                            longest_slice_us = u64::try_from(st.longest_slice.as_micros()).unwrap_or(u64::MAX),
                            "VRRP engine: reload applied"
                        ),
                        Err(e) => warn!(error = %e, "reload refused by the VRRP engine; the running instances are unchanged"),
                    }
                    let _ = done.send(res.map(|_| ()));
                },
                _ = tokio::time::sleep_until(sleep_until) => self.fire_timers().await,
                Some(u) = track.recv() => {
                    // Everything queued, in one pass over the instances (see `trackers`).
                    let mut batch = vec![u];
                    while batch.len() < TRACK_BATCH {
                        match track.try_recv() {
                            Ok(u) => batch.push(u),
                            Err(_) => break,
                        }
                    }
                    self.trackers(batch).await;
                }
                Some(events) = async {
                    match fast_events.as_mut() {
                        Some(r) => r.next_batch().await.ok(),
                        None => std::future::pending().await,
                    }
                } => self.fast_events(events),
                Some(batch) = rx.recv() => {
                    for p in batch {
                        self.packet(p).await;
                    }
                    // Drain what is already queued before looking at timers again, bounded so
                    // a flood cannot starve them.
                    for _ in 0..16 {
                        match rx.try_recv() {
                            Ok(batch) => for p in batch { self.packet(p).await },
                            Err(_) => break,
                        }
                    }
                }
            }
        }
    }

    /// Sends every advert queued this turn, one sendmmsg per socket.
    async fn flush(&mut self) {
        for sock in 0..self.outbox.len() {
            if self.outbox[sock].is_empty() {
                continue;
            }
            let msgs = std::mem::take(&mut self.outbox[sock]);
            let owners = std::mem::take(&mut self.outbox_owner[sock]);
            match self.sockets.socks[sock].send_batch(&msgs).await {
                Ok(n) => {
                    for i in owners.iter().take(n) {
                        self.inst[*i].counters.tx += 1;
                    }
                }
                Err(e) => warn!(error = %e, adverts = msgs.len(), "sending adverts"),
            }
        }
    }

    async fn fire_timers(&mut self) {
        // Everything due by the end of this tick fires now, once: a timer that firing re-arms
        // within this tick waits for the next turn of the loop (commands, received adverts and
        // sending come first), so an engine that fell behind does not keep firing in one pass.
        let now = self.now() + TICK;
        let due: Vec<(Time, usize, usize)> = self.timers.range(..=(now, usize::MAX, usize::MAX)).copied().collect();
        if let Some((first, _, _)) = due.first() {
            // keepalived max_auto_priority: a timer served too late raises the thread.
            let late = self.now().saturating_since(*first);
            if let Some(p) = self.globals.auto_priority.late(late) {
                crate::threads::raise_self(p, late);
            }
        }
        for (at, i, s) in due {
            // Cancelled or moved by a timer fired before it in this pass.
            if self.inst.get(i).is_none_or(|r| r.armed[s] != Some(at)) {
                continue;
            }
            self.timers.remove(&(at, i, s));
            self.inst[i].armed[s] = None;
            if s == SLOT_EXTRA_IF {
                self.garp_extra_if(i);
                if let Some(x) = self.inst[i].setup.garp_extra_if {
                    self.arm(i, SLOT_EXTRA_IF, Some(now + x.interval));
                }
            } else if s == SLOT_REFRESH {
                let repeat = self.inst[i].setup.garp_refresh.1.max(1);
                self.garp(i, repeat);
                let every = self.inst[i].setup.garp_refresh.0;
                self.arm(i, SLOT_REFRESH, Some(now + every));
            } else {
                // Timers are served on tick boundaries, up to a tick early or a little late: the
                // state machine is told the deadline itself, so it never takes the expiry for
                // an early one, and the next advert is armed one interval after this one's
                // deadline rather than after the wake-up (no drift), unless it is a whole
                // interval late (see `fired_at`).
                let kind = KIND_SLOTS[s];
                if kind == TimerKind::MasterDown && self.master_seen_in_xdp(i, at).await {
                    continue;
                }
                let when = fired_at(kind, at, self.now(), crate::vrrp::timers::centis(self.inst[i].setup.params.advert_int));
                self.dispatch_at(i, Event::TimerFired(kind), Some(when)).await;
            }
        }
        if self.fast.is_some() {
            // While awake anyway: master-down timers due within FAST_EARLY whose master XDP saw
            // recently are re-armed now rather than each waking the engine on its own (an
            // early look is safe: the timer stays where it is unless the master was seen).
            let horizon = now + FAST_EARLY;
            let md = slot(TimerKind::MasterDown);
            let early: Vec<(Time, usize)> =
                self.timers.iter().take_while(|(t, _, _)| *t <= horizon).filter(|(_, _, s)| *s == md).map(|(t, i, _)| (*t, *i)).collect();
            for (at, i) in early {
                let _ = self.master_seen_in_xdp(i, at).await;
            }
        }
    }

    async fn packet(&mut self, p: RxPacket) {
        // AH sockets hand over whole IPv4 packets: the VRRP message follows the AH header.
        let ah = if self.sockets.socks[p.sock].is_ah() {
            match AhAdvert::decode(&p.data) {
                Ok(a) => Some(a),
                Err(e) => {
                    let n = self.ah_malformed.entry(e.reason()).or_default();
                    *n += 1;
                    if n.is_power_of_two() {
                        warn!(from = %p.meta.src, error = %e, reason = e.reason().name(), count = *n, "dropped a malformed IPsec AH packet");
                    }
                    return;
                }
            }
        } else {
            None
        };
        let msg: &[u8] = ah.as_ref().map_or(p.data.as_slice(), |a| a.vrrp);
        let Some(&vrid) = msg.get(1) else {
            self.too_short += 1;
            return;
        };
        let Some(&i) = self.by_vrid.get(&(p.sock, vrid)) else {
            self.unknown_vrid += 1;
            if self.globals.log_unknown_vrids {
                info!(vrid, from = %p.meta.src, socket = p.sock, "log_unknown_vrids: advert for an unknown VRID received; ignoring");
            }
            return;
        };
        let r = &mut self.inst[i];
        let s = &r.setup;
        let unicast = !s.peers.is_empty();
        let mut verdict = Ok(());
        if unicast {
            match s.peers.iter().find(|pr| pr.addr == p.meta.src) {
                Some(pr) if p.meta.ttl < pr.min_ttl || p.meta.ttl > pr.max_ttl => verdict = Err(DropReason::BadTtl),
                None if s.check_unicast_src => verdict = Err(DropReason::NotUnicastPeer),
                _ => {}
            }
        }
        let family = s.params.family;
        let pseudo = match s.params.version {
            Version::V2 => PseudoHeader::None,
            Version::V3 => PseudoHeader::for_advert(Version::V3, s.v3_checksum, p.meta.src, p.meta.dst, match s.group {
                IpAddr::V4(g) => Some(g),
                IpAddr::V6(_) => None,
            }),
        };
        let check = RxCheck {
            version: s.params.version,
            family,
            vrid: s.params.vrid,
            // keepalived checks TTL 255 on multicast; unicast peers use min/max_ttl.
            check_ttl: !unicast,
            pseudo: Some(pseudo),
            auth: s.auth,
            adver_int_centis: s.params.advert_int,
            vips: s.check_adv_addrs.then_some(r.adv_addrs.as_slice()),
        };
        // IPsec AH (keepalived's vrrp_in_chk_ipsecah): the ICV, then the SPI, then the sequence
        // number against the instance's counter, before the VRRP message's own checks.
        // keepalived checks adverts only as BACKUP or MASTER, so only then does the counter move.
        if let (Ok(()), Some(a)) = (&verdict, &ah) {
            verdict = match s.auth.ah_key() {
                None => Err(DropReason::AuthTypeMismatch),
                Some(key) => a.verify(key, unicast).and_then(|()| match r.fsm.state() {
                    State::Backup => r.ah_seq.receive(a.ah.seq, true),
                    State::Master => r.ah_seq.receive(a.ah.seq, false),
                    _ => Ok(()),
                }),
            };
        }
        let rx = verdict.and_then(|()| {
            validate(msg, p.meta.ttl, &check).map(|a| RxAdvert { from: p.meta.src, priority: a.priority(), max_adver_int: a.adver_int_centis() })
        });
        match rx {
            Ok(adv) => {
                r.counters.rx += 1;
                if adv.priority == 0 {
                    r.counters.more.pri_zero_rx += 1;
                }
                if let (Some(a), State::Master) = (&ah, r.fsm.state()) {
                    // keepalived's vrrp_state_master_rx: a lower-priority advert syncs the
                    // counter above its number.
                    r.ah_seq.master_received(a.ah.seq, adv.priority, r.fsm.effective_priority(), adv.from.cmp(&r.src));
                }
                self.dispatch(i, Event::AdvertReceived(adv)).await;
            }
            Err(reason) => {
                *r.counters.drops.entry(reason).or_default() += 1;
                // Logged at most once per advert interval per instance; always counted.
                let every = Duration::from_millis(u64::from(s.params.advert_int) * 10);
                if r.counters.last_drop_log.is_none_or(|t| t.elapsed() >= every) {
                    r.counters.last_drop_log = Some(Instant::now());
                    warn!(instance = %s.name, vrid, from = %p.meta.src, reason = reason.name(), "dropped an invalid advert");
                }
            }
        }
    }

    /// Tracker updates, in the order they came: each value is recorded, and every instance
    /// tracking the object takes the updates in turn. One pass over the instances per batch,
    /// not per update: at start, 65,024 `track_file`s report at once, and a pass per update
    /// kept the engine busy for minutes.
    async fn trackers(&mut self, updates: Vec<TrackerUpdate>) {
        let mut by_key: HashMap<&TrackKey, Vec<usize>> = HashMap::new();
        for (n, u) in updates.iter().enumerate() {
            self.last_track.insert(u.key.clone(), u.value);
            by_key.entry(&u.key).or_default().push(n);
        }
        for i in 0..self.inst.len() {
            let mine = updates_of(&self.inst[i].setup.track, &by_key);
            for (u, w) in mine {
                let u = &updates[u];
                let (c, label) = track_value(u.value, w);
                let r = &mut self.inst[i];
                let before = r.track.summary();
                let summary = r.track.set(u.key.clone(), c);
                r.track_status.insert(u.key.clone(), label);
                if summary != before {
                    info!(instance = %r.setup.name, tracker = %u.key.label(), ?summary, "tracking changed");
                    self.dispatch(i, Event::TrackerChanged(summary)).await;
                }
            }
        }
    }

    /// Feeds one event to an instance and carries out the actions, following sync-group
    /// orders through a queue (no recursion).
    async fn dispatch(&mut self, i: usize, ev: Event) {
        self.dispatch_at(i, ev, None).await;
    }

    /// [`Engine::dispatch`] with the time the first event happened at (a timer's deadline);
    /// `None` is now.
    async fn dispatch_at(&mut self, i: usize, ev: Event, at: Option<Time>) {
        let mut first_at = at;
        let mut queue = VecDeque::from([(i, ev)]);
        while let Some((i, ev)) = queue.pop_front() {
            let now = first_at.take().unwrap_or_else(|| self.now());
            let before = self.inst[i].fsm.state();
            let actions = self.inst[i].fsm.handle(now, ev);
            if self.inst[i].fsm.state() != before {
                self.inst[i].state_since = Instant::now();
                self.inst[i].counters.more.last_transition = Some(std::time::SystemTime::now());
                if before == State::Master {
                    self.inst[i].counters.more.released_master += 1;
                }
                if self.inst[i].fsm.state() == State::Master {
                    self.inst[i].counters.became_master += 1;
                    // keepalived's vrrp_state_goto_master: a cycled AH counter restarts.
                    self.inst[i].ah_seq.becoming_master();
                }
                info!(instance = %self.inst[i].setup.name, from = state_name(before), to = state_name(self.inst[i].fsm.state()), "state change");
            }
            for a in actions {
                match a {
                    Action::SyncStatus(ms) => queue.extend(self.sync(i, ms)),
                    Action::Notify(Notify::MasterRxLowerPri) => {
                        self.act(i, a).await;
                        // keepalived: the other members of its sync group send their
                        // lower-priority GARPs too.
                        queue.extend(self.group_peers(i).into_iter().map(|j| (j, Event::GroupLowerPrio)));
                    }
                    other => self.act(i, other).await,
                }
            }
            self.sync_fast(i);
        }
    }

    /// no_accept: packets to (and from) the instance's VIPs are dropped while it is a non-owner
    /// Master.
    fn no_accept_filter(&mut self, i: usize, block: bool) {
        let Some(fw) = self.no_accept.as_ref() else { return };
        let r = &mut self.inst[i];
        if r.blocked == block {
            return;
        }
        // Queued to the nftables thread (it logs the outcome): nft never runs on this task.
        let vips = blocked(r, &r.vips);
        if block {
            fw.add(&r.setup.name, vips);
        } else {
            fw.remove(&r.setup.name, vips);
        }
        r.blocked = block;
    }

    /// Keeps the instance's XDP fast-path entry in step with its state machine (state, master
    /// followed, priorities, intervals); written only when it changed.
    fn sync_fast(&mut self, i: usize) {
        let Some(fp) = self.fast.as_mut() else { return };
        let r = &mut self.inst[i];
        let Some(key) = r.fast_key else { return };
        let want = fast::params(&r.setup, &r.fsm, r.src);
        if r.fast_written.as_ref() == Some(&want) {
            return;
        }
        match fp.maps.configure(key, fast::family(&r.setup), &want) {
            Ok(()) => {
                debug!(instance = %r.setup.name, master = ?want.known_master, is_master = want.master, "XDP VRRP fast path updated");
                r.fast_written = Some(want);
            }
            Err(e) => {
                warn!(instance = %r.setup.name, error = %e, "XDP VRRP fast path: cannot update the instance; its adverts reach the raw socket");
                r.fast_written = None;
            }
        }
    }

    /// The master-down timer fired at `at`: if XDP dropped steady adverts from the master the
    /// state machine follows, and saw one within the Master_Down_Interval, replays the latest
    /// as received at its kernel timestamp (RFC 5798 §6.4.2: reset the Master_Down_Timer) and
    /// reports whether that re-armed the timer past `at` (no takeover).
    async fn master_seen_in_xdp(&mut self, i: usize, at: Time) -> bool {
        let Some(fp) = self.fast.as_ref() else { return false };
        let r = &self.inst[i];
        let (Some(key), Some(written)) = (r.fast_key, r.fast_written.as_ref()) else { return false };
        if r.fsm.state() != State::Backup || !written.drop_steady {
            return false;
        }
        let (Some(known), Some((addr, priority))) = (written.known_master, r.fsm.master()) else { return false };
        if known.addr != addr || known.priority != priority {
            return false;
        }
        let seen = match fp.last_seen(key) {
            Ok(Some(t)) => t,
            Ok(None) => return false,
            Err(e) => {
                warn!(instance = %r.setup.name, error = %e, "XDP VRRP fast path: cannot read last-seen");
                return false;
            }
        };
        if seen + r.fsm.master_down_interval() <= at {
            return false;
        }
        let rx = RxAdvert { from: addr, priority, max_adver_int: r.fsm.master_adver_int() };
        self.dispatch_at(i, Event::AdvertReceived(rx), Some(seen)).await;
        let r = &mut self.inst[i];
        let rearmed = r.fsm.state() == State::Backup && r.fsm.timer(TimerKind::MasterDown).is_some_and(|t| t > at);
        if rearmed {
            r.counters.xdp_deferrals += 1;
        }
        rearmed
    }

    /// Changes XDP reported: counted per instance (the adverts themselves arrive on the raw
    /// socket and are decoded there).
    fn fast_events(&mut self, events: Vec<crate::lb::vrrp_fast::Event>) {
        for e in events {
            let Some(i) = self.inst.iter().position(|r| r.fast_key.is_some_and(|k| k.ifindex == e.ifindex && k.vrid == e.vrid) && r.setup.params.family == e.family) else {
                continue;
            };
            let r = &mut self.inst[i];
            r.counters.xdp_changes += 1;
            if !matches!(e.kind, EventKind::LowerPriority) {
                debug!(instance = %r.setup.name, kind = ?e.kind, from = %e.src, priority = e.priority, "XDP VRRP change");
            }
        }
    }

    /// The other members of instance `i`'s sync group.
    fn group_peers(&self, i: usize) -> Vec<usize> {
        let Some(&g) = self.group_of.get(&i) else { return Vec::new() };
        self.groups[g].0.members().filter(|&j| j != i).collect()
    }

    fn sync(&mut self, i: usize, ms: MemberStatus) -> Vec<(usize, Event)> {
        let Some(&g) = self.group_of.get(&i) else { return Vec::new() };
        let mut out = Vec::new();
        for a in self.groups[g].0.update(i, ms) {
            match a {
                SyncAction::Command { member, cmd } => out.push((member, Event::Sync(cmd))),
                SyncAction::Notify(state) => {
                    let (name, notify, smtp) = (self.groups[g].1.clone(), self.groups[g].2.clone(), self.groups[g].3);
                    let n = match state {
                        State::Master => Notify::Master,
                        State::Backup => Notify::Backup,
                        _ => Notify::Fault,
                    };
                    self.notify(Subject::Group, &name, &notify, smtp, n, 0);
                }
            }
        }
        out
    }

    async fn act(&mut self, i: usize, a: Action) {
        match a {
            Action::SendAdvert { priority } => self.send_advert(i, priority),
            Action::SendGarp { repeat } => self.garp(i, repeat),
            Action::AddVips => {
                for v in self.inst[i].vips.clone() {
                    if let Err(e) = self.netlink.add_addr(v).await {
                        warn!(instance = %self.inst[i].setup.name, error = %e, "adding VIP");
                    }
                }
                for r in self.inst[i].routes.clone() {
                    if let Err(e) = self.netlink.route(true, r).await {
                        warn!(instance = %self.inst[i].setup.name, error = %e, "adding virtual route");
                    }
                }
                for r in self.inst[i].setup.rules.clone() {
                    if let Err(e) = self.netlink.rule(true, r).await {
                        warn!(instance = %self.inst[i].setup.name, error = %e, "adding virtual rule");
                    }
                }
                let refresh = self.inst[i].setup.garp_refresh.0;
                if !refresh.is_zero() {
                    let at = self.now() + refresh;
                    self.arm(i, SLOT_REFRESH, Some(at));
                }
                // keepalived arms the garp_extra_if timer on becoming Master.
                if let Some(x) = self.inst[i].setup.garp_extra_if.filter(|_| !self.inst[i].extra_if.is_empty()) {
                    let at = self.now() + x.interval;
                    self.arm(i, SLOT_EXTRA_IF, Some(at));
                }
            }
            Action::DelVips => {
                // A resignation (priority 0) leaves before the addresses go (RFC 5798 §6.4.3).
                self.flush().await;
                self.arm(i, SLOT_REFRESH, None);
                self.arm(i, SLOT_EXTRA_IF, None);
                for r in self.inst[i].setup.rules.clone() {
                    if let Err(e) = self.netlink.rule(false, r).await {
                        warn!(instance = %self.inst[i].setup.name, error = %e, "removing virtual rule");
                    }
                }
                for r in self.inst[i].routes.clone() {
                    if let Err(e) = self.netlink.route(false, r).await {
                        warn!(instance = %self.inst[i].setup.name, error = %e, "removing virtual route");
                    }
                }
                for v in self.inst[i].vips.clone() {
                    if let Err(e) = self.netlink.del_addr(v).await {
                        warn!(instance = %self.inst[i].setup.name, error = %e, "removing VIP");
                    }
                }
            }
            Action::SetDatapathMaster { master, accept } => {
                debug!(instance = %self.inst[i].setup.name, master, accept, "datapath mastership");
                if let Some(r) = self.recorder.as_mut() {
                    r.set(&self.inst[i].setup.name, master);
                }
                self.no_accept_filter(i, master && !accept);
                if let Some(tx) = &self.globals.events {
                    let r = &self.inst[i];
                    let _ = tx.send(EngineEvent::Mastership {
                        instance: r.setup.name.clone(),
                        vips: r.vips.iter().map(|v| v.addr).collect(),
                        master,
                        accept,
                    });
                }
            }
            Action::ArmTimer { kind, at } => self.arm(i, slot(kind), Some(at)),
            Action::CancelTimer(kind) => self.arm(i, slot(kind), None),
            Action::Notify(n) => {
                let r = &self.inst[i];
                let (name, notify, smtp, prio) = (r.setup.name.clone(), r.setup.notify.clone(), r.setup.smtp_alert, r.fsm.effective_priority());
                self.notify(Subject::Instance, &name, &notify, smtp, n, prio);
            }
            Action::PriorityChanged(p) => {
                let r = &self.inst[i];
                debug!(instance = %r.setup.name, priority = p, "effective priority");
                if let Some(ev) = priority_event(&r.setup.name, r.setup.notify_priority_changes, r.fsm.state(), p) {
                    self.write_fifos(ev);
                }
            }
            Action::SyncStatus(_) => {}
        }
    }

    fn send_advert(&mut self, i: usize, priority: u8) {
        if priority == 0 {
            self.inst[i].counters.more.pri_zero_tx += 1;
        }
        // AH: one sequence number and one IP ID per advert, whatever the number of unicast
        // peers (keepalived's vrrp_update_pkt).
        let ah = match self.inst[i].setup.auth.ah_key().copied() {
            Some(key) => {
                let r = &mut self.inst[i];
                r.ip_id = r.ip_id.wrapping_add(1).max(1);
                Some((key, r.ah_seq.next_tx(), r.ip_id))
            }
            None => None,
        };
        let r = &self.inst[i];
        let s = &r.setup;
        let family = s.params.family;
        let Some(addrs) = AddrList::new(&r.adv_bytes, family) else { return };
        let dsts: Vec<IpAddr> = if s.peers.is_empty() { vec![s.group] } else { s.peers.iter().map(|p| p.addr).collect() };
        let mut buf = [0u8; VRRP_MAX_LEN];
        let sock = r.tx_sock;
        for dst in dsts {
            let len = match s.params.version {
                Version::V2 => AdvertV2 {
                    vrid: s.params.vrid,
                    priority,
                    auth_type: s.auth.auth_type(),
                    adver_int: u8::try_from(s.params.advert_int / 100).unwrap_or(u8::MAX),
                    checksum: 0,
                    addrs,
                    auth_data: s.auth.data(),
                }
                .encode_checksummed(&mut buf),
                Version::V3 => {
                    let pseudo = PseudoHeader::for_advert(Version::V3, s.v3_checksum, r.src, dst, match s.group {
                        IpAddr::V4(g) => Some(g),
                        IpAddr::V6(_) => None,
                    });
                    AdvertV3 { vrid: s.params.vrid, priority, max_adver_int: s.params.advert_int, checksum: 0, addrs }
                        .encode_checksummed(&mut buf, &pseudo)
                }
            };
            let Ok(len) = len else {
                warn!(instance = %s.name, "advert does not fit");
                return;
            };
            let out = match ah {
                None => Outgoing { data: buf[..len].to_vec(), dst, src: Some(r.src) },
                Some((key, seq, id)) => {
                    let (IpAddr::V4(src), IpAddr::V4(dst4)) = (r.src, dst) else {
                        warn!(instance = %s.name, "auth_type AH needs IPv4 addresses");
                        return;
                    };
                    let mut pkt = [0u8; AH_IP_HDR_LEN + AH_LEN + VRRP_MAX_LEN];
                    let fields = AhIpFields { id, src, dst: dst4, ttl: VRRP_TTL };
                    match encode_ah_advert(&mut pkt, &fields, seq, &key, !s.peers.is_empty(), &buf[..len]) {
                        Ok(n) => Outgoing { data: pkt[..n].to_vec(), dst, src: None },
                        Err(e) => {
                            warn!(instance = %s.name, error = %e, "AH advert does not fit");
                            return;
                        }
                    }
                }
            };
            self.outbox[sock].push(out);
            self.outbox_owner[sock].push(i);
        }
    }

    fn garp(&self, i: usize, repeat: u32) {
        self.garp_addrs(i, self.inst[i].vips.iter().map(|v| v.addr).collect(), repeat);
    }

    /// Announces `addrs` of instance `i`: gratuitous ARP (IPv4) or unsolicited NA (IPv6),
    /// `repeat` rounds, on the interface each VIP is on (the instance's, or its `dev`) from
    /// that interface's MAC, as keepalived; each message spaced by the delay group of its
    /// interface ([`crate::vrrp::garp::Pacer`]).
    fn garp_addrs(&self, i: usize, addrs: Vec<IpAddr>, repeat: u32) {
        let r = &self.inst[i];
        // Per interface: the instance's own (index None) and each other one holding VIPs.
        let mut by_if: Vec<(Option<usize>, Vec<Frame>)> = Vec::new();
        for addr in addrs {
            let other = r.vips.iter().find(|v| v.addr == addr).and_then(|v| r.vip_ifs.iter().position(|x| x.ifindex == v.ifindex));
            let (mac, ll) = match other {
                Some(n) => (r.vip_ifs[n].mac, r.vip_ifs[n].link_local),
                None => (r.mac, r.link_local),
            };
            let frame = match addr {
                IpAddr::V4(a) => (garp_frame(mac, a).to_vec(), false),
                IpAddr::V6(a) => match ll {
                    Some(ll) => (na_frame(mac, ll, a).to_vec(), true),
                    None => continue,
                },
            };
            match by_if.iter_mut().find(|(k, _)| *k == other) {
                Some((_, f)) => f.push(frame),
                None => by_if.push((other, vec![frame])),
            }
        }
        for (other, frames) in by_if {
            let (sender, iface) = match other {
                Some(n) => (Some(r.vip_ifs[n].sender.clone()), r.vip_ifs[n].iface.clone()),
                None => (r.garp.clone(), r.setup.iface.clone()),
            };
            if let Some(sender) = sender {
                self.send_paced(&r.setup.name, &iface, sender, frames, repeat);
            }
        }
    }

    /// Sends `repeat` rounds of `frames` (each with whether it is an NA) through `sender`, at
    /// the times the delay group of `iface` gives them.
    fn send_paced(&self, instance: &str, iface: &str, sender: Arc<FrameSender>, frames: Vec<Frame>, repeat: u32) {
        let kinds: Vec<bool> = frames.iter().map(|(_, na)| *na).collect();
        let (key, arp, na) = self.globals.garp_pacing.group(iface);
        let now = self.now();
        let plan = match self.pacers.lock() {
            Ok(mut p) => p.entry(key).or_insert_with(|| crate::vrrp::garp::Pacer::new(arp, na)).plan(now, &kinds, repeat),
            Err(_) => return,
        };
        let (name, epoch) = (instance.to_owned(), self.epoch);
        tokio::spawn(async move {
            for (at, k) in plan {
                tokio::time::sleep_until(epoch + at.saturating_since(Time::ZERO)).await;
                if let Err(e) = sender.send(&frames[k].0) {
                    warn!(instance = %name, error = %e, "sending gratuitous ARP/NA");
                }
            }
        });
    }

    /// `garp_extra_if`: one gratuitous ARP / NA on each of the instance's other VIP
    /// interfaces (keepalived's `vrrp_send_vmac_update`).
    fn garp_extra_if(&self, i: usize) {
        let r = &self.inst[i];
        for &(n, addr) in &r.extra_if {
            let x = &r.vip_ifs[n];
            let frame = match addr {
                IpAddr::V4(a) => (garp_frame(x.mac, a).to_vec(), false),
                IpAddr::V6(a) => match x.link_local {
                    Some(ll) => (na_frame(x.mac, ll, a).to_vec(), true),
                    None => continue,
                },
            };
            self.send_paced(&r.setup.name, &x.iface, x.sender.clone(), vec![frame], 1);
        }
    }

    fn notify(&self, subject: Subject, name: &str, scripts: &setup::NotifySetup, smtp: bool, n: Notify, priority: u8) {
        let ev = notify::Event { subject, name: name.to_owned(), state: n.name(), priority };
        let specific = match n {
            Notify::Master => scripts.master.as_ref(),
            Notify::Backup => scripts.backup.as_ref(),
            Notify::Fault => scripts.fault.as_ref(),
            Notify::Stop => scripts.stop.as_ref(),
            Notify::MasterRxLowerPri => scripts.master_rx_lower_pri.as_ref(),
            _ => None,
        };
        // keepalived's send_event_notify: MASTER_RX_LOWER_PRI runs its own script and writes
        // the FIFOs; neither the generic `notify` script nor an SMTP alert hears of it.
        let event_only = n == Notify::MasterRxLowerPri;
        let runner = &self.globals.runner;
        let user = |s: &setup::ScriptCmd| {
            s.user.as_ref().and_then(|(u, g)| match notify::script::RunAs::resolve(u, g.as_deref()) {
                Ok(r) => Some(r),
                Err(e) => {
                    warn!(error = %e, "notify script user");
                    None
                }
            })
        };
        if let Some(s) = specific {
            if let Err(e) = runner.spawn(&s.command, &[], user(s)) {
                warn!(%name, error = %e, "notify script");
            }
        }
        if let Some(s) = scripts.any.as_ref().filter(|_| !event_only) {
            if let Err(e) = runner.spawn(&s.command, &notify::script::notify_args(&ev), user(s)) {
                warn!(%name, error = %e, "notify script");
            }
        }
        self.write_fifos(ev.clone());
        if !event_only && smtp_alert_wanted(smtp, n, self.globals.no_email_faults) {
            if let Some(cfg) = self.globals.smtp.clone() {
                tokio::spawn(async move {
                    if let Err(e) = notify::smtp::send(&cfg, &ev).await {
                        warn!(error = %e, "smtp alert");
                    }
                });
            }
        }
    }

    /// Writes one line to each notify FIFO, without waiting (a full pipe drops it).
    fn write_fifos(&self, ev: notify::Event) {
        let line = notify::fifo::line(&ev);
        match self.fifos.lock() {
            Ok(mut f) => f.send(&line),
            Err(p) => p.into_inner().send(&line),
        }
    }

    /// Opens the notify FIFOs of the current globals (and starts their scripts).
    fn open_fifos(&self) {
        let new = notify::fifo::NotifyFifos::open(&self.globals.fifos, Some(&self.globals.runner));
        match self.fifos.lock() {
            Ok(mut f) => *f = new,
            Err(p) => *p.into_inner() = new,
        }
    }

    /// Writes the state line of every sync group and of every instance not in `skip` (slots)
    /// to the notify FIFOs (`fifo_write_vrrp_states_on_reload`).
    fn write_states(&self, skip: &std::collections::HashSet<usize>) {
        for (g, name, _, _) in &self.groups {
            let state = g.state();
            if matches!(state, State::Master | State::Backup | State::Fault) {
                self.write_fifos(notify::Event { subject: Subject::Group, name: name.clone(), state: state_name(state), priority: 0 });
            }
        }
        for &e in &self.order {
            let r = &self.inst[e];
            let state = r.fsm.state();
            if skip.contains(&e) || !matches!(state, State::Master | State::Backup | State::Fault) {
                continue;
            }
            self.write_fifos(notify::Event { subject: Subject::Instance, name: r.setup.name.clone(), state: state_name(state), priority: r.fsm.effective_priority() });
        }
    }

    /// Lets the notify FIFOs go (SIGTERM to their scripts, the FIFOs ka made removed).
    fn close_fifos(&self) {
        let old = match self.fifos.lock() {
            Ok(mut f) => std::mem::take(&mut *f),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        drop(old);
    }

    /// `--dont-release-vrrp`: sends what is queued, refreshes the mastership record and stops;
    /// no resignation, the VIPs and VMAC interfaces stay for the next process.
    async fn detach(&mut self) {
        self.flush().await;
        if let Some(r) = self.recorder.as_mut() {
            r.write(fast::monotonic_now());
        }
        let masters = self.inst.iter().filter(|r| r.fsm.state() == State::Master).count();
        info!(masters, "VRRP stopped without releasing: VIPs kept for the next process");
        if let Some(fw) = self.no_accept.take() {
            fw.close().await;
        }
        self.close_fifos();
    }

    async fn shutdown(&mut self) {
        if let Some(r) = &self.recorder {
            r.remove();
        }
        info!("shutting down VRRP instances: resigning and removing VIPs");
        for i in 0..self.inst.len() {
            self.dispatch(i, Event::Shutdown).await;
        }
        self.flush().await;
        for r in &self.inst {
            if let Some(name) = &r.setup.vmac {
                if r.vip_ifindex != r.ifindex {
                    if let Err(e) = self.netlink.del_link(r.vip_ifindex).await {
                        warn!(vmac = %name, error = %e, "removing VMAC interface");
                    }
                }
            }
            for ((base, _), idx) in &r.addr_vmacs {
                if let Err(e) = self.netlink.del_link(*idx).await {
                    warn!(base = %base, error = %e, "removing a VIP's VMAC interface");
                }
            }
        }
        if let Some(fw) = self.no_accept.take() {
            fw.close().await;
        }
        self.close_fifos();
        for s in self.sysctls.drain(..) {
            s.restore();
        }
    }

    fn report(&self) -> Vec<InstanceReport> {
        self.order
            .iter()
            .map(|&e| {
                let r = &self.inst[e];
                let state = r.fsm.state();
                InstanceReport {
                    name: r.setup.name.clone(),
                    interface: r.setup.iface.clone(),
                    vrid: r.setup.params.vrid,
                    version: match r.setup.params.version {
                        Version::V2 => 2,
                        Version::V3 => 3,
                    },
                    state: state_name(state).to_owned(),
                    priority: r.setup.params.priority,
                    effective_priority: r.fsm.effective_priority(),
                    master: if state == State::Master { Some(r.src) } else { r.fsm.master().map(|(a, _)| a) },
                    in_state_s: r.state_since.elapsed().as_secs(),
                    adverts_rx: r.counters.rx,
                    adverts_tx: r.counters.tx,
                    became_master: r.counters.became_master,
                    released_master: r.counters.more.released_master,
                    priority_zero_rx: r.counters.more.pri_zero_rx,
                    priority_zero_tx: r.counters.more.pri_zero_tx,
                    last_transition_unix_us: r.counters.more.last_transition.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                    adverts_dropped: r.counters.drops.iter().map(|(k, v)| (k.name().to_owned(), *v)).collect(),
                    xdp_fast_path: r.fast_written.is_some(),
                    xdp_changes: r.counters.xdp_changes,
                    xdp_deferrals: r.counters.xdp_deferrals,
                    answers_withheld: r.fsm.answers_withheld(),
                    trackers: r
                        .setup
                        .track
                        .iter()
                        .map(|(k, w)| TrackerReport {
                            name: k.label(),
                            status: r.track_status.get(k).cloned().unwrap_or_else(|| "init".to_owned()),
                            weight: w.weight,
                        })
                        .collect(),
                    vips: r.vips.iter().map(|v| format!("{}/{}", v.addr, v.prefix)).collect(),
                }
            })
            .collect()
    }
}

/// The FIFO line keepalived 2.2.7 writes when an instance's effective priority changes
/// (`send_instance_priority_notifies`): with `notify_priority_changes` only,
/// `INSTANCE "NAME" MASTER_PRIORITY P` in MASTER and `BACKUP_PRIORITY` in any other state.
pub fn priority_event(name: &str, enabled: bool, state: State, priority: u8) -> Option<notify::Event> {
    enabled.then(|| notify::Event {
        subject: Subject::Instance,
        name: name.to_owned(),
        state: if state == State::Master { "MASTER_PRIORITY" } else { "BACKUP_PRIORITY" },
        priority,
    })
}

/// Whether a transition sends an SMTP alert: `smtp_alert` on, and not a FAULT under
/// `no_email_faults` (keepalived 2.2.7's `vrrp_smtp_notifier`).
pub fn smtp_alert_wanted(smtp_alert: bool, n: Notify, no_email_faults: bool) -> bool {
    smtp_alert && !(no_email_faults && n == Notify::Fault)
}

/// Whether instance `r` needs the VRRP firewall, as keepalived 2.2.7 decides
/// (`vrrp_complete_instance`): a non-owner in no_accept mode, or a VMAC.
fn needs_firewall(r: &Rt) -> bool {
    (!r.setup.params.accept && r.setup.params.priority != ka_common::vrrp::VRRP_PRIO_OWNER) || !fw_vmacs(r).is_empty()
}

/// The VMACs of instance `r` for the firewall's maps: its own (macvlan) in its family's table
/// (and the other's when it has VIPs of the other family, as keepalived), and its VIPs' own.
fn fw_vmacs(r: &Rt) -> Vec<crate::net::firewall::Vmac> {
    let v6 = r.setup.params.family == ka_common::vrrp::Family::V6;
    let other = r.setup.vips.iter().chain(&r.setup.excluded).any(|v| v.addr.is_ipv6() != v6);
    let mut out = Vec::new();
    if r.setup.vmac.is_some() && r.setup.vmac_kind == setup::VmacKind::Macvlan && r.vip_ifindex != r.ifindex {
        out.push(crate::net::firewall::Vmac { ifindex: r.vip_ifindex, base: r.ifindex, v4: !v6 || other, v6: v6 || other });
    }
    for ((base, av6), idx) in &r.addr_vmacs {
        let base = r.addr_vmac_bases.iter().find(|(b, _)| b == base).map_or(r.ifindex, |(_, i)| *i);
        out.push(crate::net::firewall::Vmac { ifindex: *idx, base, v4: !av6, v6: *av6 });
    }
    out
}

/// The firewall's view of `vips` of instance `r`: a link-local VIP on the instance's own
/// interface is matched by name under `dont_track_primary` (keepalived's rule), else by index.
fn blocked(r: &Rt, vips: &[AddrSpec]) -> Vec<crate::net::firewall::Blocked> {
    let own = r.setup.vmac.clone().filter(|_| r.vip_ifindex != r.ifindex).unwrap_or_else(|| r.setup.iface.clone());
    vips.iter()
        .map(|v| crate::net::firewall::Blocked {
            addr: v.addr,
            ifindex: v.ifindex,
            ifname: (r.setup.fw_by_name && v.ifindex == r.vip_ifindex).then(|| own.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// keepalived's receive buffer sums: `kernel_rx_buf_size` wins per instance, then the
    /// policy; nothing set leaves the socket alone.
    #[test]
    fn rx_buf_sizes() {
        use crate::config::model::RxBufsPolicy;
        let m = |kernel, mtu, advert| RxBufMember { kernel, mtu, advert };
        let two = [m(None, 1500, 40), m(None, 9000, 60)];
        type Case = (&'static str, Option<RxBufsPolicy>, u32, Vec<RxBufMember>, Option<u32>);
        let cases: &[Case] = &[
            ("unset", None, 3, two.to_vec(), None),
            ("MTU", Some(RxBufsPolicy::Mtu), 3, two.to_vec(), Some(3 * 1500 + 3 * 9000)),
            ("ADVERT", Some(RxBufsPolicy::Advert), 4, two.to_vec(), Some(4 * 40 + 4 * 60)),
            ("size", Some(RxBufsPolicy::Size(1000)), 3, two.to_vec(), Some(2000)),
            ("kernel_rx_buf_size wins", Some(RxBufsPolicy::Mtu), 3, vec![m(Some(777), 1500, 40), m(None, 1000, 40)], Some(777 + 3000)),
            ("kernel_rx_buf_size alone", None, 3, vec![m(Some(777), 1500, 40), m(None, 1000, 40)], Some(777)),
        ];
        for (name, policy, mult, members, want) in cases {
            assert_eq!(rx_buf_size(*policy, *mult, members), *want, "{name}");
        }
    }

    /// A batch of tracker updates reaches an instance in arrival order, only for the objects it
    /// tracks, each with the instance's weight; an object tracked twice counts once.
    #[test]
    fn tracker_updates_per_instance() {
        use crate::vrrp::track::Weight;
        let file = |n: &str| TrackKey::File(n.to_owned());
        let script = |n: &str| TrackKey::Script(n.to_owned());
        let w = |weight: i32| Weight { weight, reverse: false };
        // The batch: f1, s1, f2, f1 again.
        let batch = [file("f1"), script("s1"), file("f2"), file("f1")];
        let mut by_key: HashMap<&TrackKey, Vec<usize>> = HashMap::new();
        for (n, k) in batch.iter().enumerate() {
            by_key.entry(k).or_default().push(n);
        }
        type Case = (&'static str, Vec<(TrackKey, Weight)>, Vec<(usize, Weight)>);
        let cases: Vec<Case> = vec![
            ("tracks nothing updated", vec![(file("f9"), w(-10))], vec![]),
            ("both updates of f1, in order", vec![(file("f1"), w(-10))], vec![(0, w(-10)), (3, w(-10))]),
            ("several objects, arrival order", vec![(file("f2"), w(5)), (script("s1"), w(0)), (file("f1"), w(-1))], vec![(0, w(-1)), (1, w(0)), (2, w(5)), (3, w(-1))]),
            ("tracked twice: once, first weight", vec![(file("f2"), w(5)), (file("f2"), w(7))], vec![(2, w(5))]),
        ];
        for (name, track, want) in cases {
            assert_eq!(updates_of(&track, &by_key), want, "{name}");
        }
    }

    /// A fired timer is handled at its deadline (adverts keep their phase) unless it is an
    /// advert timer a whole interval late or more: then at the time it is served, so a held-up
    /// engine sends one advert per instance rather than a burst of the missed ones.
    #[test]
    fn late_advert_timers_rephase() {
        let ms = Time::from_millis;
        let second = Duration::from_secs(1);
        let cases = [
            ("on time", TimerKind::Advert, 1000, 1000, 1000),
            ("a tick early", TimerKind::Advert, 1000, 999, 1000),
            ("a little late", TimerKind::Advert, 1000, 1300, 1000),
            ("just under an interval late", TimerKind::Advert, 1000, 1999, 1000),
            ("an interval late", TimerKind::Advert, 1000, 2000, 2000),
            ("several intervals late", TimerKind::Advert, 1000, 4700, 4700),
            ("master down late: its deadline", TimerKind::MasterDown, 1000, 4700, 1000),
            ("startup delay late: its deadline", TimerKind::StartupDelay, 1000, 4700, 1000),
        ];
        for (name, kind, deadline, now, want) in cases {
            assert_eq!(fired_at(kind, ms(deadline), ms(now), second), ms(want), "{name}");
        }
    }

    /// `notify_priority_changes` writes keepalived's FIFO line for a new effective priority
    /// (MASTER_PRIORITY in MASTER, BACKUP_PRIORITY otherwise), and nothing without it;
    /// `no_email_faults` withholds only the FAULT alert.
    #[test]
    fn priority_lines_and_fault_emails() {
        let line = |enabled, state| priority_event("VI_1", enabled, state, 90).map(|e| crate::notify::fifo::line(&e));
        assert_eq!(line(true, State::Master).as_deref(), Some("INSTANCE \"VI_1\" MASTER_PRIORITY 90\n"));
        assert_eq!(line(true, State::Backup).as_deref(), Some("INSTANCE \"VI_1\" BACKUP_PRIORITY 90\n"));
        assert_eq!(line(true, State::Fault).as_deref(), Some("INSTANCE \"VI_1\" BACKUP_PRIORITY 90\n"));
        assert_eq!(line(false, State::Master), None);
        let cases = [
            (true, Notify::Fault, true, false),
            (true, Notify::Fault, false, true),
            (true, Notify::Master, true, true),
            (true, Notify::Backup, true, true),
            (false, Notify::Master, false, false),
        ];
        for (smtp, n, no_faults, want) in cases {
            assert_eq!(smtp_alert_wanted(smtp, n, no_faults), want, "{smtp} {n:?} {no_faults}");
        }
    }
}
