//! The MASTER's refresh: a walk over its connection tables that re-announces, once per
//! [`REFRESH_PERIOD`], every connection that carried traffic since the previous pass (its way's
//! last-seen stamp moved). IPVS re-sends an established connection every 50 packets for the
//! same two reasons: a BACKUP that restarted or joined late learns every active connection
//! within one period, and the entries a BACKUP holds stay as young as the traffic they carry.
//!
//! The walk reads [`STEP_SETS`] sets per step (one system call each), one step per
//! [`STEP_EVERY`], so a pass over both families' 65,536 sets takes [`REFRESH_PERIOD`] and a few
//! milliseconds of CPU per second. A way is announced only if its check word matches its key
//! and backend (a way torn by two CPUs writing it is skipped).

use std::{path::Path, time::Duration};

use aya::maps::{Array, Map, MapData};
use ka_common::{
    lb::{conn_check, conn_hash, conn_hash4, ConnSet4, ConnSet6, FlowKey, CONN4_MAP, CONN6_MAP, CONN_SETS, CONN_WAYS, FAMILY_V4},
    sync::{SyncEvent, SYNC_EV_NEW},
};

use super::SyncError;

/// Sets read per step.
pub const STEP_SETS: u32 = 4096;
/// Time between steps.
pub const STEP_EVERY: Duration = Duration::from_secs(1);
/// One pass over both families' tables.
pub const REFRESH_PERIOD: Duration = Duration::from_secs((2 * CONN_SETS / STEP_SETS) as u64);

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> SyncError {
    move |e| SyncError::Map { map, source: Box::new(e) }
}

/// Appends the ways of an IPv4 set whose stamp moved since `prev` (updated) and whose check
/// word is valid (pure).
pub fn active4(set: &ConnSet4, prev: &mut [u32], out: &mut Vec<SyncEvent>) {
    for (way, last) in set.ways.iter().zip(prev.iter_mut()) {
        if way.stamp == 0 || way.stamp == *last {
            continue;
        }
        *last = way.stamp;
        if way.check != conn_check(conn_hash4(&way.key), way.backend) {
            continue;
        }
        let k = &way.key;
        let mut key = FlowKey { sport: k.sport, dport: k.dport, proto: k.proto, family: FAMILY_V4, ..Default::default() };
        key.src[..4].copy_from_slice(&k.src);
        key.dst[..4].copy_from_slice(&k.dst);
        out.push(SyncEvent { key, backend: way.backend, kind: SYNC_EV_NEW });
    }
}

/// [`active4`] for an IPv6 set.
pub fn active6(set: &ConnSet6, prev: &mut [u32], out: &mut Vec<SyncEvent>) {
    for (way, last) in set.ways.iter().zip(prev.iter_mut()) {
        if way.stamp == 0 || way.stamp == *last {
            continue;
        }
        *last = way.stamp;
        if way.check != conn_check(conn_hash(&way.key), way.backend) {
            continue;
        }
        out.push(SyncEvent { key: way.key, backend: way.backend, kind: SYNC_EV_NEW });
    }
}

/// The walk's state: both tables, the stamps seen at the previous pass, where it is.
pub struct Refresher {
    v4: Array<MapData, ConnSet4>,
    v6: Array<MapData, ConnSet6>,
    prev4: Vec<u32>,
    prev6: Vec<u32>,
    /// Next set: `0..CONN_SETS` IPv4, then IPv6.
    cursor: u32,
}

