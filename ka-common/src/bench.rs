//! Benchmark tools carried in the XDP object and never attached by ka: the end-to-end
//! benchmark's traffic generator ([`GEN_PROGRAM`]), its packet sink ([`SINK_PROGRAM`]) and its
//! forwarding floors ([`FWD_PROGRAM`], [`FWD_TOUCH_PROGRAM`]), with the layout of the maps that
//! drive them.
//!
//! The generator runs under `BPF_PROG_TEST_RUN` in live-frames mode
//! (`BPF_F_TEST_XDP_LIVE_FRAMES`). The kernel recycles the frame pages without re-initialising
//! them, and the load balancer downstream rewrites frames in place, so the generator writes
//! the whole header from the template in [`GEN_MAP`] into every frame before sending it out
//! with `XDP_TX`.

use bytemuck::{Pod, Zeroable};

/// The generator program: copies the [`GenConfig`] header into the frame, varies the UDP
/// source port over [`GenConfig::flows`] flows, returns `XDP_TX`.
pub const GEN_PROGRAM: &str = "ka_xdp_gen";
/// The sink program: counts every frame in [`SINK_MAP`] and drops it.
pub const SINK_PROGRAM: &str = "ka_xdp_sink";
/// The forwarding floor: redirects every frame to the interface in [`FWD_MAP`], untouched.
pub const FWD_PROGRAM: &str = "ka_xdp_fwd";
/// The forwarding floor that touches the frame as any load balancer must: reads its Ethernet
/// and IPv4 headers, swaps the Ethernet addresses, then redirects it as [`FWD_PROGRAM`] does
/// (the frame's first cache line read and written, which the plain floor never touches).
pub const FWD_TOUCH_PROGRAM: &str = "ka_xdp_fwd_touch";

/// The generator's template, `Array<GenConfig>` of 1.
pub const GEN_MAP: &str = "KA_GEN";
/// The generator's per-CPU packet sequence (picks the flow), `PerCpuArray<u32>` of 1.
pub const GEN_SEQ_MAP: &str = "KA_GEN_SEQ";
/// The sink's counters, `PerCpuArray<u64>` of [`SINK_COUNTERS`]: [`SINK_PACKETS`],
/// [`SINK_BYTES`].
pub const SINK_MAP: &str = "KA_SINK";
/// The floor's target interface index, `Array<u32>` of 1.
pub const FWD_MAP: &str = "KA_FWD";

/// Index of the packet count in [`SINK_MAP`].
pub const SINK_PACKETS: u32 = 0;
/// Index of the byte count in [`SINK_MAP`].
pub const SINK_BYTES: u32 = 1;
/// Entries of [`SINK_MAP`].
pub const SINK_COUNTERS: u32 = 2;

/// Bytes of the header the generator writes: Ethernet (14), IPv4 without options (20), UDP (8).
pub const GEN_HDR_LEN: usize = 42;
/// Room for the header in [`GenConfig::hdr`] (a multiple of 8, so the program copies words).
pub const GEN_HDR_ROOM: usize = 48;
/// Offset of the UDP source port in the header.
pub const GEN_SPORT_OFF: usize = 34;
/// Offset of the UDP checksum in the header.
pub const GEN_UDP_CHECK_OFF: usize = 40;

// The offsets follow the header layout.
const _: () = assert!(GEN_SPORT_OFF == core::mem::size_of::<crate::wire::EthHdr>() + 20);
const _: () = assert!(GEN_UDP_CHECK_OFF == GEN_SPORT_OFF + 6 && GEN_HDR_LEN == GEN_SPORT_OFF + 8);
const _: () = assert!(GEN_HDR_LEN <= GEN_HDR_ROOM && GEN_HDR_ROOM.is_multiple_of(8));

/// The generator's template.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct GenConfig {
    /// The first [`GEN_HDR_LEN`] bytes of every frame: Ethernet, IPv4 (IHL 5) and UDP headers
    /// as on the wire, with valid IPv4 and UDP checksums for the frame's payload and the source
    /// port found here. Bytes past [`GEN_HDR_LEN`] are ignored.
    pub hdr: [u8; GEN_HDR_ROOM],
    /// Flows, host byte order: the source port of the `n`th frame is the template's plus
    /// `n % flows` (the UDP checksum is updated to match). 0 and 1 both mean one flow.
    pub flows: u32,
    /// Zero.
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: `bytemuck::Pod` (no padding, any bit pattern is valid).
    unsafe impl aya::Pod for GenConfig {}
}
