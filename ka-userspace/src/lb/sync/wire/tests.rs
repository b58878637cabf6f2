//! Byte/struct fixtures of the IPVS sync v1 codec, checked both ways, and the malformed inputs
//! the kernel's backup thread drops.

use super::*;

fn hex(b: &[u8]) -> String {
    b.chunks(4).map(|w| w.iter().map(|x| format!("{x:02x}")).collect::<String>()).collect::<Vec<_>>().join(" ")
}

/// Both sides as 32-bit words, the differing ones marked.
fn hex_diff(got: &[u8], want: &[u8]) -> String {
    let (g, w): (Vec<_>, Vec<_>) = (got.chunks(4).collect(), want.chunks(4).collect());
    (0..g.len().max(w.len()))
        .map(|i| {
            let (a, b) = (g.get(i).map_or("-".into(), |x| hex(x)), w.get(i).map_or("-".into(), |x| hex(x)));
            format!("{:4}: {a:>8} {b:>8}{}", i * 4, if a == b { "" } else { "  <--" })
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// An IPv4 DR connection, as `ka` sends it for a new TCP flow.
fn dr4() -> Conn {
    Conn {
        protocol: 6,
        flags: flags::DROUTE,
        state: state::TCP_ESTABLISHED,
        cport: 50000,
        vport: 8080,
        dport: 8080,
        fwmark: 0,
        timeout: 900,
        caddr: ip("198.18.40.2"),
        vaddr: ip("198.18.40.100"),
        daddr: ip("198.18.40.11"),
        params: vec![],
    }
}

#[rustfmt::skip]
const DR4: &[u8] = &[
    // header: reserved 0, syncid 90, size 44 | 1 conn, version 1, spare 0
    0x00, 0x5a, 0x00, 0x2c,  0x01, 0x01, 0x00, 0x00,
    // type 0 (IPv4), TCP, version 0 size 36 | flags DROUTE
    0x00, 0x06, 0x00, 0x24,  0x00, 0x00, 0x00, 0x03,
    // state ESTABLISHED, cport 50000 | vport 8080, dport 8080
    0x00, 0x01, 0xc3, 0x50,  0x1f, 0x90, 0x1f, 0x90,
    // fwmark 0 | timeout 900
    0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x03, 0x84,
    // caddr, vaddr, daddr
    198, 18, 40, 2,  198, 18, 40, 100,  198, 18, 40, 11,
];

/// An IPv6 NAT connection and the IPv4 persistence template of another service.
fn nat6_and_template() -> Vec<Conn> {
    vec![
        Conn {
            protocol: 17,
            flags: flags::MASQ,
            state: state::UDP_NORMAL,
            cport: 40000,
            vport: 53,
            dport: 5353,
            fwmark: 0,
            timeout: 300,
            caddr: ip("fd00:198:18::2"),
            vaddr: ip("fd00:198:18::100"),
            daddr: ip("fd00:198:18:1::11"),
            params: vec![],
        },
        Conn {
            protocol: 6,
            flags: flags::TEMPLATE | flags::TUNNEL,
            state: state::TEMPLATE_NONE,
            cport: 0,
            vport: 443,
            dport: 443,
            fwmark: 0,
            timeout: 360,
            caddr: ip("198.18.7.0"),
            vaddr: ip("198.18.40.100"),
            daddr: ip("198.18.40.12"),
            params: vec![],
        },
    ]
}

#[rustfmt::skip]
const NAT6_TEMPLATE: &[u8] = &[
    // header: syncid 7, size 8 + 72 + 36 = 116 | 2 conns, version 1
    0x00, 0x07, 0x00, 0x74,  0x02, 0x01, 0x00, 0x00,
    // type INET6, UDP, size 72 | flags MASQ
    0x01, 0x11, 0x00, 0x48,  0x00, 0x00, 0x00, 0x00,
    // state 0, cport 40000 | vport 53, dport 5353
    0x00, 0x00, 0x9c, 0x40,  0x00, 0x35, 0x14, 0xe9,
    // fwmark | timeout 300
    0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x01, 0x2c,
    0xfd, 0x00, 0x01, 0x98, 0x00, 0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
    0xfd, 0x00, 0x01, 0x98, 0x00, 0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,
    0xfd, 0x00, 0x01, 0x98, 0x00, 0x18, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x11,
    // type 0, TCP, size 36 | flags TEMPLATE | TUNNEL
    0x00, 0x06, 0x00, 0x24,  0x00, 0x00, 0x10, 0x02,
    // state 0, cport 0 | vport 443, dport 443
    0x00, 0x00, 0x00, 0x00,  0x01, 0xbb, 0x01, 0xbb,
    // fwmark | timeout 360
    0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x01, 0x68,
    198, 18, 7, 0,  198, 18, 40, 100,  198, 18, 40, 12,
];

/// A connection with sequence adjustments (IPVS NAT with an application helper) and an
/// optional parameter ka does not know: size 36 + 26 + 5 = 67, padded to 68.
fn with_params() -> Conn {
    Conn {
        flags: flags::MASQ | 0x0200,
        params: vec![Param { ptype: OPT_SEQ_DATA, data: (1..=24).collect() }, Param { ptype: OPT_F_PARAM | 9, data: vec![0xaa, 0xbb, 0xcc] }],
        ..dr4()
    }
}

fn with_params_bytes() -> Vec<u8> {
    let mut b = vec![0x00, 0x00, 0x00, 0x4c, 0x01, 0x01, 0x00, 0x00];
    b.extend_from_slice(&[0x00, 0x06, 0x00, 0x43, 0x00, 0x00, 0x02, 0x00]);
    b.extend_from_slice(&DR4[16..44]);
    b.extend_from_slice(&[OPT_SEQ_DATA, 24]);
    b.extend(1..=24u8);
    b.extend_from_slice(&[0x49, 3, 0xaa, 0xbb, 0xcc, 0]);
    b
}

/// Each fixture decodes to its struct and the struct encodes to its bytes.
#[test]
fn fixtures_both_ways() {
    let cases: Vec<(&str, Vec<u8>, Message)> = vec![
        ("ipv4 DR connection", DR4.to_vec(), Message { syncid: 90, conns: vec![dr4()] }),
        ("ipv6 NAT connection and ipv4 template", NAT6_TEMPLATE.to_vec(), Message { syncid: 7, conns: nat6_and_template() }),
        ("parameters and padding", with_params_bytes(), Message { syncid: 0, conns: vec![with_params()] }),
        ("no entry", vec![0, 3, 0, 8, 0, 1, 0, 0], Message { syncid: 3, conns: vec![] }),
    ];
    for (name, bytes, msg) in cases {
        assert_eq!(Message::decode(&bytes).as_ref(), Ok(&msg), "{name}: decode");
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert!(out == bytes, "{name}: encode (got, want)\n{}", hex_diff(&out, &bytes));
        assert_eq!(msg.len(), bytes.len(), "{name}: len");
    }
}

/// The kernel ignores bytes after the announced entries; so does the decoder.
#[test]
fn trailing_bytes_after_the_entries_are_ignored() {
    let mut b = DR4.to_vec();
    b.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    b[3] = b.len() as u8;
    assert_eq!(Message::decode(&b).map(|m| m.conns.len()), Ok(1));
}

/// An unknown mandatory parameter decodes (the receiver drops that entry alone, as the kernel
/// does).
#[test]
fn unknown_mandatory_param_decodes() {
    let c = Conn { params: vec![Param { ptype: 9, data: vec![1, 2] }], ..dr4() };
    let mut b = Vec::new();
    Message { syncid: 1, conns: vec![c.clone()] }.encode(&mut b);
    assert_eq!(Message::decode(&b), Ok(Message { syncid: 1, conns: vec![c] }));
}

/// Malformed datagrams: each is refused whole with the reason the kernel drops it for.
#[test]
fn malformed_input_is_refused() {
    let dr4 = DR4.to_vec();
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = dr4.clone();
        f(&mut b);
        b
    };
    // The size field follows the datagram's length.
    let sized = |mut b: Vec<u8>| {
        let n = b.len() as u16;
        b[2..4].copy_from_slice(&n.to_be_bytes());
        b
    };
    let seq_entry = |len: u8, count: usize| {
        let mut b = dr4.clone();
        for _ in 0..count {
            b.extend_from_slice(&[OPT_SEQ_DATA, len]);
            b.extend(std::iter::repeat_n(0u8, usize::from(len)));
        }
        let size = (b.len() - 8) as u16;
        b[10..12].copy_from_slice(&size.to_be_bytes());
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        sized(b)
    };
    let entry_with_tail = |tail: &[u8]| {
        let mut b = dr4.clone();
        b.extend_from_slice(tail);
        let size = (b.len() - 8) as u16;
        b[10..12].copy_from_slice(&size.to_be_bytes());
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        sized(b)
    };
    let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
        ("empty", vec![], DecodeError::TooShort { len: 0 }),
        ("three bytes", vec![0, 1, 0], DecodeError::TooShort { len: 3 }),
        ("size field larger than the datagram", dr4[..40].to_vec(), DecodeError::SizeMismatch { size: 44, len: 40 }),
        ("size field smaller than the datagram", with(&|b| b[3] = 40), DecodeError::SizeMismatch { size: 40, len: 44 }),
        ("version 0 (first byte is the count)", with(&|b| b[0] = 1), DecodeError::Version0),
        ("version 2", with(&|b| b[5] = 2), DecodeError::Version0),
        ("spare bytes set", with(&|b| b[7] = 1), DecodeError::Version0),
        ("header cut at 4 bytes", vec![0, 5, 0, 4], DecodeError::Version0),
        ("an entry announced, none present", vec![0, 5, 0, 8, 1, 1, 0, 0], DecodeError::Truncated { entry: 0 }),
        ("entry shorter than the IPv4 part", sized(dr4[..40].to_vec()), DecodeError::Truncated { entry: 0 }),
        ("entry size past the datagram", with(&|b| b[11] = 40), DecodeError::Truncated { entry: 0 }),
        ("second entry missing", with(&|b| b[4] = 2), DecodeError::Truncated { entry: 1 }),
        ("entry version 1", with(&|b| b[10] = 0x10), DecodeError::EntryVersion { entry: 0, version: 1 }),
        ("entry type 2", with(&|b| b[8] = 2), DecodeError::EntryType { entry: 0, ty: 2 }),
        ("IPv6 entry of IPv4 size", with(&|b| b[8] = STYPE_F_INET6), DecodeError::EntrySize { entry: 0, size: 36 }),
        ("entry size below the fixed part", with(&|b| b[11] = 20), DecodeError::EntrySize { entry: 0, size: 20 }),
        ("one dangling parameter byte", entry_with_tail(&[OPT_SEQ_DATA]), DecodeError::BadParam { entry: 0 }),
        ("parameter of length 0", entry_with_tail(&[OPT_F_PARAM | 9, 0]), DecodeError::BadParam { entry: 0 }),
        ("parameter longer than its entry", entry_with_tail(&[OPT_F_PARAM | 9, 5, 1, 2]), DecodeError::BadParam { entry: 0 }),
        ("sequence data of 23 bytes", seq_entry(23, 1), DecodeError::BadParamValue { entry: 0, ptype: OPT_SEQ_DATA }),
        ("sequence data twice", seq_entry(24, 2), DecodeError::BadParamValue { entry: 0, ptype: OPT_SEQ_DATA }),
        ("persistence-engine name of 17 bytes", entry_with_tail(&[[OPT_PE_NAME, 17].as_slice(), &[b'x'; 17]].concat()), DecodeError::BadParamValue { entry: 0, ptype: OPT_PE_NAME }),
    ];
    for (name, bytes, want) in cases {
        let got = Message::decode(&bytes);
        assert_eq!(got, Err(want), "{name}: {}", hex(&bytes));
        assert!(DecodeError::REASONS.contains(&want.reason()), "{name}: reason {} listed", want.reason());
        assert!(!want.to_string().is_empty());
    }
}

/// Whatever decodes re-encodes to bytes that decode to the same message (what the fuzz target
/// checks on random input), here on every prefix and single-byte change of the fixtures.
#[test]
fn mutations_never_panic_and_round_trip() {
    for base in [DR4.to_vec(), NAT6_TEMPLATE.to_vec(), with_params_bytes()] {
        for cut in 0..=base.len() {
            round_trip(&base[..cut]);
        }
        for i in 0..base.len() {
            for v in [0u8, 1, 0x10, 0x7f, 0xff] {
                let mut b = base.clone();
                b[i] = v;
                round_trip(&b);
            }
        }
    }
}

fn round_trip(b: &[u8]) {
    if let Ok(m) = Message::decode(b) {
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(Message::decode(&out), Ok(m), "{}", hex(b));
    }
}
