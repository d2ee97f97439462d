"""Each image started as its pod runs it (UID, read-only root, the pod's tmpfs mounts, no capabilities),
serving passing the smoke suite, pushed to a registry on loopback, pinned, planned, and the local
environment run from the images."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import pytest

from core.registry import registered_name
from infra.config import load_stack
from infra.k8s.apps import TRACKING, AppContext
from infra.k8s.tracking import auth_config, tracking_objects, users_job
from infra.naming import IMAGES
from pipelines.common.procs import LOOPBACK, free_port
from pipelines.containers import engine, pods
from pipelines.images.pins import request_pin
from pipelines.images.status import status
from pipelines.local import objectstore
from pipelines.local.environment import LocalEnvironment
from pipelines.plan.offline import plan_stacks
from tests.conftest import ROOT, git, git_repository

OWNER = f"tests-{os.getpid()}"
# What podman itself puts into every container (its /etc/hosts, /etc/resolv.conf and /etc/hostname
# mount points): the app changed nothing else.
PODMAN_OWN = {"/etc", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run", "/run/.containerenv"}


def planned_pods() -> dict[str, tuple[dict, dict]]:
    settings = load_stack(ROOT, "local")
    return pods.planned_pods({i: f"image-{i}" for i in IMAGES}, settings.serving, settings.tracking)


def wait_ok(url: str, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the container exited ({process.returncode})"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer 200 in {timeout:.0f} s")


@pytest.fixture
def run_image(tmp_path: Path) -> Iterator[object]:
    started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        app: str, image: str, command: Sequence[str], env: Mapping[str, str], mounts: Sequence[str] = ()
    ) -> tuple[str, subprocess.Popen[bytes]]:
        pod, container = planned_pods()[app]
        name = f"mlops-test-{app}-{os.getpid()}-{len(started)}"
        args = pods.run_command(image, name, pod, container, owner=OWNER, command=command, env=env, mounts=mounts)
        log = (tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append((name, process))
        return name, process

    yield start
    for name, process in started:
        pods.remove(name, OWNER)
        process.wait(timeout=60)


def assert_runs_as_its_pod(name: str, app: str, mounts: Sequence[str] = ()) -> None:
    """`mounts`: the `--volume` flags it was started with (podman makes their mount points)."""
    _, container = planned_pods()[app]
    uid = container["securityContext"]["runAsUser"]
    assert uid != 0 and pods.process_user(name) == (uid, container["securityContext"]["runAsGroup"])
    mount_points = {mount.split(":")[1] for mount in mounts}
    changed = set(pods.changed_files(name)) - PODMAN_OWN - mount_points
    assert not changed, f"the app wrote outside its tmpfs mounts: {sorted(changed)}"
    found = pods.inspect(name)
    assert found is not None
    assert found["HostConfig"]["ReadonlyRootfs"] is True
    assert not found["HostConfig"].get("CapAdd")
    assert {c.lower() for c in found["HostConfig"]["CapDrop"] or []} >= {"cap_chown", "cap_net_raw", "cap_setuid"}


def test_serving_image_passes_the_smoke_suite_as_its_pod_runs(built, local_env, run_image) -> None:  # type: ignore[no-untyped-def]
    env, _ = local_env
    running = env.running()
    version = env.champions()["prod"]
    port = free_port()
    variables = {
        **objectstore.client_env(running["object_store"].port),
        "MLFLOW_TRACKING_URI": running["tracking"].url,
        "MODEL_NAME": registered_name("prod", env.model),
        "SERVING_ENVIRONMENT": "local",
    }
    command = ["bentoml", "serve", "apps.serving.service:ModelService", "--host", LOOPBACK, "--port", str(port)]
    name, process = run_image("serving", built["serving"].tag, command, variables)
    url = f"http://{LOOPBACK}:{port}"
    wait_ok(url + "/readyz", process)
    smoke = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests/smoke", "--serving-url", url,
         "--expected-version", str(version)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert smoke.returncode == 0, smoke.stdout[-3000:]
    assert " passed" in smoke.stdout and "failed" not in smoke.stdout
    assert_runs_as_its_pod(name, "serving")


def test_tracking_image_answers_health_as_its_pod_runs(built, run_image) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    database, artifacts = "sqlite:////tmp/mlflow.db", "/tmp/artifacts"
    command = ["mlflow", "server", "--host", LOOPBACK, "--port", str(port), "--workers", "1",
               "--backend-store-uri", database, "--default-artifact-root", artifacts]  # fmt: skip
    name, process = run_image("tracking", built["tracking"].tag, command, {"MLFLOW_DISABLE_TELEMETRY": "true"})
    wait_ok(f"http://{LOOPBACK}:{port}/health", process)
    experiments = httpx.post(
        f"http://{LOOPBACK}:{port}/api/2.0/mlflow/experiments/create", json={"name": "from-the-test"}, timeout=10
    )
    assert experiments.status_code == 200, experiments.text  # it writes its database, in the pod's /tmp
    assert_runs_as_its_pod(name, "tracking")


def secret_mounts(pod: dict, container: dict, files: Path) -> list[str]:
    """Bind mounts standing in for the pod's Secret volumes: `files/<volume>/<key>` at the mount path."""
    secrets = {v["name"] for v in pod["volumes"] if "secret" in v}
    return [f"{files / m['name']}:{m['mountPath']}:ro" for m in container["volumeMounts"] if m["name"] in secrets]


