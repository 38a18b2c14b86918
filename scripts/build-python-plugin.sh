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
bson_dir=$(python3 -c 'import bson.codec_options, os; print(os.path.dirname(bson.__file__))') \
  || { echo "error: pymongo's bson package is missing (pip install pymongo; scripts/setup.sh does)" >&2; exit 1; }
cp -r "$bson_dir" "$stage/bson"
find "$stage/bson" \( -name '*.so' -o -name '*.c' -o -name '*.h' -o -name '__pycache__' \) -prune -exec rm -rf {} +
cp -r "$root/plugin-sdk/python/godwit_sdk" "$stage/godwit_sdk"
rm -rf "$stage/godwit_sdk/__pycache__"
for f in "$dir"/*.py; do
  case $(basename "$f") in test_*|conftest.py) ;; *) cp "$f" "$stage/" ;; esac
done
# The entry module: componentize-py looks for the exported interfaces'
# classes (`Migration`, and `Traits` of world `plugin-declaring`) in it.
cat >"$stage/godwit_app.py" <<'PY'
import plugin  # registers the plugin class with @godwit_sdk.export
from godwit_sdk._component import Migration, Traits  # noqa: F401
PY
# componentize-py's output differs from build to build (the interpreter
# snapshot holds state seeded at build time), and a new sha256 means a new
# compile (~20 s) and a run that cannot be resumed with it. So the component
# is rebuilt only when its inputs change.
inputs=$( (cd "$stage" && find . -type f -name '*.py' | LC_ALL=C sort | xargs sha256sum; \
  cat "$root"/wit/*.wit; componentize-py --version) | sha256sum | cut -d' ' -f1)
out=$out_dir/$name.wasm
stamp=$root/target/python-plugins/$name.inputs
if [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then
  echo "up to date $out ($(( $(stat -c %s "$out") / 1024 )) KiB)"
  exit 0
fi
# Python's hash randomization would make set iteration differ between builds;
# inside the component the seed is fixed when the build snapshots the
# interpreter, so a given component always behaves the same.
export PYTHONHASHSEED=0
rm -f "$stamp"
componentize-py -d "$root/wit" -w plugin-declaring componentize -p "$stage" godwit_app -o "$out" >/dev/null
echo "$inputs" >"$stamp"
echo "built $out ($(( $(stat -c %s "$out") / 1024 )) KiB)"
