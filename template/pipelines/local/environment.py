"""The local environment: the whole model lifecycle on 127.0.0.1, with the code the cloud runs.

`up` starts (or reuses) an S3-compatible store, an MLflow tracking server and BentoML serving, each
in its own process group, concurrently; trains the reference model when asked (or when prod serves
nothing) on the latest version of the dataset named like the model (at first the bundled data);
promotes it dev → staging → prod through the promotion policies; waits until serving has the prod
version; smoke-tests it. State (pids, ports, logs, SQLite registry) lives in `.mlops/local/`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from core.errors import EnvironmentProblem
from core.registry import ArtifactsMissing
from infra.settings import PROMOTION_ORDER
from pipelines.common.procs import (
    Proc,
    choose_port,
    exclusive,
    port_in_use,
    rss_bytes,
    save_state,
    stop,
    wait_http,
)
from pipelines.local import objectstore
from pipelines.local.containers import ContainerStarters
from pipelines.local.servers import BUCKET_PREFIX, ServerStarters
from pipelines.local.shadowing import ShadowSteps
from policies.models import POLICY_DIR

SERVICES = ("object_store", "tracking", "serving")
HEALTH = {"object_store": objectstore.HEALTH, "tracking": "/health", "serving": "/livez"}


@dataclass
class Ports:
    object_store: int = 0
    tracking: int = 0
    serving: int = 0


@dataclass
class UpSummary:
    services: dict[str, Proc]
    reused: list[str]
    trained_version: int | None
    promotions: list[dict[str, Any]] = field(default_factory=list)
    champions: dict[str, int | None] = field(default_factory=dict)
    smoke: list[tuple[str, bool, str]] = field(default_factory=list)
    served_version: int | None = None
    seconds: float = 0.0
    logs: str = ""
    refused: str | None = None
    images: dict[str, str] = field(default_factory=dict)  # app -> image it runs from (`--containers`)


class LocalEnvironment(ServerStarters, ContainerStarters, ShadowSteps):
    def __init__(
        self,
        root: Path,
        model: str,
        progress: Callable[[str], None] = lambda _: None,
        home: Path | None = None,
        policy_dir: Path | None = None,
        *,
        containers: bool = False,
    ) -> None:
        self.root = root
        self.containers = containers
        self.images: dict[str, str] = {}
        self.policy_dir = policy_dir
        self.model = model
        self.progress = progress
        self.home = home or root / ".mlops" / "local"
        self.state_file = self.home / "state.json"
        self.logs = self.home / "logs"

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Proc]:
        if not self.state_file.is_file():
            return {}
        try:
            raw = json.loads(self.state_file.read_text())
        except (OSError, ValueError) as exc:
            raise EnvironmentProblem(
                f"{self.state_file} cannot be read ({exc})",
                hint="`ps -eo pid,cmd | grep -e weed -e mlflow -e bentoml` shows what runs; stop those by hand, "
                "delete the file and run `mlops local up` again",
            ) from None
        if not isinstance(raw, dict):
            raise EnvironmentProblem(f"{self.state_file} is not a JSON object", hint="delete it and run again")
        return {name: Proc.from_state(raw[name]) for name in SERVICES if isinstance(raw.get(name), dict)}

    def running(self) -> dict[str, Proc]:
        """Services from the state file that are alive and answer their health endpoint."""
        healthy = {}
        for name, proc in self.state().items():
            if proc.alive() and _answers(proc.url + HEALTH[name]):
                healthy[name] = proc
        return healthy

    def tracking_uri(self) -> str:
        proc = self.state().get("tracking")
        if proc is None or not (proc.alive() and _answers(proc.url + HEALTH["tracking"])):
            raise EnvironmentProblem("the local MLflow server is not running", hint="start it with `mlops local up`")
        return proc.url

    def registries(self) -> Any:
        from pipelines.promotion.registries import Registries  # noqa: PLC0415

        uri = self.tracking_uri()
        store = self.state().get("object_store")
        if store is not None and store.alive():
            # Registry copies live in the local store: this process reads and writes them directly.
            os.environ.update(objectstore.client_env(store.port))
        envs = [e.value for e in PROMOTION_ORDER]
        return Registries(
            tracking_uris=dict.fromkeys(envs, uri),
            artifact_locations={e: f"s3://{objectstore.bucket(BUCKET_PREFIX, e)}/registry" for e in envs},
        )

    # ------------------------------------------------------------------ up
    def lock(self, what: str, wait: float = 0) -> contextlib.AbstractContextManager[None]:
        """One `mlops local up|down` at a time per state directory."""
        return exclusive(self.home / "lock", what, wait)

    def up(self, train: bool = False, ports: Ports | None = None, wait: float = 0) -> UpSummary:
        with self.lock("mlops local up", wait):
            return self._up(train, ports)

    def _up(self, train: bool, ports: Ports | None) -> UpSummary:
        started = time.monotonic()
        ports = ports or Ports()
        self.home.mkdir(parents=True, exist_ok=True)
        previous = self.state()
        running = self.running()
        warm_up = threading.Thread(target=_warm_up_imports, name="warm-up", daemon=True)
        if train or "tracking" not in running:  # training may follow: import its heavy modules while servers boot
            warm_up.start()
        self._settle(previous, running)
        services = dict(running)
        # A server that comes back takes its previous port when it can, so that its clients' settings stay
        # right; when it cannot, the servers configured with its old address are restarted too.
        requested = {"object_store": ports.object_store, "tracking": ports.tracking, "serving": ports.serving}
        # Every port is settled before anything starts: a taken port fails the command with nothing started.
        chosen = {
            name: choose_port(_preferred_port(requested[name], previous.get(name)), name.replace("_", " "))
            for name in SERVICES
            if name not in services
        }
        starters = {
            "object_store": self._start_object_store,
            "tracking": self._start_tracking,
            "serving": self._start_serving,
        }
        for index, name in enumerate(SERVICES):
            if name in services:
                continue
            port = chosen.get(name) or choose_port(_preferred_port(requested[name], previous.get(name)), name)
            proc = starters[name](port, services)
            services[name] = proc
            save_state(self.state_file, {**previous, **services, **self._mode()})  # killed now: still found
            old = previous.get(name)
            if old is not None and old.port != proc.port:
                for dependent in SERVICES[index + 1 :]:
                    if dependent in services:
                        stop(services.pop(dependent))
        reused = [name for name in SERVICES if services[name] is running.get(name)]
        os.environ.update(objectstore.client_env(services["object_store"].port))
        save_state(self.state_file, {**services, **self._mode()})

        self._wait_store_and_tracking(services, fresh_store="object_store" not in reused)
        if warm_up.is_alive():  # two threads importing one module at once may see it half made: one at a time
            warm_up.join()

        summary = UpSummary(
            services=services, reused=reused, trained_version=None, logs=str(self.logs), images=dict(self.images)
        )
        summary.champions = self.champions()
        lost = self.check_champions(summary.champions)
        if lost and not train:
            raise ArtifactsMissing(
                "the object store lost what the environments serve:\n  " + "\n  ".join(lost),
                hint="`mlops local up --train` trains a new version and promotes it through every environment; "
                f"or put a backup of {self.home / 'store'} back and run `mlops local up` again",
            )
        if train or summary.champions.get("prod") is None:
            self._train_and_promote(services["tracking"].url, summary)
        summary.champions = self.champions()
        expected = summary.champions.get("prod")
        if expected is None:  # the first promotion was refused: there is nothing to serve or smoke-test yet
            summary.seconds = time.monotonic() - started
            return summary
        self.progress("waiting for BentoML serving to have the prod model")
        wait_http(services["serving"], "/readyz", timeout=180)
        summary.served_version = self._wait_served_version(services["serving"], expected, timeout=60)
        from apps.serving.smoke import run_smoke  # noqa: PLC0415

        self.progress("smoke-testing the serving endpoint")
        smoke = run_smoke(services["serving"].url, expected_version=expected)
        summary.smoke = smoke.checks
        summary.seconds = time.monotonic() - started
        return summary

    def _settle(self, previous: dict[str, Proc], running: dict[str, Proc]) -> None:
        """Stop the half-dead leftovers of an earlier run, and the apps when they move between host processes
        and images or their images changed (`running` keeps what is reused)."""
        recorded = self._recorded()
        if self.containers:
            self.images = self.built_images()
        if bool(recorded.get("containers")) != self.containers or (recorded.get("images") or {}) != self.images:
            for name in ("serving", "tracking"):
                running.pop(name, None)
        for name, proc in previous.items():
            if name not in running:
                stop(proc)
        if recorded.get("containers"):  # what a killed run left behind; reused containers keep running
            self.remove_containers(keep=list(running))

    def _wait_store_and_tracking(self, services: dict[str, Proc], *, fresh_store: bool) -> None:
        self.progress("waiting for the object store")
        wait_http(services["object_store"], HEALTH["object_store"], timeout=30)
        if fresh_store:
            objectstore.ensure_buckets(services["object_store"].port, BUCKET_PREFIX)
            objectstore.import_snapshot(services["object_store"].port, self.home / "objects", self.progress)
        self.progress("waiting for the MLflow tracking server")
        wait_http(services["tracking"], HEALTH["tracking"], timeout=120)

    def _train_and_promote(self, tracking_uri: str, summary: UpSummary) -> None:
        from apps.training.datasets import latest_or_bundled  # noqa: PLC0415
        from apps.training.train import git_sha, train  # noqa: PLC0415
        from core.registry import registered_name  # noqa: PLC0415
        from pipelines.promotion.registries import PromotionRefused, promote  # noqa: PLC0415

        self._ensure_experiment(tracking_uri)
        self.progress(f"training {self.model} into the dev registry, on the latest version of dataset {self.model}")
        data = latest_or_bundled(self.dev_store, self.model, git_sha(), self.progress)
        result = train(tracking_uri, registered_name("dev", self.model), experiment="training", dataset=data)
        summary.trained_version = result.version
        registries = self.registries()
        for environment in (e.value for e in PROMOTION_ORDER):
            try:
                if environment == "prod" and self._needs_shadow(summary.champions):
                    self._shadow_first(result.version, registries, summary.champions)
                self.progress(f"gate + promote {self.model} version {result.version} to {environment}")
                promotion = promote(
                    self.model,
                    result.version,
                    environment,
                    registries,
                    policy_dir=self.policy_dir or POLICY_DIR,
                    actor="mlops local up",
                    evidence=self.evidence_reader(environment),
                )
            except PromotionRefused as refused:
                summary.promotions.append({"environment": environment, **refused.verdict.as_dict()})
                summary.refused = refused.message
                return
            summary.promotions.append({"environment": environment, **promotion.verdict.as_dict()})

    def champions(self) -> dict[str, int | None]:
        """The model version each environment serves (one light REST call each: no MLflow import)."""
        from core.registry import champion_model_version, registered_name  # noqa: PLC0415

        uri = self.tracking_uri()
        return {
            env.value: champion_model_version(uri, registered_name(env.value, self.model)) for env in PROMOTION_ORDER
        }

    def check_champions(self, champions: dict[str, int | None]) -> list[str]:
        """Each environment's champion, downloaded and checked against its recorded SHA-256 (the three at
        once): what is lost."""
        from core.registry import champion, client_for, registered_name, verify_artifacts  # noqa: PLC0415

        uri = self.tracking_uri()
        served = [environment for environment, version in champions.items() if version is not None]
        if served:
            self.progress(f"checking the artifacts of what {', '.join(served)} serve")

        def lost(environment: str) -> str | None:
            info = champion(client_for(uri), registered_name(environment, self.model))
            try:
                if info is not None:
                    verify_artifacts(uri, info)
            except ArtifactsMissing as exc:
                return f"{environment}: {exc.message}"
            return None

        with ThreadPoolExecutor(max_workers=max(1, len(served))) as pool:
            return [problem for problem in pool.map(lost, served) if problem]

    def _wait_served_version(self, serving: Proc, expected: int | None, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        served = None
        while time.monotonic() < deadline:
            served = _served_version(serving.url)
            if expected is None or served == expected:
                return served
            time.sleep(0.5)
        raise EnvironmentProblem(
            f"serving still has model version {served}, not {expected}, after {timeout:.0f}s", hint=f"see {serving.log}"
        )

    # ------------------------------------------------------------------ status / down
    def status(self) -> list[dict[str, Any]]:
        """What runs, told truthfully: a recorded pid that now belongs to another program is `not ours`
        (and is never signalled), a server that exited while processes it started live on is `leaked`."""
        rows = []
        for name, proc in self.state().items():
            members = proc.members()
            state = proc.state(members)
            if state == "running" and not _answers(proc.url + HEALTH[name]):
                state = "starting/unhealthy"
            rows.append(
                {
                    "service": name,
                    "url": proc.url,
                    "pid": proc.pid,
                    "state": state,
                    "processes": len(members),
                    "rss_mb": round(rss_bytes(members) / 2**20),
                    "log": proc.log,
                }
            )
        return rows

    def down(self, purge: bool = False, wait: float = 0) -> list[str]:
        """Stop every process `up` started (in any process group); data stays in `.mlops/local/`."""
        if not self.home.is_dir():
            return []  # nothing was ever started here (and nothing is created)
        with self.lock("mlops local down", wait):
            state = self.state()
            stopped = []
            for name in reversed(SERVICES):  # serving first, the store last
                proc = state.get(name)
                if proc and stop(proc):
                    stopped.append(name)
            if self._recorded().get("containers"):
                self.remove_containers()
            self.state_file.unlink(missing_ok=True)
            if purge:
                for entry in self.home.iterdir():  # the lock file stays: it is held right now
                    if entry.name != "lock":
                        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            return stopped


def _preferred_port(requested: int, previous: Proc | None) -> int:
    if requested or previous is None or port_in_use(previous.port):
        return requested
    return previous.port


def _warm_up_imports() -> None:
    import mlflow.sklearn  # noqa: F401, PLC0415
    import skops.io  # noqa: F401, PLC0415

    import apps.training.train  # noqa: F401, PLC0415
    import pipelines.promotion.registries  # noqa: F401, PLC0415


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def _served_version(url: str) -> int | None:
    try:
        response = httpx.post(url + "/model", json={}, timeout=5)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    version = response.json().get("model_version")
    return int(version) if version is not None else None
