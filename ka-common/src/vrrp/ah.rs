//! VRRPv2 IPsec AH authentication exactly as keepalived 2.2 implements it (RFC 2338 §5.3.6.3;
//! keepalived `vrrp.c`: `vrrp_build_ip4`, `vrrp_build_ipsecah`, `vrrp_update_pkt`,
//! `vrrp_in_chk_ipsecah`; `vrrp_ipsecah.c`: `hmac_md5`), since that is what must interoperate
//! on the wire:
//!
//! - IPv4 only (keepalived ignores AH on IPv6 instances, and VRRPv3 has no authentication);
//! - the IPv4 header says protocol 51 and is followed by the AH header of RFC 2402 ([`AhHdr`],
//!   24 bytes), then the VRRPv2 message with Auth Type 2 and an all-zero Authentication Data;
//! - the ICV is HMAC-MD5-96 (RFC 2403) keyed with the 8-byte, zero-padded `auth_pass`, over
//!   the IPv4 header with TOS, flags/fragment offset, header checksum (and, for unicast peers,
//!   TTL) zeroed, the AH header with a zero ICV, and the VRRP message;
//! - the SPI is the sender's IPv4 address; a receiver refuses any other;
//! - the sequence number is one counter per instance shared by sending and receiving
//!   ([`AhSeq`]), so a new master continues from the last number it accepted.
//!
//! Wire layout of an advert (keepalived sends IHL 5, TOS 0xc0, no DF and a non-zero IP ID,
//! which the kernel would otherwise fill in after the ICV was computed):
//!
//! ```text
//! +--------------------------+----------------------+---------------------------------------+
//! | IPv4 header, protocol 51 | AH header (24 bytes) | VRRPv2 message, Auth Type 2, zero     |
//! | (IHL x 4 bytes)          | Next Header 112      | Authentication Data                   |
//! +--------------------------+----------------------+---------------------------------------+
//! ```
//!
//! Decoding, encoding the AH header and the sequence-number rules are plain `no_std` code.
//! The ICV needs MD5, compiled in with the `ah` feature (userspace) and for tests; the XDP
//! program never validates AH (see `ka-ebpf/src/vrrp.rs`).

use core::cmp::Ordering;
use core::fmt;
use core::net::Ipv4Addr;

use super::{DecodeError, DropReason, EncodeError, VRRP_AUTH_DATA_LEN, VRRP_HDR_LEN};
use crate::wire::{IPPROTO_AH, IPPROTO_VRRP};

/// Length of the AH header keepalived sends: 12 fixed bytes and a 96-bit ICV.
pub const AH_LEN: usize = 24;
/// Length of the ICV: HMAC-MD5 truncated to 96 bits (RFC 2403 §2).
pub const AH_ICV_LEN: usize = 12;
/// Payload Len of that header: its length in 32-bit words minus 2 (RFC 2402 §2.2).
pub const AH_PAYLOAD_LEN: u8 = (AH_LEN / 4 - 2) as u8;
/// TOS keepalived sets on IPv4 adverts ("internet network control"); zeroed in the ICV.
pub const AH_TOS: u8 = 0xc0;
/// Length of the IPv4 header keepalived sends (no options).
pub const AH_IP_HDR_LEN: usize = 20;
/// Above this, keepalived stops incrementing the sequence number and marks the counter as
/// cycled (`vrrp_update_pkt`): the same number is sent again until the counter is reset.
pub const AH_SEQ_LIMIT: u32 = 0xFFFF_FFFD;

/// The key of an AH instance: `auth_pass`, first 8 bytes, zero-padded (keepalived's
/// `auth_data`, used whole as the HMAC key).
pub type AhKey = [u8; VRRP_AUTH_DATA_LEN];

/// The IP Authentication Header (RFC 2402 §2) as keepalived sends it: a 96-bit ICV, so
/// Payload Len 4, Next Header 112 (VRRP), SPI the sender's IPv4 address.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Next Header   |  Payload Len  |          RESERVED             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                 Security Parameters Index (SPI)               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Sequence Number Field                      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                                                               |
/// +                Authentication Data (variable)                 |
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AhHdr {
    /// Protocol of what follows ([`IPPROTO_VRRP`]).
    pub next_header: u8,
    /// Length in 32-bit words minus 2 ([`AH_PAYLOAD_LEN`]).
    pub payload_len: u8,
    /// Reserved, sent as zero and not checked.
    pub reserved: u16,
    /// Security Parameters Index, host order; keepalived's is the sender's IPv4 address
    /// (`u32::from(src)`).
    pub spi: u32,
    /// Sequence number, host order.
    pub seq: u32,
    /// Integrity Check Value: HMAC-MD5-96.
    pub icv: [u8; AH_ICV_LEN],
}

