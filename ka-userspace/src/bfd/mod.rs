//! BFD (RFC 5880, single hop over UDP per RFC 5881) as keepalived 2.2's `bfd_instance` runs
//! it: a sans-IO session state machine ([`Session`]) with injected time, the demultiplexer of
//! the sessions of one daemon ([`Sessions`]), the codec ([`packet`]) and the UDP shell that
//! owns the sockets and timers ([`io`]).
//!
//! What the clients see follows keepalived (`bfd_event_send`): a session is reported up when it
//! enters Up and down when it leaves Up, except when the neighbour signalled AdminDown (RFC 5882
//! §3.2: an administrative shutdown is not a path failure). `track_bfd` and `BFD_CHECK` act on
//! that report.
//!
//! Asynchronous mode only, as keepalived: no Echo function, no authentication, and ka never
//! asks for Demand mode (it honours a neighbour's).

pub mod io;
pub mod packet;

use std::{net::IpAddr, time::Duration};

pub use packet::{ControlPacket, DecodeError, Diag, State};

use crate::vrrp::Time;

/// The least Desired Min TX Interval while the session is not Up (RFC 5880 §6.8.3).
pub const MIN_IDLE_TX: Duration = Duration::from_secs(1);

/// What one session is configured with (`bfd_instance`'s timers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionParams {
    /// `min_rx`: bfd.RequiredMinRxInterval.
    pub min_rx: Duration,
    /// `min_tx`: bfd.DesiredMinTxInterval while Up.
    pub min_tx: Duration,
    /// `idle_tx`: bfd.DesiredMinTxInterval while not Up (at least [`MIN_IDLE_TX`]).
    pub idle_tx: Duration,
    /// `multiplier`: bfd.DetectMult.
    pub detect_mult: u8,
    /// `passive`: send nothing until the neighbour has (RFC 5880 §6.1).
    pub passive: bool,
}

impl Default for SessionParams {
    /// keepalived's defaults: 10 ms, 10 ms, 1000 ms, 5, active.
    fn default() -> Self {
        SessionParams {
            min_rx: Duration::from_millis(10),
            min_tx: Duration::from_millis(10),
            idle_tx: MIN_IDLE_TX,
            detect_mult: 5,
            passive: false,
        }
    }
}

/// An input to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A packet that passed the §6.8.6 checks and was matched to this session.
    Rx(ControlPacket),
    /// A deadline of [`Session::next_deadline`] has come.
    Timer,
    /// The session is taken administratively down (its socket cannot be opened).
    AdminDown,
    /// The session leaves AdminDown.
    Enable,
}

/// What the runtime must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this packet to the neighbour.
    Send(ControlPacket),
    /// bfd.SessionState changed (for logs).
    StateChanged {
        /// Old state.
        from: State,
        /// New state.
        to: State,
        /// bfd.LocalDiag after the change.
        diag: Diag,
    },
    /// What `track_bfd` and `BFD_CHECK` see changed.
    Client {
        /// Up.
        up: bool,
    },
}

/// xorshift64*: the jitter and discriminator source, seeded by the runtime (tests fix it).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced: xorshift has no zero state).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `lo..=hi` (`lo` when `hi <= lo`).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// One BFD session (RFC 5880 §6.8.1 state variables), asynchronous mode.
#[derive(Clone, Debug)]
pub struct Session {
    params: SessionParams,
    state: State,
    remote_state: State,
    local_discr: u32,
    remote_discr: u32,
    local_diag: Diag,
    remote_min_rx: Duration,
    remote_min_tx: Duration,
    remote_detect_mult: u8,
    remote_demand: bool,
    /// A Poll Sequence is in progress (§6.5).
    poll: bool,
    /// The Desired Min TX Interval the transmit interval uses: an increase while Up waits for
    /// the end of the Poll Sequence (§6.8.3).
    tx_desired: Duration,
    /// The Required Min RX Interval the detection time uses: a decrease while Up waits for the
    /// end of the Poll Sequence (§6.8.3), as the neighbour may still send at the old rate.
    rx_required: Duration,
    next_tx: Option<Time>,
    /// Init/Up: the detection time expires (§6.8.4); Down: bfd.RemoteDiscr is forgotten (§6.8.1).
    detect_at: Option<Time>,
    client_up: bool,
    rng: Rng,
}

