# UpdateFunctionConfiguration through the Lambda endpoint of DIR/env (passed through to moto):
# set one environment variable. argv: FUNCTION NAME VALUE. Prints the function's new variables.
import json, sys
import boto3
fn, k, v = sys.argv[1:4]
lam = boto3.client('lambda')
env = lam.get_function_configuration(FunctionName=fn)['Environment']['Variables']
env[k] = v
lam.update_function_configuration(FunctionName=fn, Environment={'Variables': env})
print(json.dumps(lam.get_function_configuration(FunctionName=fn)['Environment']['Variables']))
