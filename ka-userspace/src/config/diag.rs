//! Source locations, diagnostics and their rendering (`PATH:LINE:COL: error: MESSAGE`).

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

/// Index of a source file in a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId(pub u32);

/// A position in a source file: 1-based line and column (columns count bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Span {
    /// The file the text really came from.
    pub file: FileId,
    /// 1-based line number.
    pub line: u32,
    /// 1-based column (byte offset + 1).
    pub col: u32,
}

impl Span {
    /// A span in `file` at `line`:`col`.
    pub fn new(file: FileId, line: u32, col: u32) -> Self {
        Self { file, line, col }
    }
}

/// The files a configuration was read from, so spans can be printed with their path.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<Arc<Path>>,
}

impl SourceMap {
    /// Registers `path` and returns its id (an already known path keeps its id).
    pub fn add(&mut self, path: &Path) -> FileId {
        if let Some(i) = self.files.iter().position(|p| &**p == path) {
            return FileId(i as u32);
        }
        self.files.push(Arc::from(path));
        FileId((self.files.len() - 1) as u32)
    }

    /// The path of `id` (`<unknown>` for an id this map never gave out).
    pub fn path(&self, id: FileId) -> &Path {
        self.files
            .get(id.0 as usize)
            .map(|p| &**p)
            .unwrap_or_else(|| Path::new("<unknown>"))
    }

    /// All registered files, in registration order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|p| &**p)
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration is wrong; `ka check` exits 1.
    Error,
    /// Accepted, but probably not what was meant, or not supported by ka yet.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where the offending text was written (`None` for whole-file problems).
    pub span: Option<Span>,
    /// Where the text was expanded (the line using a `$NAME` definition), if it came from one.
    pub via: Option<Span>,
    /// Human readable message, without location or severity.
    pub message: String,
    /// The diagnostic says a keyword is ignored (unknown, or accepted without being acted on):
    /// `ka check` counts these in its summary line.
    pub ignored_keyword: Option<IgnoredKeyword>,
}

/// Why a keyword is ignored, for [`Diagnostic::ignored_keyword`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoredKeyword {
    /// Not a keyword of its block (keepalived 2.2 ignores it too).
    Unknown,
    /// A keepalived keyword ka reads but does not act on.
    NotActedOn,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(span: Option<Span>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            span,
            via: None,
            message: message.into(),
            ignored_keyword: None,
        }
    }

    /// A warning at `span`.
    pub fn warning(span: Option<Span>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            span,
            via: None,
            message: message.into(),
            ignored_keyword: None,
        }
    }

    /// Marks it as saying that a keyword is ignored, and why.
    pub fn ignoring(mut self, why: IgnoredKeyword) -> Self {
        self.ignored_keyword = Some(why);
        self
    }

    /// Sets the expansion site.
    pub fn with_via(mut self, via: Option<Span>) -> Self {
        self.via = via;
        self
    }

    /// Renders the one-line form `PATH:LINE:COL: error: MESSAGE`.
    pub fn render(&self, sources: &SourceMap, fallback: &Path) -> String {
        let mut s = match self.span {
            Some(sp) => format!(
                "{}:{}:{}: {}: {}",
                sources.path(sp.file).display(),
                sp.line,
                sp.col,
                self.severity,
                self.message
            ),
            None => format!(
                "{}: {}: {}",
                fallback.display(),
                self.severity,
                self.message
            ),
        };
        if let Some(v) = self.via {
            s.push_str(&format!(
                " (expanded at {}:{}:{})",
                sources.path(v.file).display(),
                v.line,
                v.col
            ));
        }
        s
    }

    /// Renders the excerpt shown on a terminal: the source line and a caret under the column.
    /// Returns `None` when the line cannot be read back.
    pub fn excerpt(&self, sources: &SourceMap) -> Option<String> {
        let sp = self.span?;
        let text = std::fs::read(sources.path(sp.file)).ok()?;
        let line = text
            .split(|&b| b == b'\n')
            .nth(sp.line.checked_sub(1)? as usize)?;
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        let col = (sp.col.saturating_sub(1) as usize).min(line.len());
        let pad: String = line
            .bytes()
            .take(col)
            .map(|b| if b == b'\t' { '\t' } else { ' ' })
            .collect();
        Some(format!("{:>5} | {line}\n      | {pad}^", sp.line))
    }
}

/// Collects diagnostics, deduplicating exact repeats (a `~SEQ` line expands the same text many
/// times; one report per place is enough).
#[derive(Debug, Default)]
pub struct Diagnostics {
    list: Vec<Diagnostic>,
    seen: std::collections::HashSet<(Option<Span>, String)>,
}

impl Diagnostics {
    /// Adds `d` unless the same message was already reported at the same place.
    pub fn push(&mut self, d: Diagnostic) {
        if self.seen.insert((d.span, d.message.clone())) {
            self.list.push(d);
        }
    }

    /// Adds an error.
    pub fn error(&mut self, span: Option<Span>, message: impl Into<String>) {
        self.push(Diagnostic::error(span, message));
    }

    /// Adds a warning.
    pub fn warning(&mut self, span: Option<Span>, message: impl Into<String>) {
        self.push(Diagnostic::warning(span, message));
    }

    /// Number of errors so far.
    pub fn error_count(&self) -> usize {
        self.list
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// The diagnostics, sorted by file, line and column (file-less ones last).
    pub fn into_sorted(self) -> Vec<Diagnostic> {
        let mut v = self.list;
        v.sort_by(|a, b| match (a.span, b.span) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        v
    }
}

/// A path made absolute against the current directory, without touching the filesystem.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The terminal excerpt shows the source line and puts the caret under the diagnostic's
    /// column: tabs before it are kept (so the caret lines up however wide a tab is shown),
    /// other characters become spaces, a CRLF line ending is dropped, and a column past the
    /// end of the line puts the caret just after it.
    #[test]
    fn excerpt_caret_column() {
        let dir = std::env::temp_dir().join(format!("ka-diag-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("k.conf");
        std::fs::write(&path, "vrrp_instance VI_1 {\r\n\tpriority  300\r\n}\n").expect("write");
        let mut sources = SourceMap::default();
        let id = sources.add(&path);
        let at = |line, col| Diagnostic::error(Some(Span::new(id, line, col)), "m");
        let cases = [
            // `300` starts at byte 11 of line 2: column 12.
            (2, 12, "    2 | \tpriority  300\n      | \t          ^"),
            (2, 1, "    2 | \tpriority  300\n      | ^"),
            (1, 15, "    1 | vrrp_instance VI_1 {\n      |               ^"),
            (3, 40, "    3 | }\n      |  ^"),
        ];
        for (line, col, want) in cases {
            assert_eq!(at(line, col).excerpt(&sources).as_deref(), Some(want), "{line}:{col}");
        }
        // No excerpt for a line the file does not have, or a diagnostic without a place.
        assert_eq!(at(9, 1).excerpt(&sources), None);
        assert_eq!(Diagnostic::error(None, "m").excerpt(&sources), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
