//! The connection table (`ka_common::lb::CONN4_MAP`, `CONN6_MAP`), a part of the lookup layer: lookup with expiry by
//! state (`lvs_timeouts`) and TCP state transitions, insertion of new flows, the sweeper's
//! expiry, and the per-backend connection counts these keep. `ka_common::sched` describes the
//! life-word protocol and how exact the counts are.

use core::{
    mem::size_of,
    ptr::{read_volatile, write_volatile},
};

use ka_common::{
    lb::{conn_check, conn_set, FlowKey, FlowKey4, CONN_WAYS},
    sched::{
        evict_rank, is_active, is_assured, life, life_stamp, life_state, overload_after_bind, overload_clears,
        tcp_next_state, timeout_of, BackendConns, CONN_BUSY, CONN_F_ASSURED, CONN_F_COUNTED, CONN_S_MASK,
        EVICT_UNASSURED,
    },
    stats::Counter,
    wire::IPPROTO_TCP,
};

use crate::{
    atomic,
    maps::{KA_BACKENDS, KA_BACKEND_CONNS, KA_BACKEND_TALLY, KA_CONNS4, KA_CONNS6, KA_CONN_TIMEOUTS},
    mem,
    scratch::{launder, opaque, Work},
    stats,
};

/// Whether the `N` words at `a` and `b` are equal. Volatile loads: LLVM would otherwise turn
/// the loop into a `bcmp` call (aya-ebpf's compares a byte per iteration).
#[inline(always)]
fn words_eq<const N: usize>(a: *const u32, b: *const u32) -> bool {
    let mut i = 0;
    let mut diff = 0u32;
    while i < N {
        // SAFETY: the callers pass pointers to N-word, 4-aligned keys.
        diff |= unsafe { read_volatile(a.add(i)) ^ read_volatile(b.add(i)) };
        i += 1;
    }
    diff == 0
}

/// [`words_eq`] in few registers, for the insert, whose frame is on the deepest call chain:
/// the running difference passes through an opaque `asm!` move after each word, so LLVM keeps
/// it in one register instead of loading every word first and comparing them pairwise at the
/// end (which spilled the 20 words of an IPv6 key: 88 of the 512 bytes the chain shares). The
/// lookup keeps [`words_eq`], faster on the established path.
#[inline(always)]
fn words_eq_lean<const N: usize>(a: *const u32, b: *const u32) -> bool {
    let mut i = 0;
    let mut diff = 0u64;
    while i < N {
        // SAFETY: the callers pass pointers to N-word, 4-aligned keys.
        diff |= u64::from(unsafe { read_volatile(a.add(i)) ^ read_volatile(b.add(i)) });
        // SAFETY: a register move to itself; it only hides `diff`'s value from LLVM.
        unsafe { core::arch::asm!("{d} = {d}", d = inout(reg) diff, options(pure, nomem, nostack)) };
        i += 1;
    }
    diff == 0
}

/// Counts a new unassured entry in this CPU's flood-mode window (`w.flood`, against the
/// `flood_rate` and `flood_window` userspace wrote; [`ka_common::sched::flood_count`]) and
/// answers 1 while the CPU is in flood mode, else 0. Entering it is counted `lb_flood_mode`.
#[inline(always)]
pub fn flood(w: &mut Work, now: u32) -> u32 {
    use ka_common::sched::{flood_count, FLOOD_ENTERED, FLOOD_OFF};
    let Some(t) = KA_CONN_TIMEOUTS.get(0) else {
        return 0;
    };
    let (next, mode) = flood_count(w.flood, now, t.flood_window, t.flood_rate);
    w.flood = next;
    if mode == FLOOD_ENTERED {
        stats::inc(Counter::LbFloodMode);
    }
    u32::from(mode != FLOOD_OFF)
}

/// Counts the eviction of another flow's entry of `state`.
// Verifier/LLVM: a BPF-to-BPF call: its two counters do not split the caller's paths.
#[inline(never)]
fn count_eviction(state: u32) {
    stats::inc(if is_assured(state) { Counter::LbConnEvictedAssured } else { Counter::LbConnEvicted });
}

