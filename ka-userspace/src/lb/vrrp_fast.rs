//! Userspace side of the XDP VRRP fast path (`ka_common::vrrp_fast`): configure an instance's
//! checks and known master, read its master's last-seen time, and drain the ring buffer of
//! changes as decoded [`Event`]s.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    time::Duration,
};

use aya::{
    maps::{Array, HashMap as BpfHashMap, MapData, RingBuf},
    Ebpf,
};
use ka_common::{
    lb::{Globals, FAMILY_V4, FAMILY_V6, GLOBALS_MAP, G_VRRP_DROP_UNKNOWN, G_VRRP_FASTPATH},
    vrrp::Family,
    vrrp_fast::{
        VrrpEvent, VrrpInstance, VrrpKey, VRRP_CSUM_NO_PSEUDO, VRRP_CSUM_OLD_UNICAST,
        VRRP_CSUM_STANDARD, VRRP_EVENTS_MAP, VRRP_EV_HIGHER_PRIO, VRRP_EV_INTERVAL_CHANGE,
        VRRP_EV_LOWER_PRIO, VRRP_EV_NEW_MASTER, VRRP_EV_PRIO_CHANGE, VRRP_EV_RESIGN,
        VRRP_F_CHECK_TTL, VRRP_F_DROP_INVALID, VRRP_F_DROP_STEADY, VRRP_F_MASTER,
        MAX_VRRP_INSTANCES, VRRP_INSTANCES_MAP, VRRP_SEEN_MAP, VRRP_VRID_MAP, vrid_index, VrrpVridSlots,
    },
};
use tokio::io::unix::AsyncFd;

