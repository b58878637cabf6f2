//! Regions of the scheduling-table pool (`ka_common::lb::TABLES_MAP`): a buddy allocator over
//! [`TABLE_POOL_SLOTS`] slots. Each table service holds one region of two banks of `cap` slots
//! (a power of two, `ka_common::lb::table_capacity`), so every region is a power of two
//! aligned on its size: a freed region merges back with its buddy, and no sequence of
//! allocations and frees leaves free slots that a region of the largest size could not use
//! while the total in use leaves room for it, short of the fragmentation buddies allow (a
//! mix of sizes). Pure: the writer applies the regions to the maps.

use std::collections::BTreeSet;

use ka_common::lb::{TABLE_BANKS, TABLE_POOL_SLOTS, TABLE_SIZE};

/// The smallest region: two banks of 256 slots.
pub const MIN_REGION: u32 = TABLE_BANKS * 256;

/// Free blocks of the pool, by order (`MIN_REGION << order` slots).
#[derive(Clone, Debug)]
pub struct Pool {
    free: Vec<BTreeSet<u32>>,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool::new(TABLE_POOL_SLOTS)
    }
}

/// The order of a block of `size` slots (a power of two ≥ [`MIN_REGION`]).
fn order(size: u32) -> usize {
    (size.max(MIN_REGION) / MIN_REGION).trailing_zeros() as usize
}

impl Pool {
    /// A pool of `total` slots (a power of two ≥ [`MIN_REGION`]), all free.
    pub fn new(total: u32) -> Pool {
        let top = order(total);
        let mut free = vec![BTreeSet::new(); top + 1];
        free[top].insert(0);
        Pool { free }
    }

    /// The region size of a service whose banks hold `cap` slots.
    pub fn region(cap: u32) -> u32 {
        (TABLE_BANKS * cap.clamp(MIN_REGION / TABLE_BANKS, TABLE_SIZE)).next_power_of_two()
    }

    /// A free region of `size` slots (a power of two), its first slot; `None` when no free
    /// block is large enough.
    pub fn alloc(&mut self, size: u32) -> Option<u32> {
        let want = order(size);
        let from = (want..self.free.len()).find(|&o| !self.free[o].is_empty())?;
        let start = self.free[from].pop_first()?;
        // Split down: the upper halves stay free.
        for o in (want..from).rev() {
            self.free[o].insert(start + (MIN_REGION << o));
        }
        Some(start)
    }

    /// Returns the region at `start` of `size` slots, merging it with its free buddies.
    pub fn free(&mut self, start: u32, size: u32) {
        let mut o = order(size);
        let mut start = start;
        while o + 1 < self.free.len() {
            let buddy = start ^ (MIN_REGION << o);
            if !self.free[o].remove(&buddy) {
                break;
            }
            start = start.min(buddy);
            o += 1;
        }
        self.free[o].insert(start);
    }

    /// Takes the specific region at `start` of `size` slots (a region an earlier run left in the
    /// maps); false when it is misaligned, out of the pool or not entirely free.
    pub fn reserve(&mut self, start: u32, size: u32) -> bool {
        let want = order(size);
        if size == 0 || !start.is_multiple_of(MIN_REGION << want) || want >= self.free.len() {
            return false;
        }
        // The free block that contains it, at its order or above.
        let Some((o, block)) = (want..self.free.len()).find_map(|o| {
            let block = start & !((MIN_REGION << o) - 1);
            self.free[o].contains(&block).then_some((o, block))
        }) else {
            return false;
        };
        self.free[o].remove(&block);
        // Split the block down towards the region, freeing the halves it is not in.
        let mut b = block;
        for lower in (want..o).rev() {
            let half = MIN_REGION << lower;
            if start >= b + half {
                self.free[lower].insert(b);
                b += half;
            } else {
                self.free[lower].insert(b + half);
            }
        }
        true
    }

    /// Free slots in all.
    pub fn free_slots(&self) -> u64 {
        self.free.iter().enumerate().map(|(o, s)| s.len() as u64 * u64::from(MIN_REGION << o)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regions are aligned on their size and disjoint; freeing everything merges the pool
    /// back into one block; a region reserved by position is carved out exactly.
    #[test]
    fn buddy_regions_split_merge_and_reserve() {
        let total = 1 << 16;
        let mut p = Pool::new(total);
        let sizes = [512, 2048, 512, 1024, 8192, 512, 4096];
        let mut got: Vec<(u32, u32)> = sizes.iter().map(|&s| (p.alloc(s).expect("room"), s)).collect();
        for (i, &(a, s)) in got.iter().enumerate() {
            assert_eq!(a % s, 0, "aligned");
            for &(b, t) in &got[i + 1..] {
                assert!(a + s <= b || b + t <= a, "[{a}, +{s}) and [{b}, +{t}) overlap");
            }
        }
        let used: u64 = sizes.iter().map(|&s| u64::from(s)).sum();
        assert_eq!(p.free_slots(), u64::from(total) - used);
        while let Some((a, s)) = got.pop() {
            p.free(a, s);
        }
        assert_eq!(p.free_slots(), u64::from(total));
        assert_eq!(p.alloc(total), Some(0), "merged back into one block");
        p.free(0, total);

        assert!(p.reserve(3 * 2048, 2048), "a free, aligned region");
        assert!(!p.reserve(3 * 2048, 512), "taken");
        assert!(!p.reserve(100, 512), "misaligned");
        assert!(!p.reserve(total, 512), "outside the pool");
        assert_eq!(p.free_slots(), u64::from(total - 2048));
        let others: Vec<u32> = (0..(total - 2048) / 2048).map(|_| p.alloc(2048).expect("room")).collect();
        assert!(!others.contains(&(3 * 2048)), "the reserved region is not handed out again");
        assert_eq!(p.alloc(512), None, "full");
    }

    /// 16,384 regions of the smallest size, or 64 of the largest, fill the real pool.
    #[test]
    fn the_pool_holds_ten_thousand_small_services_or_64_large_ones() {
        let mut p = Pool::default();
        for _ in 0..TABLE_POOL_SLOTS / Pool::region(256) {
            assert!(p.alloc(Pool::region(256)).is_some());
        }
        assert_eq!(p.alloc(Pool::region(256)), None);
        let mut p = Pool::default();
        for _ in 0..64 {
            assert!(p.alloc(Pool::region(TABLE_SIZE)).is_some());
        }
        assert_eq!(p.alloc(MIN_REGION), None);
        assert_eq!(Pool::region(256), 512);
        assert_eq!(Pool::region(0), 512);
        assert_eq!(Pool::region(TABLE_SIZE), 2 * TABLE_SIZE);
    }
}
