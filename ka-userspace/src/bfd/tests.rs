//! Scenario tests of the BFD session with a fake clock: inputs and expected actions side by
//! side, one RFC 5880 rule per test.

use std::{net::IpAddr, time::Duration};

use super::*;

const A: u32 = 0xa;
const B: u32 = 0xb;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn t(n: u64) -> Time {
    Time::from_millis(n)
}

/// min_rx = min_tx = 100 ms, idle 1 s, multiplier 3, active.
fn params() -> SessionParams {
    SessionParams { min_rx: ms(100), min_tx: ms(100), idle_tx: ms(1000), detect_mult: 3, passive: false }
}

/// What the neighbour (discriminator B) sends: `state`, knowing us as `your`, with its
/// desired TX interval at 1 s until Up (as the RFC requires) and 100 ms once Up.
fn peer(state: State, your: u32) -> ControlPacket {
    ControlPacket {
        diag: Diag::NONE,
        state,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discr: B,
        your_discr: your,
        desired_min_tx: if state == State::Up { ms(100) } else { ms(1000) },
        required_min_rx: ms(100),
        required_min_echo_rx: Duration::ZERO,
    }
}

fn sends(actions: &[Action]) -> Vec<ControlPacket> {
    actions.iter().filter_map(|a| if let Action::Send(p) = a { Some(*p) } else { None }).collect()
}

fn clients(actions: &[Action]) -> Vec<bool> {
    actions.iter().filter_map(|a| if let Action::Client { up } = a { Some(*up) } else { None }).collect()
}

/// Brings a session Up through the three-way handshake and answers its Poll.
fn up_session() -> Session {
    let mut s = Session::new(params(), A, 1, t(0));
    s.handle(t(0), Event::Timer);
    s.handle(t(10), Event::Rx(peer(State::Down, 0)));
    s.handle(t(20), Event::Rx(peer(State::Up, A)));
    s.handle(t(30), Event::Rx(ControlPacket { final_: true, ..peer(State::Up, A) }));
    assert_eq!(s.state(), State::Up);
    assert!(!s.polling());
    s
}

