# What moto holds: an instance's state, and whether a backup-bucket key exists.
# argv: INSTANCE_ID BUCKET KEY. Prints JSON.
import json, sys
import boto3
from botocore.exceptions import ClientError
iid, bucket, key = sys.argv[1:4]
i = boto3.client('ec2').describe_instances(InstanceIds=[iid])['Reservations'][0]['Instances'][0]
try:
    boto3.client('s3').head_object(Bucket=bucket, Key=key)
    exists = True
except ClientError:
    exists = False
print(json.dumps({'state': i['State']['Name'], 'object': exists}))
