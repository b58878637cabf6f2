//! Connection counting and the least-connection family of schedulers (`lc`, `wlc`, `sed`,
//! `nq`, `fo`, `ovf`, `lblc`, `lblcr`, `twos`) with IPVS's semantics, shared by `ka_xdp` and
//! userspace: map layouts, the TCP state machine of a connection-table entry, entry lifetimes
//! (`lvs_timeouts`), the `uthreshold`/`lthreshold` hysteresis and the pure choice functions.
//! The choice functions are generic over a candidate loader, so the kernel runs the very code
//! userspace unit-tests.
//!
//! # How the counts are kept
//!
//! IPVS counts, per real server, *active* connections (TCP in ESTABLISHED) and *inactive* ones
//! (every other TCP state, and every UDP flow), and schedules on the "overhead"
//! `active × 256 + inactive`. ka keeps the same two counters per backend in
//! [`BACKEND_CONNS_MAP`], written only by the datapath's own entry transitions:
//!
//! - a new flow recorded in the connection table counts +1 for its backend, inactive (a SYN, a
//!   UDP flow) or active (a TCP flow first seen established);
//! - a packet that moves a TCP entry into or out of ESTABLISHED ([`tcp_next_state`]: the
//!   client's ACK after its SYN, then a FIN or RST) moves one count between the two;
//! - an entry leaving the table — replaced by another flow, found expired by a lookup, or
//!   expired by the sweeper program ([`SWEEP_PROGRAM`], run by userspace every second) — counts
//!   −1.
//!
//! Each way of the connection table carries its state next to its last-seen stamp, and the
//! two form one 64-bit word ([`life`]) that every transition replaces with a compare-and-swap:
//! of the CPUs racing on an entry exactly one wins each transition and applies its count, so a
//! count is never applied twice or lost. The counters themselves are shared words updated by
//! atomic adds (IPVS's `atomic_t`s): a scheduler on any CPU sees every other CPU's flows at
//! once.
//!
//! # How exact they are
//!
//! - Like IPVS for DR and TUN, states come from the client's packets only (IPVS's
//!   "input-only" state table); for NAT, IPVS also sees the real server's packets, which here
//!   take the NAT reverse path. An entry becomes active on the client's ACK either way.
//! - An entry evicted to make room for another flow (4 ways per set, least recently seen
//!   first) leaves the counts at once, where IPVS would keep the connection until it expired;
//!   with 262,144 entries per family this only happens under a flood.
//! - Expiry is exact to the jiffy when a lookup finds the entry, and within a second (the
//!   sweep period) otherwise.
//! - A real server's counters are zeroed when its backend id is first allocated; entries of a
//!   removed server that expire after its id was given to another server (ids are reused
//!   least recently freed first, after all 4096 were used once) are subtracted from the new
//!   owner's counters, which read as 0 rather than wrap ([`Cand::from_conns`]).
//! - Only services that use the counts keep them ([`crate::lb::SVC_F_COUNT`]: a
//!   least-connection scheduler, or a real server with a `uthreshold`): counting costs an
//!   atomic add per new flow and per state change, which `mh`, `rr`... services do not pay.
//!
//! # Candidates
//!
//! A least-connection scheduler walks its service's [`DestList`] in the kernel: up to
//! [`MAX_DESTS`] real servers that are healthy and have a weight above 0, in configuration
//! order (the order of IPVS's destination list), double-buffered like the scheduling tables.
//! A service with more available servers considers the first [`MAX_DESTS`] (`ka check` warns).

use bytemuck::{Pod, Zeroable};

use crate::wire::{IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// `BPF_F_MMAPABLE` (uapi `linux/bpf.h`): an array map userspace can `mmap`.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

/// No backend (a sentinel where an `Option` would copy an undefined payload in the kernel).
pub const NO_ID: u32 = u32::MAX;

/// Most candidates a least-connection scheduler considers per service: the bound of the
/// kernel's loop over a [`DestList`] (each candidate costs a counter load and a compare).
pub const MAX_DESTS: usize = 64;

/// Least-connection candidate lists, `Array<DestList>` of `MAX_SERVICES * TABLE_BANKS`,
/// indexed by [`dests_index`] (double-buffered like `TABLES_MAP`).
pub const DESTS_MAP: &str = "KA_DESTS";
/// Connection counts per backend, `Array<BackendConns>` of `MAX_BACKENDS`.
pub const BACKEND_CONNS_MAP: &str = "KA_BACKEND_CONNS";
/// Per-backend tally of the connection-table entries that are not counted in
/// [`BACKEND_CONNS_MAP`] (services whose scheduler needs no counts), by the sweeper: each pass
/// over the tables adds every live uncounted entry to its backend's `active` or `inactive`,
/// and userspace reads and zeroes the tally after the pass (`BPF_F_MMAPABLE`; only the
/// sweeper writes it, so plain adds). `overloaded` is unused.
pub const BACKEND_TALLY_MAP: &str = "KA_BACKEND_TALLY";
/// Entry lifetimes in jiffies, `Array<ConnTimeouts>` of 1, written by userspace.
pub const CONN_TIMEOUTS_MAP: &str = "KA_CONN_TIMEOUTS";
/// `lblc`/`lblcr` destination cache, `LruHashMap<LblcKey, LblcValue>` of [`LBLC_TABLE_SIZE`].
pub const LBLC_MAP: &str = "KA_LBLC";
/// Entries of [`LBLC_MAP`] (IPVS: 1024 buckets, collected above 16 entries per bucket).
pub const LBLC_TABLE_SIZE: u32 = 16_384;
/// Servers an `lblcr` destination may be replicated to (IPVS's set is unbounded; a full set
/// replaces its most loaded member).
pub const LBLCR_SET: usize = 4;

/// The connection-table sweeper: an XDP program never attached, run by userspace through
/// BPF_PROG_TEST_RUN on a [`SweepIo`] frame. It expires the entries of up to [`SWEEP_SETS`]
/// sets whose lifetime ([`ConnTimeouts`]) passed, uncounting them, and reports the kernel's
/// clocks (jiffies and CLOCK_MONOTONIC), from which userspace learns the tick rate.
pub const SWEEP_PROGRAM: &str = "ka_conn_sweep";
/// Sets one sweeper run visits (the bound of its loop).
pub const SWEEP_SETS: u32 = 64;

/// Connection state (low byte of [`crate::lb::ConnWay4::state`]): TCP, SYN seen, not
/// established (IPVS SYN_RECV). Inactive.
pub const CONN_S_SYN: u32 = 1;
/// TCP established (IPVS ESTABLISHED). Active.
pub const CONN_S_EST: u32 = 2;
/// TCP, FIN seen (IPVS FIN_WAIT / TIME_WAIT). Inactive.
pub const CONN_S_FIN: u32 = 3;
/// TCP, RST seen or closed before it was established (IPVS CLOSE). Inactive.
pub const CONN_S_CLOSE: u32 = 4;
/// UDP (IPVS counts every UDP flow inactive).
pub const CONN_S_UDP: u32 = 5;
/// Mask of the state in [`crate::lb::ConnWay4::state`].
pub const CONN_S_MASK: u32 = 0xff;
/// Flag of [`crate::lb::ConnWay4::state`]: the entry is counted in [`BACKEND_CONNS_MAP`]
/// (its service keeps counts). An entry without it is never uncounted.
pub const CONN_F_COUNTED: u32 = 0x100;
/// [`crate::lb::ConnWay4::state`] of a way being written (with stamp 0): readers skip it, no
/// other writer takes it.
pub const CONN_BUSY: u32 = 0x8000_0000;
/// Flag of [`crate::lb::ConnWay4::state`]: a flow other than TCP (UDP) whose entry saw a
/// packet after the one that created it, so not a one-packet spoof (conntrack's
/// `IPS_ASSURED`). With TCP ESTABLISHED, what [`is_assured`] protects from eviction.
pub const CONN_F_ASSURED: u32 = 0x200;

/// IPVS's SYN_RECV lifetime, for an entry whose SYN was seen but not the ACK that follows.
pub const SYN_TIMEOUT_S: u32 = 60;
/// IPVS's CLOSE lifetime, for an entry after a RST.
pub const CLOSE_TIMEOUT_S: u32 = 10;
/// IPVS's default ESTABLISHED lifetime (`lvs_timeouts tcp`).
pub const DEFAULT_TCP_TIMEOUT_S: u32 = 900;
/// IPVS's default FIN_WAIT lifetime (`lvs_timeouts tcpfin`).
pub const DEFAULT_TCP_FIN_TIMEOUT_S: u32 = 120;
/// IPVS's default UDP lifetime (`lvs_timeouts udp`).
pub const DEFAULT_UDP_TIMEOUT_S: u32 = 300;
/// IPVS's `lblc_expiration`/`lblcr_expiration` default: a destination cache entry unused for
/// a day is forgotten (`lblc`), a replicated set unchanged for a day drops its most loaded
/// server (`lblcr`).
pub const LBLC_EXPIRATION_S: u32 = 24 * 60 * 60;

/// The index of service `id`'s bank `bank` in [`DESTS_MAP`].
#[inline(always)]
pub const fn dests_index(id: u32, bank: u32) -> u32 {
    id * crate::lb::TABLE_BANKS + bank
}

/// Value of [`DESTS_MAP`]: the candidates of a least-connection scheduler.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct DestList {
    /// Candidates in use (≤ [`MAX_DESTS`]).
    pub n: u32,
    /// The scheduler's [`Metric`] flags: [`METRIC_OVF`], [`METRIC_NQ`].
    pub metric_flags: u32,
    /// The scheduler's [`Metric`] coefficients `a, b, c, d` ([`metric_of`]). In the map, not
    /// derived from the scheduler in the kernel: loaded values are unknown to the verifier,
    /// so the candidate walk is checked once for every scheduler, not once per scheduler.
    pub metric: [u32; 4],
    /// Backend ids.
    pub ids: [u32; MAX_DESTS],
    /// Weights (> 0), same order.
    pub weights: [u32; MAX_DESTS],
}

