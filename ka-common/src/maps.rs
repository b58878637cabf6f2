//! Map names and sizes, shared by the kernel and userspace side.

/// Name of the per-CPU counters array of `ka_xdp` (see [`crate::stats::Counter`]).
pub const STATS_MAP: &str = "KA_STATS";

/// Name of the XDP program that every interface of a director gets.
pub const XDP_PROGRAM: &str = "ka_xdp";

/// Name of the bpffs directory under which every instance pins its maps:
/// `/sys/fs/bpf/ka/<instance>/`.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf/ka";

/// Directory that holds the control socket of every instance: `/run/ka/<instance>.sock`.
pub const RUN_DIR: &str = "/run/ka";
