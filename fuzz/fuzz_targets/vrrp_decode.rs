//! Fuzzes `ka_common::vrrp` decoding and validation, and IPsec AH adverts (body:
//! `ka_fuzz::vrrp_decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ka_fuzz::vrrp_decode(data);
});
