//! `ka run`: the daemon. Owns the control socket and the datapath, and shuts down cleanly on
//! SIGTERM/SIGINT (pins and socket removed, XDP detached).

use std::{path::PathBuf, time::Instant};

use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::{
    control::{self, ControlError, Request, Response},
    datapath::{AttachMode, Datapath, DatapathError},
    instance::InstanceName,
    status::{StatusReport, XdpAttachment},
};

/// Arguments of `ka run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// keepalived configuration file.
    #[arg(short = 'f', long = "use-file")]
    pub file: Option<PathBuf>,
    /// Config id selecting `@id` conditional lines (default: the short hostname).
    #[arg(short = 'i', long = "config-id")]
    pub config_id: Option<String>,
    /// Attach the XDP program to this interface (repeatable), in addition to the interfaces
    /// the configuration names.
    #[arg(long = "iface")]
    pub ifaces: Vec<String>,
    /// How to attach the XDP program.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub xdp_mode: AttachMode,
    /// Do not load the XDP program at all (VRRP and health checks still run; nothing is
    /// forwarded).
    #[arg(long)]
    pub no_xdp: bool,
    /// Outer source of TUN (IPIP/IP6IP6) packets, `ADDR/BITS`: the low `32-BITS` (IPv4) or
    /// `128-BITS` (IPv6) bits vary per flow for RSS on the real servers. Repeat for both
    /// families. Default: the director's first address on an XDP interface, fixed.
    #[arg(long = "tunnel-source")]
    pub tunnel_sources: Vec<String>,
}

