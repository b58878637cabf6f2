//! The top-level `static_ipaddress`, `static_routes` and `static_rules` blocks, applied as
//! keepalived 2.2.7's VRRP process does (`vrrp_daemon.c`): at start, leftovers of an earlier run
//! are deleted (errors ignored) and every entry is added, before VRRP starts, whatever the
//! instances' states; a reload deletes the entries the new configuration dropped and adds the
//! ones it gained (and retries those whose add failed); at stop, rules, routes and then
//! addresses ka installed are deleted. The diff is pure ([`diff`]); the netlink requests go to
//! the rtnetlink worker the VIPs use.

use std::collections::HashMap;

use tracing::{info, warn};

use crate::{
    config::{diag::Span, model::Rule, Config},
    net::netlink::{AddrSpec, NetlinkClient, RouteSpec, RuleSpec},
};

/// The static entries, with their interfaces resolved and their source positions cleared (an
/// entry that only moved in the file is the same entry).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaticSet {
    /// `static_ipaddress` entries.
    pub addrs: Vec<AddrSpec>,
    /// `static_routes` entries.
    pub routes: Vec<RouteSpec>,
    /// `static_rules` entries.
    pub rules: Vec<RuleSpec>,
}

impl StaticSet {
    /// Whether there is nothing to install.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty() && self.routes.is_empty() && self.rules.is_empty()
    }

    /// The entries of `cfg`, interfaces resolved with `links`. An address without `dev` goes
    /// on `default_interface` (keepalived's `get_default_if`); one whose interface is missing
    /// (it went away after the config check) is left out with a warning.
    pub fn of(cfg: &Config, links: &impl Fn(&str) -> Option<u32>) -> StaticSet {
        let addrs = cfg
            .static_ipaddresses
            .iter()
            .filter_map(|v| {
                let dev = v.dev.as_deref().unwrap_or(&cfg.global.default_interface);
                let Some(ifindex) = links(dev) else {
                    warn!(address = %v.address.addr, dev, "static_ipaddress: interface not found; the address is not installed");
                    return None;
                };
                Some(AddrSpec {
                    ifindex,
                    addr: v.address.addr,
                    prefix: v.address.len,
                    broadcast: v.broadcast,
                    peer: v.peer,
                    scope: v.scope,
                    label: v.label.clone(),
                    flags: v.flags,
                })
            })
            .collect();
        let routes = cfg
            .static_routes
            .iter()
            .map(|r| {
                let mut s = crate::engine::route_spec(r, links);
                s.route.span = Span::default();
                s
            })
            .collect();
        let rules = cfg.static_rules.iter().map(|r| Rule { span: Span::default(), ..r.clone() }).collect();
        StaticSet { addrs, routes, rules }
    }
}

/// What a reload does to the static entries: `del` the installed ones the new configuration
/// no longer has, `add` the wanted ones not installed (new, or whose add failed before).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaticDiff {
    /// Entries to delete (rules, routes, then addresses are deleted, as keepalived orders them).
    pub del: StaticSet,
    /// Entries to add (addresses, routes, then rules).
    pub add: StaticSet,
}

/// The reload diff of keepalived's `clear_diff_static_*` followed by its `netlink_*list(ADD)`:
/// pure, order-preserving.
pub fn diff(installed: &StaticSet, wanted: &StaticSet) -> StaticDiff {
    fn minus<T: Clone + PartialEq>(a: &[T], b: &[T]) -> Vec<T> {
        a.iter().filter(|x| !b.contains(x)).cloned().collect()
    }
    StaticDiff {
        del: StaticSet {
            addrs: minus(&installed.addrs, &wanted.addrs),
            routes: minus(&installed.routes, &wanted.routes),
            rules: minus(&installed.rules, &wanted.rules),
        },
        add: StaticSet {
            addrs: minus(&wanted.addrs, &installed.addrs),
            routes: minus(&wanted.routes, &installed.routes),
            rules: minus(&wanted.rules, &installed.rules),
        },
    }
}

/// The interface names of the kernel, for [`StaticSet::of`].
async fn links(netlink: &NetlinkClient) -> HashMap<String, u32> {
    match netlink.links().await {
        Ok(l) => l.into_iter().map(|l| (l.name, l.index)).collect(),
        Err(e) => {
            warn!(error = %e, "static entries: cannot list interfaces");
            HashMap::new()
        }
    }
}

