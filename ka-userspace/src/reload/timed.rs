//! `reload_time_file` / `reload_repeat`: a reload scheduled by the time written in a file, as
//! keepalived 2.2.7's reload monitor (core/reload_monitor.c) does it. The file's first line is
//! exactly `HH:MM:SS`, `YY-MM-DD HH:MM:SS` or `YYYY-MM-DD HH:MM:SS`, optionally followed by
//! `Z` (UTC; else local time). A time without a date is its next occurrence; a date in the past
//! is ignored. At the time the daemon reloads (as on SIGHUP) and the file is removed, unless
//! `reload_repeat` is set and no date was given: then it reloads again each day at that time.
//! Creating, changing or removing the file reschedules or cancels.
//!
//! keepalived watches the file with inotify; ka reads it once a second (a change is seen within
//! a second; the reload itself happens at the second written).

use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::Config;

/// A parsed reload time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReloadTime {
    /// `(year, month, day)` when a date was written.
    pub date: Option<(i32, u32, u32)>,
    /// Hours, minutes, seconds.
    pub time: (u32, u32, u32),
    /// `Z`: UTC, else local time.
    pub utc: bool,
}

fn num(s: &str, digits: usize) -> Option<u32> {
    (s.len() == digits && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// Parses the first line of a reload time file (exactly keepalived's formats, no extra
/// whitespace); `None` when it is not one of them or is out of range.
pub fn parse(text: &str) -> Option<ReloadTime> {
    let line = text.lines().next()?;
    let (line, utc) = match line.strip_suffix('Z') {
        Some(l) => (l, true),
        None => (line, false),
    };
    let (date, time) = match line.split_once(' ') {
        Some((d, t)) => (Some(d), t),
        None => (None, line),
    };
    let mut t = time.split(':');
    let (h, m, s) = (num(t.next()?, 2)?, num(t.next()?, 2)?, num(t.next()?, 2)?);
    if t.next().is_some() || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let date = match date {
        None => None,
        Some(d) => {
            let mut p = d.split('-');
            let y = p.next()?;
            let year = match y.len() {
                // strptime's %y: 69-99 are 19xx, 00-68 20xx.
                2 => {
                    let y = num(y, 2)? as i32;
                    if y >= 69 {
                        1900 + y
                    } else {
                        2000 + y
                    }
                }
                4 => num(y, 4)? as i32,
                _ => return None,
            };
            let (mo, day) = (num(p.next()?, 2)?, num(p.next()?, 2)?);
            if p.next().is_some() || !(1..=12).contains(&mo) || day < 1 || day > days_in_month(year, mo) {
                return None;
            }
            Some((year, mo, day))
        }
    };
    Some(ReloadTime { date, time: (h, m, s), utc })
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number since 1970-01-01.
fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

/// Converts between Unix time and civil time in one time zone.
pub trait Zone {
    /// The civil date at Unix time `t`.
    fn date(&self, t: i64) -> (i32, u32, u32);
    /// The Unix time of a civil date and time (`None`: it does not exist there).
    fn unix(&self, date: (i32, u32, u32), time: (u32, u32, u32)) -> Option<i64>;
}

/// UTC.
#[derive(Debug, Clone, Copy)]
pub struct Utc;

impl Zone for Utc {
    fn date(&self, t: i64) -> (i32, u32, u32) {
        civil_from_days(t.div_euclid(86_400))
    }
    fn unix(&self, (y, mo, d): (i32, u32, u32), (h, mi, s): (u32, u32, u32)) -> Option<i64> {
        Some(days_from_civil(y, mo, d) * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s))
    }
}

/// The daemon's local time (`localtime_r` / `mktime`).
#[derive(Debug, Clone, Copy)]
pub struct Local;

impl Zone for Local {
    fn date(&self, t: i64) -> (i32, u32, u32) {
        let now = libc::time_t::try_from(t).unwrap_or(0);
        // SAFETY: localtime_r writes only into the tm we pass.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call.
        if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
            return Utc.date(t);
        }
        (tm.tm_year + 1900, (tm.tm_mon + 1) as u32, tm.tm_mday as u32)
    }
    fn unix(&self, (y, mo, d): (i32, u32, u32), (h, mi, s): (u32, u32, u32)) -> Option<i64> {
        // SAFETY: a zeroed tm is a valid argument; mktime reads and normalises it.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        tm.tm_year = y - 1900;
        tm.tm_mon = mo as i32 - 1;
        tm.tm_mday = d as i32;
        tm.tm_hour = h as i32;
        tm.tm_min = mi as i32;
        tm.tm_sec = s as i32;
        tm.tm_isdst = -1;
        // SAFETY: tm is a valid, owned struct.
        let t = unsafe { libc::mktime(&mut tm) };
        (t != -1).then_some(t)
    }
}

/// When a reload written as `t` happens, seen at Unix time `now`: a date and time in the past
/// is `None` (ignored, as keepalived); a time alone is its next occurrence (today if still to
/// come, else tomorrow).
pub fn next(t: &ReloadTime, now: i64, zone: &dyn Zone) -> Option<i64> {
    match t.date {
        Some(date) => zone.unix(date, t.time).filter(|&at| at > now),
        None => {
            let today = zone.date(now);
            let at = zone.unix(today, t.time)?;
            if at > now {
                return Some(at);
            }
            let (y, m, d) = zone.date(now + 86_400);
            zone.unix((y, m, d), t.time)
        }
    }
}

/// What the monitor does with the file at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing due yet (or no valid time).
    Wait,
    /// Reload now; `remove`: delete the file.
    Reload {
        /// Delete the file (no `reload_repeat`, or a date was given).
        remove: bool,
    },
}

