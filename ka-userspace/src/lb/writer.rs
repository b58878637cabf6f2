//! Applies a [`DesiredState`] to the XDP maps, writing only what changed.
//!
//! Per service, the new scheduling table goes to the inactive bank (only the slots that differ
//! from what that bank holds), then the service value is replaced with the bank flipped: a
//! hash-map update is atomic for readers, so no packet sees a half-written table. Backend ids
//! are per (service, address, port, method); removed ids are zeroed (their flows reschedule)
//! and reused last (FIFO), so a stale connection entry is very unlikely to meet a new owner.

use std::collections::{HashMap, HashSet, VecDeque};

use aya::{
    maps::{Array, HashMap as BpfHashMap, Map, PerCpuArray},
    Ebpf,
};
use ka_common::{
    lb::{
        prefix_mask, ring_size, svc_slot4, table_capacity, vip_filter, AddrKey, Backend, Globals, NeighValue, NhCache, PktBytes,
        ServiceKey, ServiceKey4, ServiceSlot4, ServiceValue, SVC_SLOTS4_MAP, BACKENDS_MAP, BACKEND_F_DOWN, BACKEND_STATS_MAP, GLOBALS_MAP, G_ANY_PORT, G_LB, G_NAT,
        G_VIP_FILTER, VIP_FILTER_MAP, VIP_FILTER_WORDS,
        MASTER_MAP, MAX_BACKENDS, MAX_MASTER_SLOTS, MAX_SERVICES, METHOD_DR, METHOD_NAT, METHOD_TUN,
        NEIGH_MAP, NH_CACHE_MAP, NO_MASTER_SLOT, SERVICES4_MAP, SERVICES6_MAP, SERVICE_STATS_MAP, SVC_F_ALL_PORTS,
        SVC_F_COUNT, SVC_F_FALLBACK, SVC_F_OPS, SVC_F_PERSIST, SVC_F_PERSIST_SERVICE, TABLES_MAP,
    },
    sched::{dests_index, metric_of, BackendConns, DestList, DESTS_MAP, MAX_DESTS},
};

use super::{
    addr16,
    conns::{threshold_change_clears, ConnCounters},
    maglev, DesiredState, LbError, Member, Method, Scheduler, ServiceSpec,
};

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> LbError {
    move |e| LbError::Map {
        map,
        source: Box::new(e),
    }
}

fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Map, LbError> {
    ebpf.map_mut(name).ok_or(LbError::MissingMap(name))
}

/// What one [`MapWriter::apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Table slots written.
    pub slots_written: usize,
    /// Services whose bank was flipped.
    pub services_flipped: usize,
    /// Services removed.
    pub services_removed: usize,
}

#[derive(Clone, Debug)]
struct SvcState {
    value: ServiceValue,
}

/// A backend's identity: (service, real server address, port, method).
pub type BackendIdent = (ServiceKey, [u8; 16], u16, Method);

/// The service key of a spec.
pub fn service_key(s: &ServiceSpec) -> ServiceKey {
    let (addr, family) = addr16(s.vip);
    ServiceKey {
        addr,
        port: s.port.to_be_bytes(),
        proto: s.proto.number(),
        family,
    }
}

/// Checks a service against what the datapath implements.
///
/// # Errors
/// A real server or key of another address family than the service's first key (DR and TUN
/// real servers may name another port: as with IPVS, the packet keeps its port).
pub fn check_service(s: &ServiceSpec) -> Result<(), LbError> {
    let bad = |reason: &str| LbError::Invalid {
        vip: s.vip,
        port: s.port,
        reason: reason.into(),
    };
    if let Some(m) = s.options.also.iter().find(|m| m.vip.is_ipv4() != s.vip.is_ipv4()) {
        return Err(bad(&format!("address {} is of another address family", m.vip)));
    }
    for b in &s.backends {
        if b.addr.is_ipv4() != s.vip.is_ipv4() {
            return Err(bad(&format!(
                "real server {} is of another address family",
                b.addr
            )));
        }
    }
    Ok(())
}

/// The `SVC_F_*` flags a service's keys share ([`key_value`] adds the per-key ones).
pub fn service_flags(s: &ServiceSpec) -> u8 {
    let mut f = 0;
    if s.persistence.is_some() {
        f |= SVC_F_PERSIST;
        if s.options.persist_service_wide {
            f |= SVC_F_PERSIST_SERVICE;
        }
    }
    if s.options.one_packet {
        f |= SVC_F_OPS;
    }
    if s.options.fallback {
        f |= SVC_F_FALLBACK;
    }
    f
}

/// The value one key of a service holds: the service's, with the key's mastership slot and,
/// on a port-0 key, [`SVC_F_ALL_PORTS`] (pure).
pub fn key_value(service: &ServiceValue, member: &Member) -> ServiceValue {
    let mut v = *service;
    v.master_slot = member.master_slot.unwrap_or(NO_MASTER_SLOT);
    if member.port == 0 {
        v.flags |= SVC_F_ALL_PORTS;
    }
    v
}

/// The map key of one member of a service.
pub fn member_key(member: &Member, proto: super::L4Proto) -> ServiceKey {
    let (addr, family) = addr16(member.vip);
    ServiceKey { addr, port: member.port.to_be_bytes(), proto: proto.number(), family }
}

/// The bank capacity of a service: 0 for a least-connection scheduler (no table), else
/// [`table_capacity`] of its real servers (pure).
pub fn service_capacity(s: &ServiceSpec) -> u32 {
    if s.scheduler.counts_connections() {
        return 0;
    }
    table_capacity(u32::try_from(s.backends.len()).unwrap_or(u32::MAX))
}

/// The scheduling table of a service: backend positions in `s.backends`, at most
/// [`service_capacity`] long (a Maglev ring of [`ring_size`] slots) (pure).
pub fn service_table(s: &ServiceSpec) -> Vec<u32> {
    let cap = service_capacity(s);
    let entries: Vec<maglev::Entry> = s
        .backends
        .iter()
        .map(|b| {
            let mut ident = addr16(b.addr).0.to_vec();
            ident.extend_from_slice(&b.port.to_be_bytes());
            maglev::Entry {
                ident,
                weight: if b.healthy { b.weight } else { 0 },
            }
        })
        .collect();
    match s.scheduler {
        Scheduler::RoundRobin => maglev::wrr(&entries, cap),
        _ => maglev::table(&entries, ring_size(cap)),
    }
}

