//! The `wackamole` binary: a thin funnel from flags to the library. Every failure
//! goes through one type, [`CliError`], and leaves with a named exit code.

use std::process::ExitCode;

use wackamole::agent::{self, Reloading, SetLogFilter, StartError};
use wackamole::cli::load::{LoadError, Loaded, Source};
use wackamole::cli::{Cli, ClientFlags, Command, EX_USAGE, read_token};
use wackamole::ops::client;

/// Exit codes (sysexits.h, and 1 for a health check that answered "not ok").
mod exit {
    pub use wackamole::cli::EX_USAGE as USAGE;
    /// `wackamole health`: the agent answered, not healthy (or not ready).
    pub const NOT_HEALTHY: u8 = 1;
    /// A needed facility is missing or busy, or the agent is unreachable.
    pub const UNAVAILABLE: u8 = 69;
    /// An internal error (a panic; the VIPs were released).
    pub const SOFTWARE: u8 = 70;
    /// `wackamole reload`: the agent refused the new configuration.
    pub const CONFIG: u8 = 78;
    /// Malformed input data (sysexits EX_DATAERR).
    pub const DATAERR: u8 = 65;
}

/// Everything that can end the binary unsuccessfully.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// Bad flags, a bad key or token file, a bad config.
    #[error("{0}")]
    Usage(String),
    /// Start-up or the running agent failed (its own code: 64, 69 or 77).
    #[error(transparent)]
    Start(#[from] StartError),
    /// A client command could not reach the agent, or the agent refused.
    #[error("{0}")]
    Unreachable(String),
    /// `wackamole health`: the agent is not healthy (or not ready).
    #[error("{0}")]
    NotHealthy(String),
    /// An internal error.
    #[error("{0}")]
    Internal(String),
    /// `wackamole reload`: the agent refused the configuration (nothing changed).
    #[error("{0}")]
    Refused(String),
    /// `wackamole import`: the input file is malformed.
    #[error("{0}")]
    Data(String),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::Start(e) => e.exit_code(),
            CliError::Unreachable(_) => exit::UNAVAILABLE,
            CliError::NotHealthy(_) => exit::NOT_HEALTHY,
            CliError::Internal(_) => exit::SOFTWARE,
            CliError::Refused(_) => exit::CONFIG,
            CliError::Data(_) => exit::DATAERR,
        }
    }
}

