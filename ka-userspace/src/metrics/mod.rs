//! The Prometheus endpoint (`ka run --metrics ADDR:PORT`): `/metrics` in the Prometheus text
//! format (0.0.4), or OpenMetrics when the scraper asks for it, built with prometheus-client.
//!
//! A scrape never reaches the VRRP engine's task: the server runs in tasks of its own and renders
//! a snapshot of what `ka status` reports ([`StatusReport`]), fetched through the control path
//! (the main loop reads the datapath counters, a detached task asks the engine and the
//! checkers). Snapshots are shared: at most one is fetched at a time and one younger than
//! [`MIN_REFRESH`] is reused, so a scrape storm costs the daemon at most one status gathering
//! per [`MIN_REFRESH`]. Connections are bounded in number ([`MAX_CONNECTIONS`]) and time
//! ([`CONNECTION_TIMEOUT`]).
//!
//! [`render`] is pure: the families and their labels are documented in the README ("Metrics")
//! with the node_exporter and keepalived-exporter names they replace.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use http_body_util::Full;
use hyper::{body::Bytes, Request, Response, StatusCode};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};
use tracing::{debug, info, warn};

use crate::status::StatusReport;

/// A snapshot younger than this is served again instead of asking the daemon.
pub const MIN_REFRESH: Duration = Duration::from_millis(1000);
/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 16;
/// How long one connection may take, from accept to the last byte.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a scrape waits for the daemon's snapshot.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address cannot be bound.
    #[error("--metrics {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The exposition format of a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`), the default.
    Text,
    /// OpenMetrics 1.0 text, when the `Accept` header asks for `application/openmetrics-text`.
    OpenMetrics,
}

impl Format {
    /// The format a scraper's `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// Its `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Renders a status snapshot as metrics.
pub fn render(report: &StatusReport, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(Arc::new(report.clone()))));
    let mut out = String::new();
    let res = match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
    };
    if let Err(e) = res {
        warn!(error = %e, "encoding metrics");
    }
    out
}

/// `ka_vrrp_state`'s value for a state name (keepalived exporter: 0 init, 1 backup, 2 master,
/// 3 fault).
pub fn vrrp_state_value(state: &str) -> i64 {
    match state {
        "BACKUP" => 1,
        "MASTER" => 2,
        "FAULT" => 3,
        _ => 0,
    }
}

type Labels = Vec<(&'static str, String)>;

/// One family: its samples, written under one HELP/TYPE header.
struct Fam {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, u64)>,
}

impl Fam {
    fn new(name: &'static str, help: &'static str, kind: MetricType) -> Fam {
        Fam { name, help, kind, samples: Vec::new() }
    }

    fn add(&mut self, labels: Labels, v: u64) {
        self.samples.push((labels, v));
    }

    fn encode(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        if self.samples.is_empty() {
            return Ok(());
        }
        let mut m = enc.encode_descriptor(self.name, self.help, None, self.kind)?;
        for (labels, v) in &self.samples {
            let e = m.encode_family(labels)?;
            match self.kind {
                MetricType::Counter => ConstCounter::new(*v).encode(e)?,
                _ => ConstGauge::new(i64::try_from(*v).unwrap_or(i64::MAX)).encode(e)?,
            }
        }
        Ok(())
    }
}

/// A status snapshot as a prometheus-client collector.
#[derive(Debug)]
struct Snapshot(Arc<StatusReport>);

