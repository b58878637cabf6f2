//! Which XDP mode to attach in, and why: a pure decision over the link's facts ([`choose`])
//! and a thin runtime that gathers those facts ([`probe`]: rtnetlink and ethtool) and attaches
//! ([`attach`]).
//!
//! The case that needs a decision is veth (namespaces, containers, dev VMs). A frame a native
//! XDP program sends with `XDP_TX` goes into the peer's XDP ring, and the kernel wakes the
//! peer's NAPI for it only when the peer itself runs a native XDP program (`veth_xdp_flush`
//! checks the peer queue's `xdp_prog`). `XDP_REDIRECT` to a veth needs the peer's NAPI (an XDP
//! program or GRO on the peer). Otherwise the frames are dropped or sit in the ring, silently.
//! Generic (skb) mode hands such frames to the veth's normal transmit path, which always
//! delivers them. A peer in another namespace cannot be inspected, and is assumed to run no
//! XDP program.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use aya::programs::{xdp::XdpLinkId, ProgramError, Xdp, XdpMode};
use rtnetlink::{
    packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST},
    packet_route::{
        link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage, LinkXdp, XdpAttached},
        RouteNetlinkMessage,
    },
    sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr},
};
use tracing::{info, warn};

use crate::datapath::AttachMode;

/// What kind of link an interface is, as far as the XDP mode is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// A veth (`IFLA_INFO_KIND` "veth", or the ethtool driver "veth").
    Veth,
    /// Anything else (a NIC, virtio, a bond...): its driver decides whether native mode works.
    Other,
}

/// What is known of a veth's peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Not a veth, or no peer.
    None,
    /// The peer lives in another network namespace (`IFLA_LINK_NETNSID`): not inspected, and
    /// assumed to run no XDP program.
    OtherNamespace,
    /// The peer could not be inspected (the reason).
    Unknown(String),
    /// The peer is in this namespace.
    Known {
        /// Its name.
        name: String,
        /// It runs an XDP program in native (driver) mode.
        native_xdp: bool,
        /// GRO is on (the veth then runs NAPI, which delivers `XDP_REDIRECT` but not `XDP_TX`
        /// frames).
        gro: bool,
    },
}

/// The facts [`choose`] decides on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkFacts {
    /// The link's kind.
    pub kind: LinkKind,
    /// Its peer (veth only).
    pub peer: Peer,
}

/// How to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Driver mode only (an error if the driver refuses).
    Native,
    /// Generic (skb) mode only.
    Generic,
    /// Driver mode, or generic mode with a warning when the driver refuses.
    NativeElseGeneric,
}

/// The decision: a plan, the reason logged with it, and a warning to log, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// How to attach.
    pub plan: Plan,
    /// Why, in words for the log line.
    pub reason: String,
    /// Something the operator must know (native mode where frames will be dropped).
    pub warning: Option<String>,
}

impl Peer {
    fn native_xdp(&self) -> bool {
        matches!(self, Peer::Known { native_xdp: true, .. })
    }

    /// The peer in words, for log lines.
    fn describe(&self) -> String {
        match self {
            Peer::None => "has no peer".to_owned(),
            Peer::OtherNamespace => "whose peer is in another network namespace (not inspected)".to_owned(),
            Peer::Unknown(why) => format!("whose peer cannot be inspected ({why})"),
            Peer::Known { name, native_xdp: true, .. } => format!("whose peer {name} runs a native XDP program"),
            Peer::Known { name, gro: true, .. } => {
                format!("whose peer {name} runs no native XDP program (GRO alone does not deliver XDP_TX frames)")
            }
            Peer::Known { name, .. } => format!("whose peer {name} runs no native XDP program"),
        }
    }
}

