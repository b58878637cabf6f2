//! Scenario tests of the instance state machine and sync groups with a fake clock: one per RFC
//! rule or keepalived option, inputs and expected actions side by side.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ka_common::vrrp::Version;

use super::fsm::{
    Action, Event, InitialState, Instance, InstanceParams, Notify, ParamsError, RxAdvert, State,
};
use super::sync_group::{MemberStatus, SyncAction, SyncCommand, SyncGroup};
use super::timers::{Time, TimerKind};
use super::track::TrackSummary;

use Action::{AddVips, CancelTimer, DelVips, PriorityChanged, SendAdvert, SendGarp};
use TimerKind::{Advert, GarpDelay, MasterDown, StartupDelay};

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

/// Time in milliseconds.
fn ms(ms: u64) -> Time {
    Time::from_millis(ms)
}

/// Time in microseconds (skews are not whole milliseconds).
fn us(us: u64) -> Time {
    Time::from_epoch(Duration::from_micros(us))
}

/// Time in nanoseconds (for skews that are not whole microseconds).
fn ns(ns: u64) -> Time {
    Time::from_epoch(Duration::from_nanos(ns))
}

/// Master_Down_Interval at priority 100 and 1 s: 3 s + 156/256 s.
const MDI_100_US: u64 = 3_609_375;

fn params(priority: u8) -> InstanceParams {
    InstanceParams::new(1, Version::V3, priority, ip(1))
}

fn instance(p: InstanceParams) -> Instance {
    Instance::new(p).expect("valid params")
}

fn advert(from: u8, priority: u8) -> Event {
    Event::AdvertReceived(RxAdvert {
        from: ip(from),
        priority,
        max_adver_int: 100,
    })
}

fn arm(kind: TimerKind, at: Time) -> Action {
    Action::ArmTimer { kind, at }
}

fn dp(master: bool) -> Action {
    Action::SetDatapathMaster {
        master,
        accept: true,
    }
}

fn notify(n: Notify) -> Action {
    Action::Notify(n)
}

fn track(total_weight: i64, fault: bool) -> Event {
    Event::TrackerChanged(TrackSummary {
        total_weight,
        fault,
        pending_init: false,
    })
}

/// The entry actions of Master at `now` with `priority` (1 s adverts, default GARP settings).
fn master_entry(now: Time, priority: u8) -> Vec<Action> {
    vec![
        SendAdvert { priority },
        AddVips,
        dp(true),
        SendGarp { repeat: 5 },
        arm(Advert, now + Duration::from_secs(1)),
        arm(GarpDelay, now + Duration::from_secs(5)),
        notify(Notify::Master),
    ]
}

/// The exit actions of Master towards Backup (no priority-0 advert).
fn master_exit() -> Vec<Action> {
    vec![
        CancelTimer(Advert),
        CancelTimer(GarpDelay),
        DelVips,
        dp(false),
    ]
}

/// Startup into Backup with the Master_Down_Timer at `down_at`.
fn startup_backup(down_at: Time) -> Vec<Action> {
    vec![
        DelVips,
        dp(false),
        arm(MasterDown, down_at),
        notify(Notify::Backup),
    ]
}

/// Runs `steps` (time, event, expected actions) and checks each step's actions.
fn scenario(inst: &mut Instance, steps: Vec<(Time, Event, Vec<Action>)>) {
    for (i, (now, event, want)) in steps.into_iter().enumerate() {
        let got = inst.handle(now, event);
        assert_eq!(got, want, "step {i}: {event:?} at {now:?}");
    }
}

/// Brings a priority-`prio` instance to Master at t = MDI (startup at 0, nobody else).
fn master_at_mdi(p: InstanceParams) -> (Instance, Time) {
    let mut inst = instance(p);
    inst.handle(ms(0), Event::Startup);
    let t = inst.timer(MasterDown).expect("armed");
    inst.handle(t, Event::TimerFired(MasterDown));
    assert_eq!(inst.state(), State::Master);
    (inst, t)
}

/// RFC 5798 §6.4.1: a non-owner starts as Backup with the Master_Down_Timer set to
/// Master_Down_Interval (3 × 1 s + (256 − 100)/256 s).
#[test]
fn startup_non_owner_goes_backup_with_master_down_interval() {
    let mut i = instance(params(100));
    scenario(
        &mut i,
        vec![(ms(0), Event::Startup, startup_backup(us(MDI_100_US)))],
    );
    assert_eq!(i.state(), State::Backup);
}

/// RFC 5798 §6.4.2: when the Master_Down_Timer fires the Backup sends an advert, GARPs, arms
/// the Adver_Timer and becomes Master.
#[test]
fn master_down_timer_makes_backup_master() {
    let mut i = instance(params(100));
    let t = us(MDI_100_US);
    scenario(
        &mut i,
        vec![
            (ms(0), Event::Startup, startup_backup(t)),
            (ms(3000), Event::TimerFired(MasterDown), vec![]), // early wake-up: ignored
            (t, Event::TimerFired(MasterDown), master_entry(t, 100)),
            (t, Event::TimerFired(MasterDown), vec![]), // stale duplicate: ignored
        ],
    );
}

