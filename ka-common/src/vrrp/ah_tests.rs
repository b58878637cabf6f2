//! IPsec AH adverts: byte-exact fixtures captured from a real keepalived 2.2.7 (Debian's
//! package, `auth_type AH`, `auth_pass s3cret`, VRID 51, priority 100, VIPs 198.18.7.100 and
//! .101, sent from 198.18.7.1; read off a veth with an `AF_PACKET` socket), checked both ways,
//! then malformed variants table-driven and counted by drop reason, and keepalived's
//! sequence-number rules.

extern crate std;

use std::collections::BTreeMap;
use std::vec::Vec;

use core::cmp::Ordering;
use core::net::{IpAddr, Ipv4Addr};

use super::ah::{
    encode_ah_advert, hmac_md5_for_tests, AhAdvert, AhHdr, AhIpFields, AhKey, AhSeq, AH_LEN,
    AH_SEQ_LIMIT,
};
use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("fixture hex"))
        .collect()
}

fn assert_bytes_eq(got: &[u8], want: &[u8]) {
    if got != want {
        let h = |b: &[u8]| {
            b.iter()
                .map(|x| std::format!("{x:02x}"))
                .collect::<std::string::String>()
        };
        panic!("bytes differ\n got: {}\nwant: {}", h(got), h(want));
    }
}

const KEY: AhKey = *b"s3cret\0\0";

/// keepalived 2.2.7's first three adverts to 224.0.0.18 (IP ID and sequence number 1, 2, 3).
const MCAST: [&str; 3] = [
    "45c0004400010000ff330da0c6120701e000001270040000c612070100000001b9b0eaa954bc7d06b014f708213364020201dddac6120764c61207650000000000000000",
    "45c0004400020000ff330d9fc6120701e000001270040000c612070100000002db04cdb053377326009a81b9213364020201dddac6120764c61207650000000000000000",
    "45c0004400030000ff330d9ec6120701e000001270040000c612070100000003ce68af77a878fe7998027296213364020201dddac6120764c61207650000000000000000",
];

/// The same with `unicast_peer 198.18.7.2`: the TTL is left out of the ICV.
const UCAST: [&str; 3] = [
    "45c0004400010000ff33209ec6120701c612070270040000c61207010000000189fa2dbc1af26a2ad7a1eee0213364020201dddac6120764c61207650000000000000000",
    "45c0004400020000ff33209dc6120701c612070270040000c612070100000002507af006a86a75d7d4c91783213364020201dddac6120764c61207650000000000000000",
    "45c0004400030000ff33209cc6120701c612070270040000c612070100000003d230c29c3e9299726aa11102213364020201dddac6120764c61207650000000000000000",
];

const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 1);
const VIPS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(198, 18, 7, 100)),
    IpAddr::V4(Ipv4Addr::new(198, 18, 7, 101)),
];

/// RFC 2202 §2 test case 2 (a key shorter than 8 bytes, zero-padded as keepalived's is).
#[test]
fn hmac_md5_matches_rfc_2202() {
    let d = hmac_md5_for_tests(
        b"Jefe\0\0\0\0",
        &[&b"what do ya "[..], &b"want for nothing?"[..]],
    );
    assert_bytes_eq(&d, &hex("750c783e6ab0b503eaa86e310a5db738"));
}

/// Every captured advert decodes to keepalived's fields, verifies under its password, carries
/// a VRRPv2 message the shared validation accepts, and re-encodes to the very same bytes
/// (IPv4 header checksum included).
#[test]
fn keepalived_adverts_decode_verify_and_reencode_byte_exact() {
    for (unicast, set) in [(false, MCAST), (true, UCAST)] {
        let dst = if unicast {
            Ipv4Addr::new(198, 18, 7, 2)
        } else {
            VRRP_MCAST_V4
        };
        for (n, h) in set.iter().enumerate() {
            let bytes = hex(h);
            let a = AhAdvert::decode(&bytes).expect("keepalived's advert decodes");
            let seq = n as u32 + 1;
            assert_eq!(
                (a.src(), a.dst(), a.ttl(), a.id()),
                (SRC, dst, 255, seq as u16)
            );
            assert_eq!(a.ah.next_header, IPPROTO_VRRP);
            assert_eq!(a.ah.spi, u32::from(SRC));
            assert_eq!(a.ah.seq, seq);
            assert_eq!(
                a.verify(&KEY, unicast),
                Ok(()),
                "unicast {unicast}, advert {n}"
            );
            let check = RxCheck {
                version: Version::V2,
                family: Family::V4,
                vrid: 51,
                check_ttl: !unicast,
                pseudo: Some(PseudoHeader::None),
                auth: Auth::ah(b"s3cret"),
                adver_int_centis: 100,
                vips: Some(&VIPS),
            };
            let advert = validate(a.vrrp, a.ttl(), &check).expect("the VRRP message validates");
            assert_eq!((advert.vrid(), advert.priority()), (51, 100));
            let mut buf = [0u8; 128];
            let len = encode_ah_advert(
                &mut buf,
                &AhIpFields {
                    id: a.id(),
                    src: SRC,
                    dst,
                    ttl: 255,
                },
                seq,
                &KEY,
                unicast,
                a.vrrp,
            )
            .expect("encodes");
            assert_bytes_eq(&buf[..len], &bytes);
        }
    }
}

