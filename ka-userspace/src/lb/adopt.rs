//! A start that found the pinned maps of an earlier run rebuilds the map writer's state from
//! them: [`AdoptedTables::read`] reads the services, backends and scheduling tables back, and
//! [`reconcile`] (pure) matches them with the new desired state. Services and real servers
//! that did not change keep their ids, so the connection entries that name them keep their
//! real servers; the unchanged tables are not written again; services and backends the new
//! configuration no longer has are removed by the writer's next apply. The same read-back
//! seeds the health checkers ([`AdoptedTables::server_state`]) and keeps each VRRP instance on
//! its mastership slot ([`AdoptedTables::vip_slots`]).

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    net::IpAddr,
    os::fd::AsFd,
};

use aya::{
    maps::{Array, HashMap as BpfHashMap, Map},
    Ebpf,
};
use ka_common::lb::{
    Backend, ServiceKey, ServiceKey4, ServiceValue, BACKENDS_MAP, BACKEND_F_DOWN, FAMILY_V4, FAMILY_V6, MAX_BACKENDS,
    MAX_SERVICES, METHOD_DR, METHOD_NAT, METHOD_TUN, NO_MASTER_SLOT, SERVICES4_MAP, SERVICES6_MAP, TABLES_MAP, TABLE_SIZE,
};
use tracing::warn;

use ka_common::sched::{dests_index, DestList, DESTS_MAP};

use super::{addr16, writer::BackendIdent, DesiredState, LbError, Method};

/// What the maps of an earlier run hold: every service, every backend in use and the slots
/// in use of both banks of each service's table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdoptedTables {
    /// Services, IPv4 and IPv6.
    pub services: Vec<(ServiceKey, ServiceValue)>,
    /// Backends in use (non-zero family), by id.
    pub backends: BTreeMap<u32, Backend>,
    /// The `len` first slots of each bank of each service, by service id.
    pub banks: HashMap<u32, [Vec<u32>; 2]>,
}

/// How an earlier run left a real server of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdoptedServer {
    /// In its service's active table: healthy, with a weight.
    InTable,
    /// Out of the tables: healthy at weight 0 (`down` false: drained, or inhibited after a
    /// failure) or failed (`down`: its flows were rescheduled).
    Out {
        /// `BACKEND_F_DOWN` was set.
        down: bool,
    },
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> LbError {
    move |e| LbError::Map { map, source: Box::new(e) }
}

fn map_of<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a Map, LbError> {
    ebpf.map(name).ok_or(LbError::MissingMap(name))
}

/// The method of a backend value.
fn method_of(m: u8) -> Option<Method> {
    match m {
        METHOD_DR => Some(Method::Dr),
        METHOD_TUN => Some(Method::Tun),
        METHOD_NAT => Some(Method::Nat),
        _ => None,
    }
}

/// The identity of a backend value under service `key`, if its method is known.
fn ident_of(key: ServiceKey, b: &Backend) -> Option<BackendIdent> {
    Some((key, b.addr, u16::from_be_bytes(b.port), method_of(b.method)?))
}

