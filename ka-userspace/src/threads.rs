//! keepalived's per-process tuning keywords applied to ka's threads.
//!
//! keepalived runs its VRRP, checker and BFD parts as child processes and tunes each with
//! `{vrrp,checker,bfd}_priority` (nice), `_rt_priority` (`SCHED_RR`), `_cpu_affinity`,
//! `_no_swap`, `_rlimit_rttime` and `_process_name` (`lib/process.c`, `set_process_priorities`).
//! ka is one process: the VRRP engine runs on the `ka-vrrp` thread, BFD on `ka-bfd`, the health
//! checkers on the daemon runtime's worker threads (`ka-worker`). Each part's settings go to
//! its thread(s) by thread id; what Linux keeps per process is applied once:
//! - `mlockall` (`*_no_swap`) locks the whole process when any of the three is given;
//! - `RLIMIT_RTTIME` is one limit per process, checked against each realtime thread's own
//!   run time: ka sets the smallest `*_rlimit_rttime` of the parts that run realtime, and
//!   only when one is given. keepalived sets 10 ms by default with any `*_rt_priority`; ka does
//!   not, as applying a 65,024-instance reload keeps the engine busy longer than that.
//!
//! Every failure (no `CAP_SYS_NICE`, an offline CPU) is a warning; the thread runs as it was.

use tracing::{info, warn};

use crate::config::model::GlobalDefs;

/// The name of the daemon runtime's threads, where the health checkers run.
pub const WORKER_NAME: &str = "ka-worker";

/// One part of the daemon, as keepalived has one child process per part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The VRRP engine (`vrrp_*`), thread `ka-vrrp`.
    Vrrp,
    /// The health checkers (`checker_*`), threads `ka-worker`.
    Checker,
    /// BFD (`bfd_*`), thread `ka-bfd`.
    Bfd,
}

impl Part {
    /// The keyword prefix keepalived uses for the part.
    pub fn prefix(self) -> &'static str {
        match self {
            Part::Vrrp => "vrrp",
            Part::Checker => "checker",
            Part::Bfd => "bfd",
        }
    }
}

/// How one part's thread(s) are tuned. The default leaves them as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tuning {
    /// Nice value, -20 (highest) to 19 (`*_priority`); keepalived ignores it under `SCHED_RR`.
    pub nice: Option<i32>,
    /// `SCHED_RR` priority, 1 to 99 (`*_rt_priority`).
    pub rt_priority: Option<i32>,
    /// CPUs the thread may run on (`*_cpu_affinity`); empty: unchanged.
    pub cpus: Vec<usize>,
    /// Thread name (`*_process_name`, `process_names`), at most 15 bytes.
    pub name: Option<String>,
}

impl Tuning {
    /// The settings of `part` in `g`, with keepalived's precedence: a realtime priority
    /// replaces the nice value (`set_process_priorities` sets one or the other).
    pub fn of(g: &GlobalDefs, part: Part) -> Tuning {
        let (nice, rt, cpus, name) = match part {
            Part::Vrrp => (g.vrrp_priority, g.vrrp_rt_priority, &g.vrrp_cpu_affinity, &g.vrrp_process_name),
            Part::Checker => (g.checker_priority, g.checker_rt_priority, &g.checker_cpu_affinity, &g.checker_process_name),
            Part::Bfd => (g.bfd_priority, g.bfd_rt_priority, &g.bfd_cpu_affinity, &g.bfd_process_name),
        };
        Tuning { nice: if rt.is_some() { None } else { nice }, rt_priority: rt, cpus: cpus.clone(), name: name.clone() }
    }
}

/// What is set once for the whole process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessTuning {
    /// `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`: any `*_no_swap`.
    pub no_swap: bool,
    /// `RLIMIT_RTTIME` in microseconds: the smallest `*_rlimit_rttime` of a realtime part.
    pub rlimit_rttime_us: Option<u64>,
    /// The main thread's name, hence the process's (`process_name`).
    pub name: Option<String>,
}

