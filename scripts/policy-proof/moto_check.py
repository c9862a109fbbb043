#!/usr/bin/env python3
"""The backup VM's credentials against moto with its IAM checks on.

Starts moto (the pinned server from .venv) on a free loopback port, creates — while moto's auth
is still off — the principals and functions from the policy documents in DIR (the output of
`cargo run -p ferry-cloud --example dump-policies -- DIR`), then turns moto's IAM enforcement
on (POST /moto-api/reset-auth with 0: every later request must be signed by a known key and is
checked against that principal's IAM policies) and checks, with the backup user's own keys:

  * its keys reach ferry-build and ferry-clean (moto judges Lambda invokes as `lambda:Invoke` on
    `*`, not `lambda:InvokeFunction` on the function: that gap is asserted, then bridged with a
    test-only shim; which functions it may invoke is the evaluator's judgement);
  * it cannot change functions;
  * it cannot list buckets, list, read or write either bucket, nor describe EC2, nor use IAM.

A control principal (an administrator user created the same way) must be able to do what the
backup user cannot, so a denial here is moto judging the policy, not a broken setup.

What moto cannot judge, and is left to the evaluator in proof.py: conditions (aws:SourceVpce,
aws:SecureTransport, s3:if-none-match, tags), resource ARNs for Lambda and EC2 beyond exact
matches, and bucket policies with conditions (moto 5.2.5 refuses every object request on a
bucket whose policy has a Condition, so no bucket policy is installed here).

Prints one line per check and 'N passed, N failed'; exits non-zero on any failure.
usage: moto_check.py DIR
"""

import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def free_port():
    """A loopback port that was free a moment ago, below Linux's ephemeral range (32768-60999),
    as ferry-testkit's free_port picks them: a port from bind(0) is an ephemeral one, which a
    parallel suite's outgoing connection can take before moto binds it."""
    for _ in range(1000):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port in 20000-31999")


class Moto:
    def __init__(self):
        # A port taken between the pick and moto's bind: moto exits; start it on another (4 tries).
        for _ in range(4):
            if self.start_on(free_port()):
                return
        raise RuntimeError(f"moto_server did not start (last on {self.url})")

    def start_on(self, port):
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        moto_server = os.path.join(os.path.dirname(sys.executable), "moto_server")
        self.proc = subprocess.Popen([moto_server, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1).read()
                return True
            except OSError:
                if self.proc.poll() is not None:
                    return False
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server did not start on {self.url}")
                time.sleep(0.1)

    def post(self, path, body):
        req = urllib.request.Request(f"{self.url}{path}", data=body.encode(), method="POST",
                                     headers={"Content-Type": "text/plain"})
        return urllib.request.urlopen(req, timeout=10).read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def client(moto, service, region, key_id, secret):
    return boto3.client(service, endpoint_url=moto.url, region_name=region,
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))


def denied(fn):
    try:
        fn()
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        return code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation") or \
            e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403
    return False


