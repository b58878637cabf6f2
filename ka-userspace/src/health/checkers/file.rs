//! FILE_CHECK: a number read from a `track_file`'s file takes the real server down or, with
//! `dynamic`, adjusts its weight.
//!
//! ka's reading of keepalived.conf(5): the value `v` is multiplied by the weight `w` (the
//! checker's `weight`, else the track_file's; negated with `reverse`). With `w == 0` any
//! non-zero value means down. Otherwise the server is down when `v × w` is -254 or less
//! (keepalived's fault threshold) and, with `dynamic`, its weight becomes
//! `configured + v × w` (at least 0); without `dynamic` any negative `v × w` means down.

use std::time::Duration;

use tokio::io::AsyncReadExt as _;

use super::{CheckError, Deadline, Success};
use crate::config::{model::{Checker, CheckerKind, RealServer}, Config};

/// A FILE_CHECK.
#[derive(Clone, Debug)]
pub struct FileProbe {
    /// The file.
    pub path: String,
    /// The multiplier (already negated for `reverse`).
    pub weight: i64,
    /// `dynamic`.
    pub dynamic: bool,
    /// The real server's configured weight.
    pub base_weight: i64,
    /// `connect_timeout`, the budget of the read.
    pub timeout: Duration,
}

impl FileProbe {
    /// Resolves the `track_file` the checker names.
    ///
    /// # Errors
    /// The track_file does not exist or has no file.
    pub fn build(checker: &Checker, rs: &RealServer, cfg: &Config) -> Result<FileProbe, CheckError> {
        let CheckerKind::File { track_file, dynamic, weight } = &checker.kind else {
            return Err(CheckError::Config("not a FILE_CHECK".into()));
        };
        let name = track_file.as_deref().ok_or_else(|| CheckError::Config("FILE_CHECK needs a track_file".into()))?;
        let tf = cfg
            .track_files
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| CheckError::Config(format!("no track_file named {name:?}")))?;
        let path = tf.file.clone().ok_or_else(|| CheckError::Config(format!("track_file {name:?} has no file")))?;
        let w = weight.unwrap_or(tf.weight);
        Ok(FileProbe {
            path,
            weight: if tf.reverse { -w } else { w },
            dynamic: *dynamic,
            base_weight: i64::from(rs.weight.max(0)),
            timeout: checker.connect_timeout,
        })
    }

    /// The verdict for a file holding `value` (pure, see the module docs).
    ///
    /// # Errors
    /// The value means down.
    pub fn judge(&self, value: i64) -> Result<Success, CheckError> {
        if self.weight == 0 {
            return if value == 0 { Ok(Success::new("value 0")) } else { Err(CheckError::Mismatch(format!("{} holds {value}", self.path))) };
        }
        let adj = value.saturating_mul(self.weight);
        if adj <= -254 || (!self.dynamic && adj < 0) {
            return Err(CheckError::Mismatch(format!("{} holds {value} (× weight {} = {adj})", self.path, self.weight)));
        }
        let weight = self.dynamic.then(|| u32::try_from(self.base_weight.saturating_add(adj).clamp(0, i64::from(u32::MAX))).unwrap_or(0));
        Ok(Success { detail: format!("value {value}"), weight })
    }

    /// Reads the file (at most 64 bytes; a missing or empty file reads as 0, as keepalived).
    ///
    /// # Errors
    /// The value means down, or reading fails.
    pub async fn run(&self) -> Result<Success, CheckError> {
        let deadline = Deadline::after(self.timeout);
        let text = deadline
            .run("reading the file", async {
                let mut buf = Vec::with_capacity(64);
                match tokio::fs::File::open(&self.path).await {
                    Ok(f) => f.take(64).read_to_end(&mut buf).await.map(|_| buf),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(buf),
                    Err(e) => Err(e),
                }
            })
            .await?
            .map_err(|source| CheckError::Io { stage: "reading the file", source })?;
        let text = String::from_utf8_lossy(&text);
        let word = text.split_whitespace().next().unwrap_or("0");
        let value: i64 = word.parse().map_err(|_| CheckError::Mismatch(format!("{} does not hold a number: {word:?}", self.path)))?;
        self.judge(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(weight: i64, dynamic: bool) -> FileProbe {
        FileProbe { path: "f".into(), weight, dynamic, base_weight: 10, timeout: Duration::from_secs(1) }
    }

    /// Weight 0: any non-zero value is down; dynamic: the value adjusts the weight, and
    /// -254 or less is down.
    #[test]
    fn file_values() {
        assert!(probe(0, false).judge(0).is_ok());
        assert!(probe(0, false).judge(3).is_err());
        assert!(probe(1, false).judge(-1).is_err());
        assert_eq!(probe(1, false).judge(5).expect("up").weight, None);
        assert_eq!(probe(2, true).judge(-3).expect("up").weight, Some(4));
        assert_eq!(probe(1, true).judge(-20).expect("up").weight, Some(0));
        assert!(probe(1, true).judge(-254).is_err());
    }
}
