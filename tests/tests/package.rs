//! The Debian package: `cargo xtask package` builds it (the dev profile here, to reuse the test
//! build) and it holds what README.Debian promises, with maintainer scripts that follow Debian
//! policy and units that `systemd-analyze verify` accepts.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

/// Builds the package once per test binary.
fn package() -> PathBuf {
    static DEB: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DEB.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("ka-deb-{}", std::process::id()));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let printed = run(Command::new(cargo)
            .current_dir(workspace())
            .args(["xtask", "package", "--profile", "dev", "--fast", "--output"])
            .arg(&out));
        let deb = PathBuf::from(printed.lines().last().expect("the package path").trim());
        assert!(deb.exists(), "{} missing", deb.display());
        deb
    })
    .clone()
}

/// Name, paths and metadata: everything the issue and README.Debian list.
#[test]
fn package_contents_and_metadata() {
    let deb = package();
    let arch = run(Command::new("dpkg").arg("--print-architecture")).trim().to_owned();
    let name = deb.file_name().expect("name").to_string_lossy().into_owned();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(name, format!("ka_{version}-1_{arch}.deb"));
    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    for want in ["Package: ka\n", &format!("Version: {version}-1\n"), &format!("Architecture: {arch}\n"), "Section: net\n", "Priority: optional\n", "Depends: libc6"] {
        assert!(info.contains(want), "dpkg-deb -I lacks {want:?}:\n{info}");
    }
    for script in ["postinst", "prerm", "postrm", "conffiles"] {
        assert!(info.lines().any(|l| l.split_whitespace().any(|w| w == script)), "control member {script} missing:\n{info}");
    }
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let paths: Vec<&str> = listing.lines().filter_map(|l| l.split_whitespace().nth(5)).collect();
    for want in [
        "./usr/sbin/ka",
        "./lib/systemd/system/ka.service",
        "./lib/systemd/system/ka@.service",
        "./etc/default/ka",
        "./usr/share/doc/ka/README.Debian",
        "./usr/share/doc/ka/copyright",
        "./usr/share/doc/ka/status.md",
        "./usr/share/doc/ka/grafana-dashboard.json",
        "./usr/share/man/man8/ka.8.gz",
        "./usr/share/man/man8/ka-run.8.gz",
        "./usr/share/man/man8/ka-status.8.gz",
        "./usr/share/man/man8/ka-reload.8.gz",
        "./usr/share/man/man8/ka-check.8.gz",
        "./usr/share/man/man8/ka-rs.8.gz",
        "./usr/share/man/man8/ka-rs-weight.8.gz",
        "./usr/share/man/man8/ka-rs-drain.8.gz",
        "./usr/share/man/man8/ka-rs-disable.8.gz",
        "./usr/share/man/man8/ka-rs-enable.8.gz",
        "./usr/share/man/man8/ka-prepare-restart.8.gz",
        "./usr/share/man/man8/ka-decap.8.gz",
        "./usr/share/bash-completion/completions/ka",
        "./usr/share/zsh/vendor-completions/_ka",
        "./usr/share/fish/vendor_completions.d/ka.fish",
    ] {
        assert!(paths.contains(&want), "{want} missing from the package:\n{listing}");
    }
    let sbin = listing.lines().find(|l| l.ends_with(" ./usr/sbin/ka")).expect("ka");
    assert!(sbin.starts_with("-rwxr-xr-x 0/0 ") || sbin.starts_with("-rwxr-xr-x root/root "), "owned by root, mode 755: {sbin}");
}

