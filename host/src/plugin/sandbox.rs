//! The store state of one plugin instance: WASI that grants nothing, captured
//! stdout/stderr, fixed clocks, seeded randomness, one memory budget over all
//! of the instance's memories and tables, and the host imports (`log`, `find`,
//! each `find` within the call's lookup bounds).

use super::budget::{Allowance, Exceeded, LookupBudget, MAX_LOOKUP_BYTES_PER_CALL, MAX_LOOKUPS_PER_CALL};
use super::contract::{self, Level};
use crate::text::escape;
use bytes::Bytes;
use rand::SeedableRng;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
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
    /// Nothing can serve lookups here (`godwit plugin run` has no
    /// database): the call fails with this reason rather than let the
    /// plugin go on with an answer a run would never give it.
    Unavailable(String),
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
    pub(super) limits: MemoryBudget,
    pub(super) output: PluginOutput,
    lookup: Box<dyn Lookup>,
    /// The current call's lookups, and when the call started.
    budget: LookupBudget,
    call_started: Instant,
    plugin: Arc<str>,
    /// The collections lookups may read (the manifest's passes and reads).
    reads: godwit_policy::Reads,
    /// godwit's metadata collection in a run, for the order of refusals.
    metadata_collection: Option<String>,
}

/// Settings of the sandbox that do not change between calls.
pub struct SandboxSpec {
    pub plugin: Arc<str>,
    pub memory_bytes: usize,
    /// The instant the guest's wall clock is frozen at (the run's start).
    pub wall_clock: Duration,
    pub random_seed: u64,
    pub lookup: Box<dyn Lookup>,
    /// The collections lookups may read; any other fails the call.
    pub reads: godwit_policy::Reads,
    /// godwit's metadata collection, when a run serves the lookups.
    pub metadata_collection: Option<String>,
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
        State {
            wasi,
            table: ResourceTable::new(),
            limits: MemoryBudget::new(spec.memory_bytes),
            output,
            lookup: spec.lookup,
            budget: LookupBudget::default(),
            call_started: Instant::now(),
            plugin: spec.plugin,
            reads: spec.reads,
            metadata_collection: spec.metadata_collection,
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

/// Most core instances, memories and tables one plugin instance may create
/// (the limits `StoreLimits` was given before). A Rust plugin's component has
/// a handful of each (its module, the WASI adapter, shims); the counts bound
/// the host-side bookkeeping a component could make wasmtime allocate.
const MAX_INSTANCES: usize = 64;
const MAX_MEMORIES: usize = 64;
const MAX_TABLES: usize = 64;

/// Bytes one table element is counted at. Wasmtime stores a `funcref` element
/// as one pointer (the `ResourceLimiter` docs say so) and a GC reference in 4
/// bytes; counting every element at a pointer's size keeps the total an upper
/// bound, and one budget for memories and tables means neither can be used to
/// get around the cap on the other.
pub const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// The plugin's memory cap (`--memory-limit`), counted over ALL its linear
/// memories and tables together: wasmtime's `StoreLimits` caps each memory on
/// its own, and with multi-memory (on by default) a plugin with N memories
/// got N times the cap. Growth past the budget traps with
/// [`MemoryLimitExceeded`] (rather than making `memory.grow` return -1, which
/// a Rust guest turns into an allocation abort that names no limit).
///
/// Memories and tables never shrink, and a store holds exactly one plugin
/// instance that is discarded after any trap, so adding up the growth the
/// budget allowed is the instance's total. A growth that fails after it was
/// allowed also traps, so the count never has to be taken back.
pub struct MemoryBudget {
    limit: usize,
    used: usize,
}

/// Growth refused by [`MemoryBudget`]; the trap's reason.
#[derive(Debug, thiserror::Error)]
#[error(
    "exceeded the memory limit of {} MiB (--memory-limit), counted over all its memories and tables: \
     growing {what} would bring the total to {} bytes, more than {limit}",
    limit >> 20, used + grow
)]
pub struct MemoryLimitExceeded {
    pub limit: usize,
    pub used: usize,
    pub grow: usize,
    /// What was growing: "a memory from X to Y bytes", "a table ...".
    pub what: String,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Self {
        MemoryBudget { limit, used: 0 }
    }

