"""checkov (Bridgecrew/Prisma's public Kubernetes rules) over every Kubernetes object each stack plans, with
no failure and no skipped check.

checkov lives in `tools/checkov/.venv` (its own lock: its pins conflict with the Pulumi SDKs'), installed
by `make install`. What it cannot read is named here: Helm releases (third-party charts, pinned by
version; their values are checked against the charts' schemas in tests/infra/test_admission.py and
test_monitoring_objects.py) are left out, and an Argo Rollout is given to it as the Deployment it
replaces (the same pod template; checkov knows no Rollout kind).
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.plan.graph import Plan
from tests.conftest import ROOT

CHECKOV = ROOT / "tools" / "checkov" / ".venv" / "bin" / "checkov"
# Checks this repository does not meet, each with its reason. Empty: every check passes. A check added
# here must say why it cannot be met (the test below reads this mapping, nothing else skips a check).
SKIPPED: dict[str, str] = {}
# A planted object that breaks three rules, so that a scanner that silently checks nothing fails the test.
PLANTED = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "planted", "namespace": "planted"},
    "spec": {
        "selector": {"matchLabels": {"app": "planted"}},
        "template": {
            "metadata": {"labels": {"app": "planted"}},
            "spec": {
                "containers": [
                    {
                        "name": "planted",
                        "image": "example/planted:latest",
                        "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                    }
                ]
            },
        },
    },
}
PLANTED_FAILS = {"CKV_K8S_35", "CKV_K8S_38", "CKV_K8S_40"}


def integral(value: Any) -> Any:
    """The mock runtime hands numbers over as floats (`replicas: 1.0`); the API's integers are integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [integral(item) for item in value]
    return value


def manifests(plan: Plan) -> list[dict[str, Any]]:
    """Every planned Kubernetes object as the API server would receive it."""
    found = []
    for resource in plan.resources:
        package, group_version, kind = resource.type.split(":")
        if package != "kubernetes" or group_version.startswith("helm.sh/"):
            continue
        api_version = group_version.removeprefix("core/")
        body = integral(resource.inputs)
        if kind == "Rollout":
            api_version, kind = "apps/v1", "Deployment"
            body = {**body, "spec": {key: body["spec"][key] for key in ("selector", "template")}}
        found.append({**body, "apiVersion": api_version, "kind": kind})
    return found


def run_checkov(directory: Path) -> list[dict[str, Any]]:
    if not CHECKOV.is_file():
        pytest.fail(f"{CHECKOV.relative_to(ROOT)} is missing: run `make install` (it syncs tools/checkov's lock)")
    args = [str(CHECKOV), "--directory", str(directory), "--framework", "kubernetes", "--output", "json"]
    args += ["--compact", "--skip-download"]
    if SKIPPED:
        args += ["--skip-check", ",".join(SKIPPED)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    assert done.stdout.strip().startswith(("[", "{")), f"checkov printed no report: {done.stderr[-2000:]}"
    report = json.loads(done.stdout)
    return report if isinstance(report, list) else [report]


@pytest.fixture(scope="module")
def scanned(plans: dict[str, Plan], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One checkov run over one file per stack plus the planted object: {failed, passed, objects}."""
    directory = tmp_path_factory.mktemp("checkov")
    objects = {}
    for stack, plan in plans.items():
        objects[stack] = manifests(plan)
        (directory / f"{stack}.yaml").write_text(yaml.safe_dump_all(objects[stack], sort_keys=False))
    (directory / "planted.yaml").write_text(yaml.safe_dump(PLANTED))
    (report,) = [r for r in run_checkov(directory) if r.get("check_type") == "kubernetes"]
    results = report["results"]
    assert report["summary"]["parsing_errors"] == 0, results.get("parsing_errors")
    return {"results": results, "objects": objects}


def stack_of(result: dict[str, Any]) -> str:
    return Path(result["file_path"]).stem


def test_checkov_finds_what_it_should_in_a_planted_object(scanned: dict[str, Any]) -> None:
    failed = {r["check_id"] for r in scanned["results"]["failed_checks"] if stack_of(r) == "planted"}
    assert failed >= PLANTED_FAILS


def test_every_planned_object_passes_checkov(scanned: dict[str, Any]) -> None:
    failed = [r for r in scanned["results"]["failed_checks"] if stack_of(r) != "planted"]
    summary = Counter((stack_of(r), r["check_id"], r["check_name"], r["resource"]) for r in failed)
    assert not summary, "\n".join(f"{s}: {c} {n} ({res}) x{k}" for (s, c, n, res), k in sorted(summary.items()))
    passed = Counter(stack_of(r) for r in scanned["results"]["passed_checks"] if stack_of(r) != "planted")
    print(f"checkov: {dict(sorted(passed.items()))} checks passed, 0 failed, {len(SKIPPED)} skipped")
    for stack, objects in scanned["objects"].items():
        assert passed[stack] >= 10 * len(objects) > 0, f"{stack}: checkov checked too little ({passed[stack]})"


def test_every_workload_is_scanned(scanned: dict[str, Any]) -> None:
    """Each pod-bearing object of each stack got checkov's container checks (none was ignored unparsed)."""
    seen = {(stack_of(r), r["resource"]) for r in scanned["results"]["passed_checks"] if r["check_id"] == "CKV_K8S_28"}
    for stack, objects in scanned["objects"].items():
        workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob")]
        assert len(workloads) >= 4
        for obj in workloads:
            resource = f"{obj['kind']}.{obj['metadata']['namespace']}.{obj['metadata']['name']}"
            assert (stack, resource) in seen, f"{stack}: checkov did not check {resource}"


def test_skipped_checks_are_justified() -> None:
    for check, reason in SKIPPED.items():
        assert check.startswith("CKV") and len(reason) > 20, f"{check}: say why it cannot be met"