/// §6.8.6 three-way handshake, step by step, with the packets each step sends: Down (your 0,
/// 1 s) → Init on the neighbour's Down → Up on its Up, clients told once, a Poll announcing
/// min_tx (§6.8.3), ended by the neighbour's Final.
#[test]
fn three_way_handshake() {
    let mut s = Session::new(params(), A, 1, t(0));
    assert_eq!(s.next_deadline(), Some(t(0)), "an active session sends at once");
    type Step = (u64, Event, State, &'static [bool], Option<(State, u32, bool, bool, Duration)>);
    let steps: Vec<Step> = vec![
        (0, Event::Timer, State::Down, &[], Some((State::Down, 0, false, false, ms(1000)))),
        (10, Event::Rx(peer(State::Down, 0)), State::Init, &[], None),
        (10, Event::Timer, State::Init, &[], Some((State::Init, B, false, false, ms(1000)))),
        (20, Event::Rx(peer(State::Up, A)), State::Up, &[true], None),
        (20, Event::Timer, State::Up, &[], Some((State::Up, B, true, false, ms(100)))),
        (30, Event::Rx(ControlPacket { poll: true, ..peer(State::Up, A) }), State::Up, &[], Some((State::Up, B, false, true, ms(100)))),
        (40, Event::Rx(ControlPacket { final_: true, ..peer(State::Up, A) }), State::Up, &[], None),
    ];
    for (i, (at, ev, state, client, sent)) in steps.into_iter().enumerate() {
        let actions = s.handle(t(at), ev);
        assert_eq!(s.state(), state, "step {i}");
        assert_eq!(clients(&actions), client, "step {i}: clients");
        let got: Vec<_> = sends(&actions).iter().map(|p| (p.state, p.your_discr, p.poll, p.final_, p.desired_min_tx)).collect();
        assert_eq!(got, sent.into_iter().collect::<Vec<_>>(), "step {i}: sent");
    }
    assert!(!s.polling(), "the Final ends the Poll Sequence");
    assert_eq!(s.tx_interval(), ms(100));
    assert_eq!(s.detection_time(), ms(300), "3 × max(100 ms, 100 ms)");
}

/// Down + received Init goes straight to Up (§6.8.6).
#[test]
fn down_to_up_on_init() {
    let mut s = Session::new(params(), A, 1, t(0));
    let actions = s.handle(t(5), Event::Rx(peer(State::Init, A)));
    assert_eq!(s.state(), State::Up);
    assert_eq!(clients(&actions), [true]);
    assert!(actions.contains(&Action::StateChanged { from: State::Down, to: State::Up, diag: Diag::NONE }));
}

/// §6.8.4: without packets for a Detection Time, Up goes Down with diag 1 and bfd.RemoteDiscr
/// 0 (§6.8.1), and says so at once; a packet in time restarts the timer.
#[test]
fn detection_time_expiry() {
    let mut s = up_session();
    // Last packet at 30 ms; detection time 300 ms.
    let changed = |a: &[Action]| a.iter().any(|a| matches!(a, Action::StateChanged { .. }));
    assert!(!changed(&s.handle(t(100), Event::Timer)));
    s.handle(t(200), Event::Rx(peer(State::Up, A)));
    assert!(!changed(&s.handle(t(499), Event::Timer)), "restarted at 200 ms");
    assert_eq!(s.state(), State::Up);
    let actions = s.handle(t(500), Event::Timer);
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.diag(), Diag::EXPIRED);
    assert_eq!(s.remote_discr(), 0);
    assert_eq!(clients(&actions), [false]);
    assert!(actions.contains(&Action::StateChanged { from: State::Up, to: State::Down, diag: Diag::EXPIRED }));
    // A Down packet at once, without the forgotten discriminator, then the idle rate.
    let p = sends(&actions);
    assert_eq!(p.iter().map(|p| (p.state, p.your_discr, p.diag, p.desired_min_tx)).collect::<Vec<_>>(), [(State::Down, 0, Diag::EXPIRED, ms(1000))]);
    assert!(s.next_deadline().is_some_and(|d| d >= t(1250)), "{:?}", s.next_deadline());
}

/// The Detection Time uses the neighbour's multiplier and the larger of our min_rx and its
/// desired TX interval.
#[test]
fn detection_time_negotiation() {
    let cases = [
        // (our min_rx, its desired tx, its multiplier, detection time)
        (ms(100), ms(100), 3, ms(300)),
        (ms(100), ms(1000), 3, ms(3000)),
        (ms(500), ms(100), 5, ms(2500)),
        (ms(10), ms(20), 1, ms(20)),
    ];
    for (min_rx, their_tx, mult, want) in cases {
        let mut s = Session::new(SessionParams { min_rx, ..params() }, A, 1, t(0));
        s.handle(t(0), Event::Rx(ControlPacket { desired_min_tx: their_tx, detect_mult: mult, ..peer(State::Down, 0) }));
        assert_eq!(s.detection_time(), want, "{min_rx:?} {their_tx:?} ×{mult}");
        assert_eq!(s.next_deadline().map(|_| ()), Some(()));
    }
}

/// The transmit interval is the greater of our desired interval (idle while not Up) and the
/// neighbour's Required Min RX Interval (§6.8.7).
#[test]
fn transmit_interval_negotiation() {
    let cases = [
        // (our min_tx, its min_rx, up, interval)
        (ms(100), ms(100), true, ms(100)),
        (ms(100), ms(300), true, ms(300)),
        (ms(50), ms(10), true, ms(50)),
        (ms(100), ms(300), false, ms(1000)),
        (ms(100), ms(2000), false, ms(2000)),
    ];
    for (min_tx, their_rx, up, want) in cases {
        let mut s = Session::new(SessionParams { min_tx, ..params() }, A, 1, t(0));
        let state = if up { State::Init } else { State::AdminDown };
        s.handle(t(0), Event::Rx(ControlPacket { required_min_rx: their_rx, ..peer(state, A) }));
        assert_eq!(s.state() == State::Up, up);
        assert_eq!(s.tx_interval(), want, "{min_tx:?} vs {their_rx:?}, up {up}");
    }
}

