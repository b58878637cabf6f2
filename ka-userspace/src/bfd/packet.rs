//! The BFD Control packet (RFC 5880 §4.1) and its reception checks (§6.8.6).
//!
//! ka sends the mandatory section only (no authentication, no Echo function), as keepalived
//! does. A received packet is checked here for everything that does not need a session;
//! selecting the session and the TTL check (RFC 5881 §5) are [`super::Sessions`]'.

use std::time::Duration;

/// UDP destination port of single-hop BFD Control packets (RFC 5881 §4); keepalived uses it
/// for its multihop (`max_hops`) sessions too.
pub const CONTROL_PORT: u16 = 3784;
/// Lowest UDP source port a session may send from (RFC 5881 §4).
pub const MIN_SOURCE_PORT: u16 = 49152;
/// Highest UDP source port a session may send from (RFC 5881 §4).
pub const MAX_SOURCE_PORT: u16 = 65535;
/// Length of the mandatory section: what ka sends, and the least a packet may have.
pub const MANDATORY_LEN: usize = 24;
/// The protocol version (RFC 5880 §4.1).
pub const VERSION: u8 = 1;

/// bfd.SessionState / the State (Sta) field (RFC 5880 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// 0: AdminDown.
    AdminDown,
    /// 1: Down.
    Down,
    /// 2: Init.
    Init,
    /// 3: Up.
    Up,
}

impl State {
    /// The two-bit wire value.
    pub const fn bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }

    /// From the two-bit wire value (the upper bits are ignored).
    pub const fn from_bits(b: u8) -> State {
        match b & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    /// The name RFC 5880 and keepalived's logs use.
    pub const fn name(self) -> &'static str {
        match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The Diagnostic (Diag) field (RFC 5880 §4.1): why the sender's session last went down.
/// Values 9-31 are reserved; they are kept as read, not refused (the RFC does not require it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Diag(pub u8);

impl Diag {
    /// 0: No Diagnostic.
    pub const NONE: Diag = Diag(0);
    /// 1: Control Detection Time Expired.
    pub const EXPIRED: Diag = Diag(1);
    /// 2: Echo Function Failed.
    pub const ECHO_FAILED: Diag = Diag(2);
    /// 3: Neighbor Signaled Session Down.
    pub const NEIGHBOR_DOWN: Diag = Diag(3);
    /// 4: Forwarding Plane Reset.
    pub const FORWARDING_RESET: Diag = Diag(4);
    /// 5: Path Down.
    pub const PATH_DOWN: Diag = Diag(5);
    /// 6: Concatenated Path Down.
    pub const CONCATENATED_PATH_DOWN: Diag = Diag(6);
    /// 7: Administratively Down.
    pub const ADMIN_DOWN: Diag = Diag(7);
    /// 8: Reverse Concatenated Path Down.
    pub const REVERSE_CONCATENATED_PATH_DOWN: Diag = Diag(8);

    /// The RFC's name of the code.
    pub const fn name(self) -> &'static str {
        match self.0 {
            0 => "No Diagnostic",
            1 => "Control Detection Time Expired",
            2 => "Echo Function Failed",
            3 => "Neighbor Signaled Session Down",
            4 => "Forwarding Plane Reset",
            5 => "Path Down",
            6 => "Concatenated Path Down",
            7 => "Administratively Down",
            8 => "Reverse Concatenated Path Down",
            _ => "Reserved",
        }
    }
}

