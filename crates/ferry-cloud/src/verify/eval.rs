//! A local IAM policy evaluator for the documents Ferry installs: what `ferry infra verify`
//! falls back to where IAM's policy simulator does not answer (moto 5.2.5 implements neither
//! `SimulatePrincipalPolicy` nor `SimulateCustomPolicy`).
//!
//! It follows IAM's documented evaluation logic for one account
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html>):
//! an explicit deny in any applicable policy wins; otherwise an allow in an identity policy or in
//! the resource policy (when its `Principal` names the caller) allows; otherwise the request is
//! implicitly denied. The VPC endpoint policy is one more gate for requests through the endpoint
//! (<https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-access.html>): it must
//! allow too.
//!
//! Condition operators, as documented in
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html>:
//! `String(Not)Equals(IgnoreCase)`, `String(Not)Like`, `Arn(Not)Equals`, `Arn(Not)Like`, `Bool`,
//! `Null`, each with `...IfExists`. A key missing from the request context makes a positive
//! operator false and a negated one (`...Not...`) true; `...IfExists` makes it true; `Null`
//! tests presence. Several values under one key: any may match (for a negated operator: none
//! may). Several keys or operators: all must hold. Condition keys compare case-insensitively,
//! string values case-sensitively. Anything else (numeric, date, IP operators, set operators,
//! `NotPrincipal`) is refused with an error rather than guessed.

use serde_json::Value;

/// Who makes a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller<'a> {
    /// An IAM user, role or account root, by its ARN (for a role session: the role's ARN).
    Aws(&'a str),
    /// An AWS service principal such as `events.amazonaws.com`.
    Service(&'a str),
}

/// One request: caller, action, resource, and the request context (key, value).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Who makes the request.
    pub caller: Caller<'a>,
    /// IAM action, `service:Action`; matched case-insensitively against `Action` patterns.
    pub action: &'a str,
    /// ARN of the resource; matched case-sensitively against `Resource` patterns.
    pub resource: &'a str,
    /// Request context entries (key, value); keys are looked up case-insensitively.
    pub context: &'a [(String, String)],
}

impl Request<'_> {
    fn lookup(&self, key: &str) -> Option<&str> {
        self.context
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// A policy the evaluator cannot read faithfully.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("statement {sid}: {problem}")]
pub struct PolicyError {
    /// The statement's `Sid`, `#i` (0-based position) when it has none, `-` for the document.
    pub sid: String,
    /// What in the statement cannot be read.
    pub problem: Unsupported,
}

/// What in a statement the local evaluator cannot read (so it refuses to guess a verdict).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    /// `Statement` is missing, or neither an object nor a list.
    #[error("the document has no Statement")]
    NoStatement,
    /// The statement uses `NotPrincipal`.
    #[error("NotPrincipal is not supported by the local evaluator")]
    NotPrincipal,
    /// A statement of a resource policy names no `Principal`.
    #[error("a resource policy statement without Principal")]
    NoPrincipal,
    /// `Effect` is missing (`None`) or another string.
    #[error("Effect {0:?} is neither Allow nor Deny")]
    Effect(Option<String>),
    /// Neither `yes` nor `no` (`Action`/`NotAction`) is present.
    #[error("neither {yes} nor {no}")]
    NeitherElement {
        /// The positive element (`Action`, `Resource`, `Principal`).
        yes: String,
        /// Its negated counterpart (`NotAction`, `NotResource`, `NotPrincipal`).
        no: String,
    },
    /// A statement holds both `yes` and `no` (`Action` and `NotAction`).
    #[error("both {yes} and {no}")]
    BothElements {
        /// The positive element (`Action`, `Resource`, `Principal`).
        yes: String,
        /// Its negated counterpart (`NotAction`, `NotResource`, `NotPrincipal`).
        no: String,
    },
    /// A value that should be a string or a list of strings (the JSON as found).
    #[error("expected a string or a list of strings, found {0}")]
    NotStrings(String),
    /// `Principal` is neither `"*"` nor an object (the JSON as found).
    #[error("Principal {0} is neither \"*\" nor an object")]
    Principal(String),
    /// A `Principal` key other than `AWS`, `Service`, `Federated` and `CanonicalUser`.
    #[error("unknown principal type {0:?}")]
    PrincipalType(String),
    /// `Condition` is not an object (the JSON as found).
    #[error("Condition {0} is not an object")]
    Condition(String),
    /// The block under a condition operator is not an object of keys.
    #[error("Condition {op}: {keys} is not an object")]
    ConditionKeys {
        /// The condition operator (`StringEquals`).
        op: String,
        /// The JSON found under it.
        keys: String,
    },
    /// A `ForAllValues:` or `ForAnyValue:` operator (the operator as written).
    #[error("set operator {0} is not supported by the local evaluator")]
    SetOperator(String),
    /// `Null` with values other than `"true"` / `"false"` (the values found).
    #[error("Null takes \"true\" or \"false\", not {0:?}")]
    NullValue(Vec<String>),
    /// A condition operator outside the supported list (numeric, date, IP, …), as written.
    #[error("condition operator {0} is not supported by the local evaluator")]
    Operator(String),
}

