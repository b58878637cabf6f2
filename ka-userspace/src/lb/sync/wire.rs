//! The IPVS connection-sync protocol, version 1 (Linux `net/netfilter/ipvs/ip_vs_sync.c`): one
//! struct per wire format under its diagram, `decode(&[u8]) -> Result<_, DecodeError>` and
//! `encode(&self, &mut Vec<u8>)`. Every field is in network byte order.
//!
//! The decoder accepts what the kernel's backup thread accepts and refuses what it refuses, with
//! the same split: a structural error ([`DecodeError`]) drops the whole datagram, as the kernel
//! does ("Dropping buffer"); what the kernel drops per entry (an unknown mandatory parameter, an
//! unsupported protocol) decodes, and the receiver drops that entry alone
//! ([`super::index::EntryDrop`]). Version 0 datagrams (`sync_version=0` on an IPVS master) are
//! refused as a whole.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// IPVS's sync UDP port.
pub const IPVS_SYNC_PORT: u16 = 8848;
/// IPVS's sync multicast group (IPv4; an IPv6 group must be configured).
pub const IPVS_SYNC_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// `SYNC_PROTO_VER`: the message header's version.
pub const SYNC_PROTO_VER: u8 = 1;
/// Length of the version 1 message header.
pub const HEADER_LEN: usize = 8;
/// Length of an IPv4 connection entry without parameters (`struct ip_vs_sync_v4`).
pub const CONN_V4_LEN: usize = 36;
/// Length of an IPv6 connection entry without parameters (`struct ip_vs_sync_v6`).
pub const CONN_V6_LEN: usize = 72;
/// Most connection entries in one message (`nr_conns` is a byte).
pub const MAX_CONNS: usize = 255;

/// Entry type bit: IPv6 (`STYPE_F_INET6`).
pub const STYPE_F_INET6: u8 = 1;
/// Parameter type: TCP sequence adjustments (`IPVS_OPT_SEQ_DATA`), 24 bytes.
pub const OPT_SEQ_DATA: u8 = 1;
/// Parameter type: persistence-engine data (`IPVS_OPT_PE_DATA`).
pub const OPT_PE_DATA: u8 = 2;
/// Parameter type: persistence-engine name (`IPVS_OPT_PE_NAME`).
pub const OPT_PE_NAME: u8 = 3;
/// Parameter type bit: optional (`IPVS_OPT_F_PARAM`); an unknown parameter without it is
/// mandatory and its entry is dropped.
pub const OPT_F_PARAM: u8 = 1 << 6;
/// Length of `IPVS_OPT_SEQ_DATA` (`struct ip_vs_sync_conn_options`).
pub const SEQ_DATA_LEN: usize = 24;
/// Longest `IPVS_OPT_PE_DATA` (`IP_VS_PEDATA_MAXLEN`).
pub const PE_DATA_MAXLEN: usize = 255;
/// Longest `IPVS_OPT_PE_NAME` (`IP_VS_PENAME_MAXLEN`).
pub const PE_NAME_MAXLEN: usize = 16;

/// Connection flags (`IP_VS_CONN_F_*`, `include/uapi/linux/ip_vs.h`).
pub mod flags {
    /// Mask of the forwarding method.
    pub const FWD_MASK: u32 = 0x0007;
    /// Forwarding: masquerading (NAT).
    pub const MASQ: u32 = 0x0000;
    /// Forwarding: local node.
    pub const LOCALNODE: u32 = 0x0001;
    /// Forwarding: IP tunnel.
    pub const TUNNEL: u32 = 0x0002;
    /// Forwarding: direct routing.
    pub const DROUTE: u32 = 0x0003;
    /// Forwarding: cache bypass.
    pub const BYPASS: u32 = 0x0004;
    /// Created by sync (set by the receiver).
    pub const SYNC: u32 = 0x0020;
    /// Hashed entry (never sent).
    pub const HASHED: u32 = 0x0040;
    /// Not established (TCP before ESTABLISHED).
    pub const INACTIVE: u32 = 0x0100;
    /// Sequence adjustments in use (a `SEQ_DATA` parameter follows).
    pub const SEQ_MASK: u32 = 0x0600;
    /// No client port yet.
    pub const NO_CPORT: u32 = 0x0800;
    /// A persistence template, not a connection.
    pub const TEMPLATE: u32 = 0x1000;
    /// One-packet scheduling (never synced by IPVS).
    pub const ONE_PACKET: u32 = 0x2000;
}