/// Deletes `set` (rules, routes, addresses). `quiet`: failures are not reported (leftovers of
/// an earlier run that may not exist).
async fn delete(netlink: &NetlinkClient, set: &StaticSet, quiet: bool) {
    for r in &set.rules {
        if let Err(e) = netlink.rule(false, r.clone()).await {
            if !quiet {
                warn!(error = %e, "removing a static rule");
            }
        }
    }
    for r in &set.routes {
        if let Err(e) = netlink.route(false, r.clone()).await {
            if !quiet {
                warn!(route = %r.route.dst, error = %e, "removing a static route");
            }
        }
    }
    for a in &set.addrs {
        if let Err(e) = netlink.del_addr(a.clone()).await {
            if !quiet {
                warn!(address = %a.addr, error = %e, "removing a static address");
            }
        }
    }
}

/// Adds `set` (addresses, routes, rules); returns what was added (a failed entry is retried at
/// the next reload, as keepalived leaves it unset).
async fn add(netlink: &NetlinkClient, set: StaticSet) -> StaticSet {
    let mut done = StaticSet::default();
    for a in set.addrs {
        match netlink.add_addr(a.clone()).await {
            Ok(()) => done.addrs.push(a),
            Err(e) => warn!(address = %a.addr, error = %e, "adding a static address"),
        }
    }
    for r in set.routes {
        match netlink.route(true, r.clone()).await {
            Ok(()) => done.routes.push(r),
            Err(e) => warn!(route = %r.route.dst, error = %e, "adding a static route"),
        }
    }
    for r in set.rules {
        match netlink.rule(true, r.clone()).await {
            Ok(()) => done.rules.push(r),
            Err(e) => warn!(error = %e, "adding a static rule"),
        }
    }
    done
}

/// At start, before VRRP: deletes leftovers of `cfg`'s entries, then adds them all. Returns
/// what is installed.
pub async fn start(netlink: &NetlinkClient, cfg: &Config) -> StaticSet {
    let l = links(netlink).await;
    let wanted = StaticSet::of(cfg, &|n: &str| l.get(n).copied());
    if wanted.is_empty() {
        return wanted;
    }
    // keepalived deletes them first so that what it adds is its own (and removed at stop).
    delete(netlink, &wanted, true).await;
    let installed = add(netlink, wanted).await;
    info!(addresses = installed.addrs.len(), routes = installed.routes.len(), rules = installed.rules.len(), "static addresses, routes and rules installed");
    installed
}

/// On reload: deletes the installed entries `cfg` dropped, adds the ones it gained. Returns
/// what is installed now.
pub async fn reload(netlink: &NetlinkClient, installed: StaticSet, cfg: &Config) -> StaticSet {
    let l = links(netlink).await;
    let wanted = StaticSet::of(cfg, &|n: &str| l.get(n).copied());
    let d = diff(&installed, &wanted);
    if d.del.is_empty() && d.add.is_empty() {
        return installed;
    }
    info!(
        removed = d.del.addrs.len() + d.del.routes.len() + d.del.rules.len(),
        added = d.add.addrs.len() + d.add.routes.len() + d.add.rules.len(),
        "reload: static addresses, routes and rules"
    );
    delete(netlink, &d.del, false).await;
    let added = add(netlink, d.add).await;
    let keep = |s: &StaticSet| StaticSet {
        addrs: s.addrs.iter().filter(|x| wanted.addrs.contains(x)).cloned().collect(),
        routes: s.routes.iter().filter(|x| wanted.routes.contains(x)).cloned().collect(),
        rules: s.rules.iter().filter(|x| wanted.rules.contains(x)).cloned().collect(),
    };
    let mut now = keep(&installed);
    now.addrs.extend(added.addrs);
    now.routes.extend(added.routes);
    now.rules.extend(added.rules);
    now
}

