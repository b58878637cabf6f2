//! Backend identity across directors (pure): on the wire a connection names its real server by
//! address and port within its service, never by a backend id (ids are allocated by each
//! director's map writer and differ between directors). The [`SyncIndex`] maps this director's
//! backend ids to those names for the sender, and names back to ids for the receiver.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ka_common::{
    lb::{and_mask, prefix_mask, FlowKey, ServiceKey, FAMILY_V4},
    sync::{SyncEvent, SyncInstall, SYNC_INSTALL_CONN, SYNC_INSTALL_TEMPLATE},
};

use super::wire::{flags, state, Conn, OPT_F_PARAM, OPT_PE_DATA, OPT_PE_NAME, OPT_SEQ_DATA};
use crate::lb::{
    addr16,
    writer::{service_key, MapWriter},
    DesiredState, Method,
};

/// Connection lifetimes the sender announces, in seconds (IPVS's defaults: TCP established
/// 900 s, UDP 300 s). ka's connection table keeps no per-entry timeout; an IPVS backup uses
/// these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP.
    pub tcp: u32,
    /// UDP.
    pub udp: u32,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts { tcp: 900, udp: 300 }
    }
}

/// A real server as the wire names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remote {
    /// Its service (the key this director looks packets up with).
    pub service: ServiceKey,
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// Forwarding method.
    pub method: Method,
}

/// Client affinity of a service, as templates need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Affinity {
    mask: [u8; 16],
    timeout_s: u32,
}

/// Why the sender could not send a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendDrop {
    /// The backend id is not in the tables any more (removed since the flow started).
    UnknownBackend,
}

impl SendDrop {
    /// Counter name.
    pub const fn reason(self) -> &'static str {
        match self {
            SendDrop::UnknownBackend => "unknown_backend",
        }
    }
}

/// Why the receiver dropped one entry (the rest of its datagram is installed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryDrop {
    /// A parameter the kernel would refuse the entry for (unknown and mandatory).
    UnknownParam,
    /// Persistence-engine data (IPVS's SIP engine): ka has no persistence engines.
    PersistenceEngine,
    /// Not TCP or UDP.
    Protocol,
    /// Forwarding by local node or bypass (no such real servers in ka).
    Method,
    /// No local service for the virtual address, port and protocol.
    NoService,
    /// The service has no such real server here.
    NoRealServer,
    /// A persistence template for a service without persistence here.
    NotPersistent,
}

impl EntryDrop {
    /// Counter name.
    pub const fn reason(self) -> &'static str {
        match self {
            EntryDrop::UnknownParam => "unknown_param",
            EntryDrop::PersistenceEngine => "persistence_engine",
            EntryDrop::Protocol => "protocol",
            EntryDrop::Method => "method",
            EntryDrop::NoService => "no_service",
            EntryDrop::NoRealServer => "no_real_server",
            EntryDrop::NotPersistent => "not_persistent",
        }
    }

    /// Every reason.
    pub const ALL: &'static [EntryDrop] = &[
        EntryDrop::UnknownParam,
        EntryDrop::PersistenceEngine,
        EntryDrop::Protocol,
        EntryDrop::Method,
        EntryDrop::NoService,
        EntryDrop::NoRealServer,
        EntryDrop::NotPersistent,
    ];
}

/// This director's backends by id and by name, with its services' client affinity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncIndex {
    by_id: HashMap<u32, Remote>,
    by_name: HashMap<(ServiceKey, IpAddr, u16), u32>,
    services: HashSet<ServiceKey>,
    affinity: HashMap<ServiceKey, Affinity>,
}

fn ip_of(a: &[u8; 16], family: u8) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*a))
    }
}

fn method_flags(m: Method) -> u32 {
    match m {
        Method::Nat => flags::MASQ,
        Method::Tun => flags::TUNNEL,
        Method::Dr => flags::DROUTE,
    }
}

impl SyncIndex {
    /// The index of what `writer` applied for `desired`.
    pub fn build(desired: &DesiredState, writer: &MapWriter) -> SyncIndex {
        let mut ix = SyncIndex::default();
        for s in &desired.services {
            let key = service_key(s);
            ix.services.insert(key);
            if let Some(p) = s.persistence {
                ix.set_persistence(key, p.prefix_len, u32::try_from(p.timeout.as_secs()).unwrap_or(u32::MAX).max(1));
            }
            for b in &s.backends {
                if let Some(id) = writer.backend_id(s, b.addr, b.port, b.method) {
                    ix.insert(id, Remote { service: key, addr: b.addr, port: b.port, method: b.method });
                }
            }
        }
        ix
    }

