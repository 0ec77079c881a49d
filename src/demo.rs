//! `wackamole demo` (filled in below).
use std::process::ExitCode;

/// Runs the demo.
pub fn main(_d: crate::cli::DemoFlags) -> ExitCode {
    ExitCode::from(69)
}