impl std::fmt::Display for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A BFD Control packet, mandatory section (RFC 5880 §4.1):
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       My Discriminator                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                      Your Discriminator                       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Desired Min TX Interval                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                   Required Min RX Interval                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                 Required Min Echo RX Interval                 |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// All fields are in network byte order; intervals are microseconds on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlPacket {
    /// Diag.
    pub diag: Diag,
    /// Sta.
    pub state: State,
    /// P: the sender asks for parameter-change confirmation (Poll Sequence).
    pub poll: bool,
    /// F: the answer to a Poll.
    pub final_: bool,
    /// C: the sender's BFD does not share fate with its control plane.
    pub control_plane_independent: bool,
    /// D: the sender wishes to run Demand mode.
    pub demand: bool,
    /// Detect Mult.
    pub detect_mult: u8,
    /// My Discriminator.
    pub my_discr: u32,
    /// Your Discriminator (0: not yet known).
    pub your_discr: u32,
    /// Desired Min TX Interval.
    pub desired_min_tx: Duration,
    /// Required Min RX Interval.
    pub required_min_rx: Duration,
    /// Required Min Echo RX Interval.
    pub required_min_echo_rx: Duration,
}

/// Why a received packet is discarded before it reaches a session (RFC 5880 §6.8.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the mandatory section.
    #[error("{len} bytes, shorter than the {MANDATORY_LEN}-byte mandatory section")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// The version is not 1.
    #[error("version {version}, not 1")]
    BadVersion {
        /// The Vers field.
        version: u8,
    },
    /// The Length field is below the minimum (24, or 26 with authentication) or above the
    /// UDP payload.
    #[error("length field {field} does not fit the {len}-byte payload")]
    BadLength {
        /// The Length field.
        field: u8,
        /// Bytes received.
        len: usize,
    },
    /// Detect Mult is zero.
    #[error("detect multiplier is zero")]
    ZeroDetectMult,
    /// The Multipoint bit is set.
    #[error("multipoint bit set")]
    Multipoint,
    /// My Discriminator is zero.
    #[error("my discriminator is zero")]
    ZeroMyDiscriminator,
    /// Your Discriminator is zero while the state is neither Down nor AdminDown.
    #[error("your discriminator is zero in state {state}")]
    ZeroYourDiscriminator {
        /// The Sta field.
        state: State,
    },
    /// Poll and Final are both set (RFC 5880 §6.8.7 forbids sending it; keepalived drops it).
    #[error("poll and final both set")]
    PollAndFinal,
    /// The Authentication Present bit is set: ka, like keepalived, runs no authentication, so
    /// §6.8.6 requires the packet be discarded.
    #[error("authentication present, but ka runs no BFD authentication")]
    Authenticated,
}

