//! `keepalived -t`: ka's configuration check with keepalived 2.2.7's exit codes.
//!
//! keepalived keeps the worst class of problem it reported and exits with:
//! - 0: no problem;
//! - 4 (`KEEPALIVED_CHK_EXIT_CONFIG`): the configuration cannot be run (file missing, fatal);
//! - 5 (`KEEPALIVED_CHK_EXIT_CONFIG_TEST`): errors and warnings it would run around;
//! - 6 (`KEEPALIVED_CHK_EXIT_CONFIG_TEST_SECURITY`): scripts configured to run as root without
//!   `enable_script_security`.
//!
//! (keepalived(8) documents these as 3, 4 and 5; the binary exits with 4, 5 and 6, which is
//! what tools see.) One deliberate difference: keepalived 2.2.7 exits 0 when the file does not
//! exist at all (it reports "Config files missing" without recording an error); ka exits 4.

use std::path::Path;

use crate::config::{model::CheckerKind, Config, Severity};

/// keepalived's config-test exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestExit {
    /// 0.
    Ok = 0,
    /// 4: cannot be run.
    CannotRun = 4,
    /// 5: errors or warnings.
    Errors = 5,
    /// 6: script security.
    Security = 6,
}

/// Whether `config` runs scripts as root without `enable_script_security` (keepalived's
/// "SECURITY VIOLATION"): a `vrrp_script`, a notify script, a `MISC_CHECK`, a real server's or
/// virtual server's notify script.
pub fn security_violation(config: &Config) -> bool {
    let g = &config.global;
    if g.enable_script_security {
        return false;
    }
    if g.script_user.as_ref().is_some_and(|(u, _)| u != "root") {
        return false;
    }
    let notify = |n: &crate::config::model::Notify| n.master.is_some() || n.backup.is_some() || n.fault.is_some() || n.stop.is_some() || n.any.is_some();
    config.vrrp_scripts.iter().any(|s| s.script.is_some())
        || config.vrrp_instances.iter().any(|i| notify(&i.notify))
        || config.sync_groups.iter().any(|s| notify(&s.notify))
        || config.virtual_servers.iter().any(|vs| {
            vs.quorum_up.is_some()
                || vs.quorum_down.is_some()
                || vs.real_servers.iter().any(|rs| {
                    rs.notify_up.is_some() || rs.notify_down.is_some() || rs.checkers.iter().any(|c| matches!(c.kind, CheckerKind::Misc { .. }))
                })
        })
}

/// What keepalived 2.2.7 reports in `-t` about a configuration ka accepts silently (each
/// makes keepalived exit 5): a virtual server without `lb_algo` ("no scheduler set").
pub fn keepalived_only_warnings(config: &Config) -> Vec<String> {
    config
        .virtual_servers
        .iter()
        .filter(|vs| vs.lb_algo_span.is_none())
        .map(|vs| {
            let name = match &vs.key {
                crate::config::model::VsKey::Addr { addr, port } => format!("[{addr}]:{}:{port}", vs.protocol.as_str().to_ascii_lowercase()),
                crate::config::model::VsKey::Fwmark(m) => format!("FWM {m}"),
                crate::config::model::VsKey::Group(g) => format!("[{g}]"),
            };
            format!("Virtual server {name}: no scheduler set, setting default 'wlc'")
        })
        .collect()
}

/// The exit code for a configuration with `errors` and `warnings` (ka's diagnostics) and the
/// script-security finding: the worst class wins, security above all as in keepalived.
pub fn exit_code(errors: usize, warnings: usize, security: bool) -> TestExit {
    if security {
        TestExit::Security
    } else if errors + warnings > 0 {
        TestExit::Errors
    } else {
        TestExit::Ok
    }
}

/// Runs the test: diagnostics to `out` (stderr, or the `-t LOG_FILE`), the exit code back.
pub fn run(file: &Path, config_id: Option<String>, out: &mut dyn std::io::Write) -> TestExit {
    let opts = crate::config::LoadOptions { config_id, ..Default::default() };
    let loaded = match crate::config::load(file, &opts) {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(out, "Unable to read configuration file {}: {e}", file.display());
            return TestExit::CannotRun;
        }
    };
    let mut errors = 0;
    let mut warnings = 0;
    for d in &loaded.diagnostics {
        match d.severity {
            Severity::Error => errors += 1,
            Severity::Warning => warnings += 1,
        }
        let _ = writeln!(out, "{}", d.render(&loaded.sources, file));
    }
    for w in keepalived_only_warnings(&loaded.config) {
        warnings += 1;
        let _ = writeln!(out, "{w}");
    }
    let security = security_violation(&loaded.config);
    if security {
        let _ = writeln!(out, "SECURITY VIOLATION - scripts are being executed but script_security not enabled.");
    }
    exit_code(errors, warnings, security)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        crate::config::parse_str(text, Path::new("/t/keepalived.conf"), &Default::default()).config
    }

    #[test]
    fn scheduler_missing_is_keepalived_s_warning() {
        let vs = |algo: &str| parse(&format!("virtual_server 198.18.0.1 80 {{\n protocol TCP\n{algo} real_server 198.18.1.1 80 {{\n }}\n}}\n"));
        assert_eq!(keepalived_only_warnings(&vs("")), ["Virtual server [198.18.0.1]:tcp:80: no scheduler set, setting default 'wlc'"]);
        assert!(keepalived_only_warnings(&vs(" lb_algo wlc\n")).is_empty());
    }

    #[test]
    fn exit_codes_rank_as_keepalived() {
        assert_eq!(exit_code(0, 0, false), TestExit::Ok);
        assert_eq!(exit_code(0, 1, false), TestExit::Errors);
        assert_eq!(exit_code(2, 0, false), TestExit::Errors);
        assert_eq!(exit_code(2, 1, true), TestExit::Security);
        assert_eq!(TestExit::CannotRun as i32, 4);
    }

    /// Scripts that run as root need `enable_script_security`; a non-root `script_user` or the
    /// keyword itself clears the finding.
    #[test]
    fn script_security_as_keepalived() {
        let inst = |extra: &str| format!("vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 1\n{extra}\n virtual_ipaddress {{\n  198.18.0.1\n }}\n}}\n");
        let cases = [
            (inst(""), false),
            (inst(" notify_master /bin/true"), true),
            (format!("global_defs {{\n enable_script_security\n}}\n{}", inst(" notify_master /bin/true")), false),
            (format!("global_defs {{\n script_user nobody\n}}\n{}", inst(" notify /bin/true")), false),
            (format!("vrrp_script chk {{\n script /bin/true\n}}\n{}", inst("")), true),
            ("virtual_server 198.18.0.1 80 {\n protocol TCP\n real_server 198.18.1.1 80 {\n  MISC_CHECK {\n   misc_path /bin/true\n  }\n }\n}\n".to_owned(), true),
            ("virtual_server 198.18.0.1 80 {\n protocol TCP\n real_server 198.18.1.1 80 {\n  TCP_CHECK {\n  }\n }\n}\n".to_owned(), false),
        ];
        for (text, want) in cases {
            assert_eq!(security_violation(&parse(&text)), want, "{text}");
        }
    }
}
