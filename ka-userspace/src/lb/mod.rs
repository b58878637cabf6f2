//! The load balancer's userspace side: the desired state derived from the config model, the
//! health checkers and VRRP ([`DesiredState`]), the pure table computations ([`maglev`]), and
//! the map writer that applies a desired state to the XDP maps ([`writer::MapWriter`]).
//!
//! Scheduler mapping (IPVS name → datapath):
//! - `sh` and `mh` → Maglev over the client address (IPVS hashes the source address for both);
//!   with `sh-port`/`mh-port` (`flag-2`) → Maglev over the 5-tuple (IPVS adds the source port;
//!   the other fields are the service's); `dh` → Maglev over the destination address. All
//!   deterministic: two directors with the same config send a flow to the same real server,
//!   so a VRRP failover keeps connections. `sh-fallback`/`mh-fallback` (`flag-1`): a flow whose
//!   table slot names an unusable server probes further slots ([`ServiceOptions::fallback`]).
//! - `rr`, `wrr` → a per-CPU cursor over an interleaved weighted round-robin schedule, for new
//!   flows only (established flows follow the connection table).
//! - `lc`, `wlc`, `sed`, `nq`, `fo`, `ovf`, `lblc`, `lblcr`, `twos` → IPVS's algorithms in the
//!   kernel over the service's first [`ka_common::sched::MAX_DESTS`] available real servers,
//!   on per-backend active/inactive connection counts the datapath keeps from its connection
//!   table and TCP states ([`ka_common::sched`] says how, and how exact they are);
//!   [`conns`] sweeps expired entries and sets their lifetimes (`lvs_timeouts`).

pub mod adopt;
pub mod flush;
pub mod kclock;
pub mod local_macs;
pub mod conns;
pub mod maglev;
pub mod nexthop;
pub mod plan;
pub mod pool;
pub mod rehash;
pub mod resolver;
pub mod sync;
pub mod vrrp_fast;
pub mod writer;

use std::{net::IpAddr, time::Duration};

use crate::config::model::{LbAlgo, LbKind, Protocol, TunnelType};

/// The scheduler of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheduler {
    /// `mh`: Maglev over the 5-tuple.
    Maglev,
    /// `sh`: Maglev over the source address.
    SourceHash,
    /// `dh`: Maglev over the destination address.
    DestinationHash,
    /// `rr`/`wrr`: weighted round-robin over new flows.
    RoundRobin,
    /// `lc`: least connections (active × 256 + inactive).
    LeastConn,
    /// `wlc`: least connections per weight (ipvsadm's and keepalived's default).
    WeightedLeastConn,
    /// `sed`: shortest expected delay, (active + 1) / weight.
    ShortestExpectedDelay,
    /// `nq`: an idle server, else `sed`.
    NeverQueue,
    /// `fo`: the highest weight.
    FailOver,
    /// `ovf`: the highest weight while its active connections stay within its weight.
    Overflow,
    /// `lblc`: the server cached for the destination address, else `wlc`.
    LocalityLeastConn,
    /// `lblcr`: the least loaded of the destination's servers, replicated under load.
    LocalityLeastConnReplicated,
    /// `twos`: the less loaded of two servers drawn by weight.
    TwoChoices,
}

impl Scheduler {
    /// The datapath scheduler for a keepalived `lb_algo`.
    ///
    /// # Errors
    /// None today: every IPVS scheduler has its datapath one (the `Result` stays for a
    /// scheduler a future keepalived may add).
    pub fn from_lb_algo(algo: LbAlgo) -> Result<Scheduler, LbError> {
        Ok(match algo {
            LbAlgo::Mh => Scheduler::Maglev,
            LbAlgo::Sh => Scheduler::SourceHash,
            LbAlgo::Dh => Scheduler::DestinationHash,
            LbAlgo::Rr | LbAlgo::Wrr => Scheduler::RoundRobin,
            LbAlgo::Lc => Scheduler::LeastConn,
            LbAlgo::Wlc => Scheduler::WeightedLeastConn,
            LbAlgo::Sed => Scheduler::ShortestExpectedDelay,
            LbAlgo::Nq => Scheduler::NeverQueue,
            LbAlgo::Fo => Scheduler::FailOver,
            LbAlgo::Ovf => Scheduler::Overflow,
            LbAlgo::Lblc => Scheduler::LocalityLeastConn,
            LbAlgo::Lblcr => Scheduler::LocalityLeastConnReplicated,
            LbAlgo::Twos => Scheduler::TwoChoices,
        })
    }

