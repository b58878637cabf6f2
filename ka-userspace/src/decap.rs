//! The real-server side of TUN services: `ka_decap` attached to an interface with its local
//! VIPs, pinned under `/sys/fs/bpf/ka/<instance>/decap-<iface>/` so it outlives the `ka`
//! process (like a configured ipip device would), and detached by removing the pins.

use std::{
    io,
    net::IpAddr,
    path::{Path, PathBuf},
};

use aya::{
    maps::HashMap as BpfHashMap,
    programs::{links::FdLink, links::PinnedLink, Xdp},
    Ebpf,
};
use ka_common::{
    lb::{AddrKey, DECAP_PROGRAM, LOCAL_VIPS_MAP},
    maps::STATS_MAP,
};
use tracing::info;

use crate::{
    datapath::{self, AttachMode},
    instance::InstanceName,
    lb::addr16,
};

/// Name of the pinned link inside the decap directory.
pub const LINK_PIN: &str = "link";

/// Errors of [`attach`] and [`detach`].
#[derive(Debug, thiserror::Error)]
pub enum DecapError {
    /// The library was built without the eBPF object.
    #[error("this build has no eBPF object (built with KA_SKIP_EBPF)")]
    NoObject,
    /// bpffs is not mounted and cannot be.
    #[error("bpffs: {0}")]
    Bpffs(#[source] Box<datapath::DatapathError>),
    /// Loading the object failed.
    #[error("loading the eBPF object: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    /// The program failed to load or attach.
    #[error("{DECAP_PROGRAM} on {iface}: {source}")]
    Program {
        /// Interface.
        iface: String,
        /// Cause.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// A map is missing or cannot be written.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Cause.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// Pinning or unpinning failed.
    #[error("pin {path}: {source}")]
    Pin {
        /// The pin path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Nothing is attached on this interface for this instance.
    #[error("no decap program pinned for {iface} under {dir}")]
    NotAttached {
        /// Interface.
        iface: String,
        /// The directory looked at.
        dir: PathBuf,
    },
}

/// The pin directory of `iface`'s decap program.
pub fn pin_dir(instance: &InstanceName, iface: &str) -> PathBuf {
    instance.pin_dir().join(format!("decap-{iface}"))
}

/// Loads `ka_decap`, fills its local-VIP map with `vips`, attaches it to `iface` in the mode
/// [`crate::xdp_mode::choose`] picks (natively, or generic mode with a warning when the driver
/// refuses), and pins the link, the VIP map and
/// the counters under [`pin_dir`]. An earlier attachment of the same instance on `iface` is
/// replaced.
///
/// # Errors
/// See [`DecapError`]; nothing stays attached or pinned on error.
pub fn attach(instance: &InstanceName, iface: &str, vips: &[IpAddr]) -> Result<(), DecapError> {
    if crate::EBPF_OBJECT.is_empty() {
        return Err(DecapError::NoObject);
    }
    datapath::ensure_bpffs().map_err(|e| DecapError::Bpffs(Box::new(e)))?;
    let dir = pin_dir(instance, iface);
    if dir.exists() {
        match detach(instance, iface) {
            Ok(()) | Err(DecapError::NotAttached { .. }) => {}
            Err(e) => return Err(e),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut ebpf = Ebpf::load(crate::EBPF_OBJECT).map_err(|e| DecapError::Load(Box::new(e)))?;
    {
        let map = ebpf.map_mut(LOCAL_VIPS_MAP).ok_or(DecapError::Map {
            map: LOCAL_VIPS_MAP,
            source: Box::new(aya::maps::MapError::InvalidName {
                name: LOCAL_VIPS_MAP.into(),
            }),
        })?;
        let mut m: BpfHashMap<_, AddrKey, u32> =
            BpfHashMap::try_from(map).map_err(|e| DecapError::Map {
                map: LOCAL_VIPS_MAP,
                source: Box::new(e),
            })?;
        for v in vips {
            let (addr, family) = addr16(*v);
            m.insert(
                AddrKey {
                    addr,
                    family,
                    _pad: [0; 3],
                },
                1,
                0,
            )
            .map_err(|e| DecapError::Map {
                map: LOCAL_VIPS_MAP,
                source: Box::new(e),
            })?;
        }
    }
    let prog_err = |e| DecapError::Program {
        iface: iface.to_owned(),
        source: Box::new(e),
    };
    let prog: &mut Xdp = ebpf
        .program_mut(DECAP_PROGRAM)
        .ok_or(aya::programs::ProgramError::NotLoaded)
        .map_err(prog_err)?
        .try_into()
        .map_err(prog_err)?;
    prog.load().map_err(prog_err)?;
    // The decap program only passes or drops, which native mode delivers even on a veth.
    let attached = crate::xdp_mode::attach(prog, DECAP_PROGRAM, iface, AttachMode::Auto, false).map_err(prog_err)?;
    let (id, mode) = (attached.id, attached.mode);
    let link = prog.take_link(id).map_err(prog_err)?;
    let fd_link = FdLink::try_from(link).map_err(|e| DecapError::Pin {
        path: dir.join(LINK_PIN),
        source: io::Error::other(e),
    })?;
    std::fs::create_dir_all(&dir).map_err(|source| DecapError::Pin {
        path: dir.clone(),
        source,
    })?;
    let result = pin_all(&ebpf, fd_link, &dir);
    if result.is_err() {
        // The link fd closes when `ebpf` and the link drop: nothing stays attached.
        let _ = std::fs::remove_dir_all(&dir);
    }
    result?;
    info!(iface, mode, vips = vips.len(), dir = %dir.display(), "decap attached and pinned");
    Ok(())
}

fn pin_all(ebpf: &Ebpf, link: FdLink, dir: &Path) -> Result<(), DecapError> {
    for name in [LOCAL_VIPS_MAP, STATS_MAP] {
        let path = dir.join(name);
        let map = ebpf.map(name).ok_or(DecapError::Map {
            map: name,
            source: Box::new(aya::maps::MapError::InvalidName { name: name.into() }),
        })?;
        map.pin(&path).map_err(|e| DecapError::Pin {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
    }
    let path = dir.join(LINK_PIN);
    link.pin(&path).map_err(|e| DecapError::Pin {
        path: path.clone(),
        source: io::Error::other(e),
    })?;
    Ok(())
}

/// Detaches the decap program of `instance` from `iface` (unpins its link, which detaches it)
/// and removes the pin directory.
///
/// # Errors
/// Nothing is pinned for `iface`, or the pins cannot be removed.
pub fn detach(instance: &InstanceName, iface: &str) -> Result<(), DecapError> {
    let dir = pin_dir(instance, iface);
    let path = dir.join(LINK_PIN);
    if !path.exists() {
        return Err(DecapError::NotAttached {
            iface: iface.to_owned(),
            dir,
        });
    }
    let pinned = PinnedLink::from_pin(&path).map_err(|e| DecapError::Pin {
        path: path.clone(),
        source: io::Error::other(e),
    })?;
    // Unpinning leaves our fd as the last reference: dropping it detaches the program.
    let link = pinned.unpin().map_err(|source| DecapError::Pin {
        path: path.clone(),
        source,
    })?;
    drop(link);
    std::fs::remove_dir_all(&dir).map_err(|source| DecapError::Pin { path: dir, source })?;
    info!(iface, "decap detached");
    Ok(())
}
