//! ka-ebpf's modules form a DAG in layers (see `ka-ebpf/src/main.rs`): each uses only modules
//! of the layers before it. Read from the sources: a `crate::` path or a `use crate::{...}`
//! item outside comments names a module used. The old datapath had a cycle (forward ↔ lookup ↔
//! maps ↔ stats ↔ vrrp) and fails here.

use std::{collections::BTreeSet, path::Path};

/// The modules in layer order, each with its files.
const LAYERS: &[(&str, &[&str])] = &[
    ("atomic", &["atomic.rs"]),
    ("ptr", &["ptr.rs"]),
    ("mem", &["mem.rs"]),
    ("csum", &["csum.rs"]),
    ("maps", &["maps.rs"]),
    ("parse", &["parse.rs"]),
    ("stats", &["stats.rs"]),
    ("scratch", &["scratch.rs"]),
    ("lookup", &["lookup/mod.rs", "lookup/conn.rs", "lookup/sched.rs"]),
    ("forward", &["forward.rs"]),
    ("icmp", &["icmp.rs"]),
    ("sync", &["sync.rs"]),
    ("lb", &["lb.rs"]),
    ("vrrp", &["vrrp.rs"]),
    ("decap", &["decap.rs"]),
    ("gen", &["gen.rs"]),
    ("bench", &["bench.rs"]),
];

/// The crate modules `code` (comments removed) names.
fn used(code: &str) -> BTreeSet<String> {
    let names: BTreeSet<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::c, d::{e, f}}`: the first segment of each top-level item.
            let mut depth = 0;
            let mut item = String::new();
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(item.trim().split("::").next().unwrap_or("").to_owned());
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(ch);
                }
            }
            out.insert(item.trim().split("::").next().unwrap_or("").to_owned());
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            out.insert(name);
        }
    }
    out.retain(|m| names.contains(m.as_str()));
    out
}

#[test]
fn ebpf_modules_form_a_dag_in_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ka-ebpf/src");
    let mut failures = Vec::new();
    for (i, (module, files)) in LAYERS.iter().enumerate() {
        for f in *files {
            let text = std::fs::read_to_string(src.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for dep in used(&code) {
                let j = LAYERS.iter().position(|(m, _)| *m == dep).unwrap_or(0);
                if dep != *module && j > i {
                    failures.push(format!("{module} ({f}) uses {dep}, a layer above it"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every module of the crate is placed in a layer.
    let main = std::fs::read_to_string(src.join("main.rs")).expect("main.rs");
    for line in main.lines() {
        if let Some(m) = line.trim().strip_prefix("mod ").and_then(|m| m.strip_suffix(';')) {
            assert!(LAYERS.iter().any(|(l, _)| *l == m), "module {m} is in no layer of this test");
        }
    }
}

#[test]
fn used_modules_are_read_from_paths_and_groups() {
    let u = used("use crate::{maps::{A, B}, ptr, scratch::Work};\nlet x = crate::lb::handle();");
    assert_eq!(u.into_iter().collect::<Vec<_>>(), ["lb", "maps", "ptr", "scratch"]);
}
