//! keepalived's pid files: written when the daemon starts (mode 0644, `PID\n`), removed when
//! it stops, and read to refuse a second start ("daemon is already running").

use std::path::{Path, PathBuf};

/// What a pid file says about its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidState {
    /// No file.
    Absent,
    /// A live process (or a file keepalived cannot read: it assumes one).
    Running(i32),
    /// A file naming a process that is gone (keepalived removes it).
    Stale,
}

/// Parses a pid file's text: the first number in it, as `fscanf("%d")`.
pub fn parse(text: &str) -> Option<i32> {
    text.split_whitespace().next()?.parse().ok().filter(|p: &i32| *p > 0)
}

/// keepalived's `process_running`: the pid in `path`, alive (`kill(pid, 0)`) or not.
pub fn state(path: &Path) -> PidState {
    let Ok(text) = std::fs::read_to_string(path) else { return PidState::Absent };
    let Some(pid) = parse(&text) else {
        // keepalived: "Error reading pid file", removed, and "we don't know": running.
        let _ = std::fs::remove_file(path);
        return PidState::Running(0);
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => PidState::Running(pid),
        Err(_) => {
            let _ = std::fs::remove_file(path);
            PidState::Stale
        }
    }
}

/// Pid files written by this process, removed when dropped.
#[derive(Debug, Default)]
pub struct PidFiles {
    written: Vec<PathBuf>,
}

impl PidFiles {
    /// Writes `pid` into every file of `paths` (creating their directory), mode 0644.
    ///
    /// # Errors
    /// A file cannot be written (those written before it are removed).
    pub fn write(paths: &[&Path], pid: u32) -> std::io::Result<PidFiles> {
        use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
        let mut files = PidFiles::default();
        for p in paths {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(p)?;
            writeln!(f, "{pid}")?;
            files.written.push(p.to_path_buf());
        }
        Ok(files)
    }

    /// The files written.
    pub fn paths(&self) -> &[PathBuf] {
        &self.written
    }
}

impl Drop for PidFiles {
    fn drop(&mut self) {
        for p in &self.written {
            // Only our own: a later daemon may have rewritten it.
            if std::fs::read_to_string(p).ok().as_deref().and_then(parse) == i32::try_from(std::process::id()).ok() {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_files_round_trip() {
        assert_eq!(parse("1234\n"), Some(1234));
        assert_eq!(parse(" 77 junk"), Some(77));
        assert_eq!(parse("x"), None);
        assert_eq!(parse("-1"), None);
        let dir = std::env::temp_dir().join(format!("ka-pid-{}", std::process::id()));
        let main = dir.join("sub/keepalived.pid");
        let vrrp = dir.join("vrrp.pid");
        assert_eq!(state(&main), PidState::Absent);
        {
            let files = PidFiles::write(&[&main, &vrrp], std::process::id()).expect("write");
            assert_eq!(files.paths().len(), 2);
            assert_eq!(std::fs::read_to_string(&main).expect("read"), format!("{}\n", std::process::id()));
            assert_eq!(state(&vrrp), PidState::Running(i32::try_from(std::process::id()).expect("pid")));
        }
        assert!(!main.exists() && !vrrp.exists(), "removed on drop");
        // A process that is gone: the stale file is removed.
        std::fs::write(&vrrp, "2147483646\n").expect("write");
        assert_eq!(state(&vrrp), PidState::Stale);
        assert!(!vrrp.exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
