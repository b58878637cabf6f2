//! `cargo xtask bench` (config part): `ka check` on the 65,024-instance `~SEQ` example of
//! keepalived.conf(5), and on half of it to show that memory grows linearly.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::exec;

/// Options of the config benchmark.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// The `ka` binary to measure (default: `target/release/ka`, built if missing).
    #[arg(long)]
    pub ka: Option<PathBuf>,
    /// Keep the generated configurations in this directory (default: a temporary one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The keepalived.conf(5) example ("Sequence blocks"): `~SEQ(IF,0,LAST_IF)` over 32 `NUM` and 254
/// `ID` values gives (LAST_IF+1) * 8,128 instances; LAST_IF = 7 is the man page's 65,024.
pub fn man_page_config(last_if: u32) -> String {
    format!(
        r#"$VI4= \
track_file offset_instance_4.${{IF}}.${{NUM}}.${{ID}} {{ \
    file "${{_PWD}}/679/track_files/4.${{IF}}.${{NUM}}.${{ID}}" \
    weight -100 \
}} \
vrrp_instance vrrp4.${{IF}}.${{NUM}}.${{ID}} {{ \
    interface bond${{IF}}.${{NUM}} \
    use_vmac vrrp4.${{IF}}.${{NUM}}.${{ID}} \
    virtual_router_id ${{ID}} \
    priority 130 \
    virtual_ipaddress {{ \
        10.${{IF}}.${{NUM}}.${{ID}}/24 \
    }} \
    track_file {{ \
        offset_instance_4.${{IF}}.${{NUM}}.${{ID}} \
    }} \
}}

~SEQ(IF,0,{last_if}) ~SEQ(NUM,0,31) ~SEQ(ID,1,254) $VI4
"#
    )
}

/// One measurement.
struct Sample {
    instances: u32,
    wall: Duration,
    max_rss_kib: i64,
    exit: i32,
}

/// Runs `ka check -f file` and returns wall time, max RSS (from `wait4`) and exit code.
fn measure(ka: &Path, file: &Path, instances: u32) -> anyhow::Result<Sample> {
    let start = Instant::now();
    let child = std::process::Command::new(ka)
        .args(["check", "-i", "bench", "-f"])
        .arg(file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", ka.display()))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 fills it for our own child, which
    // std's Child will not reap again (we never call wait on it).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: plain syscall with valid pointers to locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    if r != pid {
        bail!("wait4({pid}) failed: {}", std::io::Error::last_os_error());
    }
    let exit = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok(Sample {
        instances,
        wall,
        max_rss_kib: usage.ru_maxrss,
        exit,
    })
}

/// The part of `ka check --dump` the benchmark verifies.
#[derive(serde::Deserialize)]
struct Dump {
    vrrp_instances: Vec<DumpInstance>,
}

#[derive(serde::Deserialize)]
struct DumpInstance {
    name: String,
}

/// Runs `ka check --dump` (outside the timed run) and checks that the model really has
/// `expected` distinct `vrrp_instances`, so a broken expansion cannot pass as fast.
fn verify_instances(ka: &Path, file: &Path, expected: u32) -> anyhow::Result<()> {
    let mut child = std::process::Command::new(ka)
        .args(["check", "-i", "bench", "--dump", "-f"])
        .arg(file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {} check --dump", ka.display()))?;
    let out = child.stdout.take().context("ka check --dump: no stdout")?;
    // Streamed: the dump of 65,024 instances is large, only the names are kept.
    let parsed: Result<Dump, _> = serde_json::from_reader(std::io::BufReader::new(out));
    let status = child.wait().context("wait for ka check --dump")?;
    let dump = parsed.with_context(|| {
        format!("ka check --dump of {} ({status}) is not the model's JSON", file.display())
    })?;
    let names: std::collections::HashSet<&str> =
        dump.vrrp_instances.iter().map(|v| v.name.as_str()).collect();
    if dump.vrrp_instances.len() != expected as usize || names.len() != expected as usize {
        bail!(
            "{}: ka check --dump has {} vrrp_instances ({} distinct names), expected {expected}",
            file.display(),
            dump.vrrp_instances.len(),
            names.len()
        );
    }
    Ok(())
}

/// Generates the configurations, runs `ka check` on them and prints time and memory.
///
/// # Errors
/// The binary cannot be built or run, or `ka check` cannot read the configuration.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let ka = opts.ka.unwrap_or_else(|| root.join("target/release/ka"));
    if !ka.exists() {
        exec::exec(exec::cargo().current_dir(&root).args([
            "build",
            "--release",
            "-p",
            "ka-userspace",
        ]))?;
    }
    let dir = match opts.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("ka-bench-config-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let mut samples = Vec::new();
    for (last_if, name) in [(3, "half.conf"), (7, "full.conf")] {
        let file = dir.join(name);
        std::fs::write(&file, man_page_config(last_if))
            .with_context(|| format!("write {}", file.display()))?;
        let instances = (last_if + 1) * 32 * 254;
        let s = measure(&ka, &file, instances)?;
        if s.exit == 2 || s.exit < 0 {
            bail!(
                "ka check could not read {} (exit {})",
                file.display(),
                s.exit
            );
        }
        verify_instances(&ka, &file, instances)?;
        samples.push(s);
    }
    println!(
        "ka check on the keepalived.conf(5) ~SEQ example ({})",
        ka.display()
    );
    println!(
        "{:>10}  {:>10}  {:>12}  {:>6}",
        "instances", "wall ms", "max RSS MiB", "exit"
    );
    for s in &samples {
        println!(
            "{:>10}  {:>10}  {:>12.1}  {:>6}",
            s.instances,
            s.wall.as_millis(),
            s.max_rss_kib as f64 / 1024.0,
            s.exit
        );
    }
    if let [half, full] = samples.as_slice() {
        println!(
            "memory ratio full/half: {:.2} (linear growth: about 2, less the fixed base)",
            full.max_rss_kib as f64 / half.max_rss_kib.max(1) as f64
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The generated text is the man page's example with the last ~SEQ bound substituted.
    #[test]
    fn man_page_example() {
        let c = super::man_page_config(7);
        assert!(c.contains("~SEQ(IF,0,7) ~SEQ(NUM,0,31) ~SEQ(ID,1,254) $VI4"));
        assert!(c.contains("virtual_router_id ${ID} \\\n"));
    }
}
