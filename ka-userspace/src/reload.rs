//! Live reload, sans-IO: what changes between the running configuration and a new one, with
//! keepalived 2.2's semantics. The runtime ([`crate::engine`], [`crate::health`],
//! [`crate::dataplane`]) applies the plan, driven by [`apply`]; the plan itself is pure.
//!
//! - **VRRP instances** are matched by VRID, family, interface and unicast/multicast (not by
//!   name): a matched instance keeps its state machine, its timers and its tracker results;
//!   its VIPs, routes and rules are diffed. Unmatched new instances start fresh; unmatched old
//!   ones are deleted (a MASTER resigns with priority 0 and notifies DELETED or FAULT).
//! - **Virtual servers** are matched by address/port/protocol (or fwmark, or group), their
//!   **real servers** by address and port. Unchanged ones keep their checker state (a failed
//!   checker stays failed); weight, scheduler and persistence changes are applied in place; a
//!   real server whose checkers changed, and every new one, starts as its checkers' `alpha`
//!   says.

use std::{
    collections::HashMap,
    fmt::{self, Debug, Write as _},
    net::IpAddr,
};

use ka_common::vrrp::Family;
use serde::{Deserialize, Serialize};

use crate::{
    config::{
        model::{Protocol, RealServer, VirtualServer, VsKey},
        Config,
    },
    engine::setup::{self, InstanceSetup, VipSetup},
};

/// Errors of [`plan`]: the new configuration cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// A VRRP instance of the new configuration cannot be run.
    #[error(transparent)]
    Setup(#[from] setup::SetupError),
}

/// What identifies a VRRP instance across a reload (keepalived 2.2: VRID, family, interface,
/// and whether it is unicast).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InstanceKey {
    /// VRID.
    pub vrid: u8,
    /// Address family.
    pub family: Family,
    /// `interface`.
    pub iface: String,
    /// Has `unicast_peer`s.
    pub unicast: bool,
}

impl InstanceKey {
    /// The key of an instance.
    pub fn of(s: &InstanceSetup) -> InstanceKey {
        InstanceKey { vrid: s.params.vrid, family: s.params.family, iface: s.iface.clone(), unicast: !s.peers.is_empty() }
    }
}

/// A matched instance: it keeps its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptInstance {
    /// Index in the running configuration.
    pub old: usize,
    /// Index in the new configuration.
    pub new: usize,
    /// Name in the new configuration.
    pub name: String,
    /// Name in the running configuration (differs when renamed).
    pub old_name: String,
    /// Virtual addresses (excluded ones included) to add.
    pub vips_added: Vec<VipSetup>,
    /// Virtual addresses to remove.
    pub vips_removed: Vec<VipSetup>,
    /// `virtual_routes` or `virtual_rules` changed.
    pub routes_changed: bool,
    /// Other settings changed (priority, advert_int, notify scripts, tracking...).
    pub settings_changed: bool,
}

impl KeptInstance {
    /// Nothing at all changed.
    pub fn unchanged(&self) -> bool {
        self.vips_added.is_empty() && self.vips_removed.is_empty() && !self.routes_changed && !self.settings_changed && self.name == self.old_name
    }
}

/// The VRRP instances' part of a reload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstancePlan {
    /// Matched instances, in new-configuration order.
    pub kept: Vec<KeptInstance>,
    /// New instances (index in the new configuration, name).
    pub added: Vec<(usize, String)>,
    /// Deleted instances (index in the running configuration, name).
    pub removed: Vec<(usize, String)>,
}

impl InstancePlan {
    /// For each instance of the new configuration, the running instance it continues.
    pub fn old_of_new(&self, new_len: usize) -> Vec<Option<usize>> {
        let mut out = vec![None; new_len];
        for k in &self.kept {
            if let Some(slot) = out.get_mut(k.new) {
                *slot = Some(k.old);
            }
        }
        out
    }
}

