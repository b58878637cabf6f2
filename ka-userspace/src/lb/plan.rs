//! What the datapath serves of a configuration, decided once for `ka check`, the daemon's log
//! and `ka status` alike (pure): each `virtual_server` becomes one service answering on every
//! key of its group, or is refused alone with the reason and what to do instead; a group entry
//! ka cannot honour (a firewall mark, an address another service holds) is refused alone and
//! the rest of the group is served.
//!
//! keepalived (IPVS) equivalents:
//! - `virtual_server ADDR PORT`: one IPVS service, one key;
//! - `virtual_server ADDR 0` (persistent): IPVS's port-zero service, one key on port 0 that the
//!   datapath consults after the exact (VIP, port) key, with persistence across ports;
//! - `virtual_server group NAME`: every address of every range entry and its port, as one
//!   service (one table, one scheduler state). keepalived makes that one IPVS fwmark service
//!   under `nftables_ipvs` (persistence across the group), else one IPVS service per address
//!   (persistence per address and port): ka's persistence follows the same switch;
//! - `virtual_server fwmark N` and `fwmark N` group entries: refused, as XDP runs before
//!   netfilter and never sees a mark (see docs/config.md, "fwmark services").

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use serde::{Deserialize, Serialize};

use super::{L4Proto, Method, Persistence, Scheduler, ServiceOptions};
use crate::config::{
    diag::Span,
    model::{LbAlgo, VirtualServer, VsKey, VsgEntry},
    Config,
};
use ka_common::lb::{MAX_SERVICES, MAX_SERVICE_KEYS, TABLE_POOL_SLOTS};

/// What to write instead of a firewall mark.
pub const FWMARK_HINT: &str = "XDP runs before netfilter and never sees a firewall mark: list the addresses and ports \
the mark selects in a virtual_server_group (ADDR PORT, ADDR-RANGE PORT, ADDR 0 for every port) and use \
'virtual_server group NAME' (with nftables_ipvs in global_defs the group shares persistence as one fwmark \
service does; see docs/config.md, \"fwmark services\")";

/// A virtual server, or part of one, that ka does not serve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// keepalived's label of the virtual server (`[198.18.0.1]:tcp:80`, `FWM 7`, `[web]:0`).
    pub service: String,
    /// The part refused when the rest is served (`fwmark 7`, `198.18.0.5:80`); `None`: the
    /// whole virtual server.
    #[serde(default)]
    pub entry: Option<String>,
    /// Why, and what to do instead.
    pub reason: String,
    /// Where it was written.
    #[serde(skip)]
    pub span: Span,
}

impl Refusal {
    /// One line: what is not served, and why.
    pub fn message(&self) -> String {
        match &self.entry {
            Some(e) => format!("virtual server {}: {e} is not served by ka: {}", self.service, self.reason),
            None => format!("virtual server {} is not served by ka (the other virtual servers are): {}", self.service, self.reason),
        }
    }
}

/// A virtual server the datapath serves, before health and VRRP are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// Index in [`Config::virtual_servers`].
    pub vs_index: usize,
    /// keepalived's label.
    pub label: String,
    /// Every (VIP, port) key, the first one naming the service.
    pub keys: Vec<(IpAddr, u16)>,
    /// Protocol.
    pub proto: L4Proto,
    /// Scheduler (with `sh-port`/`mh-port` applied).
    pub scheduler: Scheduler,
    /// Client affinity.
    pub persistence: Option<Persistence>,
    /// Flags (`also` empty: the keys are in [`Planned::keys`]).
    pub options: ServiceOptions,
    /// The method of each real server, in configuration order.
    pub methods: Vec<Method>,
    /// The sorry server's method.
    pub sorry_method: Option<Method>,
}

/// The plan of a whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Served virtual servers, in configuration order.
    pub services: Vec<Planned>,
    /// Refused virtual servers and entries.
    pub refused: Vec<Refusal>,
}

/// keepalived's `FMT_VS` of a virtual server (`[ADDR]:tcp:PORT`, `FWM N`, `[GROUP]:0`).
pub fn vs_label(vs: &VirtualServer) -> String {
    match &vs.key {
        VsKey::Addr { addr, port } => format!("[{addr}]:{}:{port}", vs.protocol.as_str().to_lowercase()),
        VsKey::Fwmark(m) => format!("FWM {m}"),
        VsKey::Group(g) => format!("[{g}]:0"),
    }
}

/// The addresses `first..=last` of a group range, as keepalived walks them (IPv6: the last 16
/// bits vary); `None` past `limit` addresses.
pub fn range_addrs(first: IpAddr, last: IpAddr, limit: usize) -> Option<Vec<IpAddr>> {
    let (a, b) = match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b))),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
        _ => return None,
    };
    if b < a || b - a >= limit as u128 {
        return None;
    }
    Some(
        (a..=b)
            .map(|n| match first {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(0))),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
            })
            .collect(),
    )
}

