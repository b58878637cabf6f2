//! Counter indexes of the `KA_STATS` per-CPU array.
//!
//! The XDP program increments exactly one verdict counter per packet and, while parsing, the
//! counters of what it found or of the first parse error it hit. Userspace sums the per-CPU
//! values and names them with [`Counter::name`].
//!
//! `KA_STATS` holds one [`Counters`] per CPU (a one-entry per-CPU array): the program looks it
//! up once and adds to fields at constant offsets, instead of one map lookup per counter (each
//! ~18 instructions once the verifier inlines it, 7 of them on an established flow).

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
    /// LB: a packet to a service was forwarded on a new flow (scheduler consulted).
    LbNewFlow = "lb_new_flow",
    /// LB: a packet matched the connection table.
    LbConnHit = "lb_conn_hit",
    /// LB: a new flow followed its client's persistence template.
    LbPersistHit = "lb_persist_hit",
    /// LB: a connection-table entry pointed at a backend that is down or gone; rescheduled.
    LbReschedule = "lb_reschedule",
    /// LB: the table's backend for a new flow could not be used and a service with
    /// `sh-fallback`/`mh-fallback` found another one further along the flow's probe sequence.
    LbFallback = "lb_fallback",
    /// LB: a connection-table entry had outlived its lifetime (`lvs_timeouts`, by TCP state);
    /// it left the table and the packet was scheduled as a new flow.
    LbConnExpired = "lb_conn_expired",
    /// LB: a backend the scheduler chose was overloaded (`uthreshold` reached): `rr`/`wrr`
    /// tried the next one, `mh`/`sh`/`dh` found no backend (`pass_no_backend`), as IPVS.
    LbOverloaded = "lb_overloaded",
    /// LB: forwarded by direct routing.
    LbDr = "lb_dr",
    /// LB: forwarded through an IPIP/IP6IP6 tunnel.
    LbTun = "lb_tun",
    /// LB: destination-NATed to a real server.
    LbNat = "lb_nat",
    /// LB: a NAT reply translated back to the VIP.
    LbNatReply = "lb_nat_reply",
    /// LB: an ICMP error about a VIP flow (its embedded packet sent by the VIP to a client)
    /// forwarded to the flow's real server by the flow's method (also counted as `lb_dr`,
    /// `lb_tun` or `lb_nat`).
    LbIcmpForward = "lb_icmp_forward",
    /// LB: an ICMP error from the real-server side of a NAT flow (its embedded packet sent by
    /// the director to the real server) translated back to the VIP and sent to the client
    /// (also counted as `lb_nat_reply`).
    LbIcmpReply = "lb_icmp_reply",
    /// LB: an ICMP "fragmentation needed" / ICMPv6 "packet too big" sent back to the client
    /// (from the VIP) for a packet to a service too big for the path to its real server (once
    /// encapsulated, for TUN).
    LbIcmpTooBig = "lb_icmp_too_big",
    /// LB: next hop found by `bpf_fib_lookup`.
    LbFibHit = "lb_fib_hit",
    /// LB: next hop found in the userspace neighbour map.
    LbNeighHit = "lb_neigh_hit",
    /// LB: `bpf_fib_lookup` refused the packet because forwarding is disabled on the interface
    /// it came in on (`net.ipv4.conf.IF.forwarding` / `net.ipv6.conf.IF.forwarding` = 0, the
    /// default on a host). Not an error: the next hop then comes from the neighbour map the
    /// daemon keeps (`lb_neigh_hit`), as IPVS DR and TUN need no forwarding; without an entry
    /// the packet passes (`pass_no_nexthop`).
    LbFibFwdDisabled = "lb_fib_fwd_disabled",
    /// Pass: TCP/UDP not addressed to a service (with no service at all, every TCP/UDP packet).
    PassNotVip = "pass_not_vip",
    /// Pass: this node is not MASTER for the VRRP instance owning the VIP.
    PassNotMaster = "pass_not_master",
    /// Pass: the service has no available backend.
    PassNoBackend = "pass_no_backend",
    /// Pass: no next hop for the destination: the FIB has none (no route, no resolved
    /// neighbour, or forwarding disabled: `lb_fib_fwd_disabled`) and neither has the
    /// neighbour map.
    PassNoNexthop = "pass_no_nexthop",
    /// Pass: a VLAN-tagged or fragmented packet to a service (left to the kernel).
    PassLbUnsupported = "pass_lb_unsupported",
    /// Pass: a packet to a service too big for the path to its real server (TUN: once
    /// encapsulated) and not answered in XDP: IPv4 without DF (the kernel may fragment it), an
    /// IPv4 MTU below 68, or an ICMP error (never answered with another error).
    PassTooBig = "pass_too_big",
    /// Pass: an ICMP/ICMPv6 message that is not an error (echo, neighbour discovery...).
    PassIcmpNotError = "pass_icmp_not_error",
    /// Pass: an ICMP error whose embedded packet belongs to no VIP flow: not TCP/UDP (an IPv6
    /// embedded packet with extension headers included), no service or NAT entry for it, or
    /// the error is not addressed to the embedded packet's source.
    PassIcmpNotVip = "pass_icmp_not_vip",
    /// Pass: an ICMP error whose embedded packet is cut short (IP header, or the first 8 bytes
    /// of its transport header, beyond the end of the outer packet).
    PassIcmpInnerTruncated = "pass_icmp_inner_truncated",
    /// Pass: an ICMP error whose embedded IP header is inconsistent (version other than the
    /// outer packet's, IHL below 5).
    PassIcmpInnerBad = "pass_icmp_inner_bad",
    /// Pass: an ICMP error whose embedded packet is a non-first IPv4 fragment (no ports).
    PassIcmpInnerFragment = "pass_icmp_inner_fragment",
    /// Drop: packet adjustment (`bpf_xdp_adjust_head/tail`) failed.
    DropAdjust = "drop_adjust",
    /// VRRP fast path: steady-state advert from the known master (timestamp refreshed).
    VrrpSteady = "vrrp_steady",
    /// VRRP fast path: a change, reported on the ring buffer.
    VrrpChange = "vrrp_change",
    /// VRRP fast path: the ring buffer was full; the advert still reaches the engine.
    VrrpEventLost = "vrrp_event_lost",
    /// VRRP fast path: an advert too long to checksum in XDP, left to userspace unclassified.
    VrrpPassLong = "vrrp_pass_long",
    /// VRRP fast path drop reason: too short.
    VrrpTooShort = "vrrp_too_short",
    /// VRRP fast path drop reason: bad version.
    VrrpBadVersion = "vrrp_bad_version",
    /// VRRP fast path drop reason: bad type.
    VrrpBadType = "vrrp_bad_type",
    /// VRRP fast path drop reason: TTL/Hop Limit not 255.
    VrrpBadTtl = "vrrp_bad_ttl",
    /// VRRP fast path drop reason: length inconsistent with the address count.
    VrrpBadLength = "vrrp_bad_length",
    /// VRRP fast path drop reason: checksum.
    VrrpBadChecksum = "vrrp_bad_checksum",
    /// VRRP fast path drop reason: unknown auth type.
    VrrpBadAuthType = "vrrp_bad_auth_type",
    /// VRRP fast path drop reason: auth type differs from the instance's.
    VrrpAuthTypeMismatch = "vrrp_auth_type_mismatch",
    /// VRRP fast path drop reason: password mismatch.
    VrrpAuthFailure = "vrrp_auth_failure",
    /// VRRP fast path: an IPv4 IPsec AH packet carrying VRRP (keepalived `auth_type AH`)
    /// passed to userspace, which alone validates AH.
    VrrpAhPass = "vrrp_ah_pass",
    /// VRRP fast path drop reason: AH header (not checked in XDP: only userspace validates AH).
    VrrpAhBadHeader = "vrrp_ah_bad_header",
    /// VRRP fast path drop reason: AH ICV (not checked in XDP).
    VrrpAhBadIcv = "vrrp_ah_bad_icv",
    /// VRRP fast path drop reason: AH SPI (not checked in XDP).
    VrrpAhBadSpi = "vrrp_ah_bad_spi",
    /// VRRP fast path drop reason: AH sequence number (not checked in XDP).
    VrrpAhReplay = "vrrp_ah_replay",
    /// VRRP fast path drop reason: VRRPv2 interval mismatch.
    VrrpAdverIntMismatch = "vrrp_adver_int_mismatch",
    /// VRRP fast path drop reason: no instance with this VRID on the interface.
    VrrpVridMismatch = "vrrp_vrid_mismatch",
    /// VRRP fast path drop reason: address count (not checked in XDP; for completeness).
    VrrpAddrCountMismatch = "vrrp_addr_count_mismatch",
    /// VRRP fast path drop reason: address list (not checked in XDP; for completeness).
    VrrpAddrListMismatch = "vrrp_addr_list_mismatch",
    /// VRRP fast path drop reason: unicast source not a peer (not checked in XDP).
    VrrpNotUnicastPeer = "vrrp_not_unicast_peer",
    /// Decap: an IPIP packet to a local VIP was decapsulated.
    DecapIpip = "decap_ipip",
    /// Decap: an IP6IP6 packet to a local VIP was decapsulated.
    DecapIp6ip6 = "decap_ip6ip6",
    /// Decap: a tunnel packet whose inner destination is not a local VIP (passed).
    DecapNotLocal = "decap_not_local",
    /// Decap: a tunnel packet whose inner header is cut short (passed untouched).
    DecapMalformed = "decap_malformed",
    /// Sync: a new flow was queued for the sync sender (MASTER with `lvs_sync_daemon`).
    SyncEvent = "sync_event",
    /// Sync: the sync ring was full; the flow is forwarded but not synced.
    SyncEventLost = "sync_event_lost",
    /// Sync: an entry received from the MASTER was installed (connection, NAT reverse or
    /// persistence template).
    SyncInstalled = "sync_installed",
    /// Sync: an install record was refused by the install program (unknown kind or family, a
    /// backend id that is unused or of another family).
    SyncInstallBad = "sync_install_bad",
    /// VRRP fast path drop reason: a valid advert below the instance's reference priority
    /// (lower than ours while MASTER, than the known master's otherwise) beyond the instance's
    /// budget of `vrrp_fast::VRRP_RATE_PER_INTERVAL` per advert interval (an advert flood).
    VrrpLowerPrioLimited = "vrrp_lower_prio_limited",
    /// Pass: a packet to a service (or an ICMP error about one of its flows) in a frame
    /// addressed to another host's MAC (flooded by a switch, or seen in promiscuous mode): only
    /// the director it is addressed to forwards it.
    PassNotOurMac = "pass_not_our_mac",
    /// LB flood mode: a CPU recorded more new unassured connection-table entries (a TCP SYN,
    /// a first UDP datagram) in one second than `lvs_flood_rate`; counted once per CPU and
    /// second of flood.
    LbFloodMode = "lb_flood_mode",
    /// LB flood mode: a new flow of a consistent-hash service (`mh`, `sh`, `dh`) got no
    /// connection-table entry (its scheduler gives its next packets the same backend; its
    /// entry is recorded once it is established).
    LbConnFloodSkip = "lb_conn_flood_skip",
    /// LB flood mode: a new flow of another scheduler got no connection-table entry because
    /// every way of its set holds an assured entry (established connections are not evicted
    /// for unassured ones during a flood).
    LbConnSetFull = "lb_conn_set_full",
    /// LB: a new entry took the way of another flow's unassured entry (its set was full).
    LbConnEvicted = "lb_conn_evicted",
    /// LB: a new entry took the way of another flow's assured entry (an established
    /// connection, a UDP flow seen twice): its set held nothing else. Outside a flood this is
    /// a table too small for the connections it holds.
    LbConnEvictedAssured = "lb_conn_evicted_assured",
}