    /// The datapath's `ServiceValue::sched` code.
    pub fn code(self) -> u8 {
        use ka_common::lb::*;
        match self {
            Scheduler::Maglev => SCHED_MAGLEV,
            Scheduler::SourceHash => SCHED_SRC_HASH,
            Scheduler::DestinationHash => SCHED_DST_HASH,
            Scheduler::RoundRobin => SCHED_ROUND_ROBIN,
            Scheduler::LeastConn => SCHED_LC,
            Scheduler::WeightedLeastConn => SCHED_WLC,
            Scheduler::ShortestExpectedDelay => SCHED_SED,
            Scheduler::NeverQueue => SCHED_NQ,
            Scheduler::FailOver => SCHED_FO,
            Scheduler::Overflow => SCHED_OVF,
            Scheduler::LocalityLeastConn => SCHED_LBLC,
            Scheduler::LocalityLeastConnReplicated => SCHED_LBLCR,
            Scheduler::TwoChoices => SCHED_TWOS,
        }
    }

    /// Whether it chooses on connection counts (walks the candidate list in the kernel).
    pub fn counts_connections(self) -> bool {
        ka_common::lb::sched_uses_dests(self.code())
    }
}

/// How a backend is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Direct routing (MAC rewrite).
    Dr,
    /// IPIP / IP6IP6 tunnel.
    Tun,
    /// Destination NAT.
    Nat,
}

impl Method {
    /// The datapath method of a keepalived `lb_kind`.
    ///
    /// # Errors
    /// GUE and GRE tunnels are not implemented.
    pub fn from_lb_kind(kind: LbKind) -> Result<Method, LbError> {
        match kind {
            LbKind::Dr => Ok(Method::Dr),
            LbKind::Nat => Ok(Method::Nat),
            LbKind::Tun(TunnelType::Ipip) => Ok(Method::Tun),
            LbKind::Tun(t) => Err(LbError::Unsupported(format!("tunnel type {t:?}"))),
        }
    }
}

/// L4 protocol of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl L4Proto {
    /// From the config model.
    ///
    /// # Errors
    /// SCTP.
    pub fn from_protocol(p: Protocol) -> Result<L4Proto, LbError> {
        match p {
            Protocol::Tcp => Ok(L4Proto::Tcp),
            Protocol::Udp => Ok(L4Proto::Udp),
            Protocol::Sctp => Err(LbError::Unsupported("protocol SCTP".into())),
        }
    }

    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            L4Proto::Tcp => 6,
            L4Proto::Udp => 17,
        }
    }
}

/// A real server of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    /// Address (same family as the VIP).
    pub addr: IpAddr,
    /// Port (NAT translates to it, 0: keeps the packet's port; DR and TUN keep the packet's
    /// port whatever this says, as IPVS does).
    pub port: u16,
    /// Weight; 0 drains (no new flows, existing ones continue).
    pub weight: u32,
    /// Forwarding method.
    pub method: Method,
    /// Health: false removes it from the tables and reschedules its flows.
    pub healthy: bool,
    /// `uthreshold`: overloaded (no new connections) at this many connections (0: no limit).
    pub uthreshold: u32,
    /// `lthreshold`: takes new connections again below this many (0: 3/4 of `uthreshold`).
    pub lthreshold: u32,
}

/// Client affinity (`persistence_timeout`, `persistence_granularity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persistence {
    /// Idle time after which a client may go elsewhere.
    pub timeout: Duration,
    /// Prefix length of the client address that shares a backend (32/128: per host).
    pub prefix_len: u8,
}

