#!/usr/bin/env bash
# Benchmark: snapkeep against the shell one-liners it replaces, side by side in one run.
#   bench/compare.sh [SIZE_MIB ...]      (default: 256 1024; REPEAT=3 runs each, alternating)
# Installs sqlite3, pigz and GNU time if missing, builds snapkeep and the generator in release
# mode, and writes the results table to BENCHMARKS.md (and prints it).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
command -v pigz >/dev/null 2>&1 || missing+=(pigz)
[ -x /usr/bin/time ] || missing+=(time)
command -v gzip >/dev/null 2>&1 || missing+=(gzip)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
cargo build --release --bin snapkeep --example gen_db
exec python3 bench/compare.py "$@"
