#!/usr/bin/env python3
"""Proof of Ferry's policies (docs/SECURITY.md).

Reads the documents written by `cargo run -p ferry-cloud --example dump-policies -- DIR`
(DIR/manifest.json names them) and:

1. lints every document with parliament (no finding allowed; resource policies are linted with
   their Principal element, which parliament accepts);
2. evaluates an authorization matrix (principal x action x resource x request context) with an
   independent IAM evaluator, principalmapper 1.1.5's local policy simulation, which evaluates
   identity policies, resource policies (bucket/trust) and conditions. The S3 gateway endpoint
   policy is applied as AWS applies it: a request that arrives through the endpoint must also be
   allowed by the endpoint policy.

Every case's expected result comes from DESIGN.md's trust table. Prints the matrix as Markdown;
exits non-zero on any lint finding or any mismatch.

usage: proof.py DIR [--markdown-only]
"""

import collections
import collections.abc
import json
import sys

# principalmapper 1.1.5 imports Mapping/MutableMapping from `collections`, removed in Python 3.10.
for _name in ("Mapping", "MutableMapping"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

import parliament  # noqa: E402
from principalmapper.common import Node, Policy  # noqa: E402
from principalmapper.querying import local_policy_simulation as lps  # noqa: E402
from principalmapper.querying.query_interface import local_check_authorization_full  # noqa: E402
from principalmapper.util.case_insensitive_dict import CaseInsensitiveDict  # noqa: E402


def load(outdir):
    with open(f"{outdir}/manifest.json") as f:
        manifest = json.load(f)
    docs = {}
    for d in manifest["documents"]:
        with open(f"{outdir}/{d['file']}") as f:
            docs[d["name"]] = json.load(f)
    return manifest, docs


# ---------------------------------------------------------------- 1. parliament

# Findings accepted on purpose. Each entry is narrow: one file, one issue code, and the exact
# detail parliament reports; anything else is a failure. The reasons are in docs/SECURITY.md.
ACCEPTED_FINDINGS = [
    # Trust policies have no Resource element by the IAM grammar (the role itself is the
    # resource); parliament lints every document as an identity policy.
    ("lambda-role-trust.json", "MALFORMED", "Statement contains neither Resource nor NotResource",
     "trust policies have no Resource element"),
    ("jumpbox-role-trust.json", "MALFORMED", "Statement contains neither Resource nor NotResource",
     "trust policies have no Resource element"),
    # ferry-build's job is to launch the jump box with its instance profile. PassRole is limited to
    # the jump-box role and to ec2.amazonaws.com; what the Lambda can reach this way is the jump
    # box's own write-once, endpoint-only permissions.
    ("lambda-role-policy.json", "PERMISSIONS_MANAGEMENT_ACTIONS", {"actions": ["iam:passrole"]},
     "launching the jump box needs iam:PassRole of exactly the jump-box role"),
    ("lambda-role-policy.json", "PRIVILEGE_ESCALATION",
     {"type": "CreateEC2WithExistingIP", "actions": ["iam:passrole", "ec2:runinstances"]},
     "the Lambda launches the jump box with the jump-box role by design"),
]


def _finding_matches(finding, actual_file, file, issue, detail):
    if finding.issue != issue or actual_file != file:
        return False
    if isinstance(detail, str):
        return finding.detail == detail
    # Structured findings carry their facts in `location` (plus the file path).
    loc = {k: v for k, v in dict(finding.location).items() if k != "filepath"}
    return not finding.detail and loc == detail


def lint(manifest, outdir):
    """Returns (problems, accepted): lists of strings; problems must be empty."""
    problems, accepted = [], []
    for d in manifest["documents"]:
        with open(f"{outdir}/{d['file']}") as f:
            text = f.read()
        policy = parliament.analyze_policy_string(text, filepath=d["file"], include_community_auditors=True)
        for finding in policy.findings:
            why = next((a[3] for a in ACCEPTED_FINDINGS if _finding_matches(finding, d["file"], *a[:3])), None)
            loc = {k: v for k, v in dict(finding.location).items() if k != "filepath"}
            line = f"{d['file']}: {finding.issue} {finding.detail or loc}"
            if why:
                accepted.append(f"{line} — accepted: {why}")
            else:
                problems.append(line)
    return problems, accepted


# ---------------------------------------------------------------- 2. matrix

class World:
    def __init__(self, manifest, docs):
        self.m = manifest
        self.docs = docs
        inp = manifest["inputs"]
        self.account = inp["account_id"]
        self.region = inp["region"]
        self.vpce = inp["vpce_id"]
        self.vpc = inp["vpc_id"]
        self.prefix = inp["names"]["prefix"]
        a = manifest["arns"]
        self.arns = a
        self.backup_bucket = inp["backup_bucket"]
        self.state_bucket = inp["state_bucket"]
        admin = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}

        def node(arn, uid, policy_name, policy, trust=None):
            return Node(arn, uid, [Policy(arn, policy_name, policy)], None, trust, None, 0, False,
                        policy is admin, None, False, None)

        self.principals = {
            "backup-user": node(a["backup_user"], "AIDABACKUPUSER0000001", "backup-user-policy",
                                docs["backup-user-policy"]),
            "lambda-role": node(a["lambda_role"], "AROALAMBDAROLE0000001", "lambda-role-policy",
                                docs["lambda-role-policy"], docs["lambda-role-trust"]),
            "jumpbox-role": node(a["jumpbox_role"], "AROAJUMPBOXROLE000001", "jumpbox-role-policy",
                                 docs["jumpbox-role-policy"], docs["jumpbox-role-trust"]),
            # The operator: an administrator role listed in operator_arns.
            "operator": node(inp["operator_arns"][0], "AROAOPERATORROLE00001", "AdministratorAccess", admin,
                             {"Version": "2012-10-17", "Statement": []}),
            # Any other administrator of the account (not an operator): e.g. a CI user's leaked keys.
            # The jump-box role as if someone widened its identity policy to everything: what the
            # bucket and endpoint policies still refuse does not depend on the role's policy.
            "jumpbox-role widened": node(a["jumpbox_role"], "AROAJUMPBOXROLE000001", "AdministratorAccess", admin,
                                         docs["jumpbox-role-trust"]),
            "other-admin": node(f"arn:aws:iam::{self.account}:user/other-admin", "AIDAOTHERADMIN0000001",
                                "AdministratorAccess", admin),
        }
        self.trust = {a["lambda_role"]: docs["lambda-role-trust"], a["jumpbox_role"]: docs["jumpbox-role-trust"]}
        # Lambda resource policies (AddPermission), by function ARN.
        self.function_policies = {a["clean_function"]: docs["clean-function-policy"]}

    def bucket_policy_for(self, resource):
        if resource.startswith(self.arns["backup_bucket"] + "/") or resource == self.arns["backup_bucket"]:
            return self.docs["backup-bucket-policy"]
        if resource.startswith(self.arns["state_bucket"] + "/") or resource == self.arns["state_bucket"]:
            return self.docs["state-bucket-policy"]
        return None

    def endpoint_allows(self, principal_node, action, resource, ctx):
        """AWS evaluates the endpoint policy for every request that goes through the endpoint:
        it must allow, and a deny in it would win."""
        stmts = lps.resource_policy_matching_statements(
            principal_node, self.docs["s3-endpoint-policy"], action, resource, ctx)
        return any(s["Effect"] == "Allow" for s in stmts) and not any(s["Effect"] == "Deny" for s in stmts)

    def evaluate(self, who, action, resource, ctx):
        ctx = dict(ctx)
        if who.endswith(".amazonaws.com") and action == "lambda:InvokeFunction":
            # A service principal invoking a function: only the function's resource policy decides.
            rp = self.function_policies.get(resource)
            if rp is None:
                return False
            r = lps.resource_policy_authorization(who, self.account, rp, action, resource, CaseInsensitiveDict(ctx))
            return r == lps.ResourcePolicyEvalResult.SERVICE_MATCH
        if who.endswith(".amazonaws.com"):
            # A service principal assuming a role: only the trust policy decides.
            trust = self.trust[resource]
            r = lps.resource_policy_authorization(who, self.account, trust, action, resource, CaseInsensitiveDict(ctx))
            return r == lps.ResourcePolicyEvalResult.SERVICE_MATCH
        node = self.principals[who]
        if action == "sts:AssumeRole" and resource in self.trust:
            rp = self.trust[resource]
        else:
            rp = self.bucket_policy_for(resource)
        allowed = local_check_authorization_full(
            node, action, resource, ctx, resource_policy=rp, resource_owner=self.account if rp else None)
        if allowed and action.startswith("s3:") and ctx.get("aws:SourceVpce") == self.vpce:
            full = CaseInsensitiveDict(ctx)
            full.setdefault("aws:PrincipalArn", node.arn)
            allowed = self.endpoint_allows(node, action, resource, full)
        return allowed