/// The candidate list of a least-connection scheduler: the real servers that are healthy and
/// weighted above 0, in configuration order (IPVS's destination list), at most
/// [`MAX_DESTS`]; `ids` are their backend ids, by position in `s.backends` (pure).
pub fn dest_list(s: &ServiceSpec, ids: &[u32]) -> DestList {
    let mut l = DestList::default();
    l.set_metric(metric_of(s.scheduler.code()));
    for (b, id) in s.backends.iter().zip(ids).filter(|(b, _)| b.healthy && b.weight > 0).take(MAX_DESTS) {
        let n = l.n as usize;
        l.ids[n] = *id;
        l.weights[n] = b.weight;
        l.n += 1;
    }
    l
}

/// Whether a service keeps connection counts ([`SVC_F_COUNT`]): its scheduler chooses on
/// them, or a real server has a `uthreshold` (pure).
pub fn keeps_counts(s: &ServiceSpec) -> bool {
    s.scheduler.counts_connections() || s.backends.iter().any(|b| b.uthreshold > 0)
}

/// Keeps the userspace shadow of the maps and applies desired states.
#[derive(Debug, Default)]
pub struct MapWriter {
    services: HashMap<ServiceKey, SvcState>,
    /// What each key of the service maps holds (every member of every service).
    keys: HashMap<ServiceKey, ServiceValue>,
    /// What each service id's two banks hold (kept after the id is freed: the map still holds
    /// it).
    banks: HashMap<u32, [Vec<u32>; 2]>,
    free_services: Vec<u32>,
    next_service: u32,
    backend_ids: HashMap<BackendIdent, u32>,
    backends: HashMap<u32, Backend>,
    free_backends: VecDeque<u32>,
    next_backend: u32,
    /// Static next hops of the desired state (they win over resolved ones).
    static_neigh: HashMap<AddrKey, NeighValue>,
    /// Next hops the resolver found for the real servers.
    resolved_neigh: HashMap<AddrKey, NeighValue>,
    /// What the neighbour map holds.
    neigh_written: HashMap<AddrKey, NeighValue>,
    /// Adopted backend ids nothing owns any more: zeroed by the next apply.
    retired_backends: Vec<u32>,
    /// Adopted services the writer cannot keep: removed by the next apply.
    retired_services: Vec<ServiceKey>,
    /// What each service id's two candidate-list banks hold.
    dest_banks: HashMap<u32, [DestList; 2]>,
    /// The scheduling-table pool's free regions.
    pool: super::pool::Pool,
    /// Regions given up by the last apply (start, size): free again from the next one on, once
    /// no packet can still read them through a service value it copied.
    quarantine: Vec<(u32, u32)>,
    /// The connection counters, mapped on first use.
    counters: Option<ConnCounters>,
    /// What the VIP filter map holds (`None`: unknown, every word is written).
    vip_filter: Option<Vec<u64>>,
    /// The IPv4 service slots hold every key the service map holds that owns its slot (they
    /// are per process: an adopted service map's keys are copied in by the first apply).
    slots_filled: bool,
    /// The last apply wrote a NAT service (the VIP filter then has every bit set).
    nat: bool,
}

/// The VIP filter words that differ between `written` (`None`: unknown) and `want` (pure).
pub fn vip_filter_changes(written: Option<&[u64]>, want: &[u64]) -> Vec<(u32, u64)> {
    want.iter()
        .enumerate()
        .filter(|(i, w)| written.and_then(|old| old.get(*i)) != Some(*w))
        .map(|(i, w)| (i as u32, *w))
        .collect()
}

/// The neighbour-map key of an address.
fn addr_key(a: std::net::IpAddr) -> AddrKey {
    let (addr, family) = addr16(a);
    AddrKey { addr, family, _pad: [0; 3] }
}

/// The neighbour-map changes that turn `written` into `want`: entries to insert or replace,
/// then keys to remove, each in address order (pure).
pub fn neigh_changes(
    written: &HashMap<AddrKey, NeighValue>,
    want: &HashMap<AddrKey, NeighValue>,
) -> (Vec<(AddrKey, NeighValue)>, Vec<AddrKey>) {
    let mut upsert: Vec<(AddrKey, NeighValue)> = want
        .iter()
        .filter(|(k, v)| written.get(k) != Some(v))
        .map(|(k, v)| (*k, *v))
        .collect();
    upsert.sort_by_key(|(k, _)| (k.family, k.addr));
    let mut remove: Vec<AddrKey> = written.keys().filter(|k| !want.contains_key(k)).copied().collect();
    remove.sort_by_key(|k| (k.family, k.addr));
    (upsert, remove)
}

/// Empties the next-hop cache slots of backends `ids` on every CPU (a reused id must not
/// inherit its previous owner's next hop; a neighbour change must be seen at once).
fn clear_nh_cache(ebpf: &mut Ebpf, ids: &[u32]) -> Result<(), LbError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut arr: PerCpuArray<_, NhCache> =
        PerCpuArray::try_from(map_mut(ebpf, NH_CACHE_MAP)?).map_err(map_err(NH_CACHE_MAP))?;
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| LbError::Map {
        map: NH_CACHE_MAP,
        source: Box::new(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call: "nr_cpus",
            io_error: e,
        })),
    })?;
    for id in ids {
        let zeros =
            aya::maps::PerCpuValues::try_from(vec![NhCache::default(); cpus]).map_err(|e| {
                LbError::Map {
                    map: NH_CACHE_MAP,
                    source: Box::new(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                        call: "per-cpu values",
                        io_error: e,
                    })),
                }
            })?;
        arr.set(*id, zeros, 0).map_err(map_err(NH_CACHE_MAP))?;
    }
    Ok(())
}

impl MapWriter {
    /// A writer for freshly loaded (empty) maps.
    pub fn new() -> MapWriter {
        MapWriter::default()
    }

    /// A writer for the maps of an earlier run, starting from what they hold (see
    /// [`super::adopt::reconcile`]): the next [`MapWriter::apply`] keeps the ids of unchanged
    /// services and backends, writes only the slots and keys that differ, and removes what the
    /// desired state no longer has (services, and keys of a kept service that were dropped).
    pub fn adopt(r: super::adopt::Reconciled) -> MapWriter {
        use super::pool::Pool;
        // The regions the earlier run's services hold: a kept service keeps its region (a
        // region that cannot be reserved, overlapping another, is replaced by a new one at the
        // next apply); the regions of keys no service keeps are freed by the next apply but
        // one, once nothing can read them.
        let mut pool = Pool::default();
        let mut services: HashMap<ServiceKey, SvcState> = HashMap::new();
        let mut reserved = HashSet::new();
        for (k, mut value) in r.services {
            if value.cap != 0 && !(reserved.contains(&value.base[0]) || pool.reserve(value.base[0], Pool::region(value.cap))) {
                tracing::warn!(service = value.id, base = value.base[0], cap = value.cap, "adopted table region overlaps another: moved at the next apply");
                value.cap = 0;
            }
            if value.cap != 0 {
                reserved.insert(value.base[0]);
            }
            services.insert(k, SvcState { value });
        }
        let mut quarantine = Vec::new();
        for value in r.keys.values() {
            if value.cap != 0 && !reserved.contains(&value.base[0]) && pool.reserve(value.base[0], Pool::region(value.cap)) {
                reserved.insert(value.base[0]);
                quarantine.push((value.base[0], Pool::region(value.cap)));
            }
        }
        MapWriter {
            services,
            pool,
            quarantine,
            keys: r.keys,
            banks: r.banks,
            free_services: r.free_services,
            next_service: r.next_service,
            backend_ids: r.backend_ids,
            backends: r.backends,
            free_backends: r.free_backends,
            next_backend: r.next_backend,
            retired_backends: r.retired_backends,
            retired_services: r.retired_services,
            ..MapWriter::default()
        }
    }

