//! Fuzzes the control socket's request decoder (`ka::control::decode_request`) with what a
//! client may send, and the daemon's handling of a decoded `ka rs` request against a running
//! configuration: never panics, a decoded request re-encodes to one that decodes the same,
//! and every answer serializes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ka_fuzz::control_decode(data);
});