/// RFC 5798 §6.4.1 + keepalived `state MASTER`: the address owner (255) becomes Master at once.
#[test]
fn owner_with_state_master_goes_master_at_startup() {
    let mut p = params(255);
    p.initial_state = InitialState::Master;
    let mut i = instance(p);
    scenario(
        &mut i,
        vec![(ms(0), Event::Startup, master_entry(ms(0), 255))],
    );
}

/// keepalived: with `state BACKUP` even the owner waits Master_Down_Interval (skew 1/256 s).
#[test]
fn owner_with_state_backup_waits() {
    let mut i = instance(params(255));
    scenario(
        &mut i,
        vec![(ms(0), Event::Startup, startup_backup(ns(3_003_906_250)))],
    );
}

/// keepalived `state MASTER` below 255: Backup with a short timer of one interval plus the
/// minimum skew.
#[test]
fn state_master_non_owner_uses_short_down_timer() {
    let mut p = params(100);
    p.initial_state = InitialState::Master;
    let mut i = instance(p);
    scenario(
        &mut i,
        vec![(ms(0), Event::Startup, startup_backup(ns(1_003_906_250)))],
    );
}

/// RFC 5798 §6.4.2: an advert of higher or equal priority resets the Master_Down_Timer, and in
/// v3 the Backup adopts the Master's interval (50 cs → 1.5 s + 156 × 50 cs / 256).
#[test]
fn backup_resets_timer_and_learns_master_adver_int() {
    let mut i = instance(params(100));
    let rx = |priority| {
        Event::AdvertReceived(RxAdvert {
            from: ip(2),
            priority,
            max_adver_int: 50,
        })
    };
    scenario(
        &mut i,
        vec![
            (ms(0), Event::Startup, startup_backup(us(MDI_100_US))),
            (ms(1000), rx(200), vec![arm(MasterDown, ns(2_804_687_500))]),
            (ms(1500), rx(100), vec![arm(MasterDown, ns(3_304_687_500))]),
        ],
    );
    assert_eq!(i.master_adver_int(), 50);
    assert_eq!(i.master(), Some((ip(2), 100)));
}

/// RFC 3768 §6.4.2: VRRPv2 keeps its own interval and its skew is in seconds
/// (3 s interval: 9 s + 156/256 s).
#[test]
fn v2_ignores_advert_interval_and_skews_in_seconds() {
    let mut p = InstanceParams::new(1, Version::V2, 100, ip(1));
    p.advert_int = 300;
    let mut i = instance(p);
    let rx = Event::AdvertReceived(RxAdvert {
        from: ip(2),
        priority: 200,
        max_adver_int: 100,
    });
    scenario(
        &mut i,
        vec![
            (ms(0), Event::Startup, startup_backup(us(9_609_375))),
            (ms(1000), rx, vec![arm(MasterDown, us(10_609_375))]),
        ],
    );
    assert_eq!(i.master_adver_int(), 300);
}

/// keepalived `down_timer_adverts 1`: Master_Down_Interval is one interval plus skew.
#[test]
fn down_timer_adverts_changes_the_multiplier() {
    let mut p = params(100);
    p.down_timer_adverts = 1;
    let mut i = instance(p);
    scenario(
        &mut i,
        vec![(ms(0), Event::Startup, startup_backup(us(1_609_375)))],
    );
}

/// RFC 5798 §6.4.2: a priority-0 advert (Master resigning) sets the Master_Down_Timer to
/// Skew_Time, so the highest-priority Backup takes over first.
#[test]
fn backup_takes_over_after_skew_when_master_resigns() {
    let mut i = instance(params(200));
    // Skew at priority 200, 1 s: 56/256 s.
    let t = us(2_000_000 + 218_750);
    scenario(
        &mut i,
        vec![
            (ms(0), Event::Startup, startup_backup(us(3_218_750))),
            (ms(2000), advert(2, 0), vec![arm(MasterDown, t)]),
            (t, Event::TimerFired(MasterDown), master_entry(t, 200)),
        ],
    );
}

/// RFC 5798 §6.4.2: with preempt, a lower priority advert is discarded, so the higher priority
/// Backup preempts when its timer runs out.
#[test]
fn preempt_discards_lower_priority_adverts() {
    let mut i = instance(params(150));
    // Priority 150: skew 106/256 s.
    let down = ns(3_414_062_500);
    scenario(
        &mut i,
        vec![
            (ms(0), Event::Startup, startup_backup(down)),
            (ms(1000), advert(2, 100), vec![]),
            (ms(2000), advert(2, 100), vec![]),
            (down, Event::TimerFired(MasterDown), master_entry(down, 150)),
        ],
    );
}

