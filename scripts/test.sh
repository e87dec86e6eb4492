#!/usr/bin/env bash
# The test command (README, .ci/run): build, types, lint, package tarballs,
# then every test, closing on one "N passed, N failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1
pnpm exec turbo run build typecheck
pnpm exec biome check .
node scripts/pack-check.mjs
rm -f .test-report.json
status=0
pnpm exec vitest run --reporter=default --reporter=json --outputFile=.test-report.json || status=$?
node scripts/test-summary.mjs .test-report.json
exit "$status"
