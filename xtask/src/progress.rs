//! Progress on long work (setup, builds, benchmarks, the lab): one spinner with the step's name
//! and elapsed time on a terminal, plain `==>` / `<==` lines with the elapsed time elsewhere (CI).
//!
//! The API is two calls: [`step`] returns a [`Step`] guard, and [`Step::finish`] (or
//! [`Step::fail`], or dropping it) ends it with its elapsed time; [`run`] wraps a closure in
//! both. A step started while another runs is a sub-step: it names itself in the running
//! spinner and ends with one indented line.
//!
//! On a terminal, while the outermost step runs, whatever this process and its children write to
//! a standard stream that is a terminal goes through a pipe and is printed above the spinner, so
//! the benchmarks' tables and a child's output never garble it. Without a terminal (or with
//! `KA_PROGRESS=plain`, or `CI` set) nothing is redirected and a step prints one line when it
//! starts, one when it ends, and one every minute in between, so a CI log shows it is alive.

use std::{
    fmt::Display,
    fs::File,
    io::{BufRead as _, BufReader, Write as _},
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
    sync::{mpsc, Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

/// How steps show themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A spinner on the terminal, output printed above it.
    Fancy,
    /// Plain lines (CI, logs, pipes).
    Plain,
}

/// The mode for these facts (pure): `KA_PROGRESS` (`plain` or `fancy`) wins, then a CI
/// environment or a dumb terminal means plain, then a terminal on stderr means fancy.
pub fn mode_for(env_progress: Option<&str>, ci: bool, term: Option<&str>, stderr_tty: bool) -> Mode {
    match env_progress {
        Some("plain") => return Mode::Plain,
        Some("fancy") if stderr_tty => return Mode::Fancy,
        _ => {}
    }
    if ci || term == Some("dumb") || !stderr_tty {
        Mode::Plain
    } else {
        Mode::Fancy
    }
}

fn mode() -> Mode {
    let p = std::env::var("KA_PROGRESS").ok();
    let term = std::env::var("TERM").ok();
    mode_for(p.as_deref(), std::env::var_os("CI").is_some(), term.as_deref(), is_tty(2))
}

fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// `1m 02s`, `12.3s`, `850ms` (pure).
pub fn elapsed_text(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{}ms", d.as_millis())
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m {:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{}h {:02}m", d.as_secs() / 3600, d.as_secs() / 60 % 60)
    }
}

/// The running outermost step, if any (sub-steps report to it).
static ACTIVE: Mutex<Option<Arc<Shared>>> = Mutex::new(None);

fn active() -> MutexGuard<'static, Option<Arc<Shared>>> {
    ACTIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What sub-steps need of the outermost step.
#[derive(Debug)]
struct Shared {
    name: String,
    bar: Option<ProgressBar>,
}

/// A running step; end it with [`Step::finish`] or [`Step::fail`] (dropping it says it was
/// interrupted).
#[must_use = "a step ends when it is finished or dropped"]
pub struct Step {
    name: String,
    start: Instant,
    mode: Mode,
    /// Set on the outermost step.
    outer: Option<Outer>,
    done: bool,
}

/// The outermost step's machinery.
struct Outer {
    shared: Arc<Shared>,
    redirects: Vec<Redirect>,
    /// Plain mode: stops the heartbeat thread when dropped.
    _heartbeat: Option<mpsc::Sender<()>>,
}

/// A standard stream sent through a pipe while a spinner runs.
struct Redirect {
    fd: i32,
    saved: OwnedFd,
    drained: mpsc::Receiver<()>,
}

/// Starts a step named `name`.
pub fn step(name: impl Into<String>) -> Step {
    step_in(name.into(), mode())
}

fn step_in(name: String, mode: Mode) -> Step {
    let parent = active().clone();
    if let Some(parent) = parent {
        match &parent.bar {
            Some(bar) => bar.set_message(format!("› {name}")),
            None => eprintln!("==> {} › {name}", parent.name),
        }
        return Step { name, start: Instant::now(), mode, outer: None, done: false };
    }
    let outer = match mode {
        Mode::Plain => {
            eprintln!("==> {name}");
            let (tx, rx) = mpsc::channel::<()>();
            let (n, start) = (name.clone(), Instant::now());
            signals_blocked(|| {
                std::thread::spawn(move || {
                    while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(60)) {
                        eprintln!("... {n}: still running ({})", elapsed_text(start.elapsed()));
                    }
                })
            });
            Outer { shared: Arc::new(Shared { name: name.clone(), bar: None }), redirects: Vec::new(), _heartbeat: Some(tx) }
        }
        Mode::Fancy => fancy(&name).unwrap_or_else(|e| {
            eprintln!("==> {name} (no spinner: {e})");
            Outer { shared: Arc::new(Shared { name: name.clone(), bar: None }), redirects: Vec::new(), _heartbeat: None }
        }),
    };
    *active() = Some(outer.shared.clone());
    Step { name, start: Instant::now(), mode, outer: Some(outer), done: false }
}

