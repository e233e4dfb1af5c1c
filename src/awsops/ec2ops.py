"""EC2 instance lifecycle: launch, stop, start, terminate, and DryRun permission checks.

Every function takes a client (built by :func:`awsops.clients.make_client`) and returns
plain frozen records; every AWS error leaves as one of ours (:mod:`awsops.errors`).
Waiting goes through :func:`awsops.waiters.wait_many`, so many instances cost a few
describe calls per poll, never one per instance.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from awsops.errors import AwsError, AwsopsError, SafetyError, UsageError, translate
from awsops.fanout import DEFAULT_ITEM_CONCURRENCY, map_concurrent
from awsops.waiters import OnAttempt, chunked
from awsops.waitmany import wait_many

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

Action = Literal["stop", "start", "terminate"]
Verdict = Literal["would-succeed", "not-authorized"]

# Ids per StopInstances/StartInstances/TerminateInstances call and per describe poll.
BATCH_SIZE = 100
MAX_LAUNCH_COUNT = 1000


@dataclass(frozen=True)
class _ActionSpec:
    method: str
    operation: str
    waiter: str
    result_key: str
    final_state: str


ACTIONS: Mapping[Action, _ActionSpec] = {
    "stop": _ActionSpec(
        "stop_instances", "StopInstances", "instance_stopped", "StoppingInstances", "stopped"
    ),
    "start": _ActionSpec(
        "start_instances", "StartInstances", "instance_running", "StartingInstances", "running"
    ),
    "terminate": _ActionSpec(
        "terminate_instances",
        "TerminateInstances",
        "instance_terminated",
        "TerminatingInstances",
        "terminated",
    ),
}


@dataclass(frozen=True)
class PermissionCheck:
    """The answer of a ``DryRun=True`` call: would it succeed, or is it not authorized.

    ``code`` is the AWS error code that carried the answer (``DryRunOperation`` or
    ``UnauthorizedOperation``); ``message`` is AWS's text (for a refusal it may hold
    an encoded authorization message for ``sts decode-authorization-message``).
    """

    operation: str
    verdict: Verdict
    code: str
    message: str
    request_id: str | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict == "would-succeed"


@dataclass(frozen=True)
class LaunchSpec:
    """What to launch: ``count`` instances of one image and type, all or none."""

    image_id: str
    instance_type: str
    count: int = 1
    tags: Mapping[str, str] = field(default_factory=dict)
    subnet_id: str | None = None
    key_name: str | None = None
    security_group_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_LAUNCH_COUNT:
            raise UsageError(f"count must be between 1 and {MAX_LAUNCH_COUNT}")
        if not self.image_id.startswith("ami-"):
            raise UsageError(f"image id must look like ami-..., got {self.image_id!r}")
        if not self.instance_type:
            raise UsageError("instance type is required")

    def request(self, client_token: str | None = None) -> dict[str, Any]:
        """The RunInstances parameters: MinCount = MaxCount = count, tags on instance
        and volumes, and a client token so a retried call cannot launch twice."""
        params: dict[str, Any] = {
            "ImageId": self.image_id,
            "InstanceType": self.instance_type,
            "MinCount": self.count,
            "MaxCount": self.count,
        }
        if client_token:
            params["ClientToken"] = client_token
        if self.tags:
            tag_list = [{"Key": k, "Value": v} for k, v in self.tags.items()]
            params["TagSpecifications"] = [
                {"ResourceType": kind, "Tags": tag_list} for kind in ("instance", "volume")
            ]
        if self.subnet_id:
            params["SubnetId"] = self.subnet_id
        if self.key_name:
            params["KeyName"] = self.key_name
        if self.security_group_ids:
            params["SecurityGroupIds"] = list(self.security_group_ids)
        return params


@dataclass(frozen=True)
class LaunchedInstance:
    """One launched instance as the CLI prints it."""

    instance_id: str
    availability_zone: str | None
    state: str
    instance_type: str | None = None
    private_ip: str | None = None

    def record(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "availability_zone": self.availability_zone,
            "state": self.state,
            "instance_type": self.instance_type,
            "private_ip": self.private_ip,
        }


@dataclass(frozen=True)
class StateChange:
    """One instance's state before and after stop/start/terminate (and the wait)."""

    instance_id: str
    previous_state: str | None
    current_state: str | None

    def record(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "previous_state": self.previous_state,
            "current_state": self.current_state,
        }


