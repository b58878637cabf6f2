//! The least-connection family of schedulers (`lc`, `wlc`, `sed`, `nq`, `fo`, `ovf`, `twos`,
//! `lblc`, `lblcr`) and the round-robin walk past overloaded servers: each a walk over at most
//! `MAX_DESTS` candidates (`ka_common::sched::DestList`, or round-robin slots) reading each
//! backend's connection counts, with the choice made by `ka_common::sched`'s pickers (the
//! code userspace unit-tests).
//!
//! Verifier: each walk is a bounded loop, which the verifier checks once per iteration. Its
//! state lives in the per-CPU [`Work`] (`w.walk`, a `crate::scratch::Walk`): map memory the verifier sees as unknown
//! values, so the paths through one iteration merge before the next (values kept in registers
//! would be distinct known values and multiply the paths). `bpf_loop` would check the step
//! only once, but its callbacks need the program's BTF, which the kernel refuses for ka's
//! object (Rust enums in it), so ka loads without BTF.

use aya_ebpf::helpers::bpf_get_prandom_u32;
use ka_common::{
    lb::SCHED_TWOS,
    sched::{
        dests_index, lblc_finish, lblcr_finish, Cand, LblcChoice, LblcValue, Scan, Twos, LBLCR_SET,
        MAX_DESTS, NO_ID, SCHED_LBLC, SCHED_LBLCR,
    },
    stats::Counter,
};

use core::ptr::read_volatile;

use super::conn;
use crate::{
    atomic,
    maps::{KA_BACKEND_CONNS, KA_CONN_TIMEOUTS, KA_DESTS, KA_LBLC, KA_TABLES},
    mem,
    scratch::Work,
    stats,
};

/// Candidate `i` of candidate list `list`: its id, weight and current counts.
#[inline(always)]
fn cand(list: u32, i: u32) -> Option<Cand> {
    let l = KA_DESTS.get(list)?;
    // The mask keeps the index provably in range (no bounds-check panic path).
    let i = i as usize & (MAX_DESTS - 1);
    let id = l.ids[i];
    let c = KA_BACKEND_CONNS.get_ptr(id)?;
    // SAFETY: a map value shared by every CPU; plain reads of counters. As
    // `Cand::from_conns`, with the negative clamp done without a branch (atomic::nonneg).
    unsafe {
        Some(Cand {
            id,
            weight: l.weights[i],
            active: atomic::nonneg(read_volatile(&(*c).active)),
            inactive: atomic::nonneg(read_volatile(&(*c).inactive)),
            overloaded: read_volatile(&(*c).overloaded),
        })
    }
}

/// One step of the scan: candidate `i` of `w.walk.list` offered to `w.walk.scan` (`second`:
/// to `twos`' second pass instead); true to stop.
// Verifier/LLVM: a BPF-to-BPF call: the paths through one candidate end at its return (a
// 0 or 1), so the loop around it is checked with one state per iteration instead of every
// combination of the branches of the candidates before it.
#[inline(never)]
fn step(w: &mut Work, i: u32, second: bool) -> bool {
    let Some(c) = cand(w.walk.list, i) else {
        return false;
    };
    if second {
        w.walk.twos.offer(c)
    } else {
        w.walk.scan.offer(c)
    }
}

/// Walks the candidates of `w.walk.list` with [`step`] (`second`: `twos`' second pass).
// Verifier/LLVM: a BPF-to-BPF call: the loop ends at a different iteration on each path, and
// those exits (distinct known counters and bounds) end here instead of each walking the code
// that follows on its own.
#[inline(never)]
fn walk(w: &mut Work, second: bool) -> u32 {
    let n = KA_DESTS.get(w.walk.list).map_or(0, |l| l.n.min(MAX_DESTS as u32));
    let mut i = 0;
    while i < MAX_DESTS as u32 {
        if i >= n || step(w, i, second) {
            break;
        }
        i += 1;
    }
    0
}

/// The backend a least-connection scheduler picks for the flow in `w` from bank `bank` of its
/// service; [`NO_ID`] when every candidate is overloaded (or the list is empty). `now`: the
/// connection-table clock (the `lblc` cache's).
///
/// Verifier: in three calls of their own (setup, walk, finish), each returning one value, so
/// that the paths of one (a cache hit or miss, a walk ending at any candidate) do not each
/// walk the next: the walk is then checked once per call of this function.
// Verifier/LLVM: a BPF-to-BPF call, so the walk's stack frame is not added to the caller's;
// it returns a sentinel, not an `Option` (whose `None` would carry an undefined payload).
#[inline(never)]
pub fn least(w: &mut Work, bank: u32, now: u32) -> u32 {
    if setup(w, bank, now) == 0 {
        return NO_ID;
    }
    walk(w, false);
    finish(w, now)
}

/// Prepares the walk of bank `bank`'s candidates: the list, the metric, and for `lblc` and
/// `lblcr` the servers the destination's cache entry holds. 0 if the list is missing.
// Verifier/LLVM: a BPF-to-BPF call (see `least`).
#[inline(never)]
fn setup(w: &mut Work, bank: u32, now: u32) -> u32 {
    let list = dests_index(w.svc.id, bank);
    let Some(l) = KA_DESTS.get(list) else {
        return 0;
    };
    w.walk.list = list;
    let mut want = [NO_ID; LBLCR_SET];
    let sched = w.svc.sched;
    if sched == SCHED_LBLC || sched == SCHED_LBLCR {
        if let Some(e) = cache_entry(w, now) {
            // SAFETY: a map value (see cache_entry).
            unsafe {
                if sched == SCHED_LBLC {
                    want[0] = (*e).ids[0];
                } else {
                    mem::copy(&mut want, &(*e).ids);
                }
            }
        }
    }
    w.walk.scan = Scan::new(l.metric(), want);
    1
}

