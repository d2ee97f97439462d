"""`mlops cost`: the arithmetic per resource kind, unpriced resources, the budget policy, `--compare`."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from infra.config import load_stack
from infra.pricing.assumptions import Assumptions, PoolAssumption
from infra.pricing.estimate import estimate
from infra.pricing.lines import Estimate
from infra.pricing.table import PRICES_FILE, PriceTable, PriceTableError, load_prices, shipped_prices
from pipelines.plan.graph import Plan
from pipelines.plan.policy import check_plan, engine_resources
from policies.infra.pack import BY_NAME
from policies.infra.rules import Context, Resource
from policies.infra.rules import governance as governance_rules
from tests.conftest import ROOT
from tests.planning import STACKS, key, write_stack

BUDGET_RULE = "governance-cost-stack-disallow-over-budget"
AWS_REGION, GCP_REGION = "us-east-1", "us-central1"


# --- the price table ------------------------------------------------------------------------------


def test_every_figure_of_the_shipped_table_has_a_source_and_a_date() -> None:
    table = shipped_prices()
    for cloud in (table.aws, table.gcp):
        assert cloud.instances and cloud.instances_source.startswith("https://") and cloud.instances_as_of
        assert 0 < cloud.spot_discount < 1 and cloud.spot_source.startswith("https://") and cloud.spot_as_of
        for name, price in cloud.prices.items():
            assert price.source.startswith("https://") and price.as_of and price.unit, name


def test_a_table_missing_a_region_is_refused_naming_the_key(tmp_path: Path) -> None:
    data = YAML(typ="safe").load(PRICES_FILE.read_text())
    del data["aws"]["prices"]["nat_gateway_hour"]["usd"]["eu-central-1"]
    (tmp_path / "prices.yaml").write_text(json.dumps(data, default=str))
    with pytest.raises(PriceTableError, match=r"aws.prices.nat_gateway_hour.usd lacks eu-central-1"):
        load_prices(tmp_path / "prices.yaml")


@pytest.mark.parametrize("stack", [s for s in STACKS if s != "local"])
def test_every_machine_type_of_the_default_stacks_is_priced(stack: str) -> None:
    settings = load_stack(ROOT, stack)
    table = shipped_prices()
    for cloud, cluster in settings.clusters.items():
        for pool in (cluster.system_pool, cluster.spot_pool):
            assert pool.machine_types[0] in table.cloud(cloud.value).instances, (stack, pool.machine_types)


# --- arithmetic per resource kind, with a table whose figures the test sets -----------------------


@pytest.fixture(scope="module")
def table() -> PriceTable:
    """The shipped table with round figures where the cases below compute by hand."""
    data = shipped_prices().model_dump(mode="json")
    aws, gcp = data["aws"], data["gcp"]
    aws["instances"] = {"test.large": 0.10}
    gcp["instances"] = {"test-standard-4": 0.20}
    aws["spot_discount"], gcp["spot_discount"] = 0.5, 0.6
    aws["region_factors"]["compute"]["eu-central-1"] = 2.0
    for cloud, key_, usd in [
        (aws, "eks_cluster_hour", 0.10),
        (aws, "nat_gateway_hour", 0.05),
        (aws, "nat_gateway_gb", 0.04),
        (aws, "ebs_gp2_gb", 0.10),
        (aws, "ebs_gp3_gb", 0.08),
        (aws, "s3_standard_gb", 0.02),
        (aws, "s3_intelligent_tiering_gb", 0.01),
        (aws, "kms_key_month", 1.0),
        (aws, "cloudwatch_logs_ingest_gb", 0.5),
        (aws, "cloudwatch_logs_storage_gb", 0.03),
        (gcp, "pd_balanced_gb", 0.10),
        (gcp, "cloud_nat_vm_hour", 0.001),
        (gcp, "cloud_nat_gb", 0.05),
        (gcp, "gcs_standard_gb", 0.02),
        (gcp, "gcs_coldline_gb", 0.004),
        (gcp, "logging_ingest_gb", 0.5),
        (gcp, "logging_retention_gb", 0.01),
        (gcp, "alert_condition_month", 1.5),
        (gcp, "forwarding_rule_hour", 0.025),
    ]:
        cloud["prices"][key_].update(usd=usd, factor=None)
    return PriceTable.model_validate(data)


def assumptions(**overrides: Any) -> Assumptions:
    values: dict[str, Any] = {
        "environment": "prod",
        "budget_usd": 1000.0,
        "regions": {"aws": AWS_REGION, "gcp": GCP_REGION},
        "pools": {
            cloud: {"system": PoolAssumption(nodes=2, hours=730), "batch": PoolAssumption(nodes=3, hours=200)}
            for cloud in ("aws", "gcp")
        },
        "stored_gb": 100.0,
        "archived_share_pct": 40.0,
        "log_gb_per_month": 10.0,
        "nat_gb_per_month": 50.0,
    }
    return Assumptions(**{**values, **overrides})


def res(type_: str, name: str, props: dict[str, Any] | None = None, depends: tuple[str, ...] = ()) -> Resource:
    return Resource(type_, name, f"urn:{name}", props or {}, depends)


def priced(resources: list[Resource], table: PriceTable, **overrides: Any) -> Estimate:
    return estimate("prod", resources, assumptions(**overrides), table)


def line(result: Estimate, item_start: str, resource: str | None = None) -> Any:
    found = [x for x in result.lines if x.item.startswith(item_start) and resource in (None, x.resource)]
    assert len(found) == 1, (item_start, [x.key for x in result.lines])
    return found[0]


def test_control_planes_are_charged_by_the_hour(table: PriceTable) -> None:
    result = priced([res("aws:eks/cluster:Cluster", "eks"), res("gcp:container/cluster:Cluster", "gke")], table)
    assert [x.monthly_usd for x in result.lines] == [73.0, 73.0]  # 730 h x 0.10
    assert result.monthly_usd == result.baseline_usd == 146.0


def test_a_spot_pool_costs_its_node_hours_at_the_spot_discount(table: PriceTable) -> None:
    group = res(
        "aws:eks/nodeGroup:NodeGroup",
        "spot",
        {"instanceTypes": ["test.large"], "capacityType": "SPOT", "diskSize": 40, "labels": {"workload": "batch"}},
    )
    result = priced([group], table)
    nodes = line(result, "test.large spot nodes")
    assert nodes.quantity == 600  # 3 nodes x 200 h
    assert nodes.unit_usd == pytest.approx(0.05)  # 0.10 on-demand x (1 - 0.5)
    assert nodes.monthly_usd == pytest.approx(30.0)
    assert nodes.baseline_usd == pytest.approx(219.0)  # 3 nodes x 730 h x 0.10
    assert nodes.savings == {"spot": pytest.approx(30.0), "scale-to-zero": pytest.approx(159.0)}
    disks = line(result, "node disks")
    assert disks.monthly_usd == pytest.approx(40 * 600 / 730 * 0.10, abs=1e-4)  # gp2 for the hours nodes run
    assert disks.baseline_usd == pytest.approx(12.0)  # 3 disks of 40 GB, all month


def test_an_on_demand_pool_runs_always_and_regions_scale_compute(table: PriceTable) -> None:
    group = res(
        "aws:eks/nodeGroup:NodeGroup",
        "system",
        {"instanceTypes": ["test.large"], "capacityType": "ON_DEMAND", "labels": {"workload": "system"}},
    )
    here = line(priced([group], table), "test.large on-demand nodes")
    assert here.monthly_usd == here.baseline_usd == pytest.approx(146.0)  # 2 x 730 x 0.10
    frankfurt = line(priced([group], table, regions={"aws": "eu-central-1"}), "test.large on-demand nodes")
    assert frankfurt.monthly_usd == pytest.approx(292.0)  # compute factor 2.0


def test_a_gke_spot_pool_and_cloud_nat(table: PriceTable) -> None:
    pool = res(
        "gcp:container/nodePool:NodePool",
        "spot",
        {
            "nodeConfig": {
                "machineType": "test-standard-4",
                "spot": True,
                "diskSizeGb": 50,
                "labels": {"workload": "batch"},
            }
        },
    )
    nat = res("gcp:compute/routerNat:RouterNat", "nat")
    result = priced([pool, nat], table)
    assert line(result, "test-standard-4 spot nodes").monthly_usd == pytest.approx(600 * 0.20 * 0.4)
    assert line(result, "node disks").monthly_usd == pytest.approx(50 * 600 / 730 * 0.10, abs=1e-4)
    # the gateway is charged per VM using it: 2 x 730 + 3 x 200 node-hours
    assert line(result, "gateway").monthly_usd == pytest.approx(2060 * 0.001)
    assert line(result, "data processed").monthly_usd == pytest.approx(50 * 0.05)


def test_nat_gateways_share_the_traffic(table: PriceTable) -> None:
    result = priced([res("aws:ec2/natGateway:NatGateway", f"nat-{i}") for i in range(2)], table)
    assert [x.monthly_usd for x in result.lines if x.item == "gateway"] == [36.5, 36.5]  # 730 x 0.05
    assert [x.quantity for x in result.lines if x.item == "data processed"] == [25.0, 25.0]
    assert result.monthly_usd == pytest.approx(73.0 + 50 * 0.04)


def test_storage_moves_its_archived_share_to_the_lifecycle_class(table: PriceTable) -> None:
    bucket = res("aws:s3/bucket:Bucket", "artifacts")
    lifecycle = res(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "lifecycle",
        {"rules": [{"status": "Enabled", "transitions": [{"storageClass": "INTELLIGENT_TIERING", "days": 30}]}]},
        depends=(bucket.urn,),
    )
    result = priced([bucket, lifecycle], table)
    assert line(result, "storage (standard").monthly_usd == pytest.approx(60 * 0.02)
    archived = line(result, "storage (INTELLIGENT_TIERING")
    assert archived.monthly_usd == pytest.approx(40 * 0.01)
    assert archived.baseline_usd == pytest.approx(40 * 0.02)
    assert result.savings["lifecycle"] == pytest.approx(0.4)
    assert result.no_charge == {"aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": 1}
    without = priced([bucket], table)
    assert without.monthly_usd == without.baseline_usd == pytest.approx(100 * 0.02)


def test_gcs_lifecycle_to_coldline(table: PriceTable) -> None:
    bucket = res(
        "gcp:storage/bucket:Bucket",
        "artifacts",
        {
            "lifecycleRules": [
                {"action": {"type": "SetStorageClass", "storageClass": "COLDLINE"}, "condition": {"age": 30}}
            ]
        },
    )
    result = priced([bucket], table)
    assert result.monthly_usd == pytest.approx(60 * 0.02 + 40 * 0.004)
    assert result.baseline_usd == pytest.approx(100 * 0.02)


def test_logs_by_ingestion_and_retention(table: PriceTable) -> None:
    groups = [res("aws:cloudwatch/logGroup:LogGroup", f"logs-{i}", {"retentionInDays": 90}) for i in range(2)]
    result = priced(groups, table)
    assert [x.monthly_usd for x in result.lines if x.item == "ingestion"] == [2.5, 2.5]  # 10 GB shared, x 0.5
    assert [x.monthly_usd for x in result.lines if x.item.startswith("storage")] == [0.45, 0.45]  # 5 GB x 3 months
    bucket = res("gcp:logging/projectBucketConfig:ProjectBucketConfig", "logs", {"retentionDays": 90})
    gcp = priced([bucket], table, log_gb_per_month=60.0)
    assert line(gcp, "ingestion").monthly_usd == pytest.approx(10 * 0.5)  # beyond the free 50 GiB
    assert line(gcp, "retention").monthly_usd == pytest.approx(60 * 2 * 0.01)  # 60 days beyond the free 30


def test_keys_alarms_volumes_and_load_balancers(table: PriceTable) -> None:
    resources = [
        res("aws:kms/key:Key", "key"),
        res("gcp:monitoring/alertPolicy:AlertPolicy", "alert", {"conditions": [{}, {}]}),
        res(
            "kubernetes:apps/v1:StatefulSet",
            "aws-apps-postgres",
            {
                "spec": {
                    "replicas": 2,
                    "volumeClaimTemplates": [
                        {
                            "metadata": {"name": "data"},
                            "spec": {"storageClassName": "gp3", "resources": {"requests": {"storage": "20Gi"}}},
                        }
                    ],
                }
            },
        ),
        res("kubernetes:core/v1:Service", "gcp-apps-serving", {"spec": {"type": "LoadBalancer"}}),
        res("kubernetes:core/v1:Service", "gcp-apps-internal", {"spec": {"type": "ClusterIP"}}),
    ]
    result = priced(resources, table)
    assert line(result, "key").monthly_usd == 1.0
    assert line(result, "conditions").monthly_usd == 3.0
    volume = line(result, "volume data")
    assert (volume.cloud, volume.monthly_usd) == ("aws", pytest.approx(40 * 0.08))
    balancer = line(result, "load balancer")
    assert (balancer.cloud, balancer.monthly_usd) == ("gcp", pytest.approx(730 * 0.025))
    assert result.no_charge == {"kubernetes:core/v1:Service": 1}


def test_what_cannot_be_priced_is_listed_never_a_silent_zero(table: PriceTable) -> None:
    resources = [
        res("aws:eks/nodeGroup:NodeGroup", "gpu", {"instanceTypes": ["p5.48xlarge"], "labels": {"workload": "batch"}}),
        res("aws:rds/instance:Instance", "database"),
        res("aws:eks/addon:Addon", "insights", {"addonName": "amazon-cloudwatch-observability"}),
        res("aws:iam/role:Role", "role"),
        res("aws:eks/cluster:Cluster", "eks"),
    ]
    result = priced(resources, table)
    reasons = {u.resource: u.reason for u in result.unpriced}
    assert set(reasons) == {"gpu", "database", "insights"}
    assert "p5.48xlarge is not in the aws price table" in reasons["gpu"]
    assert "no pricing rule" in reasons["database"]
    assert result.no_charge == {"aws:iam/role:Role": 1}
    assert result.monthly_usd == 73.0  # only what was priced
    assert result.to_json()["unpriced"][0]["reason"]


def test_a_stack_on_an_existing_cluster_costs_nothing_new(plans: dict[str, Plan]) -> None:
    if "local" not in plans:
        pytest.fail("the template always generates a local stack")
    plan = plans["local"]
    result = estimate("local", engine_resources(plan), Assumptions.model_validate(plan.assumptions))
    assert result.monthly_usd == 0 and not result.unpriced
    assert sum(result.no_charge.values()) == len(plan.resources)


# --- the default stacks ---------------------------------------------------------------------------


def estimate_of(plan: Plan) -> Estimate:
    return estimate(plan.stack, engine_resources(plan), Assumptions.model_validate(plan.assumptions))


@pytest.mark.parametrize("stack", [s for s in STACKS if s != "local"])
def test_every_resource_of_a_default_stack_is_priced_free_or_listed(plans: dict[str, Plan], stack: str) -> None:
    plan = plans[stack]
    result = estimate_of(plan)
    priced_urns = {x.urn for x in result.lines}
    accounted = len(priced_urns) + len(result.unpriced) + sum(result.no_charge.values())
    assert accounted == len(plan.resources)
    # Container Insights is billed per observation: the one thing the defaults leave unpriced.
    assert {u.type for u in result.unpriced} <= {"aws:eks/addon:Addon"}
    assert result.assumptions.budget_usd and result.monthly_usd <= result.assumptions.budget_usd
    for cloud in plan.clouds:
        assert result.by_cloud()[cloud] > 0


def test_the_default_prod_stack_is_at_least_half_below_all_on_demand(plans: dict[str, Plan]) -> None:
    result = estimate_of(plans["prod"])
    assert result.monthly_usd <= 0.5 * result.baseline_usd, (result.monthly_usd, result.baseline_usd)
    assert result.savings["spot"] > 0 and result.savings["scale-to-zero"] > 0 and result.savings["lifecycle"] > 0
    assert sum(result.savings.values()) == pytest.approx(result.baseline_usd - result.monthly_usd, abs=0.05)


# --- the budget policy ----------------------------------------------------------------------------


def raise_pools(config: dict[str, Any]) -> None:
    for cloud in ("aws", "gcp"):
        section = config.get(key(cloud))
        if section:
            pool = section["cluster"]["spot_pool"]
            pool.update(desired_nodes=20, max_nodes=20, hours_per_month=730)


@pytest.mark.parametrize(("stack", "level"), [("prod", "mandatory"), ("dev", "advisory")])
def test_budget_policy_fails_a_stack_whose_pools_outgrow_the_budget(
    plan_with: Callable[..., Plan], stack: str, level: str
) -> None:
    plan = plan_with(stack, raise_pools)
    found = [v for v in check_plan(plan).violations if v.policy == BUDGET_RULE]
    assert [v.enforcement for v in found] == [level]
    assert "over 100 % of the budget" in found[0].message and "spot nodes" in found[0].message
    assert estimate_of(plan).monthly_usd > (estimate_of(plan).assumptions.budget_usd or 0)


def test_budget_policy_reads_the_stack_file_inside_the_pack_process(
    plan_with: Callable[..., Plan], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine gives a pack resources, not stack config: the rule finds the stack by its tags."""
    rule = BY_NAME[BUDGET_RULE]
    assert rule.stack_check is not None
    plan = plan_with("prod", raise_pools)  # writes tmp_path/stacks/Pulumi.prod.yaml
    resources = engine_resources(plan)
    monkeypatch.setattr(governance_rules, "REPOSITORY", ROOT)
    assert list(rule.stack_check(resources, Context(rule.config_defaults))) == []  # the repository's file: fine
    monkeypatch.setattr(governance_rules, "REPOSITORY", tmp_path)
    (found,) = rule.stack_check(resources, Context(rule.config_defaults))
    assert found[0] is None and "over 100 % of the budget" in found[1]
    (unreadable,) = rule.stack_check(resources, Context({**rule.config_defaults, "stack": "nope"}))
    assert "could not be read" in unreadable[1] and "Pulumi.nope.yaml" in unreadable[1]


