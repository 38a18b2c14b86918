//! A hostile JavaScript plugin (`tests/plugins-js/hostile-js`, SpiderMonkey
//! built in by componentize-js) against the sandbox, as `sandbox` does with
//! the Rust one: each misdeed is stopped with an error naming the plugin, the
//! call and the reason, and the host stays usable. The component is compiled
//! once through the shared test compile cache; every test loads it from there.

use crate::support::plugin;
use bson::doc;
use godwit::plugin::cache::CompileCache;
use godwit::plugin::contract::{Action, Mode, RunContext};
use godwit::plugin::{CallError, InstanceOptions, Limits, PluginHost, PluginInstance};
use std::path::Path;
use std::time::{Duration, Instant};

const STARTED_AT_MS: i64 = 1_767_225_600_000;
const PLUGIN: &str = "hostile-js";
const PROCESS: &str = "process (pass 0 \"things\")";

fn host(limits: Limits) -> PluginHost {
    let cache = || CompileCache::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-compile-cache"));
    // The first test to get here compiles the 13 MB component into the cache
    // (~20-30 s); the others wait for it and load it from there, instead of
    // compiling it side by side on a 2-core machine.
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        PluginHost::new(Limits::default(), Some(cache()))
            .unwrap()
            .load(&plugin(PLUGIN))
            .unwrap();
    });
    PluginHost::new(limits, Some(cache())).unwrap()
}

fn context() -> RunContext {
    RunContext {
        run_id: "run-1".into(),
        mode: Mode::DryRun,
        started_at_ms: STARTED_AT_MS,
        database: "test".into(),
    }
}

fn options() -> InstanceOptions {
    InstanceOptions {
        started_at_ms: STARTED_AT_MS,
        ..InstanceOptions::inspect()
    }
}

fn begun(host: &PluginHost, behaviour: &str) -> PluginInstance {
    let plugin = host.load(&plugin(PLUGIN)).unwrap();
    let mut instance = plugin.instantiate(options()).unwrap();
    instance.begin(&doc! {"behaviour": behaviour}, &context()).unwrap();
    instance
}

fn batch() -> Vec<Vec<u8>> {
    (0..3).map(|i| doc! {"_id": i}.to_vec().unwrap()).collect()
}

#[track_caller]
fn trap_reason(result: Result<Vec<Action>, CallError>, call: &str) -> String {
    match result {
        Err(CallError::Trap {
            plugin,
            call: c,
            reason,
        }) => {
            assert_eq!(plugin, PLUGIN);
            assert_eq!(c, call);
            reason
        }
        other => panic!("expected a trap in {call}, got {other:?}"),
    }
}

fn reports(actions: Vec<Action>) -> std::collections::BTreeMap<String, String> {
    actions
        .into_iter()
        .map(|a| match a {
            Action::Report(r) => (r.kind, r.key),
            other => panic!("unexpected action {other:?}"),
        })
        .collect()
}

/// After a trap the instance refuses further calls, and the same host loads
/// and runs a fresh instance normally.
fn assert_discarded_and_host_usable(host: &PluginHost, mut instance: PluginInstance) {
    match instance.process(0, &batch()) {
        Err(CallError::Discarded { plugin, .. }) => assert_eq!(plugin, PLUGIN),
        other => panic!("expected the trapped instance to be discarded, got {other:?}"),
    }
    let mut fresh = begun(host, "ok");
    assert_eq!(reports(fresh.process(0, &batch()).unwrap())["count"], "3");
}

