//! The `wackamole` binary: a thin funnel from flags to the library. Every failure
//! goes through one type, [`CliError`], and leaves with a named exit code.

use std::process::ExitCode;

use clap::Parser;
use wackamole::agent::{self, ShellOptions, StartError};
use wackamole::cli::{
    Cli, ClientFlags, Command, EX_USAGE, RunFlags, Settings, ops_options, parse_notify, read_token,
};
use wackamole::net::envelope::Envelope;
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
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::Start(e) => e.exit_code(),
            CliError::Unreachable(_) => exit::UNAVAILABLE,
            CliError::NotHealthy(_) => exit::NOT_HEALTHY,
            CliError::Internal(_) => exit::SOFTWARE,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints its own usage errors, and --help / --version to stdout.
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wackamole: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Run(r) => run_agent(*r),
        Command::CheckConfig(flags) => {
            let (s, _) = validate(&flags)?;
            print!("{}", s.describe());
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
    }
}

/// Everything `run` validates before touching a socket or netlink: the cluster
/// flags, the notify list, the key file, the operations flags and the log format.
/// `check-config` runs exactly this.
fn validate(r: &RunFlags) -> Result<(Settings, ShellOptions), CliError> {
    let usage = |e: &dyn std::fmt::Display| CliError::Usage(e.to_string());
    if !matches!(r.log_format.as_str(), "text" | "json") {
        return Err(CliError::Usage(format!(
            "--log-format: {:?}: use `text` or `json`",
            r.log_format
        )));
    }
    let mut settings = Settings::from_flags(&r.flags).map_err(|e| usage(&e))?;
    // Secret files that others may read: accepted, said out loud.
    for p in r.flags.key_file.iter().chain(r.admin_token_file.iter()) {
        if let Ok(Some(w)) = wackamole::net::secret::check_mode(p) {
            settings.warnings.push(w);
        }
    }
    let notify = parse_notify(&r.notify).map_err(|e| usage(&e))?;
    let secrets = match &r.flags.key_file {
        Some(path) => {
            Envelope::load_secrets(path).map_err(|e| CliError::Usage(format!("--key-file: {e}")))?
        }
        None => Vec::new(),
    };
    let ops = ops_options(r).map_err(|e| usage(&e))?;
    let opts = ShellOptions {
        garp_count: r.garp_count,
        garp_interval: r.garp_interval,
        garp_refresh: r.garp_refresh,
        notify,
        secrets,
        ops,
    };
    Ok((settings, opts))
}

/// Logs to stderr, as text or JSON (`format` is validated by [`validate`]).
fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WACKAMOLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

/// `wackamole run`: validate, prepare, run until SIGTERM or Ctrl-C. After a failure
/// or a panic of the running agent, its VIPs are removed before the exit.
fn run_agent(r: RunFlags) -> Result<ExitCode, CliError> {
    let (settings, opts) = validate(&r)?;
    init_logs(&r.log_format);
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    let cluster = settings.cluster.clone();
    let ifname = settings.interface.clone().unwrap_or_default();
    let prepared = agent::prepare(settings, opts)?;
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
            agent::emergency_flush(&cluster, &ifname);
            Err(e.into())
        }
        Err(_) => {
            agent::emergency_flush(&cluster, &ifname);
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