/// One service: a `virtual_server`, answering on (VIP, port, protocol) and, for a
/// `virtual_server_group`, on the further addresses and ports in
/// [`ServiceOptions::also`]: one id, one scheduling table and one set of real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Virtual address.
    pub vip: IpAddr,
    /// Virtual port (0: all ports of the address, for a persistent service).
    pub port: u16,
    /// Protocol.
    pub proto: L4Proto,
    /// Scheduler.
    pub scheduler: Scheduler,
    /// Client affinity.
    pub persistence: Option<Persistence>,
    /// Mastership slot of the VRRP instance owning the VIP (see
    /// [`writer::MapWriter::set_master`]); `None`: always served.
    pub master_slot: Option<u32>,
    /// Real servers.
    pub backends: Vec<BackendSpec>,
    /// Further keys and the IPVS service flags.
    pub options: ServiceOptions,
}

/// What a service adds to its first (VIP, port): the other members of its group and IPVS's
/// service flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceOptions {
    /// Further keys served as the same service (the other addresses and ports of a
    /// `virtual_server_group`; port 0: every port of that address). Same family as `vip`.
    pub also: Vec<Member>,
    /// `ops`: one-packet scheduling; each UDP datagram is scheduled on its own and never
    /// recorded in the connection table.
    pub one_packet: bool,
    /// `sh-fallback` / `mh-fallback`: a flow whose table slot names a server that cannot be
    /// used probes further slots instead of getting no server.
    pub fallback: bool,
    /// The persistence template is the service's (IPVS's fwmark template): a client keeps its
    /// real server across every address and port of the service, not per (VIP, port).
    pub persist_service_wide: bool,
}

/// One (VIP, port) a service answers on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Virtual address.
    pub vip: IpAddr,
    /// Port (0: every port of the address).
    pub port: u16,
    /// Mastership slot of the VRRP instance holding `vip` (`None`: always served).
    pub master_slot: Option<u32>,
}

impl ServiceSpec {
    /// Every key of the service: the first (`vip`, `port`, `master_slot`), then
    /// [`ServiceOptions::also`].
    pub fn members(&self) -> impl Iterator<Item = Member> + '_ {
        std::iter::once(Member { vip: self.vip, port: self.port, master_slot: self.master_slot }).chain(self.options.also.iter().copied())
    }
}

/// A static next hop for the neighbour map (used when `bpf_fib_lookup` has no answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// Destination (a real server or client address).
    pub addr: IpAddr,
    /// Egress interface index.
    pub ifindex: u32,
    /// Egress interface MAC.
    pub smac: [u8; 6],
    /// Next hop MAC.
    pub dmac: [u8; 6],
}

/// Outer source of tunnel packets, with the number of low bits varied per flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelSource {
    /// Base address.
    pub addr: IpAddr,
    /// Low bits replaced by the flow hash (IPv4 ≤ 16, IPv6 ≤ 32); 0 = fixed source.
    pub host_bits: u8,
}

/// Everything the map writer derives the maps from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    /// Services.
    pub services: Vec<ServiceSpec>,
    /// Outer IPv4 source of IPIP packets (required by TUN IPv4 backends).
    pub tunnel_src_v4: Option<TunnelSource>,
    /// Outer IPv6 source of IP6IP6 packets (required by TUN IPv6 backends).
    pub tunnel_src_v6: Option<TunnelSource>,
    /// Static next hops.
    pub neighbours: Vec<Neighbour>,
}

/// Errors of the load-balancer tables and map writer.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// A feature the datapath does not implement.
    #[error("not supported by the XDP datapath: {0}")]
    Unsupported(String),
    /// An inconsistent service.
    #[error("service {vip} port {port}: {reason}")]
    Invalid {
        /// VIP.
        vip: IpAddr,
        /// Port.
        port: u16,
        /// What is wrong.
        reason: String,
    },
    /// A table is full.
    #[error("too many {what} (at most {max})")]
    Full {
        /// Services or backends.
        what: &'static str,
        /// The limit.
        max: u32,
    },
    /// A map is missing or an operation on it failed.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Cause.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// A map is missing from the object.
    #[error("map {0} is missing from the eBPF object")]
    MissingMap(&'static str),
}

/// The 16-byte form of an address used by the maps, and its family.
pub fn addr16(a: IpAddr) -> ([u8; 16], u8) {
    match a {
        IpAddr::V4(v4) => (ka_common::lb::v4_in_16(v4.octets()), ka_common::lb::FAMILY_V4),
        IpAddr::V6(v6) => (v6.octets(), ka_common::lb::FAMILY_V6),
    }
}
