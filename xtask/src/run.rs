//! `cargo xtask run`: with arguments after `--`, builds `ka` and runs it as root with them;
//! without, starts the bundled lab ([`crate::lab`]).

use std::process::Command;

use crate::exec::{cargo, exec};

/// Options of `cargo xtask run`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Lab only: stop by itself after this long (e.g. `30s`, `2m`); default: until Ctrl-C.
    #[arg(long, value_parser = crate::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Lab only: kill the master director's ka after this long (default: a third of
    /// `--duration`, or 10 s); it comes back at 1.5×, a real server fails at 2× and recovers
    /// at 2.5×.
    #[arg(long, value_parser = crate::parse_duration)]
    pub failover_after: Option<std::time::Duration>,
    /// Lab only: which scenario (`failover`: the VRRP failover demo; `bgp`: active-active
    /// directors announcing the VIP over BGP to an ECMP router).
    #[arg(long, value_enum, default_value_t = Scenario::Failover)]
    pub scenario: Scenario,
    /// Build ka in release mode.
    #[arg(long)]
    pub release: bool,
    /// Skip the setup step.
    #[arg(long)]
    pub no_setup: bool,
    /// Arguments for `ka`; without any, the lab runs.
    #[arg(last = true)]
    pub ka_args: Vec<String>,
}

/// The lab scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Two directors, VRRP failover ([`crate::lab`]).
    Failover,
    /// Three active-active directors over BGP ([`crate::lab_bgp`]).
    Bgp,
}

/// Builds `ka` and returns its path.
///
/// # Errors
/// The build fails.
pub fn build_ka(release: bool) -> anyhow::Result<std::path::PathBuf> {
    let mut c = cargo();
    c.args(["build", "--package", "ka-userspace", "--bins"]);
    if release {
        c.arg("--release");
    }
    crate::progress::run(format!("build ka ({})", if release { "release" } else { "debug" }), || exec(&mut c))?;
    Ok(crate::workspace_root().join(if release { "target/release/ka" } else { "target/debug/ka" }))
}

/// Runs `ka` with the arguments, or the lab.
///
/// # Errors
/// Setup, build, or the run fails.
pub fn run(opts: Options) -> anyhow::Result<()> {
    if !opts.no_setup {
        crate::setup::run(crate::setup::Options {})?;
    }
    let ka = build_ka(opts.release)?;
    if opts.ka_args.is_empty() && opts.scenario == Scenario::Bgp {
        return crate::progress::run("lab: three active-active directors over BGP", || crate::lab_bgp::run(&ka));
    }
    if opts.ka_args.is_empty() {
        let until = opts.duration.map_or_else(|| "until Ctrl-C".to_owned(), |d| format!("for {}", humantime::format_duration(d)));
        return crate::progress::run(format!("lab: two directors, VRRP failover ({until})"), || {
            crate::lab::run(&ka, opts.duration, opts.failover_after)
        });
    }
    let mut cmd = if crate::setup::is_root() {
        Command::new(&ka)
    } else {
        let mut c = Command::new("sudo");
        c.arg("-E").arg(&ka);
        c
    };
    exec(cmd.args(&opts.ka_args))
}
