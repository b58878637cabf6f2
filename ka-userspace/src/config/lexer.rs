//! Lexer: comment stripping, quoting with escapes, brace tokens, each token with its origin.

use super::diag::{Diagnostics, Span};

/// Where a run of bytes of a [`SrcText`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    /// Byte offset in the text where this run starts.
    pub start: u32,
    /// Origin of the byte at `start`; later bytes of the run are on the same line, further right.
    pub span: Span,
    /// Where the run was expanded from a `$NAME` definition, if it was.
    pub via: Option<Span>,
}

/// A line of text that remembers, for every byte, the file:line:col it was written at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SrcText {
    /// The text (one logical line, no newline).
    pub text: String,
    /// Origin runs, sorted by `start`, the first starting at 0.
    pub segs: Vec<Seg>,
}

impl SrcText {
    /// Text written at `span`.
    pub fn new(text: &str, span: Span, via: Option<Span>) -> Self {
        Self {
            text: text.to_owned(),
            segs: vec![Seg {
                start: 0,
                span,
                via,
            }],
        }
    }

    /// The origin of byte `at` (clamped to the text).
    pub fn origin(&self, at: usize) -> (Span, Option<Span>) {
        let at = at as u32;
        let i = self
            .segs
            .partition_point(|s| s.start <= at)
            .saturating_sub(1);
        match self.segs.get(i) {
            Some(s) => {
                let mut sp = s.span;
                sp.col += at.saturating_sub(s.start);
                (sp, s.via)
            }
            None => (Span::default(), None),
        }
    }

    /// The sub-text `from..to` (byte offsets on char boundaries), origins kept.
    pub fn slice(&self, from: usize, to: usize) -> SrcText {
        let mut out = SrcText {
            text: self.text[from..to].to_owned(),
            segs: Vec::new(),
        };
        let (span, via) = self.origin(from);
        out.segs.push(Seg {
            start: 0,
            span,
            via,
        });
        for s in &self.segs {
            let st = s.start as usize;
            if st > from && st < to {
                out.segs.push(Seg {
                    start: (st - from) as u32,
                    ..*s
                });
            }
        }
        out
    }

    /// Appends `other`, keeping its origins.
    pub fn push(&mut self, other: &SrcText) {
        let base = self.text.len() as u32;
        if other.text.is_empty() {
            return;
        }
        self.text.push_str(&other.text);
        for s in &other.segs {
            self.segs.push(Seg {
                start: s.start + base,
                ..*s
            });
        }
        if self.segs.first().is_some_and(|s| s.start != 0) {
            self.segs.insert(
                0,
                Seg {
                    start: 0,
                    span: other.segs[0].span,
                    via: None,
                },
            );
        }
    }

    /// Marks every run without an expansion site as expanded at `via`.
    pub fn set_via(&mut self, via: Span) {
        for s in &mut self.segs {
            if s.via.is_none() {
                s.via = Some(via);
            }
        }
    }

    /// The text with leading whitespace removed, origins kept.
    pub fn trim_start(&self) -> SrcText {
        let off = self.text.len() - self.text.trim_start().len();
        if off == 0 {
            self.clone()
        } else {
            self.slice(off, self.text.len())
        }
    }
}

/// One word of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The word, quotes removed and escapes resolved.
    pub text: String,
    /// Where its first byte was written.
    pub span: Span,
    /// Where it was expanded from a definition, if it was.
    pub via: Option<Span>,
    /// Whether any part of it was quoted (a quoted `{` is not a brace).
    pub quoted: bool,
    /// Whether it is the first word of its line.
    pub bol: bool,
}

impl Token {
    /// Whether this is an unquoted `{`.
    pub fn is_open(&self) -> bool {
        !self.quoted && self.text == "{"
    }

    /// Whether this is an unquoted `}`.
    pub fn is_close(&self) -> bool {
        !self.quoted && self.text == "}"
    }
}

/// Byte offset where the comment of `line` starts (`#` or `!` outside quotes), or its length.
pub fn comment_start(line: &str) -> usize {
    let b = line.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) => {
                if c == b'\\' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                b'#' | b'!' => return i,
                b'"' | b'\'' => quote = Some(c),
                _ => {}
            },
        }
        i += 1;
    }
    b.len()
}

