//! Live reload of the VRRP instances, as [`crate::reload`] plans it (keepalived 2.2): matched
//! instances keep their state machine, timers and tracker results and get their VIPs, routes
//! and rules diffed; deleted ones resign and notify DELETED; new ones start fresh. Everything
//! that can fail (interfaces, sockets, parameters) is resolved before anything changes.
//!
//! A reload never holds up an advert. Its cost is proportional to what changed: the daemon
//! sends only the new and changed instances' setups ([`ReloadRequest::new`], built off this
//! thread), an unchanged instance keeps its slot in the engine (with its timers, socket and
//! fast-path entry) and is not visited, and only the configuration order is rewritten. The
//! work that remains is cut into slices of about [`SLICE`] ([`Slices`]; a step is never cut, so
//! one that waits for the kernel, such as removing a VIP, can make a slice longer); between two
//! slices the engine serves what a turn of its loop would: timers due, received adverts,
//! sending.
//! The engine is consistent at every slice boundary: an instance not reached yet runs on as
//! before, one reached runs as the new configuration says.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::IpAddr,
    time::Duration,
};

use tokio::{sync::mpsc, time::Instant};
use tracing::{info, warn};

use super::{build_instance, link_of, setup::InstanceSetup, tracking, EngineError, EngineGlobals, Rt, RxPacket, SysView, SLOT_EXTRA_IF};
use crate::{
    reload::{InstancePlan, KeptInstance},
    vrrp::{Event, State, SyncGroup},
};

/// The longest stretch of reload work between two services of the engine's timers and
/// sockets (the engine's timers run on 1 ms ticks; the shortest advert interval is 10 ms).
pub const SLICE: Duration = Duration::from_millis(2);

/// One instance of the new configuration, as the engine needs it.
#[derive(Debug)]
pub enum NewInstance {
    /// Continues the running instance at this index of the running configuration, unchanged:
    /// the engine does not touch it.
    Unchanged {
        /// Index in the running configuration.
        old: usize,
    },
    /// Continues a running instance, with changes (VIPs, routes, settings or name).
    Changed {
        /// The match and its diff (boxed: most entries of a large reload are `Unchanged`).
        kept: Box<KeptInstance>,
        /// Its new setup.
        setup: Box<InstanceSetup>,
    },
    /// A new instance: starts fresh.
    Fresh(Box<InstanceSetup>),
}

/// A reload, from the daemon to the engine: only what changed.
#[derive(Debug)]
pub struct ReloadRequest {
    /// The new configuration's instances, in order.
    pub instances: Vec<NewInstance>,
    /// Running instances the new configuration drops: index in the running configuration,
    /// name.
    pub removed: Vec<(usize, String)>,
    /// For each address the reload may delete (the VIPs of removed and of changed instances),
    /// the running instances (index in the running configuration) that carry it after the
    /// reload: while one of them is MASTER, the address stays (keepalived #1854, #2364).
    pub holders: HashMap<IpAddr, Vec<usize>>,
    /// The new global settings (`events` and `firewall` are kept from the running engine).
    pub globals: EngineGlobals,
}

impl ReloadRequest {
    /// The request for `plan`, from the running configuration's instances `old` to `new`
    /// (pure; built on the caller's thread, so the engine never copies, compares or frees
    /// the setups of unchanged instances).
    pub fn new(old: &[InstanceSetup], new: Vec<InstanceSetup>, plan: InstancePlan, globals: EngineGlobals) -> ReloadRequest {
        let InstancePlan { kept, removed, .. } = plan;
        // Addresses a reload may delete: a removed instance's, or any of a changed one's (its
        // VIPs are diffed as resolved addresses, which may differ where the setups do not).
        let mut candidates: HashSet<IpAddr> = removed.iter().filter_map(|(o, _)| old.get(*o)).flat_map(all_vips).collect();
        candidates.extend(kept.iter().filter(|k| !k.unchanged()).filter_map(|k| old.get(k.old)).flat_map(all_vips));
        let mut holders: HashMap<IpAddr, Vec<usize>> = HashMap::new();
        if !candidates.is_empty() {
            for k in &kept {
                for a in new.get(k.new).into_iter().flat_map(all_vips).filter(|a| candidates.contains(a)) {
                    holders.entry(a).or_default().push(k.old);
                }
            }
        }
        let mut kept_of_new: Vec<Option<KeptInstance>> = vec![None; new.len()];
        for k in kept {
            if let Some(slot) = kept_of_new.get_mut(k.new) {
                *slot = Some(k);
            }
        }
        let instances = new
            .into_iter()
            .zip(kept_of_new)
            .map(|(s, k)| match k {
                Some(k) if k.unchanged() => NewInstance::Unchanged { old: k.old },
                Some(k) => NewInstance::Changed { kept: Box::new(k), setup: Box::new(s) },
                None => NewInstance::Fresh(Box::new(s)),
            })
            .collect();
        ReloadRequest { instances, removed, holders, globals }
    }

