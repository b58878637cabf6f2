//! The LVS notify FIFOs (`lvs_notify_fifo`, and the global `notify_fifo` which gets the same
//! lines): keepalived's lines for virtual and real servers, `VS [198.18.0.1]:tcp:80 UP` when a
//! virtual server gains or loses quorum and `RS [198.18.1.1]:tcp:80 [198.18.0.1]:tcp:80 DOWN`
//! when a real server goes up or down (keepalived 2.2.7's `notify_fifo_vs` / `notify_fifo_rs`
//! in check/ipwrapper.c).
//!
//! The FIFOs themselves (and their scripts) are [`super::fifo::NotifyFifos`].

use std::net::IpAddr;

use crate::config::model::{Protocol, VirtualServer, VsKey};

/// keepalived's `FMT_VS` of a virtual server: `[ADDR]:proto:PORT`, `FWM N`, `[GROUP]:0`.
pub fn vs_label(vs: &VirtualServer) -> String {
    crate::lb::plan::vs_label(vs)
}

/// keepalived's `FMT_RS` of a real server of `vs`: `[ADDR]:proto:PORT`, with the virtual
/// server's protocol (`none` for a fwmark service, which has none).
pub fn rs_label(addr: IpAddr, port: u16, vs: &VirtualServer) -> String {
    let proto = match vs.key {
        VsKey::Fwmark(_) => "none",
        _ => match vs.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        },
    };
    format!("[{addr}]:{proto}:{port}")
}

/// The line of a virtual server's quorum change.
pub fn vs_line(vs: &str, up: bool) -> String {
    format!("VS {vs} {}\n", if up { "UP" } else { "DOWN" })
}

/// The line of a real server's state change.
pub fn rs_line(rs: &str, vs: &str, up: bool) -> String {
    format!("RS {rs} {vs} {}\n", if up { "UP" } else { "DOWN" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, LoadOptions};
    use std::path::Path;

    /// keepalived's lines, for an address service, a fwmark and a group.
    #[test]
    fn lines_match_keepalived() {
        let text = "virtual_server 198.18.0.1 80 {\n protocol UDP\n real_server 198.18.1.1 53 {\n }\n}\nvirtual_server fwmark 7 {\n real_server 198.18.1.1 80 {\n }\n}\nvirtual_server_group web {\n 198.18.0.2 80\n}\nvirtual_server group web {\n protocol TCP\n real_server fd00:198:18::1 80 {\n }\n}\n";
        let c = parse_str(text, Path::new("t.conf"), &LoadOptions::default()).config;
        let rs = |i: usize| {
            let v = &c.virtual_servers[i];
            rs_label(v.real_servers[0].address, v.real_servers[0].port, v)
        };
        let cases = [
            (vs_line(&vs_label(&c.virtual_servers[0]), true), "VS [198.18.0.1]:udp:80 UP\n"),
            (rs_line(&rs(0), &vs_label(&c.virtual_servers[0]), false), "RS [198.18.1.1]:udp:53 [198.18.0.1]:udp:80 DOWN\n"),
            (vs_line(&vs_label(&c.virtual_servers[1]), false), "VS FWM 7 DOWN\n"),
            (rs_line(&rs(1), &vs_label(&c.virtual_servers[1]), true), "RS [198.18.1.1]:none:80 FWM 7 UP\n"),
            (rs_line(&rs(2), &vs_label(&c.virtual_servers[2]), true), "RS [fd00:198:18::1]:tcp:80 [web]:0 UP\n"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }
}
