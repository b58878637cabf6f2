//! `vrrp_strict` / `strict_mode` as keepalived 2.2.7 applies it (`vrrp_complete_instance` in
//! vrrp.c; keepalived.conf(5)), and the room for VIPs in an advert, which keepalived enforces
//! in every mode.
//!
//! What strict mode refuses (the instance does not run: an error):
//! - no `virtual_ipaddress`;
//! - unicast peers.
//!
//! What it corrects, with a warning, as keepalived does:
//! - `state MASTER` without priority 255, or priority 255 without `state MASTER`: the state
//!   follows the priority ("State MASTER must match being address owner");
//! - authentication is dropped (see [`super::check`]);
//! - `preempt_delay` is reset to 0;
//! - `down_timer_adverts` is reset to 3;
//! - `accept` on a VRRPv2 instance that is not the address owner is reset (RFC 3768 has no
//!   Accept_Mode); without `accept`/`no_accept`, only the owner accepts;
//! - `lower_prio_no_advert` is forced on (a MASTER does not answer lower-priority adverts) and
//!   `higher_prio_send_advert` off;
//! - the first IPv6 VIP should be link-local (keepalived reports it and runs the instance).
//!
//! - `garp_lower_prio_repeat` and `garp_lower_prio_delay` are reset to 0 (no GARPs answer a
//!   lower-priority advert), with a warning when they were set.
//!
//! keepalived's other strict rules concern features handled elsewhere (`vmac_xmit_base` is
//! reset in `check::vmac_rules`). Newer
//! keepalived (2.3) adds `owner_ignore_adverts` and `auth_hmac` rules; ka follows 2.2.7.

use super::{
    diag::Diagnostics,
    model::{VrrpInstance, VrrpState, VrrpVersion},
};

/// keepalived's `VRRP_DOWN_TIMER_ADVERTS`.
const DOWN_TIMER_ADVERTS: u8 = 3;

/// Applies strict mode to `vi` (whose version is final), with `global_down_timer_adverts`
/// (`vrrp_down_timer_adverts`).
pub fn apply(vi: &mut VrrpInstance, global_down_timer_adverts: Option<u8>, d: &mut Diagnostics) {
    if !vi.strict_mode {
        return;
    }
    let n = vi.name.clone();
    let span = Some(vi.span);
    let owner = vi.priority == 255;
    match (vi.state, owner) {
        (VrrpState::Master, false) => {
            d.warning(span, format!("({n}) vrrp_strict: state MASTER requires priority 255; using BACKUP, as keepalived 2.2 does"));
            vi.state = VrrpState::Backup;
        }
        (VrrpState::Backup, true) => {
            d.warning(span, format!("({n}) vrrp_strict: priority 255 (address owner) means state MASTER; using MASTER, as keepalived 2.2 does"));
            vi.state = VrrpState::Master;
        }
        _ => {}
    }
    if vi.virtual_ipaddresses.is_empty() {
        d.error(span, format!("({n}) vrrp_strict: at least one virtual_ipaddress is required"));
    }
    if !vi.unicast_peers.is_empty() {
        d.error(span, format!("({n}) vrrp_strict: unicast peers are not allowed"));
    }
    if !vi.preempt_delay.is_zero() {
        d.warning(span, format!("({n}) vrrp_strict: preempt_delay is not allowed; reset to 0, as keepalived 2.2 does"));
        vi.preempt_delay = std::time::Duration::ZERO;
    }
    let down_timer = vi.down_timer_adverts.or(global_down_timer_adverts).unwrap_or(DOWN_TIMER_ADVERTS);
    if down_timer != DOWN_TIMER_ADVERTS {
        d.warning(span, format!("({n}) vrrp_strict: down_timer_adverts {down_timer} is not allowed; reset to 3, as keepalived 2.2 does"));
    }
    vi.down_timer_adverts = Some(DOWN_TIMER_ADVERTS);
    match vi.accept {
        Some(true) if !owner && vi.version == VrrpVersion::V2 => {
            d.warning(span, format!("({n}) vrrp_strict: accept mode for VRRP version 2 does not comply with RFC 3768; using no_accept, as keepalived 2.2 does"));
            vi.accept = Some(false);
        }
        Some(_) => {}
        None => vi.accept = Some(owner),
    }
    if vi.garp_lower_prio_repeat.is_some_and(|n| n > 0) {
        d.warning(span, format!("({n}) vrrp_strict: strict mode requires no repeat garps; garp_lower_prio_repeat reset to 0, as keepalived 2.2 does"));
    }
    vi.garp_lower_prio_repeat = Some(0);
    if vi.garp_lower_prio_delay.is_some_and(|t| !t.is_zero()) {
        d.warning(span, format!("({n}) vrrp_strict: strict mode requires no repeat garp delay; garp_lower_prio_delay reset to 0, as keepalived 2.2 does"));
    }
    vi.garp_lower_prio_delay = Some(std::time::Duration::ZERO);
    if vi.lower_prio_no_advert == Some(false) {
        d.warning(span, format!("({n}) vrrp_strict: lower_prio_no_advert cannot be cleared; set, as keepalived 2.2 does"));
    }
    vi.lower_prio_no_advert = Some(true);
    if vi.higher_prio_send_advert == Some(true) {
        d.warning(span, format!("({n}) vrrp_strict: higher_prio_send_advert is not allowed; cleared, as keepalived 2.2 does"));
    }
    vi.higher_prio_send_advert = Some(false);
    let first_v6 = vi.virtual_ipaddresses.first().filter(|v| v.address.is_ipv6());
    if first_v6.is_some_and(|v| !super::check::is_link_local(&v.address.addr)) {
        d.warning(span, format!("({n}) vrrp_strict: the first IPv6 virtual_ipaddress must be link local (keepalived reports it and runs the instance)"));
    }
}