/// Matches the instances of two configurations and diffs the matched ones.
pub fn plan_instances(old: &[InstanceSetup], new: &[InstanceSetup]) -> InstancePlan {
    let mut by_key: HashMap<InstanceKey, Vec<usize>> = HashMap::new();
    for (i, s) in old.iter().enumerate().rev() {
        by_key.entry(InstanceKey::of(s)).or_default().push(i);
    }
    let mut plan = InstancePlan::default();
    let mut matched = vec![false; old.len()];
    for (n, s) in new.iter().enumerate() {
        let Some(o) = by_key.get_mut(&InstanceKey::of(s)).and_then(Vec::pop) else {
            plan.added.push((n, s.name.clone()));
            continue;
        };
        matched[o] = true;
        let before = &old[o];
        let old_vips: Vec<&VipSetup> = before.vips.iter().chain(&before.excluded).collect();
        let new_vips: Vec<&VipSetup> = s.vips.iter().chain(&s.excluded).collect();
        let vips_added = new_vips.iter().filter(|v| !old_vips.contains(v)).map(|v| (*v).clone()).collect();
        let vips_removed = old_vips.iter().filter(|v| !new_vips.contains(v)).map(|v| (*v).clone()).collect();
        let routes_changed = before.routes != s.routes || before.rules != s.rules;
        plan.kept.push(KeptInstance {
            old: o,
            new: n,
            name: s.name.clone(),
            old_name: before.name.clone(),
            vips_added,
            vips_removed,
            routes_changed,
            settings_changed: settings(before) != settings(s),
        });
    }
    plan.removed = old.iter().enumerate().filter(|(i, _)| !matched[*i]).map(|(i, s)| (i, s.name.clone())).collect();
    plan
}

/// An instance's settings besides its name, addresses, routes and rules.
fn settings(s: &InstanceSetup) -> String {
    let mut s = s.clone();
    s.name.clear();
    s.vips.clear();
    s.excluded.clear();
    s.routes.clear();
    s.rules.clear();
    format!("{s:?}")
}

/// A real server across a reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RealServerChange {
    /// New: starts as its checkers' `alpha` says.
    Added {
        /// Index in the new virtual server.
        new: usize,
        /// `ADDR:PORT`.
        who: String,
    },
    /// Gone: leaves the tables; its flows are rescheduled.
    Removed {
        /// Index in the running virtual server.
        old: usize,
        /// `ADDR:PORT`.
        who: String,
    },
    /// Still there.
    Kept {
        /// Index in the running virtual server.
        old: usize,
        /// Index in the new virtual server.
        new: usize,
        /// `ADDR:PORT`.
        who: String,
        /// Weight before and after, when it changed.
        weight: Option<(i32, i32)>,
        /// Its checkers changed: they start afresh (per `alpha`) instead of keeping state.
        checkers_changed: bool,
        /// Other settings changed (notify scripts, forwarding method...).
        other_changed: bool,
    },
}

/// A virtual server across a reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceChange {
    /// New.
    Added {
        /// Index in the new configuration.
        new: usize,
        /// Display name.
        name: String,
    },
    /// Gone.
    Removed {
        /// Index in the running configuration.
        old: usize,
        /// Display name.
        name: String,
    },
    /// Still there.
    Kept {
        /// Index in the running configuration.
        old: usize,
        /// Index in the new configuration.
        new: usize,
        /// Display name.
        name: String,
        /// Settings changed in place (`lb_algo`, `persistence_timeout`...).
        changed: Vec<&'static str>,
        /// Its real servers, in new-configuration order, then the removed ones.
        real_servers: Vec<RealServerChange>,
        /// The sorry server changed.
        sorry_changed: bool,
    },
}

impl ServiceChange {
    /// Nothing changed.
    pub fn unchanged(&self) -> bool {
        match self {
            ServiceChange::Kept { changed, real_servers, sorry_changed, .. } => {
                changed.is_empty()
                    && !sorry_changed
                    && real_servers.iter().all(|r| {
                        matches!(r, RealServerChange::Kept { weight: None, checkers_changed: false, other_changed: false, .. })
                    })
            }
            _ => false,
        }
    }
}

fn service_label(vs: &VirtualServer) -> String {
    format!("{} {}", crate::health::service_name(&vs.key), vs.protocol.as_str())
}

fn rs_label(rs: &RealServer) -> String {
    crate::health::state::sock(rs.address, rs.port)
}

