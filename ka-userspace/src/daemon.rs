//! `ka run`: the daemon. Owns the control socket and the datapath, and shuts down cleanly on
//! SIGTERM/SIGINT (resign, VIPs removed, pins and socket removed, XDP detached) unless told to
//! leave VRRP or the datapath for the next process (`--dont-release-vrrp/-ipvs`).

use std::{path::PathBuf, sync::Arc, time::Instant};

use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::{
    control::{self, ControlError, Request, Response},
    datapath::{AttachMode, Datapath, DatapathError},
    instance::InstanceName,
    status::{StatusReport, XdpAttachment},
    supervise::Watch,
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
    /// On SIGTERM/SIGINT, leave the VRRP state as it is (keepalived `--dont-release-vrrp`): no
    /// priority-0 advert, the VIPs stay; a ka started within Master_Down_Interval resumes as
    /// Master without a transition.
    #[arg(long)]
    pub dont_release_vrrp: bool,
    /// On SIGTERM/SIGINT, leave the datapath as it is (keepalived `--dont-release-ipvs`): the
    /// XDP program stays attached with its tables and connections, for the next ka to adopt.
    #[arg(long)]
    pub dont_release_ipvs: bool,
    /// Serve Prometheus metrics on `http://ADDR:PORT/metrics`. A port alone listens on
    /// 127.0.0.1 (`--metrics 9650`); any other address must be given (`0.0.0.0:9650`,
    /// `[::]:9650`), and a non-loopback one is logged as reachable from the network.
    #[arg(long, value_name = "[ADDR:]PORT", value_parser = crate::metrics::listen_addr)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Run one subsystem of the configuration, as `keepalived -P` (`vrrp`: the virtual servers
    /// are left out) or `-C` (`checkers`: the VRRP instances are left out).
    #[arg(long, value_enum)]
    pub only: Option<crate::keepalived::args::Only>,
    /// Run no BFD session, as `keepalived --no_bfd`: every `bfd_instance` stays down for the
    /// `track_bfd`s and `BFD_CHECK`s that name it.
    #[arg(long)]
    pub no_bfd: bool,
    /// Keep `VIP/32 dev lo` (`/128`) routes in this routing table while this director should
    /// receive each VIP's traffic, for a BGP daemon to announce (see `ka::announce`).
    #[arg(long, value_name = "TABLE", value_parser = crate::announce::parse_table)]
    pub announce_table: Option<u32>,
    /// On SIGTERM/SIGINT with `--announce-table`: after withdrawing the routes, keep
    /// forwarding this many seconds before stopping.
    #[arg(long, value_name = "SECONDS", default_value_t = 2)]
    pub announce_drain: u64,
    /// Log the configuration in keepalived's data-dump format once running (`keepalived -d`).
    #[arg(long, hide = true)]
    pub dump_conf: bool,
    /// The umask was set on keepalived's command line (`-u`): the configuration's `umask`
    /// is then ignored, as keepalived ignores it.
    #[arg(long, hide = true)]
    pub umask_set: bool,
}

