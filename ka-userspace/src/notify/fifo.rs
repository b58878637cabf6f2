//! `notify_fifo`: one line per state change, in keepalived's format
//! (`INSTANCE "VI_1" MASTER 100`, `GROUP "G1" BACKUP`).

use std::{io, path::Path};

use tokio::io::AsyncWriteExt as _;

use super::{Event, Subject};

/// keepalived's FIFO line for `ev`, newline included.
pub fn line(ev: &Event) -> String {
    match ev.subject {
        Subject::Instance => format!("{} \"{}\" {} {}\n", ev.subject.word(), ev.name, ev.state, ev.priority),
        Subject::Group => format!("{} \"{}\" {}\n", ev.subject.word(), ev.name, ev.state),
    }
}

/// Writes one event to the FIFO at `path` without blocking when nobody reads it: the FIFO is
/// opened non-blocking for writing, which fails with ENXIO when no reader is attached (the line
/// is then dropped, as keepalived drops it).
///
/// # Errors
/// The FIFO cannot be opened or written.
pub async fn write(path: &Path, ev: &Event) -> io::Result<()> {
    let mut f = tokio::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .await?;
    f.write_all(line(ev).as_bytes()).await?;
    f.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt as _;

    #[test]
    fn lines_match_keepalived() {
        let ev = Event { subject: Subject::Instance, name: "VI_1".into(), state: "MASTER", priority: 100 };
        assert_eq!(line(&ev), "INSTANCE \"VI_1\" MASTER 100\n");
        let ev = Event { subject: Subject::Group, name: "G1".into(), state: "FAULT", priority: 0 };
        assert_eq!(line(&ev), "GROUP \"G1\" FAULT\n");
    }

    #[tokio::test]
    async fn a_reader_gets_the_line() {
        let dir = std::env::temp_dir().join(format!("ka-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("fifo");
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
        let ev = Event { subject: Subject::Instance, name: "VI_9".into(), state: "BACKUP", priority: 90 };
        // No reader yet: the write fails instead of blocking.
        assert!(write(&path, &ev).await.is_err());
        let reader = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&path).expect("open reader");
        write(&path, &ev).await.expect("write");
        let mut got = String::new();
        std::io::Read::read_to_string(&mut &reader, &mut got).ok();
        assert_eq!(got, "INSTANCE \"VI_9\" BACKUP 90\n");
        let _ = std::fs::remove_dir_all(dir);
    }
}
