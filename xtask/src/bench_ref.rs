//! The reference XDP load balancer beside ka's XDP benchmark: the shared `ref-lb` bench (three
//! small C programs timed with BPF_PROG_TEST_RUN by its `run.sh`), run in the same
//! `cargo xtask bench` run so that ka's ns/packet can be read as ratios. It is found at
//! `../shared/bench/ref-lb` beside the workspace (the layout of the development machines and CI)
//! or where `--ref-lb` says. Its tools (clang-22, bpftool, libbpf-dev) are installed with apt
//! when missing, for this benchmark only: the build and the tests do not need them.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use crate::{
    exec::{exec, output},
    report::RefPath,
};

/// Debian packages `run.sh` needs.
const PACKAGES: [&str; 3] = ["clang-22", "bpftool", "libbpf-dev"];

/// The default place of the reference: `shared/bench/ref-lb` beside the workspace.
pub fn default_dir() -> PathBuf {
    crate::workspace_root().join("../shared/bench/ref-lb")
}

/// Runs the reference and returns its programs' ns/packet.
///
/// # Errors
/// The directory has no `run.sh`, a tool cannot be installed, or the script fails or prints
/// nothing this parser knows.
pub fn run(dir: &Path) -> anyhow::Result<Vec<RefPath>> {
    let script = dir.join("run.sh");
    anyhow::ensure!(script.is_file(), "no reference load balancer at {} (give --ref-lb DIR)", dir.display());
    tools()?;
    let out = output(Command::new("bash").arg(&script).current_dir(dir)).context("running the reference load balancer")?;
    let paths = parse(&out);
    anyhow::ensure!(!paths.is_empty(), "{} printed no `NAME ns` line:\n{out}", script.display());
    Ok(paths)
}

/// Installs clang-22, bpftool and libbpf-dev when one is missing.
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

/// The same-run ratios as a Markdown table: each pair of [`crate::report::XDP_PAIRS`] that both
/// sides measured.
pub fn ratio_table(ka: &[crate::report::XdpPath], reference: &[RefPath]) -> String {
    let mut t = String::from("| path | ka ns | reference | reference ns | ka / reference |\n|---|---:|---|---:|---:|\n");
    for (kid, rname, label) in crate::report::XDP_PAIRS {
        let (Some(k), Some(r)) = (ka.iter().find(|p| p.id == kid), reference.iter().find(|p| p.name == rname)) else { continue };
        t.push_str(&format!("| {label} | {:.1} | `{rname}` | {:.1} | {:.2} |\n", k.ns, r.ns, k.ns / r.ns.max(1e-9)));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_ns_lines_only() {
        let out = "warning: something\nfloor 24\nlb 61\nlb_lru 98\nnot a number\nfoo 1 2\n";
        let p = parse(out);
        assert_eq!(p.iter().map(|r| (r.name.as_str(), r.ns)).collect::<Vec<_>>(), [("floor", 24.0), ("lb", 61.0), ("lb_lru", 98.0)]);
    }

    #[test]
    fn ratio_table_pairs_the_paths() {
        let ka = vec![
            crate::report::XdpPath { id: "floor".into(), path: String::new(), ns: 24.0, how: String::new() },
            crate::report::XdpPath { id: "dr_established".into(), path: String::new(), ns: 131.0, how: String::new() },
        ];
        let t = ratio_table(&ka, &parse("floor 20\nlb_lru 100\n"));
        assert!(t.contains("| 24.0 | `floor` | 20.0 | 1.20 |"), "{t}");
        assert!(t.contains("| 131.0 | `lb_lru` | 100.0 | 1.31 |"), "{t}");
        assert!(!t.contains("`lb` |"), "no pair without both sides: {t}");
    }
}
