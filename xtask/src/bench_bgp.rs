//! `cargo xtask bench --only bgp` (issue 16 item 6): aggregate throughput through 1, 2 and 3
//! active-active ka directors behind an ECMP router that learns the VIP from them over BGP
//! (BIRD), on the end-to-end benchmark's live-frames topology, with the scaling factor against
//! one director.
//!
//! The measurement needs the eBPF object and aya, which xtask does without, so it is a bench
//! target of `ka-tests` (`tests/benches/bgp.rs`, which documents the topology and the CPU
//! placement); this module runs it, reads back the rows it writes as JSON, checks them and
//! returns them as [`DirectorScaling`] for the benchmark report.

use std::path::Path;

use anyhow::{ensure, Context as _};
use serde::{Deserialize, Serialize};

use crate::exec::{cargo, exec};

/// Options of the scale-out benchmark.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "bgp_bench")]
pub struct Options {
    /// Scale-out benchmark: measured seconds per director count and round.
    #[arg(long, default_value_t = 3)]
    pub bgp_secs: u32,
    /// Scale-out benchmark: rounds (each director count reports its best).
    #[arg(long, default_value_t = 3)]
    pub bgp_rounds: u32,
}

/// Directors the benchmark runs with: 1, 2, ... this many.
pub const MAX_DIRECTORS: u32 = 3;

/// One row of the scale-out benchmark: what the real servers received with `directors` ka
/// directors in the router's ECMP route (rates per second of wall time, best round).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectorScaling {
    /// Directors in the router's ECMP route.
    pub directors: u32,
    /// Frames delivered to the real servers, all directors, in millions per second.
    pub mpps: f64,
    /// `mpps` over the one-director row's.
    pub scaling: f64,
    /// Frames the generator sent, Mpps.
    pub offered_mpps: f64,
    /// Frames the router took off its ingress ring, Mpps.
    pub router_received_mpps: f64,
    /// Frames delivered through each director, Mpps (ECMP's split).
    pub per_director_mpps: Vec<f64>,
    /// CPU of the router's receive thread (1.0: one core busy).
    pub router_cpu: f64,
    /// CPU of each director's receive thread (its XDP program and the redirect).
    pub director_cpu: Vec<f64>,
    /// Frames delivered per second of director CPU (all directors), Mpps.
    pub mpps_per_director_core: f64,
}

/// Parses and checks the rows the bench target wrote: one per director count 1..=N in order,
/// each with something delivered, one share and one CPU figure per director.
///
/// # Errors
/// Not the expected JSON, or rows missing, out of order or empty.
pub fn parse(text: &str) -> anyhow::Result<Vec<DirectorScaling>> {
    let rows: Vec<DirectorScaling> = serde_json::from_str(text).context("the scale-out benchmark's JSON rows")?;
    ensure!(rows.len() == MAX_DIRECTORS as usize, "expected {MAX_DIRECTORS} rows (1..={MAX_DIRECTORS} directors), got {}", rows.len());
    for (i, r) in rows.iter().enumerate() {
        let n = i as u32 + 1;
        ensure!(r.directors == n, "row {i} is for {} directors, expected {n}", r.directors);
        ensure!(r.mpps > 0.0 && r.mpps.is_finite(), "{n} director(s): nothing delivered ({} Mpps)", r.mpps);
        ensure!(
            r.per_director_mpps.len() == n as usize && r.director_cpu.len() == n as usize,
            "{n} director(s): {} shares and {} CPU figures",
            r.per_director_mpps.len(),
            r.director_cpu.len()
        );
    }
    Ok(rows)
}

/// Runs the benchmark with the `ka` binary `ka` and returns its rows (the bench target prints
/// the table).
///
/// # Errors
/// The bench target fails (it needs root, BIRD and the eBPF object), or its rows are not
/// what [`parse`] expects.
pub fn run(opts: &Options, ka: &Path) -> anyhow::Result<Vec<DirectorScaling>> {
    let out = std::env::temp_dir().join(format!("ka-bench-bgp-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&out);
    exec(
        cargo()
            .args(["bench", "--package", "ka-tests", "--bench", "bgp"])
            .env("KA_BIN", ka)
            .env("KA_BGP_SECS", opts.bgp_secs.to_string())
            .env("KA_BGP_ROUNDS", opts.bgp_rounds.to_string())
            .env("KA_BGP_JSON", &out),
    )?;
    let text = std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()));
    let _ = std::fs::remove_file(&out);
    parse(&text?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON the bench target writes (`tests/benches/bgp.rs`, `KA_BGP_JSON`), one row per N.
    fn row(n: u32, mpps: f64) -> serde_json::Value {
        let k = n as usize;
        serde_json::json!({
            "directors": n, "mpps": mpps, "scaling": mpps / 0.8, "offered_mpps": 1.6,
            "router_received_mpps": 1.0, "per_director_mpps": vec![mpps / n as f64; k],
            "router_cpu": 0.97, "director_cpu": vec![0.2 / n as f64; k], "mpps_per_director_core": 4.0,
        })
    }

    #[test]
    fn rows_parse_and_are_checked() {
        let good = serde_json::json!([row(1, 0.8), row(2, 0.8), row(3, 0.79)]).to_string();
        let rows = parse(&good).expect("valid rows");
        assert_eq!(rows.iter().map(|r| r.directors).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(rows[1].per_director_mpps, [0.4, 0.4]);
        // What the report gets back serialises to the same rows.
        let again: Vec<DirectorScaling> = serde_json::from_str(&serde_json::to_string(&rows).expect("ser")).expect("de");
        assert_eq!(again, rows);

        let mut short_shares = row(2, 0.8);
        short_shares["per_director_mpps"] = serde_json::json!([0.8]);
        let cases: [(&str, String, &str); 5] = [
            ("not JSON", "no".into(), "JSON rows"),
            ("a row missing", serde_json::json!([row(1, 0.8), row(2, 0.8)]).to_string(), "expected 3 rows"),
            ("out of order", serde_json::json!([row(1, 0.8), row(3, 0.8), row(2, 0.8)]).to_string(), "row 1 is for 3"),
            ("nothing delivered", serde_json::json!([row(1, 0.8), row(2, 0.0), row(3, 0.8)]).to_string(), "nothing delivered"),
            ("a share missing", serde_json::json!([row(1, 0.8), short_shares, row(3, 0.8)]).to_string(), "1 shares"),
        ];
        for (name, text, want) in cases {
            let err = format!("{:#}", parse(&text).expect_err(name));
            assert!(err.contains(want), "{name}: {err}");
        }
    }
}
