//! ka: the userspace side. The binary is `src/main.rs`; this library holds everything it is
//! built from, so the integration tests and benchmarks can use the same pieces.

pub mod announce;
pub mod bfd;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod datapath;
pub mod decap;
pub mod engine;
pub mod health;
pub mod instance;
pub mod keepalived;
pub mod lb;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod pins;
pub mod preflight;
pub mod reload;
pub mod rs_control;
pub mod sdnotify;
pub mod statics;
pub mod status;
pub mod supervise;
pub mod threads;
pub mod vrrp;
pub mod xdp_mode;
pub mod xdp_watch;

/// The eBPF object built from `ka-ebpf` by `build.rs` (empty when built with `KA_SKIP_EBPF=1`).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ka-ebpf"));
