//! The control socket (`/run/ka/NAME.sock`): one JSON request per line, one JSON response per
//! line. `ka status` is its client; the daemon serves it.

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
}

/// The daemon's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Status`].
    Status(Box<StatusReport>),
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

/// Binds the control socket, removing a stale one left by a crashed run. Fails if a live
/// daemon answers on it.
///
/// # Errors
/// The socket is in use or cannot be created.
pub async fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let p = path.display().to_string();
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(|source| ControlError::Io { path: p.clone(), source })?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(ControlError::InUse { path: p });
        }
        tracing::info!(path = %p, "removing stale control socket");
        let _ = tokio::fs::remove_file(path).await;
    }
    UnixListener::bind(path).map_err(|source| ControlError::Io { path: p, source })
}

/// Reads one request from `stream`, answers it with `handler`, and closes. Bounded: a request
/// line longer than 64 KiB or slower than 5 s is refused.
///
/// # Errors
/// I/O errors on the stream.
pub async fn serve_one<F>(stream: UnixStream, handler: F) -> io::Result<()>
where
    F: FnOnce(Result<Request, String>) -> Response,
{
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    let mut rd = BufReader::new(rd).take(64 * 1024);
    let read = tokio::time::timeout(Duration::from_secs(5), rd.read_line(&mut line)).await;
    let req = match read {
        // A connection closed without a request: a liveness probe (see `bind`), nothing to say.
        Ok(Ok(0)) => return Ok(()),
        Ok(Ok(_)) => serde_json::from_str::<Request>(line.trim()).map_err(|e| format!("bad request: {e}")),
        Ok(Err(e)) => Err(format!("reading request: {e}")),
        Err(_) => Err("request timed out".to_owned()),
    };
    let resp = handler(req);
    let mut out = serde_json::to_vec(&resp).map_err(io::Error::other)?;
    out.push(b'\n');
    wr.write_all(&out).await?;
    wr.shutdown().await
}

/// Sends `req` to the daemon of the socket at `path` and waits for its answer.
///
/// # Errors
/// No daemon, I/O errors, bad answer, or no answer within `timeout`.
pub async fn request(path: &Path, req: &Request, timeout: Duration) -> Result<Response, ControlError> {
    let p = path.display().to_string();
    let fut = async {
        let mut stream = UnixStream::connect(path)
            .await
            .map_err(|source| ControlError::Connect { path: p.clone(), source })?;
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
        let r: Result<Request, _> = serde_json::from_str(r#"{"cmd":"nope"}"#);
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn a_request_round_trips_and_a_second_daemon_is_refused() {
        let dir = std::env::temp_dir().join(format!("ka-ctl-{}", std::process::id()));
        let path = dir.join("t.sock");
        let listener = bind(&path).await.expect("bind");
        assert!(matches!(bind(&path).await, Err(ControlError::InUse { .. })));
        // The refused bind's liveness probe is the first connection; it must be answered
        // with silence, not an error, and the real request must still get its answer.
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (s, _) = listener.accept().await.expect("accept");
                serve_one(s, |req| match req {
                    Ok(Request::Status) => Response::Error { message: "pong".into() },
                    Err(e) => Response::Error { message: e },
                })
                .await
                .expect("serve");
            }
        });
        let resp = request(&path, &Request::Status, Duration::from_secs(5)).await.expect("request");
        assert!(matches!(resp, Response::Error { message } if message == "pong"));
        server.await.expect("join");
        let _ = std::fs::remove_dir_all(dir);
    }
}
