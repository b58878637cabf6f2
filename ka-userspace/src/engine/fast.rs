//! The XDP VRRP fast path as the engine uses it (issue 5 item 1): what each instance's entry
//! in `KA_VRRP` must say given its state machine, the clock conversion between the kernel's
//! `bpf_ktime_get_ns` and the engine's epoch, and the last-seen look-up the master-down timer
//! does before taking over.
//!
//! Adverts that XDP passes (changes, and anything it cannot classify) still reach the raw
//! socket and go through the engine's one decode/validation path; steady-state adverts from the
//! known master are dropped in XDP after refreshing the last-seen timestamp.

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use ka_common::{
    vrrp::{Auth, Family, V3Checksum, Version},
    vrrp_fast::VrrpKey,
};

use super::setup::InstanceSetup;
use crate::{
    lb::vrrp_fast::{self, ChecksumMode, EventReader, FastMaps, FastParams, KnownMaster, VrrpFastError},
    vrrp::{timers::centis, Instance, State, Time},
};

/// What the daemon hands the engine when XDP is attached: the fast path's maps, its ring
/// buffer, and the interfaces `ka_xdp` is attached to.
pub struct FastInput {
    /// `KA_VRRP` and `KA_VRRP_SEEN`.
    pub maps: FastMaps,
    /// `KA_VRRP_EVENTS`.
    pub events: EventReader,
    /// Interfaces with `ka_xdp` attached (by ifindex).
    pub ifindexes: BTreeSet<u32>,
}

impl std::fmt::Debug for FastInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastInput").field("ifindexes", &self.ifindexes).finish_non_exhaustive()
    }
}

/// The engine's side of the fast path.
pub(super) struct FastPath {
    pub(super) maps: FastMaps,
    /// CLOCK_MONOTONIC at the engine's epoch.
    pub(super) mono_epoch: Duration,
}

/// CLOCK_MONOTONIC now, the clock of `bpf_ktime_get_ns` (and of `std::time::Instant` on Linux).
pub(super) fn monotonic_now() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the one we pass.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

impl FastPath {
    /// A kernel timestamp as engine time (`None` before the epoch).
    pub(super) fn to_time(&self, mono: Duration) -> Option<Time> {
        mono.checked_sub(self.mono_epoch).map(Time::from_epoch)
    }

    /// When the instance's master was last seen by XDP, in engine time.
    ///
    /// # Errors
    /// The map cannot be read.
    pub(super) fn last_seen(&self, key: VrrpKey) -> Result<Option<Time>, VrrpFastError> {
        Ok(self.maps.last_seen(key)?.and_then(|m| self.to_time(m)))
    }
}

/// Whether XDP may drop the instance's steady-state adverts: it checks everything userspace
/// checks for them except the unicast peers' min_ttl/max_ttl and the address list, so those
/// instances keep receiving every advert (XDP still validates, counts and reports changes).
pub fn steady_drop_allowed(setup: &InstanceSetup) -> bool {
    setup.peers.iter().all(|p| p.min_ttl == 0 && p.max_ttl == 255)
}

/// The fast-path entry for an instance in its current state: checks from the config, and the
/// master the state machine follows (as BACKUP) so XDP recognises its steady adverts.
pub fn params(setup: &InstanceSetup, fsm: &Instance, src: IpAddr) -> FastParams {
    let state = fsm.state();
    let known_master = match (state, fsm.master()) {
        (State::Backup, Some((addr, priority))) => Some(KnownMaster {
            addr,
            priority,
            adver_int: centis(fsm.master_adver_int()),
        }),
        _ => None,
    };
    FastParams {
        version: match setup.params.version {
            Version::V2 => 2,
            Version::V3 => 3,
        },
        // keepalived checks TTL 255 on multicast; unicast peers use min/max_ttl (in userspace).
        check_ttl: setup.peers.is_empty(),
        drop_invalid: true,
        drop_steady: steady_drop_allowed(setup),
        master: state == State::Master,
        auth_pass: match setup.auth {
            Auth::Pass(p) => Some(p.to_vec()),
            // AH instances are never in the fast path (`super::fast_key`).
            Auth::None | Auth::Ah(_) => None,
        },
        checksum: match setup.v3_checksum {
            V3Checksum::Standard => ChecksumMode::Standard,
            V3Checksum::OldUnicast => ChecksumMode::OldUnicast,
            V3Checksum::NoPseudoHeader => ChecksumMode::NoPseudoHeader,
        },
        group_v4: match setup.group {
            IpAddr::V4(g) => Some(g),
            IpAddr::V6(_) => None,
        },
        adver_int: centis(setup.params.advert_int),
        local_priority: fsm.effective_priority(),
        local_addr: src,
        known_master,
    }
}

/// The map key of an instance received on `ifindex`.
pub fn key(ifindex: u32, setup: &InstanceSetup) -> VrrpKey {
    vrrp_fast::key(ifindex, setup.params.vrid, setup.params.family)
}

/// The family of an instance, for the map writer.
pub fn family(setup: &InstanceSetup) -> Family {
    setup.params.family
}
