//! Receive-side validation rules (RFC 3768 §7.1, RFC 5798 §7.1, keepalived's extra checks) as
//! small pure functions, and [`validate`], which chains them for userspace.

use core::fmt;
use core::net::IpAddr;

use super::checksum::{checksum, PseudoHeader};
use super::{
    Advert, AuthType, DropReason, Family, Version, VRRP_AUTH_DATA_LEN, VRRP_HDR_LEN, VRRP_TTL,
    VRRP_TYPE_ADVERT,
};

/// Length in bytes of a message of `version` over `family` carrying `count_ip` addresses:
/// header, addresses and, for VRRPv2 over IPv4, the 8-byte Authentication Data.
#[inline(always)]
pub const fn expected_len(version: Version, family: Family, count_ip: u8) -> usize {
    let base = VRRP_HDR_LEN + (count_ip as usize) * family.addr_len();
    match (version, family) {
        (Version::V2, Family::V4) => base + VRRP_AUTH_DATA_LEN,
        _ => base,
    }
}

/// RFC 5798 §7.1: "MUST verify that the VRRP version is valid" (the one the instance runs) and
/// that the type is ADVERTISEMENT. Takes the first octet of the message.
///
/// # Errors
///
/// [`DropReason::BadVersion`], [`DropReason::BadType`].
#[inline(always)]
pub const fn check_version_type(vers_type: u8, expected: Version) -> Result<(), DropReason> {
    if vers_type >> 4 != expected as u8 {
        return Err(DropReason::BadVersion);
    }
    if vers_type & 0x0f != VRRP_TYPE_ADVERT {
        return Err(DropReason::BadType);
    }
    Ok(())
}

/// RFC 5798 §7.1: "MUST verify that the received packet contains the complete VRRP packet
/// (including fixed fields, and IPvX address(es))"; like keepalived, trailing bytes are refused.
///
/// # Errors
///
/// [`DropReason::TooShort`] below the fixed header, [`DropReason::BadLength`] otherwise.
#[inline(always)]
pub const fn check_len(
    len: usize,
    version: Version,
    family: Family,
    count_ip: u8,
) -> Result<(), DropReason> {
    if len < VRRP_HDR_LEN {
        Err(DropReason::TooShort)
    } else if len != expected_len(version, family, count_ip) {
        Err(DropReason::BadLength)
    } else {
        Ok(())
    }
}

/// RFC 5798 §7.1: "MUST verify that the IPv4 TTL/IPv6 Hop Limit is 255". keepalived skips this
/// for unicast peers (the caller decides).
///
/// # Errors
///
/// [`DropReason::BadTtl`].
#[inline(always)]
pub const fn check_ttl(ttl: u8) -> Result<(), DropReason> {
    if ttl == VRRP_TTL {
        Ok(())
    } else {
        Err(DropReason::BadTtl)
    }
}

/// RFC 5798 §7.1: "MUST verify that the VRID is configured on the receiving interface".
///
/// # Errors
///
/// [`DropReason::VridMismatch`].
#[inline(always)]
pub const fn check_vrid(vrid: u8, local: u8) -> Result<(), DropReason> {
    if vrid == local {
        Ok(())
    } else {
        Err(DropReason::VridMismatch)
    }
}

/// RFC 3768 §7.1: "MUST verify that the Adver Interval in the packet is the same as the locally
/// configured for this virtual router" (VRRPv2 only; seconds against centiseconds).
///
/// # Errors
///
/// [`DropReason::AdverIntMismatch`].
#[inline(always)]
pub const fn check_adver_int_v2(adver_int_secs: u8, local_centis: u16) -> Result<(), DropReason> {
    if adver_int_secs as u32 * 100 == local_centis as u32 {
        Ok(())
    } else {
        Err(DropReason::AdverIntMismatch)
    }
}

/// keepalived's `authentication` of a VRRPv2 instance: none or a simple password. AH is refused
/// with [`AhNotSupported`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Auth {
    /// No authentication (Auth Type 0).
    #[default]
    None,
    /// Simple password (Auth Type 1, keepalived `auth_type PASS`): the first 8 bytes of
    /// `auth_pass`, zero-padded.
    Pass([u8; VRRP_AUTH_DATA_LEN]),
}

/// keepalived's `auth_type AH` is configured: ka does not implement IPsec AH authentication.
/// The config checker reports this error for the instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AhNotSupported;

impl fmt::Display for AhNotSupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "auth_type AH (IPsec AH, RFC 2338) is not supported; use auth_type PASS or no authentication",
        )
    }
}

impl core::error::Error for AhNotSupported {}

impl Auth {
    /// A simple password: like keepalived, only the first 8 bytes count, zero-padded.
    #[inline]
    pub fn pass(password: &[u8]) -> Auth {
        let mut data = [0; VRRP_AUTH_DATA_LEN];
        for (d, s) in data.iter_mut().zip(password) {
            *d = *s;
        }
        Auth::Pass(data)
    }

