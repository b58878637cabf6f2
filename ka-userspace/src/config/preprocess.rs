//! Preprocessor: includes, `@id` conditionals, `$NAME` definitions, `~SEQ`/`~LST`, expansion.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use super::{
    diag::{Diagnostic, Diagnostics, FileId, SourceMap, Span},
    fs::{ConfigFs, RealFs},
    lexer::{comment_start, tokenize, SrcText, Token},
};

/// Largest configuration file read (keepalived configurations are kilobytes).
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Deepest include nesting.
pub const MAX_INCLUDE_DEPTH: usize = 32;
/// Deepest nesting of definition expansions (catches recursive definitions).
pub const MAX_EXPANSION_DEPTH: u16 = 64;
/// Most lines the preprocessor produces (catches `~SEQ` bombs).
pub const MAX_LINES: u64 = 20_000_000;
/// Longest line after expansion.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Most values one `~SEQ`/`~LST` produces.
pub const MAX_SEQ_VALUES: i64 = 1 << 20;

/// Why the main configuration file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A definition made with `$NAME=value`.
#[derive(Debug, Clone)]
enum Def {
    Single(SrcText),
    Multi(Vec<SrcText>),
}

/// Pending work, processed before the next physical line.
#[derive(Debug)]
enum Item {
    Line(SrcText, u16),
    Define(String, Def),
}

struct OpenFile {
    id: FileId,
    dir: PathBuf,
    canon: PathBuf,
    data: String,
    pos: usize,
    line: u32,
}

struct Frame {
    file: Option<OpenFile>,
    pending: Vec<(PathBuf, Span)>,
}

/// Which checks an include variant adds (see keepalived.conf(5), `include_check`).
#[derive(Debug, Clone, Copy, Default)]
struct IncludeChecks {
    readable: bool,
    matched: bool,
    wildcard: bool,
    brace: bool,
}

/// Turns configuration files into lines of tokens, one line at a time.
pub struct Preprocessor<'a> {
    fs: &'a dyn ConfigFs,
    sources: &'a mut SourceMap,
    diags: &'a mut Diagnostics,
    frames: Vec<Frame>,
    stack: Vec<Item>,
    defs: HashMap<String, Def>,
    multiline: Option<(String, Vec<SrcText>)>,
    config_id: String,
    lines_out: u64,
    stopped: bool,
    random: u64,
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

impl<'a> Preprocessor<'a> {
    /// Opens `path` as the main file. `config_id` selects `@id` lines.
    ///
    /// # Errors
    /// [`PreprocessError::Read`] if the main file cannot be read.
    pub fn open(
        path: &Path,
        config_id: &str,
        sources: &'a mut SourceMap,
        diags: &'a mut Diagnostics,
    ) -> Result<Self, PreprocessError> {
        Self::open_in(&RealFs, path, config_id, sources, diags)
    }

