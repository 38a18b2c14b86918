//! Collection names a plugin may read, write or look up: checked by the host
//! before anything is sent, so that a server without transactions never
//! keeps the first writes of a batch whose later write names a bad
//! collection, and godwit's own state stays out of reach.

use crate::{Context, MAX_NAMESPACE_BYTES, Rule, Violation};

/// Refuses empty names, NUL, `$`, a leading `.`, `system.*`, names whose
/// namespace (`database.collection`) exceeds MongoDB's 255 bytes, and
/// godwit's metadata collection (`cx.metadata_collection`).
pub fn check_collection(cx: &Context, name: &str) -> Result<(), Violation> {
    let bad = |why: String| Err(Violation::new(Rule::Collection, format!("collection {name:?} {why}")));
    if name.is_empty() {
        return bad("is empty".into());
    }
    if name.contains('\0') {
        return bad("contains a NUL byte".into());
    }
    if name.contains('$') {
        return bad("contains `$`".into());
    }
    if name.starts_with('.') {
        return bad("starts with `.`".into());
    }
    if name.starts_with("system.") {
        return bad("is a system collection (system.*)".into());
    }
    // Without a database name (at load), assume the shortest: one byte.
    let database = cx.database.map_or(1, str::len);
    if database + 1 + name.len() > MAX_NAMESPACE_BYTES {
        return bad(format!(
            "is {} bytes: with the database's name it exceeds MongoDB's namespace limit of {MAX_NAMESPACE_BYTES} bytes",
            name.len()
        ));
    }
    if cx.metadata_collection == Some(name) {
        return Err(Violation::new(
            Rule::Collection,
            format!("collection `{name}` is godwit's metadata collection (schema version, history and lock)"),
        ));
    }
    if cx.version_record == Some(name) {
        return Err(Violation::new(
            Rule::Collection,
            format!("collection `{name}` holds the application's version record this run stamps (--version-record)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(cx: &Context, name: &str, expect: Result<(), &str>) {
        match (check_collection(cx, name), expect) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(text)) => {
                assert_eq!(e.rule, Rule::Collection);
                assert!(e.to_string().contains(text), "{e}");
            }
            (got, want) => panic!("{name:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn names() {
        let run = Context {
            metadata_collection: Some("meta"),
            database: Some("app"),
            version_record: None,
        };
        for cx in [&run, &Context::LOAD] {
            check(cx, "users", Ok(()));
            check(cx, "users.archive", Ok(()));
            check(cx, "", Err("is empty"));
            check(cx, "a\0b", Err("NUL"));
            check(cx, "a$b", Err("contains `$`"));
            check(cx, "..", Err("starts with `.`"));
            check(cx, "system.profile", Err("system.*"));
            check(cx, &"x".repeat(290), Err("namespace limit of 255 bytes"));
        }
        check(&run, &"x".repeat(251), Ok(()));
        check(&run, &"x".repeat(252), Err("namespace limit"));
        check(&run, "meta", Err("collection `meta` is godwit's metadata collection"));
        check(&Context::LOAD, "meta", Ok(()));
        check(&run, "godwit_metadata", Ok(()));
        let adopted = Context {
            version_record: Some("database_metadata"),
            ..run
        };
        check(
            &adopted,
            "database_metadata",
            Err("holds the application's version record"),
        );
        check(&adopted, "items", Ok(()));
    }
}
