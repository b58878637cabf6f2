//! `cargo xtask bench`: every benchmark, in one run. Results are printed as tables; each names
//! the command that reproduces it. With `--report DIR` the results are also collected into a
//! [`crate::report::Report`] and rendered into DIR (index.html, SVG plots, JSON, CSV), rewritten
//! after each benchmark so that a run that fails half-way keeps what it measured.

use std::path::{Path, PathBuf};

use crate::{
    exec::{cargo, exec},
    progress,
    report::Report,
};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Skip the setup step.
    #[arg(long)]
    pub no_setup: bool,
    /// Run only these benchmarks (repeatable): `xdp`, `e2e`, `config`, `vrrp`, `health`, `restart`, `reload`, `sync`, `flood`, `synflood`, `faults`, `bgp`.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// keepalived.conf benchmark: keep the generated configurations in this directory.
    #[arg(long)]
    pub config_dir: Option<std::path::PathBuf>,
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
    /// Scale-out (BGP/ECMP, 1-3 directors) benchmark options.
    #[command(flatten)]
    pub bgp: crate::bench_bgp::Options,
    /// End-to-end benchmark: measured seconds per scenario and round.
    #[arg(long, default_value_t = 3)]
    pub e2e_secs: u32,
    /// End-to-end benchmark: rounds (each scenario reports its best).
    #[arg(long, default_value_t = 3)]
    pub e2e_rounds: u32,
    /// Write a report of this run to DIR: index.html, SVG plots, report.json and CSV files.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// With `--report`: run nothing, render DIR from this report.json (e.g. after editing it,
    /// or adding a series measured elsewhere).
    #[arg(long, value_name = "FILE", requires = "report")]
    pub from_json: Option<PathBuf>,
    /// XDP benchmark: the reference load balancer's directory, holding `run.sh` (default:
    /// xtask/ref-lb, a copy of the shared bench/ref-lb).
    #[arg(long, value_name = "DIR")]
    pub ref_lb: Option<PathBuf>,
    /// XDP benchmark: do not run the reference load balancer.
    #[arg(long)]
    pub no_ref_lb: bool,
    /// With `--report`: keep the sections of DIR/report.json (same machine) that this run does
    /// not measure, e.g. to run the benchmarks one invocation at a time on a busy machine.
    #[arg(long, requires = "report")]
    pub merge: bool,
}