impl Session {
    /// A session in Down with discriminator `local_discr` (non-zero, unique on this host). An
    /// active session sends its first packet at `now`.
    pub fn new(params: SessionParams, local_discr: u32, seed: u64, now: Time) -> Session {
        let mut s = Session {
            params,
            state: State::Down,
            remote_state: State::Down,
            local_discr,
            remote_discr: 0,
            local_diag: Diag::NONE,
            // §6.8.1: "This variable MUST be initialized to 1."
            remote_min_rx: Duration::from_micros(1),
            remote_min_tx: Duration::ZERO,
            remote_detect_mult: 0,
            remote_demand: false,
            poll: false,
            tx_desired: Duration::ZERO,
            rx_required: params.min_rx,
            next_tx: None,
            detect_at: None,
            client_up: false,
            rng: Rng::new(seed),
        };
        s.tx_desired = s.desired_min_tx();
        if s.may_transmit() {
            s.next_tx = Some(now);
        }
        s
    }

    /// bfd.SessionState.
    pub fn state(&self) -> State {
        self.state
    }

    /// bfd.RemoteSessionState.
    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    /// bfd.LocalDiag.
    pub fn diag(&self) -> Diag {
        self.local_diag
    }

    /// bfd.LocalDiscr.
    pub fn local_discr(&self) -> u32 {
        self.local_discr
    }

    /// bfd.RemoteDiscr (0: unknown).
    pub fn remote_discr(&self) -> u32 {
        self.remote_discr
    }

    /// What `track_bfd` and `BFD_CHECK` see.
    pub fn client_up(&self) -> bool {
        self.client_up
    }

    /// The parameters.
    pub fn params(&self) -> &SessionParams {
        &self.params
    }

    /// A Poll Sequence is in progress.
    pub fn polling(&self) -> bool {
        self.poll
    }

    /// bfd.DesiredMinTxInterval as advertised now: `min_tx` while Up, `idle_tx` (at least one
    /// second, §6.8.3) otherwise.
    pub fn desired_min_tx(&self) -> Duration {
        if self.state == State::Up {
            self.params.min_tx
        } else {
            self.params.idle_tx.max(MIN_IDLE_TX)
        }
    }

    /// The negotiated transmit interval (§6.8.7): the greater of the Desired Min TX Interval in
    /// use and the neighbour's Required Min RX Interval.
    pub fn tx_interval(&self) -> Duration {
        self.tx_desired.max(self.remote_min_rx)
    }

    /// The Detection Time (§6.8.4, asynchronous mode): the neighbour's Detect Mult times the
    /// greater of our Required Min RX Interval and its last Desired Min TX Interval.
    pub fn detection_time(&self) -> Duration {
        self.rx_required.max(self.remote_min_tx) * u32::from(self.remote_detect_mult)
    }

