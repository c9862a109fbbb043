# Bucket policies evaluated with their Conditions, and the S3 gateway endpoint (imported by
# launcher.py).
#
# moto 5.2.5 fills in no request context for S3: a statement with a Condition "fails" and then
# answers DENIED whatever its Effect, so every object request under Ferry's policies is refused
# (plain moto; tests/localcloud.rs keeps a test of that gap). It never consults a bucket policy
# for ListBucket, answers a denied object request with an empty 403, and ignores NotResource
# (a Deny with NotResource denies everything). This module replaces all of that with AWS's own
# evaluation for the condition operators and keys Ferry's policies use, with a request context
# filled the way AWS fills it:
#   - evaluation: explicit Deny wins, then an Allow, else neutral (IAM/S3 evaluation logic,
#     https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html,
#     https://docs.aws.amazon.com/AmazonS3/latest/userguide/access-control-auth-workflow-object-operation.html);
#   - operators String*/Arn*/Bool/Null, …IfExists, ForAnyValue:/ForAllValues:; several operators
#     or keys AND, several values OR (NOR for a negated operator); a key missing from the context
#     makes a condition false, except negated operators (true), Null and …IfExists
#     (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html,
#     https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_multi-value-conditions.html);
#     an operator it does not know makes a Deny apply and an Allow not (fail closed, logged);
#   - aws:PrincipalArn: the IAM user's ARN, or for an assumed-role session the ROLE's ARN with
#     its path, never the sts session ARN; taken from the signature's access key id, whether or
#     not moto's IAM checks are on. A key moto does not know has no principal ARN
#     (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalarn);
#   - s3:if-none-match: present iff the request has an If-None-Match header
#     (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes-enforce.html);
#   - aws:SourceVpce: only requests that arrive through a gateway endpoint carry it
#     (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-sourcevpce,
#     https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-s3.html). The kit models the
#     endpoint as a second loopback port (FERRY_UNKIND_S3_GATEWAY_PORT) serving the same moto: a
#     request arriving there whose caller is a pending or running instance (its role session is
#     named after the instance id, as EC2 names instance-profile sessions) gets the id of the S3
#     gateway endpoint attached to the route table of the instance's subnet (its explicit
#     association, else the VPC's main table). No such endpoint: no SourceVpce, and the request is judged as one that
#     left through the internet gateway (the seed's defect: an endpoint on the private table only).
#     A request that does pass an endpoint must also be allowed by the endpoint's policy
#     (https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-access.html);
#   - aws:SecureTransport: moto serves plain HTTP; the kit's clients stand for the SDKs' HTTPS,
#     so it is "true" (knob FERRY_UNKIND_S3_SECURE_TRANSPORT, default true; "false" makes every
#     request plain HTTP, which is how the kit's test shows the TLS-only deny is evaluated).
# HEAD of an object is judged as s3:GetObject, as S3 does
# (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html).
# The policy document itself is stored and returned unchanged (GetBucketPolicy).
import json
import os
import re
import sys
import threading

import kitlog  # the kit's own (launcher.py puts this directory on sys.path)

import moto.server as moto_server
from moto.iam.access_control import PermissionResult
from moto.s3 import models as s3_models
from moto.s3 import responses as s3_responses
from moto.s3.exceptions import BucketAccessDeniedError

_local = threading.local()
_SECURE = os.environ.get("FERRY_UNKIND_S3_SECURE_TRANSPORT", "true").lower() != "false"
_GATEWAY_PORT = os.environ.get("FERRY_UNKIND_S3_GATEWAY_PORT", "")


_log = kitlog.logger("unkind_s3")


# ---- the request context ---------------------------------------------------------------------

class _Context:
    """WSGI middleware: remembers the request (and whether it came through the gateway-endpoint
    port) for the policy checks that moto's S3 code makes further down the same thread."""

    def __init__(self, app, via_endpoint):
        self.app = app
        self.via_endpoint = via_endpoint

    def __call__(self, environ, start_response):
        if self.via_endpoint:
            scope = _credential(environ)
            if scope and scope[3] != "s3":
                # A gateway endpoint carries S3 traffic only.
                body = b"ferry-testkit: this port is the S3 gateway endpoint; send only S3 here\n"
                start_response("400 Bad Request", [("Content-Type", "text/plain"),
                                                   ("Content-Length", str(len(body)))])
                return [body]
        _local.environ = environ
        _local.via_endpoint = self.via_endpoint
        try:
            return self.app(environ, start_response)
        finally:
            _local.environ = None
            _local.via_endpoint = False


