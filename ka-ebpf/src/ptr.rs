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