impl AhHdr {
    /// Decodes the AH header at the start of `bytes`.
    ///
    /// # Errors
    ///
    /// [`DecodeError::TooShort`] below 24 bytes; [`DecodeError::AhBadHeader`] for a Payload
    /// Len other than 4 (an ICV other than keepalived's 96 bits).
    #[inline]
    pub fn decode(bytes: &[u8]) -> Result<AhHdr, DecodeError> {
        let b: &[u8; AH_LEN] = bytes
            .get(..AH_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(DecodeError::TooShort { len: bytes.len() })?;
        let hdr = AhHdr {
            next_header: b[0],
            payload_len: b[1],
            reserved: u16::from_be_bytes([b[2], b[3]]),
            spi: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            seq: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            icv: [
                b[12], b[13], b[14], b[15], b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23],
            ],
        };
        if hdr.payload_len != AH_PAYLOAD_LEN {
            return Err(DecodeError::AhBadHeader {
                next_header: hdr.next_header,
                payload_len: hdr.payload_len,
            });
        }
        Ok(hdr)
    }

    /// Encodes the header into `buf`; returns its length (24).
    ///
    /// # Errors
    ///
    /// [`EncodeError::BufferTooSmall`].
    #[inline]
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let have = buf.len();
        let out = buf
            .get_mut(..AH_LEN)
            .ok_or(EncodeError::BufferTooSmall { need: AH_LEN, have })?;
        out[0] = self.next_header;
        out[1] = self.payload_len;
        out[2..4].copy_from_slice(&self.reserved.to_be_bytes());
        out[4..8].copy_from_slice(&self.spi.to_be_bytes());
        out[8..12].copy_from_slice(&self.seq.to_be_bytes());
        out[12..].copy_from_slice(&self.icv);
        Ok(AH_LEN)
    }
}

/// A VRRPv2 advert under AH: the whole IPv4 packet, as a raw socket of protocol 51 delivers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AhAdvert<'a> {
    /// The IPv4 header, options included (keepalived sends none; any are covered by the ICV
    /// as they are).
    pub ip: &'a [u8],
    /// The AH header.
    pub ah: AhHdr,
    /// The VRRP message, from its version octet, for [`super::validate`].
    pub vrrp: &'a [u8],
}

impl<'a> AhAdvert<'a> {
    /// Decodes an IPv4 packet carrying AH and a VRRP message. Checks structure only; the ICV,
    /// SPI and sequence number are [`AhAdvert::verify`]'s and [`AhSeq::receive`]'s job, and
    /// the VRRP message is [`super::validate`]'s.
    ///
    /// # Errors
    ///
    /// [`DecodeError`]: the IPv4 header is short or inconsistent, the protocol is not AH, the
    /// total length is not the packet's, the AH header is short or is not keepalived's (Next
    /// Header VRRP, 96-bit ICV), or less than a VRRP header follows it.
    #[inline]
    pub fn decode(packet: &'a [u8]) -> Result<AhAdvert<'a>, DecodeError> {
        let len = packet.len();
        let fixed = packet
            .get(..AH_IP_HDR_LEN)
            .ok_or(DecodeError::TooShort { len })?;
        let version_ihl = fixed[0];
        let ihl = usize::from(version_ihl & 0x0f) * 4;
        if version_ihl >> 4 != 4 || ihl < AH_IP_HDR_LEN {
            return Err(DecodeError::BadIpv4 { version_ihl });
        }
        if fixed[9] != IPPROTO_AH {
            return Err(DecodeError::NotAh { protocol: fixed[9] });
        }
        let tot_len = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
        if tot_len != len {
            return Err(DecodeError::BadLength {
                expected: tot_len,
                len,
            });
        }
        let ip = packet.get(..ihl).ok_or(DecodeError::TooShort { len })?;
        let rest = packet.get(ihl..).ok_or(DecodeError::TooShort { len })?;
        let ah = AhHdr::decode(rest).map_err(|e| match e {
            DecodeError::TooShort { .. } => DecodeError::TooShort { len },
            other => other,
        })?;
        if ah.next_header != IPPROTO_VRRP {
            // keepalived: "an AH header for some other protocol - ignore packet".
            return Err(DecodeError::AhBadHeader {
                next_header: ah.next_header,
                payload_len: ah.payload_len,
            });
        }
        let vrrp = rest.get(AH_LEN..).ok_or(DecodeError::TooShort { len })?;
        if vrrp.len() < VRRP_HDR_LEN {
            return Err(DecodeError::TooShort { len });
        }
        Ok(AhAdvert { ip, ah, vrrp })
    }

    /// Source address (the sender's, and keepalived's SPI).
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.ip[12], self.ip[13], self.ip[14], self.ip[15])
    }

    /// Destination address (the group or a unicast peer).
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.ip[16], self.ip[17], self.ip[18], self.ip[19])
    }

    /// TTL it arrived with.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.ip[8]
    }

    /// IP identification.
    #[inline]
    pub fn id(&self) -> u16 {
        u16::from_be_bytes([self.ip[4], self.ip[5]])
    }

    /// keepalived's rule: the SPI is the sender's IPv4 address.
    ///
    /// # Errors
    ///
    /// [`DropReason::AhBadSpi`].
    #[inline]
    pub fn check_spi(&self) -> Result<(), DropReason> {
        if self.ah.spi == u32::from(self.src()) {
            Ok(())
        } else {
            Err(DropReason::AhBadSpi)
        }
    }
}

