//! `cargo xtask bench --only xdp`: ka's XDP datapath side by side with the reference load
//! balancer (`xtask/ref-lb/`, a copy of the sessions' shared `bench/ref-lb`: a minimal C XDP
//! load balancer without counters, ICMP, IPv6 or VRRP), timed in the same run on the same
//! machine. Absolute nanoseconds vary from VM to VM and with the load of a shared machine; the
//! ratios taken in one run are what compares across sessions.
//!
//! The reference runs before and after ka's benchmark (`tests/benches/xdp.rs`, which writes
//! its rows as JSON to `KA_BENCH_OUT`); each reference figure is the minimum of both runs, each
//! ka row the minimum of its rounds. [`xdp`] returns the compared rows, so a report can record
//! them.

use std::{collections::BTreeMap, path::PathBuf, process::Command};

use anyhow::{bail, Context as _};

use crate::exec::{cargo, exec, output};

/// Debian packages the reference needs: its compiler, the loader, the libbpf headers.
/// Installed for the benchmark only (the tests never build the reference).
pub const REF_PACKAGES: &[&str] = &["clang-22", "bpftool", "libbpf-dev", "python3"];

/// The rows compared with the reference: ka's row key (`tests/benches/xdp.rs`), the row's name
/// (kept from session to session), the reference program it is compared with, and the
/// issue-15 target ratio (0: none).
pub const COMPARED: &[(&str, &str, &str, f64)] = &[
    ("floor", "floor (swap MACs, XDP_TX)", "floor", 0.0),
    ("established", "established flow (ka DR conn-table hit vs ref NAT + LRU hit)", "lb_lru", 1.1),
    ("new_flow_filling", "new flow, table filling (ka) vs ref LRU hit", "lb_lru", 2.0),
    ("new_flow_full", "new flow, table full (ka) vs ref LRU hit", "lb_lru", 0.0),
    ("non_vip", "TCP to a non-VIP address (parse + pass)", "floor", 1.5),
    ("vrrp_advert", "VRRP advert, steady state", "floor", 4.0),
];

/// One compared row.
#[derive(Clone, Debug, serde::Serialize)]
pub struct XdpRow {
    /// The row's name (stable across sessions).
    pub name: &'static str,
    /// ka, ns per packet (minimum of rounds).
    pub ka_ns: f64,
    /// The reference program's ns per packet (minimum of rounds).
    pub ref_ns: f64,
    /// `ka_ns / ref_ns`.
    pub ratio: f64,
}

/// Options of the side-by-side XDP benchmark.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "xdp_bench")]
pub struct Options {
    /// The reference load balancer's directory (holding `run.sh`); default: `xtask/ref-lb`.
    #[arg(long)]
    pub ref_lb: Option<PathBuf>,
}

/// Runs the reference, ka's XDP benchmark, and the reference again; prints the side-by-side
/// table and returns its rows.
///
/// # Errors
/// A package cannot be installed, the reference or the benchmark fails, or its output cannot
/// be read.
pub fn xdp(opts: &Options) -> anyhow::Result<Vec<XdpRow>> {
    ensure_packages(REF_PACKAGES)?;
    let dir = opts.ref_lb.clone().unwrap_or_else(|| crate::workspace_root().join("xtask/ref-lb"));
    let script = dir.join("run.sh");
    anyhow::ensure!(script.exists(), "{} not found (--ref-lb DIR)", script.display());
    eprintln!("bench: reference load balancer ({}), first run", script.display());
    let mut reference = parse_reference(&output(&mut Command::new(&script))?)?;
    eprintln!("bench: XDP datapath through BPF_PROG_TEST_RUN");
    let out = std::env::temp_dir().join(format!("ka-bench-xdp-{}.json", std::process::id()));
    exec(cargo().args(["bench", "--package", "ka-tests", "--bench", "xdp"]).env("KA_BENCH_OUT", &out))?;
    let json = std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()));
    let _ = std::fs::remove_file(&out);
    let ka = parse_ka(&json?)?;
    eprintln!("bench: reference load balancer, second run");
    for (name, ns) in parse_reference(&output(&mut Command::new(&script))?)? {
        reference.entry(name).and_modify(|v| *v = v.min(ns)).or_insert(ns);
    }
    let rows = compare(&ka, &reference)?;
    print_table(&rows, &reference);
    Ok(rows)
}