    /// The id of a service (index of its counters), if applied.
    pub fn service_id(&self, spec: &ServiceSpec) -> Option<u32> {
        self.services.get(&service_key(spec)).map(|s| s.value.id)
    }

    /// The backend id (index of its counters) of a real server of a service, if applied.
    pub fn backend_id(
        &self,
        spec: &ServiceSpec,
        addr: std::net::IpAddr,
        port: u16,
        method: Method,
    ) -> Option<u32> {
        self.backend_ids
            .get(&(service_key(spec), addr16(addr).0, port, method))
            .copied()
    }

    fn alloc_service(&mut self) -> Result<u32, LbError> {
        if let Some(id) = self.free_services.pop() {
            return Ok(id);
        }
        if self.next_service >= MAX_SERVICES {
            return Err(LbError::Full {
                what: "services",
                max: MAX_SERVICES,
            });
        }
        self.next_service += 1;
        Ok(self.next_service - 1)
    }

    fn alloc_backend(&mut self) -> Result<u32, LbError> {
        if self.next_backend < MAX_BACKENDS {
            self.next_backend += 1;
            return Ok(self.next_backend - 1);
        }
        self.free_backends.pop_front().ok_or(LbError::Full {
            what: "backends",
            max: MAX_BACKENDS,
        })
    }