impl Default for DestList {
    fn default() -> DestList {
        DestList::zeroed()
    }
}

/// Value of [`BACKEND_CONNS_MAP`]: IPVS's per-destination connection counters. `active` and
/// `inactive` are updated with atomic adds (a decrement adds `u32::MAX`) and read as `i32`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BackendConns {
    /// Established TCP connections.
    pub active: u32,
    /// Other connections (TCP before established or after FIN/RST, UDP).
    pub inactive: u32,
    /// Non-zero while the backend is overloaded (IPVS `IP_VS_DEST_F_OVERLOAD`): set when a
    /// new connection brings `active + inactive` to its `uthreshold`, cleared when a leaving
    /// one brings it below the `lthreshold` ([`overload_after_bind`], [`overload_clears`]).
    pub overloaded: u32,
    /// Padding.
    pub _pad: u32,
}

/// Value of [`CONN_TIMEOUTS_MAP`]: lifetimes of connection-table entries in jiffies (0: the
/// entry never expires by age, as before userspace knows the tick rate).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ConnTimeouts {
    /// ESTABLISHED TCP (`lvs_timeouts tcp`).
    pub tcp: u32,
    /// TCP after a FIN (`lvs_timeouts tcpfin`).
    pub tcp_fin: u32,
    /// UDP (`lvs_timeouts udp`).
    pub udp: u32,
    /// TCP after its SYN, before it is established ([`SYN_TIMEOUT_S`]).
    pub syn: u32,
    /// TCP after a RST ([`CLOSE_TIMEOUT_S`]).
    pub close: u32,
    /// `lblc`/`lblcr` cache expiration ([`LBLC_EXPIRATION_S`]).
    pub lblc: u32,
    /// Flood mode ([`flood_count`]): new unassured entries a CPU records per `flood_window`
    /// before it enters flood mode (`lvs_flood_rate`; 0: never).
    pub flood_rate: u32,
    /// The flood-mode window in jiffies (one second; 0: flood mode off).
    pub flood_window: u32,
}

/// Key of [`LBLC_MAP`]: a destination address of a service.
// 4-aligned so the kernel side fills it a word at a time.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct LblcKey {
    /// Destination address (IPv4 in the first four bytes).
    pub addr: [u8; 16],
    /// Service id.
    pub service: u32,
    /// Family.
    pub family: u8,
    /// Padding.
    pub _pad: [u8; 3],
}

/// Value of [`LBLC_MAP`]: the server (`lblc`) or servers (`lblcr`) of a destination.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct LblcValue {
    /// Backend ids; `lblc` uses the first.
    pub ids: [u32; LBLCR_SET],
    /// Ids in use.
    pub len: u32,
    /// Last use, jiffies (low 32 bits).
    pub lastuse: u32,
    /// Last change of the set (`lblcr`), jiffies.
    pub lastmod: u32,
    /// Padding.
    pub _pad: u32,
}

/// The frame of a [`SWEEP_PROGRAM`] run: arguments in, results out (in place).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SweepIo {
    /// In: `FAMILY_V4` or `FAMILY_V6` (which table).
    pub family: u32,
    /// In: first set.
    pub first: u32,
    /// In: sets to visit (≤ [`SWEEP_SETS`]; 0 only reads the clocks).
    pub count: u32,
    /// Out: entries expired by this run.
    pub expired: u32,
    /// Out: live entries seen.
    pub live: u32,
    /// Padding.
    pub _pad: u32,
    /// Out: `bpf_jiffies64()`.
    pub jiffies: u64,
    /// Out: `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ktime_ns: u64,
    /// Out: `bpf_ktime_get_coarse_ns()` (CLOCK_MONOTONIC_COARSE: the time of the last tick).
    pub ktime_coarse_ns: u64,
    /// Padding up to a minimal Ethernet frame (BPF_PROG_TEST_RUN wants at least 14 bytes).
    pub _frame: [u8; 16],
}

/// The life word of a way: its stamp in the low half, its state in the high half (the two
/// adjacent `u32` fields, little-endian), replaced as one by compare-and-swap.
#[inline(always)]
pub const fn life(stamp: u32, state: u32) -> u64 {
    stamp as u64 | (state as u64) << 32
}

/// The stamp of a life word (0: free or busy).
#[inline(always)]
pub const fn life_stamp(life: u64) -> u32 {
    life as u32
}

/// The state of a life word.
#[inline(always)]
pub const fn life_state(life: u64) -> u32 {
    (life >> 32) as u32
}

