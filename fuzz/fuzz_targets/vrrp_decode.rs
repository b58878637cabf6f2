//! Fuzzes `ka_common::vrrp` decoding and validation: never panics, and whatever decodes
//! re-encodes to bytes that decode to the same advert. The same input is also read as an IPv4
//! packet carrying an IPsec AH advert (`vrrp::ah`): decode, ICV/SPI check and re-encoding.
#![no_main]

use core::net::{IpAddr, Ipv4Addr};

use ka_common::vrrp::{
    ah::{encode_ah_advert, AhAdvert, AhIpFields, AhSeq},
    checksum, validate, Advert, Auth, Family, PseudoHeader, RxCheck, Version, VRRP_MAX_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte picks the family and the checks; the rest is the VRRP message.
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
});