    /// When [`Event::Timer`] is next due.
    pub fn next_deadline(&self) -> Option<Time> {
        match (self.next_tx, self.detect_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs one event at `now`.
    pub fn handle(&mut self, now: Time, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Rx(p) => self.receive(now, &p, &mut out),
            Event::Timer => self.timers(now, &mut out),
            Event::AdminDown => {
                // §6.8.16; keepalived sends nothing more and tells no client.
                self.next_tx = None;
                self.detect_at = None;
                self.change_state(State::AdminDown, Diag::ADMIN_DOWN, &mut out);
            }
            Event::Enable => {
                if self.state == State::AdminDown {
                    self.remote_discr = 0;
                    self.remote_state = State::Down;
                    self.change_state(State::Down, Diag::ADMIN_DOWN, &mut out);
                    self.send_soon(now);
                }
            }
        }
        out
    }

    /// Applies new parameters (a reload that kept the session). Timer changes while Up start
    /// a Poll Sequence (§6.8.3; keepalived's `bfd_cmp_timers`).
    pub fn set_params(&mut self, now: Time, params: SessionParams) {
        let timers_changed = (params.min_rx, params.min_tx, params.idle_tx, params.detect_mult)
            != (self.params.min_rx, self.params.min_tx, self.params.idle_tx, self.params.detect_mult);
        self.params = params;
        if timers_changed && self.state == State::Up {
            self.poll = true;
        }
        self.apply_desired();
        if self.state != State::AdminDown {
            self.send_soon(now);
        }
    }

    /// Takes new intervals into use: at once, except while Up and polling an increase of the
    /// transmit interval or a decrease of the required receive interval, which wait for the
    /// Poll Sequence to end (§6.8.3).
    fn apply_desired(&mut self) {
        let waiting = self.state == State::Up && self.poll;
        let d = self.desired_min_tx();
        if !waiting || d < self.tx_desired {
            self.tx_desired = d;
        }
        if !waiting || self.params.min_rx > self.rx_required {
            self.rx_required = self.params.min_rx;
        }
    }

    fn receive(&mut self, now: Time, p: &ControlPacket, out: &mut Vec<Action>) {
        // §6.8.6: "If bfd.SessionState is AdminDown, discard the packet."
        if self.state == State::AdminDown {
            return;
        }
        let old_interval = self.tx_interval();
        self.remote_discr = p.my_discr;
        self.remote_state = p.state;
        self.remote_demand = p.demand;
        self.remote_min_rx = p.required_min_rx;
        self.remote_min_tx = p.desired_min_tx;
        self.remote_detect_mult = p.detect_mult;
        // §6.8.6: "If the Final (F) bit is set, terminate the Poll Sequence"; a deferred
        // increase of the transmit interval now applies (§6.8.3).
        if p.final_ && self.poll {
            self.poll = false;
            self.apply_desired();
        }
        let before = self.state;
        if p.state == State::AdminDown {
            // §6.8.6: "If received state is AdminDown: If bfd.SessionState is not Down, set
            // bfd.LocalDiag to 3 (Neighbor signaled session down), set bfd.SessionState to Down".
            if self.state != State::Down {
                self.change_state(State::Down, Diag::NEIGHBOR_DOWN, out);
            }
        } else {
            match (self.state, p.state) {
                // §6.8.6: Down + received Down → Init; Down + Init → Up.
                (State::Down, State::Down) => self.change_state(State::Init, Diag::NONE, out),
                (State::Down, State::Init) => self.change_state(State::Up, Diag::NONE, out),
                // Init + received Init or Up → Up.
                (State::Init, State::Init | State::Up) => self.change_state(State::Up, Diag::NONE, out),
                // Up + received Down → Down, diag 3.
                (State::Up, State::Down) => self.change_state(State::Down, Diag::NEIGHBOR_DOWN, out),
                _ => {}
            }
        }
        // The detection timer restarts with every valid packet (§6.8.4); in Down it bounds how
        // long bfd.RemoteDiscr is remembered (§6.8.1).
        if self.remote_detect_mult > 0 {
            self.detect_at = Some(now + self.detection_time());
        }
        // §6.8.7: "If a BFD Control packet is received with the Poll (P) bit set to 1, the
        // receiving system MUST transmit a BFD Control packet with the Poll (P) bit clear and
        // the Final (F) bit set as soon as practicable, without respect to the transmission
        // timer".
        if p.poll {
            out.push(Action::Send(self.packet(true)));
        }
        if !self.may_transmit() {
            self.next_tx = None;
        } else if self.state != before {
            // A state change is told at once: the three-way handshake does not wait a second
            // per step.
            self.next_tx = Some(now);
        } else {
            let interval = self.tx_interval();
            match self.next_tx {
                // A passive session's first answer, or periodic sending resumed.
                None => self.schedule_tx(now),
                // A shorter interval applies before the next packet is due.
                Some(at) if interval < old_interval && at > now + interval => self.schedule_tx(now),
                Some(_) => {}
            }
        }
    }

    fn timers(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.detect_at.is_some_and(|at| at <= now) {
            self.detect_at = None;
            // §6.8.1: "If a period of a Detection Time passes without the receipt of a valid,
            // authenticated BFD packet from the remote system, this variable MUST be set to
            // zero."
            self.remote_discr = 0;
            match self.state {
                State::Init | State::Up => {
                    // §6.8.4: the session has gone down; bfd.LocalDiag is 1.
                    self.change_state(State::Down, Diag::EXPIRED, out);
                    self.remote_state = State::Down;
                    self.send_soon(now);
                }
                State::Down => {
                    // keepalived's reset timer: the neighbour is forgotten.
                    self.remote_state = State::Down;
                    self.remote_demand = false;
                    self.poll = false;
                    if !self.may_transmit() {
                        self.next_tx = None;
                    }
                }
                State::AdminDown => {}
            }
        }
        if let Some(at) = self.next_tx.filter(|at| *at <= now) {
            self.next_tx = None;
            if self.may_transmit() {
                out.push(Action::Send(self.packet(false)));
                // From the planned time: a runtime that wakes up late (timer granularity, a
                // loaded machine) must not stretch every interval by its lateness; after a
                // stall longer than an interval, from now.
                let base = if now.saturating_since(at) < self.tx_interval() { at } else { now };
                self.schedule_tx(base);
            }
        }
    }

    /// Whether periodic packets may be sent (§6.8.7).
    fn may_transmit(&self) -> bool {
        // "A system MUST NOT transmit BFD Control packets if bfd.RemoteDiscr is zero and the
        // system is taking the Passive role."
        let passive_wait = self.params.passive && self.remote_discr == 0;
        // "If bfd.RemoteMinRxInterval is zero, the local system MUST NOT periodically transmit".
        let not_wanted = self.remote_min_rx.is_zero();
        // "if bfd.RemoteDemandMode is 1, bfd.SessionState is Up, and bfd.RemoteSessionState is
        // Up, Demand mode is active on the remote system and the local system MUST cease the
        // periodic transmission of BFD Control packets".
        let demand = self.remote_demand && self.state == State::Up && self.remote_state == State::Up;
        self.state != State::AdminDown && !passive_wait && !not_wanted && !demand
    }

    fn send_soon(&mut self, now: Time) {
        self.next_tx = self.may_transmit().then_some(now);
    }

    /// The next periodic packet, one jittered interval from `now` (§6.8.7: reduced by 0 to
    /// 25 %, or by 10 to 25 % when bfd.DetectMult is 1).
    fn schedule_tx(&mut self, now: Time) {
        if !self.may_transmit() {
            self.next_tx = None;
            return;
        }
        let interval = u64::try_from(self.tx_interval().as_micros()).unwrap_or(u64::MAX);
        let lo = if self.params.detect_mult == 1 { interval / 10 } else { 0 };
        let jitter = self.rng.between(lo, interval / 4);
        self.next_tx = Some(now + Duration::from_micros(interval - jitter));
    }

    /// Every state change goes through here: logs for the runtime, the entry actions of the
    /// new state, and what the clients see.
    fn change_state(&mut self, to: State, diag: Diag, out: &mut Vec<Action>) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        match to {
            State::Down | State::AdminDown => {
                self.local_diag = diag;
                // Not Up: the idle interval, at once (§6.8.3 defers increases only while Up).
                self.poll = false;
                self.apply_desired();
            }
            State::Init => self.local_diag = Diag::NONE,
            State::Up => {
                self.local_diag = Diag::NONE;
                // §6.8.3: the Desired Min TX Interval changes from idle_tx to min_tx; a change
                // is announced with a Poll Sequence (keepalived and BIRD do so on Up).
                if self.params.min_tx != self.params.idle_tx.max(MIN_IDLE_TX) {
                    self.poll = true;
                }
                self.apply_desired();
            }
        }
        out.push(Action::StateChanged { from, to, diag: self.local_diag });
        // keepalived: clients hear of Up, and of leaving Up unless the neighbour went AdminDown
        // (RFC 5882 §3.2) or we did.
        let client_up = match (from, to) {
            (_, State::Up) => true,
            (State::Up, State::AdminDown) => self.client_up,
            (State::Up, _) if self.remote_state == State::AdminDown => self.client_up,
            (State::Up, _) => false,
            _ => self.client_up,
        };
        if client_up != self.client_up {
            self.client_up = client_up;
            out.push(Action::Client { up: client_up });
        }
    }