/// Parses `--tunnel-source ADDR/BITS`.
fn tunnel_source(s: &str) -> Option<crate::lb::TunnelSource> {
    let (a, l) = s.split_once('/').unwrap_or((s, ""));
    let addr: std::net::IpAddr = a.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len: u8 = if l.is_empty() { max } else { l.parse().ok()? };
    Some(crate::lb::TunnelSource { addr, host_bits: max.checked_sub(len)? })
}

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Control socket trouble.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// Datapath trouble.
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// The configuration cannot be read.
    #[error("configuration {path}: {source}")]
    Load {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: crate::config::LoadError,
    },
    /// The configuration has errors (they were printed).
    #[error("configuration {path} has {count} error(s); run `ka check -f {path}` for details")]
    Invalid {
        /// File.
        path: PathBuf,
        /// Number of errors.
        count: usize,
    },
    /// The configuration cannot be run.
    #[error(transparent)]
    Setup(#[from] crate::engine::setup::SetupError),
    /// `script_user` is unknown.
    #[error(transparent)]
    Script(#[from] crate::notify::script::ScriptError),
    /// Netlink trouble.
    #[error(transparent)]
    Netlink(#[from] crate::net::netlink::NetlinkError),
    /// The VRRP engine failed to start.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// The health checkers failed to start.
    #[error(transparent)]
    Health(#[from] crate::health::HealthError),
}

/// Loads and checks the configuration; errors are logged with their locations.
fn load_config(path: &std::path::Path, config_id: Option<String>) -> Result<crate::config::Config, DaemonError> {
    let opts = crate::config::LoadOptions { config_id, ..Default::default() };
    let loaded = crate::config::load(path, &opts).map_err(|source| DaemonError::Load { path: path.to_owned(), source })?;
    let mut errors = 0;
    for d in &loaded.diagnostics {
        let text = d.render(&loaded.sources, path);
        if d.severity == crate::config::Severity::Error {
            errors += 1;
            error!("{text}");
        } else {
            warn!("{text}");
        }
    }
    if errors > 0 {
        return Err(DaemonError::Invalid { path: path.to_owned(), count: errors });
    }
    Ok(loaded.config)
}

/// Runs the daemon in the foreground until SIGTERM or SIGINT.
///
/// # Errors
/// Start-up fails (socket in use, datapath cannot load or attach...).
pub async fn run(instance: InstanceName, args: RunArgs) -> Result<(), DaemonError> {
    let started = Instant::now();
    let config = match &args.file {
        Some(path) => Some(load_config(path, args.config_id.clone())?),
        None => None,
    };
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let socket_path = instance.socket_path();
    let listener = control::bind(&socket_path).await?;
    let _socket_guard = RemoveOnDrop(socket_path.clone());

    let mut ifaces = args.ifaces.clone();
    // Interfaces only VRRP needs: XDP there is the advert fast path, and the raw socket is
    // the fallback when it cannot attach.
    let mut vrrp_only = Vec::new();
    if let Some(cfg) = &config {
        for i in &cfg.vrrp_instances {
            if let Some(name) = &i.interface {
                if !ifaces.contains(name) {
                    ifaces.push(name.clone());
                    vrrp_only.push(name.clone());
                }
            }
        }
    }
    let mut datapath = if args.no_xdp {
        info!("--no-xdp: datapath not loaded; VRRP adverts are received on raw sockets only");
        None
    } else {
        let mut dp = Datapath::load(&instance)?;
        for iface in &ifaces {
            match dp.attach(iface, args.xdp_mode) {
                Ok(_) => {}
                Err(e) if vrrp_only.contains(iface) => warn!(
                    iface = %iface,
                    error = %e,
                    "XDP cannot attach: the VRRP fast path is off on this interface and its adverts are received on the raw socket only"
                ),
                Err(e) => return Err(e.into()),
            }
        }
        Some(dp)
    };
    // The XDP VRRP fast path: the engine owns its maps once the program is attached.
    let fast_input = match (&config, datapath.as_mut()) {
        (Some(cfg), Some(dp)) if !cfg.vrrp_instances.is_empty() => fast_path_input(dp, &netlink_ifindexes(dp)),
        _ => None,
    };
    let (netlink, _netlink_task) = crate::net::netlink::spawn()?;
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let engine = match &config {
        Some(cfg) if !cfg.vrrp_instances.is_empty() => {
            let setups = crate::engine::setup::instances(cfg)?;
            let mut globals = crate::engine::setup::globals(cfg)?;
            globals.events = Some(events_tx.clone());
            globals.nft_table = crate::net::firewall::table_name(&instance.to_string());
            Some(crate::engine::start(setups, globals, netlink.clone(), fast_input).await?)
        }
        _ => None,
    };
    drop(events_tx);
    let health = match &config {
        Some(cfg) if !cfg.virtual_servers.is_empty() => Some(crate::health::start(
            cfg,
            // Every instance starts out of MASTER; the engine reports each transition.
            crate::health::HealthOptions { master: false, ..Default::default() },
        )?),
        _ => None,
    };
    // The load balancer: tables from the config, the checkers and VRRP mastership.
    let mut dataplane = match (&config, &datapath, &health) {
        (Some(cfg), Some(_), Some(_)) => {
            let mut v4 = None;
            let mut v6 = None;
            for t in &args.tunnel_sources {
                match tunnel_source(t) {
                    Some(ts) if ts.addr.is_ipv4() => v4 = Some(ts),
                    Some(ts) => v6 = Some(ts),
                    None => warn!(value = %t, "--tunnel-source: expected ADDR/PREFIX; ignored"),
                }
            }
            if v4.is_none() || v6.is_none() {
                let vips: Vec<std::net::IpAddr> = cfg
                    .vrrp_instances
                    .iter()
                    .flat_map(|i| i.virtual_ipaddresses.iter().chain(&i.virtual_ipaddresses_excluded).map(|v| v.address.addr))
                    .collect();
                let mut idx = Vec::new();
                for name in &ifaces {
                    if let Ok(l) = netlink.link(name).await {
                        idx.push(l.index);
                    }
                }
                for (i, a, _) in netlink.list_addrs(None).await.unwrap_or_default() {
                    if !idx.contains(&i) || vips.contains(&a) {
                        continue;
                    }
                    match a {
                        std::net::IpAddr::V4(_) if v4.is_none() => v4 = Some(crate::lb::TunnelSource { addr: a, host_bits: 0 }),
                        std::net::IpAddr::V6(x) if v6.is_none() && !x.is_unicast_link_local() => {
                            v6 = Some(crate::lb::TunnelSource { addr: a, host_bits: 0 })
                        }
                        _ => {}
                    }
                }
            }
            // The next hops' forwarding check is about the interfaces packets enter XDP on.
            let ingress = datapath.as_ref().map(|d| d.attachments().iter().map(|a| a.iface.clone()).collect()).unwrap_or_default();
            Some(crate::dataplane::Dataplane::new(cfg, v4, v6).resolving_next_hops(netlink.clone(), ingress))
        }
        (Some(cfg), None, Some(_)) => {
            if !cfg.virtual_servers.is_empty() {
                warn!("--no-xdp: virtual_servers are health-checked but not forwarded");
            }
            None
        }
        _ => None,
    };
    let mut backends = health.as_ref().map(crate::health::HealthHandle::backends);
    let mut next_hop_updates = dataplane.as_ref().and_then(crate::dataplane::Dataplane::next_hop_updates);
    if let (Some(dp), Some(datapath), Some(cfg), Some(b)) = (dataplane.as_mut(), datapath.as_mut(), &config, &backends) {
        let set = b.borrow().clone();
        dp.update(datapath.ebpf_mut(), cfg, &set);
    }
    info!(instance = %instance, socket = %socket_path.display(), vrrp_instances = config.as_ref().map_or(0, |c| c.vrrp_instances.len()), "ka running");

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let vrrp = match &engine { Some(e) => e.status().await, None => Default::default() };
                    let health_report = match &health { Some(h) => Some(h.status().await), None => None };
                    let services = match (&dataplane, &datapath) {
                        (Some(dp), Some(d)) => dp.counters(d.ebpf()),
                        _ => Vec::new(),
                    };
                    let report = status_report(&instance, started, datapath.as_ref(), vrrp, health_report, services);
                    if let Err(e) = control::serve_one(stream, move |req| match req {
                        Ok(Request::Status) => report,
                        Err(message) => Response::Error { message },
                    }).await {
                        warn!(error = %e, "control request failed");
                    }
                }
                Err(e) => warn!(error = %e, "accept on control socket failed"),
            },
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
            _ = sighup.recv() => reload(&args),
            Some(ev) = events.recv() => match ev {
                crate::engine::EngineEvent::Mastership { instance: name, master, .. } => {
                    if let (Some(dp), Some(d)) = (dataplane.as_mut(), datapath.as_mut()) {
                        dp.set_master(d.ebpf_mut(), &name, master);
                    }
                    // ha_suspend follows the instance that holds each service's address.
                    if let Some(h) = &health {
                        h.set_master(&name, master);
                    }
                }
            },
            () = async {
                // A closed channel (resolver gone) never fires again.
                let open = match next_hop_updates.as_mut() {
                    Some(r) => r.changed().await.is_ok(),
                    None => false,
                };
                if !open {
                    std::future::pending::<()>().await;
                }
            } => {
                if let (Some(dp), Some(d)) = (dataplane.as_mut(), datapath.as_mut()) {
                    dp.apply_next_hops(d.ebpf_mut());
                }
            },
            Ok(()) = async {
                match backends.as_mut() {
                    Some(b) => b.changed().await,
                    None => std::future::pending().await,
                }
            } => {
                if let (Some(dp), Some(d), Some(cfg), Some(b)) = (dataplane.as_mut(), datapath.as_mut(), &config, &backends) {
                    let set = b.borrow().clone();
                    dp.update(d.ebpf_mut(), cfg, &set);
                }
            },
        }
    }
    if let Some(e) = engine {
        e.shutdown().await;
    }
    if let Some(h) = health {
        h.shutdown().await;
    }
    if let Some(dp) = dataplane {
        dp.shutdown().await;
    }
    drop(datapath);
    info!("stopped");
    Ok(())
}

