# Invoke a function the SDK-standard way (AWS_ENDPOINT_URL_LAMBDA from DIR/env).
# argv: FUNCTION PAYLOAD_JSON. Prints {"status", "error", "payload"}.
import json, sys
import boto3
r = boto3.client('lambda').invoke(FunctionName=sys.argv[1], Payload=sys.argv[2].encode())
print(json.dumps({'status': r['StatusCode'], 'error': r.get('FunctionError'),
                  'payload': json.loads(r['Payload'].read() or b'null')}))
