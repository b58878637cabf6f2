//! BIRD 2 (Debian `bird2`) in a namespace, for the BGP tests and lab: a guard that runs
//! `bird -f` with a given configuration and asks it (`birdcl`) for its routes; `Drop` stops it
//! and removes its files.

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::netns::Netns;

/// A running BIRD.
#[derive(Debug)]
pub struct Bird {
    child: Option<Child>,
    dir: PathBuf,
    ns_path: String,
}

impl Bird {
    /// Starts BIRD in `ns` (its network namespace only) with configuration `conf`, and waits
    /// (at most 10 s) until it answers on its control socket.
    ///
    /// # Errors
    /// `bird` is missing (`cargo xtask setup` installs it), rejects `conf`, or does not answer.
    pub fn start(ns: &Netns, conf: &str) -> anyhow::Result<Bird> {
        let dir = std::env::temp_dir().join(crate::unique_name("ka-bird"));
        std::fs::create_dir_all(&dir)?;
        let conf_path = dir.join("bird.conf");
        std::fs::write(&conf_path, conf)?;
        let log = std::fs::File::create(dir.join("bird.log"))?;
        let child = ns
            .nsenter(std::path::Path::new("/usr/sbin/bird"))
            .arg("-f")
            .arg("-c")
            .arg(&conf_path)
            .arg("-s")
            .arg(dir.join("bird.ctl"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("spawning /usr/sbin/bird: install Debian's bird2 (cargo xtask setup)")?;
        let mut b = Bird { child: Some(child), dir, ns_path: ns.path() };
        let start = Instant::now();
        loop {
            if b.cli("show status").is_ok_and(|s| s.contains("Daemon is up")) {
                return Ok(b);
            }
            if let Some(st) = b.child.as_mut().map(Child::try_wait).transpose()?.flatten() {
                bail!("bird exited with {st}: {}", b.log_text());
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!("bird did not answer within 10 s: {}", b.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs one `birdcl` command and returns its output.
    ///
    /// # Errors
    /// `birdcl` fails.
    pub fn cli(&self, command: &str) -> anyhow::Result<String> {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net={}", self.ns_path))
            .arg("--")
            .arg("/usr/sbin/birdcl")
            .arg("-s")
            .arg(self.dir.join("bird.ctl"))
            .args(command.split_whitespace())
            .output()
            .context("running birdcl")?;
        if !out.status.success() {
            bail!("birdcl {command}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The prefixes BIRD holds (`show route`), e.g. `198.18.40.100/32`.
    ///
    /// # Errors
    /// `birdcl` fails.
    pub fn prefixes(&self) -> anyhow::Result<Vec<String>> {
        let text = self.cli("show route")?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with(char::is_whitespace))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.contains('/'))
            .map(str::to_owned)
            .collect())
    }

    /// BIRD's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default()
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
