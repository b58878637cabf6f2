//! The rtnetlink worker: one task owns the netlink connection; everyone else sends it typed
//! requests through a [`NetlinkClient`]. VIPs, virtual routes and rules, and VMAC interfaces
//! are all changed here, and next hops are looked up and resolved (route lookups, the
//! neighbour table).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt as _;
use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope},
    link::{LinkAttribute, LinkFlags, MacVlanMode},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourExtFlags, NeighbourFlags, NeighbourMessage, NeighbourState},
    route::{
        RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteMetric, RouteNextHop, RouteNextHopFlags, RouteProtocol, RouteScope,
        RouteType,
    },
    rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage},
};
use rtnetlink::{Handle, LinkMacVlan, LinkUnspec, RouteMessageBuilder};
use tokio::sync::{mpsc, oneshot};

/// An address to add or remove (a VIP, `ip addr add ADDR/PREFIX [brd B] [peer P] [scope S]
/// [label L] dev IF`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrSpec {
    /// Interface index.
    pub ifindex: u32,
    /// The address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
    /// IPv4 broadcast address (`brd`).
    pub broadcast: Option<Ipv4Addr>,
    /// Point-to-point peer (`peer`).
    pub peer: Option<IpAddr>,
    /// Scope (`scope`): 0 global, 200 site, 253 link, 254 host.
    pub scope: Option<u8>,
    /// Label (`label`), IPv4 only.
    pub label: Option<String>,
    /// Flags (`home`, `mngtmpaddr`, `noprefixroute`, `autojoin`, `-nodad`).
    pub flags: crate::config::model::AddrFlags,
}

impl AddrSpec {
    /// A bare address with the given prefix on `ifindex`.
    pub fn new(ifindex: u32, addr: IpAddr, prefix: u8) -> AddrSpec {
        AddrSpec { ifindex, addr, prefix, broadcast: None, peer: None, scope: None, label: None, flags: Default::default() }
    }
}

/// A route to add or remove: a parsed `virtual_routes` entry with its interfaces resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    /// The route as configured.
    pub route: crate::config::model::Route,
    /// Output interface (`dev`), resolved.
    pub ifindex: Option<u32>,
    /// Each next hop's `dev`, resolved (same order as `route.nexthops`).
    pub hop_ifindex: Vec<Option<u32>>,
}

/// A policy-routing rule (`virtual_rules`): the parsed entry, interfaces by name.
pub type RuleSpec = crate::config::model::Rule;

/// A link as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// MAC address (empty for links without one).
    pub mac: Vec<u8>,
    /// Administratively up and with carrier (IFF_UP and IFF_RUNNING).
    pub running: bool,
}

/// The state of a neighbour entry (`NUD_*`, as `ip neigh` prints it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NeighState {
    /// `INCOMPLETE`: resolution in progress.
    Incomplete,
    /// `REACHABLE`: confirmed recently.
    Reachable,
    /// `STALE`: usable, to be confirmed on next use.
    Stale,
    /// `DELAY`: usable, confirmation pending.
    Delay,
    /// `PROBE`: usable, being probed.
    Probe,
    /// `FAILED`: resolution failed.
    Failed,
    /// `NOARP`: no resolution needed.
    Noarp,
    /// `PERMANENT`: static.
    Permanent,
    /// `NONE`: created, not resolved yet.
    None,
    /// Another value.
    Other(u16),
}

impl NeighState {
    /// The name `ip neigh` prints.
    pub fn name(self) -> String {
        match self {
            NeighState::Incomplete => "INCOMPLETE".into(),
            NeighState::Reachable => "REACHABLE".into(),
            NeighState::Stale => "STALE".into(),
            NeighState::Delay => "DELAY".into(),
            NeighState::Probe => "PROBE".into(),
            NeighState::Failed => "FAILED".into(),
            NeighState::Noarp => "NOARP".into(),
            NeighState::Permanent => "PERMANENT".into(),
            NeighState::None => "NONE".into(),
            NeighState::Other(v) => format!("0x{v:x}"),
        }
    }
}

impl From<NeighbourState> for NeighState {
    fn from(s: NeighbourState) -> NeighState {
        match s {
            NeighbourState::Incomplete => NeighState::Incomplete,
            NeighbourState::Reachable => NeighState::Reachable,
            NeighbourState::Stale => NeighState::Stale,
            NeighbourState::Delay => NeighState::Delay,
            NeighbourState::Probe => NeighState::Probe,
            NeighbourState::Failed => NeighState::Failed,
            NeighbourState::Noarp => NeighState::Noarp,
            NeighbourState::Permanent => NeighState::Permanent,
            NeighbourState::None => NeighState::None,
            other => NeighState::Other(u16::from(other)),
        }
    }
}

/// A neighbour (ARP/NDP) entry, as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighInfo {
    /// Interface index.
    pub ifindex: u32,
    /// Protocol address.
    pub addr: IpAddr,
    /// Link-layer address, when known.
    pub mac: Option<Vec<u8>>,
    /// State.
    pub state: NeighState,
    /// Managed by the kernel (`NTF_EXT_MANAGED`: kept resolved, re-probed).
    pub managed: bool,
    /// Who created it (`NDA_PROTOCOL`, `proto` in `ip neigh`; 0 when unset).
    pub protocol: u8,
}

/// Where the kernel routes an address: the output interface and the gateway, if not on-link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteHop {
    /// Output interface index.
    pub ifindex: u32,
    /// Gateway (`via`); `None` when the destination is on-link.
    pub gateway: Option<IpAddr>,
}

/// A route of a table dump ([`NetlinkClient::routes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRoute {
    /// Destination (`None`: the default route).
    pub dst: Option<IpAddr>,
    /// Prefix length.
    pub len: u8,
    /// Output interface.
    pub oif: Option<u32>,
}

