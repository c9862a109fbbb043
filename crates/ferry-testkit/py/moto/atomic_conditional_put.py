# A conditional PutObject is atomic, as on AWS (imported by launcher.py).
#
# AWS: "If multiple conditional writes occur for the same object name, the first write operation
# to finish succeeds. Amazon S3 then fails subsequent writes with a 412 Precondition Failed
# response."
#   https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
# moto 5.2.5 checks `If-None-Match: *` (and `If-Match`) with a lookup, then stores the object,
# in two steps of a threaded server: two concurrent puts of one new name both pass the lookup and
# both answer 200 — the second silently replaces the first. On AWS exactly one wins. (Found by
# the storage conformance suite's "8 threads put one name" case against S3Storage.) The kit makes
# the check and the store one step: conditional puts hold one process-wide lock. Unconditional
# puts are left concurrent. Not reproduced: the 409 ConditionalRequestConflict AWS may answer when
# a DeleteObject of the key succeeds while a conditional write is in flight (Ferry deletes no
# backup object while a gate writes).
import threading

from moto.s3.responses import S3Response

_lock = threading.Lock()
_put_object = S3Response.put_object


def put_object(self):
    if self.headers.get("If-None-Match") or self.headers.get("If-Match"):
        with _lock:
            return _put_object(self)
    return _put_object(self)


S3Response.put_object = put_object
