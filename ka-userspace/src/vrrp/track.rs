//! Sans-IO tracking: what `track_interface`, `vrrp_script`/`track_script`, `track_file` and
//! `track_process` contribute to an instance's effective priority or FAULT state
//! (keepalived.conf(5)). The runtime runs scripts, reads files and watches processes and links;
//! it feeds the results to these state machines and sends the resulting [`TrackSummary`] to the
//! instance as `Event::TrackerChanged`.
//!
//! Weight semantics (keepalived):
//! - weight 0 (unweighted): a failure puts the instance in FAULT (`reverse`: success does);
//! - positive weight: added while up (`reverse`: subtracted while up);
//! - negative weight: subtracted while down (`reverse`: added while down);
//! - `track_file`: the file's value × weight (× −1 with `reverse`), below −253 means FAULT,
//!   capped at 253; with weight 0, a non-zero value means FAULT;
//! - the effective priority is clamped to 1..=254; an address owner (255) is never adjusted.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use ka_common::vrrp::VRRP_PRIO_OWNER;

use super::timers::Time;

/// Lowest value a tracker may add before it means FAULT (keepalived: −253).
pub const MIN_TRACK_WEIGHT: i64 = -253;
/// Highest value a tracker may add (keepalived: 253).
pub const MAX_TRACK_WEIGHT: i64 = 253;

/// Weight of one tracking reference (`weight <N> [reverse]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Weight {
    /// The weight; 0 means unweighted (failure = FAULT).
    pub weight: i32,
    /// `reverse`: the adjustment's direction is flipped (and, unweighted, success is FAULT).
    pub reverse: bool,
}

impl Weight {
    /// An unweighted reference: failure means FAULT.
    pub const UNWEIGHTED: Weight = Weight {
        weight: 0,
        reverse: false,
    };

    /// `weight` without `reverse`.
    pub const fn new(weight: i32) -> Weight {
        Weight {
            weight,
            reverse: false,
        }
    }

    fn multiplier(self) -> i64 {
        if self.reverse {
            -1
        } else {
            1
        }
    }
}

/// State of a tracked object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrackStatus {
    /// No result yet (a script that has not exited once).
    Init,
    /// Up / OK / quorum met.
    Up,
    /// Down / failed / quorum lost.
    Down,
}

/// What one tracked object does to an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Contribution {
    /// Adds this much to the priority (may be negative or zero).
    Weight(i64),
    /// Puts the instance in FAULT.
    Fault,
    /// Holds the instance in Initialize: an unweighted script with no result yet (keepalived
    /// waits for it before choosing BACKUP or FAULT).
    Pending,
}

/// The contribution of an up/down tracker (`track_interface`, `track_script`,
/// `track_process`) with weight `w`.
pub fn contribution(status: TrackStatus, w: Weight) -> Contribution {
    let m = w.multiplier();
    let weight = i64::from(w.weight);
    match (status, weight) {
        (TrackStatus::Init, 0) => Contribution::Pending,
        (TrackStatus::Init, _) => Contribution::Weight(0),
        (TrackStatus::Up, 0) if w.reverse => Contribution::Fault,
        (TrackStatus::Down, 0) if !w.reverse => Contribution::Fault,
        (_, 0) => Contribution::Weight(0),
        (TrackStatus::Up, w) if w > 0 => Contribution::Weight(w * m),
        (TrackStatus::Down, w) if w < 0 => Contribution::Weight(w * m),
        _ => Contribution::Weight(0),
    }
}

/// The contribution of a `track_file` whose file holds `value`, referenced with weight `w`
/// (keepalived.conf(5) "Track files").
pub fn file_contribution(value: i64, w: Weight) -> Contribution {
    if w.weight == 0 {
        // "a non-zero value in the file will be treated as a failure status, and a zero value
        // will be treated as an OK status"; reverse flips it.
        return if (value != 0) != w.reverse {
            Contribution::Fault
        } else {
            Contribution::Weight(0)
        };
    }
    let v = value
        .saturating_mul(i64::from(w.weight))
        .saturating_mul(w.multiplier());
    if v < MIN_TRACK_WEIGHT {
        Contribution::Fault
    } else {
        Contribution::Weight(v.min(MAX_TRACK_WEIGHT))
    }
}