    /// Whether a MASTER will hold `addr` after the reload, given which running instances
    /// (index in the running configuration) are MASTER now.
    pub fn held(&self, addr: IpAddr, master: impl Fn(usize) -> bool) -> bool {
        self.holders.get(&addr).is_some_and(|olds| olds.iter().any(|o| master(*o)))
    }

    /// Checks that the request fits a running configuration of `running` instances: every
    /// running instance is continued or removed exactly once.
    fn check(&self, running: usize) -> Result<(), EngineError> {
        let mut seen = vec![false; running];
        let olds = self.instances.iter().filter_map(|n| match n {
            NewInstance::Unchanged { old } => Some(*old),
            NewInstance::Changed { kept, .. } => Some(kept.old),
            NewInstance::Fresh(_) => None,
        });
        for o in olds.chain(self.removed.iter().map(|(o, _)| *o)) {
            match seen.get_mut(o) {
                Some(s) if !*s => *s = true,
                _ => return Err(EngineError::ReloadMismatch { running }),
            }
        }
        if seen.iter().all(|s| *s) {
            Ok(())
        } else {
            Err(EngineError::ReloadMismatch { running })
        }
    }
}

/// Every virtual address of a setup, excluded ones included.
fn all_vips(s: &InstanceSetup) -> impl Iterator<Item = IpAddr> + '_ {
    s.vips.iter().chain(&s.excluded).map(|v| v.addr)
}

/// The addresses carried in an instance's adverts, and their wire form.
pub(super) fn advert_addrs(s: &InstanceSetup) -> (Vec<IpAddr>, Vec<u8>) {
    let v6 = s.params.family == ka_common::vrrp::Family::V6;
    let addrs: Vec<IpAddr> = s.vips.iter().map(|v| v.addr).filter(|a| a.is_ipv6() == v6).collect();
    let bytes = addrs
        .iter()
        .flat_map(|a| match a {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        })
        .collect();
    (addrs, bytes)
}

/// Cuts a long piece of work into slices of at most `len` (sans-IO: the caller passes the
/// time). After each step of work, [`Slices::spent`] says whether the slice is used up; the
/// caller then serves the engine and starts the next slice with [`Slices::resume`].
#[derive(Debug)]
pub(super) struct Slices {
    len: Duration,
    since: Instant,
    /// Slices ended so far.
    pub count: u32,
    /// The longest slice so far.
    pub longest: Duration,
}

impl Slices {
    /// A first slice starting at `now`.
    pub fn new(len: Duration, now: Instant) -> Slices {
        Slices { len, since: now, count: 0, longest: Duration::ZERO }
    }

    /// After a step finished at `now`: the slice is used up (and is counted as ended).
    pub fn spent(&mut self, now: Instant) -> bool {
        let took = now.saturating_duration_since(self.since);
        if took < self.len {
            return false;
        }
        self.end(took);
        true
    }

    /// The engine was served; the next slice starts at `now`.
    pub fn resume(&mut self, now: Instant) {
        self.since = now;
    }

    /// The work is done at `now`: the last slice ends.
    pub fn finish(&mut self, now: Instant) {
        self.end(now.saturating_duration_since(self.since));
    }

    fn end(&mut self, took: Duration) {
        self.count += 1;
        self.longest = self.longest.max(took);
    }
}

/// Where each running instance (by index in the running configuration) sits among the
/// engine's slots while a reload removes some: a removal moves the last slot into the freed one
/// (`swap_remove`), so only that one instance changes slot.
#[derive(Debug)]
pub(super) struct Slots {
    /// Slot → index in the running configuration.
    old_at: Vec<usize>,
    /// Index in the running configuration → slot.
    slot_of_old: Vec<usize>,
}

impl Slots {
    /// The slots of a running configuration: `order[o]` is the slot of its instance `o`, and
    /// every slot holds one instance.
    pub fn new(order: &[usize]) -> Slots {
        let mut old_at = vec![usize::MAX; order.len()];
        for (o, &e) in order.iter().enumerate() {
            if let Some(x) = old_at.get_mut(e) {
                *x = o;
            }
        }
        Slots { old_at, slot_of_old: order.to_vec() }
    }

    /// The slot of running instance `old` (not removed).
    pub fn slot(&self, old: usize) -> usize {
        self.slot_of_old[old]
    }

