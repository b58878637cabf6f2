//! Word-at-a-time copies and stores for the hot paths.
//!
//! LLVM turns every struct or array copy of more than a few bytes into a call to aya-ebpf's
//! `memcpy`/`memset`, which move one byte per loop iteration (a 44-byte service value cost ~300
//! instructions). These helpers move 4 bytes per instruction pair, with volatile accesses so
//! LLVM cannot fold the unrolled loop back into a call.

use core::{
    mem::{align_of, size_of},
    ptr::{read_volatile, write_volatile},
};

/// Copies `*src` to `*dst`, 32 bits at a time. `T` must be 4-aligned with a size that is a
/// multiple of 4 (checked at compile time).
#[inline(always)]
pub fn copy<T: Copy>(dst: &mut T, src: &T) {
    const { assert!(align_of::<T>() >= 4 && size_of::<T>() % 4 == 0) };
    let d = dst as *mut T as *mut u32;
    let s = src as *const T as *const u32;
    let mut i = 0;
    while i < size_of::<T>() / 4 {
        // SAFETY: both pointers come from references to a 4-aligned T; i < size / 4.
        unsafe { write_volatile(d.add(i), read_volatile(s.add(i))) };
        i += 1;
    }
}

/// Writes `*dst` as the `N` words of `words` (`T` 4-aligned, `N` words long: checked at compile
/// time), one store each.
#[inline(always)]
pub fn set_words<T, const N: usize>(dst: &mut T, words: [u32; N]) {
    const { assert!(align_of::<T>() >= 4 && size_of::<T>() == 4 * N) };
    let d = dst as *mut T as *mut u32;
    let mut i = 0;
    while i < N {
        // SAFETY: from a reference to a 4-aligned T of N words; i < N.
        unsafe { write_volatile(d.add(i), words[i]) };
        i += 1;
    }
}

/// Zeroes `*dst`, 32 bits at a time (`T` 4-aligned, size a multiple of 4).
#[inline(always)]
pub fn zero<T>(dst: &mut T) {
    const { assert!(align_of::<T>() >= 4 && size_of::<T>() % 4 == 0) };
    let d = dst as *mut T as *mut u32;
    let mut i = 0;
    while i < size_of::<T>() / 4 {
        // SAFETY: from a reference to a 4-aligned T; i < size / 4.
        unsafe { write_volatile(d.add(i), 0) };
        i += 1;
    }
}

/// Stores a 16-byte address at `dst` (4-aligned: the first field, or at offset 16, of a
/// 4-aligned map key), from an IPv4 address (rest zero).
///
/// # Safety
/// `dst` must be 4-aligned and writable for 16 bytes.
#[inline(always)]
pub unsafe fn store_v4(dst: *mut [u8; 16], a: [u8; 4]) {
    let d = dst as *mut u32;
    // SAFETY: the caller's contract.
    unsafe {
        write_volatile(d, u32::from_ne_bytes(a));
        write_volatile(d.add(1), 0);
        write_volatile(d.add(2), 0);
        write_volatile(d.add(3), 0);
    }
}

/// Copies a 16-byte address from packet memory `src` (any alignment; see below) to `dst`
/// (4-aligned).
///
/// # Safety
/// `src` must be readable for 16 bytes (bounds-checked against `data_end`), `dst` 4-aligned
/// and writable for 16 bytes. Packet addresses are only 2-aligned after the Ethernet header:
/// the x86-64 and arm64 JITs (`CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS`) accept unaligned
/// 32-bit packet loads, which the verifier then allows.
#[inline(always)]
pub unsafe fn load16(dst: *mut [u8; 16], src: *const [u8; 16]) {
    let (d, s) = (dst as *mut u32, src as *const u32);
    // SAFETY: the caller's contract.
    unsafe {
        write_volatile(d, read_volatile(s));
        write_volatile(d.add(1), read_volatile(s.add(1)));
        write_volatile(d.add(2), read_volatile(s.add(2)));
        write_volatile(d.add(3), read_volatile(s.add(3)));
    }
}

