# Bucket policies (imported by launcher.py).
#
# moto 5.2.5 evaluates a bucket policy's statements with a Condition in a way that denies every
# object request: IAMPolicyStatement._check_conditions compares the condition against the request
# context, which moto never fills in for S3 (no aws:SecureTransport, aws:SourceVpce,
# aws:PrincipalArn, s3:if-none-match), so the condition "fails", and a statement whose condition
# fails answers DENIED whatever its Effect. `ferry infra apply` writes such statements on both
# buckets (TLS only, puts only through the VPC endpoint, puts only with If-None-Match, per-role
# reads), so with them in place no object could be read or written in the local cloud.
#
# The patch replaces FakeBucket.get_permission (moto/s3/models.py) — the only place moto
# consults a bucket policy for object requests — with the same evaluation over the policy's
# statements WITHOUT a Condition. Statements without a Condition are evaluated exactly as
# before. The policy document itself is stored and returned unchanged (GetBucketPolicy, so
# `ferry infra plan` shows no drift). What the conditional statements really do on AWS is
# proven by the policy evaluator (docs/SECURITY.md), not by the emulator.
import json

from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.s3 import models as s3_models

_original = s3_models.FakeBucket.get_permission


def get_permission_without_conditions(self, action, resource):
    if self.policy is None:
        return PermissionResult.NEUTRAL
    try:
        doc = json.loads(self.policy.decode())
    except ValueError:
        return _original(self, action, resource)
    statements = doc.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    kept = [s for s in statements if "Condition" not in s]
    if not kept:
        return PermissionResult.NEUTRAL
    doc["Statement"] = kept
    return IAMPolicy(json.dumps(doc)).is_action_permitted(action, resource)


s3_models.FakeBucket.get_permission = get_permission_without_conditions
print("ferry-testkit: moto patched: bucket-policy statements with a Condition are not evaluated", flush=True)