/// Runs the benchmarks.
///
/// # Errors
/// Setup or a benchmark fails.
pub fn run(opts: Options) -> anyhow::Result<()> {
    if let (Some(dir), Some(json)) = (&opts.report, &opts.from_json) {
        let report = Report::load(json)?;
        return write_report(&report, dir);
    }
    if !opts.no_setup {
        crate::setup::run(crate::setup::Options {})?;
    }
    anyhow::ensure!(crate::setup::is_root(), "the benchmarks need root (BPF_PROG_TEST_RUN, namespaces)");
    const NAMES: [&str; 12] = ["xdp", "e2e", "config", "vrrp", "health", "restart", "reload", "sync", "flood", "synflood", "faults", "bgp"];
    if let Some(bad) = opts.only.iter().find(|o| !NAMES.contains(&o.as_str())) {
        anyhow::bail!("--only {bad}: unknown benchmark (known: {})", NAMES.join(", "));
    }
    let want = |name: &str| opts.only.is_empty() || opts.only.iter().any(|o| o == name);
    let mut report = Report::start(command_line());
    if let (Some(dir), true) = (&opts.report, opts.merge) {
        merge_earlier(&mut report, dir)?;
    }
    // With a report, a benchmark that fails is noted in it and the others still run (the run
    // fails at the end); without, the first failure ends the run as before.
    let mut failed: Vec<String> = Vec::new();
    let mut outcome = |report: &mut Report, name: &str, r: anyhow::Result<()>| -> anyhow::Result<()> {
        match r {
            Ok(()) => {}
            Err(e) if opts.report.is_some() => {
                report.notes.push(format!("{name}: failed in this run: {}", failure_note(&e)));
                failed.push(name.to_owned());
            }
            Err(e) => return Err(e),
        }
        opts.report.as_deref().map_or(Ok(()), |dir| write_report(report, dir))
    };
    if want("xdp") {
        let r = progress::run("bench xdp: XDP datapath through BPF_PROG_TEST_RUN, and the reference load balancer", || xdp(&opts));
        let r = r.map(|x| report.xdp = Some(x));
        outcome(&mut report, "xdp", r)?;
    }
    if want("e2e") {
        let r = progress::run("bench e2e: end to end over veth, ka NAT/DR/TUN vs nftables DNAT", || {
            let ka = crate::run::build_ka(true)?;
            let json = bench_json("e2e");
            // The reference load balancer end to end beside ka (a scenario of its own); without
            // it ka's figures still stand.
            let reference = if opts.no_ref_lb {
                None
            } else {
                let dir = opts.ref_lb.clone().unwrap_or_else(crate::bench_ref::default_dir);
                let out = crate::workspace_root().join("target/ref-lb");
                let step = progress::step(format!("reference XDP load balancer ({}) for e2e", dir.display()));
                match crate::bench_ref::build_e2e(&dir, &out) {
                    Ok(o) => {
                        step.finish();
                        Some(o)
                    }
                    Err(e) => {
                        step.fail(&e);
                        None
                    }
                }
            };
            let mut cmd = cargo();
            if let Some(o) = &reference {
                cmd.env("KA_REF_LB_OBJECT", o);
            }
            exec(
                cmd
                    .args(["bench", "--package", "ka-tests", "--bench", "e2e"])
                    .env("KA_BIN", &ka)
                    .env("KA_E2E_SECS", opts.e2e_secs.to_string())
                    .env("KA_E2E_ROUNDS", opts.e2e_rounds.to_string())
                    .env("KA_BENCH_JSON", &json),
            )?;
            read_json(&json)
        });
        let r = r.map(|x| report.e2e = Some(x));
        outcome(&mut report, "e2e", r)?;
    }
    if want("config") {
        progress::run("bench config: keepalived.conf checking (65,024 instances)", || {
            let ka = crate::run::build_ka(true)?;
            crate::bench_config::run(crate::bench_config::Options { ka: Some(ka), dir: opts.config_dir.clone() })
        })?;
    }
    if want("vrrp") {
        // Takeover and CPU apart, so that one failing keeps the other's results.
        if !opts.vrrp.skip_takeover {
            let r = progress::run("bench vrrp: VRRP takeover after SIGKILL, ka vs keepalived 2.2", || {
                let ka = crate::run::build_ka(true)?;
                crate::bench_vrrp::run(crate::bench_vrrp::Options { skip_cpu: true, ..opts.vrrp.clone() }, &ka)
            });
            let r = r.map(|x| report.takeover = x.takeover);
            outcome(&mut report, "vrrp takeover", r)?;
        }
        if !opts.vrrp.skip_cpu {
            let r = progress::run("bench vrrp: VRRP daemon CPU, ka vs keepalived 2.2", || {
                let ka = crate::run::build_ka(true)?;
                crate::bench_vrrp::run(crate::bench_vrrp::Options { skip_takeover: true, ..opts.vrrp.clone() }, &ka)
            });
            let r = r.map(|x| report.vrrp_cpu = x.cpu);
            outcome(&mut report, "vrrp cpu", r)?;
        }
    }
    if want("health") {
        let r = progress::run("bench health: health checkers, checks/s and daemon CPU", || {
            let ka = crate::run::build_ka(true)?;
            crate::bench_health::run(opts.health.clone(), &ka)
        });
        let r = r.map(|x| report.health = Some(x));
        outcome(&mut report, "health", r)?;
    }
    if want("sync") {
        progress::run("bench sync: connection sync (lvs_sync_daemon), entries/s per stage and the ring push in XDP", || {
            exec(cargo().args(["bench", "--package", "ka-tests", "--bench", "sync"]))
        })?;
    }
    if want("restart") {
        progress::run("bench restart: kill -9 to a restarted ka that adopted the datapath and resumed as MASTER", || {
            let ka = crate::run::build_ka(true)?;
            crate::bench_restart::run(&ka, 10)
        })?;
    }
    if want("reload") {
        let r = progress::run("bench reload: live reload, time and advert gaps", || {
            let ka = crate::run::build_ka(true)?;
            crate::bench_reload::run(opts.reload.clone(), &ka)
        });
        let r = r.map(|x| report.reload = Some(x));
        outcome(&mut report, "reload", r)?;
    }
    if want("flood") {
        progress::run("bench flood: VRRP advert flood from a third host: daemon CPU, counters, answers, takeover", || {
            let ka = crate::run::build_ka(true)?;
            crate::bench_flood::run(&opts.flood, &ka)
        })?;
    }
    if want("synflood") {
        progress::run("bench synflood: SYN and UDP floods to a VIP from a million sources: daemon CPU, counters, long-lived flows", || {
            let ka = match &opts.ka {
                Some(k) => k.clone(),
                None => crate::run::build_ka(true)?,
            };
            crate::bench_synflood::run(&opts.synflood, &ka)
        })?;
    }
    if want("faults") {
        progress::run("bench faults: a real server's new MAC, a re-created XDP interface, 10,000 virtual servers", || {
            let ka = match &opts.ka {
                Some(k) => k.clone(),
                None => crate::run::build_ka(true)?,
            };
            crate::bench_faults::run(&opts.faults, &ka)
        })?;
    }
    if want("bgp") {
        let r = progress::run("bench bgp: active-active scale-out, 1-3 directors behind a BIRD ECMP router (live-frames generator)", || {
            let ka = crate::run::build_ka(true)?;
            crate::bench_bgp::run(&opts.bgp, &ka)
        });
        let r = r.map(|rows| {
            report.directors = Some(crate::report::Directors {
                method: "a live-frames generator behind a kernel router whose BIRD installs an ECMP route over N ka directors (DR, Maglev, XDP), frames counted at the real servers' sinks; best of rounds".to_owned(),
                rows: rows
                    .iter()
                    .map(|r| crate::report::DirectorsRow {
                        directors: r.directors,
                        delivered_mpps: r.mpps,
                        cpu_cores: Some(r.director_cpu.iter().sum()),
                    })
                    .collect(),
            });
        });
        outcome(&mut report, "bgp", r)?;
    }
    anyhow::ensure!(failed.is_empty(), "benchmarks failed (noted in the report): {}", failed.join(", "));
    Ok(())
}

