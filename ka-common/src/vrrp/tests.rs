//! Byte/struct fixture pairs checked both ways (decode and encode) with a hex diff, checksum
//! flavours, validation rules and error cases. The fixture bytes were computed independently
//! (Python `struct` + RFC 1071 sum), not by this code.

extern crate std;

use std::string::String;
use std::vec::Vec;
use std::{format, vec};

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("fixture hex"))
        .collect()
}

/// Asserts two byte strings are equal, showing both in hex with a caret under each difference.
fn assert_bytes_eq(got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let h = |b: &[u8]| b.iter().map(|x| format!("{x:02x} ")).collect::<String>();
    let marks: String = (0..got.len().max(want.len()))
        .map(|i| {
            if got.get(i) == want.get(i) {
                "   "
            } else {
                "^^ "
            }
        })
        .collect();
    panic!(
        "bytes differ\n got: {}\nwant: {}\n      {}",
        h(got),
        h(want),
        marks
    );
}

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

const V2_PASS: &str = "2133640101018ca9c0a8c8113132333400000000";
const V2_NONE: &str = "2101fe020003ccf50a0000010a0000020000000000000000";
const V2_V6: &str = "2109640100014d3a20010db8000000000000000000000001";
const V3_V4_MCAST: &str = "3101960100648c560a000001";
const V3_V4_UNICAST: &str = "31026401006441050a090909";
const V3_V4_OLD: &str = "3102640100646bf50a090909";
const V3_V4_NOPH: &str = "31026401006457860a090909";
const V3_V6: &str =
    "3107c8020032db59fe80000000000000000000000000010020010db8000000000000000000000001";

/// Decodes `bytes`, compares with `want`, re-encodes and compares with `bytes`.
fn both_ways(bytes: &[u8], family: Family, want: Advert<'_>) {
    let got = Advert::decode(bytes, family).expect("fixture decodes");
    assert_eq!(got, want);
    let mut buf = [0u8; VRRP_MAX_LEN];
    let n = want.encode(&mut buf).expect("fixture encodes");
    assert_bytes_eq(&buf[..n], bytes);
}

#[test]
fn v2_pass_fixture_both_ways() {
    let b = hex(V2_PASS);
    let addrs = [192, 168, 200, 17];
    let want = Advert::V2(AdvertV2 {
        vrid: 51,
        priority: 100,
        auth_type: AuthType::Pass,
        adver_int: 1,
        checksum: 0x8ca9,
        addrs: AddrList::new(&addrs, Family::V4).expect("one address"),
        auth_data: *b"1234\0\0\0\0",
    });
    both_ways(&b, Family::V4, want);
    assert_eq!(checksum(&b, &PseudoHeader::None), 0);
}

#[test]
fn v2_no_auth_two_addresses_both_ways() {
    let b = hex(V2_NONE);
    let addrs = [10, 0, 0, 1, 10, 0, 0, 2];
    let want = Advert::V2(AdvertV2 {
        vrid: 1,
        priority: 254,
        auth_type: AuthType::None,
        adver_int: 3,
        checksum: 0xccf5,
        addrs: AddrList::new(&addrs, Family::V4).expect("two addresses"),
        auth_data: [0; 8],
    });
    both_ways(&b, Family::V4, want);
    let a = Advert::decode(&b, Family::V4).expect("decodes");
    assert_eq!(
        a.addrs().iter().collect::<Vec<_>>(),
        vec![v4([10, 0, 0, 1]), v4([10, 0, 0, 2])]
    );
    assert_eq!(a.adver_int_centis(), 300);
}

#[test]
fn v2_over_ipv6_has_no_auth_trailer_both_ways() {
    let b = hex(V2_V6);
    let addrs = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets();
    let want = Advert::V2(AdvertV2 {
        vrid: 9,
        priority: 100,
        auth_type: AuthType::None,
        adver_int: 1,
        checksum: 0x4d3a,
        addrs: AddrList::new(&addrs, Family::V6).expect("one address"),
        auth_data: [0; 8],
    });
    both_ways(&b, Family::V6, want);
}

