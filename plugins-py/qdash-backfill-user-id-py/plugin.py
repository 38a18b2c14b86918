"""Seed 000, QDash v1.8.0 `backfill-user-id`, in Python: the same migration
as plugins/qdash-backfill-user-id (Rust), action for action and report for
report (byte for byte), so that the same end-to-end test runs both and
compares their dry-run reports.

QDash's own schema and rules (upstream's `migrate_backfill_user_id` in
`src/qdash/dbmodel/migration.py`): users in `user` whose `user_id` is
missing (absent, null or "") get an immutable `usr_` + 32 hex id (derived
from the user's `_id`, see `user_id_for`); then the 22 collections of
`USER_ID_FIELD_MIGRATIONS` get each `*_user_id` filled from the username ->
user_id map where the username is a non-empty string (exact match) and the id
is missing. Unresolved usernames are counted and reported, never invented.
Arrays where QDash stores one value are left as they are and reported
`skipped`. The `summary` report is upstream's statistics dict as
`json.dumps(..., ensure_ascii=False)`. See the Rust crate's doc for the why.
"""

import hashlib
import json

import godwit_sdk as g
from bson import ObjectId

USER = "user"

# Upstream's USER_ID_FIELD_MIGRATIONS: (collection, [(username field, user id field)]).
FIELD_PAIRS = [
    ("project", [("owner_username", "owner_user_id")]),
    ("project_membership", [("username", "user_id"), ("invited_by", "invited_by_user_id")]),
    ("notification", [("recipient_username", "recipient_user_id"),
                      ("actor_username", "actor_user_id")]),
    ("note_event", [("actor", "actor_user_id")]),
    ("cooldown_wiring_event", [("actor", "actor_user_id")]),
    ("forum_post", [("username", "user_id")]),
    ("issue", [("username", "user_id")]),
    ("issue_knowledge", [("reviewed_by", "reviewed_by_user_id")]),
    ("backend", [("username", "user_id")]),
    ("task", [("username", "user_id")]),
    ("tag", [("username", "user_id")]),
    ("flows", [("username", "user_id")]),
    ("execution_history", [("username", "user_id")]),
    ("execution_counter", [("username", "user_id")]),
    ("chip", [("username", "user_id")]),
    ("chip_history", [("username", "user_id")]),
    ("qubit", [("username", "user_id")]),
    ("qubit_history", [("username", "user_id")]),
    ("coupling", [("username", "user_id")]),
    ("coupling_history", [("username", "user_id")]),
    ("calibration_note", [("username", "user_id")]),
    ("task_result_history", [("username", "user_id"), ("excluded_by", "excluded_by_user_id")]),
]

USER_PASS = 0


