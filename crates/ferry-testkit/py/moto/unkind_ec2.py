# EC2 and IAM eventual consistency (imported by launcher.py).
#
# AWS: "if you run a command to modify or describe the resource that you just created, its ID
# might not have propagated throughout the system, and you will get an error responding that the
# resource does not exist" — InvalidInstanceID.NotFound after RunInstances (DescribeInstances,
# TerminateInstances: "this does not mean the instance was or will be terminated"),
# InvalidGroup.NotFound after CreateSecurityGroup.
#   https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html
# IAM: a new instance profile (CreateInstanceProfile, AddRoleToInstanceProfile) is not at once
# usable by EC2; RunInstances answers InvalidParameterValue "Value (NAME) for parameter
# iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name" (the same answer as for
# a profile that does not exist, so a caller cannot tell "not yet" from "never").
#   https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency
#   https://docs.aws.amazon.com/IAM/latest/APIReference/API_AddRoleToInstanceProfile.html
# moto 5.2.5 is strongly consistent: everything is visible the moment its create call answers.
#
# The patch wraps moto's EC2 and IAM *response* methods (moto/ec2/responses/*.py,
# moto/iam/responses.py), so moto's own models stay consistent and only what a client sees
# changes:
# - RunInstances / CreateSecurityGroup record the new ids with the time they answered. For
#   FERRY_UNKIND_EC2_NOTFOUND_SECONDS (default 2; 0 turns it off) such an id is invisible:
#   DescribeInstances / DescribeSecurityGroups naming it, DescribeInstanceAttribute,
#   ModifyInstanceAttribute, Terminate/Stop/Start/RebootInstances, CreateTags / DeleteTags,
#   Authorize/Revoke ingress/egress, DeleteSecurityGroup and RunInstances naming the group answer
#   InvalidInstanceID.NotFound / InvalidGroup.NotFound and change nothing; Describe* without ids
#   (filters, tags) leave it out.
# - CreateInstanceProfile / AddRoleToInstanceProfile record the profile; for
#   FERRY_UNKIND_IAM_PROFILE_SECONDS (default 4; 0 turns it off) RunInstances naming it (by name
#   or ARN) is refused as above. A profile that does not exist gets the same AWS answer (moto
#   would answer IAM's NoSuchEntity from the EC2 endpoint).
# - Termination takes time, and a group an instance still uses cannot be deleted. AWS:
#   TerminateInstances moves an instance to `shutting-down`, and only later to `terminated`
#   (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-lifecycle.html);
#   "If you attempt to delete a security group that is associated with an instance ... the
#   operation fails with DependencyViolation"
#   (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DeleteSecurityGroup.html).
#   moto 5.2.5 terminates at once and deletes a group in use. Here a terminated instance shows
#   `shutting-down` (code 32) for FERRY_UNKIND_EC2_SHUTDOWN_SECONDS (default 2; 0 turns it off),
#   in TerminateInstances' CurrentState and in every Describe; a second TerminateInstances
#   meanwhile answers shutting-down again; and DeleteSecurityGroup of a group that an instance
#   not yet `terminated` names (its groups or its interfaces' groups) answers DependencyViolation
#   and deletes nothing. This patch changes moto's models (the instance's state, checked and
#   advanced at the start of every request), so every reader sees the same state.
# IAM checks (MOTO_ENABLE_IAM_CHECKS) run before the wrapped methods, so AccessDenied still wins.
# Not covered: DescribeInstanceStatus, DescribeSecurityGroupRules, DescribeTags, VPC pieces
# (VPCs, subnets, route tables, endpoints), which Ferry creates only in `ferry infra apply`.
import copy
import os
import threading
import time

from moto.ec2.exceptions import (
    EC2ClientError,
    InvalidInstanceIdError,
    InvalidSecurityGroupNotFoundError,
)
from moto.ec2.responses.instances import InstanceResponse
from moto.ec2.responses.security_groups import SecurityGroups
from moto.ec2.responses.tags import TagResponse
from moto.iam.responses import IamResponse


def _seconds(name, default):
    try:
        return max(0.0, float(os.environ.get(name, default)))
    except ValueError:
        raise SystemExit("%s=%r is not a number of seconds" % (name, os.environ[name]))