/// Errors of netlink requests.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// Opening the netlink socket failed.
    #[error("opening rtnetlink: {0}")]
    Open(#[source] std::io::Error),
    /// The kernel refused a request.
    #[error("{what}: {source}")]
    Request {
        /// What was asked (e.g. `add 198.18.0.10/32 on ifindex 3`).
        what: String,
        /// Cause.
        #[source]
        source: rtnetlink::Error,
    },
    /// No such interface.
    #[error("no interface named {0}")]
    NoSuchLink(String),
    /// The worker is gone (daemon shutting down, or the worker died).
    #[error("the netlink worker has stopped")]
    WorkerGone,
    /// No answer in time (the kernel, or a request queued before this one, did not answer).
    #[error("netlink request ({what}) got no answer within {after:?}")]
    Timeout {
        /// What was asked.
        what: String,
        /// The bound.
        after: std::time::Duration,
    },
}

impl NetlinkError {
    /// The errno the kernel answered, for a refused request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Request { source, .. } => errno(source),
            _ => None,
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, NetlinkError>>;

/// A request to the worker.
#[derive(Debug)]
enum Request {
    AddAddr(AddrSpec, Reply<()>),
    DelAddr(AddrSpec, Reply<()>),
    ListAddrs(Option<u32>, Reply<Vec<(u32, IpAddr, u8)>>),
    Link(String, Reply<LinkInfo>),
    Links(Reply<Vec<LinkInfo>>),
    AddMacvlan { parent: u32, name: String, mac: [u8; 6], reply: Reply<u32> },
    DelLink(u32, Reply<()>),
    Route { add: bool, spec: RouteSpec, reply: Reply<()> },
    Rule { add: bool, spec: RuleSpec, reply: Reply<()> },
    RouteGet(IpAddr, Reply<Option<RouteHop>>),
    Routes { table: u32, protocol: u8, reply: Reply<Vec<TableRoute>> },
    Neighbours(Reply<Vec<NeighInfo>>),
    NeighResolve { ifindex: u32, addr: IpAddr, managed: bool, protocol: Option<u8>, reply: Reply<()> },
    NeighDel { ifindex: u32, addr: IpAddr, reply: Reply<()> },
}

impl Request {
    /// What is asked, for errors and logs.
    fn describe(&self) -> String {
        match self {
            Request::AddAddr(s, _) => format!("add {}/{} on ifindex {}", s.addr, s.prefix, s.ifindex),
            Request::DelAddr(s, _) => format!("delete {}/{} on ifindex {}", s.addr, s.prefix, s.ifindex),
            Request::ListAddrs(i, _) => format!("list addresses{}", i.map(|i| format!(" of ifindex {i}")).unwrap_or_default()),
            Request::Link(name, _) => format!("look up link {name}"),
            Request::Links(_) => "list links".to_owned(),
            Request::AddMacvlan { name, parent, .. } => format!("create macvlan {name} on ifindex {parent}"),
            Request::DelLink(i, _) => format!("delete link {i}"),
            Request::Route { add, spec, .. } => format!("{} route {}", if *add { "add" } else { "delete" }, spec.route.dst),
            Request::Rule { add, spec, .. } => format!("{} rule preference {}", if *add { "add" } else { "delete" }, spec.priority),
            Request::RouteGet(a, _) => format!("route get {a}"),
            Request::Routes { table, protocol, .. } => format!("list routes of table {table} protocol {protocol}"),
            Request::Neighbours(_) => "list neighbours".to_owned(),
            Request::NeighResolve { ifindex, addr, .. } => format!("resolve {addr} on ifindex {ifindex}"),
            Request::NeighDel { ifindex, addr, .. } => format!("delete neighbour {addr} on ifindex {ifindex}"),
        }
    }
}

/// How long a netlink request may wait for its answer (queueing included) before it fails:
/// far above what a dump of a large host takes, far below "hung".
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The handle every subsystem uses to ask the worker for changes. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NetlinkClient {
    tx: mpsc::Sender<Request>,
    /// Bound on each request, queueing included.
    timeout: std::time::Duration,
}

/// Starts the worker on the current tokio runtime, each request bounded by
/// [`REQUEST_TIMEOUT`]. It stops when every client is dropped, or when the rtnetlink
/// connection ends (then [`NetlinkClient::closed`] resolves and requests fail).
///
/// # Errors
/// The netlink socket cannot be opened.
pub fn spawn(rcvbuf: Option<RcvBuf>) -> Result<(NetlinkClient, tokio::task::JoinHandle<()>), NetlinkError> {
    let (mut conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Open)?;
    if let Some(rb) = rcvbuf {
        use std::os::fd::AsRawFd as _;
        match set_rcvbuf(conn.socket_mut().as_raw_fd(), rb) {
            Ok(()) => tracing::info!(bytes = rb.bytes, force = rb.force, "vrrp_netlink_cmd_rcv_bufs: receive buffer of the rtnetlink socket set"),
            Err(e) => tracing::warn!(bytes = rb.bytes, force = rb.force, error = %e, "vrrp_netlink_cmd_rcv_bufs: cannot set the receive buffer of the rtnetlink socket"),
        }
    }
    Ok(start(conn, handle, REQUEST_TIMEOUT))
}

/// The receive buffer of ka's rtnetlink socket (keepalived's VRRP netlink command socket):
/// `vrrp_netlink_cmd_rcv_bufs` bytes, with `SO_RCVBUFFORCE` under `_force`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RcvBuf {
    /// Requested size in bytes (the kernel doubles it for its bookkeeping).
    pub bytes: u32,
    /// `SO_RCVBUFFORCE` (needs `CAP_NET_ADMIN`, exceeds `net.core.rmem_max`) instead of
    /// `SO_RCVBUF`.
    pub force: bool,
}

