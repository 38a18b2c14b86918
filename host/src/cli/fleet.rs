//! `godwit fleet manifest PLUGIN`: the Kubernetes objects that run a fleet
//! run's workers (README, "Running on Kubernetes"): an Indexed Job of
//! `godwit worker` pods, each with its journal on its own subdirectory of a
//! ReadWriteMany claim, a `podFailurePolicy` that fails an index at once on
//! the exit codes a retry cannot change ([`RETRY`]), and optionally the
//! coordinator (`godwit run --execute --workers`) as a one-pod Job. It only
//! prints: nothing is read from the plugin path (a path inside the image) or
//! sent anywhere.

use super::exit;
use super::{GlobalArgs, UsageError};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum FleetCommand {
    /// Print the Kubernetes objects (YAML; a `v1` List with --json) that run
    /// N `godwit worker` pods of PLUGIN's fleet run: an Indexed Job
    /// (`backoffLimitPerIndex`, a `podFailurePolicy` that fails an index on
    /// godwit's do-not-retry exit codes and ignores disruptions), the
    /// ReadWriteMany claim holding each index's journal, and with
    /// --coordinator the one-pod Job of the run itself.
    Manifest(Box<ManifestCommand>),
}

impl FleetCommand {
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        match self {
            FleetCommand::Manifest(command) => command.run(global),
        }
    }
}

#[derive(Args)]
pub struct ManifestCommand {
    /// Path of the plugin component inside the container (built into the
    /// image, or under a mounted volume); the same file the fleet run runs.
    plugin: String,
    /// Worker pods: the Job's completions and parallelism (one index each).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    workers: u32,
    /// Container image with `godwit` on its PATH (and the plugin).
    #[arg(long)]
    image: String,
    /// Database to migrate (set as GODWIT_DB in the pods).
    #[arg(long)]
    db: String,
    /// Name of the Job (and prefix of the other objects) [default: godwit-<plugin file stem>].
    #[arg(long)]
    name: Option<String>,
    /// Namespace of the objects (default: kubectl's current one).
    #[arg(long)]
    namespace: Option<String>,
    /// Secret holding the MongoDB connection string (set as MONGODB_URI in the pods).
    #[arg(long, value_name = "SECRET", default_value = "godwit-mongodb")]
    uri_secret: String,
    /// Key of the connection string in --uri-secret.
    #[arg(long, value_name = "KEY", default_value = "MONGODB_URI")]
    uri_secret_key: String,
    /// An existing ReadWriteMany claim for the journals (no claim is printed).
    #[arg(long, value_name = "CLAIM", conflicts_with_all = ["storage_class", "journal_size"])]
    journal_claim: Option<String>,
    /// Storage class of the printed journal claim (it must offer ReadWriteMany).
    #[arg(long, value_name = "CLASS")]
    storage_class: Option<String>,
    /// Size of the printed journal claim (all journals together) [default: 1Gi].
    #[arg(long, value_name = "QUANTITY")]
    journal_size: Option<String>,
    /// Failed pods of one index retried before that index fails (`backoffLimitPerIndex`).
    #[arg(long, value_name = "N", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=100))]
    retries: u32,
    /// Seconds each worker waits for the fleet run to join (`godwit worker --wait`).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    wait: u64,
    /// Also print the coordinator: a one-pod Job running `godwit run PLUGIN
    /// --execute --workers 1`, its journal on the same claim.
    #[arg(long)]
    coordinator: bool,
    /// With --coordinator: partitions per pass (`run --partitions`) [default: 4 per worker pod].
    #[arg(long, value_name = "N", requires = "coordinator", value_parser = clap::value_parser!(u32).range(1..=10000))]
    partitions: Option<u32>,
    /// More arguments of each worker (`godwit worker`), after `--`: e.g.
    /// `-- --max-docs-per-sec 500 --run RUN`.
    #[arg(last = true, value_name = "WORKER ARGS")]
    worker_args: Vec<String>,
}

