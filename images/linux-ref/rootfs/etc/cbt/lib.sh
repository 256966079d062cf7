# Shared by /init and /bin/cbt-ctl (busybox ash). Disk layout, dm-era set-up and tear-down.
#
# Layout of every tracked data disk (docs/vm-and-guest.md "Disk layout"):
#   bytes [0, META)        dm-era metadata            (cbt-meta-<serial>, dm-linear or dm-flakey)
#   bytes [META, size)     tracked data               (cbt-data-<serial>, dm-linear)
#   era-<serial>           `era <meta> <data> <block sectors>` over the two; /dev/mapper/era-<serial>
# META defaults to 64 MiB (cbt.meta=<MiB>), the era block to 128 sectors = 64 KiB (cbt.block=).

CBT_RUN=/run/cbt

# Messages go to the serial console (captured by the host); cbt-ctl also sends them to its stderr.
cbt_log() {
  [ "${CBT_DEBUG:-0}" = 0 ] || set -- "[$(cut -d' ' -f1 /proc/uptime)]" "$@"
  echo "cbt: $*" >/dev/console 2>/dev/null
  [ -z "$CBT_CTL" ] || echo "cbt: $*" >&2
}

# Reads cbt.* words of the kernel command line into CBT_* variables (once per boot, cached).
cbt_config() {
  if [ -f "$CBT_RUN/config" ]; then . "$CBT_RUN/config"; return; fi
  CBT_DISKS="" CBT_BLOCK=128 CBT_META_MIB=64 CBT_VARIANT=normal CBT_DEBUG=0
  for w in $(cat /proc/cmdline); do
    case "$w" in
      cbt.disks=*) CBT_DISKS="$(echo "${w#*=}" | tr ',' ' ')" ;;
      cbt.block=*) CBT_BLOCK="${w#*=}" ;;
      cbt.meta=*) CBT_META_MIB="${w#*=}" ;;
      cbt.variant=*) CBT_VARIANT="${w#*=}" ;;
      cbt.debug=*) CBT_DEBUG="${w#*=}" ;;
    esac
  done
  # The set-up file (fw_cfg opt/cbt/setup, checked and copied by cbt_setup_read): volumes, tracker.
  CBT_TRACKER=dm-era CBT_TRACKER_VARIANT=normal CBT_VOLUMES="" CBT_CBTF_FILE="" CBT_CBTF_TRACKED="" CBT_CBTF_BLOCK=65536
  [ -f "$CBT_RUN/setup.sh" ] && . "$CBT_RUN/setup.sh"
  mkdir -p "$CBT_RUN"
  cat >"$CBT_RUN/config" <<EOF
CBT_TRACKER="$CBT_TRACKER"
CBT_TRACKER_VARIANT="$CBT_TRACKER_VARIANT"
CBT_VOLUMES="$CBT_VOLUMES"
CBT_CBTF_FILE="$CBT_CBTF_FILE"
CBT_CBTF_TRACKED="$CBT_CBTF_TRACKED"
CBT_CBTF_BLOCK="$CBT_CBTF_BLOCK"
CBT_DISKS="$CBT_DISKS"
CBT_BLOCK="$CBT_BLOCK"
CBT_META_MIB="$CBT_META_MIB"
CBT_VARIANT="$CBT_VARIANT"
CBT_DEBUG="$CBT_DEBUG"
EOF
}

# Serial of a block device as QEMU's `serial=` set it, per bus.
cbt_serial_of() {
  local b="$1"
  case "$b" in
    vd*) cat "/sys/block/$b/serial" 2>/dev/null ;;
    sd*)
      # VPD page 0x80 (unit serial number): 4-byte header, then the serial (space padded).
      [ -r "/sys/block/$b/device/vpd_pg80" ] && dd if="/sys/block/$b/device/vpd_pg80" bs=1 skip=4 2>/dev/null | tr -d '\000' | sed 's/ *$//'
      ;;
    nvme*) sed 's/ *$//' "/sys/block/$b/device/serial" 2>/dev/null ;;
  esac
}

cbt_bus_of() {
  case "$1" in vd*) echo virtio-blk ;; sd*) echo virtio-scsi ;; nvme*) echo nvme ;; *) echo unknown ;; esac
}

