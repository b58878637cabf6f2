//! The BFD runtime: one owner task, on a thread and runtime of its own, holds the UDP sockets
//! (port 3784 to listen, one source port in 49152-65535 per session, RFC 5881 §4), the timers
//! and the sans-IO [`Sessions`], and publishes what `track_bfd` and `BFD_CHECK` see as a
//! [`ClientStates`] watch.
//!
//! Like keepalived's BFD process: a session whose socket cannot be opened is AdminDown and
//! retried every minute; a listening socket that cannot be opened (port 3784 taken) is retried
//! too, every few seconds, the sessions staying Down meanwhile.

use std::{
    collections::{BTreeMap, HashMap},
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd,
    time::Duration,
};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage};
use serde::{Deserialize, Serialize};
use tokio::{
    io::Interest,
    net::UdpSocket,
    sync::{mpsc, oneshot, watch},
    time::Instant,
};
use tracing::{debug, info, warn};

use super::{
    packet::{CONTROL_PORT, MAX_SOURCE_PORT, MIN_SOURCE_PORT},
    Action, Event, Received, Rng, SessionParams, SessionSpec, Sessions, State,
};
use crate::{config::Config, vrrp::Time};

/// What the clients see, by `bfd_instance` name: up (keepalived's BFD events). Every
/// configured name is present; a name that runs no session is always down.
pub type ClientStates = BTreeMap<String, bool>;

/// How often a listening socket that could not be opened is retried.
const LISTEN_RETRY: Duration = Duration::from_secs(5);
/// How often a session socket that could not be opened is retried (keepalived: 60 s).
const SESSION_RETRY: Duration = Duration::from_secs(60);

/// Errors of the BFD runtime's start.
#[derive(Debug, thiserror::Error)]
pub enum BfdError {
    /// Its thread or runtime cannot be started.
    #[error("the BFD thread cannot be started: {0}")]
    Thread(#[source] io::Error),
}

/// The sessions of `cfg`'s `bfd_instance`s that run one (see
/// [`crate::config::model::BfdInstance::enabled`]).
pub fn specs(cfg: &Config) -> Vec<SessionSpec> {
    cfg.bfd_instances
        .iter()
        .filter(|b| b.enabled)
        .filter_map(|b| {
            let neighbor = b.neighbor_ip?;
            Some(SessionSpec {
                name: b.name.clone(),
                neighbor,
                local: b.source_ip,
                ttl: b.ttl.unwrap_or(if neighbor.is_ipv4() { 255 } else { 64 }),
                max_hops: b.max_hops,
                params: SessionParams {
                    min_rx: b.min_rx,
                    min_tx: b.min_tx,
                    idle_tx: b.idle_tx,
                    detect_mult: u8::try_from(b.multiplier).unwrap_or(u8::MAX).max(1),
                    passive: b.passive,
                },
            })
        })
        .collect()
}

/// What the runtime runs: the sessions, and every name clients may ask about (with whether
/// it runs a session).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The sessions.
    pub specs: Vec<SessionSpec>,
    /// Every `bfd_instance` name and whether it runs a session.
    pub names: Vec<(String, bool)>,
}

impl Plan {
    /// The plan of `cfg`'s `bfd_instance`s.
    pub fn of(cfg: &Config) -> Plan {
        Plan { specs: specs(cfg), names: cfg.bfd_instances.iter().map(|b| (b.name.clone(), b.enabled)).collect() }
    }

    /// The same names, none running a session (`--no-bfd`).
    pub fn without_sessions(self) -> Plan {
        Plan { specs: Vec::new(), names: self.names.into_iter().map(|(n, _)| (n, false)).collect() }
    }

    /// Every name, down, with the values of `old` kept for names that run a session.
    fn client_states(&self, old: &ClientStates) -> ClientStates {
        self.names.iter().map(|(n, enabled)| (n.clone(), *enabled && old.get(n).copied().unwrap_or(false))).collect()
    }
}