impl ProcessTuning {
    /// The process-wide settings of `g`.
    pub fn of(g: &GlobalDefs) -> ProcessTuning {
        let parts = [(g.vrrp_rt_priority, g.vrrp_rlimit_rttime), (g.checker_rt_priority, g.checker_rlimit_rttime), (g.bfd_rt_priority, g.bfd_rlimit_rttime)];
        ProcessTuning {
            no_swap: g.vrrp_no_swap || g.checker_no_swap || g.bfd_no_swap,
            rlimit_rttime_us: parts.iter().filter(|(rt, _)| rt.is_some()).filter_map(|(_, lim)| *lim).min(),
            name: g.process_name.clone(),
        }
    }
}

/// The calling thread's id.
pub fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Applies `t` to thread `tid` of this process, logging each setting under the keyword it comes
/// from; a refusal is a warning.
pub fn apply(part: Part, tid: libc::pid_t, t: &Tuning) {
    let p = part.prefix();
    if let Some(name) = &t.name {
        if let Err(e) = set_name(tid, name) {
            warn!(tid, name = %name, error = %e, "{p}_process_name: cannot name the thread");
        }
    }
    if let Some(nice) = t.nice {
        // SAFETY: plain syscall; PRIO_PROCESS with a thread id applies to that thread on Linux.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } == 0 {
            info!(tid, nice, "{p}_priority: thread reniced");
        } else {
            warn!(tid, nice, error = %std::io::Error::last_os_error(), "{p}_priority: cannot renice the thread");
        }
    }
    if let Some(prio) = t.rt_priority {
        let param = libc::sched_param { sched_priority: prio };
        // SAFETY: `param` is valid for the call; a thread id names that thread.
        if unsafe { libc::sched_setscheduler(tid, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param) } == 0 {
            info!(tid, priority = prio, "{p}_rt_priority: thread runs SCHED_RR");
        } else {
            warn!(tid, priority = prio, error = %std::io::Error::last_os_error(), "{p}_rt_priority: cannot make the thread realtime");
        }
    }
    if !t.cpus.is_empty() {
        // SAFETY: an all-zero cpu_set_t is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in t.cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            // SAFETY: `c` is below CPU_SETSIZE, inside `set`.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
        // SAFETY: `set` is a valid cpu_set_t of the size given; a thread id names that thread.
        if unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) } == 0 {
            info!(tid, cpus = ?t.cpus, "{p}_cpu_affinity: thread pinned");
        } else {
            warn!(tid, cpus = ?t.cpus, error = %std::io::Error::last_os_error(), "{p}_cpu_affinity: cannot set the thread's CPUs");
        }
    }
}

/// Applies `t` to the calling thread.
pub fn apply_self(part: Part, t: &Tuning) {
    apply(part, gettid(), t);
}

/// Applies `t` to every thread of this process named `name` (the daemon runtime's workers).
pub fn apply_named(part: Part, name: &str, t: &Tuning) {
    if *t == Tuning::default() {
        return;
    }
    let tids = tids_named(name);
    if tids.is_empty() {
        warn!(thread = name, "{}_*: no thread of that name to tune", part.prefix());
    }
    for tid in tids {
        apply(part, tid, t);
    }
}

/// Applies the process-wide settings; the main thread's name is set when called on it.
pub fn apply_process(p: &ProcessTuning) {
    if let Some(name) = &p.name {
        // SAFETY: getpid has no preconditions; the main thread's id is the process id.
        let pid = unsafe { libc::getpid() };
        if let Err(e) = set_name(pid, name) {
            warn!(name = %name, error = %e, "process_name: cannot name the process");
        }
    }
    if p.no_swap {
        // SAFETY: plain syscall on this process.
        if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) } == 0 {
            info!("*_no_swap: the daemon is locked in memory (mlockall, the whole process)");
        } else {
            warn!(error = %std::io::Error::last_os_error(), "*_no_swap: cannot lock the daemon in memory");
        }
    }
    if let Some(us) = p.rlimit_rttime_us {
        let lim = libc::rlimit { rlim_cur: us as libc::rlim_t, rlim_max: us as libc::rlim_t };
        // SAFETY: `lim` is valid for the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_RTTIME, &lim) } == 0 {
            info!(usecs = us, "*_rlimit_rttime: RLIMIT_RTTIME set for the realtime threads");
        } else {
            warn!(usecs = us, error = %std::io::Error::last_os_error(), "*_rlimit_rttime: cannot set RLIMIT_RTTIME");
        }
    }
}

