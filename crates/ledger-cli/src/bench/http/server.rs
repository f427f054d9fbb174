//! The `ledger serve` child of `bench http`: started on the bench's database with a generated
//! admin token, its address read from its first line, stopped (SIGTERM, then a wait) at the end.
//! Dropped without [`Server::stop`] (an error, an interrupt), it is terminated all the same.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use uuid::Uuid;

use crate::args::GroupArgs;
use crate::database::Target;
use crate::output::CliError;

/// The variable `ledger serve` reads its admin token from.
const ADMIN_TOKEN_VAR: &str = "LEDGER_ADMIN_TOKEN";

/// How long the server may take to say it listens (a first start migrates the database).
const START_PATIENCE: Duration = Duration::from_secs(60);

/// How long the server may take to stop after SIGTERM before it is killed.
const STOP_PATIENCE: Duration = Duration::from_secs(15);

/// The part of `ledger serve`'s first line the bench reads.
#[derive(Deserialize)]
struct Listening {
    listening: String,
}

/// A running `ledger serve` child process.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The admin token it was started with.
    pub token: String,
    stderr: tokio::task::JoinHandle<String>,
}

impl Server {
    /// Starts `ledger serve` (this same binary) on `target` on a free local port, grouping
    /// appends as `group` says.
    pub async fn start(target: &Target, group: GroupArgs) -> Result<Self, CliError> {
        let exe = std::env::current_exe()
            .map_err(|e| anyhow::Error::new(e).context("finding the ledger binary"))?;
        let token = format!(
            "bench_{}{}",
            Uuid::now_v7().simple(),
            Uuid::now_v7().simple()
        );
        // The URL and the token go through the environment: they stay out of the process list.
        let mut child = tokio::process::Command::new(exe)
            .args(["serve", "--listen", "127.0.0.1:0", "--migrate"])
            .arg(format!("--group-max-appends={}", group.group_max_appends))
            .arg(format!("--group-in-flight={}", group.group_in_flight))
            .env("LEDGER_DATABASE_URL", &target.url)
            .env(ADMIN_TOKEN_VAR, &token)
            .env_remove("LEDGER_METRICS_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::Error::new(e).context("starting `ledger serve`"))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(anyhow::anyhow!("the server's output is not piped").into());
        };
        // Its log's last line is kept (it says why it failed), and its pipe never fills.
        let stderr = tokio::spawn(async move {
            let mut log = BufReader::new(stderr).lines();
            let mut last = String::new();
            while let Ok(Some(line)) = log.next_line().await {
                if !line.trim().is_empty() {
                    last = line;
                }
            }
            last
        });
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(START_PATIENCE, lines.next_line()).await;
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            token,
            stderr,
        };
        let line = match first {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => return Err(server.failed("exited before it listened").await),
            Ok(Err(e)) => return Err(server.failed(&format!("could not be read: {e}")).await),
            Err(_) => {
                let waited = format!("did not listen within {START_PATIENCE:?}");
                return Err(server.failed(&waited).await);
            }
        };
        let addr = serde_json::from_str::<Listening>(&line)
            .ok()
            .and_then(|l| l.listening.parse::<SocketAddr>().ok());
        let Some(addr) = addr else {
            let said = format!("printed {line:?} instead of its address");
            return Err(server.failed(&said).await);
        };
        server.addr = addr;
        // Anything else it prints is read and dropped, so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(server)
    }

    /// The server's peak resident memory (VmHWM), in bytes, where /proc tells it.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// Stops the server: SIGTERM, then waits for it (killing it if it does not stop in time).
    pub async fn stop(mut self) {
        self.terminate();
        match tokio::time::timeout(STOP_PATIENCE, self.child.wait()).await {
            Ok(Ok(status)) if !status.success() => {
                tracing::warn!(%status, "the benched server did not stop cleanly");
            }
            Ok(_) => {}
            Err(_) => {
                tracing::warn!("the benched server did not stop after SIGTERM: killing it");
                let _ = self.child.kill().await;
            }
        }
    }

    /// Sends SIGTERM (a kill where there are no signals).
    fn terminate(&mut self) {
        #[cfg(unix)]
        {
            let pid = self
                .child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw);
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                return;
            }
        }
        let _ = self.child.start_kill();
    }

    /// Kills the server after it failed to start, with the last line of its log.
    async fn failed(&mut self, what: &str) -> CliError {
        let _ = self.child.kill().await;
        let last = (&mut self.stderr).await.unwrap_or_default();
        CliError::Failed {
            code: "server_failed",
            message: format!("the benched `ledger serve` {what}: {}", last.trim()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Not stopped (an error or an interrupt on the way): SIGTERM now; the child's
        // kill-on-drop follows if it is still there.
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}
