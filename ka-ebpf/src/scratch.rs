//! Per-CPU working memory of one packet (`KA_SCRATCH`, [`crate::maps`]): the parse result
//! handed from the entry point to a path, the keys and values the lookups build, and the next
//! hop the forwarding layer found. Plain data only: every layer above may use it, none below.
//!
//! Verifier: (1) passing the [`Parsed`] by pointer would carry the parser's many distinct
//! register states into the callee, which the verifier then re-walks for each (the program
//! exceeded the 1M-instruction budget); read back from a map, the offsets are unknown scalars,
//! the call-site states collapse into one, and `ptr_at` re-bounds every offset. (2) The
//! combined stack of a BPF-to-BPF call chain is limited to 512 bytes; keys, service values and
//! the FIB parameter block live here instead.

use core::{
    mem::{align_of, size_of},
    ptr::{read_volatile, write_volatile},
};

use ka_common::{
    lb::{Backend, FlowKey, FlowKey4, ServiceValue, CONN_WAYS},
    sched::{FloodWindow, LblcKey, LblcValue, Scan, Twos},
};

use crate::{
    maps::{KA_SCRATCH, SCRATCH_BYTES},
    parse::Parsed,
};

/// A 16-byte address, 4-aligned so it is written a word at a time ([`crate::mem`]).
#[repr(C, align(4))]
#[derive(Clone, Copy)]
pub struct A16(pub [u8; 16]);

/// How to reach a next hop.
#[derive(Clone, Copy)]
pub struct NextHop {
    /// Egress interface.
    pub ifindex: u32,
    /// Destination then source MAC, as written to the Ethernet header ([`crate::mem::macs`]).
    pub macs: [u32; 3],
}

/// The state of a least-connection scheduler's walk over its candidates, or of a round-robin
/// walk past overloaded servers (`crate::lookup::sched`).
#[derive(Default)]
pub struct Walk {
    /// Index of the service's candidate list in `KA_DESTS`.
    pub list: u32,
    /// The pass over the candidates.
    pub scan: Scan,
    /// `twos`' second pass.
    pub twos: Twos,
    /// A new flow's connection-table hash (`lookup::schedule_least` records it).
    pub hash: u32,
    /// Its connection-table clock.
    pub tick: u32,
    /// Its TCP flags.
    pub tcp_flags: u8,
    /// 1: a datagram of a one-packet (`ops`) service: no connection entry is recorded.
    pub ops: u8,
    /// The service's active bank.
    pub bank: u32,
    /// Its persistence clock (ns).
    pub now_ns: u64,
    /// Round-robin: slots tried before the one chosen.
    pub rr_tried: u32,
    /// Round-robin: the backend found, `NO_ID` if none.
    pub rr_id: u32,
    /// Round-robin: a backend that is not overloaded was found.
    pub rr_found: bool,
}

/// One CPU's working memory.
pub struct Work {
    /// Parse result.
    pub pkt: Parsed,
    /// The packet's 5-tuple (for an ICMP error: its embedded packet's, reversed).
    pub key: FlowKey,
    /// The same 5-tuple in the IPv4 key form (IPv4 packets only).
    pub key4: FlowKey4,
    /// Persistence template / NAT reverse key.
    pub tmpl: FlowKey,
    /// The service, copied once.
    pub svc: ServiceValue,
    /// The chosen backend.
    pub backend: Backend,
    /// `bpf_fib_lookup` parameters.
    pub fib: aya_ebpf::bindings::bpf_fib_lookup,
    /// The next hop found by `forward::next_hop`.
    pub nh: NextHop,
    /// VRRP advert source.
    pub src: A16,
    /// VRRP advert destination.
    pub dst: A16,
    /// `lblc`/`lblcr` cache key.
    pub lblc_key: LblcKey,
    /// `lblc`/`lblcr` cache value being written.
    pub lblc: LblcValue,
    /// The state of a scheduler's walk over its candidates.
    pub walk: Walk,
    /// A word values pass through to become unknown to the verifier ([`launder`]).
    pub launder: u32,
    /// This CPU's flood-mode window (`lookup::conn::flood`); kept from packet to packet.
    pub flood: FloodWindow,
}

// The map value is plain words; Work is placed over them.
const _: () = assert!(size_of::<Work>() <= SCRATCH_BYTES && align_of::<Work>() <= 8);

/// This CPU's [`Work`].
#[inline(always)]
pub fn work() -> Option<&'static mut Work> {
    // SAFETY: per-CPU memory used by one program run at a time on this CPU, 8-aligned and at
    // least SCRATCH_BYTES long (checked above against Work's size and alignment); every field
    // of Work is plain data for which any bit pattern the programs wrote (or zero, the map's
    // initial value) is valid: Parsed's enums are only ever written by `stash`, from a value
    // the parser built, and zero is their first variant.
    KA_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *(p as *mut Work) })
}

/// Stores the parse result for the path about to run; false only if the per-CPU memory is
/// missing.
#[inline(always)]
pub fn stash(pkt: &Parsed) -> bool {
    match work() {
        Some(w) => {
            w.pkt = *pkt;
            true
        }
        None => false,
    }
}

/// `i` (a way index) read back from per-CPU map memory, which the verifier does not track:
/// the code after it is then checked once for every way instead of once per way (a known
/// index is a distinct state, and the code that follows is long). `None` only if the per-CPU
/// memory is missing.
#[inline(always)]
pub fn launder(i: usize) -> Option<usize> {
    let w = work()?;
    // SAFETY: per-CPU memory of this CPU.
    unsafe {
        write_volatile(&mut w.launder, i as u32);
        Some(read_volatile(&w.launder) as usize & (CONN_WAYS - 1))
    }
}

/// `v` read back from per-CPU map memory: a value the verifier no longer tracks, so the code
/// after it is checked once for every value instead of once per value. `v` itself if the
/// per-CPU memory is missing.
#[inline(always)]
pub fn opaque(v: u32) -> u32 {
    let Some(w) = work() else {
        return v;
    };
    // SAFETY: per-CPU memory of this CPU.
    unsafe {
        write_volatile(&mut w.launder, v);
        read_volatile(&w.launder)
    }
}
