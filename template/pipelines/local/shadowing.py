"""The shadow steps of the local environment (a mixin of `LocalEnvironment`): prod's policy wants
evidence from shadow traffic, so a version on its way to prod first becomes prod's shadow, held-out
rows are replayed against serving, and the gate reads the shadow's series from serving's /metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from core.errors import EnvironmentProblem
from pipelines.common.procs import Proc
from policies.models import POLICY_DIR


class ShadowSteps:
    model: str
    policy_dir: Path | None
    progress: Callable[[str], None]

    def state(self) -> dict[str, Proc]:  # LocalEnvironment's
        raise NotImplementedError

    def _needs_shadow(self, champions: dict[str, int | None]) -> bool:
        """prod's policy wants shadow evidence, and prod serves a version to compare with."""
        from policies.models import load_policy  # noqa: PLC0415

        return load_policy("prod", self.policy_dir or POLICY_DIR).shadow is not None and bool(champions.get("prod"))

    def evidence_reader(self, environment: str) -> Any:
        """Shadow evidence for `environment` from local serving's /metrics (local serving is prod's)."""
        if environment != "prod":
            return None
        from core.registry import registered_name  # noqa: PLC0415
        from pipelines.promotion.evidence import from_serving  # noqa: PLC0415

        serving = self.state().get("serving")
        if serving is None or not serving.alive():
            return None
        name = registered_name("prod", self.model)
        return lambda champion, candidate: from_serving(serving.url, name, champion, candidate)

    def _shadow_first(self, version: int, registries: Any, champions: dict[str, int | None]) -> None:
        """prod's gate needs evidence: the candidate becomes prod's shadow, held-out rows are replayed, and
        the shadow's scores are waited for (the gate then reads them from serving's /metrics)."""
        from pipelines.local.traffic import replay  # noqa: PLC0415
        from pipelines.promotion.registries import promote  # noqa: PLC0415
        from policies.models import load_policy  # noqa: PLC0415

        policy = load_policy("prod", self.policy_dir or POLICY_DIR)
        assert policy.shadow is not None
        self.progress(f"shadow: version {version} scores prod's traffic beside version {champions['prod']}")
        promote(
            self.model,
            version,
            "prod",
            registries,
            policy_dir=self.policy_dir or POLICY_DIR,
            actor="mlops local up",
            shadow=True,
        )
        serving = self.state()["serving"]
        self.wait_shadow(serving, version, timeout=120)
        requests = policy.shadow.min_requests + policy.shadow.min_requests // 5
        replay(serving.url, requests, progress=self.progress)
        self.wait_shadow(serving, version, timeout=60, idle=True)

    def wait_shadow(self, serving: Proc, version: int, *, timeout: float, idle: bool = False) -> None:
        """Until serving has loaded `version` as its shadow (and, with `idle`, scored all it was given)."""
        deadline = time.monotonic() + timeout
        shadow: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                shadow = httpx.post(serving.url + "/model", json={}, timeout=5).json().get("shadow") or {}
            except (httpx.HTTPError, ValueError):
                shadow = {}
            if shadow.get("loaded") and shadow.get("model_version") == version and (not idle or not shadow["pending"]):
                return
            time.sleep(0.25)
        raise EnvironmentProblem(
            f"serving has not {'scored its shadow traffic' if idle else f'loaded version {version} as shadow'} "
            f"after {timeout:.0f}s (it reports {shadow or 'no shadow'})",
            hint=f"see {serving.log}; a serving started before this version of the template has no shadow: "
            "`mlops local down` and `mlops local up`",
        )