/// A failure in one line for the report: the outermost context and the root cause, each cut
/// to its first line and 300 characters (a daemon's whole log can be in between).
fn failure_note(e: &anyhow::Error) -> String {
    let line = |s: String| -> String {
        let first = s.lines().next().unwrap_or("").to_owned();
        if first.chars().count() > 300 {
            format!("{}…", first.chars().take(299).collect::<String>())
        } else {
            first
        }
    };
    let (top, root) = (line(e.to_string()), line(e.root_cause().to_string()));
    if top == root {
        top
    } else {
        format!("{top}: {root}")
    }
}

/// `--merge`: keeps the sections of DIR/report.json that this run does not measure, when it
/// was measured on the same machine, and notes when they were measured.
fn merge_earlier(report: &mut Report, dir: &Path) -> anyhow::Result<()> {
    let path = dir.join("report.json");
    if !path.exists() {
        return Ok(());
    }
    let old = Report::load(&path)?;
    let same = (&old.machine.cpu_model, old.machine.cores, &old.machine.kernel) == (&report.machine.cpu_model, report.machine.cores, &report.machine.kernel);
    anyhow::ensure!(same, "--merge: {} was measured on another machine ({}); pick another directory", path.display(), old.machine.caption(&old.date));
    let kept = crate::report::merge(report, old);
    if !kept.is_empty() {
        eprintln!("bench: --merge keeps {} from {}", kept.join(", "), path.display());
    }
    Ok(())
}

