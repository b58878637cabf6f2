//! A guard around a real keepalived (Debian's 2.2) running VRRP only inside a namespace, for
//! interoperability tests and benchmarks. Killed on drop, even while panicking.

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::netns::Netns;

/// A running keepalived.
#[derive(Debug)]
pub struct Keepalived {
    child: Option<Child>,
    dir: PathBuf,
}

/// Fails with a clear reason when keepalived is not installed (the test setup installs it).
pub fn require_keepalived() {
    assert!(
        std::process::Command::new("keepalived").arg("--version").output().is_ok_and(|o| o.status.success()),
        "keepalived is not installed; `cargo xtask setup` installs Debian's keepalived package"
    );
}

impl Keepalived {
    /// Starts `keepalived --vrrp` in the foreground inside `ns` with `config` (the text of a
    /// keepalived.conf), with its own pid files and logging to a file.
    ///
    /// # Errors
    /// keepalived cannot be started.
    pub fn start(ns: &Netns, tag: &str, config: &str) -> anyhow::Result<Keepalived> {
        Keepalived::start_with(ns, tag, config, &["--vrrp"])
    }

    /// Starts keepalived with the processes its configuration asks for (e.g. only the BFD
    /// process for a file of `bfd_instance`s), otherwise as [`Keepalived::start`].
    ///
    /// # Errors
    /// keepalived cannot be started.
    pub fn start_all(ns: &Netns, tag: &str, config: &str) -> anyhow::Result<Keepalived> {
        Keepalived::start_with(ns, tag, config, &[])
    }

    fn start_with(ns: &Netns, tag: &str, config: &str, only: &[&str]) -> anyhow::Result<Keepalived> {
        require_keepalived();
        let dir = std::env::temp_dir().join(crate::unique_name(&format!("kad{tag}")));
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("keepalived.conf");
        std::fs::write(&conf, config)?;
        let log = std::fs::File::create(dir.join("log"))?;
        let child = ns
            .cmd("keepalived")
            .args(only)
            .args(["--dont-fork", "--log-console", "--log-detail", "--dont-respawn"])
            .arg("--use-file")
            .arg(&conf)
            .arg("--pid")
            .arg(dir.join("keepalived.pid"))
            .arg("--vrrp_pid")
            .arg(dir.join("vrrp.pid"))
            .arg("--checkers_pid")
            .arg(dir.join("checkers.pid"))
            .arg("--bfd_pid")
            .arg(dir.join("bfd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning keepalived")?;
        Ok(Keepalived { child: Some(child), dir })
    }

    /// keepalived's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Signals the whole keepalived (parent and children) with `sig`.
    fn signal_all(&self, sig: nix::sys::signal::Signal) {
        for f in ["keepalived.pid", "vrrp.pid", "checkers.pid", "bfd.pid"] {
            if let Ok(p) = std::fs::read_to_string(self.dir.join(f)) {
                if let Ok(pid) = p.trim().parse::<i32>() {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
                }
            }
        }
        if let Some(c) = &self.child {
            if let Ok(pid) = i32::try_from(c.id()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
            }
        }
    }

    /// SIGTERM (keepalived resigns with priority 0) and waits up to 10 s for it to exit.
    ///
    /// # Errors
    /// It does not exit in time.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("already stopped")?;
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        bail!("keepalived ignored SIGTERM:\n{}", self.log_text())
    }

    /// SIGKILL to every keepalived process: no resignation, peers must notice by the down timer.
    /// Every process is stopped first: keepalived's VRRP child resigns (priority 0) when it
    /// sees its parent die, which would turn a crash into a clean shutdown.
    pub fn kill(mut self) {
        self.signal_all(nix::sys::signal::Signal::SIGSTOP);
        self.signal_all(nix::sys::signal::Signal::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal_all(nix::sys::signal::Signal::SIGKILL);
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
