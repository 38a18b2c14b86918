//! The host's view of the WIT contract (`wit/`): generated bindings, the
//! contract version check, and validation of a plugin's manifest.

use bson::Document;
use std::fmt;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "godwit:migration/plugin",
    additional_derives: [serde::Serialize, serde::Deserialize],
    // `find` may trap: a lookup past the host's limits stops the plugin
    // instead of handing it a silently truncated answer.
    imports: { "godwit:migration/host.find": trappable },
});

/// The previous contract, `godwit:migration@0.1.0` (a frozen copy in
/// `host/wit-0.1/`): plugins built for it keep running. Its types convert
/// into the current ones below (a 0.1 manifest grants no schema operations,
/// a 0.1 `begin` returns no actions).
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "wit-0.1",
        world: "godwit:migration/plugin",
        imports: { "godwit:migration/host.find": trappable },
    });

    use godwit::migration::types as old;

    pub fn manifest(m: old::Manifest) -> super::Manifest {
        super::Manifest {
            name: m.name,
            version: m.version,
            requires: m.requires,
            description: m.description,
            passes: m
                .passes
                .into_iter()
                .map(|p| super::Pass {
                    name: p.name,
                    collection: p.collection,
                    filter: p.filter,
                    projection: p.projection,
                    batch_size: p.batch_size,
                    writes: p.writes,
                })
                .collect(),
            schema: Vec::new(),
            idempotent: true,
            // Contract 0.1 declares no reads: see `ValidManifest::reads`.
            reads: Vec::new(),
        }
    }

    pub fn action(a: old::Action) -> super::Action {
        match a {
            old::Action::Update(u) => super::Action::Update(super::Update {
                collection: u.collection,
                filter: u.filter,
                update: u.update,
                upsert: u.upsert,
                multi: u.multi,
            }),
            old::Action::Insert(i) => super::Action::Insert(super::Insert {
                collection: i.collection,
                document: i.document,
            }),
            old::Action::Delete(d) => super::Action::Delete(super::Delete {
                collection: d.collection,
                filter: d.filter,
                multi: d.multi,
            }),
            old::Action::Report(r) => super::Action::Report(super::Report {
                kind: r.kind,
                key: r.key,
                message: r.message,
            }),
        }
    }

    pub fn error(e: old::Error) -> super::PluginReportedError {
        super::PluginReportedError {
            message: e.message,
            document_id: e.document_id,
        }
    }

    pub fn context(c: &super::RunContext) -> old::RunContext {
        old::RunContext {
            run_id: c.run_id.clone(),
            mode: match c.mode {
                super::Mode::DryRun => old::Mode::DryRun,
                super::Mode::Execute => old::Mode::Execute,
            },
            started_at_ms: c.started_at_ms,
            database: c.database.clone(),
        }
    }

    pub fn level(l: old::Level) -> super::Level {
        match l {
            old::Level::Trace => super::Level::Trace,
            old::Level::Debug => super::Level::Debug,
            old::Level::Info => super::Level::Info,
            old::Level::Warn => super::Level::Warn,
            old::Level::Error => super::Level::Error,
        }
    }
}

pub use exports::godwit::migration::migration::Guest as MigrationExports;
pub use godwit::migration::types::{
    Action, CreateCollection, CreateIndex, Delete, DropCollection, DropIndex, Error as PluginReportedError, IndexSpec,
    Insert, Level, Manifest, Mode, ModifyValidator, Pass, RenameCollection, Report, RunContext, SchemaGrant,
    SchemaKind, SchemaOp, Update,
};

/// Package name of the contract, and the version this host implements.
pub const PACKAGE: &str = "godwit:migration";
pub const VERSION: semver::Version = semver::Version::new(0, 2, 0);
/// The earlier contract this host still runs.
pub const PREVIOUS: semver::Version = semver::Version::new(0, 1, 0);

/// Name of the interface every plugin exports, without its version.
const MIGRATION_INTERFACE: &str = "godwit:migration/migration";
/// The optional interface a plugin declares its traits through (world
/// `plugin-declaring`), looked up at the version its `migration` export names.
pub const TRAITS_INTERFACE: &str = "godwit:migration/traits";

/// What a component's exports say about the contract it was built against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractMatch {
    /// Exports `godwit:migration/migration@<version>` that this host can run.
    Supported(semver::Version),
    /// Exports the interface at a version this host does not implement.
    Unsupported(String),
    /// Does not export the interface at all.
    NotAPlugin,
}

