//! Fuzzes the IPVS sync v1 decoder (`ka::lb::sync::wire`) and what the BACKUP does with a
//! decoded entry: never panics, and whatever decodes re-encodes to bytes that decode to the
//! same message. Malformed datagrams are errors (counted by the daemon), never crashes.
#![no_main]

use ka::lb::sync::{
    index::{Remote, SyncIndex},
    wire::Message,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::decode(data) else { return };
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(out.len(), m.len());
    let again = Message::decode(&out).expect("a re-encoded message decodes");
    assert_eq!(again, m);
    // The receiver's mapping of every entry, against an index naming one real server.
    let mut ix = SyncIndex::default();
    if let Some(c) = m.conns.first() {
        let (addr, family) = ka::lb::addr16(c.vaddr);
        let service = ka_common::lb::ServiceKey { addr, port: c.vport.to_be_bytes(), proto: c.protocol, family };
        ix.insert(0, Remote { service, addr: c.daddr, port: c.dport, method: ka::lb::Method::Dr });
        ix.set_persistence(service, 24, 60);
    }
    for c in &m.conns {
        let _ = ix.incoming(c);
    }
});
