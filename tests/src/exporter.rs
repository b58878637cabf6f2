//! The parsing keepalived's Prometheus exporters apply to keepalived's dump files, in Rust, so
//! tests read ka's dumps exactly as those exporters would:
//! - gen2brain/keepalived_exporter decodes `/tmp/keepalived.json` into fixed Go types
//!   (`data.iname`, `data.ifp_ifname`, `data.last_transition` float, `data.vrid`, `data.state`,
//!   `data.wantstate` ints, and 14 int `stats`);
//! - mehdy/keepalived-exporter decodes the same JSON (adding `garp_delay` int, `vips`,
//!   `evips`), or, without JSON, parses `keepalived.data` (`ParseVRRPData`,
//!   `ParseVRRPScript`) and `keepalived.stats` (`ParseStats`) line by line.
//!
//! Go's `encoding/json` rejects a number with a fraction for an int field and a string for a
//! number; missing fields decode as zero. The JSON checks below do the same.

use std::collections::BTreeMap;

use serde_json::Value;

/// keepalived's per-instance statistics, as both exporters name them.
pub const STATS_FIELDS: [&str; 14] = [
    "advert_rcvd",
    "advert_sent",
    "become_master",
    "release_master",
    "packet_len_err",
    "advert_interval_err",
    "ip_ttl_err",
    "invalid_type_rcvd",
    "addr_list_err",
    "invalid_authtype",
    "authtype_mismatch",
    "auth_failure",
    "pri_zero_rcvd",
    "pri_zero_sent",
];

/// One instance as an exporter decodes it from `keepalived.json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JsonVrrp {
    /// `data.iname`.
    pub iname: String,
    /// `data.ifp_ifname`.
    pub intf: String,
    /// `data.last_transition`.
    pub last_transition: f64,
    /// `data.vrid`.
    pub vrid: i64,
    /// `data.state` (0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT).
    pub state: i64,
    /// `data.wantstate`.
    pub wantstate: i64,
    /// `data.garp_delay` (mehdy's exporter: an int).
    pub garp_delay: i64,
    /// `data.vips`.
    pub vips: Vec<String>,
    /// `data.evips`.
    pub evips: Vec<String>,
    /// `stats.*`, by name.
    pub stats: BTreeMap<String, i64>,
}

fn go_int(v: &Value, path: &str) -> Result<i64, String> {
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => n.as_i64().ok_or_else(|| format!("json: cannot unmarshal number {n} into Go struct field {path} of type int")),
        other => Err(format!("json: cannot unmarshal {other} into Go struct field {path} of type int")),
    }
}

fn go_float(v: &Value, path: &str) -> Result<f64, String> {
    match v {
        Value::Null => Ok(0.0),
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{path}: not a float")),
        other => Err(format!("json: cannot unmarshal {other} into Go struct field {path} of type float64")),
    }
}

fn go_string(v: &Value, path: &str) -> Result<String, String> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("json: cannot unmarshal {other} into Go struct field {path} of type string")),
    }
}

fn go_strings(v: &Value, path: &str) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a.iter().map(|s| go_string(s, path)).collect(),
        other => Err(format!("json: cannot unmarshal {other} into Go struct field {path} of type []string")),
    }
}

/// Decodes `keepalived.json` as both exporters do (`[]KA` / `[]VRRP`).
///
/// # Errors
/// What Go's decoder would reject: not an array of objects, or a field of the wrong type.
pub fn decode_json(text: &str) -> Result<Vec<JsonVrrp>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let arr = v.as_array().ok_or("json: cannot unmarshal into Go value of type []collector.KA")?;
    arr.iter()
        .map(|o| {
            let d = &o["data"];
            let s = &o["stats"];
            let mut stats = BTreeMap::new();
            for k in STATS_FIELDS {
                stats.insert(k.to_owned(), go_int(&s[k], &format!("Stats.{k}"))?);
            }
            Ok(JsonVrrp {
                iname: go_string(&d["iname"], "Data.iname")?,
                intf: go_string(&d["ifp_ifname"], "Data.ifp_ifname")?,
                last_transition: go_float(&d["last_transition"], "Data.last_transition")?,
                vrid: go_int(&d["vrid"], "Data.vrid")?,
                state: go_int(&d["state"], "Data.state")?,
                wantstate: go_int(&d["wantstate"], "Data.wantstate")?,
                garp_delay: go_int(&d["garp_delay"], "VRRPData.garp_delay")?,
                vips: go_strings(&d["vips"], "VRRPData.vips")?,
                evips: go_strings(&d["evips"], "VRRPData.evips")?,
                stats,
            })
        })
        .collect()
}

/// One instance of `keepalived.data` as mehdy's `ParseVRRPData` reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataVrrp {
    /// `VRRP Instance = NAME`.
    pub iname: String,
    /// `State = ...`, one of INIT, BACKUP, MASTER, FAULT.
    pub state: String,
    /// `Wantstate = ...`.
    pub wantstate: String,
    /// `Interface = ...`.
    pub intf: String,
    /// `Gratuitous ARP delay = N`.
    pub garp_delay: i64,
    /// `Virtual Router ID = N`.
    pub vrid: i64,
    /// The lines under `Virtual IP (N):`.
    pub vips: Vec<String>,
    /// The lines under `Virtual IP Excluded`.
    pub excluded_vips: Vec<String>,
}

