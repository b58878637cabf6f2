//! The reference XDP load balancer beside ka's XDP benchmark: `xtask/ref-lb/`, a copy of the
//! sessions' shared `bench/ref-lb` (three small C programs, a minimal XDP load balancer without
//! counters, ICMP, IPv6 or VRRP, timed with BPF_PROG_TEST_RUN by its `run.sh`), run in the same
//! `cargo xtask bench` run so that ka's ns/packet read as ratios. Absolute nanoseconds vary from
//! VM to VM and with the load of a shared machine; the ratios of one run compare across sessions.
//!
//! `cargo xtask bench --only xdp` runs the reference before and after ka's benchmark; each
//! reference figure is the minimum of both runs ([`min_of_runs`]), each ka row the minimum of
//! its rounds. The rows compared, their stable names and the issue-15 target ratios are
//! [`crate::report::XDP_PAIRS`] and [`TARGETS`]. The reference's tools (clang-22, bpftool,
//! libbpf-dev, python3) are installed with apt when missing, for this benchmark only: the build
//! and the tests do not need them.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use crate::{
    exec::{exec, output},
    report::{RefPath, XdpPath, XDP_PAIRS},
};

/// Debian packages `run.sh` needs: its compiler, the loader, the libbpf headers, the packet
/// writer (`mkpkt.py`).
const PACKAGES: [&str; 4] = ["clang-22", "bpftool", "libbpf-dev", "python3"];

/// Target ratios (ka / reference) of issue 15, by ka row id and reference program; pairs not
/// listed have none.
pub const TARGETS: [(&str, &str, f64); 4] =
    [("dr_established", "lb_lru", 1.1), ("dr_new_filling", "lb_lru", 2.0), ("nonvip", "floor", 1.5), ("vrrp_steady", "floor", 4.0)];

/// The reference's new flows (`NAME ns` lines as `run.sh`'s), a script beside the copy of the
/// reference: it takes the reference's directory as its argument.
fn new_flow_script() -> PathBuf {
    crate::workspace_root().join("xtask/ref-lb-extra/new_flow.sh")
}

/// The default place of the reference: the copy in `xtask/ref-lb` (`--ref-lb DIR` takes
/// another, e.g. the shared `../shared/bench/ref-lb`).
pub fn default_dir() -> PathBuf {
    crate::workspace_root().join("xtask/ref-lb")
}

/// Runs the reference once and returns its programs' ns/packet.
///
/// # Errors
/// The directory has no `run.sh`, a tool cannot be installed, or the script fails or prints
/// nothing this parser knows.
pub fn run(dir: &Path) -> anyhow::Result<Vec<RefPath>> {
    let script = dir.join("run.sh");
    anyhow::ensure!(script.is_file(), "no reference load balancer at {} (give --ref-lb DIR)", dir.display());
    tools()?;
    let out = output(Command::new("bash").arg(&script).current_dir(dir)).context("running the reference load balancer")?;
    let mut paths = parse(&out);
    anyhow::ensure!(!paths.is_empty(), "{} printed no `NAME ns` line:\n{out}", script.display());
    // The reference's own new flows; without them its other figures still stand.
    let extra = new_flow_script();
    match output(Command::new("bash").arg(&extra).arg(dir)) {
        Ok(out) => paths.extend(parse(&out)),
        Err(e) => eprintln!("warning: {}: {e:#}", extra.display()),
    }
    Ok(paths)
}

/// The reference load balancer built for the end-to-end benchmark: `xdp_lb.c` with its LRU
/// connection table and its devmap redirect (`-DUSE_LRU -DUSE_REDIRECT`, options of the
/// unchanged source), so that it forwards to the real servers behind another interface as ka
/// does; written to `out_dir/ref_lb_redirect.o`. The e2e bench loads it from
/// `KA_REF_LB_OBJECT`.
///
/// # Errors
/// The directory has no `xdp_lb.c`, a tool cannot be installed, or clang fails.
pub fn build_e2e(dir: &Path, out_dir: &Path) -> anyhow::Result<PathBuf> {
    let src = dir.join("xdp_lb.c");
    anyhow::ensure!(src.is_file(), "no reference load balancer at {} (give --ref-lb DIR)", dir.display());
    tools()?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let obj = out_dir.join("ref_lb_redirect.o");
    exec(
        Command::new(CLANG)
            .args(["-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-DUSE_LRU", "-DUSE_REDIRECT", "-c"])
            .arg(&src)
            .arg("-o")
            .arg(&obj),
    )
    .context("building the reference load balancer for the end-to-end benchmark")?;
    Ok(obj)
}

/// The compiler `run.sh` uses.
const CLANG: &str = "/usr/lib/llvm-22/bin/clang";

