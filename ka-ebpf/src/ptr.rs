//! Bounds-checked access to packet memory.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;

/// Largest offset read or written (headers sit well inside the first 16 KiB of any frame).
pub const MAX_OFFSET: usize = 0x3fff;

/// Returns a pointer to a `T` at `offset` bytes into the frame, or `None` when the frame is too
/// short. Every packet read goes through here so the verifier always sees the bounds check
/// against `data_end` right before the access.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    // Verifier: an offset read back from the stack (a `Parsed` handed to a BPF-to-BPF call) has
    // lost its bounds, and packet-pointer arithmetic needs them; this check restores them.
    if offset > MAX_OFFSET {
        return None;
    }
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// Reads a copy of the `T` at `offset`, or `None` when the frame is too short.
#[inline(always)]
pub fn read_at<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    // SAFETY: ptr_at checked that size_of::<T>() bytes at offset lie inside the frame; the wire
    // structs have alignment 1.
    ptr_at::<T>(ctx, offset).map(|p| unsafe { *p })
}

/// Returns a mutable pointer to a `T` at `offset` bytes into the frame, or `None` when the frame
/// is too short (same bounds check as [`ptr_at`]).
#[inline(always)]
pub fn ptr_at_mut<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    ptr_at::<T>(ctx, offset).map(|p| p as *mut T)
}

/// Loads the 4 packet bytes at `p` as one word (a `u32` in the host's byte order, i.e. the
/// bytes of the wire in memory order; `u32::from_be` gives the network-order value).
///
/// # Safety
/// `p` must be readable for 4 bytes (bounds-checked against `data_end`). Packet fields are
/// only 2-aligned after the Ethernet header: the x86-64 and arm64 JITs
/// (`CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS`) accept unaligned packet loads, which the
/// verifier then allows; one load instead of LLVM's four byte loads and three shifts for a
/// field of byte arrays (BPF CPU v1 has no unaligned access of its own).
#[inline(always)]
pub unsafe fn load32(p: *const u8) -> u32 {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::read_volatile(p as *const u32) }
}

/// Loads the 2 packet bytes at `p` as one half-word (see [`load32`]).
///
/// # Safety
/// As [`load32`], for 2 bytes.
#[inline(always)]
pub unsafe fn load16(p: *const u8) -> u16 {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::read_volatile(p as *const u16) }
}
