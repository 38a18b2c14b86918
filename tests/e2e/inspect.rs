//! `godwit plugin inspect`: the manifest round trip, the compile cache, refusals.

use crate::support::{godwit, plugin, stderr, stdout};
use godwit_sdk::Migration;

fn inspect_json(file: &std::path::Path, cache: &std::path::Path) -> serde_json::Value {
    let out = godwit(&[
        "plugin",
        "inspect",
        "--json",
        "--cache-dir",
        cache.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "inspect failed: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("inspect --json prints JSON")
}

#[test]
fn manifest_round_trips_from_rust_through_the_component() {
    let cache = tempfile::tempdir().unwrap();
    let file = plugin("normalize-emails");
    let json = inspect_json(&file, cache.path());
    let native = normalize_emails::NormalizeEmails::manifest();

    assert_eq!(json["name"], native.name.as_str());
    assert_eq!(json["version"], native.version.as_str());
    assert_eq!(json["requires"], native.requires.as_deref().unwrap());
    assert_eq!(json["description"], native.description.as_str());
    let passes = json["passes"].as_array().unwrap();
    assert_eq!(passes.len(), native.passes.len());
    for (got, want) in passes.iter().zip(&native.passes) {
        assert_eq!(got["name"], want.name.as_str());
        assert_eq!(got["collection"], want.collection.as_str());
        assert_eq!(got["batch_size"], want.batch_size);
        assert_eq!(got["writes"], serde_json::json!(want.writes));
        let filter = bson::Bson::Document(want.filter.clone()).into_relaxed_extjson();
        assert_eq!(got["filter"], filter);
        let projection = want
            .projection
            .clone()
            .map(|p| bson::Bson::Document(p).into_relaxed_extjson());
        assert_eq!(got["projection"], serde_json::json!(projection));
    }
    assert_eq!(json["contract"], "godwit:migration@0.2.0");
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(json["size"], bytes.len());
    assert_eq!(json["sha256"], godwit::hash::to_hex(&godwit::hash::sha256(&bytes)));
    let imports: Vec<&str> = json["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // normalize-emails never calls the host, and its optimized (LTO) build
    // drops the unused import; a plugin that looks things up keeps it.
    assert!(imports.contains(&"godwit:migration/types@0.2.0"), "{imports:?}");
    assert_eq!(json["idempotent"], true);
    assert_eq!(json["schema"], serde_json::json!([]));
    let json = inspect_json(&plugin("qdash-backfill-user-id"), cache.path());
    let imports = json["imports"].as_array().unwrap();
    assert!(imports.contains(&"godwit:migration/host@0.2.0".into()), "{imports:?}");
    // What contract 0.2 added to the manifest reaches --json too.
    assert_eq!(inspect_json(&plugin("increment"), cache.path())["idempotent"], false);
    let schema = inspect_json(&plugin("uniqc-archive-tasks"), cache.path())["schema"].clone();
    assert!(
        schema
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"kind": "create-collection", "collection": "archived_tasks"})),
        "{schema}"
    );
}

#[test]
fn second_load_hits_the_compile_cache() {
    let cache = tempfile::tempdir().unwrap();
    let file = plugin("normalize-emails");
    assert_eq!(inspect_json(&file, cache.path())["compile_cache"], "miss");
    let entries: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "one compiled artifact is stored");
    assert_eq!(inspect_json(&file, cache.path())["compile_cache"], "hit");
}

#[test]
fn corrupt_cache_entry_is_recompiled_not_fatal() {
    let cache = tempfile::tempdir().unwrap();
    let file = plugin("normalize-emails");
    inspect_json(&file, cache.path());
    let entry = std::fs::read_dir(cache.path()).unwrap().next().unwrap().unwrap().path();
    std::fs::write(&entry, b"garbage").unwrap();
    assert_eq!(inspect_json(&file, cache.path())["compile_cache"], "miss");
    assert_eq!(inspect_json(&file, cache.path())["compile_cache"], "hit");
}

#[test]
fn text_output_shows_the_manifest() {
    let out = godwit(&[
        "plugin",
        "inspect",
        "--no-cache",
        plugin("normalize-emails").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        "normalize-emails 1.1.0",
        ">=1.0.0",
        "godwit:migration@0.2.0",
        "users on users",
        "writes [users]",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn a_file_that_is_not_wasm_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.wasm");
    std::fs::write(&file, "hello").unwrap();
    let out = godwit(&["plugin", "inspect", "--no-cache", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains("notes.wasm is not a WebAssembly file"), "{err}");
}

#[test]
fn a_plugin_for_another_contract_version_is_refused_naming_both_versions() {
    let out = godwit(&[
        "plugin",
        "inspect",
        "--no-cache",
        plugin("future-contract").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains("future-contract.wasm was built for contract godwit:migration@0.3.0"),
        "{err}"
    );
    assert!(
        err.contains("this godwit runs godwit:migration@0.2.0 (and 0.1.0)"),
        "{err}"
    );
}

#[test]
fn missing_file_is_named() {
    let out = godwit(&["plugin", "inspect", "--no-cache", "/nonexistent/plugin.wasm"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("cannot read plugin /nonexistent/plugin.wasm"),
        "{}",
        stderr(&out)
    );
}