/// Connection states the sender uses (`IP_VS_TCP_S_*`, `IP_VS_UDP_S_*`, `IP_VS_CTPL_S_*`).
pub mod state {
    /// TCP: established.
    pub const TCP_ESTABLISHED: u16 = 1;
    /// TCP: states 0..=10 exist (`IP_VS_TCP_S_LAST` is 11).
    pub const TCP_LAST: u16 = 11;
    /// UDP: the only state.
    pub const UDP_NORMAL: u16 = 0;
    /// Template: none.
    pub const TEMPLATE_NONE: u16 = 0;
}

/// Why a datagram is not an IPVS sync v1 message. The whole datagram is dropped, as the kernel
/// drops it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the 4-byte version 0 header.
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// The header's size field is not the datagram's length.
    SizeMismatch {
        /// Size announced.
        size: usize,
        /// Bytes received.
        len: usize,
    },
    /// A version 0 message (or a version 1 header with its reserved bytes set).
    Version0,
    /// An entry runs past the end of the datagram.
    Truncated {
        /// Index of the entry.
        entry: usize,
    },
    /// An entry's version nibble is not 0.
    EntryVersion {
        /// Index of the entry.
        entry: usize,
        /// Version received.
        version: u8,
    },
    /// An entry's type is neither IPv4 (0) nor IPv6 (bit 0).
    EntryType {
        /// Index of the entry.
        entry: usize,
        /// Type received.
        ty: u8,
    },
    /// An entry's size is below the fixed part of its family.
    EntrySize {
        /// Index of the entry.
        entry: usize,
        /// Size received.
        size: usize,
    },
    /// A parameter header or body runs past its entry, or has length 0.
    BadParam {
        /// Index of the entry.
        entry: usize,
    },
    /// A known parameter twice, or with a length it cannot have.
    BadParamValue {
        /// Index of the entry.
        entry: usize,
        /// Parameter type.
        ptype: u8,
    },
}

impl DecodeError {
    /// The name this error is counted under (`ka status`).
    pub const fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooShort { .. } => "too_short",
            DecodeError::SizeMismatch { .. } => "size_mismatch",
            DecodeError::Version0 => "version_0",
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::EntryVersion { .. } => "entry_version",
            DecodeError::EntryType { .. } => "entry_type",
            DecodeError::EntrySize { .. } => "entry_size",
            DecodeError::BadParam { .. } | DecodeError::BadParamValue { .. } => "bad_param",
        }
    }

    /// Every reason name, for reports.
    pub const REASONS: &'static [&'static str] =
        &["too_short", "size_mismatch", "version_0", "truncated", "entry_version", "entry_type", "entry_size", "bad_param"];
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort { len } => write!(f, "sync message of {len} bytes is shorter than a header"),
            DecodeError::SizeMismatch { size, len } => write!(f, "sync message announces {size} bytes, {len} received"),
            DecodeError::Version0 => f.write_str("IPVS sync version 0 message (set sync_version=1 on the master)"),
            DecodeError::Truncated { entry } => write!(f, "sync entry {entry} runs past the message"),
            DecodeError::EntryVersion { entry, version } => write!(f, "sync entry {entry} has version {version} (want 0)"),
            DecodeError::EntryType { entry, ty } => write!(f, "sync entry {entry} has type {ty}"),
            DecodeError::EntrySize { entry, size } => write!(f, "sync entry {entry} of {size} bytes is shorter than its addresses"),
            DecodeError::BadParam { entry } => write!(f, "sync entry {entry} has a malformed parameter"),
            DecodeError::BadParamValue { entry, ptype } => write!(f, "sync entry {entry} repeats parameter {ptype} or gives it a bad length"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The version 1 message header (`struct ip_vs_sync_mesg`). The first byte is 0, so a version 0
/// receiver drops the message.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |      0        |    SyncID     |            Size               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Count Conns  |    Version    |    Reserved, set to Zero      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    IPVS Sync Connection (1)                   |
/// ~                              ...                              ~
/// |                    IPVS Sync Connection (n)                   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Sync id (`lvs_sync_daemon ... id N`; keepalived's default is the instance's VRID).
    pub syncid: u8,
    /// Length of the whole message.
    pub size: u16,
    /// Connection entries that follow.
    pub nr_conns: u8,
}

