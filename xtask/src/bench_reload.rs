//! `cargo xtask bench --only reload` (issue 11): how long a live reload takes, and whether it
//! delays the adverts of the MASTER instances while it runs.
//!
//! Two configurations, each in namespaces this module creates (removed by the `ka-tests` guards
//! on exit and on failure):
//! - **65,024 instances**: the keepalived.conf(5) `~SEQ` example that `--only config` checks
//!   ([`crate::bench_config::man_page_config`]), run by `ka run --no-xdp` on 256 veths
//!   `bondIF.NUM` whose peers sit in a second namespace. Two changes, both said in the table:
//!   `use_vmac` is dropped (65,024 macvlans take minutes to create on the 2-vCPU VM, and the
//!   reload path is the same without them) and the VIPs `10.IF.NUM.ID/24` become
//!   `198.18.NUM.ID/24` (test addresses only; the eight `IF` copies sit on different
//!   interfaces). Every instance becomes MASTER (no peer) and sends one advert a second.
//! - **2,000 virtual servers × 20 real servers**: `TCP_CHECK`s (delay_loop 10 s) against
//!   AnyIP listeners in a server namespace, XDP attached (the dataplane reloads its tables), and
//!   one VRRPv3 instance at advert_int 0.1 s whose adverts are measured.
//!
//! Each configuration is reloaded twice: by `ka reload` with a change (65k: one instance added;
//! services: one real server's weight changed and one virtual server added), then by SIGHUP
//! back to the first file. The reload time is the wall time of `ka reload` (it returns once the
//! reload is applied), or from the SIGHUP to the daemon's `reload applied` log line. Adverts
//! are captured on the peer side of the wire with kernel receive timestamps (`SO_TIMESTAMPNS`,
//! so the capture's own scheduling does not count), from a few seconds before the reload to a
//! few seconds after it; each instance's gaps between consecutive adverts are compared with
//! advert_int.

use std::{
    fmt::Write as _,
    io::{Read as _, Seek as _},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, ensure, Context as _};
use ka_tests::{daemon::KaDaemon, netns::Netns, unique_name};

/// Options of the reload benchmark.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "reload_bench")]
pub struct Options {
    /// Skip the 65,024-instance configuration.
    #[arg(long = "reload-skip-instances")]
    pub skip_instances: bool,
    /// Skip the 2,000 × 20 virtual-server configuration.
    #[arg(long = "reload-skip-services")]
    pub skip_services: bool,
    /// Seconds of capture before and after each reload.
    #[arg(long = "reload-margin", default_value_t = 3)]
    pub margin: u64,
}

/// The VRID of the instance the 65k reload adds and the next one removes: its adverts are not
/// counted (it starts, and stops, by design).
const EXTRA_VRID: u8 = 255;

/// One advert seen on the wire: kernel receive time (ns since the Unix epoch) and the
/// instance, as (ifindex << 8) | VRID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Advert {
    key: u64,
    at_ns: i64,
}

/// The adverts of a time window, per instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Jitter {
    /// Instances heard in the window.
    instances: usize,
    /// Gaps between consecutive adverts of one instance that overlap the window.
    gaps: usize,
    /// The largest of them, ns.
    max_gap_ns: i64,
    /// Those longer than the lateness bound.
    late: usize,
    /// When the largest gap ended, ns.
    max_gap_end_ns: i64,
}

/// Every instance's gaps between consecutive adverts (`adverts` sorted by key, then time) that
/// overlap `[from_ns, to_ns]`: how many, the largest, and how many exceed `late_ns`. An
/// instance that falls silent counts from its last advert to `end_ns` (the capture's end), so
/// one that stops sending is not missed.
fn jitter(adverts: &[Advert], from_ns: i64, to_ns: i64, end_ns: i64, late_ns: i64) -> Jitter {
    let mut j = Jitter::default();
    j.instances = each_gap(adverts, from_ns, to_ns, end_ns, late_ns, |gap, at| {
        j.gaps += 1;
        if gap > j.max_gap_ns {
            (j.max_gap_ns, j.max_gap_end_ns) = (gap, at);
        }
        j.late += usize::from(gap > late_ns);
    });
    j
}

