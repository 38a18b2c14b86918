//! Hostile plugins against the sandbox: each is stopped with an error naming
//! the plugin, the call and the reason, and the host stays usable.

use crate::support::plugin;
use bson::doc;
use godwit::plugin::actions;
use godwit::plugin::contract::{Action, Mode, RunContext};
use godwit::plugin::{CallError, InstanceOptions, Limits, LoadError, PluginHost, PluginInstance};
use std::time::{Duration, Instant};

const STARTED_AT_MS: i64 = 1_767_225_600_000;

fn host(limits: Limits) -> PluginHost {
    PluginHost::new(limits, None).unwrap()
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
    let plugin = host.load(&plugin("hostile")).unwrap();
    let mut instance = plugin.instantiate(options()).unwrap();
    instance.begin(&doc! {"behaviour": behaviour}, &context()).unwrap();
    instance
}

fn batch() -> Vec<Vec<u8>> {
    (0..3).map(|i| doc! {"_id": i}.to_vec().unwrap()).collect()
}

fn trap_reason(result: Result<Vec<Action>, CallError>, call: &str) -> String {
    match result {
        Err(CallError::Trap {
            plugin,
            call: c,
            reason,
        }) => {
            assert_eq!(plugin, "hostile");
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
            Action::Report(r) => (r.key, r.message),
            other => panic!("unexpected action {other:?}"),
        })
        .collect()
}

/// After a trap the instance refuses further calls, and the same host loads
/// and runs a fresh instance normally.
fn assert_discarded_and_host_usable(host: &PluginHost, mut instance: PluginInstance) {
    match instance.process(0, &batch()) {
        Err(CallError::Discarded { plugin, .. }) => assert_eq!(plugin, "hostile"),
        other => panic!("expected the trapped instance to be discarded, got {other:?}"),
    }
    let mut fresh = begun(host, "ok");
    let got = reports(fresh.process(0, &batch()).unwrap());
    assert_eq!(got["count"], "3");
}

#[test]
fn endless_loop_is_stopped_by_fuel() {
    let host = host(Limits {
        fuel_per_call: 200_000_000,
        ..Limits::default()
    });
    let mut instance = begun(&host, "loop");
    let started = Instant::now();
    let reason = trap_reason(instance.process(0, &batch()), "process (pass 0 \"things\")");
    assert!(reason.contains("used up its fuel budget of 200000000"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the loop ran for {:?}",
        started.elapsed()
    );
    assert_discarded_and_host_usable(&host, instance);
}

#[test]
fn endless_loop_with_default_limits_stops_within_seconds() {
    let host = host(Limits::default());
    let mut instance = begun(&host, "loop");
    let started = Instant::now();
    let reason = trap_reason(instance.process(0, &batch()), "process (pass 0 \"things\")");
    assert!(
        reason.contains("fuel budget") || reason.contains("deadline"),
        "{reason}"
    );
    // A liveness bound, not a performance assertion: the default budget must
    // stop a spinning plugin in seconds, not minutes.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the loop ran for {:?}",
        started.elapsed()
    );
}

#[test]
fn endless_loop_is_stopped_by_the_wall_clock_deadline() {
    let host = host(Limits {
        fuel_per_call: u64::MAX,
        call_timeout: Duration::from_millis(500),
        ..Limits::default()
    });
    let mut instance = begun(&host, "loop");
    let reason = trap_reason(instance.process(0, &batch()), "process (pass 0 \"things\")");
    assert!(reason.contains("exceeded the wall-clock deadline of 500ms"), "{reason}");
    assert_discarded_and_host_usable(&host, instance);
}

#[test]
fn endless_loop_in_begin_is_stopped() {
    let host = host(Limits {
        fuel_per_call: 100_000_000,
        ..Limits::default()
    });
    let plugin = host.load(&plugin("hostile")).unwrap();
    let mut instance = plugin.instantiate(options()).unwrap();
    let err = instance
        .begin(&doc! {"behaviour": "loop-in-begin"}, &context())
        .unwrap_err();
    assert!(matches!(&err, CallError::Trap { call, .. } if call == "begin"), "{err}");
    assert!(
        err.to_string()
            .starts_with("plugin hostile trapped in begin: used up its fuel budget"),
        "{err}"
    );
}

