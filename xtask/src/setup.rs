//! `cargo xtask setup`: installs what building and testing ka needs on a fresh Debian machine,
//! skipping whatever is already there. Every step says what it does; a failure names the
//! missing piece.

use std::{path::Path, process::Command};

use anyhow::{bail, Context as _};

use crate::exec::{exec, output, succeeds};

/// The LLVM major both the eBPF toolchain and bpf-linker must use.
pub const LLVM_MAJOR: u32 = 22;

/// Debian packages the build and the tests use.
pub const APT_PACKAGES: &[&str] = &[
    // bpf-linker links against it.
    "llvm-22-dev",
    // Namespaces, veths, bridges: `ip`.
    "iproute2",
    // `nsenter` to run ka in a namespace's network namespace only.
    "util-linux",
    // The reference implementation for config and VRRP interoperability tests.
    "keepalived",
    // nftables: the baseline of the datapath benchmark.
    "nftables",
    // Process CPU accounting in benchmarks (`ps`, `pgrep`).
    "procps",
    // /usr/bin/time -v for memory measurements in benchmarks.
    "time",
    // libFuzzer, which cargo-fuzz builds for `cargo xtask fuzz`, is C++.
    "g++",
    // Health-check tests: real servers in namespaces (HTTP/SSL, DNS), test CA, `ss`.
    "nginx-light",
    "dnsmasq-base",
    "openssl",
    // GRO on veth peers, so XDP_REDIRECTed frames are received (load-balancer tests).
    "ethtool",
    // `promtool check metrics` validates the /metrics output (metrics tests).
    "prometheus",
    // `systemd-analyze verify` on the units; dpkg-deb and dpkg-shlibdeps for the package.
    "systemd",
    "dpkg-dev",
    // BGP tests and lab: BIRD learns ka's announced routes (`ka run --announce-table`).
    "bird2",
];

/// Options of `cargo xtask setup`.
#[derive(Debug, clap::Args)]
pub struct Options {}

/// Runs every setup step.
///
/// # Errors
/// A step fails; the message names the missing piece and how to get it.
pub fn run(_opts: Options) -> anyhow::Result<()> {
    let toolchain = ebpf_toolchain()?;
    step("rust toolchain for eBPF", || rust_toolchain(&toolchain))?;
    step("Debian packages", apt_packages)?;
    step("bpf-linker", bpf_linker)?;
    step("cargo-deb", cargo_deb)?;
    // `cargo xtask fuzz` runs cargo-fuzz on the pinned nightly installed above.
    step("cargo-fuzz", crate::fuzz::ensure_cargo_fuzz)?;
    step("LLVM versions", || check_llvm(&toolchain))?;
    step("bpffs", bpffs)?;
    Ok(())
}

/// One setup step, with progress (a spinner on a terminal, plain lines in CI).
fn step(name: &str, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    crate::progress::run(format!("setup: {name}"), f).with_context(|| format!("setup step '{name}' failed"))
}

/// The pinned eBPF toolchain, read from `ka-ebpf/rust-toolchain.toml` (the single source).
///
/// # Errors
/// The file is missing or has no channel.
pub fn ebpf_toolchain() -> anyhow::Result<String> {
    let path = crate::workspace_root().join("ka-ebpf/rust-toolchain.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "channel").then(|| v.trim().trim_matches('"').to_owned())
        })
        .with_context(|| format!("no channel in {}", path.display()))
}