    /// Slot `e` is freed and the last slot moves into it: the slot that moved, unless `e` was
    /// the last.
    pub fn remove(&mut self, e: usize) -> Option<usize> {
        let last = self.old_at.len().checked_sub(1)?;
        self.old_at.swap_remove(e);
        if e == last {
            return None;
        }
        let o = self.old_at[e];
        self.slot_of_old[o] = e;
        Some(last)
    }
}

/// A sync group once slot `e` is freed and slot `last` moves into it: the deleted member
/// leaves, the moved one is renamed and keeps its status. `None`: the group has neither.
pub(super) fn regroup_removed(g: &SyncGroup<usize>, e: usize, last: usize) -> Option<SyncGroup<usize>> {
    if !g.members().any(|m| m == e || m == last) {
        return None;
    }
    let members: Vec<usize> = g.members().filter(|m| *m != e).map(|m| if m == last { e } else { m }).collect();
    Some(g.reindexed(&members, |n| Some(if n == e { last } else { n })))
}

/// How a reload went, for the log.
#[derive(Debug, Default)]
pub(super) struct ReloadStats {
    /// Instances added, changed (kept with changes) and removed.
    pub added: usize,
    /// See `added`.
    pub changed: usize,
    /// See `added`.
    pub removed: usize,
    /// Checking and building (nothing changed yet).
    pub checked: Duration,
    /// Slices of work, and the longest stretch without serving the timers.
    pub slices: u32,
    /// See `slices`.
    pub longest_slice: Duration,
}

impl super::Engine {
    /// Serves what a turn of the engine's loop would, between two slices of a reload: sends
    /// what is queued, lets the socket receivers and other tasks of this runtime run, fires
    /// the timers due and handles the adverts received meanwhile (bounded, as the loop does).
    async fn breathe(&mut self, rx: &mut mpsc::Receiver<Vec<RxPacket>>) {
        self.flush().await;
        tokio::task::yield_now().await;
        self.fire_timers().await;
        for _ in 0..16 {
            match rx.try_recv() {
                Ok(batch) => {
                    for p in batch {
                        self.packet(p).await;
                    }
                }
                Err(_) => break,
            }
        }
        self.flush().await;
        if let Some(r) = self.recorder.as_mut() {
            r.tick(super::fast::monotonic_now());
        }
    }

    /// Ends a step of reload work: when the slice is used up, serves the engine first.
    async fn step(&mut self, slices: &mut Slices, rx: &mut mpsc::Receiver<Vec<RxPacket>>) {
        if slices.spent(Instant::now()) {
            self.breathe(rx).await;
            slices.resume(Instant::now());
        }
    }