/// The rows of [`COMPARED`] from ka's rows (key → ns) and the reference's (program → ns).
///
/// # Errors
/// A row is missing on either side.
pub fn compare(ka: &BTreeMap<String, f64>, reference: &BTreeMap<String, f64>) -> anyhow::Result<Vec<XdpRow>> {
    COMPARED
        .iter()
        .map(|&(key, name, r, _)| {
            let ka_ns = *ka.get(key).with_context(|| format!("ka's benchmark has no row {key:?}"))?;
            let ref_ns = *reference.get(r).with_context(|| format!("the reference printed no {r:?}"))?;
            anyhow::ensure!(ref_ns > 0.0, "the reference's {r} took 0 ns");
            Ok(XdpRow { name, ka_ns, ref_ns, ratio: ka_ns / ref_ns })
        })
        .collect()
}

fn print_table(rows: &[XdpRow], reference: &BTreeMap<String, f64>) {
    println!();
    println!("ka vs the reference (xtask/ref-lb), same run, ns per packet (minimum of rounds):");
    println!();
    println!("| path | ka | reference | ratio | target |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (r, &(_, _, ref_prog, target)) in rows.iter().zip(COMPARED) {
        let target = if target == 0.0 {
            "-".to_owned()
        } else {
            format!("≤ {target:.1} {}", if r.ratio <= target { "met" } else { "missed" })
        };
        println!("| {} | {:.0} | {:.0} ({ref_prog}) | {:.2} | {target} |", r.name, r.ka_ns, r.ref_ns, r.ratio);
    }
    let all: Vec<String> = reference.iter().map(|(k, v)| format!("{k} {v:.0} ns")).collect();
    println!();
    println!("reference programs: {}", all.join(", "));
}

/// `NAME ns` lines of the reference's `run.sh`.
///
/// # Errors
/// A line is not `NAME NUMBER`, or there is none.
pub fn parse_reference(text: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut m = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_whitespace();
        let (Some(name), Some(ns), None) = (it.next(), it.next(), it.next()) else {
            bail!("unexpected line from the reference: {line:?}");
        };
        let ns: f64 = ns.parse().with_context(|| format!("unexpected line from the reference: {line:?}"))?;
        m.insert(name.to_owned(), ns);
    }
    anyhow::ensure!(!m.is_empty(), "the reference printed nothing");
    Ok(m)
}

/// The keyed rows (key → ns) of the JSON `tests/benches/xdp.rs` writes to `KA_BENCH_OUT`.
///
/// # Errors
/// Not that JSON.
pub fn parse_ka(json: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let v: serde_json::Value = serde_json::from_str(json).context("ka's benchmark output")?;
    let rows = v["rows"].as_array().context("ka's benchmark output has no rows")?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let key = r["key"].as_str().filter(|k| !k.is_empty())?;
            Some((key.to_owned(), r["ns"].as_f64()?))
        })
        .collect())
}

/// Installs the missing `packages` with apt-get (root).
fn ensure_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_ok_and(|s| s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("bench: installing the reference's packages: {}", missing.join(" "));
    let apt = |args: &[&str]| {
        exec(Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if apt(&["install", "-y", "--no-install-recommends"].iter().chain(&missing).copied().collect::<Vec<_>>()).is_err() {
        apt(&["update"])?;
        apt(&["install", "-y", "--no-install-recommends"].iter().chain(&missing).copied().collect::<Vec<_>>())
            .with_context(|| format!("installing {missing:?} for the reference load balancer"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_lines_parse() {
        let m = parse_reference("floor 25\nlb 70\nlb_lru 81\n").expect("parse");
        assert_eq!(m["lb_lru"], 81.0);
        assert!(parse_reference("floor\n").is_err());
        assert!(parse_reference("").is_err());
        assert!(parse_reference("floor x\n").is_err());
    }

    #[test]
    fn rows_compare_by_key() {
        let ka = parse_ka(
            r#"{"rows":[{"key":"floor","ns":24.0},{"key":"established","ns":90.0},
            {"key":"new_flow_filling","ns":160.0},{"key":"new_flow_full","ns":150.0},
            {"key":"non_vip","ns":30.0},{"key":"vrrp_advert","ns":80.0},{"key":"","ns":1.0}]}"#,
        )
        .expect("json");
        let reference = parse_reference("floor 25\nlb 70\nlb_lru 80\n").expect("ref");
        let rows = compare(&ka, &reference).expect("compare");
        assert_eq!(rows.len(), COMPARED.len());
        assert_eq!(rows[1].ref_ns, 80.0);
        assert!((rows[1].ratio - 90.0 / 80.0).abs() < 1e-9);
        assert!((rows[4].ratio - 30.0 / 25.0).abs() < 1e-9);
        let mut short = ka.clone();
        short.remove("vrrp_advert");
        assert!(compare(&short, &reference).is_err());
    }
}
