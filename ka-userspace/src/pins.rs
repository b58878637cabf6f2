//! The pinned state of an instance under `/sys/fs/bpf/ka/NAME/`: which pinned maps a starting
//! daemon may adopt (a pure decision on layout fingerprints), and the migration of the entries
//! of a map whose layout changed (Cilium's `bpffs_migrate`: the old pin is set aside as
//! `NAME:pending` (bpffs refuses dots in names), the new map is filled from it, and the old pin goes only once the new
//! program runs).

use std::{
    collections::HashMap,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    path::{Path, PathBuf},
};

use aya::maps::{MapData, MapType};
use ka_common::maps::{layout_hash, meta_key, MapDef, META_KEY_LEN, META_MAP};

/// Errors of the pinned state.
#[derive(Debug, thiserror::Error)]
pub enum PinsError {
    /// A pinned map cannot be opened or described.
    #[error("pinned map {path}: {source}")]
    Open {
        /// Pin path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// A map element operation failed during a migration.
    #[error("migrating {map}: {call}: {source}")]
    Copy {
        /// Map name.
        map: String,
        /// The failing `bpf()` command.
        call: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// What to do with one map of the object at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapPlan {
    /// Nothing pinned: create and pin a new map.
    Fresh,
    /// A pinned map with the same layout: the new program uses it as is.
    Adopt,
    /// A pinned map with another layout: set it aside, create a new one, migrate what can be.
    Replace(ReplaceReason),
}

/// Why a pinned map is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplaceReason {
    /// The kernel definition (type, key, value, entries, flags) differs from the object's.
    Definition,
    /// Same kernel definition, but the recorded layout fingerprint differs (a
    /// `ka_common::maps::LAYOUT_REVISIONS` bump) or none was recorded.
    Revision,
}

impl ReplaceReason {
    /// For logs.
    pub fn name(self) -> &'static str {
        match self {
            ReplaceReason::Definition => "map definition changed",
            ReplaceReason::Revision => "layout revision changed or not recorded",
        }
    }
}

/// Decides what to do with the map `name` of the object (definition `want`), given the
/// definition of the map pinned under its name (if any) and the fingerprint recorded for it
/// in the metadata map (if any). The metadata map itself is adopted on its definition alone.
pub fn plan_map(name: &str, want: &MapDef, pinned: Option<&MapDef>, recorded: Option<u64>) -> MapPlan {
    match pinned {
        None => MapPlan::Fresh,
        Some(p) if p != want => MapPlan::Replace(ReplaceReason::Definition),
        Some(_) if name == META_MAP => MapPlan::Adopt,
        Some(_) if recorded == Some(layout_hash(name, want)) => MapPlan::Adopt,
        Some(_) => MapPlan::Replace(ReplaceReason::Revision),
    }
}

/// Whether the entries of a map with definition `old` can be copied into one with `new`
/// byte for byte: same type, key and value sizes and layout revision (only the number of
/// entries or the flags differ).
pub fn copyable(old: &MapDef, new: &MapDef, same_revision: bool) -> bool {
    same_revision && old.map_type == new.map_type && old.key_size == new.key_size && old.value_size == new.value_size
}

/// The kernel definition of a pinned map, if one is pinned at `path`.
///
/// # Errors
/// Something is pinned there but is not a readable map.
pub fn pinned_def(path: &Path) -> Result<Option<(MapData, MapDef)>, PinsError> {
    if !path.exists() {
        return Ok(None);
    }
    let err = |e| PinsError::Open { path: path.to_owned(), source: Box::new(e) };
    let data = MapData::from_pin(path).map_err(err)?;
    let info = data.info().map_err(err)?;
    let map_type = info.map_type().map_or(0, |t| t as u32);
    let def = MapDef {
        map_type,
        key_size: info.key_size(),
        value_size: info.value_size(),
        max_entries: info.max_entries(),
        flags: info.map_flags(),
    };
    Ok(Some((data, def)))
}

