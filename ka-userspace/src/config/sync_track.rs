//! Tracking weights of sync groups and their members, resolved as keepalived 2.2.7 does
//! (`vrrp_complete_instance` and `sync_group_tracking_init` in vrrp.c).
//!
//! - A sync group's `track_interface`, `track_script`, `track_file` and `track_process` are
//!   tracked by every member, with the group's weights, whether or not the group has
//!   `sync_group_tracking_weight` (measured with keepalived 2.2.7: a group `track_file` with
//!   `weight -5` moves both members' priorities). An unweighted one that fails puts every
//!   member, so the group, in FAULT. The merge itself is [`crate::engine::setup`]'s.
//! - `sync_group_tracking_weight` is about the members' *own* weighted trackers. Without it
//!   (and for an address owner, priority 255, anywhere), keepalived sets a weighted
//!   `track_interface` to 0 (the owner's is removed), removes a weighted `track_script`, sets a
//!   `track_file` of weight 1 (its default) to 0 and removes one of another weight; it leaves a
//!   weighted `track_process` as it is (keepalived.conf(5) asks for weight 0, 2.2.7 does not
//!   enforce it). `track_bfd` is [`super::parse::bfd::check`]'s.
//! - A sync group with an address owner among its members tracks its objects unweighted.
//! - An object tracked by an instance and its group is tracked once, with the group's weight
//!   unless the instance's reference is unweighted (keepalived warns; so does ka).
//! - The group's references must name defined objects, as the instances' must.

use std::collections::{HashMap, HashSet};

use super::{
    check::InterfaceCheck,
    diag::Diagnostics,
    model::{Config, SyncGroup, TrackRef, VrrpInstance},
};

/// keepalived's `VRRP_PRIO_OWNER`.
const OWNER: u8 = 255;

/// The weights tracked objects give themselves (a reference without `weight` takes its
/// object's), by name: the first definition of a name wins.
#[derive(Debug, Default)]
struct Own {
    scripts: HashMap<String, i64>,
    files: HashMap<String, i64>,
    processes: HashMap<String, i64>,
}

impl Own {
    fn of(cfg: &Config) -> Own {
        let mut own = Own::default();
        for s in &cfg.vrrp_scripts {
            own.scripts.entry(s.name.clone()).or_insert(i64::from(s.weight));
        }
        for f in &cfg.track_files {
            own.files.entry(f.name.clone()).or_insert(f.weight);
        }
        for p in &cfg.track_processes {
            own.processes.entry(p.name.clone()).or_insert(i64::from(p.weight));
        }
        own
    }
}

/// The weight a reference resolves to.
fn resolved(r: &TrackRef, own: &HashMap<String, i64>) -> i64 {
    r.weight.unwrap_or_else(|| own.get(&r.name).copied().unwrap_or(0))
}

/// Why an instance's weighted trackers are not applied, if they are not.
fn why_unweighted(vi: &VrrpInstance, no_weight_groups: &HashSet<&str>) -> Option<String> {
    match &vi.sync_group {
        Some(g) if no_weight_groups.contains(g.as_str()) => {
            Some(format!("the instance is in sync group {g} without sync_group_tracking_weight"))
        }
        _ if vi.priority == OWNER => Some("the instance is the address owner (priority 255)".to_owned()),
        _ => None,
    }
}

/// Resolves the tracking of sync groups and their members (see the module doc), with a warning
/// at each reference it changes. Runs once members know their group (`vi.sync_group`).
pub fn check(cfg: &mut Config, ifaces: &InterfaceCheck, d: &mut Diagnostics) {
    let own = Own::of(cfg);
    group_references(cfg, ifaces, d);
    members(cfg, &own, d);
    groups_with_an_owner(cfg, &own, d);
    tracked_twice(cfg, &own, d);
}

