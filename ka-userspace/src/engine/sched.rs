//! Scheduling of the VRRP engine's thread: keepalived's `vrrp_priority` (a nice value) and
//! `vrrp_rt_priority` (`SCHED_RR`), applied by the engine's thread to itself when it starts.
//!
//! keepalived pairs `vrrp_rt_priority` with an `RLIMIT_RTTIME` (`vrrp_rlimit_rttime`, 10 ms by
//! default) that kills a process running that long without blocking; ka does not set it: applying
//! a 65,024-instance reload keeps the engine busy for longer than that, by design.

use tracing::{info, warn};

/// How the engine's thread is scheduled. The default leaves it as the daemon is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scheduling {
    /// Nice value, -20 (highest) to 19 (`vrrp_priority`).
    pub nice: Option<i32>,
    /// `SCHED_RR` priority, 1 to 99 (`vrrp_rt_priority`); takes precedence over `nice`.
    pub rt_priority: Option<i32>,
}

impl Scheduling {
    /// From the `global_defs` of a configuration.
    pub fn from_config(g: &crate::config::model::GlobalDefs) -> Scheduling {
        Scheduling { nice: g.vrrp_priority, rt_priority: g.vrrp_rt_priority }
    }
}

/// Applies `s` to the calling thread. A refusal (no `CAP_SYS_NICE`) is logged and the thread
/// runs as it was.
pub fn apply(s: Scheduling) {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    if let Some(nice) = s.nice {
        // SAFETY: plain syscall; PRIO_PROCESS with a thread id applies to that thread on Linux.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } == 0 {
            info!(nice, "vrrp_priority: VRRP engine thread reniced");
        } else {
            warn!(nice, error = %std::io::Error::last_os_error(), "vrrp_priority: cannot renice the VRRP engine thread");
        }
    }
    if let Some(prio) = s.rt_priority {
        let param = libc::sched_param { sched_priority: prio };
        // SAFETY: `param` is a valid sched_param for the duration of the call; pid 0 is the
        // calling thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) } == 0 {
            info!(priority = prio, "vrrp_rt_priority: VRRP engine thread runs SCHED_RR");
        } else {
            warn!(priority = prio, error = %std::io::Error::last_os_error(), "vrrp_rt_priority: cannot make the VRRP engine thread realtime");
        }
    }
}