    /// Applies `desired`: backends, tables (double-buffered), services, globals and neighbours.
    ///
    /// # Errors
    /// An unsupported or inconsistent service (nothing is written then), a full table, or a
    /// map operation failing (the maps may then be partly updated; applying again converges).
    pub fn apply(
        &mut self,
        ebpf: &mut Ebpf,
        desired: &DesiredState,
    ) -> Result<ApplyReport, LbError> {
        for s in &desired.services {
            check_service(s)?;
            for b in &s.backends {
                if b.method == Method::Tun {
                    let src = if s.vip.is_ipv4() {
                        &desired.tunnel_src_v4
                    } else {
                        &desired.tunnel_src_v6
                    };
                    if src.is_none() {
                        return Err(LbError::Invalid {
                            vip: s.vip,
                            port: s.port,
                            reason: "TUN real servers need a tunnel source address".into(),
                        });
                    }
                }
            }
        }
        let mut report = ApplyReport::default();
        // Mapped now, not only when a new backend is counted: a writer that adopted every
        // backend of an earlier run reports their (adopted) counts too.
        if let Err(e) = self.counters(ebpf) {
            tracing::warn!(error = %e, "connection counters not mapped");
        }
        for (start, size) in std::mem::take(&mut self.quarantine) {
            self.pool.free(start, size);
        }
        // The VIP filter first holds the VIPs written and to be written, so no packet to a
        // service key finds its bit clear; it is cut to the written keys at the end.
        let vips: Vec<[u8; 16]> = self
            .keys
            .keys()
            .map(|k| k.addr)
            .chain(desired.services.iter().flat_map(|s| s.members().map(|m| addr16(m.vip).0)))
            .collect();
        let nat_wanted = desired.services.iter().any(|s| s.backends.iter().any(|b| b.method == Method::Nat));
        self.write_vip_filter(ebpf, &vips, self.nat || nat_wanted)?;
        for key in std::mem::take(&mut self.retired_services) {
            if let Err(e) = remove_service(ebpf, &key) {
                tracing::warn!(error = %e, "removing an adopted service");
            }
            report.services_removed += 1;
        }
        let mut live_backends = HashSet::new();
        let mut live_services = HashSet::new();
        let mut live_keys = HashSet::new();
        let mut any_nat = false;
        for s in &desired.services {
            let key = service_key(s);
            live_services.insert(key);
            // Backends.
            let mut ids = Vec::with_capacity(s.backends.len());
            for b in &s.backends {
                let (addr, family) = addr16(b.addr);
                let ident = (key, addr, b.port, b.method);
                let id = match self.backend_ids.get(&ident) {
                    Some(id) => *id,
                    None => {
                        let id = self.alloc_backend()?;
                        self.backend_ids.insert(ident, id);
                        clear_nh_cache(ebpf, &[id])?;
                        self.counters(ebpf)?.reset(id);
                        id
                    }
                };
                any_nat |= b.method == Method::Nat;
                let value = Backend {
                    addr,
                    port: b.port.to_be_bytes(),
                    family,
                    method: match b.method {
                        Method::Dr => METHOD_DR,
                        Method::Tun => METHOD_TUN,
                        Method::Nat => METHOD_NAT,
                    },
                    flags: if b.healthy { 0 } else { BACKEND_F_DOWN },
                    uthreshold: b.uthreshold,
                    lthreshold: b.lthreshold,
                };
                if let Some(old) = self.backends.get(&id) {
                    if old.uthreshold != value.uthreshold && threshold_change_clears(old.uthreshold, value.uthreshold) {
                        self.counters(ebpf)?.clear_overload(id);
                    }
                }
                if self.backends.get(&id) != Some(&value) {
                    let mut arr: Array<_, Backend> = Array::try_from(map_mut(ebpf, BACKENDS_MAP)?)
                        .map_err(map_err(BACKENDS_MAP))?;
                    arr.set(id, value, 0).map_err(map_err(BACKENDS_MAP))?;
                    self.backends.insert(id, value);
                }
                live_backends.insert(id);
                ids.push(id);
            }
            // Table, in backend ids.
            let table: Vec<u32> = service_table(s)
                .into_iter()
                .map(|i| ids[i as usize])
                .collect();
            let (id, mut value, is_new) = match self.services.get(&key) {
                Some(st) => (st.value.id, st.value, false),
                None => {
                    let id = self.alloc_service()?;
                    (
                        id,
                        ServiceValue {
                            id,
                            bank: 1,
                            ..Default::default()
                        },
                        true,
                    )
                }
            };
            value.sched = s.scheduler.code();
            value.master_slot = s.master_slot.unwrap_or(NO_MASTER_SLOT);
            if s.members().any(|m| m.master_slot.is_some_and(|slot| slot >= MAX_MASTER_SLOTS)) {
                return Err(LbError::Full {
                    what: "mastership slots",
                    max: MAX_MASTER_SLOTS,
                });
            }
            value.flags = service_flags(s);
            match s.persistence {
                Some(p) => {
                    value.persist_timeout_s = u32::try_from(p.timeout.as_secs())
                        .unwrap_or(u32::MAX)
                        .max(1);
                    let len = if s.vip.is_ipv4() { 4 } else { 16 };
                    value.persist_mask = prefix_mask(p.prefix_len, len);
                }
                None => {
                    value.persist_timeout_s = 0;
                    value.persist_mask = [0; 16];
                }
            }
            if keeps_counts(s) {
                value.flags |= SVC_F_COUNT;
            }
            if s.scheduler.counts_connections() {
                if value.cap != 0 {
                    // A table service turned least-connection: its region goes.
                    self.quarantine.push((value.base[0], super::pool::Pool::region(value.cap)));
                    value.cap = 0;
                    value.base = [0; 2];
                }
                if self.flip_dests(ebpf, s, &mut value, is_new, dest_list(s, &ids), &mut live_keys)? {
                    report.services_flipped += 1;
                }
                self.services.insert(key, SvcState { value });
                continue;
            }
            let cap = service_capacity(s);
            if value.cap != cap {
                // A new service, or one whose table size class changed: a region of its own
                // (the old one, if any, stays readable until the next apply).
                let size = super::pool::Pool::region(cap);
                let Some(start) = self.pool.alloc(size) else {
                    return Err(LbError::Full { what: "scheduling-table slots", max: ka_common::lb::TABLE_POOL_SLOTS });
                };
                if value.cap != 0 {
                    self.quarantine.push((value.base[0], super::pool::Pool::region(value.cap)));
                }
                value.cap = cap;
                value.base = [start, start + cap];
                // What the new region holds is unknown: every slot is written.
                self.banks.insert(id, Default::default());
                value.len = [0; 2];
            }
            let active = (value.bank & 1) as usize;
            let banks = self.banks.entry(id).or_default();
            let table_same =
                !is_new && banks[active] == table && value.len[active] as usize == table.len();
            if table_same {
                // Only scalar fields may have changed: replace the values that did, same bank.
                write_members(ebpf, &mut self.keys, s, &value, &mut live_keys)?;
            } else {
                let inactive = 1 - active;
                let changed = maglev::changed_slots(&banks[inactive], &table);
                {
                    let mut arr: Array<_, u32> =
                        Array::try_from(map_mut(ebpf, TABLES_MAP)?).map_err(map_err(TABLES_MAP))?;
                    for (slot, v) in &changed {
                        arr.set(value.base[inactive] + *slot, v, 0)
                            .map_err(map_err(TABLES_MAP))?;
                    }
                }
                report.slots_written += changed.len();
                let mut shadow = table.clone();
                if banks[inactive].len() > shadow.len() {
                    // Slots past the new length keep their old values in the map.
                    shadow.extend_from_slice(&banks[inactive][table.len()..]);
                }
                banks[inactive] = shadow;
                value.len[inactive] = table.len() as u32;
                value.bank = inactive as u32;
                write_members(ebpf, &mut self.keys, s, &value, &mut live_keys)?;
                report.services_flipped += 1;
            }
            self.services.insert(key, SvcState { value });
        }
        // Removed services.
        let gone: Vec<ServiceKey> = self
            .services
            .keys()
            .filter(|k| !live_services.contains(k))
            .copied()
            .collect();
        for key in gone {
            if let Some(st) = self.services.remove(&key) {
                self.free_services.push(st.value.id);
                if st.value.cap != 0 {
                    self.quarantine.push((st.value.base[0], super::pool::Pool::region(st.value.cap)));
                }
            }
            report.services_removed += 1;
        }
        // Keys no service holds any more (after every live one was rewritten).
        let stale: Vec<ServiceKey> = self.keys.keys().filter(|k| !live_keys.contains(*k)).copied().collect();
        for key in stale {
            remove_service(ebpf, &key)?;
            self.keys.remove(&key);
        }
        // Removed backends: zeroed after the tables stopped naming them.
        let dead: Vec<(BackendIdent, u32)> = self
            .backend_ids
            .iter()
            .filter(|(_, id)| !live_backends.contains(id))
            .map(|(k, v)| (*k, *v))
            .collect();
        for (ident, id) in dead {
            let mut arr: Array<_, Backend> =
                Array::try_from(map_mut(ebpf, BACKENDS_MAP)?).map_err(map_err(BACKENDS_MAP))?;
            arr.set(id, Backend::default(), 0)
                .map_err(map_err(BACKENDS_MAP))?;
            self.backend_ids.remove(&ident);
            self.backends.remove(&id);
            self.free_backends.push_back(id);
        }
        for id in std::mem::take(&mut self.retired_backends) {
            let mut arr: Array<_, Backend> =
                Array::try_from(map_mut(ebpf, BACKENDS_MAP)?).map_err(map_err(BACKENDS_MAP))?;
            arr.set(id, Backend::default(), 0)
                .map_err(map_err(BACKENDS_MAP))?;
            self.backends.remove(&id);
            self.free_backends.push_back(id);
        }
        let vips: Vec<[u8; 16]> = self.keys.keys().map(|k| k.addr).collect();
        self.write_vip_filter(ebpf, &vips, any_nat)?;
        self.nat = any_nat;
        if !self.slots_filled {
            // In key order, so which of two colliding keys owns the slot does not depend on
            // the order of a hash map.
            let mut keys: Vec<(ServiceKey4, ServiceValue)> =
                self.keys.iter().filter_map(|(k, v)| Some((k.v4()?, *v))).collect();
            keys.sort_by_key(|(k, _)| (k.addr, k.port, k.proto));
            for (k4, v) in keys {
                put_slot4(ebpf, &k4, &v)?;
            }
            self.slots_filled = true;
        }
        // Globals.
        {
            let mut arr: Array<_, Globals> =
                Array::try_from(map_mut(ebpf, GLOBALS_MAP)?).map_err(map_err(GLOBALS_MAP))?;
            let mut g = arr.get(&0, 0).map_err(map_err(GLOBALS_MAP))?;
            g.flags &= !(G_LB | G_NAT | G_ANY_PORT);
            if !desired.services.is_empty() {
                g.flags |= G_LB;
            }
            // The filter holds every key's VIP from here on.
            g.flags |= G_VIP_FILTER;
            if live_keys.iter().any(|k: &ServiceKey| k.port == [0; 2]) {
                g.flags |= G_ANY_PORT;
            }
            if any_nat {
                g.flags |= G_NAT;
            }
            if let Some(t) = desired.tunnel_src_v4 {
                g.tun_src_v4.copy_from_slice(&addr16(t.addr).0[..4]);
                g.tun_v4_host_bits = t.host_bits.min(16);
            }
            if let Some(t) = desired.tunnel_src_v6 {
                g.tun_src_v6 = addr16(t.addr).0;
                g.tun_v6_host_bits = t.host_bits.min(32);
            }
            arr.set(0, g, 0).map_err(map_err(GLOBALS_MAP))?;
        }
        // Neighbours.
        self.static_neigh = desired
            .neighbours
            .iter()
            .map(|n| (addr_key(n.addr), NeighValue { ifindex: n.ifindex, smac: n.smac, dmac: n.dmac }))
            .collect();
        self.sync_neighbours(ebpf)?;
        Ok(report)
    }