/// [`conn4_put`]/[`conn6_put`]: the flow is recorded.
pub const PUT_DONE: u32 = 1;
/// [`conn4_put`]/[`conn6_put`]: another CPU took the way first; nothing recorded.
pub const PUT_LOST: u32 = 0;
/// [`conn4_put`]/[`conn6_put`]: every way of the set is assured and the caller keeps them;
/// nothing recorded (counted `lb_conn_set_full`).
pub const PUT_FULL: u32 = 2;

/// The lifetime of an entry (0: none, also before userspace wrote the lifetimes).
#[inline(always)]
fn lifetime(state: u32, proto: u8) -> u32 {
    KA_CONN_TIMEOUTS.get(0).map_or(0, |t| timeout_of(state, proto, t))
}

/// A counter read as `i32`, negative as 0.
#[inline(always)]
fn load(p: *const u32) -> u32 {
    // SAFETY: the callers pass a pointer into a map value.
    let v = unsafe { read_volatile(p) };
    if (v as i32) < 0 {
        0
    } else {
        v
    }
}

/// `active + inactive` of a backend.
#[inline(always)]
fn total(c: *mut BackendConns) -> u32 {
    // SAFETY: a map value.
    unsafe { load(&(*c).active).wrapping_add(load(&(*c).inactive)) }
}

/// The counter an entry of `state` is counted in.
#[inline(always)]
fn counter(c: *mut BackendConns, state: u32) -> *mut u32 {
    // SAFETY: a map value.
    unsafe {
        if is_active(state) {
            &mut (*c).active
        } else {
            &mut (*c).inactive
        }
    }
}

/// Counts a new entry of `state` on `backend` (IPVS `ip_vs_bind_dest`): +1, and overloaded once
/// the total reaches `uthreshold`. Nothing for an entry without `CONN_F_COUNTED`.
// Verifier/LLVM: a BPF-to-BPF call: its branches do not multiply the caller's paths.
#[inline(never)]
pub fn bind(backend: u32, state: u32, uthreshold: u32) {
    if state & CONN_F_COUNTED == 0 {
        return;
    }
    let Some(c) = KA_BACKEND_CONNS.get_ptr_mut(backend) else {
        return;
    };
    // SAFETY: a map value shared by every CPU: the count by atomic add, the flag by a plain
    // store (a racing unbind may clear it a moment early, as two CPUs of IPVS may).
    unsafe {
        atomic::add32(counter(c, state), 1);
        if overload_after_bind(total(c), uthreshold) {
            write_volatile(&mut (*c).overloaded, 1);
        }
    }
}

/// Uncounts an entry of `state` leaving `backend` (IPVS `ip_vs_unbind_dest`): −1, and no longer
/// overloaded once the total is below the backend's `lthreshold`.
// Verifier/LLVM: a BPF-to-BPF call: its branches do not multiply the caller's paths.
#[inline(never)]
pub fn unbind(backend: u32, state: u32) {
    if state & CONN_F_COUNTED == 0 {
        return;
    }
    let Some(c) = KA_BACKEND_CONNS.get_ptr_mut(backend) else {
        return;
    };
    // SAFETY: as in bind.
    unsafe {
        atomic::add32(counter(c, state), u32::MAX);
        if read_volatile(&(*c).overloaded) != 0 {
            let (u, l) = KA_BACKENDS.get(backend).map_or((0, 0), |b| (b.uthreshold, b.lthreshold));
            if overload_clears(total(c), u, l) {
                write_volatile(&mut (*c).overloaded, 0);
            }
        }
    }
}

/// Moves a counted entry between the active and inactive counts of `backend`.
// Verifier/LLVM: a BPF-to-BPF call: its branches do not multiply the caller's paths.
#[inline(never)]
fn shift(backend: u32, from: u32, to: u32) {
    if from & CONN_F_COUNTED == 0 || is_active(from) == is_active(to) {
        return;
    }
    let Some(c) = KA_BACKEND_CONNS.get_ptr_mut(backend) else {
        return;
    };
    // SAFETY: as in bind.
    unsafe {
        atomic::add32(counter(c, to), 1);
        atomic::add32(counter(c, from), u32::MAX);
    }
}