impl Header {
    /// Decodes and checks the header of a whole datagram (its size field must be the
    /// datagram's length, as the kernel checks).
    ///
    /// # Errors
    /// Too short, a size mismatch, or not version 1.
    pub fn decode(buf: &[u8]) -> Result<Header, DecodeError> {
        if buf.len() < 4 {
            return Err(DecodeError::TooShort { len: buf.len() });
        }
        let size = u16::from_be_bytes([buf[2], buf[3]]);
        if usize::from(size) != buf.len() {
            return Err(DecodeError::SizeMismatch { size: usize::from(size), len: buf.len() });
        }
        // The kernel tells the versions apart by byte 0 (v0: the count), byte 5 and bytes 6-7.
        if buf.len() < HEADER_LEN || buf[0] != 0 || buf[5] != SYNC_PROTO_VER || buf[6] != 0 || buf[7] != 0 {
            return Err(DecodeError::Version0);
        }
        Ok(Header { syncid: buf[1], size, nr_conns: buf[4] })
    }

    /// Appends the header.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, self.syncid]);
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&[self.nr_conns, SYNC_PROTO_VER, 0, 0]);
    }
}

/// An optional parameter of a connection entry (type, length, data; the last one padded to 32
/// bits by the entry's alignment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Type (`OPT_*`, with [`OPT_F_PARAM`] when optional).
    pub ptype: u8,
    /// Data (1..=255 bytes).
    pub data: Vec<u8>,
}

/// A connection entry (`struct ip_vs_sync_v4` / `struct ip_vs_sync_v6`, by the type's
/// [`STYPE_F_INET6`] bit). Size covers the entry and its parameters; the next entry starts at
/// the next multiple of 4.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |    Type       |    Protocol   | Ver.  |        Size           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                             Flags                             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |            State              |         cport                 |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |            vport              |         dport                 |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                             fwmark                            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                             timeout  (in sec.)                |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          caddr, vaddr, daddr (3 x 4 bytes, or 3 x 16)         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Param. Type   | Param. Length |   Param. data ...             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conn {
    /// IP protocol.
    pub protocol: u8,
    /// `flags::*` (forwarding method, template...).
    pub flags: u32,
    /// Protocol state (`state::*`).
    pub state: u16,
    /// Client port.
    pub cport: u16,
    /// Virtual port.
    pub vport: u16,
    /// Real server port.
    pub dport: u16,
    /// Firewall mark of a fwmark service (0: none).
    pub fwmark: u32,
    /// Seconds the entry lives without traffic.
    pub timeout: u32,
    /// Client address (a template's is the client masked by the persistence granularity).
    pub caddr: IpAddr,
    /// Virtual address.
    pub vaddr: IpAddr,
    /// Real server address.
    pub daddr: IpAddr,
    /// Optional parameters, in order.
    pub params: Vec<Param>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn addr(b: &[u8], v6: bool) -> IpAddr {
    if v6 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[..16]);
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
}

impl Conn {
    /// Whether the entry is IPv6 (its client address is).
    pub fn is_v6(&self) -> bool {
        self.caddr.is_ipv6()
    }

    /// Bytes of the entry with its parameters, before padding (the size field).
    pub fn size(&self) -> usize {
        let fixed = if self.is_v6() { CONN_V6_LEN } else { CONN_V4_LEN };
        fixed + self.params.iter().map(|p| 2 + p.data.len()).sum::<usize>()
    }

    /// Bytes the entry takes in a message, padding included.
    pub fn padded_size(&self) -> usize {
        (self.size() + 3) & !3
    }