    /// Applies a reload, in slices (see the module's doc). On error nothing has changed.
    /// `env` is the kernel's view, read for this reload; `rx` the received adverts, served
    /// between slices.
    pub(super) async fn reload(&mut self, req: ReloadRequest, env: SysView, rx: &mut mpsc::Receiver<Vec<RxPacket>>) -> Result<ReloadStats, EngineError> {
        let started = Instant::now();
        self.flush().await;
        req.check(self.order.len())?;
        let mut slices = Slices::new(SLICE, Instant::now());
        let mut stats = ReloadStats { removed: req.removed.len(), ..ReloadStats::default() };

        // 1. Everything that can fail, before any running instance is touched: the changed
        // instances' parameters are checked and the new ones built. Kept instances that switch
        // to or from auth_type AH move to the other kind of socket (IP protocol 51 or 112),
        // opened now and taken once nothing can fail any more.
        let mut resocket: HashMap<usize, (usize, usize)> = HashMap::new();
        let mut fresh: HashMap<usize, Rt> = HashMap::new();
        for (n, ni) in req.instances.iter().enumerate() {
            match ni {
                NewInstance::Unchanged { .. } => continue,
                NewInstance::Changed { kept, setup: s } => {
                    stats.changed += 1;
                    let r = &self.inst[self.order[kept.old]];
                    let mut p = s.params.clone();
                    p.primary_addr = r.src;
                    p.validate().map_err(|source| EngineError::Params { instance: s.name.clone(), source })?;
                    if s.auth.ah_key().is_some() != r.setup.auth.ah_key().is_some() {
                        let (ifindex, vip_ifindex, src) = (r.ifindex, r.vip_ifindex, r.src);
                        let rx_sock = self.sockets.receiving(s, ifindex, src)?;
                        let tx_sock = self.sockets.sending(s, rx_sock, ifindex, vip_ifindex, src)?;
                        resocket.insert(kept.old, (rx_sock, tx_sock));
                    }
                }
                NewInstance::Fresh(s) => {
                    stats.added += 1;
                    let (r, _) = build_instance((**s).clone(), &env, &mut self.sockets, &self.netlink, self.fast_ifindexes.as_ref(), None).await?;
                    fresh.insert(n, r);
                }
            }
            self.step(&mut slices, rx).await;
        }
        self.sockets.spawn_receivers(&self.rx_tx);
        let n_socks = self.sockets.socks.len();
        self.outbox.resize_with(n_socks, Vec::new);
        self.outbox_owner.resize_with(n_socks, Vec::new);
        stats.checked = started.elapsed();

        // 2. Removed instances resign and leave their slot; `slots` follows the slots removals
        // move.
        let mut slots = Slots::new(&self.order);
        for (o, name) in &req.removed {
            let e = slots.slot(*o);
            let held = self.held_now(&req, &slots, self.inst[e].vips.iter().map(|v| v.addr));
            self.delete_instance(e, name, &held).await;
            self.remove_slot(e, &mut slots);
            self.step(&mut slices, rx).await;
        }

        // 3. Changed instances take their new settings.
        for ni in &req.instances {
            let NewInstance::Changed { kept, setup } = ni else { continue };
            let e = slots.slot(kept.old);
            let held = self.held_now(&req, &slots, self.inst[e].vips.iter().map(|v| v.addr));
            self.apply_kept(e, kept, setup, &env, &held).await;
            if let Some(&(rx_sock, tx_sock)) = resocket.get(&kept.old) {
                self.move_sockets(e, rx_sock, tx_sock);
            }
            self.step(&mut slices, rx).await;
        }

        // 4. The new order: new instances take new slots; sync groups, trackers and globals
        // follow the new configuration.
        let mut order = Vec::with_capacity(req.instances.len());
        for (n, ni) in req.instances.iter().enumerate() {
            match ni {
                NewInstance::Unchanged { old } => order.push(slots.slot(*old)),
                NewInstance::Changed { kept, .. } => order.push(slots.slot(kept.old)),
                NewInstance::Fresh(_) => {
                    let Some(r) = fresh.remove(&n) else { continue };
                    let e = self.inst.len();
                    self.by_vrid.insert((r.rx_sock, r.setup.params.vrid), e);
                    self.inst.push(r);
                    order.push(e);
                }
            }
        }
        self.order = order;
        // Start-up's record of who resumes as Master is about slots a reload reuses.
        self.resuming.clear();
        self.regroup(&req.globals);
        let ReloadRequest { instances, globals, .. } = req;
        let events = self.globals.events.take();
        // The firewall's tables stay those of the start (a reload renaming them is refused
        // before it gets here, as keepalived refuses it; see docs/config.md).
        let firewall = self.globals.firewall.clone();
        // The BFD runtime outlives reloads (it reloads its sessions itself).
        let bfd = self.globals.bfd.take();
        let mut globals = globals;
        // The thread keeps the priority max_auto_priority raised it to; GARP spacing starts
        // afresh with the new delay groups.
        globals.auto_priority.carry(&self.globals.auto_priority);
        // The link poller keeps reading the shared delays: hand it the new ones.
        if let (Ok(mut old), Ok(new)) = (self.globals.if_delays.write(), globals.if_delays.read()) {
            old.clone_from(&new);
        }
        globals.if_delays = self.globals.if_delays.clone();
        if let Ok(mut p) = self.pacers.lock() {
            p.clear();
        }
        let old_globals = std::mem::replace(&mut self.globals, EngineGlobals { events, firewall, bfd, ..globals });
        // Freed on a thread of its own: with a `track_file` per instance, the definitions are
        // tens of thousands of names and paths.
        // The notify FIFOs (and their scripts) stay when the reload does not change them.
        let fifos_changed = old_globals.fifos != self.globals.fifos;
        tokio::task::spawn_blocking(move || drop(old_globals));
        if fifos_changed {
            self.close_fifos();
            self.open_fifos();
        }
        let touched: Vec<(usize, bool)> = instances
            .iter()
            .zip(&self.order)
            .filter_map(|(ni, &e)| match ni {
                NewInstance::Unchanged { .. } => None,
                NewInstance::Changed { .. } => Some((e, false)),
                NewInstance::Fresh(_) => Some((e, true)),
            })
            .collect();
        // Trackers: new ones start; results known already (vrrp_script, files...) carry over.
        let new_keys: BTreeSet<_> =
            touched.iter().flat_map(|(e, _)| self.inst[*e].setup.track.iter().map(|(k, _)| k)).filter(|k| !self.tracked.contains(*k)).cloned().collect();
        if !new_keys.is_empty() {
            tracking::spawn(new_keys.clone(), &self.globals, self.netlink.clone(), self.track_tx.clone());
            self.tracked.extend(new_keys);
        }
        // promote_secondaries of new or changed instances (keepalived sets it at each instance's
        // init, a reload included); those ka set already read 1 and are not saved twice.
        let more = super::start_sysctls(touched.iter().map(|(e, _)| &self.inst[*e]), false);
        self.sysctls.extend(more);
        if self.no_accept.is_none() && touched.iter().any(|(e, _)| super::needs_firewall(&self.inst[*e])) {
            self.no_accept = Some(crate::net::firewall::NoAcceptWorker::spawn(self.globals.firewall.clone()));
        }
        // The VMACs of new instances go in the firewall's maps.
        if let Some(fw) = self.no_accept.as_ref() {
            fw.vmacs(touched.iter().filter(|(_, fresh)| *fresh).flat_map(|(e, _)| super::fw_vmacs(&self.inst[*e])).collect(), true);
        }
        // The instances are dropped here, on their last use, not with the request.
        drop(instances);
        self.step(&mut slices, rx).await;

        // 5. Changed instances re-evaluate their trackers; new ones start.
        self.fresh_slots = touched.iter().filter(|(_, f)| *f).map(|(e, _)| *e).collect();
        for (e, is_fresh) in touched {
            let before = self.inst[e].track.summary();
            self.retrack(e);
            self.sync_fast(e);
            if is_fresh {
                info!(instance = %self.inst[e].setup.name, "reload: new instance starting");
                self.dispatch(e, Event::Startup).await;
            }
            let after = self.inst[e].track.summary();
            if after != before || (is_fresh && after != Default::default()) {
                self.dispatch(e, Event::TrackerChanged(after)).await;
            }
            self.step(&mut slices, rx).await;
        }
        // fifo_write_vrrp_states_on_reload (keepalived's vrrp_init_state): the groups and the
        // instances the reload kept write their state again; new ones notify as they start.
        if self.globals.fifo_states_on_reload {
            let fresh: HashSet<usize> = self.fresh_slots.drain(..).collect();
            self.write_states(&fresh);
        }
        slices.finish(Instant::now());
        stats.slices = slices.count;
        stats.longest_slice = slices.longest;
        Ok(stats)
    }