impl Counter {
    /// The counter of a VRRP drop reason (the fast path counts every reason it checks).
    #[inline(always)]
    pub const fn vrrp_drop(reason: crate::vrrp::DropReason) -> Counter {
        use crate::vrrp::DropReason as R;
        match reason {
            R::TooShort => Counter::VrrpTooShort,
            R::BadVersion => Counter::VrrpBadVersion,
            R::BadType => Counter::VrrpBadType,
            R::BadTtl => Counter::VrrpBadTtl,
            R::BadLength => Counter::VrrpBadLength,
            R::BadChecksum => Counter::VrrpBadChecksum,
            R::BadAuthType => Counter::VrrpBadAuthType,
            R::AuthTypeMismatch => Counter::VrrpAuthTypeMismatch,
            R::AuthFailure => Counter::VrrpAuthFailure,
            R::AhBadHeader => Counter::VrrpAhBadHeader,
            R::AhBadIcv => Counter::VrrpAhBadIcv,
            R::AhBadSpi => Counter::VrrpAhBadSpi,
            R::AhReplay => Counter::VrrpAhReplay,
            R::AdverIntMismatch => Counter::VrrpAdverIntMismatch,
            R::VridMismatch => Counter::VrrpVridMismatch,
            R::AddrCountMismatch => Counter::VrrpAddrCountMismatch,
            R::AddrListMismatch => Counter::VrrpAddrListMismatch,
            R::NotUnicastPeer => Counter::VrrpNotUnicastPeer,
        }
    }
}