/// The gaps [`jitter`] counts, as `f(gap_ns, ended_at_ns)`; returns the instances heard in
/// the window.
fn each_gap(adverts: &[Advert], from_ns: i64, to_ns: i64, end_ns: i64, late_ns: i64, mut f: impl FnMut(i64, i64)) -> usize {
    let mut instances = 0;
    let mut i = 0;
    while i < adverts.len() {
        let key = adverts[i].key;
        let mut heard = false;
        let mut prev: Option<i64> = None;
        while i < adverts.len() && adverts[i].key == key {
            let at = adverts[i].at_ns;
            heard |= (from_ns..=to_ns).contains(&at);
            if let Some(p) = prev {
                if at >= from_ns && p <= to_ns {
                    f(at - p, at);
                }
            }
            prev = Some(at);
            i += 1;
        }
        if let Some(p) = prev.filter(|p| *p <= to_ns && end_ns - p > late_ns) {
            f(end_ns - p, end_ns);
        }
        instances += usize::from(heard);
    }
    instances
}

/// The gaps of [`jitter`] for the report: their median, 99th and 99.9th percentiles and the
/// largest, in ms (nearest rank; zeros when there is none).
fn gap_quantiles(adverts: &[Advert], from_ns: i64, to_ns: i64, end_ns: i64, late_ns: i64) -> [f64; 4] {
    let mut gaps = Vec::new();
    each_gap(adverts, from_ns, to_ns, end_ns, late_ns, |gap, _| gaps.push(gap));
    gaps.sort_unstable();
    let at = |q: f64| -> f64 {
        if gaps.is_empty() {
            return 0.0;
        }
        let rank = ((gaps.len() as f64) * q).ceil().max(1.0) as usize;
        gaps[rank.min(gaps.len()) - 1] as f64 / 1e6
    };
    [at(0.5), at(0.99), at(0.999), at(1.0)]
}

/// An `AF_PACKET` socket receiving IPv4 frames with kernel timestamps, on every interface of
/// the calling thread's namespace (`ifname` none) or on one.
struct TimedCapture {
    fd: OwnedFd,
}

impl TimedCapture {
    fn open(ifname: Option<&str>) -> anyhow::Result<TimedCapture> {
        let proto = i32::from(0x0800u16.to_be());
        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        ensure!(raw >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let set = |level: i32, name: i32, value: &[u8]| -> anyhow::Result<()> {
            // SAFETY: value is valid for its length.
            let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, value.as_ptr().cast(), value.len() as u32) };
            ensure!(rc == 0, "setsockopt({level}, {name}): {}", std::io::Error::last_os_error());
            Ok(())
        };
        set(libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &1i32.to_ne_bytes())?;
        // 65,024 adverts a second: room for several seconds should the reader be descheduled.
        set(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &(256i32 << 20).to_ne_bytes())?;
        let tv = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
        // SAFETY: timeval is plain data.
        let tv_bytes = unsafe { std::slice::from_raw_parts((&raw const tv).cast::<u8>(), std::mem::size_of::<libc::timeval>()) };
        set(libc::SOL_SOCKET, libc::SO_RCVTIMEO, tv_bytes)?;
        if let Some(name) = ifname {
            let ifindex = nix::net::if_::if_nametoindex(name).with_context(|| format!("no interface {name}"))?;
            // SAFETY: a zeroed sockaddr_ll is valid.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = 0x0800u16.to_be();
            sll.sll_ifindex = ifindex as i32;
            // SAFETY: sll is valid for its size.
            let rc = unsafe { libc::bind(fd.as_raw_fd(), (&raw const sll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as u32) };
            ensure!(rc == 0, "bind to {name}: {}", std::io::Error::last_os_error());
        }
        Ok(TimedCapture { fd })
    }

