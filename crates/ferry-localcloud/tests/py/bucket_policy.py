# The moto bucket-policy gap, bridged: on the backup bucket (whose policy carries Conditions like
# ferry-cloud's) a write-once PutObject works, a second one gets 412, and the policy reads back
# unchanged (so `ferry infra plan` sees no drift). argv: BUCKET. Prints JSON.
import json, sys
import boto3
from botocore.exceptions import ClientError

bucket = sys.argv[1]
s3 = boto3.client('s3')
out = {}
s3.put_object(Bucket=bucket, Key='probe/if-none-match', Body=b'first', IfNoneMatch='*')
out['first_put'] = 'ok'
try:
    s3.put_object(Bucket=bucket, Key='probe/if-none-match', Body=b'second', IfNoneMatch='*')
    out['second_put'] = 'ok'
except ClientError as e:
    out['second_put'] = e.response['Error']['Code']
out['content'] = s3.get_object(Bucket=bucket, Key='probe/if-none-match')['Body'].read().decode()
policy = json.loads(s3.get_bucket_policy(Bucket=bucket)['Policy'])
out['conditions'] = sum(1 for st in policy['Statement'] if 'Condition' in st)
s3.delete_object(Bucket=bucket, Key='probe/if-none-match')
print(json.dumps(out))
