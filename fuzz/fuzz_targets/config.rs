//! The configuration path: arbitrary argument lists (NUL- or newline-separated)
//! through clap and `Settings::from_flags` — the same validation `run` and
//! `check-config` do. Bad input must come back as an error, never a panic.
#![no_main]

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use wackamole::cli::{Cli, Command, Settings, ops_options, parse_notify};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut args = vec!["wackamole".to_string(), "check-config".to_string()];
    args.extend(
        text.split(['\0', '\n'])
            .filter(|a| !a.is_empty())
            .map(String::from),
    );
    let Ok(cli) = Cli::try_parse_from(&args) else {
        return;
    };
    if let Command::CheckConfig(r) = cli.command {
        if let Ok(s) = Settings::from_flags(&r.flags) {
            let _ = s.describe();
        }
        let _ = parse_notify(&r.notify);
        let _ = ops_options(&r);
    }
});