fn method_of(kind: crate::config::model::LbKind, who: &str) -> Result<Method, String> {
    Method::from_lb_kind(kind).map_err(|_| {
        format!("{who} uses lvs_method {} with a GUE or GRE tunnel, which ka does not build (use TUN type ipip, DR or NAT)", kind.as_str())
    })
}

/// One virtual server on its own: its keys and settings, the entries refused, or why it is
/// refused.
fn plan_one(cfg: &Config, index: usize, vs: &VirtualServer) -> Result<(Planned, Vec<Refusal>), Refusal> {
    let label = vs_label(vs);
    let refuse = |reason: String| Refusal { service: label.clone(), entry: None, reason, span: vs.span };
    let mut partial = Vec::new();
    let keys: Vec<(IpAddr, u16)> = match &vs.key {
        VsKey::Addr { addr, port } => vec![(*addr, *port)],
        VsKey::Fwmark(_) => return Err(refuse(FWMARK_HINT.to_owned())),
        VsKey::Group(name) => {
            let g = cfg
                .virtual_server_groups
                .iter()
                .find(|g| g.name == *name)
                .ok_or_else(|| refuse(format!("virtual_server_group {name} is not defined")))?;
            let mut keys = Vec::new();
            for e in &g.entries {
                match e {
                    VsgEntry::Range { first, last, port, span } => match range_addrs(*first, *last, MAX_SERVICE_KEYS as usize) {
                        Some(addrs) => keys.extend(addrs.into_iter().map(|a| (a, *port))),
                        None => partial.push(Refusal {
                            service: label.clone(),
                            entry: Some(format!("{first}-{last} {port}")),
                            reason: format!("a range holds at most {MAX_SERVICE_KEYS} addresses"),
                            span: *span,
                        }),
                    },
                    VsgEntry::Fwmark { mark, span } => partial.push(Refusal {
                        service: label.clone(),
                        entry: Some(format!("fwmark {mark} of virtual_server_group {name}")),
                        reason: FWMARK_HINT.to_owned(),
                        span: *span,
                    }),
                }
            }
            if keys.is_empty() {
                return Err(refuse(format!("virtual_server_group {name} has no address entry ka can serve; {FWMARK_HINT}")));
            }
            keys
        }
    };
    if let Some(pe) = &vs.persistence_engine {
        return Err(refuse(format!(
            "persistence_engine {pe}: IPVS's persistence engines (the kernel's one, sip, keeps a SIP Call-ID on one real server) are not implemented by ka's XDP datapath; without it the service persists by client address (persistence_timeout)"
        )));
    }
    let proto = L4Proto::from_protocol(vs.protocol).map_err(|_| refuse("protocol SCTP is not forwarded by ka's XDP datapath (TCP and UDP are)".to_owned()))?;
    let mut scheduler = Scheduler::from_lb_algo(vs.lb_algo).map_err(|e| refuse(e.to_string()))?;
    if matches!(vs.lb_algo, LbAlgo::Sh | LbAlgo::Mh) {
        // IPVS's sh and mh hash the client address, with `*-port` its source port too; the
        // 5-tuple hash adds only the service's own fields to those.
        scheduler = if vs.hash_port { Scheduler::Maglev } else { Scheduler::SourceHash };
    }
    let mut methods = Vec::with_capacity(vs.real_servers.len());
    for rs in &vs.real_servers {
        methods.push(method_of(rs.lb_kind, &format!("real server [{}]:{}", rs.address, rs.port)).map_err(refuse)?);
    }
    let sorry_method = match &vs.sorry_server {
        Some(s) => Some(method_of(s.lb_kind, &format!("sorry server [{}]:{}", s.address, s.port)).map_err(refuse)?),
        None => None,
    };
    let v4 = keys[0].0.is_ipv4();
    if keys.iter().any(|(a, _)| a.is_ipv4() != v4) {
        return Err(refuse("its group mixes IPv4 and IPv6 addresses: ka forwards within one family (one virtual server per family)".to_owned()));
    }
    for rs in vs.real_servers.iter().chain(&vs.sorry_server) {
        if rs.address.is_ipv4() != v4 {
            return Err(refuse(format!(
                "real server {} is of another address family than the service: ka does not tunnel across families",
                rs.address
            )));
        }
    }
    if vs.persistence_timeout.is_none() && keys.iter().any(|(_, p)| *p == 0) {
        return Err(refuse("port 0 (every port) is served only with persistence_timeout".to_owned()));
    }
    let persistence = vs.persistence_timeout.map(|timeout| Persistence {
        timeout,
        prefix_len: match vs.persistence_granularity {
            Some(IpAddr::V4(m)) => u8::try_from(u32::from(m).count_ones()).unwrap_or(32),
            Some(IpAddr::V6(m)) => u8::try_from(u128::from(m).count_ones()).unwrap_or(128),
            None if v4 => 32,
            None => 128,
        },
    });
    let options = ServiceOptions {
        also: Vec::new(),
        one_packet: vs.ops && proto == L4Proto::Udp,
        fallback: vs.hash_fallback && matches!(vs.lb_algo, LbAlgo::Sh | LbAlgo::Mh),
        persist_service_wide: matches!(vs.key, VsKey::Group(_)) && cfg.global.nftables_ipvs.is_some(),
    };
    Ok((Planned { vs_index: index, label, keys, proto, scheduler, persistence, options, methods, sorry_method }, partial))
}

