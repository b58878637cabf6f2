//! The notify FIFOs (`notify_fifo`, `vrrp_notify_fifo`, `lvs_notify_fifo`) and the scripts
//! that read them (`*_notify_fifo_script`), as keepalived 2.2.7's `fifo_open` / `fifo_close`
//! (lib/notify.c) handle them: a FIFO that does not exist is created (mode 0644) and removed
//! when ka lets it go; its script is started with the FIFO's path as its last argument, never
//! timed out, and sent SIGTERM when ka lets the FIFO go; the FIFO is held open for reading and
//! writing, non-blocking, so a line waits in the pipe for a reader that opens it later and a
//! write never blocks (a full pipe drops the line).
//!
//! keepalived's VRRP and checker processes each open the global `notify_fifo`; ka's VRRP engine
//! and health checkers do the same ([`specs`] says which FIFOs and scripts each part opens).
//! VRRP lines: `INSTANCE "VI_1" MASTER 100`, `GROUP "G1" BACKUP`.

use std::{
    fs::File,
    io::{self, Write as _},
    os::unix::{
        fs::{FileTypeExt as _, OpenOptionsExt as _},
        process::CommandExt as _,
    },
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use tracing::{debug, info, warn};

use super::{
    script::{RunAs, Runner, ScriptError},
    Event, Subject,
};
use crate::config::model::{GlobalDefs, Script};

/// keepalived's FIFO line for `ev`, newline included.
pub fn line(ev: &Event) -> String {
    match ev.subject {
        Subject::Instance => format!("{} \"{}\" {} {}\n", ev.subject.word(), ev.name, ev.state, ev.priority),
        Subject::Group => format!("{} \"{}\" {}\n", ev.subject.word(), ev.name, ev.state),
    }
}

/// The script that reads a FIFO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FifoScript {
    /// Command line (the FIFO's path is appended).
    pub command: String,
    /// `USER [GROUP]`, else the default script user.
    pub user: Option<(String, Option<String>)>,
}

impl From<&Script> for FifoScript {
    fn from(s: &Script) -> FifoScript {
        FifoScript { command: s.command.clone(), user: s.user.clone() }
    }
}

/// One FIFO a part of the daemon opens, and the script it starts for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FifoSpec {
    /// The FIFO.
    pub path: PathBuf,
    /// Its script, if this part runs it.
    pub script: Option<FifoScript>,
    /// `USER [GROUP]` given with the FIFO: the owner of a FIFO ka creates (none: the default
    /// script user), as keepalived's `fifo_open` chowns it.
    pub owner: Option<(String, Option<String>)>,
}

/// Which part of the daemon opens FIFOs (keepalived: which process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The VRRP engine (keepalived's VRRP process).
    Vrrp,
    /// The health checkers (keepalived's checker process).
    Lvs,
}

/// The FIFOs `part` opens, with keepalived 2.2.7's rules (global_data.c, vrrp.c,
/// check_data.c): the global `notify_fifo` is opened by both parts, its script run by the
/// checkers when they run (`checkers_run`), else by VRRP; a part's own FIFO naming the global
/// one is ignored with its script; when the VRRP and LVS FIFOs are one with a script each, the
/// LVS script is ignored.
pub fn specs(g: &GlobalDefs, part: Part, checkers_run: bool) -> Vec<FifoSpec> {
    let mut out = Vec::new();
    if let Some(p) = &g.notify_fifo {
        let runs_script = match part {
            Part::Vrrp => !checkers_run,
            Part::Lvs => true,
        };
        out.push(FifoSpec { path: p.into(), script: g.notify_fifo_script.as_ref().filter(|_| runs_script).map(FifoScript::from), owner: g.fifo_owners[0].clone() });
    }
    let (own, own_script, owner) = match part {
        Part::Vrrp => (&g.vrrp_notify_fifo, &g.vrrp_notify_fifo_script, &g.fifo_owners[1]),
        Part::Lvs => (&g.lvs_notify_fifo, &g.lvs_notify_fifo_script, &g.fifo_owners[2]),
    };
    if let Some(p) = own {
        if g.notify_fifo.as_ref() == Some(p) {
            return out;
        }
        let mut script = own_script.as_ref().map(FifoScript::from);
        if part == Part::Lvs && g.vrrp_notify_fifo.as_ref() == Some(p) && g.vrrp_notify_fifo_script.is_some() {
            script = None;
        }
        out.push(FifoSpec { path: p.into(), script, owner: owner.clone() });
    }
    out
}

