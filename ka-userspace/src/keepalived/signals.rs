//! keepalived's signals: their numbers (`keepalived --signum`), and the task that answers the
//! dump signals with keepalived's files.
//!
//! SIGHUP (reload) and SIGTERM/SIGINT (stop) are the daemon's own; this task takes SIGUSR1
//! (`keepalived.data`, `keepalived_check.data`), SIGUSR2 (`keepalived.stats`), STATS_CLEAR
//! (the stats, then counting restarts from zero) and SIGJSON (`keepalived.json`). Each dump
//! asks the daemon's main loop for a status report through the control channel, as `ka status`
//! does, so it never reads the engine's state behind its back; the files are written next to
//! their final name and renamed into place, so a reader never sees half a file.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use super::dump::{self, Baseline, DumpInput};
use crate::{config::Config, control::ControlCall};

/// A keepalived signal function, as `--signum=NAME` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigFunc {
    /// `STOP`: SIGTERM.
    Stop,
    /// `RELOAD`: SIGHUP.
    Reload,
    /// `DATA`: SIGUSR1.
    Data,
    /// `STATS`: SIGUSR2.
    Stats,
    /// `STATS_CLEAR`: SIGRTMAX - 1.
    StatsClear,
    /// `JSON`: SIGRTMIN + 2.
    Json,
}

impl SigFunc {
    /// The function `--signum` names (keepalived's spelling, upper case).
    pub fn from_name(name: &str) -> Option<SigFunc> {
        Some(match name {
            "STOP" => SigFunc::Stop,
            "RELOAD" => SigFunc::Reload,
            "DATA" => SigFunc::Data,
            "STATS" => SigFunc::Stats,
            "STATS_CLEAR" => SigFunc::StatsClear,
            "JSON" => SigFunc::Json,
            _ => return None,
        })
    }

    /// The signal number on this system, as keepalived computes it (glibc's SIGRTMIN is 34 on
    /// Linux: JSON is 36, STATS_CLEAR 63).
    pub fn number(self) -> i32 {
        match self {
            SigFunc::Stop => libc::SIGTERM,
            SigFunc::Reload => libc::SIGHUP,
            SigFunc::Data => libc::SIGUSR1,
            SigFunc::Stats => libc::SIGUSR2,
            SigFunc::StatsClear => libc::SIGRTMAX() - 1,
            SigFunc::Json => libc::SIGRTMIN() + 2,
        }
    }
}

/// Where keepalived writes its dumps: `$TMPDIR` when it is an absolute path, else `/tmp`.
pub fn tmp_dir(tmpdir_env: Option<&str>) -> PathBuf {
    match tmpdir_env {
        Some(d) if d.starts_with('/') => PathBuf::from(d),
        _ => PathBuf::from("/tmp"),
    }
}

/// A dump file's name as keepalived 2.2.7's `open_dump_file` makes it: with
/// `data_use_instance` and a network namespace or an `instance`, `keepalived.NS_NAME.data`
/// (either part alone without the `_`); else `name` unchanged.
pub fn dump_name(name: &str, data_use_instance: bool, namespace: Option<&str>, instance: Option<&str>) -> String {
    if !data_use_instance || (namespace.is_none() && instance.is_none()) {
        return name.to_owned();
    }
    let (stem, ext) = name.rsplit_once('.').map_or((name, String::new()), |(s, e)| (s, format!(".{e}")));
    let sep = if namespace.is_some() && instance.is_some() { "_" } else { "" };
    format!("{stem}.{}{sep}{}{ext}", namespace.unwrap_or(""), instance.unwrap_or(""))
}

/// Errors of the dump task.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// A signal handler could not be installed.
    #[error("installing the handler of signal {signal}: {source}")]
    Signal {
        /// Signal number.
        signal: i32,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A dump file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Writes `text` to `dir/name` (mode 0600, as keepalived's `fopen_safe`), through a temporary
/// file renamed into place.
///
/// # Errors
/// The file cannot be written.
pub fn write_dump(dir: &Path, name: &str, text: &str) -> Result<PathBuf, DumpError> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let err = |source| DumpError::Write { path: path.display().to_string(), source };
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })?;
    Ok(path)
}

/// What the dump task needs besides the signals.
#[derive(Debug)]
pub struct DumpOptions {
    /// The daemon's control channel (status reports).
    pub calls: tokio::sync::mpsc::Sender<ControlCall>,
    /// The running configuration, updated on reload.
    pub config: tokio::sync::watch::Receiver<Option<Arc<Config>>>,
    /// Where the files go ([`tmp_dir`]).
    pub dir: PathBuf,
    /// `keepalived -d`: log the data dump once the daemon runs.
    pub dump_conf: bool,
}

/// The host name, short (`router_id`'s default).
fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
}

/// Installs the handlers and starts the dump task.
///
/// # Errors
/// A handler cannot be installed.
pub fn spawn(mut opts: DumpOptions) -> Result<tokio::task::JoinHandle<()>, DumpError> {
    let sig = |f: SigFunc| signal(SignalKind::from_raw(f.number())).map_err(|source| DumpError::Signal { signal: f.number(), source });
    let mut usr1 = sig(SigFunc::Data)?;
    let mut usr2 = sig(SigFunc::Stats)?;
    let mut clear = sig(SigFunc::StatsClear)?;
    let mut json = sig(SigFunc::Json)?;
    Ok(tokio::spawn(async move {
        let mut baseline = Baseline::new();
        if opts.dump_conf {
            dump_once(&mut opts, SigFunc::Data, &mut baseline, true).await;
        }
        if let Some(c) = opts.config.borrow_and_update().as_ref() {
            super::log::learn_protocols(c);
        }
        loop {
            let f = tokio::select! {
                Ok(()) = opts.config.changed() => {
                    if let Some(c) = opts.config.borrow_and_update().as_ref() {
                        super::log::learn_protocols(c);
                    }
                    continue;
                }
                Some(()) = usr1.recv() => SigFunc::Data,
                Some(()) = usr2.recv() => SigFunc::Stats,
                Some(()) = clear.recv() => SigFunc::StatsClear,
                Some(()) = json.recv() => SigFunc::Json,
                else => return,
            };
            dump_once(&mut opts, f, &mut baseline, false).await;
        }
    }))
}

