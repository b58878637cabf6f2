//! Logging set-up: `tracing` to stderr, or to journald with structured fields when systemd
//! connected stderr to the journal (`$JOURNAL_STREAM`), and the `log` records of libraries
//! (aya) bridged into it, except aya's dump of the object BTF the kernel refused, which becomes
//! one debug line.
//!
//! In the journal every event's fields are journal fields, upper-cased without prefix:
//! `INSTANCE`, `VRID`, `IFACE`, `SERVICE`, `REAL_SERVER`, `CHECKER`... (`journalctl -u ka
//! INSTANCE=VI_1`), with `SYSLOG_IDENTIFIER=ka`.
//!
//! When the kernel refuses the eBPF object's BTF, aya loads without it and logs the whole
//! verifier output (hundreds of lines) as a warning. Nothing is wrong with the datapath then;
//! the dump only buries the start-up facts.

use tracing_log::LogTracer;

/// The prefix of aya's message when the kernel refuses the object's BTF.
const BTF_REFUSED: &str = "object BTF couldn't be loaded in the kernel: ";

/// Installs the global subscriber with `filter` (EnvFilter syntax; `info` if invalid) and the
/// `log` bridge.
pub fn init(filter: &str) {
    use tracing_subscriber::layer::SubscriberExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let journald = std::env::var("JOURNAL_STREAM")
        .ok()
        .filter(|v| stderr_is(v))
        .and_then(|_| tracing_journald::layer().ok())
        .map(|l| l.with_field_prefix(None).with_syslog_identifier("ka".to_owned()));
    let set = match journald {
        Some(layer) => tracing::subscriber::set_global_default(tracing_subscriber::registry().with(filter).with(layer)),
        None => tracing::subscriber::set_global_default(
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).finish(),
        ),
    };
    if set.is_err() {
        return;
    }
    install_log_bridge();
}

/// Bridges the `log` records of libraries (aya) into `tracing`, aya's BTF dump summarized.
pub fn install_log_bridge() {
    if log::set_boxed_logger(Box::new(Bridge(LogTracer::new()))).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}

/// Whether stderr is the stream `$JOURNAL_STREAM` (`DEVICE:INODE`) names: systemd connected it
/// to the journal (a redirected stderr, e.g. `ka run 2>file` under systemd, is not).
fn stderr_is(journal_stream: &str) -> bool {
    let Some((dev, ino)) = journal_stream.split_once(':') else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    match nix::sys::stat::fstat(std::io::stderr()) {
        Ok(st) => st.st_dev == dev && st.st_ino == ino,
        Err(_) => false,
    }
}

/// `log` → `tracing`, with aya's BTF dump summarized.
struct Bridge(LogTracer);

impl log::Log for Bridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.target().starts_with("aya") {
            if let Some(summary) = btf_refusal_summary(&record.args().to_string()) {
                tracing::debug!(target: "ka::datapath", "{summary}");
                return;
            }
        }
        self.0.log(record);
    }

    fn flush(&self) {}
}

/// One line for aya's "object BTF couldn't be loaded" message: the syscall's error and the
/// verifier's last line; `None` for any other message.
pub fn btf_refusal_summary(message: &str) -> Option<String> {
    let rest = message.strip_prefix(BTF_REFUSED)?;
    let (error, log) = rest.split_once(". Verifier output:").unwrap_or((rest, ""));
    let lines: Vec<&str> = log.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let last = lines.last().copied().unwrap_or("none");
    Some(format!(
        "the kernel refused the eBPF object's BTF, loaded without it (the programs do not need it): {error}; verifier log of {} lines ends with: {last}",
        lines.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The multi-line dump becomes one line with the error and the verifier's last line;
    /// other messages pass untouched.
    #[test]
    fn btf_dump_becomes_one_line() {
        let dump = format!(
            "{BTF_REFUSED}the BPF_BTF_LOAD syscall returned Invalid argument (os error 22). Verifier output: magic: 0xeb9f\nversion: 1\n{}[42] FUNC ka_xdp type_id=41 Invalid name\n\n",
            "[1] INT u32 size=4\n".repeat(350)
        );
        let s = btf_refusal_summary(&dump).expect("summary");
        assert!(!s.contains('\n'), "{s}");
        assert!(s.contains("Invalid argument (os error 22)") && s.contains("353 lines") && s.ends_with("Invalid name"), "{s}");
        assert_eq!(btf_refusal_summary("getrlimit(RLIMIT_MEMLOCK) failed: 1"), None);
    }

    /// Only the exact device and inode of stderr select the journal.
    #[test]
    fn journal_stream_must_be_stderr() {
        let st = nix::sys::stat::fstat(std::io::stderr()).expect("fstat");
        assert!(stderr_is(&format!("{}:{}", st.st_dev, st.st_ino)));
        assert!(!stderr_is(&format!("{}:{}", st.st_dev, st.st_ino + 1)));
        assert!(!stderr_is("garbage"));
    }
}
