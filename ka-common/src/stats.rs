//! Counter indexes of the `KA_STATS` per-CPU array.
//!
//! The XDP program increments exactly one verdict counter per packet and, while parsing, the
//! counters of what it found or of the first parse error it hit. Userspace sums the per-CPU
//! values and names them with [`Counter::name`].

macro_rules! counters {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// Index of a counter in the `KA_STATS` per-CPU array.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Counter {
            $( $(#[$doc])* $variant, )*
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// Stable, snake_case name used by `ka status` and its JSON output.
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$variant => $name,)* }
            }

            /// Index of the counter in the map.
            pub const fn index(self) -> u32 {
                self as u32
            }
        }
    };
}

counters! {
    /// Verdict: the packet went on to the kernel stack (`XDP_PASS`).
    VerdictPass = "verdict_pass",
    /// Verdict: the packet was dropped (`XDP_DROP`).
    VerdictDrop = "verdict_drop",
    /// Verdict: the packet was sent back out of the interface it came in on (`XDP_TX`).
    VerdictTx = "verdict_tx",
    /// Verdict: the packet was redirected to another interface (`XDP_REDIRECT`).
    VerdictRedirect = "verdict_redirect",
    /// Verdict: the program aborted (`XDP_ABORTED`); always a bug.
    VerdictAborted = "verdict_aborted",
    /// Parsed: frames carrying IPv4.
    Ipv4 = "ipv4",
    /// Parsed: frames carrying IPv6.
    Ipv6 = "ipv6",
    /// Parsed: frames with at least one VLAN tag (802.1Q or 802.1ad).
    Vlan = "vlan",
    /// Parsed: frames of an EtherType ka does not handle (ARP, LLDP, ...).
    OtherL3 = "other_l3",
    /// Parsed: TCP segments.
    Tcp = "tcp",
    /// Parsed: UDP datagrams.
    Udp = "udp",
    /// Parsed: ICMP or ICMPv6 messages.
    Icmp = "icmp",
    /// Parsed: VRRP adverts (IP protocol 112).
    Vrrp = "vrrp",
    /// Parsed: IP fragments other than the first (no L4 header to read).
    Fragment = "fragment",
    /// Parsed: any other IP protocol.
    OtherL4 = "other_l4",
    /// Parse error: frame shorter than an Ethernet header.
    ErrTruncatedEth = "err_truncated_eth",
    /// Parse error: VLAN tag cut short, or more tags than the parser follows.
    ErrBadVlan = "err_bad_vlan",
    /// Parse error: IPv4 header cut short.
    ErrTruncatedIpv4 = "err_truncated_ipv4",
    /// Parse error: IPv4 header with a version other than 4, IHL below 5, or a total length
    /// shorter than the header or longer than the frame.
    ErrBadIpv4 = "err_bad_ipv4",
    /// Parse error: IPv6 header cut short.
    ErrTruncatedIpv6 = "err_truncated_ipv6",
    /// Parse error: IPv6 header with a version other than 6, a payload length longer than the
    /// frame, or an extension header chain that is cut short or longer than the parser follows.
    ErrBadIpv6 = "err_bad_ipv6",
    /// Parse error: TCP, UDP or ICMP header cut short, or a TCP data offset below 5.
    ErrTruncatedL4 = "err_truncated_l4",
}

/// Number of counters: the size of the `KA_STATS` map.
pub const COUNTER_COUNT: u32 = Counter::ALL.len() as u32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_dense_and_names_unique() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index() as usize, i, "{c:?}");
            for other in &Counter::ALL[i + 1..] {
                assert_ne!(c.name(), other.name());
            }
        }
        assert_eq!(COUNTER_COUNT as usize, Counter::ALL.len());
    }
}