/// Parses a track file's contents like keepalived (`strtol`): leading blanks, an optional sign
/// and digits; anything unparsable reads as 0.
pub fn parse_track_file_value(contents: &str) -> i64 {
    let s = contents.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    let v = digits[..end].bytes().fold(0i64, |acc, b| {
        acc.saturating_mul(10).saturating_add(i64::from(b - b'0'))
    });
    if neg {
        -v
    } else {
        v
    }
}

/// Everything the trackers of one instance say, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TrackSummary {
    /// Sum of the weights (added to the configured priority, then clamped).
    pub total_weight: i64,
    /// At least one tracker says FAULT.
    pub fault: bool,
    /// At least one unweighted script has no result yet.
    pub pending_init: bool,
}

impl TrackSummary {
    /// Sums contributions.
    pub fn from_contributions<I: IntoIterator<Item = Contribution>>(it: I) -> TrackSummary {
        it.into_iter().fold(TrackSummary::default(), |mut s, c| {
            match c {
                Contribution::Weight(w) => s.total_weight = s.total_weight.saturating_add(w),
                Contribution::Fault => s.fault = true,
                Contribution::Pending => s.pending_init = true,
            }
            s
        })
    }
}

/// keepalived's effective priority: an address owner (255) stays 255; otherwise
/// `priority + total_weight`, clamped to 1..=254 ("the effective priority will be limited to
/// the range [1,254]").
pub fn effective_priority(priority: u8, total_weight: i64) -> u8 {
    if priority == VRRP_PRIO_OWNER {
        return VRRP_PRIO_OWNER;
    }
    let p = i64::from(priority)
        .saturating_add(total_weight)
        .clamp(1, 254);
    u8::try_from(p).unwrap_or(254)
}

/// The tracked objects of one instance (or sync group), keyed by the runtime's own ids; gives
/// the [`TrackSummary`] to send to the instance.
#[derive(Clone, Debug)]
pub struct TrackSet<K> {
    entries: HashMap<K, Contribution>,
}

impl<K> Default for TrackSet<K> {
    fn default() -> Self {
        TrackSet {
            entries: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash> TrackSet<K> {
    /// Records `key`'s contribution; returns the new summary.
    pub fn set(&mut self, key: K, c: Contribution) -> TrackSummary {
        self.entries.insert(key, c);
        self.summary()
    }

    /// Forgets `key` (reload removed it); returns the new summary.
    pub fn remove(&mut self, key: &K) -> TrackSummary {
        self.entries.remove(key);
        self.summary()
    }

    /// The current summary.
    pub fn summary(&self) -> TrackSummary {
        TrackSummary::from_contributions(self.entries.values().copied())
    }
}

/// A `vrrp_script` as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptParams {
    /// `interval`: time between runs (default 1 s).
    pub interval: Duration,
    /// `timeout`: a run lasting longer is killed and counts as a failure (default: `interval`).
    pub timeout: Duration,
    /// `rise`: consecutive successes to become OK (default 1).
    pub rise: u32,
    /// `fall`: consecutive failures to become KO (default 1).
    pub fall: u32,
    /// `weight` and `reverse` of the script (a `track_script` reference may override them).
    pub weight: Weight,
    /// `init_fail`: the script starts failed rather than unknown.
    pub init_fail: bool,
    /// `user USERNAME [GROUPNAME]`: who the runner executes the script as (default: the global
    /// `script_user`). Not used by the state machine.
    pub user: Option<(String, Option<String>)>,
}

impl Default for ScriptParams {
    fn default() -> Self {
        ScriptParams {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 1,
            fall: 1,
            weight: Weight::UNWEIGHTED,
            init_fail: false,
            user: None,
        }
    }
}

/// How a script run ended, as the runner saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptResult {
    /// Exited with this status; 0 is success.
    Exited(i32),
    /// Killed by a signal (failure).
    Signaled(i32),
    /// Ran past `timeout` and was killed (failure).
    TimedOut,
}

impl ScriptResult {
    fn success(self) -> bool {
        self == ScriptResult::Exited(0)
    }
}

/// The `vrrp_script` state machine: schedules runs and applies `rise`/`fall`/`init_fail` to the
/// results like keepalived (a counter in `0..rise+fall`, OK when at least `rise`).
#[derive(Clone, Debug)]
pub struct ScriptTracker {
    params: ScriptParams,
    counter: u32,
    status: TrackStatus,
    running: bool,
    next_run: Time,
}

impl ScriptTracker {
    /// A tracker whose first run is due at `now`. `rise` and `fall` below 1 count as 1.
    pub fn new(mut params: ScriptParams, now: Time) -> ScriptTracker {
        params.rise = params.rise.max(1);
        params.fall = params.fall.max(1);
        let (counter, status) = if params.init_fail {
            (0, TrackStatus::Down)
        } else {
            // keepalived: "one success is enough", and one failure too.
            (params.rise - 1, TrackStatus::Init)
        };
        ScriptTracker {
            params,
            counter,
            status,
            running: false,
            next_run: now,
        }
    }

