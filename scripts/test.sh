#!/usr/bin/env bash
# The whole test suite, slow and browser tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