    /// The packet to send now; `final_` answers a Poll (P and F are never both set, §6.8.7).
    pub fn packet(&self, final_: bool) -> ControlPacket {
        ControlPacket {
            diag: self.local_diag,
            state: self.state,
            poll: self.poll && !final_,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.params.detect_mult,
            my_discr: self.local_discr,
            your_discr: self.remote_discr,
            desired_min_tx: self.desired_min_tx(),
            required_min_rx: self.params.min_rx,
            required_min_echo_rx: Duration::ZERO,
        }
    }
}

/// A session as configured: who the neighbour is and how packets are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSpec {
    /// The `bfd_instance` name.
    pub name: String,
    /// `neighbor_ip`.
    pub neighbor: IpAddr,
    /// `source_ip`.
    pub local: Option<IpAddr>,
    /// TTL / hop limit sent (`ttl`/`hoplimit`; keepalived: 255 for IPv4, 64 for IPv6).
    pub ttl: u8,
    /// `max_hops`: how far below `ttl` a received TTL may be (255: not checked).
    pub max_hops: u8,
    /// Timers and role.
    pub params: SessionParams,
}

impl SessionSpec {
    /// The least TTL a received packet may have, if checked (RFC 5881 §5's GTSM, which
    /// keepalived extends with `max_hops`).
    pub fn min_ttl(&self) -> Option<u8> {
        (self.max_hops != u8::MAX).then(|| self.ttl.saturating_sub(self.max_hops))
    }
}

