"""Pure naming, tagging and address arithmetic (no Pulumi involved)."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from infra.config import load_stack
from infra.kubeconfig import eks_kubeconfig, gke_kubeconfig
from infra.naming import TAG_KEYS, availability_zones, gcp_name, prefix, subnet_layout, tags
from tests.conftest import ROOT


def test_subnets_do_not_overlap_and_stay_inside_the_vpc() -> None:
    vpc = IPv4Network("10.20.0.0/16")
    layout = subnet_layout(vpc, 3)
    subnets = layout["private"] + layout["public"]
    assert [str(s) for s in layout["private"]] == ["10.20.0.0/18", "10.20.64.0/18", "10.20.128.0/18"]
    assert [s.prefixlen for s in layout["public"]] == [22, 22, 22]
    assert all(s.subnet_of(vpc) for s in subnets)
    assert not any(a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1 :])


def test_tiny_vpc_is_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        subnet_layout(IPv4Network("10.0.0.0/26"), 2)


def test_zones_and_their_bounds() -> None:
    assert availability_zones("eu-west-1", 2) == ["eu-west-1a", "eu-west-1b"]
    with pytest.raises(ValueError, match="1-3"):
        availability_zones("eu-west-1", 4)


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("ml-platform-prod", "deploy"), "ml-platform-prod-deploy"),
        (("Acme_ML", "x"), "acme-ml-x"),
        (("a" * 40, "nodes"), "a" * 30),
    ],
)
def test_gcp_names_are_valid_ids(parts: tuple[str, ...], expected: str) -> None:
    assert gcp_name(*parts) == expected


def test_gcp_name_must_start_with_a_letter() -> None:
    with pytest.raises(ValueError, match="start with a letter"):
        gcp_name("1abc")


def test_tags_are_the_five_keys_with_label_safe_values() -> None:
    settings = load_stack(ROOT, "prod")
    stack_tags = tags("ml-platform", settings)
    assert tuple(stack_tags) == TAG_KEYS
    assert stack_tags["environment"] == "prod" and stack_tags["managed-by"] == "pulumi"
    assert prefix("ml-platform", "prod") == "ml-platform-prod"


def test_kubeconfigs_use_the_callers_own_login() -> None:
    eks = eks_kubeconfig("c", "https://x", "Q0E=", "eu-west-1")
    assert eks["users"][0]["user"]["exec"]["command"] == "aws"
    assert "token" not in eks["users"][0]["user"]
    gke = gke_kubeconfig("c", "10.0.0.2", "Q0E=")
    assert gke["clusters"][0]["cluster"]["server"] == "https://10.0.0.2"
    assert gke["users"][0]["user"]["exec"]["command"] == "gke-gcloud-auth-plugin"
