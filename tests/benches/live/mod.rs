//! Pieces shared by the live-frames benchmarks (`e2e`, `bgp`): the traffic generator
//! (`ka_xdp_gen` run by `BPF_PROG_TEST_RUN` in live-frames mode on a veth of its own namespace),
//! the sink (`ka_xdp_sink`, which counts and drops what reaches the far side), threaded NAPI with
//! per-thread CPU accounting, and the namespace plumbing around them.
//!
//! Every frame the generator sends leaves through the veth named in its context, which must be
//! in the generator's own namespace ([`generate`] checks it): nothing reaches the host's
//! interfaces.
#![allow(dead_code, reason = "each benchmark uses a different subset")]

use std::{
    fs::File,
    os::{fd::AsFd as _, unix::fs::MetadataExt as _},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use aya::{
    maps::{Array, PerCpuArray},
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};
use ka_common::{
    bench::{
        GenConfig, FWD_PROGRAM, FWD_TOUCH_PROGRAM, GEN_HDR_LEN, GEN_HDR_ROOM, GEN_MAP, GEN_PROGRAM, SINK_MAP,
        SINK_PACKETS, SINK_PROGRAM,
    },
    lb::TABLES_MAP,
};
use ka_tests::{netns::Netns, packet::Frame, wait_for};

/// Frame length without FCS: 64-byte frames on a wire.
pub const FRAME_LEN: usize = 60;
/// Frames per live-frames batch (the kernel's maximum is 256).
const BATCH: u32 = 64;
/// Frames per BPF_PROG_TEST_RUN call; the generator checks its stop flag between calls.
const CALL_FRAMES: u32 = 1 << 16;
/// The longest a generator runs, whatever its caller forgets.
const GEN_MAX: Duration = Duration::from_secs(600);

/// Set by SIGINT/SIGTERM: every wait returns early and the guards clean up.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set the stop flag ([`stopped`]) instead of killing the process, so
/// the namespaces and attachments are removed by their guards.
pub fn catch_signals() {
    // SAFETY: installing an async-signal-safe handler (one atomic store).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// True once a signal asked the benchmark to stop.
pub fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Sleeps `d` in small steps; false if a signal asked to stop.
pub fn nap(d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stopped() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
    }
    !stopped()
}

/// Runs `f` on a thread inside `ns`'s network namespace and returns its result; unlike
/// [`Netns::enter`] it may borrow from the caller.
pub fn in_ns<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    let file = File::open(ns.path()).expect("opening the namespace");
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("namespace thread")
    })
}

/// True when the calling thread is in `ns`'s network namespace.
pub fn thread_in(ns: &Netns) -> bool {
    let me = std::fs::metadata("/proc/thread-self/ns/net").expect("own netns");
    let it = std::fs::metadata(ns.path()).expect("netns handle");
    me.ino() == it.ino() && me.dev() == it.dev()
}

/// Pins thread `pid` (0: the calling thread) to `cpu`.
pub fn pin(pid: libc::pid_t, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity on a pid.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(rc, 0, "pinning {pid} to CPU {cpu}: {}", std::io::Error::last_os_error());
    }
}

/// Makes `pid` SCHED_FIFO at `prio`: a NAPI thread then runs as soon as frames wait for it,
/// whatever else the machine runs, and costs CPU only while there are frames.
pub fn realtime(pid: libc::pid_t, prio: i32) {
    let p = libc::sched_param { sched_priority: prio };
    // SAFETY: plain syscall on a pid with a valid parameter block.
    let rc = unsafe { libc::sched_setscheduler(pid, libc::SCHED_FIFO, &p) };
    assert_eq!(rc, 0, "SCHED_FIFO for {pid}: {}", std::io::Error::last_os_error());
}

/// Enables NAPI on veth `dev` in `ns` (toggling GRO while the device is up creates it) and
/// threads it, so that device's receive work runs in a kernel thread of its own,
/// `napi/DEV-ID` ([`napi_thread`]).
pub fn threaded_napi(ns: &Netns, dev: &str) {
    ns.run(&["ethtool", "-K", dev, "gro", "off"]).expect("ethtool: install ethtool (cargo xtask setup)");
    ns.run(&["ethtool", "-K", dev, "gro", "on"]).expect("ethtool");
    ns.run(&["sh", "-c", &format!("echo 1 > /sys/class/net/{dev}/threaded")]).expect("threaded NAPI");
}

/// The threaded-NAPI kernel thread of `dev` (`napi/DEV-ID`); device names must be unique on
/// the machine (the threads are global and may outlive a deleted namespace for a moment).
pub fn napi_thread(dev: &str) -> libc::pid_t {
    let prefix = format!("napi/{dev}-");
    wait_for(&format!("the NAPI thread of {dev}"), Duration::from_secs(5), || {
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: libc::pid_t = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            comm.starts_with(&prefix).then_some(pid)
        })
    })
}

/// Nanoseconds `pid` has run on a CPU (`/proc/PID/schedstat`, first field).
pub fn run_ns(pid: libc::pid_t) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).expect("schedstat");
    s.split_whitespace().next().and_then(|v| v.parse().ok()).expect("schedstat field")
}

