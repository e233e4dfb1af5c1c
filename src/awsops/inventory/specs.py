"""The inventory kinds, declared as data: one :class:`KindSpec` per kind in :data:`KINDS`.

A kind says which paginated operation lists it, where its items sit in a page, which
server-side filters it takes, which request parameters are fixed (``OwnerIds=self``),
the largest page the API allows, and how an item becomes a record. The collector in
:mod:`awsops.inventory.collector` runs any of them; adding a kind is adding one entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from awsops.errors import UsageError
from awsops.inventory.records import (
    INSTANCE_FIELDS,
    INSTANCE_TABLE,
    ShapeContext,
    shape_instance,
)

Scope = Literal["regional", "account"]
Shaper = Callable[[Mapping[str, Any], ShapeContext], dict[str, Any]]


@dataclass(frozen=True)
class FilterDecl:
    """One server-side filter a kind accepts, by the name users type.

    ``param`` None: the filter goes into the API's ``Filters`` list as given.
    ``param`` set: the filter's single value becomes that request parameter
    (``bucket`` -> ``Bucket``). ``required`` filters must be given.
    """

    name: str
    param: str | None = None
    required: bool = False


@dataclass(frozen=True)
class Field:
    """A record field: its name and the JMESPath expression that reads it from an item."""

    name: str
    path: str


@dataclass(frozen=True)
class AttributeDecl:
    """An extra value that costs one call per item (only with ``--with-attributes``).

    ``operation(**{id_param: item[id_key]}, **params)`` is called, and ``path`` (JMESPath)
    read from the response into record field ``name``.
    """

    name: str
    operation: str
    id_param: str
    path: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KindSpec:
    """One inventory kind. See the module docstring for what each part means.

    ``fields`` shape an item into a record unless ``shaper`` is given (then ``fields``
    only names the record's keys). ``param_fields`` copy request parameters into every
    record (``bucket``). ``scope="account"`` kinds are listed once per account, not per
    region; ``region_label`` replaces the region in their records (IAM: ``global``).
    """

    name: str
    service: str
    operation: str
    items_path: str
    id_key: str
    fields: tuple[Field, ...]
    table: tuple[str, ...]
    description: str
    filters: tuple[FilterDecl, ...] = ()
    tag_filters: bool = False
    base_params: Mapping[str, Any] = field(default_factory=dict)
    max_page_size: int | None = None
    scope: Scope = "regional"
    region_label: str | None = None
    shaper: Shaper | None = None
    param_fields: tuple[Field, ...] = ()
    attributes: tuple[AttributeDecl, ...] = ()

    @property
    def filter_names(self) -> tuple[str, ...]:
        """Names a user may filter on (``tag:<key>`` included when tags are filterable)."""
        names = tuple(f.name for f in self.filters)
        return (*names, "tag:<key>") if self.tag_filters else names

    def filter_decl(self, name: str) -> FilterDecl | None:
        """The declaration for filter ``name`` (``tag:<key>`` maps to a list filter)."""
        for decl in self.filters:
            if decl.name == name:
                return decl
        if self.tag_filters and name.startswith("tag:") and len(name) > 4:
            return FilterDecl(name)
        return None

    @property
    def record_keys(self) -> tuple[str, ...]:
        """The keys of every record of this kind, in order (without attributes)."""
        return (
            "account_id",
            "region",
            *(f.name for f in self.param_fields),
            *(f.name for f in self.fields),
        )


def _f(*pairs: str) -> tuple[Field, ...]:
    """Fields from ``"name=Path"`` strings (JMESPath after the first ``=``)."""
    out = []
    for pair in pairs:
        name, path = pair.split("=", 1)
        out.append(Field(name, path))
    return tuple(out)


def _filters(*names: str) -> tuple[FilterDecl, ...]:
    return tuple(FilterDecl(n) for n in names)


_NAME_TAG = "Tags[?Key=='Name'].Value | [0]"

KINDS: dict[str, KindSpec] = {
    spec.name: spec
    for spec in (
        KindSpec(
            name="ec2-instances",
            service="ec2",
            operation="describe_instances",
            items_path="Reservations[].Instances[]",
            id_key="InstanceId",
            fields=tuple(Field(n, n) for n in INSTANCE_FIELDS),
            table=INSTANCE_TABLE,
            description="EC2 instances with Name, state, stop time and its source, age, volumes",
            filters=_filters(
                "instance-state-name",
                "instance-id",
                "instance-type",
                "availability-zone",
                "image-id",
                "vpc-id",
                "subnet-id",
                "key-name",
                "private-ip-address",
                "architecture",
                "tag-key",
                "tag-value",
            ),
            tag_filters=True,
            max_page_size=1000,
            shaper=shape_instance,
            attributes=(
                AttributeDecl(
                    name="termination_protection",
                    operation="describe_instance_attribute",
                    id_param="InstanceId",
                    path="DisableApiTermination.Value",
                    params={"Attribute": "disableApiTermination"},
                ),
            ),
        ),
        KindSpec(
            name="ebs-volumes",
            service="ec2",
            operation="describe_volumes",
            items_path="Volumes[]",
            id_key="VolumeId",
            fields=_f(
                "volume_id=VolumeId",
                f"name={_NAME_TAG}",
                "state=State",
                "size_gib=Size",
                "volume_type=VolumeType",
                "availability_zone=AvailabilityZone",
                "encrypted=Encrypted",
                "snapshot_id=SnapshotId",
                "create_time=CreateTime",
                "attached_to=Attachments[0].InstanceId",
                "device=Attachments[0].Device",
            ),
            table=("account_id", "region", "volume_id", "name", "state", "size_gib", "attached_to"),
            description="EBS volumes",
            filters=_filters(
                "volume-id",
                "status",
                "size",
                "volume-type",
                "availability-zone",
                "encrypted",
                "snapshot-id",
                "attachment.instance-id",
                "attachment.status",
                "attachment.delete-on-termination",
                "tag-key",
                "tag-value",
            ),
            tag_filters=True,
            max_page_size=500,
        ),
        KindSpec(
            name="ebs-snapshots",
            service="ec2",
            operation="describe_snapshots",
            items_path="Snapshots[]",
            id_key="SnapshotId",
            fields=_f(
                "snapshot_id=SnapshotId",
                f"name={_NAME_TAG}",
                "volume_id=VolumeId",
                "state=State",
                "size_gib=VolumeSize",
                "start_time=StartTime",
                "progress=Progress",
                "encrypted=Encrypted",
                "description=Description",
            ),
            table=("account_id", "region", "snapshot_id", "volume_id", "state", "size_gib"),
            description="EBS snapshots owned by the account",
            filters=_filters(
                "snapshot-id",
                "volume-id",
                "status",
                "start-time",
                "description",
                "volume-size",
                "encrypted",
                "progress",
                "tag-key",
                "tag-value",
            ),
            tag_filters=True,
            base_params={"OwnerIds": ["self"]},
            max_page_size=1000,
        ),
        KindSpec(
            name="amis",
            service="ec2",
            operation="describe_images",
            items_path="Images[]",
            id_key="ImageId",
            fields=_f(
                "image_id=ImageId",
                "name=Name",
                "state=State",
                "creation_date=CreationDate",
                "architecture=Architecture",
                "root_device_type=RootDeviceType",
                "public=Public",
                "snapshot_ids=BlockDeviceMappings[].Ebs.SnapshotId",
            ),
            table=("account_id", "region", "image_id", "name", "state", "creation_date"),
            description="AMIs owned by the account",
            filters=_filters(
                "image-id",
                "name",
                "state",
                "architecture",
                "platform",
                "root-device-type",
                "virtualization-type",
                "is-public",
                "description",
                "tag-key",
                "tag-value",
            ),
            tag_filters=True,
            base_params={"Owners": ["self"]},
            max_page_size=1000,
        ),
        KindSpec(
            name="s3-objects",
            service="s3",
            operation="list_objects_v2",
            items_path="Contents[]",
            id_key="Key",
            fields=_f(
                "key=Key",
                "size=Size",
                "last_modified=LastModified",
                "storage_class=StorageClass",
                "etag=ETag",
            ),
            table=("account_id", "bucket", "key", "size", "last_modified", "storage_class"),
            description="objects of one S3 bucket (--bucket, optional --prefix)",
            filters=(
                FilterDecl("bucket", param="Bucket", required=True),
                FilterDecl("prefix", param="Prefix"),
                FilterDecl("start-after", param="StartAfter"),
            ),
            max_page_size=1000,
            scope="account",
            param_fields=(Field("bucket", "Bucket"),),
        ),
        KindSpec(
            name="iam-users",
            service="iam",
            operation="list_users",
            items_path="Users[]",
            id_key="UserName",
            fields=_f(
                "user_name=UserName",
                "user_id=UserId",
                "arn=Arn",
                "path=Path",
                "create_date=CreateDate",
                "password_last_used=PasswordLastUsed",
            ),
            table=("account_id", "user_name", "path", "create_date", "password_last_used"),
            description="IAM users (global: listed once per account)",
            filters=(FilterDecl("path-prefix", param="PathPrefix"),),
            max_page_size=1000,
            scope="account",
            region_label="global",
        ),
        KindSpec(
            name="rds-snapshots",
            service="rds",
            operation="describe_db_snapshots",
            items_path="DBSnapshots[]",
            id_key="DBSnapshotIdentifier",
            fields=_f(
                "snapshot_id=DBSnapshotIdentifier",
                "db_instance=DBInstanceIdentifier",
                "snapshot_type=SnapshotType",
                "status=Status",
                "engine=Engine",
                "size_gib=AllocatedStorage",
                "create_time=SnapshotCreateTime",
                "encrypted=Encrypted",
            ),
            table=("account_id", "region", "snapshot_id", "db_instance", "status", "size_gib"),
            description="RDS DB snapshots",
            filters=_filters(
                "db-instance-id", "db-snapshot-id", "dbi-resource-id", "snapshot-type", "engine"
            ),
            max_page_size=100,
        ),
        KindSpec(
            name="autoscaling-groups",
            service="autoscaling",
            operation="describe_auto_scaling_groups",
            items_path="AutoScalingGroups[]",
            id_key="AutoScalingGroupName",
            fields=_f(
                "name=AutoScalingGroupName",
                "min_size=MinSize",
                "max_size=MaxSize",
                "desired=DesiredCapacity",
                "instances=length(Instances || `[]`)",
                "instance_ids=Instances[].InstanceId",
                "availability_zones=AvailabilityZones",
                "launch_configuration=LaunchConfigurationName",
                "created_time=CreatedTime",
            ),
            table=("account_id", "region", "name", "min_size", "max_size", "desired", "instances"),
            description="Auto Scaling groups",
            filters=_filters("tag-key", "tag-value"),
            tag_filters=True,
            max_page_size=100,
        ),
    )
}


def get_kind(name: str) -> KindSpec:
    """The spec of kind ``name``, or a one-line UsageError listing the kinds."""
    try:
        return KINDS[name]
    except KeyError:
        raise UsageError(f"unknown inventory kind {name!r}; kinds: {', '.join(KINDS)}") from None