/// The labels node_exporter's ipvs collector gives a backend.
fn backend_labels(vip: std::net::IpAddr, port: u16, proto: &str, addr: std::net::IpAddr, rport: u16) -> Labels {
    vec![
        ("local_address", vip.to_string()),
        ("local_port", port.to_string()),
        ("proto", proto.to_owned()),
        ("remote_address", addr.to_string()),
        ("remote_port", rport.to_string()),
    ]
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let r = &*self.0;
        {
            let labels: Labels = vec![("version", r.version.clone()), ("instance_name", r.instance.clone())];
            let m = enc.encode_descriptor("ka_build", "ka's version and instance name.", None, MetricType::Info)?;
            prometheus_client::metrics::info::Info::new(labels).encode(m)?;
        }
        let mut fams: Vec<Fam> = Vec::new();
        let mut uptime = Fam::new("ka_uptime_seconds", "Seconds since the daemon started.", Gauge);
        uptime.add(vec![], r.uptime_s);
        fams.push(uptime);

        // VRRP, labelled as the keepalived exporters do (iname, intf, vrid): a label named
        // `instance` would collide with Prometheus' target label and be renamed on scrape.
        let mut state = Fam::new("ka_vrrp_state", "VRRP instance state: 0 init, 1 backup, 2 master, 3 fault.", Gauge);
        let mut prio = Fam::new("ka_vrrp_priority", "Configured VRRP priority.", Gauge);
        let mut eprio = Fam::new("ka_vrrp_effective_priority", "VRRP priority with tracking applied.", Gauge);
        let mut sent = Fam::new("ka_vrrp_adverts_sent", "VRRP adverts sent.", Counter);
        let mut recv = Fam::new("ka_vrrp_adverts_received", "VRRP adverts received and accepted.", Counter);
        let mut master = Fam::new("ka_vrrp_become_master", "Transitions to MASTER.", Counter);
        let mut inst_drop = Fam::new("ka_vrrp_instance_adverts_dropped", "Invalid VRRP adverts dropped by an instance, by reason.", Counter);
        let mut withheld = Fam::new(
            "ka_vrrp_answers_withheld",
            "As MASTER, answers to adverts below our priority withheld (at most one per advert interval goes out).",
            Counter,
        );
        for v in &r.vrrp {
            let l: Labels = vec![("iname", v.name.clone()), ("intf", v.interface.clone()), ("vrid", v.vrid.to_string())];
            state.add(l.clone(), u64::try_from(vrrp_state_value(&v.state)).unwrap_or(0));
            prio.add(l.clone(), u64::from(v.priority));
            eprio.add(l.clone(), u64::from(v.effective_priority));
            sent.add(l.clone(), v.adverts_tx);
            recv.add(l.clone(), v.adverts_rx);
            master.add(l.clone(), v.became_master);
            withheld.add(l.clone(), v.answers_withheld);
            for (reason, n) in &v.adverts_dropped {
                let mut l = l.clone();
                l.push(("reason", reason.clone()));
                inst_drop.add(l, *n);
            }
        }
        let mut drops = Fam::new(
            "ka_vrrp_adverts_dropped",
            "VRRP adverts dropped anywhere (XDP fast path, engine, instances), by reason: the invalid ones, and lower_prio_limited (valid, below the reference priority, beyond the XDP budget).",
            Counter,
        );
        for (reason, n) in &r.vrrp_dropped {
            drops.add(vec![("reason", reason.clone())], *n);
        }
        fams.extend([state, prio, eprio, sent, recv, master, inst_drop, withheld, drops]);

        // BFD sessions (`bfd_instance`), labelled by name and neighbour.
        let mut bfd_state = Fam::new("ka_bfd_session_state", "BFD session state: 0 AdminDown, 1 Down, 2 Init, 3 Up.", Gauge);
        let mut bfd_up = Fam::new("ka_bfd_session_up", "Whether track_bfd and BFD_CHECK see the BFD session up.", Gauge);
        let mut bfd_tx = Fam::new("ka_bfd_packets_sent", "BFD Control packets sent.", Counter);
        let mut bfd_rx = Fam::new("ka_bfd_packets_received", "BFD Control packets received and matched to their session.", Counter);
        let mut bfd_drop = Fam::new("ka_bfd_packets_dropped", "BFD datagrams discarded, by reason.", Counter);
        if let Some(b) = &r.bfd {
            for s in &b.sessions {
                let l: Labels = vec![("name", s.name.clone()), ("neighbor", s.neighbor.to_string())];
                let v = match s.state.as_str() {
                    "Down" => 1,
                    "Init" => 2,
                    "Up" => 3,
                    _ => 0,
                };
                bfd_state.add(l.clone(), v);
                bfd_up.add(l.clone(), u64::from(s.up));
                bfd_tx.add(l.clone(), s.tx);
                bfd_rx.add(l, s.rx);
            }
            for (reason, n) in &b.dropped {
                bfd_drop.add(vec![("reason", reason.clone())], *n);
            }
        }
        fams.extend([bfd_state, bfd_up, bfd_tx, bfd_rx, bfd_drop]);

        // Services and real servers, as the datapath has them.
        let mut svc_p = Fam::new("ka_service_packets", "Packets to a service handled by XDP.", Counter);
        let mut svc_b = Fam::new("ka_service_bytes", "Bytes to a service handled by XDP.", Counter);
        let mut rs_p = Fam::new("ka_real_server_packets", "Packets forwarded to a real server.", Counter);
        let mut rs_b = Fam::new("ka_real_server_bytes", "Bytes forwarded to a real server.", Counter);
        let mut rs_w = Fam::new("ka_real_server_weight", "A real server's weight in the datapath (0: drained or out).", Gauge);
        let mut rs_in = Fam::new("ka_real_server_in_table", "Whether a real server is in the datapath's tables (weight 0 included).", Gauge);
        let mut rs_up = Fam::new("ka_real_server_up", "Whether a real server's checkers hold it up.", Gauge);
        let mut rs_act = Fam::new(
            "ka_real_server_connections_active",
            "Established TCP connections of a real server in the connection table (IPVS ActiveConn).",
            Gauge,
        );
        let mut rs_inact = Fam::new(
            "ka_real_server_connections_inactive",
            "Other connections of a real server in the connection table: TCP before established or closing, UDP (IPVS InActConn).",
            Gauge,
        );
        let mut rs_rt = Fam::new(
            "ka_real_server_runtime_override",
            "A runtime override set by `ka rs` (label override: weight, drain, disable).",
            Gauge,
        );
        let health = r.health.as_ref();
        for s in &r.services {
            let l: Labels = vec![("vip", s.vip.to_string()), ("port", s.port.to_string()), ("protocol", s.protocol.clone())];
            svc_p.add(l.clone(), s.packets);
            svc_b.add(l, s.bytes);
            let proto = s.protocol.to_ascii_uppercase();
            let name = std::net::SocketAddr::new(s.vip, s.port).to_string();
            for b in &s.backends {
                let l = backend_labels(s.vip, s.port, &s.protocol, b.address, b.port);
                rs_p.add(l.clone(), b.packets);
                rs_b.add(l.clone(), b.bytes);
                rs_w.add(l.clone(), u64::from(b.weight));
                rs_in.add(l.clone(), u64::from(b.in_table));
                if let (Some(a), Some(i)) = (b.active_conns, b.inactive_conns) {
                    rs_act.add(l.clone(), u64::from(a));
                    rs_inact.add(l.clone(), u64::from(i));
                }
                // The checkers' view of the same server: its virtual server is this VIP:port, or
                // a group or fwmark service holding it.
                let rep = health.and_then(|h| {
                    let c: Vec<_> = h
                        .real_servers
                        .iter()
                        .filter(|x| {
                            x.rs_index.is_some()
                                && x.addr == b.address
                                && x.port == b.port
                                && x.protocol.as_deref().is_none_or(|p| p == proto)
                                && (x.service == name || !x.service.contains(':'))
                        })
                        .collect();
                    c.iter().find(|x| x.service == name).or_else(|| c.first()).copied()
                });
                if let Some(x) = rep {
                    rs_up.add(l.clone(), u64::from(x.state == "up"));
                    if let Some(o) = x.runtime {
                        let word = match o {
                            crate::rs_control::Override::Weight(_) => "weight",
                            crate::rs_control::Override::Drain => "drain",
                            crate::rs_control::Override::Disable => "disable",
                        };
                        let mut l = l.clone();
                        l.push(("override", word.to_owned()));
                        rs_rt.add(l, 1);
                    }
                }
            }
        }
        fams.extend([svc_p, svc_b, rs_p, rs_b, rs_w, rs_in, rs_up, rs_act, rs_inact, rs_rt]);

        // XDP counters, split by what they count.
        let mut verdicts = Fam::new("ka_xdp_packets", "Packets by XDP verdict.", Counter);
        let mut pass = Fam::new("ka_xdp_pass", "Packets XDP passed to the kernel, by reason.", Counter);
        let mut drop = Fam::new("ka_xdp_drop", "Packets XDP dropped, by reason.", Counter);
        let mut errors = Fam::new("ka_xdp_parse_errors", "Malformed packets, by parse error.", Counter);
        let mut events = Fam::new("ka_xdp_events", "Other datapath counters (parsing, load balancing, VRRP fast path, decap), by event.", Counter);
        for (name, v) in &r.counters {
            if let Some(x) = name.strip_prefix("verdict_") {
                verdicts.add(vec![("verdict", x.to_owned())], *v);
            } else if let Some(x) = name.strip_prefix("pass_") {
                pass.add(vec![("reason", x.to_owned())], *v);
            } else if let Some(x) = name.strip_prefix("drop_") {
                drop.add(vec![("reason", x.to_owned())], *v);
            } else if let Some(x) = name.strip_prefix("err_") {
                errors.add(vec![("reason", x.to_owned())], *v);
            } else {
                events.add(vec![("event", name.clone())], *v);
            }
        }
        let mut attached = Fam::new("ka_xdp_attached", "XDP attachments (label mode: native, generic).", Gauge);
        for a in &r.xdp {
            attached.add(vec![("interface", a.iface.clone()), ("mode", a.mode.clone())], 1);
        }
        fams.extend([verdicts, pass, drop, errors, events, attached]);

        // Health checks.
        let mut checks = Fam::new("ka_health_checks", "Health checks done, by checker and result (success, failure).", Counter);
        if let Some(h) = health {
            for (kind, n) in h.checks.iter().filter(|(k, _)| *k != "total") {
                let failed = h.failures.get(kind).copied().unwrap_or(0);
                checks.add(vec![("checker", kind.clone()), ("result", "success".to_owned())], n.saturating_sub(failed));
                checks.add(vec![("checker", kind.clone()), ("result", "failure".to_owned())], failed);
            }
        }
        fams.push(checks);

        // The daemon.
        let mut reloads = Fam::new("ka_config_reloads", "Configuration reloads finished (applied or refused).", Counter);
        reloads.add(vec![], r.reloads.total);
        let mut refused = Fam::new("ka_config_reload_failures", "Configuration reloads refused.", Counter);
        refused.add(vec![], r.reloads.failed);
        let mut last = Fam::new("ka_config_last_reload_success", "Whether the last reload was applied (1 before any).", Gauge);
        last.add(vec![], u64::from(r.reloads.last_success));
        let mut last_t = Fam::new(
            "ka_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded or reloaded successfully (Unix time).",
            Gauge,
        );
        last_t.add(vec![], r.reloads.last_success_unix_s);
        let mut host = Fam::new("ka_host_findings", "Host settings the services need and miss, found at start.", Gauge);
        host.add(vec![], u64::try_from(r.host.len()).unwrap_or(0));
        fams.extend([reloads, refused, last, last_t, host]);

        for f in &fams {
            f.encode(&mut enc)?;
        }

        // Check durations, a histogram per checker.
        if let Some(h) = health.filter(|h| !h.latency.is_empty()) {
            let mut m = enc.encode_descriptor(
                "ka_health_check_duration_seconds",
                "How long health checks took, by checker.",
                None,
                MetricType::Histogram,
            )?;
            for (kind, lat) in &h.latency {
                let bounds = crate::health::report::CHECK_LATENCY_BOUNDS_US;
                let mut buckets: Vec<(f64, u64)> =
                    bounds.iter().enumerate().map(|(i, b)| (*b as f64 / 1e6, lat.buckets.get(i).copied().unwrap_or(0))).collect();
                buckets.push((f64::INFINITY, lat.buckets.get(bounds.len()).copied().unwrap_or(0)));
                let labels: Labels = vec![("checker", kind.clone())];
                m.encode_family(&labels)?.encode_histogram::<Labels>(lat.sum_us as f64 / 1e6, lat.count, &buckets, None)?;
            }
        }
        Ok(())
    }
}