/// Runs `f` as a step named `name`: finished when it returns `Ok`, failed otherwise.
///
/// # Errors
/// Whatever `f` returns.
pub fn run<T>(name: impl Into<String>, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let s = step(name);
    match f() {
        Ok(v) => {
            s.finish();
            Ok(v)
        }
        Err(e) => {
            s.fail(&e);
            Err(e)
        }
    }
}

impl Step {
    /// Shows `msg` next to the step's name (a sub-status: a round, a case).
    pub fn set_message(&self, msg: impl Into<String>) {
        let msg = msg.into();
        let shared = match &self.outer {
            Some(o) => Some(o.shared.clone()),
            None => active().clone(),
        };
        match shared.as_ref().and_then(|s| s.bar.as_ref()) {
            Some(bar) => bar.set_message(if self.outer.is_some() { msg } else { format!("› {} › {msg}", self.name) }),
            None => eprintln!("... {}: {msg}", self.name),
        }
    }

    /// Ends the step successfully and returns how long it took.
    pub fn finish(mut self) -> Duration {
        self.end("done", '✓')
    }

    /// Ends the step as failed with `err`.
    pub fn fail(mut self, err: &dyn Display) {
        let _ = self.end(&format!("FAILED: {err}"), '✗');
    }

    fn end(&mut self, how: &str, mark: char) -> Duration {
        self.done = true;
        let took = self.start.elapsed();
        let text = elapsed_text(took);
        let Some(outer) = self.outer.take() else {
            // A sub-step: one indented line (above the spinner when there is one).
            eprintln!("  {mark} {} ({text}){}", self.name, if how == "done" { String::new() } else { format!(" {how}") });
            if let Some(bar) = active().as_ref().and_then(|s| s.bar.clone()) {
                bar.set_message("");
            }
            return took;
        };
        *active() = None;
        if let Some(bar) = &outer.shared.bar {
            bar.finish_and_clear();
        }
        restore(outer.redirects);
        match self.mode {
            Mode::Plain => eprintln!("<== {}: {how} in {text}", self.name),
            Mode::Fancy => eprintln!("{mark} {} ({text}){}", self.name, if how == "done" { String::new() } else { format!(": {how}") }),
        }
        took
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.end("interrupted", '✗');
        }
    }
}

/// Starts a spinner on the terminal behind stderr and sends the standard streams that are
/// terminals through pipes printed above it.
fn fancy(name: &str) -> std::io::Result<Outer> {
    let term = Tty(File::from(std::io::stderr().as_fd().try_clone_to_owned()?));
    let width = term.width();
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::term_like_with_hz(Box::new(term), 10));
    bar.set_style(
        ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {msg} [{elapsed}]")
            .map_err(std::io::Error::other)?
            .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
    );
    // Keep the line within the terminal: the name is cut, the message wraps nothing.
    let max = usize::from(width).saturating_sub(20).max(20);
    bar.set_prefix(name.chars().take(max).collect::<String>());
    signals_blocked(|| bar.enable_steady_tick(Duration::from_millis(100)));
    let mut redirects = Vec::new();
    for fd in [1, 2] {
        if !is_tty(fd) {
            continue;
        }
        match redirect(fd, &bar) {
            Ok(r) => redirects.push(r),
            Err(e) => {
                restore(redirects);
                bar.finish_and_clear();
                return Err(e);
            }
        }
    }
    Ok(Outer { shared: Arc::new(Shared { name: name.to_owned(), bar: Some(bar) }), redirects, _heartbeat: None })
}

/// Points `fd` at a new pipe whose lines a thread prints above `bar` (stderr's with
/// `println`, stdout's to the saved stdout while the bar is suspended).
fn redirect(fd: i32, bar: &ProgressBar) -> std::io::Result<Redirect> {
    flush_std();
    // SAFETY: dup of a standard descriptor that is open (isatty said so).
    let saved = unsafe { libc::dup(fd) };
    if saved < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `saved` was just returned by dup and is owned by nothing else.
    let saved: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(saved) };
    let (r, w) = nix::unistd::pipe().map_err(std::io::Error::from)?;
    // SAFETY: both descriptors are open; dup2 atomically replaces `fd`.
    if unsafe { libc::dup2(w.as_raw_fd(), fd) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    drop(w);
    let out = File::from(saved.try_clone()?);
    let (tx, drained) = mpsc::channel();
    let bar = bar.clone();
    signals_blocked(|| std::thread::spawn(move || {
        let mut out = out;
        let mut lines = BufReader::new(File::from(r));
        let mut buf = Vec::new();
        while lines.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']);
            if fd == 2 {
                bar.println(line);
            } else {
                bar.suspend(|| {
                    let _ = writeln!(out, "{line}");
                });
            }
            buf.clear();
        }
        let _ = tx.send(());
    }));
    Ok(Redirect { fd, saved, drained })
}

