//! TCP_CHECK: the server accepts a TCP connection within `connect_timeout`.

use std::time::Duration;

use super::{connect_tcp_unbounded, CheckError, Deadline, Success, Target};

/// A TCP_CHECK.
#[derive(Clone, Debug)]
pub struct TcpProbe {
    /// Where to connect.
    pub target: Target,
    /// `connect_timeout`.
    pub timeout: Duration,
}

impl TcpProbe {
    /// Connects, then closes the connection.
    ///
    /// # Errors
    /// The connection is refused or times out.
    pub async fn run(&self) -> Result<Success, CheckError> {
        let deadline = Deadline::after(self.timeout);
        // Nothing is written: TCP_NODELAY would change nothing but cost a syscall.
        let stream = deadline.run("connecting", connect_tcp_unbounded(&self.target, false)).await??;
        drop(stream);
        Ok(Success::new("connected"))
    }
}
