//! The `wackamole` binary: a thin funnel from flags to the library.

use std::process::ExitCode;

use clap::Parser;
use wackamole::agent::{self, ShellOptions};
use wackamole::cli::{
    Cli, ClientFlags, Command, EX_USAGE, RunFlags, Settings, ops_options, parse_notify, read_token,
};
use wackamole::net::envelope::Envelope;
use wackamole::ops::client;

fn init_logs(format: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WACKAMOLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        "text" => b.init(),
        "json" => b.json().init(),
        f => return Err(format!("--log-format: {f:?}: use `text` or `json`")),
    }
    Ok(())
}

/// Everything `run` validates before touching a socket or netlink: the cluster
/// flags, the notify list, the key file, the operations flags and the log format.
/// `check-config` runs exactly this.
fn validate(r: &RunFlags) -> Result<(Settings, ShellOptions), String> {
    if !matches!(r.log_format.as_str(), "text" | "json") {
        return Err(format!(
            "--log-format: {:?}: use `text` or `json`",
            r.log_format
        ));
    }
    let mut settings = Settings::from_flags(&r.flags).map_err(|e| e.to_string())?;
    // Secret files that others may read: accepted, said out loud.
    for p in r.flags.key_file.iter().chain(r.admin_token_file.iter()) {
        if let Ok(Some(w)) = wackamole::net::secret::check_mode(p) {
            settings.warnings.push(w);
        }
    }
    let notify = parse_notify(&r.notify).map_err(|e| e.to_string())?;
    let secrets = match &r.flags.key_file {
        Some(path) => Envelope::load_secrets(path).map_err(|e| format!("--key-file: {e}"))?,
        None => Vec::new(),
    };
    let ops = ops_options(r).map_err(|e| e.to_string())?;
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

fn run(r: RunFlags) -> ExitCode {
    if let Err(e) = init_logs(&r.log_format) {
        eprintln!("wackamole: {e}");
        return ExitCode::from(EX_USAGE);
    }
    let (settings, opts) = match validate(&r) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("wackamole: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    let cluster = settings.cluster.clone();
    let ifname = settings.interface.clone().unwrap_or_default();
    let prepared = match agent::prepare(settings, opts) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("wackamole: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wackamole: cannot start the runtime: {e}");
            return ExitCode::from(70);
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let shutdown = async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("SIGTERM handler");
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            };
            // The agent runs as a task, not as the `block_on` future: waking a task
            // on the runtime's own thread is a queue push, while waking the
            // `block_on` future writes the driver's eventfd — one extra wake-up per
            // timer.
            match tokio::spawn(agent::run(prepared, shutdown)).await {
                Ok(r) => r,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Err(agent::StartError::Unavailable(
                    "agent task cancelled".into(),
                )),
            }
        })
    }));
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("wackamole: {e}");
            agent::emergency_flush(&cluster, &ifname);
            ExitCode::from(e.exit_code())
        }
        Err(_) => {
            eprintln!("wackamole: internal error; VIPs released");
            agent::emergency_flush(&cluster, &ifname);
            ExitCode::from(70)
        }
    }
}

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
        Command::Run(r) => run(*r),
        Command::CheckConfig(flags) => match validate(&flags) {
            Ok((s, _)) => {
                print!("{}", s.describe());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wackamole: {e}");
                ExitCode::from(EX_USAGE)
            }
        },
        Command::Status(c) => client_cmd(&c, |token| {
            let doc = client::fetch_status(c.addr)?;
            let _ = token;
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
                Ok((200, _)) => ExitCode::SUCCESS,
                Ok((code, body)) => {
                    eprintln!("wackamole: {path} answered {code}: {}", body.trim());
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("wackamole: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Demo(d) => wackamole::demo::main(d),
    }
}

/// Runs a client command: exit 0 with its output, or 69 (agent unreachable or
/// refusing) with the reason, or 64 for a bad token file.
fn client_cmd(c: &ClientFlags, f: impl FnOnce(Option<&str>) -> Result<String, String>) -> ExitCode {
    let token = match &c.token_file {
        Some(p) => match read_token(p, "token-file") {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("wackamole: {e}");
                return ExitCode::from(EX_USAGE);
            }
        },
        None => None,
    };
    match f(token.as_deref()) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wackamole: {e}");
            ExitCode::from(69)
        }
    }
}