/// Errors of the fast-path API.
#[derive(Debug, thiserror::Error)]
pub enum VrrpFastError {
    /// A map is missing from the object (or was already taken).
    #[error("map {0} is missing from the eBPF object")]
    MissingMap(&'static str),
    /// A map operation failed.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Cause.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// An address of the wrong family for the instance.
    #[error("vrid {vrid}: address {addr} is not of the instance's family")]
    Family {
        /// VRID.
        vrid: u8,
        /// The address.
        addr: IpAddr,
    },
    /// Registering the ring buffer with the reactor failed.
    #[error("ring buffer: {0}")]
    Io(#[source] std::io::Error),
    /// The kernel's clocks cannot be read (the last-seen stamps are tick counts).
    #[error("kernel clock: {0}")]
    Clock(#[source] std::io::Error),
    /// Every last-seen slot is taken.
    #[error("vrid {vrid}: more than {max} fast-path instances", max = MAX_VRRP_INSTANCES)]
    Full {
        /// VRID of the instance that found no slot.
        vrid: u8,
    },
}

/// The lowest last-seen slot (`VrrpInstance::seen_slot`) below [`MAX_VRRP_INSTANCES`] that no
/// instance in `used` holds (pure).
pub fn free_seen_slot(used: impl IntoIterator<Item = u16>) -> Option<u16> {
    let mut taken = vec![false; MAX_VRRP_INSTANCES as usize];
    for u in used {
        if let Some(t) = taken.get_mut(usize::from(u)) {
            *t = true;
        }
    }
    taken.iter().position(|t| !t).and_then(|i| u16::try_from(i).ok())
}

/// The maps an instance is written to: the hash (every instance), its copy by VRID (the
/// kernel's first look-up, `ka_common::vrrp_fast::VRRP_VRID_MAP`) and the last-seen slots.
struct Maps<'a, I, V, S> {
    instances: &'a mut BpfHashMap<I, VrrpKey, VrrpInstance>,
    vrid: &'a mut Array<V, VrrpVridSlots>,
    seen: &'a mut Array<S, u64>,
}

/// Writes `value` for `key` in the hash, keeping the slot the instance holds, or giving it a
/// free one (zeroed, so an earlier instance's stamp is not read as this one's); then its copy
/// in the VRID array, if it has a slot there (else the kernel finds it in the hash). The hash
/// first: the kernel prefers the copy, which is never newer than the hash.
fn write_instance<I, V, S>(m: Maps<'_, I, V, S>, key: VrrpKey, mut value: VrrpInstance) -> Result<(), VrrpFastError>
where
    I: std::borrow::BorrowMut<MapData>,
    V: std::borrow::BorrowMut<MapData>,
    S: std::borrow::BorrowMut<MapData>,
{
    let Maps { instances, vrid, seen } = m;
    match instances.get(&key, 0) {
        Ok(old) => value.seen_slot = old.seen_slot,
        Err(aya::maps::MapError::KeyNotFound) => {
            let used = instances.iter().filter_map(Result::ok).map(|(_, v)| v.seen_slot);
            value.seen_slot = free_seen_slot(used).ok_or(VrrpFastError::Full { vrid: key.vrid })?;
            seen.set(u32::from(value.seen_slot), 0, 0).map_err(map_err(VRRP_SEEN_MAP))?;
        }
        Err(e) => return Err(map_err(VRRP_INSTANCES_MAP)(e)),
    }
    instances.insert(key, value, 0).map_err(map_err(VRRP_INSTANCES_MAP))?;
    let idx = vrid_index(key.vrid, key.family);
    let mut e = vrid.get(&idx, 0).map_err(map_err(VRRP_VRID_MAP))?;
    let Some((slot, _)) = e.slot_for(key.ifindex) else {
        // Every slot holds another interface's instance of this VRID: the hash answers.
        return Ok(());
    };
    e.ifindex[slot] = key.ifindex;
    e.inst[slot] = value;
    vrid.set(idx, e, 0).map_err(map_err(VRRP_VRID_MAP))
}

/// Removes `key`'s copy from the VRID array (first: the kernel would otherwise still find it
/// there), then from the hash.
fn remove_instance<I, V>(instances: &mut BpfHashMap<I, VrrpKey, VrrpInstance>, vrid: &mut Array<V, VrrpVridSlots>, key: VrrpKey) -> Result<(), VrrpFastError>
where
    I: std::borrow::BorrowMut<MapData>,
    V: std::borrow::BorrowMut<MapData>,
{
    let idx = vrid_index(key.vrid, key.family);
    let mut e = vrid.get(&idx, 0).map_err(map_err(VRRP_VRID_MAP))?;
    if let Some((slot, true)) = e.slot_for(key.ifindex) {
        e.ifindex[slot] = 0;
        e.inst[slot] = VrrpInstance::default();
        vrid.set(idx, e, 0).map_err(map_err(VRRP_VRID_MAP))?;
    }
    // Its last-seen slot is zeroed when an instance takes it again.
    match instances.remove(&key) {
        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(e) => Err(map_err(VRRP_INSTANCES_MAP)(e)),
    }
}

/// The stamp of `key`'s slot; `None` if never stamped or no such instance.
fn read_seen<I, S>(instances: &BpfHashMap<I, VrrpKey, VrrpInstance>, seen: &Array<S, u64>, key: VrrpKey) -> Result<Option<u64>, VrrpFastError>
where
    I: std::borrow::Borrow<MapData>,
    S: std::borrow::Borrow<MapData>,
{
    let slot = match instances.get(&key, 0) {
        Ok(v) => v.seen_slot,
        Err(aya::maps::MapError::KeyNotFound) => return Ok(None),
        Err(e) => return Err(map_err(VRRP_INSTANCES_MAP)(e)),
    };
    match seen.get(&u32::from(slot), 0) {
        Ok(0) => Ok(None),
        Ok(jiffies) => Ok(Some(jiffies)),
        Err(e) => Err(map_err(VRRP_SEEN_MAP)(e)),
    }
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> VrrpFastError {
    move |e| VrrpFastError::Map {
        map,
        source: Box::new(e),
    }
}

/// VRRPv3-over-IPv4 checksum flavour (VRRPv2 and IPv6 ignore it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChecksumMode {
    /// RFC 5798 pseudo-header.
    #[default]
    Standard,
    /// keepalived `old_unicast_checksum`: pseudo-header destination is the group.
    OldUnicast,
    /// No pseudo-header.
    NoPseudoHeader,
}

/// The master userspace knows about (steady-state adverts must match it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownMaster {
    /// Its address (the advert's IP source).
    pub addr: IpAddr,
    /// Its priority.
    pub priority: u8,
    /// Its advert interval (centisecond resolution).
    pub adver_int: Duration,
}

/// What the fast path checks for one instance and what it knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FastParams {
    /// VRRP version (2 or 3).
    pub version: u8,
    /// Check TTL / Hop Limit 255 (multicast; keepalived skips it for unicast).
    pub check_ttl: bool,
    /// Drop invalid adverts in XDP (else they pass to the engine, counted).
    pub drop_invalid: bool,
    /// Drop steady-state adverts in XDP (the engine then reads [`last_seen`]).
    pub drop_steady: bool,
    /// This node is MASTER.
    pub master: bool,
    /// VRRPv2 PASS authentication (up to 8 bytes), or none.
    pub auth_pass: Option<Vec<u8>>,
    /// VRRPv3-over-IPv4 checksum flavour.
    pub checksum: ChecksumMode,
    /// IPv4 group for [`ChecksumMode::OldUnicast`] (224.0.0.18 when `None`).
    pub group_v4: Option<Ipv4Addr>,
    /// Local advert interval (VRRPv2 adverts must match it).
    pub adver_int: Duration,
    /// Local priority.
    pub local_priority: u8,
    /// Local primary address (priority tie-break, RFC 5798 §6.4.3).
    pub local_addr: IpAddr,
    /// The known master, if any.
    pub known_master: Option<KnownMaster>,
}

fn family_byte(f: Family) -> u8 {
    match f {
        Family::V4 => FAMILY_V4,
        Family::V6 => FAMILY_V6,
    }
}

/// The map key of an instance.
pub fn key(ifindex: u32, vrid: u8, family: Family) -> VrrpKey {
    VrrpKey {
        ifindex,
        vrid,
        family: family_byte(family),
        _pad: [0; 2],
    }
}

fn addr16(vrid: u8, family: Family, a: IpAddr) -> Result<[u8; 16], VrrpFastError> {
    match (family, a) {
        (Family::V4, IpAddr::V4(v)) => Ok(ka_common::lb::v4_in_16(v.octets())),
        (Family::V6, IpAddr::V6(v)) => Ok(v.octets()),
        _ => Err(VrrpFastError::Family { vrid, addr: a }),
    }
}

fn centis(d: Duration) -> u16 {
    u16::try_from(d.as_millis() / 10).unwrap_or(u16::MAX)
}

/// The map value for one instance's parameters.
///
/// # Errors
/// An address of the wrong family.
pub fn encode(vrid: u8, family: Family, params: &FastParams) -> Result<VrrpInstance, VrrpFastError> {
    let mut flags = 0;
    for (on, bit) in [
        (params.check_ttl, VRRP_F_CHECK_TTL),
        (params.drop_invalid, VRRP_F_DROP_INVALID),
        (params.drop_steady, VRRP_F_DROP_STEADY),
        (params.master, VRRP_F_MASTER),
    ] {
        if on {
            flags |= bit;
        }
    }
    let mut auth_data = [0u8; 8];
    if let Some(p) = &params.auth_pass {
        let n = p.len().min(8);
        auth_data[..n].copy_from_slice(&p[..n]);
    }
    let (master_addr, master_prio, master_int) = match params.known_master {
        Some(m) => (
            addr16(vrid, family, m.addr)?,
            m.priority,
            centis(m.adver_int),
        ),
        None => ([0; 16], 0, 0),
    };
    Ok(VrrpInstance {
        version: params.version,
        flags,
        auth_type: u8::from(params.auth_pass.is_some()),
        csum_mode: match params.checksum {
            ChecksumMode::Standard => VRRP_CSUM_STANDARD,
            ChecksumMode::OldUnicast => VRRP_CSUM_OLD_UNICAST,
            ChecksumMode::NoPseudoHeader => VRRP_CSUM_NO_PSEUDO,
        },
        adver_int_centis: centis(params.adver_int),
        local_prio: params.local_priority,
        master_prio,
        auth_data,
        master_addr,
        master_adver_int_centis: master_int,
        // Assigned when the instance is written ([`configure`]).
        seen_slot: 0,
        group_v4: params
            .group_v4
            .unwrap_or(ka_common::vrrp::VRRP_MCAST_V4)
            .octets(),
        local_addr: addr16(vrid, family, params.local_addr)?,
    })
}

/// Configures (or updates) the fast path of instance (`ifindex`, `vrid`, `family`); a new
/// instance gets a free last-seen slot, zeroed.
///
/// # Errors
/// An address of the wrong family, every slot taken, or a map that cannot be written.
pub fn configure(
    ebpf: &mut Ebpf,
    ifindex: u32,
    vrid: u8,
    family: Family,
    params: &FastParams,
) -> Result<(), VrrpFastError> {
    let value = encode(vrid, family, params)?;
    let k = key(ifindex, vrid, family);
    let [Some(inst), Some(vrid), Some(seen)] = ebpf.maps_disjoint_mut([VRRP_INSTANCES_MAP, VRRP_VRID_MAP, VRRP_SEEN_MAP]) else {
        return Err(VrrpFastError::MissingMap(VRRP_INSTANCES_MAP));
    };
    let mut instances: BpfHashMap<_, VrrpKey, VrrpInstance> = BpfHashMap::try_from(inst).map_err(map_err(VRRP_INSTANCES_MAP))?;
    let mut vrid: Array<_, VrrpVridSlots> = Array::try_from(vrid).map_err(map_err(VRRP_VRID_MAP))?;
    let mut seen: Array<_, u64> = Array::try_from(seen).map_err(map_err(VRRP_SEEN_MAP))?;
    write_instance(Maps { instances: &mut instances, vrid: &mut vrid, seen: &mut seen }, k, value)
}

/// The fast path's instance and last-seen maps, taken out of the loaded object so the VRRP
/// engine owns them (the load balancer's writer keeps the rest of the object).
pub struct FastMaps {
    instances: BpfHashMap<MapData, VrrpKey, VrrpInstance>,
    vrid: Array<MapData, VrrpVridSlots>,
    seen: Array<MapData, u64>,
    /// Turns the last-seen tick counts into CLOCK_MONOTONIC time.
    clock: super::kclock::KernelClock,
}

impl FastMaps {
    /// Takes `KA_VRRP`, `KA_VRRP_VRID`, `KA_VRRP_SEEN` and the ring buffer out of `ebpf`, and
    /// measures the kernel's tick rate (a few ticks: see [`super::kclock::KernelClock::new`]).
    ///
    /// # Errors
    /// A map is missing (or already taken) or has the wrong type, or the kernel's clocks
    /// cannot be read.
    pub fn take(ebpf: &mut Ebpf) -> Result<(FastMaps, EventReader), VrrpFastError> {
        let clock = super::kclock::KernelClock::new(ebpf).map_err(VrrpFastError::Clock)?;
        let events = EventReader::new(ebpf)?;
        let take = |ebpf: &mut Ebpf, name: &'static str| ebpf.take_map(name).ok_or(VrrpFastError::MissingMap(name));
        let instances = BpfHashMap::try_from(take(ebpf, VRRP_INSTANCES_MAP)?).map_err(map_err(VRRP_INSTANCES_MAP))?;
        let vrid = Array::try_from(take(ebpf, VRRP_VRID_MAP)?).map_err(map_err(VRRP_VRID_MAP))?;
        let seen = Array::try_from(take(ebpf, VRRP_SEEN_MAP)?).map_err(map_err(VRRP_SEEN_MAP))?;
        Ok((FastMaps { instances, vrid, seen, clock }, events))
    }

