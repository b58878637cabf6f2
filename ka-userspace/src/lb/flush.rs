//! `lvs_flush`: keepalived flushes IPVS when it starts; ka does not adopt the load-balancer
//! tables an earlier run left pinned (services, real servers, scheduling tables, connections,
//! persistence templates, NAT entries, their counters), so the new run starts from empty ones.
//! The maps of VRRP, the mastership flags, the globals and the counters of `ka_xdp` are still
//! adopted, and the links too: the program the earlier run left keeps forwarding with its own
//! tables until the new one, its fresh tables written, replaces it.

use std::path::Path;

use ka_common::lb::{
    BACKENDS_MAP, BACKEND_STATS_MAP, CONN4_MAP, CONN6_MAP, NAT_MAP, NH_CACHE_MAP, PERSIST_MAP, RR_MAP, SERVICES4_MAP,
    SERVICES6_MAP, SERVICE_STATS_MAP, TABLES_MAP,
};
use tracing::warn;

/// The maps `lvs_flush` starts empty.
pub const FLUSHED_MAPS: &[&str] = &[
    SERVICES4_MAP,
    SERVICES6_MAP,
    BACKENDS_MAP,
    TABLES_MAP,
    RR_MAP,
    CONN4_MAP,
    CONN6_MAP,
    PERSIST_MAP,
    NAT_MAP,
    NH_CACHE_MAP,
    SERVICE_STATS_MAP,
    BACKEND_STATS_MAP,
];

/// Removes the pins of [`FLUSHED_MAPS`] (and any `:pending` one of a migration) under
/// `pin_dir`, so the datapath loaded next creates them afresh. Returns how many pins were
/// removed; one that cannot be removed is logged (it is then adopted).
pub fn forget_pinned_tables(pin_dir: &Path) -> usize {
    let mut removed = 0;
    for name in FLUSHED_MAPS {
        for pin in [pin_dir.join(name), pin_dir.join(format!("{name}:pending"))] {
            match std::fs::remove_file(&pin) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => warn!(pin = %pin.display(), error = %e, "lvs_flush: cannot remove the pin"),
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the load-balancer tables are forgotten: links, VRRP maps, mastership, globals and
    /// the layout record stay.
    #[test]
    fn forgets_the_tables_only() {
        let dir = std::env::temp_dir().join(format!("ka-flush-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let kept = ["link_eth0", ka_common::lb::MASTER_MAP, ka_common::lb::GLOBALS_MAP, ka_common::maps::META_MAP, ka_common::vrrp_fast::VRRP_INSTANCES_MAP];
        for n in kept.iter().chain(FLUSHED_MAPS).chain(&["KA_CONNS4:pending"]) {
            std::fs::write(dir.join(n), "").expect("pin");
        }
        assert_eq!(forget_pinned_tables(&dir), FLUSHED_MAPS.len() + 1);
        for n in kept {
            assert!(dir.join(n).exists(), "{n} kept");
        }
        assert!(FLUSHED_MAPS.iter().all(|n| !dir.join(n).exists()));
        assert_eq!(forget_pinned_tables(&dir), 0, "nothing left to remove");
        let _ = std::fs::remove_dir_all(dir);
    }
}
