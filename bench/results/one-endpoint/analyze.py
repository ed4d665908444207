# Per setting (e1: one endpoint per Service, so direct and socklb send every connection to the same
# pod; e2: two, as the full run): socklb/direct per round, pooled over both invocations.
import json, glob, math, statistics as st
res = {}
for f in sorted(glob.glob('bench/results/one-endpoint/e*-*/results.json')):
    setting = f.split('/')[3].split('-')[0]
    rounds = {}
    for s in json.load(open(f))['samples']:
        if s['workload'] == 'short':
            rounds.setdefault(s['round'], {})[s['datapath']] = s
    for x in rounds.values():
        res.setdefault(setting, []).append((x['socklb']['rate'] / x['direct']['rate'], x['socklb']['cpuPerOperationUs']['machine'] / x['direct']['cpuPerOperationUs']['machine']))
for setting, xs in sorted(res.items()):
    logs = [math.log(x[0]) for x in xs]
    print(f"{setting}: {len(xs)} rounds, socklb/direct geometric mean {math.exp(st.mean(logs)):.3f} (SE of the log {st.stdev(logs) / math.sqrt(len(logs)):.3f}), median {st.median(x[0] for x in xs):.3f}; machine CPU per connection {st.median(x[1] for x in xs):.3f} of direct's")