/// The fingerprints and link modes recorded in a pinned metadata map.
pub fn read_meta(meta: &MapData) -> HashMap<[u8; META_KEY_LEN], u64> {
    let mut out = HashMap::new();
    let fd = meta.fd().as_fd();
    let mut key: Option<[u8; META_KEY_LEN]> = None;
    for _ in 0..ka_common::maps::META_ENTRIES * 2 {
        let mut next = [0u8; META_KEY_LEN];
        if get_next_key(fd, key.as_ref().map(|k| k.as_slice()), &mut next).is_err() {
            break;
        }
        let mut v = [0u8; 8];
        if lookup(fd, &next, &mut v).is_ok() {
            out.insert(next, u64::from_ne_bytes(v));
        }
        key = Some(next);
    }
    out
}

/// The recorded fingerprint of `map`.
pub fn recorded_layout(meta: &HashMap<[u8; META_KEY_LEN], u64>, map: &str) -> Option<u64> {
    meta.get(&meta_key("layout", map)).copied()
}

/// Copies the entries of `old` into `new` (same type, key and value sizes): every key of a
/// hash map, the first `min(old, new)` slots of an array. Returns how many were copied; a
/// full new map stops the copy (the rest is counted as dropped by the caller).
///
/// # Errors
/// A lookup or update fails for another reason than a full map.
pub fn copy_entries(map: &str, old: BorrowedFd<'_>, new: BorrowedFd<'_>, def_old: &MapDef, def_new: &MapDef) -> Result<u64, PinsError> {
    let per_cpu = matches!(
        map_type_of(def_old.map_type),
        Some(MapType::PerCpuArray | MapType::PerCpuHash | MapType::LruPerCpuHash)
    );
    let cpus = if per_cpu { aya::util::nr_cpus().map_err(|(_, e)| copy_err(map, "nr_cpus", e))? } else { 1 };
    let vlen = if per_cpu { (def_old.value_size as usize).div_ceil(8) * 8 * cpus } else { def_old.value_size as usize };
    let mut value = vec![0u8; vlen];
    let klen = def_old.key_size as usize;
    let mut copied = 0;
    let is_array = matches!(map_type_of(def_old.map_type), Some(MapType::Array | MapType::PerCpuArray));
    if is_array {
        for i in 0..def_old.max_entries.min(def_new.max_entries) {
            let k = i.to_ne_bytes();
            lookup(old, &k, &mut value).map_err(|e| copy_err(map, "BPF_MAP_LOOKUP_ELEM", e))?;
            update(new, &k, &value).map_err(|e| copy_err(map, "BPF_MAP_UPDATE_ELEM", e))?;
            copied += 1;
        }
        return Ok(copied);
    }
    let mut key: Option<Vec<u8>> = None;
    let mut next = vec![0u8; klen];
    for _ in 0..u64::from(def_old.max_entries) + 1 {
        if get_next_key(old, key.as_deref(), &mut next).is_err() {
            break;
        }
        if lookup(old, &next, &mut value).is_ok() {
            match update(new, &next, &value) {
                Ok(()) => copied += 1,
                Err(e) if e.raw_os_error() == Some(libc::E2BIG) || e.raw_os_error() == Some(libc::ENOMEM) => break,
                Err(e) => return Err(copy_err(map, "BPF_MAP_UPDATE_ELEM", e)),
            }
        }
        key = Some(next.clone());
    }
    Ok(copied)
}

/// Entry `index` of a per-CPU map whose values are `value_size` bytes of `u64` words: one
/// vector of words per possible CPU (an earlier layout read without its Rust type).
///
/// # Errors
/// The CPU count or the lookup fails.
pub fn read_per_cpu_words(fd: BorrowedFd<'_>, index: u32, value_size: u32) -> io::Result<Vec<Vec<u64>>> {
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
    // The kernel rounds each CPU's value up to 8 bytes.
    let words = (value_size as usize).div_ceil(8);
    let mut value = vec![0u8; words * 8 * cpus];
    lookup(fd, &index.to_ne_bytes(), &mut value)?;
    Ok(value
        .chunks_exact(words * 8)
        .map(|cpu| cpu.chunks_exact(8).map(|w| u64::from_ne_bytes(w.try_into().unwrap_or([0; 8]))).collect())
        .collect())
}

