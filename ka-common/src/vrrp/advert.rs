//! Allocation-free decode and encode of whole adverts: one struct per RFC wire format.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum::{checksum, PseudoHeader};
use super::validate::expected_len;
use super::{
    AuthType, DropReason, Family, Version, VrrpHdr, VRRP_AUTH_DATA_LEN, VRRP_HDR_LEN,
    VRRP_MAX_ADDRS, VRRP_TYPE_ADVERT, VRRP_V3_MAX_ADVER_INT,
};

/// Why bytes are not a well-formed VRRP advert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the 8-byte fixed header.
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// Version nibble is not 2 or 3.
    BadVersion {
        /// Version received.
        version: u8,
    },
    /// Type nibble is not ADVERTISEMENT (1).
    BadType {
        /// Type received.
        kind: u8,
    },
    /// Length does not match what Count IPvX Addrs announces.
    BadLength {
        /// Length implied by the header.
        expected: usize,
        /// Bytes received.
        len: usize,
    },
    /// VRRPv2 Auth Type is not 0, 1 or 2.
    BadAuthType {
        /// Auth Type received.
        auth_type: u8,
    },
    /// An IPv4 header whose version is not 4 or whose IHL is below 5 (AH packets, which
    /// userspace reads with their IP header).
    BadIpv4 {
        /// The version/IHL octet.
        version_ihl: u8,
    },
    /// An IPv4 packet that is not of protocol 51 (AH) where an AH advert was expected.
    NotAh {
        /// Protocol received.
        protocol: u8,
    },
    /// An AH header that is not keepalived's: Next Header other than VRRP (112), or Payload
    /// Len other than 4 (96-bit ICV).
    AhBadHeader {
        /// Next Header received.
        next_header: u8,
        /// Payload Len received.
        payload_len: u8,
    },
}

impl DecodeError {
    /// The drop counter this error is counted under.
    #[inline]
    pub const fn reason(&self) -> DropReason {
        match self {
            DecodeError::TooShort { .. } => DropReason::TooShort,
            DecodeError::BadVersion { .. } => DropReason::BadVersion,
            DecodeError::BadType { .. } => DropReason::BadType,
            DecodeError::BadLength { .. } => DropReason::BadLength,
            DecodeError::BadAuthType { .. } => DropReason::BadAuthType,
            DecodeError::BadIpv4 { .. } | DecodeError::AhBadHeader { .. } => {
                DropReason::AhBadHeader
            }
            // keepalived: "No AH header but auth type is AH".
            DecodeError::NotAh { .. } => DropReason::AuthTypeMismatch,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort { len } => {
                write!(
                    f,
                    "VRRP message of {len} bytes is shorter than the 8-byte header"
                )
            }
            DecodeError::BadVersion { version } => {
                write!(f, "VRRP version {version} (want 2 or 3)")
            }
            DecodeError::BadType { kind } => write!(f, "VRRP type {kind} (want 1, ADVERTISEMENT)"),
            DecodeError::BadLength { expected, len } => {
                write!(
                    f,
                    "VRRP message of {len} bytes where its address count implies {expected}"
                )
            }
            DecodeError::BadAuthType { auth_type } => {
                write!(f, "unknown VRRPv2 auth type {auth_type}")
            }
            DecodeError::BadIpv4 { version_ihl } => {
                write!(f, "IPv4 header with version/IHL octet {version_ihl:#04x}")
            }
            DecodeError::NotAh { protocol } => {
                write!(f, "IP protocol {protocol} where IPsec AH (51) was expected")
            }
            DecodeError::AhBadHeader {
                next_header,
                payload_len,
            } => write!(
                f,
                "AH header with next header {next_header} (want 112, VRRP) and payload length \
                 {payload_len} (want 4, a 96-bit ICV)"
            ),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why an advert does not fit the output buffer or the wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The buffer is shorter than the encoded advert.
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A VRRPv3 Max Adver Int above 4095 centiseconds.
    AdverIntTooLarge {
        /// The value, in centiseconds.
        centis: u16,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferTooSmall { need, have } => {
                write!(f, "VRRP advert needs {need} bytes, buffer has {have}")
            }
            EncodeError::AdverIntTooLarge { centis } => {
                write!(f, "VRRPv3 advert interval {centis} cs exceeds 4095 cs")
            }
        }
    }
}

impl core::error::Error for EncodeError {}

/// The IPvX Address(es) of an advert: a borrowed run of 4- or 16-byte addresses in network order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrList<'a> {
    bytes: &'a [u8],
    family: Family,
}