# Block device name (vdb, sda, nvme0n1) with this serial, or nothing.
cbt_find_disk() {
  local s="$1" p b
  for p in /sys/block/vd* /sys/block/sd* /sys/block/nvme*; do
    [ -e "$p" ] || continue
    b="${p##*/}"
    [ "$(cbt_serial_of "$b")" = "$s" ] && { echo "$b"; return 0; }
  done
  return 1
}

# Waits up to $2 tenths of a second for the disk (NVMe and SCSI probe asynchronously).
cbt_wait_disk() {
  local s="$1" n="${2:-100}" d
  while :; do
    d="$(cbt_find_disk "$s")" && { echo "$d"; return 0; }
    n=$((n - 1))
    [ "$n" -gt 0 ] || return 1
    usleep 100000
  done
}

# "major:minor" of a dm device, and its /dev/dm-N node (devtmpfs names them by minor).
cbt_dm_mm() { dmsetup info -c --noheadings -o major,minor "$1" 2>/dev/null | tr -d ' '; }
cbt_dm_node() { local mm; mm="$(cbt_dm_mm "$1")" && [ -n "$mm" ] && echo "/dev/dm-${mm#*:}"; }
cbt_dm_exists() { dmsetup info "$1" >/dev/null 2>&1; }

cbt_state_set() { # serial key value
  mkdir -p "$CBT_RUN/disk-$1"
  echo "$3" >"$CBT_RUN/disk-$1/$2"
}
cbt_state_get() { cat "$CBT_RUN/disk-$1/$2" 2>/dev/null; }

# True when the first 4 KiB (the dm-era superblock location) are all zero: dm-era formats such a
# device itself, and only such a device.
cbt_superblock_zero() {
  [ "$(dd if="$1" bs=4096 count=1 2>/dev/null | tr -d '\000' | wc -c)" -eq 0 ]
}

# Removes this serial's dm devices. Removing era-<serial> suspends it first, and dm-era commits its
# metadata on suspend: this is the orderly path. With "force", a device whose disk vanished is
# replaced by an error target so the removal cannot block on it.
cbt_era_down() {
  local s="$1" force="$2" n rc=0
  for n in "era-$s" "cbt-meta-$s" "cbt-data-$s"; do
    cbt_dm_exists "$n" || continue
    if ! dmsetup remove "$n" 2>"$CBT_RUN/err"; then
      if [ "$force" = force ]; then
        dmsetup remove --force "$n" 2>>"$CBT_RUN/err" || { rc=1; cbt_log "dmsetup remove --force $n: $(cat "$CBT_RUN/err")"; }
      else
        rc=1
        cbt_log "dmsetup remove $n: $(cat "$CBT_RUN/err")"
      fi
    fi
  done
  rm -f "/dev/mapper/era-$s" "/dev/mapper/cbt-meta-$s" "/dev/mapper/cbt-data-$s"
  return $rc
}