    /// [`configure`] on the owned maps.
    ///
    /// # Errors
    /// An address of the wrong family, every slot taken, or a map that cannot be written.
    pub fn configure(&mut self, key: VrrpKey, family: Family, params: &FastParams) -> Result<(), VrrpFastError> {
        let value = encode(key.vrid, family, params)?;
        write_instance(Maps { instances: &mut self.instances, vrid: &mut self.vrid, seen: &mut self.seen }, key, value)
    }

    /// When the instance's master last sent a steady-state advert, as CLOCK_MONOTONIC time
    /// (the time of the tick it came in: [`super::kclock::jiffies_to_monotonic`]); `None` if
    /// never.
    ///
    /// # Errors
    /// The map or the clocks cannot be read.
    pub fn last_seen(&self, key: VrrpKey) -> Result<Option<Duration>, VrrpFastError> {
        match read_seen(&self.instances, &self.seen, key)? {
            Some(jiffies) => Ok(Some(self.clock.monotonic_of(jiffies).map_err(VrrpFastError::Clock)?)),
            None => Ok(None),
        }
    }

    /// [`remove`] on the owned maps (its slot is zeroed when an instance takes it again); a
    /// map error is logged.
    pub fn remove(&mut self, key: VrrpKey) {
        if let Err(e) = remove_instance(&mut self.instances, &mut self.vrid, key) {
            tracing::warn!(vrid = key.vrid, ifindex = key.ifindex, error = %e, "XDP VRRP fast path: cannot remove the instance");
        }
    }
}

impl std::fmt::Debug for FastMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FastMaps")
    }
}

