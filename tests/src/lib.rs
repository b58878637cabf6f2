//! Shared helpers of ka's integration tests, lab and benchmarks: a network-namespace guard
//! ([`netns`]), the load-balancer LAN ([`lan`]), a packet builder ([`packet`]), the soak
//! ([`soak`]), and helpers to find and drive the `ka` binary.
//!
//! This crate's library has no dependency on `ka-userspace` (only its tests do), so `xtask` can
//! use it before the eBPF toolchain is installed.

pub mod bird;
pub mod capture;
pub mod flood;
pub mod daemon;
pub mod exporter;
pub mod keepalived;
pub mod lan;
pub mod netns;
pub mod packet;
pub mod prom;
pub mod soak;
pub mod vrrp_lan;
pub mod xdp;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

/// Panics with a clear reason unless the process runs as root. Tests that need namespaces,
/// XDP or BPF_PROG_TEST_RUN call this first: a test that cannot run fails, it never passes
/// silently.
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (network namespaces, XDP, BPF_PROG_TEST_RUN); run it through \
         `cargo xtask test`, which runs as root"
    );
}

/// Path of the `ka` binary under test: `$KA_BIN`, or `ka` next to the test executable's
/// directory (`target/<profile>/ka`). Panics with a clear reason if it is missing.
pub fn ka_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KA_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test>-<hash>  →  target/<profile>/ka
    let candidate = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("ka"))
        .expect("test executable has no grandparent directory");
    assert!(
        candidate.exists(),
        "ka binary not found at {}; build it first (`cargo build -p ka-userspace`) or set KA_BIN \
         (`cargo xtask test` does both)",
        candidate.display()
    );
    candidate
}

/// Polls `cond` every 20 ms until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A unique name: `<prefix>-<pid>-<n>`, at most 15 bytes (the interface-name limit) when
/// `prefix` is at most 4 bytes.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}