impl AdoptedTables {
    /// Reads the load balancer's maps of a loaded object (those of an earlier run when they
    /// were adopted; empty maps otherwise).
    ///
    /// # Errors
    /// A map is missing or cannot be read.
    pub fn read(ebpf: &Ebpf) -> Result<AdoptedTables, LbError> {
        let mut services = Vec::new();
        let m4: BpfHashMap<_, ServiceKey4, ServiceValue> =
            BpfHashMap::try_from(map_of(ebpf, SERVICES4_MAP)?).map_err(map_err(SERVICES4_MAP))?;
        for entry in m4.iter() {
            let (k, v) = entry.map_err(map_err(SERVICES4_MAP))?;
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&k.addr);
            services.push((ServiceKey { addr, port: k.port, proto: k.proto, family: FAMILY_V4 }, v));
        }
        let m6: BpfHashMap<_, ServiceKey, ServiceValue> =
            BpfHashMap::try_from(map_of(ebpf, SERVICES6_MAP)?).map_err(map_err(SERVICES6_MAP))?;
        for entry in m6.iter() {
            let (k, v) = entry.map_err(map_err(SERVICES6_MAP))?;
            services.push((k, v));
        }
        services.sort_by_key(|(k, v)| (v.id, k.family, k.addr, k.port, k.proto));
        let arr: Array<_, Backend> = Array::try_from(map_of(ebpf, BACKENDS_MAP)?).map_err(map_err(BACKENDS_MAP))?;
        let mut backends = BTreeMap::new();
        for id in 0..arr.len().min(MAX_BACKENDS) {
            let b = arr.get(&id, 0).map_err(map_err(BACKENDS_MAP))?;
            if b.family == FAMILY_V4 || b.family == FAMILY_V6 {
                backends.insert(id, b);
            }
        }
        let tables = match map_of(ebpf, TABLES_MAP)? {
            Map::Array(d) => d,
            _ => return Err(LbError::Map { map: TABLES_MAP, source: Box::new(aya::maps::MapError::InvalidMapType { map_type: 0 }) }),
        };
        let mut banks = HashMap::new();
        for (_, v) in &services {
            if v.id >= MAX_SERVICES || banks.contains_key(&v.id) {
                continue;
            }
            let mut both: [Vec<u32>; 2] = Default::default();
            if ka_common::lb::sched_uses_dests(v.sched) {
                // A least-connection service names its backends in its candidate lists.
                let dests: Array<_, DestList> = Array::try_from(map_of(ebpf, DESTS_MAP)?).map_err(map_err(DESTS_MAP))?;
                for (bank, ids) in both.iter_mut().enumerate() {
                    let l = dests.get(&dests_index(v.id, bank as u32), 0).map_err(map_err(DESTS_MAP))?;
                    *ids = l.ids[..(l.n as usize).min(l.ids.len())].to_vec();
                }
                banks.insert(v.id, both);
                continue;
            }
            for (bank, slots) in both.iter_mut().enumerate() {
                let len = v.len[bank].min(v.cap).min(TABLE_SIZE);
                let start = v.base[bank];
                *slots = crate::pins::read_u32_array(tables.fd().as_fd(), start, len).map_err(|e| LbError::Map {
                    map: TABLES_MAP,
                    source: Box::new(aya::maps::MapError::SyscallError(aya::sys::SyscallError { call: "bpf_map_lookup_batch", io_error: e })),
                })?;
            }
            banks.insert(v.id, both);
        }
        Ok(AdoptedTables { services, backends, banks })
    }

    /// Whether the maps held nothing of the load balancer.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.backends.is_empty()
    }

    /// The backend ids of the active table of each valid service.
    fn active_ids(&self) -> impl Iterator<Item = (ServiceKey, u32)> + '_ {
        self.services.iter().flat_map(move |(k, v)| {
            let bank = (v.bank & 1) as usize;
            self.banks.get(&v.id).map(|b| b[bank].as_slice()).unwrap_or_default().iter().map(move |id| (*k, *id))
        })
    }

    /// How the earlier run left real server `addr`:`port` (`method`) of service `key`: in its
    /// table, out of it (down or not), or `None` when the maps do not have it (a new server or
    /// service). Out-of-table backends name no service in the maps: the first one with the
    /// same address, port and method answers.
    pub fn server_state(&self, key: &ServiceKey, addr: IpAddr, port: u16, method: Method) -> Option<AdoptedServer> {
        let a = addr16(addr).0;
        let same = |b: &Backend| b.addr == a && u16::from_be_bytes(b.port) == port && method_of(b.method) == Some(method);
        let mut in_table = HashSet::new();
        for (k, id) in self.active_ids() {
            if let Some(b) = self.backends.get(&id) {
                if k == *key && same(b) {
                    return Some(AdoptedServer::InTable);
                }
                in_table.insert(id);
            }
        }
        self.backends
            .iter()
            .find(|(id, b)| !in_table.contains(id) && same(b))
            .map(|(_, b)| AdoptedServer::Out { down: b.flags & BACKEND_F_DOWN != 0 })
    }

    /// The mastership slot each VIP's services were served under (services not tied to a
    /// VRRP instance are left out; a VIP whose services disagree keeps the first).
    pub fn vip_slots(&self) -> HashMap<IpAddr, u32> {
        let mut out = HashMap::new();
        for (k, v) in &self.services {
            if v.master_slot == NO_MASTER_SLOT {
                continue;
            }
            let addr = match k.family {
                FAMILY_V4 => IpAddr::from([k.addr[0], k.addr[1], k.addr[2], k.addr[3]]),
                _ => IpAddr::from(k.addr),
            };
            out.entry(addr).or_insert(v.master_slot);
        }
        out
    }
}

