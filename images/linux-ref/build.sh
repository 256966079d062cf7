#!/usr/bin/env bash
# Builds the reference Linux guest from Debian packages already downloaded with `apt-get download`
# (src/guest/linux-ref-image.ts resolves the versions, downloads and caches; this script only
# assembles). No network. Host tools: dpkg-deb, depmod/modprobe (kmod), cpio, mke2fs, xz, and the
# compressor named by CBT_COMPRESS.
#
# Environment:
#   CBT_RECIPE    this folder (packages.txt, modules.txt, rootfs/)
#   CBT_DEBS      file of lines "<layer> <path.deb>" (layers: kernel, base, tools)
#   CBT_OUT       empty output folder: vmlinux, vmlinuz, initrd.img, tools.img, kernel-release
#   CBT_WORK      empty scratch folder
#   CBT_COMPRESS  initramfs compression: none | gzip | lz4 | zstd | xz   (default: none)
#   CBT_TOOLS     1 to build tools.img (fio and its libraries), 0 to skip (default: 1)
#
# Steps:
#   1. unpack each layer's packages into its own staging tree (dpkg-deb -x, no maintainer scripts)
#   2. kernel: copy vmlinuz, extract the uncompressed ELF vmlinux (PVH entry: QEMU loads it
#      directly, skipping the bzImage decompressor, which is slow under TCG), depmod the tree
#   3. modules: expand modules.txt with `modprobe --show-depends`, copy the .ko files, strip
#      their appended signatures (verifying them under TCG costs boot time; the guest kernel does
#      not enforce signatures), write the insmod order, depmod the initramfs tree
#   4. binaries + shared libraries: resolve each binary's libraries with the staged loader
#      (`ld.so --library-path <staging dirs> --list`): a library that does not resolve inside the
#      staging tree is an error naming the soname — never a silent fall-back to the host's
#   5. rootfs skeleton (init, cbt-ctl, …), then the cpio archive (newc, owner root, sorted)
#   6. tools.img: fio and its libraries in an ext2 image (read-only disk, mounted on demand)
set -euo pipefail

: "${CBT_RECIPE:?}" "${CBT_DEBS:?}" "${CBT_OUT:?}" "${CBT_WORK:?}"
COMPRESS="${CBT_COMPRESS:-none}"
TOOLS="${CBT_TOOLS:-1}"
export LC_ALL=C

die() { echo "build.sh: $*" >&2; exit 1; }
for t in dpkg-deb depmod modprobe cpio xz mke2fs; do
  command -v "$t" >/dev/null || die "host tool '$t' not found (apt-get install kmod cpio xz-utils e2fsprogs dpkg)"
done

W="$CBT_WORK"
mkdir -p "$W/kernel" "$W/base" "$W/tools" "$W/root"

# 1. unpack
while read -r layer deb; do
  [ -n "$layer" ] || continue
  [ -f "$deb" ] || die "missing package file $deb"
  dpkg-deb -x "$deb" "$W/$layer"
done <"$CBT_DEBS"

# 2. kernel
kver="$(find "$W/kernel/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort | sed -n 1p)"
[ -n "$kver" ] || die "no lib/modules/<version> in the kernel package"
[ -f "$W/kernel/boot/vmlinuz-$kver" ] || die "no boot/vmlinuz-$kver in the kernel package"
cp "$W/kernel/boot/vmlinuz-$kver" "$CBT_OUT/vmlinuz"
cp "$W/kernel/boot/config-$kver" "$CBT_OUT/config"
echo "$kver" >"$CBT_OUT/kernel-release"
# The bzImage payload is one xz stream (Debian: CONFIG_KERNEL_XZ=y); its offset is that of the
# xz magic FD 37 7A 58 5A 00. --single-stream stops at the stream's end (padding follows).
off="$(grep -m1 -obUaP '\xfd7zXZ\x00' "$CBT_OUT/vmlinuz" | sed -n '1s/:.*//p')"
[ -n "$off" ] || die "no xz payload in vmlinuz-$kver (is CONFIG_KERNEL_XZ still set?)"
tail -c "+$((off + 1))" "$CBT_OUT/vmlinuz" | xz -dc --single-stream >"$CBT_OUT/vmlinux" 2>/dev/null || true
[ "$(od -An -tx1 -N 4 "$CBT_OUT/vmlinux" | tr -d ' \n')" = 7f454c46 ] || die "extracted vmlinux is not an ELF file"
depmod -b "$W/kernel" "$kver"