/// Names thread `tid` (15 bytes at most, as the kernel keeps them).
fn set_name(tid: libc::pid_t, name: &str) -> std::io::Result<()> {
    let name: String = name.chars().filter(|c| *c != '\n').collect();
    std::fs::write(format!("/proc/self/task/{tid}/comm"), name.as_bytes())
}

/// The ids of this process's threads whose name is `name`.
pub fn tids_named(name: &str) -> Vec<libc::pid_t> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<libc::pid_t>().ok()))
        .filter(|tid| std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).is_ok_and(|c| c.trim_end_matches('\n') == name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(f: impl FnOnce(&mut GlobalDefs)) -> GlobalDefs {
        let mut g = GlobalDefs::default();
        f(&mut g);
        g
    }

    #[test]
    fn tuning_per_part() {
        let both = g(|g| {
            g.vrrp_priority = Some(-5);
            g.vrrp_rt_priority = Some(30);
            g.checker_priority = Some(10);
            g.checker_cpu_affinity = vec![0, 1];
            g.bfd_rt_priority = Some(40);
            g.bfd_process_name = Some("keepalived_bfd".into());
        });
        let cases: [(&GlobalDefs, Part, Tuning); 4] = [
            (&GlobalDefs::default(), Part::Vrrp, Tuning::default()),
            // A realtime priority replaces the nice value, as in set_process_priorities.
            (&both, Part::Vrrp, Tuning { rt_priority: Some(30), ..Tuning::default() }),
            (&both, Part::Checker, Tuning { nice: Some(10), cpus: vec![0, 1], ..Tuning::default() }),
            (&both, Part::Bfd, Tuning { rt_priority: Some(40), name: Some("keepalived_bfd".into()), ..Tuning::default() }),
        ];
        for (g, part, want) in cases {
            assert_eq!(Tuning::of(g, part), want, "{part:?}");
        }
    }

    #[test]
    fn process_tuning() {
        let cases: [(GlobalDefs, ProcessTuning); 5] = [
            (GlobalDefs::default(), ProcessTuning::default()),
            (g(|g| g.bfd_no_swap = true), ProcessTuning { no_swap: true, ..ProcessTuning::default() }),
            // A limit without the realtime priority of its part is not set (keepalived sets it
            // only with SCHED_RR).
            (g(|g| g.vrrp_rlimit_rttime = Some(5000)), ProcessTuning::default()),
            (
                g(|g| {
                    g.vrrp_rt_priority = Some(10);
                    g.vrrp_rlimit_rttime = Some(50_000);
                    g.bfd_rt_priority = Some(20);
                    g.bfd_rlimit_rttime = Some(20_000);
                    g.checker_rlimit_rttime = Some(1_000);
                }),
                ProcessTuning { rlimit_rttime_us: Some(20_000), ..ProcessTuning::default() },
            ),
            (g(|g| g.process_name = Some("lb-a".into())), ProcessTuning { name: Some("lb-a".into()), ..ProcessTuning::default() }),
        ];
        for (g, want) in cases {
            assert_eq!(ProcessTuning::of(&g), want);
        }
    }

    /// `apply` renames and lowers the priority of another thread by its id.
    #[test]
    fn apply_to_a_thread_by_id() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            let _ = tx.send(gettid());
            let _ = done_rx.recv();
        });
        let Ok(tid) = rx.recv() else { panic!("no tid") };
        apply(Part::Bfd, tid, &Tuning { nice: Some(19), name: Some("ka-test-tuned".into()), ..Tuning::default() });
        assert_eq!(tids_named("ka-test-tuned"), vec![tid]);
        // SAFETY: plain syscall.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
        assert_eq!(nice, 19);
        let _ = done_tx.send(());
        let _ = h.join();
    }
}
