//! Fuzzes the keepalived.conf loader, `include` included: the input is a small filesystem held
//! in memory ([`ka::config::fs::MemFs`]), so includes, globs, cycles, directories and
//! executable files are exercised without touching the machine's files. Whatever the bytes
//! (NUL, invalid UTF-8, huge lines, `~SEQ` bombs, include loops...), loading returns
//! diagnostics and never panics, and the model dumps to JSON.
//!
//! Input format (see `ka_fuzz::config_fs`): the main file
//! `/etc/keepalived/keepalived.conf`, then any number of `\n=== NAME\n` separators each
//! starting a further file (NAME relative to /etc/keepalived; a trailing `/` makes a
//! directory, a leading `+x ` an executable file).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ka_fuzz::config_parse(data);
});