/// Whether an entry state counts as active (IPVS: TCP ESTABLISHED).
#[inline(always)]
pub const fn is_active(state: u32) -> bool {
    state & CONN_S_MASK == CONN_S_EST
}

/// Whether an entry in `state` is assured: TCP ESTABLISHED, or a flow of another protocol
/// seen twice ([`CONN_F_ASSURED`]). A single spoofed packet (a SYN, a UDP datagram) never
/// makes an assured entry, so a flood cannot push these out (see [`evict_rank`]).
#[inline(always)]
pub const fn is_assured(state: u32) -> bool {
    is_active(state) || state & CONN_F_ASSURED != 0
}

/// Bit of an [`evict_rank`] set for an entry that is not assured.
pub const EVICT_UNASSURED: u32 = 0x8000_0000;

/// How readily a live way of `state`, last seen `age` jiffies ago, gives its place to a new
/// entry when its set is full: the way with the highest rank goes. Every unassured way ranks
/// above every assured one ([`EVICT_UNASSURED`]), and within each class the least recently
/// seen ranks highest. So a SYN or UDP flood replaces its own entries and never an
/// established connection while its set holds an unassured way.
// Verifier: branch-free (no select on the state), so the connection table's victim search
// keeps one verifier state per way instead of two.
#[inline(always)]
pub const fn evict_rank(state: u32, age: u32) -> u32 {
    // x = 0 iff ESTABLISHED; (x | -x) >> 31 = 1 iff x != 0 (x < 2^31).
    let x = (state & CONN_S_MASK) ^ CONN_S_EST;
    let not_est = (x | x.wrapping_neg()) >> 31;
    let not_assured = (state >> CONN_F_ASSURED.trailing_zeros() & 1) ^ 1;
    (age & !EVICT_UNASSURED) | (not_est & not_assured) << 31
}

/// Default `lvs_flood_rate`: new unassured entries (a SYN, a first UDP datagram) one CPU
/// records per second before it enters flood mode.
pub const DEFAULT_FLOOD_RATE: u32 = 10_000;

/// A CPU's count of new unassured connection-table entries in its current flood-mode window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FloodWindow {
    /// Start of the window, jiffies (low 32 bits).
    pub start: u32,
    /// New unassured entries counted since `start`.
    pub count: u32,
}

/// [`flood_count`]: the CPU is below the rate.
pub const FLOOD_OFF: u32 = 0;
/// [`flood_count`]: this entry took the CPU over the rate (counted once per window).
pub const FLOOD_ENTERED: u32 = 1;
/// [`flood_count`]: the CPU was over the rate already.
pub const FLOOD_ON: u32 = 2;

/// Counts one new unassured entry at `now` in a CPU's window `w` (one window of `window`
/// jiffies at a time, like Katran's per-CPU connection rate): the window after it, and whether
/// the CPU is in flood mode ([`FLOOD_OFF`], [`FLOOD_ENTERED`], [`FLOOD_ON`]), that is whether
/// it counted more than `rate` entries in the current window. `rate` or `window` 0: never.
#[inline(always)]
pub const fn flood_count(w: FloodWindow, now: u32, window: u32, rate: u32) -> (FloodWindow, u32) {
    if rate == 0 || window == 0 {
        return (w, FLOOD_OFF);
    }
    if now.wrapping_sub(w.start) >= window {
        // A new window: this entry is its first (rate ≥ 1).
        return (FloodWindow { start: now, count: 1 }, FLOOD_OFF);
    }
    let count = w.count.saturating_add(1);
    let mode = if count <= rate {
        FLOOD_OFF
    } else if count == rate + 1 {
        FLOOD_ENTERED
    } else {
        FLOOD_ON
    };
    (FloodWindow { start: w.start, count }, mode)
}

/// Whether a scheduler gives a flow the same backend on every packet while the tables stay
/// unchanged (Maglev, `sh`, `dh`): its flows need no connection-table entry to stay put, so
/// in flood mode their unassured entries are not recorded at all.
#[inline(always)]
pub const fn sched_is_consistent(sched: u8) -> bool {
    matches!(sched, crate::lb::SCHED_MAGLEV | crate::lb::SCHED_SRC_HASH | crate::lb::SCHED_DST_HASH)
}

/// The state of a new entry for the packet that creates it: IPVS's input-only TCP table from
/// "no state" (SYN → SYN_RECV, ACK → ESTABLISHED, FIN or RST → CLOSE); UDP.
#[inline(always)]
pub const fn new_state(proto: u8, tcp_flags: u8) -> u32 {
    if proto != IPPROTO_TCP {
        return CONN_S_UDP;
    }
    if tcp_flags & TCP_RST != 0 {
        CONN_S_CLOSE
    } else if tcp_flags & TCP_SYN != 0 {
        CONN_S_SYN
    } else if tcp_flags & TCP_FIN != 0 {
        CONN_S_CLOSE
    } else if tcp_flags & TCP_ACK != 0 {
        CONN_S_EST
    } else {
        CONN_S_SYN
    }
}

/// The state of a TCP entry after a client packet with `tcp_flags`: IPVS's input-only state
/// table (`tcp_states`, `TCP_DIR_INPUT_ONLY` rows: the flag is the first of RST, SYN, FIN,
/// ACK set), restricted to the states an entry can reach here. `state` is the low byte only.
#[inline(always)]
pub const fn tcp_next_state(state: u32, tcp_flags: u8) -> u32 {
    if tcp_flags & TCP_RST != 0 {
        // sSR stays sSR; every other state closes.
        if state == CONN_S_SYN {
            CONN_S_SYN
        } else {
            CONN_S_CLOSE
        }
    } else if tcp_flags & TCP_SYN != 0 {
        // sES stays sES; the others go back to sSR.
        if state == CONN_S_EST {
            CONN_S_EST
        } else {
            CONN_S_SYN
        }
    } else if tcp_flags & TCP_FIN != 0 {
        // sSR → sTW, sES → sFW, sFW → sFW, sCL → sCL.
        if state == CONN_S_CLOSE {
            CONN_S_CLOSE
        } else {
            CONN_S_FIN
        }
    } else if tcp_flags & TCP_ACK != 0 {
        // sSR → sES; sES, sFW, sCL stay.
        if state == CONN_S_SYN {
            CONN_S_EST
        } else {
            state
        }
    } else {
        state
    }
}

/// The lifetime in jiffies of an entry of protocol `proto` in `state` (0: no expiry).
#[inline(always)]
pub const fn timeout_of(state: u32, proto: u8, t: &ConnTimeouts) -> u32 {
    if proto == IPPROTO_UDP {
        return t.udp;
    }
    match state & CONN_S_MASK {
        CONN_S_EST => t.tcp,
        CONN_S_FIN => t.tcp_fin,
        CONN_S_CLOSE => t.close,
        CONN_S_SYN => t.syn,
        _ => t.udp,
    }
}

/// Whether a backend becomes overloaded when a new connection brings its total to `total`
/// (IPVS `ip_vs_bind_dest`: `uthreshold` set and reached).
#[inline(always)]
pub const fn overload_after_bind(total: u32, uthreshold: u32) -> bool {
    uthreshold != 0 && total >= uthreshold
}

