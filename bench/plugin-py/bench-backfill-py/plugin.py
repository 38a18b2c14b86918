"""The backfill `just bench` measures, in Python: the same query, the same
`$set` and the same reports as tests/plugins/bench-backfill (Rust), so the
bench's row for it shows what a Python plugin costs against a Rust one."""

import godwit_sdk as g


@g.export
class BenchBackfill:
    # Each batch's actions come from the batch and the map `begin` loaded.
    keeps_state = False

    def manifest(self):
        return g.Manifest(
            "bench-backfill-py",
            "1.8.0",
            description="executions.owner_user_id from users.user_id by username (benchmark, Python)",
            reads=["users"],
        ).pass_(
            g.Pass(
                "executions",
                "executions",
                filter={"username": {"$type": "string"}, "owner_user_id": {"$exists": False}},
                projection={"username": 1},
                writes=["executions"],
            )
        )

    def begin(self, params):
        users = g.find("users", {"user_id": {"$exists": True}}, {"username": 1, "user_id": 1}, 0)
        self.user_ids = {
            u["username"]: u["user_id"]
            for u in users
            if isinstance(u.get("username"), str) and isinstance(u.get("user_id"), str)
        }

    def process(self, pass_index, docs):
        actions = []
        for d in docs:
            username = d.get("username") if isinstance(d.get("username"), str) else ""
            user_id = self.user_ids.get(username)
            if user_id is not None:
                actions.append(g.set_fields("executions", d["_id"], {"owner_user_id": user_id}))
            else:
                actions.append(g.report("unresolved", username, "no user with this username"))
        return actions