def cases(w):
    """(principal, action, resource, context, expected, reason). Expected values are DESIGN.md's
    trust table, not the evaluator's output."""
    a = w.arns
    acct, reg = w.account, w.region
    B = a["backup_bucket"]
    S = a["state_bucket"]
    ec2 = f"arn:aws:ec2:{reg}:{acct}"
    ours = {"aws:SourceVpce": w.vpce}
    inm = {"s3:if-none-match": "*"}
    via = {**ours, **inm}
    plain_http = {"aws:SecureTransport": "false"}
    pack = f"{B}/site1/packs/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    state_obj = f"{S}/sessions/s-20261123-1.json"
    gate = f"{S}/artifacts/ferry-gate"
    tags = {
        "aws:RequestTag/ferry:managed": "true",
        "aws:RequestTag/ferry:installation": w.prefix,
        "aws:RequestTag/ferry:session": "s-20261123-1",
    }
    rtags = {
        "aws:ResourceTag/ferry:managed": "true",
        "aws:ResourceTag/ferry:installation": w.prefix,
        "aws:ResourceTag/ferry:session": "s-20261123-1",
    }
    vpc_arn = f"{ec2}:vpc/{w.vpc}"
    Y, N = True, False
    return [
        # backup VM: invoke build/clean, nothing else
        ("backup-user", "lambda:InvokeFunction", a["build_function"], {}, Y, "may invoke ferry-build"),
        ("backup-user", "lambda:InvokeFunction", a["clean_function"], {}, Y, "may invoke ferry-clean"),
        ("backup-user", "lambda:InvokeFunction", f"arn:aws:lambda:{reg}:{acct}:function:other", {}, N, "no other function"),
        ("backup-user", "lambda:UpdateFunctionCode", a["build_function"], {}, N, "cannot change the function"),
        ("backup-user", "s3:GetObject", pack, {}, N, "no S3"),
        ("backup-user", "s3:ListBucket", B, {}, N, "no S3"),
        ("backup-user", "s3:PutObject", pack, via, N, "no S3, even via the endpoint"),
        ("backup-user", "s3:GetObject", state_obj, {}, N, "no S3"),
        ("backup-user", "s3:PutObject", state_obj, {}, N, "no S3"),
        ("backup-user", "ec2:DescribeInstances", "*", {}, N, "no EC2"),
        ("backup-user", "ec2:RunInstances", f"{ec2}:instance/*", tags, N, "no EC2"),
        ("backup-user", "iam:PassRole", a["jumpbox_role"], {"iam:PassedToService": "ec2.amazonaws.com"}, N, "no IAM"),
        ("backup-user", "sts:AssumeRole", a["lambda_role"], {}, N, "cannot become the Lambda role"),
        ("backup-user", "sts:AssumeRole", a["jumpbox_role"], {}, N, "cannot become the jump-box role"),
        # trust policies
        ("lambda.amazonaws.com", "sts:AssumeRole", a["lambda_role"], {}, Y, "Lambda assumes its role"),
        ("ec2.amazonaws.com", "sts:AssumeRole", a["lambda_role"], {}, N, "EC2 cannot assume the Lambda role"),
        ("ec2.amazonaws.com", "sts:AssumeRole", a["jumpbox_role"], {}, Y, "EC2 assumes the jump-box role"),
        ("lambda.amazonaws.com", "sts:AssumeRole", a["jumpbox_role"], {}, N, "Lambda cannot assume the jump-box role"),
        # the clean function's resource policy: only the sweep rule, through EventBridge
        ("events.amazonaws.com", "lambda:InvokeFunction", a["clean_function"], {"aws:SourceArn": a["sweep_rule"]}, Y,
         "the hourly sweep rule invokes ferry-clean"),
        ("events.amazonaws.com", "lambda:InvokeFunction", a["clean_function"],
         {"aws:SourceArn": f"arn:aws:events:{reg}:{acct}:rule/other"}, N, "another rule cannot"),
        ("events.amazonaws.com", "lambda:InvokeFunction", a["build_function"], {"aws:SourceArn": a["sweep_rule"]}, N,
         "nothing may invoke ferry-build by resource policy"),
        ("sns.amazonaws.com", "lambda:InvokeFunction", a["clean_function"], {"aws:SourceArn": a["sweep_rule"]}, N,
         "another service cannot"),
        # Lambda role: tagged session resources, PassRole of the jump-box role, state bucket
        ("lambda-role", "ec2:RunInstances", f"{ec2}:instance/*", tags, Y, "launch a tagged jump box"),
        ("lambda-role", "ec2:RunInstances", f"{ec2}:instance/*",
         {k: v for k, v in tags.items() if "session" not in k}, N, "instance without ferry:session tag"),
        ("lambda-role", "ec2:RunInstances", f"{ec2}:instance/*",
         {**tags, "aws:RequestTag/ferry:installation": "other"}, N, "tagged for another installation"),
        ("lambda-role", "ec2:RunInstances", f"{ec2}:subnet/subnet-0a1b2c3d", {"ec2:Vpc": vpc_arn}, Y, "subnet in the ferry VPC"),
        ("lambda-role", "ec2:RunInstances", f"{ec2}:subnet/subnet-0e0e0e0e", {"ec2:Vpc": f"{ec2}:vpc/vpc-0ffff0000"}, N, "subnet in another VPC"),
        ("lambda-role", "ec2:RunInstances", f"arn:aws:ec2:{reg}::image/ami-0123456789abcdef0", {"ec2:Owner": "amazon"}, Y, "Amazon Linux image"),
        ("lambda-role", "ec2:RunInstances", f"arn:aws:ec2:{reg}::image/ami-0badbadbadbadbad0", {"ec2:Owner": "999999999999"}, N, "community image"),
        ("lambda-role", "ec2:CreateSecurityGroup", f"{ec2}:security-group/*", tags, Y, "create a tagged SG"),
        ("lambda-role", "ec2:CreateSecurityGroup", f"{ec2}:security-group/*",
         {k: v for k, v in tags.items() if "session" not in k}, N, "SG without ferry:session tag"),
        ("lambda-role", "ec2:CreateSecurityGroup", f"{ec2}:security-group/*",
         {**tags, "aws:RequestTag/ferry:installation": "other"}, N, "SG for another installation"),
        ("lambda-role", "ec2:CreateTags", f"{ec2}:instance/i-0123456789abcdef0", {"ec2:CreateAction": "RunInstances"}, Y, "tag while launching"),
        ("lambda-role", "ec2:CreateTags", f"{ec2}:instance/i-0abcabcabcabcabc0", {}, N, "retag an existing instance into scope"),
        ("lambda-role", "ec2:TerminateInstances", f"{ec2}:instance/i-0123456789abcdef0", rtags, Y, "terminate a session's jump box"),
        ("lambda-role", "ec2:TerminateInstances", f"{ec2}:instance/i-0abcabcabcabcabc0", {}, N, "terminate an untagged instance"),
        ("lambda-role", "ec2:TerminateInstances", f"{ec2}:instance/i-0abcabcabcabcabc0",
         {**rtags, "aws:ResourceTag/ferry:installation": "other"}, N, "terminate another installation's box"),
        ("lambda-role", "ec2:DeleteSecurityGroup", f"{ec2}:security-group/sg-0123456789abcdef0", rtags, Y, "delete a session SG"),
        ("lambda-role", "ec2:DescribeInstances", "*", {}, Y, "describe"),
        ("lambda-role", "logs:PutLogEvents",
         f"arn:aws:logs:{reg}:{acct}:log-group:/aws/lambda/{w.prefix}-build:log-stream:2026/11/23/x", {}, Y,
         "write its own function logs"),
        ("lambda-role", "logs:PutLogEvents",
         f"arn:aws:logs:{reg}:{acct}:log-group:/aws/lambda/other:log-stream:x", {}, N, "no other log group"),
        ("lambda-role", "iam:PassRole", a["jumpbox_role"], {"iam:PassedToService": "ec2.amazonaws.com"}, Y, "pass the jump-box role to EC2"),
        ("lambda-role", "iam:PassRole", a["lambda_role"], {"iam:PassedToService": "ec2.amazonaws.com"}, N, "pass its own role"),
        ("lambda-role", "iam:PassRole", a["jumpbox_role"], {"iam:PassedToService": "lambda.amazonaws.com"}, N, "pass the jump-box role to Lambda"),
        ("lambda-role", "iam:AttachRolePolicy", a["jumpbox_role"], {}, N, "no IAM changes"),
        ("lambda-role", "s3:PutObject", state_obj, {}, Y, "write session state"),
        ("lambda-role", "s3:GetObject", state_obj, {}, Y, "read session state"),
        ("lambda-role", "s3:DeleteObject", state_obj, {}, Y, "delete session state"),
        ("lambda-role", "s3:ListBucket", S, {}, Y, "list the state bucket"),
        ("lambda-role", "s3:PutObject", state_obj, plain_http, N, "state bucket is TLS only"),
        ("lambda-role", "s3:GetObject", pack, {}, N, "never touches the backup bucket"),
        ("lambda-role", "s3:PutObject", pack, via, N, "never touches the backup bucket"),
        ("lambda-role", "s3:DeleteObject", pack, {}, N, "never touches the backup bucket"),
        ("lambda-role", "s3:ListBucket", B, {}, N, "never touches the backup bucket"),
        # jump box: write-once put + list via the endpoint, gate artifact, invoke clean
        ("jumpbox-role", "s3:PutObject", pack, via, Y, "write-once put through the endpoint"),
        ("jumpbox-role", "s3:PutObject", pack, ours, N, "put without If-None-Match (overwrite)"),
        ("jumpbox-role", "s3:PutObject", pack, inm, N, "put around the endpoint (internet gateway)"),
        ("jumpbox-role", "s3:PutObject", pack, {**inm, "aws:SourceVpce": "vpce-0bad0bad0bad0bad0"}, N, "put through another endpoint"),
        ("jumpbox-role", "s3:PutObject", pack, {**via, **plain_http}, N, "backup bucket is TLS only"),
        ("jumpbox-role", "s3:ListBucket", B, ours, Y, "list through the endpoint"),
        ("jumpbox-role", "s3:ListBucket", B, {}, N, "list around the endpoint"),
        ("jumpbox-role", "s3:GetObject", pack, ours, N, "cannot read a backup"),
        ("jumpbox-role", "s3:DeleteObject", pack, ours, N, "cannot delete a backup"),
        ("jumpbox-role", "s3:GetObject", gate, ours, Y, "fetch the gate artifact"),
        ("jumpbox-role", "s3:GetObject", state_obj, ours, N, "cannot read session state"),
        ("jumpbox-role", "s3:PutObject", gate, via, N, "cannot replace the gate artifact"),
        ("jumpbox-role", "lambda:InvokeFunction", a["clean_function"], {}, Y, "invoke ferry-clean"),
        ("jumpbox-role", "lambda:InvokeFunction", a["build_function"], {}, N, "cannot invoke ferry-build"),
        ("jumpbox-role", "ec2:TerminateInstances", f"{ec2}:instance/i-0123456789abcdef0", rtags, N, "no EC2"),
        # operator (admin role listed in operator_arns): restore, prune, upload the gate
        ("operator", "s3:GetObject", pack, {}, Y, "restore reads backups"),
        ("operator", "s3:DeleteObject", pack, {}, Y, "prune deletes backups"),
        ("operator", "s3:ListBucket", B, {}, Y, "list backups"),
        ("operator", "s3:PutObject", pack, inm, N, "even the operator cannot put around the endpoint"),
        ("operator", "s3:GetObject", pack, plain_http, N, "TLS only"),
        ("operator", "s3:GetObject", pack, ours, N, "endpoint policy: no reads through the endpoint"),
        ("operator", "s3:PutObject", gate, {}, Y, "upload the gate artifact"),
        # defence in depth: the jump-box role with an identity policy widened to everything
        ("jumpbox-role widened", "s3:PutObject", pack, inm, N, "bucket policy: puts only through the endpoint"),
        ("jumpbox-role widened", "s3:PutObject", pack, ours, N, "bucket policy: puts only with If-None-Match"),
        ("jumpbox-role widened", "s3:PutObject", pack, via, Y, "the one way in stays open"),
        ("jumpbox-role widened", "s3:GetObject", pack, {}, N, "bucket policy: only the operator reads"),
        ("jumpbox-role widened", "s3:DeleteObject", pack, {}, N, "bucket policy: only the operator deletes"),
        ("jumpbox-role widened", "s3:GetObject", state_obj, {}, N, "state bucket: jump box reads artifacts/ only"),
        ("jumpbox-role widened", "s3:GetObject", pack, ours, N, "endpoint policy: no reads through the endpoint"),
        # any other administrator of the account (not an operator)
        ("other-admin", "s3:ListBucket", S, {}, N, "state bucket: only the Lambda role/operator list"),
        ("other-admin", "s3:GetObject", pack, {}, N, "bucket policy: only the operator reads"),
        ("other-admin", "s3:DeleteObject", pack, {}, N, "bucket policy: only the operator deletes"),
        ("other-admin", "s3:ListBucket", B, {}, N, "bucket policy: only jump box/operator list"),
        ("other-admin", "s3:PutObject", pack, via, N, "bucket policy: only the jump box puts"),
        ("other-admin", "s3:GetObject", state_obj, {}, N, "state bucket: Lambda role only"),
        ("other-admin", "s3:PutObject", gate, {}, N, "cannot plant a gate artifact"),
    ]


