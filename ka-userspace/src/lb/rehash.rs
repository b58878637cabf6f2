//! Upgrade of the pinned connection tables (`KA_CONNS4`, `KA_CONNS6`) from a ka that placed
//! and checked their entries by the scheduler's hash (`ka_common::lb::flow_hash4`, Murmur3) to
//! the connection-table hash of this build (`ka_common::lb::conn_hash4`; layout revision 1 of
//! both maps): every live entry moves to a free way of its new set with its check word
//! recomputed, so established connections keep their real servers across the upgrade. An
//! entry the earlier program writes between this copy and the link update is not carried (its
//! flow is scheduled again, to the same real server unless the set changed meanwhile).

use aya::maps::{Array, Map, MapData};
use aya::Pod;
use ka_common::lb::{
    conn_check, conn_hash, conn_hash4, conn_set, flow_hash, flow_hash4, ConnSet4, ConnSet6,
    ConnWay4, ConnWay6, CONN4_MAP, CONN6_MAP, CONN_SETS, CONN_WAYS,
};

/// A way of one family's table, as the rehash sees it.
pub trait TableWay: Copy + Default {
    /// Its last-packet stamp (0: free or being written).
    fn stamp(&self) -> u32;
    /// Whether its check word is valid under the scheduler's hash (the earlier layout).
    fn checked_by_flow_hash(&self) -> bool;
    /// Its connection-table hash (this layout).
    fn table_hash(&self) -> u32;
    /// Sets its check word for connection-table hash `hash`.
    fn recheck(&mut self, hash: u32);
}

macro_rules! table_way {
    ($way:ty, $flow:ident, $table:ident) => {
        impl TableWay for $way {
            fn stamp(&self) -> u32 {
                self.stamp
            }
            fn checked_by_flow_hash(&self) -> bool {
                self.check == conn_check($flow(&self.key), self.backend)
            }
            fn table_hash(&self) -> u32 {
                $table(&self.key)
            }
            fn recheck(&mut self, hash: u32) {
                self.check = conn_check(hash, self.backend);
            }
        }
    };
}
table_way!(ConnWay4, flow_hash4, conn_hash4);
table_way!(ConnWay6, flow_hash, conn_hash);

/// What [`rehash_sets`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rehashed {
    /// Entries moved to their new set.
    pub moved: usize,
    /// Live entries whose new set was full (their flows are scheduled again).
    pub dropped: usize,
    /// Ways skipped: torn (check word invalid) or being written.
    pub skipped: usize,
}

/// The sets of this layout holding the live entries of `old` (sets of the earlier layout),
/// each in the first free way of its new set (pure).
pub fn rehash_sets<W: TableWay>(old: &[[W; CONN_WAYS]]) -> (Vec<[W; CONN_WAYS]>, Rehashed) {
    let mut new = vec![[W::default(); CONN_WAYS]; CONN_SETS as usize];
    let mut r = Rehashed::default();
    for way in old.iter().flatten() {
        if way.stamp() == 0 {
            continue;
        }
        if !way.checked_by_flow_hash() {
            r.skipped += 1;
            continue;
        }
        let hash = way.table_hash();
        let set = &mut new[conn_set(hash) as usize];
        match set.iter_mut().find(|w| w.stamp() == 0) {
            Some(free) => {
                *free = *way;
                free.recheck(hash);
                r.moved += 1;
            }
            None => r.dropped += 1,
        }
    }
    (new, r)
}

/// Moves the entries of the earlier connection table `old` (map `name`, [`CONN4_MAP`] or
/// [`CONN6_MAP`]) into this build's `new`.
///
/// # Errors
/// A map cannot be read or written.
pub fn migrate(name: &str, old: MapData, new: MapData) -> Result<Rehashed, aya::maps::MapError> {
    if name == CONN4_MAP {
        migrate_as::<ConnSet4, ConnWay4>(old, new, |s| s.ways, |ways| ConnSet4 { ways })
    } else if name == CONN6_MAP {
        migrate_as::<ConnSet6, ConnWay6>(old, new, |s| s.ways, |ways| ConnSet6 { ways })
    } else {
        Ok(Rehashed::default())
    }
}

