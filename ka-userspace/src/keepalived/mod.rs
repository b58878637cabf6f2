//! ka as a drop-in `keepalived`: when invoked as `keepalived` (a symlink or the package's
//! alternative) or as `ka keepalived ...`, ka takes keepalived 2.2.7's command line, forks as
//! it does (unless `-n`), writes its pid files, logs to syslog under its identifiers, answers
//! its signals with its dump files, and `-t` exits with its config-test codes. The daemon
//! underneath is `ka run`.
//!
//! - the command line, translated (pure): [`args`];
//! - `-t`: [`config_test`];
//! - `/tmp/keepalived.data`, `.stats`, `.json` (pure renderers): [`dump`];
//! - the signal numbers and the dump task: [`signals`];
//! - the pid files: [`pidfile`];
//! - syslog and console in keepalived's format and words: [`log`].

pub mod args;
pub mod config_test;
pub mod dump;
pub mod log;
pub mod pidfile;
pub mod signals;

use std::{
    ffi::OsString,
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use args::{Invocation, RunPlan};
use tracing::{error, info, warn};

/// The keepalived version whose command line, files and exit codes ka follows.
pub const KEEPALIVED_VERSION: &str = "2.2.7";

/// keepalived's exit codes outside `-t` (`KEEPALIVED_EXIT_*`).
mod exit {
    /// `KEEPALIVED_EXIT_FATAL`.
    pub const FATAL: u8 = 1;
    /// `KEEPALIVED_EXIT_CONFIG`: the configuration cannot be run.
    pub const CONFIG: u8 = 2;
    /// `KEEPALIVED_EXIT_NO_CONFIG`: no configuration file.
    pub const NO_CONFIG: u8 = 6;
}

/// Whether this process was invoked as keepalived: `argv[0]`'s file name is `keepalived`.
pub fn invoked_as_keepalived(argv0: &std::ffi::OsStr) -> bool {
    Path::new(argv0).file_name().is_some_and(|n| n == "keepalived")
}

/// `-v`: keepalived's version report (stderr), whose first line tools parse
/// (`Keepalived v2.2.7 ...`) and whose `configure options` line says `--enable-json`.
pub fn version_text() -> String {
    let ka = env!("CARGO_PKG_VERSION");
    format!(
        "Keepalived v{KEEPALIVED_VERSION} (ka {ka})\n\n\
         ka {ka}: an eBPF/XDP load balancer and VRRP daemon running keepalived.conf, with keepalived {KEEPALIVED_VERSION}'s command line,\n\
         pid files, signals and dump files. `ka --help` describes ka's own commands.\n\n\
         configure options: --enable-json (keepalived.json on the JSON signal, {})\n\n\
         Config options:  LVS VRRP VRRP_AUTH VRRP_VMAC JSON\n\n\
         System options:  ka\n",
        signals::SigFunc::Json.number()
    )
}

/// `-h`: keepalived's option list, with what ka makes of each.
pub fn usage_text(prog: &str) -> String {
    format!(
        "Usage: {prog} [OPTION...]\n\
  -f, --use-file=FILE          Use the specified configuration file\n\
                                default '{}'\n\
  -P, --vrrp                   Only run with VRRP subsystem\n\
  -C, --check                  Only run with Health-checker subsystem\n\
  -B, --no_bfd                 Don't run BFD subsystem\n\
      --all                    Force all child processes to run (accepted; ka runs what the configuration uses)\n\
  -l, --log-console            Log messages to local console\n\
  -D, --log-detail             Detailed log messages (twice: ka's debug lines)\n\
  -S, --log-facility=([0-7]|local[0-7]|user|daemon)\n\
                               Set syslog facility to LOG_LOCAL[0-7], user or daemon (default)\n\
  -G, --no-syslog              Don't log via syslog\n\
  -u, --umask=MASK             umask for file creation (in numeric form)\n\
  -X, --release-vips           Drop VIP on transition from signal (accepted, logged: no effect in ka)\n\
  -V, --dont-release-vrrp      Don't remove VRRP VIPs and VROUTEs on daemon stop\n\
  -I, --dont-release-ipvs      Don't remove IPVS topology (ka: the XDP datapath) on daemon stop\n\
  -R, --dont-respawn           Don't respawn child processes (ka has none; accepted)\n\
  -n, --dont-fork              Don't fork the daemon process\n\
  -d, --dump-conf              Dump the configuration data\n\
  -p, --pid=FILE               Use specified pidfile for parent process\n\
  -r, --vrrp_pid=FILE          Use specified pidfile for VRRP child process\n\
  -T, --genhash                Enter into genhash utility mode (not provided by ka)\n\
  -c, --checkers_pid=FILE      Use specified pidfile for checkers child process\n\
  -a, --address-monitoring     Report all address additions/deletions (accepted, logged: no effect in ka)\n\
  -b, --bfd_pid=FILE           Use specified pidfile for BFD child process\n\
  -x, --snmp                   Enable SNMP subsystem (accepted, logged: ka has no SNMP agent)\n\
  -A, --snmp-agent-socket=FILE Use the specified socket for master agent (accepted, logged)\n\
  -s, --namespace=NAME         Run in network namespace NAME (overrides config)\n\
  -m, --core-dump              Produce core dump if terminate abnormally\n\
  -M, --core-dump-pattern=PATN Also set /proc/sys/kernel/core_pattern to PATN (ka: core dumps only; the pattern is left)\n\
  -e, --all-config             Error if any configuration file missing (same as includet)\n\
  -i, --config-id id           Skip any configuration lines beginning '@' that don't match id\n\
                                or any lines beginning @^ that do match.\n\
                                The config-id defaults to the node name if option not used\n\
      --signum=SIGFUNC         Return signal number for STOP, RELOAD, DATA, STATS, STATS_CLEAR, JSON\n\
  -t, --config-test[=LOG_FILE] Check the configuration for obvious errors, output to\n\
                                stderr by default\n\
  -v, --version                Display the version number\n\
  -h, --help                   Display this help message\n",
        args::DEFAULT_CONFIG_FILE
    )
}

/// The keepalived front end, when this process was started as keepalived: `argv[0]` named
/// `keepalived`, or `ka keepalived ARGS` (re-executed with `argv[0]` = `keepalived`, so that
/// `ps` shows a keepalived process, as exporters look for one). `None`: ka's own command line.
pub fn dispatch() -> Option<ExitCode> {
    let argv: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let argv0 = argv.first()?;
    if invoked_as_keepalived(argv0.as_ref()) {
        return Some(main(argv0, &argv[1..]));
    }
    if argv.get(1).map(String::as_str) != Some("keepalived") {
        return None;
    }
    use std::os::unix::process::CommandExt as _;
    let err = std::process::Command::new("/proc/self/exe").arg0("keepalived").args(&argv[2..]).exec();
    // exec failed (no /proc): run here, under ka's name.
    eprintln!("ka keepalived: cannot re-execute as keepalived ({err}); running as {argv0}");
    Some(main("keepalived", &argv[2..]))
}

/// Runs ka as keepalived with `args` (`argv[0]` excluded) and `prog` as `argv[0]`.
pub fn main(prog: &str, args: &[String]) -> ExitCode {
    let inv = match args::translate(args) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(exit::FATAL);
        }
    };
    match inv {
        Invocation::Help => {
            eprint!("{}", usage_text(prog));
            ExitCode::SUCCESS
        }
        Invocation::Version => {
            eprint!("{}", version_text());
            ExitCode::SUCCESS
        }
        Invocation::Signum(name) => match signals::SigFunc::from_name(&name) {
            Some(f) => {
                println!("{}", f.number());
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("Unknown sigfunc {name}");
                ExitCode::from(exit::FATAL)
            }
        },
        Invocation::Genhash => {
            eprintln!("ka does not provide keepalived's genhash mode (-T, --genhash); run genhash from the keepalived package, or curl and sha256sum");
            ExitCode::from(exit::FATAL)
        }
        Invocation::ConfigTest(t) => {
            let mut out: Box<dyn std::io::Write> = match &t.log_file {
                Some(p) => match std::fs::OpenOptions::new().append(true).create(true).open(p) {
                    Ok(f) => Box::new(f),
                    Err(e) => {
                        eprintln!("Unable to open config-test log file {} - {e}", p.display());
                        return ExitCode::from(exit::FATAL);
                    }
                },
                None => Box::new(std::io::stderr()),
            };
            for n in &t.notes {
                let _ = writeln!(out, "{}: {}", n.option, n.what);
            }
            let code = config_test::run(&t.file, t.config_id.clone(), &mut *out);
            ExitCode::from(code as u8)
        }
        Invocation::Run(plan) => run(prog, args, &plan),
    }
}

