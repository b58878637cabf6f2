//! The daemon's network I/O against a real kernel, in namespaces: VRRP raw sockets (multicast,
//! TTL 255 on the wire and reported on receive, IPv4 and IPv6), the rtnetlink worker (VIPs
//! with label/brd/scope, idempotent add/delete, macvlan VMAC), and gratuitous ARP / unsolicited
//! NA frames seen by a capture on the peer.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use ka::net::{
    garp::{garp_frame, na_frame, virtual_mac, FrameSender},
    netlink::{self, AddrSpec},
    vrrp_socket::VrrpSocket,
};
use ka_common::vrrp::{VRRP_MCAST_V4, VRRP_MCAST_V6};
use ka_tests::{capture::Capture, netns, netns::Netns, require_root};

/// Runs `f` on a current-thread tokio runtime on a thread inside `ns`.
fn in_ns<T: Send + 'static>(ns: &Netns, f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    ns.enter(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
    })
    .expect("enter namespace")
    .join()
    .expect("namespace thread panicked")
}

fn pair() -> (Netns, Netns) {
    let a = Netns::new("a").expect("netns");
    let b = Netns::new("b").expect("netns");
    netns::veth(&a, "eth0", &["198.18.3.1/24", "fd00:198:18:3::1/64"], &b, "eth0", &["198.18.3.2/24", "fd00:198:18:3::2/64"])
        .expect("veth");
    (a, b)
}

fn ifindex(ns: &Netns, name: &'static str) -> u32 {
    ns.enter(move || nix::net::if_::if_nametoindex(name).expect("ifindex")).expect("enter").join().expect("join")
}

