//! systemd integration (`Type=notify`): the sd_notify(3) messages keepalived sends, in the same
//! order, plus `STATUS=` with the VRRP instances' states and the watchdog.
//!
//! - `READY=1` once the datapath is attached, its tables written and VRRP started;
//! - `RELOADING=1` with `MONOTONIC_USEC=` (what systemd ≥ 253 wants of `Type=notify-reload`,
//!   harmless before) when a reload starts, `READY=1` when it is applied or refused;
//! - `STOPPING=1` on SIGTERM/SIGINT, before the VIPs are released;
//! - `STATUS=VI_1 MASTER, VI_2 BACKUP` after start, each transition and each reload;
//! - `WATCHDOG=1` every `WatchdogSec/2`, from a task of its own, only while the daemon's main
//!   loop and the VRRP engine answer a status request within that half period
//!   ([`spawn_watchdog`]).
//!
//! The sequence is a sans-IO state machine ([`Lifecycle`]) writing to an injected [`Notify`]:
//! [`SdNotify`] sends datagrams to `$NOTIFY_SOCKET` (nothing without it); tests record them.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use tracing::{debug, warn};

/// One sd_notify(3) assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// `READY=1`.
    Ready,
    /// `RELOADING=1`.
    Reloading,
    /// `MONOTONIC_USEC=N`: CLOCK_MONOTONIC when the reload started.
    MonotonicUsec(u64),
    /// `STOPPING=1`.
    Stopping,
    /// `STATUS=...`.
    Status(String),
    /// `WATCHDOG=1`.
    Watchdog,
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Ready => f.write_str("READY=1"),
            Message::Reloading => f.write_str("RELOADING=1"),
            Message::MonotonicUsec(n) => write!(f, "MONOTONIC_USEC={n}"),
            Message::Stopping => f.write_str("STOPPING=1"),
            Message::Status(s) => write!(f, "STATUS={s}"),
            Message::Watchdog => f.write_str("WATCHDOG=1"),
        }
    }
}

/// Where notifications go: one datagram per call.
pub trait Notify: Send + Sync {
    /// Sends `msgs` as one notification.
    fn notify(&self, msgs: &[Message]);

    /// Whether notifications go anywhere (when not, nothing is computed for them).
    fn enabled(&self) -> bool {
        true
    }
}

/// The service manager: `$NOTIFY_SOCKET` through the sd-notify crate; nothing when the variable
/// is unset (not started by systemd, or `Type=` other than notify).
#[derive(Clone, Copy, Debug, Default)]
pub struct SdNotify;

impl Notify for SdNotify {
    fn notify(&self, msgs: &[Message]) {
        use sd_notify::NotifyState as S;
        let states: Vec<S<'_>> = msgs
            .iter()
            .map(|m| match m {
                Message::Ready => S::Ready,
                Message::Reloading => S::Reloading,
                Message::MonotonicUsec(n) => S::MonotonicUsec(i128::from(*n)),
                Message::Stopping => S::Stopping,
                Message::Status(s) => S::Status(s),
                Message::Watchdog => S::Watchdog,
            })
            .collect();
        if let Err(e) = sd_notify::notify(&states) {
            warn!(error = %e, "sd_notify failed");
        }
    }

    fn enabled(&self) -> bool {
        std::env::var_os("NOTIFY_SOCKET").is_some()
    }
}

/// A [`Notify`] that keeps what it was sent (tests, and the daemon's own debugging).
#[derive(Clone, Debug, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<Vec<Message>>>>);

impl Notify for Recorder {
    fn notify(&self, msgs: &[Message]) {
        if let Ok(mut v) = self.0.lock() {
            v.push(msgs.to_vec());
        }
    }
}

/// CLOCK_MONOTONIC now, µs (what `MONOTONIC_USEC` carries).
pub fn monotonic_usec() -> u64 {
    match sd_notify::NotifyState::monotonic_usec_now() {
        Ok(sd_notify::NotifyState::MonotonicUsec(n)) => u64::try_from(n).unwrap_or(0),
        _ => 0,
    }
}

/// The `STATUS=` line for the VRRP instances: `VI_1 MASTER, VI_2 BACKUP` (`running` without
/// any), from each instance's name and state.
pub fn status_line<'a>(instances: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let line = instances.into_iter().map(|(name, state)| format!("{name} {state}")).collect::<Vec<_>>().join(", ");
    if line.is_empty() {
        "running".to_owned()
    } else {
        line
    }
}

/// Where the daemon is in its life, as systemd must be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Starting,
    Running,
    Reloading,
    Stopping,
}

/// The notification sequence, sans-IO apart from the injected [`Notify`]: `READY=1` once,
/// `RELOADING=1` only while running and always answered by `READY=1`, nothing but `STOPPING=1`
/// once stopping.
pub struct Lifecycle {
    out: Arc<dyn Notify>,
    phase: Phase,
    clock: fn() -> u64,
}

impl Lifecycle {
    /// A daemon starting, notifying `out`; `clock` gives `MONOTONIC_USEC` ([`monotonic_usec`]).
    pub fn new(out: Arc<dyn Notify>, clock: fn() -> u64) -> Lifecycle {
        Lifecycle { out, phase: Phase::Starting, clock }
    }

    /// The notifier, for tasks that send `STATUS=` or `WATCHDOG=1` on their own.
    pub fn notifier(&self) -> Arc<dyn Notify> {
        self.out.clone()
    }

    /// The datapath is attached and VRRP started: `READY=1` with the instances' states.
    pub fn ready(&mut self, status: String) {
        if self.phase == Phase::Starting {
            self.phase = Phase::Running;
            self.out.notify(&[Message::Ready, Message::Status(status)]);
        }
    }