/// Enters the network namespace `/run/netns/NAME` (`-s`), before any thread exists.
/// Moves the calling thread (and the threads it starts later) into the network namespace
/// `/run/netns/NAME` (keepalived's `-s NAME` and `net_namespace NAME`).
///
/// # Errors
/// The namespace does not exist or `setns` is refused.
pub fn enter_namespace(name: &str) -> std::io::Result<()> {
    let f = std::fs::File::open(format!("/run/netns/{name}"))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

/// keepalived's `xdaemon`: fork (the parent exits 0), new session, `/` as working directory,
/// standard streams on /dev/null. Returns in the child.
fn daemonize() -> std::io::Result<()> {
    use nix::unistd::{fork, setsid, ForkResult};
    // SAFETY: no other thread exists yet (the runtime is built after this), so the child may
    // run anything.
    match unsafe { fork() }.map_err(std::io::Error::from)? {
        ForkResult::Parent { .. } => std::process::exit(0),
        ForkResult::Child => {}
    }
    setsid().map_err(std::io::Error::from)?;
    let _ = std::env::set_current_dir("/");
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    for fd in [0, 1, 2] {
        // SAFETY: dup2 onto the standard descriptors of this single-threaded process.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) };
    }
    Ok(())
}

/// What runs, from the configuration and `-P`/`-C`.
fn subsystems(config: &crate::config::Config, only: Option<args::Only>) -> (bool, bool) {
    let vrrp = !config.vrrp_instances.is_empty() && only != Some(args::Only::Checkers);
    let checkers = !config.virtual_servers.is_empty() && only != Some(args::Only::Vrrp);
    (vrrp, checkers)
}

fn run(prog: &str, args: &[String], plan: &RunPlan) -> ExitCode {
    if !plan.unexpected.is_empty() {
        // keepalived prints these on stdout and goes on.
        println!("Unexpected argument(s): {} ", plan.unexpected.join(" "));
    }
    if let Some(mask) = plan.umask {
        // SAFETY: umask only changes this process's file-creation mask.
        unsafe { libc::umask(mask) };
    }
    if plan.core_dump {
        let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
        // SAFETY: setrlimit reads the struct we pass.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &unlimited) };
    }
    if let Some(ns) = &plan.namespace {
        if let Err(e) = enter_namespace(ns) {
            eprintln!("Unable to set network namespace {ns} - exiting ({e})");
            return ExitCode::from(exit::FATAL);
        }
    }
    // The configuration is read before forking, as keepalived does: a missing file or one ka
    // cannot run is reported on the terminal, with keepalived's exit codes.
    let opts = crate::config::LoadOptions { config_id: plan.config_id.clone(), ..Default::default() };
    let loaded = match crate::config::load(&plan.file, &opts) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("Unable to find configuration file {} ({e})", plan.file.display());
            return ExitCode::from(exit::NO_CONFIG);
        }
    };
    let errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == crate::config::Severity::Error)
        .map(|d| d.render(&loaded.sources, &plan.file))
        .collect();
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("{e}");
        }
        eprintln!("ka does not run a configuration with errors ({}); `keepalived -t -f {}` lists them", errors.len(), plan.file.display());
        return ExitCode::from(exit::CONFIG);
    }
    // `net_namespace` of the configuration, unless `-s` chose one (keepalived: the command
    // line wins). Entered before any thread is started, so all of them run in it.
    if let (None, Some(ns)) = (&plan.namespace, &loaded.config.net_namespace) {
        if let Err(e) = enter_namespace(ns) {
            eprintln!("Unable to set network namespace {ns} - exiting ({e})");
            return ExitCode::from(exit::FATAL);
        }
    }
    let (vrrp, checkers) = subsystems(&loaded.config, plan.only);
    let p = &plan.pid_files;
    let mut watched: Vec<&Path> = vec![&p.main];
    if vrrp {
        watched.push(&p.vrrp);
    }
    if checkers {
        watched.push(&p.checkers);
    }
    if !loaded.config.bfd_instances.is_empty() && !plan.no_bfd {
        watched.push(&p.bfd);
    }
    if watched.iter().any(|f| matches!(pidfile::state(f), pidfile::PidState::Running(_))) {
        eprintln!("daemon is already running");
        return ExitCode::SUCCESS;
    }
    if plan.fork {
        if let Err(e) = daemonize() {
            eprintln!("xdaemon: {e}");
            return ExitCode::from(exit::FATAL);
        }
    }
    let filter = std::env::var("KA_LOG").unwrap_or_else(|_| if plan.log.detail >= 2 { "debug".to_owned() } else { "info".to_owned() });
    let sinks = log::Sinks { console: plan.log.console, syslog: plan.log.syslog.then(|| PathBuf::from("/dev/log")), facility: plan.log.facility };
    log::init(&filter, sinks, local_offset());
    log::learn_protocols(&loaded.config);
    info!("Starting Keepalived v{KEEPALIVED_VERSION} (ka {})", env!("CARGO_PKG_VERSION"));
    info!("Command line: {}", std::iter::once(prog).chain(args.iter().map(String::as_str)).map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" "));
    info!("Configuration file {}", plan.file.display());
    for n in &plan.notes {
        warn!(option = %n.option, "keepalived option accepted without its effect: {}", n.what);
    }
    let pid = std::process::id();
    let _pids = match pidfile::PidFiles::write(&watched, pid) {
        Ok(p) => p,
        Err(e) => {
            error!(error = %e, "pidfile_write : Cannot open pidfile");
            return ExitCode::from(exit::FATAL);
        }
    };
    let code = run_daemon(plan);
    info!("Stopped Keepalived v{KEEPALIVED_VERSION}");
    code
}

