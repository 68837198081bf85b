"""Reads `perf sched timehist` output: per thread, how often it ran for long without a
break, and what ran on a CPU just before each data-plane thread's long wait for it."""
import collections
import re
import sys

rows = []
for line in open(sys.argv[1]).read().splitlines()[3:]:
    f = line.split()
    if len(f) >= 6 and f[1].startswith("["):
        try:
            rows.append((f[1], re.sub(r"\[.*", "", f[2]), float(f[4]), float(f[5])))
        except ValueError:
            pass
runs = collections.defaultdict(list)
for _, task, _, run in rows:
    runs[re.sub(r"-\d+$", "", task)].append(run)
print("  thread             runs   CPU ms  >0.3ms  >1ms   longest ms")
for task in ("obleth-data", "obleth-ledger", "tokio-rt-worker", "sqlx-sqlite-wor", "jemalloc_bg_thd", "python", "wrk"):
    r = runs.get(task, [])
    if r:
        print(f"  {task:<16} {len(r):>6} {sum(r):>8.0f} {sum(x > 0.3 for x in r):>7} {sum(x > 1 for x in r):>5} {max(r):>10.2f}")
blame, waited = collections.Counter(), collections.Counter()
last_on = {}
for cpu, task, delay, _ in rows:
    if task.startswith("obleth-data") and delay > 0.15:
        before = last_on.get(cpu, "?")
        blame[before] += 1
        waited[before] += delay
    last_on[cpu] = task
print("  data-plane waits > 0.15 ms for a CPU, by the thread that ran there before:",
      ", ".join(f"{k} {v} ({waited[k]:.1f} ms)" for k, v in blame.most_common(6)))
