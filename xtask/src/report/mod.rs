//! The benchmark report: what one `cargo xtask bench --report DIR` run measured ([`Report`], a
//! serde struct every benchmark fills), and the renderer ([`render`]) that turns it into
//! `index.html`, one SVG per plot, `report.json` and CSV files: a pure function of the data,
//! tested on a checked-in fixture so that a broken plot fails `cargo xtask test`.
//!
//! Two kinds of figure, and the report says which is which: a *ratio in one run* (ka beside its
//! anchor, both measured minutes apart on the same machine) holds across machines; an
//! *absolute* figure (ns, Mpps, ms, % CPU) holds only for the machine named on every plot.
//!
//! A new benchmark joins by returning its section's struct and, in `bench.rs`, setting it on
//! the report before `outcome(...)`, which notes a failure and rewrites the report. The
//! director-scaling (BGP/ECMP) bench fills [`Directors`]: `report.directors =
//! Some(Directors { method, rows })`, one [`DirectorsRow`] per director count; the renderer
//! plots whatever rows it gets, with the scaling factor against one director.

mod render;

use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

pub use render::render;

/// The report's format version (bump when a field changes meaning).
pub const SCHEMA: u32 = 1;

/// Everything one run measured, with the machine and the date.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// [`SCHEMA`] of the writer.
    pub schema: u32,
    /// The machine the run was on.
    pub machine: Machine,
    /// When the run started, UTC (`2026-12-07T13:34:00Z`).
    pub date: String,
    /// `git describe --always --dirty` of the tree measured, if known.
    #[serde(default)]
    pub commit: Option<String>,
    /// The command that produced it.
    pub command: String,
    /// XDP ns/packet through BPF_PROG_TEST_RUN, ka and the reference load balancer.
    #[serde(default)]
    pub xdp: Option<Xdp>,
    /// End to end over veth: Mpps per core of the director.
    #[serde(default)]
    pub e2e: Option<E2e>,
    /// VRRP takeover times, ka and keepalived.
    #[serde(default)]
    pub takeover: Option<Takeover>,
    /// VRRP daemon CPU, ka and keepalived.
    #[serde(default)]
    pub vrrp_cpu: Option<VrrpCpu>,
    /// Health-checker CPU by checker count.
    #[serde(default)]
    pub health: Option<Health>,
    /// Live reload: time and advert gaps.
    #[serde(default)]
    pub reload: Option<Reload>,
    /// Throughput with 1, 2, 3 directors (the BGP/ECMP bench), when it ran.
    #[serde(default)]
    pub directors: Option<Directors>,
    /// Free-form remarks of the run (a benchmark skipped, and why).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The machine, as every plot names it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// Online CPUs.
    pub cores: u32,
    /// `uname -r`.
    pub kernel: String,
    /// 1-minute load average when the run started (others' work on a shared machine).
    #[serde(default)]
    pub load_avg: Option<f64>,
}

impl Machine {
    /// The machine this runs on.
    pub fn this() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        Machine {
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".to_owned()),
            cores: std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
            kernel: kernel_release().unwrap_or_else(|| "unknown kernel".to_owned()),
            load_avg: loadavg.split_whitespace().next().and_then(|v| v.parse().ok()),
        }
    }

    /// One line for a plot's caption: `Intel Xeon, 2 cores, Linux 6.18.4 · 2026-12-07`.
    pub fn caption(&self, date: &str) -> String {
        let day = date.split('T').next().unwrap_or(date);
        format!("{}, {} cores, Linux {} · {day}", self.cpu_model, self.cores, self.kernel)
    }
}

/// The first `model name` of a /proc/cpuinfo text, spaces collapsed (pure).
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.split_whitespace().collect::<Vec<_>>().join(" "))
    })
}

