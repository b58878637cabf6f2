//! Weighted Maglev lookup tables (Eisenbud et al., NSDI 2016, §3.4) and weighted round-robin
//! schedules, as pure functions. Deterministic: the same backends and weights give the same
//! table on every node, whatever order they are listed in.

/// A backend as the table builders see it: a stable identity (address and port bytes, never a
/// node-local id) and a weight (0: drained, not in the table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Identity hashed for the Maglev permutation.
    pub ident: Vec<u8>,
    /// Weight.
    pub weight: u32,
}

fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Final avalanche (splitmix64) so neighbouring addresses get unrelated permutations.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Sorted indexes of the entries with a non-zero weight, and their weights divided by their
/// greatest common divisor.
fn active(entries: &[Entry]) -> Vec<(usize, u32)> {
    let mut idx: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].weight > 0)
        .collect();
    idx.sort_by(|&a, &b| entries[a].ident.cmp(&entries[b].ident));
    let g = idx.iter().fold(0, |g, &i| gcd(g, entries[i].weight));
    idx.into_iter()
        .map(|i| (i, entries[i].weight / g.max(1)))
        .collect()
}

/// The Maglev table of `size` slots (a prime: `ka_common::lb::ring_size`): each slot holds an
/// index into `entries`. Backends get slots in proportion to their weights; a change of one
/// backend moves few slots of the others. Empty when no entry has a weight.
pub fn table(entries: &[Entry], size: u32) -> Vec<u32> {
    let act = active(entries);
    if act.is_empty() || size == 0 {
        return Vec::new();
    }
    let m = u64::from(size);
    let perm: Vec<(u64, u64)> = act
        .iter()
        .map(|&(i, _)| {
            let id = &entries[i].ident;
            (
                fnv1a(0x6d61_676c, id) % m,
                fnv1a(0x736b_6970, id) % (m - 1).max(1) + 1,
            )
        })
        .collect();
    let max_w = act.iter().map(|a| a.1).max().unwrap_or(1);
    let mut next = vec![0u64; act.len()];
    let mut out = vec![u32::MAX; size as usize];
    let mut filled = 0u64;
    // Weighted variant: in round r, backend i takes a slot when its weight exceeds
    // r mod max_weight, so it gets weight/max_weight of the turns.
    let mut round = 0u64;
    while filled < m {
        for (k, &(i, w)) in act.iter().enumerate() {
            if u64::from(w) <= round % u64::from(max_w) {
                continue;
            }
            let (off, skip) = perm[k];
            let mut c = (off + next[k] * skip) % m;
            while out[c as usize] != u32::MAX {
                next[k] += 1;
                c = (off + next[k] * skip) % m;
            }
            out[c as usize] = i as u32;
            next[k] += 1;
            filled += 1;
            if filled == m {
                break;
            }
        }
        round += 1;
    }
    out
}

/// The interleaved weighted round-robin sequence of IPVS `wrr` (indexes into `entries`), at
/// most `cap` long (weights are scaled down when their sum is larger). `rr` is this with all
/// weights 1.
pub fn wrr(entries: &[Entry], cap: u32) -> Vec<u32> {
    let mut act = active(entries);
    if act.is_empty() || cap == 0 {
        return Vec::new();
    }
    let sum: u64 = act.iter().map(|a| u64::from(a.1)).sum();
    if sum > u64::from(cap) {
        for a in &mut act {
            a.1 = ((u64::from(a.1) * u64::from(cap) / sum) as u32).max(1);
        }
    }
    let g = act.iter().fold(0, |g, a| gcd(g, a.1)).max(1);
    let max_w = act.iter().map(|a| a.1).max().unwrap_or(1);
    let mut out = Vec::new();
    let mut cw = max_w;
    while cw > 0 {
        for &(i, w) in &act {
            if w >= cw {
                out.push(i as u32);
            }
        }
        cw = cw.saturating_sub(g);
    }
    out.truncate(cap as usize);
    out
}

