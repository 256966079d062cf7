# Sourced by lib.sh (busybox ash). Volumes with file systems on the data disks, the shutdown phases
# and tracker hooks, and the cbtf-ref tracker (images/linux-ref/README.md "Set-up file",
# "Volumes", "cbtf-ref").
#
# The "space" of a disk holds its GPT: for dm-era the era device (era-<serial>, the data area after
# the dm-era metadata; cbt-data-<serial> before the era device exists in the late-attach variant),
# for cbtf-ref and none the whole raw disk. Volume <serial>p<N> is dm-linear vol-<serial>p<N> over
# the space at the partition's offset (dm devices have no partition scanning); mounted at
# /mnt/<serial>p<N>. Per-volume state: /run/cbt/vol-<id>/{serial,part,fs,start,size,mount,...}.

CBT_CBTF="$CBT_RUN/cbtf"

# Reads fw_cfg opt/cbt/setup (after qemu_fw_cfg is loaded): shell assignments with values only of
# [A-Za-z0-9:/._ -]; comments stripped. A malformed line is logged and the file ignored.
cbt_setup_read() {
  local f=/sys/firmware/qemu_fw_cfg/by_name/opt/cbt/setup/raw
  [ -r "$f" ] || return 0
  sed -e 's/#.*$//' -e 's/[[:space:]]*$//' -e '/^[[:space:]]*$/d' "$f" >"$CBT_RUN/setup.in"
  if grep -qvE '^(CBT_TRACKER|CBT_TRACKER_VARIANT|CBT_VOLUMES|CBT_CBTF_FILE|CBT_CBTF_TRACKED|CBT_CBTF_BLOCK)=("[A-Za-z0-9:/._ -]*"|[A-Za-z0-9:/._-]*)$' "$CBT_RUN/setup.in"; then
    cbt_log "set-up file rejected (only CBT_*=value lines, values of [A-Za-z0-9:/._ -]): $(grep -vE '^[A-Z_]+=' "$CBT_RUN/setup.in" | head -n 3 | tr '\n' ' ')"
    return 1
  fi
  mv "$CBT_RUN/setup.in" "$CBT_RUN/setup.sh"
  rm -f "$CBT_RUN/config"
}

cbt_has_setup() { [ -f "$CBT_RUN/setup.sh" ]; }

cbt_uptime() { cut -d' ' -f1 /proc/uptime; }

# CBT-PHASE marker on the console; also collected for the JSON answer (cbt_phases_json).
cbt_phase() {
  local u
  u="$(cbt_uptime)"
  echo "CBT-PHASE $1 $u" >/dev/console 2>/dev/null
  printf '{"phase":"%s","uptime":%s}\n' "$1" "$u" >>"$CBT_RUN/phases.$$"
}
cbt_phases_json() {
  printf '[%s]' "$(paste -sd, "$CBT_RUN/phases.$$" 2>/dev/null)"
  rm -f "$CBT_RUN/phases.$$"
}

cbt_volid() { echo "${1%%:*}p${1#*:}"; }                       # data0:2 -> data0p2
cbt_vol_entries() { for e in $CBT_VOLUMES; do echo "$e"; done; }  # serial:part:fs:bytes
cbt_vol_disks() { cbt_vol_entries | cut -d: -f1 | awk '!seen[$0]++'; }
cbt_vols() { # [SERIAL]: volume ids in CBT_VOLUMES order
  cbt_vol_entries | while IFS=: read -r s p f b; do [ -z "$1" ] || [ "$1" = "$s" ] && echo "${s}p$p"; done
}
cbt_vset() { mkdir -p "$CBT_RUN/vol-$1"; echo "$3" >"$CBT_RUN/vol-$1/$2"; }
cbt_vget() { cat "$CBT_RUN/vol-$1/$2" 2>/dev/null; }
cbt_is_vol() { [ -d "$CBT_RUN/vol-$1" ]; }
# Every serial cbt-ctl knows: dm-era's disks and the disks holding volumes.
cbt_known_disks() { { for s in $CBT_DISKS; do echo "$s"; done; cbt_vol_disks; } | awk '!seen[$0]++'; }
cbt_era_disk() {
  local x
  [ "$CBT_TRACKER" = dm-era ] || return 1
  for x in $CBT_DISKS; do [ "$x" = "$1" ] && return 0; done
  return 1
}
cbt_late() { [ "$CBT_TRACKER_VARIANT" = late-attach ]; }

