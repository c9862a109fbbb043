# Replace the state bucket's artifacts/bootstrap.zip by other code (keeping the original aside),
# or put the original back. argv: BUCKET other|restore.
import io, sys, zipfile
import boto3
bucket, mode = sys.argv[1:3]
s3 = boto3.client('s3')
key = 'artifacts/bootstrap.zip'
if mode == 'other':
    s3.copy_object(Bucket=bucket, Key=key + '.orig', CopySource={'Bucket': bucket, 'Key': key})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as z:
        z.writestr('bootstrap', '#!/bin/sh\necho not the deployed code\n')
    s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
else:
    s3.copy_object(Bucket=bucket, Key=key, CopySource={'Bucket': bucket, 'Key': key + '.orig'})
    s3.delete_object(Bucket=bucket, Key=key + '.orig')
print('{}')