/// Periodic packets are jittered by 0-25 % (10-25 % with a multiplier of 1), never more
/// (§6.8.7).
#[test]
fn jitter_bounds() {
    for (mult, lo, hi) in [(3u8, 750u64, 1000u64), (1, 750, 900)] {
        let mut s = Session::new(SessionParams { detect_mult: mult, ..params() }, A, 7, t(0));
        let (mut min, mut max) = (u64::MAX, 0);
        let mut now = t(0);
        for _ in 0..2000 {
            s.handle(now, Event::Timer);
            let next = s.next_deadline().expect("scheduled");
            let gap = next.saturating_since(now).as_millis() as u64;
            min = min.min(gap);
            max = max.max(gap);
            now = next;
        }
        assert!(min >= lo && max <= hi, "multiplier {mult}: gaps {min}..{max} ms outside {lo}..{hi}");
        assert!(max - min > (hi - lo) / 2, "multiplier {mult}: jitter barely varies ({min}..{max})");
    }
}

/// A late wake-up does not stretch the interval: the next packet is planned from when this
/// one was due; after a stall longer than an interval, from now.
#[test]
fn late_timers_keep_the_rate() {
    let mut s = up_session();
    // Up at 20 ms: a packet was due then; the runtime wakes at 23 ms.
    assert_eq!(s.next_deadline(), Some(t(20)));
    assert_eq!(sends(&s.handle(t(23), Event::Timer)).len(), 1);
    let next = s.next_deadline().expect("next");
    assert!(next >= t(20 + 75) && next <= t(20 + 100), "planned from 20 ms: {next:?}");
    // A stall of 500 ms: from now.
    let late = next + ms(500);
    assert_eq!(sends(&s.handle(late, Event::Rx(peer(State::Up, A)))).len(), 0);
    assert_eq!(sends(&s.handle(late, Event::Timer)).len(), 1);
    let after = s.next_deadline().expect("next");
    assert!(after >= late + ms(75), "{after:?} vs {late:?}");
}

/// A Poll is answered at once with F set and P clear, whatever the timer (§6.8.7), even in the
/// middle of our own Poll Sequence.
#[test]
fn poll_answered_with_final() {
    let mut s = up_session();
    s.set_params(t(40), SessionParams { min_rx: ms(200), ..params() });
    assert!(s.polling());
    let actions = s.handle(t(41), Event::Rx(ControlPacket { poll: true, ..peer(State::Up, A) }));
    let p = sends(&actions);
    assert_eq!(p.len(), 1, "{actions:?}");
    assert!(p[0].final_ && !p[0].poll);
    assert_eq!(p[0].required_min_rx, ms(200), "the new value rides on the Final");
    assert!(s.polling(), "our own Poll goes on");
    let next = s.handle(t(41), Event::Timer);
    assert!(sends(&next).iter().all(|p| p.poll && !p.final_), "periodic packets carry P: {next:?}");
}

/// §6.8.3: an increase of the transmit interval while Up waits for the end of the Poll
/// Sequence; a decrease applies at once.
#[test]
fn interval_increase_waits_for_final() {
    let mut s = up_session();
    s.set_params(t(40), SessionParams { min_tx: ms(400), ..params() });
    assert!(s.polling());
    assert_eq!(s.tx_interval(), ms(100), "old interval until the Final");
    assert_eq!(s.packet(false).desired_min_tx, ms(400), "the new value is advertised with P");
    s.handle(t(50), Event::Rx(peer(State::Up, A)));
    assert_eq!(s.tx_interval(), ms(100), "a packet without F changes nothing");
    s.handle(t(60), Event::Rx(ControlPacket { final_: true, ..peer(State::Up, A) }));
    assert!(!s.polling());
    assert_eq!(s.tx_interval(), ms(400));
    s.set_params(t(70), SessionParams { min_tx: ms(50), ..params() });
    assert_eq!(s.tx_interval(), ms(100), "a decrease applies at once (bounded by its min_rx)");
}