impl Refresher {
    /// Walks the connection tables pinned under `pin_dir` (the datapath's).
    ///
    /// # Errors
    /// A pin is missing or is not the expected array.
    pub fn open(pin_dir: &Path) -> Result<Refresher, SyncError> {
        let open = |name: &'static str| -> Result<Map, SyncError> {
            let data = MapData::from_pin(pin_dir.join(name)).map_err(map_err(name))?;
            Map::from_map_data(data).map_err(map_err(name))
        };
        Refresher::from_maps(open(CONN4_MAP)?, open(CONN6_MAP)?)
    }

    /// Walks these two maps (`KA_CONNS4`, `KA_CONNS6`).
    ///
    /// # Errors
    /// A map is not the expected array.
    pub fn from_maps(v4: Map, v6: Map) -> Result<Refresher, SyncError> {
        let n = (CONN_SETS as usize) * CONN_WAYS;
        Ok(Refresher {
            v4: Array::try_from(v4).map_err(map_err(CONN4_MAP))?,
            v6: Array::try_from(v6).map_err(map_err(CONN6_MAP))?,
            prev4: vec![0; n],
            prev6: vec![0; n],
            cursor: 0,
        })
    }

    /// Forgets the stamps seen: the next pass announces every live connection (on becoming
    /// MASTER, for BACKUPs that missed what the previous MASTER sent).
    pub fn reset(&mut self) {
        self.prev4.fill(0);
        self.prev6.fill(0);
    }

    /// Reads the next [`STEP_SETS`] sets, appending the connections active since the previous
    /// pass to `out`.
    ///
    /// # Errors
    /// A read failed (the walk goes on at the next set).
    pub fn step(&mut self, out: &mut Vec<SyncEvent>) -> Result<(), SyncError> {
        let w = CONN_WAYS;
        for _ in 0..STEP_SETS {
            let c = self.cursor;
            self.cursor = (self.cursor + 1) % (2 * CONN_SETS);
            let i = (c % CONN_SETS) as usize;
            if c < CONN_SETS {
                let set = self.v4.get(&c, 0).map_err(map_err(CONN4_MAP))?;
                active4(&set, &mut self.prev4[i * w..(i + 1) * w], out);
            } else {
                let set = self.v6.get(&(c - CONN_SETS), 0).map_err(map_err(CONN6_MAP))?;
                active6(&set, &mut self.prev6[i * w..(i + 1) * w], out);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ka_common::lb::{ConnWay4, ConnWay6, FlowKey4, FAMILY_V6};

    fn way4(port: u16, backend: u32, stamp: u32) -> ConnWay4 {
        let key = FlowKey4 { src: [198, 18, 0, 1], dst: [198, 51, 100, 1], sport: port.to_be_bytes(), dport: [0, 80], proto: 6, _pad: [0; 3] };
        ConnWay4 { key, backend, check: conn_check(conn_hash4(&key), backend), stamp, state: 0 }
    }

    /// A way is announced when its stamp moved since the previous pass, never when it is free,
    /// unchanged, or torn (check word wrong).
    #[test]
    fn announces_ways_whose_stamp_moved() {
        let torn = ConnWay4 { backend: 9, ..way4(3, 2, 500) };
        let set = ConnSet4 { ways: [way4(1, 7, 100), way4(2, 8, 0), torn, way4(4, 5, 300)] };
        let mut prev = [0u32; CONN_WAYS];
        let mut out = Vec::new();
        active4(&set, &mut prev, &mut out);
        let got: Vec<(u16, u32)> = out.iter().map(|e| (u16::from_be_bytes(e.key.sport), e.backend)).collect();
        assert_eq!(got, vec![(1, 7), (4, 5)], "live, valid ways");
        assert_eq!(out[0].key.family, FAMILY_V4);
        assert_eq!(&out[0].key.src[..4], &[198, 18, 0, 1]);
        out.clear();
        active4(&set, &mut prev, &mut out);
        assert!(out.is_empty(), "no traffic since: nothing to announce");
        let mut busy = set;
        busy.ways[3].stamp = 301;
        active4(&busy, &mut prev, &mut out);
        assert_eq!(out.iter().map(|e| e.backend).collect::<Vec<_>>(), vec![5], "only the way that saw traffic");
    }

    #[test]
    fn ipv6_ways() {
        let mut key = FlowKey { sport: [0, 9], dport: [0, 80], proto: 17, family: FAMILY_V6, ..Default::default() };
        key.src[0] = 0xfd;
        let w = ConnWay6 { key, backend: 3, check: conn_check(conn_hash(&key), 3), stamp: 7, state: 0 };
        let set = ConnSet6 { ways: [w, ConnWay6::default(), ConnWay6 { check: 0, ..w }, ConnWay6::default()] };
        let mut prev = [0u32; CONN_WAYS];
        let mut out = Vec::new();
        active6(&set, &mut prev, &mut out);
        assert_eq!(out, vec![SyncEvent { key, backend: 3, kind: SYNC_EV_NEW }]);
    }

    #[test]
    fn a_pass_takes_the_refresh_period() {
        assert_eq!(REFRESH_PERIOD, STEP_EVERY * (2 * CONN_SETS / STEP_SETS));
        assert_eq!(REFRESH_PERIOD, Duration::from_secs(32));
    }
}