cbt_mknode() { # dm name -> /dev/mapper/name
  dmsetup mknodes "$1" 2>/dev/null
  [ -b "/dev/mapper/$1" ] || mknod "/dev/mapper/$1" b $(cbt_dm_mm "$1" | tr ':' ' ')
}
# Creates or reloads dm device NAME with TABLE (a live device is suspended, swapped, resumed).
cbt_dm_set() {
  if cbt_dm_exists "$1"; then
    dmsetup load "$1" --table "$2" && dmsetup resume "$1"
  else
    dmsetup create "$1" --table "$2" && cbt_mknode "$1"
  fi
}
cbt_dm_rm() { cbt_dm_exists "$1" || return 0; dmsetup remove "$1" 2>"$CBT_RUN/err" || dmsetup remove --force "$1" 2>>"$CBT_RUN/err" || { cbt_log "dmsetup remove $1: $(cat "$CBT_RUN/err")"; return 1; }; rm -f "/dev/mapper/$1"; }

# The space of disk $1: sets sp_dev (a device node) and sp_mm (major:minor).
cbt_space() {
  local n d
  if cbt_era_disk "$1"; then
    n="era-$1"
    cbt_dm_exists "$n" || n="cbt-data-$1"
    sp_mm="$(cbt_dm_mm "$n")" && [ -n "$sp_mm" ] || { cbt_log "volumes $1: no dm-era space (tracking $(cbt_state_get "$1" state))"; return 1; }
    sp_dev="$(cbt_dm_node "$n")"
  else
    d="$(cbt_wait_disk "$1" 100)" || { cbt_log "volumes $1: no disk with serial $1"; return 1; }
    cbt_state_set "$1" dev "$d"
    sp_dev="/dev/$d" sp_mm="$(cat "/sys/block/$d/dev")"
  fi
}

# GPT of disk $1 (made on the first boot), file systems, vol- devices over the space.
cbt_vols_layout() {
  local s="$1" e p f b args="" fresh=0 info first last v code
  cbt_space "$s" || return 1
  if [ "$(dd if="$sp_dev" bs=512 skip=1 count=1 2>/dev/null | head -c 8)" != "EFI PART" ]; then
    for e in $(cbt_vol_entries | grep "^$s:"); do
      IFS=: read -r _ p f b <<EOF
$e
EOF
      [ "$f" = ntfs ] && code=0700 || code=8300
      if [ "$b" = 0 ]; then args="$args -n $p:0:0"; else args="$args -n $p:0:+$((b / 512))"; fi
      args="$args -t $p:$code"
    done
    sgdisk $args "$sp_dev" >"$CBT_RUN/err" 2>&1 || { cbt_log "volumes $s: sgdisk$args failed: $(tail -n 3 "$CBT_RUN/err" | tr '\n' ' ')"; return 1; }
    fresh=1
    cbt_log "volumes $s: GPT made on $sp_dev:$args"
  fi
  for e in $(cbt_vol_entries | grep "^$s:"); do
    IFS=: read -r _ p f b <<EOF
$e
EOF
    v="${s}p$p"
    info="$(sgdisk -i "$p" "$sp_dev" 2>/dev/null)"
    first="$(echo "$info" | sed -n 's/^First sector: \([0-9]*\).*/\1/p')"
    last="$(echo "$info" | sed -n 's/^Last sector: \([0-9]*\).*/\1/p')"
    [ -n "$first" ] && [ -n "$last" ] || { cbt_log "volumes $s: no partition $p in the GPT of $sp_dev"; return 1; }
    cbt_vset "$v" serial "$s"
    cbt_vset "$v" part "$p"
    cbt_vset "$v" fs "$f"
    cbt_vset "$v" bytes "$b"
    cbt_vset "$v" start $((first * 512))
    cbt_vset "$v" size $(((last - first + 1) * 512))
    cbt_vset "$v" guid "$(echo "$info" | sed -n 's/^Partition unique GUID: \([0-9A-Fa-f-]*\).*/\1/p')"
    cbt_vset "$v" code "$(echo "$info" | sed -n 's/^Partition GUID code: \([0-9A-Fa-f-]*\).*/\1/p')"
    if cbt_era_disk "$s" || { [ "$CBT_TRACKER" = cbtf-ref ] && [ "$v" = "$(cbt_volid "$CBT_CBTF_TRACKED")" ]; }; then
      cbt_vset "$v" tracked true
    else
      cbt_vset "$v" tracked false
    fi
    [ -f "$CBT_RUN/vol-$v/mount" ] || cbt_vset "$v" mount ""
    cbt_dm_set "vol-$v" "0 $((last - first + 1)) linear $sp_mm $first" || { cbt_log "volumes $v: dm-linear failed"; return 1; }
    [ "$fresh" = 1 ] && { cbt_mkfs "$v" || return 1; }
  done
  return 0
}

