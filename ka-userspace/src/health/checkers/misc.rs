//! MISC_CHECK: runs `misc_path` (as `user`, or `script_user`; refused when unsafe under
//! `enable_script_security`). Exit 0 is up, anything else down; with `misc_dynamic`, exit 1 is
//! down and 2-255 is up with weight `exit - 2`. A script still running after `misc_timeout`
//! (default `delay_loop`) is killed with its whole process group, and the check fails.

use std::time::Duration;

use tracing::warn;

use super::{BuildContext, CheckError, Success};
use crate::{
    config::model::{Checker, CheckerKind},
    notify::{
        script::{command, split, RunAs},
        security,
    },
};

/// A MISC_CHECK.
#[derive(Clone, Debug)]
pub struct MiscProbe {
    /// The command line.
    pub command: String,
    /// The words of the command line.
    pub words: Vec<String>,
    /// `misc_timeout`.
    pub timeout: Duration,
    /// `misc_dynamic`.
    pub dynamic: bool,
    /// Who runs it (`None`: the daemon's own identity).
    pub user: Option<RunAs>,
    /// `enable_script_security`.
    pub secure: bool,
}

impl MiscProbe {
    /// Builds the probe.
    ///
    /// # Errors
    /// No `misc_path`, a bad command line, or an unknown user.
    pub fn build(checker: &Checker, ctx: &BuildContext) -> Result<MiscProbe, CheckError> {
        let CheckerKind::Misc { path, timeout, dynamic, user } = &checker.kind else {
            return Err(CheckError::Config("not a MISC_CHECK".into()));
        };
        let command = path.clone().ok_or_else(|| CheckError::Config("MISC_CHECK needs a misc_path".into()))?;
        let words = split(&command).map_err(|e| CheckError::Config(e.to_string()))?;
        let user = match user {
            Some((u, g)) => RunAs::resolve(u, g.as_deref()),
            None => ctx.script_user.get(),
        }
        .map_err(|e| CheckError::Config(e.to_string()))?;
        // Checked here once for keepalived's messages; every run checks again and refuses
        // what breaks the rules then (a script installed after the start runs from then on).
        match security::check(&words[0], user, ctx.script_security) {
            Ok(checked) => {
                for w in &checked.warnings {
                    warn!(script = %command, "{w}");
                }
            }
            Err(e) => warn!(script = %command, error = %e, "MISC_CHECK script cannot run (yet): its checks fail"),
        }
        Ok(MiscProbe { command, words, timeout: timeout.unwrap_or(checker.delay_loop), dynamic: *dynamic, user: Some(user), secure: ctx.script_security })
    }

    /// The verdict for an exit code (pure).
    ///
    /// # Errors
    /// The code means down.
    pub fn judge(&self, code: i32) -> Result<Success, CheckError> {
        match (code, self.dynamic) {
            (0, _) => Ok(Success::new("exit 0")),
            (2..=255, true) => Ok(Success { detail: format!("exit {code}"), weight: u32::try_from(code - 2).ok() }),
            _ => Err(CheckError::Script(format!("{} exited with {code}", self.command))),
        }
    }

    /// Runs the script once.
    ///
    /// # Errors
    /// It exits with a failing code, is killed, times out or cannot start.
    pub async fn run(&self) -> Result<Success, CheckError> {
        let run_as = self.user.unwrap_or_else(RunAs::current);
        let (program, args) = self.words.split_first().ok_or_else(|| CheckError::Config("empty misc_path".into()))?;
        let checked = security::check(program, run_as, self.secure).map_err(|e| CheckError::Config(e.to_string()))?;
        let mut cmd = command(&checked.program, args, run_as);
        let mut child = cmd.spawn().map_err(|e| CheckError::Script(format!("cannot run {}: {e}", self.command)))?;
        let pgid = child.id().and_then(|p| i32::try_from(p).ok());
        let status = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(r) => r.map_err(|e| CheckError::Script(format!("waiting for {}: {e}", self.command)))?,
            Err(_) => {
                kill_group(pgid);
                // Reaped here, so no zombie is left behind; SIGKILL makes this quick.
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                return Err(CheckError::Script(format!("{} did not exit within misc_timeout {:?}; killed", self.command, self.timeout)));
            }
        };
        // Children the script left running in its group go too.
        kill_group(pgid);
        match status.code() {
            Some(code) => self.judge(code),
            None => {
                use std::os::unix::process::ExitStatusExt as _;
                Err(CheckError::Script(format!("{} killed by signal {}", self.command, status.signal().unwrap_or(0))))
            }
        }
    }
}

fn kill_group(pgid: Option<i32>) {
    if let Some(pgid) = pgid {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(cmd: &str, dynamic: bool, timeout: Duration) -> MiscProbe {
        MiscProbe { command: cmd.into(), words: split(cmd).expect("split"), timeout, dynamic, user: None, secure: false }
    }

    /// Exit codes: 0 up; non-dynamic anything else down; dynamic 1 down, 2-255 weight - 2.
    #[test]
    fn exit_codes() {
        let p = probe("x", false, Duration::from_secs(1));
        assert!(p.judge(0).is_ok());
        assert!(p.judge(3).is_err());
        let d = probe("x", true, Duration::from_secs(1));
        assert!(d.judge(1).is_err());
        assert_eq!(d.judge(2).expect("up").weight, Some(0));
        assert_eq!(d.judge(12).expect("up").weight, Some(10));
    }

    /// A real script's exit code is read, and a script that never exits is killed with its
    /// children at misc_timeout and fails with that reason.
    #[tokio::test]
    async fn scripts_run_and_hung_ones_are_killed() {
        assert_eq!(probe("/bin/sh -c 'exit 7'", true, Duration::from_secs(5)).run().await.expect("up").weight, Some(5));
        let e = probe("/bin/sh -c 'exit 1'", false, Duration::from_secs(5)).run().await.expect_err("down");
        assert!(e.to_string().contains("exited with 1"), "{e}");
        let marker = format!("sleep 3{}", std::process::id());
        let start = std::time::Instant::now();
        let e = probe(&format!("/bin/sh -c '{marker} & {marker}'"), false, Duration::from_millis(200)).run().await.expect_err("hung");
        assert!(e.to_string().contains("killed"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
        let ps = std::process::Command::new("pgrep").args(["-f", &marker]).output().expect("pgrep");
        assert!(ps.stdout.is_empty(), "script processes left: {}", String::from_utf8_lossy(&ps.stdout));
    }
}