/// Slots whose value differs between `old` and `new` (the slots past the shorter one's end
/// count as changed when the longer one has them), as (slot, new value).
pub fn changed_slots(old: &[u32], new: &[u32]) -> Vec<(u32, u32)> {
    new.iter()
        .enumerate()
        .filter(|(i, v)| old.get(*i) != Some(v))
        .map(|(i, v)| (i as u32, *v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, weight: u32) -> Entry {
        Entry {
            ident: name.as_bytes().to_vec(),
            weight,
        }
    }

    const M: u32 = ka_common::lb::MAGLEV_RING_SIZE;

    #[test]
    fn maglev_fills_every_slot_evenly() {
        let es = [e("a", 1), e("b", 1), e("c", 1)];
        let t = table(&es, M);
        assert_eq!(t.len(), M as usize);
        for i in 0..3 {
            let n = t.iter().filter(|&&v| v == i).count();
            assert!((21_000..=22_700).contains(&n), "backend {i}: {n}");
        }
    }

    #[test]
    fn maglev_respects_weights() {
        let t = table(&[e("a", 1), e("b", 3)], M);
        let a = t.iter().filter(|&&v| v == 0).count() as f64;
        assert!((a / f64::from(M) - 0.25).abs() < 0.02, "{a}");
    }

    #[test]
    fn maglev_is_order_independent_and_deterministic() {
        let t1 = table(&[e("a", 1), e("b", 1), e("c", 2)], M);
        let t2 = table(&[e("c", 2), e("a", 1), e("b", 1)], M);
        // Indexes differ with the order; the identities they point at must not.
        let names1 = ["a", "b", "c"];
        let names2 = ["c", "a", "b"];
        assert!(t1
            .iter()
            .zip(&t2)
            .all(|(x, y)| names1[*x as usize] == names2[*y as usize]));
    }

    #[test]
    fn maglev_removal_moves_few_slots() {
        let full = table(&[e("a", 1), e("b", 1), e("c", 1), e("d", 1)], M);
        let less = table(&[e("a", 1), e("b", 1), e("c", 1), e("d", 0)], M);
        // Slots of a, b, c that stayed: Maglev keeps most of them.
        let kept = full
            .iter()
            .zip(&less)
            .filter(|(x, y)| **x != 3 && x == y)
            .count();
        let owned = full.iter().filter(|&&x| x != 3).count();
        assert!(kept as f64 / owned as f64 > 0.9, "{kept}/{owned}");
        assert!(less.iter().all(|&v| v != 3), "drained backend gets no slot");
    }

    #[test]
    fn empty_when_all_drained() {
        assert!(table(&[e("a", 0)], M).is_empty());
        assert!(wrr(&[], 256).is_empty());
    }

    #[test]
    fn wrr_interleaves_by_weight() {
        assert_eq!(wrr(&[e("a", 1), e("b", 2)], 256), vec![1, 0, 1]);
        assert_eq!(wrr(&[e("a", 1), e("b", 1), e("c", 1)], 256), vec![0, 1, 2]);
        assert_eq!(wrr(&[e("a", 4), e("b", 2)], 256), vec![0, 0, 1]);
        // Weights summing past the bank's capacity are scaled down to fit it.
        let t = wrr(&[e("a", 300), e("b", 101)], 256);
        assert!(t.len() <= 256 && t.len() > 240, "{}", t.len());
        let (a, b) = (t.iter().filter(|&&i| i == 0).count() as f64, t.iter().filter(|&&i| i == 1).count() as f64);
        assert!((a / b - 300.0 / 101.0).abs() < 0.1, "proportions kept: {a}:{b}");
    }

    #[test]
    fn changed_slots_reports_only_differences() {
        assert_eq!(
            changed_slots(&[1, 2, 3], &[1, 5, 3, 4]),
            vec![(1, 5), (3, 4)]
        );
        assert!(changed_slots(&[1, 2], &[1, 2]).is_empty());
    }
}
