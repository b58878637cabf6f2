//! `cargo xtask fuzz [--seconds S] [--target T]`: fuzzing campaigns. Runs every target (or the
//! ones named) one after the other and prints the executions and crashes of each:
//!
//! - the libFuzzer targets of `fuzz/fuzz_targets/` (cargo-fuzz on the pinned nightly, one
//!   process each): `config_parse`, `vrrp_decode`, `sync_decode`, `control_decode`, `bfd_decode`;
//! - `xdp`: the XDP program through BPF_PROG_TEST_RUN (`tests/examples/xdp_fuzz.rs`, a mutation
//!   loop of its own, as root).
//!
//! Each starts from the committed corpus `fuzz/corpus/<target>/` (read only); what it adds
//! goes to `fuzz/target/corpus/<target>/` and crashing inputs to `fuzz/artifacts/<target>/`.
//! The full output of each run is in `fuzz/target/logs/<target>.log`.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _};

use crate::exec;

/// The libFuzzer targets (`fuzz/fuzz_targets/<name>.rs`).
pub const LIBFUZZER_TARGETS: &[&str] = &["config_parse", "vrrp_decode", "sync_decode", "control_decode", "bfd_decode"];
/// The XDP target (BPF_PROG_TEST_RUN, not libFuzzer).
pub const XDP_TARGET: &str = "xdp";

/// Options of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// How long each target runs, in seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// A target to run (repeatable; default: every one): config_parse, vrrp_decode,
    /// sync_decode, control_decode, bfd_decode, xdp.
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// Turn fixture frames into the XDP seed corpus instead of fuzzing: runs the XDP fixture
    /// tests with `KA_XDP_SEEDS` set and keeps one frame per distinct counter signature in
    /// `fuzz/corpus/xdp/`.
    #[arg(long)]
    pub import_xdp_seeds: bool,
}

/// What one target's run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Target name.
    pub target: String,
    /// Inputs executed.
    pub execs: u64,
    /// Crashes (libFuzzer stops at the first; the XDP loop counts every failing input).
    pub crashes: u64,
    /// Seconds it ran.
    pub seconds: u64,
    /// Where the crashing inputs are, if any.
    pub artifacts: Vec<String>,
}

/// Runs the campaigns and prints a table of executions and crashes.
///
/// # Errors
/// A target is unknown, a tool is missing, a build fails, or a target crashed.
pub fn run(opts: Options) -> anyhow::Result<()> {
    if opts.import_xdp_seeds {
        return import_xdp_seeds();
    }
    let targets = select(&opts.targets)?;
    let mut outcomes = Vec::new();
    for t in &targets {
        let step = crate::progress::step(format!("fuzz {t}: {} s", opts.seconds));
        let o = match if t == XDP_TARGET { run_xdp(opts.seconds) } else { run_libfuzzer(t, opts.seconds) } {
            Ok(o) => o,
            Err(e) => {
                step.fail(&e);
                return Err(e);
            }
        };
        step.set_message(format!("{} execs, {} crashes", o.execs, o.crashes));
        step.finish();
        eprintln!("fuzz: {t}: {} execs, {} crashes", o.execs, o.crashes);
        outcomes.push(o);
    }
    println!("{}", table(&outcomes));
    let crashed: Vec<&Outcome> = outcomes.iter().filter(|o| o.crashes > 0).collect();
    if !crashed.is_empty() {
        let list: Vec<String> = crashed.iter().map(|o| format!("{} ({})", o.target, o.artifacts.join(", "))).collect();
        bail!("fuzzing found crashes: {}", list.join("; "));
    }
    Ok(())
}

/// The targets to run: `names` (checked), or every one.
fn select(names: &[String]) -> anyhow::Result<Vec<String>> {
    let all: Vec<&str> = LIBFUZZER_TARGETS.iter().copied().chain([XDP_TARGET]).collect();
    if names.is_empty() {
        return Ok(all.iter().map(|s| (*s).to_owned()).collect());
    }
    for n in names {
        if !all.contains(&n.as_str()) {
            bail!("no fuzz target {n} (targets: {})", all.join(", "));
        }
    }
    Ok(names.to_vec())
}

/// The summary table.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut s = format!("{:<16} {:>8} {:>14} {:>8}\n", "target", "seconds", "execs", "crashes");
    for o in outcomes {
        s.push_str(&format!("{:<16} {:>8} {:>14} {:>8}\n", o.target, o.seconds, o.execs, o.crashes));
    }
    s.pop();
    s
}

/// Makes sure cargo-fuzz is installed (`cargo xtask setup` does the same).
///
/// # Errors
/// It is missing and cannot be installed.
pub fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    if exec::succeeds("cargo", &["fuzz", "--version"]) {
        return Ok(());
    }
    eprintln!("fuzz: cargo-fuzz not found, installing it (cargo install cargo-fuzz --locked)");
    exec::exec(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
        .map_err(|e| anyhow::anyhow!("missing piece: cargo-fuzz ({e:#})"))
}

