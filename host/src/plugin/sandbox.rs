//! The store state of one plugin instance: WASI that grants nothing, captured
//! stdout/stderr, fixed clocks, seeded randomness, memory limits, and the
//! host imports (`log`, `find`, each `find` within the call's lookup bounds).

use super::budget::{Allowance, Exceeded, LookupBudget, MAX_LOOKUP_BYTES_PER_CALL, MAX_LOOKUPS_PER_CALL};
use super::contract::{self, Level};
use bytes::Bytes;
use rand::SeedableRng;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Serves the plugin's read-only `find` lookups. The run engine implements it
/// over MongoDB (and journals the results); tools that only inspect a plugin
/// use [`NoLookups`]. [`State`] checks every lookup against the call's
/// [`LookupBudget`] before and after it is served, whatever serves it.
pub trait Lookup: Send {
    fn find(&mut self, query: &LookupQuery<'_>) -> Result<Vec<Vec<u8>>, LookupError>;
}

/// One `find` as the plugin asked it, with what it may use.
#[derive(Debug, Clone, Copy)]
pub struct LookupQuery<'a> {
    pub collection: &'a str,
    pub filter: &'a [u8],
    pub projection: Option<&'a [u8]>,
    pub limit: u32,
    /// What remains of the call's deadline: sent as `maxTimeMS`, and the
    /// host stops waiting for the answer there too.
    pub max_time: Duration,
    /// Most bytes the answer may have (see [`Allowance`]).
    pub max_bytes: usize,
}

/// Why a lookup gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// Returned to the plugin as `find`'s error (and journaled): the query
    /// failed, or was refused (godwit's metadata, `system.*`).
    Failed(String),
    /// The server or the host cut the lookup off at its `max_time`: the
    /// call fails (it has run out of its deadline).
    TimedOut,
    /// The answer grew past its `max_bytes`: the call fails.
    TooBig { bytes: usize },
}

/// Most documents one lookup may return. A lookup that asks for no limit (0)
/// or for more, and reaches this many, traps: the plugin would otherwise work
/// on a silently truncated answer. `run::lookup` caps its queries at the same
/// number.
pub const MAX_LOOKUP_DOCS: u32 = 10_000;

/// Most bytes one lookup may return; more traps (reference data that large
/// belongs in a pass, not in a lookup).
pub const MAX_LOOKUP_BYTES: usize = 64 << 20;

/// The WASI interface whose waits [`super::PluginHost`] replaces by a trap.
pub const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// A host import refused the plugin's request; raised as a trap whose
/// message is this reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Refuses every lookup: for `plugin inspect` and other calls outside a run.
pub struct NoLookups;

impl Lookup for NoLookups {
    fn find(&mut self, query: &LookupQuery<'_>) -> Result<Vec<Vec<u8>>, LookupError> {
        Err(LookupError::Failed(format!(
            "lookups are only served during a run (find on {})",
            query.collection
        )))
    }
}

pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: StoreLimits,
    pub(super) output: PluginOutput,
    lookup: Box<dyn Lookup>,
    /// The current call's lookups, and when the call started.
    budget: LookupBudget,
    call_started: Instant,
    plugin: Arc<str>,
}

/// Settings of the sandbox that do not change between calls.
pub struct SandboxSpec {
    pub plugin: Arc<str>,
    pub memory_bytes: usize,
    /// The instant the guest's wall clock is frozen at (the run's start).
    pub wall_clock: Duration,
    pub random_seed: u64,
    pub lookup: Box<dyn Lookup>,
}

