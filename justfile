# The commands people type. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

godwit := "target/debug/godwit"

default:
    @just --list

# Install what building plugins and running the tests need (apt, pip), when missing.
setup:
    scripts/setup.sh

# Build the godwit binary (debug).
build:
    cargo build -p godwit --bin godwit

# Build every plugin crate (plugins/, tests/plugins/), Python plugin (plugins-py/) and JavaScript plugin (plugins-js/, tests/plugins-js/) into target/plugins/<name>.wasm.
plugins: setup build
    {{godwit}} plugin build plugins tests/plugins plugins-js tests/plugins-js
    for dir in plugins-py/*/; do scripts/build-python-plugin.sh "$dir"; done

# Build one Python plugin directory (plugin.py, see plugin-sdk/python/README.md) into target/plugins/<dir name>.wasm.
plugin-py DIR: setup
    scripts/build-python-plugin.sh {{DIR}}

# Native tests of the Python plugins (pytest, no wasm).
test-py: setup
    python3 -m pytest -q plugin-sdk/python plugins-py

# Native tests of the JavaScript SDK and plugins (node --test, no wasm).
test-js: setup
    scripts/test-js.sh

# Unit tests and end-to-end tests (real components, real server), then the Python plugins' pytest and the JavaScript plugins' node --test.
test: plugins
    cargo test --workspace --features godwit/failpoints
    python3 -m pytest -q plugin-sdk/python plugins-py
    scripts/test-js.sh

# Crash test with 500 random SIGKILLs during execute and resume (slow, several minutes).
test-slow: plugins
    GODWIT_CRASH_KILLS=500 cargo test -p godwit --features failpoints --test e2e -- crash --nocapture

# Local server + sample data: dry run, interrupted execute, resume, stamped version.
demo: plugins
    scripts/demo.sh

# Inspect the example plugin (the quickstart's first command).
inspect: plugins
    {{godwit}} plugin inspect target/plugins/normalize-emails.wasm

# The QDash-like backfill on one local server: Rust driver loop vs godwit (the plugin in Rust,
# Python and JavaScript) vs pymongo vs a migrate-mongo migration (Node), in 3 interleaved
# rounds: median docs/s with min-max, every ratio the median (min-max) of per-round ratios,
# the targets with verdicts, peak RSS, CPU, journal bytes per document; writes bench/RESULTS.md.
# `just bench 1000000` for another size, `just bench 200000 5` for 5 rounds.
bench docs="200000" rounds="3": plugins bench-setup
    cargo build --release -p godwit -p godwit-bench --bin godwit --bin godwit-bench
    scripts/build-python-plugin.sh bench/plugin-py/bench-backfill-py
    {{godwit}} plugin build bench/plugin-js/bench-backfill-js
    PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin" target/release/godwit-bench run --docs {{docs}} --rounds {{rounds}}

# Scaling check: driver loop and godwit at 200k and 1M documents; writes bench/SCALING.md.
bench-scale: plugins bench-setup
    cargo build --release -p godwit -p godwit-bench --bin godwit --bin godwit-bench
    PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin" target/release/godwit-bench scale --sizes 200000,1000000

# godwit at several batch sizes and read-ahead depths beside the driver loop; writes bench/TUNING.md.
bench-tune: plugins bench-setup
    cargo build --release -p godwit -p godwit-bench --bin godwit --bin godwit-bench
    PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin" target/release/godwit-bench tune

# godwit (c) plain and with --workers 1, 2, 4 on one server: docs/s, client and server CPU per document; writes bench/FLEET.md.
bench-fleet docs="100000": plugins bench-setup
    cargo build --release -p godwit -p godwit-bench --bin godwit --bin godwit-bench
    PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin" target/release/godwit-bench fleet --docs {{docs}}

# Install the benchmark's server (secantusd-rs; cmake via apt) and contestant (m)'s migrate-mongo (npm ci), when missing.
bench-setup:
    scripts/bench-setup.sh

# Documents/s through a plugin call (batch 1,000) in wasm vs the same code native.
bench-plugin: plugins
    cargo bench -p godwit --bench plugin_call

# The QDash backfill scenario on about 54,000 documents (GODWIT_QDASH_SCALE=15; the default is about 21,000).
scenario-qdash-large: plugins
    GODWIT_QDASH_SCALE=15 cargo test -p godwit --features failpoints --test e2e -- seeds::qdash:: --nocapture

# One seed scenario end to end: qdash, datalab, uniqc, caipe or alembic (README, "Scenarios").
# With GODWIT_TEST_MONGODB_URI set (e.g. the demo's server) its databases stay there to inspect.
scenario NAME: plugins
    cargo test -p godwit --features failpoints --test e2e -- seeds::{{NAME}} --nocapture
