//! `cargo xtask package`: the Debian package, `target/debian/ka_<version>_<arch>.deb`, built by
//! cargo-deb (installed by `cargo xtask setup`) from `[package.metadata.deb]` of ka-userspace.
//! Before it, the man pages (`ka(8)` and one per subcommand) and the shell completions are
//! generated from the clap definitions by the `ka` binary just built, into
//! `target/debian-gen/`. Needs no network beyond the registries (cargo, for crates).

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context as _};

use crate::exec::{cargo, exec, output};

/// Options of `cargo xtask package`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Cargo profile of the packaged binary (`release`; the package test uses `dev` to reuse
    /// the test build).
    #[arg(long, default_value = "release")]
    pub profile: String,
    /// Output directory.
    #[arg(long, default_value = "target/debian")]
    pub output: PathBuf,
    /// Faster, weaker compression (tests).
    #[arg(long)]
    pub fast: bool,
}

/// The directory cargo puts a profile's binaries in.
fn profile_dir(profile: &str) -> &str {
    match profile {
        "dev" | "test" => "debug",
        "release" | "bench" => "release",
        other => other,
    }
}

/// Builds the package; returns its path.
///
/// # Errors
/// cargo-deb is missing, the build fails, or the generated files cannot be written.
pub fn run(opts: Options) -> anyhow::Result<PathBuf> {
    if !crate::exec::succeeds("cargo", &["deb", "--version"]) {
        bail!("cargo-deb is not installed: run `cargo xtask setup` (it runs `cargo install cargo-deb --locked`)");
    }
    let root = crate::workspace_root();
    eprintln!("package: building ka ({} profile)", opts.profile);
    exec(cargo().args(["build", "--package", "ka-userspace", "--bin", "ka", "--profile", &opts.profile]))?;
    let ka = root.join("target").join(profile_dir(&opts.profile)).join("ka");
    let gen = root.join("target/debian-gen");
    let man = gen.join("man");
    let completions = gen.join("completions");
    let _ = std::fs::remove_dir_all(&gen);
    std::fs::create_dir_all(&completions).with_context(|| format!("creating {}", completions.display()))?;
    eprintln!("package: man pages and completions from the clap definitions");
    exec(Command::new(&ka).arg("manpages").arg(&man).stdout(std::process::Stdio::null()))?;
    // Debian policy 12.1: man pages compressed with gzip -9n.
    for entry in std::fs::read_dir(&man).with_context(|| format!("reading {}", man.display()))? {
        let path = entry?.path();
        exec(Command::new("gzip").args(["-9nf"]).arg(&path))?;
    }
    for (shell, file) in [("bash", "ka.bash"), ("zsh", "_ka"), ("fish", "ka.fish")] {
        let text = output(Command::new(&ka).args(["completions", shell]))?;
        std::fs::write(completions.join(file), text).with_context(|| format!("writing the {shell} completions"))?;
    }
    let out = if opts.output.is_absolute() { opts.output.clone() } else { root.join(&opts.output) };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    eprintln!("package: cargo deb");
    let mut deb = cargo();
    deb.args(["deb", "--package", "ka-userspace", "--no-build", "--profile", &opts.profile, "--output"]).arg(&out);
    if opts.fast {
        deb.arg("--fast");
    }
    let printed = output(&mut deb)?;
    let deb = printed.lines().rev().map(str::trim).find(|l| l.ends_with(".deb")).map(PathBuf::from);
    let deb = deb.with_context(|| format!("cargo deb did not name the package it wrote: {printed}"))?;
    eprintln!("package: {}", deb.display());
    println!("{}", deb.display());
    Ok(deb)
}
