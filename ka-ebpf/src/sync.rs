//! Connection sync (`lvs_sync_daemon`, see `ka_common::sync`): while this node is MASTER, new
//! flows are pushed to the sync ring for userspace to send; on a BACKUP, the install program
//! writes the entries its MASTER sent with the datapath's own table code.

use core::mem::size_of;

use aya_ebpf::{bindings::xdp_action, helpers::bpf_ktime_get_ns, programs::XdpContext};
use ka_common::{
    lb::{ConnValue, FAMILY_V4, FAMILY_V6, METHOD_NAT, SVC_F_COUNT},
    stats::Counter,
    sync::{
        SyncEvent, SyncInstall, SYNC_EV_NEW, SYNC_INSTALL_BATCH,
        SYNC_INSTALL_CONN, SYNC_INSTALL_HDR, SYNC_INSTALL_TEMPLATE,
    },
};

use crate::{
    lookup::{conn_hash_of, conn_install, record_nat, service, sync_key4},
    maps::{KA_BACKENDS, KA_PERSIST, KA_SYNC_EVENTS},
    scratch::{self, Work},
    mem,
    ptr::ptr_at,
    stats,
};

/// Queues the flow in `w.key` and its backend `id` for the sync sender. The caller checked
/// `G_SYNC_MASTER`; a full ring is counted, the packet is forwarded all the same.
// Verifier/LLVM: a BPF-to-BPF call, off the path when sync is off (own stack frame).
#[inline(never)]
pub fn new_conn(w: &Work, id: u32) {
    match KA_SYNC_EVENTS.reserve::<SyncEvent>(0) {
        Some(mut e) => {
            let p = e.as_mut_ptr();
            // SAFETY: `p` is the reserved entry, valid for a whole SyncEvent; every field is
            // plain data and written here before the submit.
            unsafe {
                mem::copy(&mut (*p).key, &w.key);
                (*p).backend = id;
                (*p).kind = SYNC_EV_NEW;
            }
            e.submit(0);
            stats::inc(Counter::SyncEvent);
        }
        None => stats::inc(Counter::SyncEventLost),
    }
}

/// The install program's body: every [`SyncInstall`] record of the frame (after a
/// `SYNC_INSTALL_HDR`-byte header, at most `SYNC_INSTALL_BATCH`) is written to the tables.
/// Run by userspace through BPF_PROG_TEST_RUN; the verdict is meaningless.
#[inline(always)]
pub fn install(ctx: &XdpContext) -> u32 {
    let Some(w) = scratch::work() else {
        return xdp_action::XDP_ABORTED;
    };
    let mut i = 0;
    // Verifier: a bounded loop (each iteration's offset is a known constant).
    while i < SYNC_INSTALL_BATCH {
        let Some(rec) = ptr_at::<SyncInstall>(ctx, SYNC_INSTALL_HDR + i * size_of::<SyncInstall>()) else {
            break;
        };
        // SAFETY: bounds-checked by ptr_at; the records start 4-aligned in the frame.
        let (backend, kind) = unsafe { ((*rec).backend, (*rec).kind) };
        // SAFETY: as above.
        mem::copy(&mut w.key, unsafe { &(*rec).key });
        install_one(w, backend, kind);
        i += 1;
    }
    xdp_action::XDP_DROP
}

/// Writes one record (flow in `w.key`): a connection-table entry, and the NAT reverse entry
/// when the backend is NAT; or a persistence template.
// Verifier/LLVM: a BPF-to-BPF call, so the loop above carries one call, not the inlined body.
#[inline(never)]
fn install_one(w: &mut Work, backend: u32, kind: u32) {
    let family = w.key.family;
    let Some(b) = KA_BACKENDS.get(backend) else {
        stats::inc(Counter::SyncInstallBad);
        return;
    };
    if (family != FAMILY_V4 && family != FAMILY_V6) || b.family != family {
        stats::inc(Counter::SyncInstallBad);
        return;
    }
    sync_key4(w);
    match kind {
        SYNC_INSTALL_CONN => {
            let hash = conn_hash_of(w);
            let (uthreshold, nat) = (b.uthreshold, b.method == METHOD_NAT);
            // Exact key first, then a port-0 service of the VIP (the synced flow may be one).
            let svc = service(w, true);
            // SAFETY: a valid map value; only the flags and id are read.
            let counted = svc.is_some_and(|s| unsafe { (*s).flags } & SVC_F_COUNT != 0);
            conn_install(w, hash, backend, counted, uthreshold);
            if nat {
                let Some(svc) = svc else {
                    stats::inc(Counter::SyncInstallBad);
                    return;
                };
                mem::copy(&mut w.backend, b);
                // SAFETY: as above.
                w.svc.id = unsafe { (*svc).id };
                record_nat(w);
            }
        }
        SYNC_INSTALL_TEMPLATE => {
            // SAFETY: plain helper call.
            let now = unsafe { bpf_ktime_get_ns() };
            let v = ConnValue { backend, _pad: 0, last_seen_ns: now };
            let _ = KA_PERSIST.insert(&w.key, &v, 0);
        }
        _ => {
            stats::inc(Counter::SyncInstallBad);
            return;
        }
    }
    stats::inc(Counter::SyncInstalled);
}
