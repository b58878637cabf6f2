//! keepalived.conf: preprocessor, lexer, typed model, semantic checks and `ka check`.
//! (Placeholder: filled in by the keepalived.conf issue.)

use std::{path::PathBuf, process::ExitCode};

/// Arguments of `ka check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Configuration file to check.
    #[arg(short = 'f', long = "use-file", default_value = "/etc/keepalived/keepalived.conf")]
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
    match std::fs::read(&args.file) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: error: cannot read: {e}", args.file.display());
            ExitCode::from(2)
        }
    }
}