def statement_coverage(manifest, docs, rows):
    """Removes each statement in turn and re-evaluates the matrix: a statement whose removal
    changes no case is not covered by the matrix. Returns the uncovered (document, Sid) pairs."""
    baseline = [World(manifest, docs).evaluate(*r[:4]) for r in rows]
    uncovered = []
    for name, doc in docs.items():
        for i, st in enumerate(doc["Statement"]):
            mutated = dict(docs)
            mutated[name] = {**doc, "Statement": doc["Statement"][:i] + doc["Statement"][i + 1:]}
            w = World(manifest, mutated)
            if all(w.evaluate(*r[:4]) == b for r, b in zip(rows, baseline)):
                uncovered.append((name, st.get("Sid", f"#{i}")))
    return uncovered


# Statements no matrix case depends on, each with the reason it is not exercised.
UNCOVERED_OK = {}


def short(w, resource):
    a = w.arns
    for key, label in (("backup_bucket", "backup"), ("state_bucket", "state")):
        if resource == a[key]:
            return f"{label} bucket"
        if resource.startswith(a[key] + "/"):
            rest = resource[len(a[key]) + 1:]
            if len(rest) > 28:
                rest = rest[:24] + "…"
            return f"{label}:{rest}"
    for key in ("lambda_role", "jumpbox_role", "build_function", "clean_function"):
        if resource == a[key]:
            return resource.rsplit(":", 1)[-1].split("/")[-1] if "function" in key else resource.split(":", 5)[-1]
    return resource.split(":", 5)[-1] if resource.startswith("arn:") else resource


