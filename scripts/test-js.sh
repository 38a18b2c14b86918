#!/usr/bin/env bash
# Native tests of the JavaScript SDK (plugin-sdk/js) and of every JavaScript
# plugin (plugins-js/*, tests/plugins-js/*, bench/plugin-js/* with a test/
# directory), each with Node's own test runner. Installs their npm
# dependencies first when missing or older than package.json (the registry
# must be reachable then).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command -v node >/dev/null || { echo "error: node is missing (scripts/setup.sh installs it)" >&2; exit 1; }
install() {
  if [ ! -f "$1/node_modules/.package-lock.json" ] || [ "$1/package.json" -nt "$1/node_modules/.package-lock.json" ]; then
    (cd "$1" && npm install --no-audit --no-fund --loglevel=error)
  fi
}
install "$root/plugin-sdk/js"
(cd "$root/plugin-sdk/js" && node --test)
for dir in "$root"/plugins-js/*/ "$root"/tests/plugins-js/*/ "$root"/bench/plugin-js/*/; do
  [ -d "$dir/test" ] || continue
  install "$dir"
  (cd "$dir" && node --test)
done
