// Contestant (m) of `just bench`: the QDash-like owner_user_id backfill as a
// migrate-mongo migration written the careful way - the same work as godwit's
// bench-backfill plugin and the driver loop (a):
// - the users map from one query, projected to username and user_id;
// - one cursor over the executions that need it (the plugin pass's filter),
//   sorted by _id, projected to username, read in batches of BENCH_BATCH;
// - ordered bulkWrite calls of BENCH_BATCH updateOne each;
// - executions whose username names no user are left alone.
// Prints its counts as one JSON line on stderr (stdout is migrate-mongo's).

module.exports = {
  async up(db) {
    const batch = Number(process.env.BENCH_BATCH || "1000");
    if (!Number.isInteger(batch) || batch < 1) {
      throw new Error(`BENCH_BATCH=${process.env.BENCH_BATCH} is not a positive integer: set it to the bench's --batch`);
    }
    const userIds = new Map();
    const users = db
      .collection("users")
      .find({ user_id: { $exists: true } }, { projection: { username: 1, user_id: 1 } });
    for await (const user of users) {
      userIds.set(user.username, user.user_id);
    }

    const executions = db.collection("executions");
    const cursor = executions.find(
      { username: { $type: "string" }, owner_user_id: { $exists: false } },
      { projection: { username: 1 }, sort: { _id: 1 }, batchSize: batch },
    );
    let seen = 0;
    let updated = 0;
    let unresolved = 0;
    let ops = [];
    const flush = async () => {
      if (ops.length > 0) {
        const result = await executions.bulkWrite(ops, { ordered: true });
        updated += result.modifiedCount;
        ops = [];
      }
    };
    for await (const doc of cursor) {
      seen += 1;
      const userId = userIds.get(doc.username);
      if (userId === undefined) {
        unresolved += 1;
        continue;
      }
      ops.push({ updateOne: { filter: { _id: doc._id }, update: { $set: { owner_user_id: userId } } } });
      if (ops.length >= batch) {
        await flush();
      }
    }
    await flush();
    console.error(JSON.stringify({ documents: seen, updated, unresolved }));
  },

  async down() {
    // Which executions had owner_user_id before cannot be told afterwards.
    throw new Error(
      "backfill-owner-user-id cannot be undone: restore the executions from a backup taken before `migrate-mongo up`",
    );
  },
};
