"""The price table (`prices.yaml`): dated public list prices per cloud and region, loaded and checked."""

from __future__ import annotations

from datetime import date
from functools import cache
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML

from infra.settings import AWS_REGIONS, GCP_REGIONS

PRICES_FILE = Path(__file__).with_name("prices.yaml")


OFFERED_REGIONS = {"aws": AWS_REGIONS, "gcp": GCP_REGIONS}


class PriceTableError(ValueError):
    """The price table is malformed: the message names the file and the key."""


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Price(FrozenModel):
    usd: float | dict[str, float]
    unit: str
    source: str = Field(pattern=r"^https://")
    as_of: date
    factor: Literal["compute", "storage"] | None = None
    note: str = ""


class CloudPrices(FrozenModel):
    reference_region: str
    region_factors: dict[Literal["compute", "storage"], dict[str, float]]
    region_factors_source: str
    instances: dict[str, float]
    instances_source: str = Field(pattern=r"^https://")
    instances_as_of: date
    spot_discount: float = Field(ge=0, lt=1)
    spot_source: str = Field(pattern=r"^https://")
    spot_as_of: date
    prices: dict[str, Price]


class PriceTable(FrozenModel):
    currency: Literal["USD"]
    hours_per_month: float = Field(gt=0, le=744)
    aws: CloudPrices
    gcp: CloudPrices
    no_charge: dict[str, str]

    @model_validator(mode="after")
    def _every_offered_region(self) -> Self:
        for cloud, regions in OFFERED_REGIONS.items():
            prices: CloudPrices = getattr(self, cloud)
            for kind in ("compute", "storage"):
                missing = set(regions) - set(prices.region_factors.get(kind, {}))
                if missing:
                    raise ValueError(f"{cloud}.region_factors.{kind} lacks {', '.join(sorted(missing))}")
            for key, price in prices.prices.items():
                if isinstance(price.usd, dict) and (missing := set(regions) - set(price.usd)):
                    raise ValueError(f"{cloud}.prices.{key}.usd lacks {', '.join(sorted(missing))}")
        return self

    def cloud(self, cloud: str) -> CloudPrices:
        return self.aws if cloud == "aws" else self.gcp

    def price(self, cloud: str, key: str, region: str) -> float:
        prices = self.cloud(cloud)
        entry = prices.prices[key]
        if isinstance(entry.usd, dict):
            return entry.usd[region]
        return entry.usd * (prices.region_factors[entry.factor][region] if entry.factor else 1.0)

    def instance(self, cloud: str, machine_type: str, region: str) -> float | None:
        prices = self.cloud(cloud)
        hourly = prices.instances.get(machine_type)
        return None if hourly is None else hourly * prices.region_factors["compute"][region]

    def no_charge_reason(self, resource_type: str) -> str | None:
        for pattern, reason in self.no_charge.items():
            if resource_type == pattern or (pattern.endswith("*") and resource_type.startswith(pattern[:-1])):
                return reason
        return None


def load_prices(path: Path = PRICES_FILE) -> PriceTable:
    try:
        return PriceTable.model_validate(YAML(typ="safe").load(path.read_text()))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PriceTableError(f"{path}: {problems}") from None


@cache
def shipped_prices() -> PriceTable:
    return load_prices()
