//! Receive-side validation rules (RFC 3768 §7.1, RFC 5798 §7.1, keepalived's extra checks) as
//! small pure functions, and [`validate`], which chains them for userspace.

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

/// keepalived's `authentication` of a VRRPv2 instance over IPv4: none, a simple password, or
/// IPsec AH (see [`super::ah`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Auth {
    /// No authentication (Auth Type 0).
    #[default]
    None,
    /// Simple password (Auth Type 1, keepalived `auth_type PASS`): the first 8 bytes of
    /// `auth_pass`, zero-padded.
    Pass([u8; VRRP_AUTH_DATA_LEN]),
    /// IPsec AH (Auth Type 2, keepalived `auth_type AH`): the HMAC-MD5 key, the first 8 bytes
    /// of `auth_pass`, zero-padded. The VRRP message's Authentication Data is zero.
    Ah([u8; VRRP_AUTH_DATA_LEN]),
}

/// The first 8 bytes of `password`, zero-padded (keepalived's `auth_data`).
#[inline]
fn auth_data(password: &[u8]) -> [u8; VRRP_AUTH_DATA_LEN] {
    let mut data = [0; VRRP_AUTH_DATA_LEN];
    for (d, s) in data.iter_mut().zip(password) {
        *d = *s;
    }
    data
}

impl Auth {
    /// A simple password: like keepalived, only the first 8 bytes count, zero-padded.
    #[inline]
    pub fn pass(password: &[u8]) -> Auth {
        Auth::Pass(auth_data(password))
    }

    /// IPsec AH keyed with `password`: like keepalived, only the first 8 bytes count,
    /// zero-padded.
    #[inline]
    pub fn ah(password: &[u8]) -> Auth {
        Auth::Ah(auth_data(password))
    }

    /// The authentication for a configured auth type and password.
    #[inline]
    pub fn from_config(auth_type: AuthType, password: &[u8]) -> Auth {
        match auth_type {
            AuthType::None => Auth::None,
            AuthType::Pass => Auth::pass(password),
            AuthType::Ah => Auth::ah(password),
        }
    }

    /// Auth Type sent on the wire.
    #[inline]
    pub fn auth_type(&self) -> AuthType {
        match self {
            Auth::None => AuthType::None,
            Auth::Pass(_) => AuthType::Pass,
            Auth::Ah(_) => AuthType::Ah,
        }
    }

    /// Authentication Data sent on the wire (zero but for a password).
    #[inline]
    pub fn data(&self) -> [u8; VRRP_AUTH_DATA_LEN] {
        match self {
            Auth::None | Auth::Ah(_) => [0; VRRP_AUTH_DATA_LEN],
            Auth::Pass(p) => *p,
        }
    }

    /// The AH key, for [`Auth::Ah`].
    #[inline]
    pub fn ah_key(&self) -> Option<&super::ah::AhKey> {
        match self {
            Auth::Ah(k) => Some(k),
            _ => None,
        }
    }
}

/// RFC 2338 §7.1 (kept by keepalived for VRRPv2): "MUST perform authentication specified by
/// Auth Type". VRRPv3 has no authentication: always `Ok`. For AH this checks the Auth Type
/// only: the ICV, SPI and sequence number are checked on the whole IP packet beforehand
/// ([`super::ah::AhAdvert::verify`], [`super::ah::AhSeq::receive`]).
///
/// # Errors
///
/// [`DropReason::BadAuthType`], [`DropReason::AuthTypeMismatch`],
/// [`DropReason::AuthFailure`].
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
    let Some(rx) = AuthType::from_u8(auth_type) else {
        return Err(DropReason::BadAuthType);
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