/// `keeps-state` (`godwit:migration/traits`), asked when a plugin is
/// loaded, runs under the same fuel as any call: a plugin whose answer never
/// comes is refused with one line naming the file and the call, and the host
/// goes on loading others.
#[test]
fn endless_loop_in_keeps_state_is_stopped() {
    let host = host(Limits {
        fuel_per_call: 100_000_000,
        ..Limits::default()
    });
    let started = Instant::now();
    let err = host.load(&plugin("hostile-keeps-state")).err().expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("hostile-keeps-state.wasm")
            && text.contains("trapped in keeps-state: used up its fuel budget of 100000000"),
        "{text}"
    );
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    let honest = host.load(&plugin("lowercase-emails")).unwrap();
    assert!(!honest.keeps_state, "lowercase-emails declares that it keeps no state");
    assert!(
        host.load(&plugin("increment")).unwrap().keeps_state,
        "the SDK's default"
    );
}

/// A `godwit:migration/traits` export whose `keeps-state` returns a `u32`
/// (`tests/plugins/wrong-keeps-state`, built from a copy of the contract with
/// only that changed) is not the contract's: refused at load in one line
/// naming the file, the function and both types, exit 3 - never read as an
/// answer.
#[test]
fn a_keeps_state_of_another_type_is_refused_at_load() {
    let file = plugin("wrong-keeps-state");
    match host(Limits::default()).load(&file) {
        Err(LoadError::Traits { reason, .. }) => {
            assert!(reason.contains("keeps-state is not `func() -> bool`"), "{reason}");
            assert!(reason.contains("expected `bool` found `u32`"), "{reason}");
        }
        other => panic!(
            "not refused as a wrong traits export: {:?}",
            other.map(|p| p.keeps_state)
        ),
    }
    let out = crate::support::godwit(&["plugin", "inspect", file.to_str().unwrap()]);
    let err = crate::support::stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("wrong-keeps-state.wasm") && err.contains("not the contract's interface"),
        "{err}"
    );
    assert!(err.contains("rebuild the plugin with a godwit-sdk"), "{err}");
}

#[test]
fn allocation_past_the_memory_cap_is_stopped() {
    let host = host(Limits {
        memory_bytes: 64 << 20,
        ..Limits::default()
    });
    let mut instance = begun(&host, "oom");
    let reason = trap_reason(instance.process(0, &batch()), "process (pass 0 \"things\")");
    assert!(
        reason
            .contains("exceeded the memory limit of 64 MiB (--memory-limit), counted over all its memories and tables"),
        "{reason}"
    );
    assert_discarded_and_host_usable(&host, instance);
}

#[test]
fn panic_message_reaches_the_error() {
    let host = host(Limits::default());
    let mut instance = begun(&host, "panic");
    let reason = trap_reason(instance.process(0, &batch()), "process (pass 0 \"things\")");
    assert!(reason.contains("panicked"), "{reason}");
    assert!(
        reason.contains("hostile plugin panics on purpose (batch of 3)"),
        "{reason}"
    );
    assert_discarded_and_host_usable(&host, instance);
}

#[test]
fn files_environment_arguments_and_network_give_nothing_and_clocks_are_fixed() {
    let host = host(Limits::default());
    let mut instance = begun(&host, "probe");
    let got = reports(instance.process(0, &batch()).unwrap());
    assert!(
        got["file"].starts_with("error:"),
        "reading /etc/passwd: {}",
        got["file"]
    );
    assert!(got["readdir"].starts_with("error:"), "listing /: {}", got["readdir"]);
    assert_eq!(got["env"], "0 variables: ");
    assert_eq!(got["args"], "0 arguments");
    assert!(got["network"].starts_with("error:"), "connecting: {}", got["network"]);
    assert_eq!(
        got["clock"],
        STARTED_AT_MS.to_string(),
        "the guest's clock is frozen at the run's start"
    );
    // The instance is still healthy after the probe.
    assert_eq!(reports(instance.process(0, &batch()).unwrap()).len(), 6);
}

