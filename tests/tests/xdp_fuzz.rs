//! The XDP fuzzer in the test suite (the campaign itself is `cargo xtask fuzz --target xdp`,
//! see `fuzz/engine.rs`): the committed corpus `fuzz/corpus/xdp` replayed with every invariant
//! checked, a short campaign that must find nothing, and the invariant checker shown to catch
//! broken output.

mod common;
#[path = "fuzz/engine.rs"]
mod engine;
#[path = "fuzz/frames.rs"]
mod frames;

use std::{path::PathBuf, time::Duration};

use engine::{Record, XdpRun};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/xdp")
}

/// Every input of the committed corpus (a few dozen, exported from the fixture frames and
/// grown by campaigns) runs through `ka_xdp`/`ka_decap` with every invariant holding.
#[test]
fn xdp_corpus_replays_clean() {
    ka_tests::require_root();
    let files = engine::read_corpus(&[corpus_dir()]);
    assert!(files.len() >= 20, "the XDP corpus {} has {} inputs; it is committed with a few dozen", corpus_dir().display(), files.len());
    let failures = engine::replay(files);
    assert!(failures.is_empty(), "{} corpus inputs break invariants:\n{}", failures.len(), failures.iter().map(|(p, e)| format!("{}: {e}", p.display())).collect::<Vec<_>>().join("\n"));
}

/// A bounded campaign (`KA_FUZZ_SECONDS`, default 15 s) from the committed corpus breaks no
/// invariant, and explores: thousands of inputs, dozens of distinct counter signatures.
#[test]
fn xdp_short_campaign_finds_nothing() {
    ka_tests::require_root();
    let secs = std::env::var("KA_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let artifacts = std::env::temp_dir().join(format!("ka-xdp-fuzz-{}", std::process::id()));
    let report = engine::campaign(engine::Options {
        duration: Duration::from_secs(secs),
        max_execs: None,
        seeds: vec![corpus_dir()],
        corpus_out: None,
        artifacts: artifacts.clone(),
        seed: 0x6b61_5f78_6470,
        progress: None,
    });
    eprintln!("xdp: {} execs, {} crashes, {} signatures in {:?}", report.execs, report.crashes, report.signatures, report.elapsed);
    assert_eq!(report.crashes, 0, "invariants broken (reproducers under {}):\n{}", artifacts.display(), report.failures.iter().map(|(e, p)| format!("{}: {e}", p.display())).collect::<Vec<_>>().join("\n"));
    assert!(report.execs >= 1000, "only {} inputs in {secs} s", report.execs);
    assert!(report.signatures >= 40, "only {} distinct signatures: the mutator does not reach the datapath's paths", report.signatures);
    let _ = std::fs::remove_dir_all(artifacts);
}

/// The checker is not blind: a forwarded frame whose checksum, length or bytes were damaged,
/// a wrong verdict counter, a changed passed frame, ABORTED, are each reported.
#[test]
fn the_invariant_checker_catches_broken_output() {
    ka_tests::require_root();
    let ns = engine::lab();
    let failures = ns
        .enter(|| {
            let mut h = engine::Harness::new();
            let mut failures = Vec::new();
            // A SYN to the DR service behind lb0, and a UDP packet to the NAT one.
            let mut dr = ka_tests::packet::Frame::tcp4("198.18.0.1", "198.18.100.1", 40000, 80, 0x02);
            dr.eth_dst = engine::LB0_MAC;
            let nat = ka_tests::packet::Frame::udp4("198.18.0.1", "198.18.100.3", 40000, 53).payload(b"query").build();
            let pass = ka_tests::packet::Frame::udp4("198.18.0.1", "198.18.0.9", 1, 2).build();
            for frame in [dr.build(), nat, pass] {
                let rec = Record { sel: 0, frame };
                let run = h.run(&rec).expect("a good packet passes every invariant");
                let forwarded = run.action == 3 || run.action == 4;
                let mut tampered: Vec<(&str, XdpRun)> = Vec::new();
                let mut t = run.clone();
                t.action = 0;
                tampered.push(("ABORTED", t));
                let mut t = run.clone();
                t.delta[ka_common::stats::Counter::VerdictDrop.index() as usize] += 1;
                tampered.push(("two verdict counters", t));
                let mut t = run.clone();
                let n = t.out.len();
                t.out[n - 1] ^= 0x40;
                tampered.push(("a changed byte", t));
                if forwarded {
                    let mut t = run.clone();
                    t.out[14 + 10] ^= 1;
                    tampered.push(("a bad IPv4 header checksum", t));
                    let mut t = run.clone();
                    t.out.truncate(t.out.len() - 1);
                    tampered.push(("a frame shorter than its IP length", t));
                    let mut t = run.clone();
                    t.out[0] = 0x42;
                    tampered.push(("an unknown next hop", t));
                }
                for (what, t) in tampered {
                    if h.check(&rec, &t).is_ok() {
                        failures.push(format!("{what} not caught (verdict {})", run.action));
                    }
                }
            }
            failures
        })
        .expect("enter netns")
        .join()
        .expect("checker thread");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Inputs survive their file format, and junk decodes to clamped frames, never a panic.
#[test]
fn inputs_round_trip() {
    let recs = vec![Record { sel: 5, frame: vec![1; 60] }, Record { sel: 12, frame: vec![2; 14] }];
    assert_eq!(engine::decode(&engine::encode(&recs)), recs);
    for junk in [&b""[..], b"\x00", b"\x01\xff\xff\x00", &[7u8; 9000]] {
        for r in engine::decode(junk) {
            assert!((engine::MIN_FRAME..=engine::MAX_FRAME).contains(&r.frame.len()));
        }
    }
}