/// Whether an overloaded backend stops being so when a leaving connection brings its total to
/// `total` (IPVS `ip_vs_unbind_dest`: below `lthreshold` when set, else below 3/4 of
/// `uthreshold`, else at once).
#[inline(always)]
pub const fn overload_clears(total: u32, uthreshold: u32, lthreshold: u32) -> bool {
    if lthreshold != 0 {
        total < lthreshold
    } else if uthreshold != 0 {
        (total as u64) * 4 < (uthreshold as u64) * 3
    } else {
        true
    }
}

/// What a least-connection scheduler knows of a candidate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cand {
    /// Backend id.
    pub id: u32,
    /// Weight (> 0 for a listed candidate).
    pub weight: u32,
    /// Active connections.
    pub active: u32,
    /// Inactive connections.
    pub inactive: u32,
    /// Non-zero while over its `uthreshold` (IPVS `IP_VS_DEST_F_OVERLOAD`).
    pub overloaded: u32,
}

impl Cand {
    /// A candidate from its list entry and counters; a counter that went below zero (see the
    /// module notes) reads as 0.
    #[inline(always)]
    pub const fn from_conns(id: u32, weight: u32, c: &BackendConns) -> Cand {
        Cand { id, weight, active: clamp(c.active), inactive: clamp(c.inactive), overloaded: c.overloaded }
    }

    /// IPVS's `ip_vs_dest_conn_overhead`: `active × 256 + inactive`.
    #[inline(always)]
    pub const fn overhead(&self) -> u64 {
        ((self.active as u64) << 8) + self.inactive as u64
    }
}

/// A counter read as `i32`, negative values as 0 (without a branch: the sign bit, spread,
/// masks the value out).
#[inline(always)]
const fn clamp(v: u32) -> u32 {
    v & !(((v as i32) >> 31) as u32)
}

/// Whether `a` (load `la` over weight) is more loaded than `b` (`lb`): `la/wa > lb/wb` as
/// IPVS compares, `la × wb > lb × wa`.
#[inline(always)]
const fn heavier(la: u64, wa: u32, lb: u64, wb: u32) -> bool {
    la * wb as u64 > lb * wa as u64
}

/// The `lb_algo` codes of the schedulers [`pick`] implements (`ServiceValue::sched`).
pub use crate::lb::{SCHED_FO, SCHED_LBLC, SCHED_LBLCR, SCHED_LC, SCHED_NQ, SCHED_OVF, SCHED_SED, SCHED_TWOS, SCHED_WLC};

/// [`DestList::metric_flags`]: skip candidates with more active connections than their
/// weight (`ovf`).
pub const METRIC_OVF: u32 = 1 << 0;
/// [`DestList::metric_flags`]: an idle candidate is chosen at once (`nq`).
pub const METRIC_NQ: u32 = 1 << 1;

/// How a scheduler of the `wlc` kind weighs a candidate: it picks the least `num / den`, with
/// `num = a × overhead + b × (active + 1) + c` and `den = d × weight + (1 − d)`;
/// [`METRIC_OVF`] skips candidates with more active connections than their weight,
/// [`METRIC_NQ`] takes an idle candidate at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metric {
    /// Coefficient of the overhead (active × 256 + inactive).
    pub a: u32,
    /// Coefficient of active + 1.
    pub b: u32,
    /// Constant term.
    pub c: u32,
    /// 1: divided by the weight; 0: not weighted.
    pub d: u32,
    /// `METRIC_*`.
    pub flags: u32,
}

/// The [`Metric`] of a scheduler:
/// - `lc`: least overhead (IPVS `ip_vs_lc`: `doh < loh`);
/// - `wlc` (and the `wlc` step of `lblc`/`lblcr`, and any other code): least overhead per
///   weight (`loh × dw > doh × lw`);
/// - `sed`, `nq`: least (active + 1) per weight (`nq` first takes an idle server);
/// - `fo`, `ovf`: least 1 / weight, the highest weight (`ovf` among servers whose active
///   connections stay within their weight).
#[inline(always)]
pub const fn metric_of(sched: u8) -> Metric {
    let m = Metric { a: 1, b: 0, c: 0, d: 1, flags: 0 };
    match sched {
        SCHED_LC => Metric { d: 0, ..m },
        SCHED_SED => Metric { a: 0, b: 1, ..m },
        SCHED_NQ => Metric { a: 0, b: 1, flags: METRIC_NQ, ..m },
        SCHED_FO => Metric { a: 0, c: 1, ..m },
        SCHED_OVF => Metric { a: 0, c: 1, flags: METRIC_OVF, ..m },
        _ => m,
    }
}

impl DestList {
    /// The metric written in the list.
    #[inline(always)]
    pub const fn metric(&self) -> Metric {
        Metric { a: self.metric[0], b: self.metric[1], c: self.metric[2], d: self.metric[3], flags: self.metric_flags }
    }

    /// Writes `m` in the list.
    pub fn set_metric(&mut self, m: Metric) {
        self.metric = [m.a, m.b, m.c, m.d];
        self.metric_flags = m.flags;
    }
}

/// The choice of `lc`, `wlc`, `sed`, `nq`, `fo` or `ovf`, one candidate at a time: offer every
/// candidate in list order ([`Picker::offer`] says when to stop), then read [`Picker::best`].
/// Ties go to the first offered, as in IPVS's list walk.
///
/// The kernel runs it from a `bpf_loop` callback, one candidate per call, with the picker in
/// per-CPU memory; [`pick`] runs it over a closure. The scheduler is turned into arithmetic
/// coefficients up front so that the per-candidate step has no branch on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Picker {
    m: Metric,
    best: Option<Cand>,
    num: u64,
    den: u64,
}

impl Picker {
    /// A picker for `sched` (`SCHED_WLC` for any code outside lc/sed/nq/fo/ovf).
    #[inline(always)]
    pub const fn new(sched: u8) -> Picker {
        Picker::with(metric_of(sched))
    }

    /// A picker weighing candidates by `m`.
    #[inline(always)]
    pub const fn with(m: Metric) -> Picker {
        Picker { m, best: None, num: 0, den: 0 }
    }

    /// Considers the next candidate; true when the choice is made (`nq`: an idle server).
    #[inline(always)]
    pub fn offer(&mut self, c: Cand) -> bool {
        let m = self.m;
        if c.overloaded != 0 || c.weight == 0 || m.flags & METRIC_OVF != 0 && c.active > c.weight {
            return false;
        }
        if m.flags & METRIC_NQ != 0 && c.active == 0 {
            self.best = Some(c);
            return true;
        }
        let num = m.a as u64 * c.overhead() + m.b as u64 * (c.active as u64 + 1) + m.c as u64;
        let d = (m.d & 1) as u64;
        let den = d * c.weight as u64 + (1 - d);
        let better = match self.best {
            None => true,
            Some(_) => self.num * den > num * self.den,
        };
        if better {
            self.best = Some(c);
            self.num = num;
            self.den = den;
        }
        false
    }

    /// The chosen candidate; `None` if none was available (all overloaded).
    #[inline(always)]
    pub const fn best(&self) -> Option<Cand> {
        self.best
    }
}