cbt_mkfs() {
  local v="$1" dev="/dev/mapper/vol-$1"
  case "$(cbt_vget "$v" fs)" in
    ntfs) mkntfs -F -Q -q -s 512 -c 4096 "$dev" >"$CBT_RUN/err" 2>&1 ;;
    ext4) /sbin/mke2fs -t ext4 -F -q -E lazy_itable_init=0,lazy_journal_init=0 "$dev" >"$CBT_RUN/err" 2>&1 ;;
    *) return 0 ;;
  esac || { cbt_log "volumes $v: mkfs failed: $(tail -n 3 "$CBT_RUN/err" | tr '\n' ' ')"; return 1; }
}

cbt_mounted() { grep -q " /mnt/$1 " /proc/mounts; }

cbt_vol_mount() {
  local v="$1" dev="/dev/mapper/vol-$1" m="/mnt/$1"
  cbt_mounted "$v" && return 0
  mkdir -p "$m"
  case "$(cbt_vget "$v" fs)" in
    ext4) modprobe ext4 2>/dev/null; mount -t ext4 "$dev" "$m" 2>"$CBT_RUN/err" ;;
    ntfs) modprobe fuse 2>/dev/null; ntfs-3g "$dev" "$m" 2>"$CBT_RUN/err" ;;
    *) return 0 ;;
  esac || { cbt_log "volumes $v: mount failed: $(cat "$CBT_RUN/err")"; return 1; }
  cbt_vset "$v" mount "$m"
}

# Unmounts; for ntfs-3g waits until its process has exited (it writes the volume at unmount).
cbt_vol_umount() {
  local v="$1" n=300
  cbt_mounted "$v" || { cbt_vset "$v" mount ""; return 0; }
  umount "/mnt/$v" 2>"$CBT_RUN/err" || { cbt_log "volumes $v: umount failed: $(cat "$CBT_RUN/err")"; return 1; }
  while pgrep -f "ntfs-3g /dev/mapper/vol-$v " >/dev/null 2>&1 && [ $n -gt 0 ]; do usleep 50000; n=$((n - 1)); done
  cbt_vset "$v" mount ""
}

# Disk $1's volumes up: layout, tracker load (cbtf-ref), mounts, late attach.
cbt_disk_vols_up() {
  local s="$1" v rc=0 tv ts
  cbt_vols_layout "$s" || return 1
  if [ "$CBT_TRACKER" = cbtf-ref ]; then
    ts="${CBT_CBTF_TRACKED%%:*}"
    [ "$ts" = "$s" ] && { cbtf_load || rc=1; }
  fi
  [ "${CBT_DEBUG:-0}" = 0 ] || cbt_log "volumes $s: laid out"
  for v in $(cbt_vols "$s"); do cbt_vol_mount "$v" || rc=1; [ "${CBT_DEBUG:-0}" = 0 ] || cbt_log "volumes $v: mounted"; done
  if cbt_late; then
    if cbt_era_disk "$s" && [ "$(cbt_state_get "$s" state)" = pending ]; then
      cbt_era_attach "$s" || rc=1
      for v in $(cbt_vols "$s"); do
        cbt_dm_set "vol-$v" "0 $(($(cbt_vget "$v" size) / 512)) linear $(cbt_dm_mm "era-$s") $(($(cbt_vget "$v" start) / 512))" || rc=1
      done
      cbt_log "era $s: attached after mounting (late-attach)"
    fi
    [ "$CBT_TRACKER" = cbtf-ref ] && [ "$ts" = "$s" ] && [ "$(cbtf_val state)" = pending ] && { cbtf_attach || rc=1; }
  fi
  [ "$CBT_TRACKER" = dm-era ] && cbt_era_disk "$s" || cbt_state_set "$s" state active
  return $rc
}

# Unmounts disk $1's volumes (every disk when $1 is empty).
cbt_vols_umount() {
  local v rc=0
  for v in $(cbt_vols "$1" | sort -r); do cbt_vol_umount "$v" || rc=1; done
  return $rc
}
cbt_vols_remove() {
  local v
  for v in $(cbt_vols "$1" | sort -r); do cbt_dm_rm "vol-$v"; done
}

