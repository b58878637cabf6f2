//! A trivial `XDP_PASS` program attached natively to a veth, for labs whose XDP programs
//! transmit out of a veth.
//!
//! On a veth, a frame sent with `XDP_TX` goes into the peer's XDP ring, and the kernel wakes
//! the peer's NAPI for it only when the peer itself runs an XDP program (`veth_xdp_flush`
//! checks the peer queue's `xdp_prog`; NAPI enabled through GRO is not enough, so the frames
//! sit in the ring and are never delivered). `XDP_REDIRECT` flushes the peer queue directly and
//! works with GRO. Real NICs have neither limitation. `ka run --xdp-mode auto` knows this and
//! attaches in generic mode on such a veth, so labs need nothing on the peer; a lab that
//! deliberately runs ka in native mode (benchmarks, for speed) puts this program on the peer
//! of every veth that runs ka's datapath, like a switch port that receives.
//!
//! The program is two instructions (`r0 = XDP_PASS; exit`) loaded with `bpf(2)` and attached
//! with a BPF link, so it goes away when the returned [`XdpPass`] is dropped or the interface
//! disappears, and nothing is pinned.

use std::{
    ffi::CString,
    io,
    os::fd::{FromRawFd as _, OwnedFd},
};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// An attached `XDP_PASS` program; dropping it detaches the program.
#[derive(Debug)]
pub struct XdpPass {
    _link: OwnedFd,
    _prog: OwnedFd,
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<OwnedFd> {
    // SAFETY: bpf(2) with a zero-filled attribute block of the size we pass.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("fd out of range"))?;
    // SAFETY: a fresh descriptor returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn put(attr: &mut [u8; 128], off: usize, bytes: &[u8]) {
    attr[off..off + bytes.len()].copy_from_slice(bytes);
}

/// Attaches an `XDP_PASS` program natively (driver mode) to `ifname` in the calling thread's
/// network namespace (see [`crate::netns::Netns::enter`]).
///
/// # Errors
/// The interface does not exist, or the kernel refuses the program or the link.
pub fn attach_pass(ifname: &str) -> io::Result<XdpPass> {
    let name = CString::new(ifname).map_err(|_| io::Error::other("interface name with NUL"))?;
    // SAFETY: a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error());
    }
    // r0 = 2 (XDP_PASS): BPF_ALU64 | BPF_MOV | BPF_K; then BPF_JMP | BPF_EXIT.
    let insns: [u64; 2] = [u64::from_le_bytes([0xb7, 0, 0, 0, 2, 0, 0, 0]), u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0])];
    let license = b"GPL\0";
    let mut attr = [0u8; 128];
    put(&mut attr, 0, &BPF_PROG_TYPE_XDP.to_ne_bytes());
    put(&mut attr, 4, &2u32.to_ne_bytes());
    put(&mut attr, 8, &(insns.as_ptr() as u64).to_ne_bytes());
    put(&mut attr, 16, &(license.as_ptr() as u64).to_ne_bytes());
    put(&mut attr, 48, b"ka_lab_pass");
    put(&mut attr, 68, &BPF_XDP.to_ne_bytes());
    let prog = bpf(BPF_PROG_LOAD, &mut attr)?;
    let mut attr = [0u8; 128];
    let prog_fd = u32::try_from(std::os::fd::AsRawFd::as_raw_fd(&prog)).map_err(|_| io::Error::other("fd"))?;
    put(&mut attr, 0, &prog_fd.to_ne_bytes());
    put(&mut attr, 4, &ifindex.to_ne_bytes());
    put(&mut attr, 8, &BPF_XDP.to_ne_bytes());
    put(&mut attr, 12, &XDP_FLAGS_DRV_MODE.to_ne_bytes());
    let link = bpf(BPF_LINK_CREATE, &mut attr)?;
    Ok(XdpPass { _link: link, _prog: prog })
}
