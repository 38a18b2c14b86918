"""Schema operations from Python (contract 0.2): every kind, the same
collections as the Rust test plugin `schema-ops`. `setup()` creates before
the pass, `finish()` renames, drops and changes a validator after it."""

import godwit_sdk as g


@g.export
class SchemaOpsPy:
    def manifest(self):
        return (g.Manifest("schema-ops-py", "1.0.0", description="schema operations from python")
                .pass_(g.Pass("users", "users"))
                .allow("create-collection", "audit")
                .allow("create-index", "users")
                .allow("drop-index", "users")
                .allow("modify-validator", "users")
                .allow("rename-collection", "legacy")
                .allow("rename-collection", "legacy_renamed")
                .allow("drop-collection", "scratch"))

    def begin(self, params):
        pass

    def setup(self):
        return [
            g.create_collection("audit", {"$jsonSchema": {"required": ["who"]}},
                                validation_level="strict", validation_action="error"),
            g.create_index("users", "email_ci", {"email": 1},
                           partial_filter={"email": {"$exists": True}},
                           collation={"locale": "en", "strength": 2}),
            g.create_index("users", "seen_ttl", {"seen_at": 1}, expire_after_seconds=3600),
        ]

    def process(self, pass_index, docs):
        return []

    def finish(self):
        return [
            g.drop_index("users", "old_idx"),
            g.modify_validator("users", {"$jsonSchema": {"required": ["email"]}}, validation_level="moderate"),
            g.rename_collection("legacy", "legacy_renamed"),
            g.drop_collection("scratch"),
        ]