    /// The next VRRP advert received (not sent) within the socket's 100 ms timeout.
    fn next_advert(&self, buf: &mut [u8]) -> Option<Advert> {
        // SAFETY: zeroed sockaddr_ll, msghdr and a u64-aligned control buffer are valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut control = [0u64; 16];
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&raw mut sll).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: every pointer in msg is valid for this call.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, 0) };
        let frame = buf.get(..usize::try_from(n).ok()?)?;
        if sll.sll_pkttype == libc::PACKET_OUTGOING || frame.len() < 34 || frame[23] != 112 {
            return None;
        }
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        let vrid = *frame.get(14 + ihl + 1)?;
        // SAFETY: msg's control buffer was filled by recvmsg; the CMSG macros walk it.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
        while !cmsg.is_null() {
            // SAFETY: cmsg points into control.
            let c = unsafe { &*cmsg };
            if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_TIMESTAMPNS {
                // SAFETY: SCM_TIMESTAMPNS carries a timespec.
                let ts = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>()) };
                return Some(Advert {
                    key: (u64::try_from(sll.sll_ifindex).unwrap_or(0) << 8) | u64::from(vrid),
                    at_ns: ts.tv_sec * 1_000_000_000 + ts.tv_nsec,
                });
            }
            // SAFETY: as above.
            cmsg = unsafe { libc::CMSG_NXTHDR(&raw const msg, cmsg) };
        }
        None
    }

    /// Frames the kernel dropped because the socket's buffer was full (since the last call).
    fn drops(&self) -> u32 {
        let mut st = [0u32; 2];
        let mut len = std::mem::size_of_val(&st) as u32;
        // SAFETY: st is a struct tpacket_stats (tp_packets, tp_drops).
        let rc = unsafe {
            libc::getsockopt(self.fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_STATISTICS, st.as_mut_ptr().cast(), &raw mut len)
        };
        if rc == 0 {
            st[1]
        } else {
            0
        }
    }
}

/// A capture running on a thread in a namespace until stopped.
struct Running {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<(Vec<Advert>, u32)>>,
}

impl Running {
    fn start(ns: &Netns, ifname: Option<&'static str>) -> anyhow::Result<Running> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = ns.enter(move || -> anyhow::Result<(Vec<Advert>, u32)> {
            let cap = TimedCapture::open(ifname);
            let _ = ready_tx.send(cap.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")));
            let cap = cap?;
            let _ = cap.drops();
            let mut buf = vec![0u8; 2048];
            let mut out = Vec::with_capacity(1 << 20);
            while !flag.load(Ordering::Relaxed) {
                if let Some(a) = cap.next_advert(&mut buf) {
                    out.push(a);
                }
            }
            Ok((out, cap.drops()))
        })?;
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .context("capture thread did not start")?
            .map_err(|e| anyhow::anyhow!("capture: {e}"))?;
        Ok(Running { stop, thread })
    }

    fn finish(self) -> anyhow::Result<(Vec<Advert>, u32)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().map_err(|_| anyhow::anyhow!("capture thread panicked"))?
    }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// How a reload is asked for.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Cli,
    Sighup,
}

/// One measured reload.
struct Row {
    config: &'static str,
    change: &'static str,
    trigger: Trigger,
    took: Duration,
    advert: Duration,
    steady: Jitter,
    during: Jitter,
    drops: u32,
    /// Gap quantiles (p50, p99, p99.9, max; ms) before and during the reload.
    quantiles: ([f64; 4], [f64; 4]),
}

/// What [`measure`] found.
struct Measured {
    took: Duration,
    steady: Jitter,
    during: Jitter,
    drops: u32,
    quantiles: ([f64; 4], [f64; 4]),
}