/// keepalived `nopreempt` (RFC Preempt_Mode false): lower priority adverts still reset the
/// timer, so a running lower priority Master is not preempted.
#[test]
fn nopreempt_honours_lower_priority_master() {
    let mut p = params(150);
    p.preempt = false;
    let mut i = instance(p);
    scenario(
        &mut i,
        vec![
            (ms(0), Event::Startup, startup_backup(ns(3_414_062_500))),
            (
                ms(1000),
                advert(2, 100),
                vec![arm(MasterDown, ns(4_414_062_500))],
            ),
            (
                ms(2000),
                advert(2, 100),
                vec![arm(MasterDown, ns(5_414_062_500))],
            ),
        ],
    );
    assert_eq!(i.state(), State::Backup);
}

/// keepalived `preempt_delay`: the first takeover waits the delay on top of
/// Master_Down_Interval, and a lower priority Master is honoured for the delay after it was
/// first heard, then preempted.
#[test]
fn preempt_delay_postpones_preemption() {
    let mut p = params(150);
    p.preempt_delay = Duration::from_secs(10);
    let mut i = instance(p);
    scenario(
        &mut i,
        vec![
            (ms(0), Event::Startup, startup_backup(ns(13_414_062_500))),
            // First lower-priority advert at 1 s starts the 10 s delay and resets the timer.
            (
                ms(1000),
                advert(2, 100),
                vec![arm(MasterDown, ns(4_414_062_500))],
            ),
            (
                ms(10_000),
                advert(2, 100),
                vec![arm(MasterDown, ns(13_414_062_500))],
            ),
            // From 11 s on the delay has run: lower priority adverts are discarded.
            (ms(11_000), advert(2, 100), vec![]),
            (
                ns(13_414_062_500),
                Event::TimerFired(MasterDown),
                master_entry(ns(13_414_062_500), 150),
            ),
        ],
    );
}

/// RFC 5798 §6.4.3: when the Adver_Timer fires the Master sends an advert and re-arms it;
/// keepalived `garp_master_delay` sends the second GARP burst.
#[test]
fn master_adver_timer_and_garp_delay() {
    let (mut i, t) = master_at_mdi(params(100));
    let t1 = t + Duration::from_secs(1);
    let t5 = t + Duration::from_secs(5);
    scenario(
        &mut i,
        vec![
            (
                t1,
                Event::TimerFired(Advert),
                vec![
                    SendAdvert { priority: 100 },
                    arm(Advert, t1 + Duration::from_secs(1)),
                ],
            ),
            (
                t5,
                Event::TimerFired(GarpDelay),
                vec![SendGarp { repeat: 5 }],
            ),
        ],
    );
}

/// RFC 5798 §6.4.3: a higher priority advert makes the Master cancel its Adver_Timer, adopt
/// the sender's interval and become Backup; no priority-0 advert is sent.
#[test]
fn master_yields_to_higher_priority() {
    let (mut i, t) = master_at_mdi(params(100));
    let now = t + Duration::from_millis(100);
    let rx = Event::AdvertReceived(RxAdvert {
        from: ip(2),
        priority: 200,
        max_adver_int: 200,
    });
    // 3 × 2 s + 156 × 2 s / 256.
    let mut want = master_exit();
    want.extend([
        arm(MasterDown, now + Duration::from_micros(7_218_750)),
        notify(Notify::Backup),
    ]);
    scenario(&mut i, vec![(now, rx, want)]);
    assert_eq!(i.state(), State::Backup);
    assert_eq!(i.master_adver_int(), 200);
}

/// RFC 5798 §6.4.3: equal priorities are broken by the higher primary address: 10.0.0.2 wins
/// over our 10.0.0.1; our 10.0.0.1 wins over 10.0.0.0 (keepalived then re-asserts with an
/// advert and notifies MASTER_RX_LOWER_PRI).
#[test]
fn equal_priority_higher_address_wins() {
    let (mut i, t) = master_at_mdi(params(100));
    scenario(
        &mut i,
        vec![(
            t,
            advert(0, 100),
            vec![
                SendAdvert { priority: 100 },
                notify(Notify::MasterRxLowerPri),
            ],
        )],
    );
    let mut want = master_exit();
    want.extend([
        arm(MasterDown, t + Duration::from_micros(MDI_100_US)),
        notify(Notify::Backup),
    ]);
    scenario(&mut i, vec![(t, advert(2, 100), want)]);
}

