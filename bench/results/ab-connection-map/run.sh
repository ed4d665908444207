#!/bin/bash
# Alternates the HEAD build (S: socket storage) and the working build (C: connection LRU).
for i in 1 2 3 4 5 6; do
  for v in S C; do
    [ $((i % 2)) -eq 0 ] && v=$([ $v = S ] && echo C || echo S)
    dir=$([ $v = S ] && echo /work/wt-ab-S || echo /work/main)
    echo "== $i $v $(date +%T)"
    (cd $dir && flock /tmp/socklb-bench.lock node build/src/cli/main.js bench --scales 10 --datapaths direct,socklb --workloads short --rounds 4 --endpoint-changes 3 --output /tmp/ab/$v-$i > /tmp/ab/$v-$i.log 2>&1) || echo "failed $v $i"
  done
done
echo done