/// keepalived's "(G) track script X not found, ignoring..." for a group's references.
fn group_references(cfg: &mut Config, ifaces: &InterfaceCheck, d: &mut Diagnostics) {
    let scripts: HashSet<String> = cfg.vrrp_scripts.iter().map(|s| s.name.clone()).collect();
    let files: HashSet<String> = cfg.track_files.iter().map(|f| f.name.clone()).collect();
    let procs: HashSet<String> = cfg.track_processes.iter().map(|p| p.name.clone()).collect();
    for g in &mut cfg.sync_groups {
        // Undefined, later-defined and removed names were reported (and dropped) while reading
        // (`parse::track`); what is left here is defined.
        g.track_scripts.retain(|r| scripts.contains(&r.name));
        g.track_files.retain(|r| files.contains(&r.name));
        g.track_processes.retain(|r| procs.contains(&r.name));
        // As for an instance's track_interface: a warning, the interface tracked (down until it
        // exists).
        for t in &g.track_interfaces {
            if !ifaces.exists(&t.name) {
                d.warning(Some(t.span), format!("({}) tracked interface {} doesn't exist", g.name, t.name));
            }
        }
    }
}

/// keepalived's `vrrp_complete_instance`: the weighted trackers of a member of a sync group
/// without `sync_group_tracking_weight`, or of an address owner.
fn members(cfg: &mut Config, own: &Own, d: &mut Diagnostics) {
    let no_weight_groups: HashSet<String> =
        cfg.sync_groups.iter().filter(|g| !g.sync_group_tracking_weight).map(|g| g.name.clone()).collect();
    let no_weight_groups: HashSet<&str> = no_weight_groups.iter().map(String::as_str).collect();
    for vi in &mut cfg.vrrp_instances {
        let Some(why) = why_unweighted(vi, &no_weight_groups) else { continue };
        let in_sync = vi.sync_group.as_ref().is_some_and(|g| no_weight_groups.contains(g.as_str()));
        let n = vi.name.clone();
        vi.track_interfaces.retain_mut(|t| {
            if t.weight == 0 {
                return true;
            }
            if in_sync {
                d.warning(Some(t.span), format!("({n}) tracking weight of {} is ignored (set to 0): {why}; keepalived 2.2 does the same", t.name));
                t.weight = 0;
                true
            } else {
                d.warning(Some(t.span), format!("({n}) tracked interface {} with weight {} ignored: {why}; keepalived 2.2 does the same", t.name, t.weight));
                false
            }
        });
        vi.track_scripts.retain(|r| {
            let w = resolved(r, &own.scripts);
            if w != 0 {
                d.warning(Some(r.span), format!("({n}) tracked script {} with weight {w} ignored: {why}; keepalived 2.2 does the same", r.name));
            }
            w == 0
        });
        vi.track_files.retain_mut(|r| match resolved(r, &own.files) {
            0 => true,
            1 => {
                d.warning(
                    Some(r.span),
                    format!("({n}) weight 1 of tracked file {} ignored (set to 0: a non-zero value means FAULT; specify weight 0): {why}; keepalived 2.2 does the same", r.name),
                );
                r.weight = Some(0);
                true
            }
            w => {
                d.warning(Some(r.span), format!("({n}) tracked file {} with weight {w} ignored: {why}; keepalived 2.2 does the same", r.name));
                false
            }
        });
        if in_sync {
            for r in &vi.track_processes {
                let w = resolved(r, &own.processes);
                if w != 0 {
                    d.warning(
                        Some(r.span),
                        format!("({n}) tracked process {} keeps its weight {w} although {why}: keepalived.conf(5) asks for weight 0, keepalived 2.2.7 applies the weight and so does ka", r.name),
                    );
                }
            }
        }
    }
}

/// keepalived's `sync_group_tracking_init`: "Cannot have weighted track ... with member having
/// priority 255 - clearing weight".
fn groups_with_an_owner(cfg: &mut Config, own: &Own, d: &mut Diagnostics) {
    let owners: HashSet<String> = cfg.vrrp_instances.iter().filter(|v| v.priority == OWNER).map(|v| v.name.clone()).collect();
    for g in &mut cfg.sync_groups {
        if !g.members.iter().any(|(m, _)| owners.contains(m)) {
            continue;
        }
        let name = g.name.clone();
        let mut zero = |kind: &str, what: &str, w: i64, span| {
            d.warning(Some(span), format!("({name}) track {kind} {what} weight {w} set to 0: a member has priority 255; keepalived 2.2 does the same"));
        };
        for t in g.track_interfaces.iter_mut().filter(|t| t.weight != 0) {
            zero("interface", &t.name, i64::from(t.weight), t.span);
            t.weight = 0;
        }
        for (refs, kind, own) in [
            (&mut g.track_scripts, "script", &own.scripts),
            (&mut g.track_files, "file", &own.files),
            (&mut g.track_processes, "process", &own.processes),
        ] {
            for r in refs.iter_mut() {
                let w = resolved(r, own);
                if w != 0 {
                    zero(kind, &r.name, w, r.span);
                    r.weight = Some(0);
                }
            }
        }
    }
}

