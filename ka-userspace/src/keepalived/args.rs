//! keepalived 2.2.7's command line (Debian's build), parsed as its `getopt_long` does and
//! translated into a `ka run` command line plus what ka does around it (fork, pid files,
//! logging). [`translate`] is pure: argv in, [`Invocation`] out.
//!
//! getopt's rules are kept: short options bundle (`-nlD`), a required argument is attached or
//! the next word (`-fFILE`, `-f FILE`), an optional one only attached (`-tFILE`,
//! `--config-test=FILE`), long options may be abbreviated to an unambiguous prefix, words
//! that are not options are reported and ignored, `--` ends the options.

use std::{ffi::OsString, path::PathBuf};

/// Default configuration file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/keepalived/keepalived.conf";
/// Where keepalived 2.2.7 (Debian, `--runstatedir=/run`) writes its pid files.
pub const RUN_DIR: &str = "/run";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// `-h`: usage on stderr, exit 0.
    Help,
    /// `-v`: version on stderr, exit 0.
    Version,
    /// `--signum=SIGFUNC`: the signal number on stdout (exit 0), or `Unknown sigfunc` (exit 1).
    Signum(String),
    /// `-T`: keepalived's genhash mode, which ka does not have.
    Genhash,
    /// `-t[LOG_FILE]`: check the configuration and exit with keepalived's config-test code.
    ConfigTest(ConfigTest),
    /// Run the daemon.
    Run(Box<RunPlan>),
}

/// `-t`: what to check, and where the diagnostics go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigTest {
    /// Configuration file.
    pub file: PathBuf,
    /// `-i`.
    pub config_id: Option<String>,
    /// `-t LOG_FILE` / `--config-test=LOG_FILE`: diagnostics are appended there, not stderr.
    pub log_file: Option<PathBuf>,
    /// Options accepted without effect, to be mentioned.
    pub notes: Vec<Note>,
}

/// A keepalived subsystem `-P` / `-C` selects (`ka run --only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    /// `-P`: VRRP only (the virtual servers are left out).
    Vrrp,
    /// `-C`: health checkers and the load balancer only (the VRRP instances are left out).
    Checkers,
}

impl Only {
    /// Cuts `config` down to the subsystem: `-P` drops the virtual servers, `-C` the VRRP
    /// instances, sync groups and scripts, and the connection sync (which keepalived's VRRP
    /// process runs).
    pub fn apply(self, config: &mut crate::config::Config) {
        match self {
            Only::Vrrp => {
                config.virtual_servers.clear();
                config.virtual_server_groups.clear();
            }
            Only::Checkers => {
                config.vrrp_instances.clear();
                config.sync_groups.clear();
                config.vrrp_scripts.clear();
                config.global.lvs_sync_daemon = None;
                // keepalived installs them in its VRRP process, which -C does not run.
                config.static_ipaddresses.clear();
                config.static_routes.clear();
                config.static_rules.clear();
            }
        }
    }
}

/// The pid files of a run (keepalived writes one per process; ka, one process, writes its
/// pid in each file whose subsystem runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidFiles {
    /// `-p`: the parent's.
    pub main: PathBuf,
    /// `-r`: the VRRP child's.
    pub vrrp: PathBuf,
    /// `-c`: the checkers child's.
    pub checkers: PathBuf,
    /// `-b`: the BFD child's (written while BFD sessions run).
    pub bfd: PathBuf,
}

impl PidFiles {
    /// keepalived's defaults: `/run/keepalived.pid`, `/run/vrrp.pid`, `/run/checkers.pid`,
    /// `/run/bfd.pid`; in a network namespace (`-s NAME`) the files go under
    /// `/run/keepalived/keepalived_NAME/` (where keepalived's own mount namespace shows them
    /// to the host).
    pub fn defaults(namespace: Option<&str>) -> PidFiles {
        let dir = match namespace {
            Some(ns) => PathBuf::from(format!("{RUN_DIR}/keepalived/keepalived_{ns}")),
            None => PathBuf::from(RUN_DIR),
        };
        PidFiles {
            main: dir.join("keepalived.pid"),
            vrrp: dir.join("vrrp.pid"),
            checkers: dir.join("checkers.pid"),
            bfd: dir.join("bfd.pid"),
        }
    }
}

