# The test kit's moto: moto_server (pinned 5.2.5, project venv) with the patches that make it at
# least as unkind as AWS. Every test's moto and the local cloud's moto start through this file
# (ferry_testkit::Moto::start); `MotoOptions { plain: true, .. }` starts moto unpatched (only the
# tests that prove a gap still exists in moto itself).
#
# One module per behaviour, each with the AWS documentation page it reproduces in its header:
#   unkind_s3 — bucket policies evaluated with their Conditions (docs/LOCALCLOUD.md)
#   unkind_ec2 — EC2/IAM eventual consistency: new instances and security groups NotFound for a
#                while, a new instance profile refused by RunInstances for a while
#   idempotent_terminate — a second TerminateInstances of an instance succeeds, as on AWS
#   unkind_s3_checksum — S3 verifies Content-MD5 and x-amz-checksum-* of an upload (BadDigest)
#   atomic_conditional_put — of concurrent conditional puts of one name exactly one succeeds
#   unkind_lambda — Lambda deployment-package size limits (50 MiB direct, 250 MiB unzipped)
#   object_lock — Object Lock turned on (or its retention changed) on a bucket that holds
#                objects, and CopyObject into a bucket with default retention, as AWS allows
#   unkind_s3_faults — S3 answering 500 InternalError / 503 SlowDown, or slowly (rules from a
#                      file a test rewrites while moto runs)
#   lifecycle — S3 lifecycle expiration run (moto stores the rules, never runs them), on the
#               real clock or a later one a test sets
# kitlog is not a behaviour: the one log-line writer (and lock) the modules share.
# Knobs come from the environment (FERRY_UNKIND_*), set by MotoOptions::env; each module says
# its own and its default. The defaults are AWS-like: on — except unkind_s3_faults, off until
# a test writes rules (faults are not AWS's steady state).
#
# argv: the moto_server arguments (-H 127.0.0.1 -p PORT).
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import unkind_lambda  # noqa: E402,F401
import unkind_s3  # noqa: E402,F401
import unkind_s3_checksum  # noqa: E402,F401
import atomic_conditional_put  # noqa: E402,F401
import unkind_ec2  # noqa: E402,F401
import idempotent_terminate  # noqa: E402,F401
import object_lock  # noqa: E402,F401
import unkind_s3_faults  # noqa: E402,F401
import lifecycle  # noqa: E402,F401

from moto.server import main  # noqa: E402

main(sys.argv[1:])
