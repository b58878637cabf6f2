//! Host preflight: the host settings the configured services need (forwarding for NAT, bpffs,
//! kernel features, reverse-path filtering and ARP settings where they matter), checked once at
//! start. [`check`] is pure over [`Needs`] and [`HostFacts`]; [`HostFacts::read`] is the thin
//! layer that reads `/proc` and `/sys`.
//!
//! Every finding is one line saying what is missing, what it breaks and how to fix it.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::Path,
};

use crate::config::model::{Config, LbKind, VsKey};

/// An IP family, for per-family sysctls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4 (`net.ipv4.*`).
    V4,
    /// IPv6 (`net.ipv6.*`).
    V6,
}

impl Family {
    fn of(a: &IpAddr) -> Family {
        if a.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// A per-interface sysctl: `net.<family>.conf.<iface>.<key>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sysctl {
    /// Family.
    pub family: Family,
    /// Interface name, or `all`.
    pub iface: String,
    /// Setting (`forwarding`, `rp_filter`...).
    pub key: &'static str,
}

impl Sysctl {
    fn new(family: Family, iface: &str, key: &'static str) -> Sysctl {
        Sysctl { family, iface: iface.to_owned(), key }
    }

    /// The sysctl's name as `sysctl` prints it (dots in an interface name become `/`).
    pub fn name(&self) -> String {
        format!("net.{}.conf.{}.{}", self.family.name(), self.iface.replace('.', "/"), self.key)
    }

    /// Its file under `/proc/sys`.
    pub fn path(&self) -> String {
        format!("/proc/sys/net/{}/conf/{}/{}", self.family.name(), self.iface, self.key)
    }
}

/// A NAT service and where its real servers' replies come in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatService {
    /// The service as the operator wrote it (`198.18.0.10:80`).
    pub name: String,
    /// The families of its real servers.
    pub families: BTreeSet<Family>,
    /// The interfaces its real servers are reached through (their replies come in there).
    pub ifaces: BTreeSet<String>,
}

/// What the configuration and the command line need of the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// The XDP program will be loaded (not `--no-xdp`).
    pub xdp: bool,
    /// There are virtual servers to forward.
    pub services: bool,
    /// NAT services.
    pub nat: Vec<NatService>,
    /// Interfaces where `ka decap` passes decapsulated TUN packets to the stack.
    pub decap_ifaces: Vec<String>,
}

/// The host's settings, as read by [`HostFacts::read`] (or made up by a test).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// bpffs is mounted at `/sys/fs/bpf`.
    pub bpffs: bool,
    /// `/sys/kernel/btf/vmlinux` exists.
    pub kernel_btf: bool,
    /// Kernel version (major, minor), if it could be read.
    pub kernel: Option<(u32, u32)>,
    /// Sysctl values; a missing one could not be read.
    pub sysctls: BTreeMap<Sysctl, i64>,
    /// The interface of the default route, per family, if any.
    pub default_route_iface: BTreeMap<Family, String>,
}

/// One finding: a setting that is missing, with what it breaks and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    /// What is checked (the sysctl's name, `bpffs`, `kernel`...).
    pub setting: String,
    /// The line to print.
    pub message: String,
}

/// The sysctls [`check`] looks at for `needs`: read those (and only those) into
/// [`HostFacts::sysctls`].
pub fn sysctls_needed(needs: &Needs) -> BTreeSet<Sysctl> {
    let mut out = BTreeSet::new();
    for s in &needs.nat {
        for f in &s.families {
            for i in &s.ifaces {
                out.insert(Sysctl::new(*f, i, "forwarding"));
            }
        }
    }
    for i in &needs.decap_ifaces {
        for iface in [i.as_str(), "all"] {
            out.insert(Sysctl::new(Family::V4, iface, "rp_filter"));
            out.insert(Sysctl::new(Family::V4, iface, "arp_ignore"));
            out.insert(Sysctl::new(Family::V4, iface, "arp_announce"));
        }
    }
    out
}

