//! Per-instance names and paths. Several daemons run side by side on one host (one per network
//! namespace): everything instance-specific that is global lives under the instance's name.

use std::{
    fmt,
    io::{Read as _, Seek as _, Write as _},
    os::fd::AsRawFd as _,
    path::PathBuf,
    str::FromStr,
};

use ka_common::maps::{BPFFS_ROOT, RUN_DIR};

/// A validated instance name: 1 to 64 of `[A-Za-z0-9_.-]`, not starting with a dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceName(String);

/// Why an instance name was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid instance name {name:?}: use 1 to 64 characters of [A-Za-z0-9_.-], not starting with '.'")]
pub struct InvalidInstanceName {
    /// The refused name.
    pub name: String,
}

impl FromStr for InstanceName {
    type Err = InvalidInstanceName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && !s.starts_with('.')
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if ok {
            Ok(InstanceName(s.to_owned()))
        } else {
            Err(InvalidInstanceName { name: s.to_owned() })
        }
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl InstanceName {
    /// The instance's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The control socket: `/run/ka/NAME.sock`.
    pub fn socket_path(&self) -> PathBuf {
        PathBuf::from(RUN_DIR).join(format!("{}.sock", self.0))
    }
    /// The bpffs directory of the instance's pins: `/sys/fs/bpf/ka/NAME/`.
    pub fn pin_dir(&self) -> PathBuf {
        PathBuf::from(BPFFS_ROOT).join(&self.0)
    }
    /// The lock a running daemon holds: `/run/ka/NAME.lock`.
    pub fn lock_path(&self) -> PathBuf {
        PathBuf::from(RUN_DIR).join(format!("{}.lock", self.0))
    }
}

/// Why an instance could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another daemon runs this instance.
    #[error(
        "instance {instance} is in use by a running ka{}: refusing to start a second daemon on it (it would take over \
         the first one's XDP links, maps and VIPs); stop that one first (`ka --instance {instance} status` shows it), \
         or give this one another --instance",
        holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held {
        /// The instance.
        instance: String,
        /// The running daemon's pid, as it wrote it in the lock file.
        holder: Option<u32>,
    },
    /// The lock file cannot be created or locked.
    #[error("instance lock {path}: {source}")]
    Io {
        /// Lock file path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The exclusive lock of an instance (`flock` on [`InstanceName::lock_path`], holding the
/// daemon's pid), held for the daemon's life and released by the kernel when it exits, however
/// it exits. A second `ka run` on the same `--instance` finds it held and stops before it
/// touches anything of the first one's.
#[derive(Debug)]
pub struct InstanceLock {
    _file: std::fs::File,
}

impl InstanceLock {
    /// Takes the lock of `instance` without waiting.
    ///
    /// # Errors
    /// [`LockError::Held`] when another process holds it; [`LockError::Io`] when the file
    /// cannot be created or locked.
    pub fn acquire(instance: &InstanceName) -> Result<InstanceLock, LockError> {
        InstanceLock::acquire_at(&instance.lock_path(), instance.as_str())
    }

    /// [`InstanceLock::acquire`] with the lock file at `path`.
    ///
    /// # Errors
    /// As [`InstanceLock::acquire`].
    pub fn acquire_at(path: &std::path::Path, instance: &str) -> Result<InstanceLock, LockError> {
        let io = |source| LockError::Io { path: path.to_owned(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io)?;
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held { instance: instance.to_owned(), holder: text.trim().parse().ok() });
            }
            return Err(io(e));
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(InstanceLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_per_instance_paths() {
        let n: InstanceName = "lb-1".parse().expect("valid");
        assert_eq!(n.socket_path(), PathBuf::from("/run/ka/lb-1.sock"));
        assert_eq!(n.pin_dir(), PathBuf::from("/sys/fs/bpf/ka/lb-1"));
    }

    /// The lock is exclusive while held (the second taker is told the holder's pid, and the
    /// message says what to do) and free again once dropped.
    #[test]
    fn instance_lock_is_exclusive() {
        let dir = std::env::temp_dir().join(format!("ka-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("t.lock");
        let first = InstanceLock::acquire_at(&path, "lb1").expect("first");
        match InstanceLock::acquire_at(&path, "lb1") {
            Err(e @ LockError::Held { .. }) => {
                let text = e.to_string();
                let want = format!("instance lb1 is in use by a running ka (pid {})", std::process::id());
                assert!(text.contains(&want) && text.contains("another --instance"), "{text}");
            }
            other => panic!("second lock: {other:?}"),
        }
        drop(first);
        assert!(InstanceLock::acquire_at(&path, "lb1").is_ok(), "free once released");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn path_tricks_are_refused() {
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b", &"x".repeat(65)] {
            assert!(bad.parse::<InstanceName>().is_err(), "{bad:?} accepted");
        }
    }
}