fn copy_err(map: &str, call: &'static str, source: io::Error) -> PinsError {
    PinsError::Copy { map: map.to_owned(), call, source }
}

fn map_type_of(t: u32) -> Option<MapType> {
    [
        MapType::Hash,
        MapType::Array,
        MapType::PerCpuHash,
        MapType::PerCpuArray,
        MapType::LruHash,
        MapType::LruPerCpuHash,
    ]
    .into_iter()
    .find(|m| *m as u32 == t)
}

/// `union bpf_attr` for the element commands.
#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;

fn bpf_elem(cmd: libc::c_long, fd: BorrowedFd<'_>, key: *const u8, value: u64) -> io::Result<()> {
    let attr = ElemAttr {
        map_fd: u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX),
        _pad: 0,
        key: key as u64,
        value,
        flags: 0,
    };
    // SAFETY: the attribute points at buffers the callers size from the map's key and value
    // sizes; the kernel reads and writes within them only.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, &attr as *const ElemAttr, std::mem::size_of::<ElemAttr>()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn lookup(fd: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<()> {
    bpf_elem(BPF_MAP_LOOKUP_ELEM, fd, key.as_ptr(), value.as_mut_ptr() as u64)
}

fn update(fd: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> io::Result<()> {
    bpf_elem(BPF_MAP_UPDATE_ELEM, fd, key.as_ptr(), value.as_ptr() as u64)
}

fn get_next_key(fd: BorrowedFd<'_>, key: Option<&[u8]>, next: &mut [u8]) -> io::Result<()> {
    let k = key.map_or(std::ptr::null(), <[u8]>::as_ptr);
    bpf_elem(BPF_MAP_GET_NEXT_KEY, fd, k, next.as_mut_ptr() as u64)
}

/// `union bpf_attr` for the batch commands.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Reads `count` consecutive `u32` values of an array map from index `start`: one
/// `BPF_MAP_LOOKUP_BATCH` (Linux 5.6+), or one lookup per slot where batches are refused.
/// Indexes past the end of the map are not returned.
///
/// # Errors
/// A lookup fails.
pub fn read_u32_array(fd: BorrowedFd<'_>, start: u32, count: u32) -> io::Result<Vec<u32>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let n = count as usize;
    let mut keys = vec![0u32; n];
    let mut values = vec![0u32; n];
    // The batch starts after `in_batch` (the kernel walks with get_next_key); none: index 0.
    let prev = start.wrapping_sub(1);
    let mut out = 0u32;
    let mut attr = BatchAttr {
        in_batch: if start == 0 { 0 } else { std::ptr::addr_of!(prev) as u64 },
        out_batch: std::ptr::addr_of_mut!(out) as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count,
        map_fd: u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX),
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: `keys` and `values` hold `count` elements of the map's key and value size (4
    // bytes each for a u32 array); `prev` and `out` are 4-byte keys; the kernel writes within
    // them only.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_LOOKUP_BATCH, std::ptr::addr_of_mut!(attr), std::mem::size_of::<BatchAttr>()) };
    let err = (rc < 0).then(io::Error::last_os_error);
    match err.as_ref().and_then(io::Error::raw_os_error) {
        // ENOENT: the end of the map came first; `count` says how many were read.
        None | Some(libc::ENOENT) => {
            let got = (attr.count as usize).min(n);
            if keys[..got].iter().enumerate().all(|(i, k)| *k == start.wrapping_add(i as u32)) {
                values.truncate(got);
                return Ok(values);
            }
        }
        // Kernels or map types without batches (EINVAL, ENOTSUPP): one lookup per slot.
        Some(libc::EINVAL | libc::EOPNOTSUPP | 524) => {}
        Some(_) => return Err(err.unwrap_or_else(io::Error::last_os_error)),
    }
    let mut out = Vec::with_capacity(n);
    for i in start..start.saturating_add(count) {
        let mut v = [0u8; 4];
        match lookup(fd, &i.to_ne_bytes(), &mut v) {
            Ok(()) => out.push(u32::from_ne_bytes(v)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEF: MapDef = MapDef { map_type: 1, key_size: 16, value_size: 8, max_entries: 64, flags: 0 };

    /// Nothing pinned → fresh; same definition and fingerprint → adopt; any difference →
    /// replace, with the reason.
    #[test]
    fn plan_follows_definition_and_fingerprint() {
        let h = layout_hash("KA_X", &DEF);
        assert_eq!(plan_map("KA_X", &DEF, None, Some(h)), MapPlan::Fresh);
        assert_eq!(plan_map("KA_X", &DEF, Some(&DEF), Some(h)), MapPlan::Adopt);
        assert_eq!(
            plan_map("KA_X", &DEF, Some(&MapDef { max_entries: 32, ..DEF }), Some(h)),
            MapPlan::Replace(ReplaceReason::Definition)
        );
        assert_eq!(plan_map("KA_X", &DEF, Some(&DEF), Some(h ^ 1)), MapPlan::Replace(ReplaceReason::Revision));
        assert_eq!(plan_map("KA_X", &DEF, Some(&DEF), None), MapPlan::Replace(ReplaceReason::Revision));
        // The metadata map records nothing about itself.
        assert_eq!(plan_map(META_MAP, &DEF, Some(&DEF), None), MapPlan::Adopt);
    }

    /// A range of an array map reads back in order, in one batch or slot by slot, and stops
    /// at the end of the map.
    #[test]
    fn u32_array_ranges_read_back() {
        #[repr(C)]
        struct CreateAttr {
            map_type: u32,
            key_size: u32,
            value_size: u32,
            max_entries: u32,
            map_flags: u32,
        }
        let attr = CreateAttr { map_type: MapType::Array as u32, key_size: 4, value_size: 4, max_entries: 1000, map_flags: 0 };
        // SAFETY: BPF_MAP_CREATE reads the attribute only.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, 0, std::ptr::addr_of!(attr), std::mem::size_of::<CreateAttr>()) };
        if fd < 0 {
            eprintln!("SKIP: cannot create a BPF map here: {}", io::Error::last_os_error());
            return;
        }
        // SAFETY: a new descriptor this test owns.
        let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(i32::try_from(fd).expect("fd")) };
        let fd = owned.as_fd();
        for i in 0..1000u32 {
            update(fd, &i.to_ne_bytes(), &(i * 3).to_ne_bytes()).expect("update");
        }
        assert_eq!(read_u32_array(fd, 0, 5).expect("read"), vec![0, 3, 6, 9, 12]);
        assert_eq!(read_u32_array(fd, 500, 3).expect("read"), vec![1500, 1503, 1506]);
        assert_eq!(read_u32_array(fd, 998, 10).expect("read"), vec![2994, 2997], "stops at the end");
        assert!(read_u32_array(fd, 7, 0).expect("read").is_empty());
        let all = read_u32_array(fd, 0, 1000).expect("read");
        assert!(all.iter().enumerate().all(|(i, v)| *v == 3 * i as u32));
    }

    #[test]
    fn only_size_compatible_maps_are_copied() {
        assert!(copyable(&DEF, &MapDef { max_entries: 128, ..DEF }, true));
        assert!(!copyable(&DEF, &MapDef { value_size: 16, ..DEF }, true));
        assert!(!copyable(&DEF, &MapDef { map_type: 9, ..DEF }, true));
        assert!(!copyable(&DEF, &DEF, false));
    }
}