/// keepalived `lower_prio_no_advert`: the Master ignores a lower priority advert silently
/// (strict RFC 5798 §6.4.3 "Discard"), only notifying; `garp_lower_prio_repeat` adds GARPs.
#[test]
fn lower_prio_no_advert_and_garp_lower_prio() {
    let mut p = params(100);
    p.lower_prio_no_advert = true;
    p.garp_lower_prio_repeat = 2;
    let (mut i, t) = master_at_mdi(p);
    scenario(
        &mut i,
        vec![(
            t,
            advert(2, 50),
            vec![SendGarp { repeat: 2 }, notify(Notify::MasterRxLowerPri)],
        )],
    );
}

/// keepalived `garp_lower_prio_delay`: after the lower-priority burst, a second one when the
/// delay has run, still Master; leaving Master cancels it; a sync-group peer's
/// `GroupLowerPrio` sends this member's bursts too, and nothing outside Master.
#[test]
fn garp_lower_prio_delay_second_burst() {
    let mut p = params(100);
    p.garp_lower_prio_repeat = 3;
    p.garp_lower_prio_delay = Duration::from_secs(10);
    let (mut i, t) = master_at_mdi(p.clone());
    let again = t + Duration::from_secs(10);
    scenario(
        &mut i,
        vec![
            (
                t,
                advert(2, 50),
                vec![SendAdvert { priority: 100 }, SendGarp { repeat: 3 }, arm(TimerKind::LowerPrioGarp, again), notify(Notify::MasterRxLowerPri)],
            ),
            (again, Event::TimerFired(TimerKind::LowerPrioGarp), vec![SendGarp { repeat: 3 }]),
            (again, Event::GroupLowerPrio, vec![SendGarp { repeat: 3 }, arm(TimerKind::LowerPrioGarp, again + Duration::from_secs(10))]),
        ],
    );
    // Yielding to a higher priority cancels the pending second burst.
    let later = again + Duration::from_secs(1);
    let got = i.handle(later, advert(2, 200));
    assert!(got.contains(&CancelTimer(TimerKind::LowerPrioGarp)), "{got:?}");
    assert_eq!(i.handle(later, Event::GroupLowerPrio), vec![], "a Backup sends no lower-priority GARPs");
    // Zero delay: one burst, no timer.
    p.garp_lower_prio_delay = Duration::ZERO;
    let (mut i, t) = master_at_mdi(p);
    scenario(&mut i, vec![(t, advert(2, 50), vec![SendAdvert { priority: 100 }, SendGarp { repeat: 3 }, notify(Notify::MasterRxLowerPri)])]);
}

/// keepalived `higher_prio_send_advert`: one last advert with our priority before yielding.
#[test]
fn higher_prio_send_advert_sends_before_yielding() {
    let mut p = params(100);
    p.higher_prio_send_advert = true;
    let (mut i, t) = master_at_mdi(p);
    let mut want = vec![SendAdvert { priority: 100 }];
    want.extend(master_exit());
    want.extend([
        arm(MasterDown, t + Duration::from_micros(MDI_100_US)),
        notify(Notify::Backup),
    ]);
    scenario(&mut i, vec![(t, advert(2, 200), want)]);
}

/// RFC 5798 §6.4.3: a priority-0 advert makes the Master send an advert at once and reset its
/// Adver_Timer.
#[test]
fn master_answers_priority_zero() {
    let (mut i, t) = master_at_mdi(params(100));
    let now = t + Duration::from_millis(300);
    scenario(
        &mut i,
        vec![(
            now,
            advert(2, 0),
            vec![
                SendAdvert { priority: 100 },
                arm(Advert, now + Duration::from_secs(1)),
            ],
        )],
    );
}

/// RFC 5798 §6.4.3 Shutdown: the Master cancels its timer, resigns with a priority-0 advert and
/// goes to Initialize; keepalived notifies STOP.
#[test]
fn shutdown_from_master_resigns_with_priority_zero() {
    let (mut i, t) = master_at_mdi(params(100));
    scenario(
        &mut i,
        vec![(
            t,
            Event::Shutdown,
            vec![
                CancelTimer(Advert),
                CancelTimer(GarpDelay),
                SendAdvert { priority: 0 },
                DelVips,
                dp(false),
                notify(Notify::Stop),
            ],
        )],
    );
    assert_eq!(i.state(), State::Initialize);
}

/// RFC 5798 §6.4.2 Shutdown: the Backup cancels its Master_Down_Timer; a second shutdown does
/// nothing; a new Startup works again.
#[test]
fn shutdown_from_backup_and_restart() {
    let mut i = instance(params(100));
    scenario(
        &mut i,
        vec![
            (ms(0), Event::Startup, startup_backup(us(MDI_100_US))),
            (
                ms(1),
                Event::Shutdown,
                vec![CancelTimer(MasterDown), notify(Notify::Stop)],
            ),
            (ms(2), Event::Shutdown, vec![]),
            (
                ms(3),
                Event::Startup,
                startup_backup(ms(3) + Duration::from_micros(MDI_100_US)),
            ),
        ],
    );
}

