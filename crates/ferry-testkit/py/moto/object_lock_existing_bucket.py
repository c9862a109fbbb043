# Object Lock on an existing, non-empty bucket (imported by launcher.py).
#
# AWS: "You can enable Object Lock for new or existing buckets"; an existing bucket needs
# versioning enabled first, and a bucket's default retention may be changed at any time (it
# applies to object versions written afterwards).
#   https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObjectLockConfiguration.html
#   https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock-configure.html
# moto 5.2.5 still has the old rule: PutObjectLockConfiguration on any bucket that holds an
# object raises BucketNeedsToBeNew, even to change the default retention of a bucket created
# with Object Lock. `ferry infra apply` turns Object Lock on for an existing backup bucket and
# changes its retention when the config does, as AWS allows; the kit answers as AWS does. The
# versioning precondition (InvalidBucketState) stays as moto has it.
from moto.s3.exceptions import InvalidBucketState
from moto.s3.models import S3Backend


def put_object_lock_configuration(self, bucket_name, lock_enabled, mode=None, days=None, years=None):
    bucket = self.get_bucket(bucket_name)
    if not bucket.is_versioned:
        raise InvalidBucketState(
            "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration"
        )
    if lock_enabled:
        bucket.object_lock_enabled = True
        bucket.versioning_status = "Enabled"
    bucket.default_lock_mode = mode
    bucket.default_lock_days = days
    bucket.default_lock_years = years


S3Backend.put_object_lock_configuration = put_object_lock_configuration
