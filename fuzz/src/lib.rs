//! The bodies of ka's cargo-fuzz targets (`fuzz_targets/*.rs` call them), kept in a library so
//! the input formats are documented and tested in one place.
//!
//! Each function panics (a crash for libFuzzer) only when an invariant of ka breaks; bad input
//! itself must give errors, never panics.

use std::{net::IpAddr, path::Path, sync::OnceLock};

use ka::config::fs::MemFs;

/// The main file of a [`config_fs`] filesystem.
pub const MAIN_CONF: &str = "/etc/keepalived/keepalived.conf";
/// The directory relative names of a [`config_fs`] filesystem are in.
pub const CONF_DIR: &str = "/etc/keepalived";
/// Separator of the files of a [`config_fs`] input.
pub const FILE_SEP: &[u8] = b"\n=== ";
/// Most files of a [`config_fs`] input (the rest are ignored).
pub const MAX_FILES: usize = 16;

/// The filesystem an input of the `config_parse` target describes: the bytes up to the first
/// [`FILE_SEP`] are [`MAIN_CONF`]; each separator starts a further file whose name is the rest
/// of its line (relative to [`CONF_DIR`] unless absolute; a trailing `/` makes it a directory,
/// a leading `+x ` an executable file) and whose content is what follows, up to the next
/// separator.
pub fn config_fs(data: &[u8]) -> MemFs {
    let mut fs = MemFs::new();
    let mut parts = split(data, FILE_SEP);
    fs.add_file(MAIN_CONF, parts.next().unwrap_or_default(), false);
    for part in parts.take(MAX_FILES) {
        let (name, body) = match part.iter().position(|&b| b == b'\n') {
            Some(n) => (&part[..n], &part[n + 1..]),
            None => (part, &[][..]),
        };
        let name = String::from_utf8_lossy(name);
        let (name, exec) = match name.strip_prefix("+x ") {
            Some(n) => (n, true),
            None => (&*name, false),
        };
        if name.is_empty() {
            continue;
        }
        let path = Path::new(CONF_DIR).join(name);
        if name.ends_with('/') {
            fs.add_dir(path);
        } else {
            fs.add_file(path, body, exec);
        }
    }
    fs
}