/// §6.8.3: a lower Required Min RX Interval while Up is used for detection only once the
/// Poll Sequence has ended (the neighbour may still send at the old rate); a higher one at once.
#[test]
fn lower_min_rx_waits_for_final() {
    let mut s = Session::new(SessionParams { min_rx: ms(1000), ..params() }, A, 1, t(0));
    s.handle(t(0), Event::Rx(peer(State::Init, A)));
    s.handle(t(1), Event::Rx(ControlPacket { final_: true, ..peer(State::Up, A) }));
    assert_eq!(s.detection_time(), ms(3000));
    s.set_params(t(2), params());
    assert!(s.polling());
    assert_eq!(s.packet(false).required_min_rx, ms(100), "the new value is advertised");
    assert_eq!(s.detection_time(), ms(3000), "the old one detects until the Final");
    s.handle(t(900), Event::Rx(peer(State::Up, A)));
    assert_eq!(s.handle(t(1200), Event::Timer).iter().filter(|a| matches!(a, Action::StateChanged { .. })).count(), 0, "no false expiry");
    s.handle(t(1300), Event::Rx(ControlPacket { final_: true, ..peer(State::Up, A) }));
    assert_eq!(s.detection_time(), ms(300));
    s.set_params(t(1400), SessionParams { min_rx: ms(500), ..params() });
    assert_eq!(s.detection_time(), ms(1500), "an increase applies at once");
}

/// Up + received Down: Down with diag 3, clients told (§6.8.6).
#[test]
fn neighbor_signals_down() {
    let mut s = up_session();
    let actions = s.handle(t(50), Event::Rx(peer(State::Down, 0)));
    assert_eq!((s.state(), s.diag()), (State::Down, Diag::NEIGHBOR_DOWN));
    assert_eq!(clients(&actions), [false]);
    assert!(!s.client_up());
}

/// Received AdminDown: Down with diag 3, but clients are not told (keepalived, RFC 5882 §3.2);
/// the session coming back Up tells them nothing new.
#[test]
fn neighbor_admin_down_is_not_a_failure() {
    let mut s = up_session();
    let actions = s.handle(t(50), Event::Rx(ControlPacket { diag: Diag::ADMIN_DOWN, ..peer(State::AdminDown, 0) }));
    assert_eq!((s.state(), s.diag()), (State::Down, Diag::NEIGHBOR_DOWN));
    assert!(clients(&actions).is_empty(), "{actions:?}");
    assert!(s.client_up());
    s.handle(t(60), Event::Rx(peer(State::Down, 0)));
    let back = s.handle(t(70), Event::Rx(peer(State::Up, A)));
    assert_eq!(s.state(), State::Up);
    assert!(clients(&back).is_empty());
}

/// A passive session sends nothing until the neighbour has (§6.8.7), then answers.
#[test]
fn passive_waits_for_the_neighbor() {
    let mut s = Session::new(SessionParams { passive: true, ..params() }, A, 1, t(0));
    assert_eq!(s.next_deadline(), None);
    assert!(sends(&s.handle(t(5000), Event::Timer)).is_empty());
    s.handle(t(6000), Event::Rx(peer(State::Down, 0)));
    assert_eq!(s.state(), State::Init);
    let p = sends(&s.handle(t(6000), Event::Timer));
    assert_eq!(p.iter().map(|p| (p.state, p.your_discr)).collect::<Vec<_>>(), [(State::Init, B)]);
    // The neighbour goes silent: after the detection time the session is Down and, having
    // forgotten it, passive again.
    s.handle(t(9000), Event::Timer);
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.remote_discr(), 0);
    s.handle(t(9000), Event::Timer);
    assert_eq!(s.next_deadline(), None, "a passive session with no neighbour stays silent");
}

