//! `cargo xtask bench`: every benchmark, in one run. Results are printed as tables; each names
//! the command that reproduces it.

use crate::exec::{cargo, exec};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Skip the setup step.
    #[arg(long)]
    pub no_setup: bool,
    /// Run only these benchmarks (repeatable): `xdp`, `e2e`, `config`, `vrrp`, `health`, `restart`, `reload`, `sync`, `flood`, `synflood`, `faults`.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// keepalived.conf benchmark: keep the generated configurations in this directory.
    #[arg(long)]
    pub config_dir: Option<std::path::PathBuf>,
    /// XDP benchmark options (the reference load balancer).
    #[command(flatten)]
    pub xdp: crate::bench_ref::Options,
    /// VRRP benchmark options.
    #[command(flatten)]
    pub vrrp: crate::bench_vrrp::Options,
    /// Health-checker benchmark options.
    #[command(flatten)]
    pub health: crate::bench_health::Options,
    /// Live-reload benchmark options.
    #[command(flatten)]
    pub reload: crate::bench_reload::Options,
    /// Advert-flood benchmark options.
    #[command(flatten)]
    pub flood: crate::bench_flood::Options,
    /// SYN/UDP-flood benchmark options.
    #[command(flatten)]
    pub synflood: crate::bench_synflood::Options,
    /// Faults benchmark options.
    #[command(flatten)]
    pub faults: crate::bench_faults::Options,
    /// `synflood` and `faults`: run this `ka` binary instead of building the release one (e.g.
    /// `target/debug/ka` on a machine short of disk; debug figures are upper bounds).
    #[arg(long)]
    pub ka: Option<std::path::PathBuf>,
    /// End-to-end benchmark: measured seconds per scenario and round.
    #[arg(long, default_value_t = 3)]
    pub e2e_secs: u32,
    /// End-to-end benchmark: rounds (each scenario reports its best).
    #[arg(long, default_value_t = 3)]
    pub e2e_rounds: u32,
}

/// Runs the benchmarks.
///
/// # Errors
/// Setup or a benchmark fails.
pub fn run(opts: Options) -> anyhow::Result<()> {
    if !opts.no_setup {
        crate::setup::run(crate::setup::Options {})?;
    }
    anyhow::ensure!(crate::setup::is_root(), "the benchmarks need root (BPF_PROG_TEST_RUN, namespaces)");
    const NAMES: [&str; 11] = ["xdp", "e2e", "config", "vrrp", "health", "restart", "reload", "sync", "flood", "synflood", "faults"];
    if let Some(bad) = opts.only.iter().find(|o| !NAMES.contains(&o.as_str())) {
        anyhow::bail!("--only {bad}: unknown benchmark (known: {})", NAMES.join(", "));
    }
    let want = |name: &str| opts.only.is_empty() || opts.only.iter().any(|o| o == name);
    if want("xdp") {
        // Side by side with the reference load balancer (bench_ref.rs); the rows are returned
        // for a report to record.
        let _rows = crate::bench_ref::xdp(&opts.xdp)?;
    }
    if want("e2e") {
        eprintln!("bench: end to end over veth, ka vs nftables DNAT (live-frames generator)");
        let ka = crate::run::build_ka(true)?;
        exec(
            cargo()
                .args(["bench", "--package", "ka-tests", "--bench", "e2e"])
                .env("KA_BIN", &ka)
                .env("KA_E2E_SECS", opts.e2e_secs.to_string())
                .env("KA_E2E_ROUNDS", opts.e2e_rounds.to_string()),
        )?;
    }
    if want("config") {
        eprintln!("bench: keepalived.conf checking (65,024 instances)");
        let ka = crate::run::build_ka(true)?;
        crate::bench_config::run(crate::bench_config::Options { ka: Some(ka), dir: opts.config_dir.clone() })?;
    }
    if want("vrrp") {
        eprintln!("bench: VRRP takeover and daemon CPU, ka vs keepalived 2.2");
        let ka = crate::run::build_ka(true)?;
        crate::bench_vrrp::run(opts.vrrp.clone(), &ka)?;
    }
    if want("health") {
        eprintln!("bench: health checkers, checks/s and daemon CPU");
        let ka = crate::run::build_ka(true)?;
        crate::bench_health::run(opts.health.clone(), &ka)?;
    }
    if want("sync") {
        eprintln!("bench: connection sync (lvs_sync_daemon), entries/s per stage and the ring push in XDP");
        exec(cargo().args(["bench", "--package", "ka-tests", "--bench", "sync"]))?;
    }
    if want("restart") {
        eprintln!("bench: kill -9 to a restarted ka that adopted the datapath and resumed as MASTER");
        let ka = crate::run::build_ka(true)?;
        crate::bench_restart::run(&ka, 10)?;
    }
    if want("reload") {
        eprintln!("bench: live reload, time and advert gaps (65,024 instances; 2,000 x 20 real servers)");
        let ka = crate::run::build_ka(true)?;
        crate::bench_reload::run(opts.reload.clone(), &ka)?;
    }
    if want("flood") {
        eprintln!("bench: VRRP advert flood from a third host: daemon CPU, counters, answers, takeover");
        let ka = crate::run::build_ka(true)?;
        crate::bench_flood::run(&opts.flood, &ka)?;
    }
    if want("synflood") {
        eprintln!("bench: SYN and UDP floods to a VIP from a million sources: daemon CPU, counters, long-lived flows");
        let ka = match &opts.ka {
            Some(k) => k.clone(),
            None => crate::run::build_ka(true)?,
        };
        crate::bench_synflood::run(&opts.synflood, &ka)?;
    }
    if want("faults") {
        eprintln!("bench: faults: a real server's new MAC, a re-created XDP interface, 10,000 virtual servers");
        let ka = match &opts.ka {
            Some(k) => k.clone(),
            None => crate::run::build_ka(true)?,
        };
        crate::bench_faults::run(&opts.faults, &ka)?;
    }
    Ok(())
}
