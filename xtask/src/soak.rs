//! `cargo xtask soak --minutes N`: the lab's LAN under traffic while seeded random faults fire
//! (real servers dying, failovers, reloads, kill -9 and restart, link flaps), with the
//! invariants checked all along ([`ka_tests::soak`]). Prints the seed first and a report at the
//! end; fails if any invariant was broken.

use std::sync::{atomic::Ordering, Arc};

use anyhow::Context as _;

/// Options of `cargo xtask soak`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// How long traffic runs with faults, in minutes (fractions allowed: `--minutes 1.5`).
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// The faults' seed (default: from the clock; printed, so a run can be replayed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Build ka in release mode.
    #[arg(long)]
    pub release: bool,
    /// Soak this `ka` binary instead of building one.
    #[arg(long, value_name = "PATH")]
    pub ka: Option<std::path::PathBuf>,
    /// Skip the setup step.
    #[arg(long)]
    pub no_setup: bool,
}

/// The duration `minutes` stands for.
///
/// # Errors
/// Not a positive finite number of minutes.
fn duration(minutes: f64) -> anyhow::Result<std::time::Duration> {
    anyhow::ensure!(minutes.is_finite() && minutes > 0.0, "--minutes must be a positive number, not {minutes}");
    std::time::Duration::try_from_secs_f64(minutes * 60.0).context("--minutes is too large")
}

static STOP: std::sync::OnceLock<Arc<std::sync::atomic::AtomicBool>> = std::sync::OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    if let Some(s) = STOP.get() {
        s.store(true, Ordering::SeqCst);
    }
}

/// Runs the soak.
///
/// # Errors
/// Setup, the build or the LAN fails, or an invariant was broken.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let duration = duration(opts.minutes)?;
    if !opts.no_setup {
        crate::setup::run(crate::setup::Options {})?;
    }
    anyhow::ensure!(crate::setup::is_root(), "the soak needs root (network namespaces, XDP)");
    let ka = match opts.ka {
        Some(p) => p,
        None => crate::run::build_ka(opts.release)?,
    };
    let seed = opts.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs() ^ u64::from(d.subsec_nanos()))
    });
    println!("soak: seed {seed} (replay with `cargo xtask soak --minutes {} --seed {seed}`)", opts.minutes);
    let o = ka_tests::soak::Options::new(ka, duration, seed);
    let _ = STOP.set(o.stop.clone());
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        let handler = nix::sys::signal::SigHandler::Handler(on_signal);
        nix::sys::signal::signal(nix::sys::signal::Signal::SIGINT, handler)?;
        nix::sys::signal::signal(nix::sys::signal::Signal::SIGTERM, handler)?;
    }
    let report = crate::progress::run(format!("soak: {} of traffic with faults, seed {seed}", crate::progress::elapsed_text(duration)), || ka_tests::soak::run(&o))?;
    println!("{report}");
    anyhow::ensure!(report.violations.is_empty(), "{} violation(s)", report.violations.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_become_a_duration() {
        assert_eq!(duration(1.5).expect("1.5"), std::time::Duration::from_secs(90));
        assert_eq!(duration(30.0).expect("30"), std::time::Duration::from_secs(1800));
        assert!(duration(0.0).is_err());
        assert!(duration(-1.0).is_err());
        assert!(duration(f64::NAN).is_err());
    }
}