def parse_tags(values: Iterable[str]) -> dict[str, str]:
    """``["Name=web", "env=prod"]`` -> ``{"Name": "web", "env": "prod"}``.

    The value may be empty (``team=``) and may contain ``=``; the key may not be
    empty. A malformed or repeated tag is a :class:`UsageError`.
    """
    tags: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"malformed tag {item!r}: expected Key=Value")
        if key in tags:
            raise UsageError(f"tag {key!r} given twice")
        tags[key] = value
    return tags


def normalize_ids(ids: Iterable[str]) -> list[str]:
    """Split comma-separated ids, drop blanks and duplicates, keep order; none is an error."""
    out = list(dict.fromkeys(p.strip() for i in ids for p in i.split(",") if p.strip()))
    if not out:
        raise UsageError("no instance ids given")
    for i in out:
        if not i.startswith("i-"):
            raise UsageError(f"not an instance id: {i!r}")
    return out


def check_permissions(client: EC2Client, method: str, params: Mapping[str, Any]) -> PermissionCheck:
    """Ask EC2 whether ``method`` (``stop_instances``...) with ``params`` would succeed.

    Sends the call with ``DryRun=True``: nothing changes. ``DryRunOperation`` ->
    ``would-succeed``, ``UnauthorizedOperation`` -> ``not-authorized``; any other error
    (an unknown instance id, bad credentials...) is raised as one of ours.
    """
    operation = client.meta.method_to_api_mapping.get(method)
    if operation is None:
        raise UsageError(f"ec2 has no operation {method!r}")
    input_shape = client.meta.service_model.operation_model(operation).input_shape
    if input_shape is None or "DryRun" not in input_shape.members:
        raise UsageError(f"{operation} does not support DryRun")
    region = client.meta.region_name
    try:
        getattr(client, method)(**params, DryRun=True)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        request_id = exc.response.get("ResponseMetadata", {}).get("RequestId")
        message = str(error.get("Message") or "")
        if code == "DryRunOperation":
            return PermissionCheck(operation, "would-succeed", code, message, request_id)
        if code == "UnauthorizedOperation":
            return PermissionCheck(operation, "not-authorized", code, message, request_id)
        raise translate(exc, operation=operation, region=region) from exc
    except BotoCoreError as exc:
        raise translate(exc, operation=operation, region=region) from exc
    # The endpoint ignored DryRun and may have acted: nothing after this may run.
    raise SafetyError(
        f"{operation} with DryRun=True did not answer DryRunOperation ({region}); the "
        "endpoint may have carried it out: refusing to go on"
    )


def protected_instances(
    client: EC2Client, instance_ids: Sequence[str], concurrency: int = DEFAULT_ITEM_CONCURRENCY
) -> list[str]:
    """The ids whose termination protection (``DisableApiTermination``) is on, in the
    order given.

    One DescribeInstanceAttribute call per instance (EC2 has no batch form of it), up to
    ``concurrency`` at a time: their pace is the client's rate limiter's.
    """
    region = client.meta.region_name

    def is_protected(instance_id: str) -> bool:
        try:
            attr = client.describe_instance_attribute(
                InstanceId=instance_id, Attribute="disableApiTermination"
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="DescribeInstanceAttribute", region=region) from exc
        return bool(attr.get("DisableApiTermination", {}).get("Value"))

    ids = list(instance_ids)
    flags = map_concurrent(is_protected, ids, concurrency)
    return [i for i, flag in zip(ids, flags, strict=True) if flag]


def refuse_protected(client: EC2Client, instance_ids: Sequence[str]) -> None:
    """Raise :class:`SafetyError` naming every protected instance, if there is any."""
    protected = protected_instances(client, instance_ids)
    if protected:
        raise SafetyError(
            f"refusing to terminate {len(protected)} instance(s) with termination "
            f"protection (DisableApiTermination): {', '.join(protected)}; nothing was "
            "terminated. Turn protection off first if they really must go."
        )


