//! Types shared by the ka XDP programs (`ka-ebpf`) and userspace (`ka-userspace`).
//!
//! This crate is the single source of truth for map names, map sizes, counter indexes and
//! on-the-wire layouts. Everything here is `#![no_std]`, `#[repr(C)]` and, for map types,
//! `bytemuck::Pod` so that hidden padding is rejected at compile time.
#![no_std]

pub mod maps;
pub mod wire;
pub mod stats;
pub mod vrrp;
pub mod lb;
pub mod sched;
pub mod vrrp_fast;
pub mod bench;
pub mod sync;

/// `aya::Pod` for map key/value types, userspace only. Everything the kernel and userspace
/// exchange through maps is plain old data.
#[cfg(feature = "user")]
mod user {}