#[test]
fn js_endless_loop_is_stopped_by_fuel() {
    let host = host(Limits {
        fuel_per_call: 200_000_000,
        ..Limits::default()
    });
    let mut instance = begun(&host, "loop");
    let started = Instant::now();
    let reason = trap_reason(instance.process(0, &batch()), PROCESS);
    assert!(reason.contains("used up its fuel budget of 200000000"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the loop ran for {:?}",
        started.elapsed()
    );
    assert_discarded_and_host_usable(&host, instance);
}

#[test]
fn js_endless_loop_is_stopped_by_the_wall_clock_deadline() {
    let host = host(Limits {
        fuel_per_call: u64::MAX,
        call_timeout: Duration::from_millis(500),
        ..Limits::default()
    });
    let mut instance = begun(&host, "loop");
    let reason = trap_reason(instance.process(0, &batch()), PROCESS);
    assert!(reason.contains("exceeded the wall-clock deadline of 500ms"), "{reason}");
    assert_discarded_and_host_usable(&host, instance);
}

#[test]
fn js_endless_loop_in_begin_is_stopped() {
    let host = host(Limits {
        fuel_per_call: 100_000_000,
        ..Limits::default()
    });
    let plugin = host.load(&plugin(PLUGIN)).unwrap();
    let mut instance = plugin.instantiate(options()).unwrap();
    let err = instance
        .begin(&doc! {"behaviour": "loop-in-begin"}, &context())
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("plugin hostile-js trapped in begin: used up its fuel budget"),
        "{err}"
    );
}

#[test]
fn js_allocation_past_the_memory_cap_is_stopped() {
    let host = host(Limits {
        memory_bytes: 128 << 20,
        ..Limits::default()
    });
    let mut instance = begun(&host, "oom");
    let reason = trap_reason(instance.process(0, &batch()), PROCESS);
    assert!(
        reason.contains("exceeded the memory limit of 128 MiB (--memory-limit)"),
        "{reason}"
    );
    assert_discarded_and_host_usable(&host, instance);
}

#[test]
fn js_exception_is_the_calls_error_with_its_stack_and_plugin_error_names_the_document() {
    let host = host(Limits::default());
    let mut instance = begun(&host, "throw");
    match instance.process(0, &batch()) {
        Err(CallError::Failed {
            plugin,
            call,
            message,
            document_id,
        }) => {
            assert_eq!((plugin.as_str(), call.as_str()), (PLUGIN, PROCESS));
            assert!(
                message.starts_with("javascript exception: TypeError: hostile plugin throws on purpose (batch of 3)"),
                "{message}"
            );
            assert_eq!(document_id, None);
        }
        other => panic!("expected the plugin's error, got {other:?}"),
    }
    let mut instance = begun(&host, "error");
    match instance.process(0, &batch()) {
        Err(CallError::Failed {
            message, document_id, ..
        }) => {
            assert_eq!(message, "refusing on purpose");
            assert_eq!(document_id, Some(doc! {"_id": 42}));
        }
        other => panic!("expected the plugin's error, got {other:?}"),
    }
    // A returned error is not a trap: the instance stays usable.
    assert!(!matches!(
        instance.process(0, &batch()),
        Err(CallError::Discarded { .. })
    ));
}

#[test]
fn js_has_no_runtime_network_or_module_loader_and_its_clock_is_frozen() {
    let host = host(Limits::default());
    let mut instance = begun(&host, "probe");
    let got = reports(instance.process(0, &batch()).unwrap());
    // StarlingMonkey keeps a `fetch` global, but the component is built
    // without its HTTP feature: it imports neither wasi:http nor sockets,
    // so nothing could carry a request (and the sandbox grants neither).
    assert_eq!(
        got["globals"],
        "process=undefined require=undefined Deno=undefined Bun=undefined fetch=function \
         XMLHttpRequest=undefined WebSocket=undefined"
    );
    let loaded = host.load(&plugin(PLUGIN)).unwrap();
    assert!(
        !loaded
            .imports
            .iter()
            .any(|i| i.starts_with("wasi:http") || i.starts_with("wasi:sockets")),
        "{:?}",
        loaded.imports
    );
    assert_eq!(got["clock"], STARTED_AT_MS.to_string(), "Date.now() is the run's start");
    assert_eq!(got["date"], "2026-01-01T00:00:00.000Z");
    assert_eq!(got["run"], STARTED_AT_MS.to_string());
    // The same instance, and a fresh one, give the same answers: nothing in
    // the engine is a source of difference between runs.
    let again = reports(begun(&host, "probe").process(0, &batch()).unwrap());
    assert_eq!(got, again);
}