fn link_local(ns: &Netns) -> Ipv6Addr {
    let out = ns.run(&["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]).expect("ip addr");
    let addr = out.split_whitespace().skip_while(|w| *w != "inet6").nth(1).expect("link-local address");
    addr.split('/').next().expect("addr").parse().expect("ipv6")
}

/// An advert sent to the IPv4 group arrives with TTL 255, our source and the group as
/// destination, byte for byte.
#[test]
fn vrrp_multicast_v4_round_trip() {
    require_root();
    let (a, b) = pair();
    let (ia, ib) = (ifindex(&a, "eth0"), ifindex(&b, "eth0"));
    let msg: Vec<u8> = vec![0x21, 7, 100, 1, 0, 1, 0xb9, 0xe2, 198, 18, 3, 100, 0, 0, 0, 0, 0, 0, 0, 0];
    let rx = a
        .enter(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
            rt.block_on(async move {
                let s = VrrpSocket::open("eth0", ia, Some(IpAddr::V4(Ipv4Addr::new(198, 18, 3, 1))), Some(IpAddr::V4(VRRP_MCAST_V4)), false)
                    .expect("socket a");
                let mut buf = vec![0u8; 2048];
                let r = tokio::time::timeout(Duration::from_secs(10), s.recv(&mut buf)).await.expect("advert within 10 s").expect("recv");
                (r.clone(), buf[r.offset..r.offset + r.len].to_vec())
            })
        })
        .expect("enter a");
    let sent = msg.clone();
    in_ns(&b, async move {
        let s = VrrpSocket::open("eth0", ib, Some(IpAddr::V4(Ipv4Addr::new(198, 18, 3, 2))), Some(IpAddr::V4(VRRP_MCAST_V4)), false)
            .expect("socket b");
        // Resend until the receiver (started concurrently) has joined; bounded.
        for _ in 0..50 {
            s.send_to(&sent, IpAddr::V4(VRRP_MCAST_V4)).await.expect("send");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (r, payload) = rx.join().expect("receiver");
    assert_eq!(r.ttl, 255);
    assert_eq!(r.src, IpAddr::V4(Ipv4Addr::new(198, 18, 3, 2)));
    assert_eq!(r.dst, IpAddr::V4(VRRP_MCAST_V4));
    assert_eq!(payload, msg);
}

/// Same over IPv6: link-local source, ff02::12 destination, hop limit 255 reported.
#[test]
fn vrrp_multicast_v6_round_trip() {
    require_root();
    let (a, b) = pair();
    let (ia, ib) = (ifindex(&a, "eth0"), ifindex(&b, "eth0"));
    let ll_b = link_local(&b);
    let msg: Vec<u8> = vec![0x31, 7, 100, 1, 0, 100, 0, 0];
    let rx = a
        .enter(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
            rt.block_on(async move {
                let s = VrrpSocket::open("eth0", ia, None, Some(IpAddr::V6(VRRP_MCAST_V6)), true).expect("socket a");
                let mut buf = vec![0u8; 2048];
                let r = tokio::time::timeout(Duration::from_secs(10), s.recv(&mut buf)).await.expect("advert within 10 s").expect("recv");
                (r.clone(), buf[r.offset..r.offset + r.len].to_vec())
            })
        })
        .expect("enter a");
    let sent = msg.clone();
    in_ns(&b, async move {
        let s = VrrpSocket::open("eth0", ib, Some(IpAddr::V6(ll_b)), Some(IpAddr::V6(VRRP_MCAST_V6)), true).expect("socket b");
        for _ in 0..50 {
            s.send_to(&sent, IpAddr::V6(VRRP_MCAST_V6)).await.expect("send");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (r, payload) = rx.join().expect("receiver");
    assert_eq!(r.ttl, 255);
    assert_eq!(r.src, IpAddr::V6(ll_b));
    assert_eq!(r.dst, IpAddr::V6(VRRP_MCAST_V6));
    assert_eq!(payload, msg);
}

/// VIPs go on and off through the worker, honouring label, brd and scope, idempotently; a
/// macvlan with the VRRP virtual MAC can be created and removed.
#[test]
fn netlink_worker_manages_vips_and_vmacs() {
    require_root();
    let (a, _b) = pair();
    let ia = ifindex(&a, "eth0");
    in_ns(&a, async move {
        let (nl, _task) = netlink::spawn(None).expect("netlink");
        let link = nl.link("eth0").await.expect("eth0");
        assert_eq!(link.index, ia);
        let vip = AddrSpec {
            label: Some("eth0:vip".into()),
            broadcast: Some(Ipv4Addr::new(198, 18, 3, 255)),
            ..AddrSpec::new(ia, IpAddr::V4(Ipv4Addr::new(198, 18, 3, 100)), 24)
        };
        nl.add_addr(vip.clone()).await.expect("add vip");
        nl.add_addr(vip.clone()).await.expect("adding twice is not an error");
        let host = AddrSpec { scope: Some(254), ..AddrSpec::new(ia, IpAddr::V4(Ipv4Addr::new(198, 18, 3, 101)), 32) };
        nl.add_addr(host.clone()).await.expect("add host-scope vip");
        let v6 = AddrSpec::new(ia, "fd00:198:18:3::100".parse().expect("v6"), 128);
        nl.add_addr(v6.clone()).await.expect("add v6 vip");
        let addrs = nl.list_addrs(Some(ia)).await.expect("list");
        assert!(addrs.contains(&(ia, vip.addr, 24)), "{addrs:?}");
        assert!(addrs.contains(&(ia, v6.addr, 128)), "{addrs:?}");
        let vmac = virtual_mac(51, false);
        let vidx = nl.add_macvlan(ia, "vrrp.51", vmac).await.expect("macvlan");
        let vlink = nl.link("vrrp.51").await.expect("vmac link");
        assert_eq!(vlink.index, vidx);
        assert_eq!(vlink.mac, vmac.to_vec());
    });
    let show = a.run(&["ip", "-o", "addr", "show", "dev", "eth0"]).expect("ip addr");
    let vip_line = show.lines().find(|l| l.contains("198.18.3.100/24")).unwrap_or_else(|| panic!("VIP missing: {show}"));
    assert!(vip_line.contains("brd 198.18.3.255") && vip_line.contains("eth0:vip"), "{vip_line}");
    assert!(show.contains("198.18.3.101/32 scope host"), "{show}");
    assert!(show.contains("fd00:198:18:3::100/128"), "{show}");
    assert!(!show.contains("fd00:198:18:3::100/128 scope global tentative"), "VIP must skip DAD: {show}");
    in_ns(&a, async move {
        let (nl, _task) = netlink::spawn(None).expect("netlink");
        for spec in [
            AddrSpec::new(ia, IpAddr::V4(Ipv4Addr::new(198, 18, 3, 100)), 24),
            AddrSpec::new(ia, IpAddr::V4(Ipv4Addr::new(198, 18, 3, 101)), 32),
            AddrSpec::new(ia, "fd00:198:18:3::100".parse().expect("v6"), 128),
        ] {
            nl.del_addr(spec.clone()).await.expect("delete vip");
            nl.del_addr(spec).await.expect("deleting twice is not an error");
        }
        let vlink = nl.link("vrrp.51").await.expect("vmac link");
        nl.del_link(vlink.index).await.expect("delete vmac");
        assert!(nl.link("vrrp.51").await.is_err(), "vmac still there");
    });
    let show = a.run(&["ip", "-o", "addr", "show", "dev", "eth0"]).expect("ip addr");
    assert!(!show.contains("198.18.3.100") && !show.contains("198.18.3.101") && !show.contains("::100/128"), "{show}");
}

/// A gratuitous ARP and an unsolicited NA sent on A's eth0 are seen on B's eth0 exactly as
/// built.
#[test]
fn garp_and_na_reach_the_peer() {
    require_root();
    let (a, b) = pair();
    let ia = ifindex(&a, "eth0");
    let mac = virtual_mac(9, false);
    let garp = garp_frame(mac, Ipv4Addr::new(198, 18, 3, 100));
    let na = na_frame(mac, "fe80::1".parse().expect("ll"), "fd00:198:18:3::100".parse().expect("v6"));
    let rx = b
        .enter(move || {
            let arp = Capture::open("eth0", 0x0806).expect("capture arp");
            let v6 = Capture::open("eth0", 0x86dd).expect("capture ipv6");
            let deadline = Instant::now() + Duration::from_secs(10);
            let g = arp.next_matching(deadline, |f| f.get(6..12) == Some(&mac[..]));
            let n = v6.next_matching(deadline, |f| f.get(54) == Some(&136) && f.get(6..12) == Some(&mac[..]));
            (g, n)
        })
        .expect("enter b");
    a.enter(move || {
        let tx = FrameSender::open(ia).expect("frame sender");
        for _ in 0..20 {
            tx.send(&garp).expect("send garp");
            tx.send(&na).expect("send na");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .expect("enter a")
    .join()
    .expect("sender");
    let (g, n) = rx.join().expect("capture thread");
    assert_eq!(g.as_deref(), Some(&garp[..]), "gratuitous ARP not seen as sent");
    assert_eq!(n.as_deref(), Some(&na[..]), "unsolicited NA not seen as sent");
}

/// The director's `ip -d neigh show ADDR dev eth0` line in `ns`.
fn neigh(ns: &Netns, addr: &str) -> String {
    ns.run(&["ip", "-d", "neigh", "show", addr, "dev", "eth0"]).unwrap_or_default().trim().to_owned()
}

/// The worker's next-hop requests. `route_get` is a FIB lookup: the output interface, and the
/// gateway only for a routed destination; nothing for local or unroutable addresses. A
/// managed, marked resolution request makes the kernel resolve the peer with no other
/// traffic, and the dump reports it managed with ka's mark; a one-shot (`NTF_USE`) request
/// resolves without making the entry managed; deleting is idempotent.
#[test]
fn netlink_worker_looks_up_and_resolves_next_hops() {
    require_root();
    let (a, b) = pair();
    a.run(&["ip", "route", "add", "198.18.5.0/24", "via", "198.18.3.2"]).expect("route");
    let idx = ifindex(&a, "eth0");
    let peer_mac = b.run(&["cat", "/sys/class/net/eth0/address"]).expect("mac").trim().to_owned();
    let (onlink, via, local, unroutable) = in_ns(&a, async move {
        let (nl, _task) = netlink::spawn(None).expect("netlink");
        let get = |s: &str| {
            let nl = nl.clone();
            let addr: IpAddr = s.parse().expect("ip");
            async move { nl.route_get(addr).await.expect("route get") }
        };
        let r = (get("198.18.3.2").await, get("198.18.5.7").await, get("198.18.3.1").await, get("198.18.77.1").await);
        nl.neigh_resolve(idx, "198.18.3.2".parse().expect("ip"), true, Some(ka::lb::nexthop::NEIGH_PROTOCOL)).await.expect("managed");
        nl.neigh_resolve(idx, "fd00:198:18:3::2".parse().expect("ip"), false, None).await.expect("use");
        r
    });
    assert_eq!(onlink, Some(netlink::RouteHop { ifindex: idx, gateway: None }), "on-link");
    assert_eq!(via, Some(netlink::RouteHop { ifindex: idx, gateway: Some("198.18.3.2".parse().expect("ip")) }), "routed");
    assert_eq!(local, None, "a local address has no next hop");
    assert_eq!(unroutable, None, "no route");
    let usable = |l: &str| ["REACHABLE", "STALE", "DELAY", "PROBE"].iter().any(|s| l.contains(s));
    let line = ka_tests::wait_for("managed entry resolved", Duration::from_secs(10), || {
        let l = neigh(&a, "198.18.3.2");
        usable(&l).then_some(l)
    });
    assert!(line.contains("managed") && line.contains("proto keepalived") && line.contains(&peer_mac), "{line}");
    let line = ka_tests::wait_for("one-shot entry resolved", Duration::from_secs(10), || {
        let l = neigh(&a, "fd00:198:18:3::2");
        usable(&l).then_some(l)
    });
    assert!(!line.contains("managed") && line.contains(&peer_mac), "{line}");
    let table = in_ns(&a, async move {
        let (nl, _task) = netlink::spawn(None).expect("netlink");
        let t = nl.neighbours().await.expect("dump");
        nl.neigh_del(idx, "198.18.3.2".parse().expect("ip")).await.expect("delete");
        nl.neigh_del(idx, "198.18.3.2".parse().expect("ip")).await.expect("delete again");
        t
    });
    let e = table.iter().find(|n| n.addr == "198.18.3.2".parse::<IpAddr>().expect("ip")).expect("in the dump");
    assert!(e.managed && e.protocol == ka::lb::nexthop::NEIGH_PROTOCOL && e.ifindex == idx, "{e:?}");
    assert_eq!(e.mac.as_deref().map(|m| m.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")), Some(peer_mac.clone()));
    assert_eq!(neigh(&a, "198.18.3.2"), "", "deleted");
}