/// The step for the file's `text` (`None`: no file), the instant `due` scheduled from it so
/// far, and the time `now`; updates `due`.
pub fn step(text: Option<&str>, seen: &mut Option<String>, due: &mut Option<i64>, now: i64, repeat: bool, zone: &dyn Zone) -> Step {
    if text != seen.as_deref() {
        *seen = text.map(str::to_owned);
        *due = match text {
            None => None,
            Some(t) => match parse(t) {
                Some(rt) => {
                    let at = next(&rt, now, zone);
                    if at.is_none() {
                        warn!(time = %t.lines().next().unwrap_or(""), "reload_time_file: the time is in the past; no reload scheduled");
                    }
                    at
                }
                None => {
                    warn!(text = %t.lines().next().unwrap_or(""), "reload_time_file: not [YY]YY-MM-DD HH:MM:SS[Z] nor HH:MM:SS[Z]; no reload scheduled");
                    None
                }
            },
        };
        if let Some(at) = *due {
            info!(in_s = at - now, "reload_time_file: reload scheduled");
        }
    }
    match *due {
        Some(at) if now >= at => {
            let dated = seen.as_deref().and_then(parse).is_some_and(|t| t.date.is_some());
            let remove = !repeat || dated;
            // A repeated daily reload is due again in a day.
            *due = if remove { None } else { Some(at + 86_400) };
            Step::Reload { remove }
        }
        _ => Step::Wait,
    }
}