impl RcvBuf {
    /// From `global_defs`: `None` (the kernel's default) without `vrrp_netlink_cmd_rcv_bufs`;
    /// `_force` alone changes nothing, as in keepalived.
    pub fn of(g: &crate::config::model::GlobalDefs) -> Option<RcvBuf> {
        (g.vrrp_netlink_cmd_rcv_bufs > 0).then_some(RcvBuf { bytes: g.vrrp_netlink_cmd_rcv_bufs, force: g.vrrp_netlink_cmd_rcv_bufs_force })
    }
}

/// Sets the receive buffer of socket `fd`.
fn set_rcvbuf(fd: std::os::fd::RawFd, rb: RcvBuf) -> std::io::Result<()> {
    let opt = if rb.force { libc::SO_RCVBUFFORCE } else { libc::SO_RCVBUF };
    let v = libc::c_int::try_from(rb.bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `v` lives across the call and its size is given.
    let rc = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, std::ptr::addr_of!(v).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// The worker over connection `conn` (driven on a task of its own) and its `handle`. A request
/// the kernel does not answer within `timeout` is dropped (the client gets
/// [`NetlinkError::Timeout`]) and the worker goes on with the next one.
fn start(
    conn: impl std::future::Future<Output = ()> + Send + 'static,
    handle: Handle,
    timeout: std::time::Duration,
) -> (NetlinkClient, tokio::task::JoinHandle<()>) {
    let mut conn = tokio::spawn(conn);
    let (tx, mut rx) = mpsc::channel::<Request>(256);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                res = &mut conn => {
                    tracing::error!(outcome = ?res, "the rtnetlink connection ended: netlink requests cannot be served");
                    return;
                }
                req = rx.recv() => {
                    let Some(req) = req else {
                        conn.abort();
                        return;
                    };
                    let what = req.describe();
                    if tokio::time::timeout(timeout, serve(&handle, req)).await.is_err() {
                        tracing::warn!(request = %what, after = ?timeout, "netlink request got no answer: dropped");
                    }
                }
            }
        }
    });
    (NetlinkClient { tx, timeout }, task)
}

/// errno of a netlink error, if it is one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn req_err(what: String) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    move |source| NetlinkError::Request { what, source }
}

async fn serve(h: &Handle, req: Request) {
    match req {
        Request::AddAddr(spec, reply) => {
            let _ = reply.send(add_addr(h, &spec).await);
        }
        Request::DelAddr(spec, reply) => {
            let _ = reply.send(del_addr(h, &spec).await);
        }
        Request::ListAddrs(ifindex, reply) => {
            let _ = reply.send(list_addrs(h, ifindex).await);
        }
        Request::Link(name, reply) => {
            let res = links(h, Some(&name)).await.and_then(|mut v| v.pop().ok_or(NetlinkError::NoSuchLink(name)));
            let _ = reply.send(res);
        }
        Request::Links(reply) => {
            let _ = reply.send(links(h, None).await);
        }
        Request::AddMacvlan { parent, name, mac, reply } => {
            let _ = reply.send(add_macvlan(h, parent, &name, mac).await);
        }
        Request::DelLink(index, reply) => {
            let res = h.link().del(index).execute().await.map_err(req_err(format!("delete link {index}")));
            let _ = reply.send(res);
        }
        Request::Route { add, spec, reply } => {
            let _ = reply.send(route(h, add, &spec).await);
        }
        Request::Rule { add, spec, reply } => {
            let _ = reply.send(rule(h, add, &spec).await);
        }
        Request::RouteGet(addr, reply) => {
            let _ = reply.send(route_get(h, addr).await);
        }
        Request::Routes { table, protocol, reply } => {
            let _ = reply.send(routes(h, table, protocol).await);
        }
        Request::Neighbours(reply) => {
            let _ = reply.send(neighbours(h).await);
        }
        Request::NeighResolve { ifindex, addr, managed, protocol, reply } => {
            let _ = reply.send(neigh_resolve(h, ifindex, addr, managed, protocol).await);
        }
        Request::NeighDel { ifindex, addr, reply } => {
            let _ = reply.send(neigh_del(h, ifindex, addr).await);
        }
    }
}

fn neigh_address(addr: IpAddr) -> NeighbourAddress {
    match addr {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }
}

/// `ip route get ADDR`: a FIB lookup (not a dump) of where the kernel sends `addr`. `None` for
/// unroutable addresses and for routes that have no next hop (local, blackhole...).
async fn route_get(h: &Handle, addr: IpAddr) -> Result<Option<RouteHop>, NetlinkError> {
    let mut msg = RouteMessage::default();
    let (family, len, dst) = match addr {
        IpAddr::V4(a) => (netlink_packet_route::AddressFamily::Inet, 32, RouteAddress::Inet(a)),
        IpAddr::V6(a) => (netlink_packet_route::AddressFamily::Inet6, 128, RouteAddress::Inet6(a)),
    };
    msg.header.address_family = family;
    msg.header.destination_prefix_length = len;
    msg.attributes.push(RouteAttribute::Destination(dst));
    let mut stream = h.route().get(msg).execute();
    let reply = match stream.try_next().await {
        Ok(r) => r,
        Err(e) if matches!(errno(&e), Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ESRCH | libc::EINVAL)) => return Ok(None),
        Err(e) => return Err(req_err(format!("route get {addr}"))(e)),
    };
    let Some(reply) = reply else { return Ok(None) };
    if reply.header.kind != RouteType::Unicast {
        return Ok(None);
    }
    let mut hop = RouteHop { ifindex: 0, gateway: None };
    for a in &reply.attributes {
        match a {
            RouteAttribute::Oif(i) => hop.ifindex = *i,
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => hop.gateway = Some(IpAddr::V4(*g)),
            RouteAttribute::Gateway(RouteAddress::Inet6(g)) => hop.gateway = Some(IpAddr::V6(*g)),
            _ => {}
        }
    }
    Ok((hop.ifindex != 0).then_some(hop))
}

