//! keepalived's script security (2.2.7, `lib/notify.c`: `check_script_secure`,
//! `check_security`, `is_executable`, `find_path`, `get_default_script_user`), for every script
//! ka runs: notify scripts, `vrrp_script`s and `MISC_CHECK`s.
//!
//! - The default user is `script_user`, else `keepalived_script` if that user exists, else
//!   root. With `enable_script_security` and neither, keepalived reports "Unable to set default
//!   user keepalived_script for script" and runs no script that names no user of its own; so
//!   does ka ([`DefaultUser::Refused`]).
//! - A bare name is looked up in the scripts' `PATH` ([`super::script::SCRIPT_PATH`]), with
//!   keepalived's warning to give the full path.
//! - A script the user cannot execute is not run.
//! - A script that runs as uid 0 or gid 0, or is set-uid/set-gid root, needs protection: every
//!   component of its path, from `/`, must be owned by root, and neither writable by others
//!   nor by a group other than root's (a directory with the sticky bit, like `/tmp`, may be);
//!   each directory must be a directory, and the last component a file or a symlink
//!   ([`unsafe_component`]). With `enable_script_security` such an unsafe script is refused;
//!   without, it runs and keepalived's "Unsafe permissions" line is logged.
//!
//! Both the resolved path and the path as written are walked. keepalived 2.2.7 walks the
//! resolved one (after `realpath`); walking the written one too refuses a root-owned symlink
//! that sits in a directory a user could write (and so replace the symlink). An intermediate
//! symlink of the written path (`/bin` → `usr/bin`) is accepted when root owns it: its target
//! is walked with the resolved path.

use std::{
    io,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Component, Path, PathBuf},
};

use nix::unistd::{Gid, Uid, User};

use super::script::{RunAs, ScriptError, SCRIPT_PATH};

/// What a path component is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link (not followed).
    Symlink,
    /// Anything else (device, socket, FIFO).
    Other,
}

/// The facts about one path component that decide its safety (from `lstat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    /// Its kind.
    pub kind: Kind,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Mode bits (permissions, set-id and sticky bits).
    pub mode: u32,
}

impl Node {
    fn of(md: &std::fs::Metadata) -> Node {
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_symlink() {
            Kind::Symlink
        } else {
            Kind::Other
        };
        Node { kind, uid: md.uid(), gid: md.gid(), mode: md.permissions().mode() & 0o7777 }
    }
}

/// Why a component makes a script unsafe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsafe {
    /// A directory of the path is not a directory, or the script is neither a file nor a
    /// symlink ("Wrong file type found in script path"; keepalived refuses it even without
    /// `enable_script_security`).
    WrongType,
    /// Not owned by root.
    Owner(u32),
    /// Writable by others, or by a group other than root's.
    Writable(u32),
}

/// keepalived's rule for one component (`check_security`): `last` is the script itself,
/// `through_symlink` accepts a root-owned symlink in place of a directory (the path as
/// written, whose symlinks' targets are walked separately).
pub fn unsafe_component(n: &Node, last: bool, through_symlink: bool) -> Option<Unsafe> {
    let type_ok = match (last, n.kind) {
        (false, Kind::Dir) | (true, Kind::File | Kind::Symlink) => true,
        (false, Kind::Symlink) => through_symlink,
        _ => false,
    };
    if !type_ok {
        return Some(Unsafe::WrongType);
    }
    if n.uid != 0 {
        return Some(Unsafe::Owner(n.uid));
    }
    let sticky_dir = n.kind == Kind::Dir && n.mode & 0o1000 != 0;
    let checked = (n.kind == Kind::Dir && !sticky_dir) || n.kind == Kind::File;
    let writable = (n.gid != 0 && n.mode & 0o020 != 0) || n.mode & 0o002 != 0;
    (checked && writable).then_some(Unsafe::Writable(n.mode))
}

/// keepalived's `is_executable`: root needs any execute bit; the owner the owner's; a member
/// of the file's group the group's; anyone else the others'.
pub fn is_executable(n: &Node, run_as: RunAs) -> bool {
    let (uid, gid) = (run_as.uid.as_raw(), run_as.gid.as_raw());
    (uid == 0 && n.mode & 0o111 != 0)
        || (uid == n.uid && n.mode & 0o100 != 0)
        || (uid != n.uid && ((gid == n.gid && n.mode & 0o010 != 0) || (gid != n.gid && n.mode & 0o001 != 0)))
}