/// `Debug` text with every source position (`Span { .. }`) blanked: two items that differ only
/// in where they sit in the file compare equal.
pub fn fingerprint<T: Debug>(v: &T) -> String {
    let text = format!("{v:?}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("Span {") {
        out.push_str(&rest[..at]);
        out.push_str("Span");
        rest = &rest[at..];
        match rest.find('}') {
            Some(end) => rest = &rest[end + 1..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

/// Equal but for source positions.
fn same<T: Debug + PartialEq>(a: &T, b: &T) -> bool {
    a == b || fingerprint(a) == fingerprint(b)
}

/// Diffs the virtual servers of two configurations.
pub fn plan_services(old: &Config, new: &Config) -> Vec<ServiceChange> {
    let key = |vs: &VirtualServer| (vs.key.clone(), if matches!(vs.key, VsKey::Fwmark(_)) { None } else { Some(vs.protocol) });
    let mut by_key: HashMap<(VsKey, Option<Protocol>), usize> = HashMap::new();
    for (i, vs) in old.virtual_servers.iter().enumerate() {
        by_key.entry(key(vs)).or_insert(i);
    }
    let mut matched = vec![false; old.virtual_servers.len()];
    let mut out = Vec::new();
    for (n, vs) in new.virtual_servers.iter().enumerate() {
        let Some(o) = by_key.remove(&key(vs)) else {
            out.push(ServiceChange::Added { new: n, name: service_label(vs) });
            continue;
        };
        matched[o] = true;
        let before = &old.virtual_servers[o];
        let mut changed = Vec::new();
        if before.lb_algo != vs.lb_algo {
            changed.push("lb_algo");
        }
        if before.lb_kind != vs.lb_kind {
            changed.push("lb_kind");
        }
        if before.persistence_timeout != vs.persistence_timeout || before.persistence_granularity != vs.persistence_granularity {
            changed.push("persistence");
        }
        if before.quorum != vs.quorum || before.hysteresis != vs.hysteresis || !same(&before.quorum_up, &vs.quorum_up) || !same(&before.quorum_down, &vs.quorum_down) {
            changed.push("quorum");
        }
        if before.ha_suspend != vs.ha_suspend || before.omega != vs.omega || before.virtualhost != vs.virtualhost || before.ops != vs.ops {
            changed.push("options");
        }
        if let VsKey::Group(g) = &vs.key {
            let group = |c: &Config| c.virtual_server_groups.iter().find(|x| x.name == *g).map(|x| fingerprint(&x.entries));
            if group(old) != group(new) {
                changed.push("virtual_server_group");
            }
        }
        let sorry_changed = !same(&before.sorry_server, &vs.sorry_server) || before.sorry_server_inhibit != vs.sorry_server_inhibit;
        out.push(ServiceChange::Kept { old: o, new: n, name: service_label(vs), changed, real_servers: plan_real_servers(before, vs), sorry_changed });
    }
    for (o, vs) in old.virtual_servers.iter().enumerate() {
        if !matched[o] {
            out.push(ServiceChange::Removed { old: o, name: service_label(vs) });
        }
    }
    out
}

fn plan_real_servers(old: &VirtualServer, new: &VirtualServer) -> Vec<RealServerChange> {
    let mut by_key: HashMap<(IpAddr, u16), usize> = HashMap::new();
    for (i, rs) in old.real_servers.iter().enumerate() {
        by_key.entry((rs.address, rs.port)).or_insert(i);
    }
    let mut matched = vec![false; old.real_servers.len()];
    let mut out = Vec::new();
    for (n, rs) in new.real_servers.iter().enumerate() {
        let Some(o) = by_key.remove(&(rs.address, rs.port)) else {
            out.push(RealServerChange::Added { new: n, who: rs_label(rs) });
            continue;
        };
        matched[o] = true;
        let before = &old.real_servers[o];
        let checkers_changed = !same(&before.checkers, &rs.checkers) || before.timing.inhibit_on_failure != rs.timing.inhibit_on_failure;
        let other_changed = before.lb_kind != rs.lb_kind
            || !same(&before.notify_up, &rs.notify_up)
            || !same(&before.notify_down, &rs.notify_down)
            || before.smtp_alert != rs.smtp_alert;
        out.push(RealServerChange::Kept {
            old: o,
            new: n,
            who: rs_label(rs),
            weight: (before.weight != rs.weight).then_some((before.weight, rs.weight)),
            checkers_changed,
            other_changed,
        });
    }
    for (o, rs) in old.real_servers.iter().enumerate() {
        if !matched[o] {
            out.push(RealServerChange::Removed { old: o, who: rs_label(rs) });
        }
    }
    out
}

/// Everything a reload changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// VRRP instances.
    pub instances: InstancePlan,
    /// Virtual servers.
    pub services: Vec<ServiceChange>,
}

/// Diffs two configurations.
///
/// # Errors
/// An instance of either configuration cannot be run (the new one was checked already, so in
/// practice never).
pub fn plan(old: &Config, new: &Config) -> Result<ReloadPlan, ReloadError> {
    let old_setups = setup::instances(old)?;
    let new_setups = setup::instances(new)?;
    Ok(ReloadPlan { instances: plan_instances(&old_setups, &new_setups), services: plan_services(old, new) })
}

/// The checker state a reload carries over: for each real server of the new configuration
/// (`(vs, rs)` indexes), the running one whose checkers' state it keeps. Real servers absent
/// here (new ones, and those whose checkers changed) start as their checkers' `alpha` says.
pub fn carried_checkers(services: &[ServiceChange]) -> HashMap<(usize, usize), (usize, usize)> {
    let mut out = HashMap::new();
    for s in services {
        let ServiceChange::Kept { old: vo, new: vn, real_servers, .. } = s else { continue };
        for r in real_servers {
            if let RealServerChange::Kept { old, new, checkers_changed: false, .. } = r {
                out.insert((*vn, *new), (*vo, *old));
            }
        }
    }
    out
}

/// The summary `ka reload` prints and the daemon logs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadSummary {
    /// One line per change.
    pub changes: Vec<String>,
    /// Instances kept unchanged.
    pub instances_unchanged: usize,
    /// Virtual servers kept unchanged.
    pub services_unchanged: usize,
}

impl fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.changes {
            writeln!(f, "{c}")?;
        }
        write!(f, "unchanged: {} vrrp_instance(s), {} virtual_server(s)", self.instances_unchanged, self.services_unchanged)
    }
}

fn vip_text(v: &VipSetup) -> String {
    format!("{}/{}", v.addr, v.prefix)
}

impl ReloadPlan {
    /// Nothing changes.
    pub fn is_empty(&self) -> bool {
        self.instances.added.is_empty()
            && self.instances.removed.is_empty()
            && self.instances.kept.iter().all(KeptInstance::unchanged)
            && self.services.iter().all(ServiceChange::unchanged)
    }

    /// One line per change, for `ka reload` and the log.
    pub fn summary(&self) -> ReloadSummary {
        let mut out = ReloadSummary::default();
        for (_, name) in &self.instances.added {
            out.changes.push(format!("vrrp_instance {name}: added"));
        }
        for (_, name) in &self.instances.removed {
            out.changes.push(format!("vrrp_instance {name}: removed"));
        }
        for k in &self.instances.kept {
            if k.unchanged() {
                out.instances_unchanged += 1;
                continue;
            }
            let mut line = format!("vrrp_instance {}: kept (state unchanged)", k.name);
            if k.name != k.old_name {
                let _ = write!(line, "; renamed from {}", k.old_name);
            }
            for v in &k.vips_added {
                let _ = write!(line, "; +vip {}", vip_text(v));
            }
            for v in &k.vips_removed {
                let _ = write!(line, "; -vip {}", vip_text(v));
            }
            if k.routes_changed {
                line.push_str("; routes/rules changed");
            }
            if k.settings_changed {
                line.push_str("; settings changed");
            }
            out.changes.push(line);
        }
        for s in &self.services {
            match s {
                ServiceChange::Added { name, .. } => out.changes.push(format!("virtual_server {name}: added")),
                ServiceChange::Removed { name, .. } => out.changes.push(format!("virtual_server {name}: removed")),
                ServiceChange::Kept { .. } if s.unchanged() => out.services_unchanged += 1,
                ServiceChange::Kept { name, changed, real_servers, sorry_changed, .. } => {
                    let mut line = format!("virtual_server {name}: kept");
                    for c in changed {
                        let _ = write!(line, "; {c} changed");
                    }
                    if *sorry_changed {
                        line.push_str("; sorry_server changed");
                    }
                    for r in real_servers {
                        match r {
                            RealServerChange::Added { who, .. } => {
                                let _ = write!(line, "; +real_server {who}");
                            }
                            RealServerChange::Removed { who, .. } => {
                                let _ = write!(line, "; -real_server {who}");
                            }
                            RealServerChange::Kept { who, weight, checkers_changed, other_changed, .. } => {
                                if let Some((a, b)) = weight {
                                    let _ = write!(line, "; real_server {who} weight {a} -> {b}");
                                }
                                if *checkers_changed {
                                    let _ = write!(line, "; real_server {who} checkers changed (restarted)");
                                }
                                if *other_changed {
                                    let _ = write!(line, "; real_server {who} settings changed");
                                }
                            }
                        }
                    }
                    out.changes.push(line);
                }
            }
        }
        out
    }
}

pub mod apply;
pub mod timed;

#[cfg(test)]
mod tests;
