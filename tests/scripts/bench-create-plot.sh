#!/bin/sh
# End-to-end plotting rate with the daemon's defaults (issue 9): starts a throwaway minerd
# on DIR (put it on the plot disk), measures the disk's fdatasync'd write rate there, runs
# `minerctl create-plot --size SIZE` with no other option, and prints the leaves per second
# from the job's start to its end, the bound min(LIMIT/4, write rate / 32 B) and the ratio,
# and the daemon's peak RSS. LIMIT comes from a short `minerd bench --json` first.
#
#   cargo build --release -p minerd -p minerctl
#   tests/scripts/bench-create-plot.sh /path/on/the/plot/disk [SIZE, default 1 (GB)]
#
# Needs jq. Everything it writes is removed at the end.
set -eu
dir=${1:?usage: $0 DIR-ON-THE-PLOT-DISK [SIZE]}
size=${2:-1}
bin=${BIN:-target/release}
work=$(mktemp -d "$dir/plotbench.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

limit=$("$bin/minerd" bench --leaves 65536 --proofs 1 --dir "$work" --json | jq .limit_compressions_per_s)

dd if=/dev/zero of="$work/probe" bs=4M count=256 conv=fdatasync 2>"$work/dd.log"
write_bps=$(awk '/copied/ { print $1 / $(NF-3) }' "$work/dd.log")
rm -f "$work/probe"

mkdir -p "$work/plots"
: >"$work/minerd.log"
HOME=$work "$bin/minerd" --data-dir "$work/data" --plot-dir "$work/plots" \
  --node-address 127.0.0.1 --node-port 9 2>"$work/minerd.log" &
pid=$!
i=0
until grep -qs "listening on unix:" "$work/minerd.log"; do
  i=$((i + 1))
  if [ "$i" -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "minerd did not start:" >&2; cat "$work/minerd.log" >&2; exit 1
  fi
  sleep 0.1
done

"$bin/minerctl" --data-dir "$work/data" create-plot --size "$size" --json |
  while read -r line; do
    printf '%s %s\n' "$(date +%s.%N)" "$line"
  done >"$work/events"
start=$(awk '/"type":"started"/ { print $1; exit }' "$work/events")
end=$(awk '/"type":"finished"/ { print $1; exit }' "$work/events")
leaves=$(grep '"type":"finished"' "$work/events" | cut -d' ' -f2- | jq '.plot.leafCount // .plot.leaves')
rss_kib=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")

awk -v l="$leaves" -v s="$start" -v e="$end" -v lim="$limit" -v w="$write_bps" -v r="$rss_kib" 'BEGIN {
  rate = l / (e - s); bound = lim / 4; if (w / 32 < bound) bound = w / 32
  printf "plotted %d leaves in %.2f s: %.2f M leaves/s\n", l, e - s, rate / 1e6
  printf "bound min(LIMIT/4 = %.2f, write %.0f MB/s / 32 = %.2f) = %.2f M leaves/s; ratio %.0f%%\n",
    lim / 4e6, w / 1e6, w / 32e6, bound / 1e6, 100 * rate / bound
  printf "minerd peak RSS %.1f MiB\n", r / 1024
}'