def describe_ctx(ctx):
    parts = []
    for k, v in ctx.items():
        if k == "aws:SourceVpce":
            parts.append("via ferry endpoint" if v.startswith("vpce-0f") else "via other endpoint")
        elif k == "s3:if-none-match":
            parts.append("If-None-Match")
        elif k == "aws:SecureTransport":
            parts.append("plain HTTP" if v == "false" else "TLS")
        elif k.startswith("aws:RequestTag/") or k.startswith("aws:ResourceTag/"):
            parts.append(f"{k.split(':', 1)[1]}={v}")
        else:
            parts.append(f"{k}={v.split(':')[-1] if v.startswith('arn:') else v}")
    return ", ".join(parts) if parts else "—"


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    outdir = argv[1]
    manifest, docs = load(outdir)
    failed = False

    problems, accepted = lint(manifest, outdir)
    print(f"## parliament {parliament.__version__}: {len(manifest['documents'])} documents, "
          f"{len(problems)} findings, {len(accepted)} accepted\n")
    for p in problems:
        print(f"- FINDING {p}")
        failed = True
    for p in accepted:
        print(f"- {p}")
    print()

    w = World(manifest, docs)
    rows = cases(w)
    mismatches = 0
    print(f"## Authorization matrix ({len(rows)} cases, evaluated by principalmapper local policy simulation)\n")
    print("| # | principal | action | resource | request context | expected | evaluated | why |")
    print("|---|---|---|---|---|---|---|---|")
    for i, (who, action, resource, ctx, expected, why) in enumerate(rows, 1):
        got = w.evaluate(who, action, resource, ctx)
        ok = got == expected
        if not ok:
            mismatches += 1
        mark = lambda b: "allow" if b else "deny"  # noqa: E731
        print(f"| {i} | {who} | `{action}` | `{short(w, resource)}` | {describe_ctx(ctx)} | {mark(expected)} | "
              f"{mark(got)}{'' if ok else ' **MISMATCH**'} | {why} |")
    print()
    uncovered = statement_coverage(manifest, docs, rows)
    print(f"## Statement coverage: each statement removed in turn must change at least one case\n")
    total = sum(len(d["Statement"]) for d in docs.values())
    for name, sid in uncovered:
        why = UNCOVERED_OK.get((name, sid))
        if why:
            print(f"- {name} {sid}: not exercised ({why})")
        else:
            print(f"- {name} {sid}: NOT COVERED by any case")
            failed = True
    print(f"- {total - len(uncovered)} of {total} statements covered\n")
    allows = sum(1 for r in rows if r[4])
    print(f"{len(rows) - mismatches} passed, {mismatches} failed")
    print(f"(expected: {allows} allow, {len(rows) - allows} deny)", file=sys.stderr)
    if mismatches or failed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