    /// Writes the VIP filter for `addrs`, or with every bit set (`all`: a NAT service exists,
    /// whose replies go to clients), only the words that changed.
    fn write_vip_filter<'a>(&mut self, ebpf: &mut Ebpf, addrs: impl IntoIterator<Item = &'a [u8; 16]>, all: bool) -> Result<(), LbError> {
        let want = if all { [u64::MAX; VIP_FILTER_WORDS as usize] } else { vip_filter(addrs) };
        let changes = vip_filter_changes(self.vip_filter.as_deref(), &want);
        if !changes.is_empty() {
            let mut arr: Array<_, u64> = Array::try_from(map_mut(ebpf, VIP_FILTER_MAP)?).map_err(map_err(VIP_FILTER_MAP))?;
            for (i, w) in changes {
                arr.set(i, w, 0).map_err(map_err(VIP_FILTER_MAP))?;
            }
        }
        self.vip_filter = Some(want.to_vec());
        Ok(())
    }

    /// The connection counters, mapped on first use.
    fn counters(&mut self, ebpf: &Ebpf) -> Result<&ConnCounters, LbError> {
        if self.counters.is_none() {
            self.counters = Some(ConnCounters::map(ebpf)?);
        }
        self.counters.as_ref().ok_or(LbError::MissingMap(ka_common::sched::BACKEND_CONNS_MAP))
    }

    /// The connection counts of a backend (by [`MapWriter::backend_id`]), if the counters are
    /// mapped (they are once a backend was applied).
    pub fn conn_counts(&self, id: u32) -> Option<BackendConns> {
        self.counters.as_ref().map(|c| c.get(id))
    }

    /// Writes the candidate list of a least-connection service to its inactive bank and flips
    /// the bank, unless the active bank already holds it (then only a changed service value is
    /// written). Returns whether the bank flipped.
    fn flip_dests(
        &mut self,
        ebpf: &mut Ebpf,
        s: &ServiceSpec,
        value: &mut ServiceValue,
        is_new: bool,
        list: DestList,
        live_keys: &mut HashSet<ServiceKey>,
    ) -> Result<bool, LbError> {
        let id = value.id;
        let active = (value.bank & 1) as usize;
        let banks = self.dest_banks.entry(id).or_default();
        if !is_new && banks[active] == list && value.len[active] == list.n {
            // Only scalar fields may have changed: the keys whose values did are rewritten.
            write_members(ebpf, &mut self.keys, s, value, live_keys)?;
            return Ok(false);
        }
        let inactive = 1 - active;
        {
            let mut arr: Array<_, DestList> = Array::try_from(map_mut(ebpf, DESTS_MAP)?).map_err(map_err(DESTS_MAP))?;
            arr.set(dests_index(id, inactive as u32), list, 0).map_err(map_err(DESTS_MAP))?;
        }
        banks[inactive] = list;
        value.len[inactive] = list.n;
        value.bank = inactive as u32;
        write_members(ebpf, &mut self.keys, s, value, live_keys)?;
        Ok(true)
    }

    /// Sets the next hops the resolver found for the real servers (by server address; the
    /// static ones of the desired state win) and writes the neighbour-map entries that
    /// changed. Returns how many entries were written or removed.
    ///
    /// # Errors
    /// A map operation failed (applying again converges).
    pub fn set_resolved(
        &mut self,
        ebpf: &mut Ebpf,
        entries: &std::collections::BTreeMap<std::net::IpAddr, NeighValue>,
    ) -> Result<usize, LbError> {
        self.resolved_neigh = entries.iter().map(|(a, v)| (addr_key(*a), *v)).collect();
        self.sync_neighbours(ebpf)
    }

    /// Writes the neighbour-map entries that differ from the static and resolved next hops,
    /// removes the others, and empties the next-hop caches when anything changed (a backend
    /// must not keep a next hop the map no longer gives).
    fn sync_neighbours(&mut self, ebpf: &mut Ebpf) -> Result<usize, LbError> {
        let mut want = self.resolved_neigh.clone();
        want.extend(self.static_neigh.iter().map(|(k, v)| (*k, *v)));
        let (upsert, remove) = neigh_changes(&self.neigh_written, &want);
        if upsert.is_empty() && remove.is_empty() {
            return Ok(0);
        }
        {
            let mut m: BpfHashMap<_, AddrKey, NeighValue> =
                BpfHashMap::try_from(map_mut(ebpf, NEIGH_MAP)?).map_err(map_err(NEIGH_MAP))?;
            for (k, v) in &upsert {
                m.insert(k, v, 0).map_err(map_err(NEIGH_MAP))?;
                self.neigh_written.insert(*k, *v);
            }
            for k in &remove {
                match m.remove(k) {
                    Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                    Err(e) => return Err(map_err(NEIGH_MAP)(e)),
                }
                self.neigh_written.remove(k);
            }
        }
        let live: Vec<u32> = self.backends.keys().copied().collect();
        clear_nh_cache(ebpf, &live)?;
        Ok(upsert.len() + remove.len())
    }

    /// Flips the mastership flag of a slot: services with this `master_slot` are served only
    /// while it is set (the VRRP engine calls this on entering and leaving MASTER).
    ///
    /// # Errors
    /// The slot is out of range or the map cannot be written.
    pub fn set_master(ebpf: &mut Ebpf, slot: u32, master: bool) -> Result<(), LbError> {
        let mut arr: Array<_, u32> =
            Array::try_from(map_mut(ebpf, MASTER_MAP)?).map_err(map_err(MASTER_MAP))?;
        arr.set(slot, u32::from(master), 0)
            .map_err(map_err(MASTER_MAP))
    }
}