impl State {
    pub fn new(spec: SandboxSpec) -> Self {
        let output = PluginOutput::new(spec.plugin.clone());
        // Nothing is granted: no preopened directories, environment, arguments
        // or network. Clocks and randomness are fixed so that a plugin cannot be
        // non-deterministic by accident (replay relies on it).
        let wasi = WasiCtxBuilder::new()
            .stdout(output.stream("stdout"))
            .stderr(output.stream("stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FixedWallClock(spec.wall_clock))
            .monotonic_clock(FixedMonotonicClock)
            .secure_random(rand::rngs::StdRng::seed_from_u64(spec.random_seed))
            .insecure_random(rand::rngs::StdRng::seed_from_u64(spec.random_seed ^ 0x5eed))
            .insecure_random_seed(u128::from(spec.random_seed))
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(spec.memory_bytes)
            .instances(64)
            .tables(64)
            .memories(64)
            // Trap instead of returning -1 from memory.grow, so that the
            // operator sees "memory cap" rather than a guest allocation abort.
            .trap_on_grow_failure(true)
            .build();
        State {
            wasi,
            table: ResourceTable::new(),
            limits,
            output,
            lookup: spec.lookup,
            budget: LookupBudget::default(),
            call_started: Instant::now(),
            plugin: spec.plugin,
        }
    }

    /// Starts the lookup budget of a call that may last `call_timeout`
    /// (the epoch deadline set at the same moment).
    pub(super) fn begin_call(&mut self, call_timeout: Duration) {
        self.budget = LookupBudget::for_call(call_timeout);
        self.call_started = Instant::now();
    }

    /// Time the current (or last) call spent waiting for lookups.
    pub(super) fn time_in_lookups(&self) -> Duration {
        self.budget.in_lookups()
    }

    fn lookup_refused(&self, collection: &str, exceeded: Exceeded) -> wasmtime::Error {
        let reason = match exceeded {
            Exceeded::Count => format!(
                "made more than {MAX_LOOKUPS_PER_CALL} lookups in one call (the last on `{collection}`), the most \
                 one call - one batch - may make; look up once per batch (e.g. with `$in`), not per document"
            ),
            Exceeded::Bytes { bytes } => format!(
                "the lookups of one call - one batch - moved {bytes} bytes with the find on `{collection}`, more \
                 than the {MAX_LOOKUP_BYTES_PER_CALL} they may move (filters and results, as journaled)"
            ),
            Exceeded::Time => self.timed_out(collection, false),
        };
        wasmtime::Error::new(Refused(reason))
    }

    fn timed_out(&self, collection: &str, cut_off: bool) -> String {
        let what = if cut_off { "was cut off" } else { "found no time left" };
        format!(
            "call exceeded --call-timeout {}s ({:.1} s of it in lookups; the find on `{collection}` {what})",
            self.budget.call_timeout().as_secs_f64(),
            self.budget.in_lookups().as_secs_f64()
        )
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl contract::godwit::migration::types::Host for State {}

impl contract::godwit::migration::host::Host for State {
    fn log(&mut self, level: Level, message: String) {
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(target: "godwit::plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "godwit::plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "godwit::plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "godwit::plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "godwit::plugin", plugin, "{message}"),
        }
    }

    fn find(
        &mut self,
        collection: String,
        filter: Vec<u8>,
        projection: Option<Vec<u8>>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<Vec<u8>>, String>> {
        // Every bound is checked here, in front of whatever serves the lookup
        // (the database, the journal on resume), so a replay stops where the
        // run did. A lookup past a bound fails the call: nothing of the call
        // is journaled, so the journal never holds more than the bounds.
        let request = collection.len() + filter.len() + projection.as_ref().map_or(0, Vec::len);
        let Allowance { max_time, max_bytes } = self
            .budget
            .admit(request, self.call_started.elapsed(), MAX_LOOKUP_BYTES)
            .map_err(|e| self.lookup_refused(&collection, e))?;
        let query = LookupQuery {
            collection: &collection,
            filter: &filter,
            projection: projection.as_deref(),
            limit,
            max_time,
            max_bytes,
        };
        let started = Instant::now();
        let result = self.lookup.find(&query);
        let took = started.elapsed();
        let docs = match result {
            Ok(docs) => docs,
            Err(LookupError::Failed(message)) => {
                let _ = self.budget.settle(took, 0);
                return Ok(Err(message));
            }
            Err(LookupError::TimedOut) => {
                let _ = self.budget.settle(took, 0);
                return Err(wasmtime::Error::new(Refused(self.timed_out(&collection, true))));
            }
            Err(LookupError::TooBig { bytes }) => return Err(self.too_big(&collection, bytes, max_bytes)),
        };
        let bytes: usize = docs.iter().map(Vec::len).sum();
        if bytes > max_bytes {
            return Err(self.too_big(&collection, bytes, max_bytes));
        }
        self.budget
            .settle(took, bytes)
            .map_err(|e| self.lookup_refused(&collection, e))?;
        let unbounded = limit == 0 || limit > MAX_LOOKUP_DOCS;
        if unbounded && docs.len() >= MAX_LOOKUP_DOCS as usize {
            let asked = if limit == 0 {
                "without a limit".to_string()
            } else {
                format!("with limit {limit}")
            };
            return Err(wasmtime::Error::new(Refused(format!(
                "find on `{collection}` {asked} matched at least {MAX_LOOKUP_DOCS} documents, the most one lookup \
                 may return; look up with a limit of at most {MAX_LOOKUP_DOCS} (or read the collection in a pass)"
            ))));
        }
        Ok(Ok(docs))
    }
}

impl State {
    fn too_big(&self, collection: &str, bytes: usize, max_bytes: usize) -> wasmtime::Error {
        let reason = if max_bytes == MAX_LOOKUP_BYTES {
            format!(
                "find on `{collection}` returned more than {MAX_LOOKUP_BYTES} bytes ({bytes} read), the most one \
                 lookup may return"
            )
        } else {
            format!(
                "find on `{collection}` returned more than the {max_bytes} bytes left of the {MAX_LOOKUP_BYTES_PER_CALL} \
                 the lookups of one call - one batch - may move ({bytes} read)"
            )
        };
        wasmtime::Error::new(Refused(reason))
    }
}

struct FixedWallClock(Duration);

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

struct FixedMonotonicClock;

impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Lines a plugin writes to stdout/stderr go to the host's tracing output,
/// tagged with the plugin's name; the last few stderr lines are kept so that
/// a trap's error can quote them (a guest panic prints its message there).
#[derive(Clone)]
pub struct PluginOutput {
    plugin: Arc<str>,
    inner: Arc<Mutex<OutputState>>,
}

#[derive(Default)]
struct OutputState {
    partial: [Vec<u8>; 2],
    recent_stderr: VecDeque<String>,
}

const RECENT_STDERR_LINES: usize = 8;
const MAX_LINE: usize = 4096;

impl PluginOutput {
    fn new(plugin: Arc<str>) -> Self {
        PluginOutput {
            plugin,
            inner: Arc::default(),
        }
    }

    fn stream(&self, name: &'static str) -> OutputPipe {
        OutputPipe {
            output: self.clone(),
            stderr: name == "stderr",
        }
    }

    /// Takes the stderr lines written since the last call (including an
    /// unterminated last line).
    pub fn take_recent_stderr(&self) -> Vec<String> {
        let mut state = self.inner.lock().unwrap();
        let partial = std::mem::take(&mut state.partial[1]);
        if !partial.is_empty() {
            let line = String::from_utf8_lossy(&partial).into_owned();
            self.emit(true, &line);
            push_recent(&mut state.recent_stderr, line);
        }
        state.recent_stderr.drain(..).collect()
    }

    fn write(&self, stderr: bool, bytes: &[u8]) {
        let mut state = self.inner.lock().unwrap();
        let partial = &mut state.partial[usize::from(stderr)];
        partial.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(end) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            lines.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
        }
        if partial.len() > MAX_LINE {
            lines.push(String::from_utf8_lossy(&std::mem::take(partial)).into_owned());
        }
        for line in lines {
            self.emit(stderr, &line);
            if stderr {
                push_recent(&mut state.recent_stderr, line);
            }
        }
    }

    fn emit(&self, stderr: bool, line: &str) {
        let plugin = &*self.plugin;
        if stderr {
            tracing::warn!(target: "godwit::plugin", plugin, stream = "stderr", "{line}");
        } else {
            tracing::info!(target: "godwit::plugin", plugin, stream = "stdout", "{line}");
        }
    }
}

fn push_recent(recent: &mut VecDeque<String>, line: String) {
    if recent.len() == RECENT_STDERR_LINES {
        recent.pop_front();
    }
    recent.push_back(line);
}

/// One of the guest's standard output streams; writes are handled
/// synchronously so nothing is lost when the guest traps right after writing.
#[derive(Clone)]
struct OutputPipe {
    output: PluginOutput,
    stderr: bool,
}

impl IsTerminal for OutputPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for OutputPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.output.write(self.stderr, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for OutputPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for OutputPipe {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.output.write(self.stderr, buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
