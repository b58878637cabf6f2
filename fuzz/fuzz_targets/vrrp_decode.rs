//! Fuzzes `ka_common::vrrp` decoding and validation: never panics, and whatever decodes
//! re-encodes to bytes that decode to the same advert.
#![no_main]

use core::net::{IpAddr, Ipv4Addr};

use ka_common::vrrp::{
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
});