#[test]
fn v3_ipv4_multicast_fixture_both_ways_and_checksum() {
    let b = hex(V3_V4_MCAST);
    let addrs = [10, 0, 0, 1];
    let want = AdvertV3 {
        vrid: 1,
        priority: 150,
        max_adver_int: 100,
        checksum: 0x8c56,
        addrs: AddrList::new(&addrs, Family::V4).expect("one address"),
    };
    both_ways(&b, Family::V4, Advert::V3(want));
    let src = v4([192, 168, 1, 10]);
    let dst = IpAddr::V4(VRRP_MCAST_V4);
    let ph = PseudoHeader::for_advert(Version::V3, V3Checksum::Standard, src, dst, None);
    assert_eq!(checksum(&b, &ph), 0);
    // Building from scratch computes the same checksum.
    let mut buf = [0u8; 64];
    let n = AdvertV3 {
        checksum: 0,
        ..want
    }
    .encode_checksummed(&mut buf, &ph)
    .expect("encodes");
    assert_bytes_eq(&buf[..n], &b);
}

/// The three IPv4 VRRPv3 checksum flavours of one advert (10.1.1.1 → unicast 10.1.1.2) differ,
/// each verifies only under its configured flavour, and encoding with a flavour reproduces it.
#[test]
fn v3_ipv4_checksum_flavours_are_config() {
    let src = v4([10, 1, 1, 1]);
    let dst = v4([10, 1, 1, 2]);
    let addrs = [10, 9, 9, 9];
    let base = AdvertV3 {
        vrid: 2,
        priority: 100,
        max_adver_int: 100,
        checksum: 0,
        addrs: AddrList::new(&addrs, Family::V4).expect("one address"),
    };
    for (fixture, mode) in [
        (V3_V4_UNICAST, V3Checksum::Standard),
        (V3_V4_OLD, V3Checksum::OldUnicast),
        (V3_V4_NOPH, V3Checksum::NoPseudoHeader),
    ] {
        let b = hex(fixture);
        let ph = PseudoHeader::for_advert(Version::V3, mode, src, dst, None);
        let mut buf = [0u8; 64];
        let n = base.encode_checksummed(&mut buf, &ph).expect("encodes");
        assert_bytes_eq(&buf[..n], &b);
        for other in [
            V3Checksum::Standard,
            V3Checksum::OldUnicast,
            V3Checksum::NoPseudoHeader,
        ] {
            let ph = PseudoHeader::for_advert(Version::V3, other, src, dst, None);
            assert_eq!(
                checksum(&b, &ph) == 0,
                other == mode,
                "{fixture} under {other:?}"
            );
        }
        assert_eq!(detect_v3_checksum(&b, src, dst, None), Some(mode));
    }
}

/// keepalived's `mcast_dst_ip` changes the group the old unicast checksum uses.
#[test]
fn old_unicast_checksum_uses_configured_group() {
    let src = v4([10, 1, 1, 1]);
    let dst = v4([10, 1, 1, 2]);
    let group = Ipv4Addr::new(224, 0, 0, 99);
    let ph = PseudoHeader::for_advert(Version::V3, V3Checksum::OldUnicast, src, dst, Some(group));
    assert_eq!(
        ph,
        PseudoHeader::V4 {
            src: [10, 1, 1, 1],
            dst: group.octets()
        }
    );
}

