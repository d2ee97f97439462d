"""Run an app's image the way its Kubernetes workload runs it: the `podman run` flags are read from the
planned pod (UID and group, read-only root filesystem with only the pod's emptyDir volumes writable, no
capabilities, no privilege escalation, memory and CPU limits), so a local run is a check of the pod spec.

Every container started here carries the label `mlops.started-by=<owner>`; only a container with the
caller's label is ever stopped or removed.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.errors import EnvironmentProblem
from infra.k8s.apps import SERVING, TRACKING, AppContext
from infra.k8s.serving import serving_objects
from infra.k8s.tracking import tracking_objects
from infra.settings import MonitoringSettings, ServingSettings, TrackingSettings
from pipelines.containers import engine

Obj = dict[str, Any]
OWNER_LABEL = "mlops.started-by"
QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T|m)?$")
FACTORS = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9,
           "T": 10**12}  # fmt: skip


def quantity_bytes(value: str) -> int:
    found = QUANTITY.match(str(value))
    if found is None or found.group(2) == "m":
        raise ValueError(f"not a byte quantity: {value!r}")
    return int(float(found.group(1)) * FACTORS[found.group(2)])


def cpus(value: str) -> str:
    text = str(value)
    return f"{int(text[:-1]) / 1000:g}" if text.endswith("m") else f"{float(text):g}"


def pod_of(objects: Sequence[Obj], container: str) -> tuple[Obj, Obj]:
    """(pod spec, container) of the workload that runs `container` among planned objects."""
    for obj in objects:
        template = obj.get("spec", {}).get("template", {}).get("spec")
        if not template:
            continue
        for candidate in template.get("containers", []):
            if candidate["name"] == container:
                return template, candidate
    raise ValueError(f"no workload runs a container named {container!r}")


def run_flags(pod: Obj, container: Obj) -> list[str]:
    """The `podman run` flags that reproduce how the pod runs `container` (not its env, command or image)."""
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    flags: list[str] = []
    if "runAsUser" in security:
        flags += ["--user", f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}"]
    if security.get("readOnlyRootFilesystem"):
        # podman adds writable /tmp, /var/tmp and /run to a read-only container unless told not to.
        flags += ["--read-only", "--read-only-tmpfs=false"]
    for capability in security.get("capabilities", {}).get("drop", []):
        flags += ["--cap-drop", capability.lower()]
    for capability in security.get("capabilities", {}).get("add", []):
        flags += ["--cap-add", capability.lower()]
    if security.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    if security.get("privileged"):
        flags.append("--privileged")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit")
            options = "rw,mode=1777" + (f",size={quantity_bytes(size)}" if size else "")
            flags += ["--tmpfs", f"{mount['mountPath']}:{options}"]
    limits = container.get("resources", {}).get("limits", {})
    if "memory" in limits:
        flags += ["--memory", str(quantity_bytes(limits["memory"]))]
    if "cpu" in limits:
        flags += ["--cpus", cpus(limits["cpu"])]
    return flags


def planned_pods(
    image: Mapping[str, str], serving: ServingSettings, tracking: TrackingSettings
) -> dict[str, tuple[Obj, Obj]]:
    """The serving and tracking pods as a stack plans them, for `image` (app -> reference)."""
    ctx = AppContext("local", "local", {"project": "local"}, "s3://local/mlflow")
    return {
        "serving": pod_of(
            serving_objects(ctx, serving, image["serving"], tracking_auth=False, monitoring=MonitoringSettings()),
            SERVING,
        ),
        "tracking": pod_of(tracking_objects(ctx, tracking, image["tracking"]), TRACKING),
    }


def run_command(
    image: str,
    name: str,
    pod: Obj,
    container: Obj,
    *,
    owner: str,
    command: Sequence[str],
    env: Mapping[str, str],
    inherit: Sequence[str] = (),
    mounts: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> list[str]:
    """`podman run` in the foreground (the caller supervises it like any server): host network with the
    app bound to 127.0.0.1, removed when it stops. `inherit` names variables passed from the caller."""
    args = [engine.podman(), "run", "--rm", "--name", name, "--label", f"{OWNER_LABEL}={owner}", "--pull=never"]
    args += ["--network", "host", "--stop-timeout", "10", *run_flags(pod, container), *extra]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    for key in inherit:
        args += ["--env", key]
    for mount in mounts:
        args += ["--volume", mount]
    return [*args, image, *command]


def inspect(name: str) -> Obj | None:
    done = subprocess.run([engine.podman(), "container", "inspect", name], capture_output=True, check=False)
    if done.returncode != 0:
        return None
    found = json.loads(done.stdout or "[]")
    return found[0] if found else None


def owned(name: str, owner: str) -> bool:
    found = inspect(name)
    return found is not None and (found.get("Config", {}).get("Labels") or {}).get(OWNER_LABEL) == owner


def remove(name: str, owner: str) -> bool:
    """Stop and remove the container `name` if `owner` started it (a leftover of a killed run)."""
    if not owned(name, owner):
        return False
    engine.run(["rm", "--force", "--time", "10", name], timeout=60)
    return True


def changed_files(name: str) -> list[str]:
    """The paths the container changed in its image's filesystem (`podman diff`: `A|C|D <path>`)."""
    return [line.split(maxsplit=1)[1] for line in engine.run(["diff", name]).splitlines() if line.strip()]


def process_user(name: str) -> tuple[int, int]:
    """(uid, gid) the container's first process runs as, read from its /proc."""
    status = engine.run(["exec", name, "cat", "/proc/1/status"])
    uid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")))
    gid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Gid:")))
    return uid, gid


def writable_by(path: Path, uid: int) -> None:
    """Let the container user `uid` write `path` (a directory it keeps state in), as root only: a rootless
    podman maps the caller's own UID instead (`--userns=keep-id`)."""
    import os  # noqa: PLC0415

    if os.geteuid() != 0:
        return
    try:
        for item in (path, *path.glob("mlflow.db*")):
            os.chown(item, uid, uid)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot hand {path} to the container's user {uid} ({exc})") from None
