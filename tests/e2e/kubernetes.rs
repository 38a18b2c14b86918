//! `godwit fleet manifest`: the Kubernetes objects it prints (and
//! `deploy/godwit-fleet.yaml`, one such output) validated offline against
//! the Kubernetes JSON schemas of the oldest and newest versions README
//! names, by `kubernetes-validate` (PyPI, installed by `just setup`; it
//! bundles the schemas), in strict mode (unknown fields refused). No cluster.

use crate::support::{godwit, stderr, stdout};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The oldest Kubernetes the manifest is for (`backoffLimitPerIndex`,
/// `FailIndex` and `podReplacementPolicy` beta and on by default) and the
/// newest schema the validator bundles.
const VERSIONS: &[&str] = &["1.29.0", "1.37.0"];

/// The exit codes a retry may fix (README's "Running on Kubernetes" table):
/// every other code of `exit::ALL` but 0 fails an index at once.
const RETRYABLE: &[u8] = &[1, 5, 8, 20, 130];

const PLUGIN: &str = "/plugins/backfill.wasm";

fn manifest_args(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "fleet",
        "manifest",
        PLUGIN,
        "--workers",
        "4",
        "--image",
        "registry.example/migrations:1",
        "--db",
        "app",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `godwit fleet manifest` with `args`: its YAML and (`--json`) its objects.
fn manifest(args: &[String]) -> (String, Vec<Value>) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = godwit(&args);
    assert!(out.status.success(), "godwit {args:?}: {}", stderr(&out));
    let yaml = stdout(&out);
    let mut json_args = vec!["--json"];
    json_args.extend(&args);
    let out = godwit(&json_args);
    assert!(out.status.success(), "godwit {json_args:?}: {}", stderr(&out));
    let list: Value = serde_json::from_str(&stdout(&out)).expect("--json prints JSON");
    assert_eq!(list["kind"], "List");
    (yaml, list["items"].as_array().expect("items").clone())
}

fn validator() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("kubernetes-validate"))
        .find(|path| path.is_file());
    found.expect("kubernetes-validate is not on PATH: run `just setup` (scripts/setup.sh installs it from PyPI)")
}

/// Validates a YAML file against each of [`VERSIONS`]' schemas: the
/// validator's messages on failure, nothing on success.
fn validate(file: &Path) -> Result<(), String> {
    for version in VERSIONS {
        let out = Command::new(validator())
            .args(["--strict", "--quiet", "--kubernetes-version", version])
            .arg(file)
            .output()
            .expect("run kubernetes-validate");
        if !out.status.success() {
            return Err(format!("{}{}", stdout(&out), stderr(&out)));
        }
    }
    Ok(())
}

#[track_caller]
fn assert_valid(yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifest.yaml");
    std::fs::write(&file, yaml).unwrap();
    if let Err(errors) = validate(&file) {
        panic!("the manifest does not validate:\n{errors}\n{yaml}");
    }
}

/// The YAML read by a YAML reader (PyYAML, which kubernetes-validate uses)
/// is the objects `--json` prints: the hand-written emitter loses nothing.
#[track_caller]
fn assert_yaml_is(yaml: &str, objects: &[Value]) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d is not None]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(yaml.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run python3");
    assert!(
        out.status.success(),
        "PyYAML refused the manifest: {}\n{yaml}",
        stderr(&out)
    );
    let read: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(read, objects, "the YAML and --json differ");
}

fn job<'a>(objects: &'a [Value], component: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == "Job" && o["metadata"]["labels"]["app.kubernetes.io/component"] == component)
        .unwrap_or_else(|| panic!("no {component} Job in {objects:#?}"))
}

#[test]
fn manifests_validate_against_the_kubernetes_job_schema() {
    for extra in [
        &[][..],
        &[
            "--coordinator",
            "--partitions",
            "16",
            "--storage-class",
            "nfs-client",
            "--journal-size",
            "5Gi",
            "--namespace",
            "migrations",
            "--name",
            "app-backfill",
            "--retries",
            "3",
            "--",
            "--max-docs-per-sec",
            "500",
        ][..],
        &[
            "--journal-claim",
            "shared-journals",
            "--uri-secret",
            "mongo",
            "--uri-secret-key",
            "uri",
        ][..],
    ] {
        let (yaml, objects) = manifest(&manifest_args(extra));
        assert_valid(&yaml);
        assert_yaml_is(&yaml, &objects);
    }
}