/// Checks the host against what the services need. One finding per missing setting.
pub fn check(needs: &Needs, host: &HostFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    if needs.xdp && !host.bpffs {
        out.push(Finding {
            setting: "bpffs".into(),
            message: "bpffs is not mounted at /sys/fs/bpf: ka mounts it now, but pins vanish with this mount; make it permanent \
                      (fstab line `bpffs /sys/fs/bpf bpf defaults 0 0`, or `mount -t bpf bpf /sys/fs/bpf` at boot)"
                .into(),
        });
    }
    if needs.xdp && !host.kernel_btf {
        out.push(Finding {
            setting: "kernel BTF".into(),
            message: "kernel BTF /sys/kernel/btf/vmlinux is missing (kernel built without CONFIG_DEBUG_INFO_BTF): the XDP program \
                      loads without it, but bpftool shows its maps untyped"
                .into(),
        });
    }
    if let (true, Some(v)) = (needs.xdp && needs.services, host.kernel) {
        if v < (5, 12) {
            out.push(Finding {
                setting: "kernel".into(),
                message: format!(
                    "kernel {}.{} is older than 5.12: bpf_fib_lookup reports no route MTU, so packets too big for a real \
                     server's path are not answered with ICMP \"fragmentation needed\"; upgrade to 5.12+",
                    v.0, v.1
                ),
            });
        }
        if v < (5, 16) {
            out.push(Finding {
                setting: "kernel".into(),
                message: format!(
                    "kernel {}.{} is older than 5.16: no managed neighbour entries, so real servers' next hops are kept \
                     resolved by periodic requests only; upgrade to 5.16+",
                    v.0, v.1
                ),
            });
        }
    }
    // NAT: replies from the real servers are un-NATed in XDP and routed to the client with
    // bpf_fib_lookup in input mode, which needs forwarding on the interface they come in on.
    let mut nat: BTreeMap<Sysctl, Vec<&str>> = BTreeMap::new();
    for s in &needs.nat {
        for f in &s.families {
            for i in &s.ifaces {
                let sc = Sysctl::new(*f, i, "forwarding");
                if host.sysctls.get(&sc).is_some_and(|v| *v == 0) {
                    nat.entry(sc).or_default().push(&s.name);
                }
            }
        }
    }
    for (sc, services) in nat {
        let global = match sc.family {
            Family::V4 => "net.ipv4.ip_forward=1",
            Family::V6 => "net.ipv6.conf.all.forwarding=1",
        };
        let (noun, verb) = if services.len() == 1 { ("service", "needs") } else { ("services", "need") };
        out.push(Finding {
            setting: sc.name(),
            message: format!(
                "NAT {noun} {} {verb} {}=1 for replies to reach clients (as IPVS NAT does): sysctl -w {}=1 (or {global} for every \
                 interface)",
                services.join(", "),
                sc.name(),
                sc.name()
            ),
        });
    }
    for i in &needs.decap_ifaces {
        let get = |iface: &str, key| host.sysctls.get(&Sysctl::new(Family::V4, iface, key)).copied();
        // The kernel applies the larger of `all` and the interface's value.
        let eff = |key| get(i, key).max(get("all", key));
        let other_default = host.default_route_iface.get(&Family::V4).is_some_and(|d| d != i);
        if eff("rp_filter") == Some(1) && other_default {
            out.push(Finding {
                setting: Sysctl::new(Family::V4, i, "rp_filter").name(),
                message: format!(
                    "strict reverse-path filtering on {i} drops decapsulated TUN packets from clients routed through another \
                     interface (the default route is not via {i}): sysctl -w net.ipv4.conf.{i}.rp_filter=2 \
                     net.ipv4.conf.all.rp_filter=2 (loose)"
                ),
            });
        }
        if eff("arp_ignore").is_some_and(|v| v < 1) || eff("arp_announce").is_some_and(|v| v < 2) {
            out.push(Finding {
                setting: Sysctl::new(Family::V4, i, "arp_ignore").name(),
                message: format!(
                    "a real server holding the VIPs answers ARP for them on {i} and can take the VIP from the director on a \
                     shared LAN: sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 (as for LVS-DR/TUN)"
                ),
            });
        }
    }
    out
}

/// The service as the operator wrote it.
pub fn service_name(key: &VsKey) -> String {
    match key {
        VsKey::Addr { addr: IpAddr::V6(a), port } => format!("[{a}]:{port}"),
        VsKey::Addr { addr, port } => format!("{addr}:{port}"),
        VsKey::Fwmark(m) => format!("fwmark {m}"),
        VsKey::Group(g) => format!("group {g}"),
    }
}