/// The map writer's starting state on an adopted start (see [`reconcile`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// The service ids kept, by the key the writer knows each service by (its first member's
    /// for a desired service; an adopted key for a service the new state no longer has: the
    /// next apply frees its id).
    pub services: HashMap<ServiceKey, ServiceValue>,
    /// What every key of the service maps holds (each member of each service; the next apply
    /// rewrites the ones that differ and removes the ones no service has any more).
    pub keys: HashMap<ServiceKey, ServiceValue>,
    /// What each service id's banks hold.
    pub banks: HashMap<u32, [Vec<u32>; 2]>,
    /// Backend ids by identity: the desired backends that keep their id, and the stale ones
    /// of known services (the next apply zeroes them).
    pub backend_ids: HashMap<BackendIdent, u32>,
    /// The backend values the maps hold, by id.
    pub backends: HashMap<u32, Backend>,
    /// Backend ids in use that no identity claims: zeroed by the next apply.
    pub retired_backends: Vec<u32>,
    /// Keys the writer cannot keep (an invalid service id): removed by the next apply.
    pub retired_services: Vec<ServiceKey>,
    /// Free service ids below `next_service`.
    pub free_services: Vec<u32>,
    /// The lowest service id never used.
    pub next_service: u32,
    /// Free backend ids below `next_backend`, reused first to last.
    pub free_backends: VecDeque<u32>,
    /// The lowest backend id never used.
    pub next_backend: u32,
}

/// Which service id each desired service keeps (pure): an adopted id goes to the desired
/// service that has one of its keys among its members (its keys in map order, the first that
/// matches a service no lower id took). Ids no desired service takes stay under one of their
/// keys that no desired service is known by, for the next apply to free; returns, by id, the
/// key each kept id is known by.
fn assign_ids(by_id: &BTreeMap<u32, Vec<(ServiceKey, ServiceValue)>>, desired: &DesiredState) -> BTreeMap<u32, (ServiceKey, ServiceValue)> {
    let mut member_of: HashMap<ServiceKey, ServiceKey> = HashMap::new();
    for s in &desired.services {
        let key = super::writer::service_key(s);
        for m in s.members() {
            member_of.entry(super::writer::member_key(&m, s.proto)).or_insert(key);
        }
    }
    let firsts: HashSet<ServiceKey> = member_of.values().copied().collect();
    let mut out = BTreeMap::new();
    let mut taken: HashSet<ServiceKey> = HashSet::new();
    for (id, keys) in by_id {
        let owner = keys.iter().find_map(|(k, v)| member_of.get(k).filter(|s| !taken.contains(*s)).map(|s| (*s, *v)));
        if let Some((s, v)) = owner {
            taken.insert(s);
            out.insert(*id, (s, v));
        }
    }
    for (id, keys) in by_id {
        if out.contains_key(id) {
            continue;
        }
        if let Some((k, v)) = keys.iter().find(|(k, _)| !firsts.contains(k) && !taken.contains(k)) {
            taken.insert(*k);
            out.insert(*id, (*k, *v));
        }
    }
    out
}