/// keepalived `notify_deleted`: deletion by reload notifies DELETED, otherwise FAULT.
#[test]
fn delete_notifies_deleted_or_fault() {
    let mut p = params(100);
    p.notify_deleted = true;
    let mut i = instance(p);
    i.handle(ms(0), Event::Startup);
    assert_eq!(
        i.handle(ms(1), Event::Delete),
        vec![CancelTimer(MasterDown), notify(Notify::Deleted)]
    );
    let mut i = instance(params(100));
    i.handle(ms(0), Event::Startup);
    assert_eq!(
        i.handle(ms(1), Event::Delete),
        vec![CancelTimer(MasterDown), notify(Notify::Fault)]
    );
}

/// keepalived `vrrp_startup_delay`: the instance stays in Initialize until the delay fires.
#[test]
fn startup_delay() {
    let mut p = params(100);
    p.startup_delay = Duration::from_millis(5500);
    let mut i = instance(p);
    scenario(
        &mut i,
        vec![
            (ms(0), Event::Startup, vec![arm(StartupDelay, ms(5500))]),
            (ms(1000), advert(2, 200), vec![]),
            (
                ms(5500),
                Event::TimerFired(StartupDelay),
                startup_backup(ms(5500) + Duration::from_micros(MDI_100_US)),
            ),
        ],
    );
}

/// keepalived tracking: a weighted tracker changes the effective priority (and Skew_Time); the
/// Master's next advert carries it.
#[test]
fn weighted_tracker_changes_advertised_priority() {
    let (mut i, t) = master_at_mdi(params(100));
    let t1 = t + Duration::from_secs(1);
    scenario(
        &mut i,
        vec![
            (t, track(-30, false), vec![PriorityChanged(70)]),
            (
                t1,
                Event::TimerFired(Advert),
                vec![
                    SendAdvert { priority: 70 },
                    arm(Advert, t1 + Duration::from_secs(1)),
                ],
            ),
            (t1, track(-30, false), vec![]),
        ],
    );
}

/// keepalived: the effective priority is clamped to 254 and an address owner is never
/// adjusted.
#[test]
fn tracker_weights_clamp_and_skip_owner() {
    let mut i = instance(params(250));
    assert_eq!(
        i.handle(ms(0), track(20, false)),
        vec![PriorityChanged(254)]
    );
    let mut o = instance(params(255));
    assert_eq!(o.handle(ms(0), track(-100, false)), vec![]);
    assert_eq!(o.effective_priority(), 255);
}

/// keepalived: an unweighted tracker failing takes a Master to FAULT (resigning with priority
/// 0, like keepalived), and its recovery brings the instance back as Backup.
#[test]
fn unweighted_failure_means_fault_and_recovery_means_backup() {
    let (mut i, t) = master_at_mdi(params(100));
    let later = t + Duration::from_secs(2);
    scenario(
        &mut i,
        vec![
            (
                t,
                track(0, true),
                vec![
                    CancelTimer(Advert),
                    CancelTimer(GarpDelay),
                    SendAdvert { priority: 0 },
                    DelVips,
                    dp(false),
                    notify(Notify::Fault),
                ],
            ),
            (t, advert(2, 50), vec![]), // adverts are ignored in FAULT
            (
                later,
                track(0, false),
                vec![
                    arm(MasterDown, later + Duration::from_micros(MDI_100_US)),
                    notify(Notify::Backup),
                ],
            ),
        ],
    );
}

/// keepalived: a tracker already down at startup means FAULT straight from Initialize.
#[test]
fn fault_at_startup() {
    let mut i = instance(params(100));
    scenario(
        &mut i,
        vec![
            (ms(0), track(0, true), vec![]),
            (
                ms(0),
                Event::Startup,
                vec![DelVips, dp(false), notify(Notify::Fault)],
            ),
        ],
    );
}

/// keepalived: an unweighted script with no result yet holds the instance in Initialize; its
/// first result decides BACKUP or FAULT.
#[test]
fn pending_script_holds_initialize() {
    let mut i = instance(params(100));
    let pending = Event::TrackerChanged(TrackSummary {
        total_weight: 0,
        fault: false,
        pending_init: true,
    });
    scenario(
        &mut i,
        vec![
            (ms(0), pending, vec![]),
            (ms(0), Event::Startup, vec![]),
            (
                ms(700),
                track(0, false),
                startup_backup(ms(700) + Duration::from_micros(MDI_100_US)),
            ),
        ],
    );
}

/// keepalived: two address owners are a configuration error; ours drops to 254 and the normal
/// rules elect (the higher address, 10.0.0.2, wins).
#[test]
fn two_owners_lower_ours() {
    let mut p = params(255);
    p.initial_state = InitialState::Master;
    let mut i = instance(p);
    i.handle(ms(0), Event::Startup);
    let mut want = vec![PriorityChanged(254)];
    want.extend(master_exit());
    // Priority 254: skew 2/256 s.
    want.extend([
        arm(MasterDown, ms(100) + Duration::from_nanos(3_007_812_500)),
        notify(Notify::Backup),
    ]);
    scenario(&mut i, vec![(ms(100), advert(2, 255), want)]);
}