/// Whether the 16-byte addresses at `a` and `b` are equal, as four word compares (ka-common's
/// `eq16` builds two `u64`s from bytes: on BPF a byte load and shift per byte, since an array
/// of `u8` is only known to be 1-aligned).
///
/// # Safety
/// `a` and `b` must be 4-aligned and readable for 16 bytes.
#[inline(always)]
pub unsafe fn eq16_words(a: *const [u8; 16], b: *const [u8; 16]) -> bool {
    let (a, b) = (a as *const u32, b as *const u32);
    // SAFETY: the caller's contract.
    unsafe {
        (read_volatile(a) ^ read_volatile(b))
            | (read_volatile(a.add(1)) ^ read_volatile(b.add(1)))
            | (read_volatile(a.add(2)) ^ read_volatile(b.add(2)))
            | (read_volatile(a.add(3)) ^ read_volatile(b.add(3)))
            == 0
    }
}

/// The sum of the four 32-bit words of the 16-byte address at `a`, as they lie in memory (a
/// one's complement sum in the making: see `crate::csum::sum_packet`).
///
/// # Safety
/// `a` must be 4-aligned and readable for 16 bytes.
#[inline(always)]
pub unsafe fn sum16_words(a: *const [u8; 16]) -> u64 {
    let a = a as *const u32;
    // SAFETY: the caller's contract.
    unsafe {
        u64::from(read_volatile(a))
            + u64::from(read_volatile(a.add(1)))
            + u64::from(read_volatile(a.add(2)))
            + u64::from(read_volatile(a.add(3)))
    }
}

/// Copies a 16-byte address from `src` (4-aligned) to packet memory `dst` (any alignment; see
/// [`load16`]).
///
/// # Safety
/// `dst` must be writable for 16 bytes (bounds-checked against `data_end`).
#[inline(always)]
pub unsafe fn store16_packet(dst: *mut [u8; 16], src: &[u8; 16]) {
    let (d, s) = (dst as *mut u32, src as *const [u8; 16] as *const u32);
    // SAFETY: the caller's contract; `src` is a reference to a field of a 4-aligned key.
    unsafe {
        write_volatile(d, read_volatile(s));
        write_volatile(d.add(1), read_volatile(s.add(1)));
        write_volatile(d.add(2), read_volatile(s.add(2)));
        write_volatile(d.add(3), read_volatile(s.add(3)));
    }
}

/// The 12 bytes destination MAC + source MAC as three words (Ethernet header order).
#[inline(always)]
pub fn macs(dmac: &[u8; 6], smac: &[u8; 6]) -> [u32; 3] {
    [
        u32::from_ne_bytes([dmac[0], dmac[1], dmac[2], dmac[3]]),
        u32::from_ne_bytes([dmac[4], dmac[5], smac[0], smac[1]]),
        u32::from_ne_bytes([smac[2], smac[3], smac[4], smac[5]]),
    ]
}

/// Reads 12 bytes at `src` (4-aligned) as three words.
///
/// # Safety
/// `src` must be 4-aligned and readable for 12 bytes.
#[inline(always)]
pub unsafe fn load12(src: *const u8) -> [u32; 3] {
    let s = src as *const u32;
    // SAFETY: the caller's contract.
    unsafe {
        [
            read_volatile(s),
            read_volatile(s.add(1)),
            read_volatile(s.add(2)),
        ]
    }
}

/// Writes three words at `dst` (packet memory: the MAC addresses of an Ethernet header).
///
/// # Safety
/// `dst` must be writable for 12 bytes (bounds-checked against `data_end`); unaligned as in
/// [`load16`].
#[inline(always)]
pub unsafe fn store12(dst: *mut u8, w: &[u32; 3]) {
    let d = dst as *mut u32;
    // SAFETY: the caller's contract.
    unsafe {
        write_volatile(d, w[0]);
        write_volatile(d.add(1), w[1]);
        write_volatile(d.add(2), w[2]);
    }
}