/// Chooses how to attach a program to an interface with `facts`, given the mode the operator
/// asked for. `transmits` says whether the program sends frames with `XDP_TX`/`XDP_REDIRECT`
/// (`ka_xdp` does; `ka_decap` only passes or drops, which native mode on a veth delivers).
///
/// - `generic` and `native` are obeyed; `native` on a veth whose peer is not known to run a
///   native XDP program comes with a warning saying what the kernel will drop.
/// - `auto` on a veth, for a program that transmits, is generic unless the peer is known to run
///   a native XDP program; everywhere else it is native, falling back to generic.
pub fn choose(requested: AttachMode, facts: &LinkFacts, transmits: bool) -> Choice {
    let veth_drops = facts.kind == LinkKind::Veth && transmits && !facts.peer.native_xdp();
    match requested {
        AttachMode::Generic => Choice { plan: Plan::Generic, reason: "--xdp-mode generic".to_owned(), warning: None },
        AttachMode::Native => Choice {
            plan: Plan::Native,
            reason: "--xdp-mode native".to_owned(),
            warning: veth_drops.then(|| {
                format!(
                    "native XDP on a veth {}: the kernel drops every frame the program sends with XDP_TX or XDP_REDIRECT, \
                     that is all forwarded VIP traffic (DR, TUN and NAT, replies included); use --xdp-mode auto or generic, \
                     or run a native XDP program on the peer",
                    facts.peer.describe()
                )
            }),
        },
        AttachMode::Auto if veth_drops => Choice {
            plan: Plan::Generic,
            reason: format!(
                "veth {}: native mode would drop the frames the program sends with XDP_TX/XDP_REDIRECT, generic mode delivers them",
                facts.peer.describe()
            ),
            warning: None,
        },
        AttachMode::Auto if facts.kind == LinkKind::Veth && transmits => Choice {
            plan: Plan::NativeElseGeneric,
            reason: format!("veth {}: native mode delivers its XDP_TX/XDP_REDIRECT frames", facts.peer.describe()),
            warning: None,
        },
        AttachMode::Auto if facts.kind == LinkKind::Veth => Choice {
            plan: Plan::NativeElseGeneric,
            reason: "veth, and the program only passes or drops frames, which native mode delivers".to_owned(),
            warning: None,
        },
        AttachMode::Auto => Choice {
            plan: Plan::NativeElseGeneric,
            reason: "driver mode first, generic if the driver refuses".to_owned(),
            warning: None,
        },
    }
}

/// An attachment made by [`attach`].
#[derive(Debug)]
pub struct Attached {
    /// The link id (owned by the program).
    pub id: XdpLinkId,
    /// `native` or `generic`.
    pub mode: &'static str,
    /// Why this mode.
    pub reason: String,
}

/// Probes `iface`, chooses the mode ([`choose`]) and attaches `prog` (named `program`) to it;
/// logs one line saying which mode, on which interface and why, and the choice's warning.
///
/// # Errors
/// The kernel refuses the program in the chosen mode (in both modes for a fallback plan).
pub fn attach(
    prog: &mut Xdp,
    program: &'static str,
    iface: &str,
    requested: AttachMode,
    transmits: bool,
) -> Result<Attached, ProgramError> {
    let facts = probe(iface);
    let choice = choose(requested, &facts, transmits);
    if let Some(w) = &choice.warning {
        warn!(iface, program, "{w}");
    }
    let (id, mode, reason) = match choice.plan {
        Plan::Native => (prog.attach(iface, XdpMode::Driver)?, "native", choice.reason),
        Plan::Generic => (prog.attach(iface, XdpMode::Skb)?, "generic", choice.reason),
        Plan::NativeElseGeneric => match prog.attach(iface, XdpMode::Driver) {
            Ok(id) => (id, "native", choice.reason),
            Err(e) => {
                warn!(iface, program, error = %e, "native XDP refused by the driver, falling back to generic mode");
                (prog.attach(iface, XdpMode::Skb)?, "generic", format!("the driver refused native mode ({e})"))
            }
        },
    };
    info!(iface, mode, program, reason = %reason, "XDP program attached");
    Ok(Attached { id, mode, reason })
}

