//! The `ka` command line.

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::instance::InstanceName;

/// ka: eBPF/XDP-accelerated high-availability L4 load balancer, configured with keepalived.conf.
#[derive(Debug, Parser)]
#[command(name = "ka", version, about, propagate_version = true)]
pub struct Cli {
    /// Instance name: the control socket is /run/ka/NAME.sock and the bpffs pins live under
    /// /sys/fs/bpf/ka/NAME/. Run one instance per network namespace.
    #[arg(long, global = true, default_value = "default", env = "KA_INSTANCE")]
    pub instance: InstanceName,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `ka=debug`.
    #[arg(long, global = true, default_value = "info", env = "KA_LOG")]
    pub log: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground.
    Run(crate::daemon::RunArgs),
    /// Check a keepalived configuration and report every problem.
    Check(crate::config::CheckArgs),
    /// Show the state of a running daemon.
    Status(StatusArgs),
    /// Reload the running daemon's configuration file (as SIGHUP does) and print what changed.
    /// Matched VRRP instances keep their state; unchanged virtual and real servers keep their
    /// checker state and connections. A configuration with errors changes nothing: its
    /// diagnostics are printed and the exit status is 1. `--instance` picks the daemon.
    Reload(ReloadArgs),
    /// Change a real server at runtime, without a reload: its weight, drain it (weight 0,
    /// established flows kept), disable it (out of the table) or enable it again (the
    /// configuration and its checkers decide). The change survives `ka reload` while the real
    /// server stays in the configuration; `ka status` marks it. A failing checker still takes
    /// the server out.
    #[command(subcommand)]
    Rs(RsCommand),
    /// Make the running daemon's next stop hitless: it leaves the VIPs and the XDP datapath in
    /// place (as `ka run --dont-release-vrrp --dont-release-ipvs`) for the ka started next to
    /// adopt. Package upgrades run it before restarting the service.
    PrepareRestart {
        /// How long to wait for the daemon's answer.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (ka(8) and one per subcommand) into a directory (packaging).
    #[command(hide = true)]
    Manpages {
        /// Output directory.
        dir: std::path::PathBuf,
    },
    /// Real-server side of TUN mode: decapsulate IPIP/IP6IP6 packets to local VIPs in XDP
    /// (for kernels without the ipip module). The attachment is pinned and outlives `ka`.
    #[command(subcommand)]
    Decap(DecapCommand),
    /// Run as keepalived 2.2.7 from its command line (`ka keepalived -n -f FILE`; a symlink
    /// named `keepalived` does the same): its options, fork, pid files, syslog identifiers,
    /// signals and dump files. `ka keepalived --help` lists the options.
    #[command(disable_help_flag = true)]
    Keepalived {
        /// keepalived's options.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// `ka decap` subcommands.
#[derive(Debug, Subcommand)]
pub enum DecapCommand {
    /// Attach the decapsulation program to an interface.
    Attach {
        /// Interface receiving the tunnelled packets.
        #[arg(long)]
        iface: String,
        /// A VIP served locally (repeatable): inner packets to other addresses pass untouched.
        #[arg(long = "vip", required = true)]
        vips: Vec<std::net::IpAddr>,
    },
    /// Detach it and remove its pins.
    Detach {
        /// Interface.
        #[arg(long)]
        iface: String,
    },
}

/// Which real server a `ka rs` command changes.
#[derive(Debug, Clone, clap::Args)]
pub struct RsTarget {
    /// The virtual server: `ADDR:PORT` (`[ADDR]:PORT` for IPv6), `group:NAME` or `fwmark:N`.
    #[arg(value_name = "VIRTUAL_SERVER")]
    pub service: crate::rs_control::ServiceSel,
    /// The real server: `ADDR:PORT`, or `ADDR` when only one of its real servers has it.
    #[arg(value_name = "REAL_SERVER")]
    pub server: crate::rs_control::ServerSel,
    /// The virtual server's protocol, when a TCP and a UDP one share the address and port.
    #[arg(long, value_parser = ["tcp", "udp", "sctp", "TCP", "UDP", "SCTP"])]
    pub protocol: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for the daemon's answer.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `ka rs` subcommands.
#[derive(Debug, Subcommand)]
pub enum RsCommand {
    /// Set a real server's weight (while its checkers keep it up with a non-zero weight).
    Weight {
        /// Which real server.
        #[command(flatten)]
        target: RsTarget,
        /// The new weight.
        #[arg(value_name = "WEIGHT")]
        weight: u32,
    },
    /// Drain a real server: weight 0, no new flows, established ones continue.
    Drain(RsTarget),
    /// Disable a real server: out of the table, its flows go to the others.
    Disable(RsTarget),
    /// Enable a real server again: remove the runtime change.
    Enable(RsTarget),
}

impl RsCommand {
    /// The target and the control request's action.
    pub fn parts(&self) -> (&RsTarget, crate::rs_control::RsAction) {
        use crate::rs_control::RsAction;
        match self {
            RsCommand::Weight { target, weight } => (target, RsAction::Weight(*weight)),
            RsCommand::Drain(t) => (t, RsAction::Drain),
            RsCommand::Disable(t) => (t, RsAction::Disable),
            RsCommand::Enable(t) => (t, RsAction::Enable),
        }
    }
}

/// Arguments of `ka status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print JSON instead of text (see docs/status.md; `format_version` says which format).
    #[arg(long)]
    pub json: bool,
    /// Refresh every INTERVAL, like `watch` (default 2s), until interrupted or `--count` runs.
    #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "2s", value_parser = parse_watch_interval)]
    pub watch: Option<Duration>,
    /// With `--watch`: stop after this many refreshes.
    #[arg(long, requires = "watch")]
    pub count: Option<u64>,
    /// How long to wait for the daemon's answer.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Arguments of `ka reload`.
#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for the daemon to apply the reload.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Writes the man pages: `ka.8` and `ka-SUB.8` for every visible subcommand, nested ones
/// included (`ka-decap-attach.8`). Returns the files written.
///
/// # Errors
/// A file cannot be written.
pub fn write_manpages(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    let root = Cli::command();
    write_page(dir, &root, "ka", &mut out)?;
    Ok(out)
}

fn write_page(dir: &std::path::Path, cmd: &clap::Command, name: &str, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    let page = cmd.clone().name(name.to_owned()).bin_name(name.replace('-', " "));
    let path = dir.join(format!("{name}.8"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).section("8").render(&mut buf)?;
    std::fs::write(&path, buf)?;
    out.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        write_page(dir, sub, &format!("{name}-{}", sub.get_name()), out)?;
    }
    Ok(())
}

/// Prints the completion script of `shell` to stdout.
pub fn print_completions(shell: clap_complete::Shell) {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "ka", &mut std::io::stdout());
}

/// The `--watch` interval: a duration of at least 100 ms.
///
/// # Errors
/// Not a duration, or shorter than 100 ms.
pub fn parse_watch_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) {
        return Err(format!("--watch {s}: at least 100ms"));
    }
    Ok(d)
}

/// Parses a duration for the command line: `5s`, `250ms`, `1m` (humantime).
///
/// # Errors
/// Not a duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn instance_defaults_and_parses() {
        let cli = Cli::try_parse_from(["ka", "status"]).expect("parse");
        assert_eq!(cli.instance.as_str(), "default");
        let cli = Cli::try_parse_from(["ka", "status", "--instance", "lb2", "--json"]).expect("parse");
        assert_eq!(cli.instance.as_str(), "lb2");
        assert!(Cli::try_parse_from(["ka", "--instance", "../x", "status"]).is_err());
    }

    #[test]
    fn decap_needs_an_interface_and_a_vip() {
        assert!(Cli::try_parse_from(["ka", "decap", "attach", "--iface", "eth0"]).is_err());
        let cli = Cli::try_parse_from(["ka", "decap", "attach", "--iface", "eth0", "--vip", "198.18.0.10"]).expect("parse");
        assert!(matches!(cli.command, Command::Decap(DecapCommand::Attach { ref iface, ref vips }) if iface == "eth0" && vips.len() == 1));
    }

    #[test]
    fn reload_takes_the_daemon_instance() {
        let cli = Cli::try_parse_from(["ka", "reload", "--instance", "lb2"]).expect("parse");
        assert_eq!(cli.instance.as_str(), "lb2");
        assert!(matches!(cli.command, Command::Reload(ReloadArgs { json: false, .. })));
    }

    #[test]
    fn rs_commands_parse() {
        use crate::rs_control::RsAction;
        let cli = Cli::try_parse_from(["ka", "rs", "weight", "198.18.0.1:80", "198.18.1.1:80", "5", "--protocol", "tcp"]).expect("parse");
        let Command::Rs(rs) = cli.command else { panic!("not rs") };
        let (t, a) = rs.parts();
        assert_eq!((a, t.protocol.as_deref(), t.server.port), (RsAction::Weight(5), Some("tcp"), Some(80)));
        for (word, want) in [("drain", RsAction::Drain), ("disable", RsAction::Disable), ("enable", RsAction::Enable)] {
            let cli = Cli::try_parse_from(["ka", "rs", word, "group:web", "[fd00:198:18::1]:80"]).expect("parse");
            let Command::Rs(rs) = cli.command else { panic!("not rs") };
            assert_eq!(rs.parts().1, want);
        }
        assert!(Cli::try_parse_from(["ka", "rs", "drain", "198.18.0.1", "198.18.1.1"]).is_err(), "a virtual server needs its port");
        assert!(Cli::try_parse_from(["ka", "rs", "weight", "198.18.0.1:80", "198.18.1.1", "-1"]).is_err());
    }

    #[test]
    fn status_watch_is_bounded_and_optional() {
        let cli = Cli::try_parse_from(["ka", "status", "--watch"]).expect("parse");
        assert!(matches!(cli.command, Command::Status(StatusArgs { watch: Some(d), count: None, .. }) if d == Duration::from_secs(2)));
        let cli = Cli::try_parse_from(["ka", "status", "--watch", "500ms", "--count", "3"]).expect("parse");
        assert!(matches!(cli.command, Command::Status(StatusArgs { watch: Some(d), count: Some(3), .. }) if d == Duration::from_millis(500)));
        assert!(Cli::try_parse_from(["ka", "status", "--watch", "1ms"]).is_err());
        assert!(Cli::try_parse_from(["ka", "status", "--count", "3"]).is_err(), "--count needs --watch");
    }

    /// One page per visible subcommand, nested ones included, none for hidden ones.
    #[test]
    fn man_pages_cover_every_subcommand() {
        let dir = std::env::temp_dir().join(format!("ka-man-{}", std::process::id()));
        let files = write_manpages(&dir).expect("write");
        let names: Vec<String> = files.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
        for want in ["ka.8", "ka-run.8", "ka-status.8", "ka-reload.8", "ka-rs.8", "ka-rs-drain.8", "ka-decap-attach.8", "ka-check.8", "ka-completions.8"] {
            assert!(names.contains(&want.to_owned()), "{want} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("manpages") || n.contains("help")), "{names:?}");
        let run = std::fs::read_to_string(dir.join("ka-run.8")).expect("read");
        assert!(run.contains(".TH ka-run 8") && run.contains("dont\\-release\\-vrrp"), "{}", &run[..run.len().min(400)]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("2 fortnights").is_err());
    }
}
