# Per build (old: 3502301's programs; new: with keep_backend's slot search): socklb/direct per
# round, pooled, and the new build against the old one invocation by invocation.
import json, glob, math, statistics as st
res, pairs = {}, {}
for f in sorted(glob.glob('bench/results/ab-slot-search/*-*/results.json')):
    v, i = f.split('/')[3].split('-')
    rounds = {}
    for s in json.load(open(f))['samples']:
        if s['workload'] == 'short': rounds.setdefault(s['round'], {})[s['datapath']] = s
    rs = [x['socklb']['rate'] / x['direct']['rate'] for x in rounds.values()]
    ms = [x['socklb']['cpuPerOperationUs']['machine'] / x['direct']['cpuPerOperationUs']['machine'] for x in rounds.values()]
    res.setdefault(v, []).extend(zip(rs, ms))
    pairs.setdefault(i, {})[v] = math.exp(st.mean(map(math.log, rs)))
for v, xs in sorted(res.items()):
    logs = [math.log(x[0]) for x in xs]
    print(f"{v}: {len(xs)} rounds, socklb/direct geometric mean {math.exp(st.mean(logs)):.3f} (SE of the log {st.stdev(logs) / math.sqrt(len(logs)):.3f}), median {st.median(x[0] for x in xs):.3f}; machine CPU per connection {st.median(x[1] for x in xs):.3f} of direct's")
logs = [math.log(p['new'] / p['old']) for p in pairs.values()]
print(f"new/old, invocation by invocation: {math.exp(st.mean(logs)):.3f} (SE of the log {st.stdev(logs) / math.sqrt(len(logs)):.3f})")
