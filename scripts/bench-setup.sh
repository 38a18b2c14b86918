#!/usr/bin/env bash
# Installs what `just bench` needs beyond `scripts/setup.sh` (pymongo and Node.js
# come from there), when missing:
#   - contestant (m)'s migrate-mongo and mongodb driver: `npm ci` in bench/migrate-mongo
#     (the versions pinned by its package-lock.json; npm registry);
#   - SecantusDB's fast Rust server `secantusd-rs`, built by cargo (about 10 minutes
#     on 2 cores), which needs cmake from apt.
# Safe to run repeatedly: every step checks first.
set -euo pipefail

MIGRATE_MONGO_DIR="$(cd "$(dirname "$0")/.." && pwd)/bench/migrate-mongo"
if [ ! -e "$MIGRATE_MONGO_DIR/node_modules/migrate-mongo/bin/migrate-mongo.js" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "bench-setup: npm is missing (scripts/setup.sh installs Node.js and npm); contestant (m) needs it" >&2
    exit 1
  fi
  echo "bench-setup: installing migrate-mongo for contestant (m) (npm ci in bench/migrate-mongo)"
  (cd "$MIGRATE_MONGO_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi

SECANTUS_VERSION=0.5.3-beta.196

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
if command -v secantusd-rs >/dev/null 2>&1; then
  exit 0
fi
if ! command -v cmake >/dev/null 2>&1; then
  echo "bench-setup: installing cmake (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends cmake >/dev/null
fi
echo "bench-setup: building secantusd-rs (cargo install secantus-mdb $SECANTUS_VERSION, about 10 minutes)"
# The crate declares rust-version 1.98 but builds and runs on the workspace's 1.95.
cargo install secantus-mdb --version "$SECANTUS_VERSION" --ignore-rust-version
if ! command -v secantusd-rs >/dev/null 2>&1; then
  echo "bench-setup: secantusd-rs is installed in ~/.cargo/bin, which is not on PATH; add it" >&2
  exit 1
fi
