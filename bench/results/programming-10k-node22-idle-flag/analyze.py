# socklb's control plane at 10000 Services, run after run: programming from nothing and the 50
# endpoint changes of each run (p50, p99 as the report computes it, the first change).
import json, glob, statistics as st

def percentile(values, p):
    # As bench/stats.ts: linear interpolation between closest ranks.
    s = sorted(values); k = (len(s) - 1) * p / 100; f = int(k); c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)

programming, p99s = [], []
for f in sorted(glob.glob('bench/results/programming-10k-node22-idle-flag/run-*/results.json')):
    scale = json.load(open(f))['scales'][0]
    prog = next(p for p in scale['programming'] if p['datapath'] == 'socklb')
    changes = [c['latencyMs'] for c in next(e for e in scale['endpointChanges'] if e['datapath'] == 'socklb')['changes']]
    programming.append(prog['seconds']); p99s.append(percentile(changes, 99))
    print(f"{f.split('/')[3]}: programming {prog['seconds']:.2f} s (agent's sync {prog['detail']['agentSyncMs'] / 1000:.2f} s); changes p50 {percentile(changes, 50):.1f} ms, p99 {percentile(changes, 99):.1f} ms, first {changes[0]:.1f} ms, slowest after the first {max(changes[1:]):.1f} ms")
print(f"programming: {min(programming):.2f} to {max(programming):.2f} s, median {st.median(programming):.2f} s; change p99: {min(p99s):.1f} to {max(p99s):.1f} ms, median {st.median(p99s):.1f} ms")
