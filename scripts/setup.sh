#!/usr/bin/env bash
# Installs what building plugins and running the tests need, when missing.
# Safe to run repeatedly: every step checks first.
#   - a wasm toolchain: rustup's wasm32-wasip2 target if it is installed, else
#     Debian's rustc-web + rust-web-src + wasi-libc (+ lld for rust-lld)
#   - SecantusDB, the MongoDB-compatible server the tests start (PyPI)
#   - componentize-py, pymongo (its pure-Python bson) and pytest for Python plugins (PyPI)
#   - Node.js and npm for JavaScript plugins (Debian); `godwit plugin build`
#     installs esbuild and componentize-js from npm itself
#   - kubernetes-validate (PyPI, with the Kubernetes JSON schemas bundled):
#     the e2e test validates `godwit fleet manifest`'s output offline
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

have_wasip2() {
  command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2
}

apt_missing=()
if ! have_wasip2; then
  # Try rustup first: on a machine with internet this is all a plugin author needs.
  if command -v rustup >/dev/null 2>&1 && timeout 60 rustup target add wasm32-wasip2 >/dev/null 2>&1; then
    echo "setup: installed rustup target wasm32-wasip2"
  else
    for pkg in rustc-web rust-web-src rust-web-llvm wasi-libc lld-22; do
      dpkg -s "$pkg" >/dev/null 2>&1 || apt_missing+=("$pkg")
    done
  fi
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_missing+=(nodejs npm)
fi
if [ ${#apt_missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${apt_missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

if ! command -v secantusd-py >/dev/null 2>&1 || ! python3 -c 'import pymongo' 2>/dev/null; then
  echo "setup: installing SecantusDB and pymongo (pip)"
  python3 -m pip install -q SecantusDB pymongo
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi
# Python plugins: componentize-py builds them, pymongo's bson is bundled into
# them, pytest runs their native tests.
if ! command -v componentize-py >/dev/null 2>&1 || ! python3 -c 'import pytest' 2>/dev/null; then
  echo "setup: installing componentize-py and pytest (pip)"
  python3 -m pip install -q componentize-py pytest
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "setup: installing kubernetes-validate (pip)"
  python3 -m pip install -q kubernetes-validate
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi
if ! command -v secantusd-py >/dev/null 2>&1; then
  scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  echo "setup: secantusd-py is installed in $scripts, which is not on PATH; add it (the tests and the demo run it)" >&2
  exit 1
fi
