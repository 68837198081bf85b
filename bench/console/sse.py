#!/usr/bin/env python3
"""Reads the captures of the lens streams (one file per stream, what `curl -N` wrote)
and prints, as key=value: streams, events per stream (min/max), events/s per stream
(from the frames' own `at` stamps), the frame size in bytes (median, max), the tenants
shown, the others' count, tenant_count, and how many distinct frames all streams saw
together (one shared producer: as many as one stream saw).

Usage: sse.py SECONDS FILE...   (SECONDS: how long each stream was held open)
"""
import json
import statistics
import sys

secs = float(sys.argv[1])
per_stream, sizes, shown, others, counts, ats_all = [], [], [], [], [], set()
rates = []
for path in sys.argv[2:]:
    raw = open(path, "rb").read().decode()
    events = [e for e in raw.split("\n\n") if e.strip()]
    ats = []
    for e in events:
        lines = e.split("\n")
        assert lines[0] == "event: lens", lines[0][:80]
        data = json.loads(lines[1][len("data: "):])
        sizes.append(len(e.encode()) + 2)
        ats.append(data["at"])
        if data.get("tenants") is not None:
            shown.append(len(data["tenants"]))
            others.append(data["others"]["tenants"])
            counts.append(data["tenant_count"])
    per_stream.append(len(events))
    ats_all.update(ats)
    if len(ats) > 1:
        rates.append((len(ats) - 1) / ((ats[-1] - ats[0]) / 1000))
if not sizes:
    print("streams=%d events=0" % len(per_stream)); sys.exit(1)
print(
    "streams=%d events_min=%d events_max=%d held_s=%.0f ev_per_s_min=%.3f ev_per_s_max=%.3f "
    "frame_bytes_median=%d frame_bytes_max=%d tenants_shown_min=%d tenants_shown_max=%d "
    "others_min=%d others_max=%d tenant_count_min=%d tenant_count_max=%d distinct_frames=%d"
    % (len(per_stream), min(per_stream), max(per_stream), secs, min(rates), max(rates),
       statistics.median(sizes), max(sizes), min(shown), max(shown), min(others), max(others),
       min(counts), max(counts), len(ats_all)))
