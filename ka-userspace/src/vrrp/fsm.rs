//! The VRRP state machine of one instance (RFC 3768 §6.4, RFC 5798 §6.4), with keepalived's
//! FAULT state and options. Sans-IO: [`Instance::handle`] takes the time and an [`Event`] and
//! returns the [`Action`]s for the runtime to carry out.

use std::net::IpAddr;
use std::time::Duration;

use ka_common::vrrp::{Family, Version, VRRP_PRIO_OWNER, VRRP_PRIO_STOP, VRRP_V3_MAX_ADVER_INT};

use super::sync_group::{MemberStatus, SyncCommand};
use super::timers::{centis, master_down_interval, skew_time, Time, TimerKind, TimerSet};
use super::track::{effective_priority, TrackSummary};

/// State of an instance: RFC 5798 §6.4's three plus keepalived's FAULT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not running: before startup, during `vrrp_startup_delay`, after shutdown.
    Initialize,
    /// Monitoring the Master (RFC 5798 §6.4.2).
    Backup,
    /// Forwarding for the virtual addresses (RFC 5798 §6.4.3).
    Master,
    /// keepalived FAULT: a tracked interface, script, file or process failed (or the sync group
    /// is in FAULT). No adverts are sent or acted upon.
    Fault,
}

impl State {
    /// keepalived's name for the state, as notify scripts receive it.
    pub fn name(self) -> &'static str {
        match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

/// keepalived's `state MASTER|BACKUP`: the initial state wanted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum InitialState {
    /// `state MASTER`: with priority 255 become Master at once; otherwise start as Backup with a
    /// short Master_Down_Timer (one advert interval).
    Master,
    /// `state BACKUP` (the default): start as Backup and wait Master_Down_Interval.
    #[default]
    Backup,
}

/// What notify scripts / the FIFO / the status socket are told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Notify {
    /// Entered MASTER.
    Master,
    /// Entered BACKUP.
    Backup,
    /// Entered FAULT (also sent on deletion without `notify_deleted`).
    Fault,
    /// The instance stopped (shutdown).
    Stop,
    /// The instance was deleted by a reload (`notify_deleted`).
    Deleted,
    /// As Master, received an advert of lower priority (`notify_master_rx_lower_pri`).
    MasterRxLowerPri,
}

impl Notify {
    /// The string keepalived passes to notify scripts and the FIFO.
    pub fn name(self) -> &'static str {
        match self {
            Notify::Master => "MASTER",
            Notify::Backup => "BACKUP",
            Notify::Fault => "FAULT",
            Notify::Stop => "STOP",
            Notify::Deleted => "DELETED",
            Notify::MasterRxLowerPri => "MASTER_RX_LOWER_PRI",
        }
    }
}

/// Parameters of one instance, with keepalived's defaults from [`InstanceParams::new`]. The
/// daemon converts the parsed keepalived.conf into this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceParams {
    /// `virtual_router_id`, 1..=255.
    pub vrid: u8,
    /// `version`: 2 or 3 (IPv6 instances are always 3 in keepalived).
    pub version: Version,
    /// Address family of the adverts.
    pub family: Family,
    /// `priority`, 1..=255; 255 = address owner.
    pub priority: u8,
    /// `advert_int`, in centiseconds (v2: whole seconds, i.e. a multiple of 100; v3: at most
    /// 4095).
    pub advert_int: u16,
    /// `preempt` (default) or `nopreempt` (false): a higher priority Backup takes over from a
    /// lower priority Master.
    pub preempt: bool,
    /// `preempt_delay`: how long after startup or after first seeing a lower priority Master a
    /// Backup waits before preempting.
    pub preempt_delay: Duration,
    /// `accept` / `no_accept`: whether a non-owner Master accepts packets to the virtual
    /// addresses (RFC 5798 §6.1 Accept_Mode). The owner always accepts.
    pub accept: bool,
    /// Our primary address on the interface (or `unicast_src_ip`): the tie-breaker between equal
    /// priorities, the higher address winning (RFC 5798 §6.4.3).
    pub primary_addr: IpAddr,
    /// `higher_prio_send_advert`: as Master, send one advert before yielding to a higher
    /// priority advert.
    pub higher_prio_send_advert: bool,
    /// `lower_prio_no_advert`: as Master, do not answer a lower priority advert with an advert.
    pub lower_prio_no_advert: bool,
    /// Global `vrrp_startup_delay`.
    pub startup_delay: Duration,
    /// `down_timer_adverts` (1..=100, default 3).
    pub down_timer_adverts: u8,
    /// `state MASTER|BACKUP`.
    pub initial_state: InitialState,
    /// Member of a `vrrp_sync_group`: takeovers go through the group (see
    /// [`super::sync_group::SyncGroup`]).
    pub sync_group: bool,
    /// `garp_master_delay`: delay of the second gratuitous ARP burst after becoming Master
    /// (default 5 s; zero for none).
    pub garp_master_delay: Duration,
    /// `garp_master_repeat`: gratuitous ARPs per burst (default 5).
    pub garp_master_repeat: u32,
    /// `garp_lower_prio_repeat`: gratuitous ARPs sent when, as Master, a lower priority advert
    /// arrives (0 = none).
    pub garp_lower_prio_repeat: u32,
    /// `garp_lower_prio_delay`: delay of the second burst of `garp_lower_prio_repeat` GARPs
    /// (zero: no second burst).
    pub garp_lower_prio_delay: Duration,
    /// `notify_deleted`: a reload deleting the instance notifies DELETED rather than FAULT.
    pub notify_deleted: bool,
    /// A configuration fault (keepalived's `num_config_faults`, e.g. `unicast_fault_no_peer`
    /// without peers): the instance stays in FAULT.
    pub config_fault: bool,
}