#[test]
fn v3_ipv6_fixture_both_ways_and_checksum() {
    let b = hex(V3_V6);
    let mut addrs = [0u8; 32];
    addrs[..16].copy_from_slice(&Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x100).octets());
    addrs[16..].copy_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets());
    let want = AdvertV3 {
        vrid: 7,
        priority: 200,
        max_adver_int: 50,
        checksum: 0xdb59,
        addrs: AddrList::new(&addrs, Family::V6).expect("two addresses"),
    };
    both_ways(&b, Family::V6, Advert::V3(want));
    let src = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
    let dst = IpAddr::V6(VRRP_MCAST_V6);
    // Every flavour is the standard one over IPv6 (the kernel computes it).
    for mode in [
        V3Checksum::Standard,
        V3Checksum::OldUnicast,
        V3Checksum::NoPseudoHeader,
    ] {
        let ph = PseudoHeader::for_advert(Version::V3, mode, src, dst, None);
        assert_eq!(checksum(&b, &ph), 0);
    }
}

#[test]
fn v3_reserved_bits_are_ignored_on_receipt() {
    let mut b = hex(V3_V4_MCAST);
    b[4] |= 0xf0;
    let Ok(Advert::V3(a)) = Advert::decode(&b, Family::V4) else {
        panic!("decodes")
    };
    assert_eq!(a.max_adver_int, 100);
}

#[test]
fn decode_errors() {
    let v2 = hex(V2_PASS);
    let cases: &[(&str, Vec<u8>, Family, DecodeError)] = &[
        (
            "empty",
            vec![],
            Family::V4,
            DecodeError::TooShort { len: 0 },
        ),
        (
            "7 bytes",
            v2[..7].to_vec(),
            Family::V4,
            DecodeError::TooShort { len: 7 },
        ),
        (
            "version 4",
            {
                let mut b = v2.clone();
                b[0] = 0x41;
                b
            },
            Family::V4,
            DecodeError::BadVersion { version: 4 },
        ),
        (
            "type 2",
            {
                let mut b = v2.clone();
                b[0] = 0x22;
                b
            },
            Family::V4,
            DecodeError::BadType { kind: 2 },
        ),
        (
            "truncated auth",
            v2[..19].to_vec(),
            Family::V4,
            DecodeError::BadLength {
                expected: 20,
                len: 19,
            },
        ),
        (
            "trailing byte",
            {
                let mut b = v2.clone();
                b.push(0);
                b
            },
            Family::V4,
            DecodeError::BadLength {
                expected: 20,
                len: 21,
            },
        ),
        (
            "count 2",
            {
                let mut b = v2.clone();
                b[3] = 2;
                b
            },
            Family::V4,
            DecodeError::BadLength {
                expected: 24,
                len: 20,
            },
        ),
        (
            "v4 advert read as v6",
            v2.clone(),
            Family::V6,
            DecodeError::BadLength {
                expected: 24,
                len: 20,
            },
        ),
        (
            "auth type 3",
            {
                let mut b = v2.clone();
                b[4] = 3;
                b
            },
            Family::V4,
            DecodeError::BadAuthType { auth_type: 3 },
        ),
    ];
    for (name, bytes, family, want) in cases {
        assert_eq!(Advert::decode(bytes, *family), Err(*want), "{name}");
    }
    assert_eq!(
        AdvertV3::decode(&v2, Family::V4),
        Err(DecodeError::BadVersion { version: 2 })
    );
    // Auth Type 2 (AH) decodes: the AH header around it is checked on the IP packet.
    let mut ah = v2.clone();
    ah[4] = 2;
    assert!(matches!(
        Advert::decode(&ah, Family::V4),
        Ok(Advert::V2(AdvertV2 {
            auth_type: AuthType::Ah,
            ..
        }))
    ));
}

#[test]
fn encode_errors() {
    let addrs = [10, 0, 0, 1];
    let a = AdvertV3 {
        vrid: 1,
        priority: 1,
        max_adver_int: 100,
        checksum: 0,
        addrs: AddrList::new(&addrs, Family::V4).expect("one address"),
    };
    let mut small = [0u8; 11];
    assert_eq!(
        a.encode(&mut small),
        Err(EncodeError::BufferTooSmall { need: 12, have: 11 })
    );
    let mut buf = [0u8; 12];
    assert_eq!(
        AdvertV3 {
            max_adver_int: 4096,
            ..a
        }
        .encode(&mut buf),
        Err(EncodeError::AdverIntTooLarge { centis: 4096 })
    );
    assert!(AddrList::new(&[1, 2, 3], Family::V4).is_none());
}