/// A FIFO script started by ka: SIGTERM to its process group when dropped, unless it ended.
#[derive(Debug)]
struct FifoChild {
    pid: i32,
    done: Arc<AtomicBool>,
}

impl Drop for FifoChild {
    fn drop(&mut self) {
        if !self.done.load(Ordering::Acquire) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pid), nix::sys::signal::Signal::SIGTERM);
        }
    }
}

/// Starts `script` with `fifo` appended, as keepalived's `system_call_script(..., TIMER_NEVER)`:
/// no timeout; reaped by a thread of its own.
fn start_script(script: &FifoScript, fifo: &Path, runner: &Runner) -> Result<FifoChild, ScriptError> {
    let mut words = super::script::split(&script.command)?;
    words.push(fifo.to_string_lossy().into_owned());
    let run_as = match &script.user {
        Some((u, g)) => RunAs::resolve(u, g.as_deref())?,
        None => runner.default_user.get()?,
    };
    let checked = super::security::check(&words[0], run_as, runner.secure)?;
    for w in &checked.warnings {
        warn!(script = %script.command, "{w}");
    }
    let mut cmd = std::process::Command::new(&checked.program);
    cmd.args(&words[1..])
        .env_clear()
        .envs(super::script::script_env(std::env::vars_os()))
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    if run_as != RunAs::current() {
        cmd.uid(run_as.uid.as_raw()).gid(run_as.gid.as_raw());
    }
    let mut child = cmd.spawn().map_err(|source| ScriptError::Spawn { cmd: script.command.clone(), source })?;
    let pid = i32::try_from(child.id()).map_err(|_| ScriptError::Spawn { cmd: script.command.clone(), source: io::Error::other("pid out of range") })?;
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let name = script.command.clone();
    let reaper = std::thread::Builder::new().name("ka-fifo-script".into()).spawn(move || {
        let st = child.wait();
        flag.store(true, Ordering::Release);
        // keepalived's `*_notify_fifo_script_exit`: "notify fifo script terminated".
        info!(script = %name, status = ?st.ok(), "notify FIFO script terminated");
    });
    if let Err(e) = reaper {
        warn!(script = %script.command, error = %e, "notify FIFO script: no thread to reap it");
    }
    Ok(FifoChild { pid, done })
}

/// Whom a FIFO ka creates belongs to: its `USER [GROUP]`, else the default script user (none
/// without a runner, or when neither resolves: the daemon's).
fn fifo_owner(owner: Option<&(String, Option<String>)>, runner: Option<&Runner>) -> Option<RunAs> {
    match owner {
        Some((u, g)) => match RunAs::resolve(u, g.as_deref()) {
            Ok(r) => Some(r),
            Err(e) => {
                warn!(error = %e, "notify FIFO owner");
                None
            }
        },
        None => runner.and_then(|r| r.default_user.get().ok()),
    }
}

/// Creates (when missing, owned by `owner`) and opens the FIFO at `path`, starting `script`
/// between the two as keepalived does: `Ok((file, created, child))`.
fn open_fifo(path: &Path, script: Option<&FifoScript>, owner: Option<RunAs>, runner: Option<&Runner>) -> io::Result<(File, bool, Option<FifoChild>)> {
    let created = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_fifo() => false,
        Ok(_) => return Err(io::Error::other("exists and is not a FIFO")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).map_err(io::Error::from)?;
            if let Some(o) = owner.filter(|o| *o != RunAs::current()) {
                if let Err(e) = nix::unistd::chown(path, Some(o.uid), Some(o.gid)) {
                    // keepalived: "Failed to set uid:gid for fifo".
                    info!(fifo = %path.display(), error = %e, "failed to set the owner of the notify FIFO");
                }
            }
            true
        }
        Err(e) => return Err(e),
    };
    let child = match (script, runner) {
        (Some(s), Some(r)) => match start_script(s, path, r) {
            Ok(c) => Some(c),
            Err(e) => {
                warn!(fifo = %path.display(), error = %e, "notify FIFO script not started");
                None
            }
        },
        _ => None,
    };
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    match opened {
        Ok(f) => Ok((f, created, child)),
        Err(e) => {
            if created {
                let _ = std::fs::remove_file(path);
            }
            Err(e)
        }
    }
}

