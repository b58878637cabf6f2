//! Per-instance names and paths. Several daemons run side by side on one host (one per network
//! namespace): everything instance-specific that is global lives under the instance's name.

use std::{fmt, path::PathBuf, str::FromStr};

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

    #[test]
    fn path_tricks_are_refused() {
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b", &"x".repeat(65)] {
            assert!(bad.parse::<InstanceName>().is_err(), "{bad:?} accepted");
        }
    }
}
