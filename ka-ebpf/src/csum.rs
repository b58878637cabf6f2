//! Internet checksum helpers (RFC 1071): the one incremental update (RFC 1624) every rewrite
//! uses ([`Delta`]), a from-scratch sum for headers built here, and a bounded sum over packet
//! bytes for VRRP adverts.

use aya_ebpf::programs::XdpContext;

use crate::ptr::{load32, ptr_at};

/// Folds a 32-bit one's complement sum to 16 bits.
#[inline(always)]
pub fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Adds the 16-bit big-endian words of `b` to a partial sum (`N` even).
#[inline(always)]
pub fn add_bytes<const N: usize>(mut sum: u32, b: &[u8; N]) -> u32 {
    let mut i = 0;
    while i + 1 < N {
        sum += u32::from(u16::from_be_bytes([b[i], b[i + 1]]));
        i += 2;
    }
    sum
}

/// The checksum field of `bytes` summed from scratch (its own field zero): `!fold(sum)`.
#[inline(always)]
pub fn of_bytes<const N: usize>(bytes: &[u8; N]) -> [u8; 2] {
    (!fold(add_bytes(0, bytes))).to_be_bytes()
}

/// The change of a set of 16-bit words, RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`, with
/// `~m + m'` summed over every changed word. One value covers every checksum a rewrite touches:
/// a field counted in two checksums (an address in the IP header and in the transport
/// pseudo-header) is recorded once and applied to both; deltas add up (ICMP's checksum covers
/// the embedded header's changes and its checksum's).
#[derive(Clone, Copy, Default)]
pub struct Delta(u32);

impl Delta {
    /// Records that the words of `old` become those of `new` (`N` even).
    #[inline(always)]
    pub fn replace<const N: usize>(&mut self, old: &[u8; N], new: &[u8; N]) {
        let mut i = 0;
        while i + 1 < N {
            self.0 += u32::from(!u16::from_be_bytes([old[i], old[i + 1]]));
            self.0 += u32::from(u16::from_be_bytes([new[i], new[i + 1]]));
            i += 2;
        }
    }

    /// Replaces the packet field at `p` by `new` in place and records the change (`N` even).
    ///
    /// # Safety
    /// `p` must point into packet memory, valid for reads and writes of `N` bytes
    /// (bounds-checked against `data_end`); unaligned as in [`crate::ptr::load32`].
    #[inline(always)]
    pub unsafe fn swap<const N: usize>(&mut self, p: *mut [u8; N], new: &[u8; N]) {
        let b = p as *mut u16;
        let mut i = 0;
        while i + 1 < N {
            // SAFETY: the caller's contract; i + 1 < N. Half-words are read and written in
            // place, never copied out: a copied address took 16 spilled stack slots, and the
            // rewrites sit at the bottom of the deepest call chain (512-byte limit).
            unsafe {
                let old = u16::from_be(core::ptr::read_volatile(b.add(i / 2)));
                let n = u16::from_be_bytes([new[i], new[i + 1]]);
                self.0 += u32::from(!old) + u32::from(n);
                core::ptr::write_volatile(b.add(i / 2), n.to_be());
            }
            i += 2;
        }
    }

    /// This change and `other`'s.
    #[inline(always)]
    pub fn plus(self, other: Delta) -> Delta {
        Delta(self.0 + other.0)
    }

    /// The checksum field `check` after the change.
    #[inline(always)]
    pub fn apply(self, check: [u8; 2]) -> [u8; 2] {
        (!fold(u32::from(!u16::from_be_bytes(check)) + self.0)).to_be_bytes()
    }
}

/// Longest message [`sum_packet`] sums: 512 bytes (a VRRP advert with 31 IPv6 or 126 IPv4
/// addresses). Longer adverts are left to userspace.
pub const MAX_SUM_LEN: usize = 512;

/// One's complement sum of `len` packet bytes at `off` (an odd last byte padded with zero),
/// plus `words`, or `None` if they run past the frame or `len` exceeds [`MAX_SUM_LEN`].
///
/// Whole words are summed as they lie in memory (RFC 1071 §2(B): the sum is byte-order
/// independent, so little-endian words give the byte-swapped sum, swapped back at the end):
/// one load and one add per 4 bytes. `words` is a sum of other such words (at most 64 of
/// them: a pseudo-header's addresses, `crate::mem::sum16_words`), folded in with the packet's.
#[inline(always)]
pub fn sum_packet(ctx: &XdpContext, off: usize, len: usize, words: u64) -> Option<u32> {
    if len > MAX_SUM_LEN {
        return None;
    }
    // 64-bit accumulator of 32-bit words: no carry is lost over 128 + 64 words.
    let mut sum = words;
    let mut at = 0usize;
    // Verifier: constant trip counts with early exits, 8 bytes per step so the walk stays short
    // (every iteration is a distinct verifier state); each step is bounds-checked by ptr_at.
    for _ in 0..MAX_SUM_LEN / 8 {
        if at + 8 > len {
            break;
        }
        let p = ptr_at::<[u8; 8]>(ctx, off + at)? as *const u8;
        // SAFETY: bounds-checked by ptr_at (8 bytes).
        sum += u64::from(unsafe { load32(p) }) + u64::from(unsafe { load32(p.add(4)) });
        at += 8;
    }
    // Then at most one word and one half-word (fewer than 8 bytes are left).
    if at + 4 <= len {
        let p = ptr_at::<[u8; 4]>(ctx, off + at)? as *const u8;
        // SAFETY: bounds-checked by ptr_at (4 bytes).
        sum += u64::from(unsafe { load32(p) });
        at += 4;
    }
    let mut tail = 0u32;
    if at + 2 <= len {
        let w = crate::ptr::read_at::<[u8; 2]>(ctx, off + at)?;
        tail += u32::from(u16::from_be_bytes(w));
        at += 2;
    }
    if at < len && at > 0 {
        // Verifier: a 1-byte read compiles to `p >= data_end`, from which the verifier derives
        // no range at offset 0; read the last two bytes instead.
        let w = crate::ptr::read_at::<[u8; 2]>(ctx, off + at - 1)?;
        tail += u32::from(w[1]) << 8;
    }
    // Fold the sum of little-endian words to 32 bits (below 2^32 after two folds: at most
    // 192 words of 32 bits), then to 16, swap it to network order and add the tail.
    let mut s = (sum & 0xffff_ffff) + (sum >> 32);
    s = (s & 0xffff_ffff) + (s >> 32);
    Some(u32::from(fold(s as u32).swap_bytes()) + tail)
}