/// Writes the value of every member of service `s` (from the service's `value`, [`key_value`])
/// whose map entry differs from what `written` says it holds, and records them as live.
fn write_members(
    ebpf: &mut Ebpf,
    written: &mut HashMap<ServiceKey, ServiceValue>,
    s: &ServiceSpec,
    value: &ServiceValue,
    live: &mut HashSet<ServiceKey>,
) -> Result<(), LbError> {
    for m in s.members() {
        let key = member_key(&m, s.proto);
        let v = key_value(value, &m);
        if written.get(&key) != Some(&v) {
            insert_service(ebpf, &key, &v)?;
            written.insert(key, v);
        }
        live.insert(key);
    }
    Ok(())
}

/// Writes a service into its family's map (one element replaced at once: readers see the old or
/// the new value).
fn insert_service(ebpf: &mut Ebpf, key: &ServiceKey, value: &ServiceValue) -> Result<(), LbError> {
    match key.v4() {
        Some(k4) => {
            let mut m: BpfHashMap<_, ServiceKey4, ServiceValue> =
                BpfHashMap::try_from(map_mut(ebpf, SERVICES4_MAP)?).map_err(map_err(SERVICES4_MAP))?;
            m.insert(k4, value, 0).map_err(map_err(SERVICES4_MAP))?;
            put_slot4(ebpf, &k4, value)
        }
        None => {
            let mut m: BpfHashMap<_, ServiceKey, ServiceValue> =
                BpfHashMap::try_from(map_mut(ebpf, SERVICES6_MAP)?).map_err(map_err(SERVICES6_MAP))?;
            m.insert(key, value, 0).map_err(map_err(SERVICES6_MAP))
        }
    }
}

/// The writes that put `key` with `value` into its slot of the IPv4 service slots, which holds
/// `old` (pure): none when another key holds it (that key keeps it; this one is found in the
/// hash map); one for a free slot or a value on the same bank; two when the bank flips. The
/// kernel reads a slot while userspace may be copying over it, so the first of two writes
/// brings the new bank's length and base under the old bank number (the kernel reads the old
/// bank's fields until the number changes), the second the rest, the number included: a slot
/// read half-written then names a bank whose fields are whole.
pub fn slot4_writes(old: &ServiceSlot4, key: &ServiceKey4, value: &ServiceValue) -> Vec<ServiceSlot4> {
    let free = old.key.proto == 0;
    if !free && old.key != *key {
        return Vec::new();
    }
    let new = ServiceSlot4 { key: *key, value: *value };
    if free || old.value.bank == value.bank {
        return vec![new];
    }
    let nb = (value.bank & 1) as usize;
    let mut first = *old;
    first.value.len[nb] = value.len[nb];
    first.value.base[nb] = value.base[nb];
    vec![first, new]
}

/// Writes `key`'s IPv4 service slot ([`slot4_writes`]).
fn put_slot4(ebpf: &mut Ebpf, key: &ServiceKey4, value: &ServiceValue) -> Result<(), LbError> {
    let mut arr: Array<_, ServiceSlot4> =
        Array::try_from(map_mut(ebpf, SVC_SLOTS4_MAP)?).map_err(map_err(SVC_SLOTS4_MAP))?;
    let i = svc_slot4(key);
    let old = arr.get(&i, 0).map_err(map_err(SVC_SLOTS4_MAP))?;
    for w in slot4_writes(&old, key, value) {
        arr.set(i, w, 0).map_err(map_err(SVC_SLOTS4_MAP))?;
    }
    Ok(())
}

/// Frees `key`'s IPv4 service slot if `key` holds it.
fn clear_slot4(ebpf: &mut Ebpf, key: &ServiceKey4) -> Result<(), LbError> {
    let mut arr: Array<_, ServiceSlot4> =
        Array::try_from(map_mut(ebpf, SVC_SLOTS4_MAP)?).map_err(map_err(SVC_SLOTS4_MAP))?;
    let i = svc_slot4(key);
    let old = arr.get(&i, 0).map_err(map_err(SVC_SLOTS4_MAP))?;
    if old.key == *key {
        arr.set(i, ServiceSlot4::default(), 0).map_err(map_err(SVC_SLOTS4_MAP))?;
    }
    Ok(())
}

/// Removes a service from its family's map.
fn remove_service(ebpf: &mut Ebpf, key: &ServiceKey) -> Result<(), LbError> {
    match key.v4() {
        Some(k4) => {
            // The slot first: no packet finds the key there once it left the hash map.
            clear_slot4(ebpf, &k4)?;
            let mut m: BpfHashMap<_, ServiceKey4, ServiceValue> =
                BpfHashMap::try_from(map_mut(ebpf, SERVICES4_MAP)?).map_err(map_err(SERVICES4_MAP))?;
            m.remove(&k4).map_err(map_err(SERVICES4_MAP))
        }
        None => {
            let mut m: BpfHashMap<_, ServiceKey, ServiceValue> =
                BpfHashMap::try_from(map_mut(ebpf, SERVICES6_MAP)?).map_err(map_err(SERVICES6_MAP))?;
            m.remove(key).map_err(map_err(SERVICES6_MAP))
        }
    }
}

/// The neighbour-map entry for `addr`, if any: what the datapath uses when `bpf_fib_lookup`
/// cannot answer.
///
/// # Errors
/// The map cannot be read.
pub fn neighbour_entry(ebpf: &Ebpf, addr: std::net::IpAddr) -> Result<Option<NeighValue>, LbError> {
    let map = ebpf.map(NEIGH_MAP).ok_or(LbError::MissingMap(NEIGH_MAP))?;
    let m: BpfHashMap<_, AddrKey, NeighValue> = BpfHashMap::try_from(map).map_err(map_err(NEIGH_MAP))?;
    match m.get(&addr_key(addr), 0) {
        Ok(v) => Ok(Some(v)),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(map_err(NEIGH_MAP)(e)),
    }
}

fn read_pkt_bytes(ebpf: &Ebpf, name: &'static str, id: u32) -> Result<PktBytes, LbError> {
    let map = ebpf.map(name).ok_or(LbError::MissingMap(name))?;
    let arr: PerCpuArray<_, PktBytes> = PerCpuArray::try_from(map).map_err(map_err(name))?;
    let v = arr.get(&id, 0).map_err(map_err(name))?;
    Ok(v.iter().fold(PktBytes::default(), |a, b| PktBytes {
        packets: a.packets + b.packets,
        bytes: a.bytes + b.bytes,
    }))
}

