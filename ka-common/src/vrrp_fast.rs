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
//! A change whose priority is below the instance's reference ([`below_reference`]: ours while
//! MASTER, the known master's otherwise) cannot move mastership by itself, yet a flood of them
//! would cost the engine one wake-up each and make a MASTER answer each one. Those go through
//! a per-instance budget first ([`VrrpRate`], [`rate_admit`]): at most
//! [`VRRP_RATE_PER_INTERVAL`] per advert interval reach the engine (the first of each interval
//! always, as a keepalive, the others only when they change the source or priority last passed);
//! the rest are dropped and counted (`vrrp_lower_prio_limited`).
//!
//! The daemon chooses: with both flags clear the fast path only counts and timestamps (and
//! drops the below-reference adverts beyond their budget, which are valid but redundant).

use bytemuck::{Pod, Zeroable};

/// Instances, `HashMap<VrrpKey, VrrpInstance>`: every configured instance (userspace's record,
/// and the kernel's fallback when [`VRRP_VRID_MAP`] has no copy of one).
pub const VRRP_INSTANCES_MAP: &str = "KA_VRRP";
/// The kernel's first look-up, `Array<VrrpVridSlots>` of [`VRRP_VRID_ENTRIES`] entries at
/// [`vrid_index`]: a copy of the instances of each (VRID, family), up to
/// [`VRRP_VRID_SLOTS`] interfaces, compared linearly by ifindex. An array lookup is inlined by
/// the JIT, where a hash lookup is a helper call hashing the key (~13 ns of the steady advert's
/// 57). Userspace writes an instance to [`VRRP_INSTANCES_MAP`] first, then its copy here if a
/// slot is free; the instances of a VRID on more interfaces than slots are found in the hash.
/// Never pinned: a starting ka rewrites every instance, the hash answering meanwhile.
pub const VRRP_VRID_MAP: &str = "KA_VRRP_VRID";
/// Interfaces per (VRID, family) whose instance [`VRRP_VRID_MAP`] holds.
pub const VRRP_VRID_SLOTS: usize = 4;
/// Entries of [`VRRP_VRID_MAP`]: one per VRID and family.
pub const VRRP_VRID_ENTRIES: u32 = 512;

/// The [`VRRP_VRID_MAP`] index of (`vrid`, `family`): the VRID, plus 256 for IPv6.
#[inline(always)]
pub fn vrid_index(vrid: u8, family: u8) -> u32 {
    u32::from(vrid) | if family == crate::lb::FAMILY_V6 { 256 } else { 0 }
}
/// Last steady advert per instance, `Array<u64>` of [`MAX_VRRP_INSTANCES`] slots, the
/// instance's at [`VrrpInstance::seen_slot`] (`bpf_jiffies64`: the kernel's tick count, which
/// userspace converts to CLOCK_MONOTONIC with the tick rate; 0: never). Userspace assigns
/// the slot and zeroes it; the kernel only stores into it: an array slot found from the
/// instance already looked up, instead of a second hash lookup per steady advert.
pub const VRRP_SEEN_MAP: &str = "KA_VRRP_SEEN";
/// Changes for the engine, a ring buffer of [`VrrpEvent`].
pub const VRRP_EVENTS_MAP: &str = "KA_VRRP_EVENTS";
/// Budget of below-reference adverts per instance, `LruHashMap<VrrpKey, VrrpRate>`. Kernel
/// state of one process (never pinned): the kernel creates and updates the entries, and an
/// instance's entry simply ages out of the LRU when the instance is gone.
pub const VRRP_RATE_MAP: &str = "KA_VRRP_RATE";
/// Below-reference adverts XDP hands the engine per instance and advert interval, at most
/// (per CPU that races on the same entry at the very moment, at worst: the entry is updated
/// without atomics, so two CPUs can both take the last slot).
pub const VRRP_RATE_PER_INTERVAL: u32 = 4;
/// Most instances.
pub const MAX_VRRP_INSTANCES: u32 = 1024;
const _: () = assert!(MAX_VRRP_INSTANCES <= u16::MAX as u32, "seen_slot is a u16");
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

