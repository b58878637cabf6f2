//! Fuzzes the IPVS sync v1 decoder (`ka::lb::sync::wire`) and what the BACKUP does with a
//! decoded entry (body: `ka_fuzz::sync_decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ka_fuzz::sync_decode(data);
});
