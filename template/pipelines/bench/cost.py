"""The issue's number for cost: the default prod stack at least 50 % below all on-demand, per environment.

    uv run python -m pipelines.bench.cost [--json reports/bench-cost.json]

Runs `mlops cost --all --format json` (a fresh process, as CI runs it) and prints, per stack, the
estimate, the same capacity all on-demand and always on, the saving and its parts, the budget
share and the unpriced resources, then whether the prod target is met. Bounded: 180 s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

MLOPS = str(Path(sys.executable).parent / "mlops")
TARGET_PCT = 50.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = subprocess.run(
        [MLOPS, "cost", "--all", "--format", "json"], capture_output=True, text=True, timeout=180, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"mlops cost failed (exit {result.returncode}):\n{result.stderr}")
    data = json.loads(result.stdout)
    as_of = " to ".join(dict.fromkeys(data["prices"]["as_of"]))
    print(f"mlops cost --all: {time.perf_counter() - started:.1f} s; list prices as of {as_of}")
    rows = []
    kept = ("stack", "monthly_usd", "baseline_usd", "savings_pct", "savings", "budget_usd")
    for item in data["estimates"]:
        parts = ", ".join(f"{kind} {usd:,.0f}" for kind, usd in item["savings"].items())
        budget = f"{item['budget_used_pct']} % of {item['budget_usd']:,.0f}" if item["budget_usd"] else "no budget"
        print(
            f"{item['stack']:8} estimate {item['monthly_usd']:>9,.2f} USD/month"
            f"  all on-demand {item['baseline_usd']:>9,.2f}  saving {item['savings_pct']:>5} % ({parts})"
            f"  budget {budget}  unpriced {len(item['unpriced'])}"
        )
        rows.append({k: item[k] for k in kept})
    prod = next((item for item in data["estimates"] if item["stack"] == "prod"), None)
    if prod is None:
        print("no prod stack")
        return 1
    met = prod["savings_pct"] >= TARGET_PCT
    verdict = "met" if met else "NOT met"
    print(f"target: prod at least {TARGET_PCT:g} % below all on-demand: {verdict} ({prod['savings_pct']} %)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"estimates": rows, "target_met": met}, indent=2))
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