fn migrate_as<S: Pod, W: TableWay>(
    old: MapData,
    new: MapData,
    ways: impl Fn(S) -> [W; CONN_WAYS],
    set: impl Fn([W; CONN_WAYS]) -> S,
) -> Result<Rehashed, aya::maps::MapError> {
    let old = Array::<_, S>::try_from(Map::Array(old))?;
    let sets = (0..CONN_SETS)
        .map(|i| old.get(&i, 0).map(&ways))
        .collect::<Result<Vec<_>, _>>()?;
    let (new_sets, r) = rehash_sets(&sets);
    let mut arr = Array::<_, S>::try_from(Map::Array(new))?;
    for (i, s) in new_sets.into_iter().enumerate() {
        if s.iter().any(|w| w.stamp() != 0) {
            arr.set(i as u32, set(s), 0)?;
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use ka_common::lb::FlowKey4;

    use super::*;

    fn way(i: u32, backend: u32) -> ConnWay4 {
        let key = FlowKey4 {
            src: [198, 18, (i >> 8) as u8, i as u8],
            dst: [198, 19, (i >> 16) as u8, 1],
            sport: (1024u16.wrapping_add(i as u16)).to_be_bytes(),
            dport: 80u16.to_be_bytes(),
            proto: 6,
            _pad: [0; 3],
        };
        ConnWay4 {
            key,
            backend,
            check: conn_check(flow_hash4(&key), backend),
            stamp: 100 + i,
            state: 2,
        }
    }

    /// Live entries land in their new set with a check word valid under the new hash and the
    /// rest of the entry unchanged; free, busy and torn ways are not carried; a full new set
    /// drops what does not fit.
    #[test]
    fn entries_move_to_their_new_sets() {
        let mut old = vec![[ConnWay4::default(); CONN_WAYS]; CONN_SETS as usize];
        // Each in the set the earlier hash gave it.
        let mut placed = Vec::new();
        for w in (0..1000).map(|i| way(i, i % 7)) {
            let s = &mut old[conn_set(flow_hash4(&w.key)) as usize];
            if let Some(free) = s.iter_mut().find(|x| x.stamp == 0) {
                *free = w;
                placed.push(w);
            }
        }
        // A torn way (another backend than its check word says) and a busy one.
        let mut torn = way(5000, 1);
        torn.backend = 2;
        old[1][3] = torn;
        old[2][3] = ConnWay4 {
            stamp: 0,
            state: ka_common::sched::CONN_BUSY,
            ..way(5001, 1)
        };
        let (new, r) = rehash_sets(&old);
        assert_eq!(
            r,
            Rehashed {
                moved: placed.len(),
                dropped: 0,
                skipped: 1
            }
        );
        for w in &placed {
            let h = conn_hash4(&w.key);
            let got = new[conn_set(h) as usize]
                .iter()
                .find(|x| x.key == w.key)
                .expect("moved");
            assert_eq!(
                (got.backend, got.stamp, got.state, got.check),
                (w.backend, w.stamp, w.state, conn_check(h, w.backend))
            );
        }
        assert!(
            !new.iter().flatten().any(|w| w.key == torn.key),
            "a torn way was carried"
        );

        // Five flows of one new set: four fit, one is dropped.
        let mut same = Vec::new();
        let target = conn_set(conn_hash4(&way(0, 0).key));
        for i in 0..2_000_000 {
            let w = way(i, 1);
            if conn_set(conn_hash4(&w.key)) == target {
                same.push(w);
                if same.len() == 5 {
                    break;
                }
            }
        }
        assert_eq!(same.len(), 5);
        let old: Vec<[ConnWay4; CONN_WAYS]> = same
            .iter()
            .map(|w| {
                [
                    *w,
                    ConnWay4::default(),
                    ConnWay4::default(),
                    ConnWay4::default(),
                ]
            })
            .collect();
        let (_, r) = rehash_sets(&old);
        assert_eq!(
            r,
            Rehashed {
                moved: 4,
                dropped: 1,
                skipped: 0
            }
        );
    }
}