/// Removes an instance from the fast path (its adverts then count as unknown VRID).
///
/// # Errors
/// A map cannot be written.
pub fn remove(
    ebpf: &mut Ebpf,
    ifindex: u32,
    vrid: u8,
    family: Family,
) -> Result<(), VrrpFastError> {
    let k = key(ifindex, vrid, family);
    let [Some(inst), Some(by_vrid)] = ebpf.maps_disjoint_mut([VRRP_INSTANCES_MAP, VRRP_VRID_MAP]) else {
        return Err(VrrpFastError::MissingMap(VRRP_INSTANCES_MAP));
    };
    let mut instances: BpfHashMap<_, VrrpKey, VrrpInstance> = BpfHashMap::try_from(inst).map_err(map_err(VRRP_INSTANCES_MAP))?;
    let mut by_vrid: Array<_, VrrpVridSlots> = Array::try_from(by_vrid).map_err(map_err(VRRP_VRID_MAP))?;
    remove_instance(&mut instances, &mut by_vrid, k)
}

/// Turns the fast path on or off (`G_VRRP_FASTPATH`), and whether adverts for no configured
/// instance are dropped (`G_VRRP_DROP_UNKNOWN`). Other global flags are kept.
///
/// # Errors
/// The globals map cannot be written.
pub fn set_enabled(ebpf: &mut Ebpf, on: bool, drop_unknown: bool) -> Result<(), VrrpFastError> {
    let map = ebpf
        .map_mut(GLOBALS_MAP)
        .ok_or(VrrpFastError::MissingMap(GLOBALS_MAP))?;
    let mut arr: Array<_, Globals> = Array::try_from(map).map_err(map_err(GLOBALS_MAP))?;
    let mut g = arr.get(&0, 0).map_err(map_err(GLOBALS_MAP))?;
    g.flags &= !(G_VRRP_FASTPATH | G_VRRP_DROP_UNKNOWN);
    if on {
        g.flags |= G_VRRP_FASTPATH;
    }
    if drop_unknown {
        g.flags |= G_VRRP_DROP_UNKNOWN;
    }
    arr.set(0, g, 0).map_err(map_err(GLOBALS_MAP))
}