/// Asks `d` for a reload and returns how long it took to be applied.
fn reload(ka: &Path, d: &KaDaemon, pid: i32, trigger: Trigger) -> anyhow::Result<Duration> {
    match trigger {
        Trigger::Cli => {
            let t0 = Instant::now();
            let out = Command::new(ka).args(["--instance", d.instance(), "reload", "--timeout", "600s"]).output().context("running ka reload")?;
            let took = t0.elapsed();
            ensure!(
                out.status.success(),
                "ka reload failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(took)
        }
        Trigger::Sighup => {
            // Only what the daemon logs from now on is read: the log of 65,024 instances is
            // ~100 MB, and reading it whole every few ms would slow the daemon it measures.
            let path = KaDaemon::log_file(d.instance());
            let mut log = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            log.seek(std::io::SeekFrom::End(0))?;
            let mut new = String::new();
            let t0 = Instant::now();
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP).context("SIGHUP")?;
            loop {
                log.read_to_string(&mut new)?;
                // The daemon's line (`changes=`), not the VRRP engine's, which comes first.
                if new.lines().any(|l| l.contains("reload applied") && l.contains("changes")) {
                    return Ok(t0.elapsed());
                }
                if new.contains("reload refused") {
                    bail!("the reload was refused:\n{}", tail(&new, 20));
                }
                if t0.elapsed() > Duration::from_secs(600) {
                    bail!("no `reload applied` within 600 s of the SIGHUP");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `ka status --json` with a timeout long enough for 65,024 instances.
fn status(ka: &Path, d: &KaDaemon) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(ka).args(["--instance", d.instance(), "status", "--json", "--timeout", "60s"]).output().context("ka status")?;
    ensure!(out.status.success(), "ka status: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).context("ka status --json printed invalid JSON")
}

fn masters(ka: &Path, d: &KaDaemon) -> usize {
    status(ka, d).ok().and_then(|s| s["vrrp"].as_array().map(|v| v.iter().filter(|i| i["state"] == "MASTER").count())).unwrap_or(0)
}

/// Polls `cond` every `every` until it holds, failing after `timeout` with `what`.
fn wait_until(what: &str, timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
    Ok(())
}

/// Captures on `peer` while `d` reloads `file` rewritten to `text`, and measures.
#[expect(clippy::too_many_arguments, reason = "one call site per configuration; a struct would only rename them")]
fn measure(
    ka: &Path,
    d: &KaDaemon,
    pid: i32,
    peer: &Netns,
    ifname: Option<&'static str>,
    (file, text): (&Path, &str),
    advert: Duration,
    margin: Duration,
    trigger: Trigger,
) -> anyhow::Result<Measured> {
    std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
    let cap = Running::start(peer, ifname)?;
    let start_ns = now_ns();
    std::thread::sleep(margin);
    let from_ns = now_ns();
    let took = reload(ka, d, pid, trigger);
    let to_ns = now_ns();
    if took.is_ok() {
        std::thread::sleep(margin);
    }
    let end_ns = now_ns();
    let (mut adverts, drops) = cap.finish()?;
    let took = took?;
    adverts.retain(|a| a.key & 0xff != u64::from(EXTRA_VRID));
    adverts.sort_unstable();
    // Adverts due while the reload ran may leave up to one interval after it.
    let late_ns = i64::try_from((advert + advert / 2).as_nanos()).unwrap_or(i64::MAX);
    let adv_ns = i64::try_from(advert.as_nanos()).unwrap_or(i64::MAX);
    // The steady window ends an interval before the reload, so no gap counts twice.
    let steady = jitter(&adverts, start_ns + adv_ns, from_ns - adv_ns, from_ns, late_ns);
    let during = jitter(&adverts, from_ns, to_ns + adv_ns, end_ns, late_ns);
    let quantiles = (
        gap_quantiles(&adverts, start_ns + adv_ns, from_ns - adv_ns, from_ns, late_ns),
        gap_quantiles(&adverts, from_ns, to_ns + adv_ns, end_ns, late_ns),
    );
    eprintln!(
        "    reload took {:.0} ms; {} adverts captured ({drops} dropped by the capture); steady: max gap {:.1} ms, {} late of {}; during it: max gap {:.1} ms ending {:.0} ms after the request, {} late of {}",
        took.as_secs_f64() * 1e3,
        adverts.len(),
        steady.max_gap_ns as f64 / 1e6,
        steady.late,
        steady.gaps,
        during.max_gap_ns as f64 / 1e6,
        (during.max_gap_end_ns - from_ns) as f64 / 1e6,
        during.late,
        during.gaps
    );
    Ok(Measured { took, steady, during, drops, quantiles })
}

/// The man page's configuration as this benchmark runs it (see the module doc).
fn instances_config(extra: bool) -> String {
    let mut c = crate::bench_config::man_page_config(7)
        .replace("    use_vmac vrrp4.${IF}.${NUM}.${ID} \\\n", "")
        .replace("10.${IF}.${NUM}.${ID}/24", "198.18.${NUM}.${ID}/24");
    if extra {
        let _ = write!(
            c,
            "\nvrrp_instance extra {{\n    interface bond0.0\n    virtual_router_id {EXTRA_VRID}\n    priority 130\n    virtual_ipaddress {{\n        198.19.255.1/32\n    }}\n}}\n"
        );
    }
    c
}

/// The 65,024-instance configuration.
fn instances(ka: &Path, margin: Duration) -> anyhow::Result<Vec<Row>> {
    const N: usize = 65_024;
    let lb = Netns::new("rl")?;
    let peer = Netns::new("rp")?;
    for ns in [&lb, &peer] {
        ns.run(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])?;
    }
    let (mut a, mut b) = (String::new(), String::new());
    for k in 0..256 {
        let name = format!("bond{}.{}", k / 32, k % 32);
        let _ = writeln!(a, "link add {name} type veth peer name w{k} netns {}", peer.name());
        let _ = writeln!(a, "addr add 198.19.{k}.1/24 dev {name}");
        let _ = writeln!(a, "link set {name} up");
        let _ = writeln!(b, "link set w{k} up");
    }
    let dir = std::env::temp_dir().join(unique_name("kabr"));
    std::fs::create_dir_all(&dir)?;
    let result = (|| -> anyhow::Result<Vec<Row>> {
        for (ns, text, name) in [(&lb, &a, "lb.batch"), (&peer, &b, "peer.batch")] {
            let path = dir.join(name);
            std::fs::write(&path, text)?;
            ns.run(&["ip", "-batch", &path.display().to_string()])?;
        }
        let conf = dir.join("ka.conf");
        std::fs::write(&conf, instances_config(false))?;
        eprintln!("  65,024 instances: starting ka --no-xdp");
        let t0 = Instant::now();
        let d = KaDaemon::start(&lb, ka, &unique_name("br"), &["--log", "info", "-f", &conf.display().to_string(), "--no-xdp"])?;
        let pid = i32::try_from(status(ka, &d)?["pid"].as_u64().context("no pid in status")?)?;
        wait_until("65,024 instances MASTER", Duration::from_secs(300), Duration::from_secs(2), || masters(ka, &d) == N)
            .with_context(|| tail(&d.log_text(), 20))?;
        eprintln!("  65,024 instances MASTER {:.1} s after the start; settling", t0.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_secs(5));
        let mut rows = Vec::new();
        for (extra, change, trigger) in [(true, "one instance added", Trigger::Cli), (false, "that instance removed", Trigger::Sighup)] {
            let step = crate::progress::step(format!("65,024 instances: reload ({change}, {trigger:?})"));
            let Measured { took, steady, during, drops, quantiles } =
                measure(ka, &d, pid, &peer, None, (&conf, &instances_config(extra)), Duration::from_secs(1), margin, trigger)?;
            step.finish();
            rows.push(Row {
                config: "65,024 instances (man page ~SEQ)",
                change,
                trigger,
                took,
                advert: Duration::from_secs(1),
                steady,
                during,
                drops,
                quantiles,
            });
        }
        let log = KaDaemon::log_file(d.instance());
        // Not what this benchmark measures: said, and the rows are still printed.
        if let Err(e) = d.stop() {
            eprintln!("  warning: stopping the 65,024-instance daemon: {}", tail(&format!("{e:#}"), 3));
        }
        // The log of 65,024 instances is about 100 MB.
        let _ = std::fs::remove_file(log);
        Ok(rows)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

const VSS: u32 = 2_000;
const RSS: u32 = 20;

/// The services configuration: `vss` virtual servers of 20 real servers, real server 0 of the
/// first at `weight0`, and the VRRP instance whose adverts are measured.
pub fn services_config(vss: u32, weight0: u32) -> String {
    let mut c = String::from(
        "global_defs {\n router_id bench\n vrrp_version 3\n}\n\
         vrrp_instance VI_1 {\n state MASTER\n interface lb0\n virtual_router_id 60\n priority 150\n advert_int 0.1\n \
         virtual_ipaddress {\n  198.18.60.100/24\n }\n}\n",
    );
    let base = u32::from(std::net::Ipv4Addr::new(198, 18, 64, 0));
    for v in 0..vss {
        let vip = std::net::Ipv4Addr::new(198, 19, (v / 250) as u8, (v % 250 + 1) as u8);
        let _ = write!(c, "virtual_server {vip} 80 {{\n delay_loop 10\n lb_algo mh\n lb_kind DR\n protocol TCP\n");
        for r in 0..RSS {
            let i = v * RSS + r;
            let addr = std::net::Ipv4Addr::from(base + 1 + i % 16_000);
            let port = 8000 + i / 16_000;
            let weight = if i == 0 { weight0 } else { 1 };
            let _ = write!(c, " real_server {addr} {port} {{\n  weight {weight}\n  TCP_CHECK {{\n   connect_timeout 2\n  }}\n }}\n");
        }
        c.push_str("}\n");
    }
    c
}

/// TCP listeners on `0.0.0.0:8000..=8002` in `ns` (an AnyIP route makes every address of the
/// real-server range local), accepting and closing until dropped.
struct Listeners {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Listeners {
    fn start(ns: &Netns) -> anyhow::Result<Listeners> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for port in 8000..=8002u16 {
            let flag = stop.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            threads.push(ns.enter(move || {
                let l = std::net::TcpListener::bind(("0.0.0.0", port)).and_then(|l| l.set_nonblocking(true).map(|()| l));
                let _ = tx.send(l.as_ref().map(|_| ()).map_err(ToString::to_string));
                let Ok(l) = l else { return };
                while !flag.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((s, _)) => drop(s),
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })?);
            rx.recv_timeout(Duration::from_secs(5)).context("listener thread did not start")?.map_err(|e| anyhow::anyhow!("listen on {port}: {e}"))?;
        }
        Ok(Listeners { stop, threads })
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The 2,000 × 20 configuration.
fn services(ka: &Path, margin: Duration) -> anyhow::Result<Vec<Row>> {
    let lb = Netns::new("rl")?;
    let srv = Netns::new("rs")?;
    ka_tests::netns::veth(&lb, "lb0", &["198.18.60.1/24"], &srv, "srv0", &["198.18.60.2/24"])?;
    srv.run(&["ip", "route", "add", "local", "198.18.64.0/18", "dev", "lo"])?;
    lb.run(&["ip", "route", "add", "198.18.64.0/18", "via", "198.18.60.2"])?;
    for ns in [&lb, &srv] {
        ns.run(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000", "net.ipv4.tcp_tw_reuse=1"])?;
    }
    let _listeners = Listeners::start(&srv)?;
    let dir = std::env::temp_dir().join(unique_name("kabr"));
    std::fs::create_dir_all(&dir)?;
    let result = (|| -> anyhow::Result<Vec<Row>> {
        let conf = dir.join("ka.conf");
        std::fs::write(&conf, services_config(VSS, 1))?;
        eprintln!("  2,000 × 20 real servers: starting ka (XDP on lb0)");
        let d = KaDaemon::start(&lb, ka, &unique_name("br"), &["--log", "info", "-f", &conf.display().to_string()])?;
        let pid = i32::try_from(status(ka, &d)?["pid"].as_u64().context("no pid in status")?)?;
        let total = u64::from(VSS * RSS);
        wait_until("VI_1 MASTER and one round of checks", Duration::from_secs(120), Duration::from_millis(500), || {
            status(ka, &d).is_ok_and(|s| {
                s["vrrp"][0]["state"] == "MASTER" && s["health"]["checks"]["total"].as_u64().unwrap_or(0) >= 2 * total
            })
        })
        .with_context(|| tail(&d.log_text(), 20))?;
        let mut rows = Vec::new();
        for (vss, w, change, trigger) in [
            (VSS + 1, 2, "1 weight changed, 1 virtual server (20 real servers) added", Trigger::Cli),
            (VSS, 1, "both undone", Trigger::Sighup),
        ] {
            let step = crate::progress::step(format!("2,000 × 20 real servers: reload ({change}, {trigger:?})"));
            let Measured { took, steady, during, drops, quantiles } = measure(
                ka,
                &d,
                pid,
                &srv,
                Some("srv0"),
                (&conf, &services_config(vss, w)),
                Duration::from_millis(100),
                margin,
                trigger,
            )?;
            step.finish();
            rows.push(Row {
                config: "2,000 virtual servers × 20 real servers + 1 VRRP instance",
                change,
                trigger,
                took,
                advert: Duration::from_millis(100),
                steady,
                during,
                drops,
                quantiles,
            });
        }
        let failed = status(ka, &d)?["health"]["failures"]["total"].as_u64().unwrap_or(0);
        eprintln!("  checker failures over the run: {failed}");
        d.stop()?;
        Ok(rows)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Runs the reload benchmark with the release `ka` at `ka`, prints a Markdown table and
/// returns its rows.
///
/// # Errors
/// Not root, a namespace or the daemon cannot be set up, or a reload fails.
pub fn run(opts: Options, ka: &Path) -> anyhow::Result<crate::report::Reload> {
    ensure!(nix::unistd::Uid::effective().is_root(), "the reload benchmark needs root (network namespaces)");
    let margin = Duration::from_secs(opts.margin);
    let mut rows = Vec::new();
    if !opts.skip_instances {
        rows.extend(instances(ka, margin).context("reload bench, 65,024 instances")?);
    }
    if !opts.skip_services {
        rows.extend(services(ka, margin).context("reload bench, 2,000 × 20 real servers")?);
    }
    println!("\n### Live reload (`cargo xtask bench --only reload`)\n");
    println!(
        "Reload time: `ka reload` until it returns (applied), or SIGHUP until the `reload applied` log\n\
         line. Adverts: every instance's gaps between consecutive adverts, kernel receive timestamps on\n\
         the peer side of the wire; \"late\" is a gap over 1.5 × advert_int. Steady: the {} s before the\n\
         reload; during: from the request to one interval after the answer.\n",
        opts.margin
    );
    println!("| configuration | change | asked by | reload time | advert_int | steady: max gap, late/gaps | during the reload: max gap, late/gaps | instances heard | capture drops |");
    println!("|---|---|---|---:|---:|---|---|---:|---:|");
    for r in &rows {
        let ms = |ns: i64| ns as f64 / 1e6;
        println!(
            "| {} | {} | {} | {:.0} ms | {} ms | {:.1} ms, {}/{} | {:.1} ms, {}/{} | {} | {} |",
            r.config,
            r.change,
            match r.trigger {
                Trigger::Cli => "`ka reload`",
                Trigger::Sighup => "SIGHUP",
            },
            r.took.as_secs_f64() * 1e3,
            r.advert.as_millis(),
            ms(r.steady.max_gap_ns),
            r.steady.late,
            r.steady.gaps,
            ms(r.during.max_gap_ns),
            r.during.late,
            r.during.gaps,
            r.during.instances,
            r.drops,
        );
    }
    let gaps = |j: &Jitter, q: &[f64; 4]| crate::report::Gaps {
        instances: j.instances as u64,
        gaps: j.gaps as u64,
        late: j.late as u64,
        p50_ms: q[0],
        p99_ms: q[1],
        p999_ms: q[2],
        max_ms: q[3],
    };
    Ok(crate::report::Reload {
        rows: rows
            .iter()
            .map(|r| crate::report::ReloadRow {
                config: r.config.to_owned(),
                change: r.change.to_owned(),
                trigger: match r.trigger {
                    Trigger::Cli => "ka reload",
                    Trigger::Sighup => "SIGHUP",
                }
                .to_owned(),
                took_ms: r.took.as_secs_f64() * 1e3,
                advert_int_ms: r.advert.as_secs_f64() * 1e3,
                steady: gaps(&r.steady, &r.quantiles.0),
                during: gaps(&r.during, &r.quantiles.1),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(key: u64, at_ms: i64) -> Advert {
        Advert { key, at_ns: at_ms * 1_000_000 }
    }

    /// Gaps are per instance, only those overlapping the window count, and one over the bound
    /// is late.
    #[test]
    fn gaps_per_instance_in_window() {
        let mut v = vec![a(1, 0), a(1, 1000), a(1, 2600), a(1, 3600), a(2, 0), a(2, 1000), a(2, 2000), a(2, 3000)];
        v.sort_unstable();
        let ms = 1_000_000;
        let j = jitter(&v, 1500 * ms, 2500 * ms, 3600 * ms, 1500 * ms);
        // Instance 1 sends nothing inside the window, only its late gap overlaps it.
        assert_eq!(j, Jitter { instances: 1, gaps: 3, max_gap_ns: 1600 * ms, late: 1, max_gap_end_ns: 2600 * ms });
        // Before the late advert: no lateness.
        let j = jitter(&v, 0, 900 * ms, 3600 * ms, 1500 * ms);
        assert_eq!(j, Jitter { instances: 2, gaps: 2, max_gap_ns: 1000 * ms, late: 0, max_gap_end_ns: 1000 * ms });
    }

    /// Quantiles are over the same gaps as `jitter`: the largest equals its max, the median is
    /// the typical interval.
    #[test]
    fn quantiles_over_the_same_gaps() {
        let mut v = vec![a(1, 0), a(1, 1000), a(1, 2600), a(1, 3600), a(2, 0), a(2, 1000), a(2, 2000), a(2, 3000)];
        v.sort_unstable();
        let ms = 1_000_000;
        let q = gap_quantiles(&v, 0, 3600 * ms, 3600 * ms, 1500 * ms);
        let j = jitter(&v, 0, 3600 * ms, 3600 * ms, 1500 * ms);
        assert_eq!(q[3], j.max_gap_ns as f64 / 1e6);
        assert_eq!(q, [1000.0, 1600.0, 1600.0, 1600.0]);
        assert_eq!(gap_quantiles(&[], 0, 1, 1, 1), [0.0; 4]);
    }

    /// An instance that stops sending is late from its last advert to the end of the capture.
    #[test]
    fn silent_instance_is_late() {
        let v = vec![a(1, 0), a(1, 1000)];
        let ms = 1_000_000;
        let j = jitter(&v, 500 * ms, 1500 * ms, 5000 * ms, 1500 * ms);
        assert_eq!(j, Jitter { instances: 1, gaps: 2, max_gap_ns: 4000 * ms, late: 1, max_gap_end_ns: 5000 * ms });
    }

    /// The man page's text, without use_vmac and with test-range VIPs; the extra instance.
    #[test]
    fn instances_config_text() {
        let c = instances_config(false);
        assert!(!c.contains("use_vmac"));
        assert!(c.contains("198.18.${NUM}.${ID}/24"));
        assert!(c.contains("~SEQ(IF,0,7) ~SEQ(NUM,0,31) ~SEQ(ID,1,254) $VI4"));
        assert!(instances_config(true).contains("virtual_router_id 255"));
    }

    /// 2,000 × 20 distinct real servers (address, port), the first one's weight as given.
    #[test]
    fn services_config_text() {
        let c = services_config(VSS, 7);
        assert_eq!(c.matches("virtual_server ").count(), 2000);
        assert_eq!(c.matches("real_server ").count(), 40_000);
        assert!(c.contains("real_server 198.18.64.1 8000 {\n  weight 7\n"));
        let rs: std::collections::HashSet<&str> = c.lines().filter(|l| l.starts_with(" real_server ")).collect();
        assert_eq!(rs.len(), 40_000);
    }
}
