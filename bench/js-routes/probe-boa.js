// The same transform as probe.js, for a runner that hands documents over as
// relaxed Extended JSON (Rust decodes BSON) and takes actions back as JSON.
var plugin = (function () {
  let seen = new Map();
  return { migration: {
    begin() { seen = new Map(); },
    process(pass, docsJson) {
      const docs = JSON.parse(docsJson);
      const out = [];
      for (const user of docs) {
        const email = user.email;
        const normalized = email.trim().toLowerCase();
        const first = seen.get(normalized);
        if (first !== undefined) { out.push({ op: 'report', kind: 'conflict', key: normalized, message: `same as ${first}` }); continue; }
        seen.set(normalized, String(user._id));
        if (normalized !== email) out.push({ op: 'update', collection: 'users', filter: { _id: user._id }, update: { $set: { email: normalized } } });
      }
      return JSON.stringify(out);
    },
  } };
})();