# 3. modules
R="$W/root"
mkdir -p "$R/etc/cbt" "$R/lib/modules/$kver"
: >"$R/etc/cbt/modules.early"
: >"$R/etc/cbt/modules.boot"
strip_sig() {
  # Appended signature layout (scripts/sign-file.c): module | PKCS#7 | struct module_signature
  # (12 bytes; sig_len big-endian in the last 4) | "~Module signature appended~\n" (28 bytes).
  local f="$1" size tail_magic siglen
  size=$(stat -c %s "$f")
  tail_magic="$(tail -c 28 "$f")"
  [ "$tail_magic" = "~Module signature appended~" ] || return 0
  siglen=$((16#$(od -An -tx1 -j $((size - 32)) -N 4 "$f" | tr -d ' \n')))
  truncate -s $((size - 28 - 12 - siglen)) "$f"
}
while read -r kind mod; do
  case "$kind" in ''|\#*) continue ;; early|boot|lazy) ;; *) die "modules.txt: unknown kind '$kind'" ;; esac
  deps="$(modprobe -d "$W/kernel" -S "$kver" --show-depends "$mod")" || die "module $mod not found in kernel $kver"
  while read -r verb path _; do
    [ "$verb" = insmod ] || continue
    rel="${path#"$W/kernel/lib/modules/$kver/"}"
    if [ ! -f "$R/lib/modules/$kver/$rel" ]; then
      mkdir -p "$(dirname "$R/lib/modules/$kver/$rel")"
      cp "$path" "$R/lib/modules/$kver/$rel"
      strip_sig "$R/lib/modules/$kver/$rel"
    fi
    # A module goes to the first load list that needs it; lazy ones are only shipped.
    # (No `cat … | grep -q` here: with pipefail, grep quitting early can fail the pipeline.)
    if [ "$kind" != lazy ] && ! grep -qxF "$rel" "$R/etc/cbt/modules.early" "$R/etc/cbt/modules.boot"; then
      echo "$rel" >>"$R/etc/cbt/modules.$kind"
    fi
  done <<<"$deps"
done <"$CBT_RECIPE/modules.txt"
cp "$W/kernel/lib/modules/$kver/modules.order" "$W/kernel/lib/modules/$kver/modules.builtin"* "$R/lib/modules/$kver/" 2>/dev/null || true
depmod -b "$R" "$kver"
cat "$R/etc/cbt/modules.early" "$R/etc/cbt/modules.boot" >"$CBT_OUT/modules.load"

# 4. binaries and their libraries
B="$W/base"
libdirs() { # staging library folders, as the guest's loader searches them
  local s="$1"
  echo "$s/lib/x86_64-linux-gnu:$s/usr/lib/x86_64-linux-gnu:$s/usr/lib/x86_64-linux-gnu/ceph:$s/lib:$s/usr/lib"
}
# copy_bin STAGING DEST BINARY...: each binary and the libraries it needs, resolved in STAGING.
copy_bin() {
  local s="$1" d="$2" b lib line
  shift 2
  local ldso="$s/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
  [ -f "$ldso" ] || die "no dynamic loader in the staging tree $s (is libc6 in packages.txt?)"
  for b in "$@"; do
    [ -f "$s/$b" ] || die "binary /$b not found in its packages"
    mkdir -p "$d/$(dirname "$b")"
    cp -P "$s/$b" "$d/$b"
    if ! out="$("$ldso" --library-path "$(libdirs "$s")" --list "$s/$b" 2>&1)"; then
      case "$out" in *"not a dynamic executable"*) continue ;; esac
      die "ld.so --list /$b failed: $out"
    fi
    while read -r line; do
      case "$line" in
        *"=> not found"*) die "/$b needs ${line%% *}, which no package in packages.txt provides" ;;
        *"=>"*) lib="$(echo "$line" | awk '{print $3}')" ;;
        *) continue ;;
      esac
      case "$lib" in
        "$s"/*) ;;
        /*) die "/$b: ${line%% *} resolved outside the staging tree ($lib); add its package to packages.txt" ;;
        *) continue ;;
      esac
      rel="${lib#"$s"/}"
      if [ ! -e "$d/$rel" ]; then
        mkdir -p "$d/$(dirname "$rel")"
        cp -L "$lib" "$d/$rel"
      fi
    done <<<"$out"
  done
  mkdir -p "$d/lib/x86_64-linux-gnu" "$d/lib64"
  cp -L "$ldso" "$d/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
  ln -sf /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$d/lib64/ld-linux-x86-64.so.2"
}

mkdir -p "$R/bin" "$R/sbin" "$R/usr/bin" "$R/usr/sbin"
cp "$B/bin/busybox" "$R/bin/busybox"
# One symlink per applet (busybox-static runs on the build host: it is a static binary).
for applet in $("$B/bin/busybox" --list); do
  [ -e "$R/bin/$applet" ] || ln -s busybox "$R/bin/$applet"
done
copy_bin "$B" "$R" usr/sbin/dropbear usr/bin/dropbearkey sbin/dmsetup usr/sbin/pdata_tools
for tool in era_check era_dump era_invalidate era_restore thin_check; do
  ln -sf pdata_tools "$R/usr/sbin/$tool"
done
# Volumes (GPT, NTFS through ntfs-3g, ext4) and perl for cbtf-tool. Called by full path where
# busybox has an applet of the same name (mke2fs): busybox's links are in /bin, first in PATH.
copy_bin "$B" "$R" bin/ntfs-3g bin/ntfsinfo sbin/mkntfs sbin/ntfsresize sbin/mke2fs sbin/resize2fs sbin/sgdisk usr/bin/perl
mkdir -p "$R/etc"
cp "$B/etc/mke2fs.conf" "$R/etc/mke2fs.conf"

# 5. skeleton and archive
cp -a "$CBT_RECIPE/rootfs/." "$R/"
chmod 0755 "$R/init" "$R/cbt-probe" "$R/bin/cbt-ctl" "$R/usr/bin/cbtf-tool" "$R/usr/bin/fio" "$R/etc/acpi/PWRF/00000080"
mkdir -p "$R/dev" "$R/proc" "$R/sys" "$R/run" "$R/tmp" "$R/root/.ssh" "$R/var/log" "$R/mnt/tools" "$R/etc/dropbear"
chmod 0700 "$R/root" "$R/root/.ssh"
chmod 1777 "$R/tmp"
echo "$kver" >"$R/etc/cbt/kernel-release"
# Fixed mtimes so the archive depends only on its inputs.
find "$R" -exec touch -h -d @0 {} +
case "$COMPRESS" in
  none) comp=(cat) ;;
  gzip) comp=(gzip -n -6) ;;
  lz4) comp=(lz4 -l -9 -q) ;;   # -l: the legacy frame format, the only one the kernel unpacks
  zstd) comp=(zstd -q -19 -T0) ;;
  xz) comp=(xz --check=crc32 -T0) ;;  # the kernel's xz unpacker accepts crc32, not crc64
  *) die "CBT_COMPRESS must be none, gzip, lz4, zstd or xz, got '$COMPRESS'" ;;
esac
(cd "$R" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --reproducible --quiet) | "${comp[@]}" >"$CBT_OUT/initrd.img"

# 6. tools disk
if [ "$TOOLS" = 1 ]; then
  T="$W/tools-root"
  mkdir -p "$T"
  copy_bin "$W/tools" "$T" usr/bin/fio
  echo "tools-$kver" >"$T/CBT-TOOLS"
  find "$T" -exec touch -h -d @0 {} +
  kib=$(( $(du -sk "$T" | cut -f1) * 11 / 10 + 4096 ))
  E2FSPROGS_FAKE_TIME=0 mke2fs -q -F -t ext2 -L cbt-tools -U clear -E root_owner=0:0,hash_seed=00000000-0000-0000-0000-000000000000 \
    -d "$T" "$CBT_OUT/tools.img" "${kib}k"
fi
echo "build.sh: kernel $kver, initrd $(stat -c %s "$CBT_OUT/initrd.img") bytes ($COMPRESS)" >&2
