//! The soak's pure parts: the seeded fault planner, the dual-master detector over captured
//! adverts, the rule that excuses a lost connection, and the memory/descriptor bounds. Time is
//! a [`Duration`] since the soak started, so every rule is unit-tested without a clock.

use std::{collections::BTreeMap, fmt, time::Duration};

/// SplitMix64: a small deterministic generator, so a soak's faults replay from its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A duration in `[lo, hi]`, in whole milliseconds.
    pub fn between(&mut self, (lo, hi): (Duration, Duration)) -> Duration {
        let lo_ms = u64::try_from(lo.as_millis()).unwrap_or(u64::MAX);
        let hi_ms = u64::try_from(hi.as_millis()).unwrap_or(u64::MAX).max(lo_ms);
        Duration::from_millis(lo_ms + self.below(hi_ms - lo_ms + 1))
    }

    /// Shuffles `v` (Fisher-Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = usize::try_from(self.below(i as u64 + 1)).unwrap_or(0);
            v.swap(i, j);
        }
    }
}

/// The faults the soak fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// A real server's link goes down and its listener closes (the machine dies); later it
    /// comes back.
    RealServerDies,
    /// The MASTER's priority drops below the BACKUP's (its `track_file` reads 1), so the BACKUP
    /// takes over; later it is restored and the MASTER preempts back.
    Failover,
    /// Both directors reload a changed configuration (a second virtual server comes or goes).
    Reload,
    /// A director's ka gets SIGKILL, and is started again (it adopts its pinned datapath).
    KillRestart,
    /// A director's link goes down for a few seconds and comes back.
    LinkFlap,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 5] = [FaultKind::RealServerDies, FaultKind::Failover, FaultKind::Reload, FaultKind::KillRestart, FaultKind::LinkFlap];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::RealServerDies => "real server dies",
            FaultKind::Failover => "failover",
            FaultKind::Reload => "reload",
            FaultKind::KillRestart => "kill -9 and restart",
            FaultKind::LinkFlap => "link flap",
        }
    }
}

/// How long faults last and how far apart they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Quiet time between one fault's recovery and the next fault.
    pub gap: (Duration, Duration),
    /// How long a real server stays dead.
    pub rs_down: (Duration, Duration),
    /// How long a MASTER's priority stays lowered.
    pub failover_hold: (Duration, Duration),
    /// How long a director's link stays down.
    pub flap_down: (Duration, Duration),
    /// How long a killed ka stays down before it is started again.
    pub restart_delay: (Duration, Duration),
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

impl Timing {
    /// The long soak's pace: a fault every 10-40 s of quiet.
    pub const LONG: Timing = Timing {
        gap: (secs(10), secs(40)),
        rs_down: (secs(8), secs(20)),
        failover_hold: (secs(5), secs(15)),
        flap_down: (secs(1), secs(6)),
        restart_delay: (Duration::ZERO, secs(5)),
    };
    /// A short soak's pace (the CI test): every kind fits in about a minute.
    pub const QUICK: Timing = Timing {
        gap: (secs(1), secs(3)),
        rs_down: (secs(5), secs(8)),
        failover_hold: (secs(4), secs(6)),
        flap_down: (secs(1), secs(3)),
        restart_delay: (Duration::ZERO, secs(2)),
    };
}

/// One planned fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// Which real server ([`FaultKind::RealServerDies`]) or director ([`FaultKind::KillRestart`],
    /// [`FaultKind::LinkFlap`]); unused by the others (a failover targets whichever director is
    /// MASTER, a reload both).
    pub target: usize,
    /// How long the fault holds before it is undone.
    pub hold: Duration,
    /// The quiet time after its recovery.
    pub gap: Duration,
}

/// Plans faults: every kind once, in a shuffled order, then kinds at random.
#[derive(Clone, Debug)]
pub struct Planner {
    rng: Rng,
    first_round: Vec<FaultKind>,
    timing: Timing,
    directors: usize,
    real_servers: usize,
}

impl Planner {
    /// A planner seeded with `seed`, for a LAN of `directors` and `real_servers`.
    pub fn new(seed: u64, timing: Timing, directors: usize, real_servers: usize) -> Planner {
        let mut rng = Rng::new(seed);
        let mut first_round = FaultKind::ALL.to_vec();
        rng.shuffle(&mut first_round);
        first_round.reverse(); // popped from the end
        Planner { rng, first_round, timing, directors, real_servers }
    }