/// Periodic transmission stops when the neighbour asks for no packets (Required Min RX 0) or
/// runs Demand mode with both sides Up (§6.8.7); a Poll is still answered.
#[test]
fn transmission_stops_when_not_wanted() {
    let cases = [
        ("as usual", peer(State::Up, A), true),
        ("required min rx 0", ControlPacket { required_min_rx: Duration::ZERO, ..peer(State::Up, A) }, false),
        ("demand mode", ControlPacket { demand: true, ..peer(State::Up, A) }, false),
    ];
    for (name, pkt, sending) in cases {
        let mut s = up_session();
        s.handle(t(50), Event::Rx(pkt));
        assert_eq!(!sends(&s.handle(t(200), Event::Timer)).is_empty(), sending, "{name}");
        assert_eq!(s.state(), State::Up, "{name}: detection still runs, not expired yet");
        let answered = s.handle(t(201), Event::Rx(ControlPacket { poll: true, ..pkt }));
        assert_eq!(sends(&answered).len(), 1, "{name}: the Poll is answered");
    }
}

/// In Down, bfd.RemoteDiscr is forgotten after a Detection Time without packets (§6.8.1);
/// AdminDown discards every packet (§6.8.6) and Enable returns to Down.
#[test]
fn down_forgets_and_admin_down_discards() {
    let mut s = Session::new(params(), A, 1, t(0));
    s.handle(t(0), Event::Rx(ControlPacket { detect_mult: 2, ..peer(State::AdminDown, 0) }));
    assert_eq!(s.remote_discr(), B);
    s.handle(t(1999), Event::Timer);
    assert_eq!(s.remote_discr(), B);
    s.handle(t(2000), Event::Timer);
    assert_eq!(s.remote_discr(), 0);

    let mut s = up_session();
    let actions = s.handle(t(50), Event::AdminDown);
    assert_eq!((s.state(), s.diag()), (State::AdminDown, Diag::ADMIN_DOWN));
    assert!(clients(&actions).is_empty(), "keepalived tells no client of its own AdminDown");
    assert_eq!(s.next_deadline(), None);
    assert!(s.handle(t(60), Event::Rx(peer(State::Up, A))).is_empty());
    assert_eq!(s.state(), State::AdminDown);
    s.handle(t(70), Event::Enable);
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.next_deadline(), Some(t(70)));
}