# Sets up dm-era on the disk with this serial; keeps existing metadata (never reformats a device
# that carries a valid dm-era superblock).
cbt_era_up() {
  local s="$1" dev mm total meta data metadev how
  cbt_config
  cbt_state_set "$s" state starting
  if ! dev="$(cbt_wait_disk "$s" "${2:-100}")"; then
    cbt_state_set "$s" state missing
    cbt_log "era $s: no disk with serial $s"
    return 1
  fi
  mm="$(cat "/sys/block/$dev/dev")"
  total="$(cat "/sys/block/$dev/size")"
  meta=$((CBT_META_MIB * 2048))
  data=$((total - meta))
  if [ "$data" -le 0 ]; then
    cbt_state_set "$s" state failed
    cbt_log "era $s: disk $dev has $total sectors, no room after $meta metadata sectors"
    return 1
  fi
  cbt_era_down "$s" force
  dmsetup create "cbt-meta-$s" --table "0 $meta linear $mm 0" &&
    dmsetup create "cbt-data-$s" --table "0 $data linear $mm $meta" || {
    cbt_state_set "$s" state failed
    cbt_log "era $s: dm-linear set-up failed on $dev ($mm)"
    return 1
  }
  metadev="$(cbt_dm_node "cbt-meta-$s")"
  if cbt_superblock_zero "$metadev"; then
    how=formatted
  elif era_check --super-block-only "$metadev" >"$CBT_RUN/err" 2>&1; then
    how=kept
  else
    how=reinitialised
    cbt_log "era $s: no valid dm-era superblock on $dev ($(head -c 200 "$CBT_RUN/err" | tr '\n' ' ')); zeroing it so dm-era formats"
    dd if=/dev/zero of="$metadev" bs=4096 count=1 conv=fsync 2>/dev/null
  fi
  if [ "$CBT_VARIANT" = drop_writes ]; then
    # Known-bad tracker: the metadata device silently drops every write. A blank area is first
    # formatted through the real device so that it holds a valid (and from then on stale)
    # superblock: after a reboot the tracker loads claims that miss every later write.
    if [ "$how" != kept ]; then
      dmsetup create "era-$s" --table "0 $data era $(cbt_dm_mm "cbt-meta-$s") $(cbt_dm_mm "cbt-data-$s") $CBT_BLOCK" &&
        dmsetup remove "era-$s"
    fi
    # flakey <dev> <offset> <up interval s> <down interval s> 1 drop_writes: up 0 = always down.
    dmsetup load "cbt-meta-$s" --table "0 $meta flakey $mm 0 0 1000000 1 drop_writes" &&
      dmsetup resume "cbt-meta-$s" || {
      cbt_state_set "$s" state failed
      cbt_log "era $s: dm-flakey set-up failed"
      return 1
    }
  fi
  cbt_state_set "$s" dev "$dev"
  cbt_state_set "$s" metadata "$how"
  cbt_state_set "$s" metaSectors "$meta"
  cbt_state_set "$s" dataSectors "$data"
  if [ "$3" = defer ]; then
    # late-attach (known-bad): the volumes are mounted over cbt-data-<serial> first; cbt_era_attach
    # creates the era device afterwards and moves them onto it.
    cbt_state_set "$s" state pending
    return 0
  fi
  cbt_era_attach "$s"
}

# Creates era-<serial> over the metadata and data devices made by cbt_era_up.
cbt_era_attach() {
  local s="$1" data
  data="$(cbt_state_get "$s" dataSectors)"
  if ! dmsetup create "era-$s" --table "0 $data era $(cbt_dm_mm "cbt-meta-$s") $(cbt_dm_mm "cbt-data-$s") $CBT_BLOCK" 2>"$CBT_RUN/err"; then
    cbt_state_set "$s" state failed
    cbt_log "era $s: dmsetup create era failed: $(cat "$CBT_RUN/err")"
    return 1
  fi
  dmsetup mknodes "era-$s" 2>/dev/null
  [ -b "/dev/mapper/era-$s" ] || { mkdir -p /dev/mapper; mknod "/dev/mapper/era-$s" b "$(cbt_dm_mm "era-$s" | tr ':' ' ')"; }
  cbt_state_set "$s" state active
  cbt_log "era $s: active on $(cbt_state_get "$s" dev) (metadata $(cbt_state_get "$s" metadata), variant $(cbt_variant), block $CBT_BLOCK sectors)"
}

# dm-era's variant: cbt.variant= (drop_writes), else the set-up file's (late-attach).
cbt_variant() { if [ "$CBT_VARIANT" = normal ]; then echo "${CBT_TRACKER_VARIANT:-normal}"; else echo "$CBT_VARIANT"; fi; }

# One JSON object describing a tracked disk.
cbt_status_json() {
  local s="$1" st dev era="null" used="null" total="null" line
  st="$(cbt_state_get "$s" state)"
  dev="$(cbt_state_get "$s" dev)"
  if [ "$st" = active ] && line="$(dmsetup status "era-$s" 2>/dev/null)"; then
    # <start> <len> era <metadata block size> <used>/<total> <current era> <held root | ->
    set -- $line
    used="${5%/*}" total="${5#*/}" era="$6"
  fi
  printf '{"serial":"%s","state":"%s","dev":"%s","bus":"%s","era":%s,"metadata":"%s","variant":"%s","blockSectors":%s,"metaSectors":%s,"dataSectors":%s,"metaBlocksUsed":%s,"metaBlocksTotal":%s}\n' \
    "$s" "${st:-unknown}" "$dev" "$(cbt_bus_of "$dev")" "$era" "$(cbt_state_get "$s" metadata)" "$(cbt_variant)" "$CBT_BLOCK" \
    "$(cbt_state_get "$s" metaSectors || echo null)" "$(cbt_state_get "$s" dataSectors || echo null)" "$used" "$total"
}

# Volumes, the Windows shutdown order and the cbtf-ref tracker.
. /etc/cbt/vol.sh
