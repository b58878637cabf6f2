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
use ka_common::lb::{local_mac_slot, Globals, GLOBALS_MAP, G_DST_MAC, LOCAL_MACS_MAP, LOCAL_MACS_MAX, LOCAL_MAC_SLOTS, LOCAL_MAC_SLOTS_MAP};

use super::LbError;

/// The VRRP virtual MACs of `cfg`'s instances (RFC 5798 §7.3: `00-00-5E-00-01-{VRID}` for
/// IPv4, `00-00-5E-00-02-{VRID}` for IPv6); both families for each VRID (pure).
pub fn virtual_macs(cfg: &crate::config::Config) -> BTreeSet<[u8; 6]> {
    cfg.vrrp_instances.iter().flat_map(|i| [[0, 0, 0x5e, 0, 1, i.virtual_router_id], [0, 0, 0x5e, 0, 2, i.virtual_router_id]]).collect()
}

/// The slots of [`LOCAL_MAC_SLOTS_MAP`] for the hash map's keys `keys`: each key (as a
/// native-endian word) in its [`local_mac_slot`], the first in order when several share one
/// (the others are found in the hash map); 0 elsewhere (pure).
pub fn mac_slots(keys: &BTreeSet<[u8; 8]>) -> Vec<u64> {
    let mut slots = vec![0u64; LOCAL_MAC_SLOTS as usize];
    for k in keys {
        let slot = &mut slots[local_mac_slot(u32::from_ne_bytes([k[2], k[3], k[4], k[5]])) as usize];
        if *slot == 0 {
            *slot = u64::from_ne_bytes(*k);
        }
    }
    slots
}

/// Writes `macs` (unicast ones; at most [`LOCAL_MACS_MAX`]) to the map and its slots and turns
/// the check on; with none, turns it off (every frame to a service is forwarded, as before).
/// When the MAC map cannot be written, the check is turned off before the error is returned.
/// A MAC leaves its slot before the hash map, and enters it after, so the slot never names a
/// MAC the hash map does not hold.
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
    let slots_want = mac_slots(&wanted);
    let written = (|| {
        let mut slots: Array<_, u64> =
            Array::try_from(ebpf.map_mut(LOCAL_MAC_SLOTS_MAP).ok_or(LbError::MissingMap(LOCAL_MAC_SLOTS_MAP))?).map_err(map_err(LOCAL_MAC_SLOTS_MAP))?;
        // Slots whose MAC leaves or moves: emptied first.
        for (i, want) in slots_want.iter().enumerate() {
            let i = i as u32;
            let have = slots.get(&i, 0).map_err(map_err(LOCAL_MAC_SLOTS_MAP))?;
            if have != 0 && have != *want {
                slots.set(i, 0, 0).map_err(map_err(LOCAL_MAC_SLOTS_MAP))?;
            }
        }
        let mut map: BpfHashMap<_, [u8; 8], u8> =
            BpfHashMap::try_from(ebpf.map_mut(LOCAL_MACS_MAP).ok_or(LbError::MissingMap(LOCAL_MACS_MAP))?).map_err(map_err(LOCAL_MACS_MAP))?;
        let stale: Vec<[u8; 8]> = map.keys().filter_map(Result::ok).filter(|k| !wanted.contains(k)).collect();
        for k in stale {
            map.remove(&k).map_err(map_err(LOCAL_MACS_MAP))?;
        }
        for k in &wanted {
            map.insert(k, 1, 0).map_err(map_err(LOCAL_MACS_MAP))?;
        }
        let mut slots: Array<_, u64> =
            Array::try_from(ebpf.map_mut(LOCAL_MAC_SLOTS_MAP).ok_or(LbError::MissingMap(LOCAL_MAC_SLOTS_MAP))?).map_err(map_err(LOCAL_MAC_SLOTS_MAP))?;
        for (i, want) in slots_want.iter().enumerate() {
            if *want != 0 {
                slots.set(i as u32, *want, 0).map_err(map_err(LOCAL_MAC_SLOTS_MAP))?;
            }
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

    /// Each MAC sits in its slot, the first in order when several share one; the VRRP virtual
    /// MACs of the first 16 VRIDs (both families) and two interface MACs all get slots of their
    /// own.
    #[test]
    fn macs_in_their_slots() {
        let key = |m: [u8; 6]| [m[0], m[1], m[2], m[3], m[4], m[5], 0, 0];
        let mut keys: BTreeSet<[u8; 8]> = (1..=16u8).flat_map(|v| [key([0, 0, 0x5e, 0, 1, v]), key([0, 0, 0x5e, 0, 2, v])]).collect();
        keys.insert(key([0x02, 0x42, 0xc6, 0x12, 0x00, 0x02]));
        keys.insert(key([0x02, 0x42, 0xc6, 0x12, 0x00, 0x03]));
        let slots = mac_slots(&keys);
        assert_eq!(slots.len(), LOCAL_MAC_SLOTS as usize);
        let slot_of = |k: &[u8; 8]| local_mac_slot(u32::from_ne_bytes([k[2], k[3], k[4], k[5]])) as usize;
        for k in &keys {
            assert_eq!(slots[slot_of(k)], u64::from_ne_bytes(*k), "{k:02x?} not in its slot");
        }
        assert_eq!(slots.iter().filter(|s| **s != 0).count(), keys.len());
        // Two MACs of one slot: the first holds it.
        let a = key([0x02, 0, 0, 0, 0, 1]);
        let b = (0..=u16::MAX)
            .map(|i| key([0x02, 0, 0, 0, (i >> 8) as u8, i as u8]))
            .find(|b| *b != a && slot_of(b) == slot_of(&a))
            .expect("a MAC sharing the slot");
        let slots = mac_slots(&[a, b].into_iter().collect());
        assert_eq!(slots[slot_of(&a)], u64::from_ne_bytes(a.min(b)));
        assert_eq!(slots.iter().filter(|s| **s != 0).count(), 1);
    }
}