    /// The next fault.
    pub fn next_fault(&mut self) -> Fault {
        let kind = self.first_round.pop().unwrap_or_else(|| FaultKind::ALL[usize::try_from(self.rng.below(FaultKind::ALL.len() as u64)).unwrap_or(0)]);
        let t = self.timing;
        let (target, hold) = match kind {
            FaultKind::RealServerDies => (self.pick(self.real_servers), self.rng.between(t.rs_down)),
            FaultKind::Failover => (0, self.rng.between(t.failover_hold)),
            FaultKind::Reload => (0, Duration::ZERO),
            FaultKind::KillRestart => (self.pick(self.directors), self.rng.between(t.restart_delay)),
            FaultKind::LinkFlap => (self.pick(self.directors), self.rng.between(t.flap_down)),
        };
        Fault { kind, target, hold, gap: self.rng.between(t.gap) }
    }

    fn pick(&mut self, n: usize) -> usize {
        usize::try_from(self.rng.below(n as u64)).unwrap_or(0)
    }
}

/// A stretch of time during which two directors both sent adverts as MASTER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DualMaster {
    /// When both were sending (the later of their first adverts in the episode).
    pub start: Duration,
    /// From then to the last advert of the director that gave up.
    pub overlap: Duration,
    /// The director that kept sending.
    pub winner: usize,
}

/// Finds two MASTERs from the adverts on the wire (priority 0, a resignation, does not count).
///
/// A handover shows as a switch of sender. After a clean one the old MASTER is silent; with two
/// MASTERs the senders keep alternating. Switches less than two advert intervals apart form one
/// episode. The director that sent last in it won; the other lost. Both were MASTER from the
/// later of their first adverts in the episode until the loser's last one: that is the
/// overlap. A clean handover has none; a periodic advert that crossed the newcomer's first one
/// on the wire makes a short one.
#[derive(Clone, Debug)]
pub struct MasterWatch {
    advert_int: Duration,
    last: Option<(Duration, usize)>,
    episode: Option<Episode>,
    /// Finished episodes with an overlap.
    pub dual: Vec<DualMaster>,
    /// Adverts seen (priority above 0).
    pub adverts: u64,
    /// Handovers seen (episodes, with or without an overlap).
    pub handovers: u64,
}

#[derive(Clone, Debug)]
struct Episode {
    last_switch: Duration,
    /// Each director's first and last advert within the episode (for the one that sent just
    /// before it started, that advert is its first unless it came after a silence).
    first_by: BTreeMap<usize, Duration>,
    last_by: BTreeMap<usize, Duration>,
    last_sender: usize,
}

impl MasterWatch {
    /// A watch for adverts sent every `advert_int`.
    pub fn new(advert_int: Duration) -> MasterWatch {
        MasterWatch { advert_int, last: None, episode: None, dual: Vec::new(), adverts: 0, handovers: 0 }
    }

    /// One advert from director `who` at `t` (in time order).
    pub fn advert(&mut self, t: Duration, who: usize, priority: u8) {
        if priority == 0 {
            return;
        }
        self.adverts += 1;
        self.close_if_quiet(t);
        let switched = self.last.is_some_and(|(_, prev)| prev != who);
        if let Some(e) = &mut self.episode {
            e.first_by.entry(who).or_insert(t);
            e.last_by.insert(who, t);
            e.last_sender = who;
            if switched {
                e.last_switch = t;
            }
        } else if switched {
            let mut last_by = BTreeMap::new();
            let mut first_by = BTreeMap::new();
            if let Some((pt, prev)) = self.last {
                last_by.insert(prev, pt);
                // The previous sender was still MASTER if it sent within about an interval;
                // after a longer silence it starts anew with its next advert.
                if t.saturating_sub(pt) <= self.advert_int * 3 / 2 {
                    first_by.insert(prev, pt);
                }
            }
            last_by.insert(who, t);
            first_by.insert(who, t);
            self.episode = Some(Episode { last_switch: t, first_by, last_by, last_sender: who });
        }
        self.last = Some((t, who));
    }

    /// Closes the episode if its last switch is two advert intervals before `now`.
    pub fn close_if_quiet(&mut self, now: Duration) {
        let quiet = self.episode.as_ref().is_some_and(|e| now.saturating_sub(e.last_switch) >= self.advert_int * 2);
        if quiet {
            self.close();
        }
    }

    /// Closes the open episode, whatever its age (at the end of the soak).
    pub fn close(&mut self) {
        let Some(e) = self.episode.take() else { return };
        self.handovers += 1;
        let winner = e.last_sender;
        let Some((&loser, &loser_last)) = e.last_by.iter().find(|(who, _)| **who != winner) else { return };
        let first = |who| e.first_by.get(&who).copied().unwrap_or_default();
        let start = first(winner).max(first(loser));
        if loser_last > start {
            self.dual.push(DualMaster { start, overlap: loser_last - start, winner });
        }
    }

    /// The longest overlap so far.
    pub fn longest(&self) -> Duration {
        self.dual.iter().map(|d| d.overlap).max().unwrap_or_default()
    }
}

