//! keepalived's `vrrp_sync_group`: members move together. Sans-IO: the runtime forwards each
//! member's [`MemberStatus`] (from `Action::SyncStatus`) to [`SyncGroup::update`] and delivers
//! the returned commands to the members as `Event::Sync`.
//!
//! Rules (keepalived.conf(5) and vrrp_sync.c):
//! - one member in FAULT puts the whole group in FAULT; when no member has a fault of its own
//!   any more, the others are released (to BACKUP);
//! - a member leaving MASTER for BACKUP takes the other Masters with it;
//! - a member becomes MASTER only when all can: each Backup whose Master_Down_Timer fired says it
//!   wants MASTER, and the group moves them all once every member wants it (or is Master).

use super::fsm::State;

/// What a member reports about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemberStatus {
    /// Current state.
    pub state: State,
    /// The member's own trackers say FAULT (not a fault forced by the group).
    pub fault: bool,
    /// As Backup, its Master_Down_Timer fired: it would be Master if alone.
    pub wants_master: bool,
}

/// An order from the group to a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncCommand {
    /// Another member is in FAULT: go to FAULT.
    ForceFault,
    /// No member is in FAULT any more: leave the forced FAULT.
    ReleaseFault,
    /// Every member can be Master: become Master.
    GoMaster,
    /// A member left MASTER: become Backup.
    GoBackup,
}

/// Output of [`SyncGroup::update`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncAction<Id> {
    /// Deliver `Event::Sync(cmd)` to `member`.
    Command {
        /// The member.
        member: Id,
        /// The order.
        cmd: SyncCommand,
    },
    /// The group's state changed: run the group's notify scripts.
    Notify(State),
}

#[derive(Clone, Debug)]
struct Member<Id> {
    id: Id,
    status: Option<MemberStatus>,
    forced_fault: bool,
}

/// One sync group.
#[derive(Clone, Debug)]
pub struct SyncGroup<Id> {
    members: Vec<Member<Id>>,
    state: State,
}

impl<Id: Copy + Eq + std::fmt::Debug> SyncGroup<Id> {
    /// A group of `members` (instance ids chosen by the runtime), in Initialize.
    pub fn new<I: IntoIterator<Item = Id>>(members: I) -> SyncGroup<Id> {
        SyncGroup {
            members: members
                .into_iter()
                .map(|id| Member {
                    id,
                    status: None,
                    forced_fault: false,
                })
                .collect(),
            state: State::Initialize,
        }
    }

    /// The group's state: MASTER when all members are, FAULT when one has a fault, else BACKUP.
    pub fn state(&self) -> State {
        self.state
    }

    /// The members' ids, in order.
    pub fn members(&self) -> impl Iterator<Item = Id> + '_ {
        self.members.iter().map(|m| m.id)
    }

    /// The group after a reload: `members` (new ids) in order; `old_id` gives the running
    /// member each one continues, whose last status is kept, so the group's state survives.
    /// Members without one start unknown, like at start-up.
    #[must_use]
    pub fn reindexed<N: Copy + Eq + std::fmt::Debug>(&self, members: &[N], old_id: impl Fn(N) -> Option<Id>) -> SyncGroup<N> {
        SyncGroup {
            members: members
                .iter()
                .map(|&id| {
                    let old = old_id(id).and_then(|o| self.members.iter().find(|m| m.id == o));
                    Member { id, status: old.and_then(|m| m.status), forced_fault: old.is_some_and(|m| m.forced_fault) }
                })
                .collect(),
            state: self.state,
        }
    }

    /// Records `member`'s new status; returns the orders for the other members and the group's
    /// notification, if its state changed. Unknown ids are ignored.
    pub fn update(&mut self, member: Id, status: MemberStatus) -> Vec<SyncAction<Id>> {
        let mut out = Vec::new();
        let Some(m) = self.members.iter_mut().find(|m| m.id == member) else {
            tracing::warn!(?member, "sync group update from a non-member");
            return out;
        };
        let previous = m.status.replace(status);

        let any_fault = self
            .members
            .iter()
            .any(|m| m.status.is_some_and(|s| s.fault));
        if any_fault {
            for m in self.members.iter_mut() {
                let own = m.status.is_some_and(|s| s.fault);
                if !own && !m.forced_fault {
                    m.forced_fault = true;
                    out.push(SyncAction::Command {
                        member: m.id,
                        cmd: SyncCommand::ForceFault,
                    });
                }
            }
            self.set_state(State::Fault, &mut out);
            return out;
        }
        let forced: Vec<Id> = self
            .members
            .iter()
            .filter(|m| m.forced_fault)
            .map(|m| m.id)
            .collect();
        if !forced.is_empty() {
            for m in self.members.iter_mut() {
                m.forced_fault = false;
            }
            out.extend(forced.into_iter().map(|member| SyncAction::Command {
                member,
                cmd: SyncCommand::ReleaseFault,
            }));
            self.set_state(State::Backup, &mut out);
            return out;
        }

        let left_master =
            previous.is_some_and(|p| p.state == State::Master) && status.state == State::Backup;
        if left_master {
            for m in &self.members {
                if m.id != member && m.status.is_some_and(|s| s.state == State::Master) {
                    out.push(SyncAction::Command {
                        member: m.id,
                        cmd: SyncCommand::GoBackup,
                    });
                }
            }
            self.set_state(State::Backup, &mut out);
            return out;
        }

        let all_can = self.members.iter().all(|m| {
            m.status.is_some_and(|s| {
                s.state == State::Master || (s.state == State::Backup && s.wants_master)
            })
        });
        let became_master =
            previous.is_none_or(|p| p.state != State::Master) && status.state == State::Master;
        if all_can || became_master {
            for m in &self.members {
                if m.status.is_some_and(|s| s.state == State::Backup) {
                    out.push(SyncAction::Command {
                        member: m.id,
                        cmd: SyncCommand::GoMaster,
                    });
                }
            }
            self.set_state(State::Master, &mut out);
            return out;
        }
        if self
            .members
            .iter()
            .all(|m| m.status.is_some_and(|s| s.state != State::Initialize))
        {
            let all_master = self
                .members
                .iter()
                .all(|m| m.status.is_some_and(|s| s.state == State::Master));
            self.set_state(
                if all_master {
                    State::Master
                } else {
                    State::Backup
                },
                &mut out,
            );
        }
        out
    }

    fn set_state(&mut self, new: State, out: &mut Vec<SyncAction<Id>>) {
        if self.state != new {
            tracing::info!(
                old = self.state.name(),
                new = new.name(),
                "VRRP sync group state change"
            );
            self.state = new;
            out.push(SyncAction::Notify(new));
        }
    }
}
