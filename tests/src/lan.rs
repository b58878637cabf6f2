//! The load-balancer LAN shared by the end-to-end tests (`tests/lb_e2e.rs`) and the bundled lab
//! (`cargo xtask run`): a client, directors and real servers on one bridge, the keepalived.conf
//! the directors run, and the line-echo servers behind the VIP.
//!
//! DR and TUN real servers hold the VIP on loopback and do not answer ARP for it
//! (`arp_ignore=1`, `arp_announce=2`), so they reply to the client directly. Nothing runs on
//! the bridge's end of a director's veth: `ka run --xdp-mode auto` attaches in generic mode
//! there, which delivers the frames the datapath sends with `XDP_TX`/`XDP_REDIRECT`. Directors
//! keep forwarding off, as on a default host: ka's DR and TUN need none.

use std::{
    collections::HashMap,
    io::{Read as _, Write as _},
    net::{IpAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use anyhow::Context as _;

use crate::netns::{Bridge, Netns};

/// The addresses of one LAN, each with its prefix length (`198.18.40.2/24`, `fd00::2/64`).
#[derive(Clone, Debug)]
pub struct LanSpec {
    /// The client's addresses.
    pub client: Vec<String>,
    /// Each director's addresses.
    pub directors: Vec<Vec<String>>,
    /// Each real server's addresses.
    pub real_servers: Vec<Vec<String>>,
    /// The VIPs every real server holds on loopback (`/32`, `/128`).
    pub loopback_vips: Vec<String>,
}

/// A built LAN. Fields drop in order: the namespaces, then the bridge with its legs.
#[derive(Debug)]
pub struct Lan {
    /// The client (`eth0` on the bridge).
    pub client: Netns,
    /// The directors (`eth0` on the bridge, forwarding off as on a default host).
    pub directors: Vec<Netns>,
    /// The real servers (`eth0` on the bridge, VIPs on `lo`).
    pub real_servers: Vec<Netns>,
    /// The bridge.
    pub bridge: Bridge,
}

impl Lan {
    /// Creates the namespaces and plugs them into one bridge, as [the module](self) describes.
    ///
    /// # Errors
    /// A namespace, a link, an address or a sysctl cannot be set up
    /// (everything created so far is removed).
    pub fn new(spec: &LanSpec) -> anyhow::Result<Lan> {
        let mut bridge = Bridge::new()?;
        let mut directors = Vec::new();
        for addrs in &spec.directors {
            let director = Netns::new("ld")?;
            bridge.attach(&director, "eth0", &strs(addrs))?;
            // Forwarding off, as on a default host (a new namespace may inherit the host's
            // IPv4 setting): DR and TUN need none, ka forwards from the next hops it resolves.
            director.run(&["sysctl", "-qw", "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"])?;
            directors.push(director);
        }
        let client = Netns::new("lc")?;
        bridge.attach(&client, "eth0", &strs(&spec.client))?;
        full_checksums(&client, "eth0")?;
        let mut real_servers = Vec::new();
        for (i, addrs) in spec.real_servers.iter().enumerate() {
            let ns = Netns::new(&format!("r{i}"))?;
            bridge.attach(&ns, "eth0", &strs(addrs))?;
            ns.run(&["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2"])?;
            for vip in &spec.loopback_vips {
                ns.run(&["ip", "addr", "add", vip, "dev", "lo"])?;
            }
            full_checksums(&ns, "eth0")?;
            real_servers.push(ns);
        }
        Ok(Lan { client, directors, real_servers, bridge })
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Turns off transmit checksum offload on `dev` in `ns`: a veth frame with a partial checksum
/// loses its offload metadata when XDP forwards it, and would arrive with a bad checksum (real
/// NICs hand XDP complete checksums).
///
/// # Errors
/// `ethtool` is missing or fails.
pub fn full_checksums(ns: &Netns, dev: &str) -> anyhow::Result<()> {
    ns.run(&["ethtool", "-K", dev, "tx", "off"]).map(drop).context("ethtool: install Debian's ethtool (cargo xtask setup)")
}

/// One real server of a [`LbConf`].
#[derive(Clone, Debug)]
pub struct RealServerConf {
    /// Address.
    pub addr: String,
    /// Port.
    pub port: u16,
    /// The checker block ([`tcp_check`], [`misc_check`]).
    pub check: String,
}

/// The keepalived.conf of a director: a VRRP instance on `eth0` owning the VIP, and one TCP
/// virtual_server with Maglev over the 5-tuple (`mh` with `mh-port`: a client's connections
/// spread over the servers) and a health check per real server.
#[derive(Clone, Debug)]
pub struct LbConf {
    /// The VRRP instance's name.
    pub instance: String,
    /// `virtual_router_id`.
    pub vrid: u8,
    /// The instance's `state` and `priority` lines ([`role`]), possibly conditional (`@id`
    /// lines, chosen by `ka run -i ID`), so that one file serves every director.
    pub role: Vec<String>,
    /// `virtual_ipaddress` entries (`198.18.40.100/24`).
    pub vrrp_vips: Vec<String>,
    /// `virtual_ipaddress_excluded` entries.
    pub excluded: Vec<String>,
    /// The virtual server's VIP.
    pub vip: String,
    /// Its port.
    pub port: u16,
    /// `lb_kind`: `NAT`, `DR` or `TUN`.
    pub lb_kind: String,
    /// Its real servers.
    pub real_servers: Vec<RealServerConf>,
}

impl LbConf {
    /// The config text.
    pub fn text(&self) -> String {
        let LbConf { instance, vrid, vip, port, lb_kind, .. } = self;
        let role: String = self.role.iter().map(|l| format!(" {l}\n")).collect();
        let vips: String = self.vrrp_vips.iter().map(|v| format!(" {v}\n")).collect();
        let excluded = if self.excluded.is_empty() {
            String::new()
        } else {
            let e: String = self.excluded.iter().map(|v| format!(" {v}\n")).collect();
            format!(" virtual_ipaddress_excluded {{\n{e} }}\n")
        };
        let rs: String = self.real_servers.iter().map(|r| format!(" real_server {} {} {{\n{} }}\n", r.addr, r.port, r.check)).collect();
        format!(
            "vrrp_instance {instance} {{\n{role} interface eth0\n virtual_router_id {vrid}\n advert_int 1\n virtual_ipaddress {{\n{vips} }}\n{excluded}}}\n\
virtual_server {vip} {port} {{\n delay_loop 1\n lb_algo mh\n mh-port\n lb_kind {lb_kind}\n protocol TCP\n{rs}}}\n"
        )
    }
}

/// The `state` and `priority` lines of a VRRP instance, each prefixed with `prefix` (e.g.
/// `@dr1 ` for a conditional line, or nothing).
pub fn role(prefix: &str, master: bool, priority: u8) -> Vec<String> {
    vec![format!("{prefix}state {}", if master { "MASTER" } else { "BACKUP" }), format!("{prefix}priority {priority}")]
}

/// A TCP_CHECK block: connect within 1 s, one retry at once (a closed port fails in about 1 s).
pub fn tcp_check() -> String {
    "  TCP_CHECK {\n   connect_timeout 1\n  }\n  retry 1\n  delay_before_retry 0\n".to_owned()
}

/// A MISC_CHECK block running `script state` with `misc_dynamic` (exit 0 or 3: up at weight 1,
/// 2: up at weight 0, 1: down).
pub fn misc_check(script: &std::path::Path, state: &std::path::Path) -> String {
    format!("  MISC_CHECK {{\n   misc_path \"{} {}\"\n   misc_timeout 2\n   misc_dynamic\n  }}\n", script.display(), state.display())
}

/// Which server accepted the connection from each client port.
pub type Accepted = Arc<Mutex<HashMap<u16, usize>>>;

/// A TCP server in a namespace that answers every line with its index (`rs0`, `rs1`...) and
/// records the client port of each connection from `record_from` it accepts; `Drop` closes the
/// listener (established connections keep being served until the client closes them).
#[derive(Debug)]
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    /// Listens on `[::]:port` in `ns` (IPv4 too).
    ///
    /// # Errors
    /// The namespace cannot be entered or the port is taken.
    pub fn start(ns: &Netns, index: usize, port: u16, accepted: &Accepted, record_from: &[IpAddr]) -> anyhow::Result<EchoServer> {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let accepted = accepted.clone();
        let record_from = record_from.to_vec();
        let listener = ns
            .enter(move || TcpListener::bind(("::", port)))?
            .join()
            .map_err(|_| anyhow::anyhow!("bind thread panicked"))?
            .with_context(|| format!("binding [::]:{port}"))?;
        listener.set_nonblocking(true)?;
        let handle = std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((c, peer)) => {
                        if record_from.contains(&peer.ip().to_canonical()) {
                            if let Ok(mut a) = accepted.lock() {
                                a.insert(peer.port(), index);
                            }
                        }
                        std::thread::spawn(move || serve(c, index));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Ok(EchoServer { stop, handle: Some(handle) })
    }
}

/// Answers each line with `rs{index}` until the peer closes (bounded by a read timeout).
fn serve(mut c: TcpStream, index: usize) {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(120)));
    let mut buf = [0u8; 256];
    while let Ok(n @ 1..) = c.read(&mut buf) {
        for _ in buf[..n].iter().filter(|&&b| b == b'\n') {
            if writeln!(c, "rs{index}").is_err() {
                return;
            }
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Sends a line on `s` and reads the answer of the [`EchoServer`] behind it: its index, or
/// `None` on an error, a timeout or a garbled answer.
pub fn ask(s: &mut TcpStream) -> Option<usize> {
    ask_why(s).ok()
}

/// A UDP server in a namespace bound to `addr:port` (a VIP on a DR real server's loopback, so
/// answers come from it) that answers every datagram from `only` with its index (`rs0`,
/// `rs1`...) and ignores the rest (a flood); `Drop` stops it.
#[derive(Debug)]
pub struct UdpEchoServer {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl UdpEchoServer {
    /// Binds `addr:port` in `ns`.
    ///
    /// # Errors
    /// The namespace cannot be entered or the address cannot be bound.
    pub fn start(ns: &Netns, index: usize, addr: IpAddr, port: u16, only: IpAddr) -> anyhow::Result<UdpEchoServer> {
        let sock = ns
            .enter(move || std::net::UdpSocket::bind((addr, port)))?
            .join()
            .map_err(|_| anyhow::anyhow!("bind thread panicked"))?
            .with_context(|| format!("binding {addr}:{port}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !s.load(Ordering::Relaxed) {
                if let Ok((_, from)) = sock.recv_from(&mut buf) {
                    if from.ip() == only {
                        let _ = sock.send_to(format!("rs{index}\n").as_bytes(), from);
                    }
                }
            }
        });
        Ok(UdpEchoServer { stop, handle: Some(handle) })
    }
}

impl Drop for UdpEchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Asks a [`UdpEchoServer`] through the connected socket `s` (its read timeout set) which
/// server answers, sending again after each timeout, up to `tries` datagrams (a datagram may be
/// lost, e.g. under a flood).
///
/// # Errors
/// No answer to any of them, a socket error, or a garbled answer.
pub fn ask_udp(s: &std::net::UdpSocket, tries: u32) -> Result<usize, String> {
    let mut buf = [0u8; 16];
    for _ in 0..tries {
        s.send(b"?\n").map_err(|e| format!("send: {e}"))?;
        match s.recv(&mut buf) {
            Ok(n) => {
                let t = std::str::from_utf8(&buf[..n]).map_err(|_| "garbled answer".to_owned())?;
                return t.trim().strip_prefix("rs").and_then(|i| i.parse().ok()).ok_or_else(|| format!("garbled answer {t:?}"));
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
    Err(format!("no answer to {tries} datagrams"))
}

/// Why an [`ask_why`] got no answer.
#[derive(Debug)]
pub enum AskError {
    /// Writing or reading failed (reset, timeout...).
    Io(std::io::Error),
    /// The peer closed the connection.
    Closed,
    /// The answer is not `rs<index>`.
    Garbled(Vec<u8>),
}

impl std::fmt::Display for AskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AskError::Io(e) => write!(f, "{}", e.kind()),
            AskError::Closed => write!(f, "closed by the peer"),
            AskError::Garbled(b) => write!(f, "garbled answer {:?}", String::from_utf8_lossy(b)),
        }
    }
}

/// [`ask`], saying why it got no answer.
///
/// # Errors
/// The write or the read fails, the peer closes, or the answer is garbled.
pub fn ask_why(s: &mut TcpStream) -> Result<usize, AskError> {
    s.write_all(b"?\n").map_err(AskError::Io)?;
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 16 {
        match s.read(&mut b) {
            Ok(1) if b[0] == b'\n' => break,
            Ok(1) => line.push(b[0]),
            Ok(_) => return Err(AskError::Closed),
            Err(e) => return Err(AskError::Io(e)),
        }
    }
    std::str::from_utf8(&line).ok().and_then(|l| l.strip_prefix("rs")?.parse().ok()).ok_or(AskError::Garbled(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config text has the VRRP instance (with excluded VIPs when given) and the virtual
    /// server with each real server's checker, in keepalived's syntax.
    #[test]
    fn conf_text() {
        let c = LbConf {
            instance: "VI_T".into(),
            vrid: 9,
            role: role("@b ", false, 100),
            vrrp_vips: vec!["198.18.0.100/24".into()],
            excluded: vec!["fd00:198:18::100/64".into()],
            vip: "198.18.0.100".into(),
            port: 80,
            lb_kind: "DR".into(),
            real_servers: vec![RealServerConf { addr: "198.18.0.11".into(), port: 80, check: tcp_check() }],
        };
        assert_eq!(
            c.text(),
            "vrrp_instance VI_T {\n @b state BACKUP\n @b priority 100\n interface eth0\n virtual_router_id 9\n advert_int 1\n virtual_ipaddress {\n 198.18.0.100/24\n }\n virtual_ipaddress_excluded {\n fd00:198:18::100/64\n }\n}\n\
virtual_server 198.18.0.100 80 {\n delay_loop 1\n lb_algo mh\n mh-port\n lb_kind DR\n protocol TCP\n real_server 198.18.0.11 80 {\n  TCP_CHECK {\n   connect_timeout 1\n  }\n  retry 1\n  delay_before_retry 0\n }\n}\n"
        );
    }
}
