#!/usr/bin/env bash
# The main job: set up, build demo logs, ingest them, run rules and scoring, start the dashboard.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --no-dev
exec .venv/bin/detector demo "$@"
