//! Runs one contestant as a child process: wall-clock time from spawn to exit
//! and the child's peak resident set size, read from `wait4`'s rusage (the
//! kernel's high-water mark of the process, so short peaks count too).

use anyhow::{Context, bail};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Measured {
    pub elapsed: Duration,
    /// Peak RSS in bytes.
    pub peak_rss: u64,
    /// User + system CPU time.
    pub cpu: Duration,
    pub stdout: String,
}

/// Runs `command` to completion; its stderr goes to `log`. A non-zero exit is an error
/// quoting the end of the log.
pub fn measure(mut command: Command, log: &Path) -> anyhow::Result<Measured> {
    let out = tempfile::tempfile()?;
    let err = std::fs::File::create(log)?;
    command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(err);
    let started = Instant::now();
    let child = command.spawn().with_context(|| format!("starting {command:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not waited for by anyone else (std's Child is
    // dropped unwaited, which leaves the process alone).
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    drop(child);
    if waited != pid {
        bail!("wait4 on {command:?}: {}", std::io::Error::last_os_error());
    }
    let stdout = {
        use std::io::{Read, Seek};
        let mut out = out;
        out.rewind()?;
        let mut s = String::new();
        out.read_to_string(&mut s)?;
        s
    };
    let exited_ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !exited_ok {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        bail!(
            "{command:?} failed (wait status {status}); stdout: {}; end of {}:\n{}",
            stdout.trim(),
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(Measured {
        elapsed,
        // Linux reports ru_maxrss in KiB.
        peak_rss: usage.ru_maxrss as u64 * 1024,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        stdout,
    })
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}