/// One pass over a service's candidates that serves every scheduler of the family: the
/// metric's choice (`lc`...`ovf`, and the `wlc` step of `lblc`/`lblcr`), whether some server
/// is below half its weight (`lblc`/`lblcr` overload), the candidates of up to
/// [`LBLCR_SET`] looked-for ids (the `lblc`/`lblcr` cache entry), and the available weight
/// (`twos`' first pass). One pass for all keeps the kernel's loop a single loop, which the
/// verifier checks once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// The metric's choice so far.
    pub pick: Picker,
    /// Non-zero once a server below half its weight was seen.
    pub any_half: u32,
    /// The ids looked for ([`NO_ID`]: none).
    pub want: [u32; LBLCR_SET],
    /// The candidates found for `want` (where `found_mask` has their bit).
    pub found: [Cand; LBLCR_SET],
    /// Bit `k`: `want[k]` was found.
    pub found_mask: u32,
    /// Sum of the available (not overloaded, weight > 0) weights.
    pub total: u64,
    /// The last available candidate (valid when `total > 0`).
    pub last: Cand,
}

impl Scan {
    /// A scan with metric `m`, looking for the ids `want`.
    #[inline(always)]
    pub const fn new(m: Metric, want: [u32; LBLCR_SET]) -> Scan {
        Scan {
            pick: Picker::with(m),
            any_half: 0,
            want,
            found: [Cand { id: 0, weight: 0, active: 0, inactive: 0, overloaded: 0 }; LBLCR_SET],
            found_mask: 0,
            total: 0,
            last: Cand { id: 0, weight: 0, active: 0, inactive: 0, overloaded: 0 },
        }
    }

    /// Considers the next candidate; true when the metric's choice is made (`nq`: an idle
    /// server; the rest of the scan is then incomplete, which only `nq` uses).
    #[inline(always)]
    pub fn offer(&mut self, c: Cand) -> bool {
        if (c.active as u64) * 2 < c.weight as u64 {
            self.any_half = 1;
        }
        let mut k = 0;
        while k < LBLCR_SET {
            if self.want[k] == c.id {
                self.found[k] = c;
                self.found_mask |= 1 << k;
            }
            k += 1;
        }
        if c.overloaded == 0 && c.weight > 0 {
            self.total += c.weight as u64;
            self.last = c;
        }
        self.pick.offer(c)
    }

    /// The candidate found for `want[k]`.
    #[inline(always)]
    pub const fn found(&self, k: usize) -> Option<Cand> {
        if k < LBLCR_SET && self.found_mask & (1 << k) != 0 {
            Some(self.found[k])
        } else {
            None
        }
    }
}

/// `twos` (IPVS `ip_vs_twos`): after a [`Scan`] (the available weight), two numbers drawn in
/// `0..=total` (as IPVS draws, `r % (total + 1)`), a second pass ([`Twos::offer`]) finds the
/// server each draw lands on; [`Twos::best`] is the less loaded of the two by overhead/weight
/// (the first draw on a tie).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Twos {
    w1: i64,
    w2: i64,
    c1: Option<Cand>,
    c2: Option<Cand>,
    last: Option<Cand>,
}

impl Twos {
    /// The draws from random numbers `r1`, `r2` over the scan's available weight.
    #[inline(always)]
    pub fn draw(scan: &Scan, r1: u32, r2: u32) -> Twos {
        // `max(1)`: a provably non-zero divisor (no division-by-zero panic path in the kernel).
        let total = (scan.total + 1).max(1);
        Twos {
            w1: (r1 as u64 % total) as i64,
            w2: (r2 as u64 % total) as i64,
            c1: None,
            c2: None,
            last: if scan.total > 0 { Some(scan.last) } else { None },
        }
    }

    /// Second pass: one candidate; true once both draws have landed.
    #[inline(always)]
    pub fn offer(&mut self, c: Cand) -> bool {
        if c.overloaded == 0 && c.weight > 0 {
            self.w1 -= c.weight as i64;
            self.w2 -= c.weight as i64;
            if self.w1 <= 0 && self.c1.is_none() {
                self.c1 = Some(c);
            }
            if self.w2 <= 0 && self.c2.is_none() {
                self.c2 = Some(c);
            }
        }
        self.c1.is_some() && self.c2.is_some()
    }

    /// The chosen server; `None` if none was available.
    #[inline(always)]
    pub fn best(&self) -> Option<Cand> {
        // IPVS starts choice1 at the last available server (kept only if no draw landed).
        let Some(a) = self.c1 else {
            return self.last;
        };
        match self.c2 {
            Some(b) if heavier(a.overhead(), a.weight, b.overhead(), b.weight) => Some(b),
            _ => Some(a),
        }
    }
}

/// The choice of `lc`, `wlc`, `sed`, `nq`, `fo`, `ovf` or `twos` among the `n` candidates
/// `cand(0..n)` (`None`: skipped), as the IPVS scheduler of that name chooses; `None` if none
/// is available (all overloaded). `r1`, `r2`: two random numbers (`twos` only).
pub fn pick<F: FnMut(usize) -> Option<Cand>>(sched: u8, n: usize, r1: u32, r2: u32, mut cand: F) -> Option<Cand> {
    let n = n.min(MAX_DESTS);
    let mut scan = Scan::new(metric_of(sched), [NO_ID; LBLCR_SET]);
    for c in (0..n).filter_map(&mut cand) {
        if scan.offer(c) {
            break;
        }
    }
    if sched != SCHED_TWOS {
        return scan.pick.best();
    }
    let mut t = Twos::draw(&scan, r1, r2);
    for c in (0..n).filter_map(&mut cand) {
        if t.offer(c) {
            break;
        }
    }
    t.best()
}

/// IPVS lblc/lblcr `is_overloaded`: a server with more active connections than its weight is
/// overloaded while another server is below half its weight.
#[inline(always)]
pub const fn lblc_overloaded(c: &Cand, any_half_loaded: bool) -> bool {
    c.active > c.weight && any_half_loaded
}

/// The outcome of `lblc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LblcChoice {
    /// The cached server (backend id) still serves the destination.
    Cached(u32),
    /// A server (backend id) chosen by `wlc`, to record for the destination.
    Scheduled(u32),
}

/// `lblc` (IPVS `ip_vs_lblc_schedule`) after a [`Scan`] with the `wlc` metric looking for the
/// cached server in `want[0]`: that server while it is listed (available, weight > 0) and not
/// [`lblc_overloaded`], else the `wlc` choice. `None`: no server available.
#[inline(always)]
pub fn lblc_finish(scan: &Scan) -> Option<LblcChoice> {
    if let Some(c) = scan.found(0) {
        if c.weight > 0 && !lblc_overloaded(&c, scan.any_half != 0) {
            return Some(LblcChoice::Cached(c.id));
        }
    }
    scan.pick.best().map(|c| LblcChoice::Scheduled(c.id))
}

/// `lblc` over the `n` candidates `cand(0..n)`, the destination's cached server `cached`.
pub fn pick_lblc<F: FnMut(usize) -> Option<Cand>>(n: usize, cached: Option<u32>, cand: F) -> Option<LblcChoice> {
    let mut want = [NO_ID; LBLCR_SET];
    want[0] = cached.unwrap_or(NO_ID);
    let mut scan = Scan::new(metric_of(SCHED_WLC), want);
    (0..n.min(MAX_DESTS)).filter_map(cand).for_each(|c| {
        let _ = scan.offer(c);
    });
    lblc_finish(&scan)
}

