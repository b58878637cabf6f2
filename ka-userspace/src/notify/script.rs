//! Running notify scripts as keepalived does: the command line is split into words (quotes
//! honoured, no shell), the generic `notify` script gets `INSTANCE|GROUP NAME STATE PRIORITY`
//! appended, scripts run as `script_user`, and with `enable_script_security` a script that
//! would run as root from a path a non-root user can write is refused.

use std::{
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use nix::unistd::{Gid, Group, Uid, User};
use tracing::{debug, warn};

use super::Event;

/// Errors of notify scripts.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The command line is empty or has unbalanced quotes.
    #[error("cannot split command line {0:?}")]
    BadCommand(String),
    /// The user or group does not exist.
    #[error("unknown {kind} {name:?} for scripts")]
    UnknownUser {
        /// `user` or `group`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// The script is not safe to run as root.
    #[error("refusing to run {path} as root: {why} (enable_script_security)")]
    Insecure {
        /// Script path.
        path: PathBuf,
        /// Which component is unsafe and why.
        why: String,
    },
    /// The script cannot be found.
    #[error("script {path}: {source}")]
    Missing {
        /// Script path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Spawning failed.
    #[error("running {cmd}: {source}")]
    Spawn {
        /// The command.
        cmd: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Whom scripts run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: Uid,
    /// Group id.
    pub gid: Gid,
}

impl RunAs {
    /// Resolves `script_user USER [GROUP]` (the group defaults to the user's primary group).
    ///
    /// # Errors
    /// Unknown user or group.
    pub fn resolve(user: &str, group: Option<&str>) -> Result<RunAs, ScriptError> {
        let u = User::from_name(user)
            .ok()
            .flatten()
            .ok_or_else(|| ScriptError::UnknownUser { kind: "user", name: user.to_owned() })?;
        let gid = match group {
            None => u.gid,
            Some(g) => {
                Group::from_name(g)
                    .ok()
                    .flatten()
                    .ok_or_else(|| ScriptError::UnknownUser { kind: "group", name: g.to_owned() })?
                    .gid
            }
        };
        Ok(RunAs { uid: u.uid, gid })
    }

    /// The daemon's own identity.
    pub fn current() -> RunAs {
        RunAs { uid: Uid::effective(), gid: Gid::effective() }
    }
}

/// Splits a keepalived command line into words.
///
/// # Errors
/// Empty, or unbalanced quotes.
pub fn split(command: &str) -> Result<Vec<String>, ScriptError> {
    match shlex::split(command) {
        Some(words) if !words.is_empty() => Ok(words),
        _ => Err(ScriptError::BadCommand(command.to_owned())),
    }
}

/// The arguments keepalived appends for the generic `notify` script.
pub fn notify_args(ev: &Event) -> Vec<String> {
    vec![ev.subject.word().to_owned(), ev.name.clone(), ev.state.to_owned(), ev.priority.to_string()]
}

/// Checks that `path` (and every directory above it) cannot be changed by a non-root user, for
/// a script that runs as root.
///
/// # Errors
/// [`ScriptError::Insecure`] naming the offending component, or [`ScriptError::Missing`].
pub fn check_secure(path: &Path) -> Result<(), ScriptError> {
    let path = std::fs::canonicalize(path).map_err(|source| ScriptError::Missing { path: path.to_owned(), source })?;
    let mut component = Some(path.as_path());
    let mut is_file = true;
    while let Some(p) = component {
        let md = std::fs::metadata(p).map_err(|source| ScriptError::Missing { path: p.to_owned(), source })?;
        let mode = md.permissions().mode();
        let insecure = |why: String| Err(ScriptError::Insecure { path: path.clone(), why });
        if md.uid() != 0 {
            return insecure(format!("{} is owned by uid {}", p.display(), md.uid()));
        }
        // A sticky directory (like /tmp) does not let others replace what root owns in it.
        let sticky_dir = !is_file && mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky_dir {
            return insecure(format!("{} is writable by group or others (mode {:o})", p.display(), mode & 0o7777));
        }
        is_file = false;
        component = p.parent();
    }
    Ok(())
}

/// Runs notify scripts.
#[derive(Clone, Debug)]
pub struct Runner {
    /// Default identity (`script_user`, else root).
    pub default_user: RunAs,
    /// `enable_script_security`.
    pub secure: bool,
    /// A script still running after this long is killed (keepalived's notify scripts are
    /// expected to be quick; this bounds the processes a stuck script can pile up).
    pub timeout: Duration,
}

impl Runner {
    /// Starts `command` (plus `extra` arguments) as `user` (or the default user) and reaps it
    /// in the background. Returns once the process is started.
    ///
    /// # Errors
    /// The command line is bad, the script is insecure or missing, or the spawn fails.
    pub fn spawn(&self, command: &str, extra: &[String], user: Option<RunAs>) -> Result<tokio::task::JoinHandle<Option<i32>>, ScriptError> {
        let mut words = split(command)?;
        words.extend_from_slice(extra);
        let run_as = user.unwrap_or(self.default_user);
        if self.secure && run_as.uid.is_root() {
            check_secure(Path::new(&words[0]))?;
        }
        let mut cmd = tokio::process::Command::new(&words[0]);
        cmd.args(&words[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            // Its own process group, so a timeout kills what the script started too.
            .process_group(0);
        if run_as != RunAs::current() {
            cmd.uid(run_as.uid.as_raw()).gid(run_as.gid.as_raw());
        }
        let mut child = cmd.spawn().map_err(|source| ScriptError::Spawn { cmd: command.to_owned(), source })?;
        let timeout = self.timeout;
        let name = command.to_owned();
        Ok(tokio::spawn(async move {
            match tokio::time::timeout(timeout, child.wait()).await {
                Ok(Ok(st)) => {
                    debug!(script = %name, status = %st, "notify script finished");
                    st.code()
                }
                Ok(Err(e)) => {
                    warn!(script = %name, error = %e, "waiting for notify script");
                    None
                }
                Err(_) => {
                    warn!(script = %name, ?timeout, "notify script timed out, killing it and its process group");
                    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                    }
                    let _ = child.kill().await;
                    None
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Subject;

    #[test]
    fn command_lines_split_like_keepalived() {
        assert_eq!(split("/bin/echo 'a b' c").expect("split"), ["/bin/echo", "a b", "c"]);
        assert!(split("").is_err());
        assert!(split("/bin/echo 'open").is_err());
    }

    #[test]
    fn generic_notify_gets_keepalived_arguments() {
        let ev = Event { subject: Subject::Instance, name: "VI_1".into(), state: "MASTER", priority: 150 };
        assert_eq!(notify_args(&ev), ["INSTANCE", "VI_1", "MASTER", "150"]);
    }

    #[test]
    fn world_writable_paths_are_insecure() {
        let dir = std::env::temp_dir().join(format!("ka-sec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let script = dir.join("s.sh");
        std::fs::write(&script, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        if Uid::effective().is_root() {
            check_secure(&script).expect("root-owned 0755 script under /tmp (sticky) is secure");
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o757)).expect("chmod");
            let err = check_secure(&script).expect_err("world-writable script");
            assert!(err.to_string().contains("writable"), "{err}");
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
            let err = check_secure(&script).expect_err("world-writable directory");
            assert!(err.to_string().contains(&dir.display().to_string()), "{err}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn scripts_run_with_their_arguments_and_are_reaped() {
        let dir = std::env::temp_dir().join(format!("ka-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let out = dir.join("out");
        let runner = Runner { default_user: RunAs::current(), secure: false, timeout: Duration::from_secs(10) };
        let cmd = format!("/bin/sh -c 'echo \"$@\" > {}' sh", out.display());
        let h = runner.spawn(&cmd, &["INSTANCE".into(), "VI_1".into(), "MASTER".into(), "100".into()], None).expect("spawn");
        assert_eq!(h.await.expect("join"), Some(0));
        assert_eq!(std::fs::read_to_string(&out).expect("out"), "INSTANCE VI_1 MASTER 100\n");
        let slow = Runner { timeout: Duration::from_millis(100), ..runner };
        let h = slow.spawn("/bin/sleep 30", &[], None).expect("spawn");
        assert_eq!(h.await.expect("join"), None, "a hung script is killed at the timeout");
        let _ = std::fs::remove_dir_all(dir);
    }
}