#[test]
fn worker_job_is_indexed_with_a_journal_per_index() {
    let (_, objects) = manifest(&manifest_args(&["--coordinator", "--", "--max-docs-per-sec", "500"]));
    let kinds: Vec<&str> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["PersistentVolumeClaim", "Job", "Job"]);
    assert_eq!(objects[0]["spec"]["accessModes"], serde_json::json!(["ReadWriteMany"]));

    let worker = &job(&objects, "worker")["spec"];
    assert_eq!(worker["completionMode"], "Indexed");
    assert_eq!(worker["completions"], 4);
    assert_eq!(worker["parallelism"], 4);
    assert_eq!(worker["backoffLimitPerIndex"], 6);
    assert_eq!(worker["podReplacementPolicy"], "Failed");
    let pod = &worker["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let container = &pod["containers"][0];
    assert_eq!(
        container["args"],
        serde_json::json!(["worker", PLUGIN, "--wait", "300", "--max-docs-per-sec", "500"])
    );
    let env = |name: &str| {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {container:#}"))
            .clone()
    };
    assert_eq!(
        env("JOB_COMPLETION_INDEX")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    );
    assert_eq!(env("GODWIT_DB")["value"], "app");
    assert_eq!(
        env("MONGODB_URI")["valueFrom"]["secretKeyRef"]["name"],
        "godwit-mongodb"
    );
    let mount = &container["volumeMounts"][0];
    assert_eq!(env("GODWIT_JOURNAL")["value"], mount["mountPath"]);
    assert_eq!(mount["subPathExpr"], "journal-$(JOB_COMPLETION_INDEX)");
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        objects[0]["metadata"]["name"]
    );

    let coordinator = &job(&objects, "coordinator")["spec"];
    assert_eq!(coordinator["completions"], 1);
    let container = &coordinator["template"]["spec"]["containers"][0];
    assert_eq!(
        container["args"],
        // 4 worker pods: 4 partitions each unless --partitions says otherwise.
        serde_json::json!(["run", PLUGIN, "--execute", "--workers", "1", "--partitions", "16"])
    );
    assert_eq!(container["volumeMounts"][0]["subPath"], "journal-coordinator");
}

#[test]
fn pod_failure_policy_fails_an_index_on_every_do_not_retry_code() {
    let expected: Vec<u8> = godwit::cli::exit::ALL
        .iter()
        .copied()
        .filter(|code| *code != 0 && !RETRYABLE.contains(code))
        .collect();
    // The generator's table and this test's list agree (a new exit code is
    // classified in both places, on purpose).
    assert_eq!(godwit::cli::fleet::do_not_retry(), expected);

    let (_, objects) = manifest(&manifest_args(&["--coordinator"]));
    for (component, action) in [("worker", "FailIndex"), ("coordinator", "FailJob")] {
        let rules = job(&objects, component)["spec"]["podFailurePolicy"]["rules"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(rules.len(), 2, "{rules:#?}");
        assert_eq!(rules[0]["action"], action);
        assert_eq!(rules[0]["onExitCodes"]["operator"], "In");
        assert_eq!(rules[0]["onExitCodes"]["containerName"], "godwit");
        let values: Vec<u8> = rules[0]["onExitCodes"]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(values, expected, "{component}: the do-not-retry exit codes");
        for code in RETRYABLE {
            assert!(!values.contains(code), "{code} is retryable");
        }
        assert_eq!(rules[1]["action"], "Ignore");
        assert_eq!(rules[1]["onPodConditions"][0]["type"], "DisruptionTarget");
    }
}

/// The validator is strict: a misspelled field or a wrong type fails it
/// (so the test above would catch a broken manifest).
#[test]
fn validator_rejects_a_broken_manifest() {
    let (yaml, _) = manifest(&manifest_args(&[]));
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("backoffLimitPerIndex:", "backoffLimitPerIndx:"),
        ("completions: 4", "completions: \"4\""),
        ("restartPolicy:", "restartPolicies:"),
    ] {
        assert!(yaml.contains(from), "{from} in\n{yaml}");
        let file = dir.path().join("broken.yaml");
        std::fs::write(&file, yaml.replacen(from, to, 1)).unwrap();
        assert!(validate(&file).is_err(), "{from} -> {to} validated");
    }
}

/// `deploy/godwit-fleet.yaml` is what README's command prints today, and valid.
#[test]
fn deploy_example_is_current_and_valid() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/godwit-fleet.yaml");
    let committed = std::fs::read_to_string(&path).expect("deploy/godwit-fleet.yaml");
    let args = manifest_args(&["--coordinator", "--partitions", "16"]);
    let (yaml, _) = manifest(&args);
    assert_eq!(
        committed,
        yaml,
        "deploy/godwit-fleet.yaml is stale: regenerate it with `target/debug/godwit {}`",
        args.join(" ")
    );
    assert_valid(&committed);
}

#[test]
fn bad_name_is_a_usage_error() {
    let out = godwit(
        &manifest_args(&["--name", "Not_A_Name"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--name"), "{}", stderr(&out));
}