def _credential(environ):
    """(access key id, date, region, service) of a SigV4-signed request, or None."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = re.search(r"Credential=([^,\s]+)", auth)
    cred = m.group(1) if m else None
    if cred is None:
        q = re.search(r"(?:^|&)X-Amz-Credential=([^&]+)", environ.get("QUERY_STRING", ""))
        if q:
            from urllib.parse import unquote
            cred = unquote(q.group(1))
    if not cred:
        return None
    parts = cred.split("/")
    return tuple(parts[:4]) if len(parts) >= 4 else None


def _principal(access_key_id):
    """(aws:PrincipalArn, account id, role session name or None) for an access key moto knows."""
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    for _account, by_partition in list(sts_backends.items()):
        for backend in list(by_partition.values()):
            assumed = backend.get_assumed_role_from_access_key(access_key_id)
            if assumed is None:
                continue
            # The role's own ARN (with its path), from IAM; the ARN given to AssumeRole if IAM
            # has no such role (moto lets one assume a role that does not exist).
            name = assumed.role_arn.split("/")[-1]
            role_arn = assumed.role_arn
            for by_p in [iam_backends[assumed.account_id]]:
                for iam in list(by_p.values()):
                    for role in list(iam.roles.values()):
                        if role.name == name:
                            role_arn = role.arn
            return role_arn, assumed.account_id, assumed.session_name
    for _account, by_partition in list(iam_backends.items()):
        for iam in list(by_partition.values()):
            user = iam.get_user_from_access_key_id(access_key_id)
            if user is not None:
                return user.arn, user.account_id, None
    return None, None, None


def _gateway_endpoint(account, region, instance_id):
    """The S3 gateway endpoint on the route table of `instance_id`'s subnet, or None."""
    from moto.ec2.models import ec2_backends

    if not (account and region and instance_id and instance_id.startswith("i-")):
        return None
    ec2 = ec2_backends[account][region]
    instance = None
    for reservation in list(ec2.reservations.values()):
        for i in reservation.instances:
            if i.id == instance_id:
                instance = i
    # Only a pending or running instance sends anything; its role's keys used anywhere else
    # come from outside the VPC.
    if instance is None or not instance.subnet_id or instance._state.name not in ("pending", "running"):
        return None
    vpc_id = None
    for by_id in list(ec2.subnets.values()):
        if instance.subnet_id in by_id:
            vpc_id = by_id[instance.subnet_id].vpc_id
    tables = list(ec2.route_tables.values())
    table = next((t for t in tables if instance.subnet_id in t._associations.values()), None)
    if table is None:
        table = next((t for t in tables if t.vpc_id == vpc_id and t.main_association_id), None)
    if table is None:
        return None
    for e in list(ec2.vpc_end_points.values()):
        if (e.vpc_endpoint_type or "").lower() == "gateway" \
                and e.service_name == f"com.amazonaws.{region}.s3" \
                and table.id in (e.route_table_ids or []):
            return e
    return None


def request_context():
    """The condition keys of the current request (lower-case names), the endpoint it passed
    (or None), and the principal ARN; None outside a request."""
    environ = getattr(_local, "environ", None)
    if environ is None:
        return None
    ctx = {"aws:securetransport": "true" if _SECURE else "false"}
    if "HTTP_IF_NONE_MATCH" in environ:
        ctx["s3:if-none-match"] = environ["HTTP_IF_NONE_MATCH"]
    scope = _credential(environ)
    principal = account = session = None
    if scope:
        principal, account, session = _principal(scope[0])
    if principal:
        ctx["aws:principalarn"] = principal
        ctx["aws:principalaccount"] = account
    endpoint = None
    if getattr(_local, "via_endpoint", False) and scope:
        endpoint = _gateway_endpoint(account, scope[2], session)
        if endpoint is not None:
            ctx["aws:sourcevpce"] = endpoint.id
            ctx["aws:sourcevpc"] = endpoint.vpc_id
    return ctx, endpoint, principal


# ---- the evaluator ---------------------------------------------------------------------------

class _Unsupported(Exception):
    pass


def _as_list(v):
    return v if isinstance(v, list) else [v]


def _glob(pattern, value, ignore_case=False):
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.S | (re.I if ignore_case else 0)) is not None