/// Matches what the maps hold with the desired state (pure). Every service keeps its id and
/// its banks: the keys of one id (a `virtual_server_group`'s addresses and ports) go to the
/// desired service with any of them among its members, whatever its first key now is; every
/// key read back is in [`Reconciled::keys`], so the next apply writes only the keys that
/// differ and removes the ones no longer wanted. A backend in a service's active table keeps
/// its id under that service; a backend out of the tables (down or drained: the maps do not
/// say whose it is) goes to the first desired backend with the same address, port and method
/// that has no id yet (same value, so a connection entry naming it is forwarded as before),
/// else it is retired. Desired backends and services left without an id get new ones from
/// the free ids when applied.
pub fn reconcile(adopted: &AdoptedTables, desired: &DesiredState) -> Reconciled {
    let mut r = Reconciled::default();
    let mut by_id: BTreeMap<u32, Vec<(ServiceKey, ServiceValue)>> = BTreeMap::new();
    for (k, v) in &adopted.services {
        if v.id >= MAX_SERVICES || r.keys.contains_key(k) {
            warn!(id = v.id, "adopted service with an invalid id or a duplicate key: it is removed");
            r.retired_services.push(*k);
            continue;
        }
        r.keys.insert(*k, *v);
        by_id.entry(v.id).or_default().push((*k, *v));
        // The writer's shadow of the scheduling tables; a least-connection service's lists
        // are not one (its first apply writes them to the inactive bank and flips).
        if let Some(b) = adopted.banks.get(&v.id).filter(|_| !ka_common::lb::sched_uses_dests(v.sched)) {
            r.banks.insert(v.id, b.clone());
        }
    }
    let kept = assign_ids(&by_id, desired);
    for (key, value) in kept.values() {
        r.services.insert(*key, *value);
    }
    r.next_service = by_id.keys().next_back().map_or(0, |m| m + 1);
    r.free_services = (0..r.next_service).rev().filter(|i| !kept.contains_key(i)).collect();
    r.backends = adopted.backends.iter().filter(|(id, _)| **id < MAX_BACKENDS).map(|(id, b)| (*id, *b)).collect();
    r.next_backend = r.backends.keys().max().map_or(0, |m| m + 1);
    r.free_backends = (0..r.next_backend).filter(|i| !r.backends.contains_key(i)).collect();
    // Backends in an active table belong to that service (under the key it is known by).
    let mut claimed: HashSet<u32> = HashSet::new();
    let mut by_service: Vec<(ServiceKey, u32)> = kept
        .iter()
        .flat_map(|(id, (k, v))| {
            let bank = (v.bank & 1) as usize;
            adopted.banks.get(id).map(|b| b[bank].as_slice()).unwrap_or_default().iter().map(move |b| (*k, *b))
        })
        .collect();
    by_service.sort_unstable_by_key(|(k, id)| (*id, k.family, k.addr, k.port, k.proto));
    by_service.dedup();
    for (k, id) in by_service {
        let Some(ident) = r.backends.get(&id).and_then(|b| ident_of(k, b)) else { continue };
        if claimed.contains(&id) || r.backend_ids.contains_key(&ident) {
            continue;
        }
        r.backend_ids.insert(ident, id);
        claimed.insert(id);
    }
    // The others go to the first desired backend of the same identity still without an id.
    let wanted: Vec<BackendIdent> = desired
        .services
        .iter()
        .flat_map(|s| {
            let key = super::writer::service_key(s);
            s.backends.iter().map(move |b| (key, addr16(b.addr).0, b.port, b.method))
        })
        .collect();
    let mut loose: Vec<u32> = r.backends.keys().filter(|id| !claimed.contains(id)).copied().collect();
    loose.sort_unstable();
    for id in loose {
        let b = r.backends[&id];
        let taker = wanted.iter().find(|w| {
            !r.backend_ids.contains_key(*w) && w.1 == b.addr && w.2 == u16::from_be_bytes(b.port) && Some(w.3) == method_of(b.method)
        });
        match taker {
            Some(w) => {
                r.backend_ids.insert(*w, id);
            }
            None => r.retired_backends.push(id),
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::{
        writer::{member_key, service_key},
        BackendSpec, L4Proto, Member, Scheduler, ServiceSpec,
    };

    fn svc(port: u16, backends: &[(&str, bool)]) -> ServiceSpec {
        ServiceSpec {
            vip: "198.18.0.1".parse().expect("address"),
            port,
            proto: L4Proto::Tcp,
            scheduler: Scheduler::Maglev,
            persistence: None,
            master_slot: Some(0),
            backends: backends
                .iter()
                .map(|(a, up)| BackendSpec { addr: a.parse().expect("address"), port, weight: 1, method: Method::Dr, healthy: *up, uthreshold: 0, lthreshold: 0 })
                .collect(),
            options: Default::default(),
        }
    }

    fn backend(addr: &str, port: u16, down: bool) -> Backend {
        let (a, family) = addr16(addr.parse().expect("address"));
        Backend { addr: a, port: port.to_be_bytes(), family, method: METHOD_DR, flags: if down { BACKEND_F_DOWN } else { 0 }, uthreshold: 0, lthreshold: 0 }
    }

    /// The maps of a run with service 9090 (backend ids 0, 1, 2: rs3, rs2, rs1, rs1 down) and
    /// service 8080 (ids 3, 4, 5: rs1, rs2, rs3); 8080's active table names 3, 4 and 5,
    /// 9090's names 0 and 1.
    fn earlier() -> (AdoptedTables, ServiceSpec, ServiceSpec) {
        let old9090 = svc(9090, &[("198.18.1.3", true), ("198.18.1.2", true), ("198.18.1.1", false)]);
        let old8080 = svc(8080, &[("198.18.1.1", true), ("198.18.1.2", true), ("198.18.1.3", true)]);
        let v = |id: u32, len: u32| ServiceValue { id, bank: 0, len: [len, 0], master_slot: 0, ..Default::default() };
        let adopted = AdoptedTables {
            services: vec![(service_key(&old9090), v(0, 4)), (service_key(&old8080), v(1, 6))],
            backends: BTreeMap::from([
                (0, backend("198.18.1.3", 9090, false)),
                (1, backend("198.18.1.2", 9090, false)),
                (2, backend("198.18.1.1", 9090, true)),
                (3, backend("198.18.1.1", 8080, false)),
                (4, backend("198.18.1.2", 8080, false)),
                (5, backend("198.18.1.3", 8080, false)),
            ]),
            banks: HashMap::from([(0, [vec![0, 1, 0, 1], vec![]]), (1, [vec![3, 4, 5, 3, 4, 5], vec![]])]),
        };
        (adopted, old9090, old8080)
    }

    /// The case of the issue: one service removed, one real server added to the other. The
    /// kept service keeps its id and its backends' ids (the connection entries' real servers);
    /// the removed service stays in the shadow for the next apply to remove, and its backends
    /// are stale identities the next apply zeroes; the new server gets no adopted id.
    #[test]
    fn kept_service_keeps_ids_removed_one_goes() {
        let (adopted, old9090, _) = earlier();
        let mut new8080 = svc(8080, &[("198.18.1.1", true), ("198.18.1.2", true), ("198.18.1.3", true), ("198.18.1.4", true)]);
        new8080.backends[3].healthy = false;
        let desired = DesiredState { services: vec![new8080.clone()], ..Default::default() };
        let r = reconcile(&adopted, &desired);
        let k = service_key(&new8080);
        assert_eq!(r.services[&k].id, 1, "the kept service keeps its id");
        let id = |svc: &ServiceSpec, a: &str| r.backend_ids.get(&(service_key(svc), addr16(a.parse().expect("address")).0, svc.port, Method::Dr)).copied();
        assert_eq!([id(&new8080, "198.18.1.1"), id(&new8080, "198.18.1.2"), id(&new8080, "198.18.1.3")], [Some(3), Some(4), Some(5)]);
        assert_eq!(id(&new8080, "198.18.1.4"), None, "a new server gets a fresh id");
        assert!(r.services.contains_key(&service_key(&old9090)), "the removed service is left for the apply to remove");
        assert_eq!([id(&old9090, "198.18.1.3"), id(&old9090, "198.18.1.2")], [Some(0), Some(1)], "stale identities, zeroed by the apply");
        assert_eq!(r.retired_backends, vec![2], "the down server of the removed service has no owner left");
        assert_eq!((r.next_service, r.free_services.clone()), (2, vec![]));
        assert_eq!((r.next_backend, r.free_backends.len()), (6, 0));
        assert_eq!(r.banks[&1][0], vec![3, 4, 5, 3, 4, 5], "the shadow is what the map holds");
    }

    /// A server out of the tables (down) keeps its id when the new state still has it, so the
    /// entries naming it keep seeing its down flag.
    #[test]
    fn down_server_keeps_its_id() {
        let (adopted, old9090, old8080) = earlier();
        let desired = DesiredState { services: vec![old9090.clone(), old8080.clone()], ..Default::default() };
        let r = reconcile(&adopted, &desired);
        let key = (service_key(&old9090), addr16("198.18.1.1".parse().expect("address")).0, 9090, Method::Dr);
        assert_eq!(r.backend_ids.get(&key), Some(&2));
        assert!(r.retired_backends.is_empty());
        assert_eq!(r.backend_ids.len(), 6, "every backend keeps its id");
    }

    /// Free ids are the holes below the highest id in use; invalid service ids are retired; a
    /// second key of an id that no desired service has is left to the apply to remove.
    #[test]
    fn free_ids_and_bad_entries() {
        let a = svc(80, &[("198.18.1.1", true)]);
        let b = svc(81, &[]);
        let c = svc(82, &[]);
        let v = |id: u32| ServiceValue { id, ..Default::default() };
        let adopted = AdoptedTables {
            services: vec![(service_key(&a), v(3)), (service_key(&b), v(3)), (service_key(&c), v(MAX_SERVICES))],
            backends: BTreeMap::from([(2, backend("198.18.1.1", 80, true)), (5, backend("198.18.1.9", 80, false))]),
            banks: HashMap::new(),
        };
        let r = reconcile(&adopted, &DesiredState { services: vec![a.clone()], ..Default::default() });
        assert_eq!(r.retired_services, vec![service_key(&c)]);
        assert_eq!(r.services.keys().collect::<Vec<_>>(), vec![&service_key(&a)], "id 3 is a's");
        assert!(r.keys.contains_key(&service_key(&b)), "b's key is in the shadow: the apply removes it");
        assert_eq!((r.next_service, r.free_services.clone()), (4, vec![2, 1, 0]), "lowest id popped first");
        assert_eq!((r.next_backend, r.free_backends.iter().copied().collect::<Vec<_>>()), (6, vec![0, 1, 3, 4]));
        assert_eq!(r.retired_backends, vec![5]);
        assert_eq!(r.backend_ids.get(&(service_key(&a), addr16("198.18.1.1".parse().expect("address")).0, 80, Method::Dr)), Some(&2));
    }

    /// Empty maps reconcile to an empty writer state.
    #[test]
    fn nothing_adopted_is_a_fresh_writer() {
        let r = reconcile(&AdoptedTables::default(), &DesiredState { services: vec![svc(80, &[("198.18.1.1", true)])], ..Default::default() });
        assert_eq!(r, Reconciled::default());
    }

    /// The health seed: in the table, out of it and down, or unknown.
    #[test]
    fn server_states() {
        let (adopted, old9090, old8080) = earlier();
        let ip = |a: &str| a.parse::<IpAddr>().expect("address");
        let k8080 = service_key(&old8080);
        let k9090 = service_key(&old9090);
        assert_eq!(adopted.server_state(&k8080, ip("198.18.1.1"), 8080, Method::Dr), Some(AdoptedServer::InTable));
        assert_eq!(adopted.server_state(&k9090, ip("198.18.1.1"), 9090, Method::Dr), Some(AdoptedServer::Out { down: true }));
        assert_eq!(adopted.server_state(&k8080, ip("198.18.1.4"), 8080, Method::Dr), None);
        assert_eq!(adopted.server_state(&k8080, ip("198.18.1.1"), 8080, Method::Nat), None, "another method is another backend");
        assert_eq!(adopted.vip_slots(), HashMap::from([(ip("198.18.0.1"), 0)]));
    }

    /// A service id with several keys (a `virtual_server_group`, or a port-0 service) keeps
    /// its id when any of its keys is still a member of a desired service, whatever that
    /// service's first key is; its backends keep their ids under that service; every key read
    /// back is in the shadow, so the apply removes the ones no service has any more. On the
    /// old reconcile a second key of an id was retired as a duplicate and the service was only
    /// found by its first key.
    #[test]
    fn multi_key_services_keep_their_ids() {
        struct Case {
            name: &'static str,
            /// Keys in the maps: (VIP, port, service id). Id `n` has backends `2n` (rs1) and
            /// `2n + 1` (rs2) in its active table.
            adopted: &'static [(&'static str, u16, u32)],
            /// Desired services, each by its members (the first is its `vip`, `port`).
            desired: &'static [&'static [(&'static str, u16)]],
            /// The id each desired service keeps (`None`: a new one).
            ids: &'static [Option<u32>],
            /// Keys in the maps that no desired service has: the apply removes them.
            removed: &'static [(&'static str, u16)],
            /// Free service ids, popped last first.
            free: &'static [u32],
        }
        let cases = [
            Case {
                name: "group of 3: first key removed, one added",
                adopted: &[("198.18.0.1", 80, 5), ("198.18.0.2", 80, 5), ("198.18.0.3", 80, 5)],
                desired: &[&[("198.18.0.2", 80), ("198.18.0.3", 80), ("198.18.0.4", 80)]],
                ids: &[Some(5)],
                removed: &[("198.18.0.1", 80)],
                free: &[4, 3, 2, 1, 0],
            },
            Case {
                name: "group of 3: last key removed, one added first",
                adopted: &[("198.18.0.1", 80, 0), ("198.18.0.2", 80, 0), ("198.18.0.3", 80, 0)],
                desired: &[&[("198.18.0.9", 80), ("198.18.0.1", 80), ("198.18.0.2", 80)]],
                ids: &[Some(0)],
                removed: &[("198.18.0.3", 80)],
                free: &[],
            },
            Case {
                name: "group of several ports",
                adopted: &[("198.18.0.1", 80, 1), ("198.18.0.1", 443, 1), ("198.18.0.7", 80, 0)],
                desired: &[&[("198.18.0.1", 443), ("198.18.0.1", 8443)], &[("198.18.0.7", 80)]],
                ids: &[Some(1), Some(0)],
                removed: &[("198.18.0.1", 80)],
                free: &[],
            },
            Case {
                name: "port-0 service",
                adopted: &[("198.18.0.1", 0, 2), ("198.18.0.1", 80, 0)],
                desired: &[&[("198.18.0.1", 0)]],
                ids: &[Some(2)],
                removed: &[("198.18.0.1", 80)],
                free: &[1],
            },
            Case {
                name: "two services merged into a group: the lower id wins, the other is freed",
                adopted: &[("198.18.0.1", 80, 1), ("198.18.0.2", 80, 2)],
                desired: &[&[("198.18.0.2", 80), ("198.18.0.1", 80)]],
                ids: &[Some(1)],
                removed: &[],
                free: &[2, 0],
            },
            Case {
                name: "a group split in two: the first key's service keeps the id",
                adopted: &[("198.18.0.1", 80, 0), ("198.18.0.2", 80, 0)],
                desired: &[&[("198.18.0.2", 80)], &[("198.18.0.1", 80)]],
                ids: &[None, Some(0)],
                removed: &[],
                free: &[],
            },
        ];
        let ip = |a: &str| a.parse::<IpAddr>().expect("address");
        let key = |(a, port): (&str, u16)| {
            let (addr, family) = addr16(ip(a));
            ServiceKey { addr, port: port.to_be_bytes(), proto: L4Proto::Tcp.number(), family }
        };
        for c in &cases {
            let mut adopted = AdoptedTables::default();
            for &(a, port, id) in c.adopted {
                let value = ServiceValue { id, bank: 1, len: [0, 2], master_slot: 0, ..Default::default() };
                adopted.services.push((key((a, port)), value));
                adopted.banks.insert(id, [vec![], vec![2 * id, 2 * id + 1]]);
                adopted.backends.insert(2 * id, backend("198.18.1.1", 80, false));
                adopted.backends.insert(2 * id + 1, backend("198.18.1.2", 80, false));
            }
            adopted.services.sort_by_key(|(k, v)| (v.id, k.family, k.addr, k.port, k.proto));
            let desired = DesiredState {
                services: c
                    .desired
                    .iter()
                    .map(|members| {
                        let mut s = svc(members[0].1, &[("198.18.1.1", true), ("198.18.1.2", true)]);
                        s.vip = ip(members[0].0);
                        s.backends.iter_mut().for_each(|b| b.port = 80);
                        s.options.also = members[1..].iter().map(|&(a, port)| Member { vip: ip(a), port, master_slot: None }).collect();
                        s
                    })
                    .collect(),
                ..Default::default()
            };
            let r = reconcile(&adopted, &desired);
            for (s, want) in desired.services.iter().zip(c.ids) {
                let k = service_key(s);
                assert_eq!(r.services.get(&k).map(|v| v.id), *want, "{}: id of {}:{}", c.name, s.vip, s.port);
                let bid = |a: &str| r.backend_ids.get(&(k, addr16(ip(a)).0, 80, Method::Dr)).copied();
                let want_backends = want.map_or([None, None], |id| [Some(2 * id), Some(2 * id + 1)]);
                assert_eq!([bid("198.18.1.1"), bid("198.18.1.2")], want_backends, "{}: backend ids of {}:{}", c.name, s.vip, s.port);
            }
            let all: HashSet<ServiceKey> = adopted.services.iter().map(|(k, _)| *k).collect();
            assert_eq!(r.keys.keys().copied().collect::<HashSet<_>>(), all, "{}: every key read back is in the shadow", c.name);
            let live: HashSet<ServiceKey> = desired.services.iter().flat_map(|s| s.members().map(|m| member_key(&m, s.proto))).collect();
            let mut removed: Vec<ServiceKey> = all.difference(&live).copied().collect();
            removed.sort_by_key(|k| (k.addr, k.port));
            assert_eq!(removed, c.removed.iter().map(|m| key(*m)).collect::<Vec<_>>(), "{}: keys the apply removes", c.name);
            assert_eq!(r.free_services, c.free, "{}: free ids", c.name);
            assert!(r.retired_services.is_empty(), "{}: no key of a shared id is retired", c.name);
        }
    }
}