/// ka's own VRRP message under AH: what the engine builds (Auth Type 2, zero trailer,
/// checksummed) wrapped by `encode_ah_advert` is keepalived's first advert, byte for byte.
#[test]
fn ka_builds_keepalived_first_advert() {
    let addrs = [198, 18, 7, 100, 198, 18, 7, 101];
    let msg = AdvertV2 {
        vrid: 51,
        priority: 100,
        auth_type: AuthType::Ah,
        adver_int: 1,
        checksum: 0,
        addrs: AddrList::new(&addrs, Family::V4).expect("two addresses"),
        auth_data: Auth::ah(b"s3cret").data(),
    };
    let mut vrrp = [0u8; 64];
    let n = msg.encode_checksummed(&mut vrrp).expect("encodes");
    let mut seq = AhSeq::new();
    let mut buf = [0u8; 128];
    let len = encode_ah_advert(
        &mut buf,
        &AhIpFields {
            id: 1,
            src: SRC,
            dst: VRRP_MCAST_V4,
            ttl: 255,
        },
        seq.next_tx(),
        &KEY,
        false,
        &vrrp[..n],
    )
    .expect("encodes");
    assert_bytes_eq(&buf[..len], &hex(MCAST[0]));
    let mut small = [0u8; 67];
    assert_eq!(
        encode_ah_advert(
            &mut small,
            &AhIpFields {
                id: 1,
                src: SRC,
                dst: VRRP_MCAST_V4,
                ttl: 255
            },
            1,
            &KEY,
            false,
            &vrrp[..n]
        ),
        Err(EncodeError::BufferTooSmall { need: 68, have: 67 })
    );
}

#[test]
fn ah_header_both_ways() {
    let bytes = hex("70040000c612070100000002db04cdb053377326009a81b9");
    let h = AhHdr::decode(&bytes).expect("decodes");
    assert_eq!(
        h,
        AhHdr {
            next_header: 112,
            payload_len: 4,
            reserved: 0,
            spi: 0xc612_0701,
            seq: 2,
            icv: hex("db04cdb053377326009a81b9")
                .try_into()
                .expect("12 bytes")
        }
    );
    let mut buf = [0u8; AH_LEN];
    assert_eq!(h.encode(&mut buf), Ok(AH_LEN));
    assert_bytes_eq(&buf, &bytes);
    assert_eq!(
        AhHdr::decode(&bytes[..23]),
        Err(DecodeError::TooShort { len: 23 })
    );
    assert_eq!(
        h.encode(&mut buf[..23]),
        Err(EncodeError::BufferTooSmall { need: 24, have: 23 })
    );
}

/// Re-signs `p` under `key` after a change (so that only the changed field is wrong).
fn resign(p: &mut [u8], key: &AhKey, unicast: bool) {
    let mut a = AhAdvert::decode(p).expect("decodes");
    a.ah.icv = a.expected_icv(key, unicast);
    let ah = a.ah;
    ah.encode(&mut p[20..20 + AH_LEN]).expect("fits");
}

/// The receive path for one packet, as the engine runs it: decode, ICV and SPI, then the
/// sequence number against the instance's counter.
fn receive(p: &[u8], key: &AhKey, unicast: bool, seq: &mut AhSeq) -> Result<(), DropReason> {
    let a = AhAdvert::decode(p).map_err(|e| e.reason())?;
    a.verify(key, unicast)?;
    seq.receive(a.ah.seq, true)
}