/// When the instance's master last sent a steady-state advert, as the kernel's tick count
/// (`jiffies_64`; [`FastMaps::last_seen`] gives CLOCK_MONOTONIC time); `None` if never.
///
/// # Errors
/// The map cannot be read.
pub fn last_seen(ebpf: &Ebpf, key: VrrpKey) -> Result<Option<u64>, VrrpFastError> {
    let inst = ebpf.map(VRRP_INSTANCES_MAP).ok_or(VrrpFastError::MissingMap(VRRP_INSTANCES_MAP))?;
    let seen = ebpf.map(VRRP_SEEN_MAP).ok_or(VrrpFastError::MissingMap(VRRP_SEEN_MAP))?;
    let instances: BpfHashMap<_, VrrpKey, VrrpInstance> = BpfHashMap::try_from(inst).map_err(map_err(VRRP_INSTANCES_MAP))?;
    let seen: Array<_, u64> = Array::try_from(seen).map_err(map_err(VRRP_SEEN_MAP))?;
    read_seen(&instances, &seen, key)
}

/// The kind of a change the fast path reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// An advert from a router other than the known master.
    NewMaster,
    /// The master's priority changed.
    PriorityChange,
    /// The master's advert interval changed.
    IntervalChange,
    /// Priority 0: the master resigns.
    Resign,
    /// While MASTER: a peer with a higher priority (or equal and a higher address).
    HigherPriority,
    /// While MASTER: a peer with a lower priority.
    LowerPriority,
    /// A kind this build does not know.
    Unknown(u8),
}

/// A decoded ring-buffer entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Reception time, CLOCK_MONOTONIC since boot.
    pub ts: Duration,
    /// Ingress interface.
    pub ifindex: u32,
    /// VRID.
    pub vrid: u8,
    /// Family.
    pub family: Family,
    /// Advert version.
    pub version: u8,
    /// What changed.
    pub kind: EventKind,
    /// Advertised priority.
    pub priority: u8,
    /// Advertised interval.
    pub adver_int: Duration,
    /// Sender.
    pub src: IpAddr,
}