/// One open FIFO.
#[derive(Debug)]
struct Fifo {
    path: PathBuf,
    file: File,
    /// ka made it, so ka removes it.
    created: bool,
    /// Its script, while running.
    child: Option<FifoChild>,
}

/// The FIFOs a part of the daemon writes its lines to.
#[derive(Debug, Default)]
pub struct NotifyFifos {
    fifos: Vec<Fifo>,
    specs: Vec<FifoSpec>,
}

impl NotifyFifos {
    /// Opens each FIFO of `specs` once (a path given twice is opened once), starting its
    /// script with `runner`'s users and checks (no runner: no script); one that cannot be
    /// opened is logged and left out, as keepalived does.
    pub fn open(specs: &[FifoSpec], runner: Option<&Runner>) -> NotifyFifos {
        let mut fifos: Vec<Fifo> = Vec::new();
        for s in specs {
            if fifos.iter().any(|f| f.path == s.path) {
                continue;
            }
            match open_fifo(&s.path, s.script.as_ref(), fifo_owner(s.owner.as_ref(), runner), runner) {
                Ok((file, created, child)) => fifos.push(Fifo { path: s.path.clone(), file, created, child }),
                Err(e) => warn!(fifo = %s.path.display(), error = %e, "cannot open the notify FIFO"),
            }
        }
        NotifyFifos { fifos, specs: specs.to_vec() }
    }

    /// Opens the FIFOs of `paths`, without scripts.
    pub fn open_paths(paths: &[&str]) -> NotifyFifos {
        let specs: Vec<FifoSpec> = paths.iter().map(|p| FifoSpec { path: p.into(), script: None, owner: None }).collect();
        NotifyFifos::open(&specs, None)
    }

    /// What these FIFOs were opened from.
    pub fn specs(&self) -> &[FifoSpec] {
        &self.specs
    }

    /// Whether no FIFO is open.
    pub fn is_empty(&self) -> bool {
        self.fifos.is_empty()
    }

    /// Writes `line` to every FIFO without blocking (dropped where the pipe is full).
    pub fn send(&mut self, line: &str) {
        for f in &mut self.fifos {
            if let Err(e) = f.file.write_all(line.as_bytes()) {
                debug!(fifo = %f.path.display(), error = %e, "notify FIFO: line dropped");
            }
        }
    }
}