    /// Decodes entry `entry` at the start of `buf` (the rest of the message). Returns it and the
    /// offset of the next entry (possibly past the end of `buf`: the next decode then fails).
    ///
    /// # Errors
    /// What the kernel drops the whole message for.
    pub fn decode(buf: &[u8], entry: usize) -> Result<(Conn, usize), DecodeError> {
        if buf.len() < CONN_V4_LEN {
            return Err(DecodeError::Truncated { entry });
        }
        let ver_size = be16(buf, 2);
        let size = usize::from(ver_size & 0x0fff);
        if size > buf.len() {
            return Err(DecodeError::Truncated { entry });
        }
        if ver_size >> 12 != 0 {
            return Err(DecodeError::EntryVersion { entry, version: (ver_size >> 12) as u8 });
        }
        let ty = buf[0];
        let v6 = if ty & STYPE_F_INET6 != 0 {
            true
        } else if ty == 0 {
            false
        } else {
            return Err(DecodeError::EntryType { entry, ty });
        };
        let fixed = if v6 { CONN_V6_LEN } else { CONN_V4_LEN };
        if size < fixed {
            return Err(DecodeError::EntrySize { entry, size });
        }
        let alen = if v6 { 16 } else { 4 };
        let mut params: Vec<Param> = Vec::new();
        let mut p = fixed;
        while p < size {
            if p + 2 > size {
                return Err(DecodeError::BadParam { entry });
            }
            let (ptype, plen) = (buf[p], usize::from(buf[p + 1]));
            p += 2;
            if plen == 0 || p + plen > size {
                return Err(DecodeError::BadParam { entry });
            }
            let known = ptype & !OPT_F_PARAM;
            let max = match known {
                OPT_SEQ_DATA => Some(SEQ_DATA_LEN),
                OPT_PE_DATA => Some(PE_DATA_MAXLEN),
                OPT_PE_NAME => Some(PE_NAME_MAXLEN),
                _ => None,
            };
            if let Some(max) = max {
                let twice = params.iter().any(|q| q.ptype & !OPT_F_PARAM == known);
                let bad_len = if known == OPT_SEQ_DATA { plen != max } else { plen > max };
                if twice || bad_len {
                    return Err(DecodeError::BadParamValue { entry, ptype });
                }
            }
            params.push(Param { ptype, data: buf[p..p + plen].to_vec() });
            p += plen;
        }
        let conn = Conn {
            protocol: buf[1],
            flags: be32(buf, 4),
            state: be16(buf, 8),
            cport: be16(buf, 10),
            vport: be16(buf, 12),
            dport: be16(buf, 14),
            fwmark: be32(buf, 16),
            timeout: be32(buf, 20),
            caddr: addr(&buf[24..], v6),
            vaddr: addr(&buf[24 + alen..], v6),
            daddr: addr(&buf[24 + 2 * alen..], v6),
            params,
        };
        Ok((conn, (size + 3) & !3))
    }

    /// Appends the entry and its padding. The three addresses must be of one family (the
    /// client's decides).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let v6 = self.is_v6();
        let size = self.size();
        out.push(if v6 { STYPE_F_INET6 } else { 0 });
        out.push(self.protocol);
        out.extend_from_slice(&((size & 0x0fff) as u16).to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.state.to_be_bytes());
        for port in [self.cport, self.vport, self.dport] {
            out.extend_from_slice(&port.to_be_bytes());
        }
        out.extend_from_slice(&self.fwmark.to_be_bytes());
        out.extend_from_slice(&self.timeout.to_be_bytes());
        for a in [self.caddr, self.vaddr, self.daddr] {
            match (a, v6) {
                (IpAddr::V4(a), false) => out.extend_from_slice(&a.octets()),
                (IpAddr::V6(a), true) => out.extend_from_slice(&a.octets()),
                (IpAddr::V4(a), true) => out.extend_from_slice(&a.to_ipv6_mapped().octets()),
                (IpAddr::V6(_), false) => out.extend_from_slice(&[0; 4]),
            }
        }
        for p in &self.params {
            out.push(p.ptype);
            out.push(p.data.len() as u8);
            out.extend_from_slice(&p.data);
        }
        out.resize(out.len() + (self.padded_size() - size), 0);
    }
}

/// A whole datagram: the header and its entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Sync id.
    pub syncid: u8,
    /// Connection entries (at most [`MAX_CONNS`]).
    pub conns: Vec<Conn>,
}

impl Message {
    /// Decodes a datagram.
    ///
    /// # Errors
    /// Anything the kernel drops the whole datagram for.
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        let h = Header::decode(buf)?;
        let mut conns = Vec::with_capacity(usize::from(h.nr_conns));
        let mut at = HEADER_LEN;
        for entry in 0..usize::from(h.nr_conns) {
            let rest = buf.get(at..).ok_or(DecodeError::Truncated { entry })?;
            let (c, next) = Conn::decode(rest, entry)?;
            conns.push(c);
            at += next;
        }
        Ok(Message { syncid: h.syncid, conns })
    }

    /// Length of the encoded message.
    pub fn len(&self) -> usize {
        HEADER_LEN + self.conns.iter().map(Conn::padded_size).sum::<usize>()
    }

    /// Whether the message has no entry.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Appends the encoded message (the caller keeps it within [`MAX_CONNS`] entries and 64 KiB).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let h = Header {
            syncid: self.syncid,
            size: u16::try_from(self.len()).unwrap_or(u16::MAX),
            nr_conns: u8::try_from(self.conns.len()).unwrap_or(u8::MAX),
        };
        h.encode(out);
        for c in &self.conns {
            c.encode(out);
        }
    }
}

#[cfg(test)]
mod tests;