fn rust_toolchain(toolchain: &str) -> anyhow::Result<()> {
    let has_src = succeeds("rustup", &["run", toolchain, "rustc", "--version"])
        && output(Command::new("rustup").args(["run", toolchain, "rustc", "--print", "sysroot"]))
            .map(|s| Path::new(s.trim()).join("lib/rustlib/src/rust/library/core").exists())
            .unwrap_or(false);
    if has_src {
        eprintln!("  {toolchain} with rust-src: present");
        return Ok(());
    }
    eprintln!("  installing {toolchain} with rust-src (rustup)");
    exec(Command::new("rustup").args([
        "toolchain",
        "install",
        toolchain,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
    .with_context(|| format!("missing piece: the {toolchain} toolchain with rust-src"))
}

fn apt_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_ok_and(|s| s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        eprintln!("  all present: {}", APT_PACKAGES.join(" "));
        return Ok(());
    }
    if !is_root() {
        bail!("missing Debian packages {missing:?}; run as root or `apt-get install {}`", missing.join(" "));
    }
    eprintln!("  apt-get update");
    exec(Command::new("apt-get").arg("update").env("DEBIAN_FRONTEND", "noninteractive"))
        .context("missing piece: apt-get update failed")?;
    eprintln!("  apt-get install {}", missing.join(" "));
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("missing piece: Debian packages {missing:?}"))
}

/// The LLVM major bpf-linker is linked against, if it is installed.
fn bpf_linker_llvm() -> Option<u32> {
    let path = which("bpf-linker")?;
    if let Some(n) = output(Command::new("ldd").arg(&path)).ok().and_then(|l| llvm_major_from_ldd(&l)) {
        return Some(n);
    }
    // Statically linked: read the feature it was installed with from cargo's records.
    let home = std::env::var_os("CARGO_HOME").map_or_else(|| home_dir().join(".cargo"), Into::into);
    let crates = std::fs::read_to_string(Path::new(&home).join(".crates2.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&crates).ok()?;
    json["installs"].as_object()?.iter().find(|(k, _)| k.starts_with("bpf-linker ")).and_then(|(_, v)| {
        v["features"].as_array()?.iter().find_map(|f| f.as_str()?.strip_prefix("llvm-")?.parse().ok())
    })
}

/// The LLVM major of the libLLVM that `ldd` lists, if any.
fn llvm_major_from_ldd(ldd: &str) -> Option<u32> {
    let v = ldd.split("libLLVM.so.").nth(1).or_else(|| ldd.split("libLLVM-").nth(1))?;
    v.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

/// cargo-deb builds the Debian package (`cargo xtask package`), installed as bpf-linker is.
fn cargo_deb() -> anyhow::Result<()> {
    if succeeds("cargo", &["deb", "--version"]) {
        eprintln!("  cargo-deb: present");
        return Ok(());
    }
    eprintln!("  installing cargo-deb (cargo install cargo-deb --locked)");
    exec(Command::new("cargo").args(["install", "cargo-deb", "--locked"])).context("missing piece: cargo-deb")
}

fn bpf_linker() -> anyhow::Result<()> {
    if let Some(v) = bpf_linker_llvm() {
        if v == LLVM_MAJOR {
            eprintln!("  bpf-linker (LLVM {v}): present");
            return Ok(());
        }
        eprintln!("  bpf-linker is built against LLVM {v}, need {LLVM_MAJOR}: reinstalling");
    } else {
        eprintln!("  bpf-linker: not found, installing (about a minute)");
    }
    let llvm_bin = format!("/usr/lib/llvm-{LLVM_MAJOR}/bin");
    let path = format!("{llvm_bin}:{}", std::env::var("PATH").unwrap_or_default());
    exec(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["install", "--force", "bpf-linker", "--no-default-features", "--features"])
            .arg(format!("llvm-{LLVM_MAJOR}"))
            .env("PATH", path),
    )
    .with_context(|| format!("missing piece: bpf-linker built against LLVM {LLVM_MAJOR} (needs llvm-{LLVM_MAJOR}-dev)"))
}

/// The LLVM major of a rustc toolchain.
fn rustc_llvm(toolchain: &str) -> anyhow::Result<u32> {
    let vv = output(Command::new("rustup").args(["run", toolchain, "rustc", "-vV"]))?;
    vv.lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next()?.parse().ok())
        .with_context(|| format!("no LLVM version in `rustc -vV` of {toolchain}"))
}

/// Checks that the eBPF toolchain's and bpf-linker's LLVM majors match.
///
/// # Errors
/// They differ or cannot be found; the message says which versions were found and how to fix it.
pub fn check_llvm(toolchain: &str) -> anyhow::Result<()> {
    let rustc = rustc_llvm(toolchain)?;
    let linker = bpf_linker_llvm().context("bpf-linker is not installed (run `cargo xtask setup`)")?;
    if rustc != linker || rustc != LLVM_MAJOR {
        bail!(
            "LLVM mismatch: toolchain {toolchain} uses LLVM {rustc}, bpf-linker uses LLVM {linker}, \
             xtask expects LLVM {LLVM_MAJOR}. Fix: pin ka-ebpf/rust-toolchain.toml to a nightly whose \
             `rustc -vV` reports LLVM {linker}, or reinstall bpf-linker with \
             `PATH=/usr/lib/llvm-{rustc}/bin:$PATH cargo install --force bpf-linker \
             --no-default-features --features llvm-{rustc}` (and set LLVM_MAJOR in xtask/src/setup.rs)"
        );
    }
    eprintln!("  {toolchain}: LLVM {rustc}; bpf-linker: LLVM {linker}: match");
    Ok(())
}

fn bpffs() -> anyhow::Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if mounts.lines().any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf") && l.contains(" bpf ")) {
        eprintln!("  /sys/fs/bpf: mounted");
        return Ok(());
    }
    if !is_root() {
        bail!("missing piece: bpffs at /sys/fs/bpf (run as root: mount -t bpf bpf /sys/fs/bpf)");
    }
    eprintln!("  mounting bpffs at /sys/fs/bpf");
    exec(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"])).context("missing piece: bpffs at /sys/fs/bpf")
}

/// True when running as root.
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn home_dir() -> std::path::PathBuf {
    std::env::var_os("HOME").map_or_else(|| "/root".into(), Into::into)
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME").map_or_else(|| home_dir().join(".cargo"), Into::into);
    dirs.push(Path::new(&cargo_home).join("bin"));
    dirs.into_iter().map(|d| d.join(program)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_is_read_from_ldd_output() {
        let ldd = "\tlibLLVM.so.22.1 => /usr/lib/llvm-22/lib/libLLVM.so.22.1 (0x00007f)\n";
        assert_eq!(llvm_major_from_ldd(ldd), Some(22));
        assert_eq!(llvm_major_from_ldd("\tlibLLVM-19.so => /usr/lib/x (0x1)"), Some(19));
        assert_eq!(llvm_major_from_ldd("\tlibc.so.6 => /lib/libc.so.6"), None);
    }
}