fn main() -> ExitCode {
    let source = Source::from_env();
    let cli = match source.cli() {
        Ok(c) => c,
        Err(LoadError::Clap(e)) => {
            // clap prints its own usage errors, and --help / --version to stdout.
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
        Err(e) => {
            eprintln!("wackamole: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    match run(cli, source) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wackamole: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli, source: Source) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Run(_) => run_agent(load(&source)?, source),
        Command::CheckConfig(_) => {
            let l = load(&source)?;
            print!("{}", l.settings.describe());
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(c) => client_cmd(&c, |_| {
            let doc = client::fetch_status(c.addr)?;
            Ok(if c.json {
                format!("{doc:#}\n")
            } else {
                client::render(&doc)
            })
        }),
        Command::Drain(c) => client_cmd(&c, |token| {
            client::drain(c.addr, true, token, c.wait).map(|l| l + "\n")
        }),
        Command::Undrain(c) => client_cmd(&c, |token| {
            client::drain(c.addr, false, token, c.wait).map(|l| l + "\n")
        }),
        Command::Reload(c) => {
            let token = match &c.token_file {
                Some(p) => {
                    Some(read_token(p, "token-file").map_err(|e| CliError::Usage(e.to_string()))?)
                }
                None => None,
            };
            match client::reload(c.addr, token.as_deref()) {
                Ok(line) => {
                    println!("{line}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(client::ReloadError::Refused(why)) => Err(CliError::Refused(why)),
                Err(client::ReloadError::Unreachable(why)) => Err(CliError::Unreachable(why)),
            }
        }
        Command::Health(h) => {
            let path = if h.ready { "/readyz" } else { "/healthz" };
            match client::request(h.addr, "GET", path, None) {
                Ok((200, _)) => Ok(ExitCode::SUCCESS),
                Ok((code, body)) => Err(CliError::NotHealthy(format!(
                    "{path} answered {code}: {}",
                    body.trim()
                ))),
                Err(e) => Err(CliError::NotHealthy(e)),
            }
        }
        Command::Demo(d) => Ok(wackamole::demo::main(d)),
        Command::Import(f) => import(&f),
    }
}

/// `wackamole import`: the original's file in, this agent's config file out.
fn import(f: &wackamole::cli::ImportFlags) -> Result<ExitCode, CliError> {
    use wackamole::cli::import;
    wackamole::core::config::validate_name(&f.node_name)
        .map_err(|e| CliError::Usage(format!("--node-name: {e}")))?;
    let text = std::fs::read_to_string(&f.path)
        .map_err(|e| CliError::Usage(format!("{}: {e}", f.path.display())))?;
    let o =
        import::parse(&text).map_err(|e| CliError::Data(format!("{}: {e}", f.path.display())))?;
    let t = import::Target {
        node_name: f.node_name.clone(),
        key_file: f.key_file.as_ref().map(|p| p.display().to_string()),
    };
    print!("{}", import::render(&o, &f.path.display().to_string(), &t));
    Ok(ExitCode::SUCCESS)
}

/// Validates what `run` and `check-config` were given (flags, variables, the config
/// file, the key and token files it names): [`Source::load_run`].
fn load(source: &Source) -> Result<Loaded, CliError> {
    source
        .load_run()
        .map_err(|e| CliError::Usage(e.to_string()))
}

/// Logs to stderr, as text or JSON (`format` and `filter` are validated by
/// [`load`]); returns the handle a reload uses to change the filter.
fn init_logs(format: &str, filter: &str) -> SetLogFilter {
    use tracing_subscriber::EnvFilter;
    let b = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let parse = |s: &str| EnvFilter::try_new(s).map_err(|e| e.to_string());
    if format == "json" {
        let b = b.json().with_filter_reloading();
        let h = b.reload_handle();
        b.init();
        Box::new(move |s| h.reload(parse(s)?).map_err(|e| e.to_string()))
    } else {
        let b = b.with_filter_reloading();
        let h = b.reload_handle();
        b.init();
        Box::new(move |s| h.reload(parse(s)?).map_err(|e| e.to_string()))
    }
}

/// `wackamole run`: validate, prepare, run until SIGTERM or Ctrl-C; SIGHUP reloads.
/// After a failure or a panic of the running agent, its VIPs are removed before the
/// exit.
fn run_agent(l: Loaded, source: Source) -> Result<ExitCode, CliError> {
    let Loaded {
        settings,
        opts,
        flags: r,
        ..
    } = l;
    let set_log = init_logs(&r.log_format, &r.log);
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    if let Some(p) = source.config_path() {
        tracing::info!(file = %p.display(), "configuration read; SIGHUP re-reads it");
    }
    let cluster = settings.cluster.clone();
    let homes = settings.homes.clone();
    let prepared = agent::prepare(settings, opts)?.with_reload(Reloading {
        source,
        set_log: Some(set_log),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Internal(format!("cannot start the runtime: {e}")))?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let shutdown = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut term) => tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    },
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            };
            // The agent runs as a task, not as the `block_on` future: waking a task
            // on the runtime's own thread is a queue push, while waking the
            // `block_on` future writes the driver's eventfd — one extra wake-up per
            // timer.
            match tokio::spawn(agent::run(prepared, shutdown)).await {
                Ok(r) => r,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Err(StartError::Unavailable("agent task cancelled".into())),
            }
        })
    }));
    match result {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(e)) => {
            agent::emergency_flush(&cluster, &homes);
            Err(e.into())
        }
        Err(_) => {
            agent::emergency_flush(&cluster, &homes);
            Err(CliError::Internal("internal error; VIPs released".into()))
        }
    }
}

/// Runs a client command: its output, or the agent unreachable or refusing (69), or
/// a bad token file (64).
fn client_cmd(
    c: &ClientFlags,
    f: impl FnOnce(Option<&str>) -> Result<String, String>,
) -> Result<ExitCode, CliError> {
    let token = match &c.token_file {
        Some(p) => Some(read_token(p, "token-file").map_err(|e| CliError::Usage(e.to_string()))?),
        None => None,
    };
    let out = f(token.as_deref()).map_err(CliError::Unreachable)?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
