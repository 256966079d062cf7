#!/usr/bin/env bash
# The test command: set up what is missing, then type-check, lint and run every test.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec npm test
