//! Connection synchronisation between directors (`lvs_sync_daemon`): what the XDP program
//! hands userspace about new connections on the MASTER, and what userspace hands the install
//! program on a BACKUP.
//!
//! ```text
//!   MASTER                                          BACKUP
//!   ka_xdp: new flow ──► KA_SYNC_EVENTS (ring) ──►  ka (userspace)
//!   (only while G_SYNC_MASTER is set)               decode, map real servers to local ids
//!   ka (userspace): backend id → real server        │
//!   address and port, IPVS sync v1 datagrams ─UDP─►│ batches of SyncInstall records
//!                                                   ▼
//!                                   ka_sync_install (BPF_PROG_TEST_RUN, never attached):
//!                                   connection table, NAT reverse table, persistence
//! ```
//!
//! The install program writes the tables with the datapath's own code (the connection table's
//! set/way placement, its clock, the NAT reverse key), so an installed entry is exactly what the
//! datapath would have written for the flow.

use crate::lb::FlowKey;

/// New connections for the sync sender, a ring buffer of [`SyncEvent`]. Per process, never
/// pinned.
pub const SYNC_EVENTS_MAP: &str = "KA_SYNC_EVENTS";
/// Size of [`SYNC_EVENTS_MAP`] in bytes: 1 MiB holds 18,724 events (56 bytes each with the
/// ring's 8-byte header), 187 ms of 100,000 new connections per second.
pub const SYNC_EVENTS_BYTES: u32 = 1 << 20;

/// The install program (run by userspace through BPF_PROG_TEST_RUN, never attached).
pub const SYNC_INSTALL_PROGRAM: &str = "ka_sync_install";
/// Most [`SyncInstall`] records in one run of [`SYNC_INSTALL_PROGRAM`]. The verifier checks the
/// record loop once per iteration, each with a whole connection-table insertion (its counts
/// and overload flags), so the batch is what keeps the program under 1M checked instructions.
pub const SYNC_INSTALL_BATCH: usize = 8;
/// Bytes before the first record of an install run (BPF_PROG_TEST_RUN wants at least an
/// Ethernet header's 14 bytes of XDP data; the records start 4-aligned).
pub const SYNC_INSTALL_HDR: usize = 16;

// The header is at least an Ethernet header (BPF_PROG_TEST_RUN's minimum for XDP) and keeps
// the records 4-aligned; a full run fits BPF_PROG_TEST_RUN's page minus XDP head and tail room.
const _: () = assert!(SYNC_INSTALL_HDR >= 14 && SYNC_INSTALL_HDR & 3 == 0);
const _: () = assert!(SYNC_INSTALL_HDR + SYNC_INSTALL_BATCH * core::mem::size_of::<SyncInstall>() < 3000);

/// [`SyncEvent::kind`]: a flow got a backend (new flow, persistence hit or reschedule).
pub const SYNC_EV_NEW: u32 = 1;

/// An entry of [`SYNC_EVENTS_MAP`]: a flow as seen on the wire and its backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SyncEvent {
    /// The client's flow to the VIP.
    pub key: FlowKey,
    /// Backend id (an index of `KA_BACKENDS`, local to this director).
    pub backend: u32,
    /// `SYNC_EV_*`.
    pub kind: u32,
}

/// [`SyncInstall::kind`]: a connection-table entry for `key` (and, when the backend is NAT, the
/// reverse entry of its replies).
pub const SYNC_INSTALL_CONN: u32 = 1;
/// [`SyncInstall::kind`]: a persistence template (`key` is the template: client masked, source
/// port 0).
pub const SYNC_INSTALL_TEMPLATE: u32 = 2;

/// One record of an install run, after a [`SYNC_INSTALL_HDR`]-byte header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SyncInstall {
    /// The flow (or the template).
    pub key: FlowKey,
    /// Local backend id.
    pub backend: u32,
    /// `SYNC_INSTALL_*`.
    pub kind: u32,
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: plain old data (bytemuck::Pod).
    unsafe impl aya::Pod for SyncEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SyncInstall {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(core::mem::size_of::<SyncEvent>(), 48);
        assert_eq!(core::mem::size_of::<SyncInstall>(), 48);
    }
}