/// Parses the translated command line as `ka` and runs the daemon.
fn run_daemon(plan: &RunPlan) -> ExitCode {
    use clap::Parser as _;
    let mut argv: Vec<OsString> = plan.ka_argv.clone();
    if plan.dump_conf {
        argv.push("--dump-conf".into());
    }
    let cli = match crate::cli::Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "translating the command line");
            return ExitCode::from(exit::FATAL);
        }
    };
    let crate::cli::Command::Run(run_args) = cli.command else {
        error!("translating the command line: not a run");
        return ExitCode::from(exit::FATAL);
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name(crate::threads::WORKER_NAME).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "building the runtime");
            return ExitCode::from(exit::FATAL);
        }
    };
    match rt.block_on(crate::daemon::run(cli.instance, run_args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "ka stopped");
            ExitCode::from(exit::FATAL)
        }
    }
}

/// Local time's offset from UTC, in seconds.
pub(crate) fn local_offset() -> i64 {
    let now: libc::time_t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| libc::time_t::try_from(d.as_secs()).unwrap_or(0));
    // SAFETY: localtime_r writes only into the tm we pass.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
        return 0;
    }
    tm.tm_gmtoff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalived_by_name() {
        assert!(invoked_as_keepalived("keepalived".as_ref()));
        assert!(invoked_as_keepalived("/usr/sbin/keepalived".as_ref()));
        assert!(!invoked_as_keepalived("/usr/sbin/ka".as_ref()));
        assert!(!invoked_as_keepalived("keepalived2".as_ref()));
    }

    /// The first line parses as keepalived's version (mehdy/keepalived-exporter reads the
    /// second word without its `v`), and `--enable-json` is announced.
    #[test]
    fn version_reads_as_keepalived_s() {
        let v = version_text();
        let first = v.lines().next().expect("line");
        assert_eq!(first.split(' ').nth(1), Some("v2.2.7"));
        assert!(v.contains("--enable-json"));
        assert!(usage_text("keepalived").starts_with("Usage: keepalived [OPTION...]\n"));
    }
}
