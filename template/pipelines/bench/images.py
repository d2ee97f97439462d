"""Benchmark the apps' images: size, build time cold and cached, and start to ready.

    uv run python -m pipelines.bench.images

Builds each image with podman as `mlops images build` does (the locally made bases where no registry
answers): once with `--no-cache` (cold: every layer rebuilt; wheels still come from uv's download cache,
a build cache mount, as on a CI runner with a warm cache), once more unchanged (cached). Serving is also
built without its trim (`TRIM=`: the Pulumi SDKs kept) to show what the trim saves. Then each image is
started as its pod runs it and timed until its health endpoint answers (serving's `/livez`: the process
is up; loading a model depends on the registry). Everything it starts is removed.
"""

from __future__ import annotations

import os
import subprocess
import time

import httpx

from infra.config import load_stack, project_name
from infra.naming import IMAGES
from pipelines.common.git import Git
from pipelines.common.options import repo_root
from pipelines.common.procs import LOOPBACK, free_port
from pipelines.containers import engine, pods
from pipelines.containers.builds import Base, choose_base

OWNER = f"bench-{os.getpid()}"


def ready_seconds(app: str, image: str, timeout: float = 300) -> float:
    settings = load_stack(repo_root(), "local")
    pod, container = pods.planned_pods({i: image for i in IMAGES}, settings.serving, settings.tracking)[app]
    port = free_port()
    if app == "serving":
        command = ["bentoml", "serve", "apps.serving.service:ModelService", "--host", LOOPBACK, "--port", str(port)]
        env = {"MLFLOW_TRACKING_URI": f"http://{LOOPBACK}:9", "MODEL_NAME": "prod.bench"}
        path = "/livez"
    else:
        command = ["mlflow", "server", "--host", LOOPBACK, "--port", str(port), "--workers", "1",
                   "--backend-store-uri", "sqlite:////tmp/mlflow.db"]  # fmt: skip
        env, path = {}, "/health"
    name = f"mlops-bench-{app}-{os.getpid()}"
    args = pods.run_command(image, name, pod, container, owner=OWNER, command=command, env=env)
    started = time.monotonic()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while time.monotonic() - started < timeout:
            try:
                if httpx.get(f"http://{LOOPBACK}:{port}{path}", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"{app} exited ({process.returncode})")
            time.sleep(0.1)
        raise RuntimeError(f"{app} was not ready in {timeout:.0f} s")
    finally:
        pods.remove(name, OWNER)
        process.wait(timeout=60)


def main() -> int:
    root = repo_root()
    revision = Git(root).commit_of("HEAD")
    base, uv_image = choose_base(root, Base.AUTO, print)
    project = project_name(root)
    rows = []
    for image in IMAGES:
        tag = f"localhost/{project}/{image}:bench"
        cold = engine.build(root, image, tag, base=base, uv_image=uv_image, revision=revision, no_cache=True)
        cached = engine.build(root, image, tag, base=base, uv_image=uv_image, revision=revision)
        ready = min(ready_seconds(image, tag) for _ in range(3))
        rows.append((image, cold.size_bytes, cold.seconds, cached.seconds, ready))
    untrimmed = engine.build(
        root, "serving", f"localhost/{project}/serving:bench-untrimmed", base=base, uv_image=uv_image,
        revision=revision, build_args={"TRIM": ""},
    )  # fmt: skip
    print(f"base: {base or 'public'}")
    print(f"{'image':<10}{'size MB':>9}{'cold s':>9}{'cached s':>10}{'ready s':>9}")
    for image, size, cold_s, cached_s, ready in rows:
        print(f"{image:<10}{size / 1e6:>9,.0f}{cold_s:>9.0f}{cached_s:>10.1f}{ready:>9.1f}")
    print(f"serving without the trim: {untrimmed.size_bytes / 1e6:,.0f} MB")
    engine.run(["rmi", "--force", *(f"localhost/{project}/{i}:bench" for i in IMAGES),
                f"localhost/{project}/serving:bench-untrimmed"], check=False)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
