//! Entry points of the ka XDP programs. The logic lives in the modules.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod ptr;
#[cfg(target_arch = "bpf")]
mod stats;

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

    use crate::{parse, stats};

    /// The director's program: parses every frame, counts what it saw and, for now, passes
    /// everything on to the kernel.
    #[xdp]
    pub fn ka_xdp(ctx: XdpContext) -> u32 {
        let action = match parse::parse(&ctx) {
            Ok(pkt) => {
                stats::count_parsed(&pkt);
                xdp_action::XDP_PASS
            }
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
