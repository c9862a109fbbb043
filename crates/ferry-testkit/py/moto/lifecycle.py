# S3 lifecycle expiration, which moto 5.2.5 stores but never runs (imported by launcher.py).
#
# AWS: an Expiration action with Days removes an object once that many days have passed since
# its creation, "rounding the resulting time to the next day midnight UTC" (an object created
# 1/15/2014 10:30 UTC with 3 days expires 1/19/2014 00:00 UTC); with Date, at that date's
# midnight UTC. Lifecycle is evaluated by S3 itself, asynchronously, and the removal may come
# some time after the expiry date.
#   https://docs.aws.amazon.com/AmazonS3/latest/userguide/intro-lifecycle-rules.html
#   https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-expire-general-considerations.html
#   https://docs.aws.amazon.com/AmazonS3/latest/API/API_LifecycleExpiration.html
# A rule applies when its Status is Enabled and its filter matches: a prefix (in Filter, or the
# older top-level Prefix), one tag, or And of a prefix and tags; no filter, or an empty one,
# matches every object.
#   https://docs.aws.amazon.com/AmazonS3/latest/userguide/intro-lifecycle-filters.html
# In a versioned bucket, expiring the current version adds a delete marker instead.
#
# Here: a pass over every bucket with rules removes each object whose expiry has come, at the
# first S3 request after the UTC day changed (expiry times are always midnights, so nothing can
# come due between two). That is the earliest AWS may remove it, the unkind end for a system
# that must not lose what it still needs. The lifecycle clock is the real time, or a later one
# a test sets: FERRY_LIFECYCLE_CLOCK_FILE names a JSON file {"now": 1796860800} (Unix seconds)
# (ferry_testkit::Moto::set_lifecycle_clock writes it). Objects' ages are measured from their
# real creation (moto's LastModified) to that clock. Expired objects are logged
# ("ferry-testkit lifecycle: expired ..."), which is how tests see them.
#
# Not emulated (logged once per rule when a rule has them): transitions, noncurrent-version
# actions, AbortIncompleteMultipartUpload, ExpiredObjectDeleteMarker, and the object-size
# filters, which moto 5.2.5 does not even store (such a rule would expire more here than on
# AWS). Ferry's rules use none of them.
import datetime
import json
import os
import threading

import kitlog  # the kit's own (launcher.py puts this directory on sys.path)

from moto.s3.models import FakeDeleteMarker, s3_backends
from moto.s3.responses import S3Response

_FILE = os.environ.get("FERRY_LIFECYCLE_CLOCK_FILE", "")
_lock = threading.Lock()
_state = {"day": None, "warned": set(), "stamp": None, "later": None}
_log = kitlog.logger("lifecycle")
_DAY = datetime.timedelta(days=1)


def _utc_naive(t):
    """moto keeps naive datetimes in UTC; compare like with like."""
    if t.tzinfo is not None:
        t = t.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return t


def _later():
    """The clock file's time (None: none), read again only when the file changed. Called with
    the lock held, on every S3 request."""
    try:
        st = os.stat(_FILE)
    except FileNotFoundError:
        return None
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    if stamp != _state["stamp"]:
        _state["stamp"] = stamp
        try:
            with open(_FILE, encoding="utf-8") as f:
                doc = json.load(f)
            later = datetime.datetime.fromtimestamp(float(doc["now"]), datetime.timezone.utc)
            _state["later"] = _utc_naive(later)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            _log(f"cannot read the clock file {_FILE}: {e}; using the real time")
            _state["later"] = None
    return _state["later"]


def _clock():
    now = _utc_naive(datetime.datetime.now(datetime.timezone.utc))
    later = _later() if _FILE else None
    return now if later is None else max(now, later)


def _midnight_on_or_after(t):
    day = datetime.datetime(t.year, t.month, t.day)
    return day if day == t else day + _DAY


def _expiry(rule, created):
    if rule.expiration_days:
        return _midnight_on_or_after(created + datetime.timedelta(days=int(rule.expiration_days)))
    if rule.expiration_date:
        date = datetime.datetime.fromisoformat(str(rule.expiration_date).replace("Z", "+00:00"))
        return _midnight_on_or_after(_utc_naive(date))
    return None


def _matches(rule, name, tags):
    if rule.prefix is not None:
        return name.startswith(rule.prefix)
    f = rule.filter
    if f is None:
        return True
    if f.prefix is not None:
        return name.startswith(f.prefix)
    if f.tag_key:
        return tags().get(f.tag_key) == f.tag_value
    if f.and_filter is not None:
        a = f.and_filter
        if a.prefix is not None and not name.startswith(a.prefix):
            return False
        return all(tags().get(k) == v for k, v in a.tags.items())
    return True


def _warn_unemulated(bucket, rule):
    what = [
        name
        for name, present in [
            ("transitions", rule.transitions),
            ("NoncurrentVersionExpiration", rule.nve_noncurrent_days),
            ("NoncurrentVersionTransition", rule.noncurrent_version_transitions),
            ("AbortIncompleteMultipartUpload", rule.aimu_days),
            ("ExpiredObjectDeleteMarker", rule.expired_object_delete_marker),
        ]
        if present
    ]
    mark = (bucket.name, rule.id, tuple(what))
    if what and mark not in _state["warned"]:
        _state["warned"].add(mark)
        _log(f"bucket {bucket.name} rule {rule.id!r}: {', '.join(what)} not emulated")


def _backends():
    for account in list(s3_backends.values()):
        yield from list(account.values())


def _pass(now):
    for backend in _backends():
        for bucket in list(backend.buckets.values()):
            rules = [r for r in getattr(bucket, "rules", []) if r.status == "Enabled"]
            if not rules:
                continue
            for rule in rules:
                _warn_unemulated(bucket, rule)
            for key in list(bucket.keys.values()):
                if isinstance(key, FakeDeleteMarker):
                    continue
                created = _utc_naive(key.last_modified)
                tags = lambda k=key: backend.tagger.get_tag_dict_for_resource(k.arn)  # noqa: E731
                for rule in rules:
                    due = _expiry(rule, created)
                    if due is None or due > now or not _matches(rule, key.name, tags):
                        continue
                    backend.delete_object(bucket.name, key.name)
                    _log(
                        f"expired s3://{bucket.name}/{key.name} (rule {rule.id!r}, created "
                        f"{created.isoformat()}Z, due {due.isoformat()}Z, clock {now.isoformat()}Z)"
                    )
                    break


def _maybe_run():
    with _lock:
        now = _clock()
        day = now.date()
        if _state["day"] is not None and day <= _state["day"]:
            return
        _state["day"] = day
        try:
            _pass(now)
        except Exception as e:  # noqa: BLE001 - the kit must say it, not take moto down
            _log(f"pass at {now.isoformat()}Z failed: {type(e).__name__}: {e}")


def _wrap(original):
    def wrapped(self, request, full_url, headers):
        _maybe_run()
        return original(self, request, full_url, headers)

    return wrapped


S3Response.bucket_response = _wrap(S3Response.bucket_response)
S3Response.key_response = _wrap(S3Response.key_response)
print("ferry-testkit: moto patched: S3 lifecycle expiration run at each new UTC day of "
      f"the real clock or of {_FILE or 'nothing'}", flush=True)