/// `uname -r`.
fn kernel_release() -> Option<String> {
    // SAFETY: uname fills a zeroed utsname; the release field is NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return None;
        }
        Some(std::ffi::CStr::from_ptr(u.release.as_ptr()).to_string_lossy().into_owned())
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch (pure; proleptic Gregorian, UTC).
pub fn utc_text(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

impl Report {
    /// An empty report for a run starting now on this machine.
    pub fn start(command: String) -> Report {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let commit = std::process::Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .current_dir(crate::workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        Report { schema: SCHEMA, machine: Machine::this(), date: utc_text(now), commit, command, ..Report::default() }
    }

    /// Reads a report written by [`Report::save`] (or checked in).
    ///
    /// # Errors
    /// The file cannot be read or is not a report of this schema.
    pub fn load(path: &Path) -> anyhow::Result<Report> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let r: Report = serde_json::from_str(&text).with_context(|| format!("{} is not a benchmark report", path.display()))?;
        anyhow::ensure!(r.schema == SCHEMA, "{}: report schema {} (this xtask reads {SCHEMA})", path.display(), r.schema);
        Ok(r)
    }

    /// Renders the report into `dir` (created if needed) and returns the files written.
    ///
    /// # Errors
    /// A file cannot be written.
    pub fn write(&self, dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut written = Vec::new();
        for out in render(self)? {
            let p = dir.join(&out.name);
            std::fs::write(&p, &out.text).with_context(|| format!("writing {}", p.display()))?;
            written.push(p);
        }
        Ok(written)
    }
}

/// Moves into `new` every section of `old` that `new` lacks, and notes when and by which
/// command those were measured (pure). Returns the names of the sections kept. Ratios stay
/// within one run: each section's ka and anchor come from the same run.
pub fn merge(new: &mut Report, old: Report) -> Vec<&'static str> {
    let mut kept = Vec::new();
    macro_rules! keep {
        ($($field:ident => $name:literal),*) => {$(
            if new.$field.is_none() && old.$field.is_some() {
                new.$field = old.$field;
                kept.push($name);
            }
        )*};
    }
    keep!(xdp => "xdp", e2e => "e2e", takeover => "takeover", vrrp_cpu => "vrrp_cpu", health => "health", reload => "reload", directors => "directors");
    if kept.is_empty() {
        return kept;
    }
    // Sections an earlier merge brought into `old` keep the date that merge noted.
    let mut notes = Vec::new();
    let mut dated: Vec<&str> = Vec::new();
    for n in &old.notes {
        let Some((names, rest)) = n.split_once(" measured ") else { continue };
        let names: Vec<&str> = names.split(", ").filter(|x| kept.contains(x) && !dated.contains(x)).collect();
        if !names.is_empty() {
            notes.push(format!("{} measured {rest}", names.join(", ")));
            dated.extend(names);
        }
    }
    let rest: Vec<&str> = kept.iter().copied().filter(|k| !dated.contains(k)).collect();
    if !rest.is_empty() {
        notes.insert(0, format!("{} measured {} by `{}`", rest.join(", "), old.date, old.command));
    }
    notes.append(&mut new.notes);
    new.notes = notes;
    kept
}

/// XDP datapath cost, ns/packet (BPF_PROG_TEST_RUN, mean over repeats).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Xdp {
    /// ka's paths, the floor (`ka_xdp_tx`) first.
    pub ka: Vec<XdpPath>,
    /// The reference load balancer's programs, measured in the same run (empty if it could
    /// not run; `reference_note` says why).
    #[serde(default)]
    pub reference: Vec<RefPath>,
    /// Why the reference did not run, if it did not.
    #[serde(default)]
    pub reference_note: Option<String>,
}

/// One of ka's paths.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XdpPath {
    /// Stable key (`floor`, `dr_established`, `dr_new_full`...).
    pub id: String,
    /// What the packet is and what ka does with it.
    pub path: String,
    /// Mean ns per packet.
    pub ns: f64,
    /// How it was repeated.
    pub how: String,
}

/// One program of the reference load balancer (shared bench `ref-lb`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefPath {
    /// `floor`, `lb`, `lb_lru` (`run.sh`), `lb_lru_new` or `lb_lru_new_full` (`new_flow.sh`).
    pub name: String,
    /// Minimum over 3 rounds of the mean ns per packet.
    pub ns: f64,
}

/// Which ka path is compared with which reference program, and the row's name (kept from
/// session to session so that results compare; issue 15). The new flows are set beside the
/// reference's LRU hit, the cheapest thing a stateful balancer does per packet (the issue's
/// targets), and also beside the reference's own new flow (`xtask/ref-lb-extra/new_flow.sh`:
/// a miss, the hash and an LRU insert, the same work).
pub const XDP_PAIRS: [(&str, &str, &str); 8] = [
    ("floor", "floor", "floor (swap MACs, XDP_TX)"),
    ("dr_established", "lb_lru", "established flow (ka DR conn-table hit vs ref NAT + LRU hit)"),
    ("dr_new_filling", "lb_lru", "new flow, table filling (ka) vs ref LRU hit"),
    ("dr_new_full", "lb_lru", "new flow, table full (ka) vs ref LRU hit"),
    ("dr_new_filling", "lb_lru_new", "new flow, table filling (ka) vs ref new flow (LRU insert)"),
    ("dr_new_full", "lb_lru_new_full", "new flow, table full (ka) vs ref new flow (LRU full, evicting)"),
    ("nonvip", "floor", "TCP to a non-VIP address (parse + pass)"),
    ("vrrp_steady", "floor", "VRRP advert, steady state"),
];

