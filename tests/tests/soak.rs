//! A short soak (the long one is `cargo xtask soak --minutes 30`): the lab's LAN under traffic
//! for 75 s while every kind of fault fires once in a seeded order (a real server dies, a
//! failover, a reload, kill -9 and restart, a link flap), then more at random. Every invariant
//! of [`ka_tests::soak`] must hold: no long-lived connection lost unless its real server died,
//! never two MASTERs for longer than an advert interval, daemons' memory and descriptors within
//! their bounds, every fault recovered from and every reload accepted.

use std::time::Duration;

use ka_tests::soak::{judge::FaultKind, run, Options};

#[test]
fn short_soak_keeps_every_invariant() {
    ka_tests::require_root();
    let seed = std::env::var("KA_SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(14);
    let opts = Options::new(ka_tests::ka_bin(), Duration::from_secs(75), seed);
    let report = run(&opts).expect("soak");
    println!("{report}");
    assert!(report.violations.is_empty(), "violations:\n{report}");
    for kind in FaultKind::ALL {
        assert!(report.faults.iter().any(|(k, n)| *k == kind && *n > 0), "{} never fired:\n{report}", kind.name());
    }
    assert!(report.long_opened >= 6 && report.echoes > 100, "too little traffic to judge:\n{report}");
    assert!(report.masters.handovers >= 2, "the failover should show as handovers on the wire:\n{report}");
    assert!(report.processes.iter().any(|p| p.figures(opts.bounds.warmup).is_some()), "no daemon lived past its warm-up:\n{report}");
}