/// Adds a live entry of `state` on `backend` to the sweeper's tally, unless it is counted in
/// `KA_BACKEND_CONNS` already.
#[inline(always)]
fn tally(backend: u32, state: u32) {
    if state & CONN_F_COUNTED != 0 {
        return;
    }
    if let Some(c) = KA_BACKEND_TALLY.get_ptr_mut(backend) {
        // SAFETY: a map value only the sweeper writes (one run at a time); userspace reads and
        // zeroes it between passes.
        unsafe {
            let p = counter(c, state);
            write_volatile(p, read_volatile(p).wrapping_add(1));
        }
    }
}

/// Whether `backend` is overloaded (its `uthreshold` reached, not yet below `lthreshold`).
#[inline(always)]
pub fn overloaded(backend: u32) -> bool {
    // SAFETY: a map value; a plain read of a flag.
    KA_BACKEND_CONNS.get_ptr(backend).is_some_and(|c| unsafe { read_volatile(&(*c).overloaded) } != 0)
}

/// A hit on a live way whose life word read `l`: expired (it leaves the table, uncounted:
/// `None`), or its stamp refreshed and its state moved by `tcp_flags`, each change by one
/// compare-and-swap whose winner applies the counts. A lost swap (another CPU refreshed the
/// way, or claimed it) changes nothing; the packet still follows `backend`.
#[inline(always)]
fn touch(lp: *mut u64, l: u64, backend: u32, proto: u8, now: u32, tcp_flags: u8) -> Option<u32> {
    let (stamp, state) = (life_stamp(l), life_state(l));
    let t = lifetime(state, proto);
    if t != 0 && now.wrapping_sub(stamp) > t {
        // SAFETY: the way's 8-aligned life word.
        if unsafe { atomic::cas64(lp, l, 0) } == l {
            unbind(backend, state);
        }
        stats::inc(Counter::LbConnExpired);
        return None;
    }
    // A flow of another protocol seen again is assured (`is_assured`): a one-packet spoof
    // never is.
    let next = if proto == IPPROTO_TCP {
        state & !CONN_S_MASK | tcp_next_state(state & CONN_S_MASK, tcp_flags)
    } else {
        state | CONN_F_ASSURED
    };
    // SAFETY: as above.
    if (next != state || stamp != now) && unsafe { atomic::cas64(lp, l, life(now, next)) } == l {
        shift(backend, state, next);
    }
    Some(backend)
}

