//! When gratuitous ARPs / unsolicited NAs leave, as keepalived 2.2.7 spaces them: per delay
//! group (a `garp_group`, else one interface with the global `vrrp_garp_interval` /
//! `vrrp_gna_interval`), each message no sooner than the group's interval after the previous
//! one of its kind, whichever instance sent it (`send_gratuitous_arp`, `ndisc_send_unsolicited_na`).
//! Also which interfaces `garp_extra_if` refreshes. Pure: the runtime sends.

use std::time::Duration;

use super::Time;

/// The spacing of one delay group: the time of the next free slot per kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pacer {
    /// `garp_interval` (zero: no spacing).
    pub arp_interval: Duration,
    /// `gna_interval` (zero: no spacing).
    pub na_interval: Duration,
    next_arp: Option<Time>,
    next_na: Option<Time>,
}

impl Pacer {
    /// A group with these intervals, nothing sent yet.
    pub fn new(arp_interval: Duration, na_interval: Duration) -> Pacer {
        Pacer { arp_interval, na_interval, next_arp: None, next_na: None }
    }

    /// When a message of kind `na` (an NA, else an ARP) asked for at `now` leaves: now, or when
    /// the group's interval since the previous one of its kind has run. Books that slot.
    pub fn slot(&mut self, now: Time, na: bool) -> Time {
        let (interval, next) = if na { (self.na_interval, &mut self.next_na) } else { (self.arp_interval, &mut self.next_arp) };
        let at = match *next {
            Some(n) if n > now => n,
            _ => now,
        };
        if !interval.is_zero() {
            *next = Some(at + interval);
        }
        at
    }

    /// The send times of `repeat` rounds of `kinds` (one entry per message of a round: `true`
    /// for an NA), in order: keepalived's `vrrp_send_link_update` sends every address once per
    /// round, each message through the group's spacing.
    pub fn plan(&mut self, now: Time, kinds: &[bool], repeat: u32) -> Vec<(Time, usize)> {
        let mut out = Vec::with_capacity(kinds.len() * repeat as usize);
        for _ in 0..repeat {
            for (k, na) in kinds.iter().enumerate() {
                out.push((self.slot(now, *na), k));
            }
        }
        out
    }
}

/// The interfaces `garp_extra_if` refreshes and the address announced on each (keepalived's
/// `vrrp_send_vmac_update`): the first VIP of every interface other than the instance's own
/// (`own`), if ka made that interface (`ours`, a VMAC) or with `all`; one per interface.
pub fn extra_if_targets<A: Copy>(own: u32, vips: &[(u32, A)], all: bool, ours: impl Fn(u32) -> bool) -> Vec<(u32, A)> {
    let mut out: Vec<(u32, A)> = Vec::new();
    for &(ifindex, addr) in vips {
        if ifindex == own || !(all || ours(ifindex)) || out.iter().any(|(i, _)| *i == ifindex) {
            continue;
        }
        out.push((ifindex, addr));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Time {
        Time::ZERO + Duration::from_millis(ms)
    }

    /// Messages of one group are spaced by their kind's interval, ARPs and NAs independently;
    /// a request after the interval has run goes at once; no interval, no spacing.
    #[test]
    fn pacer_spaces_each_kind() {
        struct Case {
            name: &'static str,
            arp_ms: u64,
            na_ms: u64,
            asks: &'static [(u64, bool)],
            want_ms: &'static [u64],
        }
        let cases = [
            Case { name: "no interval: all at once", arp_ms: 0, na_ms: 0, asks: &[(0, false), (0, false), (0, true)], want_ms: &[0, 0, 0] },
            Case { name: "ARPs 10 ms apart", arp_ms: 10, na_ms: 0, asks: &[(0, false), (0, false), (0, false)], want_ms: &[0, 10, 20] },
            Case { name: "NAs do not wait for ARPs", arp_ms: 10, na_ms: 0, asks: &[(0, false), (0, true), (0, false)], want_ms: &[0, 0, 10] },
            Case { name: "NA spacing of its own", arp_ms: 0, na_ms: 5, asks: &[(0, true), (1, true), (20, true)], want_ms: &[0, 5, 20] },
            Case { name: "a later request after the gap is free", arp_ms: 10, na_ms: 0, asks: &[(0, false), (30, false), (31, false)], want_ms: &[0, 30, 40] },
        ];
        for c in cases {
            let mut p = Pacer::new(Duration::from_millis(c.arp_ms), Duration::from_millis(c.na_ms));
            let got: Vec<Time> = c.asks.iter().map(|(at, na)| p.slot(t(*at), *na)).collect();
            let want: Vec<Time> = c.want_ms.iter().map(|m| t(*m)).collect();
            assert_eq!(got, want, "{}", c.name);
        }
    }

    /// `repeat` rounds of every address, each message spaced: 2 VIPs × 3 rounds at 10 ms.
    #[test]
    fn plan_rounds() {
        let mut p = Pacer::new(Duration::from_millis(10), Duration::ZERO);
        let got = p.plan(t(0), &[false, false], 3);
        let want: Vec<(Time, usize)> = [(0, 0), (10, 1), (20, 0), (30, 1), (40, 0), (50, 1)].iter().map(|(m, k)| (t(*m), *k)).collect();
        assert_eq!(got, want);
        // A second burst of another instance in the same group queues behind.
        assert_eq!(p.slot(t(0), false), t(60));
    }

    /// keepalived's choice of interfaces for `garp_extra_if`.
    #[test]
    fn extra_if_interfaces() {
        let vips = [(2, 'a'), (3, 'b'), (3, 'c'), (4, 'd'), (2, 'e')];
        type Case = (&'static str, bool, fn(u32) -> bool, Vec<(u32, char)>);
        let cases: [Case; 3] = [
            ("all: every other interface once, its first VIP", true, |_| false, vec![(3, 'b'), (4, 'd')]),
            ("without all: only interfaces ka made", false, |i| i == 4, vec![(4, 'd')]),
            ("without all and no VMAC: none", false, |_| false, vec![]),
        ];
        for (name, all, ours, want) in cases {
            assert_eq!(extra_if_targets(2, &vips, all, ours), want, "{name}");
        }
    }
}