/// Nanoseconds in a centisecond (advert intervals are in centiseconds).
pub const NS_PER_CENTI: u64 = 10_000_000;

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
// 4-aligned (no padding: 56 bytes) so the kernel side copies it a word at a time.
#[repr(C, align(4))]
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
    /// The instance's slot of [`VRRP_SEEN_MAP`] (below [`MAX_VRRP_INSTANCES`]), assigned by
    /// userspace.
    pub seen_slot: u16,
    /// IPv4 multicast group for [`VRRP_CSUM_OLD_UNICAST`].
    pub group_v4: [u8; 4],
    /// Local primary address (breaks priority ties, RFC 5798 §6.4.3).
    pub local_addr: [u8; 16],
}

/// Value of [`VRRP_VRID_MAP`]: the instances of one (VRID, family), by interface. A slot whose
/// `ifindex` is 0 is free (no interface has index 0).
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct VrrpVridSlots {
    /// Ingress interface of each slot's instance (0: free).
    pub ifindex: [u32; VRRP_VRID_SLOTS],
    /// The instance of each slot, as in [`VRRP_INSTANCES_MAP`].
    pub inst: [VrrpInstance; VRRP_VRID_SLOTS],
}

impl VrrpVridSlots {
    /// The slot holding `ifindex`'s instance, or else the first free one (`None`: all taken
    /// by other interfaces), and whether it already holds `ifindex`'s (pure).
    pub fn slot_for(&self, ifindex: u32) -> Option<(usize, bool)> {
        if ifindex == 0 {
            return None;
        }
        match self.ifindex.iter().position(|&i| i == ifindex) {
            Some(s) => Some((s, true)),
            None => self.ifindex.iter().position(|&i| i == 0).map(|s| (s, false)),
        }
    }
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

/// Value of [`VRRP_RATE_MAP`]: the current window of one instance's budget of below-reference
/// adverts (see [`rate_admit`]). All zero is a fresh entry (its window has long expired).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct VrrpRate {
    /// Start of the current window, `bpf_ktime_get_ns`.
    pub window_start_ns: u64,
    /// Source of the last advert passed (IPv4 in the first 4 bytes).
    pub last_src: [u8; 16],
    /// Adverts passed in the current window.
    pub passed: u32,
    /// Priority of the last advert passed.
    pub last_prio: u8,
    /// Padding.
    pub _pad: [u8; 3],
}

/// Equality of two 16-byte addresses as two 64-bit compares (an array `==` would become a
/// `bcmp` call, which BPF does not have).
#[inline(always)]
pub fn eq16(a: &[u8; 16], b: &[u8; 16]) -> bool {
    halves(a) == halves(b)
}

/// `a > b` as big-endian numbers (RFC 5798 §6.4.3 tie-break on the primary address).
#[inline(always)]
pub fn gt16(a: &[u8; 16], b: &[u8; 16]) -> bool {
    halves(a) > halves(b)
}

#[inline(always)]
fn halves(a: &[u8; 16]) -> (u64, u64) {
    (
        u64::from_be_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]),
        u64::from_be_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]),
    )
}

/// Whether a valid advert (priority `prio`, from `src`) is below the instance's reference and
/// so goes through the [`VrrpRate`] budget: while MASTER, anything but a higher priority (or an
/// equal one from a higher address: RFC 5798 §6.4.3, the adverts that make us Backup);
/// otherwise a priority below the known master's (below ours when no master is known), from
/// any source (priority 0 included). Adverts that can change mastership are never limited.
#[inline(always)]
pub fn below_reference(inst: &VrrpInstance, src: &[u8; 16], prio: u8) -> bool {
    if inst.flags & VRRP_F_MASTER != 0 {
        !(prio > inst.local_prio || (prio == inst.local_prio && gt16(src, &inst.local_addr)))
    } else if inst.master_prio != 0 {
        prio < inst.master_prio
    } else {
        prio < inst.local_prio
    }
}

