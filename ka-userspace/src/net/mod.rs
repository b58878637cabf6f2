//! Network I/O of the daemon: the rtnetlink worker, VRRP sockets, gratuitous ARP and
//! unsolicited neighbour advertisements, the no_accept firewall and the sysctls VRRP changes.

pub mod firewall;
pub mod garp;
pub mod netlink;
pub mod sysctl;
pub mod vrrp_socket;