/// One session as `ka status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionReport {
    /// `bfd_instance` name.
    pub name: String,
    /// `neighbor_ip`.
    pub neighbor: IpAddr,
    /// bfd.SessionState.
    pub state: String,
    /// bfd.RemoteSessionState.
    pub remote_state: String,
    /// bfd.LocalDiag.
    pub diag: String,
    /// What `track_bfd` and `BFD_CHECK` see.
    pub up: bool,
    /// bfd.LocalDiscr.
    pub local_discr: u32,
    /// bfd.RemoteDiscr.
    pub remote_discr: u32,
    /// Negotiated transmit interval, microseconds.
    pub tx_interval_us: u64,
    /// Detection time, microseconds (0 before the first packet).
    pub detection_time_us: u64,
    /// Packets sent.
    pub tx: u64,
    /// Packets received and matched.
    pub rx: u64,
}

/// The BFD runtime's state for `ka status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BfdReport {
    /// The sessions.
    pub sessions: Vec<SessionReport>,
    /// Datagrams discarded, by reason.
    pub dropped: BTreeMap<String, u64>,
}

impl BfdReport {
    /// The lines of `ka status`.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for b in &self.sessions {
            let _ = writeln!(
                s,
                "bfd {} ({}): {} (neighbour {}), diag {}; tx every {} ms, detection {} ms; packets rx {} tx {}; trackers see it {}",
                b.name,
                b.neighbor,
                b.state,
                b.remote_state,
                b.diag,
                b.tx_interval_us / 1000,
                b.detection_time_us / 1000,
                b.rx,
                b.tx,
                if b.up { "up" } else { "down" }
            );
        }
        for (reason, n) in &self.dropped {
            let _ = writeln!(s, "bfd dropped {reason}: {n}");
        }
        s
    }
}

enum Command {
    Reload(Plan, oneshot::Sender<()>),
    Status(oneshot::Sender<BfdReport>),
}

/// The running BFD sessions. Dropping it stops them.
#[derive(Debug)]
pub struct BfdHandle {
    states: watch::Receiver<ClientStates>,
    cmd: mpsc::UnboundedSender<Command>,
    /// Dropped with the handle: the owner task stops.
    _stop: oneshot::Sender<()>,
}

impl BfdHandle {
    /// What the clients see, updated on every change.
    pub fn states(&self) -> watch::Receiver<ClientStates> {
        self.states.clone()
    }

    /// The sessions' state.
    pub async fn status(&self) -> BfdReport {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Status(tx)).is_err() {
            return BfdReport::default();
        }
        rx.await.unwrap_or_default()
    }

    /// [`BfdHandle::status`] as a detached future.
    pub fn status_task(&self) -> impl std::future::Future<Output = BfdReport> + Send + 'static {
        let cmd = self.cmd.clone();
        async move {
            let (tx, rx) = oneshot::channel();
            if cmd.send(Command::Status(tx)).is_err() {
                return BfdReport::default();
            }
            rx.await.unwrap_or_default()
        }
    }

    /// Applies a new plan (see [`Plan::of`]): sessions with the same name and addresses keep
    /// their state (keepalived's reload), others start in Down, removed ones stop.
    pub async fn reload(&self, plan: Plan) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Reload(plan, tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Resolves once the owner task has stopped.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let cmd = self.cmd.clone();
        async move { cmd.closed().await }
    }
}

/// Starts the sessions of `plan` (see [`Plan::of`]) on a thread and runtime of their own, as keepalived runs BFD
/// in a process of its own: the daemon's main loop (table builds, map writes) never delays a
/// packet of a 10 ms session. Clients see every session down until it comes Up.
///
/// # Errors
/// The thread or its runtime cannot be started.
pub fn start(plan: Plan, tuning: crate::threads::Tuning, random_seed: Option<u32>) -> Result<BfdHandle, BfdError> {
    let (states_tx, states) = watch::channel(plan.client_states(&ClientStates::new()));
    let (cmd, cmd_rx) = mpsc::unbounded_channel();
    let (stop, stop_rx) = oneshot::channel();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(BfdError::Thread)?;
    let seed = session_seed(random_seed, || {
        let mut seed = [0u8; 8];
        getrandom(&mut seed).ok().map(|()| u64::from_ne_bytes(seed))
    });
    std::thread::Builder::new()
        .name("ka-bfd".into())
        .spawn(move || {
            crate::threads::apply_self(crate::threads::Part::Bfd, &tuning);
            rt.block_on(async move {
                let mut owner = Owner {
                    sessions: Sessions::new(seed),
                    rng: Rng::new(seed.rotate_left(17)),
                    tx: HashMap::new(),
                    rx4: None,
                    rx6: None,
                    states: states_tx,
                    epoch: Instant::now(),
                    dropped: BTreeMap::new(),
                    counts: HashMap::new(),
                    listen_retry: None,
                };
                owner.configure(&plan);
                owner.run(cmd_rx, stop_rx).await;
            });
        })
        .map_err(BfdError::Thread)?;
    Ok(BfdHandle { states, cmd, _stop: stop })
}