# --- the command ----------------------------------------------------------------------------------


def test_cli_cost_reports_lines_savings_and_unpriced(repo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.cli import main

    assert main(["cost", "--env", "prod", "--format", "json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)["estimates"]
    assert report["stack"] == "prod"
    assert report["monthly_usd"] == pytest.approx(sum(x["monthly_usd"] for x in report["lines"]), abs=0.01)
    assert report["savings_pct"] >= 50 and report["budget_used_pct"] <= 100
    assert main(["cost", "--env", "prod", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("**Cost estimate:**") and "all on-demand" in out and "prod:" in out
    assert main(["cost", "--env", "prod"]) == 0
    captured = capsys.readouterr()
    assert "Monthly cost of stack prod" in captured.out and "within its budget" in captured.err
    assert main(["cost", "--env", "nope"]) == 2


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def history(repo_copy: Path) -> Path:
    """A git repository with the program and the stacks, one commit so far."""
    shutil.copytree(ROOT / "infra", repo_copy / "infra", ignore=shutil.ignore_patterns("__pycache__"))
    for stack in STACKS:
        write_stack(repo_copy, stack)  # images pinned: the apps (and the database volume) are deployed
    git(repo_copy, "init", "-q", "-b", "main")
    git(repo_copy, "add", ".")
    git(repo_copy, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "base")
    return repo_copy


def commit(repo: Path, message: str) -> None:
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-am", message)


def test_compare_shows_the_cost_change_of_a_pull_request(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.cli import main

    path = history / "stacks" / "Pulumi.prod.yaml"
    yaml = YAML()
    document = yaml.load(path.read_text())
    for cloud in ("aws", "gcp"):
        if key(cloud) in document["config"]:
            document["config"][key(cloud)]["cluster"]["spot_pool"]["desired_nodes"] += 2
    with path.open("w") as handle:
        yaml.dump(document, handle)
    commit(history, "two more training nodes")

    assert main(["cost", "--env", "prod", "--compare", "HEAD~1", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (change,) = data["compare"]["stacks"]
    (after,) = data["estimates"]
    spot_lines = [x for x in after["lines"] if "spot nodes" in x["item"]]
    # two more nodes of each spot pool: their node-hours at the spot price, their disks, and on GCP
    # the Cloud NAT gateway, which is charged per VM using it
    expected = 0.0
    for spot in spot_lines:
        pool = after["assumptions"]["pools"][spot["cloud"]]["batch"]
        expected += 2 * pool["hours"] * spot["unit_usd"]
        disk = next(x for x in after["lines"] if x["resource"] == spot["resource"] and x["item"] == "node disks")
        expected += disk["monthly_usd"] * 2 / pool["nodes"]
        if spot["cloud"] == "gcp":
            nat = next(x for x in after["lines"] if x["item"].startswith("gateway (per VM"))
            expected += 2 * pool["hours"] * nat["unit_usd"]
    assert change["delta_usd"] == pytest.approx(expected, abs=0.02)
    assert change["after_usd"] - change["before_usd"] == pytest.approx(change["delta_usd"], abs=0.01)
    changed = {c["key"].split(" / ")[1] for c in change["changes"]}
    assert changed <= {"node disks", "gateway (per VM using it)", *(x["item"] for x in spot_lines)}
    assert git(history, "status", "--porcelain") == ""  # the working tree was not touched


def test_compare_plans_the_base_with_the_base_program(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A pull request that changes infra/: the base is planned with the base's code, not this checkout's."""
    from pipelines.cli import main

    objects = history / "infra" / "k8s" / "tracking.py"
    source = objects.read_text()
    assert '"storage": f"{tracking.database_storage_gb}Gi"' in source
    objects.write_text(source.replace('"storage": f"{tracking.database_storage_gb}Gi"', '"storage": "999Gi"'))
    commit(history, "base with a huge database volume")
    objects.write_text(source)
    commit(history, "back to the configured size")

    assert main(["cost", "--env", "prod", "--compare", "HEAD~1", "--format", "json"]) == 0
    (change,) = json.loads(capsys.readouterr().out)["compare"]["stacks"]
    changed = {c["key"].split(" / ")[1] for c in change["changes"]}
    assert changed == {"volume data (default class)"} and change["delta_usd"] < 0
    import infra

    assert Path(infra.__file__).resolve().parent == (ROOT / "infra").resolve()  # this checkout's program is back


def test_compare_with_an_unknown_ref_fails_before_planning(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.cli import main

    assert main(["cost", "--env", "prod", "--compare", "no-such-branch"]) == 2
    assert "unknown git ref 'no-such-branch'" in capsys.readouterr().err


def test_compare_with_a_stack_the_base_lacks(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.cli import main

    prod = history / "stacks" / "Pulumi.prod.yaml"
    content = prod.read_text()
    git(history, "rm", "-q", str(prod))
    commit(history, "no prod environment yet")
    prod.write_text(content)
    git(history, "add", ".")
    commit(history, "prod appears")
    assert main(["cost", "--env", "prod", "--compare", "HEAD~1", "--format", "json"]) == 0
    (change,) = json.loads(capsys.readouterr().out)["compare"]["stacks"]
    assert change["before_usd"] is None and change["delta_usd"] == change["after_usd"] > 0