    /// The addresses among `addrs` a MASTER holds after the reload, as the instances' states
    /// are now.
    fn held_now(&self, req: &ReloadRequest, slots: &Slots, addrs: impl Iterator<Item = IpAddr>) -> HashSet<IpAddr> {
        let master = |o: usize| self.inst.get(slots.slot(o)).is_some_and(|r| r.fsm.state() == State::Master);
        addrs.filter(|a| req.held(*a, master)).collect()
    }

    /// Frees the slot of deleted instance `e`: the last slot moves into it (see [`Slots`]),
    /// with its timers, its receive key and its sync-group membership.
    fn remove_slot(&mut self, e: usize, slots: &mut Slots) {
        for slot in 0..=SLOT_EXTRA_IF {
            self.arm(e, slot, None);
        }
        let key = (self.inst[e].rx_sock, self.inst[e].setup.params.vrid);
        if self.by_vrid.get(&key) == Some(&e) {
            self.by_vrid.remove(&key);
        }
        let last = self.inst.len() - 1;
        self.group_of.remove(&e);
        for (g, _, _, _) in &mut self.groups {
            if let Some(after) = regroup_removed(g, e, last) {
                *g = after;
            }
        }
        self.inst.swap_remove(e);
        if slots.remove(e).is_none() {
            return;
        }
        let r = &self.inst[e];
        for (slot, at) in r.armed.iter().enumerate() {
            if let Some(at) = at {
                self.timers.remove(&(*at, last, slot));
                self.timers.insert((*at, e, slot));
            }
        }
        let key = (r.rx_sock, r.setup.params.vrid);
        if self.by_vrid.get(&key) == Some(&last) {
            self.by_vrid.insert(key, e);
        }
        if let Some(g) = self.group_of.remove(&last) {
            self.group_of.insert(e, g);
        }
    }

    /// A kept instance switched to or from AH: its adverts move to the matching sockets.
    fn move_sockets(&mut self, e: usize, rx_sock: usize, tx_sock: usize) {
        let r = &mut self.inst[e];
        info!(instance = %r.setup.name, ah = r.setup.auth.ah_key().is_some(), "reload: authentication changed; adverts move to the matching socket");
        let vrid = r.setup.params.vrid;
        if self.by_vrid.get(&(r.rx_sock, vrid)) == Some(&e) {
            self.by_vrid.remove(&(r.rx_sock, vrid));
        }
        r.rx_sock = rx_sock;
        r.tx_sock = tx_sock;
        self.by_vrid.insert((rx_sock, vrid), e);
        if let (Some(fp), Some(key)) = (self.fast.as_mut(), r.fast_key) {
            fp.maps.remove(key);
        }
        r.fast_key = super::fast_key(self.fast_ifindexes.as_ref(), r.ifindex, &r.setup);
        r.fast_written = None;
    }

