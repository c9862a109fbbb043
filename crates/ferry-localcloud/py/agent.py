# ferry-localcloud's AWS-side bookkeeping against moto (never used by the product).
#
# One long-lived process (the venv's python, boto3, moto's endpoint and operator credentials
# from the environment) so that the daemon's poll loop does not start a python per poll.
# Protocol: one JSON request per line on stdin, one JSON answer per line on stdout:
# {"op": ..., ...} -> {"ok": RESULT} or {"error": "text"}. Never prints credentials except in
# the answer to "assume_role", which the daemon passes to a child's environment only.
import base64
import hashlib
import io
import json
import os
import sys
import zipfile

import boto3

s3 = boto3.client("s3")
ec2 = boto3.client("ec2")
iam = boto3.client("iam")
sts = boto3.client("sts")
lam = boto3.client("lambda")
events = boto3.client("events")
# Lambda copies a function's code from S3 when the function is created or its code updated, as
# the caller of CreateFunction/UpdateFunctionCode, who must be allowed to read it: the operator.
# The state bucket's policy lets only the Lambda role, the operator and the jump box read it, so
# the local cloud's stand-in for that copy reads it with the operator's keys once they exist.
code_s3 = s3


def functions(req):
    out = []
    for page in lam.get_paginator("list_functions").paginate():
        for f in page["Functions"]:
            name = f["FunctionName"]
            if not (name.endswith("-build") or name.endswith("-clean")):
                continue
            out.append({
                "name": name,
                "runtime": f.get("Runtime", ""),
                "handler": f.get("Handler", ""),
                "role": f.get("Role", ""),
                "timeout": f.get("Timeout", 3),
                "code_sha256": f.get("CodeSha256", ""),
                "env": (f.get("Environment") or {}).get("Variables") or {},
            })
    return out


def fetch_code(req):
    """Download the deployed zip, check it is the code the function reports, extract bootstrap."""
    body = code_s3.get_object(Bucket=req["bucket"], Key=req["key"])["Body"].read()
    digest = hashlib.sha256(body).digest()
    b64 = base64.b64encode(digest).decode()
    if b64 != req["code_sha256"]:
        raise ValueError(
            "s3://%s/%s has CodeSha256 %s, but the function reports %s (not the deployed code)"
            % (req["bucket"], req["key"], b64, req["code_sha256"]))
    dest = os.path.join(req["dest"], digest.hex())
    os.makedirs(dest, exist_ok=True)
    path = os.path.join(dest, "bootstrap")
    if os.path.exists(path):  # extracted from this very zip before (the directory is its hash)
        return {"path": path, "sha256_hex": digest.hex()}
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        if "bootstrap" not in z.namelist():
            raise ValueError("s3://%s/%s has no file named bootstrap at its top" % (req["bucket"], req["key"]))
        data = z.read("bootstrap")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return {"path": path, "sha256_hex": digest.hex()}


def assume_role(req):
    c = sts.assume_role(RoleArn=req["role_arn"], RoleSessionName=req["session"])["Credentials"]
    return {k: c[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}


def instances(req):
    out = []
    flt = [{"Name": "tag-key", "Values": ["ferry:installation"]}]
    for page in ec2.get_paginator("describe_instances").paginate(Filters=flt):
        for r in page["Reservations"]:
            for i in r["Instances"]:
                tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
                out.append({
                    "id": i["InstanceId"],
                    "state": i["State"]["Name"],
                    "public_ip": i.get("PublicIpAddress"),
                    "profile_arn": (i.get("IamInstanceProfile") or {}).get("Arn"),
                    "installation": tags.get("ferry:installation", ""),
                    "session": tags.get("ferry:session", ""),
                })
    return out


def instance_role(req):
    name = req["profile_arn"].rsplit("/", 1)[-1]
    roles = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Roles"]
    if not roles:
        raise ValueError("instance profile %s has no role" % name)
    return roles[0]["Arn"]


def power_off(req):
    """The box powered itself off: what EC2 does next depends on the shutdown behaviour."""
    iid = req["instance"]
    a = ec2.describe_instance_attribute(InstanceId=iid, Attribute="instanceInitiatedShutdownBehavior")
    behaviour = (a.get("InstanceInitiatedShutdownBehavior") or {}).get("Value") or "stop"
    if behaviour == "terminate":
        ec2.terminate_instances(InstanceIds=[iid])
        return "terminated"
    ec2.stop_instances(InstanceIds=[iid])
    return "stopped"


def terminate(req):
    ec2.terminate_instances(InstanceIds=[req["instance"]])
    return "terminated"


def rules(req):
    out = []
    for page in events.get_paginator("list_rules").paginate():
        for r in page["Rules"]:
            if not r.get("ScheduleExpression"):
                continue
            targets = events.list_targets_by_rule(Rule=r["Name"])["Targets"]
            out.append({
                "name": r["Name"],
                "schedule": r["ScheduleExpression"],
                "state": r.get("State", "ENABLED"),
                "targets": [{"arn": t["Arn"], "input": t.get("Input")} for t in targets],
            })
    return out


def operator(req):
    # An IAM user with an access key, as the operator of a real account would have: moto's
    # own "testing" keys identify as arn:aws:sts::…:user/moto, which is no IAM ARN, and
    # `ferry infra` puts the caller's ARN into the bucket policies.
    name = req["name"]
    try:
        iam.get_user(UserName=name)
    except iam.exceptions.NoSuchEntityException:
        iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="administrator", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
        iam.delete_access_key(UserName=name, AccessKeyId=k["AccessKeyId"])
    k = iam.create_access_key(UserName=name)["AccessKey"]
    global code_s3
    code_s3 = boto3.client("s3", aws_access_key_id=k["AccessKeyId"],
                           aws_secret_access_key=k["SecretAccessKey"])
    return {"id": k["AccessKeyId"], "secret": k["SecretAccessKey"]}


OPS = {f.__name__: f for f in (functions, fetch_code, assume_role, instances, instance_role,
                               power_off, terminate, rules, operator)}

for line in sys.stdin:
    try:
        req = json.loads(line)
        answer = {"ok": OPS[req["op"]](req)}
    except Exception as e:  # every failure goes back to the daemon, the loop goes on
        answer = {"error": "%s: %s" % (type(e).__name__, e)}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