/// Runs `startup_script` / `shutdown_script` (`what`) and waits for it, at most `timeout`
/// (then it is killed with its process group), as keepalived 2.2.7 does before starting and
/// after stopping; its failure is logged and changes nothing else.
async fn run_start_stop_script(what: &str, script: &crate::config::model::Script, timeout: std::time::Duration, g: &crate::config::model::GlobalDefs) {
    use crate::notify::{script::{RunAs, Runner}, security::default_user};
    let default_user = match default_user(g.script_user.as_ref().map(|(u, grp)| (u.as_str(), grp.as_deref())), g.enable_script_security) {
        Ok(u) => u,
        Err(e) => {
            warn!(script = what, error = %e, "script user");
            return;
        }
    };
    let user = match &script.user {
        Some((u, grp)) => match RunAs::resolve(u, grp.as_deref()) {
            Ok(r) => Some(r),
            Err(e) => {
                warn!(script = what, error = %e, "script user; not run");
                return;
            }
        },
        None => None,
    };
    let runner = Runner { default_user, secure: g.enable_script_security, timeout };
    info!(script = what, command = %script.command, "running");
    match runner.spawn(&script.command, &[], user) {
        Ok(h) => match h.await {
            Ok(Some(0)) => info!(script = what, "succeeded"),
            Ok(Some(status)) => warn!(script = what, status, "failed"),
            Ok(None) => warn!(script = what, ?timeout, "did not finish (timed out or killed)"),
            Err(e) => warn!(script = what, error = %e, "waiting for it"),
        },
        Err(e) => warn!(script = what, error = %e, "cannot run it"),
    }
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
    /// Another daemon runs this instance.
    #[error(transparent)]
    Lock(#[from] crate::instance::LockError),
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
    /// A subsystem task stopped while the daemon ran.
    #[error("the {subsystem} stopped; ka exits without releasing the VIPs or the datapath, for a supervisor to restart it")]
    Stopped {
        /// Which: `VRRP engine`, `health checkers`, `next-hop resolver`, `control server`,
        /// `netlink worker`.
        subsystem: &'static str,
    },
    /// `--announce-table` with virtual servers, but nowhere to attach XDP.
    #[error("--announce-table: no interface to attach XDP to (no vrrp_instance names one, no real server is routed out of one): give --iface IFACE, where the VIPs' traffic arrives")]
    NoXdpInterface,
    /// The metrics endpoint cannot listen.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// The BFD runtime cannot start.
    #[error(transparent)]
    Bfd(#[from] crate::bfd::io::BfdError),
}

/// Loads and checks the configuration; errors are logged with their locations.
fn load_config(path: &std::path::Path, config_id: Option<String>, only: Option<crate::keepalived::args::Only>) -> Result<crate::config::Config, DaemonError> {
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
    let mut config = loaded.config;
    if let Some(only) = only {
        only.apply(&mut config);
    }
    for finding in crate::notify::security::apply(&mut config) {
        warn!("{finding}");
    }
    Ok(config)
}

/// Runs the daemon in the foreground until SIGTERM or SIGINT.
///
/// # Errors
/// Start-up fails (socket in use, datapath cannot load or attach...).
pub async fn run(instance: InstanceName, args: RunArgs) -> Result<(), DaemonError> {
    let started = Instant::now();
    let mut config = match &args.file {
        Some(path) => Some(Arc::new(load_config(path, args.config_id.clone(), args.only)?)),
        None => None,
    };
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    // Before anything of the instance's is touched: a second daemon on it stops here.
    let _lock = crate::instance::InstanceLock::acquire(&instance)?;
    if let Some(cfg) = &config {
        let g = &cfg.global;
        // keepalived's per-process tuning: the process-wide part, and the checkers' threads
        // (the runtime's workers); the VRRP and BFD threads tune themselves as they start.
        crate::threads::apply_process(&crate::threads::ProcessTuning::of(g));
        crate::threads::apply_named(crate::threads::Part::Checker, crate::threads::WORKER_NAME, &crate::threads::Tuning::of(g, crate::threads::Part::Checker));
        if let Some(mask) = g.umask.filter(|_| !args.umask_set) {
            // SAFETY: umask only changes this process's file-creation mask.
            unsafe { libc::umask(mask as libc::mode_t) };
        }
        // keepalived runs it, and waits for it, before it starts anything.
        if let Some(s) = &g.startup_script {
            run_start_stop_script("startup_script", s, g.startup_script_timeout, g).await;
        }
    }
    let socket_path = instance.socket_path();
    let listener = control::bind(&socket_path).await?;
    let _socket_guard = RemoveOnDrop(socket_path.clone());
    // The control server runs in its own task: clients never hold up this loop.
    let (calls_tx, mut calls) = tokio::sync::mpsc::channel::<control::ControlCall>(64);
    // The metrics endpoint and the watchdog ask for status snapshots as control clients do.
    let status_calls = calls_tx.clone();
    let (control_watch, control_task) = Watch::task("control server", control::spawn_server(listener, calls_tx));
    let _control = AbortOnDrop(control_task);
    let metrics_listener = match args.metrics {
        Some(addr) => Some(crate::metrics::bind(addr).await?),
        None => None,
    };
    let mut lifecycle = crate::sdnotify::Lifecycle::new(Arc::new(crate::sdnotify::SdNotify), crate::sdnotify::monotonic_usec);
    let mut overrides = crate::rs_control::Overrides::default();
    let mut reloads = crate::status::ReloadStats::started(std::time::SystemTime::now());
    // `ka prepare-restart`: this stop keeps the VIPs and the datapath for the next ka.
    let mut keep_on_stop = false;
    let mut reloader = crate::reload::apply::Reloader::new(args.file.clone(), args.config_id.clone()).only(args.only);

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
    let (netlink, netlink_task) = crate::net::netlink::spawn(config.as_deref().and_then(|c| crate::net::netlink::RcvBuf::of(&c.global)))?;
    let (netlink_watch, netlink_task) = Watch::task("netlink worker", netlink_task);
    let _netlink_task = AbortOnDrop(netlink_task);
    // Active-active (no vrrp_instance names an interface): XDP goes where the real servers are.
    if let Some(cfg) = config.as_deref().filter(|c| ifaces.is_empty() && !args.no_xdp && !c.virtual_servers.is_empty()) {
        ifaces = crate::announce::real_server_ifaces(cfg, &netlink).await;
        if ifaces.is_empty() && args.announce_table.is_some() {
            return Err(DaemonError::NoXdpInterface);
        } else if ifaces.is_empty() {
            warn!("virtual servers are configured, but no vrrp_instance names an interface and no real server is routed out of one: XDP attaches nowhere and nothing is forwarded; give --iface IFACE");
        } else {
            info!(ifaces = %ifaces.join(","), "no vrrp_instance names an interface: XDP attaches to the real servers' interfaces (give --iface to choose)");
        }
    }
    // Before the datapath loads (it mounts bpffs when missing): what the host lacks.
    let findings = match &config {
        Some(cfg) => preflight(cfg, &ifaces, !args.no_xdp, &netlink).await,
        None => Vec::new(),
    };
    crate::preflight::log(&findings);
    // lvs_flush: the tables of an earlier run are not adopted (the links and VRRP maps are).
    if config.as_ref().is_some_and(|c| c.global.lvs_flush) && !args.no_xdp {
        let removed = crate::lb::flush::forget_pinned_tables(&instance.pin_dir());
        info!(pins = removed, "lvs_flush: the load-balancer tables start empty");
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
    // A start that adopted the pins of an earlier run rebuilds the load balancer's state from
    // its maps: ids and tables (the dataplane) and real-server health (the checkers).
    let adopted = datapath.as_ref().filter(|d| d.adopting()).and_then(read_adopted);
    // The XDP VRRP fast path: the engine owns its maps once the program is attached.
    let fast_input = match (&config, datapath.as_mut()) {
        (Some(cfg), Some(dp)) if !cfg.vrrp_instances.is_empty() => fast_path_input(dp, &netlink_ifindexes(dp), !cfg.global.log_unknown_vrids),
        _ => None,
    };
    // BFD sessions (bfd_instance): started with any configuration, so a reload can add some.
    let bfd_plan = |cfg: &crate::config::Config| {
        let plan = crate::bfd::io::Plan::of(cfg);
        if args.no_bfd { plan.without_sessions() } else { plan }
    };
    let bfd = config.as_deref().map(|c| crate::bfd::io::start(bfd_plan(c), crate::threads::Tuning::of(&c.global, crate::threads::Part::Bfd), c.global.random_seed)).transpose()?;
    // keepalived installs the static entries before its VRRP dispatcher starts.
    let mut statics = match &config {
        Some(cfg) => crate::statics::start(&netlink, cfg).await,
        None => crate::statics::StaticSet::default(),
    };
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let engine = match &config {
        Some(cfg) if !cfg.vrrp_instances.is_empty() => {
            let setups = crate::engine::setup::instances(cfg)?;
            let mut globals = crate::engine::setup::globals(cfg)?;
            globals.events = Some(events_tx.clone());
            globals.nft_table = crate::net::firewall::table_name(&instance.to_string());
            globals.state_file = Some(crate::engine::resume::path(instance.as_str()));
            globals.bfd = bfd.as_ref().map(crate::bfd::io::BfdHandle::states);
            Some(crate::engine::start(setups, globals, netlink.clone(), fast_input).await?)
        }
        _ => None,
    };
    drop(events_tx);
    // The engine has resumed (or started) VRRP from the adopted maps; now the new programs
    // are verified (the earlier program forwards meanwhile): the sweeper and the tables need them.
    if let Some(d) = datapath.as_mut() {
        d.verify()?;
    }
    let health = match &config {
        Some(cfg) if !cfg.virtual_servers.is_empty() => Some(crate::health::start(
            cfg,
            // Every instance starts out of MASTER; the engine reports each transition.
            crate::health::HealthOptions {
                master: false,
                initial: adopted.as_ref().map(|a| crate::dataplane::adopted_health(cfg, a)).unwrap_or_default(),
                bfd: bfd.as_ref().map(crate::bfd::io::BfdHandle::states),
                ..Default::default()
            },
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
            let dp = crate::dataplane::Dataplane::new(cfg, v4, v6).resolving_next_hops(netlink.clone(), ingress);
            let dp = match datapath.as_ref() {
                Some(d) => dp.sweeping_connections(d.ebpf(), cfg),
                None => dp,
            };
            Some(match adopted {
                Some(a) => dp.adopting(cfg, a),
                None => dp,
            })
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
        let set = overrides.apply(cfg, &b.borrow());
        dp.update(datapath.ebpf_mut(), cfg, &set);
    }
    // Connection sync (lvs_sync_daemon): BACKUP until the engine reports its instance MASTER.
    let mut sync = match (&config, datapath.as_mut(), &dataplane) {
        (Some(cfg), Some(d), Some(dp)) => crate::lb::sync::start(cfg, d.ebpf_mut(), &instance.pin_dir(), dp.sync_index()),
        _ => None,
    };
    // Only frames addressed to this director are forwarded (a flooded frame reaches every one).
    // Before the takeover: the adopted globals may carry the check's flag already.
    if let (Some(d), Some(cfg), Some(_)) = (datapath.as_mut(), config.as_deref(), &dataplane) {
        install_local_macs(d, cfg, &netlink).await;
    }
    // The tables are in place: the program may now take over the pinned links of a previous run.
    if let Some(d) = datapath.as_mut() {
        d.commit()?;
    }
    // --announce-table: the VIP routes a BGP daemon announces; every instance starts out of
    // MASTER, the engine reports each transition.
    let mut announcer = args.announce_table.map(|t| crate::announce::Announcer::spawn(netlink.clone(), t));
    let mut masters = std::collections::BTreeSet::new();
    announce(announcer.as_mut(), config.as_deref(), datapath.as_ref().filter(|_| dataplane.is_some()), backends.as_ref(), &masters);
    // Attached interfaces going down, away, and coming back (re-attached when re-created).
    let mut xdp_links = datapath.as_ref().map(|d| crate::xdp_watch::spawn(netlink.clone(), d.attachments().iter().map(|a| a.iface.clone()).collect()));
    // Start-up facts, one line each (the attachments were logged as they were made).
    let instances = match &engine {
        Some(e) => e.status().await.instances,
        None => Vec::new(),
    };
    if engine.is_some() {
        let list: Vec<String> = instances.iter().map(|i| format!("{} ({}, vrid {}, {})", i.name, i.interface, i.vrid, i.state)).collect();
        info!(count = list.len(), instances = %list.join(", "), "VRRP instances");
    }
    if let Some(cfg) = config.as_ref().filter(|c| !c.virtual_servers.is_empty()) {
        let real_servers: usize = cfg.virtual_servers.iter().map(|v| v.real_servers.len()).sum();
        let forwarded = if dataplane.is_some() { "forwarded by XDP" } else { "health-checked only (no XDP)" };
        info!(services = cfg.virtual_servers.len(), real_servers, "virtual servers: {forwarded}");
    }
    info!(socket = %socket_path.display(), "control socket listening");
    info!(instance = %instance, host_findings = findings.len(), "ka running");
    let _metrics = metrics_listener.map(|l| AbortOnDrop(crate::metrics::spawn(l, crate::metrics::status_source(status_calls.clone())).abort_handle()));
    // systemd: ready once the datapath is attached and VRRP started; the watchdog pings only
    // while the main loop and the engine answer.
    lifecycle.ready(crate::sdnotify::status_line(instances.iter().map(|i| (i.name.as_str(), i.state.as_str()))));
    let _watchdog = crate::sdnotify::watchdog_interval().map(|interval| {
        info!(interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX), "systemd watchdog enabled");
        let calls = status_calls.clone();
        AbortOnDrop(crate::sdnotify::spawn_watchdog(lifecycle.notifier(), interval, move || {
            let calls = calls.clone();
            async move { control::ask_status(&calls).await.is_some() }
        }).abort_handle())
    });
    // keepalived's dump signals (USR1, USR2, STATS_CLEAR, JSON), answered from status reports.
    let (config_watch, config_seen) = tokio::sync::watch::channel(config.clone());
    let dumps = crate::keepalived::signals::DumpOptions {
        calls: status_calls.clone(),
        config: config_seen,
        dir: crate::keepalived::signals::tmp_dir(std::env::var("TMPDIR").ok().as_deref()),
        dump_conf: args.dump_conf,
    };
    let _dumps = AbortOnDrop(crate::keepalived::signals::spawn(dumps).map_err(|e| DaemonError::Signals(std::io::Error::other(e)))?.abort_handle());
    drop(status_calls);

    // Every subsystem task is watched: one that stops ends the daemon (see `supervise`).
    let mut watches = vec![control_watch, netlink_watch];
    watches.extend(engine.as_ref().map(|e| Watch::new("VRRP engine", e.stopped())));
    watches.extend(health.as_ref().map(|h| Watch::new("health checkers", h.stopped())));
    watches.extend(bfd.as_ref().map(|b| Watch::new("BFD sessions", b.stopped())));
    let stopped = crate::supervise::first_stopped(watches);
    tokio::pin!(stopped);
    let mut died: Option<&'static str> = None;
    loop {
        tokio::select! {
            name = &mut stopped => { died = Some(name); break; }
            Some(call) = calls.recv() => match call.request {
                Request::Status => {
                    // Engine and health reports are gathered by a task of their own.
                    let (services, refused) = match (&dataplane, &datapath) {
                        (Some(dp), Some(d)) => (dp.counters(d.ebpf()), dp.refused().to_vec()),
                        _ => (Vec::new(), Vec::new()),
                    };
                    let mut base = status_report(&instance, started, datapath.as_ref(), Default::default(), None, (services, refused), &findings);
                    if let Response::Status(r) = &mut base {
                        r.runtime_overrides = overrides.report();
                        r.reloads = reloads.clone();
                        r.announce = announcer.as_ref().map(crate::announce::Announcer::report);
                    }
                    let marks = (overrides.clone(), config.clone());
                    if let (Response::Status(r), Some(s)) = (&mut base, &sync) {
                        let mut report = s.report();
                        let lost = r.counters.get(ka_common::stats::Counter::SyncEventLost.name()).copied().unwrap_or(0);
                        if lost > 0 {
                            report.dropped.insert("ring_full".to_owned(), lost);
                        }
                        r.sync = Some(report);
                    }
                    let vrrp = engine.as_ref().map(crate::engine::EngineHandle::status_task);
                    let health_report = health.as_ref().map(crate::health::HealthHandle::status_task);
                    let bfd_report = bfd.as_ref().filter(|_| config.as_ref().is_some_and(|c| !c.bfd_instances.is_empty())).map(crate::bfd::io::BfdHandle::status_task);
                    tokio::spawn(async move {
                        let vrrp = match vrrp { Some(f) => f.await, None => Default::default() };
                        let health_report = match health_report { Some(f) => Some(f.await), None => None };
                        let mut reply = complete_status(base, vrrp, health_report, &marks);
                        if let (Response::Status(r), Some(f)) = (&mut reply, bfd_report) {
                            r.bfd = Some(f.await);
                        }
                        let _ = call.reply.send(reply);
                    });
                }
                Request::Reload => {
                    reloader.request(&config.clone().unwrap_or_default(), Some(call.reply));
                    if reloader.busy() { lifecycle.reloading(); }
                }
                Request::RealServer(req) => {
                    let answer = crate::rs_control::handle(&req, config.as_deref(), dataplane.is_some(), &mut overrides);
                    if let (Response::RealServer(_), Some(dp), Some(d), Some(cfg), Some(b)) = (&answer, dataplane.as_mut(), datapath.as_mut(), &config, &backends) {
                        let set = overrides.apply(cfg, &b.borrow());
                        dp.update(d.ebpf_mut(), cfg, &set);
                    }
                    let _ = call.reply.send(answer);
                }
                Request::PrepareRestart => {
                    info!("control: prepare-restart: the next stop keeps the VIPs and the datapath for the next ka");
                    keep_on_stop = true;
                    let _ = call.reply.send(Response::RestartPrepared);
                }
            },
            prepared = reloader.prepared() => {
                let outcome = match prepared {
                    Ok(p) => {
                        let new = p.config.clone();
                        let targets = crate::reload::apply::Targets {
                            engine: engine.as_ref(),
                            health: health.as_ref(),
                            dataplane: dataplane.as_mut().zip(datapath.as_mut().map(Datapath::ebpf_mut)),
                            overrides: &overrides,
                        };
                        match crate::reload::apply::apply(p, targets).await {
                            Ok(summary) => {
                                statics = crate::statics::reload(&netlink, std::mem::take(&mut statics), &new).await;
                                if let Some(b) = &bfd {
                                    b.reload(bfd_plan(&new)).await;
                                }
                                for key in overrides.retain_configured(&new) {
                                    info!(real_server = %key, "runtime override dropped: the real server left the configuration");
                                }
                                if let (Some(dp), Some(d)) = (dataplane.as_ref(), datapath.as_mut()) {
                                    let states = match &engine { Some(e) => e.states().await, None => Vec::new() };
                                    let master = |name: &str| states.iter().any(|i| i.name == name && i.state == "MASTER");
                                    crate::lb::sync::reload(&mut sync, &new, d.ebpf_mut(), &instance.pin_dir(), dp.sync_index(), master);
                                }
                                // Virtual MACs of the instances the reload added or removed.
                                if let (Some(d), Some(_)) = (datapath.as_mut(), &dataplane) {
                                    install_local_macs(d, &new, &netlink).await;
                                }
                                // The replaced configuration is freed off this loop (tens of
                                // thousands of instances take a while to free); the watch's old
                                // copy is the same Arc.
                                crate::reload::apply::drop_aside(config.replace(new));
                                crate::reload::apply::drop_aside(config_watch.send_replace(config.clone()));
                                announce(announcer.as_mut(), config.as_deref(), datapath.as_ref().filter(|_| dataplane.is_some()), backends.as_ref(), &masters);
                                Response::Reloaded(summary)
                            }
                            Err(d) => crate::reload::apply::refused(d),
                        }
                    }
                    Err(d) => crate::reload::apply::refused(d),
                };
                reloads.record(matches!(outcome, Response::Reloaded(_)), std::time::SystemTime::now());
                reloader.finish(&outcome, &config.clone().unwrap_or_default());
                lifecycle.reloaded();
                if reloader.busy() { lifecycle.reloading(); }
                crate::sdnotify::send_status(engine.as_ref(), lifecycle.notifier());
            },
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
            _ = sighup.recv() => {
                info!("SIGHUP: reloading");
                reloader.request(&config.clone().unwrap_or_default(), None);
                if reloader.busy() { lifecycle.reloading(); }
            },
            Some(ev) = async {
                match xdp_links.as_mut() {
                    Some(w) => w.events.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                crate::xdp_watch::apply(&ev, datapath.as_mut(), args.xdp_mode);
                // A re-created interface or a new address may come with another MAC: the
                // destination-MAC check follows (a stale one would pass the director's traffic).
                let new_mac = matches!(ev, crate::xdp_watch::LinkEvent::Recreated { .. } | crate::xdp_watch::LinkEvent::MacChanged(_));
                if let (true, Some(d), Some(cfg), Some(_)) = (new_mac, datapath.as_mut(), config.as_deref(), &dataplane) {
                    install_local_macs(d, cfg, &netlink).await;
                }
            },
            Some(ev) = events.recv() => match ev {
                crate::engine::EngineEvent::Mastership { instance: name, master, .. } => {
                    if let (Some(dp), Some(d)) = (dataplane.as_mut(), datapath.as_mut()) {
                        dp.set_master(d.ebpf_mut(), &name, master);
                        crate::lb::sync::follow(sync.as_ref(), d.ebpf_mut(), &name, master);
                    }
                    // ha_suspend follows the instance that holds each service's address.
                    if let Some(h) = &health {
                        h.set_master(&name, master);
                    }
                    if master { masters.insert(name.clone()); } else { masters.remove(&name); }
                    announce(announcer.as_mut(), config.as_deref(), datapath.as_ref().filter(|_| dataplane.is_some()), backends.as_ref(), &masters);
                    crate::sdnotify::send_status(engine.as_ref(), lifecycle.notifier());
                }
            },
            open = async {
                match next_hop_updates.as_mut() {
                    Some(r) => r.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            } => {
                if !open {
                    // Its task owns the sender: the resolver stopped.
                    died = Some("next-hop resolver");
                    break;
                }
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
                    let set = overrides.apply(cfg, &b.borrow());
                    dp.update(d.ebpf_mut(), cfg, &set);
                }
                announce(announcer.as_mut(), config.as_deref(), datapath.as_ref().filter(|_| dataplane.is_some()), backends.as_ref(), &masters);
            },
        }
    }
    if let Some(subsystem) = died {
        // Like a crash, but said: nothing is released, so the ka a supervisor starts next
        // adopts the datapath and resumes VRRP without a transition.
        error!(subsystem, "a subsystem task stopped: exiting without releasing the VIPs or the datapath, for a supervisor to restart ka");
        if let Some(e) = engine {
            e.detach().await;
        }
        drop(health);
        drop(dataplane);
        drop(datapath);
        return Err(DaemonError::Stopped { subsystem });
    }
    lifecycle.stopping();
    let (keep_vrrp, keep_datapath) = (args.dont_release_vrrp || keep_on_stop, args.dont_release_ipvs || keep_on_stop);
    // Graceful drain: the routes go first, the datapath forwards on while the routers move
    // the flows; a kept datapath keeps its routes (it forwards on, as after kill -9).
    if let Some(a) = announcer.as_mut().filter(|_| !keep_datapath) {
        let announced = a.installed().len();
        let withdrawn = a.withdraw_all(crate::announce::WITHDRAW_TIMEOUT).await;
        // Nothing announced, nothing routed here to drain.
        let drain_s = if announced > 0 { args.announce_drain } else { 0 };
        info!(table = a.table(), routes = announced, withdrawn, drain_s, "announce: routes withdrawn; forwarding on while the routers converge");
        tokio::time::sleep(std::time::Duration::from_secs(drain_s)).await;
    }
    drop(announcer);
    // child_wait_time: keepalived waits that long for its VRRP and checker children, then
    // kills them; ka waits that long for the engine and the checkers, then goes on.
    let child_wait = config.as_ref().and_then(|c| c.global.child_wait_time);
    match engine {
        Some(e) if keep_vrrp => {
            within(child_wait, "the VRRP engine", e.detach()).await;
        }
        Some(e) => {
            within(child_wait, "the VRRP engine", e.shutdown()).await;
        }
        None => {}
    }
    // keepalived removes them after the instances released theirs, even with
    // --dont-release-vrrp.
    crate::statics::stop(&netlink, &statics).await;
    if let Some(h) = health {
        within(child_wait, "the health checkers", h.shutdown()).await;
    }
    // The ring goes with this process: the datapath left running must not keep filling it.
    if let (Some(_), Some(d)) = (sync.take(), datapath.as_mut()) {
        if let Err(e) = crate::lb::sync::install::set_master_flag(d.ebpf_mut(), false) {
            warn!(error = %e, "clearing the datapath's sync flag");
        }
    }
    // --dont-release-ipvs: the next hops' neighbour entries stay for the datapath left running.
    match dataplane {
        Some(dp) if !keep_datapath => dp.shutdown().await,
        _ => {}
    }
    match datapath {
        Some(d) if keep_datapath => {
            info!("--dont-release-ipvs: the datapath stays attached with its tables for the next ka");
            drop(d);
        }
        Some(d) => d.release(),
        None => {}
    }
    if let Some(cfg) = &config {
        if let Some(s) = &cfg.global.shutdown_script {
            run_start_stop_script("shutdown_script", s, cfg.global.shutdown_script_timeout, &cfg.global).await;
        }
    }
    info!("stopped");
    Ok(())
}

/// Waits for `stop` at most `limit` (none: as long as it takes); false, logged, if it did not
/// finish in time.
async fn within(limit: Option<std::time::Duration>, what: &str, stop: impl std::future::Future<Output = ()>) -> bool {
    let Some(limit) = limit else {
        stop.await;
        return true;
    };
    if tokio::time::timeout(limit, stop).await.is_ok() {
        true
    } else {
        warn!(part = what, ?limit, "child_wait_time: did not stop in time; stopping without it");
        false
    }
}

/// Writes the MACs frames to a service may be addressed to: each XDP interface's and the VRRP
/// virtual MACs ([`crate::lb::local_macs`]); on failure the check stays off (logged).
async fn install_local_macs(d: &mut Datapath, cfg: &crate::config::Config, netlink: &crate::net::netlink::NetlinkClient) {
    let mut macs = crate::lb::local_macs::virtual_macs(cfg);
    for a in d.attachments() {
        match netlink.link(&a.iface).await {
            Ok(l) => macs.extend(<[u8; 6]>::try_from(l.mac.as_slice()).ok()),
            Err(e) => warn!(iface = %a.iface, error = %e, "reading the interface's MAC"),
        }
    }
    match crate::lb::local_macs::install(d.ebpf_mut(), &macs) {
        Ok(0) => warn!("destination-MAC check off: no MAC of an XDP interface is known"),
        Ok(n) => info!(macs = n, "destination-MAC check on: frames to services addressed to another host pass unforwarded"),
        Err(e) => warn!(error = %e, "destination-MAC check off: frames flooded to this director are forwarded too"),
    }
}

/// Makes the announced routes follow the state: `datapath` is the one forwarding (`None`:
/// nothing is), `backends` the checkers' report, `masters` the MASTER instances.
fn announce(
    announcer: Option<&mut crate::announce::Announcer>,
    config: Option<&crate::config::Config>,
    datapath: Option<&Datapath>,
    backends: Option<&tokio::sync::watch::Receiver<crate::health::BackendSet>>,
    masters: &std::collections::BTreeSet<String>,
) {
    let (Some(a), Some(cfg)) = (announcer, config) else { return };
    let not_forwarding = match datapath {
        Some(d) if !d.attachments().is_empty() => None,
        Some(_) => Some("the XDP program is attached to no interface".to_owned()),
        None => Some("the datapath does not forward (--no-xdp, or no virtual server)".to_owned()),
    };
    let empty = crate::health::BackendSet::default();
    match backends {
        Some(b) => a.refresh(cfg, not_forwarding, &b.borrow(), masters),
        None => a.refresh(cfg, not_forwarding, &empty, masters),
    }
}

/// The load balancer maps of the earlier run whose pins `d` adopted; `None` (logged) when
/// they cannot be read: the tables are then rewritten in full.
fn read_adopted(d: &Datapath) -> Option<crate::lb::adopt::AdoptedTables> {
    let t0 = Instant::now();
    match crate::lb::adopt::AdoptedTables::read(d.ebpf()) {
        Ok(t) => {
            let took_us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
            info!(services = t.services.len(), backends = t.backends.len(), took_us, "read the load balancer maps of the earlier run");
            Some(t)
        }
        Err(e) => {
            warn!(error = %e, "cannot read the load balancer maps of the earlier run: its tables are rewritten in full");
            None
        }
    }
}

/// The host preflight ([`crate::preflight`]): NAT real servers' interfaces from the routing
/// table, then the host's settings, checked against what `config` needs.
async fn preflight(
    config: &crate::config::Config,
    ifaces: &[String],
    xdp: bool,
    netlink: &crate::net::netlink::NetlinkClient,
) -> Vec<crate::preflight::Finding> {
    use crate::config::model::LbKind;
    let mut route_ifaces = std::collections::BTreeMap::new();
    for rs in config.virtual_servers.iter().flat_map(|v| &v.real_servers).filter(|rs| rs.lb_kind == LbKind::Nat) {
        if let Ok(Some(hop)) = netlink.route_get(rs.address).await {
            if let Ok(name) = nix::net::if_::if_indextoname(hop.ifindex) {
                route_ifaces.insert(rs.address, name.to_string_lossy().into_owned());
            }
        }
    }
    let lookup = |a: std::net::IpAddr| route_ifaces.get(&a).cloned();
    let needs = crate::preflight::Needs {
        xdp,
        services: !config.virtual_servers.is_empty(),
        nat: if xdp { crate::preflight::nat_services(config, &lookup, ifaces) } else { Vec::new() },
        decap_ifaces: Vec::new(),
    };
    let host = crate::preflight::HostFacts::read(&needs, std::collections::BTreeMap::new());
    crate::preflight::check(&needs, &host)
}

/// Fills a status answer built without them with the engine's and the checkers' reports; the
/// real servers are marked with their runtime overrides.
fn complete_status(
    base: Response,
    vrrp: crate::engine::EngineReport,
    mut health: Option<crate::health::HealthReport>,
    marks: &(crate::rs_control::Overrides, Option<Arc<crate::config::Config>>),
) -> Response {
    let Response::Status(mut report) = base else { return base };
    if let (Some(h), Some(cfg)) = (health.as_mut(), marks.1.as_ref()) {
        marks.0.mark(cfg, &mut h.real_servers);
    }
    report.vrrp_dropped = vrrp_drops(&vrrp, &report.counters);
    report.vrrp = vrrp.instances;
    report.health = health;
    Response::Status(report)
}


fn status_report(
    instance: &InstanceName,
    started: Instant,
    dp: Option<&Datapath>,
    vrrp: crate::engine::EngineReport,
    health: Option<crate::health::HealthReport>,
    (services, refused): (Vec<crate::dataplane::ServiceCounters>, Vec<crate::lb::plan::Refusal>),
    findings: &[crate::preflight::Finding],
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
        format_version: crate::status::STATUS_FORMAT_VERSION,
        runtime_overrides: Vec::new(),
        reloads: Default::default(),
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
        refused,
        host: findings.to_vec(),
        sync: None,
        announce: None,
        bfd: None,
    }))
}

/// Invalid adverts by reason, wherever they were dropped: in XDP (the fast path's per-reason
/// counters), in the engine before an instance was found, and per instance; and the valid
/// below-priority adverts XDP dropped beyond their instance's budget (`lower_prio_limited`).
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
    let limited = ka_common::stats::Counter::VrrpLowerPrioLimited;
    if let Some(&n) = counters.get(limited.name()).filter(|n| **n > 0) {
        out.insert(limited.name().trim_start_matches("vrrp_").to_owned(), n);
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
/// `drop_unknown`: adverts for a VRID no instance runs on the interface are dropped (and
/// counted, `vrrp_vrid_mismatch`) in XDP; off under `log_unknown_vrids`, so that they reach the
/// engine, which logs them.
fn fast_path_input(dp: &mut Datapath, ifindexes: &std::collections::BTreeSet<u32>, drop_unknown: bool) -> Option<crate::engine::fast::FastInput> {
    if ifindexes.is_empty() {
        return None;
    }
    let ebpf = dp.ebpf_mut();
    let taken = crate::lb::vrrp_fast::set_enabled(ebpf, true, drop_unknown).and_then(|()| crate::lb::vrrp_fast::FastMaps::take(ebpf));
    match taken {
        Ok((maps, events)) => Some(crate::engine::fast::FastInput { maps, events, ifindexes: ifindexes.clone() }),
        Err(e) => {
            warn!(error = %e, "XDP VRRP fast path unavailable: adverts are received on the raw sockets only");
            let _ = crate::lb::vrrp_fast::set_enabled(dp.ebpf_mut(), false, false);
            None
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Removes a file when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::within;
    use std::time::Duration;

    /// `child_wait_time` bounds a stop that hangs; without it, or in time, the stop finishes.
    #[tokio::test]
    async fn within_bounds_a_stop() {
        let cases: [(Option<Duration>, Option<Duration>, bool); 4] = [
            (None, Some(Duration::from_millis(5)), true),
            (Some(Duration::from_secs(5)), Some(Duration::ZERO), true),
            (Some(Duration::from_millis(20)), None, false),
            (Some(Duration::ZERO), None, false),
        ];
        for (limit, takes, done) in cases {
            let stop = async move {
                match takes {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending::<()>().await,
                }
            };
            assert_eq!(within(limit, "test", stop).await, done, "{limit:?} {takes:?}");
        }
    }
}