    /// Sync groups as the new configuration has them (`globals.groups`), members in
    /// configuration order; a group that was running keeps its members' last status.
    fn regroup(&mut self, globals: &EngineGlobals) {
        if globals.groups.is_empty() && self.groups.is_empty() {
            return;
        }
        let mut members: HashMap<&str, Vec<usize>> = HashMap::new();
        for &e in &self.order {
            if let Some(g) = self.inst[e].setup.sync_group.as_deref() {
                members.entry(g).or_default().push(e);
            }
        }
        let old_groups = std::mem::take(&mut self.groups);
        let mut groups = Vec::with_capacity(globals.groups.len());
        let mut group_of = HashMap::new();
        for (name, notify, smtp) in &globals.groups {
            let m = members.get(name.as_str()).cloned().unwrap_or_default();
            for e in &m {
                group_of.insert(*e, groups.len());
            }
            // Slots are stable across a reload: a member keeps its id.
            let group = match old_groups.iter().find(|g| g.1 == *name) {
                Some(g) => g.0.reindexed(&m, Some),
                None => SyncGroup::new(m),
            };
            groups.push((group, name.clone(), notify.clone(), *smtp));
        }
        self.groups = groups;
        self.group_of = group_of;
    }

    /// Rebuilds an instance's tracking from the last known tracker values (its tracked
    /// objects may have changed in the reload).
    fn retrack(&mut self, i: usize) {
        let r = &mut self.inst[i];
        let mut set = crate::vrrp::track::TrackSet::default();
        r.track_status.clear();
        for (key, w) in &r.setup.track {
            if let Some(v) = self.last_track.get(key) {
                let (c, label) = super::track_value(*v, *w);
                set.set(key.clone(), c);
                r.track_status.insert(key.clone(), label);
            }
        }
        r.track = set;
    }

    /// A reload deleted instance `i`: it resigns if MASTER (priority 0), removes its VIPs but
    /// those `held` by a MASTER after the reload, and notifies DELETED (`notify_deleted`) or
    /// FAULT, as keepalived does.
    async fn delete_instance(&mut self, i: usize, name: &str, held: &HashSet<IpAddr>) {
        info!(instance = %name, state = self.inst[i].fsm.state().name(), "reload: deleting the instance");
        // Leaving its sync group must not move the other members.
        self.group_of.remove(&i);
        self.no_accept_filter(i, false);
        self.inst[i].vips.retain(|v| !held.contains(&v.addr));
        self.dispatch(i, Event::Delete).await;
        self.flush().await;
        for slot in 0..=SLOT_EXTRA_IF {
            self.arm(i, slot, None);
        }
        if let (Some(fp), Some(key)) = (self.fast.as_mut(), self.inst[i].fast_key) {
            fp.maps.remove(key);
        }
        let r = &self.inst[i];
        if let Some(fw) = self.no_accept.as_ref() {
            fw.vmacs(super::fw_vmacs(r), false);
        }
        if r.setup.vmac.is_some() && r.vip_ifindex != r.ifindex {
            if let Err(e) = self.netlink.del_link(r.vip_ifindex).await {
                warn!(instance = %name, error = %e, "removing VMAC interface");
            }
        }
        for (_, idx) in &r.addr_vmacs {
            if let Err(e) = self.netlink.del_link(*idx).await {
                warn!(instance = %name, error = %e, "removing a VIP's VMAC interface");
            }
        }
    }