# Tracker hooks: pre-fs (IoRegisterShutdownNotification), post-fs (IRP_MJ_SHUTDOWN), offline
# (IOCTL_VOLUME_OFFLINE), remove (orderly removal). dm-era has none (it commits on removal).
cbt_hook() { # name [serial]
  [ "$CBT_TRACKER" = cbtf-ref ] || return 0
  cbtf_hook "$@"
}

cbt_lazy_writer_off() {
  # dirty pages reach the disk only at fsync/sync/unmount: no flusher thread wakes up on its own,
  # so what an unmount writes is certain (docs/vm-and-guest.md "Volumes").
  echo 0 >/proc/sys/vm/dirty_writeback_centisecs
  echo 2000000000 >/proc/sys/vm/dirty_expire_centisecs
  echo 80 >/proc/sys/vm/dirty_background_ratio
  echo 90 >/proc/sys/vm/dirty_ratio
}

# Boot: volumes on every disk, tracker loaded before any write passes (late-attach aside).
cbt_volumes_boot() {
  local s
  [ -n "$CBT_VOLUMES" ] || return 0
  ln -sf /proc/mounts /etc/mtab 2>/dev/null
  # cbtf-ref's file volume must be laid out before the tracker loads (it may be another disk).
  if [ "$CBT_TRACKER" = cbtf-ref ]; then
    s="${CBT_CBTF_FILE%%:*}"
    [ "$s" = "${CBT_CBTF_TRACKED%%:*}" ] || cbt_vols_layout "$s"
  fi
  for s in $(cbt_vol_disks); do cbt_disk_vols_up "$s" || true; done
  cbt_log "volumes: set up"
}

cbt_vol_json() {
  local v="$1" m
  m="$(cbt_vget "$v" mount)"
  [ -n "$m" ] && m="\"$m\"" || m=null
  printf '{"volume":"%s","serial":"%s","part":%s,"fs":"%s","start":%s,"size":%s,"mount":%s,"tracked":%s}' \
    "$v" "$(cbt_vget "$v" serial)" "$(cbt_vget "$v" part)" "$(cbt_vget "$v" fs)" "$(cbt_vget "$v" start)" "$(cbt_vget "$v" size)" "$m" "$(cbt_vget "$v" tracked)"
}

# ---------------------------------------------------------------------------------------------
# cbtf-ref: dm-era over the tracked volume with its metadata on a brd RAM disk (the in-memory
# bitmap), persisted by cbtf-tool raw through the CBTF file's extents (docs/cbtf.md).
# State in /run/cbt/cbtf/: one file per key (state generation sequence epoch flags baseEra
# loadBlocks serial), extents ("fileoff diskoff length", bytes of the raw disk), base (blocks).

cbtf_put() { mkdir -p "$CBT_CBTF"; echo "$2" >"$CBT_CBTF/$1"; }
cbtf_val() { cat "$CBT_CBTF/$1" 2>/dev/null; }
cbtf_vars() {
  TV="$(cbt_volid "$CBT_CBTF_TRACKED")" TS="${CBT_CBTF_TRACKED%%:*}"
  FS="${CBT_CBTF_FILE%%:*}"
  local r="${CBT_CBTF_FILE#*:}"
  FV="${FS}p${r%%:*}" FPATH="${r#*:}"
  local n="$CBT_CBTF_BLOCK"
  SHIFT=0
  while [ "$n" -gt 1 ]; do n=$((n / 2)); SHIFT=$((SHIFT + 1)); done
  BSECT=$((CBT_CBTF_BLOCK / 512))
}
cbtf_fail() { cbtf_put state failed; cbt_log "cbtf-ref: $*"; return 1; }
cbtf_raw() { echo "/dev/$(cbt_find_disk "$1")"; }

# Bytes of the bitmap for a volume of $1 bytes.
cbtf_bitmap_bytes() { echo $(((($1 + CBT_CBTF_BLOCK - 1) / CBT_CBTF_BLOCK + 7) / 8)); }

cbtf_preallocate() {
  local dev="/dev/mapper/vol-$FV" m="/mnt/$FV" need area
  need="$(cbtf_bitmap_bytes "$(cbt_vget "$TV" size)")"
  area=$((need * 2)); [ "$area" -ge 1048576 ] || area=1048576
  area=$(((area + 4095) / 4096))
  mkdir -p "$m"
  modprobe fuse 2>/dev/null
  ntfs-3g "$dev" "$m" 2>"$CBT_RUN/err" || { cbtf_fail "mount $FV to pre-allocate: $(cat "$CBT_RUN/err")"; return 1; }
  mkdir -p "$m$(dirname "$FPATH")" &&
    dd if=/dev/zero of="$m$FPATH" bs=4096 count=$((1 + area)) conv=fsync 2>"$CBT_RUN/err"
  local rc=$?
  cbt_vset "$FV" mount "$m"
  cbt_vol_umount "$FV"
  [ $rc = 0 ] || { cbtf_fail "pre-allocating $FPATH on $FV: $(cat "$CBT_RUN/err")"; return 1; }
  cbt_log "cbtf-ref: pre-allocated $FPATH on $FV ($((4096 + area * 4096)) bytes)"
}

