#!/usr/bin/env bash
# The main job: build dist/podpy.pyz from this checkout, then run it. Safe to run repeatedly
# (the build replaces the zipapp atomically); exits non-zero if any step fails.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

PYTHON="${PYTHON:-python3}"

echo "+ $PYTHON build_zipapp.py"
"$PYTHON" build_zipapp.py

echo "+ ./dist/podpy.pyz info"
./dist/podpy.pyz info
