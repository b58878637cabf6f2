//! keepalived's `no_accept` mode (RFC 5798 §6.1 Accept_Mode false): while a non-owner is
//! Master, packets addressed to its virtual addresses are dropped, and packets from them are
//! not sent, as keepalived 2.2.7 does with nftables (vrrp_nftables.c). The layout is
//! keepalived's: tables `ip TABLE` and `ip6 TABLE`, base chains `in` (input) and `out`
//! (output) at the `nftables_priority` (default -1), set `vips` per family (`ip daddr @vips
//! drop`, `ip saddr @vips drop`), IPv6 neighbour discovery let through (set
//! `neighbor-discovery`), link-local VIPs matched with their interface (sets
//! `vips_link_local`, by index, and `vips_link_local_name`, by name, reached from chains
//! `in_link_local`/`out_link_local`), a counter on every rule with `nftables_counters`, and
//! the VMACs' IGMP/MLD reports sent through their base interface (map `vmac_map`, set
//! `vmac_set`).
//! The table is `nftables TABLE` (`keepalived` by default, also for `vrrp_iptables`); without
//! it, ka's own `ka_<instance>` so that two ka instances in one namespace never share one. It is
//! created on first use and deleted when the [`NoAccept`] is dropped.
//!
//! The rules are applied with the `nft` binary (nftables(8)), by a thread of its own
//! ([`NoAcceptWorker`]); the scripts are built by pure functions ([`create_script`],
//! [`add_script`], [`remove_scripts`], [`vmac_script`]).

use std::{net::IpAddr, process::Command};

use tracing::{info, warn};

/// Errors of the no_accept firewall.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// `nft` could not run.
    #[error("running nft ({what}): {source}")]
    Spawn {
        /// What was being done.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `nft` refused the commands.
    #[error("nft ({what}) failed: {stderr}")]
    Nft {
        /// What was being done.
        what: String,
        /// Its error output.
        stderr: String,
    },
}

/// The firewall's settings (`global_defs`: `nftables`, `nftables_priority`,
/// `nftables_counters`, `nftables_ifindex`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Table name (in both the `ip` and the `ip6` family).
    pub table: String,
    /// Priority of the `in` and `out` base chains.
    pub priority: i32,
    /// A counter on every rule.
    pub counters: bool,
}

impl Settings {
    /// The settings of `global_defs`: `nftables TABLE` names the table, else ka's own for
    /// `instance`.
    pub fn of(g: &crate::config::model::VrrpNftables, instance: &str) -> Settings {
        Settings { table: g.table.clone().unwrap_or_else(|| table_name(instance)), priority: g.priority, counters: g.counters }
    }
}

/// An address whose packets are dropped, with what keepalived matches a link-local one by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// The VIP.
    pub addr: IpAddr,
    /// Interface index it is on.
    pub ifindex: u32,
    /// Link-local only: matched by interface name (set `vips_link_local_name`; keepalived does
    /// so for an address on the instance's interface under `dont_track_primary` without
    /// `nftables_ifindex`), else by index (`vips_link_local`).
    pub ifname: Option<String>,
}

impl Blocked {
    /// The set it goes in and the element as nft writes it.
    fn element(&self) -> (&'static str, &'static str, String) {
        match self.addr {
            IpAddr::V4(a) => ("ip", "vips", a.to_string()),
            IpAddr::V6(a) if a.is_unicast_link_local() => match &self.ifname {
                Some(n) => ("ip6", "vips_link_local_name", format!("{a} . \"{n}\"")),
                None => ("ip6", "vips_link_local", format!("{a} . {}", self.ifindex)),
            },
            IpAddr::V6(a) => ("ip6", "vips", a.to_string()),
        }
    }
}