/// Number of counters: the length of [`Counters`].
pub const COUNTER_COUNT: u32 = Counter::ALL.len() as u32;

/// The value of `KA_STATS` (one entry, per CPU): every counter, indexed by [`Counter::index`].
pub type Counters = [u64; COUNTER_COUNT as usize];

/// Entries of `KA_STATS`: one [`Counters`] per CPU.
pub const STATS_ENTRIES: u32 = 1;

/// Per-CPU bundle counts, `PerCpuArray<Bundles>` of one entry (pinned, like `KA_STATS`): the
/// datapath's commonest exits (an IPv4 TCP or UDP segment to another host; a TCP or UDP
/// packet forwarded to a real server) count several counters at once with one increment of a
/// bundle instead of one lookup and increment per counter; userspace adds each bundle to its
/// counters ([`add_bundles`]), so every named counter reads as if it had been counted on its
/// own.
pub const STATS_BUNDLES_MAP: &str = "KA_STATS_BUNDLES";

/// Slots of a [`Bundles`] value: room for the bundles later builds add. Bundle numbers are
/// never reused, so a ka adopting an earlier one's map (or folding a shorter value into its
/// own, `KA_STATS_BUNDLES` of 2 slots before the forwarding bundles) reads every count as
/// before.
pub const BUNDLE_SLOTS: usize = 64;

