# socklb's control-plane runs (`socklb bench --control-plane-only --datapaths direct,socklb` at one
# scale), one line each: programming from nothing, then the endpoint changes (p50, p99 as
# bench/stats.ts computes them, the first five, the slowest after the first); then, per directory,
# the range and median of programming and of the change p99.
#
#   python3 bench/results/control-plane-runs.py DIRECTORY...   (each holding the runs' directories)
import glob, json, os, statistics, sys

def percentile(values, p):
    # As bench/stats.ts: linear interpolation between closest ranks.
    s = sorted(values); k = (len(s) - 1) * p / 100; f = int(k); c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)

for directory in sys.argv[1:]:
    print(directory)
    programming, p99s = [], []
    # By round (the name's last part), then name: alternated runs stay side by side.
    runs = sorted(glob.glob(os.path.join(directory, '*/results.json')), key=lambda f: (os.path.basename(os.path.dirname(f)).split('-')[-1], f))
    if not runs:
        print('  no runs here')
        continue
    for f in runs:
        scale = json.load(open(f))['scales'][0]
        prog = next(p for p in scale['programming'] if p['datapath'] == 'socklb')
        changes = [c['latencyMs'] for c in next(e for e in scale['endpointChanges'] if e['datapath'] == 'socklb')['changes']]
        programming.append(prog['seconds']); p99s.append(percentile(changes, 99))
        print(f"  {os.path.basename(os.path.dirname(f)):<20} programming {prog['seconds']:.2f} s (agent's sync {prog['detail']['agentSyncMs'] / 1000:.2f} s); "
              f"change p50 {percentile(changes, 50):.1f} ms, p99 {p99s[-1]:.1f} ms, first five {' '.join(f'{x:.1f}' for x in changes[:5])}, slowest after the first {max(changes[1:]):.1f} ms")
    print(f"  programming: {min(programming):.2f} to {max(programming):.2f} s, median {statistics.median(programming):.2f} s; "
          f"change p99: {min(p99s):.1f} to {max(p99s):.1f} ms, median {statistics.median(p99s):.1f} ms")
