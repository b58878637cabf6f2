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
    /// Real-server side of TUN mode: decapsulate IPIP/IP6IP6 packets to local VIPs in XDP
    /// (for kernels without the ipip module). The attachment is pinned and outlives `ka`.
    #[command(subcommand)]
    Decap(DecapCommand),
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

/// Arguments of `ka status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
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
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("2 fortnights").is_err());
    }
}