# The file's extents from the file system (ntfsinfo: the $DATA runlist), as raw-disk bytes.
cbtf_locate() {
  local dev="/dev/mapper/vol-$FV" cs start vcn lcn len res flags
  # ntfsinfo exits 0 for a missing file too ("Error loading node" on stderr): look at its output.
  ntfsinfo -F "$FPATH" -v "$dev" >"$CBT_CBTF/ntfsinfo" 2>"$CBT_RUN/err"
  if ! grep -q '^Dumping Inode' "$CBT_CBTF/ntfsinfo"; then
    cbtf_preallocate || return 1
    ntfsinfo -F "$FPATH" -v "$dev" >"$CBT_CBTF/ntfsinfo" 2>"$CBT_RUN/err"
    grep -q '^Dumping Inode' "$CBT_CBTF/ntfsinfo" || { cbtf_fail "ntfsinfo $FPATH: $(cat "$CBT_RUN/err")"; return 1; }
  fi
  cs="$(sed -n 's/^[[:space:]]*Cluster Size:[[:space:]]*\([0-9]*\).*/\1/p' "$CBT_CBTF/ntfsinfo" | head -n 1)"
  [ -n "$cs" ] || cs="$(ntfsinfo -m "$dev" 2>/dev/null | sed -n 's/^[[:space:]]*Cluster Size:[[:space:]]*\([0-9]*\).*/\1/p' | head -n 1)"
  [ -n "$cs" ] || { cbtf_fail "no cluster size from ntfsinfo"; return 1; }
  # The $DATA attribute's block: Resident, Attribute flags, then "Runlist: VCN LCN Length" rows.
  awk '/^Dumping attribute/ { d = ($3 == "$DATA") ; r = 0; next }
       d && /Resident:/ { print "res", $2 }
       d && /Attribute flags:/ { print "flags", $3 }
       d && /Runlist:/ { r = 1; next }
       d && r && NF == 3 { print "run", $1, $2, $3; next }
       d && r { r = 0 }' "$CBT_CBTF/ntfsinfo" >"$CBT_CBTF/runs"
  res="$(sed -n 's/^res //p' "$CBT_CBTF/runs" | head -n 1)"
  flags="$(sed -n 's/^flags //p' "$CBT_CBTF/runs" | head -n 1)"
  [ "$res" = No ] || { cbtf_fail "$FPATH is resident (or has no \$DATA): refused"; return 1; }
  [ $((${flags:-0} & 0x80FF)) = 0 ] || { cbtf_fail "$FPATH is sparse or compressed (attribute flags $flags): refused"; return 1; }
  start="$(cbt_vget "$FV" start)"
  : >"$CBT_CBTF/extents"
  while read -r vcn lcn len; do
    case "$lcn" in 0x*|[0-9]*) ;; *) cbtf_fail "$FPATH has a hole (LCN $lcn): refused"; return 1 ;; esac
    echo "$((vcn * cs)) $((start + lcn * cs)) $((len * cs))" >>"$CBT_CBTF/extents"
  done <<EOF
$(sed -n 's/^run //p' "$CBT_CBTF/runs")
EOF
  [ -s "$CBT_CBTF/extents" ] || { cbtf_fail "no runlist for $FPATH"; return 1; }
}

cbtf_serial() { cbtf-tool serial "/dev/mapper/vol-$TV" "$(cbt_vget "$TV" fs)"; }

# write FLAGS: bitmap of $CBTF/blocks + header (sequence + 1) raw through the extents.
cbtf_write() {
  local seq raw
  seq=$(($(cbtf_val sequence) + 1))
  raw="$(cbtf_raw "$FS")"
  cbtf-tool write "$raw" "$CBT_CBTF/extents" "$(cbtf_val generation)" "$seq" "$1" "$SHIFT" "$(cbt_vget "$TV" size)" "$(cbtf_val serial)" "$(cbtf_val epoch)" "$CBT_CBTF/blocks" >"$CBT_CBTF/write.out" 2>"$CBT_RUN/err" ||
    { cbtf_fail "writing the CBTF file: $(cat "$CBT_RUN/err")"; return 1; }
  blockdev --flushbufs "$raw" 2>/dev/null
  cbtf_put sequence "$seq"
  cbtf_put flags "$1"
}