/// Whether a script needs protection (keepalived): it runs as uid 0 or gid 0, or is an
/// executable set-uid root or set-gid root file.
pub fn needs_protection(file: &Node, run_as: RunAs) -> bool {
    run_as.uid.is_root()
        || run_as.gid.as_raw() == 0
        || (file.uid == 0 && file.mode & 0o100 != 0 && file.mode & 0o4000 != 0)
        || (file.gid == 0 && file.mode & 0o010 != 0 && file.mode & 0o2000 != 0)
}

/// `path` made absolute and lexically clean (`.`, `..` and repeated `/` removed), as
/// keepalived's `clean_path` does.
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Walks every component of `path` from `/` (without following symlinks) and returns the
/// first unsafe one.
///
/// # Errors
/// A component cannot be examined.
pub fn walk(path: &Path, through_symlinks: bool) -> io::Result<Option<(PathBuf, Unsafe)>> {
    let mut prefix = PathBuf::new();
    let comps: Vec<Component<'_>> = path.components().collect();
    for (i, c) in comps.iter().enumerate() {
        prefix.push(c);
        let node = Node::of(&std::fs::symlink_metadata(&prefix)?);
        if let Some(u) = unsafe_component(&node, i + 1 == comps.len(), through_symlinks) {
            return Ok(Some((prefix, u)));
        }
    }
    Ok(None)
}

/// A script ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// What to execute (a bare name resolved through the scripts' `PATH`).
    pub program: PathBuf,
    /// keepalived's messages about it (path search, unsafe permissions without
    /// `enable_script_security`), to be logged.
    pub warnings: Vec<String>,
    /// It is unsafe but runs anyway (no `enable_script_security`).
    pub insecure: bool,
}

/// Checks script `program` (the first word of its command line) for `run_as`, as keepalived
/// does before running it; `secure` is `enable_script_security`.
///
/// # Errors
/// keepalived's refusals, with its words: not found ([`ScriptError::Missing`]), not
/// executable ([`ScriptError::NotExecutable`]), unsafe under `enable_script_security` or of
/// the wrong file type ([`ScriptError::Insecure`]).
pub fn check(program: &str, run_as: RunAs, secure: bool) -> Result<Checked, ScriptError> {
    let mut warnings = Vec::new();
    let written = if program.contains('/') {
        PathBuf::from(program)
    } else {
        let found = search(program, run_as).ok_or_else(|| ScriptError::Missing {
            path: program.into(),
            source: io::Error::new(io::ErrorKind::NotFound, format!("Cannot find script {program} in path ({SCRIPT_PATH}) - disabling")),
        })?;
        warnings.push(format!("WARNING - script `{program}` resolved by path search to `{}`. Please specify full path.", found.display()));
        found
    };
    let real = std::fs::canonicalize(&written).map_err(|source| ScriptError::Missing { path: written.clone(), source })?;
    let file = Node::of(&std::fs::metadata(&real).map_err(|source| ScriptError::Missing { path: real.clone(), source })?);
    if file.kind != Kind::File {
        return Err(ScriptError::Insecure { path: written, why: "Wrong file type found in script path: not a regular file".to_owned() });
    }
    if !is_executable(&file, run_as) {
        return Err(ScriptError::NotExecutable { path: written, uid: run_as.uid.as_raw(), gid: run_as.gid.as_raw() });
    }
    let mut insecure = false;
    if needs_protection(&file, run_as) {
        let cleaned = clean(&written);
        let mut found = None;
        for (p, through) in [(&real, false), (&cleaned, true)] {
            if found.is_none() {
                found = walk(p, through).map_err(|source| ScriptError::Missing { path: p.clone(), source })?;
            }
        }
        if let Some((component, why)) = found {
            let detail = match why {
                Unsafe::WrongType => format!("Wrong file type found in script path '{}' at {}", written.display(), component.display()),
                Unsafe::Owner(uid) => format!("{} is owned by uid {uid}", component.display()),
                Unsafe::Writable(mode) => format!("{} is writable by a non-root user (mode {mode:o})", component.display()),
            };
            if secure || why == Unsafe::WrongType {
                return Err(ScriptError::Insecure { path: written, why: format!("Unsafe permissions found for script '{program}' - disabling: {detail}") });
            }
            warnings.push(format!("Unsafe permissions found for script '{program}': {detail}"));
            insecure = true;
        }
    }
    Ok(Checked { program: written, warnings, insecure })
}