def _arn_like(pattern, value):
    p, v = pattern.split(":", 5), value.split(":", 5)
    return len(p) == 6 and len(v) == 6 and all(_glob(a, b) for a, b in zip(p, v))


_MATCHERS = {
    "StringEquals": lambda p, v: p == v,
    "StringEqualsIgnoreCase": lambda p, v: p.lower() == v.lower(),
    "StringLike": _glob,
    "ArnEquals": _arn_like,
    "ArnLike": _arn_like,
    "Bool": lambda p, v: str(p).lower() == v.lower(),
}
_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


def _condition_holds(op, key, wanted, ctx):
    qualifier = None
    if ":" in op:
        qualifier, op = op.split(":", 1)
        if qualifier not in ("ForAnyValue", "ForAllValues"):
            raise _Unsupported(qualifier)
    if_exists = op.endswith("IfExists") and op != "IfExists"
    if if_exists:
        op = op[: -len("IfExists")]
    present = key.lower() in ctx
    actual = ctx.get(key.lower())
    wanted = [str(w) if not isinstance(w, bool) else str(w).lower() for w in _as_list(wanted)]
    if op == "Null":
        return (not present) == (wanted[0].lower() == "true")
    if not present:
        if if_exists or op in _NEGATED or qualifier == "ForAllValues":
            return True
        return False
    negated = op in _NEGATED
    base = _NEGATED.get(op, op)
    match = _MATCHERS.get(base)
    if match is None:
        raise _Unsupported(op)
    values = _as_list(actual)
    if qualifier == "ForAllValues":
        hit = all(any(match(w, a) for w in wanted) for a in values)
    else:
        hit = any(match(w, a) for w in wanted for a in values)
    return not hit if negated else hit


def _conditions_hold(block, ctx):
    for op, keys in (block or {}).items():
        for key, wanted in keys.items():
            if not _condition_holds(op, key, wanted, ctx):
                return False
    return True


def _principal_matches(element, principal, account):
    if element == "*":
        return True
    if not isinstance(element, dict):
        return False
    for p in _as_list(element.get("AWS", [])):
        if p == "*" or (principal and p == principal):
            return True
        if account and p in (account, f"arn:aws:iam::{account}:root"):
            return True
    return False


def _statement_applies(s, action, resource, ctx, principal, account):
    if "Action" in s:
        if not any(_glob(a, action, ignore_case=True) for a in _as_list(s["Action"])):
            return False
    elif "NotAction" in s:
        if any(_glob(a, action, ignore_case=True) for a in _as_list(s["NotAction"])):
            return False
    if "Resource" in s:
        if not any(_glob(r, resource) for r in _as_list(s["Resource"])):
            return False
    elif "NotResource" in s:
        if any(_glob(r, resource) for r in _as_list(s["NotResource"])):
            return False
    if "Principal" in s and not _principal_matches(s["Principal"], principal, account):
        return False
    if "NotPrincipal" in s and _principal_matches(s["NotPrincipal"], principal, account):
        return False
    try:
        return _conditions_hold(s.get("Condition"), ctx)
    except _Unsupported as e:
        _log(f"condition operator {e} is not evaluated by the kit: statement "
             f"{s.get('Sid', '?')} {'applies (Deny fails closed)' if s.get('Effect') == 'Deny' else 'does not apply'}")
        return s.get("Effect") == "Deny"


def evaluate(document, action, resource, ctx, principal):
    """PermissionResult of one policy document; with the Sid that decided, for the log."""
    statements = _as_list(document.get("Statement", []))
    account = ctx.get("aws:principalaccount")
    allowed = None
    for s in statements:
        if _statement_applies(s, action, resource, ctx, principal, account):
            if s.get("Effect") == "Deny":
                return PermissionResult.DENIED, s.get("Sid", "?")
            if s.get("Effect") == "Allow":
                allowed = s.get("Sid", "?")
    if allowed is not None:
        return PermissionResult.PERMITTED, allowed
    return PermissionResult.NEUTRAL, None