/// The plan of `cfg`: every virtual server served or refused alone. Across virtual servers, a
/// (VIP, port, protocol) already served by an earlier one is refused (IPVS refuses a second
/// service on it), and past [`MAX_SERVICES`] services, [`MAX_SERVICE_KEYS`] keys of a family
/// or [`TABLE_POOL_SLOTS`] scheduling-table slots the later virtual servers are refused.
pub fn plan(cfg: &Config) -> Plan {
    let mut out = Plan::default();
    let mut owner: HashMap<(IpAddr, u16, L4Proto), String> = HashMap::new();
    let (mut keys_v4, mut keys_v6) = (0usize, 0usize);
    let mut table_slots = 0u64;
    for (i, vs) in cfg.virtual_servers.iter().enumerate() {
        let (mut p, partial) = match plan_one(cfg, i, vs) {
            Ok(x) => x,
            Err(r) => {
                out.refused.push(r);
                continue;
            }
        };
        out.refused.extend(partial);
        let mut kept = Vec::with_capacity(p.keys.len());
        let mut taken = Vec::new();
        for (a, port) in std::mem::take(&mut p.keys) {
            match owner.get(&(a, port, p.proto)) {
                Some(other) => taken.push((a, port, other.clone())),
                None if kept.contains(&(a, port)) => {}
                None => kept.push((a, port)),
            }
        }
        let refuse = |reason: String| Refusal { service: p.label.clone(), entry: None, reason, span: vs.span };
        if kept.is_empty() {
            let others: Vec<&str> = taken.iter().map(|(_, _, o)| o.as_str()).collect();
            out.refused.push(refuse(format!("virtual server {} already serves it", others.first().copied().unwrap_or("?"))));
            continue;
        }
        for (a, port, other) in taken {
            out.refused.push(Refusal {
                service: p.label.clone(),
                entry: Some(format!("[{a}]:{port}")),
                reason: format!("virtual server {other} already serves it"),
                span: vs.span,
            });
        }
        if out.services.len() >= MAX_SERVICES as usize {
            out.refused.push(refuse(format!("the datapath holds at most {MAX_SERVICES} virtual servers")));
            continue;
        }
        // Its scheduling table's region (none for a least-connection scheduler): the pool
        // holds 16,384 of the smallest, 64 of the largest.
        let region = if p.scheduler.counts_connections() {
            0
        } else {
            let servers = p.methods.len() + usize::from(p.sorry_method.is_some());
            u64::from(super::pool::Pool::region(ka_common::lb::table_capacity(u32::try_from(servers).unwrap_or(u32::MAX))))
        };
        if table_slots + region > u64::from(TABLE_POOL_SLOTS) {
            out.refused.push(refuse(format!(
                "the datapath's scheduling tables are full ({TABLE_POOL_SLOTS} slots; this virtual server needs {region}, the ones before it {table_slots})"
            )));
            continue;
        }
        table_slots += region;
        let count = if kept[0].0.is_ipv4() { &mut keys_v4 } else { &mut keys_v6 };
        if *count + kept.len() > MAX_SERVICE_KEYS as usize {
            out.refused.push(refuse(format!("the datapath holds at most {MAX_SERVICE_KEYS} addresses and ports of each family")));
            continue;
        }
        *count += kept.len();
        for (a, port) in &kept {
            owner.insert((*a, *port, p.proto), p.label.clone());
        }
        p.keys = kept;
        out.services.push(p);
    }
    out
}

/// Where ka serves a virtual server differently from IPVS, at the virtual server: `lb_algo sh`
/// without `sh-fallback` while a real server can be at weight 0 (`weight 0`,
/// `inhibit_on_failure`): IPVS keeps such a server's share of the table and refuses the clients
/// hashed to it; ka's table leaves it out, and those clients go to the other servers.
pub fn approximations(cfg: &Config) -> Vec<(Span, String)> {
    cfg.virtual_servers
        .iter()
        .filter(|vs| vs.lb_algo == LbAlgo::Sh && !vs.hash_fallback)
        .filter(|vs| vs.real_servers.iter().any(|rs| rs.weight == 0 || rs.timing.inhibit_on_failure))
        .map(|vs| {
            (
                vs.span,
                format!(
                    "virtual server {}: lb_algo sh without sh-fallback: IPVS refuses new connections of clients hashed to a real server at weight 0; ka sends them to the other real servers (as sh-fallback does); add sh-fallback to say so",
                    vs_label(vs)
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
