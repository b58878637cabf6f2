//! Supervision of the daemon's subsystem tasks (VRRP engine, health checkers, next-hop
//! resolver, control server, netlink worker). None of them ends while the daemon runs; one
//! that does (a panic, a closed socket it depends on) is detected here, and the daemon logs
//! it and exits non-zero without releasing anything: a supervisor (systemd `Restart=`)
//! starts a new ka, which adopts the datapath and resumes VRRP, so traffic does not notice.

use std::{future::Future, pin::Pin};

use futures::future::select_all;

/// One watched subsystem: its name and a future that resolves once it has stopped.
pub struct Watch {
    name: &'static str,
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Watch {
    /// Watches `stopped` (e.g. a command channel's `closed()`: its receiver is owned by the
    /// subsystem's task and goes with it).
    pub fn new(name: &'static str, stopped: impl Future<Output = ()> + Send + 'static) -> Watch {
        Watch { name, stopped: Box::pin(stopped) }
    }

    /// Watches a task through its handle: it stopped when the handle completes (returned,
    /// panicked or aborted; the outcome is logged). Returns the handle's abort handle.
    pub fn task(name: &'static str, handle: tokio::task::JoinHandle<()>) -> (Watch, tokio::task::AbortHandle) {
        let abort = handle.abort_handle();
        let w = Watch::new(name, async move {
            match handle.await {
                Ok(()) => tracing::error!(subsystem = name, "task returned"),
                Err(e) if e.is_panic() => tracing::error!(subsystem = name, "task panicked"),
                Err(_) => tracing::error!(subsystem = name, "task was cancelled"),
            }
        });
        (w, abort)
    }
}

/// The name of the first watched subsystem to stop; never resolves when none is watched.
pub async fn first_stopped(watches: Vec<Watch>) -> &'static str {
    if watches.is_empty() {
        return std::future::pending().await;
    }
    let names: Vec<&'static str> = watches.iter().map(|w| w.name).collect();
    let (_, index, _) = select_all(watches.into_iter().map(|w| w.stopped)).await;
    names.get(index).copied().unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The subsystem that stops first is named, whether its task panicked, returned or let a
    /// channel close; subsystems that keep running are not.
    #[tokio::test]
    async fn the_first_stopped_subsystem_is_named() {
        type Case = (&'static str, fn() -> Vec<Watch>, &'static str);
        let pending = |name: &'static str| Watch::new(name, std::future::pending());
        let cases: [Case; 3] = [
            (
                "a panicking task",
                || {
                    let (w, _) = Watch::task(
                        "netlink worker",
                        tokio::spawn(async {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            panic!("injected");
                        }),
                    );
                    vec![Watch::new("VRRP engine", std::future::pending()), w]
                },
                "netlink worker",
            ),
            (
                "a task that returns",
                || vec![Watch::task("control server", tokio::spawn(async {})).0, Watch::new("health checkers", std::future::pending())],
                "control server",
            ),
            (
                "a closed command channel",
                || {
                    let (tx, rx) = tokio::sync::mpsc::channel::<()>(1);
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        drop(rx);
                    });
                    vec![Watch::new("next-hop resolver", std::future::pending()), Watch::new("health checkers", async move { tx.closed().await })]
                },
                "health checkers",
            ),
        ];
        for (what, watches, expect) in cases {
            let got = tokio::time::timeout(Duration::from_secs(5), first_stopped(watches())).await;
            assert_eq!(got.ok(), Some(expect), "{what}");
        }
        let none = tokio::time::timeout(Duration::from_millis(50), first_stopped(vec![pending("a"), pending("b")])).await;
        assert!(none.is_err(), "running subsystems are not reported");
        let empty = tokio::time::timeout(Duration::from_millis(50), first_stopped(Vec::new())).await;
        assert!(empty.is_err(), "nothing watched, nothing reported");
    }
}
