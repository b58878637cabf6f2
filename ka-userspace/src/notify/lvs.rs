//! The LVS notify FIFOs (`lvs_notify_fifo`, and the global `notify_fifo` which gets the same
//! lines): keepalived's lines for virtual and real servers, `VS [198.18.0.1]:tcp:80 UP` when a
//! virtual server gains or loses quorum and `RS [198.18.1.1]:tcp:80 [198.18.0.1]:tcp:80 DOWN`
//! when a real server goes up or down (keepalived 2.2.7's `notify_fifo_vs` / `notify_fifo_rs`
//! in check/ipwrapper.c).
//!
//! As keepalived's `fifo_open` (lib/notify.c): a FIFO that does not exist is created (mode
//! 0644) and removed when ka lets it go; each FIFO is held open for reading and writing,
//! non-blocking, so a line waits in the pipe for a reader that opens the FIFO later and a write
//! never blocks (a full pipe drops the line).

use std::{
    fs::File,
    io::{self, Write as _},
    net::IpAddr,
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use tracing::{debug, warn};

use crate::config::model::{Protocol, VirtualServer, VsKey};

/// keepalived's `FMT_VS` of a virtual server: `[ADDR]:proto:PORT`, `FWM N`, `[GROUP]:0`.
pub fn vs_label(vs: &VirtualServer) -> String {
    crate::lb::plan::vs_label(vs)
}

/// keepalived's `FMT_RS` of a real server of `vs`: `[ADDR]:proto:PORT`, with the virtual
/// server's protocol (`none` for a fwmark service, which has none).
pub fn rs_label(addr: IpAddr, port: u16, vs: &VirtualServer) -> String {
    let proto = match vs.key {
        VsKey::Fwmark(_) => "none",
        _ => match vs.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        },
    };
    format!("[{addr}]:{proto}:{port}")
}

/// The line of a virtual server's quorum change.
pub fn vs_line(vs: &str, up: bool) -> String {
    format!("VS {vs} {}\n", if up { "UP" } else { "DOWN" })
}

/// The line of a real server's state change.
pub fn rs_line(rs: &str, vs: &str, up: bool) -> String {
    format!("RS {rs} {vs} {}\n", if up { "UP" } else { "DOWN" })
}

/// One open FIFO.
#[derive(Debug)]
struct Fifo {
    path: PathBuf,
    file: File,
    /// ka made it, so ka removes it.
    created: bool,
}

/// The FIFOs the LVS lines go to.
#[derive(Debug, Default)]
pub struct LvsFifos {
    fifos: Vec<Fifo>,
}

/// Creates (when missing) and opens the FIFO at `path`: `Ok((file, created))`.
fn open_fifo(path: &Path) -> io::Result<(File, bool)> {
    let created = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_fifo() => false,
        Ok(_) => return Err(io::Error::other("exists and is not a FIFO")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).map_err(io::Error::from)?;
            true
        }
        Err(e) => return Err(e),
    };
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    match opened {
        Ok(f) => Ok((f, created)),
        Err(e) => {
            if created {
                let _ = std::fs::remove_file(path);
            }
            Err(e)
        }
    }
}

impl LvsFifos {
    /// Opens each of `paths` once (a path given twice is opened once); one that cannot be
    /// opened is logged and left out, as keepalived does.
    pub fn open(paths: &[&str]) -> LvsFifos {
        let mut fifos: Vec<Fifo> = Vec::new();
        for p in paths {
            let path = PathBuf::from(p);
            if fifos.iter().any(|f| f.path == path) {
                continue;
            }
            match open_fifo(&path) {
                Ok((file, created)) => fifos.push(Fifo { path, file, created }),
                Err(e) => warn!(fifo = %path.display(), error = %e, "cannot open the LVS notify FIFO"),
            }
        }
        LvsFifos { fifos }
    }

    /// Whether no FIFO is open.
    pub fn is_empty(&self) -> bool {
        self.fifos.is_empty()
    }

    /// Writes `line` to every FIFO without blocking (dropped where the pipe is full).
    pub fn send(&mut self, line: &str) {
        for f in &mut self.fifos {
            if let Err(e) = f.file.write_all(line.as_bytes()) {
                debug!(fifo = %f.path.display(), error = %e, "LVS notify FIFO: line dropped");
            }
        }
    }
}

impl Drop for LvsFifos {
    fn drop(&mut self) {
        for f in &self.fifos {
            if f.created {
                let _ = std::fs::remove_file(&f.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, LoadOptions};

    /// keepalived's lines, for an address service, a fwmark and a group.
    #[test]
    fn lines_match_keepalived() {
        let text = "virtual_server 198.18.0.1 80 {\n protocol UDP\n real_server 198.18.1.1 53 {\n }\n}\nvirtual_server fwmark 7 {\n real_server 198.18.1.1 80 {\n }\n}\nvirtual_server_group web {\n 198.18.0.2 80\n}\nvirtual_server group web {\n protocol TCP\n real_server fd00:198:18::1 80 {\n }\n}\n";
        let c = parse_str(text, Path::new("t.conf"), &LoadOptions::default()).config;
        let rs = |i: usize| {
            let v = &c.virtual_servers[i];
            rs_label(v.real_servers[0].address, v.real_servers[0].port, v)
        };
        let cases = [
            (vs_line(&vs_label(&c.virtual_servers[0]), true), "VS [198.18.0.1]:udp:80 UP\n"),
            (rs_line(&rs(0), &vs_label(&c.virtual_servers[0]), false), "RS [198.18.1.1]:udp:53 [198.18.0.1]:udp:80 DOWN\n"),
            (vs_line(&vs_label(&c.virtual_servers[1]), false), "VS FWM 7 DOWN\n"),
            (rs_line(&rs(1), &vs_label(&c.virtual_servers[1]), true), "RS [198.18.1.1]:none:80 FWM 7 UP\n"),
            (rs_line(&rs(2), &vs_label(&c.virtual_servers[2]), true), "RS [fd00:198:18::1]:tcp:80 [web]:0 UP\n"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    /// A missing FIFO is created, lines wait in it for a reader that comes later, and the FIFO
    /// is removed when the writer goes; an existing FIFO is used and left in place; a path that
    /// is not a FIFO is left out.
    #[test]
    fn fifo_is_created_buffered_and_removed() {
        let dir = std::env::temp_dir().join(format!("ka-lvs-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let made = dir.join("made");
        let theirs = dir.join("theirs");
        let file = dir.join("file");
        let _ = std::fs::remove_file(&made);
        nix::unistd::mkfifo(&theirs, nix::sys::stat::Mode::from_bits_truncate(0o600)).ok();
        std::fs::write(&file, "x").expect("file");
        let paths = [made.to_str().expect("utf-8"), theirs.to_str().expect("utf-8"), file.to_str().expect("utf-8"), made.to_str().expect("utf-8")];
        let mut f = LvsFifos::open(&paths);
        assert_eq!(f.fifos.len(), 2, "the plain file is left out, the repeated path opened once");
        f.send("VS FWM 1 UP\n");
        f.send("VS FWM 1 DOWN\n");
        for p in [&made, &theirs] {
            let mut r = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(p).expect("reader");
            let mut buf = [0u8; 64];
            let n = std::io::Read::read(&mut r, &mut buf).expect("read");
            assert_eq!(&buf[..n], b"VS FWM 1 UP\nVS FWM 1 DOWN\n", "{}", p.display());
        }
        drop(f);
        assert!(!made.exists(), "the FIFO ka made is removed");
        assert!(theirs.exists(), "an existing FIFO stays");
        let _ = std::fs::remove_dir_all(dir);
    }
}
