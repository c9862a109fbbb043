#!/usr/bin/env python3
"""Proof of Ferry's policies (docs/SECURITY.md).

Reads the documents written by `cargo run -p ferry-cloud --example dump-policies -- DIR`
(DIR/manifest.json names them, DIR/matrix.json holds the authorization matrix) and:

1. lints every document with parliament (no finding allowed; resource policies are linted with
   their Principal element, which parliament accepts);
2. evaluates an authorization matrix (principal x action x resource x request context) with an
   independent IAM evaluator, principalmapper 1.1.5's local policy simulation, which evaluates
   identity policies, resource policies (bucket/trust) and conditions. The S3 gateway endpoint
   policy is applied as AWS applies it: a request that arrives through the endpoint must also be
   allowed by the endpoint policy.

The cases come from DIR/matrix.json (the Rust definition, `ferry_cloud::verify::matrix`); every
case's expected result comes from DESIGN.md's trust table. Prints the matrix as Markdown;
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
            # The second operator: an IAM Identity Center role, which lives under a path
            # (role/aws-reserved/sso.amazonaws.com/REGION/AWSReservedSSO_…); its aws:PrincipalArn
            # is the role ARN with that path.
            "operator (SSO role, path)": node(inp["operator_arns"][1], "AROASSOOPERATOR000001", "AdministratorAccess",
                                              admin, {"Version": "2012-10-17", "Statement": []}),
            # Another role with the same name at the root path: not the operator.
            "same-name role, no path": node(
                f"arn:aws:iam::{self.account}:role/" + inp["operator_arns"][1].rsplit("/", 1)[1],
                "AROASAMENAMEROLE00001", "AdministratorAccess", admin, {"Version": "2012-10-17", "Statement": []}),
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


def cases(outdir):
    """(principal, action, resource, context, expected, reason) from DIR/matrix.json, which the
    Rust side writes from the same inputs as the documents (crates/ferry-cloud/src/verify,
    `ferry_cloud::verify::matrix`, also what `ferry infra verify` checks on a live account).
    Expected values are DESIGN.md's trust table, not an evaluator's output."""
    with open(f"{outdir}/matrix.json") as f:
        m = json.load(f)
    return [(c["principal"], c["action"], c["resource"], {k: v for k, v in c["context"]}, c["expected"], c["why"])
            for c in m["cases"]]


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
    rows = cases(outdir)
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
