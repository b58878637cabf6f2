//! keepalived.conf: preprocessor, lexer, typed model, semantic checks and `ka check`.
//!
//! The daemon loads a configuration with [`load`] (nothing is printed; diagnostics are returned)
//! and `ka check` is [`run_check`]. Tests use [`parse_str`], the fuzzer [`load_in`] on an
//! in-memory filesystem ([`fs::MemFs`]).

pub mod check;
pub mod cli;
pub mod diag;
pub mod dump;
pub mod fs;
pub mod iproute;
pub mod lexer;
pub mod model;
pub mod parse;
pub mod preprocess;
pub mod strict;
pub mod sync_track;
pub mod tree;

use std::path::{Path, PathBuf};

pub use check::InterfaceCheck;
pub use cli::{run_check, CheckArgs};
pub use diag::{Diagnostic, Severity, SourceMap, Span};
pub use model::Config;

/// Options for [`load`] and [`parse_str`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Selects `@id` lines and sets `${_INSTANCE}` (default: the short host name).
    pub config_id: Option<String>,
    /// How to check that interfaces exist (missing ones are warnings).
    pub interfaces: InterfaceCheck,
}

/// Why a configuration could not be loaded at all (problems inside it are [`Diagnostic`]s).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The main file cannot be read.
    #[error(transparent)]
    Read(#[from] preprocess::PreprocessError),
}

/// A loaded configuration: the model, what was found wrong with it, and the files it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The typed model, defaults applied (meaningful only if there are no errors).
    pub config: Config,
    /// Errors and warnings, sorted by location.
    pub diagnostics: Vec<Diagnostic>,
    /// The files read (to print diagnostic paths).
    pub sources: SourceMap,
}

impl Loaded {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// The short host name (the first label of the node name), keepalived's default config id.
pub fn default_config_id() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.split('.').next().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

fn run(
    mut pp: preprocess::Preprocessor<'_>,
    d_ptr: &mut diag::Diagnostics,
    opts: &LoadOptions,
) -> Config {
    // The preprocessor owns the diagnostics while reading; statements are parsed as they come so
    // a big configuration is never held as tokens all at once.
    let mut stmts_diags = diag::Diagnostics::default();
    let mut cx_diags = diag::Diagnostics::default();
    let mut cx = parse::Cx::new(&mut cx_diags);
    {
        let mut tb = tree::TreeBuilder::new(&mut pp);
        while let Some(stmt) = tb.next_top(&mut stmts_diags) {
            if !tb.take_broken() {
                cx.top(&stmt);
            }
        }
    }
    drop(pp);
    let mut cfg = cx.finish();
    check::check(&mut cfg, &opts.interfaces, &mut cx_diags);
    for d in stmts_diags
        .into_sorted()
        .into_iter()
        .chain(cx_diags.into_sorted())
    {
        d_ptr.push(d);
    }
    cfg
}

/// Reads `path` (and what it includes) into the typed model, without printing anything.
///
/// # Errors
/// [`LoadError::Read`] if the main file cannot be read; everything else is a [`Diagnostic`].
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    load_in(&fs::RealFs, path, opts)
}

/// [`load`] from the filesystem `fs` (the fuzzer and tests use an in-memory [`fs::MemFs`]).
///
/// # Errors
/// [`LoadError::Read`] if the main file cannot be read; everything else is a [`Diagnostic`].
pub fn load_in(fs: &dyn fs::ConfigFs, path: &Path, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    let id = opts.config_id.clone().unwrap_or_else(default_config_id);
    let mut sources = SourceMap::default();
    let mut diags = diag::Diagnostics::default();
    let mut pp_diags = diag::Diagnostics::default();
    let pp = preprocess::Preprocessor::open_in(fs, path, &id, &mut sources, &mut pp_diags)?;
    let config = run(pp, &mut diags, opts);
    for d in pp_diags.into_sorted() {
        diags.push(d);
    }
    Ok(Loaded {
        config,
        diagnostics: diags.into_sorted(),
        sources,
    })
}

/// Parses configuration text as if read from `path` (includes resolve relative to it).
pub fn parse_str(text: &str, path: &Path, opts: &LoadOptions) -> Loaded {
    parse_bytes(text.as_bytes(), path, opts)
}

/// Parses raw bytes as the content of the file `path`, through the same checks as [`load`]
/// (too large, NUL byte, invalid UTF-8); includes resolve relative to `path`.
pub fn parse_bytes(bytes: &[u8], path: &Path, opts: &LoadOptions) -> Loaded {
    let id = opts.config_id.clone().unwrap_or_else(default_config_id);
    let mut sources = SourceMap::default();
    let mut diags = diag::Diagnostics::default();
    let mut pp_diags = diag::Diagnostics::default();
    let pp = preprocess::Preprocessor::from_bytes(path, bytes, &id, &mut sources, &mut pp_diags);
    let config = run(pp, &mut diags, opts);
    for d in pp_diags.into_sorted() {
        diags.push(d);
    }
    Loaded {
        config,
        diagnostics: diags.into_sorted(),
        sources,
    }
}

/// The top-level `net_namespace` of the configuration at `path`, if it has one and can be read
/// (`ka run` enters it before starting its threads; problems in the file are reported later,
/// when the daemon loads it).
pub fn net_namespace_of(path: &Path, config_id: Option<String>) -> Option<String> {
    let opts = LoadOptions { config_id, interfaces: InterfaceCheck::Skip };
    load(path, &opts).ok()?.config.net_namespace
}

/// The default configuration file.
pub fn default_path() -> PathBuf {
    PathBuf::from("/etc/keepalived/keepalived.conf")
}

#[cfg(test)]
mod tests;