fn spec(name: &str, neighbor: &str) -> SessionSpec {
    SessionSpec { name: name.into(), neighbor: neighbor.parse().expect("ip"), local: None, ttl: 255, max_hops: 0, params: params() }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// Datagrams find their session by Your Discriminator, or by address while it is zero; the
/// rest is refused with a reason (§6.8.6, RFC 5881 §5).
#[test]
fn sessions_demultiplex() {
    let mut all = Sessions::new(3);
    let mut s2 = spec("two", "198.18.0.3");
    s2.local = Some(ip("198.18.0.1"));
    s2.max_hops = 2;
    let mut s3 = spec("three", "198.18.0.4");
    s3.max_hops = 255;
    all.configure(t(0), vec![spec("one", "198.18.0.2"), s2, s3]);
    let d: Vec<u32> = (0..3).map(|i| all.session(i).expect("session").local_discr()).collect();
    assert!(d.iter().all(|x| *x != 0) && d[0] != d[1] && d[1] != d[2] && d[0] != d[2], "{d:?}");
    let bytes = |p: ControlPacket| p.encode().to_vec();
    let rx = |src: &str, dst: Option<&str>, ttl: Option<u8>, payload: Vec<u8>| (ip(src), dst.map(ip), ttl, payload);
    type Case = (&'static str, (IpAddr, Option<IpAddr>, Option<u8>, Vec<u8>), Result<usize, RxError>);
    let cases: Vec<Case> = vec![
        ("by address", rx("198.18.0.2", Some("198.18.0.1"), Some(255), bytes(peer(State::Down, 0))), Ok(0)),
        ("by discriminator", rx("198.18.0.3", Some("198.18.0.1"), Some(255), bytes(peer(State::Up, d[1]))), Ok(1)),
        ("source address must match", rx("198.18.0.3", Some("198.18.0.9"), Some(255), bytes(peer(State::Down, 0))), Err(RxError::NoSession { src: ip("198.18.0.3"), your_discr: 0 })),
        ("unknown neighbour", rx("198.18.0.99", None, Some(255), bytes(peer(State::Down, 0))), Err(RxError::NoSession { src: ip("198.18.0.99"), your_discr: 0 })),
        ("unknown discriminator", rx("198.18.0.2", None, Some(255), bytes(peer(State::Up, 12345))), Err(RxError::NoSession { src: ip("198.18.0.2"), your_discr: 12345 })),
        ("discriminator of another neighbour", rx("198.18.0.2", None, Some(255), bytes(peer(State::Up, d[1]))), Err(RxError::WrongSource { src: ip("198.18.0.2"), your_discr: d[1] })),
        ("TTL 254 with max_hops 0", rx("198.18.0.2", None, Some(254), bytes(peer(State::Down, 0))), Err(RxError::Ttl { ttl: 254, min: 255 })),
        ("TTL 253 with max_hops 2", rx("198.18.0.3", None, Some(253), bytes(peer(State::Down, 0))), Ok(1)),
        ("TTL 252 with max_hops 2", rx("198.18.0.3", None, Some(252), bytes(peer(State::Down, 0))), Err(RxError::Ttl { ttl: 252, min: 253 })),
        ("max_hops 255: TTL unchecked", rx("198.18.0.4", None, Some(1), bytes(peer(State::Down, 0))), Ok(2)),
        ("TTL unknown", rx("198.18.0.2", None, None, bytes(peer(State::Down, 0))), Ok(0)),
        ("malformed", rx("198.18.0.2", None, Some(255), vec![0x20, 0x40]), Err(RxError::Decode(DecodeError::TooShort { len: 2 }))),
    ];
    for (name, (src, dst, ttl, payload), want) in cases {
        let got = all.receive(t(1), Received { src, dst, ttl, payload: &payload }).map(|(i, _)| i);
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(all.session(0).map(Session::state), Some(State::Init), "the matched packets ran the session");
}

/// A reload keeps a session with the same name and addresses (its state and discriminator)
/// and takes the new timers with a Poll; a changed neighbour starts over in Down.
#[test]
fn reload_keeps_sessions_by_name() {
    let mut all = Sessions::new(5);
    all.configure(t(0), vec![spec("one", "198.18.0.2"), spec("two", "198.18.0.3")]);
    let d1 = all.session(0).expect("one").local_discr();
    let d2 = all.session(1).expect("two").local_discr();
    all.receive(t(1), Received { src: ip("198.18.0.2"), dst: None, ttl: Some(255), payload: &peer(State::Init, d1).encode() }).expect("rx");
    assert_eq!(all.session(0).map(Session::state), Some(State::Up));
    all.receive(t(2), Received { src: ip("198.18.0.2"), dst: None, ttl: Some(255), payload: &ControlPacket { final_: true, ..peer(State::Up, d1) }.encode() }).expect("rx");
    let mut one = spec("one", "198.18.0.2");
    one.params.min_tx = ms(300);
    all.configure(t(3), vec![spec("two", "198.18.0.9"), one]);
    let kept = all.session(1).expect("kept");
    assert_eq!((kept.state(), kept.local_discr()), (State::Up, d1));
    assert!(kept.polling(), "new timers are announced with a Poll");
    let fresh = all.session(0).expect("fresh");
    assert_eq!(fresh.state(), State::Down);
    assert_ne!(fresh.local_discr(), d1);
    let _ = d2;
}