/// Whether a Kubernetes Job should start another pod after godwit exited
/// with a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Not a failure.
    Success,
    /// Another pod may succeed (the database came back, the run holds its
    /// lock again, a stop was requested): the Job retries, up to
    /// `backoffLimitPerIndex`.
    Retry,
    /// Another pod with the same command, plugin, journal and database
    /// fails the same way: a person must act. The index fails at once.
    DoNotRetry,
}

/// Every exit code ([`exit::ALL`], a test keeps them equal) with what a
/// retry does, and why. README's "Running on Kubernetes" table says the same.
pub const RETRY: &[(u8, Retry, &str)] = &[
    (exit::OK, Retry::Success, "done"),
    (
        exit::ERROR,
        Retry::Retry,
        "unclassified: may be passing (a full disk, a killed helper); the backoff limit bounds it",
    ),
    (
        exit::USAGE,
        Retry::DoNotRetry,
        "the command line, environment or config file is wrong: the same pod spec fails again",
    ),
    (
        exit::PLUGIN_REFUSED,
        Retry::DoNotRetry,
        "the plugin file is what it is: the same image refuses it again",
    ),
    (
        exit::PLUGIN_FAILED,
        Retry::DoNotRetry,
        "plugins are deterministic: the same batch traps or errs again (raise a limit, fix the plugin)",
    ),
    (
        exit::LOCK_HELD,
        Retry::Retry,
        "another holder, or this worker's claim ran out: the next pod claims again",
    ),
    (
        exit::RESUME_REFUSED,
        Retry::DoNotRetry,
        "the journal's unfinished run differs from the command: a person chooses (--new-run, the right plugin)",
    ),
    (
        exit::JOURNAL,
        Retry::DoNotRetry,
        "the journal is corrupt (a replaced pod starts only after the old one ended, so not a lock held by it)",
    ),
    (
        exit::DATABASE,
        Retry::Retry,
        "the database was unreachable or a write failed: it may be back",
    ),
    (
        exit::VERSION,
        Retry::DoNotRetry,
        "the database's version does not fit the plugin, or was changed outside godwit",
    ),
    (
        exit::RESIDUE,
        Retry::DoNotRetry,
        "verification found work left: a person decides (--new-run, --allow-residue)",
    ),
    (
        exit::CHAIN,
        Retry::DoNotRetry,
        "the plugin directory is inconsistent: the same image has the same directory",
    ),
    (
        exit::REPLAY_DIVERGED,
        Retry::DoNotRetry,
        "the plugin is not deterministic: a retry replays it again",
    ),
    (
        exit::UNKNOWN_DATABASE,
        Retry::DoNotRetry,
        "--db names no database (a typo, most likely)",
    ),
    (
        exit::REVERT_REFUSED,
        Retry::DoNotRetry,
        "revert refused for a reason of the run's: no retry changes it",
    ),
    (
        exit::REVERT_INCOMPLETE,
        Retry::DoNotRetry,
        "documents changed since the run: a person decides (--force)",
    ),
    (
        exit::NOTHING_TO_MIGRATE,
        Retry::DoNotRetry,
        "none of the passes' collections exists: the wrong database, most likely",
    ),
    (
        exit::DRIFT,
        Retry::DoNotRetry,
        "a plugin file differs from the one that ran: a person decides (--allow-drift)",
    ),
    (
        exit::SCHEMA_BLOCKED,
        Retry::DoNotRetry,
        "the data blocks a schema operation (duplicates under a unique index): fix the data first",
    ),
    (
        exit::SOME_DATABASES_FAILED,
        Retry::DoNotRetry,
        "the summary names each database's own code: a person reads it (a blind retry repeats the lasting ones)",
    ),
    (
        exit::FLEET_UNAVAILABLE,
        Retry::Retry,
        "the fleet run has not started yet, or its process is restarting",
    ),
    (
        exit::INTERRUPTED,
        Retry::Retry,
        "stopped at a batch boundary (SIGTERM): resumable, the next pod goes on",
    ),
];