/// Where the log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPlan {
    /// `-l`: also to the console (stderr), keepalived's format.
    pub console: bool,
    /// `-D` given once (1) or twice (2): more detail.
    pub detail: u8,
    /// syslog, unless `-G`.
    pub syslog: bool,
    /// `-S`: the syslog facility (`LOG_DAEMON` by default).
    pub facility: i32,
}

/// An option accepted for compatibility whose keepalived meaning ka does not have: logged at
/// start, never silently different.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The option as written.
    pub option: String,
    /// What ka does instead.
    pub what: &'static str,
}

/// A daemon run: the `ka run` command line and what ka does around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    /// The equivalent `ka` command line (`ka --log FILTER [--instance NAME] run ...`), for the
    /// `ka` parser.
    pub ka_argv: Vec<OsString>,
    /// The configuration file.
    pub file: PathBuf,
    /// `-i`.
    pub config_id: Option<String>,
    /// Fork and detach (no `-n`).
    pub fork: bool,
    /// Pid files.
    pub pid_files: PidFiles,
    /// Logging.
    pub log: LogPlan,
    /// `-P` / `-C`.
    pub only: Option<Only>,
    /// `-B`: no BFD session runs (`ka run --no-bfd`).
    pub no_bfd: bool,
    /// `-d`: log the configuration (keepalived.data format) once started.
    pub dump_conf: bool,
    /// `-s NAME`: the network namespace to run in (`/run/netns/NAME`).
    pub namespace: Option<String>,
    /// `-u MASK`.
    pub umask: Option<u32>,
    /// `-m` / `-M`: unlimited core size.
    pub core_dump: bool,
    /// Options accepted without their keepalived effect.
    pub notes: Vec<Note>,
    /// Words that are not options (keepalived prints them and goes on).
    pub unexpected: Vec<String>,
}

/// Command lines keepalived refuses (it prints the message and exits 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// Messages as keepalived prints them (`Unknown option -Z`, `Missing parameter for option
    /// -f`...), one per bad option.
    #[error("{}", .0.join("\n"))]
    Bad(Vec<String>),
}

/// How an option takes an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    No,
    Required,
    Optional,
}

/// keepalived 2.2.7's long options as Debian builds it (SNMP, BFD, JSON; no log file, no
/// debug options, no perf), with the short option each stands for (`\0`-free keys for the
/// long-only ones).
const LONG: &[(&str, Arg, char)] = &[
    ("use-file", Arg::Required, 'f'),
    ("vrrp", Arg::No, 'P'),
    ("check", Arg::No, 'C'),
    ("no_bfd", Arg::No, 'B'),
    ("all", Arg::No, '3'),
    ("log-console", Arg::No, 'l'),
    ("log-detail", Arg::No, 'D'),
    ("log-facility", Arg::Required, 'S'),
    ("log-file", Arg::Optional, 'g'),
    ("all-config", Arg::No, 'e'),
    ("no-syslog", Arg::No, 'G'),
    ("umask", Arg::Required, 'u'),
    ("release-vips", Arg::No, 'X'),
    ("dont-release-vrrp", Arg::No, 'V'),
    ("dont-release-ipvs", Arg::No, 'I'),
    ("dont-respawn", Arg::No, 'R'),
    ("dont-fork", Arg::No, 'n'),
    ("dump-conf", Arg::No, 'd'),
    ("pid", Arg::Required, 'p'),
    ("vrrp_pid", Arg::Required, 'r'),
    ("genhash", Arg::No, 'T'),
    ("checkers_pid", Arg::Required, 'c'),
    ("address-monitoring", Arg::No, 'a'),
    ("bfd_pid", Arg::Required, 'b'),
    ("snmp", Arg::No, 'x'),
    ("snmp-agent-socket", Arg::Required, 'A'),
    ("core-dump", Arg::No, 'm'),
    ("core-dump-pattern", Arg::Optional, 'M'),
    ("namespace", Arg::Required, 's'),
    ("config-id", Arg::Required, 'i'),
    ("signum", Arg::Required, '4'),
    ("config-test", Arg::Optional, 't'),
    ("config-fd", Arg::Required, '8'),
    ("version", Arg::No, 'v'),
    ("help", Arg::No, 'h'),
];