/// The script that (re)creates the tables: any left by a crashed run go first.
pub fn create_script(s: &Settings) -> String {
    let (t, p) = (&s.table, s.priority);
    let c = if s.counters { "counter " } else { "" };
    format!(
        "table ip {t}\ndelete table ip {t}\ntable ip6 {t}\ndelete table ip6 {t}\n\
         table ip {t} {{\n\
           set vips {{ type ipv4_addr; }}\n\
           map vmac_map {{ type iface_index : iface_index; }}\n\
           chain in {{ type filter hook input priority {p}; policy accept; ip daddr @vips {c}drop; }}\n\
           chain out {{ type filter hook output priority {p}; policy accept; \
             ip protocol igmp meta oifkind \"macvlan\" dup to ip daddr device oif map @vmac_map {c}drop; ip saddr @vips {c}drop; }}\n\
         }}\n\
         table ip6 {t} {{\n\
           set vips {{ type ipv6_addr; }}\n\
           set vips_link_local {{ type ipv6_addr . iface_index; }}\n\
           set vips_link_local_name {{ type ipv6_addr . ifname; }}\n\
           map vmac_map {{ type iface_index : iface_index; }}\n\
           set vmac_set {{ type iface_index; }}\n\
           set neighbor-discovery {{ type icmpv6_type; flags constant; elements = {{ nd-neighbor-solicit, nd-neighbor-advert }}; }}\n\
           chain in_link_local {{ ip6 daddr . iif @vips_link_local {c}drop; ip6 daddr . iifname @vips_link_local_name {c}drop; }}\n\
           chain out_link_local {{ ip6 saddr . oif @vips_link_local {c}drop; ip6 saddr . oifname @vips_link_local_name {c}drop; }}\n\
           chain in {{ type filter hook input priority {p}; policy accept; icmpv6 type @neighbor-discovery {c}accept; ip6 daddr fe80::/10 {c}goto in_link_local; ip6 daddr @vips {c}drop; }}\n\
           chain out {{ type filter hook output priority {p}; policy accept; \
             icmpv6 type mld2-listener-report meta oifkind \"macvlan\" dup to ip6 daddr device oif map @vmac_map {c}drop; \
             icmpv6 type nd-router-solicit meta oifkind \"macvlan\" oif @vmac_set {c}drop; \
             icmpv6 type @neighbor-discovery {c}accept; ip6 saddr fe80::/10 {c}goto out_link_local; ip6 saddr @vips {c}drop; }}\n\
         }}\n"
    )
}

/// A VMAC (macvlan) and its base interface, by index, for the family tables listed: keepalived
/// sends the IGMP / MLD reports a VMAC would send through its base interface instead
/// (`dup to ... device`), and drops its router solicitations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vmac {
    /// The macvlan's index.
    pub ifindex: u32,
    /// Its base interface's index.
    pub base: u32,
    /// In the `ip` table.
    pub v4: bool,
    /// In the `ip6` table.
    pub v6: bool,
}

/// The script that adds (`add`) or deletes the elements of `vmacs`.
pub fn vmac_script(table: &str, vmacs: &[Vmac], add: bool) -> String {
    let verb = if add { "add" } else { "delete" };
    let mut s = String::new();
    for m in vmacs {
        let (i, b) = (m.ifindex, m.base);
        if m.v4 {
            s += &format!("{verb} element ip {table} vmac_map {{ {i} : {b} }}\n");
        }
        if m.v6 {
            s += &format!("{verb} element ip6 {table} vmac_map {{ {i} : {b} }}\n{verb} element ip6 {table} vmac_set {{ {i} }}\n");
        }
    }
    s
}

/// The script that adds `addrs` to their sets (one command per set); empty when there are none.
pub fn add_script(table: &str, addrs: &[Blocked]) -> String {
    let mut sets: Vec<(&str, &str, Vec<String>)> = Vec::new();
    for a in addrs {
        let (family, set, e) = a.element();
        match sets.iter_mut().find(|(f, s, _)| *f == family && *s == set) {
            Some((_, _, v)) => v.push(e),
            None => sets.push((family, set, vec![e])),
        }
    }
    sets.iter().map(|(f, s, v)| format!("add element {f} {table} {s} {{ {} }}\n", v.join(", "))).collect()
}

/// The scripts that remove `addrs`, one per element: deleting an absent element fails the
/// whole batch.
pub fn remove_scripts(table: &str, addrs: &[Blocked]) -> Vec<String> {
    addrs
        .iter()
        .map(|a| {
            let (f, s, e) = a.element();
            format!("delete element {f} {table} {s} {{ {e} }}\n")
        })
        .collect()
}

