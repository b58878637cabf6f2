//! keepalived's VRRP firewall keywords on the wire, in namespaces: `nftables TABLE`,
//! `nftables_priority`, `nftables_counters` and `vrrp_iptables` give a non-owner no_accept
//! MASTER keepalived's nftables tables (`ip`/`ip6` TABLE, chains `in`/`out`, set `vips`):
//! packets to the VIP are dropped, packets from it are not sent, and the tables go at stop.

use std::time::Duration;

use ka_tests::{
    vrrp_lan,
    daemon::KaDaemon,
    ka_bin,
    netns::{Bridge, Netns},
    unique_name, wait_for,
};

const WAIT: Duration = Duration::from_secs(30);

fn lan() -> (Bridge, Vec<Netns>) {
    vrrp_lan::hosts("fw", 9, 2)
}

fn write_conf(text: &str) -> String {
    vrrp_lan::write_conf("kfw", text)
}

fn state(ka: &KaDaemon) -> String {
    vrrp_lan::state(ka, 0)
}

/// A TCP connection from `from` to `addr:8585` succeeds within a second.
fn connects(from: &Netns, addr: &'static str) -> bool {
    from.enter(move || {
        let sa: std::net::SocketAddr = format!("{addr}:8585").parse().expect("addr");
        std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(1)).is_ok()
    })
    .expect("enter")
    .join()
    .expect("connect thread")
}

/// A UDP datagram sent from `src` on `ns` leaves (the output hook lets it through): `sendto`
/// fails with EPERM when an nftables output rule drops it.
fn sends_from(ns: &Netns, src: &'static str) -> bool {
    ns.enter(move || {
        let s = std::net::UdpSocket::bind(format!("{src}:0")).expect("bind");
        s.send_to(b"x", "198.18.9.2:9").is_ok()
    })
    .expect("enter")
    .join()
    .expect("send thread")
}

