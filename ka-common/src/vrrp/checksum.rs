//! Internet checksum (RFC 1071) of VRRP messages, with the pseudo-header flavours in use.
//!
//! - VRRPv2 covers the VRRP message only (RFC 3768 §5.3.8).
//! - VRRPv3 prepends the IPv4 or IPv6 pseudo-header (RFC 5798 §5.2.8; RFC 8200 §8.1 for IPv6).
//! - keepalived's `old_unicast_checksum`: VRRPv3 over IPv4 unicast, computed with the multicast
//!   group as pseudo-header destination instead of the unicast peer (keepalived ≤ 1.3.6).
//! - Some vendors send VRRPv3 over IPv4 with the VRRPv2 rule (no pseudo-header).

use core::net::IpAddr;

use super::{Family, Version, VRRP_MAX_LEN, VRRP_MCAST_V4};
use crate::wire::IPPROTO_VRRP;

/// Which VRRPv3 checksum an instance sends and accepts. Configuration, never a guess.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum V3Checksum {
    /// RFC 5798 §5.2.8: pseudo-header with the packet's real source and destination.
    #[default]
    Standard,
    /// keepalived `old_unicast_checksum`: over IPv4, the pseudo-header destination is the
    /// multicast group (224.0.0.18 unless `mcast_dst_ip` says otherwise) even when the advert is
    /// unicast. Over IPv6 the kernel computes the checksum, so this is [`V3Checksum::Standard`].
    OldUnicast,
    /// Over IPv4, no pseudo-header (the VRRPv2 rule), as some vendors send. Over IPv6 this is
    /// [`V3Checksum::Standard`].
    NoPseudoHeader,
}

/// The pseudo-header a checksum starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PseudoHeader {
    /// No pseudo-header: VRRPv2, or the vendor VRRPv3-over-IPv4 flavour.
    None,
    /// IPv4 pseudo-header: source, destination, zero, protocol 112, VRRP length.
    V4 {
        /// Source address, network order.
        src: [u8; 4],
        /// Destination address used in the sum, network order.
        dst: [u8; 4],
    },
    /// IPv6 pseudo-header: source, destination, upper-layer length, zero, next header 112.
    V6 {
        /// Source address, network order.
        src: [u8; 16],
        /// Destination address, network order.
        dst: [u8; 16],
    },
}

impl PseudoHeader {
    /// The pseudo-header for an advert of `version` from `src` to `dst`, with the configured
    /// VRRPv3 flavour. `group_v4` is the IPv4 multicast group (for `old_unicast_checksum`;
    /// [`VRRP_MCAST_V4`] by default). Mixed families give [`PseudoHeader::None`].
    #[inline]
    pub fn for_advert(
        version: Version,
        mode: V3Checksum,
        src: IpAddr,
        dst: IpAddr,
        group_v4: Option<core::net::Ipv4Addr>,
    ) -> PseudoHeader {
        if version == Version::V2 {
            return PseudoHeader::None;
        }
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => match mode {
                V3Checksum::Standard => PseudoHeader::V4 {
                    src: s.octets(),
                    dst: d.octets(),
                },
                V3Checksum::OldUnicast => PseudoHeader::V4 {
                    src: s.octets(),
                    dst: group_v4.unwrap_or(VRRP_MCAST_V4).octets(),
                },
                V3Checksum::NoPseudoHeader => PseudoHeader::None,
            },
            (IpAddr::V6(s), IpAddr::V6(d)) => PseudoHeader::V6 {
                src: s.octets(),
                dst: d.octets(),
            },
            _ => PseudoHeader::None,
        }
    }

    /// The family of the pseudo-header, if any.
    #[inline]
    pub fn family(&self) -> Option<Family> {
        match self {
            PseudoHeader::None => None,
            PseudoHeader::V4 { .. } => Some(Family::V4),
            PseudoHeader::V6 { .. } => Some(Family::V6),
        }
    }

    /// One's complement partial sum of the pseudo-header for a VRRP message of `len` bytes.
    #[inline]
    pub fn partial_sum(&self, len: usize) -> u32 {
        // VRRP_MAX_LEN < 65536 so the cast cannot lose bits for a valid message; longer input
        // is refused by the callers before it gets here.
        let len = (len & 0xffff) as u32;
        match self {
            PseudoHeader::None => 0,
            PseudoHeader::V4 { src, dst } => {
                csum_add(csum_add(0, src), dst) + u32::from(IPPROTO_VRRP) + len
            }
            PseudoHeader::V6 { src, dst } => {
                csum_add(csum_add(0, src), dst) + u32::from(IPPROTO_VRRP) + len
            }
        }
    }
}

/// Adds `data` to a one's complement partial sum, 16 bits at a time in network order (an odd
/// trailing byte is padded with zero). Reads at most [`VRRP_MAX_LEN`] bytes, so the loop is
/// bounded for the eBPF verifier. Never overflows: 2048 words of 0xffff fit in 28 bits.
#[inline]
pub fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut i = 0;
    while i < VRRP_MAX_LEN {
        match (data.get(i), data.get(i + 1)) {
            (Some(&hi), Some(&lo)) => sum += u32::from(u16::from_be_bytes([hi, lo])),
            (Some(&hi), None) => {
                sum += u32::from(hi) << 8;
                break;
            }
            _ => break,
        }
        i += 2;
    }
    sum
}

/// Folds a partial sum to 16 bits and complements it.
#[inline]
pub fn csum_fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Checksum of the VRRP message `msg` (from the version octet to the end of the message) with
/// `pseudo` prepended, taking `msg`'s checksum field as it is. A received message verifies when
/// this returns 0; to fill a checksum, zero the field first and store the result.
#[inline]
pub fn checksum(msg: &[u8], pseudo: &PseudoHeader) -> u16 {
    csum_fold(csum_add(pseudo.partial_sum(msg.len()), msg))
}

/// Which VRRPv3 flavour a received IPv4 advert's checksum verifies with, trying
/// [`V3Checksum::Standard`], then [`V3Checksum::OldUnicast`], then
/// [`V3Checksum::NoPseudoHeader`]. For logging a mismatch and for keepalived's auto-detection of
/// old checksums; acceptance itself follows the configured flavour.
pub fn detect_v3_checksum(
    msg: &[u8],
    src: IpAddr,
    dst: IpAddr,
    group_v4: Option<core::net::Ipv4Addr>,
) -> Option<V3Checksum> {
    [
        V3Checksum::Standard,
        V3Checksum::OldUnicast,
        V3Checksum::NoPseudoHeader,
    ]
    .into_iter()
    .find(|&mode| {
        checksum(
            msg,
            &PseudoHeader::for_advert(Version::V3, mode, src, dst, group_v4),
        ) == 0
    })
}