/// The no_accept tables of one ka instance.
#[derive(Debug)]
pub struct NoAccept {
    settings: Settings,
    created: bool,
}

/// A table name nft accepts: `ka_` and the instance name with anything but letters, digits and
/// `_` replaced by `_`.
pub fn table_name(instance: &str) -> String {
    let clean: String = instance.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("ka_{clean}")
}

fn nft(script: &str, what: &str) -> Result<(), FirewallError> {
    let out = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            if let Some(mut stdin) = child.stdin.take() {
                std::io::Write::write_all(&mut stdin, script.as_bytes())?;
            }
            child.wait_with_output()
        })
        .map_err(|source| FirewallError::Spawn { what: what.to_owned(), source })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FirewallError::Nft { what: what.to_owned(), stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}

impl NoAccept {
    /// A handle on the tables of `settings`; nothing is created until a VIP is added.
    pub fn new(settings: Settings) -> NoAccept {
        NoAccept { settings, created: false }
    }

    fn ensure(&mut self) -> Result<(), FirewallError> {
        if self.created {
            return Ok(());
        }
        nft(&create_script(&self.settings), "creating the no_accept tables")?;
        info!(table = %self.settings.table, priority = self.settings.priority, counters = self.settings.counters, "no_accept: nftables tables created");
        self.created = true;
        Ok(())
    }

    /// Starts dropping packets to and from `addrs` (a no_accept instance became Master).
    ///
    /// # Errors
    /// `nft` is missing or refuses the rules.
    pub fn add(&mut self, addrs: &[Blocked]) -> Result<(), FirewallError> {
        self.ensure()?;
        let script = add_script(&self.settings.table, addrs);
        if script.is_empty() {
            return Ok(());
        }
        nft(&script, "adding no_accept VIPs")
    }

    /// Adds (`add`) or removes VMACs ([`vmac_script`]).
    ///
    /// # Errors
    /// `nft` refuses the change.
    pub fn vmacs(&mut self, vmacs: &[Vmac], add: bool) -> Result<(), FirewallError> {
        self.ensure()?;
        let script = vmac_script(&self.settings.table, vmacs, add);
        if script.is_empty() {
            return Ok(());
        }
        nft(&script, "updating the VMAC maps")
    }

    /// Stops dropping packets to and from `addrs` (the instance left Master).
    ///
    /// # Errors
    /// `nft` refuses the change.
    pub fn remove(&mut self, addrs: &[Blocked]) -> Result<(), FirewallError> {
        if !self.created {
            return Ok(());
        }
        for script in remove_scripts(&self.settings.table, addrs) {
            nft(&script, "removing no_accept VIPs")?;
        }
        Ok(())
    }
}

impl Drop for NoAccept {
    fn drop(&mut self) {
        if self.created {
            let t = &self.settings.table;
            match nft(&format!("delete table ip {t}\ndelete table ip6 {t}\n"), "deleting the no_accept tables") {
                Ok(()) => info!(table = %t, "no_accept: nftables tables deleted"),
                Err(e) => warn!(error = %e, "no_accept: cannot delete the nftables tables"),
            }
        }
    }
}

/// One change for the [`NoAcceptWorker`].
#[derive(Debug)]
enum Op {
    /// Create the table (recreated from scratch).
    Create,
    /// Drop packets to these VIPs (instance name for the logs).
    Add(String, Vec<Blocked>),
    /// Accept them again.
    Remove(String, Vec<Blocked>),
    /// VMACs made (`true`) or deleted.
    Vmacs(Vec<Vmac>, bool),
}