/// Puts the standard streams back and lets the pipes' last lines through (a moment at most: a
/// background child still holding a pipe keeps its thread running, printing as it goes).
fn restore(redirects: Vec<Redirect>) {
    flush_std();
    for r in &redirects {
        // SAFETY: both descriptors are open; dup2 closes the pipe's write end at `fd`.
        unsafe { libc::dup2(r.saved.as_raw_fd(), r.fd) };
    }
    for r in redirects {
        let _ = r.drained.recv_timeout(Duration::from_millis(500));
    }
}

/// True while a spinner runs and the standard streams go through it: a child's output then
/// depends on this process living until the child ends (see [`crate::exec`]).
pub fn redirecting() -> bool {
    active().as_ref().is_some_and(|s| s.bar.is_some())
}

/// Runs `f` (which spawns threads) with every signal blocked in the calling thread, so the
/// threads it starts inherit that mask: a process-directed SIGINT or SIGTERM then reaches the
/// program's own threads and handlers (e.g. the benchmarks' namespace cleanup, which blocks
/// them and waits for them), never a helper thread of this module.
fn signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    use nix::sys::signal::{SigSet, SigmaskHow};
    let old = SigSet::all().thread_swap_mask(SigmaskHow::SIG_BLOCK).ok();
    let out = f();
    if let Some(old) = old {
        let _ = old.thread_set_mask();
    }
    out
}

fn flush_std() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

/// The terminal the spinner draws on (a duplicate of stderr taken before redirecting it).
#[derive(Debug)]
struct Tty(File);

impl Tty {
    fn put(&self, s: &str) -> std::io::Result<()> {
        (&self.0).write_all(s.as_bytes())
    }
}

impl TermLike for Tty {
    fn width(&self) -> u16 {
        let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCGWINSZ fills a winsize on a valid descriptor.
        let ok = unsafe { libc::ioctl(self.0.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0;
        if ok && ws.ws_col > 0 {
            ws.ws_col
        } else {
            80
        }
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}A"))?;
        }
        Ok(())
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}B"))?;
        }
        Ok(())
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}C"))?;
        }
        Ok(())
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}D"))?;
        }
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.put(s)?;
        self.put("\n")
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.put(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.put("\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        (&self.0).flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The environment picks the mode: forced plain always wins, CI and dumb terminals are
    /// plain, a terminal on stderr is fancy, and fancy is never forced onto a non-terminal.
    #[test]
    fn mode_from_environment() {
        let cases = [
            (None, false, Some("xterm"), true, Mode::Fancy),
            (None, false, Some("xterm"), false, Mode::Plain),
            (None, true, Some("xterm"), true, Mode::Plain),
            (None, false, Some("dumb"), true, Mode::Plain),
            (Some("plain"), false, Some("xterm"), true, Mode::Plain),
            (Some("fancy"), true, Some("dumb"), true, Mode::Fancy),
            (Some("fancy"), false, None, false, Mode::Plain),
        ];
        for (p, ci, term, tty, want) in cases {
            assert_eq!(mode_for(p, ci, term, tty), want, "KA_PROGRESS={p:?} CI={ci} TERM={term:?} tty={tty}");
        }
    }

    #[test]
    fn elapsed_is_readable() {
        assert_eq!(elapsed_text(Duration::from_millis(850)), "850ms");
        assert_eq!(elapsed_text(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(elapsed_text(Duration::from_secs(62)), "1m 02s");
        assert_eq!(elapsed_text(Duration::from_secs(3 * 3600 + 5 * 60)), "3h 05m");
    }

    /// Steps nest: the outer one is registered while it runs, a sub-step does not replace it,
    /// and finishing the outer one clears it (tests run without a terminal: plain mode).
    #[test]
    fn steps_nest_and_clear() {
        let outer = step_in("outer step".into(), Mode::Plain);
        assert_eq!(active().as_ref().map(|s| s.name.clone()), Some("outer step".to_owned()));
        let inner = step_in("inner step".into(), Mode::Plain);
        inner.set_message("half way");
        assert!(inner.finish() < Duration::from_secs(60));
        assert_eq!(active().as_ref().map(|s| s.name.clone()), Some("outer step".to_owned()));
        outer.finish();
        assert!(active().is_none());
        let failing = step_in("failing step".into(), Mode::Plain);
        failing.fail(&"boom");
        assert!(active().is_none(), "a failed step is cleared too");
    }
}
