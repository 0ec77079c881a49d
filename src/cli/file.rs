//! The config file: `wackamole run --config PATH` (TOML), one key per `run` flag.
//!
//! Every `run` flag is a key of the same name (`node-name = "a"`, `vip = ["10.0.0.100"]`,
//! `vip-group = [["10.0.0.110", "2001:db8::110"]]`, durations as strings like `"2s"`).
//! Precedence, highest first: a flag on the command line, its `WACKAMOLE_*` variable, the
//! file, the built-in default. That order falls out of clap itself: the file's values are
//! installed as the arguments' *defaults* ([`with_file`]), and clap already ranks the
//! command line over the environment over defaults.
//!
//! Errors name the file, the line and the key: an unknown key (with the closest known
//! one), a value of the wrong shape (a list where one value is expected, a table), a
//! TOML syntax error. A reload runs exactly this again, so a file that would not start
//! the agent is also a reload that changes nothing.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Args, Command};
use toml::{Spanned, Value};

use super::RunFlags;

/// Largest config file read, in bytes (a pool of 4,096 groups fits many times over).
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// The subcommands that read `--config`.
pub const READERS: [&str; 2] = ["run", "check-config"];

/// One key of the file, turned into the strings its flag would take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The flag's long name, which is the key.
    pub key: String,
    /// The values, as the flag would receive them (one per occurrence).
    pub values: Vec<String>,
    /// 1-based line of the key in the file.
    pub line: usize,
}

/// A parsed and checked config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileValues {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its keys, in file order.
    pub entries: Vec<Entry>,
}

/// What is wrong with a config file. Every variant names the file; most the line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FileError {
    /// It could not be read.
    #[error("--config {path}: {why}")]
    Read {
        /// The file.
        path: String,
        /// The OS error or the size limit.
        why: String,
    },
    /// It is not TOML.
    #[error("{path}:{line}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// A key that is not a `run` flag.
    #[error("{path}:{line}: unknown key `{key}`{hint}")]
    UnknownKey {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// The key.
        key: String,
        /// ` (did you mean `…`?)` or empty.
        hint: String,
    },
    /// A value of the wrong shape for its key.
    #[error("{path}:{line}: `{key}`: {why}")]
    Value {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// The key.
        key: String,
        /// What shape was expected.
        why: String,
    },
}

/// The keys a file may hold: the long names of `run`'s flags (without `config`), and
/// for each whether it takes several values.
pub fn known_keys() -> BTreeMap<String, bool> {
    RunFlags::augment_args(Command::new("run"))
        .get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?;
            let many = a.get_num_args().is_some_and(|n| n.max_values() > 1)
                || matches!(a.get_action(), clap::ArgAction::Append);
            (long != "config").then(|| (long.to_string(), many))
        })
        .collect()
}

/// The path given with `--config PATH` or `--config=PATH` after a subcommand that reads
/// a file, or else in `WACKAMOLE_CONFIG`.
pub fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let mut args = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    let sub = args.by_ref().find(|a| !a.starts_with('-'))?;
    if !READERS.contains(&sub.as_str()) {
        return None;
    }
    let mut found = None;
    while let Some(a) = args.next() {
        if a == "--" {
            break;
        }
        if a == "--config" {
            found = args.next().map(PathBuf::from);
        } else if let Some(p) = a.strip_prefix("--config=") {
            found = Some(PathBuf::from(p));
        }
    }
    found.or_else(|| std::env::var_os("WACKAMOLE_CONFIG").map(PathBuf::from))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The key closest to `key` by edit distance, if it is close.