/// keepalived's "(VI) track_interface X is configured on VRRP instance and sync group" (and
/// the same for scripts, files and processes): tracked once, with the group's weight unless
/// the instance's reference is unweighted. An instance tracks its own `interface` unweighted
/// unless `dont_track_primary`.
fn tracked_twice(cfg: &Config, own: &Own, d: &mut Diagnostics) {
    let groups: HashMap<&str, &SyncGroup> = cfg.sync_groups.iter().map(|g| (g.name.as_str(), g)).collect();
    for vi in &cfg.vrrp_instances {
        let Some(g) = vi.sync_group.as_deref().and_then(|g| groups.get(g)) else { continue };
        let n = &vi.name;
        let outcome = |mine: i64| if mine == 0 { "the instance's unweighted tracking is used" } else { "the group's weight is used" };
        for t in &g.track_interfaces {
            let mine = match vi.track_interfaces.iter().find(|m| m.name == t.name) {
                Some(m) => Some(i64::from(m.weight)),
                None if !vi.dont_track_primary && vi.interface.as_deref() == Some(t.name.as_str()) => Some(0),
                None => None,
            };
            if let Some(mine) = mine {
                d.warning(
                    Some(t.span),
                    format!("({n}) track_interface {} is configured on the instance and on sync group {}: {}; keepalived 2.2 does the same", t.name, g.name, outcome(mine)),
                );
            }
        }
        for (group_refs, mine, kind, own) in [
            (&g.track_scripts, &vi.track_scripts, "track_script", &own.scripts),
            (&g.track_files, &vi.track_files, "track_file", &own.files),
            (&g.track_processes, &vi.track_processes, "track_process", &own.processes),
        ] {
            for r in group_refs {
                if let Some(m) = mine.iter().find(|m| m.name == r.name) {
                    d.warning(
                        Some(r.span),
                        format!("({n}) {kind} {} is configured on the instance and on sync group {}: {}; keepalived 2.2 does the same", r.name, g.name, outcome(resolved(m, own))),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{model::Config, parse_str, InterfaceCheck, LoadOptions, Severity};

    const DEFS: &str = concat!(
        "vrrp_script s0 {\n script /bin/true\n}\n",
        "vrrp_script s9 {\n script /bin/true\n weight -9\n}\n",
        "track_file f1 {\n file /tmp/ka-f1\n}\n",
        "track_file f5 {\n file /tmp/ka-f5\n weight 5\n}\n",
        "vrrp_track_process p0 {\n process ka-p0\n weight 0\n}\n",
        "vrrp_track_process p7 {\n process ka-p7\n weight -7\n}\n",
    );

    /// `vrrp_instance NAME` on eth0 with `body` inside.
    fn vi(name: &str, vrid: u8, body: &str) -> String {
        format!("vrrp_instance {name} {{\n interface eth0\n virtual_router_id {vrid}\n{body}\n virtual_ipaddress {{\n 198.18.0.{vrid}\n }}\n}}\n")
    }

    fn load(text: &str) -> (Config, Vec<(u32, Severity, String)>) {
        let opts = LoadOptions { config_id: Some("ka-test".into()), interfaces: InterfaceCheck::Known(["eth0", "eth1"].iter().map(|s| s.to_string()).collect()) };
        let l = parse_str(text, Path::new("t.conf"), &opts);
        let diags = l.diagnostics.iter().map(|d| (d.span.map_or(0, |s| s.line), d.severity, d.message.clone())).collect();
        (l.config, diags)
    }

    fn line_of(text: &str, needle: &str) -> u32 {
        let at = text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in the text"));
        u32::try_from(text[..at].matches('\n').count() + 1).expect("line")
    }

    type Model = fn(&Config) -> bool;

    /// keepalived 2.2.7's resolution, case by case: the warning (at the line of `at`, `None`:
    /// no warning containing `msg` at all) and what the model holds after.
    #[test]
    fn resolution_follows_keepalived() {
        let sg = |body: &str| format!("vrrp_sync_group G {{\n group {{\n VI_1\n VI_2\n }}\n{body}\n}}\n");
        let two = |one: &str, group: &str| format!("{DEFS}{}{}{}", vi("VI_1", 1, one), vi("VI_2", 2, ""), sg(group));
        let cases: Vec<(&str, String, Option<&str>, &str, Model)> = vec![
            (
                "group weights stay without sync_group_tracking_weight",
                two("", " track_script {\n s9\n }\n track_file {\n f5 weight -3\n }\n track_process {\n p7\n }\n track_interface {\n eth1 weight 4\n }"),
                None,
                "set to 0",
                |c| {
                    let g = &c.sync_groups[0];
                    g.track_scripts.len() == 1 && g.track_files[0].weight == Some(-3) && g.track_processes[0].weight.is_none() && g.track_interfaces[0].weight == 4
                },
            ),
            (
                "a member's weighted script is removed",
                two(" track_script {\n s9\n s0\n }", ""),
                Some(" s9\n s0"),
                "tracked script s9 with weight -9 ignored: the instance is in sync group G without sync_group_tracking_weight",
                |c| c.vrrp_instances[0].track_scripts.iter().map(|r| r.name.as_str()).collect::<Vec<_>>() == ["s0"],
            ),
            (
                "a member's script made weighted by its reference is removed",
                two(" track_script {\n s0 weight 2\n }", ""),
                Some(" s0 weight 2"),
                "tracked script s0 with weight 2 ignored",
                |c| c.vrrp_instances[0].track_scripts.is_empty(),
            ),
            (
                "a member's track_file of weight 1 is made unweighted",
                two(" track_file {\n f1\n }", ""),
                Some(" f1\n"),
                "weight 1 of tracked file f1 ignored (set to 0",
                |c| c.vrrp_instances[0].track_files[0].weight == Some(0),
            ),
            (
                "a member's track_file of another weight is removed",
                two(" track_file {\n f5\n f1 weight 0\n }", ""),
                Some(" f5\n"),
                "tracked file f5 with weight 5 ignored",
                |c| c.vrrp_instances[0].track_files.iter().map(|r| (r.name.as_str(), r.weight)).collect::<Vec<_>>() == [("f1", Some(0))],
            ),
            (
                "a member's weighted interface is made unweighted",
                two(" track_interface {\n eth1 weight 10\n }", ""),
                Some(" eth1 weight 10"),
                "tracking weight of eth1 is ignored (set to 0)",
                |c| c.vrrp_instances[0].track_interfaces[0].weight == 0,
            ),
            (
                "a member's weighted process keeps its weight",
                two(" track_process {\n p7\n }", ""),
                Some(" p7\n"),
                "tracked process p7 keeps its weight -7",
                |c| c.vrrp_instances[0].track_processes.len() == 1 && c.vrrp_instances[0].track_processes[0].weight.is_none(),
            ),
            (
                "with sync_group_tracking_weight a member keeps its weights",
                two(" track_script {\n s9\n }\n track_file {\n f5\n }\n track_interface {\n eth1 weight 10\n }", " sync_group_tracking_weight"),
                None,
                "ignored",
                |c| {
                    let v = &c.vrrp_instances[0];
                    v.track_scripts.len() == 1 && v.track_files.len() == 1 && v.track_interfaces[0].weight == 10
                },
            ),
            (
                "global_tracking is sync_group_tracking_weight",
                two(" track_script {\n s9\n }", " global_tracking"),
                None,
                "tracked script s9",
                |c| c.vrrp_instances[0].track_scripts.len() == 1,
            ),
            (
                "an address owner outside any group: weighted interface removed",
                // (Another interface than the instance's own eth0, which is tracked anyway and so
                // dropped from the list.)
                format!("{DEFS}{}", vi("VI_1", 1, " priority 255\n track_interface {\n eth1 weight 10\n lo\n }")),
                Some(" eth1 weight 10"),
                "tracked interface eth1 with weight 10 ignored: the instance is the address owner (priority 255)",
                |c| c.vrrp_instances[0].track_interfaces.iter().map(|t| t.name.as_str()).collect::<Vec<_>>() == ["lo"],
            ),
            (
                "an address owner: weighted script removed",
                format!("{DEFS}{}", vi("VI_1", 1, " priority 255\n track_script {\n s9\n }")),
                Some(" s9\n"),
                "tracked script s9 with weight -9 ignored: the instance is the address owner",
                |c| c.vrrp_instances[0].track_scripts.is_empty(),
            ),
            (
                "a group with an address owner tracks its objects unweighted",
                format!("{DEFS}{}{}{}", vi("VI_1", 1, " priority 255"), vi("VI_2", 2, ""), sg(" track_file {\n f5\n }\n track_interface {\n eth1 weight 3\n }")),
                Some(" f5\n"),
                "(G) track file f5 weight 5 set to 0: a member has priority 255",
                |c| c.sync_groups[0].track_files[0].weight == Some(0) && c.sync_groups[0].track_interfaces[0].weight == 0,
            ),
            (
                "a group's undefined script is ignored",
                two("", " track_script {\n nope\n s0\n }"),
                Some(" nope\n"),
                "(G) track script nope is not defined; ignored",
                |c| c.sync_groups[0].track_scripts.iter().map(|r| r.name.as_str()).collect::<Vec<_>>() == ["s0"],
            ),
            (
                "a group's undefined file and process are ignored",
                two("", " track_file {\n nofile\n }\n track_process {\n noproc\n }"),
                Some(" nofile\n"),
                "(G) track file nofile is not defined; ignored",
                |c| c.sync_groups[0].track_files.is_empty() && c.sync_groups[0].track_processes.is_empty(),
            ),
            (
                "a group's missing interface is reported",
                two("", " track_interface {\n eth7\n }"),
                Some(" eth7\n"),
                "(G) tracked interface eth7 doesn't exist",
                |c| c.sync_groups[0].track_interfaces.len() == 1,
            ),
            (
                "the primary interface tracked by the group too",
                two("", " track_interface {\n eth0 weight -4\n }"),
                Some(" eth0 weight -4"),
                "(VI_1) track_interface eth0 is configured on the instance and on sync group G: the instance's unweighted tracking is used",
                |c| c.sync_groups[0].track_interfaces[0].weight == -4,
            ),
            (
                "dont_track_primary: the group's tracking alone",
                format!("{DEFS}{}{}", vi("VI_1", 1, " dont_track_primary"), "vrrp_sync_group G {\n group {\n VI_1\n }\n track_interface {\n eth0 weight -4\n }\n}\n"),
                None,
                "configured on the instance and on sync group",
                |c| c.sync_groups[0].track_interfaces[0].weight == -4,
            ),
            (
                "a script tracked by a member and its group",
                two(" track_script {\n s0\n }", " track_script {\n s0 weight 6\n }"),
                Some(" s0 weight 6"),
                "(VI_1) track_script s0 is configured on the instance and on sync group G: the instance's unweighted tracking is used",
                |c| c.vrrp_instances[0].track_scripts.len() == 1,
            ),
        ];
        let mut failures = Vec::new();
        for (what, text, at, msg, model) in &cases {
            let (cfg, diags) = load(text);
            if let Some(e) = diags.iter().find(|(_, s, _)| *s == Severity::Error) {
                failures.push(format!("{what}: unexpected error {e:?}"));
            }
            let hits: Vec<u32> = diags.iter().filter(|(_, s, m)| *s == Severity::Warning && m.contains(msg)).map(|(l, _, _)| *l).collect();
            match at {
                Some(at) if !hits.contains(&line_of(text, at)) => {
                    failures.push(format!("{what}: no warning {msg:?} at line {}; got {diags:?}", line_of(text, at)));
                }
                None if !hits.is_empty() => failures.push(format!("{what}: unexpected warning {msg:?}: {diags:?}")),
                _ => {}
            }
            if !model(&cfg) {
                failures.push(format!("{what}: model {:?} / {:?}", cfg.vrrp_instances.first(), cfg.sync_groups.first()));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
