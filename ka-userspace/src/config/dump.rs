//! `ka check --dump`: the expanded model, defaults applied, as JSON (schema in docs/config.md).

use serde_json::{json, Value};

use super::{
    diag::{SourceMap, Span},
    model::*,
};

fn ms(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

fn loc(src: &SourceMap, sp: Span) -> Value {
    json!(format!(
        "{}:{}:{}",
        src.path(sp.file).display(),
        sp.line,
        sp.col
    ))
}

fn script(s: &Option<Script>) -> Value {
    match s {
        Some(s) => json!({ "command": s.command, "user": s.user.as_ref().map(|u| &u.0) }),
        None => Value::Null,
    }
}

fn track_refs(v: &[TrackRef]) -> Value {
    v.iter()
        .map(|r| json!({ "name": r.name, "weight": r.weight, "reverse": r.reverse }))
        .collect()
}

fn vip(src: &SourceMap, v: &VirtualIp) -> Value {
    json!({
        "address": v.address.to_string(),
        "dev": v.dev,
        "broadcast": v.broadcast,
        "peer": v.peer,
        "scope": v.scope,
        "label": v.label,
        "no_track": v.no_track,
        "location": loc(src, v.span),
    })
}

fn checker(src: &SourceMap, c: &Checker) -> Value {
    let mut v = json!({
        "type": c.kind.keyword(),
        "connect_ip": c.connect_ip,
        "connect_port": c.connect_port,
        "bindto": c.bindto,
        "connect_timeout_ms": ms(c.connect_timeout),
        "delay_loop_ms": ms(c.delay_loop),
        "retry": c.retry,
        "delay_before_retry_ms": ms(c.delay_before_retry),
        "warmup_ms": ms(c.warmup),
        "location": loc(src, c.span),
    });
    let extra = match &c.kind {
        CheckerKind::Http {
            urls,
            http_protocol,
            virtualhost,
            ..
        } => json!({
            "http_protocol": http_protocol,
            "virtualhost": virtualhost,
            "urls": urls.iter().map(|u| json!({
                "path": u.path,
                "digest": u.digest,
                "status_codes": u.status_codes.iter().map(|r| format!("{}-{}", r.first, r.last)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
        CheckerKind::Misc {
            path,
            timeout,
            dynamic,
            ..
        } => json!({
            "misc_path": path, "misc_timeout_ms": timeout.map(ms), "misc_dynamic": dynamic,
        }),
        CheckerKind::Dns { qtype, name } => json!({ "dns_type": qtype, "dns_name": name }),
        CheckerKind::Smtp { helo_name } => json!({ "helo_name": helo_name }),
        CheckerKind::Bfd { name } => json!({ "bfd_name": name }),
        CheckerKind::File { track_file, .. } => json!({ "track_file": track_file }),
        _ => json!({}),
    };
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

fn real_server(src: &SourceMap, rs: &RealServer) -> Value {
    json!({
        "address": rs.address,
        "port": rs.port,
        "weight": rs.weight,
        "lb_kind": rs.lb_kind.as_str(),
        "inhibit_on_failure": rs.timing.inhibit_on_failure,
        "checkers": rs.checkers.iter().map(|c| checker(src, c)).collect::<Vec<_>>(),
        "location": loc(src, rs.span),
    })
}

/// The JSON document printed by `ka check --dump`.
pub fn to_json(cfg: &Config, src: &SourceMap) -> Value {
    let g = &cfg.global;
    json!({
        "global_defs": {
            "router_id": g.router_id,
            "vrrp_version": g.vrrp_version.number(),
            "vrrp_strict": g.vrrp_strict,
            "vrrp_mcast_group4": g.vrrp_mcast_group4,
            "vrrp_mcast_group6": g.vrrp_mcast_group6,
            "default_interface": g.default_interface,
            "enable_script_security": g.enable_script_security,
            "notification_email": g.notification_email,
            // With its defaults resolved (sync id, group, port, TTL, maxlen), as the daemon runs it.
            "lvs_sync_daemon": crate::lb::sync::SyncParams::from_config(cfg).ok().flatten().map(|p| json!({
                "interface": p.interface, "vrrp_instance": p.instance, "id": p.syncid, "maxlen": p.maxlen,
                "port": p.port, "ttl": p.ttl, "group": p.group,
            })),
        },
        "vrrp_scripts": cfg.vrrp_scripts.iter().map(|s| json!({
            "name": s.name, "script": s.script, "interval_ms": ms(s.interval), "timeout_ms": ms(s.timeout),
            "weight": s.weight, "reverse": s.reverse, "rise": s.rise, "fall": s.fall,
            "location": loc(src, s.span),
        })).collect::<Vec<_>>(),
        "vrrp_sync_groups": cfg.sync_groups.iter().map(|g| json!({
            "name": g.name,
            "members": g.members.iter().map(|m| &m.0).collect::<Vec<_>>(),
            "track_scripts": track_refs(&g.track_scripts),
            "notify_master": script(&g.notify.master),
            "notify_backup": script(&g.notify.backup),
            "notify_fault": script(&g.notify.fault),
            "notify": script(&g.notify.any),
            "location": loc(src, g.span),
        })).collect::<Vec<_>>(),
        "vrrp_instances": cfg.vrrp_instances.iter().map(|v| json!({
            "name": v.name,
            "state": v.state.as_str(),
            "interface": v.interface,
            "virtual_router_id": v.virtual_router_id,
            "priority": v.priority,
            "advert_int_ms": ms(v.advert_int),
            "version": v.version.number(),
            "preempt": v.preempt,
            "preempt_delay_ms": ms(v.preempt_delay),
            "accept": v.accept,
            "src_ip": v.src_ip,
            "unicast_peers": v.unicast_peers.iter().map(|p| p.address).collect::<Vec<_>>(),
            "virtual_ipaddresses": v.virtual_ipaddresses.iter().map(|a| vip(src, a)).collect::<Vec<_>>(),
            "virtual_ipaddresses_excluded": v.virtual_ipaddresses_excluded.iter().map(|a| vip(src, a)).collect::<Vec<_>>(),
            "track_interfaces": v.track_interfaces.iter().map(|t| json!({"name": t.name, "weight": t.weight, "reverse": t.reverse})).collect::<Vec<_>>(),
            "track_scripts": track_refs(&v.track_scripts),
            "garp_master_delay_ms": ms(v.garp_master_delay),
            "garp_master_repeat": v.garp_master_repeat,
            "strict_mode": v.strict_mode,
            "sync_group": v.sync_group,
            "notify_master": script(&v.notify.master),
            "notify_backup": script(&v.notify.backup),
            "notify_fault": script(&v.notify.fault),
            "notify_stop": script(&v.notify.stop),
            "notify": script(&v.notify.any),
            "location": loc(src, v.span),
        })).collect::<Vec<_>>(),
        "virtual_servers": cfg.virtual_servers.iter().map(|vs| {
            let (address, port, fwmark, group) = match &vs.key {
                VsKey::Addr { addr, port } => (Some(*addr), Some(*port), None, None),
                VsKey::Fwmark(m) => (None, None, Some(*m), None),
                VsKey::Group(g) => (None, None, None, Some(g.clone())),
            };
            json!({
                "address": address,
                "port": port,
                "fwmark": fwmark,
                "group": group,
                "protocol": vs.protocol.as_str(),
                "lb_algo": vs.lb_algo.as_str(),
                "lb_kind": vs.lb_kind.as_str(),
                "persistence_timeout_s": vs.persistence_timeout.map(|d| d.as_secs()),
                "ops": vs.ops,
                "hash_port": vs.hash_port,
                "hash_fallback": vs.hash_fallback,
                "quorum": vs.quorum,
                "delay_loop_ms": ms(vs.timing.delay_loop),
                "connect_timeout_ms": ms(vs.timing.connect_timeout),
                "sorry_server": vs.sorry_server.as_ref().map(|s| real_server(src, s)),
                "real_servers": vs.real_servers.iter().map(|r| real_server(src, r)).collect::<Vec<_>>(),
                "location": loc(src, vs.span),
            })
        }).collect::<Vec<_>>(),
        "virtual_server_groups": cfg.virtual_server_groups.iter().map(|g| json!({
            "name": g.name,
            "entries": g.entries.iter().map(|e| match e {
                VsgEntry::Range { first, last, port, .. } => json!({"first": first, "last": last, "port": port}),
                VsgEntry::Fwmark { mark, .. } => json!({"fwmark": mark}),
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "static_ipaddresses": cfg.static_ipaddresses.iter().map(|a| vip(src, a)).collect::<Vec<_>>(),
    })
}