def test_tracking_image_runs_its_deployment_with_secrets_from_files_and_makes_the_users(  # type: ignore[no-untyped-def]
    built, run_image, tmp_path
) -> None:
    """The Deployment's own launcher line (PGPASSWORD and Flask's key read from the Secret's files) with
    basic auth, then the users Job's own command from the same image: the app users exist and sign in."""
    ctx = AppContext("local", "local", {"project": "local"}, "s3://local/mlflow")
    objects = tracking_objects(ctx, load_stack(ROOT, "local").tracking, "image")
    pod, planned = pods.pod_of(objects, TRACKING)
    launcher = planned["command"][: planned["command"].index("--") + 1]
    assert launcher[:3] == ["python", "-m", "apps.tracking.launch"] and len(launcher) == 6, launcher
    admin = "admin-password-from-a-file"
    files = tmp_path / "secrets"
    contents = {
        "database/password": "unused-by-sqlite\n",
        "auth/auth.ini": auth_config(admin, "sqlite:////tmp/auth.db"),
        "auth/flask-secret-key": "flask-key-from-a-file\n",
        "admin/username": "admin",
        "admin/password": admin,
        "serving/username": "serving",
        "serving/password": "serving-password-from-a-file",
        "drift/username": "drift",
        "drift/password": "drift-password-from-a-file",
    }
    for path, text in contents.items():
        (files / path).parent.mkdir(parents=True, exist_ok=True)
        (files / path).write_text(text)
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    command = [*launcher, "mlflow", "server", "--host", LOOPBACK, "--port", str(port), "--workers", "1",
               "--backend-store-uri", "sqlite:////tmp/mlflow.db", "--default-artifact-root", "/tmp/artifacts",
               "--app-name=basic-auth"]  # fmt: skip
    env = {e["name"]: e["value"] for e in planned["env"] if "value" in e}
    mounts = secret_mounts(pod, planned, files)
    name, process = run_image("tracking", built["tracking"].tag, command, env, mounts)
    wait_ok(f"{url}/health", process)
    assert httpx.get(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10).status_code == 401

    job = users_job(ctx, built["tracking"].tag)
    job_pod = job["spec"]["template"]["spec"]
    (job_container,) = job_pod["containers"]
    job_command = [f"--tracking-uri={url}" if a.startswith("--tracking-uri=") else a for a in job_container["command"]]
    job_name = f"mlops-test-users-{os.getpid()}"
    args = pods.run_command(
        built["tracking"].tag, job_name, job_pod, job_container, owner=OWNER, command=job_command,
        env={}, mounts=secret_mounts(job_pod, job_container, files),
    )  # fmt: skip
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    finally:
        pods.remove(job_name, OWNER)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "serving: created" in done.stdout and "drift: created, edits experiment drift" in done.stdout, done.stdout
    search = f"{url}/api/2.0/mlflow/experiments/search?max_results=10"
    assert httpx.get(search, auth=("serving", "serving-password-from-a-file"), timeout=10).status_code == 200
    assert httpx.get(search, auth=("serving", "wrong"), timeout=10).status_code == 401
    assert_runs_as_its_pod(name, "tracking", mounts)


def test_a_pushed_digest_is_pinned_planned_and_current(built, registry, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    work = git_repository(
        tmp_path,
        monkeypatch,
        folders=("apps", "core", "infra", "pipelines", "policies", "stacks"),
        files=("Pulumi.yaml", "pyproject.toml", "uv.lock", "README.md", ".dockerignore"),
    )
    commit = git(work, "rev-parse", "HEAD")
    path = f"{registry}/platform"
    digests = {}
    for image, result in built.items():
        digests[image] = engine.push(result.tag, f"{path}/{image}:{commit[:12]}", tls_verify=False)
        manifest = httpx.head(
            f"http://{registry}/v2/platform/{image}/manifests/{commit[:12]}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                     "application/vnd.docker.distribution.manifest.v2+json"},
            timeout=10,
        )  # fmt: skip
        assert manifest.headers["Docker-Content-Digest"] == digests[image], "pin what the registry reports"
    request = request_pin(work, "local", digests, commit, open_pr=False, registry=path)
    assert request.pushed and request.digests == digests
    git(work, "checkout", "-q", request.branch)
    (plan,) = plan_stacks(work, ["local"], parallel=False)
    deployed = {
        c["name"]: c["image"]
        for r in plan.resources
        if r.type.startswith("kubernetes:") and ("Deployment" in r.type or "Rollout" in r.type)
        for c in r.inputs.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    }
    assert deployed["serving"] == f"{path}/serving@{digests['serving']}"
    assert deployed["mlflow"] == f"{path}/tracking@{digests['tracking']}"
    found = {s.image: s for s in status(work, ["local"])}
    assert {i: found[i].state for i in IMAGES} == dict.fromkeys(IMAGES, "current"), found
    assert {i: found[i].digest for i in IMAGES} == digests


def test_local_environment_runs_from_the_images_and_converges_after_a_kill(built, tmp_path, restore_environ) -> None:  # type: ignore[no-untyped-def]
    model = load_stack(ROOT, "local").serving.model.name
    env = LocalEnvironment(ROOT, model, home=tmp_path / "state", containers=True)
    try:
        summary = env.up()
        assert summary.images == {i: b.tag for i, b in built.items()}
        assert all(ok for _, ok, _ in summary.smoke), summary.smoke
        names = {app: env.container_name(app) for app in IMAGES}
        assert all(pods.owned(n, env.owner) for n in names.values())
        assert_runs_as_its_pod(names["serving"], "serving")
        # A crash of the supervising client (SIGKILL) leaves its container behind: the next `up`
        # removes that one (it carries this state's label) and starts serving again.
        os.kill(summary.services["serving"].pid, signal.SIGKILL)
        again = env.up()
        assert "serving" not in again.reused and "tracking" in again.reused
        assert all(ok for _, ok, _ in again.smoke), again.smoke
    finally:
        env.down()
    assert not any(pods.inspect(env.container_name(app)) for app in IMAGES), "down leaves no container"