/// End-to-end forwarding over veth.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct E2e {
    /// Seconds measured per scenario and round.
    pub secs: f64,
    /// Rounds (each scenario keeps its best).
    pub rounds: u32,
    /// Frame length without FCS.
    pub frame_len: u32,
    /// Flows the generator cycles through.
    pub flows: u32,
    /// One row per scenario: `floor`, `floor_touch`, `reference`, `nat`, `dr`, `tun`, `nft`.
    pub rows: Vec<E2eRow>,
}

/// One director scenario's best round.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct E2eRow {
    /// `floor`, `floor_touch`, `reference`, `nat`, `dr`, `tun`, `nft`.
    pub key: String,
    /// Human label.
    pub label: String,
    /// Frames the generator sent, Mpps.
    pub offered_mpps: f64,
    /// Frames the director took off its ring, Mpps.
    pub received_mpps: f64,
    /// Frames the sink counted, Mpps.
    pub delivered_mpps: f64,
    /// The director's NAPI thread's CPU, fraction of one core.
    pub director_cpu: f64,
    /// Delivered per CPU-second of the director, Mpps.
    pub per_core_mpps: f64,
    /// Every round's Mpps per core (the spread behind the best).
    #[serde(default)]
    pub rounds_per_core_mpps: Vec<f64>,
}

/// VRRP takeover after SIGKILL of the master.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Takeover {
    /// One per (load, implementation).
    pub cases: Vec<TakeoverCase>,
}

/// The takeovers of one implementation at one advert interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TakeoverCase {
    /// VRRP version.
    pub version: u8,
    /// advert_int, ms.
    pub advert_int_ms: f64,
    /// `ka` or `keepalived 2.2`.
    pub implementation: String,
    /// The backup's Master_Down_Interval (3 × advert_int + skew), ms: the RFC's line.
    pub master_down_ms: f64,
    /// SIGKILL to the VIP on the backup, ms, every run.
    pub vip_ms: Vec<f64>,
    /// SIGKILL to the backup's first GARP, ms, every run that saw one.
    pub garp_ms: Vec<f64>,
    /// Runs without a GARP seen.
    #[serde(default)]
    pub garp_missed: u32,
}

/// VRRP daemon CPU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpCpu {
    /// Sampling window, s.
    pub window_s: f64,
    /// One per (load, implementation).
    pub rows: Vec<VrrpCpuRow>,
}

/// One pair under one load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpCpuRow {
    /// VRRP instances.
    pub instances: u32,
    /// VRRP version.
    pub version: u8,
    /// advert_int, ms.
    pub advert_int_ms: f64,
    /// `ka` or `keepalived 2.2`.
    pub implementation: String,
    /// Master's CPU, % of one core.
    pub master_pct: f64,
    /// Backup's CPU, % of one core.
    pub backup_pct: f64,
    /// Adverts per second seen on the wire after the window.
    pub adverts_per_s: f64,
    /// Instances heard on the wire.
    pub instances_heard: u32,
    /// Largest gap between one VRID's adverts, ms.
    pub max_gap_ms: f64,
    /// State changes during the window (0 when steady).
    pub state_changes: u32,
    /// Resident memory of the master, MiB.
    pub master_rss_mib: f64,
    /// Resident memory of the backup, MiB.
    pub backup_rss_mib: f64,
}

/// Health checkers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// delay_loop, s.
    pub delay_loop_s: f64,
    /// Measurement window per case, s.
    pub window_s: f64,
    /// One per (kind, count).
    pub rows: Vec<HealthRow>,
}

/// One checker kind at one count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthRow {
    /// `tcp` or `http`.
    pub kind: String,
    /// Checkers (real servers).
    pub checkers: u32,
    /// Checks completed per second.
    pub checks_per_s: f64,
    /// Daemon CPU, % of one core.
    pub cpu_pct: f64,
    /// Failed checks in the window.
    pub failed: u64,
    /// Check-start lateness p99, ms.
    pub late_p99_ms: f64,
    /// Check-start lateness max, ms.
    pub late_max_ms: f64,
    /// Receive processing of both veth ends, % of one core.
    pub napi_cpu_pct: f64,
}