impl<'a> AddrList<'a> {
    /// The list over `bytes`, if its length is a whole number (at most 255) of addresses.
    #[inline]
    #[expect(
        clippy::manual_is_multiple_of,
        reason = "the workspace MSRV (1.85) predates usize::is_multiple_of"
    )]
    pub fn new(bytes: &'a [u8], family: Family) -> Option<AddrList<'a>> {
        let n = family.addr_len();
        (bytes.len() % n == 0 && bytes.len() / n <= VRRP_MAX_ADDRS)
            .then_some(AddrList { bytes, family })
    }

    /// An empty list.
    #[inline]
    pub const fn empty(family: Family) -> AddrList<'static> {
        AddrList { bytes: &[], family }
    }

    /// Number of addresses (fits Count IPvX Addrs).
    #[inline]
    pub fn len(&self) -> usize {
        self.bytes.len() / self.family.addr_len()
    }

    /// Whether the list is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Address family of the addresses.
    #[inline]
    pub fn family(&self) -> Family {
        self.family
    }

    /// The raw bytes, network order.
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The `i`-th address.
    #[inline]
    pub fn get(&self, i: usize) -> Option<IpAddr> {
        let n = self.family.addr_len();
        let raw = self
            .bytes
            .get(i.checked_mul(n)?..i.checked_mul(n)?.checked_add(n)?)?;
        match self.family {
            Family::V4 => <[u8; 4]>::try_from(raw)
                .ok()
                .map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            Family::V6 => <[u8; 16]>::try_from(raw)
                .ok()
                .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        }
    }

    /// Iterates over the addresses.
    #[inline]
    pub fn iter(&self) -> AddrIter<'a> {
        AddrIter {
            list: *self,
            next: 0,
        }
    }

    /// Whether `addr` is in the list (RFC 5798 §7.1: "MAY verify that the IPvX Address(es)
    /// associated with the VRID are valid").
    #[inline]
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.iter().any(|a| a == addr)
    }
}

/// Iterator over an [`AddrList`].
#[derive(Clone, Debug)]
pub struct AddrIter<'a> {
    list: AddrList<'a>,
    next: usize,
}

impl Iterator for AddrIter<'_> {
    type Item = IpAddr;
    fn next(&mut self) -> Option<IpAddr> {
        let a = self.list.get(self.next)?;
        self.next += 1;
        Some(a)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.list.len().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for AddrIter<'_> {}

impl<'a> IntoIterator for &AddrList<'a> {
    type Item = IpAddr;
    type IntoIter = AddrIter<'a>;
    fn into_iter(self) -> AddrIter<'a> {
        self.iter()
    }
}

/// A VRRPv2 advert (RFC 3768 §5.1).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Auth Type   |   Adver Int   |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         IP Address (1)                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                            .                                  |
/// |                         IP Address (n)                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     Authentication Data (1)                   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     Authentication Data (2)                   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// keepalived also runs VRRPv2 over IPv6, with 16-byte addresses and no Authentication Data;
/// over IPv6 `auth_data` decodes as zeros and is not encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdvertV2<'a> {
    /// Virtual Router Identifier.
    pub vrid: u8,
    /// Sender's priority.
    pub priority: u8,
    /// Auth Type.
    pub auth_type: AuthType,
    /// Adver Int, in seconds.
    pub adver_int: u8,
    /// Checksum as on the wire (host order).
    pub checksum: u16,
    /// Virtual addresses.
    pub addrs: AddrList<'a>,
    /// Authentication Data: the password for [`AuthType::Pass`], zero-padded; zero for
    /// [`AuthType::Ah`] (the ICV is in the AH header, see [`super::ah`]).
    pub auth_data: [u8; VRRP_AUTH_DATA_LEN],
}

/// A VRRPv3 advert (RFC 5798 §5.1).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |(rsvd) |     Max Adver Int     |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                                                               |
/// +                                                               +
/// |                       IPvX Address(es)                        |
/// +                                                               +
/// +                                                               +
/// +                                                               +
/// +                                                               +
/// |                                                               |
/// +                                                               +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// The reserved bits are ignored on decode and sent as zero (RFC 5798 §5.2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdvertV3<'a> {
    /// Virtual Router Identifier.
    pub vrid: u8,
    /// Sender's priority.
    pub priority: u8,
    /// Max Adver Int, in centiseconds (12 bits).
    pub max_adver_int: u16,
    /// Checksum as on the wire (host order).
    pub checksum: u16,
    /// Virtual addresses.
    pub addrs: AddrList<'a>,
}

