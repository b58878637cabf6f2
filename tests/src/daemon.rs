//! A guard around a running `ka run` process: started inside a namespace, polled until its
//! control socket answers, stopped with SIGTERM (or killed on drop, even while panicking).

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::netns::Netns;

/// How long a starting daemon may take to answer: the control socket opens after the kernel
/// has verified `ka_xdp` (about 800k instructions: a few seconds on an idle 2-vCPU VM, over
/// 20 s at a load average of 14 while the suite shares the machine with builds).
pub const START_WAIT: Duration = Duration::from_secs(90);

/// A running `ka run`.
#[derive(Debug)]
pub struct KaDaemon {
    child: Option<Child>,
    instance: String,
    bin: PathBuf,
    log: PathBuf,
}

impl KaDaemon {
    /// Starts `ka --instance INSTANCE run ARGS` in `ns`'s network namespace (keeping the host's
    /// mount namespace, so bpffs pins are visible), logging to a temp file, and waits up to
    /// [`START_WAIT`] for its control socket to answer.
    ///
    /// # Errors
    /// The daemon cannot start or exits before answering (its log is in the error).
    pub fn start(ns: &Netns, bin: &std::path::Path, instance: &str, args: &[&str]) -> anyhow::Result<KaDaemon> {
        KaDaemon::start_logging_to(ns, bin, instance, args, KaDaemon::log_file(instance))
    }

    /// [`KaDaemon::start`] with extra environment variables for the daemon.
    ///
    /// # Errors
    /// As [`KaDaemon::start`].
    pub fn start_with_env(ns: &Netns, bin: &std::path::Path, instance: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<KaDaemon> {
        KaDaemon::spawn(ns, bin, instance, args, env, KaDaemon::log_file(instance), START_WAIT)
    }

    /// [`KaDaemon::start`] with the log in `log` (a second daemon on one instance must not
    /// truncate the first one's).
    ///
    /// # Errors
    /// As [`KaDaemon::start`].
    pub fn start_logging_to(ns: &Netns, bin: &std::path::Path, instance: &str, args: &[&str], log: PathBuf) -> anyhow::Result<KaDaemon> {
        KaDaemon::start_waiting(ns, bin, instance, args, log, START_WAIT)
    }

    /// [`KaDaemon::start_logging_to`], waiting up to `within` for the control socket to answer
    /// (a configuration of 10,000 virtual servers on a loaded machine).
    ///
    /// # Errors
    /// As [`KaDaemon::start`].
    pub fn start_waiting(ns: &Netns, bin: &std::path::Path, instance: &str, args: &[&str], log: PathBuf, within: Duration) -> anyhow::Result<KaDaemon> {
        KaDaemon::spawn(ns, bin, instance, args, &[], log, within)
    }

    /// Spawns the daemon with `env` added, logging to `log`, and waits up to `within` for it.
    fn spawn(ns: &Netns, bin: &std::path::Path, instance: &str, args: &[&str], env: &[(&str, &str)], log: PathBuf, within: Duration) -> anyhow::Result<KaDaemon> {
        let file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = ns
            .nsenter(bin)
            .args(["--instance", instance, "--log", "debug", "run"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(file.try_clone()?)
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .context("spawning ka run")?;
        let mut d = KaDaemon { child: Some(child), instance: instance.to_owned(), bin: bin.to_owned(), log };
        let start = Instant::now();
        let pid = d.child.as_ref().map(Child::id);
        loop {
            // Only our own process counts: another daemon may already answer on this instance.
            if let Ok(st) = d.status_json() {
                if st["pid"].as_u64() == pid.map(u64::from) {
                    return Ok(d);
                }
            }
            if let Some(child) = d.child.as_mut() {
                if let Some(st) = child.try_wait()? {
                    bail!("ka run exited with {st} before answering:\n{}", d.log_text());
                }
            }
            if start.elapsed() > within {
                bail!("ka run did not answer on its control socket within {within:?}:\n{}", d.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The log file of a daemon started for `instance` (it stays after the daemon exits).
    pub fn log_file(instance: &str) -> PathBuf {
        std::env::temp_dir().join(format!("ka-{instance}.log"))
    }

    /// The instance name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `ka status --json` for this instance, parsed.
    ///
    /// # Errors
    /// The command fails or prints invalid JSON.
    pub fn status_json(&self) -> anyhow::Result<serde_json::Value> {
        let out = Command::new(&self.bin)
            .args(["--instance", &self.instance, "status", "--json", "--timeout", "2s"])
            .output()
            .context("running ka status")?;
        if !out.status.success() {
            bail!("ka status failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        serde_json::from_slice(&out.stdout).context("ka status --json printed invalid JSON")
    }

    /// `ka status` (text) for this instance.
    ///
    /// # Errors
    /// The command fails.
    pub fn status_text(&self) -> anyhow::Result<String> {
        crate::netns::run(Command::new(&self.bin).args(["--instance", &self.instance, "status"]))
    }

    /// Sends SIGTERM and waits up to 10 s for a clean exit. Returns the exit status.
    ///
    /// # Errors
    /// The daemon does not exit in time or exits non-zero.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("already stopped")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let start = Instant::now();
        loop {
            if let Some(st) = child.try_wait()? {
                if !st.success() {
                    bail!("ka run exited with {st}:\n{}", self.log_text());
                }
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                bail!("ka run ignored SIGTERM for 10 s:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl KaDaemon {
    /// SIGKILL, like a crash: no resignation and no cleanup by ka (peers must notice by the
    /// down timer). The control socket and pins stay behind for the next start to clean up.
    pub fn crash(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL, then the harness removes what the crash left on the host (socket, pins).
    pub fn kill(self) {
        let instance = self.instance.clone();
        self.crash();
        remove_leftovers(&instance);
    }
}

fn remove_leftovers(instance: &str) {
    let _ = std::fs::remove_file(format!("/run/ka/{instance}.sock"));
    let _ = std::fs::remove_file(format!("/run/ka/{instance}.vrrp"));
    let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/ka/{instance}"));
}

impl Drop for KaDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Only a daemon we kill here leaves files of its own behind; one that already
            // exited (e.g. refused because the instance is taken) must not touch the files of
            // the daemon that does own the instance.
            let was_running = matches!(child.try_wait(), Ok(None));
            let _ = child.kill();
            let _ = child.wait();
            if was_running {
                remove_leftovers(&self.instance);
            }
        }
    }
}