def judge(bucket, action, resource):
    """The bucket policy (and the gateway endpoint's policy, for requests through it) on this
    request. None outside a request (moto's own evaluation then applies)."""
    rc = request_context()
    if rc is None:
        return None
    ctx, endpoint, principal = rc
    who = principal or "an unknown key"
    if endpoint is not None:
        doc = json.loads(endpoint.policy_document or "{}")
        result, sid = evaluate(doc, action, resource, ctx, principal)
        if result != PermissionResult.PERMITTED:
            _log(f"DENIED {action} {resource} for {who}: endpoint {endpoint.id}'s policy "
                 f"{'denies it (' + sid + ')' if sid else 'does not allow it'}")
            return PermissionResult.DENIED
    if bucket.policy is None:
        return PermissionResult.NEUTRAL
    try:
        doc = json.loads(bucket.policy.decode())
    except ValueError:
        return None
    result, sid = evaluate(doc, action, resource, ctx, principal)
    if result == PermissionResult.DENIED:
        _log(f"DENIED {action} {resource} for {who} by bucket policy statement {sid} "
             f"(context {json.dumps(ctx, sort_keys=True)})")
    return result


# ---- where moto asks -------------------------------------------------------------------------

_original_get_permission = s3_models.FakeBucket.get_permission


def get_permission(self, action, resource):
    # moto asks this for object requests (and each key of DeleteObjects).
    if action == "s3:HeadObject":
        action = "s3:GetObject"
    r = judge(self, action, resource)
    return _original_get_permission(self, action, resource) if r is None else r


s3_models.FakeBucket.get_permission = get_permission


def _object_action(method, args, headers):
    if method in ("GET", "HEAD"):
        return "s3:GetObject"
    if method == "PUT":
        return "s3:PutObject"  # also UploadPart and CopyObject's destination
    if method == "DELETE":
        return "s3:AbortMultipartUpload" if "uploadId" in args else "s3:DeleteObject"
    if method == "POST":
        return "s3:PutObject" if ("uploads" in args or "uploadId" in args) else None
    return None


_original_key_response = s3_responses.S3Response._key_response


def _key_response(self, request, full_url):
    # Judge before moto does, so that a refusal is S3's AccessDenied (XML), not an empty 403.
    action = _object_action(request.method, getattr(request, "args", {}), request.headers)
    if action is not None:
        bucket_name = self.parse_bucket_name_from_url(request, full_url)
        key_name = self.parse_key_name()
        bucket = self.backend.buckets.get(bucket_name)
        if bucket is not None:
            resource = f"arn:{bucket.partition}:s3:::{bucket_name}/{key_name}"
            if judge(bucket, action, resource) == PermissionResult.DENIED:
                raise BucketAccessDeniedError(bucket=bucket_name)
    return _original_key_response(self, request, full_url)


s3_responses.S3Response._key_response = _key_response


def _listing(original, action):
    def wrapped(self):
        bucket = self.backend.buckets.get(self.bucket_name)
        if bucket is not None:
            resource = f"arn:{bucket.partition}:s3:::{self.bucket_name}"
            if judge(bucket, action, resource) == PermissionResult.DENIED:
                raise BucketAccessDeniedError(bucket=self.bucket_name)
        return original(self)
    return wrapped


# ListObjects / ListObjectsV2 are s3:ListBucket, ListObjectVersions is s3:ListBucketVersions
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html).
s3_responses.S3Response.list_objects = _listing(s3_responses.S3Response.list_objects, "s3:ListBucket")
s3_responses.S3Response.list_objects_v2 = _listing(s3_responses.S3Response.list_objects_v2, "s3:ListBucket")
s3_responses.S3Response.list_object_versions = _listing(
    s3_responses.S3Response.list_object_versions, "s3:ListBucketVersions")


# ---- the servers: moto's port, and the gateway endpoint's ------------------------------------

_original_run_simple = moto_server.run_simple


def _run_simple(host, port, app, **kwargs):
    if _GATEWAY_PORT:
        from werkzeug.serving import make_server

        gateway = make_server(host, int(_GATEWAY_PORT), _Context(app, True), threaded=True,
                              request_handler=kwargs.get("request_handler"))
        threading.Thread(target=gateway.serve_forever, name="s3-gateway-endpoint",
                         daemon=True).start()
        _log(f"the S3 gateway endpoint serves on {host}:{_GATEWAY_PORT}")
    return _original_run_simple(host, port, _Context(app, False), **kwargs)


moto_server.run_simple = _run_simple
print("ferry-testkit: moto patched: bucket policies are evaluated with their Conditions "
      f"(aws:SecureTransport={'true' if _SECURE else 'false'}; S3 gateway endpoint port "
      f"{_GATEWAY_PORT or 'none'})", flush=True)
