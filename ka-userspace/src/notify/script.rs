//! Running scripts as keepalived does: the command line is split into words (quotes honoured,
//! no shell), the generic `notify` script gets `INSTANCE|GROUP NAME STATE PRIORITY` appended,
//! scripts run as `script_user` (or keepalived's default user, [`super::security`]), and with
//! `enable_script_security` a script that would run as root from a path a non-root user can
//! write is refused.
//!
//! Every script ka runs (notify scripts, `vrrp_script`s, `MISC_CHECK`s) is started by
//! [`command`]: stdin, stdout and stderr on `/dev/null`, its own process group (a timeout kills
//! what it started too), the working directory `/`, and a sanitised environment
//! ([`script_env`]): `PATH` fixed to [`SCRIPT_PATH`], the locale (`LANG`, `LANGUAGE`, `LC_*`)
//! and `TZ` kept, nothing else. keepalived passes its own environment minus `IFS`,
//! `LD_PRELOAD` and `LD_LIBRARY_PATH`; ka passes less: neither the daemon's `PATH` nor
//! `NOTIFY_SOCKET`, `LISTEN_FDS`, `BASH_ENV`, `PYTHONPATH`, `PERL5LIB`... reach a script run as
//! root.

use std::{
    ffi::{OsStr, OsString},
    path::{Path, PathBuf},
    time::Duration,
};

use nix::unistd::{Gid, Group, Uid, User};
use tracing::{debug, warn};

use super::{security::DefaultUser, Event};

/// The `PATH` scripts get (and where bare script names are looked up).
pub const SCRIPT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment of a script, from the daemon's (`parent`): `PATH` is [`SCRIPT_PATH`];
/// `LANG`, `LANGUAGE`, `LC_*` and `TZ` are kept; everything else is dropped.
pub fn script_env<K: AsRef<OsStr>, V: AsRef<OsStr>>(parent: impl IntoIterator<Item = (K, V)>) -> Vec<(OsString, OsString)> {
    let mut env = vec![(OsString::from("PATH"), OsString::from(SCRIPT_PATH))];
    for (k, v) in parent {
        let key = k.as_ref().to_string_lossy();
        if key == "LANG" || key == "LANGUAGE" || key == "TZ" || key.starts_with("LC_") {
            env.push((k.as_ref().to_owned(), v.as_ref().to_owned()));
        }
    }
    env
}

/// A command for script `program` with `args`, run as `run_as`: stdio on `/dev/null`, its own
/// process group, working directory `/`, the sanitised environment ([`script_env`]), killed
/// when dropped. Supplementary groups are dropped when the user changes (the standard
/// library's `setgroups(0)` when root sets a uid).
pub fn command(program: &Path, args: &[String], run_as: RunAs) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(script_env(std::env::vars_os()))
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .process_group(0);
    if run_as != RunAs::current() {
        cmd.uid(run_as.uid.as_raw()).gid(run_as.gid.as_raw());
    }
    cmd
}

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
    #[error("refusing to run {path}: {why}")]
    Insecure {
        /// Script path.
        path: PathBuf,
        /// Which component is unsafe and why.
        why: String,
    },
    /// The script cannot be executed by its user (keepalived's words).
    #[error("WARNING - script '{path}' is not executable for uid:gid {uid}:{gid} - disabling.")]
    NotExecutable {
        /// Script path.
        path: PathBuf,
        /// User id.
        uid: u32,
        /// Group id.
        gid: u32,
    },
    /// No `script_user`, no `keepalived_script` user, and `enable_script_security`: a script
    /// that names no user is not run (keepalived's words).
    #[error("Unable to set default user keepalived_script for script (enable_script_security without script_user) - not running it")]
    NoDefaultUser,
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

/// Runs notify scripts.
#[derive(Clone, Debug)]
pub struct Runner {
    /// Default identity (`script_user`, else `keepalived_script`, else root unless
    /// `enable_script_security`).
    pub default_user: DefaultUser,
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
        let run_as = match user {
            Some(u) => u,
            None => self.default_user.get()?,
        };
        let checked = super::security::check(&words[0], run_as, self.secure)?;
        for w in &checked.warnings {
            warn!(script = %command, "{w}");
        }
        let mut cmd = self::command(&checked.program, &words[1..], run_as);
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

    /// Only `PATH` (fixed), the locale and `TZ` reach a script.
    #[test]
    fn script_environment_is_minimal() {
        let parent = [
            ("PATH", ".:/home/u/bin:/usr/bin"),
            ("LANG", "C.UTF-8"),
            ("LC_TIME", "en_GB.UTF-8"),
            ("TZ", "UTC"),
            ("LD_PRELOAD", "/tmp/evil.so"),
            ("LD_LIBRARY_PATH", "/tmp"),
            ("IFS", "x"),
            ("BASH_ENV", "/tmp/rc"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("HOME", "/root"),
            ("SECRET_TOKEN", "s3cret"),
        ];
        let env = script_env(parent);
        let got: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())).collect();
        let want: Vec<(String, String)> = [("PATH", SCRIPT_PATH), ("LANG", "C.UTF-8"), ("LC_TIME", "en_GB.UTF-8"), ("TZ", "UTC")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(got, want);
    }

    /// A real script sees only the sanitised environment, runs in `/`, and its stdin is empty.
    #[tokio::test]
    async fn scripts_see_the_sanitised_environment() {
        let dir = std::env::temp_dir().join(format!("ka-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let out = dir.join("env");
        let sh = format!("env > {}; pwd >> {}; cat >> {}", out.display(), out.display(), out.display());
        let st = command(Path::new("/bin/sh"), &["-c".into(), sh], RunAs::current()).status().await.expect("run");
        assert!(st.success());
        let text = std::fs::read_to_string(&out).expect("out");
        let mut lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.pop(), Some("/"), "working directory: {text}");
        for l in &lines {
            let key = l.split('=').next().unwrap_or_default();
            // The shell itself sets PWD, SHLVL and `_`.
            assert!(
                ["PATH", "LANG", "LANGUAGE", "TZ", "PWD", "SHLVL", "_"].contains(&key) || key.starts_with("LC_"),
                "{key} leaked into the script's environment:\n{text}"
            );
        }
        assert!(lines.contains(&format!("PATH={SCRIPT_PATH}").as_str()), "{text}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Without a default user (enable_script_security, no script_user, no keepalived_script),
    /// a script that names no user is refused; one that names a user runs.
    #[tokio::test]
    async fn no_default_user_refuses_scripts_without_a_user() {
        let runner = Runner { default_user: DefaultUser::Refused, secure: true, timeout: Duration::from_secs(10) };
        assert!(matches!(runner.spawn("/bin/true", &[], None), Err(ScriptError::NoDefaultUser)));
        let h = runner.spawn("/bin/true", &[], Some(RunAs::current())).expect("a script with its own user runs");
        assert_eq!(h.await.expect("join"), Some(0));
    }

    #[tokio::test]
    async fn scripts_run_with_their_arguments_and_are_reaped() {
        let dir = std::env::temp_dir().join(format!("ka-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let out = dir.join("out");
        let runner = Runner { default_user: DefaultUser::Run(RunAs::current()), secure: false, timeout: Duration::from_secs(10) };
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
