//! Table-driven tests of the plan: what is served, under which keys, and what is refused.

use super::*;
use crate::config::{parse_str, LoadOptions};

fn load(text: &str) -> Config {
    parse_str(text, std::path::Path::new("t.conf"), &LoadOptions::default()).config
}

/// A virtual server on `key` (`ADDR PORT`, `fwmark N`, `group G`) with one DR real server and
/// `extra` lines.
fn vs(key: &str, extra: &str) -> String {
    format!("virtual_server {key} {{\n lb_kind DR\n protocol TCP\n{extra} real_server 198.18.1.1 80 {{\n }}\n}}\n")
}

struct Case {
    name: &'static str,
    conf: String,
    /// Keys of each served virtual server, as `ADDR:PORT`.
    served: Vec<Vec<&'static str>>,
    /// (entry, substring of the reason) of each refusal, in order.
    refused: Vec<(Option<&'static str>, &'static str)>,
}

#[test]
fn plan_table() {
    let g = |body: &str| format!("virtual_server_group g {{\n{body}}}\n");
    let cases = vec![
        Case { name: "one address", conf: vs("198.18.0.1 80", ""), served: vec![vec!["198.18.0.1:80"]], refused: vec![] },
        Case {
            name: "port 0 with persistence",
            conf: vs("198.18.0.1 0", " persistence_timeout 60\n"),
            served: vec![vec!["198.18.0.1:0"]],
            refused: vec![],
        },
        Case {
            name: "port 0 made persistent as keepalived does",
            conf: vs("198.18.0.1 0", ""),
            served: vec![vec!["198.18.0.1:0"]],
            refused: vec![],
        },
        Case {
            name: "IPv4 range, CIDR and single entries",
            conf: g(" 198.18.0.1-3 80\n 198.18.0.8/30 443\n 198.18.0.20 0\n") + &vs("group g", " persistence_timeout 60\n"),
            served: vec![vec![
                "198.18.0.1:80",
                "198.18.0.2:80",
                "198.18.0.3:80",
                "198.18.0.8:443",
                "198.18.0.9:443",
                "198.18.0.10:443",
                "198.18.0.11:443",
                "198.18.0.20:0",
            ]],
            refused: vec![],
        },
        Case {
            name: "IPv6 range",
            conf: g(" fd00:198:18::fe-101 80\n") + &vs("group g", "").replace("198.18.1.1", "fd00:198:18::1"),
            served: vec![vec!["[fd00:198:18::fe]:80", "[fd00:198:18::ff]:80", "[fd00:198:18::100]:80", "[fd00:198:18::101]:80"]],
            refused: vec![],
        },
        Case {
            name: "fwmark entry refused alone",
            conf: g(" 198.18.0.1 80\n fwmark 5\n") + &vs("group g", ""),
            served: vec![vec!["198.18.0.1:80"]],
            refused: vec![(Some("fwmark 5 of virtual_server_group g"), "firewall mark")],
        },
        Case {
            name: "fwmark service refused, the next one served",
            conf: vs("fwmark 5", "") + &vs("198.18.0.2 80", ""),
            served: vec![vec!["198.18.0.2:80"]],
            refused: vec![(None, "firewall mark")],
        },
        Case {
            name: "overlapping group: the taken key refused, the rest served",
            conf: vs("198.18.0.2 80", "") + &g(" 198.18.0.1-3 80\n") + &vs("group g", ""),
            served: vec![vec!["198.18.0.2:80"], vec!["198.18.0.1:80", "198.18.0.3:80"]],
            refused: vec![(Some("[198.18.0.2]:80"), "[198.18.0.2]:tcp:80 already serves it")],
        },
        Case {
            name: "same address, other protocol: both served",
            conf: vs("198.18.0.2 53", "") + &vs("198.18.0.2 53", "").replace("protocol TCP", "protocol UDP"),
            served: vec![vec!["198.18.0.2:53"], vec!["198.18.0.2:53"]],
            refused: vec![],
        },
        Case {
            name: "mixed-family group",
            conf: g(" 198.18.0.1 80\n fd00:198:18::1 80\n") + &vs("group g", ""),
            served: vec![],
            refused: vec![(None, "mixes IPv4 and IPv6")],
        },
        Case {
            name: "range too large",
            conf: g(" 198.18.0.0/16 80\n 198.18.9.9 80\n") + &vs("group g", ""),
            served: vec![vec!["198.18.9.9:80"]],
            refused: vec![(Some("198.18.0.0-198.18.255.255 80"), "at most 16384")],
        },
    ];
    for c in cases {
        let p = plan(&load(&c.conf));
        let served: Vec<Vec<String>> =
            p.services.iter().map(|s| s.keys.iter().map(|(a, port)| std::net::SocketAddr::new(*a, *port).to_string()).collect()).collect();
        let want: Vec<Vec<String>> = c.served.iter().map(|v| v.iter().map(|s| (*s).to_owned()).collect()).collect();
        assert_eq!(served, want, "{}", c.name);
        assert_eq!(p.refused.len(), c.refused.len(), "{}: {:?}", c.name, p.refused);
        for (r, (entry, why)) in p.refused.iter().zip(&c.refused) {
            assert_eq!(r.entry.as_deref(), *entry, "{}", c.name);
            assert!(r.message().contains(why), "{}: {:?} lacks {why:?}", c.name, r.message());
        }
    }
}

