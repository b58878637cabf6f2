//! Running commands: one helper whose error names the command that failed.

use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

/// Runs `cmd` with inherited stdio; fails naming the command when it exits non-zero.
///
/// # Errors
/// The command cannot be spawned or fails.
pub fn exec(cmd: &mut Command) -> anyhow::Result<()> {
    let status = outliving_child(|| cmd.status()).with_context(|| format!("cannot run {cmd:?}"))?;
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
    let out = outliving_child(|| cmd.stderr(Stdio::inherit()).output()).with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Runs `f`, which waits for a child, so that a Ctrl-C does not end this process before the
/// child: while a progress spinner runs, the child's output goes through this process
/// ([`crate::progress`]), and the child, which gets the terminal's SIGINT too, must be able to
/// print its cleanup. A handler that does nothing (reset to the default in the child by exec,
/// unlike an ignored signal) replaces SIGINT's for the wait; the child's failure then ends the
/// step as usual.
fn outliving_child<T>(f: impl FnOnce() -> T) -> T {
    if !crate::progress::redirecting() {
        return f();
    }
    // SAFETY: sigaction with a valid handler that touches nothing; the old action is restored.
    unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = ignore_signal as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut new.sa_mask);
        new.sa_flags = libc::SA_RESTART;
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGINT, &new, &mut old) != 0 {
            return f();
        }
        let out = f();
        libc::sigaction(libc::SIGINT, &old, std::ptr::null_mut());
        out
    }
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