/// Classifies a component by its export names. The host runs plugins of the
/// same major version (`0.x`: same minor version), as wasmtime's linker does.
pub fn match_contract<'a>(export_names: impl IntoIterator<Item = &'a str>) -> ContractMatch {
    for name in export_names {
        let Some(rest) = name.strip_prefix(MIGRATION_INTERFACE) else {
            continue;
        };
        let version = rest.strip_prefix('@').unwrap_or("");
        return match semver::Version::parse(version) {
            Ok(v) if compatible(&v) => ContractMatch::Supported(v),
            _ => ContractMatch::Unsupported(if version.is_empty() {
                "unversioned".into()
            } else {
                version.into()
            }),
        };
    }
    ContractMatch::NotAPlugin
}

fn compatible(v: &semver::Version) -> bool {
    [VERSION, PREVIOUS]
        .iter()
        .any(|known| v.major == known.major && (known.major != 0 || v.minor == known.minor))
}

/// Whether a plugin of contract `v` speaks the previous contract (0.1).
pub fn is_previous(v: &semver::Version) -> bool {
    v.major == PREVIOUS.major && v.minor == PREVIOUS.minor
}

/// A manifest decoded and checked: versions parse, every pass's collections
/// are valid names, its filter and projection pass the plugin policy
/// (structure and depth before decoding, the query allow-list).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ValidManifest {
    pub name: String,
    pub version: semver::Version,
    pub requires: Option<semver::VersionReq>,
    pub description: String,
    pub passes: Vec<ValidPass>,
    /// Schema operations the plugin may return (contract 0.2; none for 0.1).
    #[serde(serialize_with = "grants_json")]
    pub schema: Vec<godwit_policy::Grant>,
    /// False: the plugin's actions must not be applied twice (see
    /// `run::errors::NotIdempotent`).
    pub idempotent: bool,
    /// Collections the plugin's lookups may read besides its passes'
    /// (contract 0.2; a 0.1 manifest declares none, and its plugin may look
    /// up its passes' collections only, or any with
    /// `--allow-undeclared-reads`: see [`ValidManifest::read_rules`]).
    pub reads: Vec<String>,
}

/// Whether undeclared lookups of a contract 0.1 plugin are let through
/// (`--allow-undeclared-reads`); a 0.2 plugin's reads are always declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UndeclaredReads {
    #[default]
    Refuse,
    Allow,
}

impl ValidManifest {
    /// The collections the plugin's lookups may read, for a plugin built
    /// for contract `contract`.
    pub fn read_rules(&self, contract: &semver::Version, undeclared: UndeclaredReads) -> godwit_policy::Reads {
        let scope = match (is_previous(contract), undeclared) {
            (false, _) => godwit_policy::ReadScope::Declared,
            (true, UndeclaredReads::Refuse) => godwit_policy::ReadScope::Contract0_1,
            (true, UndeclaredReads::Allow) => godwit_policy::ReadScope::Undeclared,
        };
        godwit_policy::Reads {
            scope,
            passes: self.passes.iter().map(|p| p.collection.clone()).collect(),
            declared: self.reads.clone(),
        }
    }
}

fn grants_json<S: serde::Serializer>(grants: &[godwit_policy::Grant], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(grants.len()))?;
    for g in grants {
        seq.serialize_element(&serde_json::json!({"kind": g.kind.name(), "collection": g.collection}))?;
    }
    seq.end()
}