    /// A matched instance (at slot `i`) takes its new settings, keeping its state: as MASTER,
    /// removed routes, rules and VIPs go (VIPs a MASTER holds after the reload stay), added
    /// ones are installed and announced (gratuitous ARP / unsolicited NA).
    async fn apply_kept(&mut self, i: usize, k: &KeptInstance, s: &InstanceSetup, env: &SysView, held: &HashSet<IpAddr>) {
        let master = self.inst[i].fsm.state() == State::Master;
        let r = &self.inst[i];
        let links = link_of(&env.links, s.vmac.as_deref(), r.vip_ifindex);
        // VIPs keep the VMACs of their own made at start (a reload makes none).
        let vips: Vec<_> = s.vips.iter().chain(&s.excluded).map(|v| super::placed_spec(v, r.vip_ifindex, r.ifindex, &s.iface, &r.addr_vmacs, &links)).collect();
        let routes: Vec<_> = s.routes.iter().map(|x| super::route_spec(x, &links)).collect();
        let gone: Vec<_> = r.vips.iter().filter(|v| !vips.contains(v)).cloned().collect();
        let added: Vec<_> = vips.iter().filter(|v| !r.vips.contains(v)).cloned().collect();
        let routes_gone: Vec<_> = r.routes.iter().filter(|x| !routes.contains(x)).cloned().collect();
        let routes_added: Vec<_> = routes.iter().filter(|x| !r.routes.contains(x)).cloned().collect();
        let rules_gone: Vec<_> = r.setup.rules.iter().filter(|x| !s.rules.contains(x)).cloned().collect();
        let rules_added: Vec<_> = s.rules.iter().filter(|x| !r.setup.rules.contains(x)).cloned().collect();
        let name = s.name.clone();
        if k.name != k.old_name {
            info!(instance = %name, old_name = %k.old_name, "reload: instance renamed (state kept)");
        }
        if master {
            for x in rules_gone {
                if let Err(e) = self.netlink.rule(false, x).await {
                    warn!(instance = %name, error = %e, "removing virtual rule");
                }
            }
            for x in routes_gone {
                if let Err(e) = self.netlink.route(false, x).await {
                    warn!(instance = %name, error = %e, "removing virtual route");
                }
            }
            for v in gone.iter().filter(|v| !held.contains(&v.addr)) {
                info!(instance = %name, vip = %v.addr, "reload: removing VIP");
                if let Err(e) = self.netlink.del_addr(v.clone()).await {
                    warn!(instance = %name, error = %e, "removing VIP");
                }
            }
            for v in &added {
                info!(instance = %name, vip = %v.addr, "reload: adding VIP");
                if let Err(e) = self.netlink.add_addr(v.clone()).await {
                    warn!(instance = %name, error = %e, "adding VIP");
                }
            }
            for x in routes_added {
                if let Err(e) = self.netlink.route(true, x).await {
                    warn!(instance = %name, error = %e, "adding virtual route");
                }
            }
            for x in rules_added {
                if let Err(e) = self.netlink.rule(true, x).await {
                    warn!(instance = %name, error = %e, "adding virtual rule");
                }
            }
        }
        if self.inst[i].blocked {
            if let Some(fw) = self.no_accept.as_ref() {
                fw.remove(&name, super::blocked(&self.inst[i], &gone));
                fw.add(&name, super::blocked(&self.inst[i], &added));
            }
        }
        let (adv_addrs, adv_bytes) = advert_addrs(s);
        if s.peers.is_empty() && s.group != self.inst[i].setup.group {
            let sock = self.inst[i].rx_sock;
            if self.sockets.joined.entry(sock).or_default().insert(s.group) {
                if let Err(e) = self.sockets.socks[sock].join(s.group) {
                    warn!(instance = %name, group = %s.group, error = %e, "joining the multicast group");
                }
            }
        }
        let r = &mut self.inst[i];
        if k.settings_changed {
            let mut p = s.params.clone();
            p.primary_addr = r.src;
            if let Err(e) = r.fsm.reconfigure(p) {
                warn!(instance = %name, error = %e, "reload: new parameters refused; the instance keeps its old ones");
            }
        }
        r.setup = s.clone();
        r.vips = vips;
        r.routes = routes;
        r.adv_addrs = adv_addrs;
        r.adv_bytes = adv_bytes;
        // Rewritten at the next sync: intervals, priority or addresses may have changed.
        r.fast_written = None;
        if master && !added.is_empty() {
            self.garp_addrs(i, added.iter().map(|v| v.addr).collect(), s.params.garp_master_repeat.max(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn setups(text: &str) -> (crate::config::Config, Vec<InstanceSetup>) {
        let l = crate::config::parse_str(text, std::path::Path::new("t.conf"), &crate::config::LoadOptions::default());
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        let s = super::super::setup::instances(&l.config).expect("setups");
        (l.config, s)
    }

    /// Removals in any order: every remaining running instance is found in the slot a
    /// `swap_remove` model puts it in.
    #[test]
    fn slots_follow_removals() {
        let cases: [(&[usize], &[usize]); 5] = [
            (&[0, 1, 2, 3], &[1]),
            (&[0, 1, 2, 3], &[3]),
            (&[2, 0, 3, 1], &[1, 2]),
            (&[0, 1, 2, 3, 4], &[0, 1, 2, 3]),
            (&[4, 3, 2, 1, 0], &[4, 0, 2]),
        ];
        for (order, removed) in cases {
            let mut slots = Slots::new(order);
            // The model: slot → running index, with swap_remove.
            let mut model = vec![usize::MAX; order.len()];
            for (o, &e) in order.iter().enumerate() {
                model[e] = o;
            }
            for &o in removed {
                let e = slots.slot(o);
                assert_eq!(model[e], o, "{order:?} {removed:?}");
                let last = model.len() - 1;
                assert_eq!(slots.remove(e), (e != last).then_some(last), "{order:?} {removed:?}");
                model.swap_remove(e);
            }
            for (e, &o) in model.iter().enumerate() {
                assert_eq!(slots.slot(o), e, "{order:?} {removed:?}: running instance {o}");
            }
        }
    }

    /// A sync group loses its deleted member; the member moved into the freed slot is renamed;
    /// a group with neither is left alone.
    #[test]
    fn sync_groups_follow_removals() {
        let g = SyncGroup::new([0usize, 3, 5]);
        let ids = |g: Option<SyncGroup<usize>>| g.map(|g| g.members().collect::<Vec<_>>());
        assert_eq!(ids(regroup_removed(&g, 3, 5)), Some(vec![0, 3]), "5 moves into 3's slot");
        assert_eq!(ids(regroup_removed(&g, 0, 5)), Some(vec![3, 0]));
        assert_eq!(ids(regroup_removed(&g, 3, 7)), Some(vec![0, 5]), "the moved instance is not a member");
        assert_eq!(ids(regroup_removed(&g, 1, 5)), Some(vec![0, 3, 1]), "only the moved one is a member");
        assert_eq!(ids(regroup_removed(&g, 5, 5)), Some(vec![0, 3]), "the last slot itself");
        assert!(regroup_removed(&g, 1, 7).is_none());
    }

    /// A request is applied only to the running instances it was planned against: each is
    /// continued or removed exactly once.
    #[test]
    fn a_request_fits_only_its_running_instances() {
        let inst = |name: &str, vrid: u8| format!("vrrp_instance {name} {{\n interface eth0\n virtual_router_id {vrid}\n priority 100\n virtual_ipaddress {{\n  198.18.0.{vrid}\n }}\n}}\n");
        let (_, old) = setups(&format!("{}{}", inst("VI_1", 1), inst("VI_2", 2)));
        let (new_cfg, new) = setups(&format!("{}{}", inst("VI_2", 2), inst("VI_3", 3)));
        let plan = crate::reload::plan_instances(&old, &new);
        let req = ReloadRequest::new(&old, new, plan, super::super::setup::globals(&new_cfg).expect("globals"));
        assert!(req.check(2).is_ok());
        for running in [0, 1, 3] {
            assert!(matches!(req.check(running), Err(EngineError::ReloadMismatch { .. })), "{running} running");
        }
    }

    /// Steps of work end at the given times (ms after the start): the slice is used up at the
    /// first step at or past 2 ms from its start, and the next slice starts when the engine has
    /// been served (`served_ms` later). The longest slice is recorded.
    #[test]
    fn slices_end_when_used_up() {
        struct Case {
            name: &'static str,
            steps: &'static [u64],
            served_ms: u64,
            spent_at: &'static [u64],
            longest_ms: u64,
        }
        let cases = [
            Case { name: "short work: one slice", steps: &[0, 1], served_ms: 0, spent_at: &[], longest_ms: 1 },
            Case { name: "exactly the slice", steps: &[1, 2, 3], served_ms: 0, spent_at: &[2], longest_ms: 2 },
            Case { name: "every 2 ms", steps: &[1, 2, 3, 4, 5, 6], served_ms: 0, spent_at: &[2, 4, 6], longest_ms: 2 },
            // Serving the engine takes 1 ms: the next slice starts after it.
            Case { name: "serving takes time", steps: &[1, 2, 3, 4, 5, 6], served_ms: 1, spent_at: &[2, 5], longest_ms: 2 },
            // One step longer than a slice is one long slice (it cannot be cut).
            Case { name: "one long step", steps: &[0, 7, 8], served_ms: 0, spent_at: &[7], longest_ms: 7 },
        ];
        let t0 = Instant::now();
        for c in cases {
            let mut s = Slices::new(SLICE, t0);
            let mut spent_at = Vec::new();
            for &at in c.steps {
                if s.spent(t0 + ms(at)) {
                    spent_at.push(at);
                    s.resume(t0 + ms(at + c.served_ms));
                }
            }
            s.finish(t0 + ms(*c.steps.last().unwrap_or(&0)));
            assert_eq!(spent_at, c.spent_at, "{}", c.name);
            assert_eq!(s.longest, ms(c.longest_ms), "{}", c.name);
            assert_eq!(s.count as usize, c.spent_at.len() + 1, "{}: slices counted", c.name);
        }
    }
}