/// The exit codes on which the Job fails an index at once, ascending (the
/// order the API server requires of `onExitCodes.values`).
pub fn do_not_retry() -> Vec<u8> {
    let mut codes: Vec<u8> = RETRY
        .iter()
        .filter(|(_, retry, _)| *retry == Retry::DoNotRetry)
        .map(|(code, _, _)| *code)
        .collect();
    codes.sort_unstable();
    codes
}

/// The names every object of one manifest shares.
struct Names {
    /// `--name`: the worker Job's, and the `app.kubernetes.io/instance` label.
    instance: String,
    /// The journals' ReadWriteMany claim.
    claim: String,
}

/// What a Job runs.
#[derive(Clone, Copy)]
enum Pods {
    /// One pod: `godwit run --execute --workers 1`, the fleet run itself.
    Coordinator,
    /// An Indexed Job of this many `godwit worker` pods.
    Workers(u32),
}

/// Where each pod's journal is mounted.
const JOURNAL_MOUNT: &str = "/var/lib/godwit";

impl ManifestCommand {
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let objects = self.objects()?;
        if global.json {
            super::print_json(&json!({"apiVersion": "v1", "kind": "List", "items": objects}))?;
        } else {
            let mut out = String::new();
            out.push_str(&format!(
                "# godwit fleet manifest: {} worker pod(s) of the fleet run of {} on database {}.\n",
                self.workers,
                // Quoted: a newline in a value must not end the comment.
                Value::String(self.plugin.clone()),
                Value::String(self.db.clone()),
            ));
            out.push_str(
                "# Apply with `kubectl apply -f`; README.md, \"Running on Kubernetes\", says what each part does.\n",
            );
            for object in &objects {
                out.push_str("---\n");
                yaml(object, 0, &mut out);
            }
            print!("{out}");
        }
        Ok(ExitCode::SUCCESS)
    }

    fn name(&self) -> anyhow::Result<String> {
        let name = match &self.name {
            Some(name) => name.clone(),
            None => {
                let stem = std::path::Path::new(&self.plugin)
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_lowercase())
                    .unwrap_or_default();
                let stem: String = stem
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect();
                format!("godwit-{}", stem.trim_matches('-'))
            }
        };
        // A DNS label, short enough that `<name>-coordinator` and the pods'
        // `<name>-<index>-<suffix>` names stay valid.
        let valid = !name.is_empty()
            && name.len() <= 40
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !valid {
            return Err(UsageError(format!(
                "--name {name:?}: a Kubernetes name of at most 40 lowercase letters, digits and '-', not starting or ending with '-'"
            ))
            .into());
        }
        Ok(name)
    }

    /// The objects, in the order `kubectl apply` should create them.
    fn objects(&self) -> anyhow::Result<Vec<Value>> {
        let name = self.name()?;
        let claim = self.journal_claim.clone().unwrap_or_else(|| format!("{name}-journals"));
        let names = Names {
            instance: name.clone(),
            claim: claim.clone(),
        };
        let mut objects = Vec::new();
        if self.journal_claim.is_none() {
            let mut spec = json!({
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": self.journal_size.as_deref().unwrap_or("1Gi")}},
            });
            if let Some(class) = &self.storage_class {
                spec["storageClassName"] = json!(class);
            }
            objects.push(json!({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": self.metadata(&claim, &name, "journals"),
                "spec": spec,
            }));
        }
        if self.coordinator {
            let mut args = vec![
                "run".to_owned(),
                self.plugin.clone(),
                "--execute".into(),
                "--workers".into(),
                "1".into(),
            ];
            // Always given: the run's own default counts its own workers (1).
            let partitions = self.partitions.unwrap_or(self.workers * 4);
            args.extend(["--partitions".into(), partitions.to_string()]);
            objects.push(self.job(&names, Pods::Coordinator, args));
        }
        let mut args = vec![
            "worker".to_owned(),
            self.plugin.clone(),
            "--wait".into(),
            self.wait.to_string(),
        ];
        args.extend(self.worker_args.iter().cloned());
        objects.push(self.job(&names, Pods::Workers(self.workers), args));
        Ok(objects)
    }

    fn metadata(&self, name: &str, instance: &str, component: &str) -> Value {
        let mut metadata = json!({
            "name": name,
            "labels": {
                "app.kubernetes.io/name": "godwit",
                "app.kubernetes.io/instance": instance,
                "app.kubernetes.io/component": component,
            },
        });
        if let Some(namespace) = &self.namespace {
            metadata["namespace"] = json!(namespace);
        }
        metadata
    }

    /// A Job of godwit pods running `godwit ARGS`, each with its journal in
    /// its own directory of the claim.
    fn job(&self, names: &Names, pods: Pods, args: Vec<String>) -> Value {
        let (job, component, journal_dir, workers) = match pods {
            Pods::Coordinator => (
                format!("{}-coordinator", names.instance),
                "coordinator",
                "journal-coordinator",
                None,
            ),
            Pods::Workers(n) => (
                names.instance.clone(),
                "worker",
                "journal-$(JOB_COMPLETION_INDEX)",
                Some(n),
            ),
        };
        let (job, instance, claim) = (job.as_str(), names.instance.as_str(), names.claim.as_str());
        let mut env = vec![
            json!({"name": "MONGODB_URI", "valueFrom": {"secretKeyRef": {"name": self.uri_secret, "key": self.uri_secret_key}}}),
            json!({"name": "GODWIT_DB", "value": self.db}),
            json!({"name": "GODWIT_JOURNAL", "value": JOURNAL_MOUNT}),
        ];
        let mut mount = json!({"name": "journal", "mountPath": JOURNAL_MOUNT, "subPath": journal_dir});
        if workers.is_some() {
            // The index, from the pod's annotation (Kubernetes also sets
            // JOB_COMPLETION_INDEX itself; this keeps the manifest explicit
            // about where it comes from).
            env.insert(
                0,
                json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                    "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}),
            );
            mount = json!({"name": "journal", "mountPath": JOURNAL_MOUNT, "subPathExpr": journal_dir});
        }
        let container = json!({
            "name": "godwit",
            "image": self.image,
            "command": ["godwit"],
            "args": args,
            "env": env,
            "volumeMounts": [mount],
        });
        let pod = json!({
            "metadata": {"labels": self.metadata(job, instance, component)["labels"].clone()},
            "spec": {
                // Required by podFailurePolicy: a failed container fails its
                // pod, which the Job's policy then judges.
                "restartPolicy": "Never",
                // godwit stops at the next batch boundary on SIGTERM (exit
                // 130); a batch of a slow plugin may take a while.
                "terminationGracePeriodSeconds": 120,
                "containers": [container],
                "volumes": [{"name": "journal", "persistentVolumeClaim": {"claimName": claim}}],
            },
        });
        let policy = json!({"rules": [
            {
                "action": if workers.is_some() { "FailIndex" } else { "FailJob" },
                "onExitCodes": {"containerName": "godwit", "operator": "In", "values": do_not_retry()},
            },
            {
                // Evicted, preempted, drained: not godwit's failure, and not
                // counted against the retries.
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]});
        let mut spec = json!({
            "podFailurePolicy": policy,
            "template": pod,
        });
        match workers {
            Some(workers) => {
                spec["completionMode"] = json!("Indexed");
                spec["completions"] = json!(workers);
                spec["parallelism"] = json!(workers);
                spec["backoffLimitPerIndex"] = json!(self.retries);
            }
            None => {
                spec["completions"] = json!(1);
                spec["parallelism"] = json!(1);
                spec["backoffLimit"] = json!(self.retries);
            }
        }
        // A replacement pod only once the old one has terminated: two pods of
        // one index never hold its journal at once.
        spec["podReplacementPolicy"] = json!("Failed");
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": self.metadata(job, instance, component),
            "spec": spec,
        })
    }
}

