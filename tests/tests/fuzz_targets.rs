//! The libFuzzer targets' bodies (`fuzz/src/lib.rs`) in the test suite, without the sanitizer
//! build cargo-fuzz needs: each target's committed corpus (`fuzz/corpus/<target>/`) replayed,
//! then a bounded mutation loop from it (`KA_FUZZ_SECONDS` per target, default 15; `cargo
//! xtask test --fuzz-seconds`). Coverage-guided campaigns are `cargo xtask fuzz`.

#[path = "../../fuzz/src/lib.rs"]
mod ka_fuzz;

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    path::PathBuf,
    time::{Duration, Instant},
};

/// Tokens the mutator splices in, per target (what the formats are made of).
const CONFIG_TOKENS: &[&str] = &[
    "include ", "includer ", "includea ", "\n=== ", "\n=== +x ", "/", "*", "?", "[a-z]", "{a,b}", "{", "}", "\n", "$X=", "${X}", "${_PWD}",
    "~SEQ(N, 1, 3) ", "@fuzz ", "vrrp_instance V {\n", "virtual_server 198.18.0.1 80 {\n", "real_server 198.18.1.1 80 {\n",
    "virtual_ipaddress {\n", "global_defs {\n", "interface eth0\n", "priority 100\n", "#", "\"", "\\\n", "..", "../",
];
const CONTROL_TOKENS: &[&str] = &[
    "{\"cmd\":", "\"status\"", "\"real_server\"", "\"service\":", "{\"addr\":{\"addr\":\"198.18.0.10\",\"port\":80}}", "{\"group\":\"G\"}",
    "{\"fwmark\":7}", "\"server\":", "{\"addr\":\"198.18.1.1\",\"port\":null}", "\"action\":", "{\"weight\":", "\"drain\"", "\"protocol\":\"udp\",", "}", ",", "\n",
    "\\u0000", "[", "]", "null", "-1", "4294967296",
];

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// One to four byte-level edits: flips, interesting bytes, inserts, deletes, duplicated runs,
/// tokens of the format, a splice with another corpus entry.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, tokens: &[&str], corpus: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(4) {
        let n = data.len();
        match rng.below(8) {
            0 if n > 0 => {
                let i = rng.below(n);
                data[i] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                let i = rng.below(n);
                data[i] = [0u8, 0xff, 0x7f, 0x80, b'\n', b'0', b'9', b' '][rng.below(8)];
            }
            2 if !tokens.is_empty() => {
                let i = rng.below(n + 1);
                let t = tokens[rng.below(tokens.len())].as_bytes();
                data.splice(i..i, t.iter().copied());
            }
            3 if n > 0 => {
                let i = rng.below(n);
                let k = (1 + rng.below(16)).min(n - i);
                data.drain(i..i + k);
            }
            4 if n > 0 => {
                let i = rng.below(n);
                let k = (1 + rng.below(32)).min(n - i);
                let run = data[i..i + k].to_vec();
                let at = rng.below(n + 1);
                data.splice(at..at, run);
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(n + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ => {
                let i = rng.below(n + 1);
                data.insert(i, rng.next() as u8);
            }
        }
    }
    data.truncate(64 * 1024);
}

/// Replays `target`'s corpus, then mutates it for the time budget; a panic fails the test
/// with the input saved to a file.
fn fuzz(target: &str, body: fn(&[u8]), tokens: &[&str]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    assert!(corpus.len() >= 10, "{} holds {} inputs; the committed corpus has a dozen or more", dir.display(), corpus.len());
    let secs: u64 = std::env::var("KA_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let seeds = corpus.len();
    let mut rng = Rng(0x6b61_2d66_757a_7a31 ^ target.len() as u64);
    let started = Instant::now();
    let mut execs = 0u64;
    let mut i = 0usize;
    loop {
        let input = if i < seeds {
            corpus[i].clone()
        } else {
            if started.elapsed() >= Duration::from_secs(secs) {
                break;
            }
            let mut d = corpus[rng.below(corpus.len())].clone();
            mutate(&mut rng, &mut d, tokens, &corpus);
            d
        };
        i += 1;
        execs += 1;
        if catch_unwind(AssertUnwindSafe(|| body(&input))).is_err() {
            let path = std::env::temp_dir().join(format!("ka-fuzz-{target}-crash-{}", std::process::id()));
            let _ = std::fs::write(&path, &input);
            panic!("{target}: an input makes the target panic (saved to {}; replay it with `cargo xtask fuzz`'s binary or this test)", path.display());
        }
        // Keep a few mutants around so edits compound.
        if i > seeds && rng.below(64) == 0 && corpus.len() < 4 * seeds {
            corpus.push(input);
        }
    }
    eprintln!("{target}: {seeds} corpus inputs replayed, {execs} execs in {:.1} s, 0 crashes", started.elapsed().as_secs_f64());
}

#[test]
fn config_parse() {
    fuzz("config_parse", ka_fuzz::config_parse, CONFIG_TOKENS);
}

#[test]
fn control_decode() {
    fuzz("control_decode", ka_fuzz::control_decode, CONTROL_TOKENS);
}

#[test]
fn sync_decode() {
    fuzz("sync_decode", ka_fuzz::sync_decode, &[]);
}

#[test]
fn bfd_decode() {
    fuzz("bfd_decode", ka_fuzz::bfd_decode, &[]);
}

#[test]
fn vrrp_decode() {
    fuzz("vrrp_decode", ka_fuzz::vrrp_decode, &[]);
}