/// What `lblcr` decided: the server and the destination's new set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LblcrChoice {
    /// The chosen server (backend id).
    pub id: u32,
    /// The destination's set afterwards: backend ids in fixed slots, [`NO_ID`] for an empty
    /// slot (fixed slots, not a packed list: in the kernel a list length would be a distinct
    /// known value on each path).
    pub set: [u32; LBLCR_SET],
    /// Whether the set changed (its `lastmod` is then now).
    pub modified: bool,
}

/// `lblcr` (IPVS `ip_vs_lblcr_schedule`) after a [`Scan`] with the `wlc` metric looking for
/// the destination's set (`want`, [`NO_ID`] in empty slots): the least loaded (`wlc`)
/// server of the set; when the set has more than one server and has not changed for the
/// expiration time (`expired`), its most loaded one leaves it first. If that server is
/// missing or [`lblc_overloaded`], the `wlc` choice over all servers joins the set (a full
/// set replaces its most loaded member). Members no longer listed leave the set. `None`: no
/// server available.
pub fn lblcr_finish(scan: &Scan, expired: bool) -> Option<LblcrChoice> {
    let mut set = [NO_ID; LBLCR_SET];
    let mut modified = false;
    let mut members = 0u32;
    // The weighted most loaded member (IPVS `ip_vs_dest_set_max`), by id.
    let (mut most, mut most_oh, mut most_w) = (NO_ID, 0u64, 1u32);
    let mut k = 0;
    while k < LBLCR_SET {
        if let Some(c) = scan.found(k) {
            set[k] = c.id;
            members += 1;
            if most == NO_ID || heavier(c.overhead(), c.weight, most_oh, most_w) {
                most = c.id;
                most_oh = c.overhead();
                most_w = c.weight;
            }
        } else if scan.want[k] != NO_ID {
            modified = true;
        }
        k += 1;
    }
    // The most loaded member leaves once the set is old enough.
    if members > 1 && expired {
        let mut k = 0;
        while k < LBLCR_SET {
            if set[k] == most {
                set[k] = NO_ID;
            }
            k += 1;
        }
        modified = true;
    }
    // The least loaded remaining member, skipping overloaded (uthreshold) ones.
    let mut least: Option<Cand> = None;
    let mut k = 0;
    while k < LBLCR_SET {
        if let Some(c) = scan.found(k) {
            let better = set[k] != NO_ID
                && c.overloaded == 0
                && match least {
                    None => true,
                    Some(l) => heavier(l.overhead(), l.weight, c.overhead(), c.weight),
                };
            if better {
                least = Some(c);
            }
        }
        k += 1;
    }
    if let Some(c) = least {
        if !lblc_overloaded(&c, scan.any_half != 0) {
            return Some(LblcrChoice { id: c.id, set, modified });
        }
    }
    let id = match scan.pick.best() {
        Some(c) => c.id,
        None => return None,
    };
    let mut present = false;
    let mut k = 0;
    while k < LBLCR_SET {
        present |= set[k] == id;
        k += 1;
    }
    if !present {
        // Into an empty slot, else in place of the most loaded member.
        let mut placed = false;
        let mut k = 0;
        while k < LBLCR_SET {
            if !placed && set[k] == NO_ID {
                set[k] = id;
                placed = true;
            }
            k += 1;
        }
        let mut k = 0;
        while k < LBLCR_SET {
            if !placed && set[k] == most {
                set[k] = id;
                placed = true;
            }
            k += 1;
        }
        modified = true;
    }
    Some(LblcrChoice { id, set, modified })
}