impl InstanceParams {
    /// Parameters with keepalived's defaults: 1 s adverts, preempt, no preempt delay, accept,
    /// `state BACKUP`, 3 down-timer adverts, GARP 5 × 2 bursts 5 s apart.
    pub fn new(vrid: u8, version: Version, priority: u8, primary_addr: IpAddr) -> InstanceParams {
        InstanceParams {
            vrid,
            version,
            family: match primary_addr {
                IpAddr::V4(_) => Family::V4,
                IpAddr::V6(_) => Family::V6,
            },
            priority,
            advert_int: 100,
            preempt: true,
            preempt_delay: Duration::ZERO,
            accept: true,
            primary_addr,
            higher_prio_send_advert: false,
            lower_prio_no_advert: false,
            startup_delay: Duration::ZERO,
            down_timer_adverts: 3,
            initial_state: InitialState::Backup,
            sync_group: false,
            garp_master_delay: Duration::from_secs(5),
            garp_master_repeat: 5,
            garp_lower_prio_repeat: 0,
            garp_lower_prio_delay: Duration::ZERO,
            notify_deleted: false,
            config_fault: false,
        }
    }

    /// Checks the parameters.
    ///
    /// # Errors
    ///
    /// The first [`ParamsError`] found.
    #[expect(
        clippy::manual_is_multiple_of,
        reason = "the workspace MSRV (1.85) predates u16::is_multiple_of"
    )]
    pub fn validate(&self) -> Result<(), ParamsError> {
        let vrid = self.vrid;
        if vrid == 0 {
            return Err(ParamsError::Vrid);
        }
        if self.priority == 0 {
            return Err(ParamsError::Priority { vrid });
        }
        if self.advert_int == 0 || self.advert_int > VRRP_V3_MAX_ADVER_INT {
            return Err(ParamsError::AdvertInt {
                vrid,
                centis: self.advert_int,
            });
        }
        if self.version == Version::V2
            && (self.advert_int % 100 != 0 || self.advert_int / 100 > 255)
        {
            return Err(ParamsError::AdvertIntV2 {
                vrid,
                centis: self.advert_int,
            });
        }
        if !(1..=100).contains(&self.down_timer_adverts) {
            return Err(ParamsError::DownTimerAdverts {
                vrid,
                value: self.down_timer_adverts,
            });
        }
        let family = match self.primary_addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        };
        if family != self.family {
            return Err(ParamsError::Family { vrid });
        }
        if self.initial_state == InitialState::Master
            && (!self.preempt || !self.preempt_delay.is_zero())
        {
            return Err(ParamsError::StateMasterWithPreemptOption { vrid });
        }
        Ok(())
    }
}

/// Invalid [`InstanceParams`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// VRID 0.
    #[error("virtual_router_id must be 1..255")]
    Vrid,
    /// Priority 0 (reserved for a resigning Master).
    #[error("vrid {vrid}: priority must be 1..255")]
    Priority {
        /// The instance's VRID.
        vrid: u8,
    },
    /// Interval zero or above 4095 cs.
    #[error("vrid {vrid}: advert_int of {centis} cs is outside 1..4095 cs")]
    AdvertInt {
        /// The instance's VRID.
        vrid: u8,
        /// The interval, in centiseconds.
        centis: u16,
    },
    /// VRRPv2 interval not a whole number of seconds (1..255).
    #[error("vrid {vrid}: VRRPv2 advert_int must be whole seconds 1..255, got {centis} cs")]
    AdvertIntV2 {
        /// The instance's VRID.
        vrid: u8,
        /// The interval, in centiseconds.
        centis: u16,
    },
    /// `down_timer_adverts` outside 1..=100.
    #[error("vrid {vrid}: down_timer_adverts {value} is outside 1..100")]
    DownTimerAdverts {
        /// The instance's VRID.
        vrid: u8,
        /// The value.
        value: u8,
    },
    /// Primary address of the other family.
    #[error("vrid {vrid}: primary address family differs from the instance's")]
    Family {
        /// The instance's VRID.
        vrid: u8,
    },
    /// `nopreempt` or `preempt_delay` with `state MASTER` (keepalived.conf(5): "For this to
    /// work, the initial state must not be MASTER").
    #[error("vrid {vrid}: nopreempt and preempt_delay need state BACKUP")]
    StateMasterWithPreemptOption {
        /// The instance's VRID.
        vrid: u8,
    },
}