fn fuzz_dir() -> PathBuf {
    crate::workspace_root().join("fuzz")
}

/// Runs `cmd`, its stdout and stderr written to `log` and the lines `echo` accepts also
/// shown; returns whether it succeeded and every output line.
fn run_logged(cmd: &mut Command, log: &Path, echo: impl Fn(&str) -> bool + Sync) -> anyhow::Result<(bool, Vec<String>)> {
    if let Some(d) = log.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let file = std::sync::Mutex::new(std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?);
    let mut child =
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null()).spawn().with_context(|| format!("cannot run {cmd:?}"))?;
    let (out, err) = (child.stdout.take().context("stdout")?, child.stderr.take().context("stderr")?);
    let follow = |r: &mut dyn std::io::Read| {
        let mut lines = Vec::new();
        for line in BufReader::new(r).lines() {
            let line = line.unwrap_or_default();
            if let Ok(mut f) = file.lock() {
                let _ = writeln!(f, "{line}");
            }
            if echo(&line) {
                eprintln!("  {line}");
            }
            lines.push(line);
        }
        lines
    };
    let (mut a, b) = std::thread::scope(|s| {
        let h = s.spawn(|| follow(&mut { err }));
        let a = follow(&mut { out });
        (a, h.join().unwrap_or_default())
    });
    a.extend(b);
    let status = child.wait().context("waiting for the fuzzer")?;
    Ok((status.success(), a))
}

