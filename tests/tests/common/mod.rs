//! Harness shared by the XDP fixture tests and benches: loads `ka_xdp` from the object embedded
//! in the `ka` library, with fresh maps on every load, and runs frames through
//! BPF_PROG_TEST_RUN.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::BTreeMap;

use aya::{
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf,
};
use ka_common::maps::XDP_PROGRAM;

pub mod fixture;

/// `XDP_PASS` from the kernel's uapi `enum xdp_action`.
pub const XDP_PASS: u32 = 2;
/// `XDP_TX`.
pub const XDP_TX: u32 = 3;
/// `XDP_DROP`.
pub const XDP_DROP: u32 = 1;
/// `XDP_REDIRECT`.
pub const XDP_REDIRECT: u32 = 4;

/// Pins the calling thread to CPU 0: per-CPU maps (connection table, next-hop cache) then
/// behave deterministically across test runs of one case.
pub fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity on the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(
            rc,
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A freshly loaded copy of the XDP object: new maps every time.
pub struct Loaded {
    /// The object; its maps are this load's own.
    pub ebpf: Ebpf,
    /// The program run by [`Loaded::run`] and friends.
    pub prog_name: &'static str,
}

/// Result of one test run.
pub struct RunOut {
    /// XDP action returned.
    pub action: u32,
    /// Frame after the program ran.
    pub data: Vec<u8>,
}

impl Loaded {
    /// Loads and verifies the program. Panics with the reason when it cannot (not root, no BTF,
    /// object built with KA_SKIP_EBPF).
    pub fn new() -> Loaded {
        Loaded::program(XDP_PROGRAM)
    }

    /// Loads the object and verifies program `name` (`ka_xdp`, `ka_decap`, `ka_xdp_tx`).
    pub fn program(name: &'static str) -> Loaded {
        ka_tests::require_root();
        pin_to_cpu0();
        // `KA_EBPF_OBJECT=FILE`: that object instead of the embedded one (iterating on ka-ebpf
        // alone, built with the command of ka-userspace/build.rs; ka-common must not differ).
        let file = std::env::var_os("KA_EBPF_OBJECT").map(|p| std::fs::read(&p).expect("reading KA_EBPF_OBJECT"));
        let object = file.as_deref().unwrap_or(ka::EBPF_OBJECT);
        assert!(
            !object.is_empty(),
            "the ka library was built with KA_SKIP_EBPF=1: it has no eBPF object to test"
        );
        let mut ebpf = Ebpf::load(object).expect("loading the eBPF object");
        let prog: &mut Xdp = ebpf
            .program_mut(name)
            .unwrap_or_else(|| panic!("{name} in object"))
            .try_into()
            .expect("an XDP program");
        prog.load()
            .unwrap_or_else(|e| panic!("verifier rejects {name}: {e:?}"));
        Loaded {
            ebpf,
            prog_name: name,
        }
    }

    fn prog(&self) -> &Xdp {
        self.ebpf
            .program(self.prog_name)
            .expect("program")
            .try_into()
            .expect("xdp")
    }

    /// Runs one frame once.
    pub fn run(&self, frame: &[u8]) -> RunOut {
        export_seed(self.prog_name, frame, 0);
        let mut out = vec![0u8; frame.len() + 256];
        let res = self
            .prog()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat: 1,
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(res.data_size_out as usize);
        RunOut {
            action: res.return_value,
            data: out,
        }
    }

    /// Runs one frame once as if received on interface `ifindex` (which must exist in the
    /// calling thread's network namespace): `bpf_fib_lookup` and `XDP_TX`/`XDP_REDIRECT`
    /// decisions then see that interface.
    pub fn run_on(&self, frame: &[u8], ifindex: u32) -> RunOut {
        export_seed(self.prog_name, frame, ifindex);
        let mut out = vec![0u8; frame.len() + 256];
        // struct xdp_md { data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex }: data (metadata length) 0, data_end the frame length.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        let res = self
            .prog()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                repeat: 1,
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(res.data_size_out as usize);
        RunOut {
            action: res.return_value,
            data: out,
        }
    }

    /// Runs `frame` `repeat` times in the kernel and returns the mean ns per run.
    pub fn time(&self, frame: &[u8], repeat: u32) -> f64 {
        let mut out = vec![0u8; frame.len() + 256];
        let res = self
            .prog()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat,
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        res.duration.as_nanos() as f64
    }

    /// Like [`Loaded::time`], received on interface `ifindex`.
    pub fn time_on(&self, frame: &[u8], ifindex: u32, repeat: u32) -> f64 {
        self.time_program_on(self.prog_name, frame, ifindex, repeat)
    }

    /// Loads (verifies) another program of the same object: it shares this load's maps.
    pub fn load_also(&mut self, name: &'static str) {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .unwrap_or_else(|| panic!("{name} in object"))
            .try_into()
            .expect("an XDP program");
        prog.load()
            .unwrap_or_else(|e| panic!("verifier rejects {name}: {e:?}"));
    }

    /// Like [`Loaded::time_on`], with program `name` of this load (see [`Loaded::load_also`]).
    pub fn time_program_on(&self, name: &str, frame: &[u8], ifindex: u32, repeat: u32) -> f64 {
        let prog: &Xdp = self
            .ebpf
            .program(name)
            .unwrap_or_else(|| panic!("{name} in object"))
            .try_into()
            .expect("xdp");
        let mut out = vec![0u8; frame.len() + 256];
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        let res = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                repeat,
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        res.duration.as_nanos() as f64
    }

    /// Every counter, summed over CPUs.
    pub fn counters(&self) -> BTreeMap<&'static str, u64> {
        ka::datapath::read_counters(&self.ebpf).expect("reading KA_STATS")
    }
}

