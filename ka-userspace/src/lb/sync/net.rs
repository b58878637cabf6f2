//! The sync sockets, set up as IPVS sets up its own: the sender bound to the sync interface,
//! multicast loop off, the configured TTL, connected to the group; the receiver bound to the
//! group and port on the interface, member of the group there.

use std::{
    io,
    net::{IpAddr, SocketAddr},
};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

use super::{SyncError, SyncParams};

/// Receive buffer of the BACKUP's socket: a burst of 100,000 entries is about 3.6 MB.
const RECV_BUFFER: usize = 4 << 20;

/// The two sockets of one sync daemon.
#[derive(Debug)]
pub struct SyncSockets {
    /// Sends to the group (MASTER).
    pub tx: tokio::net::UdpSocket,
    /// Receives from the group (BACKUP).
    pub rx: tokio::net::UdpSocket,
}

impl SyncSockets {
    /// Opens both sockets on `p.interface` (needs a tokio runtime).
    ///
    /// # Errors
    /// The interface does not exist, or a socket option or the group membership fails.
    pub fn open(p: &SyncParams) -> Result<SyncSockets, SyncError> {
        let fail = |what: &'static str| {
            let iface = p.interface.clone();
            move |source: io::Error| SyncError::Socket { iface: iface.clone(), what, source }
        };
        let ifindex = nix::net::if_::if_nametoindex(p.interface.as_str()).map_err(|e| fail("interface")(io::Error::from(e)))?;
        let domain = if p.group.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
        let dst = SocketAddr::new(p.group, p.port);

        let tx = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(fail("socket"))?;
        tx.bind_device(Some(p.interface.as_bytes())).map_err(fail("SO_BINDTODEVICE"))?;
        match p.group {
            IpAddr::V4(_) => {
                tx.set_multicast_loop_v4(false).map_err(fail("IP_MULTICAST_LOOP"))?;
                tx.set_multicast_ttl_v4(u32::from(p.ttl)).map_err(fail("IP_MULTICAST_TTL"))?;
            }
            IpAddr::V6(_) => {
                tx.set_multicast_loop_v6(false).map_err(fail("IPV6_MULTICAST_LOOP"))?;
                tx.set_multicast_hops_v6(u32::from(p.ttl)).map_err(fail("IPV6_MULTICAST_HOPS"))?;
                tx.set_multicast_if_v6(ifindex).map_err(fail("IPV6_MULTICAST_IF"))?;
            }
        }
        tx.connect(&dst.into()).map_err(fail("connect"))?;
        tx.set_nonblocking(true).map_err(fail("O_NONBLOCK"))?;

        let rx = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(fail("socket"))?;
        rx.set_reuse_address(true).map_err(fail("SO_REUSEADDR"))?;
        // A smaller buffer than asked is fine (the kernel caps it at rmem_max).
        let _ = rx.set_recv_buffer_size(RECV_BUFFER);
        rx.bind_device(Some(p.interface.as_bytes())).map_err(fail("SO_BINDTODEVICE"))?;
        rx.bind(&dst.into()).map_err(fail("bind"))?;
        match p.group {
            IpAddr::V4(g) => rx
                .join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(ifindex))
                .map_err(fail("IP_ADD_MEMBERSHIP"))?,
            IpAddr::V6(g) => rx.join_multicast_v6(&g, ifindex).map_err(fail("IPV6_JOIN_GROUP"))?,
        }
        rx.set_nonblocking(true).map_err(fail("O_NONBLOCK"))?;

        let tx = tokio::net::UdpSocket::from_std(tx.into()).map_err(fail("register with tokio"))?;
        let rx = tokio::net::UdpSocket::from_std(rx.into()).map_err(fail("register with tokio"))?;
        Ok(SyncSockets { tx, rx })
    }
}