/// Appends `value` as block YAML at `indent` spaces. Every string is a
/// double-quoted scalar in JSON's escaping (valid YAML, and never read as a
/// number, a boolean or null), keys are plain only when they cannot be read
/// as anything but a string.
fn yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                out.push_str(&pad);
                out.push_str(&yaml_key(key));
                out.push(':');
                yaml_after_key(item, indent, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                match item {
                    // A mapping in a sequence: its first key on the dash's line.
                    Value::Object(map) if !map.is_empty() => {
                        let mut nested = String::new();
                        yaml(item, indent + 2, &mut nested);
                        out.push(' ');
                        out.push_str(&nested[indent + 2..]);
                    }
                    _ => yaml_after_key(item, indent, out),
                }
            }
        }
        scalar => {
            out.push_str(&pad);
            out.push_str(&scalar.to_string());
            out.push('\n');
        }
    }
}

fn yaml_after_key(item: &Value, indent: usize, out: &mut String) {
    match item {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            yaml(item, indent + 2, out);
        }
        // A list of mappings or lists in block style; of scalars, on one line.
        Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            out.push('\n');
            yaml(item, indent + 2, out);
        }
        // Lists of scalars, and `[]`, in flow style.
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(Value::to_string).collect();
            out.push_str(&format!(" [{}]\n", items.join(", ")));
        }
        // Scalars and `{}` as JSON.
        scalar => {
            out.push(' ');
            out.push_str(&scalar.to_string());
            out.push('\n');
        }
    }
}

