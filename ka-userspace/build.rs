//! Builds `ka-ebpf` for `bpfel-unknown-none` with the pinned toolchain and leaves the object in
//! `$OUT_DIR/ka-ebpf`, which `src/ebpf.rs` embeds. `KA_SKIP_EBPF=1` (or aya-build's
//! `AYA_BUILD_SKIP=1`) skips it for lint-only runs and embeds an empty object instead; such a
//! binary refuses to load the datapath with a clear error.

use std::{env, fs, path::PathBuf};

use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    println!("cargo::rerun-if-env-changed=KA_SKIP_EBPF");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    let manifest_dir = PathBuf::from(
        env::var_os("CARGO_MANIFEST_DIR").ok_or_else(|| anyhow!("CARGO_MANIFEST_DIR not set"))?,
    );
    let root = manifest_dir.parent().ok_or_else(|| anyhow!("no workspace root"))?;
    let skip = |v: Option<std::ffi::OsString>| v.is_some_and(|v| v == "1" || v == "true");
    if skip(env::var_os("KA_SKIP_EBPF")) || skip(env::var_os("AYA_BUILD_SKIP")) {
        println!("cargo::warning=KA_SKIP_EBPF set: the ka binary carries no eBPF object");
        fs::write(out_dir.join("ka-ebpf"), b"").context("writing the empty eBPF object")?;
        return Ok(());
    }
    let toolchain_file = root.join("ka-ebpf/rust-toolchain.toml");
    println!("cargo::rerun-if-changed={}", toolchain_file.display());
    println!("cargo::rerun-if-changed={}", root.join("ka-common/src").display());
    let toolchain = fs::read_to_string(&toolchain_file)
        .with_context(|| format!("reading {}", toolchain_file.display()))?;
    let channel = toolchain
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel").map(|r| r.trim_start_matches([' ', '=']).trim().trim_matches('"').to_owned()))
        .ok_or_else(|| anyhow!("no channel in {}", toolchain_file.display()))?;
    let ebpf_dir = root.join("ka-ebpf");
    let ebpf_dir = ebpf_dir.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "ka-ebpf", root_dir: ebpf_dir, ..Default::default() }],
        aya_build::Toolchain::Custom(&channel),
    )
    .with_context(|| {
        format!(
            "building the eBPF object with toolchain {channel} (run `cargo xtask setup` to install \
             the toolchain, rust-src and bpf-linker, or set KA_SKIP_EBPF=1 for a lint-only build)"
        )
    })
}
