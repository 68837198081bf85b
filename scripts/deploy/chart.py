#!/usr/bin/env python3
"""Checks the Helm chart (deploy/helm/obleth) without a cluster; run by
scripts/deploy-check.sh in its venv (requirements.txt beside this file).

- `helm lint --strict` and `helm template`, through Helm's own Go SDK (v4) as the
  helm-python-sdk wheel ships it (no helm binary can be had from the registries this
  project may use);
- values.yaml and values-production.yaml against values.schema.json (and values the schema
  must refuse);
- every rendered manifest against the Kubernetes OpenAPI schemas (kubernetes-validate,
  strict: unknown fields are errors), for the oldest and newest Kubernetes the chart
  claims; the PrometheusRule's rules through `promtool check rules` and compared with
  deploy/prometheus/alerts.yml;
- what the issue asks of the chart: the migration is a pre-install/pre-upgrade hook, pods
  never migrate, restricted security contexts everywhere, credentials only from the
  existing Secret, budget.local_share = 1 / pods;
- every rendered obleth.toml through `obleth check-config` (the real binary's parser), and
  the rendered haproxy.cfg through `haproxy -c`.

Usage: chart.py --obleth PATH_TO_BINARY
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "deploy", "helm", "obleth")
ALERTS = os.path.join(ROOT, "deploy", "prometheus", "alerts.yml")
# The chart's kubeVersion floor and the newest schemas kubernetes-validate has.
KUBE_VERSIONS = ["1.25", kubernetes_validate.latest_version()]
SECRET_NAME = "obleth-secrets"

failures = []
passed = 0


def check(ok, what):
    global passed
    if ok:
        passed += 1
    else:
        failures.append(what)
        print(f"  FAIL {what}")


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def deep_merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def cases():
    production = load(os.path.join(CHART, "values-production.yaml"))
    minimal = {"existingSecret": {"name": SECRET_NAME}}
    return {
        # The defaults plus the one value they require.
        "defaults": minimal,
        "production": production,
        "emptyDir WAL, one pod": deep_merge(minimal, {"replicaCount": 1, "wal": {"persistence": {"enabled": False}}}),
        "everything on": deep_merge(minimal, {
            "haproxy": {"enabled": True}, "ingress": {"enabled": True}, "autoscaling": {"enabled": True},
            "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
            "tls": {"existingSecret": "obleth-tls"},
            "existingSecret": {"keys": {"metricsToken": "metrics-token", "upstreamApiKey": "upstream-key"}},
        }),
    }


def check_schema():
    print("== values.schema.json")
    schema = json.load(open(os.path.join(CHART, "values.schema.json")))
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = load(os.path.join(CHART, "values.yaml"))
    for name, over in cases().items():
        errors = list(jsonschema.Draft7Validator(schema).iter_errors(deep_merge(defaults, over)))
        check(not errors, f"values ({name}) match the schema: {[e.message for e in errors][:3]}")
    refused = {
        "replicaCount as a string": {"replicaCount": "3"},
        "a credential in config (admin.token)": {"config": {"admin": {"token": "x" * 40}}},
        "a credential in config (database.url)": {"config": {"database": {"url": "postgres://u:p@h/db"}}},
        "an unknown top-level value": {"replicas": 3},
        "an unknown config section": {"config": {"admision": {"max_in_flight": 3}}},
        "no Secret name": {"existingSecret": {"name": ""}},
    }
    for name, over in refused.items():
        values = deep_merge(deep_merge(defaults, {"existingSecret": {"name": SECRET_NAME}}), over)
        check(not jsonschema.Draft7Validator(schema).is_valid(values), f"the schema refuses {name}")


def check_lint():
    print("== helm lint --strict")
    for name, values in cases().items():
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSIONS[-1]}.0")
        bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + report.get("errors", [])
        for m in report.get("messages", []):
            if m.get("severity", 0) < 2:
                print(f"  note ({name}): {m.get('path')}: {m.get('error')}")
        check(not bad, f"helm lint ({name}): {bad}")
    # Without the Secret's name the chart refuses to render, saying why.
    try:
        with helm.Chart.load(CHART) as chart:
            chart.render({}, name="obleth", namespace="default", is_install=True)
        check(False, "rendering without existingSecret.name fails")
    except helm.HelmError as e:
        # The schema says it first (minLength); the template's own `fail` is the net.
        check("existingSecret" in str(e), f"rendering without existingSecret.name fails naming it: {e}")


def render(values):
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        files = chart.render(values, name="obleth", namespace="llm", is_install=True)
    docs = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((path, doc))
    return docs


def pod_specs(docs):
    for path, d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield d, d["spec"]["template"]["spec"]


def check_render(obleth, tmp):
    print("== helm template + Kubernetes schemas")
    alerts = load(ALERTS)
    for name, values in cases().items():
        docs = render(values)
        kinds = sorted({d["kind"] for _, d in docs})
        print(f"  {name}: {len(docs)} manifests ({', '.join(kinds)})")
        for path, d in docs:
            what = f"{name}: {d['kind']} {d['metadata']['name']} ({os.path.basename(path)})"
            if d["apiVersion"].startswith("monitoring.coreos.com/"):
                check_operator_resource(d, what, alerts, tmp)
                continue
            for version in KUBE_VERSIONS:
                try:
                    kubernetes_validate.validate(d, version, strict=True)
                    check(True, what)
                except kubernetes_validate.ValidationError as e:
                    check(False, f"{what} against Kubernetes {version}: {e.message} at {list(e.path)}")
        check_invariants(name, values, docs, obleth, tmp)


def check_operator_resource(d, what, alerts, tmp):
    """The Prometheus Operator's CRDs have no schema in kubernetes-validate."""
    if d["kind"] == "PrometheusRule":
        check(d["spec"] == alerts, f"{what}: the rules are deploy/prometheus/alerts.yml's")
        path = os.path.join(tmp, "rules.yml")
        with open(path, "w") as f:
            yaml.safe_dump(d["spec"], f)
        out = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True)
        check(out.returncode == 0, f"{what}: promtool check rules: {out.stdout}{out.stderr}")
    elif d["kind"] == "ServiceMonitor":
        eps = d["spec"].get("endpoints", [])
        check(bool(eps) and all(e.get("port") == "metrics" for e in eps), f"{what}: scrapes the metrics port")
        check(d["spec"].get("jobLabel") == "app.kubernetes.io/name", f"{what}: job label is the app name")
    else:
        check(False, f"{what}: unexpected operator resource")