fn yaml_key(key: &str) -> String {
    // YAML 1.1 readers (PyYAML) take these as booleans or null.
    const WORDS: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let plain = key.starts_with(|c: char| c.is_ascii_alphabetic())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '-' | '_'))
        && !WORDS.contains(&key.to_ascii_lowercase().as_str());
    if plain {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_code_has_one_retry_row() {
        let mut listed: Vec<u8> = RETRY.iter().map(|(code, _, _)| *code).collect();
        listed.sort_unstable();
        let mut all = exit::ALL.to_vec();
        all.sort_unstable();
        assert_eq!(
            listed, all,
            "fleet::RETRY must classify every code of exit::ALL exactly once"
        );
    }

    #[test]
    fn do_not_retry_is_valid_for_on_exit_codes() {
        // The API server: ascending, no duplicates, no 0, at most 255 values.
        let codes = do_not_retry();
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "{codes:?}");
        assert!(!codes.contains(&0) && !codes.is_empty() && codes.len() <= 255);
        for retryable in [
            exit::DATABASE,
            exit::LOCK_HELD,
            exit::FLEET_UNAVAILABLE,
            exit::INTERRUPTED,
        ] {
            assert!(!codes.contains(&retryable), "{retryable} is retryable");
        }
    }

    #[track_caller]
    fn check(value: Value, expect: &str) {
        let mut out = String::new();
        yaml(&value, 0, &mut out);
        assert_eq!(out, expect);
    }

    #[test]
    fn yaml_of_values() {
        check(json!({"a": 1, "b": "x"}), "a: 1\nb: \"x\"\n");
        check(
            json!({"on": "true", "app.k/n": "1"}),
            "app.k/n: \"1\"\n\"on\": \"true\"\n",
        );
        check(
            json!({"l": [1, "2"], "e": [], "o": {}}),
            "e: []\nl: [1, \"2\"]\no: {}\n",
        );
        check(
            json!({"items": [{"a": {"b": "c"}, "d": ["e"]}]}),
            "items:\n  - a:\n      b: \"c\"\n    d: [\"e\"]\n",
        );
        check(json!({"s": "$(X) \"q\"\n"}), "s: \"$(X) \\\"q\\\"\\n\"\n");
    }
}