/// Malformed and forged variants of keepalived's advert, each dropped for its own reason, and
/// the drops counted per reason.
#[test]
fn malformed_adverts_are_dropped_by_reason() {
    type Mutate = fn(&mut Vec<u8>);
    let good = hex(MCAST[1]);
    let cases: &[(&str, Mutate, bool, Result<(), DropReason>)] = &[
        ("keepalived's advert", |_| {}, false, Ok(())),
        (
            "TOS changed on the way (a mutable field)",
            |p| p[1] = 0x00,
            false,
            Ok(()),
        ),
        (
            "TTL changed, unicast (left out of the ICV)",
            |p| {
                *p = hex(UCAST[1]);
                p[8] = 64;
            },
            true,
            Ok(()),
        ),
        (
            "TTL changed, multicast",
            |p| p[8] = 64,
            false,
            Err(DropReason::AhBadIcv),
        ),
        (
            "ICV flipped",
            |p| p[40] ^= 1,
            false,
            Err(DropReason::AhBadIcv),
        ),
        (
            "priority forged",
            |p| p[46] = 200,
            false,
            Err(DropReason::AhBadIcv),
        ),
        (
            "a VIP forged",
            |p| p[55] = 99,
            false,
            Err(DropReason::AhBadIcv),
        ),
        (
            "sequence number forged",
            |p| p[31] = 9,
            false,
            Err(DropReason::AhBadIcv),
        ),
        (
            "IP ID changed",
            |p| p[5] = 9,
            false,
            Err(DropReason::AhBadIcv),
        ),
        (
            "SPI is not the source (validly signed)",
            |p| {
                p[27] = 9;
                resign(p, &KEY, false);
            },
            false,
            Err(DropReason::AhBadSpi),
        ),
        (
            "cut after the AH header",
            |p| {
                p.truncate(48);
                p[2..4].copy_from_slice(&48u16.to_be_bytes());
            },
            false,
            Err(DropReason::TooShort),
        ),
        (
            "cut inside the AH header",
            |p| {
                p.truncate(30);
                p[2..4].copy_from_slice(&30u16.to_be_bytes());
            },
            false,
            Err(DropReason::TooShort),
        ),
        (
            "shorter than an IPv4 header",
            |p| p.truncate(12),
            false,
            Err(DropReason::TooShort),
        ),
        (
            "total length is not the packet's",
            |p| p[3] = 0x40,
            false,
            Err(DropReason::BadLength),
        ),
        (
            "IHL below 5",
            |p| p[0] = 0x44,
            false,
            Err(DropReason::AhBadHeader),
        ),
        (
            "next header is not VRRP",
            |p| p[20] = 6,
            false,
            Err(DropReason::AhBadHeader),
        ),
        (
            "ICV longer than 96 bits",
            |p| p[21] = 5,
            false,
            Err(DropReason::AhBadHeader),
        ),
        (
            "plain VRRP protocol",
            |p| p[9] = 112,
            false,
            Err(DropReason::AuthTypeMismatch),
        ),
    ];
    let mut counted: BTreeMap<DropReason, u32> = BTreeMap::new();
    for (name, mutate, unicast, want) in cases {
        let mut p = good.clone();
        mutate(&mut p);
        let mut seq = AhSeq::new();
        let got = receive(&p, &KEY, *unicast, &mut seq);
        assert_eq!(got, *want, "{name}");
        if let Err(r) = got {
            *counted.entry(r).or_default() += 1;
        }
    }
    // Another auth_pass: every one of keepalived's adverts fails the ICV.
    let mut seq = AhSeq::new();
    for h in MCAST {
        let r = receive(&hex(h), b"wrong\0\0\0", false, &mut seq);
        assert_eq!(r, Err(DropReason::AhBadIcv));
        *counted.entry(DropReason::AhBadIcv).or_default() += 1;
    }
    assert_eq!(seq.value(), 0, "a bad ICV never moves the counter");
    // Replays: the same advert twice, then an older one.
    let mut seq = AhSeq::new();
    assert_eq!(receive(&hex(MCAST[1]), &KEY, false, &mut seq), Ok(()));
    for h in [MCAST[1], MCAST[0]] {
        let r = receive(&hex(h), &KEY, false, &mut seq);
        assert_eq!(r, Err(DropReason::AhReplay));
        *counted.entry(DropReason::AhReplay).or_default() += 1;
    }
    assert_eq!(receive(&hex(MCAST[2]), &KEY, false, &mut seq), Ok(()));
    let want = BTreeMap::from([
        (DropReason::TooShort, 3),
        (DropReason::BadLength, 1),
        (DropReason::AuthTypeMismatch, 1),
        (DropReason::AhBadHeader, 3),
        (DropReason::AhBadIcv, 9),
        (DropReason::AhBadSpi, 1),
        (DropReason::AhReplay, 2),
    ]);
    assert_eq!(counted, want);
}

