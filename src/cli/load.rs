//! From the process's arguments (and its environment and config file) to validated
//! settings — once at start, and again on every reload.
//!
//! [`Source`] keeps the command line the agent was started with. Loading parses it with
//! the config file's values installed as defaults ([`super::file`]), then validates the
//! `run` flags ([`validate`]): the cluster flags, the notify list, the key file, the
//! operations flags, the log format and filter. A reload calls [`Source::load_run`]
//! again: the same precedence, the file read afresh, and nothing applied unless all of it
//! is valid.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};

use super::file::{self, FileError, FileValues};
use super::{Cli, Command, RunFlags, Settings, ops_options, parse_notify};
use crate::agent::ShellOptions;
use crate::net::envelope::Envelope;

/// Why loading failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// clap's own error (usage, `--help`, `--version`), printed by clap.
    #[error("{0}")]
    Clap(#[from] clap::Error),
    /// The config file is unreadable or malformed.
    #[error(transparent)]
    File(#[from] FileError),
    /// A flag or key has a bad value.
    #[error("{0}")]
    Usage(String),
}

/// Everything `run` needs from its flags, validated.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The raw flags (after the file and the environment).
    pub flags: RunFlags,
    /// The cluster and node settings.
    pub settings: Settings,
    /// The shell's options.
    pub opts: ShellOptions,
    /// The config file, if one was read.
    pub file: Option<PathBuf>,
}

/// The command line the process was started with: what a reload reads again.
#[derive(Debug, Clone)]
pub struct Source {
    argv: Vec<OsString>,
}

impl Source {
    /// This process's arguments.
    pub fn from_env() -> Source {
        Source::new(std::env::args_os().collect())
    }

    /// Given arguments (the first is the program name).
    pub fn new(argv: Vec<OsString>) -> Source {
        Source { argv }
    }

    /// The config file named by `--config` or `WACKAMOLE_CONFIG`.
    pub fn config_path(&self) -> Option<PathBuf> {
        file::config_path(&self.argv)
    }

    /// Parses the command line with the config file's values under it.
    pub fn cli(&self) -> Result<Cli, LoadError> {
        self.parse().map(|(cli, _)| cli)
    }

    /// [`Source::cli`], and the file's values.
    fn parse(&self) -> Result<(Cli, Option<FileValues>), LoadError> {
        let file = match self.config_path() {
            Some(p) => Some(file::read(&p)?),
            None => None,
        };
        let cmd = match &file {
            Some(f) => file::with_file(Cli::command(), f),
            None => Cli::command(),
        };
        let parsed = cmd
            .try_get_matches_from(&self.argv)
            .and_then(|m| Cli::from_arg_matches(&m));
        match parsed {
            Ok(cli) => Ok((cli, file)),
            Err(e) => Err(match &file {
                Some(f) => blame(f, &self.argv, e),
                None => LoadError::Clap(e),
            }),
        }
    }

    /// Loads and validates the `run` (or `check-config`) flags.
    pub fn load_run(&self) -> Result<Loaded, LoadError> {
        let (cli, file) = self.parse()?;
        match cli.command {
            Command::Run(r) | Command::CheckConfig(r) => {
                let mut l = validate(&r).map_err(|e| {
                    // `--flag: why` about a value the file gave: name the file and line.
                    let flag = e
                        .strip_prefix("--")
                        .and_then(|rest| rest.split_once(':'))
                        .map(|(f, _)| f);
                    let entry = file
                        .as_ref()
                        .zip(flag)
                        .and_then(|(f, flag)| file::blame(f, &self.argv, flag).map(|x| (f, x)));
                    LoadError::Usage(match entry {
                        Some((f, x)) => format!("{}:{}: {e}", f.path.display(), x.line),
                        None => e,
                    })
                })?;
                l.file = self.config_path();
                Ok(l)
            }
            _ => Err(LoadError::Usage(
                "reload: the agent was not started with `run`".into(),
            )),
        }
    }
}

/// A clap error about a value the file supplied, reworded to name the file and line.
fn blame(f: &FileValues, argv: &[OsString], e: clap::Error) -> LoadError {
    use clap::error::{ContextKind, ContextValue};
    let long = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s
            .trim_start_matches('-')
            .split([' ', '='])
            .next()
            .unwrap_or_default()
            .to_string(),
        _ => return LoadError::Clap(e),
    };
    match file::blame(f, argv, &long) {
        Some(entry) => {
            let msg = e.to_string();
            let first = msg
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            LoadError::Usage(format!(
                "{}:{}: `{}`: {first}",
                f.path.display(),
                entry.line,
                entry.key
            ))
        }
        None => LoadError::Clap(e),
    }
}

/// Most packets one announcement sends per VIP (`--garp-count`).
pub const MAX_GARP_COUNT: u32 = 100;
/// Longest spacing of those packets (`--garp-interval`).
pub const MAX_GARP_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest re-announcement period (`--garp-refresh`, besides 0 for none).
pub const MIN_GARP_REFRESH: Duration = Duration::from_secs(1);

