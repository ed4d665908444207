#!/bin/bash
# A/B of the connect4/sendmsg4 cost for destinations that are no Service (see socklb docs/benchmarks.md).
set -euo pipefail
OLD=${OLD:?the object built from the parent of "datapath: refuse calls to service addresses no frontend serves": OLD=path/to/socklb.bpf.o}
NEW=${NEW:-build/bpf/socklb.bpf.o}
COUNT=${COUNT:-100000}
CG2=$(awk '$9=="cgroup2"{print $5; exit}' /proc/self/mountinfo)
CG=$CG2/range-bench-$$
NS=range-bench-$$
PIN=/sys/fs/bpf/range-bench-$$
cleanup() {
  for p in socklb_connect4 socklb_sendmsg4; do bpftool cgroup detach "$CG" ${p#socklb_} pinned $PIN/progs/$p 2>/dev/null || true; done
  rm -rf "$PIN"; ip netns del "$NS" 2>/dev/null || true; rmdir "$CG" 2>/dev/null || true
}
trap cleanup EXIT
mkdir -p "$CG"; ip netns add "$NS"; ip -n "$NS" link set lo up
sysctl -q -w kernel.bpf_stats_enabled=1
measure() { # object label target mode [fill]
  local obj=$1 label=$2 target=$3 mode=$4 fill=${5:-}
  rm -rf "$PIN"; mkdir -p "$PIN"
  bpftool prog loadall "$obj" "$PIN/progs" pinmaps "$PIN/maps"
  [ -n "$fill" ] && bpftool batch file "$fill" >/dev/null
  local hook=$([ "$mode" = connect ] && echo connect4 || echo sendmsg4)
  bpftool cgroup attach "$CG" $hook pinned "$PIN/progs/socklb_$hook" multi
  local out=$(bash -c "echo \$\$ > $CG/cgroup.procs; exec nsenter --net=/run/netns/$NS python3 $(dirname "$0")/connects.py $target $mode $COUNT")
  local id=$(bpftool -j prog show pinned "$PIN/progs/socklb_$hook" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  local ns=$(bpftool -j prog show id $id | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.0f %d" % (d["run_time_ns"]/d["run_cnt"], d["run_cnt"]))')
  bpftool cgroup detach "$CG" $hook pinned "$PIN/progs/socklb_$hook"
  echo "$label $hook $target: $ns runs, errors $out"
}
# 10000 cluster IPs (10.100.x.y, outside the range) and the ranges, through bpftool's batch mode.
FILL=$(mktemp)
{
  for i in $(seq 0 9999); do printf 'map update pinned %s/maps/socklb_cip_v1 key 0 0 0 0 0 0 0 0 0 0 0xff 0xff 10 100 %d %d value 0 0 0 0\n' "$PIN" $((i/256)) $((i%256)); done
  printf 'map update pinned %s/maps/socklb_range_v1 key 108 0 0 0 0 0 0 0 0 0 0 0 0 0 0xff 0xff 10 96 0 0 value 0 0 0 0\n' "$PIN"
  printf 'map update pinned %s/maps/socklb_range_v1 key 108 0 0 0 0xfd 0 0 0x96 0 0 0 0 0 0 0 0 0 0 0 0 value 0 0 0 0\n' "$PIN"
} > $FILL
grep socklb_cip_v1 $FILL > $FILL.cips; grep socklb_range_v1 $FILL > $FILL.ranges
for round in 1 2 3; do
  for mode in connect sendto; do
    measure $OLD before 10.200.0.1 $mode
    measure $NEW empty 10.200.0.1 $mode
    measure $NEW filled 10.200.0.1 $mode $FILL
    measure $NEW cips-only 10.200.0.1 $mode $FILL.cips
    measure $NEW ranges-only 10.200.0.1 $mode $FILL.ranges
    measure $NEW refused 10.96.7.7 $mode $FILL
  done
done
rm -f $FILL $FILL.cips $FILL.ranges
sysctl -q -w kernel.bpf_stats_enabled=0