/// The policy crate's name for a contract schema kind.
pub fn policy_kind(kind: SchemaKind) -> godwit_policy::SchemaKind {
    match kind {
        SchemaKind::CreateIndex => godwit_policy::SchemaKind::CreateIndex,
        SchemaKind::DropIndex => godwit_policy::SchemaKind::DropIndex,
        SchemaKind::CreateCollection => godwit_policy::SchemaKind::CreateCollection,
        SchemaKind::ModifyValidator => godwit_policy::SchemaKind::ModifyValidator,
        SchemaKind::RenameCollection => godwit_policy::SchemaKind::RenameCollection,
        SchemaKind::DropCollection => godwit_policy::SchemaKind::DropCollection,
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ValidPass {
    pub name: String,
    pub collection: String,
    pub filter: Document,
    pub projection: Option<Document>,
    pub batch_size: u32,
    pub writes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError(pub String);

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn validate_manifest(raw: Manifest) -> Result<ValidManifest, ManifestError> {
    let err = |message: String| ManifestError(message);
    if raw.name.trim().is_empty() {
        return Err(err("manifest has an empty name".into()));
    }
    let version = semver::Version::parse(&raw.version)
        .map_err(|e| err(format!("version {:?} is not a semantic version: {e}", raw.version)))?;
    let requires = raw
        .requires
        .as_deref()
        .map(|r| {
            semver::VersionReq::parse(r).map_err(|e| err(format!("requires {r:?} is not a version requirement: {e}")))
        })
        .transpose()?;
    let mut schema = Vec::with_capacity(raw.schema.len());
    for grant in raw.schema {
        godwit_policy::check_collection(&godwit_policy::Context::LOAD, &grant.collection).map_err(|v| {
            err(format!(
                "plugin {:?}, schema grant {} {:?}: {v}",
                raw.name,
                policy_kind(grant.kind).name(),
                grant.collection
            ))
        })?;
        schema.push(godwit_policy::Grant {
            kind: policy_kind(grant.kind),
            collection: grant.collection,
        });
    }
    godwit_policy::check_reads(&godwit_policy::Context::LOAD, &raw.reads)
        .map_err(|v| err(format!("plugin {:?}: {v}", raw.name)))?;
    let mut passes = Vec::with_capacity(raw.passes.len());
    for (index, pass) in raw.passes.into_iter().enumerate() {
        let label = format!("pass {index} ({:?})", pass.name);
        // Structure and nesting are checked before anything decodes the
        // filter: a deeply nested one overflowed the stack of `plugin
        // inspect`, `plan` and `status --plugins`.
        let (filter, projection) = godwit_policy::check_pass(
            &godwit_policy::Context::LOAD,
            &pass.collection,
            &pass.filter,
            pass.projection.as_deref(),
            &pass.writes,
        )
        .map_err(|v| err(format!("plugin {:?}, {label}: {v}", raw.name)))?;
        passes.push(ValidPass {
            name: pass.name,
            collection: pass.collection,
            filter,
            projection,
            batch_size: pass.batch_size,
            writes: pass.writes,
        });
    }
    Ok(ValidManifest {
        name: raw.name,
        version,
        requires,
        description: raw.description,
        passes,
        schema,
        idempotent: raw.idempotent,
        reads: raw.reads,
    })
}

/// Checks a loaded manifest again with a run's policy context (its
/// metadata collection, its database): a plugin is loaded before the run
/// knows which collection holds godwit's schema version, history and lock.
pub fn check_for_run(manifest: &ValidManifest, cx: &godwit_policy::Context) -> Result<(), ManifestError> {
    for (index, pass) in manifest.passes.iter().enumerate() {
        godwit_policy::check_pass_collections(cx, &pass.collection, &pass.writes)
            .map_err(|v| ManifestError(format!("pass {index} ({:?}): {v}", pass.name)))?;
    }
    godwit_policy::check_reads(cx, &manifest.reads).map_err(|v| ManifestError(v.to_string()))?;
    for grant in &manifest.schema {
        godwit_policy::check_collection(cx, &grant.collection).map_err(|v| {
            ManifestError(format!(
                "schema grant {} {:?}: {v}",
                grant.kind.name(),
                grant.collection
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_versions() {
        let check = |names: &[&str], expect: ContractMatch| assert_eq!(match_contract(names.iter().copied()), expect);
        check(&["godwit:migration/migration@0.2.0"], ContractMatch::Supported(VERSION));
        check(
            &["godwit:migration/migration@0.1.0"],
            ContractMatch::Supported(PREVIOUS),
        );
        check(
            &["godwit:migration/migration@0.1.3"],
            ContractMatch::Supported(semver::Version::new(0, 1, 3)),
        );
        check(
            &["godwit:migration/migration@0.3.0"],
            ContractMatch::Unsupported("0.3.0".into()),
        );
        check(
            &["godwit:migration/migration"],
            ContractMatch::Unsupported("unversioned".into()),
        );
        check(&["wasi:cli/run@0.2.0"], ContractMatch::NotAPlugin);
    }

    fn manifest(version: &str, requires: Option<&str>) -> Manifest {
        Manifest {
            name: "m".into(),
            version: version.into(),
            requires: requires.map(Into::into),
            description: String::new(),
            passes: vec![Pass {
                name: "p".into(),
                collection: "c".into(),
                filter: bson::doc! {}.to_vec().unwrap(),
                projection: None,
                batch_size: 0,
                writes: vec!["c".into()],
            }],
            schema: vec![],
            idempotent: true,
            reads: vec!["teams".into()],
        }
    }

    #[test]
    fn manifest_validation() {
        assert!(validate_manifest(manifest("1.2.3", Some("^1.2"))).is_ok());
        let e = validate_manifest(manifest("1.2", None)).unwrap_err();
        assert!(e.0.contains("\"1.2\" is not a semantic version"), "{e}");
        let e = validate_manifest(manifest("1.2.3", Some("not a req"))).unwrap_err();
        assert!(e.0.contains("requires \"not a req\""), "{e}");
        let mut m = manifest("1.0.0", None);
        m.passes[0].filter = vec![1, 2, 3];
        assert!(
            validate_manifest(m)
                .unwrap_err()
                .0
                .contains("pass 0 (\"p\"): filter is not well-formed BSON")
        );
        let check = |change: &dyn Fn(&mut Pass), expect: &str| {
            let mut m = manifest("1.0.0", None);
            change(&mut m.passes[0]);
            let e = validate_manifest(m).unwrap_err();
            assert!(e.0.contains(expect), "{e}");
        };
        check(
            &|p| p.collection = String::new(),
            "pass 0 (\"p\"): collection: collection \"\" is empty",
        );
        check(
            &|p| p.writes = vec!["system.js".into()],
            "writes: collection \"system.js\" is a system collection",
        );
        check(
            &|p| p.filter = bson::doc! {"$where": "1"}.to_vec().unwrap(),
            "filter: `$where` runs JavaScript",
        );
        // ~48 KB of nesting: refused in one message, not a stack overflow.
        check(
            &|p| {
                let mut deep = vec![5, 0, 0, 0, 0];
                for _ in 0..6_000 {
                    let mut next = ((deep.len() + 8) as i32).to_le_bytes().to_vec();
                    next.extend([3, b'a', 0]);
                    next.extend(&deep);
                    next.push(0);
                    deep = next;
                }
                p.filter = deep;
            },
            "filter nests deeper than 100 levels",
        );
        let mut m = validate_manifest(manifest("1.0.0", None)).unwrap();
        m.passes[0].writes = vec!["meta".into()];
        let run = godwit_policy::Context {
            metadata_collection: Some("meta"),
            database: Some("app"),
            version_record: None,
        };
        let e = check_for_run(&m, &run).unwrap_err();
        assert!(
            e.0.starts_with("pass 0 (\"p\"): writes: collection `meta` is godwit's metadata collection"),
            "{e}"
        );
        assert!(check_for_run(&m, &godwit_policy::Context::LOAD).is_ok());
        let mut m = validate_manifest(manifest("1.0.0", None)).unwrap();
        m.reads.push("meta".into());
        let e = check_for_run(&m, &run).unwrap_err();
        assert!(
            e.0.starts_with("reads: collection `meta` is godwit's metadata collection"),
            "{e}"
        );
    }

    #[test]
    fn declared_reads_are_checked_at_load() {
        for (name, expect) in [
            (
                "godwit_metadata",
                "plugin \"m\": reads: collection `godwit_metadata` is godwit's metadata collection",
            ),
            (
                "system.users",
                "plugin \"m\": reads: collection \"system.users\" is a system collection",
            ),
            ("", "reads: collection \"\" is empty"),
        ] {
            let mut m = manifest("1.0.0", None);
            m.reads.push(name.into());
            let e = validate_manifest(m).unwrap_err();
            assert!(e.0.contains(expect), "{e}");
        }
        let m = validate_manifest(manifest("1.0.0", None)).unwrap();
        let current = m.read_rules(&VERSION, UndeclaredReads::Allow);
        assert_eq!(current.scope, godwit_policy::ReadScope::Declared);
        assert_eq!(
            (current.passes, current.declared),
            (vec!["c".to_string()], vec!["teams".to_string()])
        );
        let old = |u| m.read_rules(&PREVIOUS, u).scope;
        assert_eq!(old(UndeclaredReads::Refuse), godwit_policy::ReadScope::Contract0_1);
        assert_eq!(old(UndeclaredReads::Allow), godwit_policy::ReadScope::Undeclared);
    }
}
