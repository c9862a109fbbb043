# The backup bucket's Condition-bearing policy (apply.py) is evaluated, and stored unchanged:
# the operator's write-once put from outside the VPC is refused (not through the endpoint, not
# the jump-box role), as on AWS; the policy reads back as written (so `ferry infra plan` sees no
# drift). The jump box's own put through the endpoint is the gate's, later in the test.
# argv: BUCKET. Prints JSON.
import json, sys
import boto3
from botocore.exceptions import ClientError

bucket = sys.argv[1]
s3 = boto3.client('s3')
out = {}
try:
    s3.put_object(Bucket=bucket, Key='probe/if-none-match', Body=b'first', IfNoneMatch='*')
    out['operator_put'] = 'ok'
except ClientError as e:
    out['operator_put'] = e.response['Error']['Code']
policy = json.loads(s3.get_bucket_policy(Bucket=bucket)['Policy'])
out['conditions'] = sum(1 for st in policy['Statement'] if 'Condition' in st)
print(json.dumps(out))