/// Lookup, insertion and sweep of one family's set-associative connection table:
/// `$get(key, hash, now, tcp_flags)` returns the backend of a live way holding `key` (see
/// [`touch`]); `$put(key, hash, backend, now, state, keep_assured)` records the flow in its own
/// way, a free one, or else the set's way of highest [`evict_rank`] (the least recently seen
/// unassured way, else the least recently seen assured one; with `keep_assured` ≠ 0 never an
/// assured one: [`PUT_FULL`]), uncounting what it replaces, and answers a `PUT_*`;
/// `$sweep(set, now, timeouts)` expires the set's ways whose lifetime passed. `$eq` compares
/// the lookup's keys.
macro_rules! conn_table {
    ($get:ident, $put:ident, $sweep:ident, $map:ident, $key:ty, $eq:ident) => {
        #[inline(always)]
        pub fn $get(key: &$key, hash: u32, now: u32, tcp_flags: u8) -> Option<u32> {
            const N: usize = size_of::<$key>() / 4;
            let set = $map.get_ptr_mut(conn_set(hash))?;
            let mut found = CONN_WAYS;
            let mut i = 0;
            while i < CONN_WAYS {
                // SAFETY: a map value of CONN_WAYS ways, i < CONN_WAYS. Other CPUs may write
                // it concurrently: a way being written is busy (stamp 0), and a torn way fails
                // the check and reads as a miss.
                let way = unsafe { &(*set).ways[i] };
                // SAFETY: the life word: stamp and state, 8-aligned (ConnWay is align(8)).
                let l = unsafe { read_volatile(&way.stamp as *const u32 as *const u64) };
                if life_stamp(l) != 0
                    && $eq::<N>(&way.key as *const $key as *const u32, key as *const $key as *const u32)
                {
                    found = i;
                    break;
                }
                i += 1;
            }
            if found == CONN_WAYS {
                return None;
            }
            let i = launder(found)?;
            // SAFETY: as above; i < CONN_WAYS.
            let way = unsafe { &mut (*set).ways[i] };
            let lp = &mut way.stamp as *mut u32 as *mut u64;
            // SAFETY: as above.
            let (l, backend) = unsafe { (read_volatile(lp), read_volatile(&way.backend)) };
            if life_stamp(l) == 0 || way.check != conn_check(hash, backend) {
                return None;
            }
            touch(lp, l, backend, key.proto, now, tcp_flags)
        }

        #[inline(always)]
        pub fn $put(key: &$key, hash: u32, backend: u32, now: u32, state: u32, keep_assured: u32) -> u32 {
            const N: usize = size_of::<$key>() / 4;
            let Some(set) = $map.get_ptr_mut(conn_set(hash)) else {
                return PUT_LOST;
            };
            // `best`: the victim's evict_rank; u32::MAX for a free way or the flow's own.
            let (mut victim, mut best) = (0usize, 0u32);
            let mut i = 0;
            while i < CONN_WAYS {
                // SAFETY: as in the lookup.
                let way = unsafe { &(*set).ways[i] };
                // SAFETY: as in the lookup.
                let l = unsafe { read_volatile(&way.stamp as *const u32 as *const u64) };
                let stamp = life_stamp(l);
                if stamp == 0 {
                    if life_state(l) == 0 {
                        // Free.
                        victim = i;
                        best = u32::MAX;
                        break;
                    }
                    // Busy: another CPU is writing it.
                    i += 1;
                    continue;
                }
                if words_eq_lean::<N>(&way.key as *const $key as *const u32, key as *const $key as *const u32) {
                    // Its own (a new connection on a reused 5-tuple, or rescheduled).
                    victim = i;
                    best = u32::MAX;
                    break;
                }
                // Unassured first, then the least recently seen (an expired way is older than
                // any live one of its protocol and state; the sweeper frees them within a
                // second anyway).
                let rank = evict_rank(life_state(l), now.wrapping_sub(stamp));
                if rank >= best {
                    best = rank;
                    victim = i;
                }
                i += 1;
            }
            if keep_assured != 0 && best < EVICT_UNASSURED {
                stats::inc(Counter::LbConnSetFull);
                return PUT_FULL;
            }
            // Verifier: whether the way held another flow, made opaque as the way index is, so
            // the claim below is checked once and not once per loop exit.
            let evicts = opaque(u32::from(best != u32::MAX));
            let Some(victim) = launder(victim) else {
                return PUT_LOST;
            };
            // SAFETY: as in the lookup; victim < CONN_WAYS.
            let way = unsafe { &mut (*set).ways[victim] };
            let lp = &mut way.stamp as *mut u32 as *mut u64;
            // SAFETY: as in the lookup. Read before the claim: a claim that succeeds proves
            // the way unchanged since `old` was read.
            let (old, old_backend) = unsafe { (read_volatile(lp), read_volatile(&way.backend)) };
            if life_stamp(old) == 0 && life_state(old) != 0 {
                // Became busy meanwhile.
                return PUT_LOST;
            }
            // SAFETY: as in the lookup.
            if unsafe { atomic::cas64(lp, old, life(0, CONN_BUSY)) } != old {
                return PUT_LOST;
            }
            if life_stamp(old) != 0 {
                unbind(old_backend, life_state(old));
                if evicts != 0 {
                    count_eviction(life_state(old));
                }
            }
            mem::copy(&mut way.key, key);
            way.backend = backend;
            way.check = conn_check(hash, backend);
            // SAFETY: as in the lookup; one 64-bit store publishes the way.
            unsafe { write_volatile(lp, life(now, state)) };
            PUT_DONE
        }

        // Verifier/LLVM: a BPF-to-BPF call: the paths through a set's ways end at its return
        // (one value), so the sweeper's loop over sets is checked once per set.
        #[inline(never)]
        pub fn $sweep(set: u32, now: u32) -> u64 {
            let Some(t) = KA_CONN_TIMEOUTS.get(0) else {
                return 0;
            };
            let Some(s) = $map.get_ptr_mut(set) else {
                return 0;
            };
            let (mut expired, mut live) = (0u32, 0u32);
            let mut i = 0;
            while i < CONN_WAYS {
                // SAFETY: as in the lookup.
                let way = unsafe { &mut (*s).ways[i] };
                let lp = &mut way.stamp as *mut u32 as *mut u64;
                // SAFETY: as in the lookup.
                let l = unsafe { read_volatile(lp) };
                if life_stamp(l) != 0 {
                    // SAFETY: as in the lookup.
                    let backend = unsafe { read_volatile(&way.backend) };
                    let lt = timeout_of(life_state(l), way.key.proto, t);
                    if lt != 0 && now.wrapping_sub(life_stamp(l)) > lt {
                        // SAFETY: as in the lookup.
                        if unsafe { atomic::cas64(lp, l, 0) } == l {
                            unbind(backend, life_state(l));
                            expired += 1;
                        }
                    } else {
                        live += 1;
                        tally(backend, life_state(l));
                    }
                }
                i += 1;
            }
            u64::from(expired) << 32 | u64::from(live)
        }
    };
}

