//! Fuzzes the BFD Control packet codec and a session receiving the input (body:
//! `ka_fuzz::bfd_decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ka_fuzz::bfd_decode(data);
});