/// Gathers the facts about `iface` in the current network namespace: its kind (rtnetlink
/// `IFLA_INFO_KIND`, else the ethtool driver name) and, for a veth, its peer (`IFLA_LINK`, in
/// this namespace unless `IFLA_LINK_NETNSID` says otherwise; native XDP from `IFLA_XDP`, GRO
/// from ethtool). Never fails: what cannot be read is reported as unknown.
pub fn probe(iface: &str) -> LinkFacts {
    let link = match get_link(LinkQuery::Name(iface)) {
        Ok(l) => l,
        Err(e) => {
            let kind = if ethtool_driver(iface).as_deref() == Some("veth") { LinkKind::Veth } else { LinkKind::Other };
            let peer = if kind == LinkKind::Veth { Peer::Unknown(format!("rtnetlink: {e}")) } else { Peer::None };
            return LinkFacts { kind, peer };
        }
    };
    let veth = link.kind.as_deref() == Some("veth") || (link.kind.is_none() && ethtool_driver(iface).as_deref() == Some("veth"));
    if !veth {
        return LinkFacts { kind: LinkKind::Other, peer: Peer::None };
    }
    let peer = match (link.link, link.link_netns) {
        (_, true) => Peer::OtherNamespace,
        (None, false) => Peer::Unknown("no IFLA_LINK".to_owned()),
        (Some(index), false) => match get_link(LinkQuery::Index(index)) {
            Ok(p) => {
                let gro = p.name.as_deref().and_then(ethtool_gro).unwrap_or(false);
                Peer::Known { name: p.name.unwrap_or_else(|| format!("ifindex {index}")), native_xdp: p.native_xdp, gro }
            }
            Err(e) => Peer::Unknown(format!("rtnetlink: {e}")),
        },
    };
    LinkFacts { kind: LinkKind::Veth, peer }
}

enum LinkQuery<'a> {
    Name(&'a str),
    Index(u32),
}

/// What [`get_link`] reads of a link.
struct LinkRead {
    name: Option<String>,
    kind: Option<String>,
    link: Option<u32>,
    link_netns: bool,
    native_xdp: bool,
}

/// One `RTM_GETLINK` on a blocking rtnetlink socket.
fn get_link(q: LinkQuery<'_>) -> io::Result<LinkRead> {
    let mut msg = LinkMessage::default();
    match q {
        LinkQuery::Name(n) => msg.attributes.push(LinkAttribute::IfName(n.to_owned())),
        LinkQuery::Index(i) => msg.header.index = i,
    }
    let mut req = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(RouteNetlinkMessage::GetLink(msg)));
    req.header.flags = NLM_F_REQUEST;
    req.header.sequence_number = 1;
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    sock.send(&buf, 0)?;
    let mut rx = vec![0u8; 64 * 1024];
    let n = sock.recv(&mut &mut rx[..], 0)?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[..n]).map_err(|e| io::Error::other(e.to_string()))?;
    let m = match reply.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => m,
        NetlinkPayload::Error(e) => return Err(e.to_io()),
        other => return Err(io::Error::other(format!("unexpected rtnetlink answer type {}", other.message_type()))),
    };
    let mut out = LinkRead { name: None, kind: None, link: None, link_netns: false, native_xdp: false };
    for a in m.attributes {
        match a {
            LinkAttribute::IfName(n) => out.name = Some(n),
            LinkAttribute::Link(i) => out.link = Some(i),
            LinkAttribute::LinkNetNsId(_) => out.link_netns = true,
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        out.kind = Some(match k {
                            InfoKind::Veth => "veth".to_owned(),
                            other => format!("{other:?}").to_lowercase(),
                        });
                    }
                }
            }
            LinkAttribute::Xdp(x) => {
                out.native_xdp = x.iter().any(|x| {
                    matches!(x, LinkXdp::DrvProgId(id) if *id != 0) || matches!(x, LinkXdp::Attached(XdpAttached::Driver))
                })
            }
            _ => {}
        }
    }
    Ok(out)
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x3;
const ETHTOOL_GGRO: u32 = 0x2b;

/// `struct ifreq` with a pointer in its union, as SIOCETHTOOL wants.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// One SIOCETHTOOL ioctl on `iface` with `cmd` filled in at the start of `data`.
fn ethtool(iface: &str, data: &mut [u8]) -> io::Result<()> {
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], data: data.as_mut_ptr().cast(), _pad: [0; 16] };
    let n = iface.len().min(libc::IFNAMSIZ - 1);
    req.name[..n].copy_from_slice(&iface.as_bytes()[..n]);
    // SAFETY: a plain socket(2); the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `req` points at `data`, which is large enough for the command's structure.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The ethtool driver name of `iface` (`veth`, `virtio_net`...).
