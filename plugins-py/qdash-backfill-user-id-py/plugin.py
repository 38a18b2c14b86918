"""Seed 000, QDash v1.8.0 `backfill-user-id`, in Python: the same migration
as plugins/qdash-backfill-user-id (Rust), action for action and report for
report, so that the same end-to-end test runs both.

Every user without `user_id` gets an immutable `usr_<hex>` id, then every
denormalized `*_user_id` reference across the project, collaboration,
workflow and calibration collections is filled from the username -> user_id
map. Usernames stay. Reports: `summary` (one JSON object), one `unresolved`
per reference whose username maps to no user, one `unresolved_username` per
distinct such name.
"""

import hashlib

import godwit_sdk as g
from bson import ObjectId

# (collection, references). A reference is ("field", from, to): one username
# in `from`, its id into `to` (dotted paths reach nested documents);
# ("names", from, to): an array of usernames, the parallel array of ids (None
# where unresolved) into `to`; ("docs", array, name, to): documents in `array`
# each with a username in `name` get its id in `to`.
COLLECTIONS = [
    ("projects", [("field", "owner_username", "owner_user_id")]),
    ("project_memberships", [("field", "username", "user_id"),
                             ("field", "invited_by", "invited_by_user_id")]),
    ("forum_posts", [("field", "username", "user_id"), ("docs", "replies", "username", "user_id")]),
    ("issues", [("field", "username", "user_id"), ("names", "assignees", "assignee_user_ids")]),
    ("notifications", [("field", "recipient", "recipient_user_id")]),
    ("task_results", [("field", "username", "user_id"), ("field", "excluded_by", "excluded_by_user_id")]),
    ("calibration_notes", [("field", "username", "user_id"),
                           ("field", "review.reviewer", "review.reviewer_user_id")]),
]

USERS_PASS = 0


def bson_display(value):
    """An `_id` as the Rust plugin prints it (the bson crate's Display)."""
    if isinstance(value, ObjectId):
        return f'ObjectId("{value}")'
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def rust_debug_str(s):
    """A string quoted as Rust's `{:?}` does (for the names in messages)."""
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif ord(c) < 0x20 or ord(c) == 0x7f:
            out.append("\\u{%x}" % ord(c))
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def user_id_for(_id):
    """`usr_` and 32 hex digits of sha256("qdash-user:" + the user's `_id`):
    deterministic, derived from `_id` because a username may change later."""
    if isinstance(_id, ObjectId):
        key = str(_id)
    elif isinstance(_id, str):
        key = _id
    else:
        key = bson_display(_id)
    return "usr_" + hashlib.sha256(f"qdash-user:{key}".encode()).hexdigest()[:32]


def get_path(document, path):
    """Value at a dotted path through nested documents (None if absent)."""
    value = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


