#!/usr/bin/env python3
"""Checks the Dockerfile and .dockerignore without a container daemon (none on our CI
machines; run by scripts/deploy-check.sh):

- the build context, as .dockerignore leaves it (Docker's rules: patterns in order, the
  last match wins, `!` re-includes, a matched directory takes its contents), holds every
  file the release build reads: the workspace's manifests and lock file, .cargo/, every
  crate's sources and the files they include or migrate from, and console/dist;
- the context leaves out what must never be in an image or its cache key (target/,
  databases, node_modules, .git, .env files);
- the runtime stage is what the issue asks: a numeric non-root USER (10001), a volume for
  the write-ahead log, `obleth` as ENTRYPOINT with `serve` as CMD, a HEALTHCHECK that
  uses the binary (the image has no curl) on /readyz, and no OBLETH_* defaults that
  would override a mounted configuration.
"""

import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print(f"  FAIL {what}")
    return ok


def pattern_regex(pattern):
    """A .dockerignore pattern as a regex over slash-separated paths (Go's filepath.Match
    plus `**`)."""
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
        i += 1
    return re.compile(out + "$")


def ignore_rules():
    rules = []
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pat = os.path.normpath(line.lstrip("!").strip("/")) if line.lstrip("!").strip("/") else "."
            rules.append((negate, pattern_regex(pat)))
    return rules


def in_context(path, rules):
    """Docker's verdict: the last rule matching the path or one of its parents wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    included = True
    for negate, rx in rules:
        if any(rx.match(p) for p in prefixes):
            included = negate
    return included


def main():
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    rules = ignore_rules()
    context = {f for f in files if in_context(f, rules)}
    print(f"  build context: {len(context)} of {len(files)} files")

    # What the build reads.
    needed = ["Cargo.toml", "Cargo.lock", ".cargo/config.toml", "console/dist/index.html"]
    for f in files:
        if re.fullmatch(r"crates/[^/]+/(Cargo\.toml|build\.rs|src/.*|migrations/.*|data/.*)", f):
            needed.append(f)
    for f in needed:
        check(f in context, f"the build context has {f}")
    # Files the crates include at compile time, relative to the including file.
    for f in files:
        if f.startswith("crates/") and f.endswith(".rs") and "/tests/" not in f and "/benches/" not in f:
            text = open(os.path.join(ROOT, f), errors="replace").read()
            for m in re.finditer(r'include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)', text):
                target = os.path.normpath(os.path.join(os.path.dirname(f), m.group(1)))
                check(target in context, f"{f} includes {target}, which is outside the build context")
            for m in re.finditer(r'migrate!\(\s*"([^"]+)"\s*\)', text):
                crate = "/".join(f.split("/")[:2])
                target = os.path.normpath(os.path.join(crate, m.group(1)))
                check(any(c.startswith(target + "/") for c in context), f"{f} migrates from {target}: not in context")
    # What must stay out.
    for f in context:
        check(not re.search(r"(^|/)(target|node_modules|\.git)/|\.db(-wal|-shm)?$|(^|/)\.env$", f),
              f"{f} should not be in the build context")

    text = open(os.path.join(ROOT, "Dockerfile")).read()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    check(len(stages) == 2, "two stages: build and runtime")
    build, runtime = ("FROM " + s for s in stages)
    check(re.match(r"FROM rust:1-bookworm AS build", build) is not None, "the build stage is rust:1-bookworm")
    check("cargo build --profile dist --locked -p obleth" in build, "the build is `cargo build --profile dist --locked -p obleth`")
    check("target/dist/obleth /out/obleth" in build, "the image takes the `dist` profile's binary")
    check(re.match(r"FROM (debian:bookworm-slim|gcr\.io/distroless/cc)", runtime) is not None,
          "the runtime is debian:bookworm-slim or distroless cc")
    check(re.search(r"^USER 10001(:10001)?$", runtime, re.M) is not None, "runs as uid 10001")
    check(re.search(r'^VOLUME \["/var/lib/obleth"\]', runtime, re.M) is not None, "a volume for the log")
    check(re.search(r'^ENTRYPOINT \["obleth"\]$', runtime, re.M) is not None, 'ENTRYPOINT ["obleth"]')
    check(re.search(r'^CMD \["serve"\]$', runtime, re.M) is not None, 'CMD ["serve"]')
    hc = re.search(r"^HEALTHCHECK .*?CMD (\[.*?\])$", runtime, re.M | re.S)
    if check(hc is not None, "a HEALTHCHECK"):
        cmd = json.loads(hc.group(1))
        check(cmd[:2] == ["obleth", "health"] and any("/readyz" in c for c in cmd),
              f"the HEALTHCHECK is `obleth health` on /readyz: {cmd}")
    check(re.search(r"^ENV\s+OBLETH_", runtime, re.M) is None and "OBLETH_" not in "".join(
        re.findall(r"^ENV .*(?:\\\n.*)*", runtime, re.M)), "no OBLETH_* defaults in the image")
    check(re.search(r"^ADD ", text, re.M) is None, "COPY, never ADD")
    print(f"dockerfile: {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