/// The no_accept table run by a thread of its own, so that `nft` never runs on the VRRP
/// engine's task: changes are queued and applied in order, failures are logged there. The
/// table is deleted when the worker is closed ([`NoAcceptWorker::close`]) or dropped.
#[derive(Debug)]
pub struct NoAcceptWorker {
    tx: Option<std::sync::mpsc::Sender<Op>>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl NoAcceptWorker {
    /// Starts the thread for the tables of `settings` and has it create them (tables left by
    /// a crashed run go first).
    pub fn spawn(settings: Settings) -> NoAcceptWorker {
        let (tx, rx) = std::sync::mpsc::channel::<Op>();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new().name("ka-nft".to_owned()).spawn(move || {
            let mut fw = NoAccept::new(settings);
            while let Ok(op) = rx.recv() {
                let (res, what) = match &op {
                    Op::Create => (fw.add(&[]), "creating the table"),
                    Op::Add(_, vips) => (fw.add(vips), "dropping packets to the VIPs"),
                    Op::Remove(_, vips) => (fw.remove(vips), "accepting packets to the VIPs again"),
                    Op::Vmacs(v, add) => (fw.vmacs(v, *add), "updating the VMAC maps"),
                };
                match (res, &op) {
                    (Ok(()), Op::Create | Op::Vmacs(..)) => {}
                    (Err(e), Op::Vmacs(..)) => warn!(error = %e, "VRRP firewall: {what}"),
                    (Ok(()), Op::Add(instance, _) | Op::Remove(instance, _)) => info!(instance = %instance, "no_accept: {what}"),
                    (Err(e), Op::Create) => warn!(error = %e, "no_accept: cannot set up the nftables table; packets to the VIPs will be accepted"),
                    (Err(e), Op::Add(instance, _) | Op::Remove(instance, _)) => warn!(instance = %instance, error = %e, "no_accept: nftables update failed ({what})"),
                }
            }
            drop(fw);
            let _ = done_tx.send(());
        });
        if let Err(e) = &spawned {
            warn!(error = %e, "no_accept: cannot start the nftables thread; packets to the VIPs will be accepted");
        }
        let w = NoAcceptWorker { tx: Some(tx), done: Some(done) };
        w.send(Op::Create);
        w
    }

    fn send(&self, op: Op) {
        if let Some(tx) = &self.tx {
            if tx.send(op).is_err() {
                warn!("no_accept: the nftables thread has stopped");
            }
        }
    }

    /// Queues: drop packets to `vips` (instance `instance` became a non-owner Master).
    pub fn add(&self, instance: &str, vips: Vec<Blocked>) {
        if vips.is_empty() {
            return;
        }
        self.send(Op::Add(instance.to_owned(), vips));
    }

    /// Queues: VMACs made (`add`) or deleted.
    pub fn vmacs(&self, vmacs: Vec<Vmac>, add: bool) {
        if vmacs.is_empty() {
            return;
        }
        self.send(Op::Vmacs(vmacs, add));
    }

    /// Queues: accept packets to `vips` again.
    pub fn remove(&self, instance: &str, vips: Vec<Blocked>) {
        if vips.is_empty() {
            return;
        }
        self.send(Op::Remove(instance.to_owned(), vips));
    }

    /// Applies what is queued, deletes the table and waits for the thread (bounded: 10 s).
    pub async fn close(mut self) {
        self.tx = None;
        if let Some(done) = self.done.take() {
            if tokio::time::timeout(std::time::Duration::from_secs(10), done).await.is_err() {
                warn!("no_accept: nftables cleanup timed out");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(addr: &str, ifindex: u32, ifname: Option<&str>) -> Blocked {
        Blocked { addr: addr.parse().expect("addr"), ifindex, ifname: ifname.map(str::to_owned) }
    }

    /// The tables are keepalived's (vrrp_nftables.c): `ip`/`ip6` tables, `in`/`out` chains at
    /// the configured priority, `vips` sets, neighbour discovery accepted, link-local VIPs by
    /// interface, counters only with `nftables_counters`.
    #[test]
    fn create_script_is_keepalived_layout() {
        let cases: &[(Settings, &[&str], &[&str])] = &[
            (
                Settings { table: "keepalived".into(), priority: -1, counters: false },
                &[
                    "delete table ip keepalived\n",
                    "delete table ip6 keepalived\n",
                    "chain in { type filter hook input priority -1; policy accept; ip daddr @vips drop; }",
                    "chain out { type filter hook output priority -1; policy accept; ip protocol igmp meta oifkind \"macvlan\" dup to ip daddr device oif map @vmac_map drop; ip saddr @vips drop; }",
                    "icmpv6 type @neighbor-discovery accept; ip6 daddr fe80::/10 goto in_link_local; ip6 daddr @vips drop;",
                    "ip6 saddr fe80::/10 goto out_link_local; ip6 saddr @vips drop;",
                    "set vips_link_local { type ipv6_addr . iface_index; }",
                    "set neighbor-discovery { type icmpv6_type; flags constant; elements = { nd-neighbor-solicit, nd-neighbor-advert }; }",
                    "ip6 daddr . iifname @vips_link_local_name drop;",
                ],
                &["counter"],
            ),
            (
                Settings { table: "fw".into(), priority: 7, counters: true },
                &["table ip fw {", "table ip6 fw {", "hook input priority 7;", "ip daddr @vips counter drop;", "ip6 saddr @vips counter drop;", "ip6 daddr . iif @vips_link_local counter drop;"],
                &["priority -1"],
            ),
        ];
        for (s, has, lacks) in cases {
            let script = create_script(s);
            for h in *has {
                assert!(script.contains(h), "{s:?}: missing {h:?} in\n{script}");
            }
            for l in *lacks {
                assert!(!script.contains(l), "{s:?}: unexpected {l:?} in\n{script}");
            }
        }
    }

    /// Elements go to the set of their family and kind, grouped for adds, one per remove.
    #[test]
    fn element_scripts() {
        let addrs = [b("198.18.0.10", 2, None), b("198.18.0.11", 2, None), b("fd00:198:18::10", 2, None), b("fe80::10", 3, None), b("fe80::11", 3, Some("eth0"))];
        assert_eq!(
            add_script("t", &addrs),
            "add element ip t vips { 198.18.0.10, 198.18.0.11 }\n\
             add element ip6 t vips { fd00:198:18::10 }\n\
             add element ip6 t vips_link_local { fe80::10 . 3 }\n\
             add element ip6 t vips_link_local_name { fe80::11 . \"eth0\" }\n"
        );
        assert_eq!(add_script("t", &[]), "");
        assert_eq!(
            remove_scripts("t", &addrs[2..4]),
            vec!["delete element ip6 t vips { fd00:198:18::10 }\n".to_owned(), "delete element ip6 t vips_link_local { fe80::10 . 3 }\n".to_owned()]
        );
    }

    /// A VMAC goes in the maps of its families: `vmac_map` (VMAC : base) and, for IPv6,
    /// `vmac_set`; the rules that use them are in the `out` chains from the start.
    #[test]
    fn vmac_scripts() {
        let m = |v4, v6| Vmac { ifindex: 7, base: 2, v4, v6 };
        let cases: &[(Vmac, bool, &str)] = &[
            (m(true, false), true, "add element ip t vmac_map { 7 : 2 }\n"),
            (m(false, true), true, "add element ip6 t vmac_map { 7 : 2 }\nadd element ip6 t vmac_set { 7 }\n"),
            (m(true, true), false, "delete element ip t vmac_map { 7 : 2 }\ndelete element ip6 t vmac_map { 7 : 2 }\ndelete element ip6 t vmac_set { 7 }\n"),
        ];
        for (v, add, want) in cases {
            assert_eq!(vmac_script("t", &[*v], *add), *want, "{v:?} {add}");
        }
        let script = create_script(&Settings { table: "t".into(), priority: -1, counters: false });
        for rule in [
            "ip protocol igmp meta oifkind \"macvlan\" dup to ip daddr device oif map @vmac_map drop;",
            "icmpv6 type mld2-listener-report meta oifkind \"macvlan\" dup to ip6 daddr device oif map @vmac_map drop;",
            "icmpv6 type nd-router-solicit meta oifkind \"macvlan\" oif @vmac_set drop;",
            "map vmac_map { type iface_index : iface_index; }",
        ] {
            assert!(script.contains(rule), "missing {rule} in\n{script}");
        }
    }

    /// `nftables TABLE` names the table; without it ka's own per instance.
    #[test]
    fn settings_of_global_defs() {
        use crate::config::model::VrrpNftables;
        assert_eq!(Settings::of(&VrrpNftables::default(), "a-b"), Settings { table: "ka_a_b".into(), priority: -1, counters: false });
        let g = VrrpNftables { table: Some("keepalived".into()), priority: 5, counters: true, ifindex: true };
        assert_eq!(Settings::of(&g, "a"), Settings { table: "keepalived".into(), priority: 5, counters: true });
    }
}