# Load (boot, online, enable): before any write reaches the tracked volume.
cbtf_load() {
  local raw vs trust="" flags lbl
  cbtf_vars
  mkdir -p "$CBT_CBTF"
  cbtf_put state loading
  case "$SHIFT:$CBT_CBTF_BLOCK" in
    1[2-9]:*|2[0-4]:*) [ $((1 << SHIFT)) = "$CBT_CBTF_BLOCK" ] ;;
    *) false ;;
  esac || { cbtf_fail "CBT_CBTF_BLOCK=$CBT_CBTF_BLOCK is not a power of two in 4096..16777216"; return 1; }
  [ "$(cbt_vget "$FV" fs)" = ntfs ] || { cbtf_fail "the CBTF file's volume $FV is not NTFS"; return 1; }
  cbtf_locate || return 1
  raw="$(cbtf_raw "$FS")"
  vs="$(cbt_vget "$TV" size)"
  cbtf_put serial "$(cbtf_serial)"
  blockdev --flushbufs "$raw" 2>/dev/null
  [ "$CBT_TRACKER_VARIANT" = no-persist-offline ] && [ -f "$CBT_CBTF/offline-dropped" ] && trust=trust
  rm -f "$CBT_CBTF/offline-dropped"
  eval "$(cbtf-tool load "$raw" "$CBT_CBTF/extents" "$vs" "$(cbtf_val serial)" "$SHIFT" "$CBT_CBTF/base" $trust 2>"$CBT_RUN/err")"
  if [ "$cbtf_valid" = 1 ]; then
    cbtf_put generation "$cbtf_generation"
    cbtf_put epoch "$cbtf_epoch"
    cbtf_put sequence "$cbtf_sequence"
    flags=0
    cbtf_put lost 0
    cbt_log "cbtf-ref: $FPATH valid (generation $cbtf_generation, sequence $cbtf_sequence, $(wc -l <"$CBT_CBTF/base") blocks in the base)"
  else
    cbtf_put generation "$(cbtf-tool guid)"
    cbtf_put epoch "${cbtf_epoch:-0}"
    cbtf_put sequence "${cbtf_sequence:-0}"
    : >"$CBT_CBTF/base"
    flags=2
    cbtf_put lost 1
    cbt_log "cbtf-ref: $FPATH not trusted (${cbtf_reason:-$(cat "$CBT_RUN/err")}): new generation, tracking lost until the next checkpoint"
  fi
  [ "$CBT_TRACKER_VARIANT" = stale-clean ] && flags=$((flags | 1))
  cp "$CBT_CBTF/base" "$CBT_CBTF/blocks"
  cbtf_write "$flags" || return 1
  cbtf_put loadBlocks $(((vs + CBT_CBTF_BLOCK - 1) / CBT_CBTF_BLOCK))
  cbtf_put fileExtents "$(wc -l <"$CBT_CBTF/extents")"
  if cbt_late; then cbtf_put state pending; return 0; fi
  cbtf_attach
}

# dm-era over the tracked volume's partition (metadata on a zeroed RAM disk); vol- moved onto it.
cbtf_attach() {
  local raw mm era
  cbtf_vars
  [ -b /dev/ram0 ] || modprobe brd rd_nr=2 rd_size=16384 max_part=0 2>"$CBT_RUN/err" || { cbtf_fail "brd: $(cat "$CBT_RUN/err")"; return 1; }
  dd if=/dev/zero of=/dev/ram0 bs=65536 count=1 oflag=direct 2>/dev/null
  raw="$(cbt_find_disk "$TS")"
  mm="$(cat "/sys/block/$raw/dev")"
  cbt_dm_set "part-$TV" "0 $(($(cbt_vget "$TV" size) / 512)) linear $mm $(($(cbt_vget "$TV" start) / 512))" &&
    cbt_dm_set "era-$TV" "0 $(($(cbt_vget "$TV" size) / 512)) era $(cat /sys/block/ram0/dev) $(cbt_dm_mm "part-$TV") $BSECT" ||
    { cbtf_fail "dm-era set-up on $TV failed"; return 1; }
  era="$(cbtf_era)"
  # Unwritten blocks read as era 0: the epoch's base era must be at least 1.
  [ "$era" -ge 1 ] || { dmsetup message "era-$TV" 0 checkpoint; era="$(cbtf_era)"; }
  cbtf_put baseEra "$era"
  cbt_dm_set "vol-$TV" "0 $(($(cbt_vget "$TV" size) / 512)) linear $(cbt_dm_mm "era-$TV") 0" || { cbtf_fail "moving vol-$TV onto era-$TV failed"; return 1; }
  cbtf_put state active
  cbt_log "cbtf-ref: tracking $TV (era $era, variant $CBT_TRACKER_VARIANT, block $CBT_CBTF_BLOCK)"
}

