#!/usr/bin/env bash
# The main job on built-in defaults: set up what is missing, then run it.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec "$root/bin/cbt-harness" run "$@"