    /// The script's parameters.
    pub fn params(&self) -> &ScriptParams {
        &self.params
    }

    /// Current status.
    pub fn status(&self) -> TrackStatus {
        self.status
    }

    /// The contribution to an instance that references the script with `w` (or the script's own
    /// weight: pass `self.params().weight`).
    pub fn contribution(&self, w: Weight) -> Contribution {
        contribution(self.status, w)
    }

    /// When the runtime should next call [`ScriptTracker::poll`] (`None` while a run is in
    /// flight: the runner reports its end, enforcing `timeout`).
    pub fn next_run(&self) -> Option<Time> {
        (!self.running).then_some(self.next_run)
    }

    /// If a run is due at `now`, marks it started and returns the time by which the runner must
    /// kill it (`now + timeout`).
    pub fn poll(&mut self, now: Time) -> Option<Time> {
        if self.running || now < self.next_run {
            return None;
        }
        self.running = true;
        Some(now + self.params.timeout)
    }

    /// Records a run's end at `now`; schedules the next run one `interval` later. Returns the
    /// new status if it changed.
    pub fn result(&mut self, now: Time, result: ScriptResult) -> Option<TrackStatus> {
        self.running = false;
        self.next_run = now + self.params.interval;
        let (rise, fall) = (self.params.rise, self.params.fall);
        let old = self.status;
        if result.success() {
            if self.counter < rise - 1 {
                self.counter += 1;
            } else {
                self.counter = rise + fall - 1;
                self.status = TrackStatus::Up;
            }
        } else if self.counter > rise {
            self.counter -= 1;
        } else {
            self.counter = 0;
            self.status = TrackStatus::Down;
        }
        (self.status != old).then_some(self.status)
    }
}

/// A `vrrp_track_process` as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessParams {
    /// `quorum`: fewest matching processes for OK (default 1).
    pub quorum: u32,
    /// `quorum_max`: most matching processes for OK (default unlimited).
    pub quorum_max: u32,
    /// `fork_delay`: quorum must hold this long before OK.
    pub fork_delay: Duration,
    /// `terminate_delay`: quorum must be lost this long before KO.
    pub terminate_delay: Duration,
    /// `weight` and `reverse` (default weight 1).
    pub weight: Weight,
}

impl Default for ProcessParams {
    fn default() -> Self {
        ProcessParams {
            quorum: 1,
            quorum_max: u32::MAX,
            fork_delay: Duration::ZERO,
            terminate_delay: Duration::ZERO,
            weight: Weight::new(1),
        }
    }
}

/// The `track_process` state machine, fed with the count of matching processes.
#[derive(Clone, Debug)]
pub struct ProcessTracker {
    params: ProcessParams,
    status: TrackStatus,
    pending: Option<(TrackStatus, Time)>,
}

impl ProcessTracker {
    /// A tracker with no count yet.
    pub fn new(params: ProcessParams) -> ProcessTracker {
        ProcessTracker {
            params,
            status: TrackStatus::Init,
            pending: None,
        }
    }

    /// Current status.
    pub fn status(&self) -> TrackStatus {
        self.status
    }

    /// The contribution with reference weight `w`.
    pub fn contribution(&self, w: Weight) -> Contribution {
        contribution(self.status, w)
    }

    /// When a delayed change is due (call [`ProcessTracker::poll`] then).
    pub fn deadline(&self) -> Option<Time> {
        self.pending.map(|(_, at)| at)
    }

    /// Records that `count` matching processes run at `now`. The first count applies at once;
    /// later changes wait `fork_delay` / `terminate_delay`. Returns the new status if it changed.
    pub fn update(&mut self, now: Time, count: u32) -> Option<TrackStatus> {
        let ok = count >= self.params.quorum && count <= self.params.quorum_max;
        let target = if ok {
            TrackStatus::Up
        } else {
            TrackStatus::Down
        };
        if self.status == TrackStatus::Init {
            self.status = target;
            return Some(target);
        }
        if target == self.status {
            self.pending = None;
            return None;
        }
        let delay = if ok {
            self.params.fork_delay
        } else {
            self.params.terminate_delay
        };
        if delay.is_zero() {
            self.pending = None;
            self.status = target;
            return Some(target);
        }
        if self.pending.map(|(s, _)| s) != Some(target) {
            self.pending = Some((target, now + delay));
        }
        None
    }