/// What one policy says about a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Sids of matching Allow statements.
    pub allows: Vec<String>,
    /// Sids of matching Deny statements.
    pub denies: Vec<String>,
}

impl Verdict {
    /// Whether some Allow statement matches (a Deny may still win).
    pub fn allows(&self) -> bool {
        !self.allows.is_empty()
    }
    /// Whether some Deny statement matches (an explicit deny, which wins over any allow).
    pub fn denies(&self) -> bool {
        !self.denies.is_empty()
    }
}

/// Which statements of `policy` apply to `req`. `resource_policy`: the statements must also name
/// the caller in `Principal` (identity policies have no `Principal`).
pub fn evaluate(
    policy: &Value,
    req: &Request,
    resource_policy: bool,
) -> Result<Verdict, PolicyError> {
    let statements: Vec<&Value> = match &policy["Statement"] {
        Value::Array(a) => a.iter().collect(),
        o @ Value::Object(_) => vec![o],
        _ => {
            return Err(PolicyError {
                sid: "-".into(),
                problem: Unsupported::NoStatement,
            });
        }
    };
    let mut v = Verdict::default();
    for (i, st) in statements.into_iter().enumerate() {
        let sid = st["Sid"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("#{i}"));
        let err = |problem: Unsupported| PolicyError {
            sid: sid.clone(),
            problem,
        };
        if st.get("NotPrincipal").is_some() {
            return Err(err(Unsupported::NotPrincipal));
        }
        if resource_policy {
            let Some(p) = st.get("Principal") else {
                return Err(err(Unsupported::NoPrincipal));
            };
            if !principal_matches(p, req.caller).map_err(err)? {
                continue;
            }
        }
        if !element_matches(st, "Action", "NotAction", req.action, true, false).map_err(err)? {
            continue;
        }
        // Trust policies have no Resource (the role is the resource).
        if !element_matches(st, "Resource", "NotResource", req.resource, false, true)
            .map_err(err)?
        {
            continue;
        }
        if let Some(c) = st.get("Condition")
            && !conditions_hold(c, req).map_err(err)?
        {
            continue;
        }
        match st["Effect"].as_str() {
            Some("Allow") => v.allows.push(sid),
            Some("Deny") => v.denies.push(sid),
            other => return Err(err(Unsupported::Effect(other.map(str::to_string)))),
        }
    }
    Ok(v)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn strings(v: &Value) -> Result<Vec<String>, Unsupported> {
    let bad = || Unsupported::NotStrings(v.to_string());
    match v {
        Value::Array(a) => a.iter().map(|x| scalar(x).ok_or_else(bad)).collect(),
        other => scalar(other).map(|s| vec![s]).ok_or_else(bad),
    }
}

fn element_matches(
    st: &Value,
    yes: &str,
    no: &str,
    value: &str,
    ignore_case: bool,
    absent_matches: bool,
) -> Result<bool, Unsupported> {
    let m = |patterns: &Value| -> Result<bool, Unsupported> {
        Ok(strings(patterns)?
            .iter()
            .any(|p| glob(p, value, ignore_case)))
    };
    match (st.get(yes), st.get(no)) {
        (Some(p), None) => m(p),
        (None, Some(p)) => Ok(!m(p)?),
        (None, None) if absent_matches => Ok(true),
        (None, None) => Err(Unsupported::NeitherElement {
            yes: yes.to_string(),
            no: no.to_string(),
        }),
        (Some(_), Some(_)) => Err(Unsupported::BothElements {
            yes: yes.to_string(),
            no: no.to_string(),
        }),
    }
}

fn principal_matches(p: &Value, caller: Caller) -> Result<bool, Unsupported> {
    if p.as_str() == Some("*") {
        return Ok(true);
    }
    let Value::Object(map) = p else {
        return Err(Unsupported::Principal(p.to_string()));
    };
    for (kind, names) in map {
        let names = strings(names)?;
        let hit = match (kind.as_str(), caller) {
            ("AWS", Caller::Aws(arn)) => names.iter().any(|n| {
                n == "*"
                    || n == arn
                    || account_of(arn).is_some_and(|a| {
                        n == a || *n == format!("arn:{}:iam::{a}:root", partition_of(arn))
                    })
            }),
            ("AWS", Caller::Service(_)) => names.iter().any(|n| n == "*"),
            ("Service", Caller::Service(s)) => names.iter().any(|n| n == s),
            ("Service", Caller::Aws(_)) | ("Federated" | "CanonicalUser", _) => false,
            (other, _) => return Err(Unsupported::PrincipalType(other.to_string())),
        };
        if hit {
            return Ok(true);
        }
    }
    Ok(false)
}

fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

fn partition_of(arn: &str) -> &str {
    arn.split(':').nth(1).unwrap_or("aws")
}

fn conditions_hold(cond: &Value, req: &Request) -> Result<bool, Unsupported> {
    let Value::Object(ops) = cond else {
        return Err(Unsupported::Condition(cond.to_string()));
    };
    for (op, keys) in ops {
        let Value::Object(keys) = keys else {
            return Err(Unsupported::ConditionKeys {
                op: op.clone(),
                keys: keys.to_string(),
            });
        };
        for (key, want) in keys {
            let want = strings(want)?;
            if !operator_holds(op, req.lookup(key), &want)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// One operator on one key: `have` is the request's value (if present), `want` the policy's.
pub fn operator_holds(op: &str, have: Option<&str>, want: &[String]) -> Result<bool, Unsupported> {
    if op.starts_with("ForAllValues:") || op.starts_with("ForAnyValue:") {
        return Err(Unsupported::SetOperator(op.to_string()));
    }
    let (base, if_exists) = match op.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (op, false),
    };
    if base == "Null" {
        let want_absent = match want {
            [w] if w.eq_ignore_ascii_case("true") => true,
            [w] if w.eq_ignore_ascii_case("false") => false,
            _ => return Err(Unsupported::NullValue(want.to_vec())),
        };
        return Ok(have.is_none() == want_absent);
    }
    type Cmp = fn(&str, &str) -> bool;
    let (negated, cmp): (bool, Cmp) = match base {
        "StringEquals" => (false, |w, h| w == h),
        "StringNotEquals" => (true, |w, h| w == h),
        "StringEqualsIgnoreCase" => (false, |w, h| w.eq_ignore_ascii_case(h)),
        "StringNotEqualsIgnoreCase" => (true, |w, h| w.eq_ignore_ascii_case(h)),
        "StringLike" => (false, |w, h| glob(w, h, false)),
        "StringNotLike" => (true, |w, h| glob(w, h, false)),
        // ArnEquals and ArnLike behave alike: each of the six colon-separated parts is matched
        // on its own, wildcards allowed.
        "ArnEquals" | "ArnLike" => (false, arn_like),
        "ArnNotEquals" | "ArnNotLike" => (true, arn_like),
        "Bool" => (false, |w, h| w.eq_ignore_ascii_case(h)),
        other => {
            return Err(Unsupported::Operator(other.to_string()));
        }
    };
    let Some(have) = have else {
        return Ok(if_exists || negated);
    };
    let any = want.iter().any(|w| cmp(w, have));
    Ok(if negated { !any } else { any })
}

fn arn_like(pattern: &str, arn: &str) -> bool {
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == 6 && a.len() == 6 && p.iter().zip(&a).all(|(p, a)| glob(p, a, false))
}

/// IAM wildcard matching: `*` any run of characters (`/` and `:` included), `?` one character.
pub fn glob(pattern: &str, s: &str, ignore_case: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    let eq = |a: char, b: char| {
        if ignore_case {
            a.to_lowercase().eq(b.to_lowercase())
        } else {
            a == b
        }
    };
    // Iterative matcher with one backtrack point (linear in practice, no recursion).
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || eq(p[pi], s[si])) {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req<'a>(action: &'a str, resource: &'a str, c: &'a [(String, String)]) -> Request<'a> {
        Request {
            caller: Caller::Aws("arn:aws:iam::123456789012:role/r"),
            action,
            resource,
            context: c,
        }
    }

    fn w(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn wildcards_match_like_iam() {
        assert!(glob("s3:*", "s3:GetObject", true));
        assert!(glob("S3:get*", "s3:GetObject", true));
        assert!(!glob("S3:get*", "s3:GetObject", false));
        assert!(glob(
            "arn:aws:s3:::b/artifacts/*",
            "arn:aws:s3:::b/artifacts/ferry-gate",
            false
        ));
        assert!(!glob(
            "arn:aws:s3:::b/artifacts/*",
            "arn:aws:s3:::b/sessions/x",
            false
        ));
        assert!(glob("a?c", "abc", false) && !glob("a?c", "ac", false));
        assert!(glob("*", "", false) && glob("a*b*c", "aXXbYYc", false));
        assert!(!glob("a*b*c", "aXXbYY", false));
        assert!(glob(
            "log-group:/aws/lambda/f:*",
            "log-group:/aws/lambda/f:log-stream:x",
            false
        ));
    }

    #[test]
    fn string_operators_and_missing_keys() {
        let have = Some("vpce-1");
        assert!(operator_holds("StringEquals", have, &w(&["vpce-1"])).unwrap());
        assert!(!operator_holds("StringEquals", have, &w(&["VPCE-1"])).unwrap());
        assert!(operator_holds("StringEqualsIgnoreCase", have, &w(&["VPCE-1"])).unwrap());
        assert!(operator_holds("StringEquals", have, &w(&["x", "vpce-1"])).unwrap());
        assert!(!operator_holds("StringNotEquals", have, &w(&["x", "vpce-1"])).unwrap());
        assert!(operator_holds("StringNotEquals", have, &w(&["x"])).unwrap());
        assert!(operator_holds("StringLike", have, &w(&["vpce-*"])).unwrap());
        assert!(!operator_holds("StringNotLike", have, &w(&["vpce-*"])).unwrap());
        // A missing key: positive false, negated true, IfExists true.
        assert!(!operator_holds("StringEquals", None, &w(&["vpce-1"])).unwrap());
        assert!(operator_holds("StringNotEquals", None, &w(&["vpce-1"])).unwrap());
        assert!(operator_holds("StringEqualsIfExists", None, &w(&["vpce-1"])).unwrap());
        assert!(!operator_holds("StringEqualsIfExists", Some("x"), &w(&["vpce-1"])).unwrap());
    }

    #[test]
    fn arn_bool_and_null_operators() {
        let role = "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/R";
        assert!(operator_holds("ArnEquals", Some(role), &w(&[role])).unwrap());
        assert!(
            operator_holds(
                "ArnLike",
                Some(role),
                &w(&["arn:aws:iam::*:role/aws-reserved/*"])
            )
            .unwrap()
        );
        assert!(!operator_holds("ArnLike", Some(role), &w(&["arn:aws:iam::*:role/R"])).unwrap());
        assert!(
            !operator_holds(
                "ArnNotEquals",
                Some(role),
                &w(&["arn:aws:iam::1:role/x", role])
            )
            .unwrap()
        );
        assert!(
            operator_holds("ArnNotEquals", Some(role), &w(&["arn:aws:iam::1:role/x"])).unwrap()
        );
        assert!(operator_holds("ArnNotEquals", None, &w(&[role])).unwrap());
        assert!(!operator_holds("ArnEquals", Some("not-an-arn"), &w(&["*"])).unwrap());
        assert!(operator_holds("Bool", Some("FALSE"), &w(&["false"])).unwrap());
        assert!(!operator_holds("Bool", None, &w(&["false"])).unwrap());
        assert!(operator_holds("Null", None, &w(&["true"])).unwrap());
        assert!(!operator_holds("Null", Some("*"), &w(&["true"])).unwrap());
        assert!(operator_holds("Null", Some("*"), &w(&["false"])).unwrap());
        assert!(operator_holds("Null", Some("*"), &w(&["maybe"])).is_err());
        assert!(operator_holds("NumericLessThan", Some("1"), &w(&["2"])).is_err());
        assert!(operator_holds("ForAnyValue:StringEquals", Some("1"), &w(&["1"])).is_err());
    }

    #[test]
    fn explicit_deny_wins_and_conditions_and_together() {
        let policy = json!({"Statement": [
            {"Sid": "A", "Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Sid": "D", "Effect": "Deny", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/*",
             "Condition": {"StringNotEquals": {"aws:SourceVpce": "vpce-1"}, "Null": {"s3:if-none-match": "false"}}}
        ]});
        let c = ctx(&[("s3:if-none-match", "*")]);
        let v = evaluate(&policy, &req("s3:PutObject", "arn:aws:s3:::b/k", &c), false).unwrap();
        assert_eq!((v.allows, v.denies), (w(&["A"]), w(&["D"])));
        // Both conditions must hold: through the endpoint, the deny does not apply.
        let c = ctx(&[("s3:if-none-match", "*"), ("AWS:SOURCEVPCE", "vpce-1")]);
        let v = evaluate(&policy, &req("s3:PutObject", "arn:aws:s3:::b/k", &c), false).unwrap();
        assert!(v.allows() && !v.denies());
        // NotResource / NotAction.
        let p = json!({"Statement": {"Effect": "Deny", "NotAction": "s3:Get*", "NotResource": "arn:aws:s3:::b/artifacts/*"}});
        assert!(
            evaluate(&p, &req("s3:PutObject", "arn:aws:s3:::b/k", &[]), false)
                .unwrap()
                .denies()
        );
        assert!(
            !evaluate(&p, &req("s3:GetObject", "arn:aws:s3:::b/k", &[]), false)
                .unwrap()
                .denies()
        );
        assert!(
            !evaluate(
                &p,
                &req("s3:PutObject", "arn:aws:s3:::b/artifacts/x", &[]),
                false
            )
            .unwrap()
            .denies()
        );
    }

    #[test]
    fn resource_policies_match_their_principal() {
        let p = json!({"Statement": [
            {"Sid": "S", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "lambda:InvokeFunction", "Resource": "f"},
            {"Sid": "U", "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::123456789012:user/u"]}, "Action": "*", "Resource": "*"},
            {"Sid": "R", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"}, "Action": "*", "Resource": "*"}
        ]});
        let mut r = req("lambda:InvokeFunction", "f", &[]);
        r.caller = Caller::Service("events.amazonaws.com");
        assert_eq!(evaluate(&p, &r, true).unwrap().allows, w(&["S"]));
        r.caller = Caller::Service("sns.amazonaws.com");
        assert!(!evaluate(&p, &r, true).unwrap().allows());
        r.caller = Caller::Aws("arn:aws:iam::123456789012:user/u");
        assert_eq!(evaluate(&p, &r, true).unwrap().allows, w(&["U"]));
        r.caller = Caller::Aws("arn:aws:iam::999999999999:role/any");
        assert_eq!(evaluate(&p, &r, true).unwrap().allows, w(&["R"]));
        // A trust policy has no Resource element: it applies to the role it is attached to.
        let trust = json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
        r.caller = Caller::Service("ec2.amazonaws.com");
        r.action = "sts:AssumeRole";
        assert!(evaluate(&trust, &r, true).unwrap().allows());
        let bad = json!({"Statement": [{"Effect": "Allow", "NotPrincipal": {"AWS": "x"}, "Action": "*", "Resource": "*"}]});
        assert!(evaluate(&bad, &r, true).is_err());
    }
}