/// The IPv4 header fields of an AH advert that vary (the rest is keepalived's constant:
/// IHL 5, TOS 0xc0, no fragment bits, protocol 51).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AhIpFields {
    /// IP identification: keepalived counts adverts from 1, skipping 0 (which the kernel would
    /// replace after the ICV was computed).
    pub id: u16,
    /// Source: the instance's address.
    pub src: Ipv4Addr,
    /// Destination: the group or one unicast peer.
    pub dst: Ipv4Addr,
    /// TTL (255).
    pub ttl: u8,
}

/// keepalived's sequence-number state of an AH instance (`ipsecah_counter`): one counter shared
/// by sending and receiving, so whoever becomes master continues above the last number the
/// others accepted, and a `cycle` flag once sending reached [`AH_SEQ_LIMIT`]. Pure; the engine
/// calls each method where keepalived touches the counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AhSeq {
    seq: u32,
    cycle: bool,
}

impl AhSeq {
    /// A fresh counter (keepalived starts at 0; the first advert carries 1).
    #[inline]
    pub const fn new() -> AhSeq {
        AhSeq {
            seq: 0,
            cycle: false,
        }
    }

    /// The counter.
    #[inline]
    pub const fn value(&self) -> u32 {
        self.seq
    }

    /// Whether sending reached [`AH_SEQ_LIMIT`] and the counter no longer moves.
    #[inline]
    pub const fn cycled(&self) -> bool {
        self.cycle
    }

    /// The sequence number of the next advert (`vrrp_update_pkt`): the counter plus one, or,
    /// above [`AH_SEQ_LIMIT`], the same number again with the counter marked as cycled. Every
    /// unicast peer of one advert gets the same number.
    #[inline]
    pub fn next_tx(&mut self) -> u32 {
        if self.seq > AH_SEQ_LIMIT {
            self.cycle = true;
        } else {
            self.seq += 1;
        }
        self.seq
    }

    /// Anti-replay for an advert whose ICV and SPI verified (`vrrp_in_chk_ipsecah`): its
    /// number must be above the counter, which then takes it. As BACKUP this also clears the
    /// cycled mark (`vrrp_check_packet`). keepalived checks adverts only as BACKUP or MASTER;
    /// the caller does not call this in other states.
    ///
    /// # Errors
    ///
    /// [`DropReason::AhReplay`]: the number was already seen (or is from a sender that
    /// restarted below the counter; keepalived's limitation, hence its "initial state MASTER
    /// is incompatible with AH" rule).
    #[inline]
    pub fn receive(&mut self, seq: u32, backup: bool) -> Result<(), DropReason> {
        if seq > self.seq {
            self.seq = seq;
            if backup {
                self.cycle = false;
            }
            Ok(())
        } else {
            Err(DropReason::AhReplay)
        }
    }

