//! Loads the XDP program, attaches it to interfaces, pins its maps under the instance's bpffs
//! directory and reads its counters. Dropping a [`Datapath`] detaches everything and removes
//! the pins.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
};

use aya::{
    maps::PerCpuArray,
    programs::Xdp,
    Ebpf, EbpfLoader,
};
use ka_common::{
    maps::{STATS_MAP, XDP_PROGRAM},
    stats::Counter,
};
use tracing::{info, warn};

use crate::instance::InstanceName;

/// How to attach the XDP program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// The mode that delivers the program's frames on this interface: generic on a veth
    /// whose peer runs no native XDP program (native mode would drop the frames sent with
    /// `XDP_TX`/`XDP_REDIRECT`), else native (driver) mode, falling back to generic mode with
    /// a warning. See [`crate::xdp_mode::choose`].
    #[default]
    Auto,
    /// Native (driver) mode only (warned about on a veth whose peer runs no XDP program).
    Native,
    /// Generic (skb) mode only.
    Generic,
}

/// Errors of the datapath.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// The binary was built with `KA_SKIP_EBPF=1`.
    #[error("this ka binary was built without its eBPF object (KA_SKIP_EBPF=1); rebuild it normally")]
    NoObject,
    /// bpffs is not mounted and could not be mounted.
    #[error("bpffs is not mounted at /sys/fs/bpf and mounting it failed: {0}")]
    Bpffs(#[source] nix::Error),
    /// Loading the object failed.
    #[error("loading the eBPF object: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    /// The program is missing from the object or failed verification.
    #[error("loading program {program}: {source}")]
    Program {
        /// Program name.
        program: &'static str,
        /// Cause.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// Attaching to an interface failed.
    #[error("attaching {program} to {iface} in {mode:?} mode: {source}")]
    Attach {
        /// Program name.
        program: &'static str,
        /// Interface.
        iface: String,
        /// Requested mode.
        mode: AttachMode,
        /// Cause.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// A map is missing or has the wrong type.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Cause.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// A map is missing from the object.
    #[error("map {map} is missing from the eBPF object")]
    MissingMap {
        /// Map name.
        map: &'static str,
    },
    /// Pinning failed.
    #[error("pinning {path}: {source}")]
    Pin {
        /// Pin path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// One attachment of the program.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Attachment {
    /// Interface name.
    pub iface: String,
    /// Mode that succeeded: `native` or `generic`.
    pub mode: &'static str,
    /// Why this mode was chosen.
    pub reason: String,
}

/// The loaded datapath of one instance.
pub struct Datapath {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    attachments: Vec<Attachment>,
}

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Mounts bpffs at /sys/fs/bpf unless it is there already.
///
/// # Errors
/// The mount fails.
pub fn ensure_bpffs() -> Result<(), DatapathError> {
    let path = Path::new("/sys/fs/bpf");
    if let Ok(st) = nix::sys::statfs::statfs(path) {
        if st.filesystem_type().0 == BPF_FS_MAGIC {
            return Ok(());
        }
    }
    nix::mount::mount(Some("bpf"), path, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
        .map_err(DatapathError::Bpffs)
}

/// Removes an instance's pin directory (stale pins of a crashed run, or ours at shutdown).
pub fn remove_pins(pin_dir: &Path) {
    match std::fs::remove_dir_all(pin_dir) {
        Ok(()) => info!(dir = %pin_dir.display(), "removed pins"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => warn!(dir = %pin_dir.display(), error = %e, "cannot remove pins"),
    }
}

impl Datapath {
    /// Loads the object and pins its maps under the instance's directory, after removing stale
    /// pins of an earlier run.
    ///
    /// # Errors
    /// See [`DatapathError`].
    pub fn load(instance: &InstanceName) -> Result<Datapath, DatapathError> {
        if crate::EBPF_OBJECT.is_empty() {
            return Err(DatapathError::NoObject);
        }
        ensure_bpffs()?;
        let pin_dir = instance.pin_dir();
        remove_pins(&pin_dir);
        let mut ebpf = EbpfLoader::new()
            .load(crate::EBPF_OBJECT)
            .map_err(|e| DatapathError::Load(Box::new(e)))?;
        match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => std::mem::forget(logger),
            Err(e) => tracing::debug!(error = %e, "no eBPF logs"),
        }
        let prog: &mut Xdp = ebpf
            .program_mut(XDP_PROGRAM)
            .ok_or(DatapathError::Program {
                program: XDP_PROGRAM,
                source: Box::new(aya::programs::ProgramError::NotLoaded),
            })?
            .try_into()
            .map_err(|e| DatapathError::Program { program: XDP_PROGRAM, source: Box::new(e) })?;
        prog.load().map_err(|e| DatapathError::Program { program: XDP_PROGRAM, source: Box::new(e) })?;
        std::fs::create_dir_all(&pin_dir)
            .map_err(|source| DatapathError::Pin { path: pin_dir.clone(), source })?;
        let map = ebpf.map(STATS_MAP).ok_or(DatapathError::MissingMap { map: STATS_MAP })?;
        let path = pin_dir.join(STATS_MAP);
        map.pin(&path).map_err(|e| DatapathError::Pin { path, source: io::Error::other(e) })?;
        Ok(Datapath { ebpf, pin_dir, attachments: Vec::new() })
    }

    /// Attaches `ka_xdp` to `iface`.
    ///
    /// # Errors
    /// The interface does not exist or refuses the program in the requested mode.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<Attachment, DatapathError> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(XDP_PROGRAM)
            .ok_or(DatapathError::Program {
                program: XDP_PROGRAM,
                source: Box::new(aya::programs::ProgramError::NotLoaded),
            })?
            .try_into()
            .map_err(|e| DatapathError::Program { program: XDP_PROGRAM, source: Box::new(e) })?;
        let attached = crate::xdp_mode::attach(prog, XDP_PROGRAM, iface, mode, true).map_err(|e| DatapathError::Attach {
            program: XDP_PROGRAM,
            iface: iface.to_owned(),
            mode,
            source: Box::new(e),
        })?;
        let a = Attachment { iface: iface.to_owned(), mode: attached.mode, reason: attached.reason };
        self.attachments.push(a.clone());
        Ok(a)
    }

    /// The loaded object, for the map writer.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// The loaded object, for reading counters.
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    /// The current attachments.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Sums the per-CPU counters.
    ///
    /// # Errors
    /// The stats map cannot be read.
    pub fn counters(&self) -> Result<BTreeMap<&'static str, u64>, DatapathError> {
        read_counters(&self.ebpf)
    }
}

/// Reads and sums every counter of `KA_STATS` in a loaded object (also used by the fixture
/// tests and benchmarks on their own loads).
///
/// # Errors
/// The map is missing or cannot be read.
pub fn read_counters(ebpf: &Ebpf) -> Result<BTreeMap<&'static str, u64>, DatapathError> {
    let map = ebpf.map(STATS_MAP).ok_or(DatapathError::MissingMap { map: STATS_MAP })?;
    let arr = PerCpuArray::<_, u64>::try_from(map)
        .map_err(|e| DatapathError::Map { map: STATS_MAP, source: Box::new(e) })?;
    let mut out = BTreeMap::new();
    for c in Counter::ALL {
        let v = arr
            .get(&c.index(), 0)
            .map_err(|e| DatapathError::Map { map: STATS_MAP, source: Box::new(e) })?;
        out.insert(c.name(), v.iter().sum());
    }
    Ok(out)
}

impl Drop for Datapath {
    fn drop(&mut self) {
        // The XDP links are owned by `ebpf` and detached when it drops; the pins outlive the
        // process unless removed.
        remove_pins(&self.pin_dir);
        info!(attachments = self.attachments.len(), "datapath detached");
    }
}