def user_id_for(_id, namespace=""):
    """`usr_` + 32 lowercase hex: the first 16 bytes of
    sha256("godwit/qdash-backfill-user-id\\0" + namespace + "\\0" + BSON of
    {"_id": _id}), shaped as a version-8 UUID (the Rust plugin's derivation)."""
    h = hashlib.sha256()
    h.update(b"godwit/qdash-backfill-user-id\0")
    h.update(namespace.encode())
    h.update(b"\0")
    h.update(g.encode({"_id": _id}))
    b = bytearray(h.digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x80
    b[8] = (b[8] & 0x3F) | 0x80
    return "usr_" + b.hex()


def json_str(s):
    return json.dumps(s, ensure_ascii=False)


def id_text(_id):
    """An `_id` in a message, as the Rust plugin prints it."""
    if isinstance(_id, ObjectId):
        return str(_id)
    if isinstance(_id, str):
        return json_str(_id)
    if isinstance(_id, int) and not isinstance(_id, bool):
        return str(int(_id))
    return "(an _id of another type)"


def is_missing(value):
    """Absent, null or "": QDash's three spellings of "no id yet"."""
    return value is None or value == ""


def type_name(value):
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a document"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a double"
    if isinstance(value, ObjectId):
        return "an ObjectId"
    return "not a string"


def pass_filter(pairs):
    return {"$or": [{src: {"$type": "string", "$ne": ""}, dst: {"$in": [None, ""]}}
                    for src, dst in pairs]}


@g.export
class BackfillUserId:
    def manifest(self):
        m = g.Manifest(
            "qdash-backfill-user-id", "1.8.0", requires=">=1.7.2, <1.8.0",
            description="QDash v1.8.0 backfill-user-id: usr_<hex> ids for users missing user_id, then the "
                        "*_user_id fields of QDash's 22 collections from the username map (upstream's "
                        "USER_ID_FIELD_MIGRATIONS); usernames are kept",
        ).pass_(g.Pass(USER, USER, projection={"username": 1, "user_id": 1}, writes=[USER]))
        for collection, pairs in FIELD_PAIRS:
            projection = {}
            for src, dst in pairs:
                projection[src] = 1
                projection[dst] = 1
            m.pass_(g.Pass(collection, collection, filter=pass_filter(pairs), projection=projection,
                           writes=[collection]))
        return m

    def begin(self, params):
        self.namespace = params.get("id_namespace", "")
        users = g.find_all(USER, {}, {"username": 1, "user_id": 1}, 5000)
        holders = {}
        ids = {}
        generated = {}
        self.unusable = {}
        for user in users:
            username = user.get("username")
            if not isinstance(username, str):
                continue
            holders.setdefault(username, []).append(user["_id"])
            user_id = user.get("user_id")
            if is_missing(user_id):
                if username:
                    generated[username] = user_id_for(user["_id"], self.namespace)
            elif isinstance(user_id, str):
                ids[username] = user_id
            else:
                self.unusable[username] = type_name(user_id)
        for user in users:
            username = user.get("username")
            if isinstance(username, str) and len(holders[username]) > 1:
                held = holders[username]
                raise g.PluginError(
                    f"user: username {json_str(username)} is held by {len(held)} users "
                    f"(_id {', '.join(id_text(i) for i in held)}); QDash's unique index on username forbids "
                    "this, so this is not a QDash database as it should be - make the usernames unique, "
                    "then run again")
        taken = {i: u for u, i in ids.items()}
        for username, user_id in generated.items():
            if user_id in taken:
                raise g.PluginError(
                    f"user: the id derived for {json_str(username)} is {user_id}, which user "
                    f"{json_str(taken[user_id])} already holds; run again with another --param id_namespace=...")
        ids.update(generated)
        self.ids = ids
        g.log.info(f"{len(users)} users, {len(ids)} usernames mapped to an id")
        self.users_without_user_id = 0
        self.users_updated = 0
        # Per collection: matched, updated, and per pair an insertion-ordered
        # {username: count} (merged pair by pair, as upstream counts).
        self.stats = [{"matched": 0, "updated": 0, "unresolved": [{} for _ in pairs]}
                      for _, pairs in FIELD_PAIRS]

    def process(self, pass_index, docs):
        actions = []
        for document in docs:
            if "_id" not in document:
                raise g.PluginError("a document came without _id")
            if pass_index == USER_PASS:
                self.user(document, document["_id"], actions)
            else:
                self.references(pass_index - 1, document, document["_id"], actions)
        return actions

    def finish(self):
        return [g.report("summary", "backfill-user-id", self.statistics())]

    def user(self, user, _id, actions):
        user_id = user.get("user_id")
        if not is_missing(user_id):
            if not isinstance(user_id, str):
                actions.append(g.report(
                    "skipped", USER,
                    f"user of _id {id_text(_id)}: user_id is {type_name(user_id)}, kept as it is; "
                    "references to this user stay unresolved"))
            return
        self.users_without_user_id += 1
        username = user.get("username")
        if isinstance(username, str) and username:
            self.users_updated += 1
            actions.append(g.set_fields(USER, _id, {"user_id": user_id_for(_id, self.namespace)}))
        else:
            actions.append(g.report(
                "skipped", USER,
                f"user of _id {id_text(_id)}: no username, so no user_id is generated (as upstream)"))

    def references(self, index, document, _id, actions):
        collection, pairs = FIELD_PAIRS[index]
        stats = self.stats[index]
        fields = {}
        for pair, (src, dst) in enumerate(pairs):
            target = document.get(dst)
            username = document.get(src)
            if isinstance(username, str) and username:
                if isinstance(target, list):
                    actions.append(g.report(
                        "skipped", collection,
                        f"{collection}.{dst} of _id {id_text(_id)} holds an array, not a missing id: "
                        "left as it is"))
                    continue
                if not is_missing(target):
                    continue
                stats["matched"] += 1
                user_id = self.ids.get(username)
                if user_id:
                    stats["updated"] += 1
                    fields[dst] = user_id
                else:
                    counts = stats["unresolved"][pair]
                    counts[username] = counts.get(username, 0) + 1
                    if username in self.unusable:
                        why = f"user {json_str(username)}'s user_id is {self.unusable[username]}"
                    else:
                        why = f"no user is named {json_str(username)}"
                    actions.append(g.report("unresolved", username,
                                            f"{collection}.{src} of _id {id_text(_id)}: {why}"))
            elif isinstance(username, list) and is_missing(target):
                actions.append(g.report(
                    "skipped", collection,
                    f"{collection}.{src} of _id {id_text(_id)} holds an array, not one username: left as it is"))
        if fields:
            actions.append(g.set_fields(collection, _id, fields))

    def statistics(self):
        """Upstream's statistics dict, as json.dumps prints it."""
        out = {
            "users_without_user_id": self.users_without_user_id,
            "users_updated": self.users_updated,
            "collections": {},
            "unresolved": {},
        }
        for (collection, _), stats in zip(FIELD_PAIRS, self.stats):
            out["collections"][collection] = {"matched": stats["matched"], "updated": stats["updated"]}
            merged = {}
            for counts in stats["unresolved"]:
                for username, n in counts.items():
                    merged[username] = merged.get(username, 0) + n
            if merged:
                out["unresolved"][collection] = merged
        return json.dumps(out, ensure_ascii=False)
