//! The server every contestant writes to: `secantusd-rs` (SecantusDB's Rust
//! server, MongoDB wire protocol over WiredTiger, a one-member replica set so
//! godwit uses transactions) on a free loopback port with a temporary storage
//! directory - or a server the operator names with `--uri`.

use anyhow::{Context, bail};
use bson::doc;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SERVER_BINARY: &str = "secantusd-rs";

pub struct Server {
    pub uri: String,
    /// What the results call the server ("secantusd-rs 0.5.3-beta.196", or the URI's server version).
    pub label: String,
    child: Option<Child>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `secantusd-rs` with its storage under `dir`; its output goes to `dir/server.log`.
pub async fn start(dir: &Path) -> anyhow::Result<Server> {
    let port = free_port()?;
    let storage = dir.join("storage");
    std::fs::create_dir_all(&storage)?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    let mut command = Command::new(SERVER_BINARY);
    command
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--log-level",
            "WARNING",
            // Contestant (w) follows a change stream from its start: the
            // oplog must hold the whole run (its default cap is 100,000
            // entries; a 200k backfill writes more), as an operator sizes a
            // production oplog for the longest run.
            "--oplog-max-entries",
            "10000000",
            "--storage-path",
        ])
        .arg(&storage)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; the server dies with the harness
    // instead of outliving an interrupted bench.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = command.spawn().with_context(|| {
        format!("starting {SERVER_BINARY} (`just bench` installs it: cargo install secantus-mdb --version 0.5.3-beta.196 --ignore-rust-version)")
    })?;
    let uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true");
    let mut server = Server {
        uri: uri.clone(),
        label: String::new(),
        child: Some(child),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(version) = version(&uri).await {
            server.label = format!("{SERVER_BINARY} {} (reports MongoDB {version})", binary_version());
            return Ok(server);
        }
        if let Some(child) = &mut server.child
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "{SERVER_BINARY} exited ({status}) before answering; see {}",
                dir.join("server.log").display()
            );
        }
        if Instant::now() > deadline {
            bail!("{SERVER_BINARY} did not answer on port {port} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Server {
    /// CPU time (user + system) the server process has used so far; `None`
    /// for a server given by `--uri`.
    pub fn cpu(&self) -> Option<Duration> {
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Some(Duration::from_millis(ticks * 1000 / per_sec))
    }
}

/// A server the operator runs.
pub async fn existing(uri: &str) -> anyhow::Result<Server> {
    let version = version(uri).await.with_context(|| format!("connecting to {uri}"))?;
    Ok(Server {
        uri: uri.to_string(),
        label: format!("MongoDB-compatible server {version} (given by --uri)"),
        child: None,
    })
}

async fn version(uri: &str) -> anyhow::Result<String> {
    let mut options = mongodb::options::ClientOptions::parse(uri).await?;
    options.server_selection_timeout = Some(Duration::from_secs(2));
    let client = mongodb::Client::with_options(options)?;
    let info = client.database("admin").run_command(doc! {"buildInfo": 1}).await?;
    Ok(info.get_str("version").unwrap_or("?").to_string())
}

fn binary_version() -> String {
    Command::new(SERVER_BINARY)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "(version unknown)".into())
}