/// A received UDP datagram for port 3784.
#[derive(Clone, Copy, Debug)]
pub struct Received<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (`IP_PKTINFO`), if known.
    pub dst: Option<IpAddr>,
    /// TTL / hop limit, if known.
    pub ttl: Option<u8>,
    /// The UDP payload.
    pub payload: &'a [u8],
}

/// Why a datagram reached no session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RxError {
    /// The packet fails the §6.8.6 checks.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// No session has this Your Discriminator, or (when it is zero) this neighbour address.
    #[error("no session for {src} (your discriminator {your_discr:#x})")]
    NoSession {
        /// Source address.
        src: IpAddr,
        /// Your Discriminator.
        your_discr: u32,
    },
    /// The session's neighbour is another address than the packet's source.
    #[error("discriminator {your_discr:#x} belongs to another neighbour than {src}")]
    WrongSource {
        /// Source address.
        src: IpAddr,
        /// Your Discriminator.
        your_discr: u32,
    },
    /// The TTL is below what the session accepts (RFC 5881 §5).
    #[error("TTL {ttl} below {min}")]
    Ttl {
        /// Received TTL.
        ttl: u8,
        /// Least accepted.
        min: u8,
    },
}

impl RxError {
    /// A short stable name for counters.
    pub const fn reason(&self) -> &'static str {
        match self {
            RxError::Decode(e) => e.reason(),
            RxError::NoSession { .. } => "no_session",
            RxError::WrongSource { .. } => "wrong_source",
            RxError::Ttl { .. } => "ttl",
        }
    }
}

/// What the runtime must do for one session of [`Sessions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output {
    /// Index of the session in [`Sessions::specs`].
    pub session: usize,
    /// The action.
    pub action: Action,
}

/// Every session of a daemon: discriminators, packet-to-session matching (§6.8.6) and the
/// TTL check; sans-IO like [`Session`].
#[derive(Clone, Debug)]
pub struct Sessions {
    specs: Vec<SessionSpec>,
    sessions: Vec<Session>,
    rng: Rng,
}

impl Sessions {
    /// No sessions; `seed` drives discriminators and jitter.
    pub fn new(seed: u64) -> Sessions {
        Sessions { specs: Vec::new(), sessions: Vec::new(), rng: Rng::new(seed) }
    }

    /// The sessions' configuration, by index.
    pub fn specs(&self) -> &[SessionSpec] {
        &self.specs
    }

    /// The session at `i`.
    pub fn session(&self, i: usize) -> Option<&Session> {
        self.sessions.get(i)
    }

