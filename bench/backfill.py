#!/usr/bin/env python3
"""Contestants (d) and (d') of `just bench`: the owner_user_id backfill as a
pymongo script, written the way the seeds' projects write their migrations
(datalab's upgrader, seed 001; CAIPE's runbook, seed 003): build a lookup map
from one query, iterate the documents with a projection, and call
`update_one` per document that needs it. QDash's own `backfill-user-id`
(seed 000) fills the same fields from a username -> user_id map.

With --bulk the updates go out as `bulk_write` batches of UpdateOne instead
(what a careful script author would do; reported as (d')).

Prints one JSON line: documents seen, updated, unresolved."""

import argparse
import json

from pymongo import MongoClient, UpdateOne


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--bulk", action="store_true")
    args = parser.parse_args()

    db = MongoClient(args.uri)[args.db]
    user_ids = {
        u["username"]: u["user_id"]
        for u in db.users.find({"user_id": {"$exists": True}}, projection={"username": 1, "user_id": 1})
    }

    seen = updated = unresolved = 0
    ops = []
    cursor = (
        db.executions.find(
            {"username": {"$type": "string"}, "owner_user_id": {"$exists": False}},
            projection={"username": 1},
        )
        .sort("_id", 1)
        .batch_size(args.batch)
    )
    for doc in cursor:
        seen += 1
        user_id = user_ids.get(doc["username"])
        if user_id is None:
            unresolved += 1
            continue
        if args.bulk:
            ops.append(UpdateOne({"_id": doc["_id"]}, {"$set": {"owner_user_id": user_id}}))
            if len(ops) >= args.batch:
                updated += db.executions.bulk_write(ops, ordered=True).modified_count
                ops = []
        else:
            updated += db.executions.update_one({"_id": doc["_id"]}, {"$set": {"owner_user_id": user_id}}).modified_count
    if ops:
        updated += db.executions.bulk_write(ops, ordered=True).modified_count

    print(json.dumps({"documents": seen, "updated": updated, "unresolved": unresolved}))


if __name__ == "__main__":
    main()