/// The executions libFuzzer reports (`-print_final_stats=1`), else its last `#N` status line.
pub fn libfuzzer_execs(lines: &[String]) -> u64 {
    if let Some(n) = lines.iter().find_map(|l| l.strip_prefix("stat::number_of_executed_units:").and_then(|v| v.trim().parse().ok())) {
        return n;
    }
    lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix('#').and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// The crash reproducers libFuzzer wrote (`Test unit written to PATH`, `artifact_prefix=...;
/// Test unit written to PATH`).
pub fn libfuzzer_artifacts(lines: &[String]) -> Vec<String> {
    lines.iter().filter_map(|l| l.split("Test unit written to ").nth(1)).map(|p| p.trim().to_owned()).collect()
}

fn run_libfuzzer(target: &str, seconds: u64) -> anyhow::Result<Outcome> {
    ensure_cargo_fuzz()?;
    let nightly = crate::setup::ebpf_toolchain()?;
    let dir = fuzz_dir();
    let work = dir.join("target/corpus").join(target);
    let seeds = dir.join("corpus").join(target);
    let artifacts = dir.join("artifacts").join(target);
    for d in [&work, &artifacts] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    eprintln!("fuzz: building {target} (cargo +{nightly} fuzz build)");
    exec::exec(
        Command::new("cargo")
            .current_dir(crate::workspace_root())
            .arg(format!("+{nightly}"))
            .args(["fuzz", "build", "--fuzz-dir", "fuzz", target])
            // The fuzz targets only need the host code: do not compile the eBPF object.
            .env("KA_SKIP_EBPF", "1"),
    )?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(crate::workspace_root())
        .arg(format!("+{nightly}"))
        .args(["fuzz", "run", "--fuzz-dir", "fuzz", target])
        // New inputs go to the first directory; the committed corpus is only read.
        .arg(&work)
        .arg(&seeds)
        .env("KA_SKIP_EBPF", "1")
        .arg("--")
        .arg(format!("-max_total_time={}", seconds.max(1)))
        .arg("-print_final_stats=1")
        // A slow input (a `~SEQ` bomb) is reported as a timeout, a crash, not waited for.
        .arg("-timeout=25")
        .arg("-rss_limit_mb=4096")
        .arg(format!("-artifact_prefix={}/", artifacts.display()));
    let log = dir.join("target/logs").join(format!("{target}.log"));
    let started = Instant::now();
    let (ok, lines) = run_logged(&mut cmd, &log, |l| l.contains("DONE") || l.contains("ERROR") || l.contains("Test unit written") || l.starts_with("SUMMARY"))?;
    let found = libfuzzer_artifacts(&lines);
    let crashes = if ok { 0 } else { found.len().max(1) as u64 };
    Ok(Outcome { target: target.to_owned(), execs: libfuzzer_execs(&lines), crashes, seconds: started.elapsed().as_secs(), artifacts: found })
}

/// The executions and crashes `xdp_fuzz` reports on its last line (`xdp: N execs (...), M
/// crashes, ...`).
pub fn xdp_summary(lines: &[String]) -> Option<(u64, u64)> {
    // The final line (stdout) counts packets too; progress lines (stderr) do not.
    let l = lines.iter().rev().find(|l| l.starts_with("xdp: ") && l.contains(" execs (") && l.contains(" packets)"))?;
    let execs = l.strip_prefix("xdp: ")?.split_whitespace().next()?.parse().ok()?;
    let crashes = l.split(", ").find_map(|p| p.strip_suffix(" crashes")?.trim().parse().ok())?;
    Some((execs, crashes))
}

fn xdp_bin() -> anyhow::Result<PathBuf> {
    if !crate::setup::is_root() {
        bail!("the xdp target needs root (BPF_PROG_TEST_RUN, a network namespace): run `cargo xtask fuzz` as root");
    }
    eprintln!("fuzz: building the XDP fuzzer (cargo build -p ka-tests --example xdp_fuzz)");
    exec::exec(exec::cargo().args(["build", "--package", "ka-tests", "--example", "xdp_fuzz"]))?;
    Ok(crate::workspace_root().join("target/debug/examples/xdp_fuzz"))
}

fn run_xdp(seconds: u64) -> anyhow::Result<Outcome> {
    let bin = xdp_bin()?;
    let dir = fuzz_dir();
    let artifacts = dir.join("artifacts").join(XDP_TARGET);
    let mut cmd = Command::new(&bin);
    cmd.current_dir(crate::workspace_root())
        .arg("--seconds")
        .arg(seconds.max(1).to_string())
        .arg("--seeds")
        .arg(dir.join("corpus").join(XDP_TARGET))
        .arg("--corpus")
        .arg(dir.join("target/corpus").join(XDP_TARGET))
        .arg("--artifacts")
        .arg(&artifacts)
        .args(["--progress", "60"]);
    let log = dir.join("target/logs").join(format!("{XDP_TARGET}.log"));
    let started = Instant::now();
    let (_, lines) = run_logged(&mut cmd, &log, |l| l.starts_with("xdp: ") || l.starts_with("crash: "))?;
    let (execs, crashes) = xdp_summary(&lines).with_context(|| format!("the XDP fuzzer printed no summary (see {})", log.display()))?;
    let found = lines.iter().filter_map(|l| l.strip_prefix("crash: ")).map(|l| l.split(' ').next().unwrap_or_default().to_owned()).collect();
    Ok(Outcome { target: XDP_TARGET.to_owned(), execs, crashes, seconds: started.elapsed().as_secs(), artifacts: found })
}

/// `--import-xdp-seeds`: the XDP fixture tests export every frame they run, the fuzzer keeps
/// one per distinct counter signature.
fn import_xdp_seeds() -> anyhow::Result<()> {
    let bin = xdp_bin()?;
    let frames = crate::workspace_root().join("target/xdp-seeds");
    let _ = std::fs::remove_dir_all(&frames);
    eprintln!("fuzz: running the XDP fixture tests with KA_XDP_SEEDS={}", frames.display());
    let ka = crate::workspace_root().join("target/debug/ka");
    exec::exec(exec::cargo().args(["build", "--package", "ka-userspace", "--bins"]))?;
    let mut cmd = exec::cargo();
    cmd.args(["test", "--package", "ka-tests"]);
    for t in ["xdp_parser", "xdp_lb", "xdp_icmp", "xdp_vrrp", "xdp_services", "xdp_decap", "xdp_sync"] {
        cmd.args(["--test", t]);
    }
    exec::exec(cmd.env("KA_XDP_SEEDS", &frames).env("KA_BIN", ka))?;
    let out = fuzz_dir().join("corpus").join(XDP_TARGET);
    exec::exec(Command::new(bin).arg("--import").arg(&frames).arg("--out").arg(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_owned).collect()
    }

    /// Executions and crashes are read from libFuzzer's and the XDP fuzzer's output.
    #[test]
    fn outputs_are_parsed() {
        let ok = lines("#2097152\tpulse  cov: 10 ft: 20 corp: 3/30b exec/s: 1000 rss: 50Mb\n#2345678\tDONE   cov: 10 ft: 20\nDone 2345678 runs in 601 second(s)\nstat::number_of_executed_units: 2345680\nstat::average_exec_per_sec:     3902\n");
        assert_eq!(libfuzzer_execs(&ok), 2_345_680);
        assert!(libfuzzer_artifacts(&ok).is_empty());
        let crash = lines("#1024\tNEW    cov: 9\n==1== ERROR: libFuzzer: deadly signal\nartifact_prefix='fuzz/artifacts/x/'; Test unit written to fuzz/artifacts/x/crash-abc\n");
        assert_eq!(libfuzzer_execs(&crash), 1024);
        assert_eq!(libfuzzer_artifacts(&crash), ["fuzz/artifacts/x/crash-abc"]);
        let xdp = lines("xdp: 123456 execs (250000 packets), 2 crashes, corpus 300, 400 signatures, 600 s, seed 7\nxdp: 1000 execs (500/s), 0 crashes, corpus 9, 20 signatures\n");
        assert_eq!(xdp_summary(&xdp), Some((123_456, 2)));
        assert_eq!(xdp_summary(&lines("nothing")), None);
        assert!(select(&["nope".to_owned()]).is_err());
        assert_eq!(select(&[]).expect("all").len(), 6, "every libFuzzer target and xdp");
    }
}