/// The NAT services of `config`, with the interface each real server is reached through as
/// `route_iface` answers (the runtime asks the kernel's routing table); a real server without
/// an answer counts on every interface of `fallback` (the XDP interfaces).
pub fn nat_services(config: &Config, route_iface: &dyn Fn(IpAddr) -> Option<String>, fallback: &[String]) -> Vec<NatService> {
    let mut out = Vec::new();
    for vs in &config.virtual_servers {
        let mut families = BTreeSet::new();
        let mut ifaces = BTreeSet::new();
        for rs in vs.real_servers.iter().filter(|rs| rs.lb_kind == LbKind::Nat) {
            families.insert(Family::of(&rs.address));
            match route_iface(rs.address) {
                Some(i) => {
                    ifaces.insert(i);
                }
                None => ifaces.extend(fallback.iter().cloned()),
            }
        }
        if !families.is_empty() && !ifaces.is_empty() {
            out.push(NatService { name: service_name(&vs.key), families, ifaces });
        }
    }
    out
}

impl HostFacts {
    /// Reads the host: bpffs and BTF presence, the kernel version, the sysctls `needs` wants
    /// ([`sysctls_needed`]) from `/proc/sys` (in this process's network namespace), and
    /// `default_route_iface` as given by the caller (the runtime asks rtnetlink).
    pub fn read(needs: &Needs, default_route_iface: BTreeMap<Family, String>) -> HostFacts {
        let bpffs = nix::sys::statfs::statfs("/sys/fs/bpf").is_ok_and(|s| s.filesystem_type().0 == 0xcafe4a11);
        let kernel_btf = Path::new("/sys/kernel/btf/vmlinux").exists();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().and_then(|r| parse_release(&r));
        let sysctls = sysctls_needed(needs)
            .into_iter()
            .filter_map(|s| {
                let v = std::fs::read_to_string(s.path()).ok()?.trim().parse().ok()?;
                Some((s, v))
            })
            .collect();
        HostFacts { bpffs, kernel_btf, kernel, sysctls, default_route_iface }
    }
}

/// The interface of the IPv4 default route in this network namespace (`/proc/net/route`).
pub fn default_route_v4() -> Option<String> {
    let text = std::fs::read_to_string("/proc/net/route").ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_owned())
    })
}