fn ethtool_driver(iface: &str) -> Option<String> {
    // struct ethtool_drvinfo: cmd, driver[32], version[32], ... (196 bytes).
    let mut data = [0u8; 196];
    data[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    ethtool(iface, &mut data).ok()?;
    let driver = &data[4..36];
    let end = driver.iter().position(|&b| b == 0).unwrap_or(driver.len());
    Some(String::from_utf8_lossy(&driver[..end]).into_owned())
}

/// Whether GRO is on for `iface` (`ETHTOOL_GGRO`).
fn ethtool_gro(iface: &str) -> Option<bool> {
    // struct ethtool_value: cmd, data.
    let mut data = [0u8; 8];
    data[..4].copy_from_slice(&ETHTOOL_GGRO.to_ne_bytes());
    ethtool(iface, &mut data).ok()?;
    Some(u32::from_ne_bytes([data[4], data[5], data[6], data[7]]) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn veth(peer: Peer) -> LinkFacts {
        LinkFacts { kind: LinkKind::Veth, peer }
    }

    fn known(native_xdp: bool, gro: bool) -> Peer {
        Peer::Known { name: "leg1".into(), native_xdp, gro }
    }

    /// Every combination that matters, side by side with the plan and whether it warns.
    #[test]
    fn decision_table() {
        let nic = LinkFacts { kind: LinkKind::Other, peer: Peer::None };
        let cases: &[(&str, AttachMode, LinkFacts, bool, Plan, bool)] = &[
            ("auto, NIC", AttachMode::Auto, nic.clone(), true, Plan::NativeElseGeneric, false),
            ("auto, veth, peer elsewhere", AttachMode::Auto, veth(Peer::OtherNamespace), true, Plan::Generic, false),
            ("auto, veth, peer unknown", AttachMode::Auto, veth(Peer::Unknown("x".into())), true, Plan::Generic, false),
            ("auto, veth, peer bare", AttachMode::Auto, veth(known(false, false)), true, Plan::Generic, false),
            ("auto, veth, peer GRO only", AttachMode::Auto, veth(known(false, true)), true, Plan::Generic, false),
            ("auto, veth, peer runs XDP", AttachMode::Auto, veth(known(true, false)), true, Plan::NativeElseGeneric, false),
            ("auto, veth, decap", AttachMode::Auto, veth(Peer::OtherNamespace), false, Plan::NativeElseGeneric, false),
            ("native, NIC", AttachMode::Native, nic.clone(), true, Plan::Native, false),
            ("native, veth, peer elsewhere", AttachMode::Native, veth(Peer::OtherNamespace), true, Plan::Native, true),
            ("native, veth, peer GRO only", AttachMode::Native, veth(known(false, true)), true, Plan::Native, true),
            ("native, veth, peer runs XDP", AttachMode::Native, veth(known(true, false)), true, Plan::Native, false),
            ("native, veth, decap", AttachMode::Native, veth(Peer::OtherNamespace), false, Plan::Native, false),
            ("generic, veth", AttachMode::Generic, veth(Peer::OtherNamespace), true, Plan::Generic, false),
            ("generic, NIC", AttachMode::Generic, nic, true, Plan::Generic, false),
        ];
        for (name, mode, facts, transmits, plan, warns) in cases {
            let c = choose(*mode, facts, *transmits);
            assert_eq!(c.plan, *plan, "{name}: {c:?}");
            assert_eq!(c.warning.is_some(), *warns, "{name}: {c:?}");
            assert!(!c.reason.is_empty(), "{name}");
        }
    }

    /// The warning for native mode on a bare veth says exactly what is dropped, and the auto
    /// reason names the peer's situation.
    #[test]
    fn words_say_what_is_dropped_and_why() {
        let c = choose(AttachMode::Native, &veth(Peer::OtherNamespace), true);
        let w = c.warning.expect("warning");
        assert!(w.contains("XDP_TX or XDP_REDIRECT") && w.contains("all forwarded VIP traffic"), "{w}");
        assert!(w.contains("another network namespace"), "{w}");
        let c = choose(AttachMode::Auto, &veth(known(false, true)), true);
        assert!(c.reason.contains("leg1") && c.reason.contains("GRO alone"), "{}", c.reason);
        let c = choose(AttachMode::Auto, &veth(known(true, false)), true);
        assert!(c.reason.contains("runs a native XDP program"), "{}", c.reason);
    }
}
