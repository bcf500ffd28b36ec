#!/usr/bin/env bash
# Runs a fuzz target (first argument) on the corpus files that follow, once each: a crash,
# a sanitizer report or a leak fails the test. Not a fuzzing run (tools/fuzz/run_fuzzers.sh).
set -euo pipefail
exec "$@"