/// keepalived's path search for a bare script name: the first regular file in
/// [`SCRIPT_PATH`] that `run_as` may execute.
fn search(name: &str, run_as: RunAs) -> Option<PathBuf> {
    SCRIPT_PATH.split(':').map(|dir| Path::new(dir).join(name)).find(|p| {
        std::fs::metadata(p).is_ok_and(|md| md.is_file() && is_executable(&Node::of(&md), run_as))
    })
}

/// The user scripts run as when they name none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultUser {
    /// This one.
    Run(RunAs),
    /// None (`enable_script_security` without `script_user` and without a `keepalived_script`
    /// user): scripts that name no user are not run.
    Refused,
}

/// The name keepalived tries when `script_user` is not set.
pub const KEEPALIVED_SCRIPT: &str = "keepalived_script";

/// keepalived's default script user: `script_user`, else the `keepalived_script` user if it
/// exists, else the daemon's own identity unless `secure` (`enable_script_security`).
///
/// # Errors
/// `script_user` names an unknown user or group.
pub fn default_user(script_user: Option<(&str, Option<&str>)>, secure: bool) -> Result<DefaultUser, ScriptError> {
    if let Some((u, g)) = script_user {
        return RunAs::resolve(u, g).map(DefaultUser::Run);
    }
    let keepalived_script = User::from_name(KEEPALIVED_SCRIPT).ok().flatten();
    Ok(pick_default(keepalived_script.map(|u| RunAs { uid: u.uid, gid: u.gid }), secure, RunAs::current()))
}

/// The pure part of [`default_user`]: `keepalived_script` if it exists, else `current` unless
/// `secure`.
pub fn pick_default(keepalived_script: Option<RunAs>, secure: bool, current: RunAs) -> DefaultUser {
    match (keepalived_script, secure) {
        (Some(u), _) => DefaultUser::Run(u),
        (None, false) => DefaultUser::Run(current),
        (None, true) => DefaultUser::Refused,
    }
}

impl Default for DefaultUser {
    /// The daemon's own identity.
    fn default() -> DefaultUser {
        DefaultUser::Run(RunAs::current())
    }
}

impl DefaultUser {
    /// The user, or keepalived's error when there is none.
    ///
    /// # Errors
    /// [`ScriptError::NoDefaultUser`].
    pub fn get(self) -> Result<RunAs, ScriptError> {
        match self {
            DefaultUser::Run(u) => Ok(u),
            DefaultUser::Refused => Err(ScriptError::NoDefaultUser),
        }
    }
}

/// One script of a configuration: where it is configured, its command line and its own user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfiguredScript {
    /// What it is (`notify_master of VI_1`, `vrrp_script chk`, `MISC_CHECK of real server
    /// 198.18.1.1`).
    pub what: String,
    /// The `vrrp_script`'s name, for one.
    pub vrrp_script: Option<String>,
    /// The command line.
    pub command: String,
    /// Its `user [group]`, if it names one.
    pub user: Option<(String, Option<String>)>,
}

/// Every script `cfg` would run.
pub fn configured_scripts(cfg: &crate::config::Config) -> Vec<ConfiguredScript> {
    use crate::config::model::{CheckerKind, Notify, Script};
    let mut out = Vec::new();
    let mut push = |what: String, s: &Script| out.push(ConfiguredScript { what, vrrp_script: None, command: s.command.clone(), user: s.user.clone() });
    let notify = |owner: &str, n: &Notify, push: &mut dyn FnMut(String, &Script)| {
        for (kw, s) in [("notify_master", &n.master), ("notify_backup", &n.backup), ("notify_fault", &n.fault), ("notify_stop", &n.stop), ("notify", &n.any)] {
            if let Some(s) = s {
                push(format!("{kw} of {owner}"), s);
            }
        }
    };
    for i in &cfg.vrrp_instances {
        notify(&i.name, &i.notify, &mut push);
    }
    for g in &cfg.sync_groups {
        notify(&g.name, &g.notify, &mut push);
    }
    for vs in &cfg.virtual_servers {
        for (kw, s) in [("quorum_up", &vs.quorum_up), ("quorum_down", &vs.quorum_down)] {
            if let Some(s) = s {
                push(format!("{kw} of a virtual server"), s);
            }
        }
        for rs in &vs.real_servers {
            for (kw, s) in [("notify_up", &rs.notify_up), ("notify_down", &rs.notify_down)] {
                if let Some(s) = s {
                    push(format!("{kw} of real server {}", rs.address), s);
                }
            }
        }
    }
    for s in &cfg.vrrp_scripts {
        if let Some(c) = &s.script {
            out.push(ConfiguredScript { what: format!("vrrp_script {}", s.name), vrrp_script: Some(s.name.clone()), command: c.clone(), user: s.user.clone() });
        }
    }
    for vs in &cfg.virtual_servers {
        for rs in &vs.real_servers {
            for c in &rs.checkers {
                if let CheckerKind::Misc { path: Some(p), user, .. } = &c.kind {
                    out.push(ConfiguredScript { what: format!("MISC_CHECK of real server {}", rs.address), vrrp_script: None, command: p.clone(), user: user.clone() });
                }
            }
        }
    }
    out
}

