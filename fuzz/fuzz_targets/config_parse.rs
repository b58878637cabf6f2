//! Fuzzes the keepalived.conf parser: whatever the bytes (NUL, invalid UTF-8, huge lines,
//! `~SEQ` bombs...), `parse_bytes` returns diagnostics and never panics. The bytes go through
//! the same path as a file's content (`Preprocessor::from_bytes`, as `load` does after reading).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Inputs with an include directive (`include`, `includer`... all start with these bytes)
    // are skipped: they read the real filesystem (`include /*/*`, `/proc`, `/sys`), which makes
    // runs slow and non-reproducible. Includes are covered by the preprocessor's unit tests and
    // by `ka check` integration tests on temporary directories.
    if data.windows(7).any(|w| w == b"include") {
        return;
    }
    let opts = ka::config::LoadOptions {
        config_id: Some("fuzz".into()),
        interfaces: ka::config::InterfaceCheck::Skip,
    };
    let loaded =
        ka::config::parse_bytes(data, std::path::Path::new("/nonexistent/fuzz.conf"), &opts);
    let _ = ka::config::dump::to_json(&loaded.config, &loaded.sources);
});
