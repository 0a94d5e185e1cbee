#!/usr/bin/env bash
# Checks the TypeScript client: installs the pinned packages (npm ci), regenerates src/gen with buf and
# fails if it differs from what is committed, type-checks and compiles, then runs the end-to-end test
# (Node's test runner) against a freshly built `chainbroker sandbox`.
# Needs go (buf runs as `go tool buf`), node >= 20 and npm; run from anywhere.
set -euo pipefail
cd "$(dirname "$0")"

echo "== npm ci"
npm ci --no-audit --no-fund --loglevel=error

echo "== generate (buf + protoc-gen-es)"
npm run --silent generate
if [ -n "$(git status --porcelain -- src/gen)" ]; then
  echo "clients/ts/src/gen is stale: run 'npm run generate' in clients/ts and commit the result"
  git status --porcelain -- src/gen
  git --no-pager diff --stat -- src/gen
  exit 1
fi

echo "== build and test"
npm test --loglevel=error
