//! `cargo xtask fuzz`: runs a cargo-fuzz target (default: the keepalived.conf parser).

use anyhow::{bail, Context as _};

use crate::exec;

/// The nightly toolchain cargo-fuzz runs with (sanitizer flags need nightly).
pub const NIGHTLY: &str = "nightly-2026-05-19";

/// Options of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Fuzz target (see `fuzz/fuzz_targets/`).
    #[arg(default_value = "config_parse")]
    pub target: String,
    /// Stop after this long (`30s`, `5m`, or seconds); without it, run until a crash or Ctrl-C.
    #[arg(long, value_parser = crate::parse_duration)]
    pub time: Option<std::time::Duration>,
    /// Parallel fuzzing jobs.
    #[arg(long, default_value_t = 1)]
    pub jobs: u32,
}

/// Runs the fuzz target with cargo-fuzz on the pinned nightly.
///
/// # Errors
/// cargo-fuzz or the toolchain is missing, or the fuzzer finds a crash.
pub fn run(opts: Options) -> anyhow::Result<()> {
    if !exec::succeeds("cargo", &["fuzz", "--version"]) {
        eprintln!("fuzz: cargo-fuzz not found, installing it (cargo install cargo-fuzz)");
        exec::exec(exec::cargo().args(["install", "cargo-fuzz"]))
            .map_err(|e| anyhow::anyhow!("missing piece: cargo-fuzz ({e:#})"))?;
    }
    let root = crate::workspace_root();
    let target = root
        .join("fuzz/fuzz_targets")
        .join(format!("{}.rs", opts.target));
    if !target.exists() {
        bail!(
            "no fuzz target {} (looked for {})",
            opts.target,
            target.display()
        );
    }
    let mut cmd = std::process::Command::new("cargo");
    cmd.current_dir(&root)
        .arg(format!("+{NIGHTLY}"))
        .args(["fuzz", "run", "--fuzz-dir", "fuzz", &opts.target])
        // The fuzz targets only need the host code: do not compile the eBPF object.
        .env("KA_SKIP_EBPF", "1")
        .arg("--")
        .arg(format!("-jobs={}", opts.jobs))
        .arg(format!("-workers={}", opts.jobs));
    if let Some(t) = opts.time {
        cmd.arg(format!("-max_total_time={}", t.as_secs().max(1)));
    }
    exec::exec(&mut cmd).context("fuzzing failed (a crash reproducer is under fuzz/artifacts/)")
}