fn closest<'a>(key: &str, known: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    known
        .map(|k| (distance(key, k), k))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| k)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Turns one value into flag values: a scalar is one value; a list (for a flag that
/// takes several) is one value per element; a list inside a list is one group of
/// addresses (`vip-group`), joined with `,` as the flag takes it.
fn values_of(key: &str, many: bool, v: &Value) -> Result<Vec<String>, String> {
    if let Some(s) = scalar(v) {
        return Ok(vec![s]);
    }
    let Value::Array(items) = v else {
        return Err("expected a string, a number, a boolean or a list".into());
    };
    if !many {
        return Err("takes one value, not a list".into());
    }
    items
        .iter()
        .map(|item| match item {
            Value::Array(inner) if key == "vip-group" => inner
                .iter()
                .map(|x| scalar(x).ok_or("a group is a list of addresses"))
                .collect::<Result<Vec<_>, _>>()
                .map(|xs| xs.join(","))
                .map_err(str::to_string),
            x => scalar(x).ok_or_else(|| "list elements must be strings or numbers".to_string()),
        })
        .collect()
}

/// Parses the text of a config file.
pub fn parse(path: &Path, text: &str) -> Result<FileValues, FileError> {
    let p = path.display().to_string();
    let table: BTreeMap<Spanned<String>, Spanned<Value>> =
        toml::from_str(text).map_err(|e| FileError::Syntax {
            path: p.clone(),
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            message: e.message().trim().to_string(),
        })?;
    let known = known_keys();
    let mut entries = Vec::new();
    for (k, v) in &table {
        let line = line_of(text, k.span().start);
        let key = k.get_ref();
        let Some(&many) = known.get(key) else {
            let hint = closest(key, known.keys())
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            return Err(FileError::UnknownKey {
                path: p,
                line,
                key: key.clone(),
                hint,
            });
        };
        let values = values_of(key, many, v.get_ref()).map_err(|why| FileError::Value {
            path: p.clone(),
            line: line_of(text, v.span().start),
            key: key.clone(),
            why,
        })?;
        entries.push(Entry {
            key: key.clone(),
            values,
            line,
        });
    }
    entries.sort_by_key(|e| e.line);
    Ok(FileValues {
        path: path.to_path_buf(),
        entries,
    })
}

/// Reads and parses a config file (at most [`MAX_FILE_BYTES`]).
pub fn read(path: &Path) -> Result<FileValues, FileError> {
    let p = path.display().to_string();
    let why = |e: std::io::Error| FileError::Read {
        path: p.clone(),
        why: e.to_string(),
    };
    let len = std::fs::metadata(path).map_err(why)?.len();
    if len > MAX_FILE_BYTES {
        return Err(FileError::Read {
            path: p,
            why: format!("{len} bytes is more than the {MAX_FILE_BYTES}-byte limit"),
        });
    }
    let text = std::fs::read_to_string(path).map_err(why)?;
    parse(path, &text)
}

/// `cmd` with the file's values installed as defaults of `run` and `check-config`, so
/// that flags and environment variables still win.
pub fn with_file(cmd: Command, file: &FileValues) -> Command {
    let install = |mut sc: Command| {
        for e in &file.entries {
            let id = sc
                .get_arguments()
                .find(|a| a.get_long() == Some(e.key.as_str()))
                .map(|a| a.get_id().clone());
            if let Some(id) = id {
                let values = e.values.clone();
                sc = sc.mut_arg(id, |a| a.default_values(values).required(false));
            }
        }
        sc
    };
    READERS
        .iter()
        .fold(cmd, |c, name| c.mut_subcommand(*name, install))
}

/// The entry a clap error about `--long` came from, when the file supplied that flag and
/// neither the command line nor the environment did.
pub fn blame<'a>(file: &'a FileValues, argv: &[OsString], long: &str) -> Option<&'a Entry> {
    let flag = format!("--{long}");
    let on_line = argv.iter().any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&format!("{flag}="))
    });
    let env = format!("WACKAMOLE_{}", long.replace('-', "_").to_ascii_uppercase());
    if on_line || std::env::var_os(env).is_some() {
        return None;
    }
    file.entries.iter().find(|e| e.key == long)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<FileValues, FileError> {
        parse(Path::new("w.toml"), s)
    }

    #[test]
    fn every_run_flag_is_a_key() {
        let k = known_keys();
        for key in [
            "node-name",
            "vip",
            "vip-group",
            "voters",
            "check-http",
            "garp-count",
        ] {
            assert!(k.contains_key(key), "{key}");
        }
        assert!(!k.contains_key("config"));
        assert!(k["vip"] && k["voters"] && !k["node-name"] && !k["weight"]);
    }

    #[test]
    fn values_become_flag_values() {
        let f = parse_str(
            "node-name = \"a\"\nweight = 3\nvip = [\"10.0.0.1\", \"10.0.0.2/24\"]\n\
             vip-group = [[\"10.0.0.3\", \"fd00::3\"], [\"10.0.0.4\", \"10.0.0.5\"]]\n\
             insecure = true\ncheck-interval = \"2s\"\n",
        )
        .unwrap();
        let get = |k: &str| f.entries.iter().find(|e| e.key == k).unwrap();
        assert_eq!(get("node-name").values, ["a"]);
        assert_eq!(get("weight").values, ["3"]);
        assert_eq!(get("vip").values, ["10.0.0.1", "10.0.0.2/24"]);
        assert_eq!(
            get("vip-group").values,
            ["10.0.0.3,fd00::3", "10.0.0.4,10.0.0.5"]
        );
        assert_eq!(get("insecure").values, ["true"]);
        assert_eq!(get("vip-group").line, 4);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = parse_str("node-name = \"a\"\n\nvoter = [\"a\"]\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "w.toml:3: unknown key `voter` (did you mean `voters`?)"
        );
        let e = parse_str("node-name = [\"a\", \"b\"]\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("w.toml:1: `node-name`: takes one value"),
            "{e}"
        );
        let e = parse_str("vip = [\"10.0.0.1\"]\nweight = \n").unwrap_err();
        assert!(matches!(e, FileError::Syntax { line: 2, .. }), "{e}");
        let e = parse_str("[run]\nvip = 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown key `run`"), "{e}");
        let e = parse_str("vip = [{ a = 1 }]\n").unwrap_err();
        assert!(matches!(e, FileError::Value { .. }), "{e}");
    }

    #[test]
    fn the_path_comes_from_the_subcommand_flags() {
        let v = |s: &[&str]| s.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_path(&v(&["w", "run", "--config", "/x.toml"])),
            Some(PathBuf::from("/x.toml"))
        );
        assert_eq!(
            config_path(&v(&["w", "check-config", "--config=/y.toml"])),
            Some(PathBuf::from("/y.toml"))
        );
        assert_eq!(config_path(&v(&["w", "status", "--config", "/x"])), None);
    }
}