cbtf_era() { set -- $(dmsetup status "era-$TV" 2>/dev/null); echo "${6:-0}"; }

cbtf_checkpoint() {
  cbtf_vars
  [ "$(cbtf_val state)" = active ] || { echo "cbt-ctl: checkpoint: cbtf-ref is $(cbtf_val state)" >&2; return 1; }
  dmsetup message "era-$TV" 0 checkpoint || return 1
  cbtf_put baseEra "$(cbtf_era)"
  cbtf_put lost 0
  : >"$CBT_CBTF/base"
  : >"$CBT_CBTF/blocks"
  cbtf_put epoch $(($(cbtf_val epoch) + 1))
  cbtf_put serial "$(cbtf_serial)"
  local flags=0
  [ "$CBT_TRACKER_VARIANT" = stale-clean ] && flags=1
  cbtf_write "$flags" || return 1
  printf '{"serial":"%s","tracker":"cbtf-ref","volume":"%s","generation":"%s","epochId":"%s","era":%s}\n' \
    "$TS" "$TV" "$(cbtf_val generation)" "$(cbtf_val epoch)" "$(cbtf_val baseEra)"
}

# Tears the tracker's devices down (vol-TV must be unmounted); dm-era commits on removal.
cbtf_teardown() {
  cbt_dm_rm "vol-$TV"
  cbt_dm_rm "era-$TV"
  cbt_dm_rm "part-$TV"
}

# Persist: changed blocks (era >= the epoch's base era) ∪ base → bitmap, header CLEAN.
# $1 = teardown (the hook removes the devices: era-TV commits on removal; era_dump then opens
# /dev/ram0, which it cannot while dm holds it) or live (suspend commits, copy ram0 to the second
# RAM disk ram1, resume, era_dump ram1). era_dump opens with O_DIRECT (so not a file on tmpfs, and
# not the RAM disk's page cache); the copy is made with O_DIRECT for the same reason.
cbtf_persist() {
  local base extra="" meta
  [ "$(cbtf_val state)" = active ] || return 0
  # (freeze reads the serial itself, before vol- is suspended: a read of it would wait forever.)
  [ -n "$CBTF_SERIAL_KNOWN" ] || cbtf_put serial "$(cbtf_serial)"
  if [ "$1" = teardown ]; then
    cbtf_teardown || { cbtf_fail "tear-down before persist failed"; return 1; }
  else
    dmsetup suspend "era-$TV" || { cbtf_fail "suspend era-$TV"; return 1; }
  fi
  if [ "$1" = teardown ]; then
    meta=/dev/ram0
  else
    dd if=/dev/ram0 of=/dev/ram1 bs=1M iflag=direct oflag=direct 2>/dev/null
    dmsetup resume "era-$TV"
    meta=/dev/ram1
  fi
  base="$(cbtf_val baseEra)"
  era_dump --logical "$meta" >"$CBT_CBTF/dump" 2>"$CBT_RUN/err" || { cbtf_fail "era_dump: $(cat "$CBT_RUN/err")"; return 1; }
  awk -F'"' -v b="$base" '/<era block=/ { if ($4 + 0 >= b && $4 + 0 > 0) print $2 }' "$CBT_CBTF/dump" >"$CBT_CBTF/changed"
  if [ "$CBT_TRACKER_VARIANT" = tracks-own-file ] && [ "$FV" = "$TV" ]; then
    extra="$(awk -v s="$(cbt_vget "$TV" start)" -v b="$CBT_CBTF_BLOCK" '{ for (x = int(($2 - s) / b); x <= int(($2 - s + $3 - 1) / b); x++) print x }' "$CBT_CBTF/extents")"
  fi
  { cat "$CBT_CBTF/base" "$CBT_CBTF/changed"; [ -z "$extra" ] || echo "$extra"; } | sort -n -u >"$CBT_CBTF/blocks"
  if [ "$CBT_TRACKER_VARIANT" = resize-blind ]; then
    awk -v n="$(cbtf_val loadBlocks)" '$1 < n' "$CBT_CBTF/blocks" >"$CBT_CBTF/blocks.tmp" && mv "$CBT_CBTF/blocks.tmp" "$CBT_CBTF/blocks"
  fi
  # TRACKING_LOST stays until the next checkpoint (a load without a trusted prior state).
  cbtf_write $((1 | ($(cbtf_val lost) == 1 ? 2 : 0))) || return 1
  cbtf_put state persisted
  cbt_log "cbtf-ref: persisted $(wc -l <"$CBT_CBTF/blocks") blocks of $TV (sequence $(cbtf_val sequence), $1)"
}

