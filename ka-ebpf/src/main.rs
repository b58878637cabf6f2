//! Entry points of the ka XDP programs. The logic lives in the modules, a DAG in layers (each
//! uses only the layers before it, as Katran's headers do):
//!
//! 1. helpers: [`ptr`] (bounds-checked packet access), [`mem`] (word copies), [`csum`] (the
//!    one incremental checksum), [`atomic`];
//! 2. [`maps`]: every map, named as in `ka_common`;
//! 3. [`parse`]: the frame parser;
//! 4. [`stats`]: the counters;
//! 5. [`scratch`]: the per-CPU working memory of one packet;
//! 6. [`lookup`]: flow key, VIP filter, service, connection table, schedulers;
//! 7. [`forward`]: next hops, DR, NAT, tunnels;
//! 8. the paths: [`icmp`] (the ICMP pieces of the one forwarding path), [`sync`],
//!    [`lb`] (the one forwarding path, for TCP/UDP and ICMP errors), [`vrrp`], [`decap`], and
//!    the benchmark tools [`gen`] and [`bench`].
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Inline assembly for the atomic instructions LLVM does not emit for BPF CPU v1 (atomic.rs).
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

// 1. Helpers.
#[cfg(target_arch = "bpf")]
mod atomic;
#[cfg(target_arch = "bpf")]
mod csum;
#[cfg(target_arch = "bpf")]
mod mem;
#[cfg(target_arch = "bpf")]
mod ptr;
// 2-5.
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod scratch;
#[cfg(target_arch = "bpf")]
mod stats;
// 6-7.
#[cfg(target_arch = "bpf")]
mod forward;
#[cfg(target_arch = "bpf")]
mod lookup;
// 8. Paths.
#[cfg(target_arch = "bpf")]
mod bench;
#[cfg(target_arch = "bpf")]
mod decap;
#[cfg(target_arch = "bpf")]
mod gen;
#[cfg(target_arch = "bpf")]
mod icmp;
#[cfg(target_arch = "bpf")]
mod lb;
#[cfg(target_arch = "bpf")]
mod sync;
#[cfg(target_arch = "bpf")]
mod vrrp;

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
    use ka_common::{
        lb::{G_LB, G_VRRP_FASTPATH},
        maps::same_name,
        stats::{Counter, BUNDLE_NOT_VIP_TCP4, BUNDLE_NOT_VIP_UDP4},
    };

    use crate::{
        decap, lb, lookup, maps,
        parse::{self, L4},
        scratch, stats, vrrp,
    };

    /// Checks at compile time that a program's function name is ka-common's name for it
    /// (the loader finds programs by name).
    macro_rules! named {
        ($f:ident, $common:expr) => {
            const _: () = assert!(same_name(stringify!($f), $common), concat!(stringify!($f), " is not ka-common's name"));
        };
    }
    named!(ka_xdp, ka_common::maps::XDP_PROGRAM);
    named!(ka_xdp_bench_new_flow, ka_common::lb::BENCH_NEW_FLOW_PROGRAM);
    named!(ka_conn_sweep, ka_common::sched::SWEEP_PROGRAM);
    named!(ka_xdp_tx, ka_common::lb::XDP_TX_PROGRAM);
    named!(ka_xdp_gen, ka_common::bench::GEN_PROGRAM);
    named!(ka_xdp_sink, ka_common::bench::SINK_PROGRAM);
    named!(ka_xdp_fwd, ka_common::bench::FWD_PROGRAM);
    named!(ka_xdp_fwd_touch, ka_common::bench::FWD_TOUCH_PROGRAM);
    named!(ka_sync_install, ka_common::sync::SYNC_INSTALL_PROGRAM);
    named!(ka_decap, ka_common::lb::DECAP_PROGRAM);

    /// The director's program: parses every frame, validates VRRP adverts (fast path on),
    /// load-balances TCP/UDP to services and forwards ICMP errors about their flows (services
    /// configured), passes the rest.
    #[xdp]
    pub fn ka_xdp(ctx: XdpContext) -> u32 {
        director(&ctx)
    }

    /// Benchmark tool, never attached by ka (`ka_common::lb::BENCH_NEW_FLOW_PROGRAM`): advances
    /// the frame's IPv4 source port (and address, on wrap) in place, then runs [`ka_xdp`]'s
    /// logic. BPF_PROG_TEST_RUN with repeat > 1 reuses the buffer, so every repetition is a
    /// new flow: this is how the new-flow path is timed in the kernel.
    #[xdp]
    pub fn ka_xdp_bench_new_flow(ctx: XdpContext) -> u32 {
        crate::bench::next_flow(&ctx);
        director(&ctx)
    }

    #[inline(always)]
    fn director(ctx: &XdpContext) -> u32 {
        // The commonest packet that is not ours first, in code of its own: an IPv4 TCP/UDP
        // segment to an address that is no VIP (its filter bit clear), counted by one bundle
        // increment (`ka_common::stats::bundle_counters`: ipv4, tcp or udp, pass_not_vip and the
        // verdict) and passed after a few loads.
        let first = parse::fast_first(ctx, |dst| !lookup::maybe_vip_fold(dst));
        if first.kind == parse::FAST_NOT_OURS_TCP || first.kind == parse::FAST_NOT_OURS_UDP {
            stats::bundle(if first.kind == parse::FAST_NOT_OURS_TCP { BUNDLE_NOT_VIP_TCP4 } else { BUNDLE_NOT_VIP_UDP4 });
            return xdp_action::XDP_PASS;
        }
        let flags = maps::global_flags();
        let fast = if first.kind == parse::FAST_IPV4 { parse::fast_ipv4(ctx, first.tot, first.proto, first.dst) } else { None };
        let (pkt, filtered) = match fast {
            // Its TCP/UDP segments passed the VIP filter already (`fast_first`).
            Some(pkt) => (pkt, true),
            None => match parse::parse(ctx) {
                Ok(pkt) => (pkt, false),
                Err(err) => {
                    if let Some(s) = stats::Stats::get() {
                        s.inc(err.counter());
                        s.verdict(xdp_action::XDP_PASS);
                    }
                    return xdp_action::XDP_PASS;
                }
            },
        };
        if matches!(pkt.l4, L4::Tcp | L4::Udp) {
            // Not a VIP's (its filter bit clear; while a NAT service runs userspace sets every
            // bit, as its replies go to clients): passed before any service lookup.
            if !filtered && !lookup::maybe_vip(&pkt) {
                if let Some(s) = stats::Stats::get() {
                    s.parsed(&pkt);
                    s.inc(Counter::PassNotVip);
                    s.verdict(xdp_action::XDP_PASS);
                }
                return xdp_action::XDP_PASS;
            }
            // The load balancer's path counts the parse with what it did: a packet it sends
            // with one bundle increment, any other outcome with one lookup (`lb::verdict`).
            if flags & G_LB != 0 && scratch::stash(&pkt) {
                return lb::verdict(lb::handle(ctx, flags, false));
            }
        }
        // One lookup of this CPU's counters for the parse counters and, when no path runs,
        // the verdict; a path's verdict is counted after another (Verifier: the pointer held
        // across the path's calls would be one more spilled slot in this frame, which every
        // call chain carries).
        let s = stats::Stats::get();
        if let Some(s) = s {
            s.parsed(&pkt);
        }
        let action = match pkt.l4 {
            // ICMP errors about VIP flows take the same path, their flow key rewritten to the
            // embedded flow's.
            L4::Icmp if flags & G_LB != 0 && scratch::stash(&pkt) => lb::handle(ctx, flags, true),
            // Inlined: counted with this lookup of the counters.
            L4::Vrrp if flags & G_VRRP_FASTPATH != 0 && scratch::stash(&pkt) => {
                let action = vrrp::handle(ctx, flags, s);
                if let Some(s) = s {
                    s.verdict(action);
                }
                return action;
            }
            L4::Other if flags & G_VRRP_FASTPATH != 0 && vrrp::is_ah_v4(&pkt) => vrrp::pass_ah(ctx, &pkt),
            _ => {
                if let Some(s) = s {
                    s.verdict(xdp_action::XDP_PASS);
                }
                return xdp_action::XDP_PASS;
            }
        };
        stats::verdict(action)
    }

    /// The connection-table sweeper (`ka_common::sched::SWEEP_PROGRAM`), run by userspace
    /// through BPF_PROG_TEST_RUN every second. Never attached.
    #[xdp]
    pub fn ka_conn_sweep(ctx: XdpContext) -> u32 {
        crate::lookup::conn::sweep(&ctx)
    }

    /// The benchmarks' floor: swaps the Ethernet addresses and sends the frame back
    /// (`ka_common::lb::XDP_TX_PROGRAM`). Never attached by ka.
    #[xdp]
    pub fn ka_xdp_tx(ctx: XdpContext) -> u32 {
        match crate::ptr::ptr_at_mut::<ka_common::wire::EthHdr>(&ctx, 0) {
            Some(eth) => {
                // SAFETY: bounds-checked by ptr_at_mut.
                unsafe {
                    let d = (*eth).dst;
                    (*eth).dst = (*eth).src;
                    (*eth).src = d;
                }
                xdp_action::XDP_TX
            }
            None => xdp_action::XDP_PASS,
        }
    }

    /// The end-to-end benchmark's traffic generator, run by BPF_PROG_TEST_RUN in live-frames
    /// mode: writes the template header into the frame and sends it out with `XDP_TX`
    /// (`ka_common::bench::GEN_PROGRAM`). Never attached by ka.
    #[xdp]
    pub fn ka_xdp_gen(ctx: XdpContext) -> u32 {
        crate::gen::generate(&ctx)
    }

    /// The end-to-end benchmark's sink: counts and drops (`ka_common::bench::SINK_PROGRAM`).
    /// Never attached by ka.
    #[xdp]
    pub fn ka_xdp_sink(ctx: XdpContext) -> u32 {
        crate::gen::sink(&ctx)
    }

    /// The end-to-end benchmark's floor: redirects every frame, untouched, to one interface
    /// (`ka_common::bench::FWD_PROGRAM`). Never attached by ka.
    #[xdp]
    pub fn ka_xdp_fwd(_ctx: XdpContext) -> u32 {
        crate::gen::forward()
    }

    /// The end-to-end benchmark's floor that touches the frame (`ka_common::bench::
    /// FWD_TOUCH_PROGRAM`): reads the headers, swaps the MACs, redirects. Never attached by ka.
    #[xdp]
    pub fn ka_xdp_fwd_touch(ctx: XdpContext) -> u32 {
        crate::gen::forward_touch(&ctx)
    }

    /// Connection sync on a BACKUP (`ka_common::sync::SYNC_INSTALL_PROGRAM`): writes the
    /// entries of the frame to the connection, NAT and persistence tables. Run by userspace
    /// through BPF_PROG_TEST_RUN; never attached.
    #[xdp]
    pub fn ka_sync_install(ctx: XdpContext) -> u32 {
        crate::sync::install(&ctx)
    }

    /// The real server's program for TUN services: decapsulates tunnel packets to local VIPs.
    #[xdp]
    pub fn ka_decap(ctx: XdpContext) -> u32 {
        let action = match parse::parse(&ctx) {
            Ok(pkt) if scratch::stash(&pkt) => decap::handle(&ctx),
            Ok(_) => xdp_action::XDP_PASS,
            Err(err) => {
                stats::inc(err.counter());
                xdp_action::XDP_PASS
            }
        };
        stats::verdict(action)
    }
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // No panic can be reached (the verifier would reject an unbounded loop anyway); this only
    // satisfies no_std.
    loop {}
}

/// On the host this crate is an empty binary, so `cargo clippy --workspace` and friends work.
#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
