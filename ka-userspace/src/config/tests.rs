//! Corpus and golden tests: `tests/corpus/config/{valid,invalid,preprocess}`.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use super::{
    diag::{Diagnostics, SourceMap},
    load,
    preprocess::Preprocessor,
    InterfaceCheck, LoadOptions, Severity,
};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/config")
}

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus().join(dir))
        .expect("corpus directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn opts() -> LoadOptions {
    LoadOptions {
        config_id: Some("ka-test".into()),
        interfaces: InterfaceCheck::Known(["eth0", "eth1"].iter().map(|s| s.to_string()).collect()),
    }
}

/// Every valid configuration loads without errors.
#[test]
fn valid_corpus_has_no_errors() {
    let list = files("valid", "conf");
    assert!(list.len() >= 4);
    for f in list {
        let l = load(&f, &opts()).expect("readable");
        let errs: Vec<String> = l
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.render(&l.sources, &f))
            .collect();
        assert!(errs.is_empty(), "{}:\n{}", f.display(), errs.join("\n"));
    }
}

/// Each invalid configuration gets exactly the diagnostics its `# expect: LINE SEVERITY: TEXT`
/// comments list (every error must be expected; listed warnings must be present).
#[test]
fn invalid_corpus_matches_expectations() {
    let list = files("invalid", "conf");
    assert!(list.len() >= 10);
    let mut failures = Vec::new();
    for f in list {
        let text = std::fs::read_to_string(&f).expect("read");
        let expects: Vec<(u32, Severity, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(|e| {
                let (line, rest) = e.split_once(' ').expect("LINE SEV: TEXT");
                let (sev, msg) = rest.split_once(": ").expect("SEV: TEXT");
                let sev = if sev == "error" {
                    Severity::Error
                } else {
                    Severity::Warning
                };
                (line.parse().expect("line number"), sev, msg.to_string())
            })
            .collect();
        assert!(!expects.is_empty(), "{} has no expectations", f.display());
        let l = load(&f, &opts()).expect("readable");
        let rendered: Vec<String> = l
            .diagnostics
            .iter()
            .map(|d| d.render(&l.sources, &f))
            .collect();
        let mut used = HashSet::new();
        for (line, sev, msg) in &expects {
            let hit = l.diagnostics.iter().position(|d| {
                d.severity == *sev
                    && d.span.map(|s| s.line) == Some(*line)
                    && d.message.contains(msg.as_str())
            });
            match hit {
                Some(i) => {
                    used.insert(i);
                }
                None => failures.push(format!(
                    "{}: missing {line} {sev}: {msg}\n  got:\n    {}",
                    f.display(),
                    rendered.join("\n    ")
                )),
            }
        }
        for (i, d) in l.diagnostics.iter().enumerate() {
            if d.severity == Severity::Error && !used.contains(&i) {
                failures.push(format!("{}: unexpected {}", f.display(), rendered[i]));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn expand_golden(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read");
    let mut sources = SourceMap::default();
    let mut diags = Diagnostics::default();
    let mut out = String::new();
    {
        let mut pp = Preprocessor::from_str(path, &text, "main", &mut sources, &mut diags);
        while let Some(line) = pp.next_line() {
            let sp = line[0].span;
            let via = line[0]
                .via
                .map(|v| format!(" (via {})", v.line))
                .unwrap_or_default();
            let words: Vec<String> = line.iter().map(|t| t.text.clone()).collect();
            out.push_str(&format!(
                "{}:{}{via} | {}\n",
                sp.line,
                sp.col,
                words.join(" ")
            ));
        }
    }
    for d in diags.into_sorted() {
        out.push_str(&format!("DIAG {}\n", d.render(&sources, path)));
    }
    out
}

/// The preprocessor output (tokens with their origin) matches the `.expanded` golden files.
/// Set `KA_UPDATE_GOLDEN=1` to rewrite them.
#[test]
fn preprocessor_golden() {
    let list = files("preprocess", "conf");
    assert!(!list.is_empty());
    for f in list {
        let got = expand_golden(&f);
        let golden = f.with_extension("expanded");
        if std::env::var_os("KA_UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &got).expect("write golden");
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        assert_eq!(
            got,
            want,
            "{} differs from {}",
            f.display(),
            golden.display()
        );
    }
}

/// docs/config.md lists every keyword of the keyword tables.
#[test]
fn docs_list_every_keyword() {
    use super::parse::*;
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md"))
            .expect("docs/config.md");
    let tables: &[&[&str]] = &[
        TOP_SUPPORTED,
        TOP_UNSUPPORTED,
        GLOBAL_SUPPORTED,
        GLOBAL_UNSUPPORTED,
        VRRP_SUPPORTED,
        VRRP_UNSUPPORTED,
        VS_SUPPORTED,
        VS_UNSUPPORTED,
        RS_SUPPORTED,
        RS_UNSUPPORTED,
        CHECKERS_SUPPORTED,
        CHECKERS_UNSUPPORTED,
    ];
    let missing: Vec<&str> = tables
        .iter()
        .flat_map(|t| t.iter())
        .filter(|k| !doc.contains(&format!("`{k}`")))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "docs/config.md does not list {missing:?}"
    );
}

/// `parse_bytes` (what the fuzzer feeds) gives the same diagnostics as `load` on a file with
/// the same bytes: a NUL byte is one error at its line; invalid UTF-8 (text in another
/// encoding, which keepalived reads as bytes) is one warning at its line; text parses normally.
#[test]
fn parse_bytes_matches_load() {
    let dir = std::env::temp_dir().join(format!("ka-bytes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let cases: &[(&[u8], Option<u32>)] = &[
        (b"global_defs {\n router_id a\n}\n\0\n", Some(4)),
        (b"global_defs {\n\xff\xfe\n}\n", None),
        (b"global_defs {\n router_id a\n}\n", None),
    ];
    for (i, (bytes, err_line)) in cases.iter().enumerate() {
        let path = dir.join(format!("c{i}.conf"));
        std::fs::write(&path, bytes).expect("write");
        let from_file = load(&path, &opts()).expect("readable");
        let from_bytes = super::parse_bytes(bytes, &path, &opts());
        let render = |l: &super::Loaded| -> Vec<String> {
            l.diagnostics.iter().map(|d| d.render(&l.sources, &path)).collect()
        };
        assert_eq!(render(&from_bytes), render(&from_file), "case {i}");
        let errs: Vec<u32> = from_bytes
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .filter_map(|d| d.span.map(|s| s.line))
            .collect();
        assert_eq!(errs, err_line.iter().copied().collect::<Vec<_>>(), "case {i}");
        if i == 1 {
            let warned: Vec<u32> = from_bytes
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Warning && d.message.contains("invalid UTF-8"))
                .filter_map(|d| d.span.map(|s| s.line))
                .collect();
            assert_eq!(warned, vec![2], "case {i}: one warning at the line of the bad bytes");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