    /// Applies a delayed change that is due at `now`. Returns the new status if it changed.
    pub fn poll(&mut self, now: Time) -> Option<TrackStatus> {
        match self.pending {
            Some((target, at)) if at <= now => {
                self.pending = None;
                self.status = target;
                Some(target)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(weight: i32, reverse: bool) -> Weight {
        Weight { weight, reverse }
    }

    /// keepalived.conf(5) track_interface/track_script weight table, inputs and outputs side by
    /// side.
    #[test]
    fn weight_semantics() {
        use Contribution::{Fault, Pending, Weight as W};
        use TrackStatus::{Down, Init, Up};
        let cases = [
            (Up, w(0, false), W(0)),
            (Down, w(0, false), Fault),
            (Up, w(0, true), Fault),
            (Down, w(0, true), W(0)),
            (Init, w(0, false), Pending),
            (Up, w(10, false), W(10)),
            (Down, w(10, false), W(0)),
            (Up, w(10, true), W(-10)),
            (Down, w(10, true), W(0)),
            (Up, w(-10, false), W(0)),
            (Down, w(-10, false), W(-10)),
            (Up, w(-10, true), W(0)),
            (Down, w(-10, true), W(10)),
            (Init, w(10, false), W(0)),
        ];
        for (status, weight, want) in cases {
            assert_eq!(contribution(status, weight), want, "{status:?} {weight:?}");
        }
    }

    /// keepalived.conf(5) "Track files": weight 0 means non-zero = failure; otherwise value ×
    /// weight, below −253 = FAULT, capped at 253; reverse negates.
    #[test]
    fn track_file_semantics() {
        use Contribution::{Fault, Weight as W};
        let cases = [
            (0, w(0, false), W(0)),
            (5, w(0, false), Fault),
            (0, w(0, true), Fault),
            (5, w(0, true), W(0)),
            (3, w(10, false), W(30)),
            (-3, w(10, false), W(-30)),
            (3, w(10, true), W(-30)),
            (-25, w(10, false), W(-250)),
            (-26, w(10, false), Fault),
            (100, w(10, false), W(253)),
            (i64::MAX, w(254, false), W(253)),
            (i64::MIN, w(254, false), Fault),
            (-254, w(1, false), Fault),
        ];
        for (value, weight, want) in cases {
            assert_eq!(file_contribution(value, weight), want, "{value} {weight:?}");
        }
        assert_eq!(parse_track_file_value("  42\n"), 42);
        assert_eq!(parse_track_file_value("-7 apples"), -7);
        assert_eq!(parse_track_file_value("junk"), 0);
        assert_eq!(parse_track_file_value(""), 0);
    }

    /// Effective priority: base + weights, clamped to 1..=254; the owner is never adjusted.
    #[test]
    fn effective_priority_clamps() {
        assert_eq!(effective_priority(100, 20), 120);
        assert_eq!(effective_priority(100, -150), 1);
        assert_eq!(effective_priority(200, 100), 254);
        assert_eq!(effective_priority(255, -100), 255);
        let s = TrackSummary::from_contributions([
            Contribution::Weight(5),
            Contribution::Weight(-2),
            Contribution::Pending,
        ]);
        assert_eq!(
            s,
            TrackSummary {
                total_weight: 3,
                fault: false,
                pending_init: true
            }
        );
    }

    fn script(rise: u32, fall: u32, init_fail: bool) -> ScriptTracker {
        ScriptTracker::new(
            ScriptParams {
                rise,
                fall,
                init_fail,
                ..ScriptParams::default()
            },
            Time::ZERO,
        )
    }

    const OK: ScriptResult = ScriptResult::Exited(0);
    const KO: ScriptResult = ScriptResult::Exited(1);

    /// From the initial state one result decides, like keepalived.
    #[test]
    fn script_first_result_decides() {
        let mut s = script(3, 3, false);
        assert_eq!(s.status(), TrackStatus::Init);
        assert_eq!(s.result(Time::ZERO, OK), Some(TrackStatus::Up));
        let mut s = script(3, 3, false);
        assert_eq!(s.result(Time::ZERO, KO), Some(TrackStatus::Down));
    }

    /// `fall` consecutive failures take an OK script down; `rise` successes bring it back.
    #[test]
    fn script_rise_and_fall() {
        let mut s = script(2, 3, false);
        let t = Time::ZERO;
        assert_eq!(s.result(t, OK), Some(TrackStatus::Up));
        assert_eq!(s.result(t, KO), None);
        assert_eq!(s.result(t, KO), None);
        assert_eq!(s.result(t, OK), None, "a success restores the full margin");
        assert_eq!(s.result(t, KO), None);
        assert_eq!(s.result(t, KO), None);
        assert_eq!(s.result(t, ScriptResult::TimedOut), Some(TrackStatus::Down));
        assert_eq!(s.result(t, OK), None);
        assert_eq!(s.result(t, KO), None, "a failure resets the rise count");
        assert_eq!(s.result(t, OK), None);
        assert_eq!(s.result(t, OK), Some(TrackStatus::Up));
    }

    /// `init_fail`: starts down and needs `rise` successes.
    #[test]
    fn script_init_fail() {
        let mut s = script(2, 1, true);
        assert_eq!(s.status(), TrackStatus::Down);
        assert_eq!(s.contribution(Weight::UNWEIGHTED), Contribution::Fault);
        assert_eq!(s.result(Time::ZERO, KO), None);
        assert_eq!(s.result(Time::ZERO, OK), None);
        assert_eq!(s.result(Time::ZERO, OK), Some(TrackStatus::Up));
        assert_eq!(
            s.result(Time::ZERO, ScriptResult::Signaled(9)),
            Some(TrackStatus::Down)
        );
    }

    /// Runs are scheduled every `interval` after the previous end, one at a time, with a kill
    /// deadline `timeout` after the start.
    #[test]
    fn script_scheduling() {
        let p = ScriptParams {
            interval: Duration::from_secs(2),
            timeout: Duration::from_millis(500),
            ..ScriptParams::default()
        };
        let mut s = ScriptTracker::new(p, Time::from_millis(100));
        assert_eq!(s.poll(Time::from_millis(50)), None);
        assert_eq!(s.poll(Time::from_millis(100)), Some(Time::from_millis(600)));
        assert_eq!(s.next_run(), None);
        assert_eq!(s.poll(Time::from_millis(200)), None, "one run at a time");
        s.result(Time::from_millis(300), OK);
        assert_eq!(s.next_run(), Some(Time::from_millis(2300)));
    }

    /// Quorum bounds, the first count applying at once, and fork/terminate delays that a bounce
    /// shorter than the delay does not trigger.
    #[test]
    fn process_quorum_and_delays() {
        let mut p = ProcessTracker::new(ProcessParams {
            quorum: 2,
            quorum_max: 3,
            fork_delay: Duration::from_secs(1),
            terminate_delay: Duration::from_secs(2),
            weight: Weight::new(1),
        });
        assert_eq!(p.update(Time::ZERO, 1), Some(TrackStatus::Down));
        assert_eq!(p.update(Time::from_millis(100), 2), None);
        assert_eq!(p.deadline(), Some(Time::from_millis(1100)));
        assert_eq!(p.poll(Time::from_millis(1099)), None);
        assert_eq!(p.poll(Time::from_millis(1100)), Some(TrackStatus::Up));
        assert_eq!(
            p.update(Time::from_millis(2000), 4),
            None,
            "above quorum_max"
        );
        assert_eq!(
            p.update(Time::from_millis(3000), 3),
            None,
            "back before terminate_delay"
        );
        assert_eq!(p.poll(Time::from_millis(5000)), None);
        assert_eq!(p.status(), TrackStatus::Up);
        assert_eq!(p.update(Time::from_millis(6000), 0), None);
        assert_eq!(p.poll(Time::from_millis(8000)), Some(TrackStatus::Down));
        assert_eq!(p.contribution(Weight::new(-20)), Contribution::Weight(-20));
    }

    #[test]
    fn track_set_sums_latest_values() {
        let mut set = TrackSet::default();
        set.set("eth1", Contribution::Weight(10));
        set.set("chk", Contribution::Weight(-5));
        assert_eq!(set.summary().total_weight, 5);
        let s = set.set("eth1", Contribution::Fault);
        assert!(s.fault);
        assert_eq!(s.total_weight, -5);
        assert!(!set.remove(&"eth1").fault);
    }
}
