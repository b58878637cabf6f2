//! `cargo xtask bench`: every benchmark, in one run. Results are printed as tables; each names
//! the command that reproduces it.

use crate::exec::{cargo, exec};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Skip the setup step.
    #[arg(long)]
    pub no_setup: bool,
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
    eprintln!("bench: XDP parser through BPF_PROG_TEST_RUN");
    exec(cargo().args(["bench", "--package", "ka-tests", "--bench", "xdp"]))
}