/// Counters of one bundle: up to five, `None` past its end.
pub type BundleCounters = [Option<Counter>; 5];

/// Index of the bundle of an IPv4 TCP segment passed as not to a VIP.
pub const BUNDLE_NOT_VIP_TCP4: usize = 0;
/// Index of the bundle of an IPv4 UDP datagram passed as not to a VIP.
pub const BUNDLE_NOT_VIP_UDP4: usize = 1;
/// First bundle of a TCP/UDP packet the load balancer forwarded (not an ICMP error about a
/// flow): [`forward_bundle`] numbers the 48 from here.
pub const BUNDLE_FORWARD: usize = 2;
/// Bundles in use (the rest of [`BUNDLE_SLOTS`] is free).
pub const BUNDLES_USED: usize = BUNDLE_FORWARD + 48;

/// The bundle of a TCP/UDP packet forwarded by `method` (0 DR, 1 TUN, 2 NAT: the
/// `ka_common::lb::METHOD_*` value minus 1), of an IPv6 (`v6`) or IPv4 flow, UDP (`udp`) or
/// TCP, sent by `XDP_REDIRECT` (`redirect`) or `XDP_TX`, its backend found in the connection
/// table (`hit`: `lb_conn_hit`) or not. Its counters: the family's and protocol's (as the
/// parser counts them), the method's (`lb_dr`, `lb_tun`, `lb_nat`), the verdict and
/// `lb_conn_hit` for a hit.
#[inline(always)]
pub const fn forward_bundle(method: u32, v6: bool, udp: bool, redirect: bool, hit: bool) -> usize {
    BUNDLE_FORWARD + (method as usize % 3) * 16 + (v6 as usize) * 8 + (udp as usize) * 4 + (redirect as usize) * 2 + hit as usize
}

/// What bundle `i` stands for: one count of each of its counters (none for a free slot).
pub const fn bundle_counters(i: usize) -> BundleCounters {
    match i {
        BUNDLE_NOT_VIP_TCP4 => [Some(Counter::Ipv4), Some(Counter::Tcp), Some(Counter::PassNotVip), Some(Counter::VerdictPass), None],
        BUNDLE_NOT_VIP_UDP4 => [Some(Counter::Ipv4), Some(Counter::Udp), Some(Counter::PassNotVip), Some(Counter::VerdictPass), None],
        _ if i >= BUNDLE_FORWARD && i < BUNDLES_USED => {
            let f = i - BUNDLE_FORWARD;
            let method = match f / 16 {
                0 => Counter::LbDr,
                1 => Counter::LbTun,
                _ => Counter::LbNat,
            };
            let family = if f & 8 != 0 { Counter::Ipv6 } else { Counter::Ipv4 };
            let proto = if f & 4 != 0 { Counter::Udp } else { Counter::Tcp };
            let verdict = if f & 2 != 0 { Counter::VerdictRedirect } else { Counter::VerdictTx };
            let hit = if f & 1 != 0 { Some(Counter::LbConnHit) } else { None };
            [Some(family), Some(proto), Some(method), Some(verdict), hit]
        }
        _ => [None; 5],
    }
}

