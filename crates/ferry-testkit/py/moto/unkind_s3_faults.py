# S3 answering 500 InternalError / 503 SlowDown, and slow answers, on object requests
# (imported by launcher.py).
#
# AWS: S3 may answer any request with 500 InternalError ("We encountered an internal error.
# Please try again.") or 503 SlowDown ("Please reduce your request rate."):
#   https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
# A PUT that got InternalError may or may not have been processed; retry it. SlowDown comes when
# a prefix's request rate rises faster than S3 scales; reduce the rate and retry:
#   https://docs.aws.amazon.com/AmazonS3/latest/userguide/ErrorBestPractices.html
#   https://docs.aws.amazon.com/whitepapers/latest/s3-optimizing-performance-best-practices/timeouts-and-retries-for-latency-sensitive-applications.html
# The SDKs retry both (HTTP 500/502/503/504 and throttling codes) in their standard retry mode,
# 3 attempts by default, exponential backoff with jitter:
#   https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html
#   https://docs.aws.amazon.com/sdk-for-rust/latest/dg/retries.html
# moto 5.2.5 never answers either, and never answers slowly. Unlike the other modules this is
# not AWS's steady state, so it is OFF by default: a test switches faults on (and off) while
# moto runs by writing a JSON rule file whose path is FERRY_UNKIND_S3_FAULTS_FILE (the kit sets
# it to a file in moto's private directory; `ferry_testkit::Moto::set_s3_faults` writes it
# atomically). The file is read again whenever its mtime, size or inode changes; a new file
# restarts every rule's counters and random generators. No file, or `{"rules": []}`: no fault.
#
#   {"rules": [{"method": "PUT",            # HTTP method (absent: any)
#               "key": "^home/packs/",      # regex searched in the object key (absent: any key)
#               "status": 503,              # 503 SlowDown or 500 InternalError (absent: none)
#               "first": 2,                 # only the first N matching requests (absent: all)
#               "per_key": true,            # ... counted per object key (default: all keys)
#               "probability": 0.5,         # else each with this probability ...
#               "seed": 7,                  # ... from random.Random(seed) (default 0)
#               "delay_ms": 2000,           # hold the answer this long
#               "delay_after": false}]}     # true: moto handles the request (stores the
#                                           #   object) first, then the answer is held
#
# Only object requests (a key in the path) are judged; the first rule that matches a request
# decides it. Every injected fault is logged to moto's log ("ferry-testkit unkind_s3_faults:"),
# with the rule's index and the match count, which is how tests count them.
import json
import os
import random
import re
import sys
import threading

import kitlog  # the kit's own (launcher.py puts this directory on sys.path)
import time
import uuid

from moto.s3.responses import S3Response

_FILE = os.environ.get("FERRY_UNKIND_S3_FAULTS_FILE", "")
_lock = threading.Lock()
_state = {"stamp": None, "rules": []}

_ERRORS = {
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("SlowDown", "Please reduce your request rate."),
}


_log = kitlog.logger("unkind_s3_faults")


class _Rule:
    def __init__(self, index, spec):
        self.index = index
        self.method = spec.get("method")
        self.key = re.compile(spec["key"]) if spec.get("key") else None
        self.status = spec.get("status")
        if self.status is not None and self.status not in _ERRORS:
            raise ValueError(f"rule {index}: status {self.status} is not one of {sorted(_ERRORS)}")
        self.first = spec.get("first")
        self.per_key = bool(spec.get("per_key", False))
        self.by_key = {}
        self.probability = spec.get("probability")
        self.rng = random.Random(spec.get("seed", 0))
        self.delay = float(spec.get("delay_ms", 0)) / 1000.0
        self.delay_after = bool(spec.get("delay_after", False))
        self.matched = 0

    def matches(self, method, key):
        if self.method and self.method.upper() != method.upper():
            return False
        return self.key is None or self.key.search(key) is not None

    def fires(self, key):
        """Called with the lock held, once per matching request."""
        self.matched += 1
        if self.first is not None:
            if self.per_key:
                self.by_key[key] = self.by_key.get(key, 0) + 1
                return self.by_key[key] <= self.first
            return self.matched <= self.first
        if self.probability is not None:
            return self.rng.random() < self.probability
        return True


def _rules():
    if not _FILE:
        return []
    try:
        st = os.stat(_FILE)
    except FileNotFoundError:
        stamp = None
    else:
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    if stamp != _state["stamp"]:
        rules = []
        if stamp is not None:
            try:
                with open(_FILE, encoding="utf-8") as f:
                    doc = json.load(f)
                rules = [_Rule(i, r) for i, r in enumerate(doc.get("rules", []))]
            except (OSError, ValueError, KeyError, re.error) as e:
                # A rule file the kit cannot read fails loudly in every request it would judge.
                _log(f"cannot read the rule file {_FILE}: {e}; answering 500 to object requests")
                rules = [_Rule(0, {"status": 500})]
        _state["stamp"] = stamp
        _state["rules"] = rules
        _log(f"{len(rules)} rule(s) from {_FILE}" if stamp else "no rule file: no faults")
    return _state["rules"]


def _object_key(self, request, full_url):
    """The object key (without the bucket), as moto itself parses it."""
    self.setup_class(request)  # moto's key_response does it again; the body is cached
    return self.parse_key_name()


_key_response = S3Response.key_response


def key_response(self, request, full_url, headers):
    key = _object_key(self, request, full_url)
    with _lock:
        rule = next((r for r in _rules() if r.matches(request.method, key)), None)
        fires = rule is not None and rule.fires(key)
        n = rule.matched if rule is not None else 0
    if not fires:
        return _key_response(self, request, full_url, headers)
    what = f"{request.method} {key} (rule {rule.index}, match {n})"
    if rule.delay and not rule.delay_after:
        _log(f"holding {what} for {rule.delay:.3f} s")
        time.sleep(rule.delay)
    if rule.status is not None:
        # Read the body, so that the connection stays in step (as S3 does before answering).
        try:
            request.get_data()
        except Exception:  # noqa: BLE001 - a body that cannot be read changes nothing here
            pass
        code, message = _ERRORS[rule.status]
        _log(f"{rule.status} {code} to {what}")
        rid = uuid.uuid4().hex[:16].upper()
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{rid}</RequestId><HostId>ferry-testkit</HostId></Error>"
        )
        return rule.status, {"Content-Type": "application/xml", "x-amz-request-id": rid}, \
            ("" if request.method == "HEAD" else body)
    response = _key_response(self, request, full_url, headers)
    if rule.delay and rule.delay_after:
        _log(f"answering {what} {rule.delay:.3f} s late (the request was handled)")
        time.sleep(rule.delay)
    return response


S3Response.key_response = key_response
print("ferry-testkit: moto patched: S3 faults (500/503/slow) from "
      f"{_FILE or 'nowhere'} (off until a rule file exists)", flush=True)
