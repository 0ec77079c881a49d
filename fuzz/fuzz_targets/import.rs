//! `wackamole import`: arbitrary text as an original `wackamole.conf`. It parses or
//! fails with a line inside the file, never a panic, and whatever parses renders a
//! config file that is valid TOML.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wackamole::cli::import::{Target, parse, render};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text) {
        Ok(o) => {
            let t = Target {
                node_name: "n1".into(),
                key_file: None,
            };
            let out = render(&o, "fuzz.conf", &t);
            assert!(out.parse::<toml::Table>().is_ok(), "{out}");
        }
        Err(e) => assert!(e.line >= 1 && e.line <= text.lines().count().max(1)),
    }
});