#[test]
fn decode_errors_name_their_reason() {
    assert_eq!(
        DecodeError::BadIpv4 { version_ihl: 0x44 }.reason(),
        DropReason::AhBadHeader
    );
    assert_eq!(
        DecodeError::NotAh { protocol: 112 }.reason(),
        DropReason::AuthTypeMismatch
    );
    assert_eq!(
        DecodeError::AhBadHeader {
            next_header: 6,
            payload_len: 4
        }
        .reason(),
        DropReason::AhBadHeader
    );
    let mut p = hex(MCAST[0]);
    p[9] = 112;
    assert_eq!(
        AhAdvert::decode(&p),
        Err(DecodeError::NotAh { protocol: 112 })
    );
    p[9] = 51;
    p[20] = 6;
    assert_eq!(
        AhAdvert::decode(&p),
        Err(DecodeError::AhBadHeader {
            next_header: 6,
            payload_len: 4
        })
    );
}

/// keepalived's sequence-number rules (`vrrp.c`), one per line: sending counts from 1; a
/// received number must be above the counter, which takes it; a MASTER that hears a lower
/// priority continues above it; past 0xFFFFFFFD the counter stops (cycled) until the instance
/// becomes MASTER again, which restarts it from 0.
#[test]
fn sequence_numbers_follow_keepalived() {
    let mut s = AhSeq::new();
    assert_eq!((s.next_tx(), s.next_tx(), s.next_tx()), (1, 2, 3));
    assert_eq!(s.receive(3, true), Err(DropReason::AhReplay));
    assert_eq!(s.receive(2, false), Err(DropReason::AhReplay));
    assert_eq!(s.receive(10, false), Ok(()));
    assert_eq!(s.value(), 10);
    assert_eq!(
        s.next_tx(),
        11,
        "a new master continues above what it accepted"
    );
    s.master_received(40, 100, 150, Ordering::Greater);
    assert_eq!(
        s.next_tx(),
        42,
        "MASTER syncs to a lower-priority advert's number plus one"
    );
    s.master_received(90, 150, 150, Ordering::Less);
    assert_eq!(
        s.value(),
        91,
        "equal priority from a lower address counts as lower"
    );
    s.master_received(200, 0, 150, Ordering::Greater);
    s.master_received(200, 150, 150, Ordering::Equal);
    s.master_received(200, 200, 150, Ordering::Less);
    assert_eq!(
        s.value(),
        91,
        "a resignation, our own address or a higher priority leave it"
    );
    s.master_received(u32::MAX, 100, 150, Ordering::Less);
    assert_eq!(s.value(), 0, "C unsigned arithmetic wraps");

    let mut s = AhSeq::new();
    assert_eq!(s.receive(AH_SEQ_LIMIT, false), Ok(()));
    assert_eq!(s.next_tx(), AH_SEQ_LIMIT + 1);
    assert!(!s.cycled());
    assert_eq!(s.next_tx(), AH_SEQ_LIMIT + 1, "the counter stops");
    assert!(s.cycled());
    let mut higher = s;
    higher.master_received(5, 200, 150, Ordering::Less);
    assert!(!higher.cycled(), "a higher priority clears the cycled mark");
    assert_eq!(higher.value(), AH_SEQ_LIMIT + 1);
    let mut equal_higher_addr = s;
    equal_higher_addr.master_received(5, 150, 150, Ordering::Greater);
    assert!(!equal_higher_addr.cycled());
    s.becoming_master();
    assert_eq!(
        (s.cycled(), s.next_tx()),
        (false, 1),
        "becoming MASTER restarts a cycled counter"
    );
    let mut s2 = AhSeq::new();
    s2.becoming_master();
    s2.next_tx();
    s2.becoming_master();
    assert_eq!(s2.value(), 1, "an uncycled counter is kept");
    // As BACKUP, an accepted advert clears the cycled mark; as MASTER it does not.
    let mut s = AhSeq::new();
    assert_eq!(s.receive(u32::MAX - 1, false), Ok(()));
    s.next_tx();
    assert!(s.cycled());
    assert_eq!(s.receive(u32::MAX, false), Ok(()));
    assert!(s.cycled());
    let mut s = AhSeq::new();
    assert_eq!(s.receive(u32::MAX - 1, false), Ok(()));
    s.next_tx();
    assert_eq!(s.receive(u32::MAX, true), Ok(()));
    assert!(!s.cycled());
}
