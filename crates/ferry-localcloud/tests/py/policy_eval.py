# The test kit's moto evaluates Ferry's bucket and endpoint policies with their Conditions
# (tests/localcloud.rs, kits_moto_evaluates_ferrys_policy_conditions). Two phases, run against
# one moto:
#   setup                   -> a VPC with two subnets: "in" (its route table has the S3 gateway
#                              endpoint) and "out" (its table has none: the seed's defect); one
#                              instance in each; the jump-box and Lambda roles; an operator role
#                              with an IAM Identity Center path; another administrator (a user);
#                              the two buckets. Prints the ids as JSON.
#   check IDS POLICIES      -> installs the policies (JSON: backup, state, endpoint, and
#                              backup_pathless: the backup policy naming the operator without its
#                              path), runs every case, prints {case: "ok" | error code}.
# The principals' keys come from STS AssumeRole (role sessions named after the instance, as EC2
# names them) and IAM CreateAccessKey; moto's IAM checks stay off, as in the local cloud.
import json
import os
import sys

import boto3
from botocore.exceptions import ClientError

REGION = os.environ.get("AWS_REGION", "us-east-1")
BACKUP, STATE = sys.argv[2:4] if sys.argv[1] == "setup" else (None, None)
ec2 = boto3.client("ec2")
iam = boto3.client("iam")
sts = boto3.client("sts")
s3 = boto3.client("s3")
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def setup():
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ids = {"vpc": vpc, "backup": BACKUP, "state": STATE}
    tables = {}
    for side, cidr in (("in", "10.0.1.0/24"), ("out", "10.0.2.0/24")):
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"]
        rt = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2.associate_route_table(RouteTableId=rt, SubnetId=subnet)
        tables[side] = rt
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        ids["instance_" + side] = ec2.run_instances(
            ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]["InstanceId"]
    ids["vpce"] = ec2.create_vpc_endpoint(
        VpcId=vpc, ServiceName="com.amazonaws.%s.s3" % REGION, VpcEndpointType="Gateway",
        RouteTableIds=[tables["in"]])["VpcEndpoint"]["VpcEndpointId"]
    for name in ("ferry-jumpbox", "ferry-lambda"):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)
    ids["operator"] = iam.create_role(
        RoleName="AWSReservedSSO_AdministratorAccess_0123456789abcdef",
        Path="/aws-reserved/sso.amazonaws.com/eu-west-1/",
        AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    iam.create_user(UserName="other-admin")
    for b in (BACKUP, STATE):
        s3.create_bucket(Bucket=b)
    # Objects to read, written before any policy exists.
    s3.put_object(Bucket=BACKUP, Key="site1/config", Body=b"config")
    s3.put_object(Bucket=STATE, Key="artifacts/ferry-gate", Body=b"gate")
    s3.put_object(Bucket=STATE, Key="sessions/s-1.json", Body=b"{}")
    print(json.dumps(ids))


def client(creds, through_endpoint=False):
    kw = {}
    if through_endpoint:
        kw["endpoint_url"] = os.environ["FERRY_TEST_S3_GATEWAY"]
    return boto3.client("s3", aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds.get("SessionToken"), **kw)


def role(name, session):
    arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    return sts.assume_role(RoleArn=arn, RoleSessionName=session)["Credentials"]


def check(ids, policies):
    s3.put_bucket_policy(Bucket=ids["backup"], Policy=json.dumps(policies["backup"]))
    s3.put_bucket_policy(Bucket=ids["state"], Policy=json.dumps(policies["state"]))
    ec2.modify_vpc_endpoint(VpcEndpointId=ids["vpce"], PolicyDocument=json.dumps(policies["endpoint"]))
    jb_in = role("ferry-jumpbox", ids["instance_in"])
    jb_out = role("ferry-jumpbox", ids["instance_out"])
    lam_in = role("ferry-lambda", ids["instance_in"])
    operator = role("AWSReservedSSO_AdministratorAccess_0123456789abcdef", "alice@example.com")
    other = iam.create_access_key(UserName="other-admin")["AccessKey"]
    B, S = ids["backup"], ids["state"]
    cases = {
        # The jump box, from the subnet whose route table has the endpoint.
        "jumpbox put with If-None-Match through the endpoint":
            lambda: client(jb_in, True).put_object(Bucket=B, Key="site1/packs/a", Body=b"a", IfNoneMatch="*"),
        "jumpbox second put of that key":
            lambda: client(jb_in, True).put_object(Bucket=B, Key="site1/packs/a", Body=b"b", IfNoneMatch="*"),
        "jumpbox put without If-None-Match through the endpoint":
            lambda: client(jb_in, True).put_object(Bucket=B, Key="site1/packs/b", Body=b"b"),
        "jumpbox put around the endpoint":
            lambda: client(jb_in).put_object(Bucket=B, Key="site1/packs/c", Body=b"c", IfNoneMatch="*"),
        "jumpbox put from a subnet without the endpoint":
            lambda: client(jb_out, True).put_object(Bucket=B, Key="site1/packs/d", Body=b"d", IfNoneMatch="*"),
        "jumpbox list through the endpoint":
            lambda: client(jb_in, True).list_objects_v2(Bucket=B),
        "jumpbox read of a backup":
            lambda: client(jb_in).get_object(Bucket=B, Key="site1/config"),
        "jumpbox head of a backup":
            lambda: client(jb_in).head_object(Bucket=B, Key="site1/config"),
        "jumpbox delete of a backup through the endpoint":
            lambda: client(jb_in, True).delete_object(Bucket=B, Key="site1/config"),
        "jumpbox read of the gate artifact through the endpoint":
            lambda: client(jb_in, True).get_object(Bucket=S, Key="artifacts/ferry-gate"),
        "jumpbox read of session state (NotResource)":
            lambda: client(jb_in).get_object(Bucket=S, Key="sessions/s-1.json"),
        # The endpoint policy on its own: the Lambda role may read session state, but not
        # through the endpoint.
        "lambda role read of session state":
            lambda: client(lam_in).get_object(Bucket=S, Key="sessions/s-1.json"),
        "lambda role read of session state through the endpoint":
            lambda: client(lam_in, True).get_object(Bucket=S, Key="sessions/s-1.json"),
        # The operator: a role with a path, matched by its full ARN.
        "operator list": lambda: client(operator).list_objects_v2(Bucket=B),
        "operator read": lambda: client(operator).get_object(Bucket=B, Key="site1/config"),
        # Forget and prune write (records, repacked packs, indexes) from the operator's machine,
        # and move packs with CopyObject, which carries no If-None-Match.
        "operator put": lambda: client(operator).put_object(Bucket=B, Key="site1/packs/e", Body=b"e", IfNoneMatch="*"),
        "operator copy to trash/ (no If-None-Match)":
            lambda: client(operator).copy_object(Bucket=B, Key="site1/trash/e",
                                                 CopySource={"Bucket": B, "Key": "site1/packs/e"}),
        # Another administrator of the account.
        "other admin put": lambda: client(other).put_object(Bucket=B, Key="site1/packs/f", Body=b"f", IfNoneMatch="*"),
        "other admin list": lambda: client(other).list_objects_v2(Bucket=B),
        "other admin read": lambda: client(other).get_object(Bucket=B, Key="site1/config"),
        "other admin delete": lambda: client(other).delete_object(Bucket=B, Key="site1/config"),
        "other admin delete via DeleteObjects":
            lambda: check_batch(client(other).delete_objects(Bucket=B, Delete={"Objects": [{"Key": "site1/config"}]})),
    }
    out = {}
    for name, call in cases.items():
        try:
            call()
            out[name] = "ok"
        except ClientError as e:
            out[name] = e.response["Error"]["Code"]
    # The same backup policy naming the operator's role without its path: the operator is out.
    s3.put_bucket_policy(Bucket=B, Policy=json.dumps(policies["backup_pathless"]))
    try:
        client(operator).get_object(Bucket=B, Key="site1/config")
        out["operator read under a policy naming the role without its path"] = "ok"
    except ClientError as e:
        out["operator read under a policy naming the role without its path"] = e.response["Error"]["Code"]
    print(json.dumps(out))


def check_batch(answer):
    errors = answer.get("Errors", [])
    if errors:
        raise ClientError({"Error": {"Code": errors[0]["Code"], "Message": errors[0]["Message"]}},
                          "DeleteObjects")


if sys.argv[1] == "setup":
    setup()
elif sys.argv[1] == "check":
    check(json.loads(sys.argv[2]), json.loads(sys.argv[3]))
else:
    sys.exit("usage: policy_eval.py setup BACKUP STATE | check IDS POLICIES")