/// 10,000 virtual servers are served; past [`MAX_SERVICES`] the later ones are refused, each
/// alone; and past the scheduling-table pool (64 services of more than 327 real servers, each
/// a bank of 65,536 slots) too.
#[test]
fn too_many_services_refuses_the_later_ones() {
    let addr = |i: u32| std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0)) + i);
    let conf: String = (0..10_000).map(|i| vs(&format!("{} 80", addr(i)), " lb_algo mh\n real_server 198.19.0.1 80 {\n }\n")).collect();
    let p = plan(&load(&conf));
    assert_eq!((p.services.len(), p.refused.len()), (10_000, 0), "{:?}", p.refused.first());
    let n = MAX_SERVICES + 6;
    let conf: String = (0..n).map(|i| vs(&format!("{} 80", addr(i)), " lb_algo rr\n")).collect();
    let p = plan(&load(&conf));
    assert_eq!(p.services.len(), MAX_SERVICES as usize);
    assert_eq!(p.refused.len(), 6);
    assert!(p.refused[0].message().contains("at most 16384 virtual servers"), "{:?}", p.refused[0]);
    assert_eq!(p.refused[0].service, format!("[{}]:tcp:80", addr(MAX_SERVICES)));
    let big: String = std::iter::once(" lb_algo mh\n".to_owned()).chain((0..330).map(|k| format!(" real_server {} 80 {{\n }}\n", std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 19, 0, 0)) + k)))).collect();
    let conf: String = (0..66).map(|i| vs(&format!("{} 80", addr(i)), &big)).collect();
    let p = plan(&load(&conf));
    assert_eq!(p.services.len(), 64);
    assert!(p.refused[0].message().contains("scheduling tables are full"), "{:?}", p.refused[0]);
}

/// keepalived's labels: `[ADDR]:proto:PORT`, `FWM N`, `[GROUP]:0`.
#[test]
fn labels_like_keepalived() {
    let c = load(&(vs("198.18.0.1 80", "") + &vs("fwmark 3", "") + "virtual_server_group web {\n 198.18.0.9 80\n}\n" + &vs("group web", "")));
    let labels: Vec<String> = c.virtual_servers.iter().map(vs_label).collect();
    assert_eq!(labels, vec!["[198.18.0.1]:tcp:80", "FWM 3", "[web]:0"]);
}

/// `sh` without `sh-fallback` is flagged only where a real server can be at weight 0.
#[test]
fn sh_without_fallback_is_flagged_where_it_differs() {
    let conf = |extra: &str, rs: &str| format!("virtual_server 198.18.0.1 80 {{\n protocol TCP\n lb_algo sh\n{extra} real_server 198.18.1.1 80 {{\n{rs} }}\n}}\n");
    let cases = [("", "", 0), ("", "  weight 0\n", 1), ("", "  inhibit_on_failure\n", 1), (" sh-fallback\n", "  inhibit_on_failure\n", 0)];
    for (extra, rs, n) in cases {
        let got = approximations(&load(&conf(extra, rs)));
        assert_eq!(got.len(), n, "{extra:?} {rs:?}: {got:?}");
        assert!(got.iter().all(|(_, m)| m.contains("sh-fallback")));
    }
}