/// One signal's dump. `to_log`: `-d`, the data dump goes to the log instead of a file.
async fn dump_once(opts: &mut DumpOptions, f: SigFunc, baseline: &mut Baseline, to_log: bool) {
    let pid = std::process::id();
    match f {
        SigFunc::Data if !to_log => info!("Printing VRRP data for process({pid}) on signal"),
        SigFunc::Stats => info!("Printing VRRP stats for process({pid}) on signal"),
        SigFunc::StatsClear => info!("Printing and clearing VRRP stats for process({pid}) on signal"),
        SigFunc::Json => info!("Printing VRRP as json for process({pid}) on signal"),
        _ => {}
    }
    let Some(status) = crate::control::ask_status(&opts.calls).await else {
        warn!(signal = f.number(), "no status from the daemon: no dump written");
        return;
    };
    let Some(config) = opts.config.borrow().clone() else {
        warn!(signal = f.number(), "the daemon runs without a configuration: no dump written");
        return;
    };
    let host = hostname();
    let offset = super::local_offset();
    let input = DumpInput { status: &status, config: &config, baseline, hostname: &host, utc_offset_s: offset };
    let files: Vec<(&str, String)> = match f {
        SigFunc::Data if to_log => {
            for line in dump::data(&input).lines().chain(dump::check_data(&input).lines()) {
                info!("{line}");
            }
            return;
        }
        SigFunc::Data => {
            let mut v = vec![("keepalived.data", dump::data(&input))];
            if !config.virtual_servers.is_empty() {
                v.push(("keepalived_check.data", dump::check_data(&input)));
            }
            v
        }
        SigFunc::Stats | SigFunc::StatsClear => vec![("keepalived.stats", dump::stats(&input))],
        // keepalived writes no JSON without VRRP instances.
        SigFunc::Json if config.vrrp_instances.is_empty() => Vec::new(),
        SigFunc::Json => vec![("keepalived.json", dump::json(&input))],
        SigFunc::Stop | SigFunc::Reload => Vec::new(),
    };
    if f == SigFunc::StatsClear {
        *baseline = status.vrrp.iter().map(|r| (r.name.clone(), dump::Stats::of(r))).collect();
    }
    let dir = opts.dir.clone();
    let (use_instance, ns, instance) = (config.global.data_use_instance, config.net_namespace.clone(), config.instance.clone());
    let files: Vec<(String, String)> = files.into_iter().map(|(name, text)| (dump_name(name, use_instance, ns.as_deref(), instance.as_deref()), text)).collect();
    let written = tokio::task::spawn_blocking(move || files.iter().map(|(name, text)| write_dump(&dir, name, text)).collect::<Vec<_>>()).await;
    for r in written.unwrap_or_default() {
        if let Err(e) = r {
            warn!(error = %e, "keepalived dump");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// keepalived's `open_dump_file` names, with and without `data_use_instance`.
    #[test]
    fn dump_names_follow_data_use_instance() {
        let cases = [
            ("keepalived.data", false, Some("ns"), Some("red"), "keepalived.data"),
            ("keepalived.data", true, None, None, "keepalived.data"),
            ("keepalived.data", true, None, Some("red"), "keepalived.red.data"),
            ("keepalived.stats", true, Some("ns"), None, "keepalived.ns.stats"),
            ("keepalived_check.data", true, Some("ns"), Some("red"), "keepalived_check.ns_red.data"),
            ("keepalived.json", true, Some("ns"), Some("red"), "keepalived.ns_red.json"),
        ];
        for (name, on, ns, inst, want) in cases {
            assert_eq!(dump_name(name, on, ns, inst), want, "{name} {on} {ns:?} {inst:?}");
        }
    }

    /// The numbers `keepalived --signum` prints on Debian's 2.2.7 (glibc, Linux).
    #[test]
    fn signal_numbers_are_keepalived_s() {
        let cases = [("STOP", 15), ("RELOAD", 1), ("DATA", 10), ("STATS", 12), ("STATS_CLEAR", 63), ("JSON", 36)];
        for (name, n) in cases {
            assert_eq!(SigFunc::from_name(name).map(SigFunc::number), Some(n), "{name}");
        }
        assert_eq!(SigFunc::from_name("TDUMP"), None);
        assert_eq!(SigFunc::from_name("json"), None);
    }

    #[test]
    fn tmp_dir_follows_an_absolute_tmpdir() {
        assert_eq!(tmp_dir(None), PathBuf::from("/tmp"));
        assert_eq!(tmp_dir(Some("relative")), PathBuf::from("/tmp"));
        assert_eq!(tmp_dir(Some("/var/tmp")), PathBuf::from("/var/tmp"));
    }

    #[test]
    fn dumps_are_written_whole_and_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("ka-kdump-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = write_dump(&dir, "keepalived.json", "[]\n").expect("write");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "[]\n");
        assert_eq!(std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777, 0o600);
        write_dump(&dir, "keepalived.json", "[{}]\n").expect("rewrite");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "[{}]\n");
        let left: Vec<_> = std::fs::read_dir(&dir).expect("ls").filter_map(Result::ok).map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
