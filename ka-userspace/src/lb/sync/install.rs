//! The datapath ends of connection sync: the MASTER's reader of the sync ring, the BACKUP's
//! installer (runs of the install program through BPF_PROG_TEST_RUN), and the flag that turns
//! the ring on.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use aya::{
    maps::{Array, MapData, RingBuf},
    programs::{ProgramFd, Xdp},
    Ebpf,
};
use ka_common::{
    lb::{Globals, GLOBALS_MAP, G_SYNC_MASTER},
    sync::{SyncEvent, SyncInstall, SYNC_EVENTS_MAP, SYNC_INSTALL_BATCH, SYNC_INSTALL_HDR, SYNC_INSTALL_PROGRAM},
};

use super::SyncError;

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> SyncError {
    move |e| SyncError::Map { map, source: Box::new(e) }
}

/// Sets or clears `G_SYNC_MASTER`: while set, the datapath pushes every new flow to the sync
/// ring. Set while this node is MASTER of the sync instance.
///
/// # Errors
/// The globals map cannot be read or written.
pub fn set_master_flag(ebpf: &mut Ebpf, on: bool) -> Result<(), SyncError> {
    let map = ebpf.map_mut(GLOBALS_MAP).ok_or(SyncError::MissingMap(GLOBALS_MAP))?;
    let mut arr: Array<_, Globals> = Array::try_from(map).map_err(map_err(GLOBALS_MAP))?;
    let mut g = arr.get(&0, 0).map_err(map_err(GLOBALS_MAP))?;
    let flags = if on { g.flags | G_SYNC_MASTER } else { g.flags & !G_SYNC_MASTER };
    if flags != g.flags {
        g.flags = flags;
        arr.set(0, g, 0).map_err(map_err(GLOBALS_MAP))?;
    }
    Ok(())
}

/// The MASTER's end of the sync ring (the map is taken out of the object).
pub struct SyncRing {
    ring: RingBuf<MapData>,
}

impl SyncRing {
    /// Takes `KA_SYNC_EVENTS` out of `ebpf`.
    ///
    /// # Errors
    /// The map is missing (or already taken) or is not a ring buffer.
    pub fn take(ebpf: &mut Ebpf) -> Result<SyncRing, SyncError> {
        let map = ebpf.take_map(SYNC_EVENTS_MAP).ok_or(SyncError::MissingMap(SYNC_EVENTS_MAP))?;
        let ring = RingBuf::try_from(map).map_err(map_err(SYNC_EVENTS_MAP))?;
        Ok(SyncRing { ring })
    }

    /// Appends every pending event to `out` without blocking, at most `max`; returns how many.
    /// Entries of another size (never written by ka_xdp) are skipped.
    pub fn drain(&mut self, out: &mut Vec<SyncEvent>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(item) = self.ring.next() else { break };
            if let Ok(ev) = bytemuck::try_pod_read_unaligned::<SyncEvent>(&item) {
                out.push(ev);
                n += 1;
            }
        }
        n
    }
}

impl AsRawFd for SyncRing {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

/// The BACKUP's installer: hands records to `ka_sync_install`, which writes them with the
/// datapath's own table code.
pub struct Installer {
    fd: ProgramFd,
    buf: Vec<u8>,
}

impl Installer {
    /// Loads (verifies) the install program of `ebpf`, sharing its maps.
    ///
    /// # Errors
    /// The program is missing or the verifier refuses it.
    pub fn load(ebpf: &mut Ebpf) -> Result<Installer, SyncError> {
        let prog: &mut Xdp = ebpf
            .program_mut(SYNC_INSTALL_PROGRAM)
            .ok_or(SyncError::MissingProgram)?
            .try_into()
            .map_err(|e| SyncError::Program(Box::new(e)))?;
        prog.load().map_err(|e| SyncError::Program(Box::new(e)))?;
        let fd = prog.fd().map_err(|e| SyncError::Program(Box::new(e)))?.try_clone().map_err(SyncError::TestRun)?;
        Ok(Installer { fd, buf: Vec::with_capacity(SYNC_INSTALL_HDR + SYNC_INSTALL_BATCH * size_of::<SyncInstall>()) })
    }

    /// Installs `records`, in runs of `SYNC_INSTALL_BATCH`.
    ///
    /// # Errors
    /// BPF_PROG_TEST_RUN failed (the records of that run and the later ones are not installed).
    pub fn install(&mut self, records: &[SyncInstall]) -> Result<(), SyncError> {
        for chunk in records.chunks(SYNC_INSTALL_BATCH) {
            self.buf.clear();
            self.buf.extend_from_slice(&u32::try_from(chunk.len()).unwrap_or(0).to_ne_bytes());
            self.buf.resize(SYNC_INSTALL_HDR, 0);
            for r in chunk {
                self.buf.extend_from_slice(bytemuck::bytes_of(r));
            }
            test_run(self.fd.as_fd(), &self.buf).map_err(SyncError::TestRun)?;
        }
        Ok(())
    }
}

/// `union bpf_attr`'s member for `BPF_PROG_TEST_RUN` (uapi `linux/bpf.h`).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `BPF_PROG_TEST_RUN` (uapi `enum bpf_cmd`).
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// Runs the program once over `data` (no output copied back). aya's `TestRun` needs the
/// program object, which stays in the datapath's `Ebpf`; this takes a clone of its fd.
fn test_run(fd: BorrowedFd<'_>, data: &[u8]) -> std::io::Result<()> {
    let mut attr = TestRunAttr {
        prog_fd: u32::try_from(fd.as_raw_fd()).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?,
        data_size_in: u32::try_from(data.len()).map_err(|_| std::io::Error::from_raw_os_error(libc::E2BIG))?,
        data_in: data.as_ptr() as u64,
        repeat: 1,
        ..Default::default()
    };
    // SAFETY: bpf(2) with a correctly sized, initialised attribute; `data` outlives the call
    // and the kernel only reads it (no data_out/ctx buffers are given).
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_TEST_RUN, &mut attr as *mut TestRunAttr, size_of::<TestRunAttr>()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
