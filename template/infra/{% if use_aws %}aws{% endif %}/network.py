"""`Network`: a VPC with private subnets for nodes across zones, small public subnets for NAT and load balancers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import IPv4Network

import pulumi
import pulumi_aws as aws

from infra.aws.documents import flow_logs_delivery, flow_logs_trust
from infra.naming import availability_zones, subnet_layout


@dataclass(frozen=True)
class NetworkArgs:
    region: str
    cidr: IPv4Network
    zones: int
    single_nat_gateway: bool
    cluster_name: str
    tags: dict[str, str]

    def __post_init__(self) -> None:
        if self.zones < 2:
            raise ValueError(f"NetworkArgs.zones must be at least 2 for EKS (got {self.zones})")


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]
    public_subnet_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:aws:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zones = availability_zones(args.region, args.zones)
        layout = subnet_layout(args.cidr, args.zones)

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=str(args.cidr),
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**args.tags, "Name": f"{name}-vpc"},
            opts=child,
        )
        on_vpc = pulumi.ResourceOptions(parent=vpc)
        # The VPC's default security group allows all traffic between its members and all egress; nothing
        # here uses it (EKS makes its own groups), so it is taken over with no rule at all.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=vpc.id,
            ingress=[],
            egress=[],
            tags={**args.tags, "Name": f"{name}-default (no rules)"},
            opts=on_vpc,
        )
        gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags={**args.tags, "Name": f"{name}-igw"}, opts=on_vpc
        )
        public_routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            tags={**args.tags, "Name": f"{name}-public"},
            opts=on_vpc,
        )
        cluster_tag = {f"kubernetes.io/cluster/{args.cluster_name}": "shared"}
        public: list[aws.ec2.Subnet] = []
        private: list[aws.ec2.Subnet] = []
        for index, (zone, cidr) in enumerate(zip(zones, layout["public"], strict=True)):
            subnet = aws.ec2.Subnet(
                f"{name}-public-{index}",
                vpc_id=vpc.id,
                cidr_block=str(cidr),
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={**args.tags, **cluster_tag, "Name": f"{name}-public-{zone}", "kubernetes.io/role/elb": "1"},
                opts=on_vpc,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{index}", subnet_id=subnet.id, route_table_id=public_routes.id, opts=on_vpc
            )
            public.append(subnet)

        nat_count = 1 if args.single_nat_gateway else args.zones
        nats = []
        for index in range(nat_count):
            address = aws.ec2.Eip(
                f"{name}-nat-{index}", domain="vpc", tags={**args.tags, "Name": f"{name}-nat-{index}"}, opts=on_vpc
            )
            nats.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{index}",
                    allocation_id=address.id,
                    subnet_id=public[index].id,
                    tags={**args.tags, "Name": f"{name}-nat-{index}"},
                    opts=pulumi.ResourceOptions(parent=vpc, depends_on=[gateway]),
                )
            )
        for index, (zone, cidr) in enumerate(zip(zones, layout["private"], strict=True)):
            subnet = aws.ec2.Subnet(
                f"{name}-private-{index}",
                vpc_id=vpc.id,
                cidr_block=str(cidr),
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={
                    **args.tags,
                    **cluster_tag,
                    "Name": f"{name}-private-{zone}",
                    "kubernetes.io/role/internal-elb": "1",
                },
                opts=on_vpc,
            )
            routes = aws.ec2.RouteTable(
                f"{name}-private-{index}",
                vpc_id=vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nats[index % nat_count].id)],
                tags={**args.tags, "Name": f"{name}-private-{zone}"},
                opts=on_vpc,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{index}", subnet_id=subnet.id, route_table_id=routes.id, opts=on_vpc
            )
            private.append(subnet)

        self.vpc_id = vpc.id
        self.vpc_arn = vpc.arn
        self.private_subnet_ids = [subnet.id for subnet in private]
        self.public_subnet_ids = [subnet.id for subnet in public]
        self.register_outputs({"vpc_id": self.vpc_id, "private_subnet_ids": self.private_subnet_ids})


@dataclass(frozen=True)
class FlowLogsArgs:
    vpc_id: pulumi.Input[str]
    log_group_name: str
    retention_days: int
    # The cluster's key (the control-plane and Container Insights groups use it too).
    key_arn: pulumi.Input[str]
    account_id: pulumi.Input[str]
    region: str
    tags: dict[str, str]


class FlowLogs(pulumi.ComponentResource):
    """The VPC's flow logs (accepted and rejected traffic, 10-minute aggregation) into a KMS-encrypted log
    group, delivered by a role only the flow-logs service of this account may assume."""

    def __init__(self, name: str, args: FlowLogsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:aws:FlowLogs", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        group = aws.cloudwatch.LogGroup(
            f"{name}-group",
            name=args.log_group_name,
            retention_in_days=args.retention_days,
            kms_key_id=args.key_arn,
            tags=args.tags,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-role",
            name=f"{args.log_group_name.rsplit('/', 1)[-1]}-delivery",
            assume_role_policy=pulumi.Output.from_input(args.account_id).apply(
                lambda account: json.dumps(flow_logs_trust(account, args.region))
            ),
            tags=args.tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-delivery",
            role=role.id,
            policy=pulumi.Output.from_input(args.account_id).apply(
                lambda account: json.dumps(
                    flow_logs_delivery(f"arn:aws:logs:{args.region}:{account}:log-group:{args.log_group_name}")
                )
            ),
            opts=pulumi.ResourceOptions(parent=role),
        )
        aws.ec2.FlowLog(
            f"{name}-vpc",
            vpc_id=args.vpc_id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=600,
            tags=args.tags,
            opts=child,
        )
        self.log_group_name = group.name
        self.register_outputs({"log_group_name": self.log_group_name})
