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
    /// Do not load the XDP program at all.
    #[arg(long)]
    pub no_xdp: bool,
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
    /// The configuration file cannot be read.
    #[error("cannot read configuration {path}: {source}")]
    Config {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Runs the daemon in the foreground until SIGTERM or SIGINT.
///
/// # Errors
/// Start-up fails (socket in use, datapath cannot load or attach...).
pub async fn run(instance: InstanceName, args: RunArgs) -> Result<(), DaemonError> {
    let started = Instant::now();
    if let Some(path) = &args.file {
        std::fs::metadata(path).map_err(|source| DaemonError::Config { path: path.clone(), source })?;
    }
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let socket_path = instance.socket_path();
    let listener = control::bind(&socket_path).await?;
    let _socket_guard = RemoveOnDrop(socket_path.clone());

    let datapath = if args.no_xdp {
        info!("--no-xdp: datapath not loaded");
        None
    } else {
        let mut dp = Datapath::load(&instance)?;
        for iface in &args.ifaces {
            dp.attach(iface, args.xdp_mode)?;
        }
        Some(dp)
    };
    info!(instance = %instance, socket = %socket_path.display(), "ka running");

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let report = status_report(&instance, started, datapath.as_ref());
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
        }
    }
    drop(datapath);
    info!("stopped");
    Ok(())
}

fn status_report(instance: &InstanceName, started: Instant, dp: Option<&Datapath>) -> Response {
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
    Response::Status(Box::new(StatusReport {
        instance: instance.to_string(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        uptime_s: started.elapsed().as_secs(),
        xdp,
        counters,
    }))
}

/// Removes a file when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
