//! The least-connection family of schedulers (`lc`, `wlc`, `sed`, `nq`, `fo`, `ovf`, `twos`,
//! `lblc`, `lblcr`): a bounded walk over the service's candidate list
//! (`ka_common::sched::DestList`, at most `MAX_DESTS`) reading each backend's connection
//! counts, with the choice made by `ka_common::sched`'s functions (the code userspace
//! unit-tests).

use aya_ebpf::helpers::bpf_get_prandom_u32;
use ka_common::{
    lb::SCHED_TWOS,
    sched::{
        dests_index, pick, pick_lblc, pick_lblcr, Cand, DestList, LblcChoice, LblcValue, LBLCR_SET, MAX_DESTS,
        SCHED_LBLC, SCHED_LBLCR,
    },
};

use crate::{
    maps::{Work, KA_BACKEND_CONNS, KA_CONN_TIMEOUTS, KA_DESTS, KA_LBLC},
    mem,
};

/// Candidate `i` of `list`: its id, weight and current counts.
#[inline(always)]
fn cand(list: &DestList, i: usize) -> Option<Cand> {
    // The mask keeps the index provably in range (no bounds-check panic path).
    let i = i & (MAX_DESTS - 1);
    let id = list.ids[i];
    let c = KA_BACKEND_CONNS.get(id)?;
    Some(Cand::from_conns(id, list.weights[i], c))
}

/// The backend a least-connection scheduler picks for the flow in `w` from bank `bank` of its
/// service; `None` when every candidate is overloaded (or the list is empty). `now`: the
/// connection-table clock (the `lblc` cache's).
// Verifier/LLVM: a BPF-to-BPF call, so the walk's stack frame is not added to the caller's.
#[inline(never)]
pub fn least(w: &mut Work, bank: u32, now: u32) -> Option<u32> {
    let list = KA_DESTS.get(dests_index(w.svc.id, bank))?;
    let n = (list.n as usize).min(MAX_DESTS);
    let at = |i: usize| cand(list, i);
    match w.svc.sched {
        SCHED_LBLC => lblc(w, list, n, now),
        SCHED_LBLCR => lblcr(w, list, n, now),
        sched => {
            let (r1, r2) = if sched == SCHED_TWOS {
                // SAFETY: plain helper calls.
                unsafe { (bpf_get_prandom_u32(), bpf_get_prandom_u32()) }
            } else {
                (0, 0)
            };
            pick(sched, n, r1, r2, at).map(|i| list.ids[i & (MAX_DESTS - 1)])
        }
    }
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
    let e = KA_LBLC.get_ptr_mut(&w.lblc_key)?;
    let expire = KA_CONN_TIMEOUTS.get(0).map_or(0, |t| t.lblc);
    // SAFETY: a map value; a racing update by another CPU only changes which valid ids are read.
    let (len, lastuse) = unsafe { ((*e).len, (*e).lastuse) };
    (len > 0 && (expire == 0 || now.wrapping_sub(lastuse) <= expire)).then_some(e)
}

/// `lblc`: the destination's cached server, else the `wlc` choice, recorded.
#[inline(always)]
fn lblc(w: &mut Work, list: &DestList, n: usize, now: u32) -> Option<u32> {
    let entry = cache_entry(w, now);
    // SAFETY: a map value (see cache_entry).
    let cached = entry.map(|e| unsafe { (*e).ids[0] });
    match pick_lblc(n, cached, |i| cand(list, i))? {
        LblcChoice::Cached(i) => {
            if let Some(e) = entry {
                // SAFETY: as above.
                unsafe { (*e).lastuse = now };
            }
            Some(list.ids[i & (MAX_DESTS - 1)])
        }
        LblcChoice::Scheduled(i) => {
            let id = list.ids[i & (MAX_DESTS - 1)];
            w.lblc = LblcValue { ids: [id, 0, 0, 0], len: 1, lastuse: now, lastmod: now, _pad: 0 };
            let _ = KA_LBLC.insert(&w.lblc_key, &w.lblc, 0);
            Some(id)
        }
    }
}

/// `lblcr`: the least loaded server of the destination's set, the set grown or shed as IPVS
/// does, recorded.
#[inline(always)]
fn lblcr(w: &mut Work, list: &DestList, n: usize, now: u32) -> Option<u32> {
    let entry = cache_entry(w, now);
    let expire = KA_CONN_TIMEOUTS.get(0).map_or(0, |t| t.lblc);
    let (mut set, mut len, mut lastmod) = ([0u32; LBLCR_SET], 0u32, now);
    if let Some(e) = entry {
        // SAFETY: a map value (see cache_entry).
        unsafe {
            mem::copy(&mut set, &(*e).ids);
            len = (*e).len;
            lastmod = (*e).lastmod;
        }
    }
    let expired = expire != 0 && now.wrapping_sub(lastmod) > expire;
    let c = pick_lblcr(n, &set, len, expired, |i| cand(list, i))?;
    let id = list.ids[c.index & (MAX_DESTS - 1)];
    match entry {
        Some(e) if !c.modified => {
            // SAFETY: as above.
            unsafe { (*e).lastuse = now };
        }
        _ => {
            w.lblc = LblcValue {
                ids: c.set,
                len: c.len,
                lastuse: now,
                lastmod: if c.modified { now } else { lastmod },
                _pad: 0,
            };
            let _ = KA_LBLC.insert(&w.lblc_key, &w.lblc, 0);
        }
    }
    Some(id)
}
