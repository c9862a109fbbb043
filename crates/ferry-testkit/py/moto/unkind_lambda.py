# Lambda deployment-package limits (imported by launcher.py). Knob-free: AWS's numbers are fixed.
#
# AWS: https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
#   "Deployment package (.zip file archive) size: 50 MB (zipped, when uploaded through the Lambda
#   API or SDKs). Upload larger files with Amazon S3. 250 MB: the maximum size of the contents of
#   a deployment package, including layers and custom runtimes (unzipped)."
# The byte values are the account settings Lambda reports (GetAccountSettings, AccountLimit:
# https://docs.aws.amazon.com/lambda/latest/api/API_AccountLimit.html): CodeSizeZipped 52428800
# (50 MiB), CodeSizeUnzipped 262144000 (250 MiB). What Lambda answers when they are exceeded:
#   - a direct upload (Code.ZipFile, base64 in the JSON body) whose request is too large:
#     HTTP 413 RequestEntityTooLargeException "Request must be smaller than 69905067 bytes for
#     the CreateFunction operation" (69905067 ~ 50 MiB in base64; the same for
#     UpdateFunctionCode);
#   - a package (direct or from S3) whose contents are too large unzipped: HTTP 400
#     InvalidParameterValueException "Unzipped size must be smaller than 262144000 bytes".
#
# moto 5.2.5 accepts packages of any size. This patch refuses them as Lambda does:
#   - LambdaResponse.create_function / update_function_code: the request-size check;
#   - LambdaFunction._set_function_code (the one place moto takes code in, for CreateFunction
#     and UpdateFunctionCode, ZipFile or S3Bucket/S3Key): the unzipped-size check, the sum of
#     the zip entries' uncompressed sizes, before moto records anything.
# Not reproduced: layers count toward the 250 MiB on AWS (Ferry uses none); a package that is not
# a zip is left to moto (which accepts it).
import base64
import io
import zipfile

from moto.awslambda import models as lambda_models
from moto.awslambda import responses as lambda_responses
from moto.awslambda.exceptions import LambdaClientError
from moto.s3.models import s3_backends

# Request-size limit of a direct upload, as Lambda states it in its error message.
REQUEST_LIMIT = 69905067
# CodeSizeUnzipped.
UNZIPPED_LIMIT = 262144000


class RequestEntityTooLarge(LambdaClientError):
    code = 413

    def __init__(self, operation):
        super().__init__(
            "RequestEntityTooLargeException",
            f"Request must be smaller than {REQUEST_LIMIT} bytes for the {operation} operation",
        )


class UnzippedTooLarge(LambdaClientError):
    code = 400

    def __init__(self):
        super().__init__(
            "InvalidParameterValueException",
            f"Unzipped size must be smaller than {UNZIPPED_LIMIT} bytes",
        )


def _refuse_large_request(response, operation):
    body = response.body
    if body is not None and len(body) >= REQUEST_LIMIT:
        raise RequestEntityTooLarge(operation)


_create = lambda_responses.LambdaResponse.create_function
_update_code = lambda_responses.LambdaResponse.update_function_code


def create_function(self):
    _refuse_large_request(self, "CreateFunction")
    return _create(self)


def update_function_code(self):
    _refuse_large_request(self, "UpdateFunctionCode")
    return _update_code(self)


lambda_responses.LambdaResponse.create_function = create_function
lambda_responses.LambdaResponse.update_function_code = update_function_code


def _package_bytes(fn, spec):
    """The zip the request names, or None when moto itself will refuse or ignore it."""
    if "ZipFile" in spec:
        try:
            return base64.b64decode(spec["ZipFile"])
        except (ValueError, TypeError):
            return None
    if "S3Bucket" in spec and "S3Key" in spec:
        try:
            key = s3_backends[fn.account_id][fn.partition].get_object(
                spec["S3Bucket"], spec["S3Key"]
            )
        except Exception:  # moto's own code reports a missing bucket or key
            return None
        return key.value if key is not None else None
    return None


def unzipped_size(package):
    """Sum of the entries' uncompressed sizes, or None if it is not a zip."""
    try:
        with zipfile.ZipFile(io.BytesIO(package)) as z:
            return sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, ValueError):
        return None


_set_function_code = lambda_models.LambdaFunction._set_function_code


def set_function_code(self, updated_spec):
    package = _package_bytes(self, updated_spec)
    if package is not None:
        size = unzipped_size(package)
        if size is not None and size >= UNZIPPED_LIMIT:
            raise UnzippedTooLarge()
    return _set_function_code(self, updated_spec)


lambda_models.LambdaFunction._set_function_code = set_function_code
print(
    "ferry-testkit: moto patched: Lambda refuses packages over 50 MiB direct / 250 MiB unzipped",
    flush=True,
)
