//! The control socket (`/run/ka/NAME.sock`): one JSON request per line, one JSON response per
//! line. `ka status` and `ka reload` are its clients. The daemon serves it from its own task
//! ([`spawn_server`]): each client gets its own task with read and write timeouts and hands its
//! request to the daemon as a [`ControlCall`], so no client can delay anything else.
//!
//! The socket is root's alone: it is created with mode 0600 (bound under a temporary name,
//! restricted, then renamed into place, so no other user can connect in between), and the
//! daemon answers a peer whose credentials are neither root's nor its own with "permission
//! denied: run as root" whatever its request. A client that cannot connect for lack of
//! permission gets the same words, not "is ka running?".

use std::{io, path::Path, time::Duration};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

use crate::status::StatusReport;

/// A request to the daemon.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Everything `ka status` shows.
    Status,
    /// Reload the configuration file (`ka reload`).
    Reload,
    /// Change a real server at runtime (`ka rs`), without a reload.
    RealServer(crate::rs_control::RsRequest),
    /// The next stop leaves the VIPs and the datapath for the next ka, as
    /// `--dont-release-vrrp --dont-release-ipvs` do (`ka prepare-restart`: package upgrades).
    PrepareRestart,
}

/// The daemon's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Status`].
    Status(Box<StatusReport>),
    /// Answer to [`Request::Reload`]: what was applied.
    Reloaded(crate::reload::ReloadSummary),
    /// Answer to [`Request::RealServer`]: what changed.
    RealServer(crate::rs_control::RsChanged),
    /// Answer to [`Request::PrepareRestart`].
    RestartPrepared,
    /// The new configuration was refused; nothing changed.
    ReloadRefused {
        /// The diagnostics, as `ka check` prints them.
        diagnostics: String,
    },
    /// The request failed.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// Errors of the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another daemon already serves this instance.
    #[error("instance socket {path} is in use by a running daemon")]
    InUse {
        /// Socket path.
        path: String,
    },
    /// The socket exists but this user may not use it.
    #[error("permission denied: run as root (the control socket {path} is root-only)")]
    PermissionDenied {
        /// Socket path.
        path: String,
    },
    /// No daemon listens on the socket.
    #[error("cannot reach the daemon at {path}: {source} (is `ka run` running with this --instance?)")]
    Connect {
        /// Socket path.
        path: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// I/O on the socket failed.
    #[error("control socket {path}: {source}")]
    Io {
        /// Socket path.
        path: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The peer sent something that is not a valid message.
    #[error("control socket {path}: bad message: {source}")]
    Decode {
        /// Socket path.
        path: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The daemon did not answer in time.
    #[error("control socket {path}: no answer within {timeout:?}")]
    Timeout {
        /// Socket path.
        path: String,
        /// Time waited.
        timeout: Duration,
    },
}

/// The answer to a peer that is neither root nor the daemon's own user.
pub const PERMISSION_DENIED: &str = "permission denied: run as root";

/// Binds the control socket (mode 0600), removing a stale one left by a crashed run. Fails if
/// a live daemon answers on it.
///
/// # Errors
/// The socket is in use or cannot be created.
pub async fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    use std::os::unix::fs::PermissionsExt as _;
    let p = path.display().to_string();
    let io = |source| ControlError::Io { path: p.clone(), source };
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(ControlError::InUse { path: p });
        }
        tracing::info!(path = %p, "removing stale control socket");
        let _ = tokio::fs::remove_file(path).await;
    }
    // Bound under a temporary name and restricted before it gets its real one: nobody else
    // can connect in between, whatever the umask.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let _ = tokio::fs::remove_file(&tmp).await;
    let listener = UnixListener::bind(&tmp).map_err(io)?;
    let placed = async {
        tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).await?;
        tokio::fs::rename(&tmp, path).await
    };
    if let Err(e) = placed.await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(io(e));
    }
    Ok(listener)
}

/// Whether a peer with user id `peer` may use the control socket of a daemon running as
/// `daemon`: root, and the daemon's own user.
pub fn peer_allowed(peer: u32, daemon: u32) -> bool {
    peer == 0 || peer == daemon
}

/// A request from a control client, for the daemon's main loop to answer.
#[derive(Debug)]
pub struct ControlCall {
    /// The request.
    pub request: Request,
    /// Where the answer goes.
    pub reply: tokio::sync::oneshot::Sender<Response>,
}

/// How long a client may take to send its request, and to read the answer.
pub const CLIENT_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client waits for the daemon to answer (a reload of a large configuration).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// Serves the control socket in its own task: every client is served in a task of its own,
/// bounded by [`CLIENT_IO_TIMEOUT`] on each side, and its request goes to `calls`. The task
/// ends when `calls` is closed.
pub fn spawn_server(listener: UnixListener, calls: tokio::sync::mpsc::Sender<ControlCall>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = calls.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let calls = calls.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve_client(stream, calls).await {
                                tracing::debug!(error = %e, "control client");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept on control socket failed");
                        // EMFILE and the like: do not spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    })
}

/// Longest request a client may send (bytes, newline included); the rest is not read.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// Decodes a client's request line as read from the socket (at most [`MAX_REQUEST_BYTES`],
/// newline included): UTF-8, surrounding whitespace ignored, one JSON [`Request`]. Pure, so
/// the fuzzer runs exactly what the server runs.
///
/// # Errors
/// The line is not UTF-8 or not a request; the message is what the client is answered.
pub fn decode_request(line: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("bad request: not UTF-8: {e}"))?;
    serde_json::from_str::<Request>(text.trim()).map_err(|e| format!("bad request: {e}"))
}

