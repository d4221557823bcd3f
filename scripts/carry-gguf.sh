#!/usr/bin/env bash
# Brings a file larger than the device tool's 64 MiB working tree (the SmolLM2 GGUF, 98 MB) to
# the GPU machine in pieces carried by consecutive calls to one warm machine.
#
# Here:   scripts/carry-gguf.sh split [FILE] [MB[,MB...]]
#           cuts FILE (default: scripts/fetch-smollm2.sh's GGUF) into parts of MB MiB (default
#           24; a list gives the first parts' sizes, the last part takes the rest, so each call's
#           part fits beside what else it carries) and writes .carry/manifest (name, size,
#           SHA-256, part count).
#           Each device call then carries .carry/manifest and one part: carry [".carry"] after
#           moving the parts not sent this time into .carry-wait/ (see `next`).
#         scripts/carry-gguf.sh next
#           keeps the lowest-numbered part waiting in .carry/ and the rest in .carry-wait/ (run
#           it after each call: the part sent last is removed).
# There:  scripts/carry-gguf.sh take DEST
#           appends this call's parts to /tmp/carry-parts; once all are there, joins them into
#           DEST, checks the SHA-256 and prints DEST (exit 3 while parts are missing, 4 on a bad
#           checksum, which removes the joined file).
set -euo pipefail
cd "$(dirname "$0")/.."
here=.carry wait=.carry-wait store=/tmp/carry-parts
case "${1:-}" in
  split)
    file="${2:-$(scripts/fetch-smollm2.sh)}"
    mb="${3:-24}"
    rm -rf "$here" "$wait"; mkdir -p "$here" "$wait"
    if [[ "$mb" == *,* ]]; then
      python3 - "$file" "$wait" "$mb" <<'PY'
import sys
path, out, sizes = sys.argv[1], sys.argv[2], [int(m) << 20 for m in sys.argv[3].split(",")]
with open(path, "rb") as f:
    i = 0
    while True:
        chunk = f.read(sizes[i]) if i < len(sizes) else f.read()
        if not chunk:
            break
        open(f"{out}/part-{i:02d}", "wb").write(chunk)
        i += 1
PY
    else
      split -b "${mb}M" -d -a 2 "$file" "$wait/part-"
    fi
    parts=$(ls "$wait" | wc -l)
    printf '%s %s %s %s\n' "$(basename "$file")" "$(stat -c %s "$file")" \
      "$(sha256sum "$file" | cut -d' ' -f1)" "$parts" >"$here/manifest"
    "$0" next
    cat "$here/manifest"
    ;;
  next)
    rm -f "$here"/part-*
    first=$(ls "$wait" 2>/dev/null | head -1 || true)
    if [ -n "$first" ]; then mv "$wait/$first" "$here/"; echo "next: $first"; else echo "all parts sent"; fi
    ;;
  take)
    dest="${2:?give the path to join the parts into}"
    read -r name size sum parts <"$here/manifest"
    mkdir -p "$store"
    cp "$here"/part-* "$store"/ 2>/dev/null || true
    have=$(ls "$store" | wc -l)
    if [ "$have" -lt "$parts" ]; then echo "have $have of $parts parts of $name" >&2; exit 3; fi
    cat "$store"/part-* >"$dest"
    if ! echo "$sum  $dest" | sha256sum -c --quiet; then
      rm -f "$dest"; echo "$dest: SHA-256 does not match $name's" >&2; exit 4
    fi
    [ "$(stat -c %s "$dest")" = "$size" ] || { echo "$dest: wrong size" >&2; exit 4; }
    echo "$dest"
    ;;
  *) echo "usage: $0 split [FILE] [MB] | next | take DEST" >&2; exit 2 ;;
esac