/// Packets and bytes of a service (by [`MapWriter::service_id`]), summed over CPUs.
///
/// # Errors
/// The map cannot be read.
pub fn service_stats(ebpf: &Ebpf, id: u32) -> Result<PktBytes, LbError> {
    read_pkt_bytes(ebpf, SERVICE_STATS_MAP, id)
}

/// Packets and bytes of a backend (by [`MapWriter::backend_id`]), summed over CPUs.
///
/// # Errors
/// The map cannot be read.
pub fn backend_stats(ebpf: &Ebpf, id: u32) -> Result<PktBytes, LbError> {
    read_pkt_bytes(ebpf, BACKEND_STATS_MAP, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::{BackendSpec, L4Proto};

    fn svc(sched: Scheduler, backends: &[(&str, u32, bool)]) -> ServiceSpec {
        ServiceSpec {
            vip: "198.18.0.1".parse().expect("address"),
            port: 80,
            proto: L4Proto::Tcp,
            scheduler: sched,
            persistence: None,
            master_slot: None,
            backends: backends
                .iter()
                .map(|(a, w, h)| BackendSpec {
                    addr: a.parse().expect("address"),
                    port: 80,
                    weight: *w,
                    method: Method::Dr,
                    healthy: *h,
                    uthreshold: 0,
                    lthreshold: 0,
                })
                .collect(),
            options: Default::default(),
        }
    }

    /// Slot writes: a free slot or the key's own takes the value (two steps when the bank
    /// flips, the first keeping the old bank number with the new bank's fields), another key's
    /// slot is left alone.
    #[test]
    fn service_slot_writes() {
        let key = |port: u16| ServiceKey4 { addr: [198, 18, 0, 1], port: port.to_be_bytes(), proto: 6, _pad: 0 };
        let value = |bank: u32, len: [u32; 2], base: [u32; 2]| ServiceValue { id: 3, bank, len, base, cap: 8, ..Default::default() };
        let slot = |k, v| ServiceSlot4 { key: k, value: v };
        let v0 = value(0, [7, 0], [100, 108]);
        let v1 = value(1, [7, 5], [100, 108]);
        let v1b = ServiceValue { flags: 2, ..v1 };
        let mixed = value(0, [7, 5], [100, 108]);
        // (slot before, key, value, writes)
        let cases: [(ServiceSlot4, ServiceKey4, ServiceValue, Vec<ServiceSlot4>); 5] = [
            (ServiceSlot4::default(), key(80), v0, vec![slot(key(80), v0)]),
            (slot(key(80), v0), key(80), v1, vec![slot(key(80), mixed), slot(key(80), v1)]),
            (slot(key(80), v1), key(80), v1b, vec![slot(key(80), v1b)]),
            (slot(key(443), v0), key(80), v1, vec![]),
            // A slot written by the kernel's zero value is free whatever its value says.
            (slot(ServiceKey4::default(), v1), key(80), v0, vec![slot(key(80), v0)]),
        ];
        for (i, (old, k, v, want)) in cases.iter().enumerate() {
            assert_eq!(&slot4_writes(old, k, v), want, "case {i}");
        }
    }

    /// Only the words that differ are written; an unknown map gets every word.
    #[test]
    fn vip_filter_writes_what_changed() {
        let want = [0u64, 5, 0, 7];
        assert_eq!(vip_filter_changes(Some(&[0, 5, 1, 7]), &want), vec![(2, 0)]);
        assert_eq!(vip_filter_changes(Some(&want), &want), vec![]);
        assert_eq!(vip_filter_changes(None, &want).len(), 4);
    }

    /// Only what differs is written: new and changed entries, then the ones no longer wanted.
    #[test]
    fn neighbour_changes_are_minimal() {
        let k = |a: &str| addr_key(a.parse().expect("address"));
        let v = |i: u32, last: u8| NeighValue { ifindex: i, smac: [2, 0, 0, 0, 0, 1], dmac: [2, 0, 0, 0, 0, last] };
        let written = HashMap::from([(k("198.18.1.1"), v(2, 1)), (k("198.18.1.2"), v(2, 2)), (k("198.18.1.3"), v(2, 3))]);
        let want = HashMap::from([(k("198.18.1.1"), v(2, 1)), (k("198.18.1.2"), v(2, 9)), (k("fd00:198:18::4"), v(3, 4))]);
        let (upsert, remove) = neigh_changes(&written, &want);
        assert_eq!(upsert, vec![(k("198.18.1.2"), v(2, 9)), (k("fd00:198:18::4"), v(3, 4))]);
        assert_eq!(remove, vec![k("198.18.1.3")]);
        let (upsert, remove) = neigh_changes(&want, &want);
        assert!(upsert.is_empty() && remove.is_empty(), "nothing changed, nothing written");
    }

    #[test]
    fn drained_and_down_backends_get_no_slots() {
        let t = service_table(&svc(
            Scheduler::Maglev,
            &[
                ("198.18.10.1", 1, true),
                ("198.18.10.2", 0, true),
                ("198.18.10.3", 1, false),
            ],
        ));
        assert_eq!(t.len(), ring_size(table_capacity(3)) as usize, "a ring of the prime below the capacity of 3 servers");
        assert_eq!(t.len(), 509);
        assert!(t.iter().all(|&i| i == 0));
    }

    #[test]
    fn round_robin_table_is_the_wrr_sequence() {
        let t = service_table(&svc(
            Scheduler::RoundRobin,
            &[("198.18.10.1", 2, true), ("198.18.10.2", 1, true)],
        ));
        assert_eq!(t, vec![0, 0, 1]);
    }

    /// A least-connection service's candidates: healthy servers above weight 0, in
    /// configuration order, with their backend ids and weights, at most MAX_DESTS.
    #[test]
    fn dest_list_keeps_available_servers_in_order() {
        let s = svc(
            Scheduler::WeightedLeastConn,
            &[("198.18.10.1", 2, true), ("198.18.10.2", 0, true), ("198.18.10.3", 5, false), ("198.18.10.4", 1, true)],
        );
        let l = dest_list(&s, &[7, 8, 9, 10]);
        assert_eq!((l.n, &l.ids[..2], &l.weights[..2]), (2, &[7, 10][..], &[2, 1][..]));
        assert_eq!(l.metric(), metric_of(ka_common::lb::SCHED_WLC), "the scheduler's metric travels with the list");
        let many: Vec<(String, u32, bool)> = (0..100).map(|i| (format!("198.18.11.{i}"), 1, true)).collect();
        let many: Vec<(&str, u32, bool)> = many.iter().map(|(a, w, h)| (a.as_str(), *w, *h)).collect();
        let s = svc(Scheduler::LeastConn, &many);
        let ids: Vec<u32> = (0..100).collect();
        let l = dest_list(&s, &ids);
        assert_eq!((l.n as usize, l.ids[MAX_DESTS - 1]), (MAX_DESTS, MAX_DESTS as u32 - 1));
    }

    /// Counts are kept for least-connection schedulers and wherever a uthreshold is set.
    #[test]
    fn counts_kept_where_used() {
        assert!(keeps_counts(&svc(Scheduler::WeightedLeastConn, &[("198.18.10.1", 1, true)])));
        assert!(!keeps_counts(&svc(Scheduler::Maglev, &[("198.18.10.1", 1, true)])));
        let mut s = svc(Scheduler::RoundRobin, &[("198.18.10.1", 1, true)]);
        s.backends[0].uthreshold = 5;
        assert!(keeps_counts(&s));
    }

    /// Mixed families are refused. Port 0 (every port) is a service; a DR real server on
    /// another port is accepted, as keepalived forces IPVS's DR/TUN destination port to the
    /// virtual one (the packet keeps its port); NAT translates to the real server's.
    #[test]
    fn checks_refuse_mixed_families_only() {
        let mut s = svc(Scheduler::Maglev, &[("198.18.10.1", 1, true)]);
        s.port = 0;
        assert!(check_service(&s).is_ok(), "port 0");
        let mut s = svc(Scheduler::Maglev, &[("fd00::1", 1, true)]);
        assert!(check_service(&s).is_err(), "IPv6 real server of an IPv4 service");
        s.backends[0].addr = "198.18.10.1".parse().expect("address");
        s.backends[0].port = 8080;
        assert!(check_service(&s).is_ok(), "DR real server on another port");
        s.options.also.push(Member { vip: "fd00::9".parse().expect("address"), port: 80, master_slot: None });
        assert!(check_service(&s).is_err(), "IPv6 key in an IPv4 service");
    }

    /// The flags of a service reach every key; a port-0 key adds all-ports; each key carries
    /// its own mastership slot.
    #[test]
    fn key_values_carry_service_flags_and_their_own_slot() {
        let mut s = svc(Scheduler::SourceHash, &[("198.18.10.1", 1, true)]);
        assert_eq!(service_flags(&s), 0);
        s.options.one_packet = true;
        s.options.fallback = true;
        s.options.persist_service_wide = true;
        assert_eq!(service_flags(&s), SVC_F_OPS | SVC_F_FALLBACK, "service-wide persistence needs persistence");
        s.persistence = Some(crate::lb::Persistence { timeout: std::time::Duration::from_secs(60), prefix_len: 32 });
        assert_eq!(service_flags(&s), SVC_F_OPS | SVC_F_FALLBACK | SVC_F_PERSIST | SVC_F_PERSIST_SERVICE);
        let base = ServiceValue { id: 7, flags: SVC_F_PERSIST, master_slot: 9, ..Default::default() };
        let any = Member { vip: "198.18.0.1".parse().expect("address"), port: 0, master_slot: Some(2) };
        let web = Member { port: 80, master_slot: None, ..any };
        assert_eq!(key_value(&base, &any), ServiceValue { flags: SVC_F_PERSIST | SVC_F_ALL_PORTS, master_slot: 2, ..base });
        assert_eq!(key_value(&base, &web), ServiceValue { master_slot: NO_MASTER_SLOT, ..base });
        assert_eq!(member_key(&any, crate::lb::L4Proto::Udp).port, [0, 0]);
        assert_eq!(member_key(&web, crate::lb::L4Proto::Udp).proto, 17);
    }

    #[test]
    fn same_config_same_table_on_two_nodes() {
        let a = service_table(&svc(
            Scheduler::Maglev,
            &[("198.18.10.1", 1, true), ("198.18.10.2", 1, true)],
        ));
        let b = service_table(&svc(
            Scheduler::Maglev,
            &[("198.18.10.2", 1, true), ("198.18.10.1", 1, true)],
        ));
        fn names(t: &[u32], order: [&'static str; 2]) -> Vec<&'static str> {
            t.iter().map(|&i| order[i as usize]).collect()
        }
        assert_eq!(names(&a, ["1", "2"]), names(&b, ["2", "1"]));
    }

    /// The golden Maglev table: a fixed service's table (its digest and first slots) and the
    /// backends a fixed set of flows get through it (`flow_hash4 % len`, as the kernel picks).
    /// Pinned, so two ka versions pick the same backends during a rolling upgrade: a change of
    /// the permutation hash, the weighting, the ring size or the flow hash fails here.
    #[test]
    fn golden_maglev_table() {
        use ka_common::lb::{flow_hash4, FlowKey4};
        let s = svc(
            Scheduler::Maglev,
            &[("198.18.10.1", 1, true), ("198.18.10.2", 1, true), ("198.18.10.3", 2, true), ("198.18.10.4", 1, true)],
        );
        let t = service_table(&s);
        assert_eq!(t.len(), 509, "ring size of a 4-server service");
        let digest = t.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &i| (h ^ u64::from(i)).wrapping_mul(0x0000_0100_0000_01b3));
        assert_eq!(digest, GOLDEN_DIGEST, "table digest");
        assert_eq!(&t[..16], &GOLDEN_SLOTS, "first slots");
        let picks: Vec<u32> = (0..16u16)
            .map(|i| {
                let k = FlowKey4 { src: [198, 19, 0, i as u8], dst: [198, 18, 0, 1], sport: (40_000 + i).to_be_bytes(), dport: 80u16.to_be_bytes(), proto: 6, _pad: [0; 3] };
                t[(flow_hash4(&k) % t.len() as u32) as usize]
            })
            .collect();
        assert_eq!(picks, GOLDEN_PICKS, "backends of 16 flows");
        let per: Vec<usize> = (0..4).map(|b| t.iter().filter(|&&i| i == b).count()).collect();
        assert_eq!(per.iter().sum::<usize>(), 509);
        assert!(per[2] > per[0] + per[0] / 2, "weight 2 gets about twice the slots: {per:?}");
    }

    /// Golden values of [`golden_maglev_table`].
    const GOLDEN_DIGEST: u64 = 15_409_773_448_356_742_121;
    const GOLDEN_SLOTS: [u32; 16] = [1, 2, 3, 0, 2, 2, 1, 3, 1, 0, 1, 2, 2, 3, 2, 2];
    const GOLDEN_PICKS: [u32; 16] = [2, 0, 2, 2, 2, 1, 0, 3, 0, 1, 2, 2, 3, 1, 1, 1];
}
