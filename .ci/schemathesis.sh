#!/usr/bin/env bash
# The HTTP contract, checked by a real client: schemathesis 4 runs every operation of
# /openapi.json with every check against a `ledger serve` on a throwaway SQLite file, with a
# fixed seed and a bounded number of examples. Any failure fails CI.
#
# Usage: .ci/schemathesis.sh [path to the ledger binary]   (default: target/debug/ledger)
set -euo pipefail
cd "$(dirname "$0")/.."

ledger=$(realpath "${1:-target/debug/ledger}" 2>/dev/null || echo "${1:-target/debug/ledger}")
hooks=$(realpath .ci/schemathesis_hooks.py)
seed=${SCHEMATHESIS_SEED:-20261201}
examples=${SCHEMATHESIS_MAX_EXAMPLES:-25}

# Run through python3 rather than the `st` script, which a fresh install may not have put on
# PATH yet (pyenv shims, ~/.local/bin).
st() { python3 -c 'import sys; from schemathesis.cli import schemathesis; sys.argv[0] = "st"; schemathesis()' "$@"; }
if ! python3 -c 'import schemathesis, sys; sys.exit(int(schemathesis.__version__.split(".")[0]) != 4)' 2>/dev/null; then
  echo "schemathesis: installing schemathesis 4 with pip"
  python3 -m pip install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi
st --version
if [ ! -x "$ledger" ]; then
  cargo build --quiet --bin ledger
  ledger=$(realpath target/debug/ledger)
fi

work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

export LEDGER_ADMIN_TOKEN="ci-schemathesis-$RANDOM$RANDOM"
"$ledger" --database-url "sqlite://$work/ledger.db" serve --listen 127.0.0.1:0 \
  >"$work/serve.out" 2>"$work/serve.err" &
server=$!
addr=
for _ in $(seq 1 100); do
  addr=$(sed -n 's/.*"listening":"\([^"]*\)".*/\1/p' "$work/serve.out" 2>/dev/null | head -n 1)
  [ -n "$addr" ] && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$addr" ]; then
  echo "schemathesis: the server did not start" >&2
  cat "$work/serve.err" >&2
  exit 1
fi

echo "schemathesis: checking http://$addr/openapi.json (seed $seed, $examples examples per operation)"
started=$(date +%s)
status=0
# One worker: schemathesis' coverage phase is not thread-safe on every Python.
# The admin token goes to the document's `bearer` scheme, so that requests without it are
# tested too (they must get 401).
cat >"$work/schemathesis.toml" <<'TOML'
[auth.openapi.bearer]
bearer = "${LEDGER_ADMIN_TOKEN}"
TOML
# From the temporary directory, so that schemathesis' own files stay out of the tree.
cd "$work"
SCHEMATHESIS_HOOKS=$hooks st --config-file "$work/schemathesis.toml" \
  run "http://$addr/openapi.json" \
  --checks all \
  --seed "$seed" \
  --max-examples "$examples" \
  --workers 1 \
  --request-timeout 20 \
  --no-color \
  --report junit --report-dir "$work/report" || status=$?
echo "schemathesis: finished in $(( $(date +%s) - started ))s with exit code $status"
if [ "$status" -ne 0 ]; then
  echo "schemathesis: FAILED: the server and /openapi.json disagree (see above); server log:" >&2
  tail -n 50 "$work/serve.err" >&2
  exit 1
fi
if ! kill -0 "$server" 2>/dev/null; then
  echo "schemathesis: FAILED: the server exited during the run" >&2
  tail -n 50 "$work/serve.err" >&2
  exit 1
fi
echo "schemathesis: 0 failures"
