//! Loading and running plugins: the one place that builds the wasmtime
//! `Engine`, checks a component against the contract, compiles (through the
//! on-disk cache) and instantiates it in the sandbox, and calls it under fuel,
//! deadline and memory limits.
//!
//! **Invariant:** after a trap an instance is never entered again; callers get
//! [`CallError::Discarded`] and must instantiate afresh.

pub mod actions;
pub mod budget;
pub mod builder;
pub mod cache;
pub mod contract;
pub mod js_builder;
pub mod python_builder;
pub mod sandbox;

use crate::hash::{Sha256Hash, sha256, to_hex};
use bson::Document;
use cache::{CacheOutcome, CompileCache};
use contract::{Action, ContractMatch, Plugin, PluginPre, RunContext, ValidManifest};
use sandbox::{Lookup, SandboxSpec, State};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, Trap};

/// Resource limits applied to every call into a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (roughly: wasm instructions) one call may use. Deterministic:
    /// the same call on the same input stops at the same point every time.
    pub fuel_per_call: u64,
    /// Wall-clock backstop per call, for time spent outside fuel accounting.
    pub call_timeout: Duration,
    /// Cap on the plugin's memory: all its linear memories and tables
    /// together (see [`sandbox::MemoryBudget`]).
    pub memory_bytes: usize,
    /// Most actions (reports included) one `process` call may return per
    /// document of its batch; more is refused as a runaway plugin.
    pub max_actions_per_document: u32,
    /// Whether a contract 0.1 plugin may look up collections its passes do
    /// not read (`--allow-undeclared-reads`).
    pub undeclared_reads: contract::UndeclaredReads,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel_per_call: 5_000_000_000,
            call_timeout: Duration::from_secs(60),
            memory_bytes: 512 << 20,
            max_actions_per_document: godwit_policy::MAX_ACTIONS_PER_DOCUMENT,
            undeclared_reads: contract::UndeclaredReads::Refuse,
        }
    }
}

/// How often the epoch ticker advances; the deadline's resolution.
const EPOCH_TICK: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    // The causes are named `error`, not `source`: their text is part of the
    // message, and as a `source` it would be printed twice in `{:#}` chains.
    #[error("cannot read plugin {}: {error}", file.display())]
    Read { file: PathBuf, error: std::io::Error },
    #[error("{} is not a WebAssembly file (it does not start with the `\\0asm` header)", file.display())]
    NotWasm { file: PathBuf },
    #[error("{} is a core WebAssembly module that cannot be made into a godwit component: {reason}", file.display())]
    NotComponentizable { file: PathBuf, reason: String },
    #[error("{} is not a valid WebAssembly component: {reason}", file.display())]
    Invalid { file: PathBuf, reason: String },
    #[error(
        "{} was built for contract {}@{found}, but this godwit runs {}@{} (and {}); rebuild the plugin with a godwit-sdk for contract {}",
        file.display(), contract::PACKAGE, contract::PACKAGE, contract::VERSION, contract::PREVIOUS, contract::VERSION
    )]
    WrongContract { file: PathBuf, found: String },
    #[error("{} is not a godwit plugin: it does not export {}/migration@{} (its exports: {exports})", file.display(), contract::PACKAGE, contract::VERSION)]
    NotAPlugin { file: PathBuf, exports: String },
    #[error("{} imports something this host does not provide: {reason}", file.display())]
    Link { file: PathBuf, reason: String },
    #[error("{}: {error}", file.display())]
    Call { file: PathBuf, error: CallError },
    #[error("{}: invalid manifest: {reason}", file.display())]
    Manifest { file: PathBuf, reason: String },
    #[error(
        "{}: {reason}: not the contract's interface; rebuild the plugin with a godwit-sdk for contract {}, or \
         build it for world `plugin`, which does not export {}",
        file.display(), contract::VERSION, contract::TRAITS_INTERFACE
    )]
    Traits { file: PathBuf, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("plugin {plugin} trapped in {call}: {reason}")]
    Trap {
        plugin: String,
        call: String,
        reason: String,
    },
    #[error("plugin {plugin} failed in {call}: {message}{}", document_id.as_ref().map(|d| format!(" (document {d})")).unwrap_or_default())]
    Failed {
        plugin: String,
        call: String,
        message: String,
        document_id: Option<Document>,
    },
    #[error("plugin {plugin} cannot run {call}: its instance was discarded after an earlier trap")]
    Discarded { plugin: String, call: String },
    #[error(
        "plugin {plugin} returned {actions} actions from {call} for a batch of {documents} documents, \
         more than the limit of {per_document} per document (rule action-count; raise --max-actions-per-document \
         if this is intended)"
    )]
    TooManyActions {
        plugin: String,
        call: String,
        actions: usize,
        documents: usize,
        per_document: u32,
    },
    #[error(
        "plugin {plugin} returned {actions} actions from finish, more than the limit of {limit} \
         (rule action-count: {per_document} per document, as for a batch of {} documents; \
         raise --max-actions-per-document if this is intended)",
        godwit_policy::FINISH_AS_DOCUMENTS
    )]
    TooManyFinishActions {
        plugin: String,
        actions: usize,
        limit: usize,
        per_document: u32,
    },
}