impl DecodeError {
    /// A short stable name for counters.
    pub const fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooShort { .. } => "too_short",
            DecodeError::BadVersion { .. } => "bad_version",
            DecodeError::BadLength { .. } => "bad_length",
            DecodeError::ZeroDetectMult => "zero_detect_mult",
            DecodeError::Multipoint => "multipoint",
            DecodeError::ZeroMyDiscriminator => "zero_my_discriminator",
            DecodeError::ZeroYourDiscriminator { .. } => "zero_your_discriminator",
            DecodeError::PollAndFinal => "poll_and_final",
            DecodeError::Authenticated => "authenticated",
        }
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl ControlPacket {
    /// Decodes and checks `buf` (a UDP payload) as §6.8.6 requires before a session is
    /// looked up. Bytes after the Length field are ignored, as the RFC allows.
    ///
    /// # Errors
    /// The packet must be discarded; the error says why.
    pub fn decode(buf: &[u8]) -> Result<ControlPacket, DecodeError> {
        if buf.len() < MANDATORY_LEN {
            return Err(DecodeError::TooShort { len: buf.len() });
        }
        let version = buf[0] >> 5;
        if version != VERSION {
            return Err(DecodeError::BadVersion { version });
        }
        let flags = buf[1];
        let auth = flags & 0x04 != 0;
        let field = buf[3];
        let min = if auth { MANDATORY_LEN + 2 } else { MANDATORY_LEN };
        if usize::from(field) < min || usize::from(field) > buf.len() {
            return Err(DecodeError::BadLength { field, len: buf.len() });
        }
        let state = State::from_bits(flags >> 6);
        let p = ControlPacket {
            diag: Diag(buf[0] & 0x1f),
            state,
            poll: flags & 0x20 != 0,
            final_: flags & 0x10 != 0,
            control_plane_independent: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_mult: buf[2],
            my_discr: be32(buf, 4),
            your_discr: be32(buf, 8),
            desired_min_tx: Duration::from_micros(u64::from(be32(buf, 12))),
            required_min_rx: Duration::from_micros(u64::from(be32(buf, 16))),
            required_min_echo_rx: Duration::from_micros(u64::from(be32(buf, 20))),
        };
        if p.detect_mult == 0 {
            return Err(DecodeError::ZeroDetectMult);
        }
        if flags & 0x01 != 0 {
            return Err(DecodeError::Multipoint);
        }
        if p.my_discr == 0 {
            return Err(DecodeError::ZeroMyDiscriminator);
        }
        if p.your_discr == 0 && !matches!(state, State::Down | State::AdminDown) {
            return Err(DecodeError::ZeroYourDiscriminator { state });
        }
        if p.poll && p.final_ {
            return Err(DecodeError::PollAndFinal);
        }
        if auth {
            return Err(DecodeError::Authenticated);
        }
        Ok(p)
    }

    /// The 24-byte mandatory section (Length 24, no authentication, Multipoint clear).
    /// Intervals above `u32::MAX` microseconds are sent as `u32::MAX`.
    pub fn encode(&self) -> [u8; MANDATORY_LEN] {
        let mut b = [0u8; MANDATORY_LEN];
        b[0] = (VERSION << 5) | (self.diag.0 & 0x1f);
        b[1] = (self.state.bits() << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.final_) << 4)
            | (u8::from(self.control_plane_independent) << 3)
            | (u8::from(self.demand) << 1);
        b[2] = self.detect_mult;
        b[3] = MANDATORY_LEN as u8;
        b[4..8].copy_from_slice(&self.my_discr.to_be_bytes());
        b[8..12].copy_from_slice(&self.your_discr.to_be_bytes());
        b[12..16].copy_from_slice(&micros(self.desired_min_tx).to_be_bytes());
        b[16..20].copy_from_slice(&micros(self.required_min_rx).to_be_bytes());
        b[20..24].copy_from_slice(&micros(self.required_min_echo_rx).to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    fn show(b: &[u8]) -> String {
        b.chunks(4).map(|c| c.iter().map(|x| format!("{x:02x}")).collect::<String>()).collect::<Vec<_>>().join(" ")
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn base() -> ControlPacket {
        ControlPacket {
            diag: Diag::NONE,
            state: State::Down,
            poll: false,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 5,
            my_discr: 0x1234_5678,
            your_discr: 0,
            desired_min_tx: us(1_000_000),
            required_min_rx: us(10_000),
            required_min_echo_rx: Duration::ZERO,
        }
    }

    /// Byte/struct fixture pairs, checked both ways: what keepalived and BIRD send in each
    /// state, with the flag bits one at a time.
    #[test]
    fn fixtures_round_trip() {
        let cases: Vec<(&str, &str, ControlPacket)> = vec![
            ("down, no peer yet", "20 40 05 18 12345678 00000000 000f4240 00002710 00000000", base()),
            (
                "init, expired diag",
                "21 80 05 18 12345678 9abcdef0 000f4240 00002710 00000000",
                ControlPacket { diag: Diag::EXPIRED, state: State::Init, your_discr: 0x9abc_def0, ..base() },
            ),
            (
                "up with poll",
                "20 e0 03 18 00000001 00000002 000186a0 000186a0 00000000",
                ControlPacket {
                    state: State::Up,
                    poll: true,
                    detect_mult: 3,
                    my_discr: 1,
                    your_discr: 2,
                    desired_min_tx: us(100_000),
                    required_min_rx: us(100_000),
                    ..base()
                },
            ),
            (
                "up with final, C and D bits, echo interval",
                "27 da ff 18 ffffffff 00000002 00000001 00000000 00002710",
                ControlPacket {
                    diag: Diag::ADMIN_DOWN,
                    state: State::Up,
                    final_: true,
                    control_plane_independent: true,
                    demand: true,
                    detect_mult: 255,
                    my_discr: u32::MAX,
                    your_discr: 2,
                    desired_min_tx: us(1),
                    required_min_rx: Duration::ZERO,
                    required_min_echo_rx: us(10_000),
                    ..base()
                },
            ),
            (
                "admin down, reserved diag kept",
                "3f 00 01 18 00000007 00000000 000f4240 000f4240 00000000",
                ControlPacket {
                    diag: Diag(31),
                    state: State::AdminDown,
                    detect_mult: 1,
                    my_discr: 7,
                    required_min_rx: us(1_000_000),
                    ..base()
                },
            ),
        ];
        for (name, bytes, pkt) in cases {
            let bytes = hex(bytes);
            let enc = pkt.encode();
            assert_eq!(show(&enc), show(&bytes), "{name}: encode");
            assert_eq!(ControlPacket::decode(&bytes), Ok(pkt), "{name}: decode");
        }
    }

    /// Every §6.8.6 discard rule, one fixture each, plus the RFC's allowance for trailing bytes.
    #[test]
    fn reception_checks() {
        let ok = "20 40 05 18 12345678 00000000 000f4240 00002710 00000000";
        let cases: Vec<(&str, String, Result<(), DecodeError>)> = vec![
            ("empty", String::new(), Err(DecodeError::TooShort { len: 0 })),
            ("23 bytes", ok[..ok.len() - 2].to_owned(), Err(DecodeError::TooShort { len: 23 })),
            ("version 0", ok.replacen("20", "00", 1), Err(DecodeError::BadVersion { version: 0 })),
            ("version 2", ok.replacen("20", "40", 1), Err(DecodeError::BadVersion { version: 2 })),
            ("length 23", ok.replacen("05 18", "05 17", 1), Err(DecodeError::BadLength { field: 23, len: 24 })),
            ("length past the payload", ok.replacen("05 18", "05 1c", 1), Err(DecodeError::BadLength { field: 28, len: 24 })),
            ("trailing bytes ignored", format!("{ok} 00 00 00 00"), Ok(())),
            ("detect mult 0", ok.replacen("05 18", "00 18", 1), Err(DecodeError::ZeroDetectMult)),
            ("multipoint", ok.replacen("40 05", "41 05", 1), Err(DecodeError::Multipoint)),
            ("my discriminator 0", ok.replacen("12345678", "00000000", 1), Err(DecodeError::ZeroMyDiscriminator)),
            ("your discriminator 0 in Up", ok.replacen("40 05", "c0 05", 1), Err(DecodeError::ZeroYourDiscriminator { state: State::Up })),
            ("your discriminator 0 in Init", ok.replacen("40 05", "80 05", 1), Err(DecodeError::ZeroYourDiscriminator { state: State::Init })),
            ("your discriminator 0 in AdminDown", ok.replacen("40 05", "00 05", 1), Ok(())),
            ("poll and final", ok.replacen("40 05", "70 05", 1), Err(DecodeError::PollAndFinal)),
            ("auth without room", ok.replacen("40 05", "44 05", 1), Err(DecodeError::BadLength { field: 24, len: 24 })),
            ("auth", format!("{} 01 02", ok.replacen("40 05 18", "44 05 1a", 1)), Err(DecodeError::Authenticated)),
        ];
        for (name, bytes, want) in cases {
            let got = ControlPacket::decode(&hex(&bytes)).map(|_| ());
            assert_eq!(got, want, "{name}");
        }
    }

    /// Intervals too long for the 32-bit field saturate instead of wrapping.
    #[test]
    fn long_intervals_saturate() {
        let p = ControlPacket { desired_min_tx: Duration::from_secs(5000), ..base() };
        assert_eq!(ControlPacket::decode(&p.encode()).map(|d| d.desired_min_tx), Ok(us(u64::from(u32::MAX))));
    }
}