NOTFOUND_SECONDS = _seconds("FERRY_UNKIND_EC2_NOTFOUND_SECONDS", "2")
PROFILE_SECONDS = _seconds("FERRY_UNKIND_IAM_PROFILE_SECONDS", "4")
SHUTDOWN_SECONDS = _seconds("FERRY_UNKIND_EC2_SHUTDOWN_SECONDS", "2")

_lock = threading.Lock()
_born = {}  # EC2 id -> monotonic time its create call answered
_profiles = {}  # (account, profile name) -> monotonic time of its last create/add-role


def _invisible(resource_id):
    with _lock:
        t = _born.get(resource_id)
    return t is not None and time.monotonic() < t + NOTFOUND_SECONDS


def _not_found(ids):
    """Raise the NotFound AWS answers for the first invisible id (instances before groups)."""
    hidden = [i for i in ids if isinstance(i, str) and _invisible(i)]
    instances = [i for i in hidden if i.startswith("i-")]
    if instances:
        raise InvalidInstanceIdError(instances)
    if hidden:
        raise InvalidSecurityGroupNotFoundError(hidden[0])


def _born_now(ids):
    now = time.monotonic()
    with _lock:
        for i in ids:
            _born[i] = now


# Which ids each wrapped EC2 action names (moto's parsed parameters).
def _instance_ids(r):
    return r._get_param("InstanceIds", [])


def _instance_id(r):
    return [r._get_param("InstanceId")]


def _group_id(r):
    return [r._get_param("GroupId")]


def _resources(r):
    return r._get_param("Resources", [])


def _run_groups(r):
    ids = list(r._get_param("SecurityGroupIds", []))
    for nic in r._get_param("NetworkInterfaces", []) or []:
        ids.extend(nic.get("Groups", []) or [])
    return ids


NAMED = {
    InstanceResponse: {
        "describe_instances": _instance_ids,
        "terminate_instances": _instance_ids,
        "stop_instances": _instance_ids,
        "start_instances": _instance_ids,
        "reboot_instances": _instance_ids,
        "describe_instance_attribute": _instance_id,
        "modify_instance_attribute": _instance_id,
        "run_instances": _run_groups,
    },
    SecurityGroups: {
        "describe_security_groups": lambda r: r._get_param("GroupIds", []),
        "authorize_security_group_ingress": _group_id,
        "authorize_security_group_egress": _group_id,
        "revoke_security_group_ingress": _group_id,
        "revoke_security_group_egress": _group_id,
        "delete_security_group": _group_id,
        "modify_security_group_rules": _group_id,
    },
    TagResponse: {"create_tags": _resources, "delete_tags": _resources},
}


def _guard(original, named):
    def wrapped(self):
        _not_found(named(self))
        return original(self)

    return wrapped


if NOTFOUND_SECONDS > 0:
    for cls, actions in NAMED.items():
        for action, named in actions.items():
            setattr(cls, action, _guard(getattr(cls, action), named))

    _describe_instances = InstanceResponse.describe_instances

    def describe_instances(self):
        result = _describe_instances(self)
        shown = []
        for reservation in result.result["Reservations"]:
            instances = [i for i in reservation.instances if not _invisible(i.id)]
            if instances:
                r = copy.copy(reservation)
                r.instances = instances
                shown.append(r)
        result.result["Reservations"] = shown
        return result

    InstanceResponse.describe_instances = describe_instances

    _describe_groups = SecurityGroups.describe_security_groups

    def describe_security_groups(self):
        result = _describe_groups(self)
        groups = [g for g in result.result["SecurityGroups"] if not _invisible(g.id)]
        result.result["SecurityGroups"] = groups
        return result

    SecurityGroups.describe_security_groups = describe_security_groups

    _create_group = SecurityGroups.create_security_group

    def create_security_group(self):
        result = _create_group(self)
        _born_now([result.result["GroupId"]])
        return result

    SecurityGroups.create_security_group = create_security_group


_run_instances = InstanceResponse.run_instances


