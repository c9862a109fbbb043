# What `ferry infra apply` would create (a stand-in until it deploys the functions itself),
# made with boto3 against the local cloud through the SDK-standard variables of DIR/env only.
# Mirrors crates/ferry-lambda/tests/common/mod.rs, plus the two functions (provided.al2023,
# code from the state bucket's artifacts/bootstrap.zip), the six-hourly sweep rule, and bucket
# policies with Conditions like the ones ferry-cloud writes (TLS only, puts only through the
# endpoint and only with If-None-Match).
# argv: PREFIX BOOTSTRAP FERRY_GATE. Prints JSON.
import hashlib, io, json, sys, zipfile
import boto3

prefix, bootstrap, gate_path = sys.argv[1:4]
state, backup = prefix + '-state', prefix + '-backup'
s3 = boto3.client('s3'); ec2 = boto3.client('ec2'); iam = boto3.client('iam')
lam = boto3.client('lambda'); events = boto3.client('events')
for b in (state, backup):
    s3.create_bucket(Bucket=b)
gate = open(gate_path, 'rb').read()
s3.put_object(Bucket=state, Key='artifacts/ferry-gate', Body=gate)
buf = io.BytesIO()
with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED, compresslevel=1) as z:
    info = zipfile.ZipInfo('bootstrap')
    info.external_attr = 0o755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, open(bootstrap, 'rb').read())
s3.put_object(Bucket=state, Key='artifacts/bootstrap.zip', Body=buf.getvalue())

vpc = ec2.create_vpc(CidrBlock='10.0.0.0/16')['Vpc']['VpcId']
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock='10.0.1.0/24', AvailabilityZone='us-east-1a')['Subnet']['SubnetId']
# The endpoint on the route table of the jump box's subnet (the VPC's main table: the subnet has
# no explicit association), so that the box's S3 requests pass it and carry aws:SourceVpce.
main_rt = ec2.describe_route_tables(Filters=[{'Name': 'vpc-id', 'Values': [vpc]},
                                             {'Name': 'association.main', 'Values': ['true']}])['RouteTables'][0]['RouteTableId']
vpce = ec2.create_vpc_endpoint(VpcId=vpc, ServiceName='com.amazonaws.us-east-1.s3', VpcEndpointType='Gateway',
                               RouteTableIds=[main_rt])['VpcEndpoint']['VpcEndpointId']

def role(name, service):
    trust = {'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Principal': {'Service': service}, 'Action': 'sts:AssumeRole'}]}
    return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))['Role']['Arn']

jumpbox_role = role(prefix + '-jumpbox', 'ec2.amazonaws.com')
iam.create_instance_profile(InstanceProfileName=prefix + '-jumpbox')
iam.add_role_to_instance_profile(InstanceProfileName=prefix + '-jumpbox', RoleName=prefix + '-jumpbox')
lambda_role = role(prefix + '-lambda', 'lambda.amazonaws.com')

def deny_tls(b):
    return {'Sid': 'DenyInsecureTransport', 'Effect': 'Deny', 'Principal': '*', 'Action': 's3:*',
            'Resource': ['arn:aws:s3:::' + b, 'arn:aws:s3:::' + b + '/*'],
            'Condition': {'Bool': {'aws:SecureTransport': 'false'}}}
objects = 'arn:aws:s3:::' + backup + '/*'
s3.put_bucket_policy(Bucket=backup, Policy=json.dumps({'Version': '2012-10-17', 'Statement': [
    deny_tls(backup),
    {'Sid': 'DenyPutOutsideEndpoint', 'Effect': 'Deny', 'Principal': '*', 'Action': 's3:PutObject',
     'Resource': objects, 'Condition': {'StringNotEquals': {'aws:SourceVpce': vpce}}},
    {'Sid': 'DenyPutWithoutIfNoneMatch', 'Effect': 'Deny', 'Principal': '*', 'Action': 's3:PutObject',
     'Resource': objects, 'Condition': {'Null': {'s3:if-none-match': 'true'}}},
    {'Sid': 'DenyPutByAnyoneButJumpbox', 'Effect': 'Deny', 'Principal': '*', 'Action': 's3:PutObject',
     'Resource': objects, 'Condition': {'ArnNotEquals': {'aws:PrincipalArn': jumpbox_role}}}]}))
s3.put_bucket_policy(Bucket=state, Policy=json.dumps({'Version': '2012-10-17', 'Statement': [
    deny_tls(state),
    {'Sid': 'DenyJumpboxReadOutsideArtifacts', 'Effect': 'Deny', 'Principal': '*', 'Action': 's3:GetObject',
     'NotResource': 'arn:aws:s3:::' + state + '/artifacts/*',
     'Condition': {'ArnEquals': {'aws:PrincipalArn': jumpbox_role}}}]}))

env = {
    'FERRY_INSTALLATION': prefix,
    'FERRY_STATE_BUCKET': state,
    'FERRY_BACKUP_BUCKET': backup,
    'FERRY_SUBNET_ID': subnet,
    'FERRY_INSTANCE_PROFILE': prefix + '-jumpbox',
    'FERRY_ALLOWED_SSH_CIDRS': '203.0.113.0/24',
    'FERRY_GATE_SHA256': hashlib.sha256(gate).hexdigest(),
    'FERRY_MAX_SESSION_MINUTES': '60',
}
arns = {}
for kind in ('build', 'clean'):
    f = lam.create_function(FunctionName=prefix + '-' + kind, Runtime='provided.al2023', Handler='bootstrap',
                            Role=lambda_role, Code={'S3Bucket': state, 'S3Key': 'artifacts/bootstrap.zip'},
                            Timeout=120, MemorySize=256, Architectures=['x86_64'],
                            Environment={'Variables': env})
    arns[kind] = f['FunctionArn']
events.put_rule(Name=prefix + '-sweep', ScheduleExpression='rate(6 hours)', State='ENABLED')
events.put_targets(Rule=prefix + '-sweep', Targets=[{'Id': 'clean', 'Arn': arns['clean'], 'Input': '{"sweep": true}'}])
print(json.dumps({'state': state, 'backup': backup, 'vpc': vpc, 'subnet': subnet,
                  'code_sha256': hashlib.sha256(buf.getvalue()).hexdigest()}))
