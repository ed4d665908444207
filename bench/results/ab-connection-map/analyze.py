import json, glob, math, statistics as st
res = {}
for f in sorted(glob.glob('bench/results/ab-connection-map/*-*/results.json')):
    v = f.split('/')[3].split('-')[0]
    d = json.load(open(f))
    rounds = {}
    for s in d['samples']:
        if s['workload'] != 'short': continue
        rounds.setdefault(s['round'], {})[s['datapath']] = s
    for r, x in rounds.items():
        if 'direct' in x and 'socklb' in x:
            res.setdefault(v, []).append((x['socklb']['rate'] / x['direct']['rate'], x['socklb']['cpuPerOperationUs']['client'] / x['direct']['cpuPerOperationUs']['client'], x['socklb']['cpuPerOperationUs']['machine'] / x['direct']['cpuPerOperationUs']['machine']))
for v, xs in res.items():
    logs = [math.log(x[0]) for x in xs]
    gm = math.exp(st.mean(logs)); se = st.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else float('nan')
    print(f"{v}: n={len(xs)} ratio geo-mean {gm:.3f} (SE {se:.3f}) median {st.median(x[0] for x in xs):.3f}; client cpu/op {st.median(x[1] for x in xs):.3f}; machine cpu/op {st.median(x[2] for x in xs):.3f}")
