//! The destination-MAC check of the load-balancer path: the MACs a frame to a service may be
//! addressed to (each XDP interface's, and the VRRP virtual MACs `use_vmac` puts on them).
//! With them written, `ka_xdp` forwards only frames addressed to this director; one flooded
//! to every port (an unknown unicast on a switch) passes, counted `pass_not_our_mac`, so two
//! active directors never forward the same packet.

use std::collections::BTreeSet;

use aya::{
    maps::{Array, HashMap as BpfHashMap},
    Ebpf,
};
use ka_common::lb::{Globals, GLOBALS_MAP, G_DST_MAC, LOCAL_MACS_MAP, LOCAL_MACS_MAX};

use super::LbError;

/// The VRRP virtual MACs of `cfg`'s instances (RFC 5798 §7.3: `00-00-5E-00-01-{VRID}` for
/// IPv4, `00-00-5E-00-02-{VRID}` for IPv6); both families for each VRID (pure).
pub fn virtual_macs(cfg: &crate::config::Config) -> BTreeSet<[u8; 6]> {
    cfg.vrrp_instances.iter().flat_map(|i| [[0, 0, 0x5e, 0, 1, i.virtual_router_id], [0, 0, 0x5e, 0, 2, i.virtual_router_id]]).collect()
}

/// Writes `macs` (unicast ones; at most [`LOCAL_MACS_MAX`]) to the map and turns the check
/// on; with none, turns it off (every frame to a service is forwarded, as before). When the
/// MAC map cannot be written, the check is turned off before the error is returned.
///
/// # Errors
/// A map is missing or refuses the write.
pub fn install(ebpf: &mut Ebpf, macs: &BTreeSet<[u8; 6]>) -> Result<usize, LbError> {
    let map_err = |map: &'static str| move |e: aya::maps::MapError| LbError::Map { map, source: Box::new(e) };
    let wanted: BTreeSet<[u8; 8]> = macs
        .iter()
        .filter(|m| m[0] & 1 == 0 && **m != [0; 6])
        .take(usize::try_from(LOCAL_MACS_MAX).unwrap_or(usize::MAX))
        .map(|m| [m[0], m[1], m[2], m[3], m[4], m[5], 0, 0])
        .collect();
    let written = (|| {
        let mut map: BpfHashMap<_, [u8; 8], u8> =
            BpfHashMap::try_from(ebpf.map_mut(LOCAL_MACS_MAP).ok_or(LbError::MissingMap(LOCAL_MACS_MAP))?).map_err(map_err(LOCAL_MACS_MAP))?;
        let stale: Vec<[u8; 8]> = map.keys().filter_map(Result::ok).filter(|k| !wanted.contains(k)).collect();
        for k in stale {
            map.remove(&k).map_err(map_err(LOCAL_MACS_MAP))?;
        }
        for k in &wanted {
            map.insert(k, 1, 0).map_err(map_err(LOCAL_MACS_MAP))?;
        }
        Ok::<(), LbError>(())
    })();
    // A partly written map must not gate forwarding (the flag may come from an adopted run).
    let on = written.is_ok() && !wanted.is_empty();
    let mut arr: Array<_, Globals> = Array::try_from(ebpf.map_mut(GLOBALS_MAP).ok_or(LbError::MissingMap(GLOBALS_MAP))?).map_err(map_err(GLOBALS_MAP))?;
    let mut g = arr.get(&0, 0).map_err(map_err(GLOBALS_MAP))?;
    if on {
        g.flags |= G_DST_MAC;
    } else {
        g.flags &= !G_DST_MAC;
    }
    arr.set(0, g, 0).map_err(map_err(GLOBALS_MAP))?;
    written.map(|()| wanted.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_macs_of_each_vrid() {
        let l = crate::config::parse_str(
            "vrrp_instance A {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n 198.18.0.1\n }\n}\n",
            std::path::Path::new("t.conf"),
            &crate::config::LoadOptions::default(),
        );
        let macs = virtual_macs(&l.config);
        assert_eq!(macs, [[0, 0, 0x5e, 0, 1, 51], [0, 0, 0x5e, 0, 2, 51]].into_iter().collect());
    }
}
