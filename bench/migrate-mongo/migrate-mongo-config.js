// Contestant (m) of `just bench` (bench/src/main.rs): migrate-mongo's configuration.
// The harness passes the server and the database in the environment, like a
// deployment would; the changelog and its lock live in that database.
const path = require("path");

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: export it (the bench sets it for contestant (m))`);
  }
  return value;
}

module.exports = {
  mongodb: {
    url: required("MIGRATE_MONGO_URI"),
    databaseName: required("MIGRATE_MONGO_DB"),
    options: {},
  },
  // Absolute, so that `migrate-mongo up` works from any directory.
  migrationsDir: path.join(__dirname, "migrations"),
  changelogCollectionName: "changelog",
  lockCollectionName: "changelog_lock",
  lockTtl: 0,
  migrationFileExtension: ".js",
  useFileHash: false,
  moduleSystem: "commonjs",
};
