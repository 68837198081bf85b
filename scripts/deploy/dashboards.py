#!/usr/bin/env python3
"""Generates obleth's Grafana dashboards (deploy/grafana/dashboards/*.json).

The panels are written here once, compactly, and rendered into Grafana's JSON model, so
every dashboard has the same variables ($datasource, $pod), the same data source
reference and the same layout rules. The JSON is committed (Grafana reads it as is);
scripts/deploy-check.sh runs `dashboards.py --check` to fail when it is stale, and then
queries every panel's expression against a live cluster.

    python3 scripts/deploy/dashboards.py          # rewrite the JSON
    python3 scripts/deploy/dashboards.py --check  # exit 1 if the JSON differs

Conventions:
- Every selector filters on `pod=~"$pod"`: one Prometheus target per pod, labelled `pod`
  (deploy/prometheus/prometheus.yml, the chart's ServiceMonitor).
- Rates use `$__rate_interval`.
- Tenant and group labels are bounded by the gateway (metrics.tenant_series most active,
  the rest summed as `other`), so panels may break down by them.
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "deploy", "grafana", "dashboards")
DS = {"type": "prometheus", "uid": "${datasource}"}
P = 'pod=~"$pod"'
RI = "$__rate_interval"


def ts(title, targets, unit="short", desc="", w=12, h=8, stack=False, minv=None, maxv=None):
    """A time series panel; targets: [(expr, legend)]."""
    defaults = {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 10 if stack else 0,
                                         "stacking": {"mode": "normal" if stack else "none"}}}
    if minv is not None:
        defaults["min"] = minv
    if maxv is not None:
        defaults["max"] = maxv
    return {"type": "timeseries", "title": title, "description": desc, "w": w, "h": h,
            "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "mean"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def stat(title, expr, unit="short", desc="", w=6, h=4, thresholds=None, legend=""):
    steps = thresholds or [{"color": "green", "value": None}]
    return {"type": "stat", "title": title, "description": desc, "w": w, "h": h,
            "targets": [(expr, legend)],
            "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
                            "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "auto"}}


def row(title):
    return {"type": "row", "title": title, "w": 24, "h": 1}


def quantiles(metric, by, qs=(0.5, 0.99), extra=""):
    sel = f"{{{P}{extra}}}"
    return [(f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{sel}[{RI}])))",
             f"p{int(q * 100)} {{{{{by}}}}}") for q in qs]


RED_BELOW = lambda v: [{"color": "red", "value": None}, {"color": "orange", "value": v[0]},  # noqa: E731
                       {"color": "green", "value": v[1]}]
RED_ABOVE = lambda v: [{"color": "green", "value": None}, {"color": "orange", "value": v[0]},  # noqa: E731
                       {"color": "red", "value": v[1]}]

DASHBOARDS = {
    "fairness": {
        "title": "obleth / Fairness",
        "description": "Who gets the slots when the pool is full: each tenant's target share against what it "
                       "actually got, queues, admissions by class, brownout, and Jain's fairness index.",
        "panels": [
            stat("Jain's fairness index (lowest pod)", f"min(obleth_scheduler_fairness_index{{{P}}})", "none",
                 "Jain's index of actual/target share over the tenants with requests queued: 1 when every "
                 "backlogged tenant gets its share, 1/n when one of n gets everything. 1 when fewer than two are "
                 "backlogged.", thresholds=RED_BELOW((0.8, 0.95))),
            stat("Backlogged tenants below 80% of their share",
                 f'count(((obleth_scheduler_tenant_share{{kind="actual",tenant!="other",{P}}} '
                 f'/ ignoring(kind) (obleth_scheduler_tenant_share{{kind="target",tenant!="other",{P}}} > 0)) < 0.8) '
                 f'and ignoring(kind) (obleth_scheduler_tenant_queued{{tenant!="other",{P}}} > 0)) or vector(0)',
                 "none", "What the OblethTenantBelowFairShare alert counts (it fires after 5 minutes).",
                 thresholds=RED_ABOVE((1, 1))),
            stat("Requests queued", f"sum(obleth_scheduler_queued{{{P}}})", "none"),
            stat("Brownout (share of admissions)",
                 f'sum(rate(obleth_admissions_total{{class="brownout",{P}}}[{RI}])) '
                 f'/ sum(rate(obleth_admissions_total{{class=~"fast|queued|brownout",{P}}}[{RI}]))',
                 "percentunit", "Admitted after waiting longer than admission.brownout_after, max_tokens capped.",
                 thresholds=RED_ABOVE((0.01, 0.05))),
            row("Shares"),
            ts("Jain's fairness index per pod", [(f"obleth_scheduler_fairness_index{{{P}}}", "{{pod}}")], "none",
               "Over the tenants with requests queued on that pod.", minv=0, maxv=1),
            ts("Actual / target share of backlogged tenants",
               [(f'(obleth_scheduler_tenant_share{{kind="actual",tenant!="other",{P}}} '
                 f'/ ignoring(kind) (obleth_scheduler_tenant_share{{kind="target",tenant!="other",{P}}} > 0)) '
                 f'and ignoring(kind) (obleth_scheduler_tenant_queued{{tenant!="other",{P}}} > 0)',
                 "{{tenant}} @ {{pod}}")],
               "percentunit", "1 = exactly its fair share. Below 0.8 for 5 minutes fires OblethTenantBelowFairShare. "
               "Only tenants with requests queued: an idle tenant is not wronged.", minv=0),
            ts("Target share per tenant",
               [(f'avg by (tenant) (obleth_scheduler_tenant_share{{kind="target",{P}}})', "{{tenant}}")],
               "percentunit", "What its weight entitles it to among the active tenants (averaged over pods).",
               minv=0, maxv=1),
            ts("Actual share per tenant",
               [(f'avg by (tenant) (obleth_scheduler_tenant_share{{kind="actual",{P}}})', "{{tenant}}")],
               "percentunit", "Its part of the recent service (tokens, 30 s half-life; averaged over pods).",
               minv=0, maxv=1),
            ts("Share score per tenant", [(f"obleth_scheduler_tenant_share_score{{{P}}}", "{{tenant}} @ {{pod}}")],
               "short", "Weighted work served; the lowest among those waiting is served next."),
            ts("Group share: target and actual",
               [(f'avg by (group, kind) (obleth_scheduler_group_share{{{P}}})', "{{group}} {{kind}}")],
               "percentunit", "Per fairshare group (hierarchical mode): its weight's share of the active groups "
               "(target) and its part of the recent service (actual); averaged over pods.", minv=0, maxv=1),
            ts("Group slots: expected split and used",
               [(f'sum by (group, state) (obleth_scheduler_group_slots{{state=~"cap|used",{P}}})',
                 "{{group}} {{state}}")],
               "short", "Per fairshare group: `cap` is its weighted split of the pool, `used` what it holds."),
            row("Queues and admissions"),
            ts("Queued per tenant", [(f"sum by (tenant) (obleth_scheduler_tenant_queued{{{P}}})", "{{tenant}}")],
               stack=True),
            ts("In flight per tenant", [(f"sum by (tenant) (obleth_scheduler_tenant_in_flight{{{P}}})", "{{tenant}}")],
               stack=True),
            ts("Admissions by class",
               [(f"sum by (class) (rate(obleth_admissions_total{{{P}}}[{RI}]))", "{{class}}")], "reqps",
               "fast: a slot was free; queued: waited its turn; brownout: waited past brownout_after; "
               "rejected: refused before admission.", stack=True),
            ts("Queue wait", quantiles("obleth_queue_wait_seconds", "pod", (0.5, 0.9, 0.99)), "s"),
            ts("Queued per group", [(f"sum by (group) (obleth_scheduler_group_queued{{{P}}})", "{{group}}")],
               stack=True),
        ],
    },
    "capacity": {
        "title": "obleth / Capacity",
        "description": "The slot pool, its queue, and how the pods of a cluster split the cap.",
        "panels": [
            stat("Slot utilisation",
                 f'sum(obleth_scheduler_slots{{state="used",{P}}}) / sum(obleth_scheduler_slots{{state="total",{P}}})',
                 "percentunit", thresholds=RED_ABOVE((0.9, 0.99))),
            stat("Pods scraped", f'sum(up{{job="obleth",{P}}})', "none"),
            stat("Pods in the cluster (as each pod sees it, min)", f"min(obleth_cluster_pods{{{P}}})", "none"),
            stat("Requests queued", f"sum(obleth_scheduler_queued{{{P}}})", "none"),
            row("Slots"),
            ts("Slots per pod", [(f"obleth_scheduler_slots{{{P}}}", "{{pod}} {{state}}")], "short",
               "total: the pod's pool (its share of the cluster cap); used: admitted and not finished."),
            ts("Cluster slots", [(f"sum by (state) (obleth_scheduler_slots{{{P}}})", "{{state}}")]),
            ts("Each pod's share of the cap", [(f"obleth_cluster_pod_slots{{{P}}}", "{{pod}}")], "short",
               "The slots each pod claims in Redis (cluster.share_slots)."),
            ts("Pods alive, as each pod sees them", [(f"obleth_cluster_pods{{{P}}}", "{{pod}}")]),
            ts("Queued per pod", [(f"obleth_scheduler_queued{{{P}}}", "{{pod}}")], stack=True),
            ts("Requests in the data plane", [(f"obleth_in_flight_requests{{{P}}}", "{{pod}}")], "short",
               "Every request between its first byte and its end: queued, admitted, or being refused."),
            row("Traffic"),
            ts("Requests by status", [(f"sum by (status) (rate(obleth_requests_total{{{P}}}[{RI}]))", "{{status}}")],
               "reqps", stack=True),
            ts("Tokens", [(f"sum by (kind) (rate(obleth_tokens_total{{{P}}}[{RI}]))", "{{kind}}")], "short",
               "Tokens per second, input and output."),
            ts("Open connections", [(f"sum by (listener) (obleth_connections_open{{{P}}})", "{{listener}}")]),
            ts("Connections accepted",
               [(f"sum by (listener) (rate(obleth_connections_accepted_total{{{P}}}[{RI}]))", "{{listener}}")],
               "cps"),
        ],
    },
    "budgets": {
        "title": "obleth / Budgets",
        "description": "Tenants' rate limits and spend, the budget decisions, and whether budgets are decided in "
                       "Redis or on a pod's local share.",
        "panels": [
            stat("Budget breaker open (pods)", f"sum(obleth_budget_breaker_open{{{P}}})", "none",
                 "Pods deciding budgets on budget.local_share because Redis is failing.",
                 thresholds=RED_ABOVE((1, 1))),
            stat("Decisions made without Redis",
                 f"sum(rate(obleth_budget_degraded_decisions_total{{{P}}}[{RI}]))", "reqps",
                 thresholds=RED_ABOVE((0.001, 1))),
            stat("Tenants with limits", f"count(count by (tenant) (obleth_budget_limit{{tenant!=\"other\",{P}}}))",
                 "none", "Tenants with per-minute limits seen by the pods (the most active metrics.tenant_series)."),
            row("Limits"),
            ts("What tenants have left of their per-minute limits",
               [(f"min by (tenant, window) (obleth_budget_remaining{{{P}}}) "
                 f"/ max by (tenant, window) (obleth_budget_limit{{{P}}})", "{{tenant}} {{window}}")],
               "percentunit", "Remaining / limit, per window (tokens, requests). Only tenants with limits.",
               minv=0, maxv=1),
            ts("Monthly spend", [(f"max by (tenant) (obleth_budget_monthly_spend{{{P}}})", "{{tenant}}")],
               "currencyUSD", "In the model registry's currency; the pods share it through Redis."),
            ts("Lifetime spend", [(f"max by (tenant) (obleth_budget_lifetime_spend{{{P}}})", "{{tenant}}")],
               "currencyUSD"),
            ts("Budget decisions",
               [(f"sum by (decision) (rate(obleth_budget_decisions_total{{{P}}}[{RI}]))", "{{decision}}")],
               "reqps", "allowed, denied (a limit refused it: the Upstream dashboard's errors say which) or "
               "unavailable (Redis down and the tenant fail_closed).", stack=True),
            ts("Budget breaker per pod", [(f"obleth_budget_breaker_open{{{P}}}", "{{pod}}")], "none", minv=0, maxv=1),
            ts("Decisions on the local share",
               [(f"sum by (pod) (rate(obleth_budget_degraded_decisions_total{{{P}}}[{RI}]))", "{{pod}}")], "reqps"),
        ],
    },
    "ledger": {
        "title": "obleth / Ledger",
        "description": "Usage rows from the request path to the ledger database through each pod's write-ahead "
                       "log: rows written and dropped, the log's size, replays.",
        "panels": [
            stat("Rows dropped (range)", f"sum(increase(obleth_ledger_rows_dropped_total{{{P}}}[$__range]))",
                 "none", "Rows that never reached the log: requests that will not be billed.",
                 thresholds=RED_ABOVE((1, 1))),
            stat("Ledger database up (pods)", f"sum(obleth_ledger_backend_up{{{P}}})", "none"),
            stat("Log full (pods)", f"sum(obleth_ledger_wal_full{{{P}}})", "none", thresholds=RED_ABOVE((1, 1))),
            stat("Largest log, share of its limit",
                 f"max(obleth_ledger_wal_bytes{{{P}}} / obleth_ledger_wal_max_bytes{{{P}}})", "percentunit",
                 thresholds=RED_ABOVE((0.5, 0.9))),
            row("Rows"),
            ts("Rows written to the ledger database",
               [(f"sum by (pod, backend) (rate(obleth_ledger_rows_written_total{{{P}}}[{RI}]))",
                 "{{pod}} {{backend}}")], "rowsps"),
            ts("Rows dropped", [(f"sum by (pod, reason) (rate(obleth_ledger_rows_dropped_total{{{P}}}[{RI}]))",
                                 "{{pod}} {{reason}}")], "rowsps"),
            ts("Rows appended to the log",
               [(f"sum by (pod) (rate(obleth_ledger_wal_rows_appended_total{{{P}}}[{RI}]))", "{{pod}}")], "rowsps"),
            ts("Rows replayed from the log",
               [(f"sum by (pod) (rate(obleth_ledger_replayed_rows_total{{{P}}}[{RI}]))", "{{pod}}")], "rowsps",
               "Rows shipped again after a restart or an outage; those already stored are skipped."),
            ts("Insert batches", [(f"sum by (backend, outcome) (rate(obleth_ledger_batches_total{{{P}}}[{RI}]))",
                                   "{{backend}} {{outcome}}")], "ops"),
            ts("Insert duration (p99)",
               [(f"histogram_quantile(0.99, sum by (le, backend) "
                 f"(rate(obleth_ledger_insert_duration_seconds_bucket{{{P}}}[{RI}])))", "{{backend}}")], "s",
               "Over every pod's inserts (a histogram, so the pods add up)."),
            row("Write-ahead log"),
            ts("Log size", [(f"obleth_ledger_wal_bytes{{{P}}}", "{{pod}}")], "bytes"),
            ts("Log size / ledger.wal_max_bytes",
               [(f"obleth_ledger_wal_bytes{{{P}}} / obleth_ledger_wal_max_bytes{{{P}}}", "{{pod}}")],
               "percentunit", "Above 0.5 for 10 minutes fires OblethLedgerWalFilling.", minv=0, maxv=1),
            ts("Log segments", [(f"obleth_ledger_wal_segments{{{P}}}", "{{pod}}")]),
            ts("Batches waiting to be shipped", [(f"obleth_ledger_wal_pending_batches{{{P}}}", "{{pod}}")]),
        ],
    },
    "upstream": {
        "title": "obleth / Upstream",
        "description": "The backends as the gateway sees them: latency to headers and to the first chunk, the "
                       "whole request, and errors by code and source.",
        "panels": [
            stat("Error rate", f"sum(rate(obleth_request_errors_total{{{P}}}[{RI}])) "
                 f"/ sum(rate(obleth_requests_total{{{P}}}[{RI}]))", "percentunit",
                 thresholds=RED_ABOVE((0.01, 0.05))),
            stat("Upstream errors", f'sum(rate(obleth_request_errors_total{{source="upstream",{P}}}[{RI}]))',
                 "reqps", thresholds=RED_ABOVE((0.01, 1))),
            stat("p99 to first chunk",
                 f"histogram_quantile(0.99, sum by (le) (rate(obleth_upstream_first_chunk_seconds_bucket{{{P}}}[{RI}])))",
                 "s"),
            stat("Requests", f"sum(rate(obleth_requests_total{{{P}}}[{RI}]))", "reqps"),
            row("Latency"),
            ts("Upstream latency to response headers", quantiles("obleth_upstream_latency_seconds", "route",
                                                                 (0.5, 0.9, 0.99)), "s"),
            ts("Upstream time to first chunk (streams)", quantiles("obleth_upstream_first_chunk_seconds", "route",
                                                                   (0.5, 0.9, 0.99)), "s"),
            ts("Request duration (queue included)", quantiles("obleth_request_duration_seconds", "route",
                                                              (0.5, 0.99)), "s"),
            ts("Upstream latency p99 per pod", quantiles("obleth_upstream_latency_seconds", "pod", (0.99,)), "s"),
            row("Errors"),
            ts("Errors by code", [(f"sum by (code, source) (rate(obleth_request_errors_total{{{P}}}[{RI}]))",
                                   "{{code}} ({{source}})")], "reqps", "Codes of docs/errors.md's table.",
               stack=True),
            ts("Responses by status", [(f"sum by (status) (rate(obleth_requests_total{{{P}}}[{RI}]))",
                                        "{{status}}")], "reqps", stack=True),
        ],
    },
}


def render(name, spec):
    panels = []
    x = y = 0
    row_h = 0
    pid = 1
    for p in spec["panels"]:
        w, h = p["w"], p["h"]
        if x + w > 24:
            x, y = 0, y + row_h
            row_h = 0
        panel = {"id": pid, "type": p["type"], "title": p["title"], "gridPos": {"x": x, "y": y, "w": w, "h": h}}
        pid += 1
        if p["type"] == "row":
            panel.update({"collapsed": False, "panels": []})
            x, y, row_h = 0, y + row_h + 1, 0
            panel["gridPos"]["x"] = 0
            panels.append(panel)
            continue
        if p.get("description"):
            panel["description"] = p["description"]
        panel["datasource"] = DS
        panel["targets"] = [{"refId": chr(ord("A") + i), "datasource": DS, "expr": e, "legendFormat": lg or "__auto",
                             "range": True} for i, (e, lg) in enumerate(p["targets"])]
        panel["fieldConfig"] = p["fieldConfig"]
        panel["options"] = p["options"]
        panels.append(panel)
        x += w
        row_h = max(row_h, h)
    return {
        "uid": f"obleth-{name}",
        "title": spec["title"],
        "description": spec["description"],
        "tags": ["obleth"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "schemaVersion": 39,
        "version": 1,
        "links": [{"type": "dashboards", "tags": ["obleth"], "asDropdown": True, "title": "obleth"}],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0},
            {"name": "pod", "label": "Pod", "type": "query", "datasource": DS,
             "query": "label_values(obleth_scheduler_slots, pod)",
             "definition": "label_values(obleth_scheduler_slots, pod)",
             "refresh": 2, "multi": True, "includeAll": True, "allValue": ".+", "current": {}, "sort": 1, "hide": 0},
        ]},
        "annotations": {"list": [
            {"name": "Alerts", "datasource": DS, "enable": True, "iconColor": "red",
             "expr": 'ALERTS{alertname=~"Obleth.*", alertstate="firing"}', "titleFormat": "{{alertname}}",
             "textFormat": "{{pod}} {{tenant}}", "step": "60s"},
        ]},
        "panels": panels,
    }


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, spec in DASHBOARDS.items():
        text = json.dumps(render(name, spec), indent=2, sort_keys=False) + "\n"
        path = os.path.join(OUT, f"{name}.json")
        if check:
            if not os.path.exists(path) or open(path).read() != text:
                stale.append(path)
        else:
            os.makedirs(OUT, exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
    if check and stale:
        print("stale dashboards (run python3 scripts/deploy/dashboards.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