/// Frames veth `dev` in `ns` took off its receive ring (`ethtool -S`: `rx_queue_0_xdp_packets`,
/// counted with or without an XDP program).
pub fn xdp_rx_packets(ns: &Netns, dev: &str) -> u64 {
    let s = ns.run(&["ethtool", "-S", dev]).expect("ethtool -S");
    s.lines()
        .find_map(|l| l.trim().strip_prefix("rx_queue_0_xdp_packets:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("rx_queue_0_xdp_packets in ethtool -S")
}

/// The MAC address of `dev` in `ns`.
pub fn mac(ns: &Netns, dev: &str) -> [u8; 6] {
    let s = ns.run(&["cat", &format!("/sys/class/net/{dev}/address")]).expect("mac");
    let mut m = [0u8; 6];
    for (b, h) in m.iter_mut().zip(s.trim().split(':')) {
        *b = u8::from_str_radix(h, 16).expect("hex");
    }
    m
}

/// Loads ka's eBPF object and verifies the bench programs: the generator, the sink and the
/// forwarding floors (all sharing this load's maps).
pub fn load_programs() -> Ebpf {
    // The object's scheduling tables are large and unused here.
    let mut ebpf = EbpfLoader::new().map_max_entries(TABLES_MAP, 1).load(ka::EBPF_OBJECT).expect("loading the eBPF object");
    for name in [GEN_PROGRAM, SINK_PROGRAM, FWD_PROGRAM, FWD_TOUCH_PROGRAM] {
        let p: &mut Xdp = ebpf.program_mut(name).unwrap_or_else(|| panic!("{name} in object")).try_into().expect("xdp");
        p.load().unwrap_or_else(|e| panic!("verifier rejects {name}: {e:?}"));
    }
    ebpf
}

/// Attaches program `prog` of `ebpf` natively (driver mode) to `dev` in `ns`. The link is a
/// bpf_link held by `ebpf`: dropping `ebpf` detaches it (drop it in `ns`, see [`drop_in`]).
pub fn attach(ns: &Netns, ebpf: &mut Ebpf, prog: &str, dev: &str) {
    in_ns(ns, || {
        let p: &mut Xdp = ebpf.program_mut(prog).expect("program").try_into().expect("xdp");
        p.attach(dev, XdpMode::Driver).unwrap_or_else(|e| panic!("attaching {prog} natively to {dev}: {e:?}"));
    });
}

/// Drops `ebpf` (and so detaches its programs) on a thread inside `ns`: XDP links are bpf_link
/// fds, detached on close wherever that happens, and this keeps even a netlink fallback off the
/// host's interfaces.
pub fn drop_in(ns: &Netns, ebpf: Ebpf) {
    in_ns(ns, move || drop(ebpf));
}

/// A [`FRAME_LEN`]-byte UDP frame from `src` to `dst:port` (source port 10000), between MACs
/// `eth_src` and `eth_dst`: the generator's template and its live-frames input (so the payload
/// matches the checksums).
pub fn udp_frame(src: &str, dst: &str, port: u16, eth_src: [u8; 6], eth_dst: [u8; 6]) -> Vec<u8> {
    let mut f = Frame::udp4(src, dst, 10_000, port).payload(&[0u8; FRAME_LEN - GEN_HDR_LEN]);
    f.eth_dst = eth_dst;
    f.eth_src = eth_src;
    let b = f.build();
    assert_eq!(b.len(), FRAME_LEN);
    b
}

/// Gives the generator its template: `frame`'s headers, varied over `flows` source ports.
pub fn set_template(ebpf: &mut Ebpf, frame: &[u8], flows: u32) {
    let mut cfg = GenConfig { hdr: [0; GEN_HDR_ROOM], flows, _pad: 0 };
    cfg.hdr[..GEN_HDR_LEN].copy_from_slice(&frame[..GEN_HDR_LEN]);
    let mut m: Array<_, GenConfig> = Array::try_from(ebpf.map_mut(GEN_MAP).expect("gen map")).expect("array");
    m.set(0, cfg, 0).expect("template");
}

/// Frames the sink has counted, over every CPU and every interface it is attached to.
pub fn sink_packets(ebpf: &Ebpf) -> u64 {
    let m: PerCpuArray<_, u64> = PerCpuArray::try_from(ebpf.map(SINK_MAP).expect("sink map")).expect("per-CPU array");
    m.get(&SINK_PACKETS, 0).expect("sink counter").iter().sum()
}

/// Runs the generator on CPU `cpu` at nice value `nice` (0: as any process), out of `dev` in
/// `ns`, until `stop` (or a signal, or [`GEN_MAX`]), counting frames sent in `sent`.
#[expect(clippy::too_many_arguments, reason = "one call per benchmark, every argument named at the call")]
pub fn generate(ns: &Netns, dev: &str, ebpf: &Ebpf, frame: &[u8], cpu: usize, nice: i32, stop: &AtomicBool, sent: &AtomicU64) {
    in_ns(ns, || {
        // Live frames leave through the ingress interface named in the context: make sure it
        // is the generator's own veth, never an interface of the host.
        assert!(thread_in(ns), "the generator thread is not in its namespace");
        pin(0, cpu);
        if nice != 0 {
            // SAFETY: plain syscall; on Linux, PRIO_PROCESS with 0 is the calling thread.
            let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
            assert_eq!(rc, 0, "nice {nice} for the generator: {}", std::io::Error::last_os_error());
        }
        let ifindex = nix::net::if_::if_nametoindex(dev).expect("the generator's veth");
        // struct xdp_md { data, data_end, data_meta, ingress_ifindex, ... }.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        let p: &Xdp = ebpf.program(GEN_PROGRAM).expect("gen").try_into().expect("xdp");
        let end = Instant::now() + GEN_MAX;
        while !stop.load(Ordering::SeqCst) && !stopped() && Instant::now() < end {
            let r = p
                .test_run(TestRunOptions {
                    data_in: Some(frame),
                    ctx_in: Some(&ctx),
                    repeat: CALL_FRAMES,
                    attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                    ..Default::default()
                })
                .expect("BPF_PROG_TEST_RUN in live-frames mode");
            assert_eq!(r.return_value, 0, "live-frames run failed");
            sent.fetch_add(u64::from(CALL_FRAMES), Ordering::Relaxed);
        }
    });
}
