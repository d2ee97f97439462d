"""`mlops train --on-cluster` up to the HTTP exchange: the official client against a loopback server that
answers like the API server's `batch/v1` and pod-log endpoints (a stand-in, like Pulumi's mocks: no
cluster runs here). The CronJob it reads is the one the stack plans."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from core.errors import BadInput, CheckFailed, EnvironmentProblem
from infra.config import load_stack, project_name
from infra.k8s import apps, training
from pipelines.common.procs import LOOPBACK
from pipelines.training.cluster import last_json, run_on_cluster
from tests.conftest import ROOT
from tests.planning import write_stack

RESULT = {"registered_model": "dev.diagnosis", "version": 7, "run_id": "r7", "metrics": {"roc_auc": 0.99}}


@dataclass
class ApiState:
    """What the stand-in serves and what it was sent."""

    namespace: str
    cronjob: dict[str, Any] | None
    outcome: str = "Complete"  # the Job's final condition
    requests: list[tuple[str, str]] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    logged: list[str] = field(default_factory=list)


def _pod(name: str, job: str, phase: str, disrupted: bool = False) -> dict[str, Any]:
    conditions = [{"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet"}] if disrupted else []
    return {
        "metadata": {
            "name": name,
            "labels": {training.JOB_NAME_LABEL: job},
            "creationTimestamp": f"2026-12-03T10:0{name[-1]}:00Z",
        },
        "status": {"phase": phase, "conditions": conditions},
    }


def handler(state: ApiState) -> type[BaseHTTPRequestHandler]:
    ns = state.namespace

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            state.requests.append(("GET", url.path))
            job = state.created[-1]["metadata"]["name"] if state.created else ""
            if url.path == f"/apis/batch/v1/namespaces/{ns}/cronjobs/training":
                if state.cronjob is None:
                    self._send(
                        404,
                        {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404},
                    )
                else:
                    self._send(200, state.cronjob)
            elif url.path == f"/api/v1/namespaces/{ns}/pods":
                assert parse_qs(url.query)["labelSelector"] == [f"{training.JOB_NAME_LABEL}={job}"]
                pods = [_pod(f"{job}-a1", job, "Failed", disrupted=True), _pod(f"{job}-b2", job, "Succeeded")]
                self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods})
            elif url.path.startswith(f"/api/v1/namespaces/{ns}/pods/") and url.path.endswith("/log"):
                query = parse_qs(url.query)
                assert query["container"] == ["training"] and query["follow"] == ["true"]
                pod = url.path.split("/")[-2]
                state.logged.append(pod)
                if pod.endswith("a1"):
                    self._send(
                        200, "loading diagnosis@latest\ncheckpoint saved: s3://b/checkpoints/training/x\n", "text/plain"
                    )
                else:
                    text = "resumed from the checkpoint\n" + json.dumps(RESULT, indent=2) + "\n"
                    self._send(200, text, "text/plain")
            elif url.path == f"/apis/batch/v1/namespaces/{ns}/jobs/{job}/status":
                condition = {
                    "type": state.outcome,
                    "status": "True",
                    "reason": "BackoffLimitExceeded" if state.outcome == "Failed" else "Completed",
                    "message": "Job has reached the specified backoff limit" if state.outcome == "Failed" else "",
                }
                self._send(200, {**state.created[-1], "status": {"conditions": [condition]}})
            else:
                self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            state.requests.append(("POST", url.path))
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert url.path == f"/apis/batch/v1/namespaces/{ns}/jobs"
            state.created.append(body)
            self._send(201, body)

    return Handler


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Path, ApiState]]:
    """A scratch repository whose local stack's kubeconfig points at the stand-in, and the stand-in's state."""
    planned = load_stack(ROOT, "local")
    ctx = apps.AppContext(
        project_name(ROOT), "local", {"project": "p"}, "s3://bucket/mlflow", s3_endpoint="http://minio:9000"
    )
    objects = training.training_objects(
        ctx, planned.training, "registry/training@sha256:" + "c" * 64, "diagnosis", tracking_auth=True
    )
    state = ApiState(project_name(ROOT), next(o for o in objects if o["kind"] == "CronJob"))
    server = ThreadingHTTPServer((LOOPBACK, 0), handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "standin",
            "clusters": [{"name": "standin", "cluster": {"server": f"http://{LOOPBACK}:{server.server_port}"}}],
            "users": [{"name": "me", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "me"}}],
        })
    )  # fmt: skip
    root = tmp_path / "repo"
    write_stack(
        root,
        "local",
        lambda config: config[f"{project_name(ROOT)}:local_cluster"].update(
            kubeconfig=str(kubeconfig), context="standin"
        ),
    )
    try:
        yield root, state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_job_is_made_from_the_cronjob_and_followed_through_an_interruption(api: tuple[Path, ApiState]) -> None:
    root, state = api
    lines: list[str] = []
    run = run_on_cluster(
        root, "local", dataset="diagnosis@3", params=["max_iter=500"], interval=0.05, progress=lines.append,
        job_name="training-manual-1",
    )  # fmt: skip
    assert run.succeeded and run.result == RESULT
    (job,) = state.created
    assert job["kind"] == "Job" and job["metadata"]["name"] == "training-manual-1"
    assert job["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
    template = state.cronjob["spec"]["jobTemplate"]["spec"]  # type: ignore[index]
    assert job["spec"]["podFailurePolicy"] == template["podFailurePolicy"]
    assert job["spec"]["template"]["spec"]["tolerations"] == template["template"]["spec"]["tolerations"]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--dataset") + 1] == "diagnosis@3" and args[-1] == "--param=max_iter=500"
    assert state.logged == ["training-manual-1-a1", "training-manual-1-b2"], "both pods' logs, in order"
    assert run.pods == state.logged
    assert any("checkpoint saved" in line for line in lines) and any("resumed" in line for line in lines)


def test_a_failed_job_fails_the_command_with_its_reason(api: tuple[Path, ApiState]) -> None:
    root, state = api
    state.outcome = "Failed"
    with pytest.raises(CheckFailed, match="BackoffLimitExceeded"):
        run_on_cluster(root, "local", interval=0.05, job_name="training-manual-2")


def test_no_cronjob_says_what_to_deploy(api: tuple[Path, ApiState]) -> None:
    root, state = api
    state.cronjob = None
    with pytest.raises(EnvironmentProblem, match="no training CronJob") as raised:
        run_on_cluster(root, "local", interval=0.05)
    assert "training image" in str(raised.value.hint)
    assert not state.created


def test_bad_input_is_refused_before_a_job_is_made(api: tuple[Path, ApiState]) -> None:
    root, state = api
    with pytest.raises(BadInput, match="--dataset"):
        run_on_cluster(root, "local", dataset="Not A Ref", interval=0.05)
    with pytest.raises(BadInput, match="--cloud"):
        run_on_cluster(root, "local", cloud="aws", interval=0.05)
    with pytest.raises(BadInput, match="--timeout"):
        run_on_cluster(root, "local", timeout=1)
    assert not state.created


def test_the_result_is_the_last_json_object_whatever_follows_it() -> None:
    log = 'loading\n{"version": 1}\nmore\n{\n  "version": 2,\n  "metrics": {"auc": 1}\n}\nstderr after it\n'
    assert last_json(log) == {"version": 2, "metrics": {"auc": 1}}
    assert last_json("no result {here\n") is None
    assert last_json('{"version": 3}') == {"version": 3}


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["train", "--env", "dev"], "add --on-cluster"),
        (["train", "--on-cluster"], "needs --env"),
        (["train", "--on-cluster", "--env", "nope"], "needs --env"),
        (["train", "--on-cluster", "--env", "dev", "--tracking-uri", "http://x"], "drop them"),
        (["train", "--on-cluster", "--env", "dev", "--param", "max_iter=0"], "max_iter"),
        (["train", "--on-cluster", "--env", "dev", "--cloud", "azure"], "--cloud azure"),
    ],
)
def test_the_command_refuses_bad_input_naming_it(
    argv: list[str], says: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main

    monkeypatch.chdir(ROOT)
    assert main(argv) == 2
    assert says in " ".join(capsys.readouterr().err.split())  # the console wraps at its width


def test_without_a_training_image_it_says_what_to_pin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main

    monkeypatch.chdir(ROOT)  # the rendered stacks pin no image yet
    assert main(["train", "--on-cluster", "--env", "dev", "--cloud", load_stack(ROOT, "dev").clouds[0].value]) == 3
    assert "images.training" in " ".join(capsys.readouterr().err.split())