/// Unpacked: the binary runs, the man pages and completions are the clap definitions', the
/// conffile and maintainer scripts are as Debian policy wants, and systemd accepts the units.
#[test]
fn unpacked_package_works() {
    let deb = package();
    let root = std::env::temp_dir().join(format!("ka-deb-root-{}", std::process::id()));
    let control = root.join("DEBIAN");
    let _ = std::fs::remove_dir_all(&root);
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let ka = root.join("usr/sbin/ka");
    assert!(run(Command::new(&ka).arg("--version")).starts_with("ka "));
    let page = run(Command::new("gzip").arg("-dc").arg(root.join("usr/share/man/man8/ka-rs-drain.8.gz")));
    assert!(page.contains(".TH ka-rs-drain 8") && page.contains("established"), "{page}");
    let bash = std::fs::read_to_string(root.join("usr/share/bash-completion/completions/ka")).expect("bash completion");
    assert!(bash.contains("prepare-restart") && bash.contains("--dont-release-vrrp"), "bash completion");
    assert_eq!(std::fs::read_to_string(control.join("conffiles")).expect("conffiles").trim(), "/etc/default/ka");
    for script in ["postinst", "prerm", "postrm"] {
        let p = control.join(script);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&p).expect("script").permissions());
        assert_eq!(mode & 0o777, 0o755, "{script} mode");
        run(Command::new("sh").arg("-n").arg(&p));
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(text.starts_with("#!/bin/sh\n") && text.contains("set -e"), "{script}: policy 6.1");
        // Unknown actions are errors; the documented ones are handled.
        let out = Command::new("sh").arg(&p).arg("no-such-action").output().expect("run");
        assert!(!out.status.success(), "{script} accepted an unknown action");
    }
    let postinst = std::fs::read_to_string(control.join("postinst")).expect("postinst");
    assert!(postinst.contains("prepare-restart") && postinst.contains("deb-systemd-invoke restart"), "upgrades restart hitlessly");
    assert!(!postinst.contains("enable ka"), "a fresh install enables nothing (keepalived keeps running)");
    let prerm = std::fs::read_to_string(control.join("prerm")).expect("prerm");
    assert!(prerm.contains("upgrade|failed-upgrade)\n        ;;"), "prerm does not stop ka on upgrade");
    // Outside systemd (no /run/systemd/system), configure and remove do nothing and succeed.
    if !Path::new("/run/systemd/system").exists() {
        for (script, args) in [("postinst", &["configure", ""][..]), ("postinst", &["configure", "0.0.9-1"]), ("prerm", &["remove"]), ("postrm", &["remove"])] {
            let out = Command::new("sh").arg(control.join(script)).args(args).env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").output().expect("run");
            assert!(out.status.success(), "{script} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    for unit in ["ka.service", "ka@.service"] {
        let text = std::fs::read_to_string(root.join("lib/systemd/system").join(unit)).expect("unit");
        for want in ["Type=notify", "Conflicts=keepalived.service", "After=network-online.target", "Wants=network-online.target", "WatchdogSec=", "ExecReload=/usr/sbin/ka", "CapabilityBoundingSet=", "ProtectSystem=", "ProtectHome="] {
            assert!(text.contains(want), "{unit} lacks {want}");
        }
    }
    verify_units(&root);
    let _ = std::fs::remove_dir_all(&root);
}

/// `systemd-analyze verify` on the unpacked units, with the unpacked tree as root (so
/// ExecStart's /usr/sbin/ka exists) completed by the host's units (the targets they order
/// against); nothing is installed on the host.
fn verify_units(root: &Path) {
    let Ok(v) = Command::new("systemd-analyze").arg("--version").output() else {
        panic!("systemd-analyze is needed (Debian package systemd, installed by `cargo xtask setup`)");
    };
    assert!(v.status.success());
    let units = root.join("lib/systemd/system");
    run(Command::new("cp").args(["-rn", "/lib/systemd/system/."]).arg(&units));
    // Named instances are verified through an instance name.
    std::fs::copy(units.join("ka@.service"), units.join("ka@lb1.service")).expect("instance");
    let out = Command::new("systemd-analyze")
        .arg(format!("--root={}", root.display()))
        .args(["verify", "--man=no"])
        .arg(units.join("ka.service"))
        .arg(units.join("ka@lb1.service"))
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .expect("systemd-analyze");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let ours: Vec<&str> = said.lines().filter(|l| l.contains("ka.service") || l.contains("ka@")).collect();
    assert!(out.status.success() && ours.is_empty(), "systemd-analyze verify: {said}");
}