cbtf_hook() { # name [serial]
  cbtf_vars
  case "$1" in
    pre-fs)
      if [ "$CBT_TRACKER_VARIANT" = flush-before-fs ]; then
        cbtf_persist live && cbtf_put state stopped
      fi ;;
    post-fs)
      if [ "$(cbtf_val state)" = active ]; then cbtf_persist teardown; else cbtf_teardown; fi ;;
    gone)
      # No callback came before the device went: nothing is written, the state is dropped.
      [ "$2" = "$TS" ] || return 0
      cbtf_teardown
      cbtf_put state offline
      cbt_log "cbtf-ref: $TV came back after an unplug without a hook: in-memory state dropped" ;;
    offline|remove)
      [ "$2" = "$TS" ] || return 0
      if [ "$1" = offline ] && [ "$CBT_TRACKER_VARIANT" = no-persist-offline ]; then
        cbtf_teardown
        cbtf_put state offline
        touch "$CBT_CBTF/offline-dropped"
        cbt_log "cbtf-ref: offline: nothing written (no-persist-offline)"
      elif [ "$(cbtf_val state)" = active ]; then
        cbtf_persist teardown
      else
        cbtf_teardown
      fi ;;
  esac
}

# A backup product's snapshot (VSS freeze, then the query of the driver): writes to the tracked
# volume are held (dm suspend without a file-system freeze: in-flight I/O completes, new I/O
# waits), the current claim (base ∪ this boot's changes) is persisted as at an orderly stop, CLEAN
# set, so the host can read it offline while the VM is paused. `thaw` writes the header with CLEAN
# cleared again (a crash after it must still give RESYNC) and lets the writes go.
cbtf_freeze() {
  cbtf_vars
  [ "$(cbtf_val state)" = active ] || { echo "cbt-ctl: freeze: cbtf-ref is $(cbtf_val state)" >&2; return 1; }
  cbtf_put serial "$(cbtf_serial)"
  dmsetup suspend --nolockfs "vol-$TV" 2>"$CBT_RUN/err" || { echo "cbt-ctl: freeze: suspend vol-$TV: $(cat "$CBT_RUN/err")" >&2; return 1; }
  CBTF_SERIAL_KNOWN=1
  cbtf_persist live || { CBTF_SERIAL_KNOWN=; dmsetup resume "vol-$TV"; return 1; }
  CBTF_SERIAL_KNOWN=
  cbtf_put state frozen
}

cbtf_thaw() {
  local flags
  cbtf_vars
  [ "$(cbtf_val state)" = frozen ] || { echo "cbt-ctl: thaw: cbtf-ref is $(cbtf_val state), not frozen" >&2; return 1; }
  flags=$(($(cbtf_val lost) == 1 ? 2 : 0))
  [ "$CBT_TRACKER_VARIANT" = stale-clean ] && flags=$((flags | 1))
  cbtf_write "$flags" || { dmsetup resume "vol-$TV"; return 1; }
  cbtf_put state active
  dmsetup resume "vol-$TV"
}

cbtf_status_json() {
  cbtf_vars
  printf '{"serial":"%s","tracker":"cbtf-ref","volume":"%s","state":"%s","variant":"%s","generation":"%s","epochId":"%s","sequence":"%s","flags":%s,"era":%s,"fileExtents":%s,"bitmapBlocks":%s,"blockBytes":%s}\n' \
    "$TS" "$TV" "$(cbtf_val state)" "$CBT_TRACKER_VARIANT" "$(cbtf_val generation)" "$(cbtf_val epoch)" "$(cbtf_val sequence)" "$(cbtf_val flags || echo null)" \
    "$([ "$(cbtf_val state)" = active ] && cbtf_era || echo null)" "$(cbtf_val fileExtents || echo 0)" \
    "$((($(cbt_vget "$TV" size || echo 0) + CBT_CBTF_BLOCK - 1) / CBT_CBTF_BLOCK))" "$CBT_CBTF_BLOCK"
}
