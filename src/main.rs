//! The `wackamole` binary: a thin funnel from flags to the library.

use std::process::ExitCode;

use clap::Parser;
use wackamole::cli::{Cli, Command, EX_USAGE, Settings};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::CheckConfig(flags) => match Settings::from_flags(&flags) {
            Ok(s) => {
                print!("{}", s.describe());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wackamole: {e}");
                ExitCode::from(EX_USAGE)
            }
        },
    }
}
