//! The mastership record that lets a restarted daemon resume as Master: which instances were
//! Master and when the last advert left, in `/run/ka/NAME.vrrp` (tmpfs: it lives as long as
//! the pinned datapath, until reboot). The engine rewrites it when mastership changes and at
//! most every [`HEARTBEAT`] while it advertises; an orderly stop that releases the VIPs
//! removes it. The decision to resume is a pure function of the record, the clock and the
//! instance (see [`resumable`]).

use std::{
    collections::BTreeSet,
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use tracing::warn;

/// How often the record's advert time is refreshed while some instance is Master. Far below
/// the shortest Master_Down_Interval worth resuming within (3 × 10 ms advert intervals are
/// never resumed: the restart takes longer).
pub const HEARTBEAT: Duration = Duration::from_millis(50);

const MAGIC: &str = "ka-vrrp-state 1";

/// What the previous process left.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// CLOCK_MONOTONIC time of the last refresh (≈ the last advert of a Master).
    pub at: Duration,
    /// Instances that were Master.
    pub masters: BTreeSet<String>,
}

impl Record {
    /// The file's text.
    pub fn encode(&self) -> String {
        let mut s = format!("{MAGIC}\nat_ns {}\n", self.at.as_nanos());
        for m in &self.masters {
            s.push_str("master ");
            s.push_str(m);
            s.push('\n');
        }
        s
    }

    /// Parses the file's text; `None` when it is not a record (torn or foreign): then nothing
    /// resumes.
    pub fn decode(text: &str) -> Option<Record> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let at_ns: u64 = lines.next()?.strip_prefix("at_ns ")?.parse().ok()?;
        let mut masters = BTreeSet::new();
        for l in lines {
            masters.insert(l.strip_prefix("master ")?.to_owned());
        }
        Some(Record { at: Duration::from_nanos(at_ns), masters })
    }
}

/// Whether instance `name` may resume as Master at monotonic time `now`: the record names it,
/// its VIPs are all still on the interface (`vips_present`), and its last advert is younger
/// than `down_timer_adverts` × `advert_int` (centiseconds): the smallest Master_Down_Interval
/// any Backup can have (RFC 5798 §6.1, skew ≥ 0), so no Backup has taken over yet.
pub fn resumable(record: &Record, now: Duration, name: &str, advert_int: u16, down_timer_adverts: u8, vips_present: bool) -> bool {
    if !vips_present || !record.masters.contains(name) || now < record.at {
        return false;
    }
    let window = Duration::from_millis(u64::from(advert_int) * 10) * u32::from(down_timer_adverts);
    now - record.at < window
}

/// The record's path for a daemon instance: `/run/ka/NAME.vrrp`.
pub fn path(instance: &str) -> PathBuf {
    PathBuf::from(ka_common::maps::RUN_DIR).join(format!("{instance}.vrrp"))
}

/// Reads the record at `path`, if any.
pub fn read(path: &Path) -> Option<Record> {
    let text = std::fs::read_to_string(path).ok()?;
    let r = Record::decode(&text);
    if r.is_none() {
        warn!(file = %path.display(), "mastership record unreadable: every instance starts as usual");
    }
    r
}

/// Keeps the record up to date (the engine's side).
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    masters: BTreeSet<String>,
    written: Option<Duration>,
    dirty: bool,
}

impl Recorder {
    /// A recorder writing to `path`.
    pub fn new(path: PathBuf) -> Recorder {
        Recorder { path, masters: BTreeSet::new(), written: None, dirty: true }
    }

    /// Follows a mastership change.
    pub fn set(&mut self, instance: &str, master: bool) {
        let changed = if master { self.masters.insert(instance.to_owned()) } else { self.masters.remove(instance) };
        self.dirty |= changed;
    }

    /// Writes the record if mastership changed, or if some instance is Master and the last
    /// write is [`HEARTBEAT`] old.
    pub fn tick(&mut self, now: Duration) {
        let stale = self.written.is_none_or(|w| now.saturating_sub(w) >= HEARTBEAT);
        if self.dirty || (!self.masters.is_empty() && stale) {
            self.write(now);
        }
    }

    /// Writes the record now (atomically: a temporary file renamed over it).
    pub fn write(&mut self, now: Duration) {
        let rec = Record { at: now, masters: self.masters.clone() };
        let tmp = self.path.with_extension("vrrp.tmp");
        let res = std::fs::write(&tmp, rec.encode()).and_then(|()| std::fs::rename(&tmp, &self.path));
        match res {
            Ok(()) => {
                self.written = Some(now);
                self.dirty = false;
            }
            Err(e) => {
                if self.dirty {
                    warn!(file = %self.path.display(), error = %e, "cannot write the mastership record: a restart will not resume as Master");
                }
                self.written = Some(now);
                self.dirty = false;
            }
        }
    }

    /// Removes the record (an orderly stop that gives the VIPs up).
    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                warn!(file = %self.path.display(), error = %e, "cannot remove the mastership record");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(at_ms: u64, masters: &[&str]) -> Record {
        Record { at: Duration::from_millis(at_ms), masters: masters.iter().map(|s| (*s).to_owned()).collect() }
    }

    #[test]
    fn record_round_trips_and_rejects_garbage() {
        let r = rec(12_345, &["VI_1", "VI_2"]);
        assert_eq!(Record::decode(&r.encode()), Some(r));
        assert_eq!(Record::decode(""), None);
        assert_eq!(Record::decode("ka-vrrp-state 1\nat_ns x\n"), None);
        assert_eq!(Record::decode("ka-vrrp-state 1\nat_ns 5\nbackup VI_1\n"), None);
        assert_eq!(Record::decode("ka-vrrp-state 2\nat_ns 5\n"), None);
    }

    /// Resume only within 3 × advert_int of the last advert, with the VIPs still up, for an
    /// instance the record names.
    #[test]
    fn resume_needs_record_vips_and_a_fresh_advert() {
        let r = rec(10_000, &["VI_1"]);
        let at = |ms| Duration::from_millis(ms);
        // advert_int 1 s (100 cs), 3 adverts: window 3 s.
        assert!(resumable(&r, at(10_000), "VI_1", 100, 3, true));
        assert!(resumable(&r, at(12_999), "VI_1", 100, 3, true));
        assert!(!resumable(&r, at(13_000), "VI_1", 100, 3, true));
        assert!(!resumable(&r, at(11_000), "VI_2", 100, 3, true));
        assert!(!resumable(&r, at(11_000), "VI_1", 100, 3, false));
        // A clock before the record (another boot's record): no.
        assert!(!resumable(&r, at(9_000), "VI_1", 100, 3, true));
    }
}