/// RFC 5798 §6.1 Accept_Mode: `no_accept` is passed to the datapath; the owner always accepts.
#[test]
fn no_accept_reaches_the_datapath() {
    let mut p = params(100);
    p.accept = false;
    let (i, _) = master_at_mdi(p);
    let _ = i;
    let mut p = params(100);
    p.accept = false;
    let mut i = instance(p);
    let start = i.handle(ms(0), Event::Startup);
    assert!(start.contains(&Action::SetDatapathMaster {
        master: false,
        accept: false
    }));
    let t = i.timer(MasterDown).expect("armed");
    let got = i.handle(t, Event::TimerFired(MasterDown));
    assert!(got.contains(&Action::SetDatapathMaster {
        master: true,
        accept: false
    }));
    let mut p = params(255);
    p.accept = false;
    p.initial_state = InitialState::Master;
    let mut o = instance(p);
    assert!(o
        .handle(ms(0), Event::Startup)
        .contains(&Action::SetDatapathMaster {
            master: true,
            accept: true
        }));
}

/// Invalid parameters are refused with the VRID in the error.
#[test]
fn params_validation() {
    let check = |f: &dyn Fn(&mut InstanceParams)| {
        let mut p = params(100);
        f(&mut p);
        Instance::new(p).err()
    };
    assert_eq!(check(&|p| p.vrid = 0), Some(ParamsError::Vrid));
    assert_eq!(
        check(&|p| p.priority = 0),
        Some(ParamsError::Priority { vrid: 1 })
    );
    assert_eq!(
        check(&|p| p.advert_int = 4096),
        Some(ParamsError::AdvertInt {
            vrid: 1,
            centis: 4096
        })
    );
    assert_eq!(
        check(&|p| {
            p.version = Version::V2;
            p.advert_int = 50;
        }),
        Some(ParamsError::AdvertIntV2 {
            vrid: 1,
            centis: 50
        })
    );
    assert_eq!(
        check(&|p| p.down_timer_adverts = 0),
        Some(ParamsError::DownTimerAdverts { vrid: 1, value: 0 })
    );
    assert_eq!(
        check(&|p| p.family = ka_common::vrrp::Family::V6),
        Some(ParamsError::Family { vrid: 1 })
    );
    assert_eq!(
        check(&|p| {
            p.initial_state = InitialState::Master;
            p.preempt = false;
        }),
        Some(ParamsError::StateMasterWithPreemptOption { vrid: 1 })
    );
    assert_eq!(
        check(&|p| p.advert_int = 5),
        None,
        "v3 sub-second intervals are fine"
    );
}

// ---- sync groups -------------------------------------------------------------------------

/// Two sync group members and their group, with a bus that delivers every order until quiet.
struct Pair {
    a: Instance,
    b: Instance,
    group: SyncGroup<char>,
    notifies: Vec<State>,
}

impl Pair {
    fn new() -> Pair {
        let mk = |vrid| {
            let mut p = InstanceParams::new(vrid, Version::V3, 100, ip(1));
            p.sync_group = true;
            instance(p)
        };
        Pair {
            a: mk(1),
            b: mk(2),
            group: SyncGroup::new(['a', 'b']),
            notifies: Vec::new(),
        }
    }

    fn inst(&mut self, id: char) -> &mut Instance {
        if id == 'a' {
            &mut self.a
        } else {
            &mut self.b
        }
    }

    /// Delivers `event` to `id`, then routes SyncStatus → group → Sync commands until quiet.
    fn send(&mut self, now: Time, id: char, event: Event) {
        let mut queue = vec![(id, event)];
        while let Some((id, event)) = queue.pop() {
            let actions = self.inst(id).handle(now, event);
            for a in actions {
                if let Action::SyncStatus(s) = a {
                    for out in self.group.update(id, s) {
                        match out {
                            SyncAction::Command { member, cmd } => {
                                queue.insert(0, (member, Event::Sync(cmd)))
                            }
                            SyncAction::Notify(st) => self.notifies.push(st),
                        }
                    }
                }
            }
        }
    }

    fn states(&self) -> (State, State) {
        (self.a.state(), self.b.state())
    }

    fn fire_down(&mut self, id: char) {
        let t = self.inst(id).timer(MasterDown).expect("armed");
        self.send(t, id, Event::TimerFired(MasterDown));
    }
}

