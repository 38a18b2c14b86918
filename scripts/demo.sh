#!/usr/bin/env bash
# The newcomer's first command (`just demo`): a local MongoDB-compatible server,
# sample data, a dry run, an execute run interrupted halfway, its resume, and
# the stamped version with its history and a verified journal.
set -euo pipefail
cd "$(dirname "$0")/.."

GODWIT=target/debug/godwit
PLUGIN=target/plugins/normalize-emails.wasm
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export MONGODB_URI="mongodb://127.0.0.1:${port}/?directConnection=true"
export GODWIT_JOURNAL="$work/journal"
DB=demo

secantusd-py --host 127.0.0.1 --port "$port" --storage-path "$work/data" --log-level WARNING >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting SecantusDB on 127.0.0.1:$port and loading 20,000 users"
python3 - "$MONGODB_URI" <<'PY'
import sys, time, pymongo
client = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=30000)
for _ in range(300):
    try:
        client.admin.command("ping"); break
    except Exception:
        time.sleep(0.1)
users = client.demo.users
users.drop()
docs = []
for i in range(20000):
    email = [f"user{i}@example.com", f"  User{i}@Example.COM", f"USER{i}@EXAMPLE.COM "][i % 3]
    docs.append({"_id": i, "name": f"user {i}", "email": email})
docs.append({"_id": 20000, "name": "duplicate", "email": "User7@example.com"})
users.insert_many(docs)
print(f"{users.count_documents({})} users, {users.count_documents({'email': {'$regex': '[A-Z ]'}})} with addresses to normalize")
PY

step "inspecting the plugin"
$GODWIT plugin inspect "$PLUGIN"

step "stamping the existing schema as 1.0.0 (the plugin requires >=1.0.0)"
$GODWIT init --db $DB --version 1.0.0

step "dry run (the default): reports what would change, writes nothing"
$GODWIT run "$PLUGIN" --db $DB

step "execute, throttled to 8,000 documents/s, interrupted by Ctrl-C after 1.5 s"
$GODWIT run "$PLUGIN" --db $DB --execute --max-docs-per-sec 8000 &
runner=$!
sleep 1.5
kill -INT $runner
wait $runner && status=0 || status=$?
echo "(exit code $status: interrupted, resumable)"

step "the same command again resumes the run where it stopped"
$GODWIT run "$PLUGIN" --db $DB --execute

step "schema version and history in the database"
python3 - "$MONGODB_URI" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1]).demo
schema = db.godwit_metadata.find_one({"_id": "schema"})
print("version:", schema["version"])
for h in schema["history"]:
    print(f"  {h['version']:>7}  {h['plugin']:<18} run {h['run_id']}  counts {h.get('counts', {})}")
print("addresses left to normalize:", db.users.count_documents({"email": {"$regex": "[A-Z ]"}}),
      "(the one that collides with user 7's: reported, not merged)")
PY

step "the journal: runs and their verified hash chains"
$GODWIT journal list
$GODWIT journal verify

step "for auditors: verify against the database's history, export, replay"
RUN=$($GODWIT journal list --json | python3 -c 'import json,sys; print([r for r in json.load(sys.stdin) if r["mode"]=="Execute" and r["status"]=="Finished"][-1]["run_id"])')
$GODWIT journal verify "$RUN" --uri "$MONGODB_URI" --db $DB
$GODWIT journal export "$RUN" > "$work/run.jsonl"
python3 - "$work/run.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
images = [i for l in lines for i in l.get("images", [])]
print(f"exported {len(lines)} entries; {len(images)} before-images, e.g.:")
print(" ", json.dumps(images[0])[:160])
PY
$GODWIT journal replay "$RUN" --plugin "$PLUGIN"

step "for auditors: revert the run (dry run, then --execute)"
$GODWIT revert "$RUN" --db $DB
$GODWIT revert "$RUN" --db $DB --execute
python3 - "$MONGODB_URI" <<'PY'
import sys, pymongo
db = pymongo.MongoClient(sys.argv[1]).demo
print("version after the revert:", db.godwit_metadata.find_one({"_id": "schema"})["version"])
print("addresses to normalize again:", db.users.count_documents({"email": {"$regex": "[A-Z ]"}}))
PY
