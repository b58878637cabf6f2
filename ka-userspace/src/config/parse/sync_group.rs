//! `vrrp_sync_group` and the notify scripts it shares with `vrrp_instance`.

use super::{track::Tracked, Cx};
use crate::config::{model::*, tree::Stmt};

impl Cx<'_> {
    pub(super) fn notify(&mut self, e: &Stmt, n: &mut Notify) -> bool {
        let slot = match e.name() {
            "notify_master" => &mut n.master,
            "notify_backup" => &mut n.backup,
            "notify_fault" => &mut n.fault,
            "notify_stop" => &mut n.stop,
            "notify" => &mut n.any,
            _ => return false,
        };
        if slot.is_some() {
            // keepalived 2.2: "notify_master script already specified - ignoring ...".
            self.err(&e.kw, format!("{} script already specified", e.name()));
            return true;
        }
        *slot = self.script(e);
        true
    }

    pub(super) fn sync_group(&mut self, s: &Stmt) {
        let name = self.name_arg(s);
        let mut g = SyncGroup {
            name,
            members: Vec::new(),
            track_interfaces: Vec::new(),
            track_scripts: Vec::new(),
            track_files: Vec::new(),
            track_processes: Vec::new(),
            track_bfds: Vec::new(),
            notify: Notify::default(),
            smtp_alert: None,
            sync_group_tracking_weight: false,
            notify_priority_changes: None,
            span: s.span(),
        };
        const KW: &[&str] = &[
            "group",
            "track_interface",
            "track_script",
            "track_file",
            "track_process",
            "track_bfd",
            "notify_master",
            "notify_backup",
            "notify_fault",
            "notify_stop",
            "notify",
            "notify_deleted",
            "notify_priority_changes",
            "smtp_alert",
            "global_tracking",
            "sync_group_tracking_weight",
        ];
        let mut have_group = false;
        for e in self.block(s) {
            let mut notify = std::mem::take(&mut g.notify);
            let handled = self.notify(e, &mut notify);
            g.notify = notify;
            if handled {
                continue;
            }
            match e.name() {
                "group" if have_group => {
                    self.err(&e.kw, format!("group list already specified for sync group {}", g.name));
                }
                "group" => {
                    have_group = true;
                    for m in self.block(e) {
                        self.no_block(m);
                        g.members.push((m.kw.text.clone(), m.span()));
                        for extra in &m.args {
                            g.members.push((extra.text.clone(), extra.span));
                        }
                    }
                }
                "track_interface" => {
                    let list = self.track_interfaces(e, &g.name, &g.track_interfaces);
                    g.track_interfaces.extend(list);
                }
                "track_script" => {
                    let list = self.track_refs(e, &g.name, Tracked::Script, &g.track_scripts);
                    g.track_scripts.extend(list);
                }
                "track_file" => {
                    let list = self.track_refs(e, &g.name, Tracked::File, &g.track_files);
                    g.track_files.extend(list);
                }
                "track_process" => {
                    let list = self.track_refs(e, &g.name, Tracked::Process, &g.track_processes);
                    g.track_processes.extend(list);
                }
                "track_bfd" => {
                    let list = self.track_bfd_refs(e, &g.name, &g.track_bfds);
                    g.track_bfds.extend(list);
                }
                "smtp_alert" => g.smtp_alert = Some(self.arg_bool(e)),
                "sync_group_tracking_weight" => g.sync_group_tracking_weight = self.arg_bool(e),
                "global_tracking" => {
                    self.warn(&e.kw, "'global_tracking' is deprecated; use track_* on the sync group");
                    g.sync_group_tracking_weight = true;
                }
                "notify_priority_changes" => g.notify_priority_changes = Some(self.arg_bool(e)),
                "notify_deleted" => self.unsupported(e, "vrrp_sync_group"),
                _ if e.block.is_none() && e.args.is_empty() => self.warn(
                    &e.kw,
                    format!("'{}' is not a keyword of vrrp_sync_group; instance names belong inside 'group {{ }}'; ignored", e.name()),
                ),
                _ => self.unknown(e, "vrrp_sync_group", &[KW]),
            }
        }
        self.cfg.sync_groups.push(g);
    }
}