/// When a real server was dead: from `down` until `up` (`None`: still dead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Death {
    /// The real server.
    pub rs: usize,
    /// Its link went down (recorded before the fault is applied).
    pub down: Duration,
    /// It came back (recorded after it listens again).
    pub up: Option<Duration>,
}

/// Whether losing a connection to real server `rs`, open from `opened` and found lost at
/// `lost`, is excused: its own real server was dead at some point of that span.
pub fn excused(rs: usize, opened: Duration, lost: Duration, deaths: &[Death]) -> bool {
    deaths.iter().any(|d| d.rs == rs && d.down <= lost && d.up.is_none_or(|up| up >= opened))
}

/// One sample of a daemon process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When.
    pub at: Duration,
    /// Resident set size, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
}

/// How much a daemon may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Samples before this age of the process are its warm-up (maps and tables being filled).
    pub warmup: Duration,
    /// RSS may exceed the baseline (the first sample after the warm-up) by this much, KiB.
    pub rss_kib: u64,
    /// Descriptors may exceed the baseline by this many.
    pub fds: u64,
}

/// The samples of one daemon process (one start of ka on one director).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// The director's name.
    pub director: &'static str,
    /// Its pid.
    pub pid: u32,
    /// When it was started.
    pub started: Duration,
    /// When it ended (killed, or stopped at the end of the soak).
    pub ended: Option<Duration>,
    /// Its samples, in order.
    pub samples: Vec<Sample>,
}

/// Figures of one process after its warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Figures {
    /// The first sample after the warm-up.
    pub start: Sample,
    /// The last sample.
    pub end: Sample,
    /// The largest RSS and descriptor counts after the warm-up.
    pub max: Sample,
}

impl Process {
    /// Its figures after the warm-up (`None`: it did not live past it).
    pub fn figures(&self, warmup: Duration) -> Option<Figures> {
        let after: Vec<&Sample> = self.samples.iter().filter(|s| s.at >= self.started + warmup).collect();
        let start = **after.first()?;
        let end = **after.last()?;
        let max = Sample {
            at: end.at,
            rss_kib: after.iter().map(|s| s.rss_kib).max().unwrap_or(0),
            fds: after.iter().map(|s| s.fds).max().unwrap_or(0),
        };
        Some(Figures { start, end, max })
    }

    /// What breaks `bounds`, if anything.
    pub fn growth(&self, bounds: &Bounds) -> Vec<String> {
        let Some(f) = self.figures(bounds.warmup) else { return Vec::new() };
        let mut out = Vec::new();
        if f.max.rss_kib > f.start.rss_kib + bounds.rss_kib {
            out.push(format!(
                "{} (pid {}): RSS grew from {} to {} KiB (bound +{} KiB)",
                self.director, self.pid, f.start.rss_kib, f.max.rss_kib, bounds.rss_kib
            ));
        }
        if f.max.fds > f.start.fds + bounds.fds {
            out.push(format!("{} (pid {}): descriptors grew from {} to {} (bound +{})", self.director, self.pid, f.start.fds, f.max.fds, bounds.fds));
        }
        out
    }
}

/// `m:ss` for a report.
pub struct Clock(pub Duration);

impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        write!(f, "{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The same seed plans the same faults; the first round has every kind once.
    #[test]
    fn plans_replay_from_the_seed_and_cover_every_kind_first() {
        let plan = |seed| {
            let mut p = Planner::new(seed, Timing::LONG, 2, 3);
            (0..20).map(|_| p.next_fault()).collect::<Vec<_>>()
        };
        assert_eq!(plan(7), plan(7));
        assert_ne!(plan(7), plan(8));
        let a = plan(7);
        let mut first: Vec<FaultKind> = a[..5].iter().map(|f| f.kind).collect();
        first.sort();
        assert_eq!(first, FaultKind::ALL.to_vec());
        for f in &a {
            match f.kind {
                FaultKind::RealServerDies => assert!(f.target < 3 && f.hold >= secs(8) && f.hold <= secs(20), "{f:?}"),
                FaultKind::KillRestart | FaultKind::LinkFlap => assert!(f.target < 2, "{f:?}"),
                _ => {}
            }
            assert!(f.gap >= secs(10) && f.gap <= secs(40), "{f:?}");
        }
    }

    #[test]
    fn rng_ranges_are_inclusive_and_bounded() {
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            let d = r.between((ms(5), ms(7)));
            assert!(d >= ms(5) && d <= ms(7));
            assert!(r.below(3) < 3);
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.between((ms(9), ms(9))), ms(9));
    }

    /// Adverts as (ms, director), every case with what it proves.
    #[test]
    fn dual_masters_from_adverts() {
        struct Case {
            name: &'static str,
            adverts: &'static [(u64, usize)],
            dual: &'static [(u64, u64)],
            handovers: u64,
        }
        let cases = [
            Case { name: "one master: no handover", adverts: &[(0, 0), (1000, 0), (2000, 0)], dual: &[], handovers: 0 },
            Case { name: "clean handover after a silence", adverts: &[(0, 0), (1000, 0), (4600, 1), (5600, 1), (6600, 1)], dual: &[], handovers: 1 },
            Case {
                name: "preempt: the old master's periodic advert crossed the newcomer's",
                adverts: &[(0, 1), (1000, 1), (1700, 0), (2000, 1), (2700, 0), (3700, 0), (6000, 0)],
                dual: &[(1700, 300)],
                handovers: 1,
            },
            Case {
                name: "split brain for five intervals",
                adverts: &[(0, 0), (500, 1), (1000, 0), (1500, 1), (2000, 0), (2500, 1), (3000, 0), (3500, 1), (4000, 0), (4500, 1), (5500, 1), (9000, 1)],
                dual: &[(500, 3500)],
                handovers: 1,
            },
            Case {
                name: "a takeover while the master's link was down, then its preempt crossed a periodic advert",
                adverts: &[(0, 0), (1000, 0), (4600, 1), (5100, 0), (5594, 1), (6100, 0), (7100, 0), (10_000, 0)],
                dual: &[(5100, 494)],
                handovers: 1,
            },
            Case {
                name: "the old master wins: counted from the newcomer's first advert",
                adverts: &[(0, 0), (1000, 0), (2000, 0), (2500, 1), (3000, 0), (3500, 1), (4000, 0), (5000, 0), (8000, 0)],
                dual: &[(2500, 1000)],
                handovers: 1,
            },
            Case {
                name: "two handovers far apart",
                adverts: &[(0, 0), (1000, 0), (1500, 1), (1900, 0), (2500, 1), (3500, 1), (20_000, 0), (21_000, 0), (30_000, 0)],
                dual: &[(1500, 400)],
                handovers: 2,
            },
            Case {
                name: "a silent master's single advert after a takeover is a point, not an overlap",
                adverts: &[(0, 0), (4000, 1), (4100, 0), (5000, 1), (6000, 1)],
                dual: &[],
                handovers: 1,
            },
        ];
        for c in cases {
            let mut w = MasterWatch::new(Duration::from_secs(1));
            for &(t, who) in c.adverts {
                w.advert(ms(t), who, 100);
            }
            w.advert(ms(60_000), c.adverts.last().map_or(0, |a| a.1), 0); // a resignation: ignored
            w.close();
            let got: Vec<(u64, u64)> = w.dual.iter().map(|d| (d.start.as_millis() as u64, d.overlap.as_millis() as u64)).collect();
            assert_eq!(got, c.dual, "{}", c.name);
            assert_eq!(w.handovers, c.handovers, "{}", c.name);
            assert_eq!(w.adverts, c.adverts.len() as u64, "{}", c.name);
        }
    }

    /// A connection lost while its own real server was dead is excused; any other is not.
    #[test]
    fn excuses() {
        let deaths = [Death { rs: 1, down: secs(100), up: Some(secs(110)) }, Death { rs: 2, down: secs(200), up: None }];
        let cases = [
            (1, 50, 105, true, "its server died during its life"),
            (1, 50, 130, true, "found lost after its server came back"),
            (1, 102, 104, true, "opened as its server was dying"),
            (1, 120, 130, false, "opened after its server came back"),
            (1, 50, 90, false, "lost before its server died"),
            (0, 50, 105, false, "another server died"),
            (2, 10, 250, true, "its server is still dead"),
        ];
        for (rs, opened, lost, want, why) in cases {
            assert_eq!(excused(rs, secs(opened), secs(lost), &deaths), want, "{why}");
        }
    }

    /// The baseline is the first sample after the warm-up; growth beyond the bounds is named.
    #[test]
    fn growth_beyond_the_bounds() {
        let s = |at, rss_kib, fds| Sample { at: secs(at), rss_kib, fds };
        let p = Process {
            director: "dr1",
            pid: 7,
            started: secs(10),
            ended: None,
            samples: vec![s(15, 1000, 5), s(40, 20_000, 30), s(100, 21_000, 31), s(200, 20_500, 33), s(300, 20_800, 30)],
        };
        let f = p.figures(secs(30)).expect("figures");
        assert_eq!((f.start.rss_kib, f.end.rss_kib, f.max.rss_kib, f.max.fds), (20_000, 20_800, 21_000, 33));
        assert!(p.growth(&Bounds { warmup: secs(30), rss_kib: 1024, fds: 4 }).is_empty());
        let over = p.growth(&Bounds { warmup: secs(30), rss_kib: 512, fds: 2 });
        assert_eq!(over.len(), 2, "{over:?}");
        assert!(over[0].contains("RSS grew from 20000 to 21000 KiB"), "{over:?}");
        assert!(p.figures(secs(1000)).is_none(), "a process that died young has no figures");
    }
}
