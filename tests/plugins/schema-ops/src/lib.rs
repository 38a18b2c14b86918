//! Test plugin for schema operations (contract 0.2): `--param op=...` picks
//! one kind (or `all`, every kind in one phase), `--param phase=finish`
//! returns them from `finish` instead of `setup` (before the first pass).
//! Its one pass reads `users` and writes nothing.

use godwit_sdk::{Action, Context, Document, Error, Index, Manifest, Migration, Params, Pass, SchemaKind, doc};

pub struct SchemaOps {
    ops: Vec<Action>,
    in_finish: bool,
    /// `op=when-flagged`: a create-index only if some user has `flag: true`
    /// (a plugin whose operations depend on the data it looks up).
    when_flagged: bool,
}

/// The operations `op` names.
pub fn ops(op: &str) -> Result<Vec<Action>, Error> {
    Ok(match op {
        "create-index" => vec![Action::create_index(
            "users",
            Index::new("email_ci", doc! {"email": 1})
                .partial(doc! {"email": {"$exists": true}})
                .collation(doc! {"locale": "en", "strength": 2}),
        )],
        "unique-index" => vec![Action::create_index(
            "users",
            Index::new("email_unique", doc! {"email": 1})
                .unique()
                .partial(doc! {"email": {"$exists": true}}),
        )],
        "ttl-index" => vec![Action::create_index(
            "users",
            Index::new("seen_ttl", doc! {"seen_at": 1}).expire_after(86_400),
        )],
        "drop-index" => vec![Action::drop_index("users", "old_idx")],
        "create-collection" => vec![Action::create_collection(
            "audit",
            Some(doc! {"$jsonSchema": {"required": ["who"], "properties": {"who": {"bsonType": "string"}}}}),
        )],
        "modify-validator" => vec![Action::modify_validator(
            "users",
            doc! {"$jsonSchema": {"required": ["email"]}},
            Some("moderate"),
        )],
        "rename-collection" => vec![Action::rename_collection("legacy", "legacy_renamed")],
        "drop-collection" => vec![Action::drop_collection("scratch")],
        "all" => [
            "create-collection",
            "create-index",
            "drop-index",
            "modify-validator",
            "rename-collection",
            "drop-collection",
        ]
        .into_iter()
        .map(ops)
        .collect::<Result<Vec<_>, _>>()?
        .concat(),
        // Decided in `setup` from the data: see `SchemaOps::setup`.
        "when-flagged" => Vec::new(),
        other => return Err(Error::new(format!("unknown op {other:?}"))),
    })
}

impl Migration for SchemaOps {
    fn manifest() -> Manifest {
        Manifest::new("schema-ops", "1.0.0")
            .description("one schema operation of each kind")
            .pass(Pass::new("users", "users"))
            .schema(SchemaKind::CreateIndex, "users")
            .schema(SchemaKind::DropIndex, "users")
            .schema(SchemaKind::CreateCollection, "audit")
            .schema(SchemaKind::ModifyValidator, "users")
            .schema(SchemaKind::RenameCollection, "legacy")
            .schema(SchemaKind::RenameCollection, "legacy_renamed")
            .schema(SchemaKind::DropCollection, "scratch")
    }

    fn begin(params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(SchemaOps {
            ops: ops(params.get("op").unwrap_or("all"))?,
            in_finish: params.get("phase") == Some("finish"),
            when_flagged: params.get("op") == Some("when-flagged"),
        })
    }

    fn setup(&mut self, cx: &mut Context) -> Result<Vec<Action>, Error> {
        if self.when_flagged && !cx.find("users", doc! {"flag": true}, None, 1)?.is_empty() {
            return ops("create-index");
        }
        Ok(if self.in_finish { Vec::new() } else { self.ops.clone() })
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, _batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        Ok(Vec::new())
    }

    fn finish(&mut self, _cx: &mut Context) -> Result<Vec<Action>, Error> {
        Ok(if self.in_finish { self.ops.clone() } else { Vec::new() })
    }
}

godwit_sdk::export!(SchemaOps);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    #[test]
    fn every_operation_is_declared_and_passes_the_host_rules() {
        assert_eq!(Harness::<SchemaOps>::new().param("op", "all").setup().unwrap().len(), 6);
        let mut h = Harness::<SchemaOps>::new().param("op", "all").param("phase", "finish");
        assert_eq!(h.setup().unwrap(), vec![]);
        assert_eq!(h.finish().unwrap().len(), 6);
    }
}