/// What keepalived says about one script (or the configuration) at load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The message, as logged.
    pub text: String,
    /// The `vrrp_script` it refuses, if it refuses one.
    pub refuses: Option<String>,
    /// What the finding is about, which decides where keepalived 2.2.7 reports it.
    pub about: FindingAbout,
}

/// Where keepalived 2.2.7 reports a [`Finding`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindingAbout {
    /// The script's user (unknown, or no default user): keepalived reports it while reading
    /// the configuration, at the end of the `vrrp_script` block, and removes the script there.
    User,
    /// The global `script_user` names an unknown user or group ("Error setting global script
    /// uid/gid", at the `script_user` line).
    GlobalUser,
    /// The script's program (missing, not executable, unsafe): reported when keepalived starts.
    Program,
    /// The configuration as a whole (security summary, default user).
    Config,
}

/// What keepalived reports about the scripts of `cfg` when it loads it: for each script its
/// warnings or the reason it is not run, and "SECURITY VIOLATION" when scripts run without
/// `enable_script_security`.
pub fn audit(cfg: &crate::config::Config) -> Vec<Finding> {
    let g = &cfg.global;
    let secure = g.enable_script_security;
    let scripts = configured_scripts(cfg);
    let default = default_user(g.script_user.as_ref().map(|(u, grp)| (u.as_str(), grp.as_deref())), secure);
    let mut out = Vec::new();
    let note = |text: String| Finding { text, refuses: None, about: FindingAbout::Config };
    if let (Err(e), Some((u, _))) = (&default, &g.script_user) {
        out.push(Finding { text: format!("script_user {u}: {e}"), refuses: None, about: FindingAbout::GlobalUser });
    }
    if matches!(default, Ok(DefaultUser::Refused)) && scripts.iter().any(|s| s.user.is_none()) {
        out.push(note(format!("Unable to set default user {KEEPALIVED_SCRIPT} for script (enable_script_security, no script_user): scripts that name no user are not run")));
    }
    let mut insecure = false;
    for s in &scripts {
        let refused = |text: String, about: FindingAbout| Finding { text, refuses: s.vrrp_script.clone(), about };
        let words = match super::script::split(&s.command) {
            Ok(w) => w,
            Err(e) => {
                out.push(refused(format!("{}: {e}", s.what), FindingAbout::Program));
                continue;
            }
        };
        let run_as = match &s.user {
            Some((u, grp)) => RunAs::resolve(u, grp.as_deref()),
            None => default.as_ref().map_err(|e| ScriptError::BadCommand(e.to_string())).and_then(|d| d.get()),
        };
        let run_as = match run_as {
            Ok(u) => u,
            // The missing default user is reported once, above.
            Err(ScriptError::NoDefaultUser) => {
                if s.vrrp_script.is_some() {
                    out.push(refused(format!("{}: not run (no user)", s.what), FindingAbout::User));
                }
                continue;
            }
            Err(e) => {
                out.push(refused(format!("{}: {e}", s.what), FindingAbout::User));
                continue;
            }
        };
        match check(&words[0], run_as, secure) {
            Ok(c) => {
                insecure |= c.insecure;
                out.extend(c.warnings.iter().map(|w| note(format!("{}: {w}", s.what))));
            }
            Err(e) => out.push(refused(format!("{}: {e}", s.what), FindingAbout::Program)),
        }
    }
    if !secure && !scripts.is_empty() {
        out.push(note(format!(
            "SECURITY VIOLATION - scripts are being executed but script_security not enabled.{}",
            if insecure { " There are insecure scripts." } else { "" }
        )));
    }
    out
}