/// At stop, after the instances released their addresses: deletes what is installed.
pub async fn stop(netlink: &NetlinkClient, installed: &StaticSet) {
    if installed.is_empty() {
        return;
    }
    delete(netlink, installed, false).await;
    info!("static addresses, routes and rules removed");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        let opts = crate::config::LoadOptions {
            config_id: None,
            interfaces: crate::config::InterfaceCheck::Known(["eth0", "eth1"].iter().map(|s| s.to_string()).collect()),
        };
        let l = crate::config::parse_str(text, std::path::Path::new("t.conf"), &opts);
        assert!(l.diagnostics.iter().all(|d| d.severity != crate::config::Severity::Error), "{:?}", l.diagnostics);
        l.config
    }

    fn links(n: &str) -> Option<u32> {
        match n {
            "eth0" => Some(2),
            "eth1" => Some(3),
            _ => None,
        }
    }

    /// The reload diff: kept entries are not touched (even when they moved in the file),
    /// dropped ones are deleted, new ones added, per kind.
    #[test]
    fn reload_diff() {
        let base = "static_ipaddress {\n 198.18.5.1/24 dev eth0\n 198.18.5.2/24 dev eth1\n}\nstatic_routes {\n 198.18.9.0/24 via 198.18.5.254 dev eth0\n}\nstatic_rules {\n from 198.18.5.1 table 100 priority 100\n}\n";
        struct Case {
            name: &'static str,
            new: &'static str,
            del: (usize, usize, usize),
            add: (usize, usize, usize),
        }
        let cases = [
            Case { name: "same", new: base, del: (0, 0, 0), add: (0, 0, 0) },
            Case {
                name: "moved lines only",
                new: "\n\nstatic_rules {\n from 198.18.5.1 table 100 priority 100\n}\nstatic_routes {\n 198.18.9.0/24 via 198.18.5.254 dev eth0\n}\nstatic_ipaddress {\n 198.18.5.2/24 dev eth1\n 198.18.5.1/24 dev eth0\n}\n",
                del: (0, 0, 0),
                add: (0, 0, 0),
            },
            Case {
                name: "one address changed",
                new: "static_ipaddress {\n 198.18.5.1/24 dev eth0\n 198.18.5.3/24 dev eth1\n}\nstatic_routes {\n 198.18.9.0/24 via 198.18.5.254 dev eth0\n}\nstatic_rules {\n from 198.18.5.1 table 100 priority 100\n}\n",
                del: (1, 0, 0),
                add: (1, 0, 0),
            },
            Case {
                name: "route and rule changed",
                new: "static_ipaddress {\n 198.18.5.1/24 dev eth0\n 198.18.5.2/24 dev eth1\n}\nstatic_routes {\n 198.18.9.0/24 via 198.18.5.254 dev eth0 metric 5\n}\nstatic_rules {\n from 198.18.5.1 table 101 priority 100\n}\n",
                del: (0, 1, 1),
                add: (0, 1, 1),
            },
            Case { name: "all removed", new: "", del: (2, 1, 1), add: (0, 0, 0) },
            Case {
                name: "prefix change is another address",
                new: "static_ipaddress {\n 198.18.5.1/25 dev eth0\n 198.18.5.2/24 dev eth1\n}\nstatic_routes {\n 198.18.9.0/24 via 198.18.5.254 dev eth0\n}\nstatic_rules {\n from 198.18.5.1 table 100 priority 100\n}\n",
                del: (1, 0, 0),
                add: (1, 0, 0),
            },
        ];
        let old = StaticSet::of(&cfg(base), &links);
        assert_eq!((old.addrs.len(), old.routes.len(), old.rules.len()), (2, 1, 1));
        for c in cases {
            let d = diff(&old, &StaticSet::of(&cfg(c.new), &links));
            let n = |s: &StaticSet| (s.addrs.len(), s.routes.len(), s.rules.len());
            assert_eq!((n(&d.del), n(&d.add)), (c.del, c.add), "{}: {d:?}", c.name);
        }
        // From nothing (start): everything is added.
        let d = diff(&StaticSet::default(), &old);
        assert_eq!((d.del, d.add), (StaticSet::default(), old.clone()));
    }

    /// An address without `dev` goes on `default_interface` (eth0 unless set), as keepalived
    /// puts it.
    #[test]
    fn address_without_dev_goes_on_default_interface() {
        let c = cfg("static_ipaddress {\n 198.18.5.1/24\n}\n");
        assert_eq!(StaticSet::of(&c, &links).addrs.iter().map(|a| a.ifindex).collect::<Vec<_>>(), vec![2]);
        let c = cfg("global_defs {\n default_interface eth1\n}\nstatic_ipaddress {\n 198.18.5.1/24\n}\n");
        assert_eq!(StaticSet::of(&c, &links).addrs.iter().map(|a| a.ifindex).collect::<Vec<_>>(), vec![3]);
    }

    /// An address whose interface does not exist is left out; the others keep their order.
    #[test]
    fn missing_interface_is_left_out() {
        let c = cfg("static_ipaddress {\n 198.18.5.1/24 dev eth0\n 198.18.5.7/24 dev eth1\n}\n");
        let s = StaticSet::of(&c, &|n: &str| if n == "eth1" { Some(3) } else { None });
        assert_eq!(s.addrs.iter().map(|a| (a.ifindex, a.addr.to_string(), a.prefix)).collect::<Vec<_>>(), vec![(3, "198.18.5.7".to_owned(), 24)]);
    }
}