/// The announcement flags: an announcement is a burst, not a flood, and a periodic
/// one ends before the next begins (keepalived's `garp_master_refresh` is whole
/// seconds too).
fn check_garp(r: &RunFlags) -> Result<(), String> {
    if r.garp_count > MAX_GARP_COUNT {
        return Err(format!(
            "--garp-count: {} packets per announcement is a flood; use 0 to {MAX_GARP_COUNT}",
            r.garp_count
        ));
    }
    if r.garp_interval > MAX_GARP_INTERVAL {
        return Err(format!(
            "--garp-interval: {:?} is too long; use at most {MAX_GARP_INTERVAL:?}",
            r.garp_interval
        ));
    }
    let burst = r.garp_interval * r.garp_count;
    if !r.garp_refresh.is_zero() && r.garp_refresh < MIN_GARP_REFRESH.max(burst) {
        return Err(format!(
            "--garp-refresh: {:?} is too short; use 0 (off) or at least {:?} (1s, and no less than one announcement: --garp-count × --garp-interval)",
            r.garp_refresh,
            MIN_GARP_REFRESH.max(burst)
        ));
    }
    Ok(())
}

/// Everything `run` validates before touching a socket or netlink: the cluster flags,
/// the notify list, the key file, the operations flags, the log format and filter.
/// `check-config` runs exactly this, and so does every reload.
pub fn validate(r: &RunFlags) -> Result<Loaded, String> {
    let s = |e: &dyn std::fmt::Display| e.to_string();
    if !matches!(r.log_format.as_str(), "text" | "json") {
        return Err(format!(
            "--log-format: {:?}: use `text` or `json`",
            r.log_format
        ));
    }
    tracing_subscriber::EnvFilter::try_new(&r.log)
        .map_err(|e| format!("--log: {:?}: {e}", r.log))?;
    let mut settings = Settings::from_flags(&r.flags).map_err(|e| s(&e))?;
    // Secret files that others may read: accepted, said out loud.
    for p in r.flags.key_file.iter().chain(r.admin_token_file.iter()) {
        if let Ok(Some(w)) = crate::net::secret::check_mode(p) {
            settings.warnings.push(w);
        }
    }
    let targets = parse_notify(&r.notify).map_err(|e| s(&e))?;
    check_garp(r)?;
    if r.neighbour_interval < Duration::from_secs(1) {
        return Err(format!(
            "--neighbour-interval: {:?} is too short; use 1s or more",
            r.neighbour_interval
        ));
    }
    let used = settings.homes.interfaces(&settings.cluster.groups);
    if let Some((Some(i), ip)) = targets
        .iter()
        .find(|(i, _)| i.as_ref().is_some_and(|i| !used.contains(i)))
    {
        return Err(format!(
            "--notify: {i}:{ip}: no VIP lives on {i} (VIP interfaces: {})",
            used.join(", ")
        ));
    }
    let notify = crate::agent::NotifyOptions {
        targets,
        rate: r.notify_rate,
        neighbours: r.notify_neighbours,
        interval: r.neighbour_interval,
    };
    let secrets = match &r.flags.key_file {
        Some(path) => Envelope::load_secrets(path).map_err(|e| format!("--key-file: {e}"))?,
        None => Vec::new(),
    };
    let ops = ops_options(r).map_err(|e| s(&e))?;
    let opts = ShellOptions {
        garp_count: r.garp_count,
        garp_interval: r.garp_interval,
        garp_refresh: r.garp_refresh,
        notify,
        secrets,
        ops,
        log: r.log.clone(),
        log_format: r.log_format.clone(),
    };
    Ok(Loaded {
        flags: r.clone(),
        settings,
        opts,
        file: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(file: &str, args: &[&str]) -> (Source, tempdir::Dir) {
        let dir = tempdir::Dir::new();
        let path = dir.path.join("w.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv: Vec<OsString> = vec!["wackamole".into(), "check-config".into()];
        argv.push("--config".into());
        argv.push(path.clone().into());
        argv.extend(args.iter().map(OsString::from));
        (Source::new(argv), dir)
    }

    mod tempdir {
        pub struct Dir {
            pub path: std::path::PathBuf,
        }
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!(
                    "wackamole-load-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&path).unwrap();
                Dir { path }
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }

    const FILE: &str = "node-name = \"a\"\nvoters = [\"a\", \"b\", \"c\"]\n\
        vip = [\"10.0.0.100\", \"10.0.0.101\"]\nvip-group = [[\"10.0.0.110\", \"fd00::110\"]]\n\
        insecure = true\nweight = 2\ncheck-interval = \"3s\"\n";

    #[test]
    fn the_file_fills_in_what_flags_leave_out() {
        let (src, _d) = source(FILE, &[]);
        let l = src.load_run().unwrap();
        assert_eq!(l.settings.node.name, "a");
        assert_eq!(l.settings.node.weight, 2);
        assert_eq!(l.settings.cluster.groups.len(), 3);
        assert_eq!(
            l.opts.ops.policy.interval,
            std::time::Duration::from_secs(3)
        );
        assert!(l.file.is_some());
    }

    #[test]
    fn flags_override_the_file() {
        let (src, _d) = source(FILE, &["--weight", "5", "--vip", "10.0.0.200"]);
        let l = src.load_run().unwrap();
        assert_eq!(l.settings.node.weight, 5);
        // A list flag given on the command line replaces the file's list.
        assert_eq!(l.settings.cluster.groups.len(), 2);
    }

    #[test]
    fn a_bad_value_in_the_file_names_its_line() {
        let (src, _d) = source(&format!("{FILE}garp-count = \"many\"\n"), &[]);
        let e = src.load_run().unwrap_err().to_string();
        assert!(e.contains("w.toml:8: `garp-count`"), "{e}");
        let (src, _d) = source(&format!("{FILE}profile = \"warp\"\n"), &[]);
        let e = src.load_run().unwrap_err().to_string();
        assert!(e.contains("--profile"), "{e}");
        let (src, _d) = source(&format!("{FILE}log = \"=[\"\n"), &[]);
        assert!(src.load_run().unwrap_err().to_string().contains("--log"));
    }
}
