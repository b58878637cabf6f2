//! Maps of the VRRP fast path of `ka_xdp`: the instances the XDP program validates adverts for,
//! the last-seen timestamp of each instance's master, and the ring buffer of changes.
//!
//! Only active while [`crate::lb::G_VRRP_FASTPATH`] is set in the globals map. For each advert
//! (IP protocol 112) the program finds the instance by (ingress ifindex, VRID, family), applies
//! the ka-common codec rules (TTL, version and type, length, checksum, auth, VRRPv2 interval),
//! then classifies it against the master userspace last told it about:
//!
//! - **steady**: from `master_addr` with `master_prio` and `master_adver_int` while the instance
//!   is BACKUP: refreshes [`VRRP_SEEN_MAP`]; dropped when [`VRRP_F_DROP_STEADY`] is set, else
//!   passed.
//! - **change** (new master, priority or interval change, priority 0, a higher-priority peer
//!   while MASTER, anything else): a [`VrrpEvent`] on [`VRRP_EVENTS_MAP`], and always passed so
//!   the engine's raw socket gets the advert.
//! - **invalid**: counted per reason; dropped when [`VRRP_F_DROP_INVALID`] is set, else passed
//!   (the engine then counts it again with the same rules).
//!
//! The daemon chooses: with both flags clear the fast path only counts and timestamps.

use bytemuck::{Pod, Zeroable};

/// Instances, `HashMap<VrrpKey, VrrpInstance>`.
pub const VRRP_INSTANCES_MAP: &str = "KA_VRRP";
/// Last steady advert per instance, `HashMap<VrrpKey, u64>` (`bpf_ktime_get_ns`,
/// CLOCK_MONOTONIC). Userspace creates the entry; the kernel only updates it.
pub const VRRP_SEEN_MAP: &str = "KA_VRRP_SEEN";
/// Changes for the engine, a ring buffer of [`VrrpEvent`].
pub const VRRP_EVENTS_MAP: &str = "KA_VRRP_EVENTS";
/// Most instances.
pub const MAX_VRRP_INSTANCES: u32 = 1024;
/// Size of the event ring buffer, bytes.
pub const VRRP_EVENTS_BYTES: u32 = 256 * 1024;

/// Instance flag: check TTL/Hop Limit 255 (multicast; keepalived skips it for unicast).
pub const VRRP_F_CHECK_TTL: u8 = 1 << 0;
/// Instance flag: drop invalid adverts in XDP.
pub const VRRP_F_DROP_INVALID: u8 = 1 << 1;
/// Instance flag: drop steady-state adverts in XDP (the engine reads [`VRRP_SEEN_MAP`]).
pub const VRRP_F_DROP_STEADY: u8 = 1 << 2;
/// Instance flag: this node is MASTER for the instance.
pub const VRRP_F_MASTER: u8 = 1 << 3;

/// VRRPv3 checksum flavour: RFC 5798 pseudo-header.
pub const VRRP_CSUM_STANDARD: u8 = 0;
/// VRRPv3 checksum flavour: keepalived `old_unicast_checksum` (pseudo-header dst = group).
pub const VRRP_CSUM_OLD_UNICAST: u8 = 1;
/// VRRPv3 checksum flavour: no pseudo-header.
pub const VRRP_CSUM_NO_PSEUDO: u8 = 2;

/// Event kind: an advert from a router other than the known master.
pub const VRRP_EV_NEW_MASTER: u8 = 1;
/// Event kind: the master's priority changed.
pub const VRRP_EV_PRIO_CHANGE: u8 = 2;
/// Event kind: the master's advert interval changed.
pub const VRRP_EV_INTERVAL_CHANGE: u8 = 3;
/// Event kind: priority 0, the master resigns.
pub const VRRP_EV_RESIGN: u8 = 4;
/// Event kind: while MASTER, a peer with a higher priority (or equal and higher address).
pub const VRRP_EV_HIGHER_PRIO: u8 = 5;
/// Event kind: while MASTER, a peer with a lower priority.
pub const VRRP_EV_LOWER_PRIO: u8 = 6;

/// Key of [`VRRP_INSTANCES_MAP`] and [`VRRP_SEEN_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct VrrpKey {
    /// Ingress interface index.
    pub ifindex: u32,
    /// VRID.
    pub vrid: u8,
    /// `lb::FAMILY_V4` / `lb::FAMILY_V6`.
    pub family: u8,
    /// Padding.
    pub _pad: [u8; 2],
}

/// Value of [`VRRP_INSTANCES_MAP`]: what to check and what userspace knows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct VrrpInstance {
    /// VRRP version the instance runs (2 or 3).
    pub version: u8,
    /// `VRRP_F_*`.
    pub flags: u8,
    /// VRRPv2 auth type (0 none, 1 PASS).
    pub auth_type: u8,
    /// `VRRP_CSUM_*`.
    pub csum_mode: u8,
    /// Local advert interval, centiseconds (VRRPv2 adverts must match).
    pub adver_int_centis: u16,
    /// Local priority.
    pub local_prio: u8,
    /// Priority of the known master.
    pub master_prio: u8,
    /// VRRPv2 password (zero-padded).
    pub auth_data: [u8; 8],
    /// Address of the known master (zero: none known).
    pub master_addr: [u8; 16],
    /// Advert interval of the known master, centiseconds.
    pub master_adver_int_centis: u16,
    /// Padding.
    pub _pad: [u8; 2],
    /// IPv4 multicast group for [`VRRP_CSUM_OLD_UNICAST`].
    pub group_v4: [u8; 4],
    /// Local primary address (breaks priority ties, RFC 5798 §6.4.3).
    pub local_addr: [u8; 16],
}

/// An entry of [`VRRP_EVENTS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct VrrpEvent {
    /// `bpf_ktime_get_ns` at reception.
    pub ts_ns: u64,
    /// Ingress interface.
    pub ifindex: u32,
    /// VRID.
    pub vrid: u8,
    /// Family.
    pub family: u8,
    /// Advert version.
    pub version: u8,
    /// `VRRP_EV_*`.
    pub kind: u8,
    /// Advertised priority.
    pub priority: u8,
    /// Padding.
    pub _pad: u8,
    /// Advertised interval, centiseconds.
    pub adver_int_centis: u16,
    /// Padding.
    pub _pad2: u32,
    /// Sender address.
    pub src: [u8; 16],
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: `bytemuck::Pod` types.
    unsafe impl aya::Pod for VrrpKey {}
    unsafe impl aya::Pod for VrrpInstance {}
    unsafe impl aya::Pod for VrrpEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(core::mem::size_of::<VrrpKey>(), 8);
        assert_eq!(core::mem::size_of::<VrrpInstance>(), 56);
        assert_eq!(core::mem::size_of::<VrrpEvent>(), 40);
    }
}
