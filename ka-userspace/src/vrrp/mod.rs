//! The VRRP protocol core: a sans-IO state machine per instance ([`fsm`]), its timers
//! ([`timers`]), tracking ([`track`]) and sync groups ([`sync_group`]). The wire codec and the
//! receive checks live in `ka_common::vrrp` (shared with the XDP program).
//!
//! The runtime (sockets, netlink, timers, scripts) is elsewhere: it turns packets, timer
//! expiries and tracker results into [`Event`]s, calls [`Instance::handle`] with the current
//! [`Time`], and carries out the returned [`Action`]s.

pub mod fsm;
pub mod garp;
pub mod sync_group;
pub mod timers;
pub mod track;

#[cfg(test)]
mod tests;

pub use fsm::{
    Action, AnswerLimit, Event, InitialState, Instance, InstanceParams, Notify, ParamsError, RxAdvert,
    State,
};
pub use sync_group::{MemberStatus, SyncAction, SyncCommand, SyncGroup};
pub use timers::{Time, TimerKind};
pub use track::{Contribution, TrackStatus, TrackSummary, Weight};