/// The most VIPs an advert of `vi` carries on an interface with `mtu` (keepalived: what fits
/// in the MTU after the Ethernet, IP, VRRP and (v2) authentication headers, at most 255).
pub fn max_vips(version: VrrpVersion, v6: bool, ah: bool, mtu: u32) -> usize {
    let (ip, addr) = if v6 { (40, 16) } else { (20, 4) };
    let mut hdr = 14 + ip + 8;
    if version == VrrpVersion::V2 && !v6 {
        hdr += 8;
        if ah {
            hdr += 24;
        }
    }
    (mtu.saturating_sub(hdr) / addr).min(255) as usize
}

/// Moves the VIPs beyond [`max_vips`] to `virtual_ipaddress_excluded`, as keepalived does ("excess
/// moved to eVIPs"): they are still added and removed, but not announced.
pub fn limit_vips(vi: &mut VrrpInstance, mtu: u32, d: &mut Diagnostics) {
    let v6 = vi.virtual_ipaddresses.first().is_some_and(|v| v.address.is_ipv6());
    let ah = vi.authentication.as_ref().is_some_and(|a| a.auth_type == super::model::AuthType::Ah);
    let max = max_vips(vi.version, v6, ah, mtu);
    if vi.virtual_ipaddresses.len() <= max {
        return;
    }
    d.warning(
        Some(vi.span),
        format!(
            "({}) Number of VIPs ({}) exceeds maximum/space available in packet (max {max} addresses) - excess moved to eVIPs, as keepalived 2.2 does",
            vi.name,
            vi.virtual_ipaddresses.len()
        ),
    );
    let excess = vi.virtual_ipaddresses.split_off(max);
    vi.virtual_ipaddresses_excluded.splice(0..0, excess);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Severity;

    fn opts() -> crate::config::LoadOptions {
        crate::config::LoadOptions { config_id: None, interfaces: crate::config::check::InterfaceCheck::Known(["eth0".to_owned()].into()) }
    }

    fn strict(body: &str) -> (VrrpInstance, Vec<(Severity, String)>) {
        let text = format!("global_defs {{\n vrrp_strict\n}}\nvrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 5\n{body}\n}}\n");
        let l = crate::config::parse_str(&text, Path::new("t.conf"), &opts());
        let diags = l.diagnostics.iter().map(|d| (d.severity, d.message.clone())).collect();
        (l.config.vrrp_instances.into_iter().next().expect("instance"), diags)
    }

    const VIP4: &str = " virtual_ipaddress {\n 198.18.0.10\n }";

    /// One row per keepalived 2.2.7 strict rule: the input, the diagnostic it gets (none for a
    /// silent default), and the corrected model.
    #[test]
    fn strict_rules_as_keepalived() {
        type Check = fn(&VrrpInstance) -> bool;
        type Want = Option<(Severity, &'static str)>;
        let cases: &[(&str, String, Want, Check)] = &[
            ("non-owner defaults: no accept, no answers to lower priorities", format!(" priority 100\n{VIP4}"), None, |v| {
                v.accept == Some(false) && v.lower_prio_no_advert == Some(true) && v.higher_prio_send_advert == Some(false) && v.state == VrrpState::Backup
            }),
            ("the owner accepts by default and is MASTER", format!(" priority 255\n{VIP4}"), None, |v| v.accept == Some(true) && v.state == VrrpState::Master),
            ("MASTER below 255 becomes BACKUP", format!(" state MASTER\n priority 200\n{VIP4}"), Some((Severity::Warning, "state MASTER requires priority 255; using BACKUP")), |v| {
                v.state == VrrpState::Backup
            }),
            ("BACKUP at 255 becomes MASTER", format!(" state BACKUP\n priority 255\n{VIP4}"), Some((Severity::Warning, "priority 255 (address owner) means state MASTER")), |v| {
                v.state == VrrpState::Master
            }),
            ("no VIP is refused", " priority 100".into(), Some((Severity::Error, "at least one virtual_ipaddress is required")), |_| true),
            ("unicast is refused", format!(" priority 100\n unicast_peer {{\n 198.18.0.2\n }}\n{VIP4}"), Some((Severity::Error, "unicast peers are not allowed")), |_| true),
            ("preempt_delay is reset", format!(" priority 100\n preempt_delay 5\n{VIP4}"), Some((Severity::Warning, "preempt_delay is not allowed; reset to 0")), |v| {
                v.preempt_delay.is_zero()
            }),
            ("down_timer_adverts is reset", format!(" priority 100\n down_timer_adverts 5\n{VIP4}"), Some((Severity::Warning, "down_timer_adverts 5 is not allowed; reset to 3")), |v| {
                v.down_timer_adverts == Some(3)
            }),
            ("accept on VRRPv2 is reset", format!(" priority 100\n accept\n{VIP4}"), Some((Severity::Warning, "accept mode for VRRP version 2 does not comply with RFC 3768")), |v| {
                v.accept == Some(false)
            }),
            ("accept on VRRPv3 stays", format!(" priority 100\n version 3\n accept\n{VIP4}"), None, |v| v.accept == Some(true)),
            ("accept at 255 on VRRPv2 stays", format!(" priority 255\n accept\n{VIP4}"), None, |v| v.accept == Some(true)),
            ("lower_prio_no_advert cannot be cleared", format!(" priority 100\n lower_prio_no_advert false\n{VIP4}"), Some((Severity::Warning, "lower_prio_no_advert cannot be cleared")), |v| {
                v.lower_prio_no_advert == Some(true)
            }),
            ("higher_prio_send_advert is cleared", format!(" priority 100\n higher_prio_send_advert\n{VIP4}"), Some((Severity::Warning, "higher_prio_send_advert is not allowed")), |v| {
                v.higher_prio_send_advert == Some(false)
            }),
            ("no lower-priority GARPs by default", format!(" priority 100\n{VIP4}"), None, |v| {
                v.garp_lower_prio_repeat == Some(0) && v.garp_lower_prio_delay == Some(std::time::Duration::ZERO)
            }),
            ("garp_lower_prio_repeat is reset", format!(" priority 100\n garp_lower_prio_repeat 3\n{VIP4}"), Some((Severity::Warning, "garp_lower_prio_repeat reset to 0")), |v| {
                v.garp_lower_prio_repeat == Some(0)
            }),
            ("garp_lower_prio_delay is reset", format!(" priority 100\n garp_lower_prio_delay 7\n{VIP4}"), Some((Severity::Warning, "garp_lower_prio_delay reset to 0")), |v| {
                v.garp_lower_prio_delay == Some(std::time::Duration::ZERO)
            }),
            ("authentication is dropped", format!(" priority 100\n authentication {{\n auth_type PASS\n auth_pass abc\n }}\n{VIP4}"), Some((Severity::Warning, "vrrp_strict: authentication is not allowed")), |v| {
                v.authentication.is_none()
            }),
            ("the first IPv6 VIP should be link local", " priority 100\n virtual_ipaddress {\n fd00:198:18::10\n }".into(), Some((Severity::Warning, "must be link local")), |v| {
                v.version == VrrpVersion::V3
            }),
            ("a link-local first IPv6 VIP is fine", " priority 100\n virtual_ipaddress {\n fe80::10\n fd00:198:18::10\n }".into(), None, |_| true),
        ];
        for (name, body, want, check) in cases {
            let (vi, diags) = strict(body);
            match want {
                None => assert!(diags.is_empty(), "{name}: unexpected {diags:?}"),
                Some((sev, msg)) => assert!(diags.iter().any(|(s, m)| s == sev && m.contains(msg)), "{name}: wanted {sev:?} {msg:?} in {diags:?}"),
            }
            assert!(check(&vi), "{name}: {vi:#?}");
        }
        // Without strict mode nothing of this applies.
        let text = format!("vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 5\n state MASTER\n priority 200\n down_timer_adverts 5\n accept\n{VIP4}\n}}\n");
        let l = crate::config::parse_str(&text, Path::new("t.conf"), &opts());
        let vi = &l.config.vrrp_instances[0];
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        assert_eq!((vi.state, vi.accept, vi.lower_prio_no_advert, vi.down_timer_adverts), (VrrpState::Master, Some(true), None, Some(5)));
    }

    /// keepalived's room for VIPs: (MTU - headers) / address size, at most 255.
    #[test]
    fn vips_that_fit_in_an_advert() {
        assert_eq!(max_vips(VrrpVersion::V2, false, false, 1500), 255);
        assert_eq!(max_vips(VrrpVersion::V2, false, false, 1000), (1000 - 50) / 4);
        assert_eq!(max_vips(VrrpVersion::V2, false, true, 1000), (1000 - 74) / 4);
        assert_eq!(max_vips(VrrpVersion::V3, false, false, 1000), (1000 - 42) / 4);
        assert_eq!(max_vips(VrrpVersion::V3, true, false, 1500), (1500 - 62) / 16);
        assert_eq!(max_vips(VrrpVersion::V3, true, false, 40), 0);
    }

    /// Beyond the room, VIPs become excluded ones, in order, with keepalived's message (the
    /// MTU of an interface `ka check` cannot see is taken as 1500).
    #[test]
    fn excess_vips_move_to_excluded() {
        let vips: String = (0..300).map(|i| format!(" 198.18.{}.{}\n", i / 250, i % 250 + 1)).collect();
        let text = format!("vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 5\n virtual_ipaddress {{\n{vips} }}\n virtual_ipaddress_excluded {{\n 198.18.9.9\n }}\n}}\n");
        let l = crate::config::parse_str(&text, Path::new("t.conf"), &opts());
        let vi = &l.config.vrrp_instances[0];
        assert_eq!(vi.virtual_ipaddresses.len(), 255);
        assert_eq!(vi.virtual_ipaddresses_excluded.len(), 46);
        assert_eq!(vi.virtual_ipaddresses_excluded[0].address.addr.to_string(), "198.18.1.6");
        assert_eq!(vi.virtual_ipaddresses_excluded[45].address.addr.to_string(), "198.18.9.9");
        let msgs: Vec<String> = l.diagnostics.iter().map(|d| d.message.clone()).collect();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert!(msgs[0].contains("Number of VIPs (300) exceeds maximum/space available in packet (max 255 addresses)"), "{msgs:?}");
        let mut one = vi.clone();
        let mut d = Diagnostics::default();
        limit_vips(&mut one, 500, &mut d);
        assert_eq!((one.virtual_ipaddresses.len(), d.error_count()), (112, 0), "a 500-byte MTU leaves room for 112");
    }
}