@g.export
class BackfillUserId:
    def manifest(self):
        m = g.Manifest(
            "qdash-backfill-user-id", "1.8.0", requires=">=1.7.3",
            description="QDash v1.8.0: give users an immutable usr_<hex> user_id and fill every "
                        "*_user_id reference from the username map; usernames are kept",
        ).pass_(g.Pass("users", "users", projection={"username": 1, "user_id": 1}, writes=["users"]))
        for collection, refs in COLLECTIONS:
            projection = {}
            for r in refs:
                a, b = (r[1], r[1]) if r[0] == "docs" else (r[1], r[2])
                for path in (a, b):
                    projection[path.split(".")[0]] = 1
            m.pass_(g.Pass(collection, collection, projection=projection, writes=[collection]))
        return m

    def begin(self, params):
        # Every user, paged: the map must be complete.
        users = g.find_all("users", {}, {"username": 1, "user_id": 1}, 5000)
        self.ids = {}
        holders = {}
        for user in users:
            username = user.get("username")
            if not isinstance(username, str):
                continue
            existing = user.get("user_id")
            self.ids[username] = existing if isinstance(existing, str) else user_id_for(user["_id"])
            holders[username] = holders.get(username, 0) + 1
        # Usernames held by more than one user: resolving them would guess.
        self.ambiguous = {name: n for name, n in holders.items() if n > 1}
        for name in self.ambiguous:
            del self.ids[name]
        g.log.info(f"{len(users)} users, {len(self.ids)} distinct usernames mapped")
        self.tally = g.Tally()
        self.tally.touch("users_without_user_id")
        for collection, _ in COLLECTIONS:
            self.tally.touch(f"collections.{collection}.matched")
        self.tally.touch("unresolved")
        # Unresolved username -> place -> count.
        self.unresolved = {}

    def process(self, pass_index, docs):
        actions = []
        for document in docs:
            if "_id" not in document:
                raise g.PluginError("document without _id")
            _id = document["_id"]
            if pass_index == USERS_PASS:
                if document.get("user_id") is None:
                    self.tally.incr("users_without_user_id")
                    actions.append(g.set_fields("users", _id, {"user_id": user_id_for(_id)}))
                continue
            collection, refs = COLLECTIONS[pass_index - 1]
            fields = {}
            for r in refs:
                self.fill(collection, document, _id, r, fields, actions)
            if fields:
                self.tally.incr(f"collections.{collection}.matched")
                actions.append(g.set_fields(collection, _id, fields))
        return actions

    def finish(self):
        actions = [self.tally.report("summary", "backfill-user-id")]
        for username in sorted(self.unresolved):
            places = self.unresolved[username]
            listed = ", ".join(f"{p} x{places[p]}" for p in sorted(places))
            actions.append(g.report("unresolved_username", username,
                                    f"no user named {rust_debug_str(username)}; referenced in {listed}"))
        return actions

    def resolve(self, username, place, _id, actions):
        """The user id of `username`, or None after reporting why there is none."""
        if username in self.ids:
            return self.ids[username]
        if username in self.ambiguous:
            why = f"{self.ambiguous[username]} users are named {rust_debug_str(username)}"
        else:
            why = f"no user named {rust_debug_str(username)}"
        self.tally.incr("unresolved")
        places = self.unresolved.setdefault(username, {})
        places[place] = places.get(place, 0) + 1
        actions.append(g.report("unresolved", username, f"{place} of _id {bson_display(_id)}: {why}"))
        return None

    def fill(self, collection, document, _id, r, fields, actions):
        """Adds to `fields` what reference `r` of `document` still lacks."""
        if r[0] == "field":
            _, src, dst = r
            username = get_path(document, src)
            # Filled fields are left alone: the runbook's idempotency rule.
            if isinstance(username, str) and get_path(document, dst) is None:
                user_id = self.resolve(username, f"{collection}.{src}", _id, actions)
                if user_id is not None:
                    fields[dst] = user_id
        elif r[0] == "names":
            _, src, dst = r
            names = get_path(document, src)
            if not isinstance(names, list):
                return
            existing = get_path(document, dst)
            existing = existing if isinstance(existing, list) else None
            wanted = []
            for i, name in enumerate(names):
                have = existing[i] if existing is not None and i < len(existing) else None
                if have is not None:
                    wanted.append(have)
                elif isinstance(name, str):
                    wanted.append(self.resolve(name, f"{collection}.{src}[{i}]", _id, actions))
                else:
                    wanted.append(None)
            if (existing is None or existing != wanted) and any(v is not None for v in wanted):
                fields[dst] = wanted
        else:
            _, array, name, dst = r
            items = get_path(document, array)
            if not isinstance(items, list):
                return
            items = [dict(item) if isinstance(item, dict) else item for item in items]
            changed = False
            for i, item in enumerate(items):
                if not isinstance(item, dict):
                    continue
                username = item.get(name)
                if isinstance(username, str) and item.get(dst) is None:
                    user_id = self.resolve(username, f"{collection}.{array}[{i}].{name}", _id, actions)
                    if user_id is not None:
                        item[dst] = user_id
                        changed = True
            if changed:
                fields[array] = items