/// One client: its request line, the daemon's answer, each step bounded.
async fn serve_client(stream: UnixStream, calls: tokio::sync::mpsc::Sender<ControlCall>) -> io::Result<()> {
    let peer = stream.peer_cred()?;
    let allowed = peer_allowed(peer.uid(), nix::unistd::Uid::effective().as_raw());
    let (rd, mut wr) = stream.into_split();
    let mut line = Vec::new();
    let mut rd = BufReader::new(rd).take(MAX_REQUEST_BYTES);
    let read = tokio::time::timeout(CLIENT_IO_TIMEOUT, rd.read_until(b'\n', &mut line)).await;
    let req = match read {
        // A connection closed without a request: a liveness probe (see `bind`).
        Ok(Ok(0)) => return Ok(()),
        Ok(Ok(_)) => decode_request(&line),
        Ok(Err(e)) => Err(format!("reading request: {e}")),
        Err(_) => Err("request timed out".to_owned()),
    };
    let resp = match req {
        Ok(request) if !allowed => {
            tracing::warn!(uid = peer.uid(), pid = ?peer.pid(), ?request, "control request refused: the peer is not root");
            Response::Error { message: PERMISSION_DENIED.to_owned() }
        }
        Ok(request) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if calls.send(ControlCall { request, reply: tx }).await.is_err() {
                Response::Error { message: "the daemon is shutting down".to_owned() }
            } else {
                match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => Response::Error { message: "the daemon dropped the request".to_owned() },
                    Err(_) => Response::Error { message: "the daemon did not answer in time".to_owned() },
                }
            }
        }
        Err(message) => Response::Error { message },
    };
    let mut out = serde_json::to_vec(&resp).map_err(io::Error::other)?;
    out.push(b'\n');
    tokio::time::timeout(CLIENT_IO_TIMEOUT, async {
        wr.write_all(&out).await?;
        wr.shutdown().await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client did not read its answer"))?
}

/// Asks the daemon's main loop for a status snapshot through its call channel, as a control
/// client would (the metrics endpoint and the watchdog use it); `None` if it does not answer.
pub async fn ask_status(calls: &tokio::sync::mpsc::Sender<ControlCall>) -> Option<StatusReport> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    calls.send(ControlCall { request: Request::Status, reply: tx }).await.ok()?;
    match rx.await.ok()? {
        Response::Status(r) => Some(*r),
        _ => None,
    }
}