#[test]
fn small_rules() {
    assert_eq!(check_version_type(0x31, Version::V3), Ok(()));
    assert_eq!(
        check_version_type(0x21, Version::V3),
        Err(DropReason::BadVersion)
    );
    assert_eq!(
        check_version_type(0x30, Version::V3),
        Err(DropReason::BadType)
    );
    assert_eq!(check_ttl(255), Ok(()));
    assert_eq!(check_ttl(254), Err(DropReason::BadTtl));
    assert_eq!(check_len(20, Version::V2, Family::V4, 1), Ok(()));
    assert_eq!(check_len(12, Version::V3, Family::V4, 1), Ok(()));
    assert_eq!(check_len(40, Version::V3, Family::V6, 2), Ok(()));
    assert_eq!(
        check_len(4, Version::V3, Family::V4, 0),
        Err(DropReason::TooShort)
    );
    assert_eq!(
        check_len(13, Version::V3, Family::V4, 1),
        Err(DropReason::BadLength)
    );
    assert_eq!(expected_len(Version::V2, Family::V6, 1), 24);
    assert_eq!(check_adver_int_v2(1, 100), Ok(()));
    assert_eq!(
        check_adver_int_v2(2, 100),
        Err(DropReason::AdverIntMismatch)
    );
    assert_eq!(check_vrid(5, 6), Err(DropReason::VridMismatch));
    assert_eq!(VRRP_MAX_LEN, 4096);
}

#[test]
fn pass_authentication() {
    let pass = Auth::pass(b"secret-longer-than-8");
    assert_eq!(pass, Auth::Pass(*b"secret-l"));
    assert_eq!(Auth::pass(b"1234").data(), *b"1234\0\0\0\0");
    assert_eq!(check_auth(Version::V2, 1, b"secret-l", &pass), Ok(()));
    assert_eq!(
        check_auth(Version::V2, 1, b"secret-x", &pass),
        Err(DropReason::AuthFailure)
    );
    assert_eq!(
        check_auth(Version::V2, 0, &[0; 8], &pass),
        Err(DropReason::AuthTypeMismatch)
    );
    assert_eq!(
        check_auth(Version::V2, 1, b"secret-l", &Auth::None),
        Err(DropReason::AuthTypeMismatch)
    );
    assert_eq!(
        check_auth(Version::V2, 2, &[0; 8], &Auth::None),
        Err(DropReason::AuthTypeMismatch)
    );
    assert_eq!(
        check_auth(Version::V2, 2, &[0; 8], &Auth::ah(b"s3cret")),
        Ok(())
    );
    assert_eq!(
        check_auth(Version::V2, 1, b"s3cret\0\0", &Auth::ah(b"s3cret")),
        Err(DropReason::AuthTypeMismatch)
    );
    assert_eq!(
        check_auth(Version::V2, 9, &[0; 8], &Auth::None),
        Err(DropReason::BadAuthType)
    );
    assert_eq!(check_auth(Version::V3, 9, &[0; 8], &pass), Ok(()));
    assert_eq!(
        Auth::from_config(AuthType::Ah, b"s3cret-longer"),
        Auth::Ah(*b"s3cret-l")
    );
    assert_eq!(Auth::ah(b"x").data(), [0; 8]);
    assert_eq!(Auth::ah(b"x").auth_type(), AuthType::Ah);
    assert_eq!(Auth::ah(b"x").ah_key(), Some(b"x\0\0\0\0\0\0\0"));
    assert_eq!(
        Auth::from_config(AuthType::Pass, b"1234"),
        Auth::pass(b"1234")
    );
}

