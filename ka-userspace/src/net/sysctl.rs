//! The few sysctls the VRRP engine changes as keepalived 2.2.7 does, each restored at stop to
//! what it was: `net.ipv4.conf.IF.promote_secondaries` (`promote_secondaries`) and
//! `net.ipv4.igmp_link_local_mcast_reports` (`disable_local_igmp`). They are per network
//! namespace: ka changes those of the namespace it runs in.

use std::{
    io,
    path::{Path, PathBuf},
};

/// `disable_local_igmp`: no IGMP reports for 224.0.0.0/24 (Linux 4.3+).
pub const IGMP_LINK_LOCAL_REPORTS: &str = "/proc/sys/net/ipv4/igmp_link_local_mcast_reports";

/// The `promote_secondaries` sysctl of interface `iface`.
pub fn promote_secondaries_path(iface: &str) -> PathBuf {
    Path::new("/proc/sys/net/ipv4/conf").join(iface).join("promote_secondaries")
}

/// What to write so that a sysctl reading `current` holds `wanted`: `None` when it already
/// does (keepalived leaves it, and does not reset it at stop either).
pub fn change(current: &str, wanted: &str) -> Option<String> {
    (current.trim() != wanted).then(|| wanted.to_owned())
}

/// A sysctl ka changed, with the value to put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// Its file under /proc/sys.
    pub path: PathBuf,
    /// What it held before.
    pub old: String,
}

impl Saved {
    /// Puts the old value back; a failure is logged.
    pub fn restore(&self) {
        match std::fs::write(&self.path, &self.old) {
            Ok(()) => tracing::info!(sysctl = %self.path.display(), value = %self.old, "sysctl restored"),
            Err(e) => tracing::warn!(sysctl = %self.path.display(), error = %e, "cannot restore sysctl"),
        }
    }
}

/// Sets sysctl `path` to `wanted` unless it holds it already; returns what to restore.
///
/// # Errors
/// The file cannot be read or written.
pub fn set(path: &Path, wanted: &str) -> io::Result<Option<Saved>> {
    let current = std::fs::read_to_string(path)?;
    let Some(v) = change(&current, wanted) else { return Ok(None) };
    std::fs::write(path, &v)?;
    tracing::info!(sysctl = %path.display(), value = %v, "sysctl set");
    Ok(Some(Saved { path: path.to_owned(), old: current.trim().to_owned() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sysctl is written only when it differs, and a written one is restored to its old
    /// value.
    #[test]
    fn set_and_restore() {
        let cases = [("0\n", "1", Some("1")), ("1\n", "1", None), ("1", "0", Some("0"))];
        for (cur, want, got) in cases {
            assert_eq!(change(cur, want).as_deref(), got, "{cur:?} -> {want}");
        }
        let dir = std::env::temp_dir().join(format!("ka-sysctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("promote_secondaries");
        std::fs::write(&f, "0\n").expect("write");
        let saved = set(&f, "1").expect("set").expect("changed");
        assert_eq!(std::fs::read_to_string(&f).expect("read"), "1");
        assert!(set(&f, "1").expect("set").is_none(), "already set: nothing to restore");
        saved.restore();
        assert_eq!(std::fs::read_to_string(&f).expect("read"), "0");
        assert_eq!(promote_secondaries_path("eth0"), Path::new("/proc/sys/net/ipv4/conf/eth0/promote_secondaries"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