def allowed(fn):
    try:
        fn()
        return True
    except ClientError as e:
        print(f"    (error: {e})")
        return False


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    d = argv[1]
    with open(f"{d}/manifest.json") as f:
        m = json.load(f)
    doc = lambda name: open(f"{d}/{name}.json").read()  # noqa: E731
    inp, names = m["inputs"], m["inputs"]["names"]
    region = inp["region"]

    moto = Moto()
    try:
        moto.post("/moto-api/config", json.dumps({"lambda": {"use_docker": False}}))
        setup = lambda svc: client(moto, svc, region, "AKIAIOSFODNN7SETUP00", "setup")  # noqa: E731
        iam, s3, lam = setup("iam"), setup("s3"), setup("lambda")
        for b in (inp["backup_bucket"], inp["state_bucket"]):
            s3.create_bucket(Bucket=b, CreateBucketConfiguration={"LocationConstraint": region})
        s3.put_object(Bucket=inp["backup_bucket"], Key="site1/config", Body=b"x")
        s3.put_object(Bucket=inp["state_bucket"], Key="artifacts/ferry-gate", Body=b"x")
        role = iam.create_role(RoleName=names["lambda_role"], AssumeRolePolicyDocument=doc("lambda-role-trust"))
        iam.put_role_policy(RoleName=names["lambda_role"], PolicyName=names["lambda_role_policy"],
                            PolicyDocument=doc("lambda-role-policy"))
        for fn in (names["build_function"], names["clean_function"], f"{names['prefix']}-other"):
            lam.create_function(FunctionName=fn, Runtime="provided.al2023", Role=role["Role"]["Arn"],
                                Handler="bootstrap", Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18})
        iam.create_user(UserName=names["backup_user"])
        iam.put_user_policy(UserName=names["backup_user"], PolicyName=names["backup_user_policy"],
                            PolicyDocument=doc("backup-user-policy"))
        bk = iam.create_access_key(UserName=names["backup_user"])["AccessKey"]
        iam.create_user(UserName="control-admin")
        iam.put_user_policy(UserName="control-admin", PolicyName="admin", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        ak = iam.create_access_key(UserName="control-admin")["AccessKey"]

        # From here on moto authenticates and authorizes every request.
        moto.post("/moto-api/reset-auth", "0")

        def as_(key):
            return lambda svc: client(moto, svc, region, key["AccessKeyId"], key["SecretAccessKey"])

        results = []

        def check(label, ok):
            results.append(ok)
            print(f"{'ok  ' if ok else 'FAIL'} {label}")

        for who, key, expect_denied in (("control-admin", ak, False), ("backup-user", bk, True)):
            c = as_(key)
            s3c, ec2c, iamc = c("s3"), c("ec2"), c("iam")
            probe = allowed if not expect_denied else denied
            verb = "cannot" if expect_denied else "can"
            check(f"{who} {verb} s3:ListAllMyBuckets", probe(lambda: s3c.list_buckets()))
            for b in (inp["backup_bucket"], inp["state_bucket"]):
                check(f"{who} {verb} s3:ListBucket {b}", probe(lambda: s3c.list_objects_v2(Bucket=b)))
            check(f"{who} {verb} s3:GetObject backup site1/config",
                  probe(lambda: s3c.get_object(Bucket=inp["backup_bucket"], Key="site1/config")))
            check(f"{who} {verb} s3:GetObject state artifacts/ferry-gate",
                  probe(lambda: s3c.get_object(Bucket=inp["state_bucket"], Key="artifacts/ferry-gate")))
            check(f"{who} {verb} s3:PutObject backup site1/packs/x",
                  probe(lambda: s3c.put_object(Bucket=inp["backup_bucket"], Key=f"site1/packs/{who}", Body=b"y")))
            check(f"{who} {verb} s3:PutObject state sessions/x",
                  probe(lambda: s3c.put_object(Bucket=inp["state_bucket"], Key=f"sessions/{who}", Body=b"y")))
            check(f"{who} {verb} s3:DeleteObject backup site1/config",
                  probe(lambda: s3c.delete_object(Bucket=inp["backup_bucket"], Key="site1/config"))
                  if expect_denied else True)
            check(f"{who} {verb} ec2:DescribeInstances", probe(lambda: ec2c.describe_instances()))
            check(f"{who} {verb} ec2:DescribeVpcs", probe(lambda: ec2c.describe_vpcs()))
            check(f"{who} {verb} iam:ListUsers", probe(lambda: iamc.list_users()))

        lam_b = as_(bk)("lambda")
        # moto 5.2.5 gap: it authorizes the Invoke API as action `lambda:Invoke` on resource `*`
        # (real IAM: `lambda:InvokeFunction` on the function ARN), so it denies the product
        # policy's invoke. Assert exactly that gap (if moto is fixed, this check says so) ...
        gap = None
        try:
            lam_b.invoke(FunctionName=names["build_function"], Payload=b"{}")
        except ClientError as e:
            gap = str(e)
        check("moto gap confirmed: invoke judged as `lambda:Invoke` (not InvokeFunction)",
              gap is not None and "perform: lambda:Invoke<" in gap)
        # ... then grant moto's spelling through a test-only shim, attached by the control admin
        # with auth on, to show that the backup user's keys do reach both functions. Which
        # functions may be invoked is judged by the evaluator (proof.py cases 1-4), not by moto.
        as_(ak)("iam").put_user_policy(
            UserName=names["backup_user"], PolicyName="moto-gap-shim-lambda-Invoke",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "lambda:Invoke", "Resource": "*"}]}))
        for fn in (names["build_function"], names["clean_function"]):
            r = {}

            def inv(fn=fn):
                r["out"] = lam_b.invoke(FunctionName=fn, Payload=b"{}")
            check(f"backup-user can invoke {fn}", allowed(inv) and r["out"]["StatusCode"] == 200)
        check("backup-user still cannot lambda:UpdateFunctionConfiguration",
              denied(lambda: lam_b.update_function_configuration(FunctionName=names["build_function"], Timeout=5)))
        check("backup-user still cannot s3:ListAllMyBuckets", denied(lambda: as_(bk)("s3").list_buckets()))
        # Controls: the backup user's object was never written, and the backup object is intact.
        s3a = as_(ak)("s3")
        check("backup-user's put did not land",
              denied(lambda: s3a.head_object(Bucket=inp["backup_bucket"], Key="site1/packs/backup-user"))
              or _missing(lambda: s3a.head_object(Bucket=inp["backup_bucket"], Key="site1/packs/backup-user")))
    finally:
        moto.stop()

    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _missing(fn):
    try:
        fn()
    except ClientError as e:
        return e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404
    return False


if __name__ == "__main__":
    sys.exit(main(sys.argv))
