//! Differential tests against the real `keepalived -t` (Debian's keepalived 2.2), both run in a
//! network namespace that has the interfaces the configurations name: every sample Debian ships
//! is accepted by ka, and every problem keepalived reports with a line number is reported by ka
//! at the same line.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use ka_tests::netns::Netns;

const SAMPLES: &str = "/usr/share/doc/keepalived/samples";
const INTERFACES: &[&str] = &["eth0", "eth1", "eth2", "eth3", "eth0.1"];

fn require_keepalived() {
    let ok = std::process::Command::new("keepalived")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "keepalived is not installed; the test setup installs Debian's keepalived package \
         (apt-get install keepalived) to compare `ka check` with `keepalived -t`"
    );
}

fn namespace() -> Netns {
    ka_tests::require_root();
    require_keepalived();
    let ns = Netns::new("cfg").expect("create namespace");
    for i in INTERFACES {
        // Dummy interfaces need a kernel module some CI kernels lack; a bridge needs nothing.
        if ns.run(&["ip", "link", "add", i, "type", "dummy"]).is_err() {
            ns.run(&["ip", "link", "add", i, "type", "bridge"])
                .expect("create interface");
        }
        ns.run(&["ip", "link", "set", i, "up"])
            .expect("set interface up");
    }
    ns
}

/// The `(FILE, LINE)` pairs of keepalived's "(FILE: Line N)" / "(Line N)" diagnostics.
fn keepalived_lines(ns: &Netns, file: &Path) -> BTreeSet<(String, u32)> {
    let out = ns
        .cmd("keepalived")
        .args(["-t", "-i", "ka-test", "-f"])
        .arg(file)
        .output()
        .expect("run keepalived -t");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let main = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut set = BTreeSet::new();
    for part in text.split('(').skip(1) {
        let Some(inner) = part.split(')').next() else {
            continue;
        };
        let (name, rest) = match inner.split_once(": Line ") {
            Some((n, r)) => (n.to_string(), r),
            None => match inner.strip_prefix("Line ") {
                Some(r) => (main.clone(), r),
                None => continue,
            },
        };
        if let Ok(line) = rest.trim().parse::<u32>() {
            let name = Path::new(&name)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(name);
            set.insert((name, line));
        }
    }
    set
}

/// Runs `ka check` in the namespace; returns the exit code and the `(FILE, LINE)` it reported.
fn ka_lines(ns: &Netns, file: &Path) -> (i32, BTreeSet<(String, u32)>, String) {
    let bin = ka_tests::ka_bin();
    let out = ns
        .cmd(bin.to_str().expect("utf8 path"))
        .args(["check", "-i", "ka-test", "-f"])
        .arg(file)
        .output()
        .expect("run ka check");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut set = BTreeSet::new();
    for l in text.lines() {
        let mut it = l.splitn(4, ':');
        if let (Some(path), Some(line), Some(_col)) = (it.next(), it.next(), it.next()) {
            if let Ok(line) = line.parse::<u32>() {
                let name = Path::new(path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                set.insert((name, line));
            }
        }
    }
    (out.status.code().unwrap_or(-1), set, text)
}

fn conf_files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            n.starts_with(prefix) && p.is_file()
        })
        .collect();
    v.sort();
    v
}

fn compare(ns: &Netns, files: &[PathBuf], must_accept: bool) {
    let mut failures = Vec::new();
    for f in files {
        let kl = keepalived_lines(ns, f);
        let (code, ka, text) = ka_lines(ns, f);
        if must_accept && code != 0 {
            failures.push(format!("{}: ka check exited {code}:\n{text}", f.display()));
        }
        if text.contains("panicked") {
            failures.push(format!("{}: ka panicked:\n{text}", f.display()));
        }
        let missing: Vec<_> = kl.difference(&ka).collect();
        if !missing.is_empty() {
            failures.push(format!(
                "{}: keepalived reports lines ka does not: {missing:?}\nka said:\n{text}",
                f.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every sample config Debian ships is accepted (exit 0), and every line keepalived complains
/// about is reported by ka too.
#[test]
fn debian_samples() {
    let ns = namespace();
    let files = conf_files(Path::new(SAMPLES), "keepalived.conf");
    assert!(files.len() >= 20, "expected Debian's samples in {SAMPLES}");
    compare(&ns, &files, true);
}

/// Our own corpus: each line keepalived reports is reported by ka at the same line.
#[test]
fn corpus_lines_match_keepalived() {
    let ns = namespace();
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/config");
    compare(&ns, &conf_files(&base.join("valid"), ""), true);
    compare(&ns, &conf_files(&base.join("invalid"), ""), false);
}
