//! VRRP adverts (VRRPv2, RFC 3768; VRRPv3, RFC 5798) over IPv4 and IPv6: constants, wire layout,
//! allocation-free codec and the validation rules shared by the XDP program and userspace.
//!
//! Everything here is `no_std` without `alloc`. The validation pieces ([`check_version_type`],
//! [`check_len`], [`check_ttl`], [`checksum`], [`check_auth`], ...) are small, `#[inline]`,
//! panic-free functions with loops bounded by [`VRRP_MAX_LEN`], so the eBPF side can call them or
//! mirror them. [`validate`] chains them in the order of RFC 5798 §7.1 for userspace.
//!
//! Interop variants are configuration, never guesses: the VRRPv3 checksum flavour is chosen with
//! [`V3Checksum`] (keepalived's `old_unicast_checksum`, or a checksum without pseudo-header as
//! some vendors send over IPv4).
//!
//! VRRPv2 authentication is keepalived's: none, a simple password, or IPsec AH ([`ah`]: the
//! advert is an IPv4 packet of protocol 51 with the VRRP message after an AH header whose
//! HMAC-MD5-96 ICV only userspace checks).

mod advert;
pub mod ah;
mod checksum;
mod header;
mod reason;
mod validate;

#[cfg(test)]
mod ah_tests;
#[cfg(test)]
mod tests;

use core::net::{Ipv4Addr, Ipv6Addr};

pub use advert::{AddrIter, AddrList, Advert, AdvertV2, AdvertV3, DecodeError, EncodeError};
pub use checksum::{checksum, csum_add, csum_fold, detect_v3_checksum, PseudoHeader, V3Checksum};
pub use header::VrrpHdr;
pub use reason::DropReason;
pub use validate::{
    check_adver_int_v2, check_auth, check_len, check_ttl, check_version_type, check_vrid,
    expected_len, validate, Auth, RxCheck,
};

pub use crate::wire::{IPPROTO_AH, IPPROTO_VRRP};

/// IPv4 multicast group of VRRP adverts, 224.0.0.18 (RFC 3768 §5.2.2, RFC 5798 §5.1.1.2).
pub const VRRP_MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group of VRRP adverts, ff02::12 (RFC 5798 §5.1.2.2).
pub const VRRP_MCAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// IPv4 TTL / IPv6 Hop Limit of every advert; receivers drop anything else
/// (RFC 3768 §5.2.3, RFC 5798 §5.1.1.3 and §5.1.2.3).
pub const VRRP_TTL: u8 = 255;
/// Length of the fixed VRRP header (version/type to checksum), in bytes.
pub const VRRP_HDR_LEN: usize = 8;
/// Length of the VRRPv2 Authentication Data trailer (RFC 3768 §5.3.10), in bytes.
pub const VRRP_AUTH_DATA_LEN: usize = 8;
/// Most addresses an advert can carry (the Count IPvX Addrs field is 8 bits).
pub const VRRP_MAX_ADDRS: usize = 255;
/// Longest VRRP message (header, 255 IPv6 addresses and an auth trailer), in bytes. Every loop
/// over a message is bounded by this.
pub const VRRP_MAX_LEN: usize = VRRP_HDR_LEN + VRRP_MAX_ADDRS * 16 + VRRP_AUTH_DATA_LEN;
/// The only packet type: ADVERTISEMENT (RFC 3768 §5.3.2, RFC 5798 §5.2.2).
pub const VRRP_TYPE_ADVERT: u8 = 1;
/// Priority of the router that owns the virtual addresses (RFC 5798 §5.2.4).
pub const VRRP_PRIO_OWNER: u8 = 255;
/// Priority a Master sends when it stops being Master (RFC 5798 §5.2.4).
pub const VRRP_PRIO_STOP: u8 = 0;
/// Default priority of a backup router (RFC 5798 §5.2.4).
pub const VRRP_PRIO_DEFAULT: u8 = 100;
/// Largest VRRPv3 Max Adver Int, in centiseconds (12-bit field, RFC 5798 §5.2.7).
pub const VRRP_V3_MAX_ADVER_INT: u16 = 0x0fff;
/// VRRPv2 Auth Type: no authentication (RFC 3768 §5.3.6.1).
pub const VRRP_AUTH_NONE: u8 = 0;
/// VRRPv2 Auth Type 1: simple text password, keepalived's `PASS` (RFC 2338 §5.3.6.2).
pub const VRRP_AUTH_PASS: u8 = 1;
/// VRRPv2 Auth Type 2: IP Authentication Header, keepalived's `AH` (RFC 2338 §5.3.6.3; see
/// [`ah`]).
pub const VRRP_AUTH_AH: u8 = 2;

/// VRRP protocol version (the high nibble of the first octet).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// VRRPv2, RFC 3768 (keepalived also runs it over IPv6, without the auth trailer).
    V2 = 2,
    /// VRRPv3, RFC 5798.
    V3 = 3,
}

impl Version {
    /// The version for a wire value, if it is 2 or 3.
    #[inline(always)]
    pub const fn from_u8(v: u8) -> Option<Version> {
        match v {
            2 => Some(Version::V2),
            3 => Some(Version::V3),
            _ => None,
        }
    }
}

/// Address family the advert travels over; it sets the size of each address in the message.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4: 4-byte addresses.
    V4,
    /// IPv6: 16-byte addresses.
    V6,
}

impl Family {
    /// Size of one address, in bytes.
    #[inline(always)]
    pub const fn addr_len(self) -> usize {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
        }
    }
}

/// VRRPv2 Auth Type values (RFC 3768 §5.3.6, RFC 2338 §5.3.6).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthType {
    /// 0: no authentication.
    None = VRRP_AUTH_NONE,
    /// 1: simple text password (keepalived `auth_type PASS`).
    Pass = VRRP_AUTH_PASS,
    /// 2: IPsec AH (keepalived `auth_type AH`, see [`ah`]).
    Ah = VRRP_AUTH_AH,
}

impl AuthType {
    /// The auth type for a wire value, if known.
    #[inline(always)]
    pub const fn from_u8(v: u8) -> Option<AuthType> {
        match v {
            VRRP_AUTH_NONE => Some(AuthType::None),
            VRRP_AUTH_PASS => Some(AuthType::Pass),
            VRRP_AUTH_AH => Some(AuthType::Ah),
            _ => None,
        }
    }
}