/// `6.18.4-foo` → (6, 18).
fn parse_release(r: &str) -> Option<(u32, u32)> {
    let mut it = r.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Logs every finding as a warning, one line each.
pub fn log(findings: &[Finding]) {
    for f in findings {
        tracing::warn!(setting = %f.setting, "preflight: {}", f.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostFacts {
        HostFacts { bpffs: true, kernel_btf: true, kernel: Some((6, 18)), ..Default::default() }
    }

    fn nat(name: &str, iface: &str) -> NatService {
        NatService { name: name.into(), families: [Family::V4].into(), ifaces: [iface.to_owned()].into() }
    }

    fn with(mut h: HostFacts, family: Family, iface: &str, key: &'static str, v: i64) -> HostFacts {
        h.sysctls.insert(Sysctl::new(family, iface, key), v);
        h
    }

    /// Each row: the needs, the host, and the settings named by the findings, in order.
    #[test]
    fn findings_table() {
        let xdp = Needs { xdp: true, services: true, ..Default::default() };
        let nat1 = Needs { nat: vec![nat("198.18.0.10:80", "eth1")], ..xdp.clone() };
        let nat2 = Needs { nat: vec![nat("198.18.0.10:80", "eth1"), nat("198.18.0.11:80", "eth1")], ..xdp.clone() };
        let decap = Needs { decap_ifaces: vec!["eth0".into()], ..Default::default() };
        let lvs_rs = |h: HostFacts| {
            let h = with(h, Family::V4, "all", "arp_ignore", 1);
            with(h, Family::V4, "all", "arp_announce", 2)
        };
        let mut other_default = host();
        other_default.default_route_iface.insert(Family::V4, "eth9".into());
        let cases: Vec<(&str, Needs, HostFacts, Vec<&str>)> = vec![
            ("all fine", xdp.clone(), host(), vec![]),
            ("no bpffs", xdp.clone(), HostFacts { bpffs: false, ..host() }, vec!["bpffs"]),
            ("no bpffs, no XDP", Needs::default(), HostFacts { bpffs: false, ..host() }, vec![]),
            ("no BTF", xdp.clone(), HostFacts { kernel_btf: false, ..host() }, vec!["kernel BTF"]),
            ("kernel 5.14", xdp.clone(), HostFacts { kernel: Some((5, 14)), ..host() }, vec!["kernel"]),
            ("kernel 5.10", xdp.clone(), HostFacts { kernel: Some((5, 10)), ..host() }, vec!["kernel", "kernel"]),
            ("NAT, forwarding on", nat1.clone(), with(host(), Family::V4, "eth1", "forwarding", 1), vec![]),
            ("NAT, forwarding off", nat1.clone(), with(host(), Family::V4, "eth1", "forwarding", 0), vec!["net.ipv4.conf.eth1.forwarding"]),
            ("NAT, unreadable", nat1, host(), vec![]),
            ("two NAT services, one line", nat2, with(host(), Family::V4, "eth1", "forwarding", 0), vec!["net.ipv4.conf.eth1.forwarding"]),
            ("DR only, forwarding off", xdp, with(host(), Family::V4, "eth1", "forwarding", 0), vec![]),
            ("decap, LVS settings", decap.clone(), lvs_rs(host()), vec![]),
            ("decap, ARP defaults", decap.clone(), with(lvs_rs(host()), Family::V4, "all", "arp_ignore", 0), vec!["net.ipv4.conf.eth0.arp_ignore"]),
            ("decap, interface arp_ignore", decap.clone(), with(with(lvs_rs(host()), Family::V4, "all", "arp_ignore", 0), Family::V4, "eth0", "arp_ignore", 1), vec![]),
            ("decap, strict rp_filter, default via eth0", decap.clone(), with(lvs_rs(host()), Family::V4, "all", "rp_filter", 1), vec![]),
            (
                "decap, strict rp_filter, default elsewhere",
                decap.clone(),
                with(lvs_rs(other_default.clone()), Family::V4, "eth0", "rp_filter", 1),
                vec!["net.ipv4.conf.eth0.rp_filter"],
            ),
            ("decap, loose rp_filter, default elsewhere", decap, with(lvs_rs(other_default), Family::V4, "all", "rp_filter", 2), vec![]),
        ];
        for (name, needs, host, want) in cases {
            let got: Vec<String> = check(&needs, &host).into_iter().map(|f| f.setting).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    /// The NAT line names the service, the exact sysctl and the command that fixes it.
    #[test]
    fn nat_line_names_the_sysctl() {
        let needs = Needs { nat: vec![nat("198.18.0.10:80", "eth0")], ..Default::default() };
        let f = check(&needs, &with(host(), Family::V4, "eth0", "forwarding", 0));
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].message,
            "NAT service 198.18.0.10:80 needs net.ipv4.conf.eth0.forwarding=1 for replies to reach clients (as IPVS NAT does): \
             sysctl -w net.ipv4.conf.eth0.forwarding=1 (or net.ipv4.ip_forward=1 for every interface)"
        );
    }

    /// Sysctl names and paths, including a VLAN interface whose name has a dot.
    #[test]
    fn sysctl_names() {
        let s = Sysctl::new(Family::V6, "eth0.100", "forwarding");
        assert_eq!(s.name(), "net.ipv6.conf.eth0/100.forwarding");
        assert_eq!(s.path(), "/proc/sys/net/ipv6/conf/eth0.100/forwarding");
        assert_eq!(parse_release("6.18.44-fc-v1272"), Some((6, 18)));
        assert_eq!(parse_release("5.4"), Some((5, 4)));
        assert_eq!(parse_release("x"), None);
    }

    /// Only what the checks use is read.
    #[test]
    fn reads_only_what_is_needed() {
        assert!(sysctls_needed(&Needs { xdp: true, services: true, ..Default::default() }).is_empty());
        let needs = Needs { nat: vec![nat("a", "eth1")], ..Default::default() };
        assert_eq!(sysctls_needed(&needs).into_iter().map(|s| s.name()).collect::<Vec<_>>(), ["net.ipv4.conf.eth1.forwarding"]);
    }
}
