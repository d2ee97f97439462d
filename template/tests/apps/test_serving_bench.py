"""The serving benchmark's judgement and its profile summary, on made-up figures (the run itself is
`python -m pipelines.bench.serving`, minutes long, not part of the suite)."""

from __future__ import annotations

from typing import Any

from pipelines.bench import serving


def _cell(server: str, connections: int, rows: int, rps: float, p99: float = 5.0, top: float = 20.0) -> dict[str, Any]:
    return {
        "server": server,
        "connections": connections,
        "rows": rows,
        "requests": int(rps * 10),
        "errors": 0,
        "requests_per_second": rps,
        "p50_ms": 1.0,
        "p99_ms": p99,
        "p999_ms": p99 * 2,
        "max_ms": top,
        "drift_checks": 1,
    }


def _cells(ours: float, ours_64: float, p99: float = 5.0) -> list[dict[str, Any]]:
    figures = {"bentoml": (ours, ours_64), "baseline": (4000.0, 1000.0), "mlflow": (60.0, 50.0)}
    return [
        _cell(server, connections, rows, figures[server][rows == 64], p99=p99 if server == "bentoml" else 1.0)
        for server in serving.SERVERS
        for connections in serving.CONNECTIONS
        for rows in serving.ROWS
    ]


def test_targets_are_judged_on_the_8_connection_cells() -> None:
    good = serving.summarize(_cells(ours=2000.0, ours_64=800.0))
    assert all(good["met"].values()), good
    assert good["figures"]["of_baseline"] == 0.5 and good["figures"]["rows_per_second"] == 51_200
    slow = serving.summarize(_cells(ours=1000.0, ours_64=700.0, p99=12.0))
    assert not slow["met"]["of_baseline"] and not slow["met"]["p99_ms"] and not slow["met"]["rows_per_second"]
    assert slow["met"]["of_mlflow"] is False and slow["figures"]["of_mlflow"] == round(1000 / 60, 3)
    text = serving.table(_cells(ours=1000.0, ours_64=700.0, p99=12.0), slow)
    assert "1-row req/s vs baseline  25% (>= 50%): NOT met" in text and "slowest" in text


def test_profile_summary_counts_only_the_event_loop() -> None:
    raw = "\n".join(
        [
            "main (w.py:1);Runner.run (asyncio/runners.py:118);api (app.py:9);parse (serde.py:3) 30",
            "main (w.py:1);Runner.run (asyncio/runners.py:118);api (app.py:9);predict (service.py:5) 70",
            "drift (service.py:150);sleep (time.py:1) 900",
        ]
    )
    top = serving.top_frames(raw)
    assert " 30.0 % in   parse (serde.py)" in top and " 70.0 % self predict (service.py)" in top
    assert not any("api (app.py)" in line and " in " in line for line in top), "layers above 70 % left out"
    assert not any("sleep" in line for line in top), "other threads are not the request path"