/// Splits an expanded line into tokens, appending them to `out`.
pub fn tokenize(line: &SrcText, out: &mut Vec<Token>, diags: &mut Diagnostics) {
    let text = &line.text;
    let b = text.as_bytes();
    let mut i = 0;
    let mut first = true;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let (span, via) = line.origin(i);
        if c == b'{' || c == b'}' {
            out.push(Token {
                text: (c as char).to_string(),
                span,
                via,
                quoted: false,
                bol: first,
            });
            first = false;
            i += 1;
            continue;
        }
        let mut word: Vec<u8> = Vec::new();
        let mut quoted = false;
        let mut quote: Option<u8> = None;
        while i < b.len() {
            let c = b[i];
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                    i += 1;
                } else if c == b'\\' && i + 1 < b.len() {
                    i = escape(b, i + 1, &mut word);
                } else {
                    word.push(c);
                    i += 1;
                }
                continue;
            }
            if c.is_ascii_whitespace() || c == b'{' || c == b'}' {
                break;
            }
            if c == b'"' || c == b'\'' {
                quote = Some(c);
                quoted = true;
                i += 1;
            } else {
                word.push(c);
                i += 1;
            }
        }
        if quote.is_some() {
            diags.push(
                super::diag::Diagnostic::warning(Some(span), "unterminated quoted string")
                    .with_via(via),
            );
        }
        out.push(Token {
            text: String::from_utf8_lossy(&word).into_owned(),
            span,
            via,
            quoted,
            bol: first,
        });
        first = false;
    }
}

/// Resolves the escape whose letter is at `b[i]`, pushing the result; returns the next index.
fn escape(b: &[u8], i: usize, word: &mut Vec<u8>) -> usize {
    let c = b[i];
    let mut push_char = |v: u32| {
        let ch = char::from_u32(v).unwrap_or('?');
        let mut buf = [0u8; 4];
        word.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    };
    match c {
        b'a' => push_char(7),
        b'b' => push_char(8),
        b'E' => push_char(0x1b),
        b'f' => push_char(0x0c),
        b'n' => push_char(b'\n' as u32),
        b'r' => push_char(b'\r' as u32),
        b't' => push_char(b'\t' as u32),
        b'v' => push_char(0x0b),
        b'0'..=b'7' => {
            let mut v = 0u32;
            let mut j = i;
            while j < b.len() && j < i + 3 && (b'0'..=b'7').contains(&b[j]) {
                v = v * 8 + u32::from(b[j] - b'0');
                j += 1;
            }
            push_char(v & 0xff);
            return j;
        }
        b'x' => {
            let mut v = 0u32;
            let mut j = i + 1;
            while j < b.len() && b[j].is_ascii_hexdigit() {
                v = (v << 4 | (b[j] as char).to_digit(16).unwrap_or(0)) & 0xff;
                j += 1;
            }
            push_char(v);
            return j;
        }
        b'c' if i + 1 < b.len() => {
            push_char(u32::from(b[i + 1] & 0x1f));
            return i + 2;
        }
        _ => {
            // Any other escaped byte stands for itself (keeps multi-byte UTF-8 intact).
            word.push(c);
        }
    }
    i + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diag::FileId;

    fn words(s: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut d = Diagnostics::default();
        let line = SrcText::new(s, Span::new(FileId(0), 1, 1), None);
        tokenize(&line, &mut out, &mut d);
        out.into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn tokenize_table() {
        let cases: &[(&str, &[&str])] = &[
            ("a b  c", &["a", "b", "c"]),
            (r#"abcd" efg h jkl "mnop"#, &["abcd efg h jkl mnop"]),
            (r#"abcd "efg h jkl" mnop"#, &["abcd", "efg h jkl", "mnop"]),
            ("x{y}z", &["x", "{", "y", "}", "z"]),
            (
                "vrrp_instance VI{state MASTER}",
                &["vrrp_instance", "VI", "{", "state", "MASTER", "}"],
            ),
            ("'{'", &["{"]),
            (r#""a\tb\x41\101\\\"""#, &["a\tbAA\\\""]),
            // keepalived 2.2.7 (read_line) splits an undefined `${NAME}` at its braces too.
            ("${UNDEF} x", &["$", "{", "UNDEF", "}", "x"]),
            (r#""\cA""#, &["\u{1}"]),
        ];
        for (input, want) in cases {
            assert_eq!(words(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn comments() {
        let cases = [
            ("a # b", 2),
            ("a ! b", 2),
            ("\"a # b\" # c", 8),
            ("abc", 3),
            ("'!' x", 5),
        ];
        for (line, at) in cases {
            assert_eq!(comment_start(line), at, "{line:?}");
        }
    }

    #[test]
    fn columns_follow_origins() {
        let mut t = SrcText::new("ab ", Span::new(FileId(0), 3, 5), None);
        t.push(&SrcText::new("cd", Span::new(FileId(1), 9, 2), None));
        let mut out = Vec::new();
        tokenize(&t, &mut out, &mut Diagnostics::default());
        assert_eq!(out[0].span, Span::new(FileId(0), 3, 5));
        assert_eq!(out[1].span, Span::new(FileId(1), 9, 2));
        assert_eq!(t.origin(4).0, Span::new(FileId(1), 9, 3));
    }
}