/// A decoded advert of either version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advert<'a> {
    /// VRRPv2.
    V2(AdvertV2<'a>),
    /// VRRPv3.
    V3(AdvertV3<'a>),
}

/// Checks the fixed header of `bytes` and the length it implies; returns the header, version and
/// the address bytes.
#[inline]
fn decode_common(bytes: &[u8], family: Family) -> Result<(VrrpHdr, Version, &[u8]), DecodeError> {
    let hdr = VrrpHdr::from_prefix(bytes).ok_or(DecodeError::TooShort { len: bytes.len() })?;
    let version = Version::from_u8(hdr.version()).ok_or(DecodeError::BadVersion {
        version: hdr.version(),
    })?;
    if hdr.kind() != VRRP_TYPE_ADVERT {
        return Err(DecodeError::BadType { kind: hdr.kind() });
    }
    let expected = expected_len(version, family, hdr.count_ip);
    if bytes.len() != expected {
        return Err(DecodeError::BadLength {
            expected,
            len: bytes.len(),
        });
    }
    let addr_end = VRRP_HDR_LEN + usize::from(hdr.count_ip) * family.addr_len();
    let addrs = bytes
        .get(VRRP_HDR_LEN..addr_end)
        .ok_or(DecodeError::BadLength {
            expected,
            len: bytes.len(),
        })?;
    Ok((hdr, version, addrs))
}

/// Writes `hdr`, `addrs` and `trailer` into `buf`; returns the length.
#[inline]
fn encode_common(
    buf: &mut [u8],
    hdr: &VrrpHdr,
    addrs: &[u8],
    trailer: &[u8],
) -> Result<usize, EncodeError> {
    let need = VRRP_HDR_LEN + addrs.len() + trailer.len();
    let have = buf.len();
    let out = buf
        .get_mut(..need)
        .ok_or(EncodeError::BufferTooSmall { need, have })?;
    let (h, rest) = out.split_at_mut(VRRP_HDR_LEN);
    let (a, t) = rest.split_at_mut(addrs.len());
    h.copy_from_slice(&hdr.to_bytes());
    a.copy_from_slice(addrs);
    t.copy_from_slice(trailer);
    Ok(need)
}

/// Computes the checksum of `buf[..len]` (checksum field zero) and stores it.
#[inline]
fn fill_checksum(buf: &mut [u8], len: usize, pseudo: &PseudoHeader) -> usize {
    if let Some(msg) = buf.get_mut(..len) {
        if let Some(field) = msg.get_mut(6..8) {
            field.copy_from_slice(&[0, 0]);
        }
        let sum = checksum(msg, pseudo).to_be_bytes();
        if let Some(field) = msg.get_mut(6..8) {
            field.copy_from_slice(&sum);
        }
    }
    len
}

impl<'a> AdvertV2<'a> {
    /// Decodes a VRRPv2 message (the IP payload) carried over `family`.
    ///
    /// # Errors
    ///
    /// Any [`DecodeError`]; [`DecodeError::BadVersion`] for a VRRPv3 message.
    #[inline]
    pub fn decode(bytes: &'a [u8], family: Family) -> Result<AdvertV2<'a>, DecodeError> {
        match Advert::decode(bytes, family)? {
            Advert::V2(a) => Ok(a),
            Advert::V3(_) => Err(DecodeError::BadVersion { version: 3 }),
        }
    }

    /// Encoded length, in bytes.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        expected_len(Version::V2, self.addrs.family(), self.addrs.len() as u8)
    }

    /// Encodes the advert into `buf` with its `checksum` field as is; returns the length.
    ///
    /// # Errors
    ///
    /// [`EncodeError::BufferTooSmall`].
    #[inline]
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let hdr = VrrpHdr {
            vers_type: (2 << 4) | VRRP_TYPE_ADVERT,
            vrid: self.vrid,
            priority: self.priority,
            count_ip: self.addrs.len() as u8,
            word1: [self.auth_type as u8, self.adver_int],
            checksum: self.checksum.to_be_bytes(),
        };
        let trailer: &[u8] = match self.addrs.family() {
            Family::V4 => &self.auth_data,
            Family::V6 => &[],
        };
        encode_common(buf, &hdr, self.addrs.as_bytes(), trailer)
    }

    /// Encodes the advert into `buf` with a freshly computed checksum (RFC 3768 §5.3.8: over
    /// the VRRP message only); returns the length.
    ///
    /// # Errors
    ///
    /// [`EncodeError::BufferTooSmall`].
    #[inline]
    pub fn encode_checksummed(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let len = self.encode(buf)?;
        Ok(fill_checksum(buf, len, &PseudoHeader::None))
    }
}

impl<'a> AdvertV3<'a> {
    /// Decodes a VRRPv3 message (the IP payload) carried over `family`.
    ///
    /// # Errors
    ///
    /// Any [`DecodeError`]; [`DecodeError::BadVersion`] for a VRRPv2 message.
    #[inline]
    pub fn decode(bytes: &'a [u8], family: Family) -> Result<AdvertV3<'a>, DecodeError> {
        match Advert::decode(bytes, family)? {
            Advert::V3(a) => Ok(a),
            Advert::V2(_) => Err(DecodeError::BadVersion { version: 2 }),
        }
    }

    /// Encoded length, in bytes.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        expected_len(Version::V3, self.addrs.family(), self.addrs.len() as u8)
    }

