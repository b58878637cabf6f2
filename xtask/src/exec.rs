//! Running commands: one helper whose error names the command that failed.

use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

/// Runs `cmd` with inherited stdio; fails naming the command when it exits non-zero.
///
/// # Errors
/// The command cannot be spawned or fails.
pub fn exec(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout (stderr inherited), failing when it exits non-zero.
///
/// # Errors
/// The command cannot be spawned or fails.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.stderr(Stdio::inherit()).output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when `program` runs and exits 0 with `args`.
pub fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `cargo` as invoked by this xtask (the same toolchain).
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(crate::workspace_root());
    c
}