/// The value of [`STATS_BUNDLES_MAP`]: the count of each bundle.
pub type Bundles = [u64; BUNDLE_SLOTS];

/// Adds the bundle counts `bundles` (of any length: an earlier ka's shorter value too) to the
/// counter sums `sum` (indexed by [`Counter::index`]).
pub fn add_bundles(sum: &mut Counters, bundles: &[u64]) {
    for (i, n) in bundles.iter().enumerate() {
        for c in bundle_counters(i).into_iter().flatten() {
            sum[c.index() as usize] = sum[c.index() as usize].wrapping_add(*n);
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

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

    /// A bundle adds one of each of its counters per count, and nothing else.
    #[test]
    fn forwarding_bundles_stand_for_their_counters() {
        let mut seen = std::collections::BTreeSet::new();
        for (method, counter) in [(0, Counter::LbDr), (1, Counter::LbTun), (2, Counter::LbNat)] {
            for v6 in [false, true] {
                for udp in [false, true] {
                    for redirect in [false, true] {
                        for hit in [false, true] {
                            let i = forward_bundle(method, v6, udp, redirect, hit);
                            assert!((BUNDLE_FORWARD..BUNDLES_USED).contains(&i));
                            assert!(seen.insert(i), "bundle {i} twice");
                            let mut want = vec![
                                if v6 { Counter::Ipv6 } else { Counter::Ipv4 },
                                if udp { Counter::Udp } else { Counter::Tcp },
                                counter,
                                if redirect { Counter::VerdictRedirect } else { Counter::VerdictTx },
                            ];
                            if hit {
                                want.push(Counter::LbConnHit);
                            }
                            let got: Vec<Counter> = bundle_counters(i).into_iter().flatten().collect();
                            assert_eq!(got, want, "method {method} v6 {v6} udp {udp} redirect {redirect} hit {hit}");
                        }
                    }
                }
            }
        }
        assert_eq!(seen.len(), BUNDLES_USED - BUNDLE_FORWARD);
        // The method numbers are the configuration's minus 1.
        assert_eq!(forward_bundle(u32::from(crate::lb::METHOD_NAT) - 1, false, false, false, false), BUNDLE_FORWARD + 32);
    }

    #[test]
    fn bundles_add_their_counters() {
        let mut sum = [0u64; COUNTER_COUNT as usize];
        sum[Counter::Ipv4.index() as usize] = 10;
        let mut bundles = [0u64; BUNDLE_SLOTS];
        bundles[BUNDLE_NOT_VIP_TCP4] = 3;
        bundles[BUNDLE_NOT_VIP_UDP4] = 2;
        add_bundles(&mut sum, &bundles);
        let get = |c: Counter| sum[c.index() as usize];
        assert_eq!(
            (get(Counter::Ipv4), get(Counter::Tcp), get(Counter::Udp), get(Counter::PassNotVip), get(Counter::VerdictPass)),
            (15, 3, 2, 5, 5)
        );
        assert_eq!(sum.iter().sum::<u64>(), 15 + 3 + 2 + 5 + 5);
        // Each bundle in use counts exactly one verdict, one family and one protocol; the
        // free slots count nothing.
        for i in 0..BUNDLE_SLOTS {
            let b: Vec<Counter> = bundle_counters(i).into_iter().flatten().collect();
            if i >= BUNDLES_USED {
                assert!(b.is_empty(), "slot {i}");
                continue;
            }
            assert_eq!(b.iter().filter(|c| c.name().starts_with("verdict_")).count(), 1, "bundle {i}");
            assert_eq!(b.iter().filter(|c| matches!(c, Counter::Ipv4 | Counter::Ipv6)).count(), 1, "bundle {i}");
            assert_eq!(b.iter().filter(|c| matches!(c, Counter::Tcp | Counter::Udp)).count(), 1, "bundle {i}");
        }
    }
}