/// Live reload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reload {
    /// One per reload.
    pub rows: Vec<ReloadRow>,
}

/// One reload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadRow {
    /// The configuration.
    pub config: String,
    /// What changed.
    pub change: String,
    /// `ka reload` or `SIGHUP`.
    pub trigger: String,
    /// Request to applied, ms.
    pub took_ms: f64,
    /// advert_int of the instances, ms.
    pub advert_int_ms: f64,
    /// Adverts' gaps before the reload.
    pub steady: Gaps,
    /// Adverts' gaps from the request to one interval after it was applied.
    pub during: Gaps,
}

/// Gaps between one instance's consecutive adverts, over every instance, in a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gaps {
    /// Instances heard.
    pub instances: u64,
    /// Gaps counted.
    pub gaps: u64,
    /// Gaps over 1.5 × advert_int.
    pub late: u64,
    /// Median gap, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

/// Aggregate throughput with N active-active directors (the BGP/ECMP bench). The bench that
/// measures it fills this; the report plots whatever rows it has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directors {
    /// How it was measured (one sentence for the report).
    pub method: String,
    /// One per director count, ascending.
    pub rows: Vec<DirectorsRow>,
}

/// One director count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorsRow {
    /// Active directors.
    pub directors: u32,
    /// Frames delivered to the real servers, all directors together, Mpps.
    pub delivered_mpps: f64,
    /// Directors' CPU together, cores (if measured).
    #[serde(default)]
    pub cpu_cores: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc_text(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_text(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_text(1_798_761_599), "2026-12-31T23:59:59Z");
        assert_eq!(utc_text(1_709_210_096), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let info = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R)  Processor\n\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(cpu_model(info).as_deref(), Some("Intel(R) Xeon(R) Processor"));
        assert_eq!(cpu_model("processor\t: 0\n"), None);
    }

    #[test]
    fn caption_names_machine_and_day() {
        let m = Machine { cpu_model: "AMD EPYC".into(), cores: 2, kernel: "6.18.4".into(), load_avg: Some(1.5) };
        assert_eq!(m.caption("2026-12-07T13:00:00Z"), "AMD EPYC, 2 cores, Linux 6.18.4 · 2026-12-07");
    }

    /// A merge keeps only the sections the new run lacks, and says where they come from.
    #[test]
    fn merge_keeps_missing_sections_with_a_note() {
        let old: Report = serde_json::from_str(include_str!("../../tests/fixtures/report.json")).expect("fixture parses");
        let mut new = Report { schema: SCHEMA, date: "2027-01-01T00:00:00Z".into(), command: "cargo xtask bench --only health".into(), ..Report::default() };
        new.health = Some(Health { delay_loop_s: 1.0, window_s: 3.0, rows: Vec::new() });
        let kept = merge(&mut new, old.clone());
        assert_eq!(kept, ["xdp", "e2e", "takeover", "vrrp_cpu", "reload", "directors"]);
        assert_eq!(new.health.as_ref().map(|h| h.window_s), Some(3.0), "the new run's section wins");
        assert_eq!(new.xdp, old.xdp);
        assert!(new.notes[0].starts_with("xdp, e2e, takeover, vrrp_cpu, reload, directors measured 2026-12-01T10:00:00Z"), "{:?}", new.notes);
        // Merging again keeps each section's own date.
        let mut newer = Report { schema: SCHEMA, date: "2027-02-01T00:00:00Z".into(), command: "cargo xtask bench --only xdp".into(), ..Report::default() };
        newer.xdp = old.xdp.clone();
        let kept = merge(&mut newer, new);
        assert_eq!(kept, ["e2e", "takeover", "vrrp_cpu", "health", "reload", "directors"]);
        assert_eq!(
            newer.notes[..2],
            [
                "health measured 2027-01-01T00:00:00Z by `cargo xtask bench --only health`".to_owned(),
                "e2e, takeover, vrrp_cpu, reload, directors measured 2026-12-01T10:00:00Z by `cargo xtask bench --report DIR`".to_owned(),
            ]
        );
    }

    /// The checked-in fixture is a report of this schema, and a report survives JSON both ways.
    #[test]
    fn fixture_round_trips() {
        let r: Report = serde_json::from_str(include_str!("../../tests/fixtures/report.json")).expect("fixture parses");
        assert_eq!(r.schema, SCHEMA);
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).expect("serialize")).expect("parse");
        assert_eq!(back, r);
    }
}
