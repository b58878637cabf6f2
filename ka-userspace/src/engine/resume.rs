//! The mastership record that lets a restarted daemon resume as Master: which instances were
//! Master and when the last advert left, in `/run/ka/NAME.vrrp` (tmpfs: it lives as long as
//! the pinned datapath, until reboot). The engine rewrites it when mastership changes and at
//! most every [`HEARTBEAT`] while it advertises; an orderly stop that releases the VIPs
//! removes it. The decision to resume is a pure function of the record, the clock and the
//! instance (see [`resumable`]).
//!
//! The file is written by a thread of its own ([`Recorder`]), never by the engine: where
//! `/run` is not a tmpfs, a write waits for the disk (a measured 5 to 48 ms per write on a busy
//! ext4 with `discard`, twenty times a second), and with tens of thousands of Masters each
//! record is a megabyte. The engine only hands over the time and, when mastership changed, the
//! list of Masters; writes still queued when a newer one comes are skipped.

use std::{
    collections::BTreeSet,
    io,
    path::{Path, PathBuf},
    sync::{mpsc, Arc},
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
        let mut s = header(self.at);
        s.push_str(&masters_text(&self.masters));
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

/// The record's first lines, with the time of the refresh.
fn header(at: Duration) -> String {
    format!("{MAGIC}\nat_ns {}\n", at.as_nanos())
}

/// The record's lines naming the Masters.
fn masters_text(masters: &BTreeSet<String>) -> String {
    let mut s = String::with_capacity(masters.iter().map(|m| m.len() + 8).sum());
    for m in masters {
        s.push_str("master ");
        s.push_str(m);
        s.push('\n');
    }
    s
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

/// Keeps the record up to date: the engine's side decides when, a writer thread writes.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    masters: BTreeSet<String>,
    /// The Masters' lines, rebuilt only when mastership changed.
    text: Arc<str>,
    written: Option<Duration>,
    dirty: bool,
    /// To the writer thread (`None` if it could not be started: then the engine writes).
    jobs: Option<mpsc::Sender<Job>>,
}

/// Work for the writer thread.
#[derive(Debug)]
enum Job {
    /// Write the record: refreshed at `at`, with the Masters' lines; `report`: a failure is
    /// worth a warning (mastership changed, or the last write before a stop).
    Write { at: Duration, masters: Arc<str>, report: bool },
    /// Remove the record.
    Remove,
    /// Answer once every job before this one is done.
    Sync(mpsc::Sender<()>),
}

impl Recorder {
    /// A recorder writing to `path`, from a thread of its own.
    pub fn new(path: PathBuf) -> Recorder {
        let (tx, rx) = mpsc::channel();
        let writer_path = path.clone();
        let jobs = match std::thread::Builder::new().name("ka-vrrp-record".into()).spawn(move || write_jobs(&writer_path, &rx)) {
            Ok(_) => Some(tx),
            Err(e) => {
                warn!(error = %e, "mastership record: no writer thread; the VRRP engine writes it itself");
                None
            }
        };
        Recorder { path, masters: BTreeSet::new(), text: Arc::from(""), written: None, dirty: true, jobs }
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
            self.queue(now);
        }
    }

    /// Writes the record now and waits until it is on file (a stop that leaves the VIPs for
    /// the next process).
    pub fn write(&mut self, now: Duration) {
        self.dirty = true;
        self.queue(now);
        self.sync();
    }

    /// Removes the record (an orderly stop that gives the VIPs up) once the writes queued
    /// before are done, and waits for it.
    pub fn remove(&self) {
        match &self.jobs {
            Some(jobs) if jobs.send(Job::Remove).is_ok() => self.sync(),
            _ => remove_record(&self.path),
        }
    }

    /// Hands a write to the writer thread.
    fn queue(&mut self, now: Duration) {
        if self.dirty {
            self.text = Arc::from(masters_text(&self.masters));
        }
        let job = Job::Write { at: now, masters: self.text.clone(), report: self.dirty };
        match &self.jobs {
            Some(jobs) => {
                if let Err(mpsc::SendError(job)) = jobs.send(job) {
                    write_record(&self.path, job);
                }
            }
            None => write_record(&self.path, job),
        }
        self.written = Some(now);
        self.dirty = false;
    }

    /// Waits until the writer thread has done every job queued so far.
    fn sync(&self) {
        let Some(jobs) = &self.jobs else { return };
        let (tx, rx) = mpsc::channel();
        if jobs.send(Job::Sync(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

/// The writer thread: jobs in order, but a write followed by another write is skipped (only
/// the newest record matters). Ends when the recorder is dropped.
fn write_jobs(path: &Path, rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        for job in coalesce(batch) {
            match job {
                Job::Sync(done) => {
                    let _ = done.send(());
                }
                Job::Remove => remove_record(path),
                w @ Job::Write { .. } => write_record(path, w),
            }
        }
    }
}

/// `jobs` without the writes a later write makes useless (a failure to report is carried to
/// the write that replaces it).
fn coalesce(jobs: Vec<Job>) -> Vec<Job> {
    let mut out: Vec<Job> = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Job::Write { at, masters, report } = job {
            if let Some(Job::Write { report: earlier, .. }) = out.last() {
                let report = report || *earlier;
                out.pop();
                out.push(Job::Write { at, masters, report });
                continue;
            }
            out.push(Job::Write { at, masters, report });
        } else {
            out.push(job);
        }
    }
    out
}

/// Writes the record (atomically: a temporary file renamed over it).
fn write_record(path: &Path, job: Job) {
    let Job::Write { at, masters, report } = job else { return };
    let mut text = header(at);
    text.push_str(&masters);
    let tmp = path.with_extension("vrrp.tmp");
    if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
        if report {
            warn!(file = %path.display(), error = %e, "cannot write the mastership record: a restart will not resume as Master");
        }
    }
}

fn remove_record(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            warn!(file = %path.display(), error = %e, "cannot remove the mastership record");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(at_ms: u64, masters: &[&str]) -> Record {
        Record { at: Duration::from_millis(at_ms), masters: masters.iter().map(|s| (*s).to_owned()).collect() }
    }

    /// The writer thread writes what the engine hands over: the Masters and the refresh time;
    /// a heartbeat keeps the list and moves the time; `write` (a stop keeping the VIPs) is on
    /// file when it returns, and `remove` removes the record after the writes queued before it.
    #[test]
    fn the_writer_thread_keeps_the_record() {
        let dir = std::env::temp_dir().join(format!("ka-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("t.vrrp");
        let ms = Duration::from_millis;
        let mut r = Recorder::new(path.clone());
        r.set("VI_1", true);
        r.set("VI_2", true);
        r.tick(ms(1_000));
        r.sync();
        assert_eq!(read(&path), Some(rec(1_000, &["VI_1", "VI_2"])));
        // Too soon for a heartbeat: nothing new.
        r.tick(ms(1_020));
        r.sync();
        assert_eq!(read(&path), Some(rec(1_000, &["VI_1", "VI_2"])));
        // A heartbeat, then a change.
        r.tick(ms(1_050));
        r.sync();
        assert_eq!(read(&path), Some(rec(1_050, &["VI_1", "VI_2"])));
        r.set("VI_2", false);
        r.write(ms(1_060));
        assert_eq!(read(&path), Some(rec(1_060, &["VI_1"])));
        // Queued writes, then a removal: the file is gone when `remove` returns.
        for t in 0..50 {
            r.set(&format!("VI_{t}"), true);
            r.tick(ms(2_000 + t * 50));
        }
        r.remove();
        assert!(!path.exists(), "removed after the writes queued before");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Only the newest of consecutive writes is kept, with any failure worth reporting;
    /// removals and syncs keep their place.
    #[test]
    fn writes_coalesce() {
        let w = |at: u64, report: bool| Job::Write { at: Duration::from_millis(at), masters: Arc::from("x"), report };
        let (tx, _rx) = mpsc::channel();
        let shape = |jobs: Vec<Job>| -> Vec<String> {
            coalesce(jobs)
                .iter()
                .map(|j| match j {
                    Job::Write { at, report, .. } => format!("write {} {report}", at.as_millis()),
                    Job::Remove => "remove".to_owned(),
                    Job::Sync(_) => "sync".to_owned(),
                })
                .collect()
        };
        assert_eq!(shape(vec![w(1, true), w(2, false), w(3, false)]), ["write 3 true"]);
        assert_eq!(shape(vec![w(1, false), Job::Remove, w(2, false)]), ["write 1 false", "remove", "write 2 false"]);
        assert_eq!(shape(vec![w(1, false), Job::Sync(tx), w(2, true)]), ["write 1 false", "sync", "write 2 true"]);
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