// The IPv4 lookup compares its four words in the faster way; the IPv6 one, ten words, in few
// registers (its frame is on the established path's call chain).
conn_table!(conn4_get, conn4_put, conn4_sweep, KA_CONNS4, FlowKey4, words_eq);
conn_table!(conn6_get, conn6_put, conn6_sweep, KA_CONNS6, FlowKey, words_eq_lean);

/// The sweeper program's body ([`ka_common::sched::SWEEP_PROGRAM`], run by userspace through
/// BPF_PROG_TEST_RUN, never attached): reads a `SweepIo` at the start of the frame, expires
/// the ways of `count` sets of the `family` table from set `first` on whose lifetime passed
/// (uncounting them), and writes back what it did and the kernel's clocks. Returns
/// `XDP_PASS`, or `XDP_ABORTED` for a frame too short to hold a `SweepIo`.
#[inline(always)]
pub fn sweep(ctx: &aya_ebpf::programs::XdpContext) -> u32 {
    use aya_ebpf::{
        bindings::xdp_action,
        helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    };
    use ka_common::{
        lb::{CONN_SETS, FAMILY_V4},
        sched::{SweepIo, SWEEP_SETS},
    };
    let Some(io) = crate::ptr::ptr_at_mut::<SweepIo>(ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: bounds-checked by ptr_at_mut; the frame is this run's own buffer.
    let (family, first, count) = unsafe { ((*io).family, (*io).first, (*io).count) };
    // SAFETY: plain helper calls.
    let (jiffies, ns, coarse) = unsafe { (bpf_jiffies64(), bpf_ktime_get_ns(), bpf_ktime_get_coarse_ns()) };
    let now = jiffies as u32 | 1;
    let (mut expired, mut live) = (0u32, 0u32);
    let mut k = 0;
    while k < SWEEP_SETS {
        let set = first.wrapping_add(k);
        if k >= count || set >= CONN_SETS {
            break;
        }
        let r = if family == u32::from(FAMILY_V4) {
            conn4_sweep(set, now)
        } else {
            conn6_sweep(set, now)
        };
        expired = expired.wrapping_add((r >> 32) as u32);
        live = live.wrapping_add(r as u32);
        k += 1;
    }
    // SAFETY: as above.
    unsafe {
        write_volatile(&mut (*io).expired, expired);
        write_volatile(&mut (*io).live, live);
        write_volatile(&mut (*io).jiffies, jiffies);
        write_volatile(&mut (*io).ktime_ns, ns);
        write_volatile(&mut (*io).ktime_coarse_ns, coarse);
    }
    xdp_action::XDP_PASS
}