def _profile_refused(r):
    name = r._get_param("IamInstanceProfile.Name")
    arn = r._get_param("IamInstanceProfile.Arn")
    if not (name or arn):
        return
    param, value, what = (
        ("name", name, "name") if name else ("arn", arn, "ARN")
    )
    key = (r.current_account, name or arn.rsplit("/", 1)[-1])
    with _lock:
        t = _profiles.get(key)
    young = t is not None and time.monotonic() < t + PROFILE_SECONDS
    missing = False
    if not young:
        from moto.iam.models import iam_backends

        try:
            iam_backends[r.current_account][r.partition].get_instance_profile(key[1])
        except Exception:
            missing = True
    if young or missing:
        raise EC2ClientError(
            "InvalidParameterValue",
            "Value (%s) for parameter iamInstanceProfile.%s is invalid. Invalid IAM Instance Profile %s"
            % (value, param, what),
        )


def run_instances(self):
    _profile_refused(self)
    result = _run_instances(self)
    if NOTFOUND_SECONDS > 0:
        _born_now([i.id for i in result.result.instances])
    return result


InstanceResponse.run_instances = run_instances


def _profile_changed(original):
    def wrapped(self):
        result = original(self)
        with _lock:
            _profiles[(self.current_account, self._get_param("InstanceProfileName"))] = time.monotonic()
        return result

    return wrapped


if PROFILE_SECONDS > 0:
    IamResponse.create_instance_profile = _profile_changed(IamResponse.create_instance_profile)
    IamResponse.add_role_to_instance_profile = _profile_changed(IamResponse.add_role_to_instance_profile)


# ---- termination takes time; a group in use is not deleted (see the header) ----------------
_shutting = {}  # instance id -> (moto Instance, monotonic time its termination began)


def _settle():
    """Instances whose shutting-down time is over become terminated (code 48)."""
    now = time.monotonic()
    with _lock:
        done = [i for i, (_, t) in _shutting.items() if now >= t + SHUTDOWN_SECONDS]
        for i in done:
            inst, _ = _shutting.pop(i)
            inst._state.name = "terminated"
            inst._state.code = 48


def _group_users(backend, group_id):
    """Ids of the instances not yet terminated that name the group."""
    users = []
    for inst in backend.all_instances():
        if inst._state.name == "terminated":
            continue
        groups = {g.id for g in (inst.security_groups or []) if g is not None}
        for nic in getattr(inst, "nics", {}).values():
            groups.update(g.id for g in (getattr(nic, "group_set", None) or []) if g is not None)
        if group_id in groups:
            users.append(inst.id)
    return users


if SHUTDOWN_SECONDS > 0:
    from moto.core.responses import BaseResponse
    from moto.ec2.exceptions import DependencyViolationError
    from moto.ec2.models.instances import Instance
    from moto.ec2.models.security_groups import SecurityGroupBackend

    _call_action = BaseResponse.call_action

    def call_action(self):
        if _shutting:
            _settle()
        return _call_action(self)

    BaseResponse.call_action = call_action

    _terminate = Instance.terminate

    def terminate(self):
        with _lock:
            if self.id in _shutting:
                return copy.copy(self._state)
        previous = _terminate(self)
        with _lock:
            self._state.name = "shutting-down"
            self._state.code = 32
            _shutting[self.id] = (self, time.monotonic())
        return previous

    Instance.terminate = terminate

    _delete_group = SecurityGroupBackend.delete_security_group

    def delete_security_group(self, name=None, group_id=None):
        group = self.get_security_group_by_name_or_id(group_id or name)
        if group is not None:
            users = _group_users(self, group.id)
            if users:
                # AWS's words (the instance ids are not in them).
                raise DependencyViolationError("resource %s has a dependent object" % group.id)
        return _delete_group(self, name=name, group_id=group_id)

    SecurityGroupBackend.delete_security_group = delete_security_group

print(
    "ferry-testkit: moto patched: EC2 ids invisible for %gs after creation, new instance profiles "
    "refused by RunInstances for %gs, terminated instances shutting-down for %gs (their groups "
    "in use until then)" % (NOTFOUND_SECONDS, PROFILE_SECONDS, SHUTDOWN_SECONDS),
    flush=True,
)