    fn grow(&mut self, grow: usize, what: impl FnOnce() -> String) -> wasmtime::Result<bool> {
        match self.used.checked_add(grow) {
            Some(total) if total <= self.limit => {
                self.used = total;
                Ok(true)
            }
            _ => Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.limit,
                used: self.used,
                grow,
                what: what(),
            })),
        }
    }
}

impl ResourceLimiter for MemoryBudget {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            // Past the memory's own declared maximum: wasmtime refuses it; trap
            // (as any failed growth) without counting it.
            return Err(wasmtime::format_err!(
                "a memory grew from {current} to {desired} bytes, past its declared maximum of {} bytes",
                maximum.unwrap_or_default()
            ));
        }
        self.grow(desired.saturating_sub(current), || {
            format!("a memory from {current} to {desired} bytes")
        })
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("growing a memory failed"))
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Err(wasmtime::format_err!(
                "a table grew from {current} to {desired} elements, past its declared maximum of {}",
                maximum.unwrap_or_default()
            ));
        }
        let elements = desired.saturating_sub(current);
        self.grow(elements.saturating_mul(TABLE_ELEMENT_BYTES), || {
            format!("a table from {current} to {desired} elements ({TABLE_ELEMENT_BYTES} bytes each)")
        })
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("growing a table failed"))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
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

// A 0.1 plugin's imports: the same two functions, served by the ones below.
impl contract::v0_1::godwit::migration::types::Host for State {}

impl contract::v0_1::godwit::migration::host::Host for State {
    fn log(&mut self, level: contract::v0_1::godwit::migration::types::Level, message: String) {
        contract::godwit::migration::host::Host::log(self, contract::v0_1::level(level), message)
    }

    fn find(
        &mut self,
        collection: String,
        filter: Vec<u8>,
        projection: Option<Vec<u8>>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<Vec<u8>>, String>> {
        contract::godwit::migration::host::Host::find(self, collection, filter, projection, limit)
    }
}

impl contract::godwit::migration::host::Host for State {
    fn log(&mut self, level: Level, message: String) {
        // The plugin's text, escaped: a newline would forge a log line of
        // godwit's own, an escape sequence would reach the terminal. (The
        // `plugin` field is Debug-quoted, which escapes it, by any formatter.)
        let plugin = &*self.plugin;
        let message = escape(&message);
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
        self.check_declared(&collection)?;
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
            Err(LookupError::Unavailable(reason)) => return Err(wasmtime::Error::new(Refused(reason))),
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
    /// A lookup on a collection the manifest neither reads in a pass nor
    /// declares in `reads` fails the call, before anything of it reaches
    /// whatever serves it (the server, the journal). A name the name rules
    /// refuse (godwit's metadata collection, `system.*`) is left to the
    /// lookup's own refusal, which says it is out of reach, declared or not.
    fn check_declared(&self, collection: &str) -> wasmtime::Result<()> {
        let cx = godwit_policy::Context {
            metadata_collection: self.metadata_collection.as_deref(),
            database: None,
            version_record: None,
        };
        match self.reads.check(&cx, collection) {
            Err(v) if v.rule == godwit_policy::Rule::UndeclaredRead => Err(wasmtime::Error::new(Refused(format!(
                "lookup on `{collection}` refused: {v}"
            )))),
            _ => Ok(()),
        }
    }

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
        // Split at newlines already; CR, escape sequences and bidi controls
        // are escaped like every other line of plugin text we print.
        let plugin = &*self.plugin;
        let line = escape(line);
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