/// The scheduler's choice once the walk is done (`twos` walks again).
// Verifier/LLVM: a BPF-to-BPF call (see `least`).
#[inline(never)]
fn finish(w: &mut Work, now: u32) -> u32 {
    match w.svc.sched {
        SCHED_LBLC => lblc(w, now),
        SCHED_LBLCR => lblcr(w, now),
        SCHED_TWOS => {
            // SAFETY: plain helper calls.
            let (r1, r2) = unsafe { (bpf_get_prandom_u32(), bpf_get_prandom_u32()) };
            w.walk.twos = Twos::draw(&w.walk.scan, r1, r2);
            walk(w, true);
            w.walk.twos.best().map_or(NO_ID, |c| c.id)
        }
        _ => w.walk.scan.pick.best().map_or(NO_ID, |c| c.id),
    }
}

/// Round-robin from slot `start` of a bank of `len` slots at `base` in `KA_TABLES`, past
/// overloaded backends (at most `MAX_DESTS` slots, as IPVS `wrr` moves on to the next
/// server): the backend, [`NO_ID`] when every one tried was overloaded; `w.walk.rr_tried`:
/// the slots tried before it (the cursor moves past them).
// Verifier/LLVM: a BPF-to-BPF call (stack frame of its own).
#[inline(never)]
pub fn round_robin(w: &mut Work, base: u32, start: u32, len: u32) -> u32 {
    let r = &mut w.walk;
    r.rr_found = false;
    r.rr_id = NO_ID;
    let mut k = 0u32;
    while k < MAX_DESTS as u32 {
        r.rr_tried = k;
        // `max(1)`: a provably non-zero divisor (no division-by-zero panic path).
        let slot = start.wrapping_add(k) % len.max(1);
        let Some(id) = KA_TABLES.get(base.wrapping_add(slot)) else {
            break;
        };
        if !conn::overloaded(*id) {
            r.rr_id = *id;
            r.rr_found = true;
            break;
        }
        stats::inc(Counter::LbOverloaded);
        k += 1;
    }
    r.rr_id
}

/// Fills `w.lblc_key` with the flow's destination in its service; returns the cache entry
/// still fresh (used within the `lblc` expiration), if any.
#[inline(always)]
fn cache_entry(w: &mut Work, now: u32) -> Option<*mut LblcValue> {
    let k = &mut w.lblc_key;
    // SAFETY: both 4-aligned 16-byte addresses of map keys.
    unsafe { mem::load16(&mut k.addr, &w.key.dst) };
    k.service = w.svc.id;
    k.family = w.key.family;
    k._pad = [0; 3];
    fresh_entry(w, now)
}

/// The destination's cache entry (`w.lblc_key`, filled by `setup`), if still fresh.
#[inline(always)]
fn fresh_entry(w: &Work, now: u32) -> Option<*mut LblcValue> {
    let e = KA_LBLC.get_ptr_mut(&w.lblc_key)?;
    let expire = KA_CONN_TIMEOUTS.get(0).map_or(0, |t| t.lblc);
    // SAFETY: a map value; a racing update by another CPU only changes which valid ids are read.
    let (len, lastuse) = unsafe { ((*e).len, (*e).lastuse) };
    (len > 0 && (expire == 0 || now.wrapping_sub(lastuse) <= expire)).then_some(e)
}

/// `lblc`: the destination's cached server, else the `wlc` choice, recorded.
#[inline(always)]
fn lblc(w: &mut Work, now: u32) -> u32 {
    let entry = fresh_entry(w, now);
    match lblc_finish(&w.walk.scan) {
        Some(LblcChoice::Cached(id)) => {
            if let Some(e) = entry {
                // SAFETY: a map value (see cache_entry).
                unsafe { (*e).lastuse = now };
            }
            id
        }
        Some(LblcChoice::Scheduled(id)) => {
            w.lblc = LblcValue { ids: [id, 0, 0, 0], len: 1, lastuse: now, lastmod: now, _pad: 0 };
            let _ = KA_LBLC.insert(&w.lblc_key, &w.lblc, 0);
            id
        }
        None => NO_ID,
    }
}

/// `lblcr`: the least loaded server of the destination's set, the set grown or shed as IPVS
/// does, recorded (fixed slots: `len` is always `LBLCR_SET`).
#[inline(always)]
fn lblcr(w: &mut Work, now: u32) -> u32 {
    let entry = fresh_entry(w, now);
    let expire = KA_CONN_TIMEOUTS.get(0).map_or(0, |t| t.lblc);
    // SAFETY: a map value (see cache_entry).
    let lastmod = entry.map_or(now, |e| unsafe { (*e).lastmod });
    let expired = expire != 0 && now.wrapping_sub(lastmod) > expire;
    let Some(c) = lblcr_finish(&w.walk.scan, expired) else {
        return NO_ID;
    };
    match entry {
        Some(e) if !c.modified => {
            // SAFETY: as above.
            unsafe { (*e).lastuse = now };
        }
        _ => {
            w.lblc = LblcValue {
                ids: c.set,
                len: LBLCR_SET as u32,
                lastuse: now,
                lastmod: if c.modified { now } else { lastmod },
                _pad: 0,
            };
            let _ = KA_LBLC.insert(&w.lblc_key, &w.lblc, 0);
        }
    }
    c.id
}
