//! Shell commands of hooks and exec health checks, each in its own process group.
//!
//! `sh -c 'sleep 31 | cat'` is three processes; killing `sh` alone leaves `sleep`
//! and `cat` running (and holding whatever they hold) after a timeout. So every
//! command starts as the leader of a new process group, and a timeout — or the
//! run being dropped, e.g. at shutdown — kills the whole group.

use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How a command run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Exit status 0.
    Ok,
    /// Another exit status or a signal (its code, if any).
    Failed(Option<i32>),
    /// It could not be started.
    NotStarted,
    /// Still running after the timeout: its process group was killed.
    TimedOut,
}

/// Kills a process group when dropped, unless disarmed (the leader was reaped
/// after a normal exit: its group is left alone, it may have started something on
/// purpose).
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pg) = self.0.take() {
            let _ = killpg(pg, Signal::SIGKILL);
        }
    }
}

/// Runs `sh -c cmd` with `env` in a new process group; kills the group after
/// `timeout` (or when the returned future is dropped).
pub async fn run(cmd: &str, env: &[(&str, &str)], timeout: Duration) -> Exit {
    let mut c = tokio::process::Command::new("sh");
    c.args(["-c", cmd])
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(_) => return Exit::NotStarted,
    };
    // The leader's pid is the group's id (process_group(0)).
    let mut guard = GroupGuard(child.id().map(|p| Pid::from_raw(p as i32)));
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(st)) => {
            guard.0 = None;
            if st.success() {
                Exit::Ok
            } else {
                Exit::Failed(st.code())
            }
        }
        Ok(Err(_)) => Exit::Failed(None),
        Err(_) => {
            // The guard kills the group; then reap the leader.
            drop(guard);
            let _ = child.wait().await;
            Exit::TimedOut
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(marker: &str) -> bool {
        std::process::Command::new("pgrep")
            .args(["-f", marker])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    #[test]
    fn a_timeout_kills_the_whole_pipeline() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A marker unique to this run, so pgrep finds only our sleep.
        let marker = format!("31.{}", std::process::id());
        let cmd = format!("sleep {marker} | cat");
        let t = std::time::Instant::now();
        let r = rt.block_on(run(&cmd, &[], Duration::from_millis(300)));
        assert_eq!(r, Exit::TimedOut);
        assert!(t.elapsed() < Duration::from_secs(3));
        std::thread::sleep(Duration::from_millis(100));
        if std::process::Command::new("pgrep")
            .arg("--version")
            .output()
            .is_ok()
        {
            assert!(
                !alive(&format!("^sleep {marker}$")),
                "sleep survived the timeout"
            );
        }
        assert_eq!(
            rt.block_on(run("exit 3", &[], Duration::from_secs(5))),
            Exit::Failed(Some(3))
        );
        assert_eq!(
            rt.block_on(run(
                "test \"$X\" = y",
                &[("X", "y")],
                Duration::from_secs(5)
            )),
            Exit::Ok
        );
    }
}