/// Sends `req` to the daemon of the socket at `path` and waits for its answer.
///
/// # Errors
/// No daemon, I/O errors, bad answer, or no answer within `timeout`.
pub async fn request(path: &Path, req: &Request, timeout: Duration) -> Result<Response, ControlError> {
    let p = path.display().to_string();
    let fut = async {
        let mut stream = UnixStream::connect(path).await.map_err(|source| {
            if source.kind() == io::ErrorKind::PermissionDenied {
                ControlError::PermissionDenied { path: p.clone() }
            } else {
                ControlError::Connect { path: p.clone(), source }
            }
        })?;
        let mut line = serde_json::to_vec(req).map_err(|source| ControlError::Decode { path: p.clone(), source })?;
        line.push(b'\n');
        stream.write_all(&line).await.map_err(|source| ControlError::Io { path: p.clone(), source })?;
        let mut answer = String::new();
        BufReader::new(stream)
            .read_line(&mut answer)
            .await
            .map_err(|source| ControlError::Io { path: p.clone(), source })?;
        serde_json::from_str(answer.trim()).map_err(|source| ControlError::Decode { path: p.clone(), source })
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| ControlError::Timeout { path: p.clone(), timeout })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_wire_form() {
        assert_eq!(serde_json::to_string(&Request::Status).expect("ser"), r#"{"cmd":"status"}"#);
        assert_eq!(serde_json::to_string(&Request::Reload).expect("ser"), r#"{"cmd":"reload"}"#);
        let rs = Request::RealServer(crate::rs_control::RsRequest {
            service: "198.18.0.1:80".parse().expect("service"),
            protocol: None,
            server: "198.18.1.1".parse().expect("server"),
            action: crate::rs_control::RsAction::Drain,
        });
        let j = serde_json::to_string(&rs).expect("ser");
        assert!(j.starts_with(r#"{"cmd":"real_server","service":"#), "{j}");
        assert_eq!(serde_json::from_str::<Request>(&j).expect("de"), rs);
        let r: Result<Request, _> = serde_json::from_str(r#"{"cmd":"nope"}"#);
        assert!(r.is_err());
    }

    /// What the server decodes from a raw request line: whitespace and the newline around the
    /// JSON are ignored; invalid UTF-8, an unknown command, a bad address and trailing data
    /// are errors naming the problem, never a panic.
    #[test]
    fn request_lines_decode_or_fail_clearly() {
        let ok: &[(&[u8], Request)] = &[
            (b"{\"cmd\":\"status\"}\n", Request::Status),
            (b"  {\"cmd\":\"reload\"}\r\n", Request::Reload),
            (b"{\"cmd\":\"prepare_restart\"}", Request::PrepareRestart),
        ];
        for (line, want) in ok {
            assert_eq!(decode_request(line).as_ref(), Ok(want), "{:?}", String::from_utf8_lossy(line));
        }
        let bad: &[(&[u8], &str)] = &[
            (b"{\"cmd\":\"status\xff\"}\n", "not UTF-8"),
            (b"{\"cmd\":\"nope\"}\n", "unknown variant"),
            (b"{\"cmd\":\"status\"} {}\n", "trailing characters"),
            (b"", "EOF"),
            (br#"{"cmd":"real_server","service":{"addr":{"addr":"300.0.0.1","port":80}},"server":{"addr":"198.18.0.1","port":null},"action":"drain"}"#, "invalid IP address"),
        ];
        for (line, want) in bad {
            let e = decode_request(line).expect_err("a bad request");
            assert!(e.starts_with("bad request: ") && e.contains(want), "{:?}: {e}", String::from_utf8_lossy(line));
        }
    }

    #[tokio::test]
    async fn a_request_round_trips_and_a_second_daemon_is_refused() {
        let dir = std::env::temp_dir().join(format!("ka-ctl-{}", std::process::id()));
        let path = dir.join("t.sock");
        let listener = bind(&path).await.expect("bind");
        assert!(matches!(bind(&path).await, Err(ControlError::InUse { .. })));
        // The refused bind's liveness probe was the first connection; it must be answered
        // with silence, and the real request must still get its answer.
        let (tx, mut calls) = tokio::sync::mpsc::channel(8);
        let server = spawn_server(listener, tx);
        let daemon = tokio::spawn(async move {
            let call: ControlCall = calls.recv().await.expect("call");
            let _ = call.reply.send(Response::Error { message: "pong".into() });
            calls
        });
        let resp = request(&path, &Request::Status, Duration::from_secs(5)).await.expect("request");
        assert!(matches!(resp, Response::Error { message } if message == "pong"));
        drop(daemon.await.expect("join"));
        server.await.expect("server ends when the daemon goes");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The socket is created 0600 whatever the umask, with no temporary name left behind;
    /// only root and the daemon's own user are served.
    #[tokio::test]
    async fn the_socket_is_root_only() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let dir = std::env::temp_dir().join(format!("ka-ctl-mode-{}", std::process::id()));
        let path = dir.join("t.sock");
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let listener = bind(&path).await;
        nix::sys::stat::umask(old);
        let _listener = listener.expect("bind");
        let md = std::fs::metadata(&path).expect("socket");
        assert_eq!(md.permissions().mode() & 0o7777, 0o600, "mode {:o}", md.permissions().mode());
        assert_eq!(md.uid(), nix::unistd::Uid::effective().as_raw());
        let names: Vec<String> = std::fs::read_dir(&dir).expect("dir").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["t.sock"]);
        for (peer, daemon, ok) in [(0, 0, true), (1000, 0, false), (65534, 0, false), (998, 998, true), (0, 998, true), (1000, 998, false)] {
            assert_eq!(peer_allowed(peer, daemon), ok, "peer {peer}, daemon {daemon}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    /// An idle client (connected, silent) delays nobody: another client is answered while it
    /// waits, and the daemon's loop only ever sees complete requests.
    #[tokio::test]
    async fn an_idle_client_delays_no_other() {
        let dir = std::env::temp_dir().join(format!("ka-ctl-idle-{}", std::process::id()));
        let path = dir.join("t.sock");
        let listener = bind(&path).await.expect("bind");
        let (tx, mut calls) = tokio::sync::mpsc::channel(8);
        let server = spawn_server(listener, tx);
        let _idle = UnixStream::connect(&path).await.expect("idle client");
        let daemon = tokio::spawn(async move {
            let call: ControlCall = calls.recv().await.expect("call");
            assert_eq!(call.request, Request::Status);
            let _ = call.reply.send(Response::Error { message: "pong".into() });
            calls
        });
        let t = std::time::Instant::now();
        let resp = request(&path, &Request::Status, Duration::from_secs(4)).await.expect("answered despite the idle client");
        assert!(matches!(resp, Response::Error { message } if message == "pong"));
        assert!(t.elapsed() < CLIENT_IO_TIMEOUT, "answered only after the idle client timed out");
        drop(daemon.await.expect("join"));
        server.await.expect("server ends when the daemon goes");
        let _ = std::fs::remove_dir_all(dir);
    }
}