def change_state(
    client: EC2Client,
    action: Action,
    instance_ids: Sequence[str],
    *,
    wait: bool = False,
    delay: float | None = None,
    max_attempts: int | None = None,
    on_attempt: OnAttempt | None = None,
) -> list[StateChange]:
    """Stop, start or terminate instances in batches; optionally wait for the end state.

    ``terminate`` first checks termination protection and, if any instance has it,
    raises :class:`SafetyError` before any instance is touched. With ``wait``, the
    matching waiter (``instance_stopped``, ``instance_running``,
    ``instance_terminated``) runs over all ids with one describe call per
    :data:`BATCH_SIZE` ids per poll; the returned current state is then the end state.
    """
    spec = ACTIONS[action]
    ids = normalize_ids(instance_ids)
    region = client.meta.region_name
    if action == "terminate":
        refuse_protected(client, ids)
    changes: dict[str, StateChange] = {}
    for batch in chunked(ids, BATCH_SIZE):
        try:
            response = getattr(client, spec.method)(InstanceIds=batch)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation=spec.operation, region=region) from exc
        for item in response.get(spec.result_key, []):
            changes[item["InstanceId"]] = StateChange(
                item["InstanceId"],
                item.get("PreviousState", {}).get("Name"),
                item.get("CurrentState", {}).get("Name"),
            )
    if wait:
        wait_many(
            client,
            spec.waiter,
            "InstanceIds",
            ids,
            batch_size=BATCH_SIZE,
            delay=delay,
            max_attempts=max_attempts,
            on_attempt=on_attempt,
        )
        changes = {
            i: StateChange(i, c.previous_state, spec.final_state) for i, c in changes.items()
        }
    return [changes.get(i, StateChange(i, None, None)) for i in ids]


def launch(
    client: EC2Client,
    spec: LaunchSpec,
    *,
    wait: bool = False,
    wait_status_ok: bool = False,
    delay: float | None = None,
    max_attempts: int | None = None,
    on_attempt: OnAttempt | None = None,
    client_token: str | None = None,
) -> list[LaunchedInstance]:
    """Launch ``spec.count`` instances (all or none) and return their ids and AZs.

    With ``wait`` (implied by ``wait_status_ok``) waits for ``instance_running``; with
    ``wait_status_ok`` then for ``instance_status_ok``. A random client token makes
    botocore's retries of RunInstances idempotent. If the wait fails, the waiter's
    error is raised; the instances exist and are named in the error's resources.
    """
    region = client.meta.region_name
    try:
        response = client.run_instances(**spec.request(client_token or str(uuid.uuid4())))
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, operation="RunInstances", region=region) from exc
    launched = [
        LaunchedInstance(
            instance_id=i["InstanceId"],
            availability_zone=i.get("Placement", {}).get("AvailabilityZone"),
            state=i.get("State", {}).get("Name", "pending"),
            instance_type=i.get("InstanceType"),
            private_ip=i.get("PrivateIpAddress"),
        )
        for i in response.get("Instances", [])
    ]
    ids = [i.instance_id for i in launched]
    if wait or wait_status_ok:
        waiters = ["instance_running"] + (["instance_status_ok"] if wait_status_ok else [])
        for waiter in waiters:
            _wait_or_explain(client, waiter, ids, delay, max_attempts, on_attempt)
        launched = [
            LaunchedInstance(
                i.instance_id, i.availability_zone, "running", i.instance_type, i.private_ip
            )
            for i in launched
        ]
    return launched


def _wait_or_explain(
    client: EC2Client,
    waiter: str,
    ids: Sequence[str],
    delay: float | None,
    max_attempts: int | None,
    on_attempt: OnAttempt | None,
) -> None:
    """Wait; if it fails, say which launched instances exist so none is forgotten."""
    try:
        wait_many(
            client,
            waiter,
            "InstanceIds",
            ids,
            batch_size=BATCH_SIZE,
            delay=delay,
            max_attempts=max_attempts,
            on_attempt=on_attempt,
        )
    except AwsopsError as exc:
        shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        if isinstance(exc, AwsError):
            exc.message = f"{exc.message} (launched: {shown})"
        raise
