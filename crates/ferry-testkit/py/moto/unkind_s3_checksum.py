# S3 checks the integrity values a client sends with an upload (imported by launcher.py).
#
# AWS: "When you upload an object, you can specify a checksum … Amazon S3 calculates the
# checksum on the data it receives and compares it with the value you provided; if they do not
# match, the request fails" with 400 BadDigest ("The SHA256 you specified did not match the
# calculated checksum."); a Content-MD5 that does not match gets 400 BadDigest ("The Content-MD5
# you specified did not match what we received."), one that is not a base64 MD5 400
# InvalidDigest.
#   https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html
#   https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html (Content-MD5, x-amz-checksum-*)
#   https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html (BadDigest, InvalidDigest)
# moto 5.2.5 stores whatever it gets and echoes the value back ("TODO: AWS computes the provided
# value and verifies it's the same"), so a wrong digest — a gate that hashed its spool wrongly,
# a body cut short — would pass every local test and fail every real upload. The kit verifies,
# before anything is stored, for PutObject and UploadPart: Content-MD5, and x-amz-checksum-sha256
# / -sha1 / -crc32, whether sent as a header or as an aws-chunked trailer (x-amz-trailer).
# Not verified (no implementation in the venv): CRC32C and CRC64NVME values.
import base64
import binascii
import hashlib
import re

from moto.s3.exceptions import S3ClientError
from moto.s3.responses import S3Response


class BadDigest(S3ClientError):
    code = "BadDigest"


class InvalidDigest(S3ClientError):
    code = "InvalidDigest"


_DIGESTS = {
    "sha256": lambda b: hashlib.sha256(b).digest(),
    "sha1": lambda b: hashlib.sha1(b).digest(),
    "crc32": lambda b: binascii.crc32(b).to_bytes(4, "big"),
}


def _provided(resp):
    """[(algorithm, base64 value)] the request carries, in headers or its trailer."""
    out = []
    for alg in _DIGESTS:
        v = resp.headers.get("x-amz-checksum-" + alg)
        if v:
            out.append((alg, v.strip()))
    trailer = (resp.headers.get("x-amz-trailer") or "").strip().lower()
    if trailer.startswith("x-amz-checksum-"):
        alg = trailer[len("x-amz-checksum-"):]
        raw = resp.raw_body if isinstance(resp.raw_body, bytes) else b""
        m = re.search(rb"x-amz-checksum-" + re.escape(alg.encode()) + rb"\s*:\s*([A-Za-z0-9+/=]+)", raw)
        if alg in _DIGESTS and m and not any(a == alg for a, _ in out):
            out.append((alg, m.group(1).decode()))
    return out


def _verify(resp):
    body = resp.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    md5 = resp.headers.get("Content-MD5")
    if md5:
        try:
            want = base64.b64decode(md5.strip(), validate=True)
        except (binascii.Error, ValueError):
            want = b""
        if len(want) != 16:
            raise InvalidDigest("The Content-MD5 you specified was invalid.")
        if hashlib.md5(body).digest() != want:
            raise BadDigest("The Content-MD5 you specified did not match what we received.")
    for alg, value in _provided(resp):
        if base64.b64encode(_DIGESTS[alg](body)).decode() != value:
            raise BadDigest("The %s you specified did not match the calculated checksum." % alg.upper())


_put_object = S3Response.put_object
_upload_part = S3Response.upload_part


def put_object(self):
    _verify(self)
    return _put_object(self)


def upload_part(self):
    _verify(self)
    return _upload_part(self)


S3Response.put_object = put_object
S3Response.upload_part = upload_part