/// `cargo xtask ARGS...` as it was run.
fn command_line() -> String {
    std::iter::once("cargo xtask".to_owned()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" ")
}

/// Renders `report` into `dir` and says where.
fn write_report(report: &Report, dir: &Path) -> anyhow::Result<()> {
    let files = report.write(dir)?;
    eprintln!("bench: report written: {} ({} files)", dir.join("index.html").display(), files.len());
    Ok(())
}

/// A fresh path for a bench's `KA_BENCH_JSON` output.
fn bench_json(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("ka-bench-{name}-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Reads (and removes) a bench's `KA_BENCH_JSON` output.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path).with_context(|| format!("the bench wrote no results to {}", path.display()))?;
    let _ = std::fs::remove_file(path);
    serde_json::from_str(&text).with_context(|| format!("results in {} do not parse", path.display()))
}

/// ka's XDP bench side by side with the reference load balancer ([`crate::bench_ref`]), in
/// the same run: the reference runs before and after ka (each program's minimum of both), so
/// that a load change on a shared machine during the run shows on both sides; prints the
/// ratios.
fn xdp(opts: &Options) -> anyhow::Result<crate::report::Xdp> {
    #[derive(serde::Deserialize)]
    struct Rows {
        rows: Vec<crate::report::XdpPath>,
    }
    let dir = opts.ref_lb.clone().unwrap_or_else(crate::bench_ref::default_dir);
    // The reference is an anchor, not ka: without it ka's own figures still stand.
    let reference = |what: &str| -> Result<Vec<crate::report::RefPath>, String> {
        if opts.no_ref_lb {
            return Err("--no-ref-lb".into());
        }
        let step = progress::step(format!("reference XDP load balancer ({}), {what} run", dir.display()));
        match crate::bench_ref::run(&dir) {
            Ok(r) => {
                step.finish();
                Ok(r)
            }
            Err(e) => {
                step.fail(&e);
                Err(format!("{e:#}"))
            }
        }
    };
    let first = reference("first");
    let json = bench_json("xdp");
    exec(cargo().args(["bench", "--package", "ka-tests", "--bench", "xdp"]).env("KA_BENCH_JSON", &json))?;
    let ka = read_json::<Rows>(&json)?.rows;
    let mut out = crate::report::Xdp { ka, reference: Vec::new(), reference_note: None };
    match first.and_then(|f| Ok(crate::bench_ref::min_of_runs(f, reference("second")?))) {
        Ok(r) => {
            println!("\n### XDP: ka beside the reference load balancer (same run, {})\n", dir.display());
            print!("{}", crate::bench_ref::ratio_table(&out.ka, &r));
            let all: Vec<String> = r.iter().map(|p| format!("{} {:.0} ns", p.name, p.ns)).collect();
            println!("\nreference programs (minimum of two runs): {}", all.join(", "));
            out.reference = r;
        }
        Err(note) => out.reference_note = Some(note),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure note keeps the context and the root cause, not the log in between.
    #[test]
    fn failure_note_is_one_bounded_line() {
        let e = anyhow::anyhow!("timed out waiting for the master")
            .context(format!("master log:\n{}", "line\n".repeat(10_000)))
            .context("CPU 1000 instances with keepalived");
        assert_eq!(failure_note(&e), "CPU 1000 instances with keepalived: timed out waiting for the master");
        let long = anyhow::anyhow!("{}", "x".repeat(1000));
        assert_eq!(failure_note(&long).chars().count(), 300);
    }
}
