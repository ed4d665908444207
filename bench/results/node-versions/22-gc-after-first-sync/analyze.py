# The collections (perf_hooks 'gc' entries) from just before the end of the first sync of 10000
# Services to the end of the fifth change after it, times relative to that first sync's end, and
# when each of those changes ended; map.txt names each run's file.
import json, os
here = os.path.dirname(os.path.abspath(__file__))
KINDS = {1: 'scavenge', 2: 'minor mark-sweep', 4: 'mark-compact', 8: 'incremental marking', 16: 'weak callbacks'}
for line in open(os.path.join(here, 'map.txt')):
    label, name = line.split()
    events = [json.loads(l) for l in open(os.path.join(here, name))]
    syncs = [e for e in events if 'sync' in e]
    first = next(i for i, s in enumerate(syncs) if s['frontends'] > 1000)
    t0 = syncs[first]['end']
    last = syncs[min(first + 5, len(syncs) - 1)]['end']
    print(f"{label}: changes end at {' '.join('%+.0f' % (s['end'] - t0) for s in syncs[first + 1:first + 6])} ms")
    for gc in (e for e in events if 'gc' in e and t0 - 20 <= e['start'] <= last):
        print(f"  {KINDS.get(gc['gc'], gc['gc']):<20} at {gc['start'] - t0:+7.1f} ms, {gc['dur']:.1f} ms")
