//! Atomic operations on map memory shared by every CPU (and by userspace, for mmap-able maps).
//!
//! The object is built for BPF CPU v1 (`bpf-linker`'s default), where LLVM lowers only an
//! atomic add whose result is unused and refuses compare-and-swap; the instructions themselves
//! (`BPF_ATOMIC` with `BPF_ADD`, and `BPF_CMPXCHG`, kernel 5.12+) are emitted here with inline
//! assembly. On x86 the JIT turns them into `lock add` and `lock cmpxchg`.

/// `*p += v` atomically (a decrement adds `u32::MAX`).
///
/// # Safety
/// `p` points into a map value, 4-aligned.
#[inline(always)]
pub unsafe fn add32(p: *mut u32, v: u32) {
    // SAFETY: the caller's contract; BPF_STX | BPF_ATOMIC | BPF_W with imm BPF_ADD.
    unsafe {
        core::arch::asm!("lock *(u32 *)({p} + 0) += {v}", p = in(reg) p, v = in(reg) v, options(nostack));
    }
}

/// Compare-and-swap: if `*p == old`, stores `new`; returns the value `*p` held (equal to
/// `old` on success).
///
/// # Safety
/// `p` points into a map value, 8-aligned.
#[inline(always)]
pub unsafe fn cas64(p: *mut u64, old: u64, new: u64) -> u64 {
    let mut r0 = old;
    // SAFETY: the caller's contract; BPF_STX | BPF_ATOMIC | BPF_DW with imm BPF_CMPXCHG
    // (compares with and returns in r0).
    unsafe {
        core::arch::asm!(
            "r0 = cmpxchg_64({p} + 0, r0, {n})",
            p = in(reg) p,
            n = in(reg) new,
            inout("r0") r0,
            options(nostack)
        );
    }
    r0
}

/// `v` read as `i32`, negative as 0, without a branch LLVM could see: the sign mask comes from
/// an opaque shift (LLVM would turn `v & !(v >> 31)` back into a `max`, which the BPF backend
/// lowers to a branch; that branch's known 0 multiplies the verifier's paths).
#[inline(always)]
pub fn nonneg(v: u32) -> u32 {
    let mut m = u64::from(v);
    // SAFETY: register arithmetic only.
    unsafe {
        core::arch::asm!("{m} <<= 32", "{m} s>>= 63", m = inout(reg) m, options(pure, nomem, nostack));
    }
    v & !(m as u32)
}