fn split<'a>(data: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(sep.len()).position(|w| w == sep) {
            Some(i) => {
                rest = Some(&r[i + sep.len()..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// `config_parse`: loads the configuration of the filesystem [`config_fs`] describes, then
/// dumps the model as `ka check --dump` does. Never panics; every diagnostic names a file of
/// the input.
pub fn config_parse(data: &[u8]) {
    let fs = config_fs(data);
    let opts = ka::config::LoadOptions {
        config_id: Some("fuzz".into()),
        interfaces: ka::config::InterfaceCheck::Skip,
    };
    let loaded = ka::config::load_in(&fs, Path::new(MAIN_CONF), &opts).expect("the main file exists");
    for d in &loaded.diagnostics {
        if let Some(sp) = d.span {
            let p = loaded.sources.path(sp.file);
            assert!(p.starts_with("/"), "diagnostic about a file outside the input: {} ({})", p.display(), d.message);
        }
    }
    let _ = ka::config::dump::to_json(&loaded.config, &loaded.sources);
}

/// The running configuration `ka rs` requests resolve against in `control_decode`: every kind
/// of virtual server key, a duplicate key with two protocols, a real server on two ports.
const CONTROL_CONF: &str = "\
virtual_server 198.18.0.10 80 {\n lb_algo mh\n lb_kind DR\n protocol TCP\n\
 real_server 198.18.1.1 80 {\n weight 2\n }\n real_server 198.18.1.2 80 {\n }\n}\n\
virtual_server 198.18.0.10 80 {\n lb_algo rr\n lb_kind DR\n protocol UDP\n\
 real_server 198.18.1.1 80 {\n }\n real_server 198.18.1.1 81 {\n }\n}\n\
virtual_server [fd00:198:18::10]:443 {\n lb_algo rr\n lb_kind NAT\n protocol TCP\n\
 real_server fd00:198:18:1::1 8443 {\n }\n}\n\
virtual_server fwmark 7 {\n lb_algo rr\n lb_kind DR\n real_server 198.18.1.3 0 {\n }\n}\n\
virtual_server_group G {\n 198.18.0.20 80\n}\n\
virtual_server group G {\n lb_algo rr\n lb_kind DR\n protocol TCP\n real_server 198.18.1.4 80 {\n }\n}\n";

fn control_config() -> &'static ka::config::Config {
    static CFG: OnceLock<ka::config::Config> = OnceLock::new();
    CFG.get_or_init(|| {
        let l = ka::config::parse_str(CONTROL_CONF, Path::new("/fuzz/control.conf"), &ka::config::LoadOptions::default());
        let errors: Vec<_> = l.diagnostics.iter().filter(|d| d.severity == ka::config::Severity::Error).collect();
        assert!(errors.is_empty(), "control_decode's configuration: {errors:?}");
        l.config
    })
}

/// `control_decode`: a request line as a client sends it, decoded as the server does. A
/// decoded request re-encodes to JSON that decodes to the same request; a `ka rs` request is
/// then handled against [`CONTROL_CONF`] (twice: an override set again is idempotent) and every
/// answer serializes.
pub fn control_decode(data: &[u8]) {
    use ka::control::{decode_request, Request, Response};
    let req = match decode_request(data) {
        Ok(r) => r,
        Err(e) => {
            assert!(e.starts_with("bad request: "), "unexpected error form: {e}");
            return;
        }
    };
    let mut line = serde_json::to_vec(&req).expect("a request serializes");
    line.push(b'\n');
    assert_eq!(decode_request(&line).as_ref(), Ok(&req), "re-encoded request {}", String::from_utf8_lossy(&line));
    let Request::RealServer(rs) = &req else { return };
    let _ = (rs.service.to_string(), rs.server.to_string());
    let cfg = control_config();
    let mut overrides = ka::rs_control::Overrides::default();
    let first = ka::rs_control::handle(rs, Some(cfg), true, &mut overrides);
    let after_first = overrides.clone();
    let again = ka::rs_control::handle(rs, Some(cfg), true, &mut overrides);
    assert_eq!(overrides, after_first, "the same request twice changed the overrides again");
    match (&first, &again) {
        (Response::RealServer(a), Response::RealServer(b)) => assert_eq!(a.key, b.key),
        (Response::Error { .. }, Response::Error { .. }) => {}
        (a, b) => panic!("the same request answered differently: {a:?} then {b:?}"),
    }
    for r in [first, again, ka::rs_control::handle(rs, None, true, &mut overrides), ka::rs_control::handle(rs, Some(cfg), false, &mut overrides)] {
        serde_json::to_vec(&r).expect("an answer serializes");
    }
    let _ = overrides.report();
    let _ = overrides.retain_configured(cfg);
}

/// `sync_decode`: the IPVS sync v1 decoder (`ka::lb::sync::wire`) and what the BACKUP does
/// with a decoded entry. Whatever decodes re-encodes to bytes that decode to the same message.
/// Malformed datagrams are errors (counted by the daemon), never crashes.
pub fn sync_decode(data: &[u8]) {
    use ka::lb::sync::{
        index::{Remote, SyncIndex},
        wire::Message,
    };
    let Ok(m) = Message::decode(data) else { return };
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out.len(), m.len());
    let again = Message::decode(&out).expect("a re-encoded message decodes");
    assert_eq!(again, m);
    // The receiver's mapping of every entry, against an index naming one real server.
    let mut ix = SyncIndex::default();
    if let Some(c) = m.conns.first() {
        let (addr, family) = ka::lb::addr16(c.vaddr);
        let service = ka_common::lb::ServiceKey { addr, port: c.vport.to_be_bytes(), proto: c.protocol, family };
        ix.insert(0, Remote { service, addr: c.daddr, port: c.dport, method: ka::lb::Method::Dr });
        ix.set_persistence(service, 24, 60);
    }
    for c in &m.conns {
        let _ = ix.incoming(c);
    }
}

/// `bfd_decode`: the BFD Control packet codec (`ka::bfd::packet`) and a session fed with the
/// input as a datagram from its neighbour (three times, 10 ms apart, with its timers run).
/// Whatever decodes re-encodes to 24 bytes that decode to the same packet; a packet the session
/// sends never has both Poll and Final and always decodes. Malformed datagrams are errors
/// (counted by the daemon), never crashes.
pub fn bfd_decode(data: &[u8]) {
    use ka::bfd::{Action, ControlPacket, Received, SessionParams, SessionSpec, Sessions};
    if let Ok(p) = ControlPacket::decode(data) {
        let again = ControlPacket::decode(&p.encode()).expect("a re-encoded packet decodes");
        assert_eq!(again, p);
    }
    let neighbor: IpAddr = [198, 18, 0, 2].into();
    // A fixed seed: the session's discriminator is the same every run, so the corpus can
    // address it.
    let mut sessions = Sessions::new(1);
    let spec = SessionSpec { name: "f".into(), neighbor, local: None, ttl: 255, max_hops: 0, params: SessionParams::default() };
    sessions.configure(ka::vrrp::Time::ZERO, vec![spec]);
    for t in 0..3 {
        let now = ka::vrrp::Time::from_millis(t * 10);
        let mut out = sessions.receive(now, Received { src: neighbor, dst: None, ttl: Some(255), payload: data }).map(|(_, o)| o).unwrap_or_default();
        out.extend(sessions.poll(now));
        for o in out {
            if let Action::Send(p) = o.action {
                assert!(!(p.poll && p.final_), "P and F both set: {p:?}");
                assert_eq!(ControlPacket::decode(&p.encode()), Ok(p));
            }
        }
    }
}

/// `vrrp_decode`: `ka_common::vrrp` decoding and validation. Whatever decodes re-encodes to
/// bytes that decode to the same advert. The same input is also read as an IPv4 packet
/// carrying an IPsec AH advert (`vrrp::ah`): decode, ICV/SPI check and re-encoding. The first
/// byte picks the family and the checks; the rest is the VRRP message.
pub fn vrrp_decode(data: &[u8]) {
    use core::net::Ipv4Addr;

    use ka_common::vrrp::{
        ah::{encode_ah_advert, AhAdvert, AhIpFields, AhSeq},
        checksum, validate, Advert, Auth, Family, PseudoHeader, RxCheck, Version, VRRP_MAX_LEN,
    };

    let Some((&sel, msg)) = data.split_first() else { return };
    let family = if sel & 1 == 0 { Family::V4 } else { Family::V6 };

    if let Ok(advert) = Advert::decode(msg, family) {
        let mut buf = [0u8; VRRP_MAX_LEN];
        let n = advert.encode(&mut buf).expect("a decoded advert re-encodes");
        let again = Advert::decode(&buf[..n], family).expect("re-encoded advert decodes");
        assert_eq!(again, advert);
        // Only the v3 reserved bits may differ.
        assert_eq!(n, msg.len());
        let _ = advert.addrs().iter().count();
    }

    let version = if sel & 2 == 0 { Version::V2 } else { Version::V3 };
    let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let dst = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
    let vips = [src];
    let check = RxCheck {
        version,
        family,
        vrid: sel >> 4,
        check_ttl: sel & 4 != 0,
        pseudo: Some(PseudoHeader::for_advert(version, Default::default(), src, dst, None)),
        auth: if sel & 8 != 0 { Auth::pass(b"secret") } else { Auth::None },
        adver_int_centis: 100,
        vips: (sel & 8 != 0).then_some(&vips[..]),
    };
    let _ = validate(msg, 255, &check);
    let _ = checksum(msg, &PseudoHeader::None);

    if let Ok(a) = AhAdvert::decode(msg) {
        let key = *b"s3cret\0\0";
        let unicast = sel & 4 != 0;
        let mut seq = AhSeq::new();
        if a.verify(&key, unicast).is_ok() {
            let _ = seq.receive(a.ah.seq, sel & 8 != 0);
        }
        // keepalived's own layout (IHL 5) re-encodes byte for byte once signed with `key`.
        if a.ip.len() == 20 && a.ip[1] == 0xc0 && a.ip[6] == 0 && a.ip[7] == 0 {
            let mut buf = [0u8; 20 + 24 + VRRP_MAX_LEN];
            let fields = AhIpFields { id: a.id(), src: a.src(), dst: a.dst(), ttl: a.ttl() };
            let n = encode_ah_advert(&mut buf, &fields, a.ah.seq, &key, unicast, a.vrrp).expect("fits");
            let again = AhAdvert::decode(&buf[..n]).expect("re-encoded AH advert decodes");
            assert_eq!(again.verify(&key, unicast), Ok(()));
            assert_eq!(again.vrrp, a.vrrp);
        }
    }
}

#[cfg(test)]
mod tests {
    use ka::config::fs::ConfigFs as _;

    use super::*;

    /// The `config_parse` input format: main file, relative and absolute names, a directory, an
    /// executable file, an empty name ignored.
    #[test]
    fn config_inputs_describe_a_filesystem() {
        let fs = config_fs(b"include conf.d/*.conf\n=== conf.d/a.conf\nx 1\n=== /tmp/b.conf\n=== d/\n=== +x run.sh\necho\n=== \nlost");
        assert_eq!(fs.read(Path::new(MAIN_CONF)).expect("main"), b"include conf.d/*.conf");
        assert_eq!(fs.read(Path::new("/etc/keepalived/conf.d/a.conf")).expect("a"), b"x 1");
        assert_eq!(fs.read(Path::new("/tmp/b.conf")).expect("b"), b"");
        assert!(fs.stat(Path::new("/etc/keepalived/d")).expect("d").is_dir);
        assert!(fs.stat(Path::new("/etc/keepalived/run.sh")).expect("run.sh").executable);
        config_parse(b"include conf.d/*.conf\n=== conf.d/a.conf\nvrrp_instance V {\n}\n");
    }
}
