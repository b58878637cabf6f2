//! Network I/O of the daemon: the rtnetlink worker, VRRP sockets, gratuitous ARP and
//! unsolicited neighbour advertisements, and the no_accept firewall.

pub mod firewall;
pub mod garp;
pub mod netlink;
pub mod vrrp_socket;
