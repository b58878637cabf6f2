//! `ka check`: prints diagnostics (and optionally the model) and sets the exit code.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use super::{diag::Severity, dump, load, LoadOptions};

/// Arguments of `ka check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Configuration file to check.
    #[arg(
        short = 'f',
        long = "use-file",
        default_value = "/etc/keepalived/keepalived.conf"
    )]
    pub file: PathBuf,
    /// Config id selecting `@id` conditional lines (default: the short hostname).
    #[arg(short = 'i', long = "config-id")]
    pub config_id: Option<String>,
    /// Turn warnings into errors.
    #[arg(long)]
    pub strict: bool,
    /// Print the fully expanded model as JSON.
    #[arg(long)]
    pub dump: bool,
}

/// Runs `ka check`. Exit code 0: no errors; 1: errors; 2: the file cannot be read.
pub fn run_check(args: &CheckArgs) -> ExitCode {
    let opts = LoadOptions {
        config_id: args.config_id.clone(),
        ..Default::default()
    };
    let loaded = match load(&args.file, &opts) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{}: error: {e}", args.file.display());
            return ExitCode::from(2);
        }
    };
    // Scripts are checked on this host as keepalived checks them at start (missing, not
    // executable, unsafe): the daemon disables those trackers.
    let findings = crate::notify::security::audit(&loaded.config);
    let mut diagnostics = loaded.diagnostics.clone();
    diagnostics.extend(super::check::script_refusals(&loaded.config, &findings));
    diagnostics.sort_by_key(|d| d.span.map_or((1, None), |s| (0, Some(s))));
    let tty = std::io::stderr().is_terminal();
    let mut errors = 0usize;
    let mut warnings = 0usize;
    let mut out = String::new();
    for d in &diagnostics {
        let mut d = d.clone();
        if args.strict {
            d.severity = Severity::Error;
        }
        match d.severity {
            Severity::Error => errors += 1,
            Severity::Warning => warnings += 1,
        }
        out.push_str(&d.render(&loaded.sources, &args.file));
        out.push('\n');
        if tty {
            if let Some(x) = d.excerpt(&loaded.sources) {
                out.push_str(&x);
                out.push('\n');
            }
        }
    }
    if let Some(line) = ignored_summary(&diagnostics) {
        out.push_str(&line);
        out.push('\n');
    }
    if tty && (errors + warnings) > 0 {
        out.push_str(&format!("{errors} error(s), {warnings} warning(s)\n"));
    }
    eprint!("{out}");
    if args.dump {
        let v = dump::to_json(&loaded.config, &loaded.sources);
        match serde_json::to_string_pretty(&v) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!(
                "{}: error: cannot render the model: {e}",
                args.file.display()
            ),
        }
    }
    if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The one line `ka check` prints about ignored keywords ("3 keywords ignored: 2 unknown, 1
/// accepted but not acted on"), or `None` when none is.
pub fn ignored_summary(diagnostics: &[super::Diagnostic]) -> Option<String> {
    use super::diag::IgnoredKeyword;
    let count = |k| diagnostics.iter().filter(|d| d.ignored_keyword == Some(k)).count();
    let (unknown, not_acted) = (count(IgnoredKeyword::Unknown), count(IgnoredKeyword::NotActedOn));
    let total = unknown + not_acted;
    (total > 0).then(|| {
        format!(
            "ka check: {total} keyword{} ignored: {unknown} unknown, {not_acted} accepted but not acted on (see the warnings above)",
            if total == 1 { "" } else { "s" }
        )
    })
}
