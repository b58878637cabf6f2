//! Notifications of state changes, as keepalived sends them: notify scripts (with keepalived's
//! arguments, run as `script_user`, refused when unsafe under `enable_script_security`), the
//! notify FIFOs (keepalived's line formats, VRRP and LVS) and SMTP alerts.

pub mod fifo;
pub mod lvs;
pub mod script;
pub mod security;
pub mod smtp;

/// What changed state: a VRRP instance or a sync group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A `vrrp_instance`.
    Instance,
    /// A `vrrp_sync_group`.
    Group,
}

impl Subject {
    /// keepalived's word for it: `INSTANCE` or `GROUP`.
    pub fn word(self) -> &'static str {
        match self {
            Subject::Instance => "INSTANCE",
            Subject::Group => "GROUP",
        }
    }
}

/// One state change to announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Instance or group.
    pub subject: Subject,
    /// Its name.
    pub name: String,
    /// The new state as keepalived names it: `MASTER`, `BACKUP`, `FAULT`, `STOP`, `DELETED`.
    pub state: &'static str,
    /// The effective priority (instances; 0 for groups).
    pub priority: u8,
}