/// Watches the `reload_time_file` of the running configuration (`config`, updated on reload)
/// once a second and sends on `reload` when a reload is due. Returns when the daemon's side
/// of either channel is gone.
pub async fn run(mut config: watch::Receiver<Option<Arc<Config>>>, reload: mpsc::UnboundedSender<()>) {
    let mut seen: Option<String> = None;
    let mut due: Option<i64> = None;
    let mut file: Option<PathBuf> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if reload.is_closed() {
            return;
        }
        let (path, repeat) = {
            let c = config.borrow_and_update();
            match c.as_deref() {
                Some(c) => (c.global.reload_time_file.as_ref().map(PathBuf::from), c.global.reload_repeat),
                None => (None, false),
            }
        };
        if path != file {
            file = path;
            seen = None;
            due = None;
        }
        let Some(p) = &file else { continue };
        let text = tokio::fs::read_to_string(p).await.ok();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let zone: &dyn Zone = if text.as_deref().is_some_and(|t| t.lines().next().is_some_and(|l| l.ends_with('Z'))) { &Utc } else { &Local };
        if let Step::Reload { remove } = step(text.as_deref(), &mut seen, &mut due, now, repeat, zone) {
            info!(file = %p.display(), "reload_time_file: scheduled reload");
            if remove {
                if let Err(e) = std::fs::remove_file(p) {
                    warn!(file = %p.display(), error = %e, "reload_time_file: cannot remove it");
                }
                seen = None;
            }
            if reload.send(()).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_keepalived_s() {
        let t = |date, time, utc| Some(ReloadTime { date, time, utc });
        let cases = [
            ("12:34:56", t(None, (12, 34, 56), false)),
            ("12:34:56Z", t(None, (12, 34, 56), true)),
            ("26-12-05 01:02:03", t(Some((2026, 12, 5)), (1, 2, 3), false)),
            ("99-01-31 00:00:00Z", t(Some((1999, 1, 31)), (0, 0, 0), true)),
            ("2028-02-29 23:59:59\nignored", t(Some((2028, 2, 29)), (23, 59, 59), false)),
            ("2027-02-29 00:00:00", None),
            (" 12:34:56", None),
            ("12:34:56 ", None),
            ("12:34", None),
            ("24:00:00", None),
            ("2026-12-05  01:02:03", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), want, "{text:?}");
        }
    }

    #[test]
    fn civil_round_trip() {
        for (y, m, d) in [(1970, 1, 1), (2000, 2, 29), (2026, 12, 5), (2100, 3, 1)] {
            assert_eq!(civil_from_days(days_from_civil(y, m, d)), (y, m, d));
        }
        assert_eq!(days_from_civil(1970, 1, 2), 1);
    }

    /// Scheduling against a fake clock (UTC): a time alone is today's or tomorrow's; a date in
    /// the past schedules nothing; at the time the step reloads and says whether the file goes.
    #[test]
    fn steps_follow_keepalived() {
        let noon = Utc.unix((2026, 12, 5), (12, 0, 0)).expect("time");
        // (file text, now offset from noon, repeat, expected step, due after (offset))
        struct Case {
            text: Option<&'static str>,
            now: i64,
            repeat: bool,
            want: Step,
            due: Option<i64>,
        }
        let cases = [
            Case { text: Some("12:00:10Z"), now: 0, repeat: false, want: Step::Wait, due: Some(10) },
            Case { text: Some("12:00:10Z"), now: 10, repeat: false, want: Step::Reload { remove: true }, due: None },
            Case { text: Some("11:00:00Z"), now: 0, repeat: false, want: Step::Wait, due: Some(23 * 3600) },
            Case { text: Some("12:00:10Z"), now: 10, repeat: true, want: Step::Reload { remove: false }, due: Some(10 + 86_400) },
            Case { text: Some("2026-12-05 12:00:05Z"), now: 5, repeat: true, want: Step::Reload { remove: true }, due: None },
            Case { text: Some("2026-12-05 11:00:00Z"), now: 0, repeat: false, want: Step::Wait, due: None },
            Case { text: Some("garbage"), now: 0, repeat: false, want: Step::Wait, due: None },
            Case { text: None, now: 0, repeat: false, want: Step::Wait, due: None },
        ];
        for c in cases {
            let (mut seen, mut due) = (None, None);
            // First look at noon, then (same text) at the case's time.
            let _ = step(c.text, &mut seen, &mut due, noon, c.repeat, &Utc);
            let got = step(c.text, &mut seen, &mut due, noon + c.now, c.repeat, &Utc);
            assert_eq!(got, c.want, "{:?} at +{}", c.text, c.now);
            assert_eq!(due.map(|d| d - noon), c.due, "{:?} at +{}", c.text, c.now);
        }
        // Removing the file cancels; a new time reschedules.
        let (mut seen, mut due) = (None, None);
        step(Some("12:00:10Z"), &mut seen, &mut due, noon, false, &Utc);
        assert_eq!(step(None, &mut seen, &mut due, noon + 1, false, &Utc), Step::Wait);
        assert_eq!(due, None);
        step(Some("12:00:20Z"), &mut seen, &mut due, noon + 2, false, &Utc);
        assert_eq!(due, Some(noon + 20));
    }
}
