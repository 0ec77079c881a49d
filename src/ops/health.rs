//! Health checks with hysteresis: `--check-exec CMD`, `--check-http URL`,
//! `--check-tcp ADDR`, run every `interval` with a `timeout` (a timeout is a
//! failure). The node turns unhealthy after `fall` consecutive failures of any check
//! and healthy again after `rise` consecutive successes of all of them. An unhealthy
//! node marks itself ineligible in its gossiped metadata, so its VIPs move away by
//! the graceful path.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// One kind of check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// A command run with `sh -c`; exit status 0 is healthy.
    Exec(String),
    /// An HTTP GET (`http://host:port/path`); a 2xx or 3xx status is healthy.
    Http {
        /// Where to connect.
        addr: SocketAddr,
        /// Host header.
        host: String,
        /// Path.
        path: String,
    },
    /// A TCP connect.
    Tcp(SocketAddr),
}

impl Check {
    /// A short label for metrics and logs.
    pub fn label(&self) -> String {
        match self {
            Check::Exec(c) => format!("exec:{}", c.split_whitespace().next().unwrap_or("")),
            Check::Http { host, path, .. } => format!("http:{host}{path}"),
            Check::Tcp(a) => format!("tcp:{a}"),
        }
    }

    /// Parses `http://HOST:PORT/PATH` (HOST an IP address, or `localhost`).
    pub fn parse_http(url: &str) -> Result<Check, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let with_port = if hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            hostport.to_string()
        } else {
            format!("{hostport}:80")
        };
        let addr: SocketAddr = with_port
            .replacen("localhost", "127.0.0.1", 1)
            .parse()
            .map_err(|_| format!("{url:?}: the host must be an IP address or localhost"))?;
        Ok(Check::Http {
            addr,
            host: hostport.to_string(),
            path: path.to_string(),
        })
    }
}

/// Check timing and hysteresis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Time between runs.
    pub interval: Duration,
    /// Longest a run may take.
    pub timeout: Duration,
    /// Consecutive successes to become healthy.
    pub rise: u32,
    /// Consecutive failures to become unhealthy.
    pub fall: u32,
}

/// A report to the agent loop.
#[derive(Debug)]
pub enum Report {
    /// One run finished: (check label, result).
    Run(String, &'static str),
    /// Health changed.
    Healthy(bool),
}

async fn run_once(check: &Check, timeout: Duration) -> &'static str {
    let fut = async {
        match check {
            // Its own process group, killed whole on the timeout (the run is
            // dropped by the timeout below, and the group with it).
            Check::Exec(cmd) => {
                crate::ops::proc::run(cmd, &[], timeout + Duration::from_secs(1)).await
                    == crate::ops::proc::Exit::Ok
            }
            Check::Tcp(a) => TcpStream::connect(a).await.is_ok(),
            Check::Http { addr, host, path } => {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    return false;
                };
                let req = format!(
                    "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: wackamole-check\r\nConnection: close\r\n\r\n"
                );
                if s.write_all(req.as_bytes()).await.is_err() {
                    return false;
                }
                let mut buf = [0u8; 64];
                let Ok(n) = s.read(&mut buf).await else {
                    return false;
                };
                let line = String::from_utf8_lossy(&buf[..n]);
                let code: u16 = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                (200..400).contains(&code)
            }
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(true) => "ok",
        Ok(false) => "failed",
        Err(_) => "timeout",
    }
}

/// Runs the checks forever, reporting to the agent loop. Starts from `healthy`: true
/// at start-up (the node must still pass its fail-back delay before taking VIPs), the
/// current state after a reload replaced the checks (an unhealthy node then needs
/// `rise` passes of the new checks).
pub async fn run(
    checks: Vec<Check>,
    policy: Policy,
    healthy: bool,
    report: mpsc::UnboundedSender<Report>,
) {
    if checks.is_empty() {
        return;
    }
    let mut healthy = healthy;
    let mut ok_streak = 0u32;
    let mut fail_streak = 0u32;
    let mut tick = tokio::time::interval(policy.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut all_ok = true;
        for c in &checks {
            let r = run_once(c, policy.timeout).await;
            if r != "ok" {
                all_ok = false;
            }
            if report.send(Report::Run(c.label(), r)).is_err() {
                return;
            }
        }
        if all_ok {
            ok_streak += 1;
            fail_streak = 0;
        } else {
            fail_streak += 1;
            ok_streak = 0;
        }
        let next = if healthy {
            fail_streak < policy.fall
        } else {
            ok_streak >= policy.rise
        };
        if next != healthy {
            healthy = next;
            if report.send(Report::Healthy(healthy)).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            Check::parse_http("http://127.0.0.1:8080/health").unwrap(),
            Check::Http {
                addr: "127.0.0.1:8080".parse().unwrap(),
                host: "127.0.0.1:8080".into(),
                path: "/health".into()
            }
        );
        assert!(matches!(
            Check::parse_http("http://localhost/"),
            Ok(Check::Http { .. })
        ));
        assert!(Check::parse_http("https://x/").is_err());
        assert!(Check::parse_http("http://example.com/").is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn rise_and_fall() {
        let dir = std::env::temp_dir().join(format!("wm-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let flag = dir.join("ok");
        std::fs::write(&flag, "").unwrap();
        let check = Check::Exec(format!("test -e {}", flag.display()));
        let policy = Policy {
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(1),
            rise: 3,
            fall: 2,
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(vec![check], policy, true, tx));
        // Healthy runs: no change reported.
        let mut runs = 0;
        while runs < 3 {
            if let Some(Report::Run(_, r)) = rx.recv().await {
                assert_eq!(r, "ok");
                runs += 1;
            }
        }
        std::fs::remove_file(&flag).unwrap();
        let mut fails = 0;
        loop {
            match rx.recv().await.unwrap() {
                Report::Run(_, "failed") => fails += 1,
                Report::Run(..) => {}
                Report::Healthy(h) => {
                    assert!(!h);
                    assert_eq!(fails, 2, "fall = 2");
                    break;
                }
            }
        }
        std::fs::write(&flag, "").unwrap();
        let mut oks = 0;
        loop {
            match rx.recv().await.unwrap() {
                Report::Run(_, "ok") => oks += 1,
                Report::Run(..) => {}
                Report::Healthy(h) => {
                    assert!(h);
                    assert_eq!(oks, 3, "rise = 3");
                    break;
                }
            }
        }
        task.abort();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