def check_invariants(name, values, docs, obleth, tmp):
    by_kind = {}
    for _, d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    merged = deep_merge(load(os.path.join(CHART, "values.yaml")), values)
    # The migration runs as a hook before pods, and pods never migrate.
    jobs = by_kind.get("Job", [])
    check(len(jobs) == 1, f"{name}: one migration Job")
    for job in jobs:
        ann = job["metadata"].get("annotations", {})
        check(ann.get("helm.sh/hook") == "pre-install,pre-upgrade", f"{name}: the Job is a pre-install,pre-upgrade hook")
        check("hook-succeeded" in ann.get("helm.sh/hook-delete-policy", ""), f"{name}: the Job has a delete policy")
        check("helm.sh/hook-weight" in ann, f"{name}: the Job has a hook weight")
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        check(args[:1] == ["migrate"] and "--wait" in args, f"{name}: the Job runs obleth migrate --wait: {args}")
    workloads = by_kind.get("StatefulSet", []) + by_kind.get("Deployment", [])
    gateway = [w for w in workloads if w["metadata"]["name"] == "obleth"]
    check(len(gateway) == 1, f"{name}: one gateway workload")
    expected_kind = "StatefulSet" if merged["wal"]["persistence"]["enabled"] else "Deployment"
    check(gateway and gateway[0]["kind"] == expected_kind, f"{name}: the gateway is a {expected_kind}")
    for w in gateway:
        c = w["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in c["env"]}
        check(env.get("OBLETH_DATABASE_MIGRATE", {}).get("value") == "false", f"{name}: pods run with migrate=false")
        for var, e in env.items():
            if var in ("OBLETH_ADMIN_TOKEN", "OBLETH_DATABASE_URL", "OBLETH_BUDGET_REDIS_URL", "OBLETH_CLUSTER_REDIS_URL",
                       "OBLETH_LEDGER_CLICKHOUSE_PASSWORD", "OBLETH_UPSTREAM_API_KEY", "OBLETH_METRICS_TOKEN"):
                ref = e.get("valueFrom", {}).get("secretKeyRef", {})
                check(ref.get("name") == merged["existingSecret"]["name"], f"{name}: {var} from the existing Secret")
        spec = w["spec"]["template"]["spec"]
        check(bool(spec.get("topologySpreadConstraints")) or bool(spec.get("affinity", {}).get("podAntiAffinity")),
              f"{name}: pods are spread")
        probes = {p: c.get(p, {}).get("httpGet", {}).get("path") for p in ("livenessProbe", "readinessProbe")}
        check(probes == {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}, f"{name}: probes: {probes}")
    for owner, spec in pod_specs(docs):
        psc = spec.get("securityContext", {})
        who = f"{name}: {owner['kind']} {owner['metadata']['name']}"
        check(psc.get("runAsNonRoot") is True, f"{who}: runAsNonRoot")
        check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{who}: seccomp RuntimeDefault")
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            check(sc.get("allowPrivilegeEscalation") is False, f"{who}/{c['name']}: no privilege escalation")
            check(sc.get("readOnlyRootFilesystem") is True, f"{who}/{c['name']}: read-only root")
            check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{who}/{c['name']}: drops ALL")
    check(len(by_kind.get("PodDisruptionBudget", [])) == 1, f"{name}: a PodDisruptionBudget")
    # HAProxy's rendered configuration, through HAProxy's own parser.
    for cm in by_kind.get("ConfigMap", []):
        if "haproxy.cfg" in cm.get("data", {}):
            path = os.path.join(tmp, "haproxy.cfg")
            with open(path, "w") as f:
                f.write(cm["data"]["haproxy.cfg"])
            out = subprocess.run(["haproxy", "-c", "-f", path], capture_output=True, text=True, timeout=30)
            check(out.returncode == 0, f"{name}: haproxy -c on the chart's haproxy.cfg: {out.stdout}{out.stderr}")
    # No credential is ever rendered: no Secret objects and none in the ConfigMap.
    check("Secret" not in by_kind, f"{name}: the chart renders no Secret")
    config = [d for d in by_kind.get("ConfigMap", []) if "obleth.toml" in d.get("data", {})]
    check(len(config) == 1, f"{name}: one obleth.toml")
    for cm in config:
        text = cm["data"]["obleth.toml"]
        pods = merged["autoscaling"]["maxReplicas"] if merged["autoscaling"]["enabled"] else merged["replicaCount"]
        share = [line for line in text.splitlines() if line.startswith("local_share")]
        check(share and abs(float(share[0].split("=")[1]) - 1 / pods) < 1e-9,
              f"{name}: budget.local_share = 1/{pods}: {share}")
        check("migrate = false" in text, f"{name}: database.migrate = false in the file")
        path = os.path.join(tmp, "obleth.toml")
        with open(path, "w") as f:
            f.write(text)
        # The real parser and validator; the secrets as the Secret would give them.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OBLETH_") and k != "RUST_BACKTRACE"}
        env.update(OBLETH_ADMIN_TOKEN="0123456789abcdef0123456789abcdef-chart-check",
                   OBLETH_DATABASE_URL="postgres://obleth:secret@postgres:5432/obleth",
                   OBLETH_BUDGET_REDIS_URL="redis://:secret@redis:6379/0",
                   OBLETH_CLUSTER_REDIS_URL="redis://:secret@redis:6379/0",
                   OBLETH_LEDGER_CLICKHOUSE_PASSWORD="secret")
        if "/etc/obleth/tls/" in text:
            # The TLS Secret's files, as they would be mounted: a CA certificate made here.
            ca = os.path.join(tmp, "ca.crt")
            if not os.path.exists(ca):
                subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                                "-subj", "/CN=obleth chart check CA", "-keyout", os.path.join(tmp, "ca.key"),
                                "-out", ca], check=True, capture_output=True, timeout=60)
            with open(path, "w") as f:
                f.write(text.replace("/etc/obleth/tls/ca.crt", ca))
        out = subprocess.run([obleth, "--config", path, "check-config"], capture_output=True, text=True, env=env,
                             timeout=30)
        check(out.returncode == 0, f"{name}: obleth check-config accepts the rendered obleth.toml: {out.stderr[-500:]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--obleth", required=True)
    args = ap.parse_args()
    print(f"helm SDK {helm.helm_sdk_version()} (helm-python-sdk {helm.helm_c_version()}), "
          f"Kubernetes schemas {', '.join(KUBE_VERSIONS)}")
    check(open(os.path.join(CHART, "files", "alerts.yml")).read() == open(ALERTS).read(),
          "deploy/helm/obleth/files/alerts.yml is identical to deploy/prometheus/alerts.yml")
    with tempfile.TemporaryDirectory(prefix="obleth-chart-") as tmp:
        check_schema()
        check_lint()
        check_render(args.obleth, tmp)
    print(f"chart: {passed} checks passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
