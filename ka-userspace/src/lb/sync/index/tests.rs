//! The sender's and the receiver's mapping between backend ids and real-server names.

use super::*;
use crate::lb::sync::wire::Param;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn svc(vip: &str, port: u16, proto: u8) -> ServiceKey {
    let (addr, family) = addr16(ip(vip));
    ServiceKey { addr, port: port.to_be_bytes(), proto, family }
}

const WEB: (&str, u16, u8) = ("198.18.40.100", 8080, 6);
const DNS6: (&str, u16, u8) = ("fd00:198:18::100", 53, 17);

/// Director A: web (DR, persistent per /24 for 360 s) with rs .11 (id 3) and .12 (id 4); DNS
/// over IPv6 (NAT) with one server (id 9); an all-port service on .200 (id 12).
fn director_a() -> SyncIndex {
    let mut ix = SyncIndex::default();
    let web = svc(WEB.0, WEB.1, WEB.2);
    ix.insert(3, Remote { service: web, addr: ip("198.18.40.11"), port: 8080, method: Method::Dr });
    ix.insert(4, Remote { service: web, addr: ip("198.18.40.12"), port: 8080, method: Method::Dr });
    ix.set_persistence(web, 24, 360);
    ix.insert(9, Remote { service: svc(DNS6.0, DNS6.1, DNS6.2), addr: ip("fd00:198:18:1::11"), port: 5353, method: Method::Nat });
    ix.insert(12, Remote { service: svc("198.18.40.200", 0, 6), addr: ip("198.18.40.13"), port: 0, method: Method::Tun });
    ix
}

/// Director B: the same services, its backends allocated in another order (other ids).
fn director_b() -> SyncIndex {
    let mut ix = SyncIndex::default();
    let web = svc(WEB.0, WEB.1, WEB.2);
    ix.insert(0, Remote { service: web, addr: ip("198.18.40.12"), port: 8080, method: Method::Dr });
    ix.insert(1, Remote { service: web, addr: ip("198.18.40.11"), port: 8080, method: Method::Dr });
    ix.set_persistence(web, 24, 360);
    ix.insert(7, Remote { service: svc(DNS6.0, DNS6.1, DNS6.2), addr: ip("fd00:198:18:1::11"), port: 5353, method: Method::Nat });
    ix.insert(8, Remote { service: svc("198.18.40.200", 0, 6), addr: ip("198.18.40.13"), port: 0, method: Method::Tun });
    ix
}

fn key(src: &str, sport: u16, dst: &str, dport: u16, proto: u8) -> FlowKey {
    let (s, family) = addr16(ip(src));
    let (d, _) = addr16(ip(dst));
    FlowKey { src: s, dst: d, sport: sport.to_be_bytes(), dport: dport.to_be_bytes(), proto, family, _pad: [0; 2] }
}

fn ev(k: FlowKey, backend: u32) -> SyncEvent {
    SyncEvent { key: k, backend, kind: ka_common::sync::SYNC_EV_NEW }
}

/// A new flow on A becomes the IPVS entries an IPVS backup expects: the connection (method
/// flag, ESTABLISHED, the protocol's timeout) and, for a persistent service, its client's
/// template (client masked, client port 0, the service's port).
#[test]
fn sender_names_real_servers() {
    let a = director_a();
    let t = Timeouts::default();
    let (conn, tmpl) = a.outgoing(&ev(key("198.18.7.9", 50000, WEB.0, 8080, 6), 4), t).expect("known backend");
    let want = Conn {
        protocol: 6,
        flags: flags::DROUTE,
        state: state::TCP_ESTABLISHED,
        cport: 50000,
        vport: 8080,
        dport: 8080,
        fwmark: 0,
        timeout: 900,
        caddr: ip("198.18.7.9"),
        vaddr: ip(WEB.0),
        daddr: ip("198.18.40.12"),
        params: vec![],
    };
    assert_eq!(conn, want);
    let want_tmpl = Conn { flags: flags::TEMPLATE | flags::DROUTE, state: 0, cport: 0, timeout: 360, caddr: ip("198.18.7.0"), ..want };
    assert_eq!(tmpl, Some(want_tmpl));
    let (conn, tmpl) = a.outgoing(&ev(key("fd00:198:18::2", 40000, DNS6.0, 53, 17), 9), t).expect("known backend");
    assert_eq!((conn.flags, conn.state, conn.timeout, conn.dport, conn.daddr), (flags::MASQ, 0, 300, 5353, ip("fd00:198:18:1::11")));
    assert_eq!(tmpl, None, "no persistence, no template");
    assert_eq!(a.outgoing(&ev(key("198.18.7.9", 1, WEB.0, 8080, 6), 77), t), Err(SendDrop::UnknownBackend));
}