    /// Encodes the advert into `buf` with its `checksum` field as is; returns the length.
    ///
    /// # Errors
    ///
    /// [`EncodeError::BufferTooSmall`], [`EncodeError::AdverIntTooLarge`].
    #[inline]
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        if self.max_adver_int > VRRP_V3_MAX_ADVER_INT {
            return Err(EncodeError::AdverIntTooLarge {
                centis: self.max_adver_int,
            });
        }
        let hdr = VrrpHdr {
            vers_type: (3 << 4) | VRRP_TYPE_ADVERT,
            vrid: self.vrid,
            priority: self.priority,
            count_ip: self.addrs.len() as u8,
            word1: self.max_adver_int.to_be_bytes(),
            checksum: self.checksum.to_be_bytes(),
        };
        encode_common(buf, &hdr, self.addrs.as_bytes(), &[])
    }

    /// Encodes the advert into `buf` with a checksum computed over `pseudo` (see
    /// [`PseudoHeader::for_advert`]); returns the length.
    ///
    /// # Errors
    ///
    /// [`EncodeError::BufferTooSmall`], [`EncodeError::AdverIntTooLarge`].
    #[inline]
    pub fn encode_checksummed(
        &self,
        buf: &mut [u8],
        pseudo: &PseudoHeader,
    ) -> Result<usize, EncodeError> {
        let len = self.encode(buf)?;
        Ok(fill_checksum(buf, len, pseudo))
    }
}

impl<'a> Advert<'a> {
    /// Decodes a VRRP message (the IP payload, from the version octet) carried over `family`.
    /// Checks structure only: version, type, length against Count IPvX Addrs, and the VRRPv2
    /// Auth Type. Checksum, TTL, VRID and authentication are [`super::validate`]'s job.
    ///
    /// # Errors
    ///
    /// [`DecodeError`]; [`DecodeError::reason`] names the drop counter.
    #[inline]
    pub fn decode(bytes: &'a [u8], family: Family) -> Result<Advert<'a>, DecodeError> {
        let (hdr, version, addr_bytes) = decode_common(bytes, family)?;
        let addrs = AddrList {
            bytes: addr_bytes,
            family,
        };
        match version {
            Version::V2 => {
                let auth_type = match AuthType::from_u8(hdr.v2_auth_type()) {
                    Some(t) => t,
                    None => {
                        return Err(DecodeError::BadAuthType {
                            auth_type: hdr.v2_auth_type(),
                        })
                    }
                };
                let mut auth_data = [0; VRRP_AUTH_DATA_LEN];
                if family == Family::V4 {
                    let start = VRRP_HDR_LEN + addr_bytes.len();
                    if let Some(raw) = bytes.get(start..start + VRRP_AUTH_DATA_LEN) {
                        auth_data.copy_from_slice(raw);
                    }
                }
                Ok(Advert::V2(AdvertV2 {
                    vrid: hdr.vrid,
                    priority: hdr.priority,
                    auth_type,
                    adver_int: hdr.v2_adver_int(),
                    checksum: hdr.checksum(),
                    addrs,
                    auth_data,
                }))
            }
            Version::V3 => Ok(Advert::V3(AdvertV3 {
                vrid: hdr.vrid,
                priority: hdr.priority,
                max_adver_int: hdr.v3_max_adver_int(),
                checksum: hdr.checksum(),
                addrs,
            })),
        }
    }

    /// Encodes the advert into `buf` with its checksum field as is; returns the length.
    ///
    /// # Errors
    ///
    /// [`EncodeError`].
    #[inline]
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        match self {
            Advert::V2(a) => a.encode(buf),
            Advert::V3(a) => a.encode(buf),
        }
    }

    /// Protocol version.
    #[inline]
    pub fn version(&self) -> Version {
        match self {
            Advert::V2(_) => Version::V2,
            Advert::V3(_) => Version::V3,
        }
    }

    /// Virtual Router Identifier.
    #[inline]
    pub fn vrid(&self) -> u8 {
        match self {
            Advert::V2(a) => a.vrid,
            Advert::V3(a) => a.vrid,
        }
    }

    /// Sender's priority.
    #[inline]
    pub fn priority(&self) -> u8 {
        match self {
            Advert::V2(a) => a.priority,
            Advert::V3(a) => a.priority,
        }
    }

    /// Advertisement interval in centiseconds (VRRPv2 seconds × 100).
    #[inline]
    pub fn adver_int_centis(&self) -> u16 {
        match self {
            Advert::V2(a) => u16::from(a.adver_int) * 100,
            Advert::V3(a) => a.max_adver_int,
        }
    }

    /// Virtual addresses.
    #[inline]
    pub fn addrs(&self) -> AddrList<'a> {
        match self {
            Advert::V2(a) => a.addrs,
            Advert::V3(a) => a.addrs,
        }
    }
}