/// A received advert that passed the checks of `ka_common::vrrp::validate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxAdvert {
    /// IP source address (the sender's primary address).
    pub from: IpAddr,
    /// Priority in the advert.
    pub priority: u8,
    /// The advert's interval, in centiseconds (VRRPv2: Adver Int × 100).
    pub max_adver_int: u16,
}

/// Inputs of the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The daemon starts the instance (RFC 5798 §6.4.1 "If a Startup event is received").
    Startup,
    /// The daemon starts the instance after a restart during which this node stayed Master:
    /// it held the VIPs and its last advert is less than Master_Down_Interval old, so no
    /// Backup has taken over yet. The instance returns to Master at once without a transition
    /// the peers could see (an advert now, no gratuitous ARP burst: the VIPs never moved).
    ResumeMaster,
    /// The daemon stops (RFC 5798 §6.4.2/§6.4.3 "If a Shutdown event is received").
    Shutdown,
    /// A reload removed the instance (keepalived: like shutdown, notifying DELETED or FAULT).
    Delete,
    /// A valid advert for this VRID arrived.
    AdvertReceived(RxAdvert),
    /// A timer the instance armed fired.
    TimerFired(TimerKind),
    /// The tracked objects' summary changed.
    TrackerChanged(TrackSummary),
    /// The sync group orders the instance.
    Sync(SyncCommand),
    /// Another member of this instance's sync group, as Master, received a lower-priority
    /// advert: keepalived then sends this member's `garp_lower_prio_repeat` GARPs too.
    GroupLowerPrio,
}

impl Event {
    fn name(&self) -> &'static str {
        match self {
            Event::Startup => "startup",
            Event::ResumeMaster => "resume_master",
            Event::Shutdown => "shutdown",
            Event::Delete => "delete",
            Event::AdvertReceived(_) => "advert",
            Event::TimerFired(TimerKind::Advert) => "adver_timer",
            Event::TimerFired(TimerKind::MasterDown) => "master_down_timer",
            Event::TimerFired(TimerKind::StartupDelay) => "startup_delay",
            Event::TimerFired(TimerKind::GarpDelay) => "garp_delay",
            Event::TimerFired(TimerKind::LowerPrioGarp) => "garp_lower_prio_delay",
            Event::GroupLowerPrio => "sync_group_lower_prio",
            Event::TrackerChanged(_) => "tracker",
            Event::Sync(_) => "sync_group",
        }
    }
}

/// Outputs of the state machine, to be carried out in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority (0 = resign).
    SendAdvert {
        /// Priority to advertise.
        priority: u8,
    },
    /// Send gratuitous ARPs (IPv4) / unsolicited neighbour adverts (IPv6) for the virtual
    /// addresses.
    SendGarp {
        /// How many of each.
        repeat: u32,
    },
    /// Add the virtual addresses (and routes/rules) to the system.
    AddVips,
    /// Remove the virtual addresses (and routes/rules).
    DelVips,
    /// Tell the datapath whether this node is Master for the VRID, and whether it accepts
    /// packets to the virtual addresses (owner or Accept_Mode).
    SetDatapathMaster {
        /// This node is Master.
        master: bool,
        /// Packets to the virtual addresses are accepted when Master.
        accept: bool,
    },
    /// (Re-)arm a timer, replacing any earlier deadline of that kind.
    ArmTimer {
        /// Which timer.
        kind: TimerKind,
        /// When it fires.
        at: Time,
    },
    /// Disarm a timer.
    CancelTimer(TimerKind),
    /// Run notify scripts / write the FIFO.
    Notify(Notify),
    /// The effective priority changed (`notify_priority_changes`, status).
    PriorityChanged(u8),
    /// Report to the sync group (members of a group only).
    SyncStatus(MemberStatus),
}

/// One VRRP instance's protocol state.
#[derive(Clone, Debug)]
pub struct Instance {
    params: InstanceParams,
    state: State,
    /// Configured priority; drops from 255 to 254 when another owner shows up (keepalived).
    base_priority: u8,
    effective_priority: u8,
    track: TrackSummary,
    /// Master_Adver_Interval, centiseconds (RFC 5798 §6.1).
    master_adver_int: u16,
    timers: TimerSet,
    /// keepalived preempt_delay: lower priority adverts are honoured until then.
    preempt_until: Option<Time>,
    /// A Startup was received and no Shutdown since.
    started: bool,
    sync_fault: bool,
    wants_master: bool,
    last_sync_status: Option<MemberStatus>,
    master: Option<(IpAddr, u8)>,
    /// The answers to below-priority adverts as Master (see [`AnswerLimit`]).
    answers: AnswerLimit,
}