impl Event {
    /// Decodes a raw [`VrrpEvent`].
    pub fn decode(e: &VrrpEvent) -> Event {
        let (family, src) = if e.family == FAMILY_V6 {
            (Family::V6, IpAddr::V6(Ipv6Addr::from(e.src)))
        } else {
            (
                Family::V4,
                IpAddr::V4(Ipv4Addr::new(e.src[0], e.src[1], e.src[2], e.src[3])),
            )
        };
        Event {
            ts: Duration::from_nanos(e.ts_ns),
            ifindex: e.ifindex,
            vrid: e.vrid,
            family,
            version: e.version,
            kind: match e.kind {
                VRRP_EV_NEW_MASTER => EventKind::NewMaster,
                VRRP_EV_PRIO_CHANGE => EventKind::PriorityChange,
                VRRP_EV_INTERVAL_CHANGE => EventKind::IntervalChange,
                VRRP_EV_RESIGN => EventKind::Resign,
                VRRP_EV_HIGHER_PRIO => EventKind::HigherPriority,
                VRRP_EV_LOWER_PRIO => EventKind::LowerPriority,
                k => EventKind::Unknown(k),
            },
            priority: e.priority,
            adver_int: Duration::from_millis(u64::from(e.adver_int_centis) * 10),
            src,
        }
    }
}

/// Reads the fast path's ring buffer (takes the map out of the object).
pub struct EventReader {
    ring: RingBuf<MapData>,
}

impl EventReader {
    /// Takes `KA_VRRP_EVENTS` out of `ebpf`.
    ///
    /// # Errors
    /// The map is missing (or already taken) or is not a ring buffer.
    pub fn new(ebpf: &mut Ebpf) -> Result<EventReader, VrrpFastError> {
        let map = ebpf
            .take_map(VRRP_EVENTS_MAP)
            .ok_or(VrrpFastError::MissingMap(VRRP_EVENTS_MAP))?;
        let ring = RingBuf::try_from(map).map_err(map_err(VRRP_EVENTS_MAP))?;
        Ok(EventReader { ring })
    }

    /// Drains every pending event without blocking (entries of the wrong size are skipped).
    pub fn poll(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            if let Ok(raw) = bytemuck::try_pod_read_unaligned::<VrrpEvent>(&item) {
                out.push(Event::decode(&raw));
            }
        }
        out
    }

    /// An async stream over the ring buffer (needs a tokio runtime with IO enabled).
    ///
    /// # Errors
    /// The ring buffer's fd cannot be registered with the reactor.
    pub fn into_async(self) -> Result<AsyncEventReader, VrrpFastError> {
        // SAFETY: the fd is the ring buffer map's, owned by `self.ring` inside the AsyncFd:
        // it stays open and the same for the AsyncFd's whole life.
        let fd = unsafe { AsyncFd::register_with_interest(self, tokio::io::Interest::READABLE) }
            .map_err(|e| VrrpFastError::Io(e.into()))?;
        Ok(AsyncEventReader { fd })
    }
}

impl AsRawFd for EventReader {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.ring.as_raw_fd()
    }
}

/// [`EventReader`] driven by the tokio reactor.
pub struct AsyncEventReader {
    fd: AsyncFd<EventReader>,
}

impl AsyncEventReader {
    /// Waits until at least one event is pending and returns every pending event.
    ///
    /// # Errors
    /// The reactor failed.
    pub async fn next_batch(&mut self) -> Result<Vec<Event>, VrrpFastError> {
        loop {
            let mut guard = self.fd.readable_mut().await.map_err(VrrpFastError::Io)?;
            let events = guard.get_inner_mut().poll();
            guard.clear_ready();
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slots: the lowest free one; out-of-range slots of a damaged map are ignored; none when
    /// every slot is taken.
    #[test]
    fn free_seen_slot_table() {
        let max = MAX_VRRP_INSTANCES as u16;
        let cases: [(&str, Vec<u16>, Option<u16>); 5] = [
            ("empty", vec![], Some(0)),
            ("first taken", vec![0], Some(1)),
            ("a hole", vec![0, 1, 3], Some(2)),
            ("out of range ignored", vec![max, u16::MAX], Some(0)),
            ("full", (0..max).collect(), None),
        ];
        for (name, used, want) in cases {
            assert_eq!(free_seen_slot(used), want, "{name}");
        }
    }
}
