//! Loads the XDP program, attaches it to interfaces through bpf_links, pins the links and the
//! maps under the instance's bpffs directory and reads its counters.
//!
//! The pins outlive the process: after a crash the program keeps forwarding with the last
//! tables. A starting daemon adopts them: maps with the same layout are shared with the new
//! program, maps whose layout changed are replaced and their entries migrated
//! ([`crate::pins`]), and [`Datapath::commit`] swaps the program on every pinned link at once
//! (`bpf_link_update`: no instant without XDP). Only [`Datapath::release`] (an orderly stop)
//! detaches and removes the pins.

use std::{
    collections::{BTreeMap, HashMap},
    io,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use aya::{
    maps::{MapData, PerCpuArray},
    programs::{
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
        Xdp,
    },
    Ebpf, EbpfLoader,
};
use ka_common::{
    lb::{CONN4_MAP, CONN6_MAP},
    maps::{
        layout_hash, meta_key, MapDef, META_KEY_LEN, META_MAP, PINNED_MAPS, STATS_MAP, XDP_MODE_GENERIC,
        XDP_MODE_NATIVE, XDP_PROGRAM,
    },
    stats::{add_bundles, Bundles, Counter, Counters, COUNTER_COUNT, STATS_BUNDLES_MAP},
};
use tracing::{debug, info, warn};

use crate::pins::{self, MapPlan};

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
    /// The eBPF object cannot be parsed for its map definitions.
    #[error("parsing the eBPF object: {0}")]
    Parse(#[source] Box<aya_obj::ParseError>),
    /// The pinned state of an earlier run cannot be read.
    #[error(transparent)]
    Pins(#[from] pins::PinsError),
    /// Replacing the program on a pinned link failed (the old program keeps running).
    #[error("updating the pinned link of {iface}: {source}")]
    LinkUpdate {
        /// Interface.
        iface: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
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
    /// Object map definitions, by name.
    defs: HashMap<String, MapDef>,
    /// Pinned links of an earlier run, updated to this program by [`Datapath::commit`].
    adopted_links: Vec<(String, FdLink)>,
    /// Links this run created and pinned.
    new_links: Vec<PinnedLink>,
    /// Links that could not be pinned (netlink fallback): detached when this process ends.
    unpinned_links: Vec<XdpLink>,
    /// Maps whose old pin was set aside for migration.
    pending: Vec<PendingMap>,
    /// Maps shared with the earlier run.
    adopted_maps: Vec<&'static str>,
    committed: bool,
    /// `ka_xdp` and the sweeper are loaded (verified).
    verified: bool,
}

/// A replaced map: its old pin, set aside as `NAME:pending` until the new program runs.
struct PendingMap {
    name: &'static str,
    path: PathBuf,
    old: MapData,
    old_def: MapDef,
    same_revision: bool,
    /// Its entries were copied already (a map only userspace writes, migrated at load so the
    /// map writer reads back the previous run's tables).
    copied: bool,
}

/// What [`Datapath::commit`] did, for logs and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Adoption {
    /// Maps shared with the earlier run.
    pub maps_adopted: usize,
    /// Maps whose layout changed and whose entries were copied into the new map.
    pub maps_migrated: usize,
    /// Maps whose layout changed and that start empty.
    pub maps_fresh_tables: usize,
    /// Pinned links whose program was replaced atomically.
    pub links_updated: usize,
    /// Pinned links of interfaces this run does not attach to (detached).
    pub links_dropped: usize,
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

/// The pin of the link of `iface`: `/sys/fs/bpf/ka/NAME/link_IFACE`.
pub fn link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join(format!("link_{iface}"))
}

/// The pin of a replaced map while its entries migrate (Cilium's `:pending`).
fn pending_pin(pin_dir: &Path, map: &str) -> PathBuf {
    pin_dir.join(format!("{map}:pending"))
}

fn remove_pin(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => warn!(pin = %path.display(), error = %e, "cannot remove pin"),
    }
}

/// The definitions of the maps of the eBPF object, by name.
fn object_defs() -> Result<HashMap<String, MapDef>, DatapathError> {
    let obj = aya_obj::Object::parse(crate::EBPF_OBJECT).map_err(|e| DatapathError::Parse(Box::new(e)))?;
    Ok(obj
        .maps
        .iter()
        .map(|(name, m)| {
            let def = MapDef {
                map_type: m.map_type(),
                key_size: m.key_size(),
                value_size: m.value_size(),
                max_entries: m.max_entries(),
                flags: m.map_flags(),
            };
            (name.clone(), def)
        })
        .collect())
}

/// Plans every pinned map and points the loader at the pins. A `:pending` pin left by a
/// migration that did not finish is the map the running program still uses: it is restored
/// first and migrated again.
fn plan_pins(
    pin_dir: &Path,
    defs: &HashMap<String, MapDef>,
    loader: &mut EbpfLoader<'_>,
) -> Result<(Vec<PendingMap>, Vec<&'static str>), DatapathError> {
    let mut pending = Vec::new();
    let mut adopted = Vec::new();
    let meta = match pins::pinned_def(&pin_dir.join(META_MAP))? {
        Some((data, _)) => pins::read_meta(&data),
        None => HashMap::new(),
    };
    for &name in PINNED_MAPS {
        let Some(want) = defs.get(name) else {
            return Err(DatapathError::MissingMap { map: name });
        };
        let path = pin_dir.join(name);
        let set_aside = pending_pin(pin_dir, name);
        if set_aside.exists() {
            warn!(map = name, "a migration of an earlier start did not finish: restoring the map it was migrating from");
            remove_pin(&path);
            std::fs::rename(&set_aside, &path).map_err(|source| DatapathError::Pin { path: path.clone(), source })?;
        }
        let pinned = pins::pinned_def(&path)?;
        let recorded = pins::recorded_layout(&meta, name);
        match pins::plan_map(name, want, pinned.as_ref().map(|(_, d)| d), recorded) {
            MapPlan::Fresh => {}
            MapPlan::Adopt => adopted.push(name),
            MapPlan::Replace(reason) => {
                let Some((old, old_def)) = pinned else { continue };
                info!(map = name, reason = reason.name(), "pinned map has another layout: replacing it, entries are migrated where they can be");
                std::fs::rename(&path, &set_aside).map_err(|source| DatapathError::Pin { path: set_aside.clone(), source })?;
                let same_revision = reason != pins::ReplaceReason::Revision || recorded.is_none() && ka_common::maps::layout_revision(name) == 0;
                pending.push(PendingMap { name, path: set_aside, old, old_def, same_revision, copied: false });
            }
        }
        loader.map_pin_path(name, path);
    }
    Ok((pending, adopted))
}

/// Copies the entries of the replaced maps that only userspace writes (configuration
/// tables: [`ka_common::maps::USERSPACE_MAPS`]) into their new maps now, before the first
/// tables are written: the old program never changes them, and the map writer then reads
/// back what the previous run wrote. A map that cannot be copied starts fresh (its
/// configuration is rewritten in full).
fn migrate_userspace_maps(ebpf: &Ebpf, defs: &HashMap<String, MapDef>, pending: &mut [PendingMap]) {
    for p in pending.iter_mut().filter(|p| ka_common::maps::USERSPACE_MAPS.contains(&p.name)) {
        let Some(new_def) = defs.get(p.name) else { continue };
        let Some(new) = ebpf.map(p.name).and_then(map_data) else { continue };
        if !pins::copyable(&p.old_def, new_def, p.same_revision) {
            warn!(map = p.name, old = ?p.old_def, new = ?new_def, "layout change cannot be migrated: this table starts fresh and is rewritten from the configuration");
            continue;
        }
        match pins::copy_entries(p.name, p.old.fd().as_fd(), new.fd().as_fd(), &p.old_def, new_def) {
            Ok(n) => {
                info!(map = p.name, entries = n, "migrated the entries of a replaced configuration map before the first tables");
                p.copied = true;
            }
            Err(e) => warn!(map = p.name, error = %e, "migration failed: this table is rewritten from the configuration"),
        }
    }
}

/// The map behind any kind of [`aya::maps::Map`] this program uses.
fn map_data(m: &aya::maps::Map) -> Option<&MapData> {
    use aya::maps::Map;
    match m {
        Map::Array(d) | Map::HashMap(d) | Map::PerCpuArray(d) | Map::PerCpuHashMap(d) | Map::LruHashMap(d) | Map::PerCpuLruHashMap(d) => Some(d),
        _ => None,
    }
}

/// Puts the set-aside pins back (a start that failed before its program ran).
fn restore_pending(pin_dir: &Path, pending: &[PendingMap]) {
    for p in pending {
        let path = pin_dir.join(p.name);
        remove_pin(&path);
        if let Err(e) = std::fs::rename(&p.path, &path) {
            warn!(map = p.name, error = %e, "cannot restore a set-aside map pin");
        }
    }
}

impl Datapath {
    /// Loads the object with its maps pinned under the instance's directory. Pins of an earlier
    /// run are adopted, never thrown away: a map with the same layout is shared with the new
    /// program; one whose layout changed is set aside and replaced, its entries migrated by
    /// [`Datapath::commit`]. The running program (if any) is left alone until then.
    ///
    /// # Errors
    /// See [`DatapathError`]; set-aside pins are restored on error.
    pub fn load(instance: &InstanceName) -> Result<Datapath, DatapathError> {
        if crate::EBPF_OBJECT.is_empty() {
            return Err(DatapathError::NoObject);
        }
        ensure_bpffs()?;
        let pin_dir = instance.pin_dir();
        std::fs::create_dir_all(&pin_dir)
            .map_err(|source| DatapathError::Pin { path: pin_dir.clone(), source })?;
        let defs = object_defs()?;
        let mut loader = EbpfLoader::new();
        let (pending, adopted_maps) = plan_pins(&pin_dir, &defs, &mut loader)?;
        // Maps only: the programs are verified by [`Datapath::verify`], which can take seconds on
        // a loaded host, so a restart resumes VRRP from the adopted maps first.
        let loaded = loader.load(crate::EBPF_OBJECT).map_err(|e| DatapathError::Load(Box::new(e)));
        let ebpf = match loaded {
            Ok(e) => e,
            Err(e) => {
                restore_pending(&pin_dir, &pending);
                return Err(e);
            }
        };
        let mut pending = pending;
        migrate_userspace_maps(&ebpf, &defs, &mut pending);
        if !adopted_maps.is_empty() {
            info!(maps = adopted_maps.len(), dir = %pin_dir.display(), "adopting the pinned maps of an earlier run");
        }
        Ok(Datapath {
            ebpf,
            pin_dir,
            attachments: Vec::new(),
            defs,
            adopted_links: Vec::new(),
            new_links: Vec::new(),
            unpinned_links: Vec::new(),
            pending,
            adopted_maps,
            verified: false,
            committed: false,
        })
    }

    /// Loads (verifies) the programs, once. [`Datapath::attach`] on a new link and
    /// [`Datapath::commit`] do it when it was not done; a restart that adopts the pinned links
    /// calls it after the VRRP engine started, so the verifier's seconds do not count against
    /// the peers' Master_Down_Interval (the earlier program keeps forwarding meanwhile).
    ///
    /// # Errors
    /// The verifier refuses a program.
    pub fn verify(&mut self) -> Result<(), DatapathError> {
        if !self.verified {
            let started = std::time::Instant::now();
            load_program(&mut self.ebpf)?;
            self.verified = true;
            info!(took_ms = started.elapsed().as_millis(), "XDP programs verified");
        }
        Ok(())
    }

    /// Whether pins of an earlier run were found (maps shared or replaced).
    pub fn adopting(&self) -> bool {
        !self.adopted_maps.is_empty() || !self.pending.is_empty()
    }

    /// Attaches `ka_xdp` to `iface` through a pinned bpf_link. When a link of an earlier run is
    /// pinned for `iface`, it is adopted instead: its program is replaced by
    /// [`Datapath::commit`], atomically, in the mode it was attached with.
    ///
    /// # Errors
    /// The interface does not exist or refuses the program in the requested mode.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<Attachment, DatapathError> {
        let pin = link_pin(&self.pin_dir, iface);
        if let Some(a) = self.adopt_link(iface, &pin, mode) {
            return Ok(a);
        }
        self.verify()?;
        let prog = xdp_program(&mut self.ebpf)?;
        let (id, got, reason) = attach_new(prog, iface, mode)?;
        let link_err = |e| DatapathError::Attach { program: XDP_PROGRAM, iface: iface.to_owned(), mode, source: Box::new(e) };
        let link = prog.take_link(id).map_err(link_err)?;
        match FdLink::try_from(link) {
            Ok(fd) => {
                let pinned = fd
                    .pin(&pin)
                    .map_err(|e| DatapathError::Pin { path: pin.clone(), source: io::Error::other(e) })?;
                self.new_links.push(pinned);
            }
            Err(e) => {
                warn!(iface, error = %e, "XDP attached through netlink, not a bpf_link: it is not pinned and goes with this process");
                // The link is handed back unchanged on a conversion error only through a
                // re-attach; the program stays attached through the netlink attachment.
            }
        }
        self.record_mode(iface, got);
        debug!(iface, mode = got, program = XDP_PROGRAM, pin = %pin.display(), "XDP link pinned");
        let a = Attachment { iface: iface.to_owned(), mode: got, reason };
        self.attachments.push(a.clone());
        Ok(a)
    }

    /// Attaches `ka_xdp` to a re-created `iface` (same name, new device): the pinned link of
    /// the deleted device (defunct, its device gone) is unpinned and a new link is attached and
    /// pinned in its place ([`crate::xdp_watch`]).
    ///
    /// # Errors
    /// As [`Datapath::attach`]; the old attachment is forgotten either way.
    pub fn reattach(&mut self, iface: &str, mode: AttachMode) -> Result<Attachment, DatapathError> {
        let pin = link_pin(&self.pin_dir, iface);
        if pin.exists() {
            unpin_link(&pin);
        }
        self.adopted_links.retain(|(i, _)| i != iface);
        self.attachments.retain(|a| a.iface != iface);
        self.attach(iface, mode)
    }

    /// Takes over the pinned link of `iface`, if there is a usable one.
    fn adopt_link(&mut self, iface: &str, pin: &Path, mode: AttachMode) -> Option<Attachment> {
        if !pin.exists() {
            return None;
        }
        let fd: FdLink = match PinnedLink::from_pin(pin) {
            Ok(p) => p.into(),
            Err(e) => {
                warn!(iface, pin = %pin.display(), error = %e, "unusable link pin: removing it and attaching anew");
                remove_pin(pin);
                return None;
            }
        };
        let recorded = self.read_meta(&meta_key("xdp_mode", iface));
        let got = match recorded {
            Some(XDP_MODE_NATIVE) => "native",
            Some(XDP_MODE_GENERIC) => "generic",
            _ => "unknown",
        };
        if matches!((mode, got), (AttachMode::Native, "generic") | (AttachMode::Generic, "native")) {
            warn!(iface, requested = ?mode, attached = got, "the pinned link keeps its mode; stop ka with a release to change it");
        }
        info!(iface, mode = got, pin = %pin.display(), "adopting the pinned XDP link of an earlier run");
        self.adopted_links.push((iface.to_owned(), fd));
        let a = Attachment { iface: iface.to_owned(), mode: got, reason: "adopted: the pinned link of an earlier run".to_owned() };
        self.attachments.push(a.clone());
        Some(a)
    }

    fn record_mode(&mut self, iface: &str, mode: &str) {
        let v = if mode == "native" { XDP_MODE_NATIVE } else { XDP_MODE_GENERIC };
        self.write_meta(meta_key("xdp_mode", iface), v);
    }

    fn meta_map(&mut self) -> Option<aya::maps::HashMap<&mut MapData, [u8; META_KEY_LEN], u64>> {
        let map = self.ebpf.map_mut(META_MAP)?;
        aya::maps::HashMap::try_from(map).ok()
    }

    fn read_meta(&mut self, key: &[u8; META_KEY_LEN]) -> Option<u64> {
        self.meta_map()?.get(key, 0).ok()
    }

    fn write_meta(&mut self, key: [u8; META_KEY_LEN], value: u64) {
        match self.meta_map() {
            Some(mut m) => {
                if let Err(e) = m.insert(key, value, 0) {
                    warn!(error = %e, map = META_MAP, "cannot record pin metadata");
                }
            }
            None => warn!(map = META_MAP, "metadata map missing"),
        }
    }

    /// Finishes the start once the maps hold this run's tables: migrates the entries of
    /// replaced maps, replaces the program on every adopted link atomically (`bpf_link_update`),
    /// detaches pinned links of interfaces this run does not use, drops the set-aside pins and
    /// records the layout of every pinned map. Until then an adopted link runs the earlier
    /// program.
    ///
    /// # Errors
    /// A link update fails (that interface keeps the earlier program).
    pub fn commit(&mut self) -> Result<Adoption, DatapathError> {
        self.verify()?;
        let mut report = Adoption { maps_adopted: self.adopted_maps.len(), ..Default::default() };
        for p in std::mem::take(&mut self.pending) {
            // Configuration maps were migrated at load (or start fresh, rewritten in full).
            if ka_common::maps::USERSPACE_MAPS.contains(&p.name) {
                if p.copied {
                    report.maps_migrated += 1;
                } else {
                    report.maps_fresh_tables += 1;
                }
                continue;
            }
            let Some(new_def) = self.defs.get(p.name).copied() else { continue };
            let new = MapData::from_pin(self.pin_dir.join(p.name)).ok();
            // KA_STATS of a ka before issue 15 (one per-CPU u64 per counter): its counters
            // are folded into the one per-CPU `Counters` entry, so they do not restart at 0.
            if p.name == STATS_MAP && is_per_counter_stats(&p.old_def) {
                let Some(new) = new else { continue };
                match migrate_per_counter_stats(p.old, &p.old_def, new) {
                    Ok(n) => {
                        info!(map = p.name, counters = n, "folded the per-counter KA_STATS of an earlier ka into the per-CPU Counters entry");
                        report.maps_migrated += 1;
                    }
                    Err(e) => {
                        warn!(map = p.name, error = %e, "migration of the earlier counters failed: the counters start at 0");
                        report.maps_fresh_tables += 1;
                    }
                }
                continue;
            }
            // The connection tables of a ka that placed entries by the scheduler's hash:
            // rehashed into this build's (layout revision 1), connections kept.
            if (p.name == CONN4_MAP || p.name == CONN6_MAP) && !p.same_revision && p.old_def == new_def {
                let Some(new) = new else { continue };
                match crate::lb::rehash::migrate(p.name, p.old, new) {
                    Ok(r) => {
                        info!(map = p.name, moved = r.moved, dropped = r.dropped, skipped = r.skipped, "rehashed the connection table of an earlier ka into this build's");
                        report.maps_migrated += 1;
                    }
                    Err(e) => {
                        warn!(map = p.name, error = %e, "rehash of the earlier connection table failed: this table starts fresh");
                        report.maps_fresh_tables += 1;
                    }
                }
                continue;
            }
            // KA_STATS_BUNDLES of an earlier ka with fewer bundle slots (2 before the
            // forwarding bundles): bundle numbers are never reused, so its counts are added to
            // the first slots of this build's.
            if p.name == STATS_BUNDLES_MAP && is_shorter_bundles(&p.old_def) {
                let Some(new) = new else { continue };
                match migrate_bundles(&p.old, &p.old_def, new) {
                    Ok(n) => {
                        info!(map = p.name, bundles = n, "folded the bundle counts of an earlier ka into this build's KA_STATS_BUNDLES");
                        report.maps_migrated += 1;
                    }
                    Err(e) => {
                        warn!(map = p.name, error = %e, "migration of the earlier bundle counts failed: they start at 0");
                        report.maps_fresh_tables += 1;
                    }
                }
                continue;
            }
            match new {
                Some(new) if pins::copyable(&p.old_def, &new_def, p.same_revision) => {
                    match pins::copy_entries(p.name, p.old.fd().as_fd(), new.fd().as_fd(), &p.old_def, &new_def) {
                        Ok(n) => {
                            info!(map = p.name, entries = n, "migrated the entries of a replaced map");
                            report.maps_migrated += 1;
                        }
                        Err(e) => {
                            warn!(map = p.name, error = %e, "migration failed: this table starts fresh");
                            report.maps_fresh_tables += 1;
                        }
                    }
                }
                _ => {
                    warn!(
                        map = p.name,
                        old = ?p.old_def,
                        new = ?new_def,
                        "layout change cannot be migrated: this table starts fresh (rebuilt from the configuration where it holds configuration)"
                    );
                    report.maps_fresh_tables += 1;
                }
            }
        }
        let prog = xdp_program(&mut self.ebpf)?;
        for (iface, fd) in std::mem::take(&mut self.adopted_links) {
            let link = XdpLink::try_from(fd)
                .map_err(|e| DatapathError::LinkUpdate { iface: iface.clone(), source: Box::new(e) })?;
            prog.attach_to_link(link)
                .map_err(|e| DatapathError::LinkUpdate { iface: iface.clone(), source: Box::new(e) })?;
            info!(iface = %iface, program = XDP_PROGRAM, "program replaced on the pinned link");
            report.links_updated += 1;
        }
        // Pinned links of interfaces no longer attached.
        let ours: Vec<PathBuf> = self.attachments.iter().map(|a| link_pin(&self.pin_dir, &a.iface)).collect();
        for entry in std::fs::read_dir(&self.pin_dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let is_link = entry.file_name().to_string_lossy().starts_with("link_");
            if is_link && !ours.contains(&path) {
                info!(pin = %path.display(), "detaching the pinned link of an interface this configuration does not use");
                unpin_link(&path);
                report.links_dropped += 1;
            }
        }
        for name in PINNED_MAPS {
            remove_pin(&pending_pin(&self.pin_dir, name));
        }
        let layouts: Vec<([u8; META_KEY_LEN], u64)> = PINNED_MAPS
            .iter()
            .filter(|n| **n != META_MAP)
            .filter_map(|n| self.defs.get(*n).map(|d| (meta_key("layout", n), layout_hash(n, d))))
            .collect();
        for (k, v) in layouts {
            self.write_meta(k, v);
        }
        self.committed = true;
        info!(?report, "datapath running");
        Ok(report)
    }

    /// Orderly stop: detaches every pinned link and removes the instance's pins (the maps go
    /// with the last reference). Pins of other programs (`ka decap`) stay.
    pub fn release(mut self) {
        for a in std::mem::take(&mut self.attachments) {
            unpin_link(&link_pin(&self.pin_dir, &a.iface));
        }
        for (iface, _) in &self.adopted_links {
            unpin_link(&link_pin(&self.pin_dir, iface));
        }
        self.new_links.clear();
        self.unpinned_links.clear();
        for name in PINNED_MAPS {
            remove_pin(&self.pin_dir.join(name));
            remove_pin(&pending_pin(&self.pin_dir, name));
        }
        match std::fs::remove_dir(&self.pin_dir) {
            Ok(()) => info!(dir = %self.pin_dir.display(), "removed pins"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => info!(dir = %self.pin_dir.display(), error = %e, "pin directory kept (other pins in it)"),
        }
        self.committed = true;
        info!("datapath detached and released");
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

/// Whether a `KA_STATS` definition is the layout of a ka before issue 15: a per-CPU array
/// with one `u64` per counter (now one per-CPU [`Counters`] entry).
fn is_per_counter_stats(def: &MapDef) -> bool {
    def.map_type == aya::maps::MapType::PerCpuArray as u32 && def.key_size == 4 && def.value_size == 8
}

/// The earlier layout's values, `per_counter[counter][cpu]`, as one [`Counters`] per CPU
/// added to `current` (what the new map already counted); counters beyond this build's
/// [`COUNTER_COUNT`] are dropped (pure).
fn fold_per_counter_stats(per_counter: &[Vec<u64>], mut current: Vec<Counters>) -> Vec<Counters> {
    for (i, cpus) in per_counter.iter().enumerate().take(COUNTER_COUNT as usize) {
        for (cpu, v) in cpus.iter().enumerate() {
            if let Some(c) = current.get_mut(cpu) {
                c[i] = c[i].wrapping_add(*v);
            }
        }
    }
    current
}

/// Folds an earlier ka's per-counter `KA_STATS` (`old`) into this build's (`new`); returns
/// how many counters were read.
///
/// # Errors
/// A map cannot be read or written.
fn migrate_per_counter_stats(old: MapData, old_def: &MapDef, new: MapData) -> Result<usize, DatapathError> {
    let err = |e| DatapathError::Map { map: STATS_MAP, source: Box::new(e) };
    let old = PerCpuArray::<_, u64>::try_from(aya::maps::Map::PerCpuArray(old)).map_err(err)?;
    let per_counter = (0..old_def.max_entries.min(COUNTER_COUNT))
        .map(|i| old.get(&i, 0).map(|v| v.iter().copied().collect::<Vec<u64>>()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    let mut arr = PerCpuArray::<_, Counters>::try_from(aya::maps::Map::PerCpuArray(new)).map_err(err)?;
    let current: Vec<Counters> = arr.get(&0, 0).map_err(err)?.iter().copied().collect();
    let folded = fold_per_counter_stats(&per_counter, current);
    let values = aya::maps::PerCpuValues::try_from(folded).map_err(|e| err(aya::maps::MapError::SyscallError(aya::sys::SyscallError { call: "per-CPU values", io_error: e })))?;
    arr.set(0, values, 0).map_err(err)?;
    Ok(per_counter.len())
}

/// Whether a `KA_STATS_BUNDLES` definition is an earlier ka's: a per-CPU array of one entry
/// whose value holds fewer bundle slots than [`Bundles`].
fn is_shorter_bundles(def: &MapDef) -> bool {
    def.map_type == aya::maps::MapType::PerCpuArray as u32
        && def.key_size == 4
        && def.value_size.is_multiple_of(8)
        && (def.value_size as usize) < std::mem::size_of::<Bundles>()
}

/// Adds an earlier ka's bundle counts (`earlier[cpu][bundle]`) to the first slots of this
/// build's per-CPU values `current`; slots beyond [`Bundles`] are dropped (pure).
fn fold_bundles(earlier: &[Vec<u64>], mut current: Vec<Bundles>) -> Vec<Bundles> {
    for (cpu, words) in earlier.iter().enumerate() {
        if let Some(c) = current.get_mut(cpu) {
            for (slot, v) in c.iter_mut().zip(words) {
                *slot = slot.wrapping_add(*v);
            }
        }
    }
    current
}

/// Folds an earlier ka's shorter `KA_STATS_BUNDLES` (`old`) into this build's (`new`); returns
/// how many bundle slots it had.
///
/// # Errors
/// A map cannot be read or written.
fn migrate_bundles(old: &MapData, old_def: &MapDef, new: MapData) -> Result<usize, DatapathError> {
    let err = |e| DatapathError::Map { map: STATS_BUNDLES_MAP, source: Box::new(e) };
    let io = |e: io::Error| err(aya::maps::MapError::SyscallError(aya::sys::SyscallError { call: "bpf_map_lookup_elem", io_error: e }));
    let earlier = pins::read_per_cpu_words(old.fd().as_fd(), 0, old_def.value_size).map_err(io)?;
    let mut arr = PerCpuArray::<_, Bundles>::try_from(aya::maps::Map::PerCpuArray(new)).map_err(err)?;
    let current: Vec<Bundles> = arr.get(&0, 0).map_err(err)?.iter().copied().collect();
    let folded = fold_bundles(&earlier, current);
    let values = aya::maps::PerCpuValues::try_from(folded).map_err(|e| err(aya::maps::MapError::SyscallError(aya::sys::SyscallError { call: "per-CPU values", io_error: e })))?;
    arr.set(0, values, 0).map_err(err)?;
    Ok(old_def.value_size as usize / 8)
}

/// Reads and sums every counter of `KA_STATS` in a loaded object (also used by the fixture
/// tests and benchmarks on their own loads).
///
/// # Errors
/// The map is missing or cannot be read.
pub fn read_counters(ebpf: &Ebpf) -> Result<BTreeMap<&'static str, u64>, DatapathError> {
    let map = ebpf.map(STATS_MAP).ok_or(DatapathError::MissingMap { map: STATS_MAP })?;
    let arr = PerCpuArray::<_, Counters>::try_from(map)
        .map_err(|e| DatapathError::Map { map: STATS_MAP, source: Box::new(e) })?;
    let per_cpu = arr.get(&0, 0).map_err(|e| DatapathError::Map { map: STATS_MAP, source: Box::new(e) })?;
    let err = |e| DatapathError::Map { map: STATS_BUNDLES_MAP, source: Box::new(e) };
    let map = ebpf.map(STATS_BUNDLES_MAP).ok_or(DatapathError::MissingMap { map: STATS_BUNDLES_MAP })?;
    let bundles = PerCpuArray::<_, Bundles>::try_from(map).map_err(err)?.get(&0, 0).map_err(err)?;
    Ok(sum_counters(per_cpu.iter(), bundles.iter()))
}

/// Every counter by name, summed over the per-CPU [`Counters`], each bundle's counts added to
/// its counters (`ka_common::stats::add_bundles`).
pub fn sum_counters<'a>(per_cpu: impl Iterator<Item = &'a Counters>, bundles: impl Iterator<Item = &'a Bundles>) -> BTreeMap<&'static str, u64> {
    let mut sum = [0u64; COUNTER_COUNT as usize];
    for cpu in per_cpu {
        for (s, v) in sum.iter_mut().zip(cpu) {
            *s = s.wrapping_add(*v);
        }
    }
    for b in bundles {
        add_bundles(&mut sum, b);
    }
    Counter::ALL.iter().map(|c| (c.name(), sum[c.index() as usize])).collect()
}

/// Unpins a link: once the last reference (ours) closes, the program is detached.
fn unpin_link(path: &Path) {
    match PinnedLink::from_pin(path) {
        Ok(p) => {
            if let Err(e) = p.unpin() {
                warn!(pin = %path.display(), error = %e, "cannot unpin link");
            }
        }
        Err(e) => {
            warn!(pin = %path.display(), error = %e, "cannot open link pin; removing it");
            remove_pin(path);
        }
    }
}

/// The `ka_xdp` program of a loaded object.
fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, DatapathError> {
    ebpf.program_mut(XDP_PROGRAM)
        .ok_or(DatapathError::Program {
            program: XDP_PROGRAM,
            source: Box::new(aya::programs::ProgramError::NotLoaded),
        })?
        .try_into()
        .map_err(|e| DatapathError::Program { program: XDP_PROGRAM, source: Box::new(e) })
}

/// Loads (verifies) `ka_xdp` and the connection-table sweeper.
fn load_program(ebpf: &mut Ebpf) -> Result<(), DatapathError> {
    match aya_log::EbpfLogger::init(ebpf) {
        Ok(logger) => std::mem::forget(logger),
        Err(e) => tracing::debug!(error = %e, "no eBPF logs"),
    }
    xdp_program(ebpf)?
        .load()
        .map_err(|e| DatapathError::Program { program: XDP_PROGRAM, source: Box::new(e) })?;
    // The connection-table sweeper, run by the dataplane through BPF_PROG_TEST_RUN.
    let sweep = ka_common::sched::SWEEP_PROGRAM;
    let prog: &mut Xdp = ebpf
        .program_mut(sweep)
        .ok_or(DatapathError::Program { program: sweep, source: Box::new(aya::programs::ProgramError::NotLoaded) })?
        .try_into()
        .map_err(|e| DatapathError::Program { program: sweep, source: Box::new(e) })?;
    prog.load().map_err(|e| DatapathError::Program { program: sweep, source: Box::new(e) })
}

/// Attaches the program to `iface` anew, choosing the XDP mode from `mode`; returns the link
/// and the mode that succeeded.
fn attach_new(
    prog: &mut Xdp,
    iface: &str,
    mode: AttachMode,
) -> Result<(aya::programs::xdp::XdpLinkId, &'static str, String), DatapathError> {
    let a = crate::xdp_mode::attach(prog, XDP_PROGRAM, iface, mode, true).map_err(|e| DatapathError::Attach {
        program: XDP_PROGRAM,
        iface: iface.to_owned(),
        mode,
        source: Box::new(e),
    })?;
    Ok((a.id, a.mode, a.reason))
}

impl Drop for Datapath {
    fn drop(&mut self) {
        if !self.committed && !self.adopting() {
            // A first start that failed: nothing ran before us, leave nothing behind.
            for a in &self.attachments {
                unpin_link(&link_pin(&self.pin_dir, &a.iface));
            }
            for name in PINNED_MAPS {
                remove_pin(&self.pin_dir.join(name));
            }
            let _ = std::fs::remove_dir(&self.pin_dir);
            return;
        }
        if !self.committed {
            // A start that failed while adopting: the earlier program keeps running on its pins.
            restore_pending(&self.pin_dir, &self.pending);
        }
        // The pinned links keep the program attached and the pinned maps keep the tables.
        info!(attachments = self.attachments.len(), dir = %self.pin_dir.display(), "datapath left running on its pins");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An earlier ka's per-counter values (`[counter][cpu]`) land on each CPU's `Counters` at
    /// the counter's index, added to what the new map counted; extra CPUs or counters of the
    /// old map are dropped, not written out of bounds.
    #[test]
    fn per_counter_stats_fold_into_per_cpu_counters() {
        let mut current = vec![[0u64; COUNTER_COUNT as usize]; 2];
        current[1][3] = 5;
        let mut old = vec![vec![0u64; 3]; COUNTER_COUNT as usize + 2];
        old[3] = vec![10, 20, 30];
        old[0] = vec![1, 2, 3];
        old[COUNTER_COUNT as usize + 1] = vec![7, 7, 7];
        let folded = fold_per_counter_stats(&old, current);
        assert_eq!(folded.len(), 2);
        assert_eq!((folded[0][0], folded[1][0]), (1, 2));
        assert_eq!((folded[0][3], folded[1][3]), (10, 25));
        assert_eq!(folded.iter().map(|c| c.iter().sum::<u64>()).sum::<u64>(), 1 + 2 + 10 + 25);
    }

    #[test]
    fn only_the_per_counter_layout_is_folded() {
        let def = |value_size, map_type| MapDef { map_type, key_size: 4, value_size, max_entries: COUNTER_COUNT, flags: 0 };
        let per_cpu = aya::maps::MapType::PerCpuArray as u32;
        assert!(is_per_counter_stats(&def(8, per_cpu)));
        assert!(!is_per_counter_stats(&def(8 * COUNTER_COUNT, per_cpu)), "the current layout");
        assert!(!is_per_counter_stats(&def(8, aya::maps::MapType::Array as u32)));
    }

    /// An earlier ka's shorter bundle values land in the first slots of each CPU's value,
    /// added to what the new map counted, and read as the same counters as before.
    #[test]
    fn shorter_bundles_fold_into_the_first_slots() {
        use ka_common::stats::{BUNDLE_NOT_VIP_TCP4, BUNDLE_NOT_VIP_UDP4, BUNDLE_SLOTS};
        let mut current = vec![[0u64; BUNDLE_SLOTS]; 2];
        current[0][BUNDLE_NOT_VIP_TCP4] = 1;
        current[1][BUNDLE_SLOTS - 1] = 4;
        // Two slots per CPU, and a CPU the new map does not have.
        let earlier = vec![vec![100, 200], vec![300, 400], vec![9, 9]];
        let folded = fold_bundles(&earlier, current);
        assert_eq!(folded.len(), 2);
        assert_eq!((folded[0][BUNDLE_NOT_VIP_TCP4], folded[0][BUNDLE_NOT_VIP_UDP4]), (101, 200));
        assert_eq!((folded[1][BUNDLE_NOT_VIP_TCP4], folded[1][BUNDLE_NOT_VIP_UDP4], folded[1][BUNDLE_SLOTS - 1]), (300, 400, 4));
        let zero = [0u64; COUNTER_COUNT as usize];
        let sums = sum_counters([zero, zero].iter(), folded.iter());
        assert_eq!((sums["pass_not_vip"], sums["tcp"], sums["udp"]), (101 + 300 + 200 + 400, 401, 600));

        let def = |value_size| MapDef { map_type: aya::maps::MapType::PerCpuArray as u32, key_size: 4, value_size, max_entries: 1, flags: 0 };
        assert!(is_shorter_bundles(&def(16)), "the layout before the forwarding bundles");
        assert!(!is_shorter_bundles(&def(8 * BUNDLE_SLOTS as u32)), "the current layout");
        assert!(!is_shorter_bundles(&def(12)));
    }
}
