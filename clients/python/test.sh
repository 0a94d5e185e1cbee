#!/usr/bin/env bash
# Checks the Python client: regenerates gen/ with buf (protoc's Python generator and grpc_python_plugin) and
# fails if it differs from what is committed, then runs the unit tests and the end-to-end test against a
# freshly built `chainbroker sandbox` (Python's unittest). The last line is "# pass N" (tests run and passed).
# Needs go (buf runs as `go tool buf`) and Debian's protobuf-compiler, protobuf-compiler-grpc, python3-grpcio,
# python3-protobuf and openssl (apt-get install ...); run from anywhere.
# PYTHON overrides the interpreter (default /usr/bin/python3, the one Debian's packages install into).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-/usr/bin/python3}

for tool in protoc grpc_python_plugin; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool missing: apt-get install protobuf-compiler protobuf-compiler-grpc"
    exit 1
  fi
done

echo "== generate (buf + protoc python + grpc_python_plugin)"
(cd ../.. && go tool buf generate --template clients/python/buf.gen.yaml)
if [ -n "$(git status --porcelain -- gen)" ]; then
  echo "clients/python/gen is stale: run 'make generate-py' and commit the result"
  git status --porcelain -- gen
  git --no-pager diff --stat -- gen
  exit 1
fi

echo "== test ($PYTHON)"
"$PYTHON" --version
log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
PYTHONPATH=".:gen${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 \
  "$PYTHON" -m unittest discover -s tests -t . -v >"$log" 2>&1 || rc=$?
cat "$log"
[ "$rc" -eq 0 ] || exit "$rc"
# The run passed (exit 0, "OK"): every test it ran passed unless one was skipped or an expected failure,
# which fails the run. "Ran N tests" counts test methods (subTests of one method count once).
if grep -qE '(\.\.\. skipped|skipped=[0-9]|expected failure)' "$log"; then
  echo "Python client tests were skipped"
  exit 1
fi
ran=$(sed -nE 's/^Ran ([0-9]+) tests? in .*/\1/p' "$log")
if [ -z "$ran" ] || [ "$ran" -eq 0 ] || ! grep -qxE 'OK' "$log"; then
  echo "no Python client test ran"
  exit 1
fi
echo "# pass $ran"
