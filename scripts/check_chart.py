#!/usr/bin/env python3
"""Checks helm/admesh as CI must: strict lint (Helm v4 SDK), render with the
default values and with a production-like file, validate every rendered
manifest against the Kubernetes schemas (kubernetes-validate, offline), and
make sure values.schema.json rejects bad values. Exits non-zero on any
failure, naming it."""

import copy
import subprocess
import sys
import tempfile
from pathlib import Path

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "admesh"
KUBERNETES_VERSION = "1.30.0"
failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}")


def lint():
    result = helm.lint(str(CHART), strict=True)
    errors = [m for m in result.get("messages", []) if m.get("severity", 0) >= 2]
    for message in errors:
        fail(f"helm lint: {message}")
    print(f"lint: {len(result.get('messages', []))} messages, {len(errors)} warnings or errors")


def render(values, label):
    chart = helm.Chart.load(str(CHART))
    chart.validate_schema(values)
    rendered = chart.render(values, name="admesh", namespace="admesh")
    documents = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                documents.append(document)
    kinds = sorted({d["kind"] for d in documents})
    print(f"render ({label}): {len(documents)} manifests: {', '.join(kinds)}")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as out:
        yaml.safe_dump_all(documents, out)
        manifest = out.name
    checked = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict",
         "--kubernetes-version", KUBERNETES_VERSION, manifest],
        capture_output=True, text=True,
    )
    if checked.returncode != 0:
        fail(f"kubernetes-validate ({label}):\n{checked.stdout}{checked.stderr}")
    return documents


def expect_rejected(values, label):
    chart = helm.Chart.load(str(CHART))
    try:
        chart.validate_schema(values)
    except helm.HelmValuesError as error:
        print(f"schema rejects {label}: {str(error).splitlines()[0][:120]}")
        return
    fail(f"values.schema.json accepted {label}")


def main():
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    production = yaml.safe_load((CHART / "ci" / "production-values.yaml").read_text())
    lint()
    documents = render({}, "defaults")
    deployments = {d["metadata"]["name"] for d in documents if d["kind"] == "Deployment"}
    for name in ["edge", "ad-server", "bid-engine", "queue-service", "analytics-service",
                 "agent-service", "ad-processor"]:
        if f"admesh-{name}" not in deployments:
            fail(f"no Deployment admesh-{name} with the default values")
    for document in documents:
        if document["kind"] != "Deployment":
            continue
        spec = document["spec"]["template"]["spec"]
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            fail(f"{document['metadata']['name']}: pods may run as root")
        for container in spec["containers"]:
            security = container.get("securityContext", {})
            if security.get("allowPrivilegeEscalation") is not False or \
                    security.get("readOnlyRootFilesystem") is not True:
                fail(f"{document['metadata']['name']}: container security context too loose")
    render(production, "production-values.yaml")

    bad = [
        ("a priority-queue worker count of 0", ["config", "queue", "workerCount"], 0),
        ("an unknown auction", ["config", "auction"], "vickrey"),
        ("a port out of range", ["services", "edge", "port"], 70000),
        ("a database URL that is not PostgreSQL", ["postgresql", "url"], "mysql://db/admesh"),
        ("a string replica count", ["services", "adServer", "replicas"], "three"),
        ("an unknown top-level key", ["replicaCount"], 3),
    ]
    for label, path, value in bad:
        values = copy.deepcopy(defaults)
        target = values
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        expect_rejected(values, label)

    if failures:
        print(f"{len(failures)} chart check(s) failed")
        sys.exit(1)
    print("chart checks passed")


if __name__ == "__main__":
    main()