    /// [`Preprocessor::open`] on the filesystem `fs` (the main file and every include).
    ///
    /// # Errors
    /// [`PreprocessError::Read`] if the main file cannot be read.
    pub fn open_in(
        fs: &'a dyn ConfigFs,
        path: &Path,
        config_id: &str,
        sources: &'a mut SourceMap,
        diags: &'a mut Diagnostics,
    ) -> Result<Self, PreprocessError> {
        let meta = fs.stat(path).map_err(|source| PreprocessError::Read {
            path: path.to_owned(),
            source,
        })?;
        if meta.is_dir {
            return Err(PreprocessError::Read {
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "is a directory"),
            });
        }
        let mut pp = Self::empty(fs, config_id, sources, diags);
        let bytes = if meta.len > MAX_FILE_BYTES {
            None
        } else {
            Some(fs.read(path).map_err(|source| PreprocessError::Read {
                path: path.to_owned(),
                source,
            })?)
        };
        pp.push_file_bytes(path, bytes, meta.len, None);
        Ok(pp)
    }

    /// Preprocesses `text` as if read from `path` (includes are resolved relative to it).
    pub fn from_str(
        path: &Path,
        text: &str,
        config_id: &str,
        sources: &'a mut SourceMap,
        diags: &'a mut Diagnostics,
    ) -> Self {
        Self::from_bytes(path, text.as_bytes(), config_id, sources, diags)
    }

    /// Preprocesses `bytes` exactly as the content of the file `path` would be (the same size,
    /// NUL and UTF-8 checks as [`Preprocessor::open`]; includes resolve relative to `path`).
    pub fn from_bytes(
        path: &Path,
        bytes: &[u8],
        config_id: &str,
        sources: &'a mut SourceMap,
        diags: &'a mut Diagnostics,
    ) -> Self {
        let mut pp = Self::empty(&RealFs, config_id, sources, diags);
        let len = bytes.len() as u64;
        let bytes = (len <= MAX_FILE_BYTES).then(|| bytes.to_vec());
        pp.push_file_bytes(path, bytes, len, None);
        pp
    }

    fn empty(fs: &'a dyn ConfigFs, config_id: &str, sources: &'a mut SourceMap, diags: &'a mut Diagnostics) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        Self {
            fs,
            sources,
            diags,
            frames: Vec::new(),
            stack: Vec::new(),
            defs: HashMap::new(),
            multiline: None,
            config_id: config_id.to_owned(),
            lines_out: 0,
            stopped: false,
            random: seed | 1,
        }
    }

    /// The file registry (paths of every file read so far).
    pub fn sources(&self) -> &SourceMap {
        self.sources
    }

    fn error(&mut self, span: Option<Span>, via: Option<Span>, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(span, msg).with_via(via));
    }

    fn warning(&mut self, span: Option<Span>, via: Option<Span>, msg: impl Into<String>) {
        self.diags
            .push(Diagnostic::warning(span, msg).with_via(via));
    }

    /// Registers a file and opens it as a new frame; `bytes` is `None` if it is too large.
    fn push_file_bytes(&mut self, path: &Path, bytes: Option<Vec<u8>>, len: u64, at: Option<Span>) {
        let abs = super::diag::absolute(path);
        let id = self.sources.add(path);
        let file_span = Some(Span::new(id, 1, 1));
        let Some(bytes) = bytes else {
            self.error(
                at.or(file_span),
                None,
                format!(
                    "{}: file too large ({len} bytes; the limit is {} MiB)",
                    path.display(),
                    MAX_FILE_BYTES >> 20
                ),
            );
            return;
        };
        let data = match String::from_utf8(bytes) {
            Ok(s) if !s.contains('\0') => s,
            Ok(s) => {
                let off = s.find('\0').unwrap_or(0);
                let line = s[..off].matches('\n').count() as u32 + 1;
                self.error(
                    Some(Span::new(id, line, 1)),
                    None,
                    "not a text file: NUL byte found; is this a binary file?",
                );
                return;
            }
            Err(e) => {
                let off = e.utf8_error().valid_up_to();
                let line = e.as_bytes()[..off].iter().filter(|&&b| b == b'\n').count() as u32 + 1;
                let s = String::from_utf8_lossy(e.as_bytes()).into_owned();
                if s.contains('\0') {
                    self.error(
                        Some(Span::new(id, line, 1)),
                        None,
                        "not a text file: invalid UTF-8 and a NUL byte; is this a binary file?",
                    );
                    return;
                }
                // keepalived reads bytes: text in another encoding (often in comments) runs.
                self.warning(
                    Some(Span::new(id, line, 1)),
                    None,
                    "invalid UTF-8 (text in another encoding?): the bytes that are not UTF-8 are read as U+FFFD; keepalived 2.2 reads the file as bytes",
                );
                s
            }
        };
        let canon = self.fs.canonicalize(&abs).unwrap_or_else(|_| abs.clone());
        let dir = abs
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        self.frames.push(Frame {
            file: Some(OpenFile {
                id,
                dir,
                canon,
                data,
                pos: 0,
                line: 0,
            }),
            pending: Vec::new(),
        });
    }

    /// The directory of the file being read (`${_PWD}`).
    fn pwd(&self) -> String {
        self.frames
            .iter()
            .rev()
            .find_map(|f| f.file.as_ref())
            .map(|f| f.dir.display().to_string())
            .unwrap_or_default()
    }

    /// Reads the next physical line (comment stripped), opening pending includes as needed.
    fn physical_line(&mut self) -> Option<SrcText> {
        loop {
            let frame = self.frames.last_mut()?;
            if let Some(f) = frame.file.as_mut() {
                if f.pos >= f.data.len() {
                    frame.file = None;
                    continue;
                }
                let rest = &f.data[f.pos..];
                let (line, adv) = match rest.find('\n') {
                    Some(n) => (&rest[..n], n + 1),
                    None => (rest, rest.len()),
                };
                f.pos += adv;
                f.line += 1;
                let line = line.strip_suffix('\r').unwrap_or(line);
                let line = &line[..comment_start(line)];
                return Some(SrcText::new(
                    line.trim_end(),
                    Span::new(f.id, f.line, 1),
                    None,
                ));
            }
            match frame.pending.pop() {
                Some((path, at)) => self.open_include(&path, at),
                None => {
                    self.frames.pop();
                }
            }
        }
    }

    fn open_include(&mut self, path: &Path, at: Span) {
        let canon = self.fs.canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let chain: Vec<&OpenFile> = self.frames.iter().filter_map(|f| f.file.as_ref()).collect();
        if chain.iter().any(|f| f.canon == canon) {
            let names: Vec<String> = chain
                .iter()
                .map(|f| self.sources.path(f.id).display().to_string())
                .chain(std::iter::once(path.display().to_string()))
                .collect();
            let msg = format!("include cycle: {}", names.join(" -> "));
            self.error(Some(at), None, msg);
            return;
        }
        if chain.len() >= MAX_INCLUDE_DEPTH {
            self.error(
                Some(at),
                None,
                format!("includes nested more than {MAX_INCLUDE_DEPTH} deep"),
            );
            return;
        }
        match self.fs.stat(path) {
            Ok(m) if m.is_file => {
                let bytes = if m.len > MAX_FILE_BYTES {
                    None
                } else {
                    self.fs.read(path).ok()
                };
                if bytes.is_none() && m.len <= MAX_FILE_BYTES {
                    self.error(
                        Some(at),
                        None,
                        format!("cannot read included file {}", path.display()),
                    );
                    return;
                }
                self.push_file_bytes(path, bytes, m.len, Some(at));
            }
            _ => self.error(
                Some(at),
                None,
                format!("cannot read included file {}", path.display()),
            ),
        }
    }

    /// Handles an include directive found on a raw line.
    fn include(&mut self, kw: &str, arg: &SrcText, kw_span: Span) {
        let checks = match kw {
            "include" => IncludeChecks::default(),
            "includer" => IncludeChecks {
                readable: true,
                ..Default::default()
            },
            "includem" => IncludeChecks {
                readable: true,
                matched: true,
                ..Default::default()
            },
            "includew" => IncludeChecks {
                readable: true,
                wildcard: true,
                ..Default::default()
            },
            "includeb" => IncludeChecks {
                readable: true,
                brace: true,
                ..Default::default()
            },
            _ => IncludeChecks {
                readable: true,
                matched: true,
                wildcard: true,
                brace: true,
            },
        };
        // keepalived takes the file name as one raw word: `{` and `}` are csh braces here, not
        // blocks. A quoted name goes through the tokenizer (quotes and escapes).
        let arg = arg.trim_start();
        let quoted = arg.text.starts_with(['"', '\'']);
        let (pat, extra) = if quoted {
            let mut toks = Vec::new();
            tokenize(&arg, &mut toks, self.diags);
            let mut it = toks.into_iter();
            (it.next(), it.next().map(|t| t.span))
        } else {
            let end = arg
                .text
                .find(|c: char| c.is_ascii_whitespace())
                .unwrap_or(arg.text.len());
            let word = (end > 0).then(|| Token {
                text: arg.text[..end].to_owned(),
                span: arg.origin(0).0,
                via: None,
                quoted: false,
                bol: false,
            });
            let rest = arg.slice(end, arg.text.len()).trim_start();
            (word, (!rest.text.is_empty()).then(|| rest.origin(0).0))
        };
        let Some(pat) = pat else {
            self.error(Some(kw_span), None, format!("{kw}: missing file name"));
            return;
        };
        if let Some(sp) = extra {
            self.warning(Some(sp), None, format!("{kw}: extra words ignored"));
        }
        let dir = self
            .frames
            .iter()
            .rev()
            .find_map(|f| f.file.as_ref())
            .map_or_else(|| PathBuf::from("."), |f| f.dir.clone());
        let mut found: Vec<PathBuf> = Vec::new();
        let alternatives = expand_braces(&pat.text);
        // keepalived 2.2.7 treats any `{`, even an unmatched one, as a brace expression.
        let braced = pat.text.contains('{');
        let alternatives: Vec<String> = alternatives
            .into_iter()
            .map(|a| {
                if Path::new(&a).is_absolute() {
                    a
                } else {
                    format!("{}/{a}", dir.display())
                }
            })
            .collect();
        for alt in alternatives {
            let wild = alt.contains(['*', '?', '[']);
            let mut matches: Vec<PathBuf> = if wild {
                match self.fs.glob(&alt) {
                    Ok(paths) => paths,
                    Err(e) => {
                        self.error(
                            Some(pat.span),
                            None,
                            format!("{kw}: bad pattern {alt}: {e}"),
                        );
                        continue;
                    }
                }
            } else if self.fs.stat(Path::new(&alt)).is_ok() {
                vec![PathBuf::from(&alt)]
            } else {
                Vec::new()
            };
            matches.sort();
            if matches.is_empty() {
                // keepalived 2.2.7, measured with `keepalived -t`: in a brace expression only
                // brace_match makes a missing file an error; otherwise a wildcard needs
                // wildcard_match and a plain name match or wildcard_match. A glob matching
                // nothing is silent unless it is an error, or a directory it goes through is
                // missing (glob's directory callback fails: "Config files missing").
                let missing_dir = wild && {
                    let first_wild = alt.find(['*', '?', '[']).unwrap_or(alt.len());
                    let dir = alt[..first_wild].rsplit_once('/').map_or("", |(d, _)| d);
                    !dir.is_empty() && self.fs.stat(Path::new(dir)).is_err()
                };
                let fail = if braced {
                    checks.brace
                } else if wild && !missing_dir {
                    checks.wildcard
                } else {
                    checks.matched || checks.wildcard
                };
                if fail {
                    self.error(Some(pat.span), None, format!("{kw}: no file matches {alt}"));
                } else if braced || !wild || missing_dir {
                    self.warning(
                        Some(pat.span),
                        None,
                        format!("{kw}: no file matches {alt}; ignored"),
                    );
                }
            }
            for m in matches {
                // keepalived skips directories and executable files (with a message), and
                // the readable check makes that an error.
                let problem = match self.fs.stat(&m) {
                    Ok(md) if md.is_dir => Some("is a directory"),
                    Ok(md) if !md.is_file || md.executable => {
                        Some("is not a regular non-executable file")
                    }
                    Ok(_) if !self.fs.readable(&m) => Some("cannot be read"),
                    Ok(_) => None,
                    Err(_) => Some("cannot be read"),
                };
                if let Some(why) = problem {
                    let msg = format!("{kw}: {} {why}; skipped", m.display());
                    if checks.readable {
                        self.error(Some(pat.span), None, msg);
                    } else {
                        self.warning(Some(pat.span), None, msg);
                    }
                    continue;
                }
                found.push(m);
            }
        }
        found.reverse();
        let pending = found.into_iter().map(|p| (p, pat.span)).collect();
        self.frames.push(Frame {
            file: None,
            pending,
        });
    }

    /// Produces the next non-empty line of tokens, or `None` at the end of the input.
    pub fn next_line(&mut self) -> Option<Vec<Token>> {
        loop {
            if self.stopped {
                return None;
            }
            let (line, depth, raw) = match self.stack.pop() {
                Some(Item::Define(name, def)) => {
                    self.defs.insert(name, def);
                    continue;
                }
                Some(Item::Line(l, d)) => (l, d, false),
                None => match self.physical_line() {
                    Some(l) => (l, 0, true),
                    None => {
                        if let Some((name, _)) = self.multiline.take() {
                            self.warning(
                                None,
                                None,
                                format!("definition ${name} not terminated at end of file"),
                            );
                        }
                        return None;
                    }
                },
            };
            if line.text.trim().is_empty() {
                continue;
            }
            if let Some((_, body)) = self.multiline.as_mut() {
                let t = line.text.trim_end();
                if let Some(stripped) = t.strip_suffix('\\') {
                    body.push(line.slice(0, stripped.len()));
                } else {
                    body.push(line.clone());
                    if let Some((name, body)) = self.multiline.take() {
                        self.defs.insert(name, Def::Multi(body));
                    }
                }
                continue;
            }
            self.lines_out += 1;
            if self.lines_out > MAX_LINES {
                let (sp, via) = line.origin(0);
                self.error(
                    Some(sp),
                    via,
                    format!("configuration expands to more than {MAX_LINES} lines"),
                );
                self.stopped = true;
                return None;
            }
            let line = line.trim_start();
            if raw {
                let word_end = line
                    .text
                    .find(|c: char| c.is_ascii_whitespace())
                    .unwrap_or(line.text.len());
                let kw = &line.text[..word_end];
                if matches!(
                    kw,
                    "include" | "includer" | "includem" | "includew" | "includeb" | "includea"
                ) {
                    let kw = kw.to_owned();
                    let arg = line.slice(word_end, line.text.len());
                    self.include(&kw, &arg, line.origin(0).0);
                    continue;
                }
            }
            if let Some(tokens) = self.process(line, depth) {
                if !tokens.is_empty() {
                    return Some(tokens);
                }
            }
        }
    }

    /// Applies conditionals, definitions, sequences and substitution to one line.
    fn process(&mut self, mut line: SrcText, depth: u16) -> Option<Vec<Token>> {
        let mut substituted = false;
        loop {
            // Conditional configuration: `@id` and `@^id`.
            if line.text.starts_with('@') {
                let end = line
                    .text
                    .find(|c: char| c.is_ascii_whitespace())
                    .unwrap_or(line.text.len());
                let word = &line.text[1..end];
                let (neg, id) = match word.strip_prefix('^') {
                    Some(id) => (true, id),
                    None => (false, word),
                };
                if (id == self.config_id) == neg {
                    return None;
                }
                line = line.slice(end, line.text.len()).trim_start();
                if line.text.is_empty() {
                    return None;
                }
                continue;
            }
            if line.text.starts_with('$') && self.definition(&line) {
                return None;
            }
            if line.text.starts_with("~SEQ") || line.text.starts_with("~LST") {
                self.sequence(&line, depth);
                return None;
            }
            if substituted {
                break;
            }
            match self.substitute(&line, depth, 0) {
                Subst::Unchanged => break,
                Subst::Single(t) => {
                    if t.text.len() > MAX_LINE_BYTES {
                        let (sp, via) = line.origin(0);
                        self.error(Some(sp), via, "line longer than 1 MiB after expansion");
                        return None;
                    }
                    line = t.trim_start();
                    substituted = true;
                }
                Subst::Multi(lines) => {
                    for l in lines.into_iter().rev() {
                        self.stack.push(Item::Line(l, depth + 1));
                    }
                    return None;
                }
                Subst::Failed => return None,
            }
        }
        let mut out = Vec::new();
        tokenize(&line, &mut out, self.diags);
        Some(out)
    }

    /// Handles `$NAME=value`; returns false if the line is not a definition.
    fn definition(&mut self, line: &SrcText) -> bool {
        let b = line.text.as_bytes();
        if b.len() < 2 || !is_name_start(b[1]) {
            return false;
        }
        let mut i = 1;
        while i < b.len() && is_name_char(b[i]) {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            return false;
        }
        let name = line.text[1..i].to_owned();
        let value = line.slice(i + 1, line.text.len());
        let vt = value.text.trim();
        if let Some(first) = vt.strip_suffix('\\') {
            let mut body = Vec::new();
            if !first.trim().is_empty() {
                let off = value.text.len() - value.text.trim_start().len();
                body.push(value.slice(off, off + first.trim_end().len()));
            }
            self.multiline = Some((name, body));
        } else {
            let off = value.text.len() - value.text.trim_start().len();
            let v = value.slice(off, off + vt.len());
            self.defs.insert(name, Def::Single(v));
        }
        true
    }

    /// Expands `~SEQ(...)`, `~SEQx(...)` and `~LST(...)` at the start of `line`.
    fn sequence(&mut self, line: &SrcText, depth: u16) {
        let (span, via) = line.origin(0);
        let text = &line.text;
        let Some(open) = text.find('(') else {
            self.error(Some(span), via, "~SEQ/~LST: missing '('");
            return;
        };
        let kind = &text[..open];
        let mut level = 0;
        let mut close = None;
        for (i, c) in text[open..].char_indices() {
            match c {
                '(' => level += 1,
                ')' => {
                    level -= 1;
                    if level == 0 {
                        close = Some(open + i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(close) = close else {
            self.error(Some(span), via, format!("{kind}: missing ')'"));
            return;
        };
        let spec = line.slice(open + 1, close);
        let spec = match self.substitute(&spec, depth, 0) {
            Subst::Single(t) => t.text,
            _ => spec.text,
        };
        let rest = line.slice(close + 1, line.text.len()).trim_start();
        let vars_values: Vec<Assignment> = match kind {
            "~SEQ" | "~SEQx" => match parse_seq(&spec, kind == "~SEQx") {
                Ok((var, values)) => values
                    .into_iter()
                    .map(|v| (vec![var.clone()], vec![v]))
                    .collect(),
                Err(e) => {
                    self.error(Some(span), via, format!("{kind}({spec}): {e}"));
                    return;
                }
            },
            "~LST" => match parse_lst(&spec) {
                Ok(v) => v,
                Err(e) => {
                    self.error(Some(span), via, format!("~LST({spec}): {e}"));
                    return;
                }
            },
            _ => {
                self.error(
                    Some(span),
                    via,
                    format!("unknown sequence {kind}; expected ~SEQ, ~SEQx or ~LST"),
                );
                return;
            }
        };
        if rest.text.is_empty() {
            return;
        }
        for (vars, values) in vars_values.into_iter().rev() {
            self.stack.push(Item::Line(rest.clone(), depth));
            for (var, value) in vars.iter().zip(values.iter()).rev() {
                let v = SrcText::new(value, span, via);
                self.stack.push(Item::Define(var.clone(), Def::Single(v)));
            }
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: enough for `${_RANDOM}`, which only needs to vary.
        let mut x = self.random;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Replaces `$NAME` and `${NAME}` in `line`, recursively.
    fn substitute(&mut self, line: &SrcText, depth: u16, level: u16) -> Subst {
        let text = &line.text;
        if !text.contains('$') {
            return Subst::Unchanged;
        }
        if level > 32 || depth > MAX_EXPANSION_DEPTH {
            let (sp, via) = line.origin(0);
            self.error(
                Some(sp),
                via,
                "definitions nested too deeply (is a definition recursive?)",
            );
            return Subst::Failed;
        }
        let b = text.as_bytes();
        let mut out = SrcText::default();
        let mut last = 0;
        let mut changed = false;
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'$' {
                i += 1;
                continue;
            }
            let (name, end) = if b.get(i + 1) == Some(&b'{') {
                match text[i + 2..].find('}') {
                    Some(e) => (&text[i + 2..i + 2 + e], i + 3 + e),
                    None => {
                        i += 1;
                        continue;
                    }
                }
            } else {
                let mut j = i + 1;
                if j < b.len() && is_name_start(b[j]) {
                    while j < b.len() && is_name_char(b[j]) {
                        j += 1;
                    }
                }
                if j == i + 1 || (j < b.len() && !b[j].is_ascii_whitespace()) {
                    i += 1;
                    continue;
                }
                (&text[i + 1..j], j)
            };
            let (use_span, use_via) = line.origin(i);
            let value: Option<SrcText> = match name.split_whitespace().next().unwrap_or("") {
                "_PWD" => Some(SrcText::new(&self.pwd(), use_span, use_via)),
                "_INSTANCE" => Some(SrcText::new(&self.config_id.clone(), use_span, use_via)),
                "_HASH" => Some(SrcText::new("#", use_span, use_via)),
                "_BANG" => Some(SrcText::new("!", use_span, use_via)),
                "_RANDOM" => {
                    let args: Vec<&str> = name.split_whitespace().skip(1).collect();
                    let parse = |s: &str| s.parse::<u64>().ok();
                    let (min, max) = match args.as_slice() {
                        [] => (Some(0), Some(32767)),
                        [a] => (parse(a), Some(32767)),
                        [a, b, ..] => (parse(a), parse(b)),
                    };
                    match (min, max) {
                        (Some(min), Some(max)) if min <= max => {
                            let v = min + self.next_random() % (max - min + 1).max(1);
                            Some(SrcText::new(&v.to_string(), use_span, use_via))
                        }
                        _ => {
                            self.error(
                                Some(use_span),
                                use_via,
                                format!(
                                    "${{{name}}}: MIN and MAX must be integers with MIN <= MAX"
                                ),
                            );
                            Some(SrcText::new("0", use_span, use_via))
                        }
                    }
                }
                _ => match self.defs.get(name) {
                    None => None,
                    Some(Def::Single(v)) => {
                        let mut v = v.clone();
                        v.set_via(use_via.unwrap_or(use_span));
                        match self.substitute(&v, depth, level + 1) {
                            Subst::Unchanged => Some(v),
                            Subst::Single(t) => Some(t),
                            Subst::Multi(_) => Some(v),
                            Subst::Failed => return Subst::Failed,
                        }
                    }
                    Some(Def::Multi(lines)) => {
                        let via = use_via.unwrap_or(use_span);
                        let mut result = Vec::new();
                        let before = line.slice(0, i);
                        if !before.text.trim().is_empty() {
                            result.push(before);
                        }
                        for l in lines {
                            let mut l = l.clone();
                            l.set_via(via);
                            result.push(l);
                        }
                        let after = line.slice(end, line.text.len());
                        if !after.text.trim().is_empty() {
                            result.push(after);
                        }
                        return Subst::Multi(result);
                    }
                },
            };
            if let Some(v) = value {
                out.push(&line.slice(last, i));
                out.push(&v);
                last = end;
                changed = true;
                if out.text.len() > MAX_LINE_BYTES {
                    self.error(
                        Some(use_span),
                        use_via,
                        "line longer than 1 MiB after expansion",
                    );
                    return Subst::Failed;
                }
            }
            i = end;
        }
        if !changed {
            return Subst::Unchanged;
        }
        out.push(&line.slice(last, text.len()));
        Subst::Single(out)
    }
}

enum Subst {
    Unchanged,
    Single(SrcText),
    Multi(Vec<SrcText>),
    Failed,
}

fn parse_int(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let v = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(h) => i64::from_str_radix(h, 16),
        None => body.parse::<i64>(),
    }
    .map_err(|_| format!("'{s}' is not an integer"))?;
    Ok(if neg { -v } else { v })
}

/// Parses the inside of `~SEQ(var, [start,] [step,] end)` into the variable and its values.
fn parse_seq(spec: &str, hex: bool) -> Result<(String, Vec<String>), String> {
    let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
    let var = parts[0];
    if var.is_empty() || !var.bytes().all(is_name_char) || !is_name_start(var.as_bytes()[0]) {
        return Err(format!("'{var}' is not a variable name"));
    }
    let nums = parts[1..]
        .iter()
        .map(|s| parse_int(s))
        .collect::<Result<Vec<_>, _>>()?;
    let (start, step, end) = match nums.as_slice() {
        [end] => (if *end < 0 { -1 } else { 1 }, None, *end),
        [start, end] => (*start, None, *end),
        [start, step, end] => (*start, Some(*step), *end),
        _ => return Err("expected (VAR, [START,] [STEP,] END)".into()),
    };
    let step = step.unwrap_or(if end >= start { 1 } else { -1 });
    if step == 0 {
        return Err("step must not be 0".into());
    }
    let count = if (step > 0 && start > end) || (step < 0 && start < end) {
        0
    } else {
        (end - start) / step + 1
    };
    if count > MAX_SEQ_VALUES {
        return Err(format!("more than {MAX_SEQ_VALUES} values"));
    }
    let values = (0..count)
        .map(|k| {
            let v = start + k * step;
            match (hex, v < 0) {
                (true, true) => format!("-{:x}", -v),
                (true, false) => format!("{v:x}"),
                (false, _) => v.to_string(),
            }
        })
        .collect();
    Ok((var.to_owned(), values))
}

/// Splits on commas outside `{...}`.
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut level = 0;
    for c in s.chars() {
        match c {
            '{' => {
                level += 1;
                cur.push(c);
            }
            '}' => {
                level -= 1;
                cur.push(c);
            }
            ',' if level == 0 => out.push(std::mem::take(&mut cur).trim().to_owned()),
            _ => cur.push(c),
        }
    }
    out.push(cur.trim().to_owned());
    out
}

fn group(s: &str) -> Vec<String> {
    match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        Some(inner) => inner.split(',').map(|v| v.trim().to_owned()).collect(),
        None => vec![s.to_owned()],
    }
}

/// Variables and the values one repetition of a `~SEQ`/`~LST` line gives them.
type Assignment = (Vec<String>, Vec<String>);

/// Parses the inside of `~LST(var, v1, ...)` or `~LST({a, b}, {1, 2}, ...)`.
fn parse_lst(spec: &str) -> Result<Vec<Assignment>, String> {
    let parts = split_top(spec);
    let vars = group(&parts[0]);
    for v in &vars {
        if v.is_empty() || !v.bytes().all(is_name_char) || !is_name_start(v.as_bytes()[0]) {
            return Err(format!("'{v}' is not a variable name"));
        }
    }
    if parts.len() < 2 {
        return Err("at least one value is needed".into());
    }
    parts[1..]
        .iter()
        .map(|p| {
            let vals = group(p);
            if vals.len() != vars.len() {
                Err(format!(
                    "'{p}' has {} values for {} variables",
                    vals.len(),
                    vars.len()
                ))
            } else {
                Ok((vars.clone(), vals))
            }
        })
        .collect()
}

/// csh-style brace expansion: `a{b,c{d,e}}f` gives `abf`, `acdf`, `acef`.
pub fn expand_braces(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let Some(open) = s.find('{') else {
        return vec![s.to_owned()];
    };
    let mut level = 0;
    let mut close = None;
    let mut commas = Vec::new();
    for (i, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'{' => level += 1,
            b'}' => {
                level -= 1;
                if level == 0 {
                    close = Some(i);
                    break;
                }
            }
            b',' if level == 1 => commas.push(i),
            _ => {}
        }
    }
    let Some(close) = close else {
        return vec![s.to_owned()];
    };
    let (pre, post) = (&s[..open], &s[close + 1..]);
    let mut bounds = vec![open];
    bounds.extend(commas);
    bounds.push(close);
    let mut out = Vec::new();
    for w in bounds.windows(2) {
        let alt = &s[w[0] + 1..w[1]];
        for tail in expand_braces(&format!("{alt}{post}")) {
            out.push(format!("{pre}{tail}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Preprocesses `text` and renders one output line per token line.
    pub(crate) fn expand(text: &str, id: &str) -> (String, Vec<Diagnostic>) {
        let mut sources = SourceMap::default();
        let mut diags = Diagnostics::default();
        let mut out = String::new();
        {
            let mut pp =
                Preprocessor::from_str(Path::new("/t/k.conf"), text, id, &mut sources, &mut diags);
            while let Some(line) = pp.next_line() {
                let words: Vec<String> = line.iter().map(|t| t.text.clone()).collect();
                out.push_str(&words.join(" "));
                out.push('\n');
            }
        }
        (out, diags.into_sorted())
    }

    use crate::config::Severity;

    #[test]
    fn braces() {
        assert_eq!(expand_braces("a{b,c{d,e}}f"), ["abf", "acdf", "acef"]);
        assert_eq!(
            expand_braces("{foo/{,cat,dog},bar}"),
            ["foo/", "foo/cat", "foo/dog", "bar"]
        );
        assert_eq!(expand_braces("plain"), ["plain"]);
    }

    #[test]
    fn seq_values() {
        let cases: &[(&str, bool, &[&str])] = &[
            ("S, 0, 3", false, &["0", "1", "2", "3"]),
            ("S, 144, 16, 192", true, &["90", "a0", "b0", "c0"]),
            (
                "S, 0x12, -1, 0x0c",
                true,
                &["12", "11", "10", "f", "e", "d", "c"],
            ),
            ("S, 3", false, &["1", "2", "3"]),
            ("S, -2", false, &["-1", "-2"]),
            ("S, 5, 1", false, &["5", "4", "3", "2", "1"]),
        ];
        for (spec, hex, want) in cases {
            let (_, v) = parse_seq(spec, *hex).expect("valid");
            assert_eq!(v, *want, "{spec}");
        }
        assert!(parse_seq("S, 1, 0, 3", false).is_err());
        assert!(parse_seq("1S, 3", false).is_err());
    }

    #[test]
    fn expansion_table() {
        let cases: &[(&str, &str, &str)] = &[
            ("$A=x\nfoo $A\n", "", "foo x\n"),
            (
                "$B=10.2.${C}\n$C=0\n${B}.100/32\n$C=10\n${B}.100/32\n",
                "",
                "10.2.0.100/32\n10.2.10.100/32\n",
            ),
            (
                "@main router_id m\n@backup router_id b\n",
                "main",
                "router_id m\n",
            ),
            ("@^main a\n@^b c\n", "main", "c\n"),
            ("$P=@main\n$P priority 240\n", "main", "priority 240\n"),
            ("$P=@main\n$P priority 240\n", "x", ""),
            // Left as written; the lexer then splits it at its braces, as keepalived does.
            ("${UNDEF} x\n", "", "$ { UNDEF } x\n"),
            ("a ${_HASH} b ${_BANG}\n", "", "a # b !\n"),
            ("id ${_INSTANCE}\n", "node1", "id node1\n"),
            ("dir ${_PWD} $_PWD\n", "", "dir /t /t\n"),
            (
                "~SEQ(S, 0, 2) ip 10.0.${S}.1\n",
                "",
                "ip 10.0.0.1\nip 10.0.1.1\nip 10.0.2.1\n",
            ),
            (
                "~LST({IP, IP1}, {10,1},{20,4}) ~SEQ(IP2,168,2,170) 192.${IP2}.${IP}.${IP1}\n",
                "",
                "192.168.10.1\n192.170.10.1\n192.168.20.4\n192.170.20.4\n",
            ),
            (
                "$M= \\\nvi ${N} { \\\n  p ${N} \\\n}\n$N=1\n$M\n$N=2\n$M\n",
                "",
                "vi 1 {\np 1\n}\nvi 2 {\np 2\n}\n",
            ),
            ("x \"a # b\" # c\n", "", "x a # b\n"),
        ];
        for (input, id, want) in cases {
            let (got, d) = expand(input, id);
            assert_eq!(&got, want, "input {input:?}");
            assert!(d.is_empty(), "input {input:?}: {d:?}");
        }
    }

    /// A temporary directory removed on drop (even when the test panics).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let d = std::env::temp_dir().join(format!("ka-pp-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&d).expect("mkdir");
            Self(d)
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, text).expect("write");
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A diagnostic as `(file name, line, severity, message)`.
    type Located = (String, u32, Severity, String);

    /// Preprocesses the file at `path`; returns the token lines and the diagnostics.
    fn expand_file(path: &Path) -> (Vec<String>, Vec<Located>) {
        expand_in(&RealFs, path)
    }

    /// [`expand_file`] on the filesystem `fs`.
    fn expand_in(fs: &dyn ConfigFs, path: &Path) -> (Vec<String>, Vec<Located>) {
        let mut sources = SourceMap::default();
        let mut diags = Diagnostics::default();
        let mut lines = Vec::new();
        {
            let mut pp = Preprocessor::open_in(fs, path, "id", &mut sources, &mut diags).expect("open");
            while let Some(line) = pp.next_line() {
                let words: Vec<String> = line.iter().map(|t| t.text.clone()).collect();
                lines.push(words.join(" "));
            }
        }
        let d = diags
            .into_sorted()
            .into_iter()
            .map(|d| {
                let sp = d.span.expect("located");
                let name = sources.path(sp.file).file_name().expect("name");
                (name.to_string_lossy().into_owned(), sp.line, d.severity, d.message)
            })
            .collect();
        (lines, d)
    }

    /// Every include variant, used two includes deep (main.conf -> sub/a.conf -> b.conf, each
    /// name relative to the file that includes it), with a missing file, a glob matching
    /// nothing, a brace alternative that matches nothing and an unmatched brace. Which of these
    /// is an error, a warning or silent is what keepalived 2.2.7's `keepalived -t` does
    /// (keepalived.conf(5): includer = readable, includem = match, includew = wildcard_match,
    /// includeb = brace_match, includea = all; a brace expression is judged by brace_match
    /// only, a wildcard by wildcard_match, a plain name by match or wildcard_match).
    #[test]
    fn include_variants_nested() {
        use Severity::{Error as E, Warning as W};
        // (pattern, then per variant include/includer/includem/includew/includeb/includea:
        // None = silent, Some(severity)).
        type Row = (&'static str, [Option<Severity>; 6]);
        let rows: &[Row] = &[
            ("missing.conf", [Some(W), Some(W), Some(E), Some(E), Some(W), Some(E)]),
            ("nomatch*.conf", [None, None, None, Some(E), None, Some(E)]),
            // A wildcard under a directory that does not exist: "Config files missing".
            ("nodir/*.conf", [Some(W), Some(W), Some(E), Some(E), Some(W), Some(E)]),
            ("{c,missing}.conf", [Some(W), Some(W), Some(W), Some(W), Some(E), Some(E)]),
            ("{a,b", [Some(W), Some(W), Some(W), Some(W), Some(E), Some(E)]),
        ];
        let variants = ["include", "includer", "includem", "includew", "includeb", "includea"];
        for (pattern, want) in rows {
            for (kw, want) in variants.iter().zip(want) {
                let t = TempDir::new("inc");
                let main = t.write("main.conf", "top_main\ninclude sub/a.conf\n");
                t.write("sub/a.conf", "in_a\ninclude b.conf\n");
                t.write("sub/b.conf", &format!("in_b\n{kw} {pattern}\nafter_b\n"));
                t.write("sub/c.conf", "in_c\n");
                // Decoys next to main.conf: a name resolved against the wrong directory would
                // find these.
                t.write("b.conf", "wrong_b\n");
                t.write("missing.conf", "wrong_missing\n");
                let (lines, diags) = expand_file(&main);
                // The in-memory filesystem (the fuzzer's) gives the same answer.
                let mut mem = super::super::fs::MemFs::new();
                for (rel, text) in [
                    ("main.conf", "top_main\ninclude sub/a.conf\n".to_owned()),
                    ("sub/a.conf", "in_a\ninclude b.conf\n".to_owned()),
                    ("sub/b.conf", format!("in_b\n{kw} {pattern}\nafter_b\n")),
                    ("sub/c.conf", "in_c\n".to_owned()),
                    ("b.conf", "wrong_b\n".to_owned()),
                    ("missing.conf", "wrong_missing\n".to_owned()),
                ] {
                    mem.add_file(t.0.join(rel), text, false);
                }
                assert_eq!(expand_in(&mem, &main), (lines.clone(), diags.clone()), "{kw} {pattern} on the in-memory filesystem");
                let case = format!("{kw} {pattern}");
                let mut want_lines = vec!["top_main", "in_a", "in_b"];
                if pattern.starts_with("{c,") {
                    want_lines.push("in_c");
                }
                want_lines.push("after_b");
                assert_eq!(lines, want_lines, "{case}: {diags:?}");
                match want {
                    None => assert!(diags.is_empty(), "{case}: want silence, got {diags:?}"),
                    Some(sev) => {
                        assert!(!diags.is_empty(), "{case}: want a {sev}, got nothing");
                        for (file, line, got, msg) in &diags {
                            assert_eq!(
                                (file.as_str(), *line, *got),
                                ("b.conf", 2, *sev),
                                "{case}: {msg}"
                            );
                            assert!(msg.starts_with(&format!("{kw}: no file matches ")), "{case}: {msg}");
                        }
                    }
                }
            }
        }
    }

    /// `${_PWD}` is the directory of the file being read: the included file's inside it, the
    /// includer's again after it (keepalived chdir()s into each included file's directory).
    #[test]
    fn pwd_follows_includes() {
        let t = TempDir::new("pwd");
        let main = t.write("main.conf", "main ${_PWD}\ninclude sub/a.conf\nback ${_PWD}\n");
        t.write("sub/a.conf", "sub ${_PWD}\n");
        let (lines, diags) = expand_file(&main);
        assert!(diags.is_empty(), "{diags:?}");
        let top = t.0.display().to_string();
        let sub = t.0.join("sub").display().to_string();
        assert_eq!(lines, [format!("main {top}"), format!("sub {sub}"), format!("back {top}")]);
    }

    /// The readable check: a directory or an executable file matched by an include is skipped,
    /// an error for the strict variants (which all include `readable`) and a warning for plain
    /// `include` (as `keepalived -t` does).
    #[test]
    fn include_readable_check() {
        use std::os::unix::fs::PermissionsExt;
        for (kw, want) in [
            ("include", Severity::Warning),
            ("includer", Severity::Error),
            ("includem", Severity::Error),
            ("includew", Severity::Error),
            ("includeb", Severity::Error),
            ("includea", Severity::Error),
        ] {
            let t = TempDir::new("rd");
            let exe = t.write("exe.conf", "from_exe\n");
            std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            t.write("dir/x.conf", "from_dir\n");
            let main = t.write("main.conf", &format!("{kw} exe.conf\n{kw} dir\n"));
            let (lines, diags) = expand_file(&main);
            let mut mem = super::super::fs::MemFs::new();
            mem.add_file(&exe, "from_exe\n", true);
            mem.add_file(t.0.join("dir/x.conf"), "from_dir\n", false);
            mem.add_file(&main, format!("{kw} exe.conf\n{kw} dir\n"), false);
            assert_eq!(expand_in(&mem, &main), (lines.clone(), diags.clone()), "{kw} on the in-memory filesystem");
            assert!(lines.is_empty(), "{kw}: {lines:?}");
            let got: Vec<(u32, Severity, bool)> = diags
                .iter()
                .map(|(_, l, s, m)| (*l, *s, m.ends_with("; skipped")))
                .collect();
            assert_eq!(got, [(1, want, true), (2, want, true)], "{kw}: {diags:?}");
        }
    }

    #[test]
    fn random_in_range() {
        for _ in 0..50 {
            let (got, _) = expand("${_RANDOM 5 7}\n", "");
            let v: u32 = got.trim().parse().expect("number");
            assert!((5..=7).contains(&v));
        }
    }

    #[test]
    fn recursion_is_an_error() {
        let (_, d) = expand("$A=x $A\nfoo $A\n", "");
        assert_eq!(d.len(), 1, "{d:?}");
        let (_, d) = expand("$A= \\\n$A\n$A\n", "");
        assert_eq!(d.len(), 1, "{d:?}");
    }

    #[test]
    fn expanded_tokens_keep_definition_site() {
        let mut sources = SourceMap::default();
        let mut diags = Diagnostics::default();
        let text = "$M= \\\n  interface eth0 \\\n  priority 1\n\n$M\n";
        let mut pp =
            Preprocessor::from_str(Path::new("/t/k.conf"), text, "", &mut sources, &mut diags);
        let l1 = pp.next_line().expect("line");
        assert_eq!((l1[0].span.line, l1[0].span.col), (2, 3));
        assert_eq!(l1[0].via.map(|v| v.line), Some(5));
        let l2 = pp.next_line().expect("line");
        assert_eq!((l2[1].span.line, l2[1].span.col), (3, 12));
    }
}
