//! Packs connection entries into sync datagrams of at most `maxlen` bytes (sans-IO; time is
//! injected). A datagram leaves when the next entry would not fit, when it holds 255 entries,
//! or [`FLUSH_AFTER`] after its first entry, whichever comes first.

use std::time::{Duration, Instant};

use super::wire::{Conn, Header, HEADER_LEN, MAX_CONNS};

/// Longest an entry waits for more to share its datagram. IPVS waits up to 2 s for a partial
/// buffer; a connection opened just before a failover would then be lost, so ka sends after
/// 10 ms (at 100,000 new connections per second datagrams fill long before).
pub const FLUSH_AFTER: Duration = Duration::from_millis(10);

/// A datagram being filled.
#[derive(Debug)]
pub struct Batcher {
    syncid: u8,
    maxlen: usize,
    buf: Vec<u8>,
    count: usize,
    since: Option<Instant>,
}

impl Batcher {
    /// A batcher for datagrams of at most `maxlen` bytes (a datagram always takes at least one
    /// entry, however small `maxlen` is, as IPVS does).
    pub fn new(syncid: u8, maxlen: usize) -> Batcher {
        Batcher { syncid, maxlen: maxlen.min(usize::from(u16::MAX)), buf: Vec::with_capacity(maxlen.min(65_535)), count: 0, since: None }
    }

    /// Adds `conn` at time `now`; returns the datagram it did not fit in, complete.
    pub fn push(&mut self, conn: &Conn, now: Instant) -> Option<Vec<u8>> {
        let need = conn.padded_size();
        let done = if self.count > 0 && (self.buf.len() + need > self.maxlen || self.count == MAX_CONNS) {
            self.take()
        } else {
            None
        };
        if self.count == 0 {
            self.buf.clear();
            self.buf.resize(HEADER_LEN, 0);
            self.since = Some(now);
        }
        conn.encode(&mut self.buf);
        self.count += 1;
        done
    }

    /// When the datagram being filled must leave (`None`: empty).
    pub fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + FLUSH_AFTER)
    }

    /// Entries in the datagram being filled.
    pub fn pending(&self) -> usize {
        self.count
    }

    /// The datagram being filled, complete (`None`: empty); the batcher starts over.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        let h = Header {
            syncid: self.syncid,
            size: u16::try_from(self.buf.len()).unwrap_or(u16::MAX),
            nr_conns: u8::try_from(self.count).unwrap_or(u8::MAX),
        };
        let mut head = Vec::with_capacity(HEADER_LEN);
        h.encode(&mut head);
        self.buf[..HEADER_LEN].copy_from_slice(&head);
        self.count = 0;
        self.since = None;
        let cap = self.buf.capacity();
        Some(std::mem::replace(&mut self.buf, Vec::with_capacity(cap)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::sync::wire::{flags, state, Message, CONN_V4_LEN, CONN_V6_LEN};

    fn conn(i: u16, v6: bool) -> Conn {
        let (c, v, d) = if v6 {
            ("fd00:198:18::2", "fd00:198:18::100", "fd00:198:18::11")
        } else {
            ("198.18.40.2", "198.18.40.100", "198.18.40.11")
        };
        Conn {
            protocol: 6,
            flags: flags::DROUTE,
            state: state::TCP_ESTABLISHED,
            cport: i,
            vport: 80,
            dport: 80,
            fwmark: 0,
            timeout: 900,
            caddr: c.parse().expect("ip"),
            vaddr: v.parse().expect("ip"),
            daddr: d.parse().expect("ip"),
            params: vec![],
        }
    }

    /// Runs `entries` through a batcher and decodes what it sent, in order.
    fn run(maxlen: usize, entries: &[Conn]) -> Vec<Message> {
        let t0 = Instant::now();
        let mut b = Batcher::new(9, maxlen);
        let mut out: Vec<Vec<u8>> = entries.iter().filter_map(|c| b.push(c, t0)).collect();
        out.extend(b.take());
        out.iter()
            .map(|d| {
                assert!(d.len() <= maxlen.max(HEADER_LEN + CONN_V6_LEN), "{} > {maxlen}", d.len());
                Message::decode(d).expect("a datagram the batcher made decodes")
            })
            .collect()
    }

    /// Datagrams hold as many entries as fit in maxlen (and at most 255), in order, nothing
    /// lost; a maxlen below one entry still sends each entry alone.
    #[test]
    fn fills_to_maxlen_and_keeps_order() {
        let v4: Vec<Conn> = (0..100).map(|i| conn(i, false)).collect();
        let mixed: Vec<Conn> = (0..10).map(|i| conn(i, i % 3 == 0)).collect();
        let many: Vec<Conn> = (0..600).map(|i| conn(i, false)).collect();
        // (name, maxlen, entries, entries per datagram)
        let cases: Vec<(&str, usize, &[Conn], Vec<usize>)> = vec![
            ("IPVS default maxlen 1472: 40 IPv4 entries each", 1472, &v4, vec![40, 40, 20]),
            ("exactly one entry's room", HEADER_LEN + CONN_V4_LEN, &v4[..3], vec![1, 1, 1]),
            ("maxlen below one entry", 10, &v4[..2], vec![1, 1]),
            ("mixed families: 36 and 72 bytes", HEADER_LEN + 2 * CONN_V4_LEN + CONN_V6_LEN, &mixed, vec![3, 3, 3, 1]),
            ("at most 255 entries", 65_507, &many, vec![255, 255, 90]),
        ];
        for (name, maxlen, entries, want) in cases {
            let msgs = run(maxlen, entries);
            let got: Vec<usize> = msgs.iter().map(|m| m.conns.len()).collect();
            assert_eq!(got, want, "{name}");
            let all: Vec<Conn> = msgs.into_iter().flat_map(|m| m.conns).collect();
            assert_eq!(all, entries, "{name}: every entry once, in order");
        }
    }

    /// A partial datagram is due FLUSH_AFTER its first entry; taking it empties the batcher.
    #[test]
    fn partial_datagram_deadline() {
        let t0 = Instant::now();
        let mut b = Batcher::new(1, 1472);
        assert_eq!((b.deadline(), b.take()), (None, None));
        assert!(b.push(&conn(1, false), t0).is_none());
        assert!(b.push(&conn(2, false), t0 + Duration::from_millis(5)).is_none());
        assert_eq!(b.deadline(), Some(t0 + FLUSH_AFTER), "the first entry sets the deadline");
        assert_eq!(b.pending(), 2);
        let d = b.take().expect("datagram");
        assert_eq!(Message::decode(&d).map(|m| (m.syncid, m.conns.len())), Ok((1, 2)));
        assert_eq!((b.deadline(), b.pending()), (None, 0));
    }
}
