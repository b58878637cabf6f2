//! The XDP fuzzing campaign (`cargo xtask fuzz --target xdp` runs it as root): random and
//! mutated frames through `ka_xdp` and `ka_decap` with BPF_PROG_TEST_RUN, every invariant of
//! `tests/fuzz/engine.rs` checked. Prints `xdp: N execs, M crashes` and exits 1 on a crash
//! (reproducers under `--artifacts`).
//!
//! ```text
//! xdp_fuzz [--seconds S] [--max-execs N] [--seed N] [--seeds DIR]... [--corpus DIR]
//!          [--artifacts DIR] [--progress S]
//! xdp_fuzz --replay FILE|DIR...          runs inputs (e.g. a crash reproducer) and reports
//! xdp_fuzz --import DIR --out DIR        fixture frames (KA_XDP_SEEDS) into a seed corpus
//! ```

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/fuzz/engine.rs"]
mod engine;
#[path = "../tests/fuzz/frames.rs"]
mod frames;

use std::{path::PathBuf, process::ExitCode, time::Duration};

fn usage(e: &str) -> ExitCode {
    eprintln!("xdp_fuzz: {e}\nusage: xdp_fuzz [--seconds S] [--max-execs N] [--seed N] [--seeds DIR]... [--corpus DIR] [--artifacts DIR] [--progress S] | --replay PATH... | --import DIR --out DIR");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut opts = engine::Options {
        duration: Duration::from_secs(60),
        max_execs: None,
        seeds: Vec::new(),
        corpus_out: None,
        artifacts: PathBuf::from("fuzz/artifacts/xdp"),
        seed: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64),
        progress: Some(Duration::from_secs(60)),
    };
    let mut replay: Vec<PathBuf> = Vec::new();
    let mut import: Option<PathBuf> = None;
    let mut out: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        let r: Result<(), String> = (|| {
            match a.as_str() {
                "--seconds" => opts.duration = Duration::from_secs(val()?.parse().map_err(|e| format!("--seconds: {e}"))?),
                "--max-execs" => opts.max_execs = Some(val()?.parse().map_err(|e| format!("--max-execs: {e}"))?),
                "--seed" => opts.seed = val()?.parse().map_err(|e| format!("--seed: {e}"))?,
                "--seeds" => opts.seeds.push(val()?.into()),
                "--corpus" => opts.corpus_out = Some(val()?.into()),
                "--artifacts" => opts.artifacts = val()?.into(),
                "--progress" => opts.progress = Some(Duration::from_secs(val()?.parse().map_err(|e| format!("--progress: {e}"))?)),
                "--replay" => replay.push(val()?.into()),
                "--import" => import = Some(val()?.into()),
                "--out" => out = Some(val()?.into()),
                _ => return Err(format!("unknown argument {a}")),
            }
            Ok(())
        })();
        if let Err(e) = r {
            return usage(&e);
        }
    }
    if let Some(from) = import {
        let Some(to) = out else { return usage("--import needs --out") };
        let (read, written) = engine::import(&from, &to);
        println!("xdp: {read} fixture frames, {written} seeds written to {}", to.display());
        return ExitCode::SUCCESS;
    }
    if !replay.is_empty() {
        let mut files = Vec::new();
        for p in &replay {
            if p.is_dir() {
                files.extend(engine::read_corpus(std::slice::from_ref(p)));
            } else {
                match std::fs::read(p) {
                    Ok(b) => files.push((p.clone(), engine::decode(&b))),
                    Err(e) => return usage(&format!("{}: {e}", p.display())),
                }
            }
        }
        let n = files.len();
        let failures = engine::replay(files);
        for (p, e) in &failures {
            println!("{}: {e}", p.display());
        }
        println!("xdp: {n} inputs replayed, {} crashes", failures.len());
        return if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    let seed = opts.seed;
    let r = engine::campaign(opts);
    for (e, p) in &r.failures {
        println!("crash: {} ({})", p.display(), e.lines().next().unwrap_or_default());
    }
    println!(
        "xdp: {} execs ({} packets), {} crashes, corpus {}, {} signatures, {:.0} s, seed {seed}",
        r.execs,
        r.packets,
        r.crashes,
        r.corpus,
        r.signatures,
        r.elapsed.as_secs_f64()
    );
    if r.crashes == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