/// Builds the engine and keeps its epoch ticking; loads plugins.
pub struct PluginHost {
    engine: Engine,
    linker: Arc<Linker<State>>,
    cache: Option<CompileCache>,
    limits: Limits,
}

impl PluginHost {
    pub fn new(limits: Limits, cache: Option<CompileCache>) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true);
        let engine = Engine::new(&config)?;
        spawn_epoch_ticker(&engine);
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        refuse_sleeping(&mut linker)?;
        Plugin::add_to_linker::<State, wasmtime::component::HasSelf<State>>(&mut linker, |state| state)?;
        contract::v0_1::Plugin::add_to_linker::<State, wasmtime::component::HasSelf<State>>(&mut linker, |state| {
            state
        })?;
        Ok(PluginHost {
            engine,
            linker: Arc::new(linker),
            cache,
            limits,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Reads, checks and compiles a plugin file (a component, or a core wasip1
    /// module that is componentized here), then asks it for its manifest.
    pub fn load(&self, file: &Path) -> Result<LoadedPlugin, LoadError> {
        let file = file.to_path_buf();
        let bytes = std::fs::read(&file).map_err(|error| LoadError::Read {
            file: file.clone(),
            error,
        })?;
        let sha256 = sha256(&bytes);
        let kind = if wasmparser::Parser::is_component(&bytes) {
            InputKind::Component
        } else if wasmparser::Parser::is_core_wasm(&bytes) {
            InputKind::CoreModule
        } else {
            return Err(LoadError::NotWasm { file });
        };
        let compile = || -> wasmtime::Result<Component> {
            match kind {
                InputKind::Component => Component::new(&self.engine, &bytes),
                InputKind::CoreModule => {
                    let component = builder::componentize(&bytes).map_err(|e| wasmtime::format_err!("{e:#}"))?;
                    Component::new(&self.engine, &component)
                }
            }
        };
        let invalid = |e: wasmtime::Error| match kind {
            InputKind::CoreModule => LoadError::NotComponentizable {
                file: file.clone(),
                reason: format!("{e:#}"),
            },
            InputKind::Component => LoadError::Invalid {
                file: file.clone(),
                reason: format!("{e:#}"),
            },
        };
        let (component, cache) = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, &sha256, compile).map_err(invalid)?,
            None => (compile().map_err(invalid)?, CacheOutcome::Disabled),
        };

        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(&self.engine).map(|(name, _)| name.to_string()).collect();
        let imports: Vec<String> = ty.imports(&self.engine).map(|(name, _)| name.to_string()).collect();
        let contract = match contract::match_contract(exports.iter().map(String::as_str)) {
            ContractMatch::Supported(version) => version,
            ContractMatch::Unsupported(found) => {
                return Err(LoadError::WrongContract { file, found });
            }
            ContractMatch::NotAPlugin => {
                let exports = if exports.is_empty() {
                    "none".into()
                } else {
                    exports.join(", ")
                };
                return Err(LoadError::NotAPlugin { file, exports });
            }
        };
        let pre = self.linker.instantiate_pre(&component).map_err(|e| LoadError::Link {
            file: file.clone(),
            reason: format!("{e:#}"),
        })?;
        let link = |e: wasmtime::Error| LoadError::Link {
            file: file.clone(),
            reason: format!("{e:#}"),
        };
        let pre = if contract::is_previous(&contract) {
            Pre::V0_1(contract::v0_1::PluginPre::new(pre).map_err(link)?)
        } else {
            Pre::Current(PluginPre::new(pre).map_err(link)?)
        };

        let name_hint: Arc<str> = file.file_name().map_or("plugin".into(), |n| n.to_string_lossy().into());
        let mut loaded = LoadedPlugin {
            file: file.clone(),
            sha256,
            size: bytes.len() as u64,
            kind,
            contract,
            imports,
            exports,
            cache,
            manifest: Arc::new(placeholder_manifest(&name_hint)),
            keeps_state: true,
            pre,
            limits: self.limits.clone(),
        };
        let (raw, keeps_state) = loaded
            .instantiate(InstanceOptions::inspect())
            .and_then(|mut instance| Ok((instance.raw_manifest()?, instance.declared_keeps_state()?)))
            .map_err(|error| LoadError::Call {
                file: file.clone(),
                error,
            })?;
        let keeps_state = keeps_state.map_err(|reason| LoadError::Traits {
            file: file.clone(),
            reason,
        })?;
        let manifest = contract::validate_manifest(raw).map_err(|e| LoadError::Manifest { file, reason: e.0 })?;
        loaded.manifest = Arc::new(manifest);
        loaded.keeps_state = keeps_state;
        Ok(loaded)
    }
}