    /// The authentication for a configured auth type and password.
    ///
    /// # Errors
    ///
    /// [`AhNotSupported`] for [`AuthType::Ah`].
    #[inline]
    pub fn from_config(auth_type: AuthType, password: &[u8]) -> Result<Auth, AhNotSupported> {
        match auth_type {
            AuthType::None => Ok(Auth::None),
            AuthType::Pass => Ok(Auth::pass(password)),
            AuthType::Ah => Err(AhNotSupported),
        }
    }

    /// Auth Type sent on the wire.
    #[inline]
    pub fn auth_type(&self) -> AuthType {
        match self {
            Auth::None => AuthType::None,
            Auth::Pass(_) => AuthType::Pass,
        }
    }

    /// Authentication Data sent on the wire.
    #[inline]
    pub fn data(&self) -> [u8; VRRP_AUTH_DATA_LEN] {
        match self {
            Auth::None => [0; VRRP_AUTH_DATA_LEN],
            Auth::Pass(p) => *p,
        }
    }
}

/// RFC 2338 §7.1 (kept by keepalived for VRRPv2): "MUST perform authentication specified by
/// Auth Type". VRRPv3 has no authentication: always `Ok`.
///
/// # Errors
///
/// [`DropReason::BadAuthType`], [`DropReason::AuthAhUnsupported`],
/// [`DropReason::AuthTypeMismatch`], [`DropReason::AuthFailure`].
#[inline(always)]
pub fn check_auth(
    version: Version,
    auth_type: u8,
    auth_data: &[u8; VRRP_AUTH_DATA_LEN],
    local: &Auth,
) -> Result<(), DropReason> {
    if version == Version::V3 {
        return Ok(());
    }
    let rx = match AuthType::from_u8(auth_type) {
        None => return Err(DropReason::BadAuthType),
        Some(AuthType::Ah) => return Err(DropReason::AuthAhUnsupported),
        Some(t) => t,
    };
    if rx != local.auth_type() {
        return Err(DropReason::AuthTypeMismatch);
    }
    match local {
        Auth::Pass(p) if p != auth_data => Err(DropReason::AuthFailure),
        _ => Ok(()),
    }
}

/// What an instance expects of a received advert, for [`validate`].
#[derive(Clone, Copy, Debug)]
pub struct RxCheck<'c> {
    /// VRRP version the instance runs.
    pub version: Version,
    /// Address family the advert came over.
    pub family: Family,
    /// The instance's VRID.
    pub vrid: u8,
    /// Check TTL/Hop Limit 255 (keepalived: multicast only).
    pub check_ttl: bool,
    /// Pseudo-header for the checksum ([`PseudoHeader::for_advert`] with the configured
    /// flavour; [`PseudoHeader::None`] for VRRPv2). `None` skips the checksum, for IPv6 sockets
    /// where the kernel verified it (`IPV6_CHECKSUM`).
    pub pseudo: Option<PseudoHeader>,
    /// VRRPv2 authentication.
    pub auth: Auth,
    /// Local advert interval in centiseconds (VRRPv2 must match).
    pub adver_int_centis: u16,
    /// Configured virtual addresses. When `Some`, the count must match and each must be present
    /// (keepalived; `skip_check_adv_addr` passes `None`).
    pub vips: Option<&'c [IpAddr]>,
}

/// Runs the receive checks of RFC 5798 §7.1 / RFC 3768 §7.1 (and keepalived's) on the VRRP
/// message `msg` (the IP payload) that arrived with TTL/Hop Limit `ttl`, in RFC order: TTL,
/// version and type, length, checksum, VRID, authentication, VRRPv2 interval, addresses.
///
/// # Errors
///
/// The first failed check's [`DropReason`].
pub fn validate<'m>(msg: &'m [u8], ttl: u8, check: &RxCheck<'_>) -> Result<Advert<'m>, DropReason> {
    if check.check_ttl {
        check_ttl(ttl)?;
    }
    let first = *msg.first().ok_or(DropReason::TooShort)?;
    check_version_type(first, check.version)?;
    let advert = Advert::decode(msg, check.family).map_err(|e| e.reason())?;
    if let Some(pseudo) = &check.pseudo {
        if checksum(msg, pseudo) != 0 {
            return Err(DropReason::BadChecksum);
        }
    }
    check_vrid(advert.vrid(), check.vrid)?;
    if let Advert::V2(a) = &advert {
        check_auth(Version::V2, a.auth_type as u8, &a.auth_data, &check.auth)?;
        check_adver_int_v2(a.adver_int, check.adver_int_centis)?;
    }
    if let Some(vips) = check.vips {
        let addrs = advert.addrs();
        if addrs.len() != vips.len() {
            return Err(DropReason::AddrCountMismatch);
        }
        if !vips.iter().all(|v| addrs.contains(*v)) {
            return Err(DropReason::AddrListMismatch);
        }
    }
    Ok(advert)
}