    /// A reload starts (`ka reload`, SIGHUP): `RELOADING=1` and `MONOTONIC_USEC`.
    pub fn reloading(&mut self) {
        if self.phase == Phase::Running {
            self.phase = Phase::Reloading;
            self.out.notify(&[Message::Reloading, Message::MonotonicUsec((self.clock)())]);
        }
    }

    /// The reload finished (applied or refused): `READY=1`.
    pub fn reloaded(&mut self) {
        if self.phase == Phase::Reloading {
            self.phase = Phase::Running;
            self.out.notify(&[Message::Ready]);
        }
    }

    /// Shutting down: `STOPPING=1`, once.
    pub fn stopping(&mut self) {
        if self.phase != Phase::Stopping {
            self.phase = Phase::Stopping;
            self.out.notify(&[Message::Stopping]);
        }
    }
}

/// The watchdog interval systemd asks for (`$WATCHDOG_USEC`, for this process), if any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// Sends `WATCHDOG=1` every `interval / 2` while `probe` answers `true` within that half
/// period: a daemon whose main loop or VRRP engine hangs stops pinging, and systemd restarts
/// it after `interval`. The task runs until aborted.
pub fn spawn_watchdog<F, Fut>(out: Arc<dyn Notify>, interval: Duration, probe: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let half = interval / 2;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(half);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match tokio::time::timeout(half, probe()).await {
                Ok(true) => {
                    debug!("watchdog ping");
                    out.notify(&[Message::Watchdog]);
                }
                Ok(false) => warn!("watchdog: the daemon did not answer its status probe; no ping"),
                Err(_) => warn!(timeout_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX), "watchdog: no answer in time; no ping"),
            }
        }
    })
}

/// Sends systemd the instances' states (`STATUS=`), from a task: the engine's answer is not
/// waited for here. Requests coalesce: while one list of states is being fetched, later ones
/// only ask for one more fetch after it (65,024 instances turning MASTER would otherwise ask
/// for 65,024 lists of 65,024 instances each). Nothing is asked of the engine when systemd is
/// not listening.
pub fn send_status(engine: Option<&crate::engine::EngineHandle>, out: Arc<dyn Notify>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static IN_FLIGHT: AtomicBool = AtomicBool::new(false);
    static AGAIN: AtomicBool = AtomicBool::new(false);
    let Some(e) = engine.filter(|_| out.enabled()) else { return };
    if IN_FLIGHT.swap(true, Ordering::AcqRel) {
        AGAIN.store(true, Ordering::Release);
        return;
    }
    let probe = e.probe();
    tokio::spawn(async move {
        loop {
            AGAIN.store(false, Ordering::Release);
            let states = probe.states().await;
            out.notify(&[Message::Status(status_line(states.iter().map(|i| (i.name.as_str(), i.state))))]);
            if AGAIN.load(Ordering::Acquire) {
                continue;
            }
            IN_FLIGHT.store(false, Ordering::Release);
            // A request that came between the check and the store would be lost: take it.
            if !AGAIN.load(Ordering::Acquire) || IN_FLIGHT.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(r: &Recorder) -> Vec<String> {
        r.0.lock().expect("lock").iter().map(|n| n.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")).collect()
    }

    /// The sequence keepalived sends: READY once, RELOADING (with MONOTONIC_USEC) always
    /// answered by READY, nothing out of turn, STOPPING once and last.
    #[test]
    fn notify_sequence() {
        let r = Recorder::default();
        let mut l = Lifecycle::new(Arc::new(r.clone()), || 42);
        l.reloading(); // a SIGHUP before start-up finished: nothing to tell
        l.reloaded();
        l.ready("VI_1 BACKUP".into());
        l.ready("VI_1 BACKUP".into()); // never twice
        l.reloading();
        l.reloading(); // a second request while one runs is the same reload
        l.reloaded();
        l.reloaded();
        l.stopping();
        l.reloading();
        l.ready("x".into());
        l.stopping();
        assert_eq!(
            recorded(&r),
            ["READY=1\nSTATUS=VI_1 BACKUP", "RELOADING=1\nMONOTONIC_USEC=42", "READY=1", "STOPPING=1"]
        );
    }

    /// The status line names every instance with its state.
    #[test]
    fn status_line_lists_instances() {
        assert_eq!(status_line([]), "running");
        assert_eq!(status_line([("VI_1", "MASTER"), ("VI_2", "BACKUP")]), "VI_1 MASTER, VI_2 BACKUP");
    }

    /// The watchdog pings while the probe answers, and stops pinging while it does not.
    #[tokio::test(start_paused = true)]
    async fn watchdog_pings_only_while_the_probe_answers() {
        let r = Recorder::default();
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let h = healthy.clone();
        let task = spawn_watchdog(Arc::new(r.clone()), Duration::from_secs(10), move || {
            let ok = h.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                if !ok {
                    // A hung engine: never answers.
                    std::future::pending::<()>().await;
                }
                true
            }
        });
        tokio::time::sleep(Duration::from_secs(11)).await;
        let pings = r.0.lock().expect("lock").len();
        assert!(pings >= 2, "{pings} pings in 11 s at a 5 s period");
        healthy.store(false, std::sync::atomic::Ordering::SeqCst);
        // Let the probe in flight (answered) finish, then no more pings.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before = r.0.lock().expect("lock").len();
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(r.0.lock().expect("lock").len(), before, "pinged while the engine did not answer");
        task.abort();
    }
}