const STATES: [&str; 4] = ["INIT", "BACKUP", "MASTER", "FAULT"];

/// mehdy's `ParseVRRPData`: instances start at ` VRRP Instance = NAME`; their properties are
/// three-space lines `KEY = VALUE` or `KEY: VALUE`, list entries five-space lines under the
/// last key; any other line ends the instance.
///
/// # Errors
/// A state or number the exporter cannot parse (it fails the scrape then).
pub fn parse_data(text: &str) -> Result<BTreeMap<String, DataVrrp>, String> {
    let mut data: BTreeMap<String, DataVrrp> = BTreeMap::new();
    let mut instance = String::new();
    let mut key = String::new();
    for l in text.lines() {
        if l.starts_with(" VRRP Instance") && l.contains('=') {
            instance = l.trim().split('=').nth(1).unwrap_or("").trim().to_owned();
            data.insert(instance.clone(), DataVrrp { iname: instance.clone(), ..Default::default() });
        } else if l.starts_with("   ") && !instance.is_empty() {
            let val;
            if l.starts_with("     ") {
                val = l.trim().to_owned();
            } else {
                let t = l.trim();
                let args: Vec<&str> = if l.contains('=') {
                    t.split('=').collect()
                } else if l.contains(':') {
                    t.split(':').collect()
                } else {
                    continue;
                };
                key = args[0].trim().to_owned();
                if key == "Virtual IP" {
                    continue;
                }
                val = args.get(1).map(|s| s.trim().to_owned()).unwrap_or_default();
            }
            let d = data.get_mut(&instance).ok_or("no instance")?;
            if (key.starts_with("Virtual IP (") || key == "Virtual IP") && !val.is_empty() {
                d.vips.push(val.clone());
            }
            if key.starts_with("Virtual IP Excluded") && !val.is_empty() {
                d.excluded_vips.push(val.clone());
            }
            match key.as_str() {
                "State" | "Wantstate" => {
                    if !STATES.contains(&val.as_str()) {
                        return Err(format!("unknown state {val}"));
                    }
                    if key == "State" {
                        d.state = val;
                    } else {
                        d.wantstate = val;
                    }
                }
                "Interface" | "Listening device" => d.intf = val,
                "Gratuitous ARP delay" => d.garp_delay = val.parse().map_err(|e| format!("Gratuitous ARP delay {val}: {e}"))?,
                "Virtual Router ID" => d.vrid = val.parse().map_err(|e| format!("Virtual Router ID {val}: {e}"))?,
                _ => {}
            }
        } else if l.starts_with(" VRRP Version") || l.starts_with(" VRRP Script") {
            continue;
        } else {
            instance.clear();
        }
    }
    Ok(data)
}

/// mehdy's `ParseVIP`: the address and the device of a VIP line.
pub fn parse_vip(vip: &str) -> Option<(String, String)> {
    let args: Vec<&str> = vip.split(' ').collect();
    (args.len() >= 3).then(|| (args[0].to_owned(), args[2].to_owned()))
}

/// A `VRRP Script` of `keepalived.data` as mehdy's `ParseVRRPScript` reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataScript {
    /// `VRRP Script = NAME`.
    pub name: String,
    /// `Status = GOOD|BAD`.
    pub status: String,
    /// `State = idle|running|...`.
    pub state: String,
}

/// mehdy's `ParseVRRPScript`.
pub fn parse_scripts(text: &str) -> Vec<DataScript> {
    let mut out = Vec::new();
    let mut s = DataScript::default();
    for l in text.lines() {
        if l.starts_with(" VRRP Script") && l.contains('=') {
            if !s.name.is_empty() {
                out.push(std::mem::take(&mut s));
            }
            s.name = l.trim().split('=').nth(1).unwrap_or("").trim().to_owned();
        } else if l.starts_with("   ") && !s.name.is_empty() {
            if !l.contains('=') {
                continue;
            }
            let parts: Vec<&str> = l.trim().split('=').collect();
            let (k, v) = (parts[0].trim(), parts.get(1).map_or("", |v| v.trim()));
            match k {
                "Status" => s.status = v.to_owned(),
                "State" => s.state = v.to_owned(),
                _ => {}
            }
        } else if !l.starts_with("    ") && !s.name.is_empty() {
            out.push(std::mem::take(&mut s));
        }
    }
    if !s.name.is_empty() {
        out.push(s);
    }
    out
}

