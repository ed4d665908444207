# Each control-plane run under bench/results/node-versions: programming 10000 Services from
# nothing, then the 50 endpoint changes (p50, p99 as bench/stats.ts computes them, the first five).
import json, glob, os, sys

def percentile(values, p):
    s = sorted(values); k = (len(s) - 1) * p / 100; f = int(k); c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)

here = os.path.dirname(os.path.abspath(__file__))
for group in sorted(glob.glob(os.path.join(here, '*/'))):
    print(os.path.basename(group.rstrip('/')))
    for f in sorted(glob.glob(os.path.join(group, '*/results.json')), key=lambda x: (x.split('-')[-1], x)):
        scale = json.load(open(f))['scales'][0]
        prog = next(p for p in scale['programming'] if p['datapath'] == 'socklb')
        changes = [c['latencyMs'] for c in next(e for e in scale['endpointChanges'] if e['datapath'] == 'socklb')['changes']]
        print(f"  {os.path.basename(os.path.dirname(f)):<20} programming {prog['seconds']:.2f} s (sync {prog['detail']['agentSyncMs'] / 1000:.2f}); "
              f"change p50 {percentile(changes, 50):.1f} ms, p99 {percentile(changes, 99):.1f} ms, first five {' '.join(f'{x:.1f}' for x in changes[:5])}, slowest after the first {max(changes[1:]):.1f}")
