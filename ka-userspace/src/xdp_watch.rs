//! Watches the interfaces `ka_xdp` is attached to. An interface going down and up keeps its
//! program (an XDP attachment belongs to the device, not to its state): ka logs both. An
//! interface deleted takes its attachment with it (its bpf_link goes defunct); when an
//! interface of the same name appears again (a new ifindex: a driver reload, a veth re-created
//! by a container runtime or by the operator), ka attaches the program to it anew, pins the new
//! link in place of the old one, and logs it. The decision is the pure [`diff`]; [`spawn`] polls
//! the kernel through the netlink worker and hands the events to the daemon's main loop, which
//! owns the [`Datapath`] and applies them with [`apply`].

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::{
    datapath::{AttachMode, Datapath},
    net::netlink::{NetlinkClient, NetlinkError},
};

/// How often the attached interfaces are looked up.
pub const POLL: Duration = Duration::from_millis(500);

/// What the watcher last saw of an interface: its index, whether it is up and running, and its
/// MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Interface index.
    pub index: u32,
    /// `IFF_UP` and `IFF_RUNNING`.
    pub running: bool,
    /// Its MAC address (zeros when it has none).
    pub mac: [u8; 6],
}

/// A change of an attached interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The interface went down (or lost its carrier); the program stays attached.
    Down(String),
    /// The interface is up and running again.
    Up(String),
    /// The interface is gone; its attachment went with it.
    Gone(String),
    /// An interface of that name exists again, with another index: attach anew.
    Recreated {
        /// Interface name.
        iface: String,
        /// Its new index.
        index: u32,
        /// Whether it is up and running.
        running: bool,
    },
    /// The interface got another MAC address (`ip link set dev IFACE address ...`): frames to
    /// services now come addressed to it.
    MacChanged(String),
}

/// The event between what was seen of `iface` before (`None`: absent) and now (pure).
pub fn diff(iface: &str, before: Option<Seen>, now: Option<Seen>) -> Option<LinkEvent> {
    match (before, now) {
        (Some(_), None) => Some(LinkEvent::Gone(iface.to_owned())),
        (Some(b), Some(n)) if b.index != n.index => Some(LinkEvent::Recreated { iface: iface.to_owned(), index: n.index, running: n.running }),
        (None, Some(n)) => Some(LinkEvent::Recreated { iface: iface.to_owned(), index: n.index, running: n.running }),
        (Some(b), Some(n)) if b.running && !n.running => Some(LinkEvent::Down(iface.to_owned())),
        (Some(b), Some(n)) if !b.running && n.running => Some(LinkEvent::Up(iface.to_owned())),
        (Some(b), Some(n)) if b.mac != n.mac => Some(LinkEvent::MacChanged(iface.to_owned())),
        _ => None,
    }
}

/// The running watcher; dropping it stops the task.
#[derive(Debug)]
pub struct Watcher {
    task: tokio::task::JoinHandle<()>,
    /// The events, in order.
    pub events: mpsc::Receiver<LinkEvent>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `ifaces` (the attached interfaces, by name) every [`POLL`].
pub fn spawn(netlink: NetlinkClient, ifaces: Vec<String>) -> Watcher {
    let (tx, events) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        let mut seen: Vec<Option<Seen>> = Vec::with_capacity(ifaces.len());
        for name in &ifaces {
            seen.push(look(&netlink, name).await.ok().flatten());
        }
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for (name, before) in ifaces.iter().zip(seen.iter_mut()) {
                let now = match look(&netlink, name).await {
                    Ok(n) => n,
                    Err(NetlinkError::WorkerGone) => return,
                    // A failed or timed-out request says nothing of the interface: next poll.
                    Err(e) => {
                        warn!(iface = %name, error = %e, "looking up an XDP interface failed");
                        continue;
                    }
                };
                if let Some(ev) = diff(name, *before, now) {
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
                *before = now;
            }
        }
    });
    Watcher { task, events }
}

/// `iface` as the kernel has it now; `None` when it does not exist.
async fn look(netlink: &NetlinkClient, iface: &str) -> Result<Option<Seen>, NetlinkError> {
    match netlink.link(iface).await {
        Ok(l) => Ok(Some(Seen { index: l.index, running: l.running, mac: <[u8; 6]>::try_from(l.mac.as_slice()).unwrap_or_default() })),
        Err(NetlinkError::NoSuchLink(_)) => Ok(None),
        Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Logs `ev` and, for a re-created interface, attaches the program to it anew in `mode`.
/// Returns whether the datapath's attachments changed.
pub fn apply(ev: &LinkEvent, datapath: Option<&mut Datapath>, mode: AttachMode) -> bool {
    match ev {
        LinkEvent::Down(iface) => {
            warn!(iface = %iface, "XDP interface down: the program stays attached; nothing is received there until it is up");
            false
        }
        LinkEvent::Up(iface) => {
            info!(iface = %iface, "XDP interface up again: the program is still attached");
            false
        }
        LinkEvent::MacChanged(iface) => {
            info!(iface = %iface, "XDP interface has a new MAC address: the destination-MAC check follows it");
            false
        }
        LinkEvent::Gone(iface) => {
            warn!(iface = %iface, "XDP interface gone: its attachment went with it; the program is attached again when the interface returns");
            false
        }
        LinkEvent::Recreated { iface, index, running } => {
            let Some(dp) = datapath else { return false };
            match dp.reattach(iface, mode) {
                Ok(a) => {
                    info!(iface = %iface, ifindex = index, mode = a.mode, running, "XDP interface re-created: XDP re-attached");
                    true
                }
                Err(e) => {
                    error!(iface = %iface, ifindex = index, error = %e, "XDP interface re-created, but attaching the program failed: nothing is load-balanced there");
                    false
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each change of index, state or MAC is one event; nothing else is.
    #[test]
    fn link_changes_become_events() {
        let s = |index, running| Some(Seen { index, running, mac: [2, 0, 0, 0, 0, 1] });
        let new_mac = |index, running| Some(Seen { index, running, mac: [2, 0, 0, 0, 0, 2] });
        let re = |index, running| Some(LinkEvent::Recreated { iface: "eth0".into(), index, running });
        type Case = (&'static str, Option<Seen>, Option<Seen>, Option<LinkEvent>);
        let cases: [Case; 12] = [
            ("steady up", s(3, true), s(3, true), None),
            ("steady down", s(3, false), s(3, false), None),
            ("still absent", None, None, None),
            ("down", s(3, true), s(3, false), Some(LinkEvent::Down("eth0".into()))),
            ("up", s(3, false), s(3, true), Some(LinkEvent::Up("eth0".into()))),
            ("deleted", s(3, true), None, Some(LinkEvent::Gone("eth0".into()))),
            ("re-created while we looked away", s(3, true), s(9, true), re(9, true)),
            ("back after gone", None, s(9, false), re(9, false)),
            ("re-created, down", s(3, false), s(9, false), re(9, false)),
            ("new MAC", s(3, true), new_mac(3, true), Some(LinkEvent::MacChanged("eth0".into()))),
            ("new MAC while down", s(3, false), new_mac(3, false), Some(LinkEvent::MacChanged("eth0".into()))),
            ("re-created with a new MAC", s(3, true), new_mac(9, true), re(9, true)),
        ];
        for (name, before, now, want) in cases {
            assert_eq!(diff("eth0", before, now), want, "{name}");
        }
    }
}