/// `ip route show table TABLE proto PROTOCOL`, IPv4 and IPv6 (filtered here: without
/// strict checking the kernel dumps every table).
async fn routes(h: &Handle, table: u32, protocol: u8) -> Result<Vec<TableRoute>, NetlinkError> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        let msg = if v6 { RouteMessageBuilder::<Ipv6Addr>::new().build() } else { RouteMessageBuilder::<Ipv4Addr>::new().build() };
        let mut stream = h.route().get(msg).execute();
        while let Some(m) = stream.try_next().await.map_err(req_err(format!("list routes of table {table}")))? {
            let t = m.attributes.iter().find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            });
            if t.unwrap_or(u32::from(m.header.table)) != table || u8::from(m.header.protocol) != protocol {
                continue;
            }
            let mut r = TableRoute { dst: None, len: m.header.destination_prefix_length, oif: None };
            for a in &m.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => r.dst = Some(IpAddr::V4(*d)),
                    RouteAttribute::Destination(RouteAddress::Inet6(d)) => r.dst = Some(IpAddr::V6(*d)),
                    RouteAttribute::Oif(i) => r.oif = Some(*i),
                    _ => {}
                }
            }
            out.push(r);
        }
    }
    Ok(out)
}

/// `ip neigh show`, IPv4 and IPv6.
async fn neighbours(h: &Handle) -> Result<Vec<NeighInfo>, NetlinkError> {
    let mut out = Vec::new();
    let mut stream = h.neighbours().get().execute();
    while let Some(msg) = stream.try_next().await.map_err(req_err("list neighbours".into()))? {
        let mut addr = None;
        let mut mac = None;
        let mut managed = false;
        let mut protocol = 0;
        for a in &msg.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => addr = Some(IpAddr::V4(*v)),
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => addr = Some(IpAddr::V6(*v)),
                NeighbourAttribute::LinkLayerAddress(m) => mac = Some(m.clone()),
                NeighbourAttribute::ExtFlags(f) => managed = f.contains(NeighbourExtFlags::Managed),
                NeighbourAttribute::Protocol(p) => protocol = u8::from(*p),
                _ => {}
            }
        }
        if let Some(addr) = addr {
            out.push(NeighInfo { ifindex: msg.header.ifindex, addr, mac, state: msg.header.state.into(), managed, protocol });
        }
    }
    Ok(out)
}

/// Asks the kernel to resolve `addr` on `ifindex` without making up a link-layer address:
/// `ip neigh replace ADDR dev IF managed` (kernel 5.16+: the entry is kept resolved and
/// re-probed while it fails) or, with `managed` false, `ip neigh replace ADDR dev IF use` (one
/// resolution). Both keep the state of an existing entry (`NEIGH_UPDATE_F_USE`/`_MANAGED` in
/// `__neigh_update`) and start resolution if it is not valid (`neigh_event_send`). `protocol`
/// marks the entry (`NDA_PROTOCOL`, Linux 5.2+); without it an entry keeps its mark.
async fn neigh_resolve(h: &Handle, ifindex: u32, addr: IpAddr, managed: bool, protocol: Option<u8>) -> Result<(), NetlinkError> {
    let what = format!("resolve {addr} on ifindex {ifindex}{}", if managed { " (managed)" } else { "" });
    let mut req = h.neighbours().add(ifindex, addr).state(NeighbourState::None).replace();
    if managed {
        req.message_mut().attributes.push(NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed));
    } else {
        req = req.flags(NeighbourFlags::Use);
    }
    if let Some(p) = protocol {
        req.message_mut().attributes.push(NeighbourAttribute::Protocol(netlink_packet_route::route::RouteProtocol::from(p)));
    }
    req.execute().await.map_err(req_err(what))
}

/// `ip neigh del ADDR dev IF`; an entry that is not there is not an error.
async fn neigh_del(h: &Handle, ifindex: u32, addr: IpAddr) -> Result<(), NetlinkError> {
    let mut msg = NeighbourMessage::default();
    msg.header.family = match addr {
        IpAddr::V4(_) => netlink_packet_route::AddressFamily::Inet,
        IpAddr::V6(_) => netlink_packet_route::AddressFamily::Inet6,
    };
    msg.header.ifindex = ifindex;
    msg.attributes.push(NeighbourAttribute::Destination(neigh_address(addr)));
    match h.neighbours().del(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), Some(libc::ENOENT | libc::ENODEV)) => Ok(()),
        Err(e) => Err(req_err(format!("delete neighbour {addr} on ifindex {ifindex}"))(e)),
    }
}

fn addr_message(spec: &AddrSpec, mut msg: AddressMessage) -> AddressMessage {
    if let Some(scope) = spec.scope {
        msg.header.scope = AddressScope::from(scope);
    }
    if let Some(brd) = spec.broadcast {
        msg.attributes.retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
        msg.attributes.push(AddressAttribute::Broadcast(brd));
    }
    if let Some(peer) = spec.peer {
        // With a peer, IFA_LOCAL is our address and IFA_ADDRESS the peer's.
        msg.attributes.retain(|a| !matches!(a, AddressAttribute::Address(_) | AddressAttribute::Broadcast(_)));
        msg.attributes.push(AddressAttribute::Address(peer));
    }
    if let Some(label) = &spec.label {
        msg.attributes.push(AddressAttribute::Label(label.clone()));
    }
    let mut flags = AddressFlags::empty();
    // A VIP must be usable at once after a takeover: no duplicate address detection (unless
    // `-nodad` asks for it).
    if spec.addr.is_ipv6() && !spec.flags.dad {
        flags |= AddressFlags::Nodad;
    }
    for (on, f) in [
        (spec.flags.home, AddressFlags::Homeaddress),
        (spec.flags.mngtmpaddr, AddressFlags::Managetempaddr),
        (spec.flags.noprefixroute, AddressFlags::Noprefixroute),
        (spec.flags.autojoin, AddressFlags::Mcautojoin),
    ] {
        if on {
            flags |= f;
        }
    }
    if !flags.is_empty() {
        msg.attributes.push(AddressAttribute::Flags(flags));
    }
    msg
}

