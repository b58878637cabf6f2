//! Internet checksum helpers (RFC 1071): incremental updates (RFC 1624) for NAT rewrites, a
//! from-scratch IPv4 header checksum for tunnel headers, and a bounded sum over packet bytes for
//! VRRP adverts.

use aya_ebpf::programs::XdpContext;

use crate::ptr::read_at;

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

/// An incremental checksum update, RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`.
pub struct Incr(u32);

impl Incr {
    /// Starts from the checksum field as found in the packet.
    #[inline(always)]
    pub fn new(check: [u8; 2]) -> Incr {
        Incr(u32::from(!u16::from_be_bytes(check)))
    }

    /// Replaces the 16-bit words of `old` by those of `new`.
    #[inline(always)]
    pub fn replace<const N: usize>(&mut self, old: &[u8; N], new: &[u8; N]) {
        let mut i = 0;
        while i + 1 < N {
            self.0 += u32::from(!u16::from_be_bytes([old[i], old[i + 1]]));
            self.0 += u32::from(u16::from_be_bytes([new[i], new[i + 1]]));
            i += 2;
        }
    }

    /// The new checksum field.
    #[inline(always)]
    pub fn finish(self) -> [u8; 2] {
        (!fold(self.0)).to_be_bytes()
    }
}

/// Longest message [`sum_packet`] sums: 512 bytes (a VRRP advert with 31 IPv6 or 126 IPv4
/// addresses). Longer adverts are left to userspace.
pub const MAX_SUM_LEN: usize = 512;

/// One's complement sum of `len` packet bytes at `off` (an odd last byte padded with zero), or
/// `None` if they run past the frame or `len` exceeds [`MAX_SUM_LEN`].
#[inline(always)]
pub fn sum_packet(ctx: &XdpContext, off: usize, len: usize) -> Option<u32> {
    if len > MAX_SUM_LEN {
        return None;
    }
    let mut sum = 0u32;
    let mut at = 0usize;
    // Verifier: constant trip counts with early exits, 8 bytes per step so the walk stays short
    // (every iteration is a distinct verifier state); each read is bounds-checked by read_at.
    for _ in 0..MAX_SUM_LEN / 8 {
        if at + 8 > len {
            break;
        }
        let w: [u8; 8] = read_at(ctx, off + at)?;
        sum = add_bytes(sum, &w);
        at += 8;
    }
    for _ in 0..3 {
        if at + 2 > len {
            break;
        }
        let w: [u8; 2] = read_at(ctx, off + at)?;
        sum = add_bytes(sum, &w);
        at += 2;
    }
    if at < len && at > 0 {
        // Verifier: a 1-byte read compiles to `p >= data_end`, from which the verifier derives
        // no range at offset 0; read the last two bytes instead.
        let w: [u8; 2] = read_at(ctx, off + at - 1)?;
        sum += u32::from(w[1]) << 8;
    }
    Some(sum)
}
