//! A guard for network namespaces, veth pairs and bridges: everything it creates is removed on
//! drop, including while a test panics.
//!
//! Only namespaces this guard created are touched; the host's own interfaces never are.

use std::{
    fs::File,
    os::fd::AsFd,
    process::{Command, Output},
};

use anyhow::{bail, Context as _};

/// Runs a command, failing with its stderr when it exits non-zero. Returns stdout.
///
/// # Errors
/// The command cannot be spawned or exits non-zero.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out: Output = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A named network namespace (`ip netns add`), deleted on drop with everything in it (veth
/// ends inside it vanish with it, and so do their peers).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named `ka<tag><pid>x<n>` and brings its loopback up.
    ///
    /// # Errors
    /// `ip netns add` fails (not root, no iproute2).
    pub fn new(tag: &str) -> anyhow::Result<Netns> {
        let name = crate::unique_name(&format!("ka{tag}"));
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        // Test addresses are ours alone: skip IPv6 duplicate address detection so link-local
        // and configured addresses are usable at once.
        ns.run(&["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of the namespace's handle: `/run/netns/NAME`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`; note this also
    /// gives it a private mount namespace with its own /sys).
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// A command that runs `program` in the namespace's network namespace only
    /// (`nsenter --net`): the mount namespace, and so bpffs pins, stay the host's.
    pub fn nsenter(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path())).arg("--").arg(program);
        c
    }

    /// Runs `args` inside the namespace and returns stdout.
    ///
    /// # Errors
    /// The command fails.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let (program, rest) = args.split_first().context("empty command")?;
        run(self.cmd(program).args(rest))
    }

    /// Runs `f` on a thread that has entered this namespace, so the sockets `f` creates live
    /// in it. The calling thread's namespace is left alone.
    ///
    /// # Errors
    /// The namespace cannot be entered.
    pub fn enter<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<std::thread::JoinHandle<T>> {
        let file = File::open(self.path()).with_context(|| format!("opening {}", self.path()))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            let res = nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET);
            let ok = res.is_ok();
            let _ = tx.send(res);
            if !ok {
                panic!("setns failed");
            }
            f()
        });
        rx.recv().context("namespace thread died")?.context("setns")?;
        Ok(handle)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill anything still running inside, then delete the namespace. Errors are reported,
        // not raised: this also runs while unwinding.
        if let Ok(pids) = run(Command::new("ip").args(["netns", "pids", &self.name])) {
            for pid in pids.split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("warning: removing namespace {}: {e:#}", self.name);
        }
    }
}

/// Creates a veth pair with `a` in `ns_a` and `b` in `ns_b`, both up, with the given
/// addresses (CIDR, may be empty). The pair disappears with either namespace.
///
/// # Errors
/// An `ip` command fails.
pub fn veth(ns_a: &Netns, a: &str, addrs_a: &[&str], ns_b: &Netns, b: &str, addrs_b: &[&str]) -> anyhow::Result<()> {
    ns_a.run(&["ip", "link", "add", a, "type", "veth", "peer", "name", b, "netns", ns_b.name()])?;
    for (ns, ifname, addrs) in [(ns_a, a, addrs_a), (ns_b, b, addrs_b)] {
        for addr in addrs {
            ns.run(&["ip", "addr", "add", addr, "dev", ifname, "nodad"])
                .or_else(|_| ns.run(&["ip", "addr", "add", addr, "dev", ifname]))?;
        }
        ns.run(&["ip", "link", "set", ifname, "up"])?;
    }
    Ok(())
}

/// A bridge living in its own namespace (`hub`), with one veth leg per attached namespace.
/// Dropping the bridge's namespace removes the bridge and every leg.
#[derive(Debug)]
pub struct Bridge {
    hub: Netns,
    legs: u32,
}

impl Bridge {
    /// Creates a namespace holding bridge `br0`, up.
    ///
    /// # Errors
    /// An `ip` command fails.
    pub fn new() -> anyhow::Result<Bridge> {
        let hub = Netns::new("br")?;
        hub.run(&["ip", "link", "add", "br0", "type", "bridge"])?;
        hub.run(&["ip", "link", "set", "br0", "up"])?;
        Ok(Bridge { hub, legs: 0 })
    }

    /// The namespace that holds the bridge (e.g. to capture on `br0`).
    pub fn hub(&self) -> &Netns {
        &self.hub
    }

    /// Attaches a trivial `XDP_PASS` program to the bridge's end of the leg that
    /// [`attach`](Self::attach) created as the `n`-th (1-based), so frames that `ns` sends with
    /// `XDP_TX` from a *native* XDP program reach the bridge (see [`crate::xdp`]). Only for
    /// labs that deliberately run ka with `--xdp-mode native` (benchmarks, for speed): in auto
    /// mode `ka run` attaches in generic mode on such a veth and needs no help. Keep the result
    /// while the lab runs.
    ///
    /// # Errors
    /// The kernel refuses the program.
    pub fn xdp_pass_on_leg(&self, n: u32) -> anyhow::Result<crate::xdp::XdpPass> {
        let leg = format!("leg{n}");
        self.hub.enter(move || crate::xdp::attach_pass(&leg))?.join().map_err(|_| anyhow::anyhow!("xdp thread panicked"))?.context("attaching XDP_PASS to a bridge leg")
    }

    /// How many legs [`attach`](Self::attach) created so far (the last one is `leg{n}`).
    pub fn legs(&self) -> u32 {
        self.legs
    }

    /// Plugs `ns` into the bridge through a veth whose namespace end is `ifname` with `addrs`.
    ///
    /// # Errors
    /// An `ip` command fails.
    pub fn attach(&mut self, ns: &Netns, ifname: &str, addrs: &[&str]) -> anyhow::Result<()> {
        self.legs += 1;
        let leg = format!("leg{}", self.legs);
        veth(&self.hub, &leg, &[], ns, ifname, addrs)?;
        self.hub.run(&["ip", "link", "set", &leg, "master", "br0"])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guard removes its namespace on drop, even when the owner panics.
    #[test]
    fn namespace_is_removed_even_on_panic() {
        crate::require_root();
        let name = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let n2 = name.clone();
        let res = std::panic::catch_unwind(move || {
            let ns = Netns::new("t").expect("netns");
            *n2.lock().expect("lock") = ns.name().to_owned();
            panic!("boom");
        });
        assert!(res.is_err());
        let name = name.lock().expect("lock").clone();
        assert!(!name.is_empty());
        let list = run(Command::new("ip").args(["netns", "list"])).expect("ip netns list");
        assert!(!list.split_whitespace().any(|n| n == name), "{name} still exists: {list}");
    }

    /// Two namespaces joined by a veth pair can reach each other, and `enter` puts sockets in
    /// the namespace.
    #[test]
    fn veth_pair_connects_two_namespaces() {
        crate::require_root();
        let a = Netns::new("a").expect("netns a");
        let b = Netns::new("b").expect("netns b");
        veth(&a, "va", &["198.18.0.1/30"], &b, "vb", &["198.18.0.2/30"]).expect("veth");
        let listener = b
            .enter(|| std::net::UdpSocket::bind("198.18.0.2:9999").expect("bind"))
            .expect("enter b")
            .join()
            .expect("join");
        a.enter(|| {
            let s = std::net::UdpSocket::bind("198.18.0.1:0").expect("bind");
            s.send_to(b"hello", "198.18.0.2:9999").expect("send");
        })
        .expect("enter a")
        .join()
        .expect("join");
        listener.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
        let mut buf = [0u8; 16];
        let (n, from) = listener.recv_from(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from.ip().to_string(), "198.18.0.1");
    }
}