/// keepalived's short options: `":vhlndu:DRS:f:p:i:es:mM::g::Gt::PCr:VXac:ITBb:xA:"`.
fn short(c: char) -> Option<Arg> {
    match c {
        'v' | 'h' | 'l' | 'n' | 'd' | 'D' | 'R' | 'e' | 'm' | 'G' | 'P' | 'C' | 'V' | 'X' | 'a' | 'I' | 'T' | 'B' | 'x' => Some(Arg::No),
        'u' | 'S' | 'f' | 'p' | 'i' | 's' | 'r' | 'c' | 'b' | 'A' => Some(Arg::Required),
        'M' | 'g' | 't' => Some(Arg::Optional),
        _ => None,
    }
}

/// One option found on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Opt {
    key: char,
    /// As written, for messages (`-n`, `--dont-fork`).
    written: String,
    value: Option<String>,
}

/// getopt_long over `args` (without argv\[0\]): the options in order, the words that are not
/// options, and the messages of the bad ones.
fn getopt(args: &[String]) -> (Vec<Opt>, Vec<String>, Vec<String>) {
    let mut opts = Vec::new();
    let mut rest = Vec::new();
    let mut bad = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            rest.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            let exact = LONG.iter().find(|(n, _, _)| *n == name);
            let matches: Vec<_> = LONG.iter().filter(|(n, _, _)| n.starts_with(name)).collect();
            let found = match (exact, matches.as_slice()) {
                (Some(e), _) => Some(e),
                (None, [one]) => Some(*one),
                _ => None,
            };
            let Some(&(full, arg, key)) = found else {
                bad.push(format!("Unknown option {a}"));
                continue;
            };
            let value = match arg {
                Arg::No if inline.is_some() => {
                    bad.push(format!("Unknown option {a}"));
                    continue;
                }
                Arg::No => None,
                Arg::Optional => inline,
                Arg::Required => match inline {
                    Some(v) => Some(v),
                    None if i < args.len() => {
                        i += 1;
                        Some(args[i - 1].clone())
                    }
                    None => None,
                },
            };
            if arg == Arg::Required && value.as_deref().is_none_or(str::is_empty) {
                bad.push(format!("Missing parameter for option --{full}"));
                continue;
            }
            opts.push(Opt { key, written: format!("--{full}"), value });
            continue;
        }
        let Some(cluster) = a.strip_prefix('-').filter(|c| !c.is_empty()) else {
            rest.push(a.clone());
            continue;
        };
        for (pos, c) in cluster.char_indices() {
            let tail = &cluster[pos + c.len_utf8()..];
            match short(c) {
                None => bad.push(format!("Unknown option -{c}")),
                Some(Arg::No) => opts.push(Opt { key: c, written: format!("-{c}"), value: None }),
                Some(Arg::Optional) => {
                    opts.push(Opt { key: c, written: format!("-{c}"), value: (!tail.is_empty()).then(|| tail.to_owned()) });
                    break;
                }
                Some(Arg::Required) => {
                    if !tail.is_empty() {
                        opts.push(Opt { key: c, written: format!("-{c}"), value: Some(tail.to_owned()) });
                    } else if i < args.len() {
                        opts.push(Opt { key: c, written: format!("-{c}"), value: Some(args[i].clone()) });
                        i += 1;
                    } else {
                        bad.push(format!("Missing parameter for option -{c}"));
                    }
                    break;
                }
            }
        }
    }
    (opts, rest, bad)
}

/// `-S`: `0`..`7` and `local0`..`local7` are LOG_LOCALn; `daemon`, `user`.
pub fn parse_facility(s: &str) -> Option<i32> {
    const LOCAL: [i32; 8] =
        [libc::LOG_LOCAL0, libc::LOG_LOCAL1, libc::LOG_LOCAL2, libc::LOG_LOCAL3, libc::LOG_LOCAL4, libc::LOG_LOCAL5, libc::LOG_LOCAL6, libc::LOG_LOCAL7];
    let n = s.strip_prefix("local").unwrap_or(s);
    if let Ok(i) = n.parse::<usize>() {
        return LOCAL.get(i).copied();
    }
    match s {
        "daemon" => Some(libc::LOG_DAEMON),
        "user" => Some(libc::LOG_USER),
        _ => None,
    }
}

