#!/usr/bin/env bash
# Builds a Python plugin directory (plugin.py + helper modules; test_*.py are
# left out) into target/plugins/<dir name>.wasm with componentize-py.
#   scripts/build-python-plugin.sh DIR [OUT_DIR]
# The component bundles: the plugin's modules, godwit_sdk (plugin-sdk/python)
# and pymongo's `bson` package in its pure-Python form (its C extension is
# removed from the staged copy; bson falls back to Python by itself).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(cd "$1" && pwd)
out_dir=${2:-$root/target/plugins}
name=$(basename "$dir")
[ -f "$dir/plugin.py" ] || { echo "error: $dir has no plugin.py" >&2; exit 1; }
command -v componentize-py >/dev/null || { echo "error: componentize-py is missing (scripts/setup.sh installs it)" >&2; exit 1; }

stage=$root/target/python-plugins/$name
rm -rf "$stage"
mkdir -p "$stage" "$out_dir"
bson_dir=$(python3 -c 'import bson, os; print(os.path.dirname(bson.__file__))')
cp -r "$bson_dir" "$stage/bson"
find "$stage/bson" \( -name '*.so' -o -name '*.c' -o -name '*.h' -o -name '__pycache__' \) -prune -exec rm -rf {} +
cp -r "$root/plugin-sdk/python/godwit_sdk" "$stage/godwit_sdk"
rm -rf "$stage/godwit_sdk/__pycache__"
for f in "$dir"/*.py; do
  case $(basename "$f") in test_*|conftest.py) ;; *) cp "$f" "$stage/" ;; esac
done
# The entry module: componentize-py looks for the exported interface's class
# (`Migration`) in it.
cat >"$stage/godwit_app.py" <<'PY'
import plugin  # registers the plugin class with @godwit_sdk.export
from godwit_sdk._component import Migration  # noqa: F401
PY
# Python's hash randomization would make set iteration differ between builds;
# inside the component the seed is fixed when the build snapshots the
# interpreter, so a given component always behaves the same.
export PYTHONHASHSEED=0
componentize-py -d "$root/wit" -w plugin componentize -p "$stage" godwit_app -o "$out_dir/$name.wasm" >/dev/null
echo "built $out_dir/$name.wasm ($(( $(stat -c %s "$out_dir/$name.wasm") / 1024 )) KiB)"