fn rx<'c>(vips: Option<&'c [IpAddr]>) -> RxCheck<'c> {
    RxCheck {
        version: Version::V2,
        family: Family::V4,
        vrid: 51,
        check_ttl: true,
        pseudo: Some(PseudoHeader::None),
        auth: Auth::pass(b"1234"),
        adver_int_centis: 100,
        vips,
    }
}

#[test]
fn validate_accepts_a_good_v2_advert_and_names_each_failure() {
    let b = hex(V2_PASS);
    let vip = [v4([192, 168, 200, 17])];
    let advert = validate(&b, 255, &rx(Some(&vip))).expect("valid");
    assert_eq!(advert.priority(), 100);

    let bad_csum = {
        let mut x = b.clone();
        x[6] ^= 1;
        x
    };
    let other_vip = [v4([1, 1, 1, 1])];
    let cases: &[(&str, &[u8], u8, RxCheck<'_>, DropReason)] = &[
        ("ttl", &b, 64, rx(None), DropReason::BadTtl),
        (
            "version",
            &b,
            255,
            RxCheck {
                version: Version::V3,
                ..rx(None)
            },
            DropReason::BadVersion,
        ),
        (
            "checksum",
            &bad_csum,
            255,
            rx(None),
            DropReason::BadChecksum,
        ),
        (
            "vrid",
            &b,
            255,
            RxCheck {
                vrid: 52,
                ..rx(None)
            },
            DropReason::VridMismatch,
        ),
        (
            "password",
            &b,
            255,
            RxCheck {
                auth: Auth::pass(b"nope"),
                ..rx(None)
            },
            DropReason::AuthFailure,
        ),
        (
            "interval",
            &b,
            255,
            RxCheck {
                adver_int_centis: 200,
                ..rx(None)
            },
            DropReason::AdverIntMismatch,
        ),
        (
            "vip count",
            &b,
            255,
            rx(Some(&[])),
            DropReason::AddrCountMismatch,
        ),
        (
            "vip list",
            &b,
            255,
            rx(Some(&other_vip)),
            DropReason::AddrListMismatch,
        ),
    ];
    for (name, bytes, ttl, check, want) in cases {
        assert_eq!(
            validate(bytes, *ttl, check).map(|_| ()),
            Err(*want),
            "{name}"
        );
    }
    // Unicast (keepalived): no TTL check.
    assert!(validate(
        &b,
        64,
        &RxCheck {
            check_ttl: false,
            ..rx(None)
        }
    )
    .is_ok());
}

#[test]
fn drop_reason_names_are_unique_and_indexed() {
    for (i, r) in DropReason::ALL.iter().enumerate() {
        assert_eq!(r.index() as usize, i);
        assert!(
            DropReason::ALL
                .iter()
                .filter(|o| o.name() == r.name())
                .count()
                == 1
        );
    }
    assert_eq!(DropReason::BadChecksum.name(), "bad_checksum");
}

#[test]
fn header_overlay() {
    let b = hex(V3_V4_MCAST);
    let h = VrrpHdr::from_prefix(&b).expect("8 bytes");
    assert_eq!(
        (h.version(), h.kind(), h.vrid, h.priority, h.count_ip),
        (3, 1, 1, 150, 1)
    );
    assert_eq!((h.v3_max_adver_int(), h.checksum()), (100, 0x8c56));
    assert_eq!(h.to_bytes(), b[..8]);
    assert_eq!(bytemuck::bytes_of(&h), &b[..8]);
    assert!(VrrpHdr::from_prefix(&b[..7]).is_none());
}

#[test]
fn checksum_handles_odd_lengths_and_bounds() {
    // RFC 1071 example words.
    assert_eq!(
        csum_fold(csum_add(
            0,
            &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]
        )),
        !0xddf2
    );
    assert_eq!(csum_add(0, &[0xab]), 0xab00);
    let long = [0xffu8; VRRP_MAX_LEN + 10];
    assert_eq!(csum_add(0, &long), 0xffff * (VRRP_MAX_LEN as u32 / 2));
}
