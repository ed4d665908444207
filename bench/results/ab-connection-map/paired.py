import json, glob, math, statistics as st, sys
base = sys.argv[1] if len(sys.argv) > 1 else 'bench/results/ab-connection-map'
def ratios(f):
    d = json.load(open(f)); rounds = {}
    for s in d['samples']:
        if s['workload'] == 'short': rounds.setdefault(s['round'], {})[s['datapath']] = s
    return [x['socklb']['rate'] / x['direct']['rate'] for x in rounds.values() if len(x) == 2]
diffs = []
for i in range(1, 20):
    try: c = ratios(f'{base}/C-{i}/results.json'); s = ratios(f'{base}/S-{i}/results.json')
    except FileNotFoundError: continue
    gc = math.exp(st.mean(map(math.log, c))); gs = math.exp(st.mean(map(math.log, s)))
    diffs.append(math.log(gc / gs)); print(i, f"C {gc:.3f} S {gs:.3f}")
print(f"paired C/S {math.exp(st.mean(diffs)):.3f} SE(log) {st.stdev(diffs)/math.sqrt(len(diffs)):.3f} n={len(diffs)}")