/// What keepalived does with the scripts of `cfg` when it loads it ([`audit`]), and: a
/// `vrrp_script` that cannot run (unsafe, missing, not executable, no user) is removed with the
/// references to it, so it neither holds its instances in INIT nor weighs on them (keepalived
/// frees it the same way). Returns the messages for the daemon to log at start and at each
/// reload. Other refused scripts stay configured and are refused again, with the reason, each
/// time they would run (a refused MISC_CHECK fails its checks: the real server stays down,
/// where keepalived drops the checker and keeps the server up).
pub fn apply(cfg: &mut crate::config::Config) -> Vec<String> {
    let findings = audit(cfg);
    let refused: Vec<&String> = findings.iter().filter_map(|f| f.refuses.as_ref()).collect();
    if !refused.is_empty() {
        cfg.vrrp_scripts.retain(|s| !refused.contains(&&s.name));
        for i in &mut cfg.vrrp_instances {
            i.track_scripts.retain(|t| !refused.contains(&&t.name));
        }
        for g in &mut cfg.sync_groups {
            g.track_scripts.retain(|t| !refused.contains(&&t.name));
        }
    }
    findings.into_iter().map(|f| f.text).collect()
}

/// Root, for tests and callers that mean it.
pub const ROOT: RunAs = RunAs { uid: Uid::from_raw(0), gid: Gid::from_raw(0) };

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: Kind, uid: u32, gid: u32, mode: u32) -> Node {
        Node { kind, uid, gid, mode }
    }

    /// keepalived's `check_security`, one rule per row.
    #[test]
    fn component_rules() {
        use Kind::*;
        let cases: &[(&str, Node, bool, bool, Option<Unsafe>)] = &[
            ("root dir 0755", node(Dir, 0, 0, 0o755), false, false, None),
            ("root file 0755", node(File, 0, 0, 0o755), true, false, None),
            ("dir owned by a user", node(Dir, 1000, 0, 0o755), false, false, Some(Unsafe::Owner(1000))),
            ("file owned by a user", node(File, 1000, 1000, 0o700), true, false, Some(Unsafe::Owner(1000))),
            ("world-writable dir", node(Dir, 0, 0, 0o757), false, false, Some(Unsafe::Writable(0o757))),
            ("world-writable file", node(File, 0, 0, 0o757), true, false, Some(Unsafe::Writable(0o757))),
            ("sticky world-writable dir (/tmp)", node(Dir, 0, 0, 0o1777), false, false, None),
            ("group-writable, group root", node(File, 0, 0, 0o775), true, false, None),
            ("group-writable dir, group root", node(Dir, 0, 0, 0o775), false, false, None),
            ("group-writable, group staff", node(File, 0, 50, 0o775), true, false, Some(Unsafe::Writable(0o775))),
            ("group-writable dir, group staff", node(Dir, 0, 50, 0o775), false, false, Some(Unsafe::Writable(0o775))),
            ("sticky group-writable dir, group staff", node(Dir, 0, 50, 0o1775), false, false, None),
            ("a file where a directory should be", node(File, 0, 0, 0o755), false, false, Some(Unsafe::WrongType)),
            ("a directory as the script", node(Dir, 0, 0, 0o755), true, false, Some(Unsafe::WrongType)),
            ("a device as the script", node(Other, 0, 0, 0o755), true, false, Some(Unsafe::WrongType)),
            ("root symlink as the script (mode ignored)", node(Symlink, 0, 0, 0o777), true, false, None),
            ("user's symlink as the script", node(Symlink, 1000, 0, 0o777), true, false, Some(Unsafe::Owner(1000))),
            ("symlink directory in the resolved path", node(Symlink, 0, 0, 0o777), false, false, Some(Unsafe::WrongType)),
            ("root symlink directory in the written path (/bin)", node(Symlink, 0, 0, 0o777), false, true, None),
            ("user's symlink directory in the written path", node(Symlink, 1000, 0, 0o777), false, true, Some(Unsafe::Owner(1000))),
        ];
        for (name, n, last, through, want) in cases {
            assert_eq!(unsafe_component(n, *last, *through), *want, "{name}");
        }
    }

    fn user(uid: u32, gid: u32) -> RunAs {
        RunAs { uid: Uid::from_raw(uid), gid: Gid::from_raw(gid) }
    }

    /// keepalived's `is_executable`.
    #[test]
    fn executable_for_whom() {
        let cases = [
            ("root, any x bit", node(Kind::File, 1000, 1000, 0o001), user(0, 0), true),
            ("root, no x bit", node(Kind::File, 0, 0, 0o644), user(0, 0), false),
            ("owner with u+x", node(Kind::File, 1000, 1000, 0o700), user(1000, 1000), true),
            ("owner without u+x, even with o+x", node(Kind::File, 1000, 1000, 0o601), user(1000, 1000), false),
            ("group member with g+x", node(Kind::File, 0, 50, 0o750), user(1000, 50), true),
            ("group member without g+x, even with o+x", node(Kind::File, 0, 50, 0o701), user(1000, 50), false),
            ("other with o+x", node(Kind::File, 0, 0, 0o755), user(65534, 65534), true),
            ("other without o+x", node(Kind::File, 0, 0, 0o750), user(65534, 65534), false),
        ];
        for (name, n, who, want) in cases {
            assert_eq!(is_executable(&n, who), want, "{name}");
        }
    }

    /// Protection is needed for uid 0, gid 0 and set-id root executables only.
    #[test]
    fn who_needs_protection() {
        let plain = node(Kind::File, 0, 0, 0o755);
        assert!(needs_protection(&plain, user(0, 0)));
        assert!(needs_protection(&plain, user(1000, 0)), "gid 0 is root's group");
        assert!(!needs_protection(&plain, user(65534, 65534)));
        assert!(needs_protection(&node(Kind::File, 0, 0, 0o4755), user(65534, 65534)), "set-uid root");
        assert!(needs_protection(&node(Kind::File, 5, 0, 0o2755), user(65534, 65534)), "set-gid root");
        assert!(!needs_protection(&node(Kind::File, 0, 0, 0o4644), user(65534, 65534)), "set-uid but not executable");
    }

    #[test]
    fn default_user_as_keepalived_picks_it() {
        let ks = user(999, 999);
        let me = user(0, 0);
        assert_eq!(pick_default(Some(ks), true, me), DefaultUser::Run(ks));
        assert_eq!(pick_default(Some(ks), false, me), DefaultUser::Run(ks));
        assert_eq!(pick_default(None, false, me), DefaultUser::Run(me));
        assert_eq!(pick_default(None, true, me), DefaultUser::Refused);
        assert!(DefaultUser::Refused.get().expect_err("refused").to_string().contains("Unable to set default user keepalived_script"));
    }

    fn audit_of(text: &str) -> Vec<String> {
        let l = crate::config::parse_str(text, Path::new("t.conf"), &crate::config::LoadOptions { config_id: None, interfaces: crate::config::check::InterfaceCheck::Skip });
        audit(&l.config).into_iter().map(|f| f.text).collect()
    }

    /// What is logged at load: keepalived's SECURITY VIOLATION without
    /// `enable_script_security`, the missing default user with it, and each script's refusal.
    #[test]
    fn audits_as_keepalived_reports() {
        let inst = |scripts: &str| format!("vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 1\n{scripts}\n virtual_ipaddress {{\n 198.18.0.1\n }}\n}}\n");
        assert!(audit_of(&inst("")).is_empty(), "no script, nothing to say");
        let a = audit_of(&inst(" notify_master /bin/true"));
        assert_eq!(a, ["SECURITY VIOLATION - scripts are being executed but script_security not enabled."], "{a:?}");
        if User::from_name(KEEPALIVED_SCRIPT).ok().flatten().is_none() {
            let a = audit_of(&format!("global_defs {{\n enable_script_security\n}}\n{}", inst(" notify_master /bin/true")));
            assert!(a.len() == 1 && a[0].starts_with("Unable to set default user keepalived_script"), "{a:?}");
        }
        let a = audit_of(&format!("global_defs {{\n enable_script_security\n script_user root\n}}\n{}", inst(" notify_master /bin/true\n notify /ka/no/such/script")));
        assert!(a.len() == 1 && a[0].starts_with("notify of VI_1: script /ka/no/such/script"), "{a:?}");
        let a = audit_of(&format!("global_defs {{\n script_user root\n}}\nvrrp_script chk {{\n script \"true\"\n}}\n{}", inst("")));
        assert!(a.len() == 2 && a[0].contains("vrrp_script chk: WARNING - script `true` resolved by path search"), "{a:?}");
    }

    /// A `vrrp_script` that cannot run leaves the configuration with its references (it would
    /// hold a weight-0 tracker's instance in INIT forever); one that can run stays.
    #[test]
    fn refused_vrrp_scripts_are_removed() {
        let text = "global_defs {\n script_user root\n}\nvrrp_script bad {\n script /ka/no/such/script\n}\nvrrp_script good {\n script /bin/true\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n track_script {\n bad\n good\n }\n virtual_ipaddress {\n 198.18.0.1\n }\n}\nvrrp_sync_group G {\n group {\n VI_1\n }\n track_script {\n bad\n }\n}\n";
        let mut cfg = crate::config::parse_str(text, Path::new("t.conf"), &crate::config::LoadOptions { config_id: None, interfaces: crate::config::check::InterfaceCheck::Skip }).config;
        let findings = apply(&mut cfg);
        assert!(findings.iter().any(|f| f.starts_with("vrrp_script bad: script /ka/no/such/script")), "{findings:?}");
        assert_eq!(cfg.vrrp_scripts.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["good"]);
        assert_eq!(cfg.vrrp_instances[0].track_scripts.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["good"]);
        assert!(cfg.sync_groups[0].track_scripts.is_empty());
    }

    #[test]
    fn paths_are_cleaned_lexically() {
        assert_eq!(clean(Path::new("/usr/./bin//../bin/true")), PathBuf::from("/usr/bin/true"));
        assert_eq!(clean(Path::new("/../etc/x")), PathBuf::from("/etc/x"));
        assert_eq!(clean(Path::new("bin/x")), PathBuf::from("/bin/x"));
    }

    /// On the real filesystem (as root): a root-owned script in a root-owned tree passes; the
    /// same in a world-writable directory, or world-writable itself, is refused with
    /// `enable_script_security` and runs with a warning without; a script nobody may execute
    /// is refused; bare names are found through `PATH` with keepalived's warning.
    #[test]
    fn checks_on_the_filesystem() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: needs root to own test files as root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("ka-sec-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).expect("dir");
        let chmod = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod");
        chmod(&dir, 0o755);
        chmod(&dir.join("sub"), 0o755);
        let script = dir.join("sub/s.sh");
        std::fs::write(&script, "#!/bin/sh\n").expect("write");
        chmod(&script, 0o755);
        let s = script.to_str().expect("utf8");
        let ok = check(s, ROOT, true).expect("root-owned 0755 script under /tmp (sticky) is safe");
        assert_eq!(ok, Checked { program: script.clone(), warnings: vec![], insecure: false });
        chmod(&dir.join("sub"), 0o777);
        let err = check(s, ROOT, true).expect_err("world-writable directory");
        assert!(err.to_string().contains("Unsafe permissions found for script") && err.to_string().contains("sub is writable"), "{err}");
        let warned = check(s, ROOT, false).expect("runs without enable_script_security");
        assert!(warned.insecure && warned.warnings[0].starts_with("Unsafe permissions found for script"), "{warned:?}");
        let nobody = user(65534, 65534);
        assert!(!check(s, nobody, true).expect("nobody needs no protection").insecure);
        chmod(&dir.join("sub"), 0o755);
        // A root-owned symlink in a writable directory could be replaced: refused.
        let link_dir = dir.join("links");
        std::fs::create_dir_all(&link_dir).expect("dir");
        chmod(&link_dir, 0o777);
        std::os::unix::fs::symlink(&script, link_dir.join("s")).expect("symlink");
        let err = check(link_dir.join("s").to_str().expect("utf8"), ROOT, true).expect_err("symlink in a writable directory");
        assert!(err.to_string().contains("links is writable"), "{err}");
        chmod(&script, 0o744);
        let err = check(s, nobody, true).expect_err("not executable for nobody");
        assert!(err.to_string().contains("is not executable for uid:gid 65534:65534 - disabling"), "{err}");
        assert!(check(dir.join("sub").to_str().expect("utf8"), ROOT, true).is_err(), "a directory is no script");
        let found = check("true", ROOT, true).expect("true is in PATH");
        assert!(found.program.ends_with("true") && found.warnings[0].contains("resolved by path search"), "{found:?}");
        assert!(matches!(check("ka-no-such-script", ROOT, true), Err(ScriptError::Missing { .. })));
        let _ = std::fs::remove_dir_all(dir);
    }
}