/// The first packet count of a `counter` in `listing`.
fn counted(listing: &str) -> u64 {
    listing
        .split("counter packets ")
        .skip(1)
        .filter_map(|s| s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .sum()
}

/// `nftables kafw` + `nftables_priority -5` + `nftables_counters`: while ka is a non-owner
/// no_accept MASTER, its VIP is in keepalived's set `vips` of table `ip kafw` (chains `in` and
/// `out` at priority -5, with counters); a connection to the VIP fails while one to the node's
/// own address succeeds, the drop is counted, a datagram from the VIP is refused (`out`
/// chain), and both tables (`ip` and `ip6`) go when ka stops. `vrrp_iptables` uses table
/// `keepalived` the same way (keepalived 2.2.7 built without iptables does so).
#[test]
fn nftables_keywords_make_keepalived_tables() {
    require_bin("nft");
    let (_bridge, hosts) = lan();
    let _listener = hosts[0]
        .enter(|| std::net::TcpListener::bind("0.0.0.0:8585").expect("listen"))
        .expect("enter")
        .join()
        .expect("listener");
    let inst = "vrrp_instance VI_F {\n state MASTER\n interface eth0\n virtual_router_id 91\n priority 150\n advert_int 0.1\n version 3\n no_accept\n virtual_ipaddress {\n 198.18.9.100/24\n }\n}\n";
    for (globals, table) in [(" nftables kafw\n nftables_priority -5\n nftables_counters\n", "kafw"), (" vrrp_iptables\n", "keepalived")] {
        let conf = write_conf(&format!("global_defs {{\n{globals}}}\n{inst}"));
        let ka = KaDaemon::start(&hosts[0], &ka_bin(), &unique_name("fw"), &["-f", &conf, "--no-xdp"]).expect("ka");
        wait_for("MASTER", WAIT, || (state(&ka) == "MASTER").then_some(()));
        let listing = wait_for("the VIP in the vips set", WAIT, || hosts[0].run(&["nft", "list", "table", "ip", table]).ok().filter(|t| t.contains("198.18.9.100")));
        assert!(hosts[0].run(&["nft", "list", "table", "ip6", table]).is_ok(), "{table}: no ip6 table");
        for part in ["set vips", "chain in", "chain out", "ip daddr @vips", "ip saddr @vips"] {
            assert!(listing.contains(part), "{table}: {part} missing:\n{listing}");
        }
        assert!(connects(&hosts[1], "198.18.9.1"), "the node's own address must accept connections");
        for _ in 0..2 {
            assert!(!connects(&hosts[1], "198.18.9.100"), "{table}: no_accept: a connection to the VIP succeeded");
        }
        assert!(!sends_from(&hosts[0], "198.18.9.100"), "{table}: a datagram from the VIP left");
        assert!(sends_from(&hosts[0], "198.18.9.1"), "a datagram from the node's own address was refused");
        let listing = hosts[0].run(&["nft", "list", "table", "ip", table]).expect("list");
        if table == "kafw" {
            assert!(listing.contains("priority filter - 5"), "nftables_priority -5 not applied:\n{listing}");
            assert!(counted(&listing) > 0, "nftables_counters: no dropped packet counted:\n{listing}");
        } else {
            assert!(listing.contains("priority filter - 1") && !listing.contains("counter"), "vrrp_iptables: keepalived's defaults expected:\n{listing}");
        }
        ka.stop().expect("stop");
        assert!(hosts[0].run(&["nft", "list", "table", "ip", table]).is_err(), "{table}: ip table left after stop");
        assert!(hosts[0].run(&["nft", "list", "table", "ip6", table]).is_err(), "{table}: ip6 table left after stop");
    }
}

/// Skips the test with an explicit reason when `bin` is missing.
fn require_bin(bin: &str) {
    assert!(
        std::process::Command::new(bin).arg("--version").output().is_ok(),
        "{bin} is not installed (Debian: apt-get install nftables)"
    );
}

/// `nft list table FAMILY TABLE` in `ns`, one trimmed line each, counters' numbers dropped
/// (`counter packets N bytes M` -> `counter`) and element lists split one per line.
fn listing(ns: &Netns, family: &str, table: &str) -> Option<Vec<String>> {
    let out = ns.run(&["nft", "list", "table", family, table]).ok()?;
    let mut lines = Vec::new();
    for l in out.lines() {
        let mut l = l.trim().to_owned();
        while let Some(i) = l.find("counter packets ") {
            let rest = &l[i + "counter packets ".len()..];
            let end = rest.find("bytes ").map(|b| b + "bytes ".len()).and_then(|b| rest[b..].find(' ').map(|e| b + e).or(Some(rest.len()))).unwrap_or(0);
            l = format!("{}counter{}", &l[..i], &rest[end..]);
        }
        for part in l.split([',', '{', '}']).map(str::trim).filter(|p| !p.is_empty()) {
            lines.push(part.to_owned());
        }
    }
    Some(lines)
}

/// keepalived 2.2.7 and ka, one after the other on the same node with the same file
/// (`nftables kafw`, `nftables_priority -5`, `nftables_counters`, a no_accept MASTER with an
/// IPv4 VIP and an IPv6 eVIP; then the same with `use_vmac`): every line of keepalived's
/// `ip kafw` and `ip6 kafw` tables (tables, chains, hooks and priorities, sets, maps and their
/// elements, rules with counters, the VMAC's IGMP/MLD and router-solicitation rules) is in ka's.
#[test]
fn tables_match_keepalived() {
    require_bin("nft");
    let (_bridge, hosts) = lan();
    let h = &hosts[0];
    for (extra, vmac) in [("", false), (" use_vmac\n", true)] {
        let conf = format!("global_defs {{\n nftables kafw\n nftables_priority -5\n nftables_counters\n}}\nvrrp_instance VI_K {{\n state MASTER\n interface eth0\n virtual_router_id 92\n priority 150\n advert_int 1\n version 3\n no_accept\n{extra} virtual_ipaddress {{\n 198.18.9.101/24\n }}\n virtual_ipaddress_excluded {{\n fd00:198:18:9::101/64\n }}\n}}\n");
        let ready = || {
            let v4 = listing(h, "ip", "kafw")?;
            let v6 = listing(h, "ip6", "kafw")?;
            let vmac_in = |l: &Vec<String>| !vmac || l.iter().any(|x| x.contains("\"vrrp.92\" : \"eth0\""));
            (v4.iter().any(|l| l == "198.18.9.101") && v6.iter().any(|l| l == "fd00:198:18:9::101") && vmac_in(&v4) && vmac_in(&v6)).then_some(())
        };
        let kd = ka_tests::keepalived::Keepalived::start(h, "fw", &conf).expect("keepalived");
        wait_for("keepalived's tables with the VIPs", WAIT, ready);
        let theirs: Vec<(&str, Vec<String>)> = ["ip", "ip6"].iter().map(|f| (*f, listing(h, f, "kafw").expect("keepalived's table"))).collect();
        kd.stop().expect("keepalived stop");
        wait_for("keepalived's tables gone", WAIT, || listing(h, "ip", "kafw").is_none().then_some(()));
        let path = write_conf(&conf);
        let ka = KaDaemon::start(h, &ka_bin(), &unique_name("fk"), &["-f", &path, "--no-xdp"]).expect("ka");
        wait_for("ka's tables with the VIPs", WAIT, ready);
        for (family, lines) in &theirs {
            let ours = listing(h, family, "kafw").expect("ka's table");
            let missing: Vec<&String> = lines.iter().filter(|l| !ours.contains(l)).collect();
            assert!(missing.is_empty(), "{family} kafw (use_vmac {vmac}): keepalived's lines missing in ka's table: {missing:?}\nkeepalived: {lines:#?}\nka: {ours:#?}");
        }
        ka.stop().expect("stop");
        wait_for("ka's tables gone", WAIT, || listing(h, "ip", "kafw").is_none().then_some(()));
    }
}

/// A reload that renames the firewall's table (`nftables kafw` -> `nftables other`) is refused,
/// as keepalived 2.2.7 refuses it ("Cannot change nftables table name at a reload"): the
/// running configuration and its table stay. A reload of the same table name is applied.
#[test]
fn reload_cannot_rename_the_table() {
    require_bin("nft");
    let (_bridge, hosts) = lan();
    let h = &hosts[0];
    let conf = |table: &str, prio: u8| {
        format!("global_defs {{\n nftables {table}\n}}\nvrrp_instance VI_R {{\n state MASTER\n interface eth0\n virtual_router_id 93\n priority {prio}\n advert_int 1\n no_accept\n virtual_ipaddress {{\n 198.18.9.103/24\n }}\n}}\n")
    };
    let path = write_conf(&conf("kafw", 150));
    let inst = unique_name("fr");
    let ka = KaDaemon::start(h, &ka_bin(), &inst, &["-f", &path, "--no-xdp"]).expect("ka");
    wait_for("the VIP in kafw", WAIT, || hosts[0].run(&["nft", "list", "table", "ip", "kafw"]).ok().filter(|t| t.contains("198.18.9.103")));
    let reload = || std::process::Command::new(ka_bin()).args(["--instance", &inst, "reload"]).output().expect("ka reload");
    std::fs::write(&path, conf("other", 150)).expect("conf");
    let out = reload();
    let err = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && err.contains("Cannot change nftables table name"), "the rename must be refused: {err}");
    assert!(hosts[0].run(&["nft", "list", "table", "ip", "other"]).is_err(), "a refused reload made the new table");
    assert!(hosts[0].run(&["nft", "list", "table", "ip", "kafw"]).expect("kafw").contains("198.18.9.103"), "the running table lost the VIP");
    std::fs::write(&path, conf("kafw", 160)).expect("conf");
    let out = reload();
    assert!(out.status.success(), "a reload keeping the table name: {}", String::from_utf8_lossy(&out.stderr));
    ka.stop().expect("stop");
}
