//! `cargo xtask test`: every test. Sets the machine up, builds `ka`, then runs the unit tests of
//! every host crate, the XDP fixture tests and the namespace integration tests; among them every
//! fuzz target's corpus replayed and fuzzed for a bounded time (`--fuzz-seconds`).

use anyhow::bail;

use crate::exec::{cargo, exec};

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Skip the setup step (when the machine is known to be ready).
    #[arg(long)]
    pub no_setup: bool,
    /// How long each fuzz target runs inside `cargo test` (tests `fuzz_targets` and
    /// `xdp_fuzz`: the committed corpus replayed, then a bounded mutation loop); exported as
    /// `KA_FUZZ_SECONDS`. Coverage-guided campaigns are `cargo xtask fuzz`.
    #[arg(long, default_value_t = 15)]
    pub fuzz_seconds: u64,
    /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

/// Runs every test.
///
/// # Errors
/// Setup, the build or a test fails.
pub fn run(opts: Options) -> anyhow::Result<()> {
    if !opts.no_setup {
        crate::setup::run(crate::setup::Options {})?;
    }
    if !crate::setup::is_root() {
        bail!(
            "the tests need root (network namespaces, XDP, BPF_PROG_TEST_RUN): run `cargo xtask test` as root"
        );
    }
    crate::progress::run("test: building ka", || exec(cargo().args(["build", "--package", "ka-userspace", "--bins"])))?;
    let ka = crate::workspace_root().join("target/debug/ka");
    eprintln!("test: cargo test (every host crate)");
    exec(
        cargo()
            // default-members: every host crate (ka-ebpf only builds for the BPF target).
            .args(["test", "--no-fail-fast"])
            .args(&opts.cargo_args)
            .env("KA_BIN", &ka)
            .env("RUST_BACKTRACE", "1")
            .env("KA_FUZZ_SECONDS", opts.fuzz_seconds.to_string()),
    )
}