/// Fetches a fresh status snapshot from the daemon (`None`: it did not answer).
pub type Source = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Option<StatusReport>> + Send>> + Send + Sync>;

/// A [`Source`] asking the daemon's main loop for a status snapshot through its control call
/// channel, as `ka status` does (see [`crate::control::ask_status`]).
pub fn status_source(calls: tokio::sync::mpsc::Sender<crate::control::ControlCall>) -> Source {
    Arc::new(move || {
        let calls = calls.clone();
        Box::pin(async move { crate::control::ask_status(&calls).await })
    })
}

/// The shared snapshot: one fetch at a time, reused while younger than [`MIN_REFRESH`].
struct Cache {
    source: Source,
    last: tokio::sync::Mutex<Option<(Instant, Arc<StatusReport>)>>,
}

impl Cache {
    async fn get(&self) -> Option<Arc<StatusReport>> {
        let mut last = self.last.lock().await;
        if let Some((at, r)) = last.as_ref() {
            if at.elapsed() < MIN_REFRESH {
                return Some(r.clone());
            }
        }
        let fresh = tokio::time::timeout(SNAPSHOT_TIMEOUT, (self.source)()).await.ok().flatten()?;
        let fresh = Arc::new(fresh);
        *last = Some((Instant::now(), fresh.clone()));
        Some(fresh)
    }
}