/// mehdy's `ParseStats` of `keepalived.stats`: instance name → statistics by the JSON names.
///
/// # Errors
/// A value that is not an integer (the exporter fails the scrape then).
pub fn parse_stats(text: &str) -> Result<BTreeMap<String, BTreeMap<String, i64>>, String> {
    let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let mut instance = String::new();
    let mut section = String::new();
    for l in text.lines() {
        if l.starts_with("VRRP Instance") && l.contains(':') {
            instance = l.trim().split(':').nth(1).unwrap_or("").trim().to_owned();
            out.insert(instance.clone(), BTreeMap::new());
        } else if l.starts_with("  ") && l.ends_with(':') {
            section = l.trim().split(':').next().unwrap_or("").trim().to_owned();
        } else if l.starts_with("    ") && !section.is_empty() {
            let parts: Vec<&str> = l.trim().split(':').collect();
            let (k, v) = (parts[0].trim(), parts.get(1).map_or("", |v| v.trim()));
            let n: i64 = v.parse().map_err(|e| format!("Unknown metric value from keepalived.stats {k}={v}: {e}"))?;
            let name = match (section.as_str(), k) {
                ("Advertisements", "Received") => "advert_rcvd",
                ("Advertisements", "Sent") => "advert_sent",
                ("Packet Errors", "Length") => "packet_len_err",
                ("Packet Errors", "TTL") => "ip_ttl_err",
                ("Packet Errors", "Invalid Type") => "invalid_type_rcvd",
                ("Packet Errors", "Advertisement Interval") => "advert_interval_err",
                ("Packet Errors", "Address List") => "addr_list_err",
                ("Authentication Errors", "Invalid Type") => "invalid_authtype",
                ("Authentication Errors", "Type Mismatch") => "authtype_mismatch",
                ("Authentication Errors", "Failure") => "auth_failure",
                ("Priority Zero", "Received") => "pri_zero_rcvd",
                ("Priority Zero", "Sent") => "pri_zero_sent",
                _ => continue,
            };
            out.entry(instance.clone()).or_default().insert(name.to_owned(), n);
        } else if l.starts_with("  ") && !l.ends_with(':') && !l.starts_with("    ") {
            let parts: Vec<&str> = l.trim().split(':').collect();
            let (k, v) = (parts[0].trim(), parts.get(1).map_or("", |v| v.trim()));
            section.clear();
            let n: i64 = v.parse().map_err(|e| format!("Unknown metric value from keepalived.stats {k}={v}: {e}"))?;
            let name = match k {
                "Became master" => "become_master",
                "Released master" => "release_master",
                _ => continue,
            };
            out.entry(instance.clone()).or_default().insert(name.to_owned(), n);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parsers read keepalived 2.2.7's own files (written by Debian's keepalived in a
    /// namespace; the same files ka's golden tests hold) as the exporters do.
    #[test]
    fn parsers_read_keepalived_s_files() {
        let data = "------< VRRP Topology >------\n VRRP Instance = VI_1\n   VRRP Version = 2\n   State = MASTER\n   Flags: none\n   Wantstate = MASTER\n   Last transition = 1796468828.866825 (Sat Dec  5 11:07:08.866825 2026)\n   Interface = d0\n   Gratuitous ARP delay = 5\n   Virtual Router ID = 51\n   Virtual IP (2):\n     198.18.0.10/24 dev d0 scope global set\n     198.18.0.11 dev d0 scope global set\n   Notify priority changes = false\n------< VRRP Scripts >------\n VRRP Script = chk_ok\n   Command = '/usr/bin/true'\n   Status = GOOD\n   State = idle\n------< Interfaces >------\n";
        let d = parse_data(data).expect("data");
        let v = &d["VI_1"];
        assert_eq!((v.state.as_str(), v.wantstate.as_str(), v.intf.as_str(), v.garp_delay, v.vrid), ("MASTER", "MASTER", "d0", 5, 51));
        assert_eq!(v.vips.len(), 2);
        assert_eq!(parse_vip(&v.vips[0]), Some(("198.18.0.10/24".to_owned(), "d0".to_owned())));
        assert_eq!(parse_scripts(data), vec![DataScript { name: "chk_ok".into(), status: "GOOD".into(), state: "idle".into() }]);
        let json = r#"[{"data":{"iname":"VI_1","ifp_ifname":"d0","last_transition":1796468828.866825,"garp_delay":5,"vrid":51,"state":2,"wantstate":2,"vips":["198.18.0.10\/24 dev d0 scope global set"]},"stats":{"advert_sent":4,"become_master":1}}]"#;
        let j = decode_json(json).expect("json");
        assert_eq!((j[0].iname.as_str(), j[0].vrid, j[0].state, j[0].stats["advert_sent"], j[0].stats["auth_failure"]), ("VI_1", 51, 2, 4, 0));
        assert!(decode_json(r#"[{"data":{"garp_delay":5.0}}]"#).is_err(), "Go rejects 5.0 for an int");
        let stats = "VRRP Instance: VI_1\n  Advertisements:\n    Received: 0\n    Sent: 3\n  Became master: 1\n  Released master: 0\n  Packet Errors:\n    Length: 0\n";
        let s = parse_stats(stats).expect("stats");
        assert_eq!((s["VI_1"]["advert_sent"], s["VI_1"]["become_master"], s["VI_1"]["packet_len_err"]), (3, 1, 0));
    }
}