/// keepalived sync group: one member whose timer fires waits as Backup until every member can
/// be Master, then they all become Master together.
#[test]
fn sync_group_goes_master_only_when_all_can() {
    let mut g = Pair::new();
    g.send(ms(0), 'a', Event::Startup);
    g.send(ms(0), 'b', Event::Startup);
    assert_eq!(g.notifies, vec![State::Backup]);
    g.fire_down('a');
    assert_eq!(
        g.states(),
        (State::Backup, State::Backup),
        "a alone must not take over"
    );
    // b still hears a Master: it does not want to take over; a keeps waiting.
    g.send(ms(3000), 'b', advert(2, 200));
    g.fire_down('a');
    assert_eq!(g.states(), (State::Backup, State::Backup));
    g.fire_down('b');
    assert_eq!(g.states(), (State::Master, State::Master));
    assert_eq!(g.group.state(), State::Master);
    assert_eq!(g.notifies, vec![State::Backup, State::Master]);
}

/// keepalived sync group: a member leaving MASTER (higher priority advert) takes the others to
/// BACKUP.
#[test]
fn sync_group_backup_propagates() {
    let mut g = Pair::new();
    g.send(ms(0), 'a', Event::Startup);
    g.send(ms(0), 'b', Event::Startup);
    g.fire_down('a');
    g.fire_down('b');
    assert_eq!(g.states(), (State::Master, State::Master));
    g.send(ms(5000), 'a', advert(2, 200));
    assert_eq!(g.states(), (State::Backup, State::Backup));
    assert_eq!(g.group.state(), State::Backup);
}

/// keepalived sync group: one member's FAULT puts every member in FAULT; when it recovers, all
/// are released to BACKUP.
#[test]
fn sync_group_fault_propagates_and_releases() {
    let mut g = Pair::new();
    g.send(ms(0), 'a', Event::Startup);
    g.send(ms(0), 'b', Event::Startup);
    g.fire_down('a');
    g.fire_down('b');
    g.send(ms(5000), 'b', track(0, true));
    assert_eq!(g.states(), (State::Fault, State::Fault));
    assert_eq!(g.group.state(), State::Fault);
    // A second own fault on a, then b recovers: a stays in FAULT (its own), so b is held.
    g.send(ms(5100), 'a', track(0, true));
    g.send(ms(5200), 'b', track(0, false));
    assert_eq!(g.states(), (State::Fault, State::Fault));
    g.send(ms(5300), 'a', track(0, false));
    assert_eq!(g.states(), (State::Backup, State::Backup));
    assert_eq!(g.group.state(), State::Backup);
}

/// The group reports member status changes only, and ignores unknown members.
#[test]
fn sync_group_ignores_strangers() {
    let mut group = SyncGroup::new([1u8, 2]);
    let s = MemberStatus {
        state: State::Fault,
        fault: true,
        wants_master: false,
    };
    assert!(group.update(9, s).is_empty());
    assert_eq!(
        group.update(1, s),
        vec![
            SyncAction::Command {
                member: 2,
                cmd: SyncCommand::ForceFault
            },
            SyncAction::Notify(State::Fault)
        ]
    );
}

/// Restart while Master (issue 11): a resumed instance goes straight to Master with an advert
/// at once, the VIPs kept (`AddVips` is idempotent, no `DelVips`) and no gratuitous ARP burst
/// or GARP refresh timer: the peers see the same Master keep advertising.
#[test]
fn resume_master_goes_master_without_garp_or_vip_removal() {
    let mut i = instance(params(100));
    let now = ms(10);
    scenario(
        &mut i,
        vec![(
            now,
            Event::ResumeMaster,
            vec![
                SendAdvert { priority: 100 },
                AddVips,
                dp(true),
                arm(Advert, now + Duration::from_secs(1)),
                notify(Notify::Master),
            ],
        )],
    );
    assert_eq!(i.state(), State::Master);
    // A second start event is ignored.
    assert!(i.handle(ms(20), Event::Startup).is_empty());
    assert!(i.handle(ms(20), Event::ResumeMaster).is_empty());
    // Adverts continue at the advert interval (RFC 5798 §6.4.3).
    scenario(
        &mut i,
        vec![(
            now + Duration::from_secs(1),
            Event::TimerFired(Advert),
            vec![SendAdvert { priority: 100 }, arm(Advert, now + Duration::from_secs(2))],
        )],
    );
}

/// A resumed instance whose tracked objects are down starts as usual (FAULT), never Master.
#[test]
fn resume_master_with_a_fault_starts_normally() {
    let mut i = instance(params(100));
    i.handle(ms(0), track(0, true));
    i.handle(ms(1), Event::ResumeMaster);
    assert_eq!(i.state(), State::Fault);
}

/// A resumed Master that hears a higher priority Master steps down as any Master would
/// (RFC 5798 §6.4.3): resuming is no preemption licence.
#[test]
fn resumed_master_yields_to_higher_priority() {
    let mut i = instance(params(100));
    i.handle(ms(0), Event::ResumeMaster);
    i.handle(ms(5), advert(2, 200));
    assert_eq!(i.state(), State::Backup);
}