/// What A sends, B installs on its own ids for the same real servers.
#[test]
fn receiver_maps_names_to_its_own_ids() {
    let (a, b) = (director_a(), director_b());
    let t = Timeouts::default();
    let cases: Vec<(&str, FlowKey, u32, u32)> = vec![
        ("web to .12", key("198.18.7.9", 50000, WEB.0, 8080, 6), 4, 0),
        ("web to .11", key("198.18.7.9", 50001, WEB.0, 8080, 6), 3, 1),
        ("dns over IPv6, NAT", key("fd00:198:18::2", 40000, DNS6.0, 53, 17), 9, 7),
        ("all-port service: found under port 0", key("198.18.7.9", 50002, "198.18.40.200", 443, 6), 12, 8),
    ];
    for (name, k, on_a, on_b) in cases {
        let (conn, _) = a.outgoing(&ev(k, on_a), t).expect("known backend");
        let rec = b.incoming(&conn).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(rec, SyncInstall { key: k, backend: on_b, kind: SYNC_INSTALL_CONN }, "{name}");
    }
    // The template: the client masked by B's own granularity, source port 0, service port.
    let (_, tmpl) = a.outgoing(&ev(key("198.18.7.9", 50000, WEB.0, 8080, 6), 3), t).expect("known backend");
    let rec = b.incoming(&tmpl.expect("template")).expect("installable");
    assert_eq!(rec, SyncInstall { key: key("198.18.7.0", 0, WEB.0, 8080, 6), backend: 1, kind: SYNC_INSTALL_TEMPLATE });
}

/// Entries the receiver cannot install are dropped one by one, with a reason; optional
/// parameters ka does not know and sequence data are ignored.
#[test]
fn receiver_drops_entries_it_cannot_install() {
    let b = director_b();
    let (base, _) = director_a().outgoing(&ev(key("198.18.7.9", 50000, WEB.0, 8080, 6), 3), Timeouts::default()).expect("known backend");
    let param = |ptype: u8| vec![Param { ptype, data: vec![0; if ptype == OPT_SEQ_DATA { 24 } else { 2 }] }];
    let cases: Vec<(&str, Conn, Result<u32, EntryDrop>)> = vec![
        ("as sent", base.clone(), Ok(1)),
        ("sequence data ignored", Conn { params: param(OPT_SEQ_DATA), ..base.clone() }, Ok(1)),
        ("unknown optional parameter ignored", Conn { params: param(OPT_F_PARAM | 9), ..base.clone() }, Ok(1)),
        ("unknown mandatory parameter", Conn { params: param(9), ..base.clone() }, Err(EntryDrop::UnknownParam)),
        ("persistence-engine data", Conn { params: param(OPT_PE_DATA), ..base.clone() }, Err(EntryDrop::PersistenceEngine)),
        ("SCTP", Conn { protocol: 132, ..base.clone() }, Err(EntryDrop::Protocol)),
        ("local node", Conn { flags: flags::LOCALNODE, ..base.clone() }, Err(EntryDrop::Method)),
        ("bypass", Conn { flags: flags::BYPASS, ..base.clone() }, Err(EntryDrop::Method)),
        ("another VIP", Conn { vaddr: ip("198.18.40.101"), ..base.clone() }, Err(EntryDrop::NoService)),
        ("another port", Conn { vport: 8081, ..base.clone() }, Err(EntryDrop::NoService)),
        ("UDP on a TCP service", Conn { protocol: 17, ..base.clone() }, Err(EntryDrop::NoService)),
        ("unknown real server", Conn { daddr: ip("198.18.40.99"), ..base.clone() }, Err(EntryDrop::NoRealServer)),
        ("real server on another port", Conn { dport: 8081, ..base.clone() }, Err(EntryDrop::NoRealServer)),
        (
            "template of a service without persistence",
            Conn { flags: flags::TEMPLATE | flags::MASQ, protocol: 17, vaddr: ip(DNS6.0), vport: 53, caddr: ip("fd00:198:18::"), daddr: ip("fd00:198:18:1::11"), dport: 5353, ..base.clone() },
            Err(EntryDrop::NotPersistent),
        ),
    ];
    for (name, conn, want) in cases {
        assert_eq!(b.incoming(&conn).map(|r| r.backend), want, "{name}");
    }
    for r in EntryDrop::ALL {
        assert!(!r.reason().is_empty());
    }
}