    /// Adds backend `id` (tests and [`SyncIndex::build`]).
    pub fn insert(&mut self, id: u32, r: Remote) {
        self.by_id.insert(id, r);
        self.by_name.insert((r.service, r.addr, r.port), id);
        self.services.insert(r.service);
    }

    /// Gives `service` client affinity (tests and [`SyncIndex::build`]).
    pub fn set_persistence(&mut self, service: ServiceKey, prefix_len: u8, timeout_s: u32) {
        let len = if service.family == FAMILY_V4 { 4 } else { 16 };
        self.affinity.insert(service, Affinity { mask: prefix_mask(prefix_len, len), timeout_s });
        self.services.insert(service);
    }

    /// Backends known.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no backend is known.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The entries announcing a new flow of the datapath: the connection, then (persistent
    /// service) its client's template, as IPVS syncs a connection and its controlling template.
    ///
    /// # Errors
    /// The backend id is unknown.
    pub fn outgoing(&self, ev: &SyncEvent, t: Timeouts) -> Result<(Conn, Option<Conn>), SendDrop> {
        let r = self.by_id.get(&ev.backend).ok_or(SendDrop::UnknownBackend)?;
        let k = &ev.key;
        let (caddr, vaddr) = (ip_of(&k.src, k.family), ip_of(&k.dst, k.family));
        let tcp = k.proto == 6;
        let conn = Conn {
            protocol: k.proto,
            flags: method_flags(r.method),
            state: if tcp { state::TCP_ESTABLISHED } else { state::UDP_NORMAL },
            cport: u16::from_be_bytes(k.sport),
            vport: u16::from_be_bytes(k.dport),
            dport: r.port,
            fwmark: 0,
            timeout: if tcp { t.tcp } else { t.udp },
            caddr,
            vaddr,
            daddr: r.addr,
            params: Vec::new(),
        };
        let template = self.affinity.get(&r.service).map(|a| Conn {
            flags: flags::TEMPLATE | method_flags(r.method),
            state: state::TEMPLATE_NONE,
            cport: 0,
            vport: u16::from_be_bytes(r.service.port),
            timeout: a.timeout_s,
            caddr: ip_of(&and_mask(&k.src, &a.mask), k.family),
            ..conn.clone()
        });
        Ok((conn, template))
    }

    /// The install record of a received entry.
    ///
    /// # Errors
    /// Why the entry cannot be installed here.
    pub fn incoming(&self, c: &Conn) -> Result<SyncInstall, EntryDrop> {
        for p in &c.params {
            match p.ptype & !OPT_F_PARAM {
                OPT_PE_DATA | OPT_PE_NAME => return Err(EntryDrop::PersistenceEngine),
                OPT_SEQ_DATA => {}
                _ if p.ptype & OPT_F_PARAM == 0 => return Err(EntryDrop::UnknownParam),
                _ => {}
            }
        }
        if c.protocol != 6 && c.protocol != 17 {
            return Err(EntryDrop::Protocol);
        }
        if !matches!(c.flags & flags::FWD_MASK, flags::MASQ | flags::TUNNEL | flags::DROUTE) {
            return Err(EntryDrop::Method);
        }
        let (vaddr, family) = addr16(c.vaddr);
        let service = [c.vport, 0]
            .into_iter()
            .map(|port| ServiceKey { addr: vaddr, port: port.to_be_bytes(), proto: c.protocol, family })
            .find(|k| self.services.contains(k))
            .ok_or(EntryDrop::NoService)?;
        let backend = *self.by_name.get(&(service, c.daddr, c.dport)).ok_or(EntryDrop::NoRealServer)?;
        let (src, _) = addr16(c.caddr);
        if c.flags & flags::TEMPLATE != 0 {
            let a = self.affinity.get(&service).ok_or(EntryDrop::NotPersistent)?;
            let key = FlowKey { src: and_mask(&src, &a.mask), dst: vaddr, sport: [0; 2], dport: c.vport.to_be_bytes(), proto: c.protocol, family, _pad: [0; 2] };
            return Ok(SyncInstall { key, backend, kind: SYNC_INSTALL_TEMPLATE });
        }
        let key = FlowKey { src, dst: vaddr, sport: c.cport.to_be_bytes(), dport: c.vport.to_be_bytes(), proto: c.protocol, family, _pad: [0; 2] };
        Ok(SyncInstall { key, backend, kind: SYNC_INSTALL_CONN })
    }
}

#[cfg(test)]
mod tests;