/// The budget of below-reference adverts (pure; the XDP program calls it on the map entry):
/// returns whether this one (from `src` with `prio`, at `now_ns`) is handed to the engine, and
/// updates `state`. A window lasts `window_ns` (the instance's advert interval); in each, the
/// first advert passes (a keepalive: a lower-priority router that keeps advertising is still
/// heard once per interval), then up to [`VRRP_RATE_PER_INTERVAL`] in all, each only if its
/// source or priority differs from the last one passed. The rest are for the caller to drop.
#[inline(always)]
pub fn rate_admit(
    state: &mut VrrpRate,
    now_ns: u64,
    window_ns: u64,
    src: &[u8; 16],
    prio: u8,
) -> bool {
    // A clock behind the window start (an entry written by someone else) also starts afresh.
    if now_ns.wrapping_sub(state.window_start_ns) >= window_ns {
        state.window_start_ns = now_ns;
        state.passed = 0;
    }
    let changed = state.passed == 0 || prio != state.last_prio || !eq16(src, &state.last_src);
    if !changed || state.passed >= VRRP_RATE_PER_INTERVAL {
        return false;
    }
    state.passed += 1;
    state.last_prio = prio;
    state.last_src = *src;
    true
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: `bytemuck::Pod` types.
    unsafe impl aya::Pod for VrrpKey {}
    unsafe impl aya::Pod for VrrpInstance {}
    unsafe impl aya::Pod for VrrpEvent {}
    unsafe impl aya::Pod for VrrpRate {}
    unsafe impl aya::Pod for VrrpVridSlots {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{vec, vec::Vec};

    #[test]
    fn sizes() {
        assert_eq!(core::mem::size_of::<VrrpKey>(), 8);
        assert_eq!(core::mem::size_of::<VrrpInstance>(), 56);
        assert_eq!(core::mem::size_of::<VrrpEvent>(), 40);
        assert_eq!(core::mem::size_of::<VrrpRate>(), 32);
        assert_eq!(core::mem::size_of::<VrrpVridSlots>(), 16 + 56 * VRRP_VRID_SLOTS);
    }

    /// The array index: one entry per VRID and family, all distinct.
    #[test]
    fn vrid_index_table() {
        use crate::lb::{FAMILY_V4, FAMILY_V6};
        let cases = [(0, FAMILY_V4, 0), (51, FAMILY_V4, 51), (255, FAMILY_V4, 255), (0, FAMILY_V6, 256), (255, FAMILY_V6, 511)];
        for (vrid, fam, want) in cases {
            assert_eq!(vrid_index(vrid, fam), want, "vrid {vrid} family {fam}");
            assert!(want < VRRP_VRID_ENTRIES);
        }
    }

    /// Slots: the interface's own slot, else the first free one, none when every slot holds
    /// another interface; ifindex 0 (the free mark) never gets one.
    #[test]
    fn slot_for_table() {
        let with = |ifs: [u32; VRRP_VRID_SLOTS]| VrrpVridSlots { ifindex: ifs, ..Default::default() };
        let cases = [
            ("empty", with([0, 0, 0, 0]), 7, Some((0, false))),
            ("own slot", with([3, 7, 0, 0]), 7, Some((1, true))),
            ("first free after others", with([3, 0, 9, 0]), 7, Some((1, false))),
            ("own slot after a hole", with([3, 0, 7, 0]), 7, Some((2, true))),
            ("full of others", with([1, 2, 3, 4]), 7, None),
            ("ifindex 0", with([0, 0, 0, 0]), 0, None),
        ];
        for (name, e, ifindex, want) in cases {
            assert_eq!(e.slot_for(ifindex), want, "{name}");
        }
    }

    const A: [u8; 16] = [198, 18, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const B: [u8; 16] = [198, 18, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const LOCAL: [u8; 16] = [198, 18, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const SEC: u64 = 1_000_000_000;

    /// Sequences of adverts through one budget of 1 s windows: (time in ms, source, priority,
    /// passed?). Proves: the first of a window always passes; repeats of the last one passed
    /// are dropped; changes pass until the budget is spent; a new window starts afresh.
    #[test]
    fn rate_admit_sequences() {
        type Step = (u64, [u8; 16], u8, bool);
        let repeat = |at: u64, n: usize, src, prio, want| -> Vec<Step> {
            (0..n).map(|_| (at, src, prio, want)).collect()
        };
        let cases: Vec<(&str, Vec<Step>)> = vec![
            ("a repeated advert: the first of each window passes", {
                let mut v = vec![(0, A, 50, true)];
                v.extend(repeat(10, 100, A, 50, false));
                v.push((999, A, 50, false));
                v.push((1000, A, 50, true));
                v.extend(repeat(1500, 10, A, 50, false));
                v.push((2000, A, 50, true));
                v
            }),
            (
                "changes pass until the budget is spent",
                vec![
                    (0, A, 50, true),
                    (1, B, 50, true),
                    (2, B, 50, false),
                    (3, B, 60, true),
                    (4, A, 60, true),
                    (5, B, 70, false),
                    (6, A, 80, false),
                    (1000, B, 70, true),
                ],
            ),
            ("rotating sources: four per window", {
                let mut v = Vec::new();
                for w in 0..3u64 {
                    for i in 0..50u8 {
                        let mut s = A;
                        s[3] = i;
                        v.push((w * 1000 + u64::from(i), s, 50, i < 4));
                    }
                }
                v
            }),
            (
                "priority 0 is a change like any other",
                vec![(0, A, 50, true), (1, A, 0, true), (2, A, 0, false)],
            ),
        ];
        for (name, steps) in cases {
            let mut st = VrrpRate::default();
            for (i, (ms, src, prio, want)) in steps.iter().enumerate() {
                // Windows counted from 5 s after boot, as in a real kernel.
                let got = rate_admit(&mut st, 5 * SEC + ms * 1_000_000, SEC, src, *prio);
                assert_eq!(
                    got, *want,
                    "{name}: step {i} ({ms} ms, {src:?}, prio {prio}): {st:?}"
                );
            }
        }
    }

    /// A fresh (all-zero) entry and a window start ahead of the clock both start a new window.
    #[test]
    fn rate_admit_fresh_and_future_entries() {
        let mut st = VrrpRate::default();
        assert!(
            rate_admit(&mut st, 7, SEC, &A, 50),
            "fresh entry, early clock"
        );
        let mut st = VrrpRate {
            window_start_ns: 100 * SEC,
            passed: VRRP_RATE_PER_INTERVAL,
            last_src: A,
            last_prio: 50,
            _pad: [0; 3],
        };
        assert!(
            rate_admit(&mut st, 10 * SEC, SEC, &A, 50),
            "window start in the future"
        );
        assert_eq!((st.window_start_ns, st.passed), (10 * SEC, 1));
    }

    fn inst(master: bool, local_prio: u8, master_prio: u8) -> VrrpInstance {
        VrrpInstance {
            flags: if master { VRRP_F_MASTER } else { 0 },
            local_prio,
            master_prio,
            local_addr: LOCAL,
            ..VrrpInstance::default()
        }
    }

    /// Which adverts go through the budget: (instance, source, priority, below?). RFC 5798
    /// §6.4.3: a MASTER yields to a higher priority or an equal one from a higher address, so
    /// those are never limited; a BACKUP's reference is its master's priority (its own when it
    /// follows none).
    #[test]
    fn below_reference_table() {
        let cases = [
            ("master: lower", inst(true, 150, 0), A, 100, true),
            ("master: priority 0", inst(true, 150, 0), A, 0, true),
            ("master: higher", inst(true, 150, 0), A, 200, false),
            (
                "master: equal from a higher address",
                inst(true, 150, 0),
                A,
                150,
                false,
            ),
            (
                "master: equal from a lower address",
                inst(true, 150, 0),
                [198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                150,
                true,
            ),
            (
                "master: equal from our own address",
                inst(true, 150, 0),
                LOCAL,
                150,
                true,
            ),
            (
                "backup: below the master's",
                inst(false, 100, 150),
                A,
                120,
                true,
            ),
            ("backup: priority 0", inst(false, 100, 150), A, 0, true),
            (
                "backup: the master's priority",
                inst(false, 100, 150),
                A,
                150,
                false,
            ),
            (
                "backup: above the master's",
                inst(false, 100, 150),
                A,
                200,
                false,
            ),
            (
                "backup, no master known: below ours",
                inst(false, 100, 0),
                A,
                50,
                true,
            ),
            (
                "backup, no master known: ours",
                inst(false, 100, 0),
                A,
                100,
                false,
            ),
        ];
        for (name, i, src, prio, want) in cases {
            assert_eq!(below_reference(&i, &src, prio), want, "{name}");
        }
    }
}