    /// As MASTER, a valid advert with sequence number `seq` and `priority` arrived
    /// (`vrrp_state_master_rx`); `ours` is our effective priority and `addr` how the sender's
    /// address compares with ours. Of lower priority (or equal priority from a lower address),
    /// keepalived syncs the counter to its number plus one; of higher priority (or equal from a
    /// higher address) it clears the cycled mark; a resignation (priority 0) changes nothing.
    #[inline]
    pub fn master_received(&mut self, seq: u32, priority: u8, ours: u8, addr: Ordering) {
        if priority == 0 {
            return;
        }
        if priority < ours || (priority == ours && addr == Ordering::Less) {
            self.seq = seq.wrapping_add(1);
            self.cycle = false;
        } else if priority > ours || (priority == ours && addr == Ordering::Greater) {
            self.cycle = false;
        }
    }

    /// Becoming MASTER (`vrrp_state_goto_master`): a cycled counter restarts from 0.
    #[inline]
    pub fn becoming_master(&mut self) {
        if self.cycle {
            self.cycle = false;
            self.seq = 0;
        }
    }
}

impl fmt::Display for AhSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}",
            self.seq,
            if self.cycle { " (cycled)" } else { "" }
        )
    }
}

#[cfg(any(test, feature = "ah"))]
mod icv {
    //! The ICV: HMAC-MD5 (RFC 2104, as keepalived's `hmac_md5`) truncated to 96 bits.

    use md5::{Digest, Md5};

    use super::{
        AhAdvert, AhHdr, AhIpFields, AhKey, AH_ICV_LEN, AH_IP_HDR_LEN, AH_LEN, AH_PAYLOAD_LEN,
        AH_TOS,
    };
    use crate::vrrp::{DropReason, EncodeError};
    use crate::wire::{IPPROTO_AH, IPPROTO_VRRP};

    /// Longest IPv4 header and the AH header.
    const MAX_HDRS: usize = 60 + AH_LEN;
    /// HMAC block size of MD5.
    const BLOCK: usize = 64;

    /// HMAC-MD5 of the concatenation of `parts` keyed with `key` (8 bytes, shorter than a
    /// block, so used as is and zero-padded: RFC 2104 §2).
    fn hmac_md5(key: &AhKey, parts: &[&[u8]]) -> [u8; 16] {
        let mut ipad = [0x36u8; BLOCK];
        let mut opad = [0x5cu8; BLOCK];
        for (i, k) in key.iter().enumerate() {
            ipad[i] ^= k;
            opad[i] ^= k;
        }
        let mut inner = Md5::new();
        inner.update(ipad);
        for p in parts {
            inner.update(p);
        }
        let inner = inner.finalize();
        let mut outer = Md5::new();
        outer.update(opad);
        outer.update(inner);
        let mut out = [0u8; 16];
        out.copy_from_slice(&outer.finalize());
        out
    }

    /// The ICV of an IPv4 header + AH header (`hdrs`, copied and zeroed here) and a VRRP
    /// message: TOS, flags/fragment offset and header checksum zeroed (RFC 2402 §3.3.3.1.1.1
    /// mutable fields; keepalived leaves the ID in), TTL too for unicast, and the ICV field.
    fn compute(
        hdrs: &[u8],
        ihl: usize,
        vrrp: &[u8],
        key: &AhKey,
        unicast: bool,
    ) -> [u8; AH_ICV_LEN] {
        let mut buf = [0u8; MAX_HDRS];
        let n = hdrs.len().min(MAX_HDRS);
        buf[..n].copy_from_slice(&hdrs[..n]);
        buf[1] = 0;
        buf[6] = 0;
        buf[7] = 0;
        buf[10] = 0;
        buf[11] = 0;
        if unicast {
            buf[8] = 0;
        }
        let icv_at = ihl + 12;
        if let Some(icv) = buf.get_mut(icv_at..icv_at + AH_ICV_LEN) {
            icv.fill(0);
        }
        let d = hmac_md5(key, &[&buf[..n], vrrp]);
        let mut out = [0u8; AH_ICV_LEN];
        out.copy_from_slice(&d[..AH_ICV_LEN]);
        out
    }