/// Parses `--metrics`: `PORT` alone is `127.0.0.1:PORT` (the endpoint tells anyone who can
/// reach it the VIPs, the real servers and their health, so it stays on the host unless told
/// otherwise); `ADDR:PORT` and `[V6ADDR]:PORT` are taken as given.
///
/// # Errors
/// Neither a port nor an address with a port (`:PORT` alone is refused: it names no address).
pub fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| format!("{s:?} is not PORT (127.0.0.1:PORT), ADDR:PORT or [ADDR]:PORT; for every interface say 0.0.0.0:PORT or [::]:PORT"))
}

/// Binds the endpoint's address; an address other than loopback is logged as reachable from
/// the network.
///
/// # Errors
/// The address is in use or cannot be bound.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, MetricsError> {
    if !addr.ip().is_loopback() {
        warn!(address = %addr, "the metrics endpoint listens beyond this host (not loopback): anyone who can reach it reads the VIPs, real servers and their health; firewall it or use 127.0.0.1");
    }
    tokio::net::TcpListener::bind(addr).await.map_err(|source| MetricsError::Bind { addr, source })
}

/// Serves `/metrics` on `listener` until aborted.
pub fn spawn(listener: tokio::net::TcpListener, source: Source) -> tokio::task::JoinHandle<()> {
    let cache = Arc::new(Cache { source, last: tokio::sync::Mutex::new(None) });
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    if let Ok(a) = listener.local_addr() {
        info!(address = %a, "metrics endpoint listening on /metrics");
    }
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else { return };
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "accept on the metrics endpoint failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let cache = cache.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let svc = hyper::service::service_fn(move |req| {
                    let cache = cache.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&cache, &req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .keep_alive(false)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => debug!(peer = %peer, error = %e, "metrics connection"),
                    Err(_) => debug!(peer = %peer, "metrics connection timed out"),
                }
            });
        }
    })
}

/// The answer to one request.
async fn answer(cache: &Cache, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let reply = |code: StatusCode, ctype: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET /metrics\n".to_owned());
    }
    match req.uri().path() {
        "/metrics" => {
            let format = Format::from_accept(req.headers().get(hyper::header::ACCEPT).and_then(|v| v.to_str().ok()));
            match cache.get().await {
                Some(report) => reply(StatusCode::OK, format.content_type(), render(&report, format)),
                None => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "ka: the daemon did not answer in time\n".to_owned()),
            }
        }
        "/" => reply(StatusCode::OK, "text/html", "<html><body><a href=\"/metrics\">/metrics</a></body></html>\n".to_owned()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found; try /metrics\n".to_owned()),
    }
}

#[cfg(test)]
mod tests;