/// With `KA_XDP_SEEDS=DIR` set, writes every frame a fixture runs to `DIR` as
/// `<test>-<program>-<interface>-<hash>`: the XDP fuzzer's seed corpus is made from them
/// (`cargo xtask fuzz --import-xdp-seeds`).
fn export_seed(prog: &str, frame: &[u8], ifindex: u32) {
    use std::hash::{Hash as _, Hasher as _};
    let Some(dir) = std::env::var_os("KA_XDP_SEEDS") else { return };
    let test = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.split('-').next().map(str::to_owned))
        .unwrap_or_default();
    let ifname = if ifindex == 0 {
        String::new()
    } else {
        nix::net::if_::if_indextoname(ifindex).ok().and_then(|n| n.into_string().ok()).unwrap_or_default()
    };
    let mut h = std::hash::DefaultHasher::new();
    frame.hash(&mut h);
    let dir = std::path::PathBuf::from(dir);
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{test}-{prog}-{ifname}-{:016x}", h.finish())), frame);
}

/// A VRRPv3 advert over IPv4 to 224.0.0.18 with TTL 255 and a correct checksum (RFC 5798
/// pseudo-header); `vips` are the advertised addresses.
pub fn vrrp3_v4(src: &str, vrid: u8, prio: u8, int_centis: u16, vips: &[&str]) -> Vec<u8> {
    let msg = vrrp3_msg(src, "224.0.0.18", vrid, prio, int_centis, vips);
    ka_tests::packet::Frame::raw4(src, "224.0.0.18", 112)
        .ttl(255)
        .payload(&msg)
        .build()
}

/// The VRRPv3 message itself (header, addresses), checksummed for `src` -> `dst`.
pub fn vrrp3_msg(
    src: &str,
    dst: &str,
    vrid: u8,
    prio: u8,
    int_centis: u16,
    vips: &[&str],
) -> Vec<u8> {
    let mut msg = vec![0x31, vrid, prio, vips.len() as u8];
    msg.extend_from_slice(&(int_centis & 0x0fff).to_be_bytes());
    msg.extend_from_slice(&[0, 0]);
    for v in vips {
        let a: std::net::Ipv4Addr = v.parse().expect("vip");
        msg.extend_from_slice(&a.octets());
    }
    let s: std::net::Ipv4Addr = src.parse().expect("src");
    let d: std::net::Ipv4Addr = dst.parse().expect("dst");
    let c = ka_common::vrrp::checksum(
        &msg,
        &ka_common::vrrp::PseudoHeader::V4 {
            src: s.octets(),
            dst: d.octets(),
        },
    );
    msg[6..8].copy_from_slice(&c.to_be_bytes());
    msg
}