async fn add_addr(h: &Handle, spec: &AddrSpec) -> Result<(), NetlinkError> {
    let what = format!("add {}/{} on ifindex {}", spec.addr, spec.prefix, spec.ifindex);
    let mut req = h.address().add(spec.ifindex, spec.addr, spec.prefix);
    let msg = addr_message(spec, std::mem::take(req.message_mut()));
    *req.message_mut() = msg;
    match req.execute().await {
        Ok(()) => Ok(()),
        // Already there (a leftover of a crashed run, or configured by hand): nothing to do.
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(req_err(what)(e)),
    }
}

async fn del_addr(h: &Handle, spec: &AddrSpec) -> Result<(), NetlinkError> {
    let what = format!("delete {}/{} on ifindex {}", spec.addr, spec.prefix, spec.ifindex);
    let mut msg = AddressMessage::default();
    msg.header.family = match spec.addr {
        IpAddr::V4(_) => netlink_packet_route::AddressFamily::Inet,
        IpAddr::V6(_) => netlink_packet_route::AddressFamily::Inet6,
    };
    msg.header.index = spec.ifindex;
    msg.header.prefix_len = spec.prefix;
    msg.attributes.push(AddressAttribute::Local(spec.addr));
    if spec.peer.is_none() {
        msg.attributes.push(AddressAttribute::Address(spec.addr));
    }
    match h.address().del(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), Some(libc::EADDRNOTAVAIL | libc::ENOENT | libc::ENODEV)) => Ok(()),
        Err(e) => Err(req_err(what)(e)),
    }
}

async fn list_addrs(h: &Handle, ifindex: Option<u32>) -> Result<Vec<(u32, IpAddr, u8)>, NetlinkError> {
    let mut req = h.address().get();
    if let Some(i) = ifindex {
        req = req.set_link_index_filter(i);
    }
    let mut out = Vec::new();
    let mut stream = req.execute();
    while let Some(msg) = stream.try_next().await.map_err(req_err("list addresses".into()))? {
        let addr = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(a) => Some(*a),
            _ => None,
        });
        let addr = addr.or_else(|| {
            msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(a) => Some(*a),
                _ => None,
            })
        });
        if let Some(a) = addr {
            out.push((msg.header.index, a, msg.header.prefix_len));
        }
    }
    Ok(out)
}

async fn links(h: &Handle, name: Option<&str>) -> Result<Vec<LinkInfo>, NetlinkError> {
    let mut req = h.link().get();
    if let Some(n) = name {
        req = req.match_name(n.to_owned());
    }
    let mut out = Vec::new();
    let mut stream = req.execute();
    loop {
        let next = match stream.try_next().await {
            Ok(n) => n,
            Err(e) if name.is_some() && errno(&e) == Some(libc::ENODEV) => {
                return Err(NetlinkError::NoSuchLink(name.unwrap_or_default().to_owned()))
            }
            Err(e) => return Err(req_err("list links".into())(e)),
        };
        let Some(msg) = next else { break };
        let mut info = LinkInfo {
            index: msg.header.index,
            name: String::new(),
            mac: Vec::new(),
            running: msg.header.flags.contains(LinkFlags::Up) && msg.header.flags.contains(LinkFlags::Running),
        };
        for a in &msg.attributes {
            match a {
                LinkAttribute::IfName(n) => info.name.clone_from(n),
                LinkAttribute::Address(m) => info.mac.clone_from(m),
                _ => {}
            }
        }
        out.push(info);
    }
    Ok(out)
}

async fn add_macvlan(h: &Handle, parent: u32, name: &str, mac: [u8; 6]) -> Result<u32, NetlinkError> {
    let msg = LinkMacVlan::new(name, parent, MacVlanMode::Private)
        .append_extra_attribute(LinkAttribute::Address(mac.to_vec()))
        .up()
        .build();
    match h.link().add(msg).execute().await {
        Ok(()) => {}
        Err(e) if errno(&e) == Some(libc::EEXIST) => {}
        Err(e) => return Err(req_err(format!("create macvlan {name} on ifindex {parent}"))(e)),
    }
    let link = links(h, Some(name)).await?.pop().ok_or_else(|| NetlinkError::NoSuchLink(name.to_owned()))?;
    // Make sure it is up even if it existed already.
    let up = LinkUnspec::new_with_index(link.index).up().build();
    h.link().set(up).execute().await.map_err(req_err(format!("set {name} up")))?;
    Ok(link.index)
}

fn route_type(t: crate::config::model::RouteType) -> RouteType {
    use crate::config::model::RouteType as T;
    match t {
        T::Unicast => RouteType::Unicast,
        T::Local => RouteType::Local,
        T::Broadcast => RouteType::Broadcast,
        T::Anycast => RouteType::Anycast,
        T::Multicast => RouteType::Multicast,
        T::Blackhole => RouteType::BlackHole,
        T::Unreachable => RouteType::Unreachable,
        T::Prohibit => RouteType::Prohibit,
        T::Throw => RouteType::Throw,
        T::Nat => RouteType::Nat,
        T::Xresolve => RouteType::ExternalResolve,
    }
}