/// Advert-flood hardening (RFC 5798 §6.4.3 with keepalived's answer): a Master answers adverts
/// below its priority (advert, GARPs, MASTER_RX_LOWER_PRI) at most once per
/// Advertisement_Interval; the ones in between are discarded silently and counted.
#[test]
fn lower_priority_answers_at_most_once_per_interval() {
    let mut p = params(100);
    p.garp_lower_prio_repeat = 1;
    let (mut i, t) = master_at_mdi(p);
    let answer = vec![SendAdvert { priority: 100 }, SendGarp { repeat: 1 }, notify(Notify::MasterRxLowerPri)];
    let at = |ms: u64| t + Duration::from_millis(ms);
    let mut steps = vec![(at(0), advert(2, 50), answer.clone())];
    // A flood: 1,000 forged adverts over the first interval, from rotating sources.
    for k in 1..1000u64 {
        steps.push((at(k), advert((k % 200) as u8 + 2, 50), vec![]));
    }
    steps.extend([
        (at(1000), advert(3, 60), answer.clone()),
        (at(1500), advert(3, 60), vec![]),
        (at(2000), advert(4, 1), answer),
    ]);
    scenario(&mut i, steps);
    assert_eq!(i.answers_withheld(), 1000);
    assert_eq!(i.state(), State::Master);
}

/// RFC 5798 §6.4.3 priority 0 ("Send an ADVERTISEMENT, Reset the Adver_Timer"): answered at
/// most once per interval too, and a withheld answer leaves the Adver_Timer alone, so a flood
/// of priority-0 adverts can neither multiply our adverts nor postpone the periodic one.
#[test]
fn priority_zero_answers_limited_and_adver_timer_kept() {
    let (mut i, t) = master_at_mdi(params(100));
    let at = |ms: u64| t + Duration::from_millis(ms);
    scenario(
        &mut i,
        vec![
            (at(10), advert(2, 0), vec![SendAdvert { priority: 100 }, arm(Advert, at(1010))]),
            (at(20), advert(2, 0), vec![]),
            (at(900), advert(3, 0), vec![]),
        ],
    );
    assert_eq!(i.timer(Advert), Some(at(1010)));
    scenario(
        &mut i,
        vec![(at(1010), Event::TimerFired(Advert), vec![SendAdvert { priority: 100 }, arm(Advert, at(2010))])],
    );
    assert_eq!(i.answers_withheld(), 2);
}

/// The limit only concerns answers: a higher-priority advert right after a flood of withheld
/// ones still takes effect at once (RFC 5798 §6.4.3 → Backup).
#[test]
fn higher_priority_takes_effect_during_a_lower_priority_flood() {
    let (mut i, t) = master_at_mdi(params(100));
    for k in 0..50u64 {
        i.handle(t + Duration::from_millis(k), advert(2, 50));
    }
    assert_eq!(i.answers_withheld(), 49);
    let now = t + Duration::from_millis(50);
    let mut want = master_exit();
    want.extend([arm(MasterDown, now + Duration::from_micros(MDI_100_US)), notify(Notify::Backup)]);
    scenario(&mut i, vec![(now, advert(9, 200), want)]);
    assert_eq!(i.state(), State::Backup);
    assert_eq!(i.master(), Some((ip(9), 200)));
}

/// `AnswerLimit` on its own: (time in ms, allowed?) with a 1 s interval.
#[test]
fn answer_limit_table() {
    let cases: &[(&str, &[(u64, bool)])] = &[
        ("first answer", &[(0, true)]),
        ("one per interval", &[(0, true), (1, false), (999, false), (1000, true), (1999, false), (2000, true)]),
        ("late answers restart the interval", &[(0, true), (1500, true), (2000, false), (2500, true)]),
    ];
    for (name, steps) in cases {
        let mut l = super::AnswerLimit::default();
        let mut withheld = 0;
        for (ms, want) in steps.iter() {
            assert_eq!(l.allow(Time::from_millis(*ms), Duration::from_secs(1)), *want, "{name}: at {ms} ms");
            withheld += u64::from(!*want);
        }
        assert_eq!(l.withheld(), withheld, "{name}");
    }
}

/// keepalived's configuration faults (`unicast_fault_no_peer` without peers): the instance
/// starts in FAULT and no tracker brings it out.
#[test]
fn config_fault_keeps_fault() {
    let mut p = params(100);
    p.config_fault = true;
    let mut i = instance(p);
    i.handle(ms(0), Event::Startup);
    assert_eq!(i.state(), State::Fault);
    i.handle(ms(10), track(0, false));
    assert_eq!(i.state(), State::Fault, "trackers up do not clear a configuration fault");
    let mut ok = instance(params(100));
    ok.handle(ms(0), Event::Startup);
    assert_eq!(ok.state(), State::Backup, "without it the same instance starts as Backup");
}
