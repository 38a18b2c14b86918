//! Which collections a plugin's `find` lookups may read: its passes' own
//! collections (the passes read them already) and those its manifest
//! declares in `reads` (contract 0.2). A plugin of contract 0.1 declares
//! none, so it may look up its passes' collections only, unless the
//! operator restores the rule from before reads were declared
//! (`--allow-undeclared-reads`: any collection). godwit's metadata
//! collection and `system.*` stay out of reach whatever is declared or
//! allowed.

use crate::{Context, Rule, Violation, check_collection};

/// Where the collections a plugin may look up come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadScope {
    /// Contract 0.2: the passes' collections and the manifest's `reads`.
    Declared,
    /// Contract 0.1 (no `reads` in its manifest): the passes' collections.
    Contract0_1,
    /// Contract 0.1 with the operator's `--allow-undeclared-reads`: any
    /// collection the name rules let through, as before reads were declared.
    Undeclared,
}

/// The collections one plugin's lookups may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reads {
    pub scope: ReadScope,
    /// The collections the manifest's passes read.
    pub passes: Vec<String>,
    /// The manifest's `reads` (none for contract 0.1).
    pub declared: Vec<String>,
}

impl Reads {
    /// Checks one lookup's collection: the name rules first (godwit's own
    /// state is refused as such, declared or not), then the declaration.
    pub fn check(&self, cx: &Context, collection: &str) -> Result<(), Violation> {
        check_collection(cx, collection)?;
        self.check_declared(collection)
    }

    /// Whether `collection` is a pass's or declared (or undeclared reads
    /// are allowed); the name rules are not checked here.
    pub fn check_declared(&self, collection: &str) -> Result<(), Violation> {
        let listed = |names: &[String]| names.iter().any(|n| n == collection);
        if self.scope == ReadScope::Undeclared || listed(&self.passes) || listed(&self.declared) {
            return Ok(());
        }
        let passes = self.passes.join(", ");
        let detail = match self.scope {
            ReadScope::Declared => format!(
                "collection `{collection}` is neither read by a pass [{passes}] nor in the manifest's reads [{}]",
                self.declared.join(", ")
            ),
            ReadScope::Contract0_1 | ReadScope::Undeclared => format!(
                "collection `{collection}` is not read by a pass [{passes}], and the plugin was built for contract \
                 0.1, which does not declare reads: rebuild it for contract 0.2 with the collection in its \
                 manifest's `reads`, or run it with --allow-undeclared-reads, which lets a contract 0.1 plugin \
                 look up any collection but godwit's metadata collection and system.*"
            ),
        };
        Err(Violation::new(Rule::UndeclaredRead, detail))
    }
}

/// Checks the collections a manifest declares in `reads` against `cx`, as
/// a pass's `writes` are checked: at load, and again when a run starts.
pub fn check_reads(cx: &Context, reads: &[String]) -> Result<(), Violation> {
    for name in reads {
        check_collection(cx, name).map_err(|v| v.within("reads"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CX: Context<'static> = Context {
        metadata_collection: Some("meta"),
        database: Some("app"),
        version_record: None,
    };

    fn reads(scope: ReadScope, declared: &[&str]) -> Reads {
        Reads {
            scope,
            passes: vec!["users".into(), "orders".into()],
            declared: declared.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[track_caller]
    fn check(reads: &Reads, collection: &str, expect: Result<(), (Rule, &str)>) {
        match (reads.check(&CX, collection), expect) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err((rule, text))) => {
                assert_eq!(e.rule, rule, "{e}");
                assert!(e.to_string().contains(text), "{e}");
            }
            (got, want) => panic!("{collection:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn lookups_read_pass_and_declared_collections_only() {
        let declared = reads(ReadScope::Declared, &["teams"]);
        check(&declared, "users", Ok(()));
        check(&declared, "orders", Ok(()));
        check(&declared, "teams", Ok(()));
        check(
            &declared,
            "secrets",
            Err((
                Rule::UndeclaredRead,
                "collection `secrets` is neither read by a pass [users, orders] nor in the manifest's reads [teams] \
                 (rule undeclared-read: declare the collection in the manifest's `reads`)",
            )),
        );
        // godwit's own state: refused by the name rules, never "declare it".
        check(
            &declared,
            "meta",
            Err((Rule::Collection, "godwit's metadata collection")),
        );
        check(&declared, "system.users", Err((Rule::Collection, "system.*")));
        let mut greedy = reads(ReadScope::Declared, &["meta", "system.users"]);
        check(&greedy, "meta", Err((Rule::Collection, "godwit's metadata collection")));
        greedy.scope = ReadScope::Undeclared;
        check(&greedy, "system.users", Err((Rule::Collection, "system.*")));
    }

    #[test]
    fn contract_0_1_reads_its_passes_unless_the_operator_allows_more() {
        let old = reads(ReadScope::Contract0_1, &[]);
        check(&old, "users", Ok(()));
        check(
            &old,
            "secrets",
            Err((
                Rule::UndeclaredRead,
                "the plugin was built for contract 0.1, which does not declare reads",
            )),
        );
        check(&old, "secrets", Err((Rule::UndeclaredRead, "--allow-undeclared-reads")));
        let allowed = reads(ReadScope::Undeclared, &[]);
        check(&allowed, "secrets", Ok(()));
        check(
            &allowed,
            "meta",
            Err((Rule::Collection, "godwit's metadata collection")),
        );
    }

    #[test]
    fn declared_reads_are_valid_names() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_reads(&CX, &names(&["teams", "users.archive"])).is_ok());
        for (name, text) in [
            ("meta", "reads: collection `meta` is godwit's metadata collection"),
            (
                "system.users",
                "reads: collection \"system.users\" is a system collection",
            ),
            ("", "reads: collection \"\" is empty"),
            ("a$b", "contains `$`"),
        ] {
            let e = check_reads(&CX, &names(&["teams", name])).unwrap_err();
            assert_eq!(e.rule, Rule::Collection);
            assert!(e.to_string().contains(text), "{e}");
        }
        // At load the default metadata collection name is refused already.
        let e = check_reads(&Context::LOAD, &names(&["godwit_metadata"])).unwrap_err();
        assert!(e.to_string().contains("godwit's metadata collection"), "{e}");
    }
}