fn route_address(a: IpAddr) -> RouteAddress {
    match a {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

fn route_metric(m: &crate::config::model::RouteMetric) -> RouteMetric {
    use crate::config::model::RouteMetric as M;
    match m {
        M::Mtu(v) => RouteMetric::Mtu(*v),
        M::Window(v) => RouteMetric::Window(*v),
        M::Rtt(v) => RouteMetric::Rtt(*v),
        M::RttVar(v) => RouteMetric::RttVar(*v),
        M::SsThresh(v) => RouteMetric::SsThresh(*v),
        M::Cwnd(v) => RouteMetric::Cwnd(*v),
        M::Advmss(v) => RouteMetric::Advmss(*v),
        M::Reordering(v) => RouteMetric::Reordering(*v),
        M::Hoplimit(v) => RouteMetric::Hoplimit(*v),
        M::InitCwnd(v) => RouteMetric::InitCwnd(*v),
        M::Features(v) => RouteMetric::Features(*v),
        M::RtoMin(v) => RouteMetric::RtoMin(*v),
        M::InitRwnd(v) => RouteMetric::InitRwnd(*v),
        M::QuickAck(v) => RouteMetric::QuickAck(*v),
        M::CongCtl(v) => RouteMetric::CcAlgo(v.clone()),
        M::FastopenNoCookie(v) => RouteMetric::FastopenNoCookie(*v),
    }
}

/// The netlink message of a route (`ip route add` as keepalived builds it).
fn route_message(spec: &RouteSpec) -> RouteMessage {
    let r = &spec.route;
    let mut msg = match r.dst.addr {
        IpAddr::V4(d) => RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(d, r.dst.len).build(),
        IpAddr::V6(d) => RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(d, r.dst.len).build(),
    };
    let h = &mut msg.header;
    h.kind = route_type(r.kind);
    h.table = u8::try_from(r.table).unwrap_or(0);
    // keepalived's default scope is universe, whatever the route.
    if let Some(s) = r.scope {
        h.scope = RouteScope::from(s);
    }
    if let Some(p) = r.protocol {
        h.protocol = RouteProtocol::from(p);
    }
    if let Some(t) = r.tos {
        h.tos = t;
    }
    if r.onlink {
        h.flags |= RouteFlags::Onlink;
    }
    let a = &mut msg.attributes;
    if r.table > 255 {
        a.push(RouteAttribute::Table(r.table));
    }
    if let Some(from) = r.from {
        msg.header.source_prefix_length = from.len;
        a.push(RouteAttribute::Source(route_address(from.addr)));
    }
    if let Some(g) = r.via {
        a.push(RouteAttribute::Gateway(route_address(g)));
    }
    if let Some(s) = r.src {
        a.push(RouteAttribute::PrefSource(route_address(s)));
    }
    if let Some(i) = spec.ifindex {
        a.push(RouteAttribute::Oif(i));
    }
    if let Some(m) = r.metric {
        a.push(RouteAttribute::Priority(m));
    }
    if let Some(p) = r.pref {
        a.push(RouteAttribute::Preference(p.into()));
    }
    if let Some(e) = r.expires {
        a.push(RouteAttribute::Expires(e));
    }
    let mut metrics: Vec<RouteMetric> = r.metrics.iter().map(route_metric).collect();
    if r.lock != 0 {
        metrics.push(RouteMetric::Lock(r.lock));
    }
    if !metrics.is_empty() {
        a.push(RouteAttribute::Metrics(metrics));
    }
    if !r.nexthops.is_empty() {
        let hops = r
            .nexthops
            .iter()
            .enumerate()
            .map(|(n, nh)| {
                let mut hop = RouteNextHop::default();
                hop.interface_index = spec.hop_ifindex.get(n).copied().flatten().unwrap_or(0);
                // rtnh_hops is the weight minus one.
                hop.hops = u8::try_from(nh.weight.unwrap_or(1).saturating_sub(1)).unwrap_or(u8::MAX);
                if nh.onlink {
                    hop.flags |= RouteNextHopFlags::Onlink;
                }
                if let Some(g) = nh.via {
                    hop.attributes.push(RouteAttribute::Gateway(route_address(g)));
                }
                hop
            })
            .collect();
        a.push(RouteAttribute::MultiPath(hops));
    }
    msg
}

async fn route(h: &Handle, add: bool, spec: &RouteSpec) -> Result<(), NetlinkError> {
    let msg = route_message(spec);
    let what = format!("{} route {}", if add { "add" } else { "delete" }, spec.route.dst);
    let res = if add { h.route().add(msg).execute().await } else { h.route().del(msg).execute().await };
    match res {
        Ok(()) => Ok(()),
        Err(e) if add && errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(e) if !add && matches!(errno(&e), Some(libc::ESRCH | libc::ENOENT)) => Ok(()),
        Err(e) => Err(req_err(what)(e)),
    }
}

/// The netlink message of a rule (`ip rule add` as keepalived builds it).
fn rule_message(spec: &RuleSpec) -> RuleMessage {
    use crate::config::model::RuleAction as A;
    let mut msg = RuleMessage::default();
    let h = &mut msg.header;
    h.family = if spec.v6 { netlink_packet_route::AddressFamily::Inet6 } else { netlink_packet_route::AddressFamily::Inet };
    h.tos = spec.tos.unwrap_or(0);
    if spec.invert {
        h.flags |= RuleFlags::Invert;
    }
    let a = &mut msg.attributes;
    h.action = match spec.action {
        A::Table(t) => {
            h.table = u8::try_from(t).unwrap_or(0);
            a.push(RuleAttribute::Table(t));
            RuleAction::ToTable
        }
        A::Goto(t) => {
            a.push(RuleAttribute::Goto(t));
            RuleAction::Goto
        }
        A::Nop => RuleAction::Nop,
        A::Blackhole => RuleAction::Blackhole,
        A::Unreachable => RuleAction::Unreachable,
        A::Prohibit => RuleAction::Prohibit,
    };
    if let Some(f) = spec.from {
        h.src_len = f.len;
        a.push(RuleAttribute::Source(f.addr));
    }
    if let Some(t) = spec.to {
        h.dst_len = t.len;
        a.push(RuleAttribute::Destination(t.addr));
    }
    a.push(RuleAttribute::Priority(spec.priority));
    if let Some((m, mask)) = spec.fwmark {
        a.push(RuleAttribute::FwMark(m));
        if let Some(k) = mask {
            a.push(RuleAttribute::FwMask(k));
        }
    }
    if let Some(i) = &spec.iif {
        a.push(RuleAttribute::Iifname(i.clone()));
    }
    if let Some(o) = &spec.oif {
        a.push(RuleAttribute::Oifname(o.clone()));
    }
    if let Some(p) = spec.protocol {
        a.push(RuleAttribute::Protocol(RouteProtocol::from(p)));
    }
    if let Some(n) = spec.suppress_prefixlen {
        a.push(RuleAttribute::SuppressPrefixLen(n));
    }
    msg
}

async fn rule(h: &Handle, add: bool, spec: &RuleSpec) -> Result<(), NetlinkError> {
    let what = format!("{} rule {:?} preference {}", if add { "add" } else { "delete" }, spec.action, spec.priority);
    let msg = rule_message(spec);
    if add {
        let mut req = h.rule().add();
        *req.message_mut() = msg;
        return map_rule(req.execute().await, add, what);
    }
    map_rule(h.rule().del(msg).execute().await, add, what)
}

fn map_rule(res: Result<(), rtnetlink::Error>, add: bool, what: String) -> Result<(), NetlinkError> {
    match res {
        Ok(()) => Ok(()),
        Err(e) if add && errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(e) if !add && matches!(errno(&e), Some(libc::ENOENT | libc::ESRCH)) => Ok(()),
        Err(e) => Err(req_err(what)(e)),
    }
}

impl NetlinkClient {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, NetlinkError> {
        let (tx, rx) = oneshot::channel();
        let req = make(tx);
        let what = req.describe();
        let asked = async {
            self.tx.send(req).await.map_err(|_| NetlinkError::WorkerGone)?;
            rx.await.map_err(|_| NetlinkError::WorkerGone)?
        };
        match tokio::time::timeout(self.timeout, asked).await {
            Ok(res) => res,
            Err(_) => Err(NetlinkError::Timeout { what, after: self.timeout }),
        }
    }

    /// Resolves when the worker has stopped (for the daemon's supervision: it never stops while
    /// a client exists, unless it died or its connection ended).
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let tx = self.tx.clone();
        async move { tx.closed().await }
    }

    /// Adds an address; an address that is already there is not an error.
    ///
    /// # Errors
    /// The kernel refuses.
    pub async fn add_addr(&self, spec: AddrSpec) -> Result<(), NetlinkError> {
        self.call(|r| Request::AddAddr(spec, r)).await
    }

    /// Removes an address; an address that is not there is not an error.
    ///
    /// # Errors
    /// The kernel refuses.
    pub async fn del_addr(&self, spec: AddrSpec) -> Result<(), NetlinkError> {
        self.call(|r| Request::DelAddr(spec, r)).await
    }

    /// Lists `(ifindex, address, prefix)` of every address, or of one interface's.
    ///
    /// # Errors
    /// The dump fails.
    pub async fn list_addrs(&self, ifindex: Option<u32>) -> Result<Vec<(u32, IpAddr, u8)>, NetlinkError> {
        self.call(|r| Request::ListAddrs(ifindex, r)).await
    }

    /// Looks a link up by name.
    ///
    /// # Errors
    /// No such link.
    pub async fn link(&self, name: &str) -> Result<LinkInfo, NetlinkError> {
        self.call(|r| Request::Link(name.to_owned(), r)).await
    }

    /// Every link.
    ///
    /// # Errors
    /// The dump fails.
    pub async fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        self.call(Request::Links).await
    }

    /// Creates (or reuses) a private-mode macvlan `name` on `parent` with MAC `mac`, up.
    /// Returns its index.
    ///
    /// # Errors
    /// The kernel refuses.
    pub async fn add_macvlan(&self, parent: u32, name: &str, mac: [u8; 6]) -> Result<u32, NetlinkError> {
        self.call(|reply| Request::AddMacvlan { parent, name: name.to_owned(), mac, reply }).await
    }

    /// Deletes a link.
    ///
    /// # Errors
    /// The kernel refuses.
    pub async fn del_link(&self, index: u32) -> Result<(), NetlinkError> {
        self.call(|r| Request::DelLink(index, r)).await
    }

    /// Adds (`add`) or removes a route; idempotent.
    ///
    /// # Errors
    /// The kernel refuses.
    pub async fn route(&self, add: bool, spec: RouteSpec) -> Result<(), NetlinkError> {
        self.call(|reply| Request::Route { add, spec, reply }).await
    }

    /// Adds (`add`) or removes a rule; idempotent.
    ///
    /// # Errors
    /// The kernel refuses.
    pub async fn rule(&self, add: bool, spec: RuleSpec) -> Result<(), NetlinkError> {
        self.call(|reply| Request::Rule { add, spec, reply }).await
    }

    /// Where the kernel routes `addr` (`ip route get`); `None` if it has no unicast route.
    ///
    /// # Errors
    /// The lookup fails for another reason than an unreachable destination.
    pub async fn route_get(&self, addr: IpAddr) -> Result<Option<RouteHop>, NetlinkError> {
        self.call(|r| Request::RouteGet(addr, r)).await
    }

    /// The IPv4 and IPv6 routes of `table` that carry `protocol`.
    ///
    /// # Errors
    /// The dump fails.
    pub async fn routes(&self, table: u32, protocol: u8) -> Result<Vec<TableRoute>, NetlinkError> {
        self.call(|reply| Request::Routes { table, protocol, reply }).await
    }

    /// Every IPv4 and IPv6 neighbour entry.
    ///
    /// # Errors
    /// The dump fails.
    pub async fn neighbours(&self) -> Result<Vec<NeighInfo>, NetlinkError> {
        self.call(Request::Neighbours).await
    }

    /// Asks the kernel to resolve `addr` on `ifindex`: a managed entry (`managed`, kernel
    /// 5.16+) or a one-shot resolution (`NTF_USE`), marked with `protocol` if given. An
    /// existing entry keeps its state.
    ///
    /// # Errors
    /// The kernel refuses (`EINVAL` for managed entries on kernels without them).
    pub async fn neigh_resolve(&self, ifindex: u32, addr: IpAddr, managed: bool, protocol: Option<u8>) -> Result<(), NetlinkError> {
        self.call(|reply| Request::NeighResolve { ifindex, addr, managed, protocol, reply }).await
    }

    /// Deletes the neighbour entry of `addr` on `ifindex`; idempotent.
    ///
    /// # Errors
    /// The kernel refuses.
    pub async fn neigh_del(&self, ifindex: u32, addr: IpAddr) -> Result<(), NetlinkError> {
        self.call(|reply| Request::NeighDel { ifindex, addr, reply }).await
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn rcvbuf_from_config() {
        use crate::config::model::GlobalDefs;
        let cases: [(u32, bool, Option<RcvBuf>); 4] = [
            (0, false, None),
            (0, true, None),
            (1 << 20, false, Some(RcvBuf { bytes: 1 << 20, force: false })),
            (4096, true, Some(RcvBuf { bytes: 4096, force: true })),
        ];
        for (bytes, force, want) in cases {
            let g = GlobalDefs { vrrp_netlink_cmd_rcv_bufs: bytes, vrrp_netlink_cmd_rcv_bufs_force: force, ..GlobalDefs::default() };
            assert_eq!(RcvBuf::of(&g), want, "{bytes} {force}");
        }
    }

    /// The size lands on the socket: the kernel reports twice the bytes asked for.
    #[test]
    fn rcvbuf_is_set_on_a_netlink_socket() {
        use std::os::fd::AsRawFd as _;
        let sock = rtnetlink::sys::Socket::new(rtnetlink::sys::protocols::NETLINK_ROUTE).expect("netlink socket");
        set_rcvbuf(sock.as_raw_fd(), RcvBuf { bytes: 12_345, force: false }).expect("SO_RCVBUF");
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` live across the call.
        let rc = unsafe { libc::getsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, std::ptr::addr_of_mut!(v).cast(), &mut len) };
        assert_eq!(rc, 0);
        assert_eq!(v, 2 * 12_345);
    }

    use std::time::{Duration, Instant};

    use super::*;

    /// A request the kernel never answers (the connection is never driven) fails with a clear
    /// timeout naming it, within the bound, instead of hanging its caller; later requests
    /// are bounded too.
    #[tokio::test]
    async fn unanswered_requests_time_out() {
        let (_conn, handle, _) = rtnetlink::new_connection().expect("netlink socket");
        let (client, _task) = start(std::future::pending(), handle, Duration::from_millis(200));
        for _ in 0..2 {
            let asked = Instant::now();
            let res = tokio::time::timeout(Duration::from_secs(5), client.link("lo")).await.expect("the call is bounded");
            let e = res.expect_err("no answer can come");
            assert!(matches!(e, NetlinkError::Timeout { .. }), "{e}");
            assert!(e.to_string().contains("look up link lo"), "{e}");
            assert!(asked.elapsed() < Duration::from_secs(2), "took {:?}", asked.elapsed());
        }
    }

    /// Requests queued behind one the kernel never answers each fail at their own deadline
    /// (the bound counts the wait in the queue), together, not one after the other: a stuck
    /// request holds up its callers by the bound, never by the bound times the queue.
    #[tokio::test]
    async fn queued_requests_are_bounded_together() {
        let (_conn, handle, _) = rtnetlink::new_connection().expect("netlink socket");
        let (client, _task) = start(std::future::pending(), handle, Duration::from_millis(300));
        let asked = Instant::now();
        let calls: Vec<_> = (0..5)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move { c.link("lo").await })
            })
            .collect();
        for h in calls {
            let e = h.await.expect("join").expect_err("no answer can come");
            assert!(matches!(e, NetlinkError::Timeout { .. }), "{e}");
        }
        assert!(asked.elapsed() < Duration::from_secs(1), "five queued requests took {:?}", asked.elapsed());
    }

    /// When the rtnetlink connection ends, the worker stops: the daemon's supervision sees
    /// `closed()` resolve, and requests fail at once.
    #[tokio::test]
    async fn worker_stops_when_its_connection_ends() {
        let (_conn, handle, _) = rtnetlink::new_connection().expect("netlink socket");
        let (client, task) = start(async {}, handle, Duration::from_secs(5));
        tokio::time::timeout(Duration::from_secs(5), client.closed()).await.expect("the worker stopped");
        assert!(task.await.is_ok());
        let e = client.links().await.expect_err("no worker");
        assert!(matches!(e, NetlinkError::WorkerGone), "{e}");
    }
}