/// How often a Master answers adverts below its priority (priority 0 included): at most once
/// per Advertisement_Interval. keepalived answers every one; a flood of forged lower-priority
/// adverts would then turn the Master into an amplifier (one advert, GARPs and a notify script
/// per forged packet). One answer per interval keeps what the answer is for (a lower-priority
/// router that claims Master hears us at once and steps down; RFC 5798 §6.4.3's "Send an
/// ADVERTISEMENT" on priority 0), and the periodic adverts carry on regardless.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnswerLimit {
    last: Option<Time>,
    withheld: u64,
}

impl AnswerLimit {
    /// Whether an answer may go out at `now`, one `interval` after the last one; records it if
    /// so, else counts it as withheld.
    pub fn allow(&mut self, now: Time, interval: Duration) -> bool {
        if self.last.is_some_and(|last| now < last + interval) {
            self.withheld += 1;
            return false;
        }
        self.last = Some(now);
        true
    }

    /// Answers withheld so far.
    pub fn withheld(&self) -> u64 {
        self.withheld
    }
}

impl Instance {
    /// A new instance in Initialize.
    ///
    /// # Errors
    ///
    /// [`ParamsError`] for invalid parameters.
    pub fn new(params: InstanceParams) -> Result<Instance, ParamsError> {
        params.validate()?;
        Ok(Instance {
            state: State::Initialize,
            base_priority: params.priority,
            effective_priority: params.priority,
            track: TrackSummary::default(),
            master_adver_int: params.advert_int,
            timers: TimerSet::default(),
            preempt_until: None,
            started: false,
            sync_fault: false,
            wants_master: false,
            last_sync_status: None,
            master: None,
            answers: AnswerLimit::default(),
            params,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &InstanceParams {
        &self.params
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Current effective priority (configured priority adjusted by tracking).
    pub fn effective_priority(&self) -> u8 {
        self.effective_priority
    }

    /// Master_Adver_Interval, in centiseconds.
    pub fn master_adver_int(&self) -> u16 {
        self.master_adver_int
    }

    /// Address and priority of the last Master heard from, as Backup.
    pub fn master(&self) -> Option<(IpAddr, u8)> {
        self.master
    }

    /// Answers to below-priority adverts withheld by the limit (see [`AnswerLimit`]).
    pub fn answers_withheld(&self) -> u64 {
        self.answers.withheld()
    }

    /// Deadline of a timer, if armed.
    pub fn timer(&self, kind: TimerKind) -> Option<Time> {
        self.timers.deadline(kind)
    }

    /// Master_Down_Interval with the current Master_Adver_Interval and priority.
    pub fn master_down_interval(&self) -> Duration {
        master_down_interval(
            self.params.version,
            self.params.down_timer_adverts,
            self.master_adver_int,
            self.effective_priority,
        )
    }

    fn skew(&self) -> Duration {
        skew_time(
            self.params.version,
            self.effective_priority,
            self.master_adver_int,
        )
    }

    fn fault(&self) -> bool {
        self.track.fault || self.sync_fault || self.params.config_fault
    }

    fn accept(&self) -> bool {
        self.params.accept || self.base_priority == VRRP_PRIO_OWNER
    }

    /// A reload changed the instance's settings. keepalived 2.2 keeps a matched instance's
    /// state, and so does this: state, timers, tracking and the master followed are kept; the
    /// new priority applies at once (it goes out in the next advert), the new interval from the
    /// next timer armed. Nothing else happens until the next event.
    ///
    /// # Errors
    ///
    /// [`ParamsError`] for invalid parameters (nothing changed then).
    pub fn reconfigure(&mut self, params: InstanceParams) -> Result<(), ParamsError> {
        params.validate()?;
        if params.priority != self.params.priority {
            self.base_priority = params.priority;
        }
        self.effective_priority = effective_priority(self.base_priority, self.track.total_weight);
        if self.state == State::Master {
            self.master_adver_int = params.advert_int;
        }
        self.params = params;
        Ok(())
    }

    /// Processes one event at `now`; returns the actions to carry out, in order.
    pub fn handle(&mut self, now: Time, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Startup => self.on_startup(now, &event, &mut out),
            Event::ResumeMaster => self.on_resume(now, &event, &mut out),
            Event::Shutdown | Event::Delete => self.on_shutdown(now, &event, &mut out),
            Event::AdvertReceived(rx) => match self.state {
                State::Backup => self.backup_rx(now, &event, rx, &mut out),
                State::Master => self.master_rx(now, &event, rx, &mut out),
                // keepalived: adverts are not acted upon in INIT or FAULT.
                State::Initialize | State::Fault => {}
            },
            Event::TimerFired(kind) => {
                if self.timers.take_due(kind, now) {
                    self.on_timer(now, &event, kind, &mut out);
                }
            }
            Event::TrackerChanged(summary) => self.on_track(now, &event, summary, &mut out),
            Event::Sync(cmd) => self.on_sync(now, &event, cmd, &mut out),
            Event::GroupLowerPrio => {
                if self.state == State::Master {
                    self.lower_prio_garp(now, &mut out);
                }
            }
        }
        if self.params.sync_group {
            let status = MemberStatus {
                state: self.state,
                fault: self.track.fault,
                wants_master: self.wants_master,
            };
            if self.last_sync_status != Some(status) {
                self.last_sync_status = Some(status);
                out.push(Action::SyncStatus(status));
            }
        }
        out
    }

    fn arm(&mut self, kind: TimerKind, at: Time, out: &mut Vec<Action>) {
        self.timers.arm(kind, at);
        out.push(Action::ArmTimer { kind, at });
    }

    fn cancel(&mut self, kind: TimerKind, out: &mut Vec<Action>) {
        if self.timers.cancel(kind) {
            out.push(Action::CancelTimer(kind));
        }
    }

    fn set_wants_master(&mut self, v: bool) {
        self.wants_master = v;
    }

    /// The one place the state changes: logs old/new/event/reason, runs the old state's exit
    /// actions and the new state's entry actions. `down_at` is the Master_Down_Timer deadline
    /// when entering Backup.
    fn change_state(
        &mut self,
        now: Time,
        new: State,
        event: &Event,
        reason: &'static str,
        down_at: Option<Time>,
        out: &mut Vec<Action>,
    ) {
        let old = self.state;
        tracing::info!(
            vrid = self.params.vrid,
            old = old.name(),
            new = new.name(),
            event = event.name(),
            reason,
            priority = self.effective_priority,
            "VRRP state change"
        );
        // Exit actions.
        match old {
            State::Master => {
                self.cancel(TimerKind::Advert, out);
                self.cancel(TimerKind::GarpDelay, out);
                self.cancel(TimerKind::LowerPrioGarp, out);
                if new != State::Backup {
                    // RFC 5798 §6.4.3 Shutdown: "Send an ADVERTISEMENT with Priority = 0";
                    // keepalived does the same when going to FAULT.
                    out.push(Action::SendAdvert {
                        priority: VRRP_PRIO_STOP,
                    });
                }
                out.push(Action::DelVips);
                out.push(Action::SetDatapathMaster {
                    master: false,
                    accept: self.accept(),
                });
            }
            State::Backup => self.cancel(TimerKind::MasterDown, out),
            State::Initialize => {
                self.cancel(TimerKind::StartupDelay, out);
                if matches!(new, State::Backup | State::Fault) {
                    // keepalived restores the interface at startup: remove VIPs a crashed run
                    // may have left behind.
                    out.push(Action::DelVips);
                    out.push(Action::SetDatapathMaster {
                        master: false,
                        accept: self.accept(),
                    });
                }
            }
            State::Fault => {}
        }
        self.state = new;
        self.set_wants_master(false);
        // Entry actions.
        match new {
            State::Master => {
                self.master = None;
                // keepalived sends the advert before the GARPs so the old Master drops the
                // addresses first.
                out.push(Action::SendAdvert {
                    priority: self.effective_priority,
                });
                out.push(Action::AddVips);
                out.push(Action::SetDatapathMaster {
                    master: true,
                    accept: self.accept(),
                });
                // A resumed Master never left: the neighbours' caches still point at it.
                let resumed = matches!(event, Event::ResumeMaster);
                if !resumed {
                    out.push(Action::SendGarp {
                        repeat: self.params.garp_master_repeat,
                    });
                }
                self.arm(TimerKind::Advert, now + centis(self.params.advert_int), out);
                if !resumed && !self.params.garp_master_delay.is_zero() {
                    self.arm(
                        TimerKind::GarpDelay,
                        now + self.params.garp_master_delay,
                        out,
                    );
                }
                out.push(Action::Notify(Notify::Master));
            }
            State::Backup => {
                self.preempt_until = None;
                let at = down_at.unwrap_or_else(|| now + self.master_down_interval());
                self.arm(TimerKind::MasterDown, at, out);
                out.push(Action::Notify(Notify::Backup));
            }
            State::Fault => {
                self.master = None;
                out.push(Action::Notify(Notify::Fault));
            }
            State::Initialize => {
                self.master = None;
                let notify = match event {
                    Event::Delete if self.params.notify_deleted => Notify::Deleted,
                    Event::Delete => Notify::Fault,
                    _ => Notify::Stop,
                };
                out.push(Action::Notify(notify));
            }
        }
    }

    fn on_startup(&mut self, now: Time, event: &Event, out: &mut Vec<Action>) {
        if self.state != State::Initialize || self.started {
            return;
        }
        self.started = true;
        if !self.params.startup_delay.is_zero() {
            // keepalived vrrp_startup_delay.
            self.arm(
                TimerKind::StartupDelay,
                now + self.params.startup_delay,
                out,
            );
            return;
        }
        self.leave_initialize(now, event, out);
    }

    /// Startup of an instance that was Master in the previous process and whose VIPs are still
    /// up (see [`Event::ResumeMaster`]). RFC 5798 §6.4.1 lets only the owner go straight to
    /// Master because a non-owner cannot know that no other router is Master; here the
    /// caller knows it: this node was Master less than Master_Down_Interval ago (§6.4.2: no
    /// Backup may transition before then), and the advert sent on entry (§6.4.3 "send an
    /// ADVERTISEMENT") keeps every Backup's Master_Down_Timer from firing. Sync group members
    /// resume only all together (the caller's decision). With tracked objects down, or
    /// scripts not yet run, it starts normally.
    fn on_resume(&mut self, now: Time, event: &Event, out: &mut Vec<Action>) {
        if self.state != State::Initialize || self.started {
            return;
        }
        if self.track.pending_init || self.fault() {
            self.on_startup(now, event, out);
            return;
        }
        self.started = true;
        self.master_adver_int = self.params.advert_int;
        self.change_state(now, State::Master, event, "resumed after a restart within Master_Down_Interval", None, out);
    }

    /// RFC 5798 §6.4.1 (Initialize), with keepalived's FAULT, `state` and startup rules.
    fn leave_initialize(&mut self, now: Time, event: &Event, out: &mut Vec<Action>) {
        if self.track.pending_init {
            // keepalived waits for unweighted scripts' first result before choosing.
            tracing::debug!(vrid = self.params.vrid, "waiting for tracking scripts");
            return;
        }
        self.master_adver_int = self.params.advert_int;
        if self.fault() {
            self.change_state(
                now,
                State::Fault,
                event,
                "tracked object down at startup",
                None,
                out,
            );
        } else {
            self.enter_running(now, event, true, out);
        }
    }

    /// Startup or leaving FAULT: Master for an owner configured `state MASTER`, else Backup.
    fn enter_running(&mut self, now: Time, event: &Event, startup: bool, out: &mut Vec<Action>) {
        self.master_adver_int = self.params.advert_int;
        let owner_master = self.base_priority == VRRP_PRIO_OWNER
            && self.params.initial_state == InitialState::Master;
        if owner_master && !self.params.sync_group {
            // RFC 5798 §6.4.1: "If the Priority = 255 ... transition to the {Master} state"
            // (keepalived: only with `state MASTER`).
            self.change_state(now, State::Master, event, "address owner", None, out);
            return;
        }
        let down_at = if self.params.initial_state == InitialState::Master {
            // keepalived: `state MASTER` below 255 waits one interval plus the minimum skew.
            now + centis(self.master_adver_int)
                + skew_time(self.params.version, VRRP_PRIO_OWNER, self.master_adver_int)
        } else if startup {
            // RFC 5798 §6.4.1: "Set the Master_Down_Timer to Master_Down_Interval";
            // keepalived preempt_delay also delays the first takeover.
            now + self.master_down_interval() + self.params.preempt_delay
        } else {
            now + self.master_down_interval()
        };
        let reason = if startup { "startup" } else { "fault cleared" };
        self.change_state(now, State::Backup, event, reason, Some(down_at), out);
        if owner_master {
            // A sync group member never takes over alone: ask the group at once.
            self.set_wants_master(true);
        }
    }

    fn on_shutdown(&mut self, now: Time, event: &Event, out: &mut Vec<Action>) {
        if !self.started && self.state == State::Initialize {
            return;
        }
        self.started = false;
        self.sync_fault = false;
        // RFC 5798 §6.4.2/§6.4.3 "If a Shutdown event is received": cancel the timers (and as
        // Master send priority 0), transition to Initialize.
        self.change_state(now, State::Initialize, event, "shutdown", None, out);
    }

    fn on_timer(&mut self, now: Time, event: &Event, kind: TimerKind, out: &mut Vec<Action>) {
        match (kind, self.state) {
            (TimerKind::StartupDelay, State::Initialize) => self.leave_initialize(now, event, out),
            (TimerKind::MasterDown, State::Backup) => {
                if self.params.sync_group {
                    // keepalived: a sync group member becomes Master only when every member can;
                    // it keeps waiting as Backup and tells the group it wants MASTER.
                    self.set_wants_master(true);
                    let at = now + self.master_down_interval();
                    self.arm(TimerKind::MasterDown, at, out);
                } else {
                    // RFC 5798 §6.4.2 "If the Master_Down_Timer fires": send an advert, GARP,
                    // set the Adver_Timer, transition to Master.
                    self.change_state(now, State::Master, event, "master down timer", None, out);
                }
            }
            (TimerKind::Advert, State::Master) => {
                // RFC 5798 §6.4.3 "If the Adver_Timer fires": send an advert, reset the timer.
                out.push(Action::SendAdvert {
                    priority: self.effective_priority,
                });
                self.arm(TimerKind::Advert, now + centis(self.params.advert_int), out);
            }
            (TimerKind::GarpDelay, State::Master) => {
                // keepalived garp_master_delay: second GARP burst.
                out.push(Action::SendGarp {
                    repeat: self.params.garp_master_repeat,
                });
            }
            (TimerKind::LowerPrioGarp, State::Master) => {
                // keepalived vrrp_lower_prio_gratuitous_arp_thread: the second burst.
                out.push(Action::SendGarp {
                    repeat: self.params.garp_lower_prio_repeat,
                });
            }
            _ => {}
        }
    }

    /// Learns Master_Adver_Interval from an advert (RFC 5798 §6.4.2/§6.4.3: "Set
    /// Master_Adver_Interval to Adver Interval contained in the ADVERTISEMENT"). VRRPv2 has no
    /// such rule: its interval must equal ours (checked on receipt).
    fn learn_adver_int(&mut self, rx: &RxAdvert) {
        if self.params.version == Version::V3 && rx.max_adver_int != 0 {
            self.master_adver_int = rx.max_adver_int.min(VRRP_V3_MAX_ADVER_INT);
        }
    }

    fn backup_rx(&mut self, now: Time, event: &Event, rx: RxAdvert, out: &mut Vec<Action>) {
        let _ = event;
        let ours = self.effective_priority;
        if rx.priority == VRRP_PRIO_STOP {
            // RFC 5798 §6.4.2: "If the Priority in the ADVERTISEMENT is zero, then: Set the
            // Master_Down_Timer to Skew_Time".
            let at = now + self.skew();
            self.arm(TimerKind::MasterDown, at, out);
            return;
        }
        let delaying = !self.params.preempt_delay.is_zero()
            && self.preempt_until.is_none_or(|until| now < until);
        if !self.params.preempt || rx.priority >= ours || delaying {
            // RFC 5798 §6.4.2: "If Preempt_Mode is False, or if the Priority in the
            // ADVERTISEMENT is greater than or equal to the local Priority, then: Set
            // Master_Adver_Interval ..., Recompute the Master_Down_Interval, Reset the
            // Master_Down_Timer to Master_Down_Interval". keepalived preempt_delay extends this
            // to lower priorities until the delay has run since the first one was seen.
            if !self.params.preempt_delay.is_zero() {
                if rx.priority >= ours {
                    self.preempt_until = None;
                } else if self.preempt_until.is_none() {
                    self.preempt_until = Some(now + self.params.preempt_delay);
                }
            }
            self.learn_adver_int(&rx);
            let at = now + self.master_down_interval();
            self.arm(TimerKind::MasterDown, at, out);
            self.master = Some((rx.from, rx.priority));
            self.set_wants_master(false);
        } else {
            // RFC 5798 §6.4.2: "Otherwise: Discard the ADVERTISEMENT" (the timer runs out and we
            // preempt).
            tracing::debug!(vrid = self.params.vrid, from = %rx.from, priority = rx.priority, ours, "lower priority advert, discarding");
        }
    }

    fn master_rx(&mut self, now: Time, event: &Event, rx: RxAdvert, out: &mut Vec<Action>) {
        let ours = self.effective_priority;
        let interval = centis(self.params.advert_int);
        if rx.priority == VRRP_PRIO_STOP {
            // RFC 5798 §6.4.3: "If the Priority in the ADVERTISEMENT is zero, then: Send an
            // ADVERTISEMENT, Reset the Adver_Timer to Advertisement_Interval". At most once per
            // interval ([`AnswerLimit`]); a withheld answer leaves the timer alone, so a flood
            // of priority 0 cannot postpone the periodic adverts either.
            if self.answers.allow(now, interval) {
                out.push(Action::SendAdvert { priority: ours });
                self.arm(TimerKind::Advert, now + interval, out);
            }
            return;
        }
        if rx.priority == ours && rx.from == self.params.primary_addr {
            tracing::warn!(vrid = self.params.vrid, from = %rx.from, "equal priority advert from our own address");
            return;
        }
        if rx.priority == VRRP_PRIO_OWNER && ours == VRRP_PRIO_OWNER {
            // keepalived: two address owners is a configuration error; lower ours to 254 and
            // let the normal rules elect.
            tracing::error!(vrid = self.params.vrid, from = %rx.from, "another address owner (priority 255); lowering ours to 254");
            self.base_priority = VRRP_PRIO_OWNER - 1;
            self.effective_priority =
                effective_priority(self.base_priority, self.track.total_weight);
            out.push(Action::PriorityChanged(self.effective_priority));
        }
        let ours = self.effective_priority;
        let higher =
            rx.priority > ours || (rx.priority == ours && rx.from > self.params.primary_addr);
        if higher {
            // RFC 5798 §6.4.3: "If the Priority in the ADVERTISEMENT is greater than the local
            // Priority, or the Priority in the ADVERTISEMENT is equal to the local Priority and
            // the primary IPvX Address of the sender is greater than the local primary IPvX
            // Address, then: Cancel Adver_Timer, Set Master_Adver_Interval ..., Recompute the
            // Skew_Time, Recompute the Master_Down_Interval, Set Master_Down_Timer to
            // Master_Down_Interval, Transition to the {Backup} state".
            if self.params.higher_prio_send_advert {
                // keepalived higher_prio_send_advert.
                out.push(Action::SendAdvert { priority: ours });
            }
            self.learn_adver_int(&rx);
            let down_at = now + self.master_down_interval();
            self.change_state(
                now,
                State::Backup,
                event,
                "higher priority advert",
                Some(down_at),
                out,
            );
            self.master = Some((rx.from, rx.priority));
        } else {
            // RFC 5798 §6.4.3: "Otherwise: Discard the ADVERTISEMENT". keepalived answers with
            // an advert (unless lower_prio_no_advert) to force a new election, may send GARPs,
            // and notifies MASTER_RX_LOWER_PRI; ka does all that at most once per interval
            // ([`AnswerLimit`]).
            if !self.answers.allow(now, interval) {
                return;
            }
            if !self.params.lower_prio_no_advert {
                out.push(Action::SendAdvert { priority: ours });
            }
            self.lower_prio_garp(now, out);
            out.push(Action::Notify(Notify::MasterRxLowerPri));
        }
    }

    /// keepalived (vrrp_state_master_rx): `garp_lower_prio_repeat` GARPs now and, after
    /// `garp_lower_prio_delay`, as many again. keepalived adds one delayed burst per advert;
    /// ka re-arms one timer (the answers are limited to one per interval anyway).
    fn lower_prio_garp(&mut self, now: Time, out: &mut Vec<Action>) {
        let repeat = self.params.garp_lower_prio_repeat;
        if repeat == 0 {
            return;
        }
        out.push(Action::SendGarp { repeat });
        if !self.params.garp_lower_prio_delay.is_zero() {
            self.arm(TimerKind::LowerPrioGarp, now + self.params.garp_lower_prio_delay, out);
        }
    }

    fn on_track(&mut self, now: Time, event: &Event, summary: TrackSummary, out: &mut Vec<Action>) {
        self.track = summary;
        let prio = effective_priority(self.base_priority, summary.total_weight);
        if prio != self.effective_priority {
            self.effective_priority = prio;
            out.push(Action::PriorityChanged(prio));
        }
        self.reevaluate(now, event, out);
    }

    /// Applies the fault conditions (keepalived): any fault takes a running instance to FAULT;
    /// clearing them all takes it back to BACKUP (or MASTER for a `state MASTER` owner).
    fn reevaluate(&mut self, now: Time, event: &Event, out: &mut Vec<Action>) {
        match self.state {
            State::Initialize
                if self.started && self.timers.deadline(TimerKind::StartupDelay).is_none() =>
            {
                self.leave_initialize(now, event, out);
            }
            State::Backup | State::Master if self.fault() => {
                let reason = if self.track.fault {
                    "tracked object down"
                } else {
                    "sync group fault"
                };
                self.change_state(now, State::Fault, event, reason, None, out);
            }
            State::Fault if !self.fault() => self.enter_running(now, event, false, out),
            _ => {}
        }
    }

    fn on_sync(&mut self, now: Time, event: &Event, cmd: SyncCommand, out: &mut Vec<Action>) {
        match cmd {
            SyncCommand::ForceFault => {
                self.sync_fault = true;
                self.reevaluate(now, event, out);
            }
            SyncCommand::ReleaseFault => {
                self.sync_fault = false;
                self.reevaluate(now, event, out);
            }
            SyncCommand::GoMaster if self.state == State::Backup && !self.fault() => {
                // keepalived vrrp_sync_master: the group moves every member to MASTER together
                // (RFC 5798 §6.4.2 takeover actions).
                self.change_state(now, State::Master, event, "sync group master", None, out);
            }
            SyncCommand::GoBackup if self.state == State::Master => {
                // keepalived vrrp_sync_backup: a member left MASTER; the others follow.
                self.change_state(now, State::Backup, event, "sync group backup", None, out);
            }
            SyncCommand::GoMaster | SyncCommand::GoBackup => {}
        }
    }
}