#[test]
fn malformed_bson_in_an_action_is_refused_before_any_write() {
    let host = host(Limits::default());
    let plugin = host.load(&plugin("hostile")).unwrap();
    let mut instance = begun(&host, "malformed-bson");
    let raw = instance.process(0, &batch()).unwrap();
    let err = actions::validate(&actions::allowed(&plugin.manifest.passes[0]), raw).unwrap_err();
    assert_eq!(err.index, 0);
    assert!(
        err.to_string()
            .contains("action 0 (update on `things`): filter is not well-formed BSON"),
        "{err}"
    );
}

#[test]
fn error_returned_by_the_plugin_names_the_document() {
    let host = host(Limits::default());
    let mut instance = begun(&host, "error");
    match instance.process(0, &batch()) {
        Err(CallError::Failed {
            plugin,
            call,
            message,
            document_id,
        }) => {
            assert_eq!(plugin, "hostile");
            assert_eq!(call, "process (pass 0 \"things\")");
            assert_eq!(message, "refusing on purpose");
            assert_eq!(document_id, Some(doc! {"_id": 42}));
        }
        other => panic!("expected the plugin's error, got {other:?}"),
    }
    // A returned error is not a trap: the instance stays usable.
    assert!(instance.process(0, &batch()).is_err());
    assert!(!matches!(
        instance.process(0, &batch()),
        Err(CallError::Discarded { .. })
    ));
}

#[test]
fn plugin_for_another_contract_version_is_refused() {
    let host = host(Limits::default());
    match host.load(&plugin("future-contract")) {
        Err(LoadError::WrongContract { found, .. }) => assert_eq!(found, "0.3.0"),
        Err(other) => panic!("expected a contract refusal, got {other}"),
        Ok(_) => panic!("expected a contract refusal, the plugin loaded"),
    }
}

#[test]
fn core_module_is_componentized_on_load() {
    // The plain wasip1 module cargo produced before `plugin build` wrapped it.
    let core = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm/wasm32-wasip1/release/normalize_emails.wasm");
    if !core.is_file() {
        // Built through rustup's wasm32-wasip2 target: cargo wrote a component, no core module exists.
        return;
    }
    let host = host(Limits::default());
    let plugin = host.load(&core).unwrap();
    assert_eq!(plugin.kind, godwit::plugin::InputKind::CoreModule);
    assert_eq!(plugin.manifest.name, "normalize-emails");
}

#[test]
fn sleeping_in_begin_is_refused_at_once() {
    // A sleep blocks inside the host, out of reach of fuel and the epoch
    // deadline: the host refuses the clock wait itself.
    let host = host(Limits {
        call_timeout: Duration::from_secs(2),
        ..Limits::default()
    });
    let plugin = host.load(&plugin("hostile")).unwrap();
    let mut instance = plugin.instantiate(options()).unwrap();
    let started = Instant::now();
    let err = instance
        .begin(&doc! {"behaviour": "sleep-in-begin"}, &context())
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "blocked for {:?}",
        started.elapsed()
    );
    assert!(
        err.to_string()
            .starts_with("plugin hostile trapped in begin: tried to sleep for 3600s"),
        "{err}"
    );
}

#[test]
fn an_action_list_far_larger_than_the_batch_is_refused() {
    let host = host(Limits::default());
    let mut instance = begun(&host, "action-flood");
    match instance.process(0, &batch()) {
        Err(e @ CallError::TooManyActions { .. }) => assert_eq!(
            e.to_string(),
            "plugin hostile returned 300 actions from process (pass 0 \"things\") for a batch of 3 documents, \
             more than the limit of 10 per document (rule action-count; raise --max-actions-per-document if this is \
             intended)"
        ),
        other => panic!("expected too many actions, got {other:?}"),
    }
}

/// Hostile plugins against a real database: each is stopped before any write
/// of its batch, with one error line naming the plugin, pass, batch and
/// document, and exit code 4; a full dump of the database is unchanged. The
/// hostile batch is the run's first, so "unchanged by that batch" means
/// unchanged, apart from godwit's own lease lock.
mod contained {
    use crate::db::{TestDb, server};
    use crate::support::{command, plugin, stderr};
    use bson::doc;
    use std::time::{Duration, Instant};

