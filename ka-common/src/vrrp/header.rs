//! The fixed 8-byte VRRP header as a `Pod` overlay, for the XDP program and the codec.

use bytemuck::{Pod, Zeroable};

/// The first 8 bytes of every VRRP message, as laid out on the wire (alignment 1, no padding).
///
/// VRRPv3 (RFC 5798 §5.1):
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |(rsvd) |     Max Adver Int     |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// VRRPv2 (RFC 3768 §5.1) has `Auth Type` (8 bits) and `Adver Int` (8 bits, seconds) where v3
/// has `(rsvd)` and `Max Adver Int`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct VrrpHdr {
    /// Version (high nibble) and Type (low nibble).
    pub vers_type: u8,
    /// Virtual Router Identifier, 1..=255.
    pub vrid: u8,
    /// Sender's priority: 0 = resigning Master, 255 = address owner.
    pub priority: u8,
    /// Count IPvX Addrs.
    pub count_ip: u8,
    /// v2: Auth Type, Adver Int (seconds). v3: 4 reserved bits, Max Adver Int (centiseconds,
    /// 12 bits). Network byte order.
    pub word1: [u8; 2],
    /// Internet checksum, network byte order.
    pub checksum: [u8; 2],
}

impl VrrpHdr {
    /// The header at the start of `bytes`, if there are at least 8 bytes.
    #[inline(always)]
    pub fn from_prefix(bytes: &[u8]) -> Option<VrrpHdr> {
        let b: &[u8; 8] = bytes.get(..8)?.try_into().ok()?;
        Some(VrrpHdr {
            vers_type: b[0],
            vrid: b[1],
            priority: b[2],
            count_ip: b[3],
            word1: [b[4], b[5]],
            checksum: [b[6], b[7]],
        })
    }

    /// The header's 8 bytes.
    #[inline(always)]
    pub fn to_bytes(&self) -> [u8; 8] {
        [
            self.vers_type,
            self.vrid,
            self.priority,
            self.count_ip,
            self.word1[0],
            self.word1[1],
            self.checksum[0],
            self.checksum[1],
        ]
    }

    /// Version nibble (2 or 3 when valid).
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.vers_type >> 4
    }

    /// Type nibble (1 = ADVERTISEMENT when valid).
    #[inline(always)]
    pub fn kind(&self) -> u8 {
        self.vers_type & 0x0f
    }

    /// VRRPv2 Auth Type.
    #[inline(always)]
    pub fn v2_auth_type(&self) -> u8 {
        self.word1[0]
    }

    /// VRRPv2 Adver Int, in seconds.
    #[inline(always)]
    pub fn v2_adver_int(&self) -> u8 {
        self.word1[1]
    }

    /// VRRPv3 Max Adver Int, in centiseconds (reserved bits masked off, as RFC 5798 §5.2.6
    /// says they are ignored on receipt).
    #[inline(always)]
    pub fn v3_max_adver_int(&self) -> u16 {
        u16::from_be_bytes(self.word1) & super::VRRP_V3_MAX_ADVER_INT
    }

    /// Checksum in host order.
    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes(self.checksum)
    }
}

const _: () = assert!(core::mem::size_of::<VrrpHdr>() == super::VRRP_HDR_LEN);