    /// Replaces the configuration. A session whose name, neighbour and source address are
    /// kept keeps its state (keepalived's reload keeps it by name) and takes the new timers;
    /// others start in Down.
    pub fn configure(&mut self, now: Time, specs: Vec<SessionSpec>) {
        let mut old: Vec<Option<(SessionSpec, Session)>> =
            std::mem::take(&mut self.specs).into_iter().zip(std::mem::take(&mut self.sessions)).map(Some).collect();
        let mut sessions = Vec::with_capacity(specs.len());
        for spec in &specs {
            let kept = old.iter_mut().find(|o| {
                o.as_ref().is_some_and(|(s, _)| s.name == spec.name && s.neighbor == spec.neighbor && s.local == spec.local)
            });
            match kept.and_then(Option::take) {
                Some((_, mut session)) => {
                    session.set_params(now, spec.params);
                    sessions.push(session);
                }
                None => {
                    let discr = self.new_discriminator(&sessions, &old);
                    let seed = self.rng.next_u64();
                    sessions.push(Session::new(spec.params, discr, seed, now));
                }
            }
        }
        self.specs = specs;
        self.sessions = sessions;
    }

    /// A random non-zero discriminator no session (kept or new) has.
    fn new_discriminator(&mut self, new: &[Session], old: &[Option<(SessionSpec, Session)>]) -> u32 {
        loop {
            let d = (self.rng.next_u64() >> 32) as u32;
            let taken = new.iter().chain(old.iter().flatten().map(|(_, s)| s)).any(|s| s.local_discr == d);
            if d != 0 && !taken {
                return d;
            }
        }
    }

    /// Matches a received datagram to its session (§6.8.6: by Your Discriminator, or by
    /// addresses while it is zero) and runs it.
    ///
    /// Returns the session's index and what it does.
    ///
    /// # Errors
    /// The datagram is discarded; the error says why (to be counted).
    pub fn receive(&mut self, now: Time, rx: Received<'_>) -> Result<(usize, Vec<Output>), RxError> {
        let p = ControlPacket::decode(rx.payload)?;
        let i = if p.your_discr != 0 {
            let i = self
                .sessions
                .iter()
                .position(|s| s.local_discr == p.your_discr)
                .ok_or(RxError::NoSession { src: rx.src, your_discr: p.your_discr })?;
            if self.specs[i].neighbor != rx.src {
                return Err(RxError::WrongSource { src: rx.src, your_discr: p.your_discr });
            }
            i
        } else {
            // keepalived's find_bfd_by_addr: the neighbour, and the source address if set.
            self.specs
                .iter()
                .position(|s| s.neighbor == rx.src && (s.local.is_none() || rx.dst.is_none() || s.local == rx.dst))
                .ok_or(RxError::NoSession { src: rx.src, your_discr: 0 })?
        };
        if let (Some(ttl), Some(min)) = (rx.ttl, self.specs[i].min_ttl()) {
            if ttl < min {
                return Err(RxError::Ttl { ttl, min });
            }
        }
        Ok((i, self.sessions[i].handle(now, Event::Rx(p)).into_iter().map(|action| Output { session: i, action }).collect()))
    }

    /// Runs the sessions whose deadline has come.
    pub fn poll(&mut self, now: Time) -> Vec<Output> {
        let mut out = Vec::new();
        for (i, s) in self.sessions.iter_mut().enumerate() {
            if s.next_deadline().is_some_and(|d| d <= now) {
                out.extend(s.handle(now, Event::Timer).into_iter().map(|action| Output { session: i, action }));
            }
        }
        out
    }

    /// Runs `event` on session `i` (out of range: nothing).
    pub fn handle(&mut self, i: usize, now: Time, event: Event) -> Vec<Output> {
        match self.sessions.get_mut(i) {
            Some(s) => s.handle(now, event).into_iter().map(|action| Output { session: i, action }).collect(),
            None => Vec::new(),
        }
    }

    /// The earliest deadline of all sessions.
    pub fn next_deadline(&self) -> Option<Time> {
        self.sessions.iter().filter_map(Session::next_deadline).min()
    }
}

#[cfg(test)]
mod tests;