    /// The collections a plugin could touch, and godwit's metadata without its
    /// lease lock (taken before the first batch, expiring on its own).
    fn state(db: &TestDb) -> Vec<(String, Vec<Vec<u8>>)> {
        db.dump()
            .into_iter()
            .map(|(name, docs)| {
                let docs = docs
                    .into_iter()
                    .filter(|raw| {
                        name != "godwit_metadata"
                            || bson::RawDocument::from_bytes(raw).unwrap().get_str("_id").ok() != Some("lock")
                    })
                    .collect();
                (name, docs)
            })
            .filter(|(_, docs): &(String, Vec<Vec<u8>>)| !docs.is_empty())
            .collect()
    }

    /// Runs the hostile plugin with `behaviour` in execute mode over 25 things
    /// (batches of 10) and checks containment; returns the error line.
    fn contained(behaviour: &str, setup: impl FnOnce(&TestDb), expect: &[&str]) -> String {
        let db = TestDb::new(server(), "hostile");
        db.insert("things", (0..25).map(|i| doc! {"_id": i, "n": i}).collect());
        db.insert("orders", vec![doc! {"_id": 5, "user": 1}]);
        setup(&db);
        let before = state(&db);
        let journal = tempfile::tempdir().unwrap();
        let param = format!("behaviour={behaviour}");
        let started = Instant::now();
        let out = command(
            &db,
            journal.path(),
            &[
                "run",
                plugin("hostile").to_str().unwrap(),
                "--execute",
                "--param",
                &param,
                "--call-timeout",
                "10",
            ],
        )
        .output()
        .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(4), "{behaviour}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{behaviour}: took {:?}",
            started.elapsed()
        );
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "{behaviour}: one error line: {err}");
        let line = errors[0];
        for part in ["plugin hostile"].iter().chain(expect) {
            assert!(line.contains(part), "{behaviour}: {part:?} missing from: {line}");
        }
        assert_eq!(state(&db), before, "{behaviour}: the database changed");
        assert!(
            db.find_one("godwit_metadata", doc! {"_id": {"$regex": "^progress:"}})
                .is_none(),
            "{behaviour}: no batch committed"
        );
        eprintln!("hostile {behaviour}: contained, exit 4: {line}");
        line.to_string()
    }

    const FIRST_BATCH: &[&str] = &["pass 0 (things)", "batch 0 (documents up to _id 9)"];

    #[test]
    fn write_to_a_collection_outside_the_allow_list() {
        let line = contained("foreign-collection", |_| {}, FIRST_BATCH);
        assert!(
            line.contains(
                "action 10 (update on `orders`, document _id 5): collection is not in the pass's writes [things]"
            ),
            "{line}"
        );
    }

    #[test]
    fn empty_filter() {
        let line = contained("empty-filter", |_| {}, FIRST_BATCH);
        assert!(
            line.contains("action 10 (delete on `things`): filter is empty (it would hit every document)"),
            "{line}"
        );
    }

    #[test]
    fn action_list_100_times_the_batch() {
        let line = contained("action-flood", |_| {}, FIRST_BATCH);
        assert!(line.contains("returned 1000 actions"), "{line}");
    }

    #[test]
    fn bson_over_16_mib() {
        let line = contained("huge-bson", |_| {}, FIRST_BATCH);
        assert!(
            line.contains("action 10 (update on `things`, document _id 0): update is")
                && line.contains("over MongoDB's limit of 16777216 bytes"),
            "{line}"
        );
    }

    #[test]
    fn find_without_limit_on_a_huge_collection() {
        let line = contained(
            "huge-find",
            |db| {
                for chunk in 0..10 {
                    db.insert(
                        "haystack",
                        (0..1_000).map(|i| doc! {"_id": chunk * 1_000 + i}).collect(),
                    );
                }
            },
            FIRST_BATCH,
        );
        assert!(
            line.contains("find on `haystack` without a limit matched at least 10000 documents"),
            "{line}"
        );
    }

    #[test]
    fn blocking_in_begin() {
        let line = contained("sleep-in-begin", |_| {}, &["trapped in begin", "tried to sleep"]);
        assert!(line.contains("plugin hostile trapped in begin"), "{line}");
    }

    #[test]
    fn endless_loop_in_begin() {
        contained("loop-in-begin", |_| {}, &["trapped in begin"]);
    }

    #[test]
    fn blocking_in_process() {
        contained(
            "sleep",
            |_| {},
            &["pass 0 (things)", "batch 0 (documents up to _id 9)", "tried to sleep"],
        );
    }
}