    /// Equality that takes the same time wherever the first difference is (keepalived's
    /// `memcmp_constant_time`).
    fn eq_constant_time(a: &[u8; AH_ICV_LEN], b: &[u8; AH_ICV_LEN]) -> bool {
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    impl AhAdvert<'_> {
        /// The ICV this packet should carry under `key`. `unicast`: the instance has unicast
        /// peers, and the TTL is then left out as well (keepalived).
        pub fn expected_icv(&self, key: &AhKey, unicast: bool) -> [u8; AH_ICV_LEN] {
            let mut hdrs = [0u8; MAX_HDRS];
            let ihl = self.ip.len().min(60);
            hdrs[..ihl].copy_from_slice(&self.ip[..ihl]);
            let _ = self.ah.encode(&mut hdrs[ihl..ihl + AH_LEN]);
            compute(&hdrs[..ihl + AH_LEN], ihl, self.vrrp, key, unicast)
        }

        /// keepalived's `vrrp_in_chk_ipsecah` before the sequence number: the ICV first (if it
        /// does not verify, nothing else in the packet can be trusted), then the SPI.
        ///
        /// # Errors
        ///
        /// [`DropReason::AhBadIcv`] (wrong `auth_pass`, or the packet changed on the way),
        /// [`DropReason::AhBadSpi`].
        pub fn verify(&self, key: &AhKey, unicast: bool) -> Result<(), DropReason> {
            if !eq_constant_time(&self.expected_icv(key, unicast), &self.ah.icv) {
                return Err(DropReason::AhBadIcv);
            }
            self.check_spi()
        }
    }

    /// The IPv4 header checksum (RFC 791) of `hdr`, whose checksum field is zero.
    fn ip_checksum(hdr: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for w in hdr.chunks(2) {
            let hi = u32::from(w[0]) << 8;
            let lo = w.get(1).map_or(0, |b| u32::from(*b));
            sum += hi | lo;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// Writes a whole AH advert into `buf` as keepalived builds it (`vrrp_build_ip4`,
    /// `vrrp_build_ipsecah`, `vrrp_update_pkt`): IPv4 header (IHL 5, TOS 0xc0, `ip`'s ID,
    /// addresses and TTL, protocol 51, header checksum filled in as the kernel will), AH
    /// header (SPI = source, `seq`, ICV under `key`), then `vrrp`, the checksummed VRRPv2
    /// message (Auth Type 2, zero Authentication Data). Returns the packet's length.
    ///
    /// # Errors
    ///
    /// [`EncodeError::BufferTooSmall`].
    pub fn encode_ah_advert(
        buf: &mut [u8],
        ip: &AhIpFields,
        seq: u32,
        key: &AhKey,
        unicast: bool,
        vrrp: &[u8],
    ) -> Result<usize, EncodeError> {
        let need = AH_IP_HDR_LEN + AH_LEN + vrrp.len();
        let have = buf.len();
        let out = buf
            .get_mut(..need)
            .ok_or(EncodeError::BufferTooSmall { need, have })?;
        let tot_len = u16::try_from(need).map_err(|_| EncodeError::BufferTooSmall {
            need,
            have: usize::from(u16::MAX),
        })?;
        let (hdrs, body) = out.split_at_mut(AH_IP_HDR_LEN + AH_LEN);
        body.copy_from_slice(vrrp);
        let (iph, ahb) = hdrs.split_at_mut(AH_IP_HDR_LEN);
        iph[0] = 0x45;
        iph[1] = AH_TOS;
        iph[2..4].copy_from_slice(&tot_len.to_be_bytes());
        iph[4..6].copy_from_slice(&ip.id.to_be_bytes());
        iph[6..8].fill(0);
        iph[8] = ip.ttl;
        iph[9] = IPPROTO_AH;
        iph[10..12].fill(0);
        iph[12..16].copy_from_slice(&ip.src.octets());
        iph[16..20].copy_from_slice(&ip.dst.octets());
        let mut ah = AhHdr {
            next_header: IPPROTO_VRRP,
            payload_len: AH_PAYLOAD_LEN,
            reserved: 0,
            spi: u32::from(ip.src),
            seq,
            icv: [0; AH_ICV_LEN],
        };
        ah.encode(ahb)?;
        ah.icv = compute(hdrs, AH_IP_HDR_LEN, body, key, unicast);
        ah.encode(&mut hdrs[AH_IP_HDR_LEN..])?;
        let csum = ip_checksum(&hdrs[..AH_IP_HDR_LEN]);
        hdrs[10..12].copy_from_slice(&csum.to_be_bytes());
        Ok(need)
    }

    #[cfg(test)]
    pub(in crate::vrrp) fn hmac_md5_for_tests(key: &AhKey, parts: &[&[u8]]) -> [u8; 16] {
        hmac_md5(key, parts)
    }
}

#[cfg(any(test, feature = "ah"))]
pub use icv::encode_ah_advert;

#[cfg(test)]
pub(in crate::vrrp) use icv::hmac_md5_for_tests;
