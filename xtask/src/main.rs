//! `cargo xtask`: setup, run, test, bench. xtask orchestrates; it never compiles the eBPF
//! itself (ka-userspace/build.rs does).

mod bench;
mod bench_bgp;
mod bench_config;
mod bench_faults;
mod bench_flood;
mod bench_health;
mod bench_ref;
mod bench_reload;
mod bench_restart;
mod bench_synflood;
mod bench_vrrp;
mod exec;
mod fuzz;
mod lab;
mod lab_bgp;
mod package;
mod progress;
mod report;
mod run;
mod setup;
mod soak;
mod test;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// ka's developer tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what the build and the tests need (idempotent).
    Setup(setup::Options),
    /// Run every test.
    Test(test::Options),
    /// Run the bundled lab, or `ka` with the arguments after `--`.
    Run(run::Options),
    /// Run the benchmarks.
    Bench(bench::Options),
    /// Fuzzing campaigns: every target (or --target T) for --seconds S; prints execs and crashes.
    Fuzz(fuzz::Options),
    /// Soak the lab: traffic for N minutes while random faults fire, invariants checked.
    Soak(soak::Options),
    /// Build the Debian package (target/debian/ka_<version>_<arch>.deb) with cargo-deb.
    Package(package::Options),
    /// Lint every host crate with clippy, without building the eBPF object.
    Lint,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Setup(o) => setup::run(o),
        Task::Test(o) => test::run(o),
        Task::Run(o) => run::run(o),
        Task::Bench(o) => bench::run(o),
        Task::Fuzz(o) => fuzz::run(o),
        Task::Soak(o) => soak::run(o),
        Task::Package(o) => package::run(o).map(|_| ()),
        Task::Lint => exec::exec(
            exec::cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]).env("KA_SKIP_EBPF", "1"),
        ),
    }
}

/// The workspace root (the parent of xtask's manifest directory).
pub fn workspace_root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent().map_or(dir.clone(), std::path::Path::to_path_buf)
}

/// Parses a duration for the command line: `30s`, `500ms`, `2m`, `1h 30m` (humantime).
///
/// # Errors
/// Not a duration.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(std::time::Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(std::time::Duration::from_secs(120)));
        assert_eq!(parse_duration("250ms"), Ok(std::time::Duration::from_millis(250)));
        assert!(parse_duration("7 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn the_ebpf_toolchain_is_pinned_to_a_dated_nightly() {
        let t = setup::ebpf_toolchain().expect("toolchain");
        assert!(t.starts_with("nightly-20"), "unpinned eBPF toolchain {t:?}: pin a dated nightly");
    }
}