/// `-u`: a mode in C notation (`0177`, `0x7f`, `127`), permission bits only.
pub fn parse_umask(s: &str) -> Option<u32> {
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()?
    } else {
        s.parse().ok()?
    };
    (v & !0o777 == 0).then_some(v)
}

/// Translates keepalived's command line (`argv[0]` excluded) into what ka runs.
///
/// `-v`, `-h`, `--signum` and `-T` end the parse where keepalived exits, as it does (options
/// after them are not looked at).
///
/// # Errors
/// Unknown options, missing parameters, and `-g` (Debian's keepalived is built without
/// `--enable-log-file`), with keepalived's messages.
pub fn translate(args: &[String]) -> Result<Invocation, ArgsError> {
    let (opts, unexpected, mut bad) = getopt(args);
    let mut file: Option<PathBuf> = None;
    let mut config_id = None;
    let mut fork = true;
    let mut namespace: Option<String> = None;
    let (mut main_pid, mut vrrp_pid, mut checkers_pid, mut bfd_pid) = (None, None, None, None);
    let mut log = LogPlan { console: false, detail: 0, syslog: true, facility: libc::LOG_DAEMON };
    let (mut vrrp, mut checkers) = (true, true);
    let mut no_bfd = false;
    let mut dump_conf = false;
    let (mut dont_release_vrrp, mut dont_release_ipvs) = (false, false);
    let mut test: Option<Option<PathBuf>> = None;
    let mut umask = None;
    let mut core_dump = false;
    let mut notes = Vec::new();
    let mut note = |o: &Opt, what: &'static str| notes.push(Note { option: o.written.clone(), what });
    for o in &opts {
        let v = o.value.clone().unwrap_or_default();
        match o.key {
            'v' => return Ok(Invocation::Version),
            'h' => return Ok(Invocation::Help),
            '4' => return Ok(Invocation::Signum(v)),
            'T' => return Ok(Invocation::Genhash),
            'f' => file = Some(PathBuf::from(v)),
            'i' => config_id = Some(v),
            'n' => fork = false,
            'l' => log.console = true,
            'D' => log.detail = (log.detail + 1).min(2),
            'G' => log.syslog = false,
            'S' => match parse_facility(&v) {
                Some(f) => log.facility = f,
                // keepalived prints this and goes on with the default.
                None => note(o, "invalid log facility: the default (daemon) stays"),
            },
            'g' => bad.push("-g requires configure option --enable-log-file".to_owned()),
            'u' => match parse_umask(&v) {
                Some(m) => umask = Some(m),
                None => note(o, "invalid umask: the default stays"),
            },
            'P' => checkers = false,
            'C' => vrrp = false,
            'B' => no_bfd = true,
            '3' => note(o, "ka starts every subsystem the configuration uses, whether or not --all is given"),
            'V' => dont_release_vrrp = true,
            'I' => dont_release_ipvs = true,
            'X' => note(o, "ka has no signal-triggered VIP release; VIPs follow the VRRP state only"),
            'R' => note(o, "ka runs as one process; nothing is respawned either way"),
            'd' => dump_conf = true,
            'p' => main_pid = Some(PathBuf::from(v)),
            'r' => vrrp_pid = Some(PathBuf::from(v)),
            'c' => checkers_pid = Some(PathBuf::from(v)),
            'b' => bfd_pid = Some(PathBuf::from(v)),
            'a' => note(o, "ka does not log every address change (ka status shows the VIPs)"),
            'x' => note(o, "ka has no SNMP agent (use ka status --json or the Prometheus metrics)"),
            'A' => note(o, "ka has no SNMP agent; the socket is not used"),
            'm' => core_dump = true,
            'M' => {
                core_dump = true;
                note(o, "core dumps enabled; /proc/sys/kernel/core_pattern is left as it is");
            }
            's' => namespace = Some(v),
            'e' => note(o, "ka reports a missing included file as keepalived's includet does, whether or not -e is given"),
            't' => test = Some(o.value.as_ref().filter(|s| !s.is_empty()).map(PathBuf::from)),
            '8' => note(o, "internal keepalived option (reload config test); ignored"),
            _ => {}
        }
    }
    if !bad.is_empty() {
        return Err(ArgsError::Bad(bad));
    }
    let file = file.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
    if let Some(log_file) = test {
        return Ok(Invocation::ConfigTest(ConfigTest { file, config_id, log_file, notes }));
    }
    let only = match (vrrp, checkers) {
        (true, false) => Some(Only::Vrrp),
        (false, true) => Some(Only::Checkers),
        _ => None,
    };
    if !vrrp && !checkers {
        notes.push(Note { option: "-P -C".to_owned(), what: "keepalived would start neither subsystem; ka runs the configuration whole" });
    }
    let defaults = PidFiles::defaults(namespace.as_deref());
    let pid_files = PidFiles {
        main: main_pid.unwrap_or(defaults.main),
        vrrp: vrrp_pid.unwrap_or(defaults.vrrp),
        checkers: checkers_pid.unwrap_or(defaults.checkers),
        bfd: bfd_pid.unwrap_or(defaults.bfd),
    };
    let filter = if log.detail >= 2 { "debug" } else { "info" };
    let mut ka_argv: Vec<OsString> = vec!["ka".into(), "--log".into(), filter.into()];
    if let Some(ns) = &namespace {
        ka_argv.extend(["--instance".into(), ns.into()]);
    }
    ka_argv.extend(["run".into(), "--use-file".into(), file.clone().into()]);
    if let Some(id) = &config_id {
        ka_argv.extend(["--config-id".into(), id.into()]);
    }
    if dont_release_vrrp {
        ka_argv.push("--dont-release-vrrp".into());
    }
    // `-u` wins over the configuration's `umask` (keepalived: "umask command line option
    // specified, ignoring config option").
    if umask.is_some() {
        ka_argv.push("--umask-set".into());
    }
    if dont_release_ipvs {
        ka_argv.push("--dont-release-ipvs".into());
    }
    if no_bfd {
        ka_argv.push("--no-bfd".into());
    }
    match only {
        Some(Only::Vrrp) => ka_argv.extend(["--only".into(), "vrrp".into()]),
        Some(Only::Checkers) => ka_argv.extend(["--only".into(), "checkers".into()]),
        None => {}
    }
    Ok(Invocation::Run(Box::new(RunPlan {
        ka_argv,
        file,
        config_id,
        fork,
        pid_files,
        log,
        only,
        no_bfd,
        dump_conf,
        namespace,
        umask,
        core_dump,
        notes,
        unexpected,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> RunPlan {
        match translate(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()) {
            Ok(Invocation::Run(p)) => *p,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn ka(p: &RunPlan) -> String {
        p.ka_argv.iter().map(|s| s.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    }

    /// keepalived's command lines and the `ka run` each becomes.
    #[test]
    fn command_lines_become_ka_run() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "ka --log info run --use-file /etc/keepalived/keepalived.conf"),
            (&["--dont-fork"], "ka --log info run --use-file /etc/keepalived/keepalived.conf"),
            (&["-n", "-l", "-D", "-f", "/tmp/k.conf"], "ka --log info run --use-file /tmp/k.conf"),
            (&["-nlD", "-f/tmp/k.conf"], "ka --log info run --use-file /tmp/k.conf"),
            (&["-DD", "--use-file=/tmp/k.conf"], "ka --log debug run --use-file /tmp/k.conf"),
            (&["-V", "-I"], "ka --log info run --use-file /etc/keepalived/keepalived.conf --dont-release-vrrp --dont-release-ipvs"),
            (&["--dont-release-vrrp", "--dont-release-ipvs"], "ka --log info run --use-file /etc/keepalived/keepalived.conf --dont-release-vrrp --dont-release-ipvs"),
            (&["-P", "-i", "lb1"], "ka --log info run --use-file /etc/keepalived/keepalived.conf --config-id lb1 --only vrrp"),
            (&["--check", "--config-id=lb2"], "ka --log info run --use-file /etc/keepalived/keepalived.conf --config-id lb2 --only checkers"),
            (&["-s", "blue"], "ka --log info --instance blue run --use-file /etc/keepalived/keepalived.conf"),
            // `-u` wins over the configuration's `umask`.
            (&["-u", "027"], "ka --log info run --use-file /etc/keepalived/keepalived.conf --umask-set"),
            // Unambiguous prefixes of long options, as getopt_long takes them.
            (&["--dont-f", "--use=/x.conf", "--vrrp"], "ka --log info run --use-file /x.conf --only vrrp"),
        ];
        for (args, want) in cases {
            assert_eq!(ka(&run(args)), *want, "{args:?}");
        }
    }

    /// Fork, pid files, logging and the accepted-but-noted options.
    #[test]
    fn plan_around_the_daemon() {
        let p = run(&[]);
        assert!(p.fork);
        assert_eq!(p.pid_files, PidFiles::defaults(None));
        assert_eq!(p.pid_files.main, PathBuf::from("/run/keepalived.pid"));
        assert_eq!(p.pid_files.vrrp, PathBuf::from("/run/vrrp.pid"));
        assert_eq!(p.pid_files.checkers, PathBuf::from("/run/checkers.pid"));
        assert_eq!(p.log, LogPlan { console: false, detail: 0, syslog: true, facility: libc::LOG_DAEMON });

        let p = run(&["-n", "-l", "-G", "-S", "local3", "-p", "/t/k.pid", "--vrrp_pid=/t/v.pid", "-c/t/c.pid", "-b", "/t/b.pid", "-u", "022", "-m", "-d"]);
        assert!(!p.fork && p.dump_conf && p.core_dump);
        assert_eq!(p.umask, Some(0o022));
        assert_eq!(p.log, LogPlan { console: true, detail: 0, syslog: false, facility: libc::LOG_LOCAL3 });
        assert_eq!(
            p.pid_files,
            PidFiles { main: "/t/k.pid".into(), vrrp: "/t/v.pid".into(), checkers: "/t/c.pid".into(), bfd: "/t/b.pid".into() }
        );

        let p = run(&["-s", "blue"]);
        assert_eq!(p.pid_files.main, PathBuf::from("/run/keepalived/keepalived_blue/keepalived.pid"));
        assert_eq!(p.namespace.as_deref(), Some("blue"));

        // Options without a ka meaning are kept, each with what ka does instead.
        let p = run(&["-x", "-A", "/s", "-R", "-X", "-a", "-B", "--all", "-M", "-e", "-S", "bogus", "stray"]);
        let noted: Vec<&str> = p.notes.iter().map(|n| n.option.as_str()).collect();
        assert_eq!(noted, ["-x", "-A", "-R", "-X", "-a", "--all", "-M", "-e", "-S"]);
        // -B: the BFD sessions do not run (what tracks them sees them down, as keepalived's
        // VRRP and checker processes do without a BFD process).
        assert!(p.no_bfd && ka(&p).contains(" --no-bfd"), "{}", ka(&p));
        assert!(p.notes.iter().all(|n| !n.what.is_empty()));
        assert!(p.core_dump);
        assert_eq!(p.unexpected, ["stray"]);
    }

    #[test]
    fn exits_and_modes() {
        let t = |a: &[&str]| translate(&a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(t(&["-v"]), Ok(Invocation::Version));
        // keepalived acts on -v, -h and --signum as getopt reaches them, before it looks at
        // the bad options it collected.
        assert_eq!(t(&["--version", "-Z"]), Ok(Invocation::Version));
        assert_eq!(t(&["-Z", "--signum=JSON"]), Ok(Invocation::Signum("JSON".into())));
        assert_eq!(t(&["-n", "--help"]), Ok(Invocation::Help));
        assert_eq!(t(&["--signum=JSON"]), Ok(Invocation::Signum("JSON".into())));
        assert_eq!(t(&["--signum", "DATA"]), Ok(Invocation::Signum("DATA".into())));
        assert_eq!(t(&["-T"]), Ok(Invocation::Genhash));
        let test = |log: Option<&str>, file: &str| {
            Ok(Invocation::ConfigTest(ConfigTest { file: file.into(), config_id: None, log_file: log.map(PathBuf::from), notes: vec![] }))
        };
        assert_eq!(t(&["-t"]), test(None, DEFAULT_CONFIG_FILE));
        assert_eq!(t(&["-t", "-f", "/a.conf"]), test(None, "/a.conf"));
        assert_eq!(t(&["-t/tmp/log", "-f", "/a.conf"]), test(Some("/tmp/log"), "/a.conf"));
        assert_eq!(t(&["--config-test=/tmp/log"]), test(Some("/tmp/log"), DEFAULT_CONFIG_FILE));
        // An optional argument is never the next word.
        assert!(matches!(t(&["-t", "/tmp/log"]), Ok(Invocation::ConfigTest(ConfigTest { log_file: None, .. }))));
    }

    #[test]
    fn bad_command_lines_get_keepalived_messages() {
        let t = |a: &[&str]| translate(&a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        let bad = |m: &[&str]| Err(ArgsError::Bad(m.iter().map(|s| (*s).to_owned()).collect()));
        assert_eq!(t(&["-Z"]), bad(&["Unknown option -Z"]));
        assert_eq!(t(&["--nope"]), bad(&["Unknown option --nope"]));
        assert_eq!(t(&["--dont"]), bad(&["Unknown option --dont"]), "ambiguous prefix");
        assert_eq!(t(&["-f"]), bad(&["Missing parameter for option -f"]));
        assert_eq!(t(&["--use-file="]), bad(&["Missing parameter for option --use-file"]));
        assert_eq!(t(&["--use-file"]), bad(&["Missing parameter for option --use-file"]));
        assert_eq!(t(&["-g"]), bad(&["-g requires configure option --enable-log-file"]));
        assert_eq!(t(&["--dont-fork=yes"]), bad(&["Unknown option --dont-fork=yes"]));
        assert_eq!(t(&["-nZ", "-Q"]), bad(&["Unknown option -Z", "Unknown option -Q"]));
    }

    /// `-P` keeps VRRP and drops the virtual servers; `-C` the reverse, with what only
    /// keepalived's VRRP process runs (scripts, sync groups, connection sync).
    #[test]
    fn only_cuts_the_configuration() {
        let text = "global_defs {\n lvs_sync_daemon eth0 VI_1\n}\nvrrp_script s {\n script /bin/true\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n  198.18.0.1\n }\n}\nvirtual_server 198.18.0.1 80 {\n protocol TCP\n real_server 198.18.1.1 80 {\n }\n}\n";
        let full = crate::config::parse_str(text, std::path::Path::new("/t.conf"), &Default::default()).config;
        assert!(!full.vrrp_instances.is_empty() && !full.virtual_servers.is_empty() && full.global.lvs_sync_daemon.is_some());
        let mut vrrp = full.clone();
        Only::Vrrp.apply(&mut vrrp);
        assert!(vrrp.virtual_servers.is_empty() && vrrp.vrrp_instances.len() == 1 && vrrp.vrrp_scripts.len() == 1);
        let mut checkers = full;
        Only::Checkers.apply(&mut checkers);
        assert!(checkers.vrrp_instances.is_empty() && checkers.vrrp_scripts.is_empty() && checkers.global.lvs_sync_daemon.is_none());
        assert_eq!(checkers.virtual_servers.len(), 1);
    }

    #[test]
    fn facilities_and_umasks() {
        assert_eq!(parse_facility("0"), Some(libc::LOG_LOCAL0));
        assert_eq!(parse_facility("local7"), Some(libc::LOG_LOCAL7));
        assert_eq!(parse_facility("daemon"), Some(libc::LOG_DAEMON));
        assert_eq!(parse_facility("user"), Some(libc::LOG_USER));
        assert_eq!(parse_facility("8"), None);
        assert_eq!(parse_facility("kern"), None);
        assert_eq!(parse_umask("0177"), Some(0o177));
        assert_eq!(parse_umask("0x3f"), Some(0o77));
        assert_eq!(parse_umask("18"), Some(18));
        assert_eq!(parse_umask("01777"), None);
        assert_eq!(parse_umask("abc"), None);
    }
}