/// The seed of the sessions' discriminators and jitter: `random_seed` when configured (as
/// keepalived seeds its `random()`), else `entropy` (`/dev/urandom`), else the clock's
/// nanoseconds (not fatal: they still differ between daemons).
fn session_seed(random_seed: Option<u32>, entropy: impl FnOnce() -> Option<u64>) -> u64 {
    if let Some(s) = random_seed {
        return u64::from(s);
    }
    entropy().unwrap_or_else(|| u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() & u128::from(u64::MAX))).unwrap_or(1))
}

fn getrandom(buf: &mut [u8]) -> io::Result<()> {
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// A session's sending socket.
struct TxSocket {
    sock: Option<UdpSocket>,
    /// The addresses and TTL it was opened for.
    key: (IpAddr, Option<IpAddr>, u8),
    retry_at: Option<Instant>,
}

struct Owner {
    sessions: Sessions,
    rng: Rng,
    tx: HashMap<String, TxSocket>,
    rx4: Option<UdpSocket>,
    rx6: Option<UdpSocket>,
    states: watch::Sender<ClientStates>,
    epoch: Instant,
    dropped: BTreeMap<&'static str, u64>,
    counts: HashMap<String, (u64, u64)>,
    listen_retry: Option<Instant>,
}

impl Owner {
    fn now(&self) -> Time {
        Time::from_epoch(self.epoch.elapsed())
    }

    fn configure(&mut self, plan: &Plan) {
        let specs = plan.specs.clone();
        let now = self.now();
        self.sessions.configure(now, specs.clone());
        // Kept sessions keep what their clients saw; new ones start down.
        let sessions = &self.sessions;
        self.states.send_modify(|m| {
            *m = plan.client_states(m);
            for (i, spec) in specs.iter().enumerate() {
                m.insert(spec.name.clone(), sessions.session(i).is_some_and(super::Session::client_up));
            }
        });
        self.counts.retain(|n, _| specs.iter().any(|s| s.name == *n));
        let mut tx = std::mem::take(&mut self.tx);
        for (i, spec) in specs.iter().enumerate() {
            let key = (spec.neighbor, spec.local, spec.ttl);
            let sock = match tx.remove(&spec.name).filter(|t| t.key == key && t.sock.is_some()) {
                Some(t) => t,
                None => {
                    let sock = self.open_tx(spec);
                    let failed = sock.is_none();
                    // AdminDown without a socket (keepalived); a kept session whose socket
                    // could not be opened before leaves AdminDown once it can.
                    let out = self.sessions.handle(i, now, if failed { Event::AdminDown } else { Event::Enable });
                    self.carry_out(out);
                    TxSocket { sock, key, retry_at: failed.then(|| Instant::now() + SESSION_RETRY) }
                }
            };
            self.tx.insert(spec.name.clone(), sock);
        }
        self.open_listeners();
        info!(sessions = specs.len(), "BFD sessions configured");
    }

    /// Opens the port-3784 sockets of the families the sessions use.
    fn open_listeners(&mut self) {
        let (v4, v6) = self.sessions.specs().iter().fold((false, false), |(a, b), s| (a || s.neighbor.is_ipv4(), b || s.neighbor.is_ipv6()));
        let mut failed = false;
        if v4 && self.rx4.is_none() {
            match listen(false) {
                Ok(s) => self.rx4 = Some(s),
                Err(e) => {
                    warn!(error = %e, port = CONTROL_PORT, "BFD: cannot listen on IPv4; retrying");
                    failed = true;
                }
            }
        }
        if v6 && self.rx6.is_none() {
            match listen(true) {
                Ok(s) => self.rx6 = Some(s),
                Err(e) => {
                    warn!(error = %e, port = CONTROL_PORT, "BFD: cannot listen on IPv6; retrying");
                    failed = true;
                }
            }
        }
        self.listen_retry = failed.then(|| Instant::now() + LISTEN_RETRY);
    }

    fn open_tx(&mut self, spec: &SessionSpec) -> Option<UdpSocket> {
        match open_sender(spec, &mut self.rng) {
            Ok(s) => {
                debug!(bfd = %spec.name, local = ?s.local_addr().ok(), "BFD session socket open");
                Some(s)
            }
            Err(e) => {
                warn!(bfd = %spec.name, neighbor = %spec.neighbor, error = %e, "BFD: cannot open the session's socket; AdminDown, retrying every minute");
                None
            }
        }
    }

    async fn run(mut self, mut cmd: mpsc::UnboundedReceiver<Command>, mut stop: oneshot::Receiver<()>) {
        let mut buf4 = [0u8; 512];
        let mut buf6 = [0u8; 512];
        loop {
            let deadline = self.next_wakeup();
            tokio::select! {
                r = recv(self.rx4.as_ref(), &mut buf4) => self.received(r, &buf4),
                r = recv(self.rx6.as_ref(), &mut buf6) => self.received(r, &buf6),
                _ = sleep_until(deadline) => self.timers(),
                _ = &mut stop => return,
                c = cmd.recv() => match c {
                    Some(Command::Reload(plan, done)) => {
                        self.configure(&plan);
                        let _ = done.send(());
                    }
                    Some(Command::Status(reply)) => {
                        let _ = reply.send(self.report());
                    }
                    None => return,
                },
            }
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let session = self.sessions.next_deadline().map(|t| self.epoch + t.since_epoch());
        let retries = self.tx.values().filter_map(|t| t.retry_at).chain(self.listen_retry);
        session.into_iter().chain(retries).min()
    }

    fn received(&mut self, r: io::Result<(Received<'static>, usize)>, buf: &[u8]) {
        let (meta, len) = match r {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "BFD receive");
                *self.dropped.entry("receive_error").or_default() += 1;
                return;
            }
        };
        let rx = Received { payload: &buf[..len], ..meta };
        let now = self.now();
        match self.sessions.receive(now, rx) {
            Ok((i, out)) => {
                self.count(i, false);
                self.carry_out(out);
            }
            Err(e) => {
                debug!(src = %rx.src, reason = e.reason(), error = %e, "BFD packet discarded");
                *self.dropped.entry(e.reason()).or_default() += 1;
            }
        }
    }

    fn count(&mut self, i: usize, tx: bool) {
        if let Some(spec) = self.sessions.specs().get(i) {
            let c = self.counts.entry(spec.name.clone()).or_default();
            if tx {
                c.0 += 1;
            } else {
                c.1 += 1;
            }
        }
    }

    fn timers(&mut self) {
        let now = self.now();
        let out = self.sessions.poll(now);
        self.carry_out(out);
        let instant = Instant::now();
        if self.listen_retry.is_some_and(|at| at <= instant) {
            self.open_listeners();
        }
        let due: Vec<String> = self.tx.iter().filter(|(_, t)| t.retry_at.is_some_and(|at| at <= instant)).map(|(n, _)| n.clone()).collect();
        for name in due {
            let Some(i) = self.sessions.specs().iter().position(|s| s.name == name) else { continue };
            let spec = self.sessions.specs()[i].clone();
            let sock = self.open_tx(&spec);
            let ok = sock.is_some();
            if let Some(t) = self.tx.get_mut(&name) {
                t.sock = sock;
                t.retry_at = (!ok).then(|| instant + SESSION_RETRY);
            }
            if ok {
                let out = self.sessions.handle(i, now, Event::Enable);
                self.carry_out(out);
            }
        }
    }

    fn carry_out(&mut self, out: Vec<super::Output>) {
        for o in out {
            let Some(spec) = self.sessions.specs().get(o.session).cloned() else { continue };
            match o.action {
                Action::Send(p) => {
                    let bytes = p.encode();
                    let dst = SocketAddr::new(spec.neighbor, CONTROL_PORT);
                    match self.tx.get(&spec.name).and_then(|t| t.sock.as_ref()) {
                        Some(s) => match s.try_send_to(&bytes, dst) {
                            Ok(_) => self.count(o.session, true),
                            Err(e) => {
                                debug!(bfd = %spec.name, error = %e, "BFD send");
                                *self.dropped.entry("send_error").or_default() += 1;
                            }
                        },
                        None => *self.dropped.entry("no_socket").or_default() += 1,
                    }
                }
                Action::StateChanged { from, to, diag } => {
                    if to == State::Up {
                        let s = self.sessions.session(o.session);
                        info!(bfd = %spec.name, neighbor = %spec.neighbor, from = %from, detection_ms = s.map_or(0, |s| s.detection_time().as_millis() as u64), "BFD session up");
                    } else if from == State::Up {
                        warn!(bfd = %spec.name, neighbor = %spec.neighbor, to = %to, diag = %diag, "BFD session down");
                    } else {
                        debug!(bfd = %spec.name, from = %from, to = %to, diag = %diag, "BFD state");
                    }
                }
                Action::Client { up } => {
                    info!(bfd = %spec.name, up, "BFD: tracking clients told");
                    self.states.send_modify(|m| {
                        m.insert(spec.name.clone(), up);
                    });
                }
            }
        }
    }

    fn report(&self) -> BfdReport {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let sessions = self
            .sessions
            .specs()
            .iter()
            .enumerate()
            .filter_map(|(i, spec)| {
                let s = self.sessions.session(i)?;
                let (tx, rx) = self.counts.get(&spec.name).copied().unwrap_or_default();
                Some(SessionReport {
                    name: spec.name.clone(),
                    neighbor: spec.neighbor,
                    state: s.state().to_string(),
                    remote_state: s.remote_state().to_string(),
                    diag: s.diag().to_string(),
                    up: s.client_up(),
                    local_discr: s.local_discr(),
                    remote_discr: s.remote_discr(),
                    tx_interval_us: us(s.tx_interval()),
                    detection_time_us: us(s.detection_time()),
                    tx,
                    rx,
                })
            })
            .collect();
        BfdReport { sessions, dropped: self.dropped.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect() }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn setsockopt(fd: i32, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed.
    let r = unsafe { libc::setsockopt(fd, level, name, (&raw const value).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The listening socket of one family on port 3784, with the TTL and destination address of
/// each datagram delivered (IP_RECVTTL / IPV6_RECVHOPLIMIT, IP_PKTINFO / IPV6_RECVPKTINFO).
fn listen(v6: bool) -> io::Result<UdpSocket> {
    let domain = if v6 { socket2::Domain::IPV6 } else { socket2::Domain::IPV4 };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM.nonblocking(), Some(socket2::Protocol::UDP))?;
    let fd = s.as_raw_fd();
    let addr: SocketAddr = if v6 {
        s.set_only_v6(true)?;
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        (Ipv6Addr::UNSPECIFIED, CONTROL_PORT).into()
    } else {
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_RECVTTL, 1)?;
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
        (Ipv4Addr::UNSPECIFIED, CONTROL_PORT).into()
    };
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// A session's socket: bound to `source_ip` (or any address) and a source port in
/// 49152-65535 (RFC 5881 §4; a random start, the next free one), sending with the session's
/// TTL / hop limit.
fn open_sender(spec: &SessionSpec, rng: &mut Rng) -> io::Result<UdpSocket> {
    let v6 = spec.neighbor.is_ipv6();
    let domain = if v6 { socket2::Domain::IPV6 } else { socket2::Domain::IPV4 };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM.nonblocking(), Some(socket2::Protocol::UDP))?;
    if v6 {
        s.set_unicast_hops_v6(u32::from(spec.ttl))?;
    } else {
        s.set_ttl_v4(u32::from(spec.ttl))?;
    }
    let ip = spec.local.unwrap_or(if v6 { IpAddr::V6(Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) });
    let span = u64::from(MAX_SOURCE_PORT - MIN_SOURCE_PORT) + 1;
    let start = rng.between(0, span - 1);
    let mut last = None;
    for k in 0..span {
        let port = MIN_SOURCE_PORT + u16::try_from((start + k) % span).unwrap_or(0);
        match s.bind(&SocketAddr::new(ip, port).into()) {
            Ok(()) => return UdpSocket::from_std(s.into()),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

/// Waits for one datagram on `sock` (never, without one) into `buf`.
async fn recv(sock: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<(Received<'static>, usize)> {
    let Some(sock) = sock else { return std::future::pending().await };
    sock.async_io(Interest::READABLE, || recv_now(sock.as_raw_fd(), buf)).await
}

fn recv_now(fd: i32, buf: &mut [u8]) -> io::Result<(Received<'static>, usize)> {
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = nix::sys::socket::recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)?;
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "datagram truncated"));
    }
    let len = msg.bytes;
    let src = msg
        .address
        .and_then(|a| a.as_sockaddr_in().map(|a| IpAddr::V4(a.ip())).or_else(|| a.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip()))))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without a source address"))?;
    let (mut ttl, mut dst) = (None, None);
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv4Ttl(t) => ttl = u8::try_from(t).ok(),
                ControlMessageOwned::Ipv6HopLimit(h) => ttl = u8::try_from(h).ok(),
                ControlMessageOwned::Ipv4PacketInfo(pi) => dst = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr)))),
                ControlMessageOwned::Ipv6PacketInfo(pi) => dst = Some(IpAddr::V6(Ipv6Addr::from(pi.ipi6_addr.s6_addr))),
                _ => {}
            }
        }
    }
    Ok((Received { src, dst, ttl, payload: &[] }, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, LoadOptions};

    /// `random_seed` wins over the entropy source, which wins over the clock.
    #[test]
    fn session_seed_sources() {
        let cases: [(Option<u32>, Option<u64>, Option<u64>); 4] =
            [(Some(7), Some(99), Some(7)), (Some(0), None, Some(0)), (None, Some(99), Some(99)), (None, None, None)];
        for (configured, entropy, want) in cases {
            let got = session_seed(configured, || entropy);
            match want {
                Some(w) => assert_eq!(got, w, "{configured:?} {entropy:?}"),
                // The clock: anything but a fixed value; two daemons differ.
                None => assert_ne!(got, 0),
            }
        }
    }

    fn cfg(text: &str) -> Config {
        let loaded = parse_str(text, std::path::Path::new("t.conf"), &LoadOptions::default());
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        loaded.config
    }

    /// The sessions of a configuration: keepalived's defaults, TTL by family, and no session
    /// for an instance the BFD process would drop (its name still reported, down).
    #[test]
    fn specs_from_config() {
        let c = cfg("bfd_instance a {\n neighbor_ip 198.18.0.2\n}\n\
bfd_instance b {\n neighbour_ip fd00:198:18::2\n source_ip fd00:198:18::1\n min_rx 50\n min_tx 20.5\n idle_tx 2000\n multiplier 3\n passive\n max_hops -1\n}\n\
bfd_instance c {\n neighbor_ip 198.18.0.2\n}\n\
bfd_instance d {\n neighbor_ip 198.18.0.3\n hoplimit 9\n max_hops 5\n}\n");
        let s = specs(&c);
        let ms = Duration::from_millis;
        assert_eq!(s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["a", "b", "d"], "c duplicates a's neighbour");
        assert_eq!((s[0].ttl, s[0].max_hops, s[0].local, s[0].params), (255, 0, None, SessionParams::default()));
        assert_eq!(s[0].min_ttl(), Some(255));
        assert_eq!(
            (s[1].ttl, s[1].max_hops, s[1].local, s[1].params),
            (
                64,
                255,
                Some("fd00:198:18::1".parse().expect("ip")),
                SessionParams { min_rx: ms(50), min_tx: Duration::from_micros(20_500), idle_tx: ms(2000), detect_mult: 3, passive: true }
            )
        );
        assert_eq!(s[1].min_ttl(), None);
        assert_eq!((s[2].ttl, s[2].max_hops, s[2].min_ttl()), (9, 5, Some(4)));
        let states = Plan::of(&c).client_states(&ClientStates::from([("a".to_owned(), true), ("c".to_owned(), true)]));
        assert_eq!(states, ClientStates::from([("a".into(), true), ("b".into(), false), ("c".into(), false), ("d".into(), false)]));
    }
}