impl Drop for NotifyFifos {
    fn drop(&mut self) {
        for f in &mut self.fifos {
            // keepalived unlinks first, so that a script that loops reopening the FIFO cannot
            // reopen this one; then the script gets SIGTERM.
            if f.created {
                let _ = std::fs::remove_file(&f.path);
            }
            f.child = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, LoadOptions};
    use crate::notify::security::DefaultUser;

    #[test]
    fn lines_match_keepalived() {
        let ev = Event { subject: Subject::Instance, name: "VI_1".into(), state: "MASTER", priority: 100 };
        assert_eq!(line(&ev), "INSTANCE \"VI_1\" MASTER 100\n");
        let ev = Event { subject: Subject::Group, name: "G1".into(), state: "FAULT", priority: 0 };
        assert_eq!(line(&ev), "GROUP \"G1\" FAULT\n");
    }

    /// Which FIFOs and scripts each part opens, keepalived's rules side by side.
    #[test]
    fn specs_follow_keepalived() {
        let sc = |c: &str| Some(FifoScript { command: c.into(), user: None });
        let spec = |p: &str, s: Option<FifoScript>| FifoSpec { path: p.into(), script: s, owner: None };
        struct Case {
            name: &'static str,
            global: &'static str,
            part: Part,
            checkers_run: bool,
            want: Vec<FifoSpec>,
        }
        let cases = [
            Case { name: "nothing", global: "", part: Part::Vrrp, checkers_run: false, want: vec![] },
            Case {
                name: "global fifo: its script run by VRRP when no checker runs",
                global: " notify_fifo /run/g\n notify_fifo_script /bin/g\n",
                part: Part::Vrrp,
                checkers_run: false,
                want: vec![spec("/run/g", sc("/bin/g"))],
            },
            Case {
                name: "global fifo: its script run by the checkers when they run",
                global: " notify_fifo /run/g\n notify_fifo_script /bin/g\n",
                part: Part::Vrrp,
                checkers_run: true,
                want: vec![spec("/run/g", None)],
            },
            Case {
                name: "the checkers open the global fifo and run its script",
                global: " notify_fifo /run/g\n notify_fifo_script /bin/g\n",
                part: Part::Lvs,
                checkers_run: true,
                want: vec![spec("/run/g", sc("/bin/g"))],
            },
            Case {
                name: "vrrp fifo with its script, next to the global one",
                global: " notify_fifo /run/g\n vrrp_notify_fifo /run/v\n vrrp_notify_fifo_script \"/bin/v x\" nobody\n",
                part: Part::Vrrp,
                checkers_run: false,
                want: vec![spec("/run/g", None), spec("/run/v", Some(FifoScript { command: "/bin/v x".into(), user: Some(("nobody".into(), None)) }))],
            },
            Case {
                name: "vrrp fifo naming the global one is ignored with its script",
                global: " notify_fifo /run/g\n vrrp_notify_fifo /run/g\n vrrp_notify_fifo_script /bin/v\n",
                part: Part::Vrrp,
                checkers_run: false,
                want: vec![spec("/run/g", None)],
            },
            Case {
                name: "lvs fifo naming the global one is ignored",
                global: " notify_fifo /run/g\n lvs_notify_fifo /run/g\n lvs_notify_fifo_script /bin/l\n",
                part: Part::Lvs,
                checkers_run: true,
                want: vec![spec("/run/g", None)],
            },
            Case {
                name: "lvs and vrrp fifo one, both with scripts: the lvs script is ignored",
                global: " vrrp_notify_fifo /run/x\n vrrp_notify_fifo_script /bin/v\n lvs_notify_fifo /run/x\n lvs_notify_fifo_script /bin/l\n",
                part: Part::Lvs,
                checkers_run: true,
                want: vec![spec("/run/x", None)],
            },
            Case {
                name: "lvs fifo with its script",
                global: " lvs_notify_fifo /run/l\n lvs_notify_fifo_script /bin/l\n",
                part: Part::Lvs,
                checkers_run: true,
                want: vec![spec("/run/l", sc("/bin/l"))],
            },
        ];
        for c in cases {
            let text = format!("global_defs {{\n{}}}\n", c.global);
            let loaded = parse_str(&text, Path::new("t.conf"), &LoadOptions::default());
            assert!(loaded.diagnostics.is_empty(), "{}: {:?}", c.name, loaded.diagnostics);
            assert_eq!(specs(&loaded.config.global, c.part, c.checkers_run), c.want, "{}", c.name);
        }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ka-fifo-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    /// A FIFO ka creates belongs to its `USER [GROUP]`, else to the default script user; an
    /// existing one keeps its owner.
    #[test]
    fn created_fifo_is_chowned() {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
            eprintln!("skipped: no user nobody on this host");
            return;
        };
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: chown needs root");
            return;
        }
        let dir = temp_dir("owner");
        let runner = Runner { default_user: DefaultUser::Run(RunAs { uid: nobody.uid, gid: nobody.gid }), secure: false, timeout: std::time::Duration::from_secs(1) };
        let (named, default, theirs) = (dir.join("named"), dir.join("default"), dir.join("theirs"));
        nix::unistd::mkfifo(&theirs, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
        let specs = [
            FifoSpec { path: named.clone(), script: None, owner: Some(("nobody".into(), Some("root".into()))) },
            FifoSpec { path: default.clone(), script: None, owner: None },
            FifoSpec { path: theirs.clone(), script: None, owner: Some(("nobody".into(), None)) },
        ];
        let f = NotifyFifos::open(&specs, Some(&runner));
        let owner = |p: &Path| std::fs::metadata(p).map(|m| (m.uid(), m.gid(), m.mode() & 0o777)).expect("stat");
        assert_eq!(owner(&named), (nobody.uid.as_raw(), 0, 0o644));
        assert_eq!(owner(&default), (nobody.uid.as_raw(), nobody.gid.as_raw(), 0o644));
        assert_eq!(owner(&theirs).0, 0, "an existing FIFO keeps its owner");
        drop(f);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A missing FIFO is created, lines wait in it for a reader that comes later, and the FIFO
    /// is removed when the writer goes; an existing FIFO is used and left in place; a path that
    /// is not a FIFO is left out.
    #[test]
    fn fifo_is_created_buffered_and_removed() {
        let dir = temp_dir("lvs");
        let made = dir.join("made");
        let theirs = dir.join("theirs");
        let file = dir.join("file");
        nix::unistd::mkfifo(&theirs, nix::sys::stat::Mode::from_bits_truncate(0o600)).ok();
        std::fs::write(&file, "x").expect("file");
        let paths = [made.to_str().expect("utf-8"), theirs.to_str().expect("utf-8"), file.to_str().expect("utf-8"), made.to_str().expect("utf-8")];
        let mut f = NotifyFifos::open_paths(&paths);
        assert_eq!(f.fifos.len(), 2, "the plain file is left out, the repeated path opened once");
        f.send("VS FWM 1 UP\n");
        f.send("VS FWM 1 DOWN\n");
        for p in [&made, &theirs] {
            let mut r = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(p).expect("reader");
            let mut buf = [0u8; 64];
            let n = std::io::Read::read(&mut r, &mut buf).expect("read");
            assert_eq!(&buf[..n], b"VS FWM 1 UP\nVS FWM 1 DOWN\n", "{}", p.display());
        }
        drop(f);
        assert!(!made.exists(), "the FIFO ka made is removed");
        assert!(theirs.exists(), "an existing FIFO stays");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The FIFO script gets the FIFO's path as its last argument and reads the lines written
    /// to it, those written before it opened the FIFO included; it gets SIGTERM when the FIFO
    /// is let go, and the FIFO ka made is removed.
    #[test]
    fn fifo_script_reads_the_lines_and_is_terminated() {
        let dir = temp_dir("script");
        let fifo = dir.join("vrrp.fifo");
        let out = dir.join("out");
        let term = dir.join("term");
        // $0 is the FIFO (sh -c's first argument after the command string).
        let cmd = format!(
            "/bin/sh -c 'trap \"echo term > {}; exit 0\" TERM; echo \"arg $0\" > {}; while read l; do echo \"$l\" >> {}; done < \"$0\" & wait'",
            term.display(),
            out.display(),
            out.display()
        );
        let runner = Runner { default_user: DefaultUser::Run(RunAs::current()), secure: false, timeout: std::time::Duration::from_secs(1) };
        let spec = FifoSpec { path: fifo.clone(), script: Some(FifoScript { command: cmd, user: None }), owner: None };
        let mut f = NotifyFifos::open(&[spec], Some(&runner));
        f.send(&line(&Event { subject: Subject::Instance, name: "VI_1".into(), state: "MASTER", priority: 100 }));
        f.send(&line(&Event { subject: Subject::Group, name: "G".into(), state: "MASTER", priority: 0 }));
        let want = format!("arg {}\nINSTANCE \"VI_1\" MASTER 100\nGROUP \"G\" MASTER\n", fifo.display());
        let mut got = String::new();
        for _ in 0..500 {
            got = std::fs::read_to_string(&out).unwrap_or_default();
            if got == want {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(got, want);
        drop(f);
        assert!(!fifo.exists(), "the FIFO ka made is removed");
        let mut terminated = false;
        for _ in 0..500 {
            if std::fs::read_to_string(&term).unwrap_or_default() == "term\n" {
                terminated = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(terminated, "the script got SIGTERM");
        let _ = std::fs::remove_dir_all(dir);
    }
}