/// Installs the reference's packages when one is missing (root).
fn tools() -> anyhow::Result<()> {
    let have = |p: &str| {
        output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p])).is_ok_and(|s| s.contains("install ok installed"))
    };
    let missing: Vec<&str> = PACKAGES.into_iter().filter(|p| !have(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    crate::progress::run(format!("apt-get install {} (reference load balancer only)", missing.join(" ")), || {
        exec(Command::new("apt-get").arg("update").env("DEBIAN_FRONTEND", "noninteractive"))?;
        exec(Command::new("apt-get").args(["install", "-y", "--no-install-recommends"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive"))
            .with_context(|| format!("installing {missing:?} for the reference load balancer"))
    })
}

/// The `NAME ns` lines of `run.sh` (pure; other lines are ignored).
pub fn parse(text: &str) -> Vec<RefPath> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (name, ns, rest) = (it.next()?, it.next()?, it.next());
            let ns: f64 = ns.parse().ok()?;
            (rest.is_none() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then(|| RefPath { name: name.to_owned(), ns })
        })
        .collect()
}

/// Two runs of the reference as one: each program's minimum (pure; a program only one run
/// measured keeps that figure).
pub fn min_of_runs(mut first: Vec<RefPath>, second: Vec<RefPath>) -> Vec<RefPath> {
    for p in second {
        match first.iter_mut().find(|q| q.name == p.name) {
            Some(q) => q.ns = q.ns.min(p.ns),
            None => first.push(p),
        }
    }
    first
}

/// The same-run ratios as a Markdown table: each pair of [`XDP_PAIRS`] that both sides
/// measured, with its [`TARGETS`] ratio and whether this run met it.
pub fn ratio_table(ka: &[XdpPath], reference: &[RefPath]) -> String {
    let mut t = String::from("| path | ka ns | reference | reference ns | ka / reference | target |\n|---|---:|---|---:|---:|---|\n");
    for (kid, rname, label) in XDP_PAIRS {
        let (Some(k), Some(r)) = (ka.iter().find(|p| p.id == kid), reference.iter().find(|p| p.name == rname)) else { continue };
        let ratio = k.ns / r.ns.max(1e-9);
        let target = TARGETS.iter().find(|t| t.0 == kid && t.1 == rname).map_or_else(
            || "-".to_owned(),
            |&(_, _, t)| format!("≤ {t:.1} {}", if ratio <= t { "met" } else { "missed" }),
        );
        t.push_str(&format!("| {label} | {:.1} | `{rname}` | {:.1} | {ratio:.2} | {target} |\n", k.ns, r.ns));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(id: &str, ns: f64) -> XdpPath {
        XdpPath { id: id.into(), path: String::new(), ns, how: String::new() }
    }

    #[test]
    fn parses_name_ns_lines_only() {
        let out = "warning: something\nfloor 24\nlb 61\nlb_lru 98\nnot a number\nfoo 1 2\n";
        let p = parse(out);
        assert_eq!(p.iter().map(|r| (r.name.as_str(), r.ns)).collect::<Vec<_>>(), [("floor", 24.0), ("lb", 61.0), ("lb_lru", 98.0)]);
    }

    #[test]
    fn two_runs_keep_each_programs_minimum() {
        let m = min_of_runs(parse("floor 25\nlb 70\nlb_lru 81\n"), parse("floor 24\nlb 72\nextra 5\n"));
        assert_eq!(
            m.iter().map(|r| (r.name.as_str(), r.ns)).collect::<Vec<_>>(),
            [("floor", 24.0), ("lb", 70.0), ("lb_lru", 81.0), ("extra", 5.0)]
        );
    }

    #[test]
    fn ratio_table_pairs_the_paths_with_targets() {
        let ka = vec![path("floor", 24.0), path("dr_established", 131.0), path("nonvip", 30.0), path("vrrp_steady", 80.0)];
        let t = ratio_table(&ka, &parse("floor 20\nlb_lru 100\n"));
        assert!(t.contains("| 24.0 | `floor` | 20.0 | 1.20 | - |"), "{t}");
        assert!(t.contains("| 131.0 | `lb_lru` | 100.0 | 1.31 | ≤ 1.1 missed |"), "{t}");
        assert!(t.contains("| 30.0 | `floor` | 20.0 | 1.50 | ≤ 1.5 met |"), "{t}");
        assert!(t.contains("| 80.0 | `floor` | 20.0 | 4.00 | ≤ 4.0 met |"), "{t}");
        assert!(!t.contains("table filling"), "no pair without both sides: {t}");
    }

    #[test]
    fn new_flows_pair_with_both_reference_rows_and_the_target_with_the_hit() {
        let ka = vec![path("dr_new_filling", 190.0)];
        let t = ratio_table(&ka, &parse("lb_lru 50\nlb_lru_new 237\n"));
        assert!(t.contains("| 190.0 | `lb_lru` | 50.0 | 3.80 | ≤ 2.0 missed |"), "{t}");
        assert!(t.contains("| 190.0 | `lb_lru_new` | 237.0 | 0.80 | - |"), "{t}");
    }

    #[test]
    fn every_target_names_a_compared_row() {
        for (id, reference, _) in TARGETS {
            assert!(XDP_PAIRS.iter().any(|p| p.0 == id && p.1 == reference), "{id} {reference}");
        }
    }
}