/// `lblcr` over the `n` candidates `cand(0..n)`, the destination's set `set` (fixed slots,
/// [`NO_ID`] when empty).
pub fn pick_lblcr<F: FnMut(usize) -> Option<Cand>>(
    n: usize,
    set: &[u32; LBLCR_SET],
    expired: bool,
    cand: F,
) -> Option<LblcrChoice> {
    let mut scan = Scan::new(metric_of(SCHED_WLC), *set);
    (0..n.min(MAX_DESTS)).filter_map(cand).for_each(|c| {
        let _ = scan.offer(c);
    });
    lblcr_finish(&scan, expired)
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: all of these are `bytemuck::Pod` (no padding, any bit pattern is valid).
    unsafe impl aya::Pod for DestList {}
    unsafe impl aya::Pod for BackendConns {}
    unsafe impl aya::Pod for ConnTimeouts {}
    unsafe impl aya::Pod for LblcKey {}
    unsafe impl aya::Pod for LblcValue {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use super::*;

    /// Candidate `id` with weight, active, inactive (not overloaded).
    fn c(id: u32, weight: u32, active: u32, inactive: u32) -> Cand {
        Cand { id, weight, active, inactive, overloaded: 0 }
    }

    fn run(sched: u8, list: &[Cand]) -> Option<u32> {
        pick(sched, list.len(), 0, 0, |i| list.get(i).copied()).map(|c| c.id)
    }

    /// Each scheduler against its IPVS definition: (name, scheduler, candidates, chosen id).
    #[test]
    fn schedulers_choose_as_ipvs() {
        let over = |mut x: Cand| {
            x.overloaded = 1;
            x
        };
        let cases: &[(&str, u8, Vec<Cand>, Option<u32>)] = &[
            ("lc: lowest active*256+inactive", SCHED_LC, vec![c(1, 1, 1, 0), c(2, 1, 0, 200), c(3, 1, 0, 255)], Some(2)),
            ("lc: ignores weights", SCHED_LC, vec![c(1, 100, 1, 0), c(2, 1, 0, 1)], Some(2)),
            ("lc: tie goes to the first listed", SCHED_LC, vec![c(1, 1, 0, 3), c(2, 1, 0, 3)], Some(1)),
            ("lc: overloaded skipped", SCHED_LC, vec![over(c(1, 1, 0, 0)), c(2, 1, 5, 0)], Some(2)),
            ("wlc: overhead over weight", SCHED_WLC, vec![c(1, 1, 2, 0), c(2, 3, 5, 0)], Some(2)),
            ("wlc: 11 held connections lose to an idle server", SCHED_WLC, vec![c(1, 1, 11, 0), c(2, 1, 0, 0)], Some(2)),
            ("wlc: inactive ones weigh 1/256", SCHED_WLC, vec![c(1, 1, 0, 255), c(2, 1, 1, 0)], Some(1)),
            ("wlc: tie to the first", SCHED_WLC, vec![c(1, 2, 2, 0), c(2, 1, 1, 0)], Some(1)),
            ("wlc: all overloaded", SCHED_WLC, vec![over(c(1, 1, 0, 0)), over(c(2, 1, 0, 0))], None),
            ("wlc: weight 0 never chosen", SCHED_WLC, vec![c(1, 0, 0, 0), c(2, 1, 9, 0)], Some(2)),
            ("sed: (active+1)/weight, inactive ignored", SCHED_SED, vec![c(1, 1, 0, 1000), c(2, 3, 1, 0)], Some(2)),
            ("sed: tie to the first", SCHED_SED, vec![c(1, 1, 0, 0), c(2, 3, 2, 0)], Some(1)),
            ("sed: idle heavy server first", SCHED_SED, vec![c(1, 1, 0, 0), c(2, 3, 1, 0)], Some(2)),
            ("nq: an idle server at once", SCHED_NQ, vec![c(1, 3, 1, 0), c(2, 1, 0, 50)], Some(2)),
            ("nq: else sed", SCHED_NQ, vec![c(1, 1, 1, 0), c(2, 3, 2, 0)], Some(2)),
            ("fo: highest weight", SCHED_FO, vec![c(1, 2, 0, 0), c(2, 5, 100, 0), c(3, 5, 0, 0)], Some(2)),
            ("fo: overloaded skipped", SCHED_FO, vec![c(1, 2, 0, 0), over(c(2, 5, 0, 0))], Some(1)),
            ("ovf: highest weight with active <= weight", SCHED_OVF, vec![c(1, 2, 0, 0), c(2, 5, 5, 0)], Some(2)),
            ("ovf: overflows to the next", SCHED_OVF, vec![c(1, 2, 0, 0), c(2, 5, 6, 0)], Some(1)),
            ("ovf: all full", SCHED_OVF, vec![c(1, 2, 3, 0), c(2, 5, 6, 0)], None),
        ];
        for (name, sched, list, want) in cases {
            assert_eq!(run(*sched, list), *want, "{name}");
        }
    }

    /// `twos` draws two servers by weight and keeps the less loaded.
    #[test]
    fn twos_keeps_the_less_loaded_of_two_weighted_draws() {
        let list = [c(1, 1, 5, 0), c(2, 1, 0, 0), c(3, 2, 1, 0)];
        let at = |i: usize| list.get(i).copied();
        // total 4 (+1): draws 0..=1 land on id 1, 2 on id 2, 3..=4 on id 3.
        let cases = [((0, 0), 1), ((0, 2), 2), ((2, 0), 2), ((3, 0), 3), ((0, 4), 3), ((4, 2), 2), ((1, 1), 1)];
        for ((r1, r2), want) in cases {
            let got = pick(SCHED_TWOS, list.len(), r1, r2, at).map(|c| c.id);
            assert_eq!(got, Some(want), "draws {r1} {r2}");
        }
        let none = [Cand { overloaded: 1, ..c(1, 1, 0, 0) }];
        assert_eq!(pick(SCHED_TWOS, 1, 7, 9, |i| none.get(i).copied()), None);
    }

    /// Only the first `n` listed candidates count, and at most MAX_DESTS.
    #[test]
    fn candidates_are_bounded() {
        let list: Vec<Cand> = (0..100).map(|i| c(i, 1, 100 - i, 0)).collect();
        assert_eq!(run(SCHED_LC, &list[..3]), Some(2));
        assert_eq!(run(SCHED_LC, &list), Some(MAX_DESTS as u32 - 1), "only the first {MAX_DESTS} are seen");
    }

    /// IPVS's input-only TCP table, state by flag, and new entries.
    #[test]
    fn tcp_states_follow_ipvs_input_only_table() {
        const S: u8 = TCP_SYN;
        const A: u8 = TCP_ACK;
        const F: u8 = TCP_FIN | TCP_ACK;
        const R: u8 = TCP_RST;
        let cases = [
            (CONN_S_SYN, A, CONN_S_EST),
            (CONN_S_SYN, F, CONN_S_FIN),
            (CONN_S_SYN, R, CONN_S_SYN),
            (CONN_S_SYN, S, CONN_S_SYN),
            (CONN_S_EST, A, CONN_S_EST),
            (CONN_S_EST, F, CONN_S_FIN),
            (CONN_S_EST, R, CONN_S_CLOSE),
            (CONN_S_EST, S | A, CONN_S_EST),
            (CONN_S_FIN, A, CONN_S_FIN),
            (CONN_S_FIN, R, CONN_S_CLOSE),
            (CONN_S_FIN, S, CONN_S_SYN),
            (CONN_S_CLOSE, A, CONN_S_CLOSE),
            (CONN_S_CLOSE, F, CONN_S_CLOSE),
            (CONN_S_EST, 0, CONN_S_EST),
        ];
        for (from, flags, to) in cases {
            assert_eq!(tcp_next_state(from, flags), to, "state {from} flags {flags:#x}");
        }
        assert_eq!(new_state(IPPROTO_TCP, S), CONN_S_SYN);
        assert_eq!(new_state(IPPROTO_TCP, A), CONN_S_EST);
        assert_eq!(new_state(IPPROTO_TCP, F), CONN_S_CLOSE);
        assert_eq!(new_state(IPPROTO_TCP, R | A), CONN_S_CLOSE);
        assert_eq!(new_state(IPPROTO_UDP, 0), CONN_S_UDP);
        assert!(is_active(CONN_S_EST | CONN_F_COUNTED) && !is_active(CONN_S_SYN) && !is_active(CONN_S_UDP));
    }

    /// The lifetime follows protocol and state.
    #[test]
    fn timeouts_by_state() {
        let t = ConnTimeouts { tcp: 1, tcp_fin: 2, udp: 3, syn: 4, close: 5, lblc: 6, ..Default::default() };
        assert_eq!(timeout_of(CONN_S_EST | CONN_F_COUNTED, IPPROTO_TCP, &t), 1);
        assert_eq!(timeout_of(CONN_S_FIN, IPPROTO_TCP, &t), 2);
        assert_eq!(timeout_of(CONN_S_UDP, IPPROTO_UDP, &t), 3);
        assert_eq!(timeout_of(CONN_S_UDP | CONN_F_ASSURED, IPPROTO_UDP, &t), 3, "assured or not");
        assert_eq!(timeout_of(CONN_S_SYN, IPPROTO_TCP, &t), 4);
        assert_eq!(timeout_of(CONN_S_CLOSE, IPPROTO_TCP, &t), 5);
        // An entry of an older build (state 0).
        assert_eq!(timeout_of(0, IPPROTO_TCP, &t), 3);
    }

    /// uthreshold sets the flag, lthreshold (or 3/4 of uthreshold) clears it.
    #[test]
    fn thresholds_have_ipvs_hysteresis() {
        assert!(!overload_after_bind(9, 10) && overload_after_bind(10, 10) && !overload_after_bind(1000, 0));
        assert!(!overload_clears(5, 10, 5) && overload_clears(4, 10, 5));
        assert!(!overload_clears(8, 10, 0) && overload_clears(7, 10, 0), "3/4 of 10 without lthreshold");
        assert!(overload_clears(100, 0, 0));
    }

    #[test]
    fn life_word_packs_stamp_and_state() {
        let l = life(0xdead_beef, CONN_S_EST | CONN_F_COUNTED);
        assert_eq!((life_stamp(l), life_state(l)), (0xdead_beef, CONN_S_EST | CONN_F_COUNTED));
        let mut way = crate::lb::ConnWay4 { stamp: 7, state: 9, ..Default::default() };
        let word: u64 = bytemuck::cast_slice::<crate::lb::ConnWay4, u64>(core::slice::from_mut(&mut way))[3];
        assert_eq!(word, life(7, 9), "stamp is the low half of the little-endian word");
        assert_eq!(Cand::from_conns(1, 1, &BackendConns { active: u32::MAX, inactive: 3, overloaded: 1, _pad: 0 }), Cand { id: 1, weight: 1, active: 0, inactive: 3, overloaded: 1 });
    }

    /// lblc keeps the cached server until it is overloaded while another is below half load.
    #[test]
    fn lblc_sticks_until_overloaded() {
        let list = [c(10, 4, 5, 0), c(11, 4, 3, 0)];
        let at = |i: usize| list.get(i).copied();
        // 10 has 5 active > weight 4, but nobody is below half (2): it stays.
        assert_eq!(pick_lblc(2, Some(10), at), Some(LblcChoice::Cached(10)));
        let list2 = [c(10, 4, 5, 0), c(11, 4, 1, 0)];
        let at2 = |i: usize| list2.get(i).copied();
        assert_eq!(pick_lblc(2, Some(10), at2), Some(LblcChoice::Scheduled(11)), "11 is below half its weight");
        assert_eq!(pick_lblc(2, None, at), Some(LblcChoice::Scheduled(11)), "no entry: wlc");
        assert_eq!(pick_lblc(2, Some(99), at), Some(LblcChoice::Scheduled(11)), "cached server gone: wlc");
        // The cached server is used even when it is over its uthreshold (IPVS checks only
        // availability and its own notion of overload).
        let list3 = [Cand { overloaded: 1, ..c(10, 4, 0, 0) }, c(11, 4, 0, 0)];
        assert_eq!(pick_lblc(2, Some(10), |i| list3.get(i).copied()), Some(LblcChoice::Cached(10)));
    }

    /// lblcr: least loaded member; the set grows when it is overloaded; an old set sheds its
    /// most loaded member; members gone from the list leave; a full set replaces its most
    /// loaded member.
    #[test]
    fn lblcr_replicates_and_sheds() {
        const X: u32 = NO_ID;
        let list = [c(10, 4, 5, 0), c(11, 4, 1, 0), c(12, 4, 2, 0)];
        let at = |i: usize| list.get(i).copied();
        let r = pick_lblcr(3, &[10, X, X, X], false, at).expect("choice");
        assert_eq!((r.id, r.set, r.modified), (11, [10, 11, X, X], true), "10 overloaded: 11 joins");
        let r = pick_lblcr(3, &[10, 12, X, X], false, at).expect("choice");
        assert_eq!((r.id, r.set, r.modified), (12, [10, 12, X, X], false), "12 is the set's least loaded");
        let r = pick_lblcr(3, &[10, 12, X, X], true, at).expect("choice");
        assert_eq!((r.id, r.set, r.modified), (12, [X, 12, X, X], true), "expired: 10 leaves");
        let r = pick_lblcr(3, &[77, 12, X, X], false, at).expect("choice");
        assert_eq!((r.id, r.set, r.modified), (12, [X, 12, X, X], true), "77 is gone");
        let r = pick_lblcr(3, &[X; 4], false, at).expect("choice");
        assert_eq!((r.id, r.set), (11, [11, X, X, X]), "new destination: wlc");
        let full = [c(1, 4, 9, 0), c(2, 4, 8, 0), c(3, 4, 7, 0), c(4, 4, 6, 0), c(5, 4, 0, 0)];
        let r = pick_lblcr(5, &[1, 2, 3, 4], false, |i| full.get(i).copied()).expect("choice");
        assert_eq!((r.id, r.set, r.modified), (5, [5, 2, 3, 4], true), "full: 5 takes the most loaded member's slot");
    }

    /// Every unassured way (SYN, FIN, CLOSE, a UDP flow seen once) ranks above every assured
    /// one (ESTABLISHED, a UDP flow seen twice), whatever their ages; within a class the older
    /// ranks higher. Flags other than `CONN_F_ASSURED` do not matter.
    #[test]
    fn eviction_prefers_unassured_then_oldest() {
        let unassured = [CONN_S_SYN, CONN_S_FIN, CONN_S_CLOSE, CONN_S_UDP, CONN_S_UDP | CONN_F_COUNTED, 0];
        let assured = [CONN_S_EST, CONN_S_EST | CONN_F_COUNTED, CONN_S_UDP | CONN_F_ASSURED, CONN_S_UDP | CONN_F_ASSURED | CONN_F_COUNTED];
        for u in unassured {
            assert!(!is_assured(u), "{u:#x}");
            for a in assured {
                assert!(is_assured(a), "{a:#x}");
                for (age_u, age_a) in [(0, 0), (0, 1_000_000), (5, u32::MAX), (u32::MAX, 0)] {
                    assert!(evict_rank(u, age_u) > evict_rank(a, age_a), "{u:#x}@{age_u} vs {a:#x}@{age_a}");
                }
            }
            assert!(evict_rank(u, 10) > evict_rank(u, 9));
        }
        for a in assured {
            assert!(evict_rank(a, 10) > evict_rank(a, 9));
            assert_eq!(evict_rank(a, 7), 7);
        }
        assert_eq!(evict_rank(CONN_S_SYN, 7), EVICT_UNASSURED | 7);
    }

    /// Flood mode: per window of `window` jiffies, the `rate`-th entry is still normal, the
    /// next one enters flood mode (reported once), the ones after stay in it; a new window
    /// starts over; rate or window 0 never floods.
    #[test]
    fn flood_mode_counts_per_window() {
        struct Case {
            name: &'static str,
            start: FloodWindow,
            now: u32,
            window: u32,
            rate: u32,
            want: (FloodWindow, u32),
        }
        let w = |start, count| FloodWindow { start, count };
        let cases = [
            Case { name: "below", start: w(100, 1), now: 150, window: 250, rate: 3, want: (w(100, 2), FLOOD_OFF) },
            Case { name: "at the rate", start: w(100, 2), now: 150, window: 250, rate: 3, want: (w(100, 3), FLOOD_OFF) },
            Case { name: "over: entered", start: w(100, 3), now: 150, window: 250, rate: 3, want: (w(100, 4), FLOOD_ENTERED) },
            Case { name: "still over", start: w(100, 4), now: 349, window: 250, rate: 3, want: (w(100, 5), FLOOD_ON) },
            Case { name: "next window", start: w(100, 900), now: 350, window: 250, rate: 3, want: (w(350, 1), FLOOD_OFF) },
            Case { name: "clock wrap", start: w(u32::MAX - 10, 4), now: 5, window: 250, rate: 3, want: (w(u32::MAX - 10, 5), FLOOD_ON) },
            Case { name: "saturates", start: w(100, u32::MAX), now: 101, window: 250, rate: 3, want: (w(100, u32::MAX), FLOOD_ON) },
            Case { name: "rate 0: off", start: w(100, 7), now: 101, window: 250, rate: 0, want: (w(100, 7), FLOOD_OFF) },
            Case { name: "no window yet: off", start: w(100, 7), now: 101, window: 0, rate: 3, want: (w(100, 7), FLOOD_OFF) },
        ];
        for c in cases {
            assert_eq!(flood_count(c.start, c.now, c.window, c.rate), c.want, "{}", c.name);
        }
    }

    /// Only the hash schedulers are consistent (no entry needed to keep a flow's backend).
    #[test]
    fn consistent_schedulers() {
        use crate::lb::*;
        for s in [SCHED_MAGLEV, SCHED_SRC_HASH, SCHED_DST_HASH] {
            assert!(sched_is_consistent(s));
        }
        for s in [SCHED_ROUND_ROBIN, SCHED_LC, SCHED_WLC, SCHED_SED, SCHED_NQ, SCHED_FO, SCHED_OVF, SCHED_LBLC, SCHED_LBLCR, SCHED_TWOS] {
            assert!(!sched_is_consistent(s), "{s}");
        }
    }
}