/// SIGHUP: checks the configuration again. A malformed file never disturbs the running
/// instances: the old configuration stays in force.
fn reload(args: &RunArgs) {
    let Some(path) = &args.file else {
        warn!("SIGHUP: no configuration file to reload");
        return;
    };
    match load_config(path, args.config_id.clone()) {
        Ok(_) => warn!(
            file = %path.display(),
            "SIGHUP: the configuration is valid, but applying changes without a restart is not supported yet; the running configuration is kept"
        ),
        Err(e) => error!(error = %e, "SIGHUP: new configuration refused; the running configuration is kept"),
    }
}

fn status_report(
    instance: &InstanceName,
    started: Instant,
    dp: Option<&Datapath>,
    vrrp: crate::engine::EngineReport,
    health: Option<crate::health::HealthReport>,
    services: Vec<crate::dataplane::ServiceCounters>,
) -> Response {
    let (xdp, counters) = match dp {
        None => (Vec::new(), Default::default()),
        Some(dp) => {
            let counters = match dp.counters() {
                Ok(c) => c.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                Err(e) => {
                    error!(error = %e, "reading counters");
                    return Response::Error { message: e.to_string() };
                }
            };
            let xdp = dp
                .attachments()
                .iter()
                .map(|a| XdpAttachment { iface: a.iface.clone(), mode: a.mode.to_owned() })
                .collect();
            (xdp, counters)
        }
    };
    let vrrp_dropped = vrrp_drops(&vrrp, &counters);
    Response::Status(Box::new(StatusReport {
        instance: instance.to_string(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        uptime_s: started.elapsed().as_secs(),
        xdp,
        counters,
        vrrp: vrrp.instances,
        vrrp_dropped,
        health,
        services,
    }))
}

/// Invalid adverts by reason, wherever they were dropped: in XDP (the fast path's per-reason
/// counters), in the engine before an instance was found, and per instance.
fn vrrp_drops(
    vrrp: &crate::engine::EngineReport,
    counters: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    let mut out: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for r in ka_common::vrrp::DropReason::ALL {
        let xdp = counters.get(ka_common::stats::Counter::vrrp_drop(*r).name()).copied().unwrap_or(0);
        let engine = vrrp.dropped.get(r.name()).copied().unwrap_or(0);
        let inst: u64 = vrrp.instances.iter().filter_map(|i| i.adverts_dropped.get(r.name())).sum();
        let n = xdp + engine + inst;
        if n > 0 {
            out.insert(r.name().to_owned(), n);
        }
    }
    out
}

/// The interfaces `ka_xdp` is attached to, by ifindex.
fn netlink_ifindexes(dp: &Datapath) -> std::collections::BTreeSet<u32> {
    dp.attachments()
        .iter()
        .filter_map(|a| nix::net::if_::if_nametoindex(a.iface.as_str()).ok())
        .collect()
}

/// Turns the XDP VRRP fast path on and hands its maps to the engine; on failure, logs it and
/// leaves every advert to the raw sockets.
fn fast_path_input(dp: &mut Datapath, ifindexes: &std::collections::BTreeSet<u32>) -> Option<crate::engine::fast::FastInput> {
    if ifindexes.is_empty() {
        return None;
    }
    let ebpf = dp.ebpf_mut();
    // Adverts for a VRID no instance runs on the interface are dropped (and counted) in XDP.
    let taken = crate::lb::vrrp_fast::set_enabled(ebpf, true, true).and_then(|()| crate::lb::vrrp_fast::FastMaps::take(ebpf));
    match taken {
        Ok((maps, events)) => Some(crate::engine::fast::FastInput { maps, events, ifindexes: ifindexes.clone() }),
        Err(e) => {
            warn!(error = %e, "XDP VRRP fast path unavailable: adverts are received on the raw sockets only");
            let _ = crate::lb::vrrp_fast::set_enabled(dp.ebpf_mut(), false, false);
            None
        }
    }
}

/// Removes a file when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
