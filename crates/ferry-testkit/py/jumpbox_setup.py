# Test-kit setup against a moto server (never used by the product): create the backup
# bucket, an admin IAM user, and the jump-box role; turn on moto's IAM checks; assume the
# role with the admin's keys. Prints one JSON object with both sets of credentials.
# argv: BUCKET MOTO_PORT. Endpoint and dummy credentials come from the environment.
import json, sys, urllib.request
import boto3

bucket, port = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3")
iam = boto3.client("iam")
s3.create_bucket(Bucket=bucket)
iam.create_user(UserName="ferry-admin")
iam.put_user_policy(UserName="ferry-admin", PolicyName="admin", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="ferry-admin")["AccessKey"]
admin_arn = iam.get_user(UserName="ferry-admin")["User"]["Arn"]
# moto 5.2.5 does not treat the account root principal as delegating to its users
# (AssumeRole is denied), so the trust policy names the admin user itself.
role = iam.create_role(RoleName="ferry-jumpbox", AssumeRolePolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": admin_arn},
                   "Action": "sts:AssumeRole"}]}))["Role"]
# The jump-box role: put and list on the backup bucket, nothing else (no get, no delete).
iam.put_role_policy(RoleName="ferry-jumpbox", PolicyName="gate", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"}]}))
# moto 5.2.5: IAM checks on from the next request on.
req = urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset-auth", data=b"0", method="POST",
                             headers={"Content-Type": "text/plain"})
urllib.request.urlopen(req, timeout=10).read()
sts = boto3.client("sts", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
c = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="jumpbox")["Credentials"]
print(json.dumps({
    "admin": {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]},
    "jumpbox": {k: c[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")},
    "role_arn": role["Arn"]}))