/// A sleep (a pollable on the monotonic clock) blocks inside the host, where
/// neither fuel nor the epoch deadline can stop it; with the plugin's clock
/// frozen it could never be meaningful either. Such a call traps instead.
fn refuse_sleeping(linker: &mut Linker<State>) -> anyhow::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::DynPollable;
    linker.allow_shadowing(true);
    let mut clock = linker.instance(sandbox::MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |_, (nanos,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            Err(wasmtime::Error::new(sandbox::Refused(format!(
                "tried to sleep for {:?} (plugins may not wait on a clock)",
                Duration::from_nanos(nanos)
            ))))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |_, (_,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            Err(wasmtime::Error::new(sandbox::Refused(
                "tried to wait for an instant (plugins may not wait on a clock)".to_string(),
            )))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The epoch only advances while the engine lives: the ticker holds a weak
/// reference and stops once the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("godwit-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn epoch ticker thread");
}

fn placeholder_manifest(name: &str) -> ValidManifest {
    ValidManifest {
        name: name.to_string(),
        version: semver::Version::new(0, 0, 0),
        requires: None,
        description: String::new(),
        passes: Vec::new(),
        schema: Vec::new(),
        idempotent: true,
        reads: Vec::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    Component,
    /// A core wasip1 module, componentized on load with the preview1 adapter.
    CoreModule,
}

/// A checked, compiled plugin; cheap to instantiate many times.
pub struct LoadedPlugin {
    pub file: PathBuf,
    pub sha256: Sha256Hash,
    pub size: u64,
    pub kind: InputKind,
    /// Version of the contract the plugin was built for.
    pub contract: semver::Version,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub cache: CacheOutcome,
    pub manifest: Arc<ValidManifest>,
    /// What the plugin declares through `godwit:migration/traits`
    /// (`keeps-state`; true when it does not export the interface): whether
    /// the actions of `process` and `finish` may depend on the batches
    /// before. False lets the
    /// engine keep an instance that saw batches the write guard refused,
    /// and resume without replaying the written ones.
    pub keeps_state: bool,
    pre: Pre,
    limits: Limits,
}

/// A pre-instantiated component of either contract the host runs.
#[derive(Clone)]
enum Pre {
    Current(PluginPre<State>),
    V0_1(contract::v0_1::PluginPre<State>),
}

/// The bindings of a live instance, by contract.
enum Bindings {
    Current(Plugin),
    V0_1(contract::v0_1::Plugin),
}

/// Per-instance settings: where lookups go and what the guest's clock says.
pub struct InstanceOptions {
    pub lookup: Box<dyn Lookup>,
    /// Milliseconds since the Unix epoch the guest's wall clock is frozen at.
    pub started_at_ms: i64,
    /// Seed of the guest's random numbers.
    pub random_seed: u64,
    /// godwit's metadata collection, when lookups are served from a run's
    /// database (refused there as out of reach rather than undeclared).
    pub metadata_collection: Option<String>,
}

impl InstanceOptions {
    /// No lookups, clock at the Unix epoch: for reading a manifest.
    pub fn inspect() -> Self {
        InstanceOptions {
            lookup: Box::new(sandbox::NoLookups),
            started_at_ms: 0,
            random_seed: 0,
            metadata_collection: None,
        }
    }
}

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn sha256_hex(&self) -> String {
        to_hex(&self.sha256)
    }

    pub fn instantiate(&self, options: InstanceOptions) -> Result<PluginInstance, CallError> {
        let plugin: Arc<str> = self.manifest.name.as_str().into();
        let state = State::new(SandboxSpec {
            plugin: plugin.clone(),
            memory_bytes: self.limits.memory_bytes,
            wall_clock: Duration::from_millis(options.started_at_ms.max(0) as u64),
            random_seed: options.random_seed,
            lookup: options.lookup,
            reads: self.manifest.read_rules(&self.contract, self.limits.undeclared_reads),
            metadata_collection: options.metadata_collection,
        });
        let engine = match &self.pre {
            Pre::Current(pre) => pre.engine(),
            Pre::V0_1(pre) => pre.engine(),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limits);
        let mut instance = PluginInstance {
            store,
            bindings: None,
            component: None,
            contract: self.contract.clone(),
            plugin,
            manifest: self.manifest.clone(),
            limits: self.limits.clone(),
            fuel_used: 0,
        };
        // Instantiation runs guest code (initializers, `cabi_realloc`), so it
        // gets the same fuel, deadline and trap handling as a call.
        let pre = self.pre.clone();
        let (bindings, component) = instance.guarded("instantiation", |store| match &pre {
            Pre::Current(pre) => {
                // The instance itself too: the optional `traits` interface is
                // looked up on it (the bindings know the `plugin` world only).
                let component = pre.instance_pre().instantiate(&mut *store)?;
                Ok((
                    Bindings::Current(Plugin::new(&mut *store, &component)?),
                    Some(component),
                ))
            }
            Pre::V0_1(pre) => pre.instantiate(store).map(|b| (Bindings::V0_1(b), None)),
        })?;
        instance.bindings = Some(bindings);
        instance.component = component;
        Ok(instance)
    }
}

/// One live instance of a plugin, with its own memory and state.
pub struct PluginInstance {
    store: Store<State>,
    bindings: Option<Bindings>,
    /// The component instance (contract 0.2), for optional exports.
    component: Option<wasmtime::component::Instance>,
    /// The contract version the plugin's `migration` export names.
    contract: semver::Version,
    plugin: Arc<str>,
    manifest: Arc<ValidManifest>,
    limits: Limits,
    fuel_used: u64,
}

impl PluginInstance {
    /// Fuel the last call used.
    pub fn fuel_used(&self) -> u64 {
        self.fuel_used
    }

    fn raw_manifest(&mut self) -> Result<contract::Manifest, CallError> {
        self.call("get-manifest", |plugin, store| match plugin {
            Bindings::Current(p) => p.godwit_migration_migration().call_get_manifest(store),
            Bindings::V0_1(p) => p
                .godwit_migration_migration()
                .call_get_manifest(store)
                .map(contract::v0_1::manifest),
        })
    }

    /// `keeps-state` of the optional `godwit:migration/traits` interface,
    /// under the same fuel and deadline as any call; true when the plugin
    /// does not export it (contract 0.1, components built for world
    /// `plugin`).
    /// An export of that name with another shape is refused (the inner
    /// error, which says how it differs): it is not the contract's.
    fn declared_keeps_state(&mut self) -> Result<Result<bool, String>, CallError> {
        let Some(component) = self.component else {
            return Ok(Ok(true));
        };
        let call = "keeps-state";
        let interface = format!("{}@{}", contract::TRAITS_INTERFACE, self.contract);
        let Some(traits) = component.get_export_index(&mut self.store, None, &interface) else {
            return Ok(Ok(true));
        };
        let Some(func) = component.get_export_index(&mut self.store, Some(&traits), call) else {
            return Ok(Err(format!("{interface} is exported without {call}")));
        };
        let func = match component.get_typed_func::<(), (bool,)>(&mut self.store, &func) {
            Ok(func) => func,
            Err(e) => return Ok(Err(format!("{interface}#{call} is not `func() -> bool` ({e:#})"))),
        };
        let (keeps,) = self.guarded(call, |store| func.call(store, ()))?;
        Ok(Ok(keeps))
    }

    /// `begin`; what it returns (contract 0.2: schema operations) is checked
    /// by the caller. A 0.1 plugin's `begin` returns nothing.
    pub fn begin(&mut self, params: &Document, context: &RunContext) -> Result<Vec<Action>, CallError> {
        let params = params.to_vec().expect("parameters are strings and encode");
        let result = self.call("begin", |plugin, store| match plugin {
            Bindings::Current(p) => p.godwit_migration_migration().call_begin(store, &params, context),
            Bindings::V0_1(p) => p
                .godwit_migration_migration()
                .call_begin(store, &params, &contract::v0_1::context(context))
                .map(|r| r.map(|()| Vec::new()).map_err(contract::v0_1::error)),
        })?;
        self.reported("begin", result)
    }

    /// One batch of pass `pass`; documents are raw BSON in `_id` order.
    pub fn process(&mut self, pass: u32, batch: &[Vec<u8>]) -> Result<Vec<Action>, CallError> {
        let call = match self.manifest.passes.get(pass as usize) {
            Some(p) => format!("process (pass {pass} {:?})", p.name),
            None => format!("process (pass {pass})"),
        };
        let result = self.call(&call, |plugin, store| match plugin {
            Bindings::Current(p) => p.godwit_migration_migration().call_process(store, pass, batch),
            Bindings::V0_1(p) => p
                .godwit_migration_migration()
                .call_process(store, pass, batch)
                .map(v0_1_actions),
        })?;
        let actions = self.reported(&call, result)?;
        let limit = batch.len().max(1) * self.limits.max_actions_per_document as usize;
        if actions.len() > limit {
            return Err(CallError::TooManyActions {
                plugin: self.plugin.to_string(),
                call,
                actions: actions.len(),
                documents: batch.len(),
                per_document: self.limits.max_actions_per_document,
            });
        }
        Ok(actions)
    }

    pub fn finish(&mut self) -> Result<Vec<Action>, CallError> {
        let result = self.call("finish", |plugin, store| match plugin {
            Bindings::Current(p) => p.godwit_migration_migration().call_finish(store),
            Bindings::V0_1(p) => p.godwit_migration_migration().call_finish(store).map(v0_1_actions),
        })?;
        let actions = self.reported("finish", result)?;
        // Capped like `process`, as one batch of `FINISH_AS_DOCUMENTS`: an
        // unbounded finish (200,000 inserts) was still applying after 21 minutes.
        let limit = godwit_policy::finish_action_limit(self.limits.max_actions_per_document);
        if actions.len() > limit {
            return Err(CallError::TooManyFinishActions {
                plugin: self.plugin.to_string(),
                actions: actions.len(),
                limit,
                per_document: self.limits.max_actions_per_document,
            });
        }
        Ok(actions)
    }

    fn reported<T>(&self, call: &str, result: Result<T, contract::PluginReportedError>) -> Result<T, CallError> {
        result.map_err(|e| CallError::Failed {
            plugin: self.plugin.to_string(),
            call: call.to_string(),
            message: e.message,
            // Through the policy's structure check: a deeply nested id must
            // not overflow the stack while an error is being reported.
            document_id: e
                .document_id
                .and_then(|bytes| godwit_policy::decode("document id", &bytes).ok()),
        })
    }

    fn call<R>(
        &mut self,
        call: &str,
        f: impl FnOnce(&Bindings, &mut Store<State>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let Some(bindings) = self.bindings.take() else {
            return Err(CallError::Discarded {
                plugin: self.plugin.to_string(),
                call: call.to_string(),
            });
        };
        let result = self.guarded(call, |store| f(&bindings, store));
        if result.is_ok() {
            self.bindings = Some(bindings);
        }
        result
    }

    /// Runs guest code under the per-call limits; a trap is turned into an
    /// error naming the plugin, the call and the reason.
    fn guarded<R>(
        &mut self,
        call: &str,
        f: impl FnOnce(&mut Store<State>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let budget = self.limits.fuel_per_call;
        self.store.set_fuel(budget).expect("fuel is enabled");
        let ticks = (self.limits.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        self.store.set_epoch_deadline(ticks);
        // Lookups get what remains of this deadline (see `sandbox::State::find`).
        self.store.data_mut().begin_call(self.limits.call_timeout);
        let result = f(&mut self.store);
        self.fuel_used = budget.saturating_sub(self.store.get_fuel().unwrap_or(0));
        let stderr = self.store.data().output.take_recent_stderr();
        result.map_err(|e| CallError::Trap {
            plugin: self.plugin.to_string(),
            call: call.to_string(),
            reason: describe_trap(&e, &self.limits, self.store.data().time_in_lookups(), &stderr),
        })
    }
}

type V0_1Actions =
    Result<Vec<contract::v0_1::godwit::migration::types::Action>, contract::v0_1::godwit::migration::types::Error>;

fn v0_1_actions(result: V0_1Actions) -> Result<Vec<Action>, contract::PluginReportedError> {
    result
        .map(|actions| actions.into_iter().map(contract::v0_1::action).collect())
        .map_err(contract::v0_1::error)
}

fn describe_trap(error: &wasmtime::Error, limits: &Limits, in_lookups: Duration, stderr: &[String]) -> String {
    let mut reason = match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => {
            format!(
                "used up its fuel budget of {} per call (an endless loop, or raise --fuel)",
                limits.fuel_per_call
            )
        }
        Some(Trap::Interrupt) if in_lookups.is_zero() => {
            format!("exceeded the wall-clock deadline of {:?} per call", limits.call_timeout)
        }
        Some(Trap::Interrupt) => format!(
            "exceeded the wall-clock deadline of {:?} per call (--call-timeout; {:.1} s of it in lookups)",
            limits.call_timeout,
            in_lookups.as_secs_f64()
        ),
        Some(Trap::UnreachableCodeReached) => "panicked or aborted (wasm `unreachable`)".to_string(),
        Some(trap) => trap.to_string(),
        None if error.downcast_ref::<sandbox::Refused>().is_some() => {
            error.downcast_ref::<sandbox::Refused>().expect("checked").0.clone()
        }
        // The budget over all memories and tables (`--memory-limit`).
        None if error.downcast_ref::<sandbox::MemoryLimitExceeded>().is_some() => error
            .downcast_ref::<sandbox::MemoryLimitExceeded>()
            .expect("checked")
            .to_string(),
        None => format!("{error:#}"),
    };
    if !stderr.is_empty() {
        reason.push_str("; plugin stderr: ");
        reason.push_str(&stderr.join(" | "));
    }
    reason
}
