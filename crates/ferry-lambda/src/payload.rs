//! Validation of the functions' JSON payloads (the types are `ferry_contract::lambda`).
//! Unknown fields are refused; every error names the field and never echoes key material.

use ferry_contract::lambda::{BuildRequest, CleanRequest};
use ssh_key::{Algorithm, PublicKey};

use crate::FerryError;

/// Serde would also fill a struct from a JSON array, positionally: only objects are payloads.
fn object(v: &serde_json::Value) -> Result<(), FerryError> {
    if v.is_object() {
        Ok(())
    } else {
        Err(FerryError::BadRequest(
            "payload: expected a JSON object".into(),
        ))
    }
}

pub fn parse_build(v: serde_json::Value) -> Result<BuildRequest, FerryError> {
    object(&v)?;
    let r: BuildRequest =
        serde_json::from_value(v).map_err(|e| FerryError::BadRequest(format!("payload: {e}")))?;
    check_site(&r.site)?;
    Ok(r)
}

pub fn parse_clean(v: serde_json::Value) -> Result<CleanRequest, FerryError> {
    object(&v)?;
    let r: CleanRequest =
        serde_json::from_value(v).map_err(|e| FerryError::BadRequest(format!("payload: {e}")))?;
    match (&r.session, r.sweep) {
        (Some(_), true) => Err(FerryError::BadRequest(
            "payload: give either \"session\" or \"sweep\": true, not both".into(),
        )),
        (None, false) => Err(FerryError::BadRequest(
            "payload: give \"session\": ID or \"sweep\": true".into(),
        )),
        (Some(s), false) => {
            check_session_id(s)?;
            Ok(r)
        }
        (None, true) => Ok(r),
    }
}

/// A site name: 1–63 characters of `a-z 0-9 . _ -`, starting and ending with a letter or digit,
/// no `..` (it becomes an S3 prefix and a tag value).
pub fn check_site(site: &str) -> Result<(), FerryError> {
    let ok = !site.is_empty()
        && site.len() <= 63
        && site
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && site.as_bytes()[0].is_ascii_alphanumeric()
        && site.as_bytes()[site.len() - 1].is_ascii_alphanumeric()
        && !site.contains("..");
    if ok {
        Ok(())
    } else {
        let shown: String = site.chars().take(64).collect();
        Err(FerryError::BadRequest(format!(
            "site {shown:?} is not a valid site name (1-63 of a-z 0-9 . _ -, starting and ending with a letter or digit)"
        )))
    }
}

/// Session ids as ferry-build makes them ([`ferry_contract::lambda::is_session_id`]).
pub fn check_session_id(s: &str) -> Result<(), FerryError> {
    if ferry_contract::lambda::is_session_id(s) {
        Ok(())
    } else {
        let shown: String = s.chars().take(64).collect();
        Err(FerryError::BadRequest(format!(
            "session {shown:?} is not a Ferry session id (fs-…)"
        )))
    }
}

/// The TTL in minutes: the caller's, or the default; refused above the function's limit.
pub fn check_ttl(ttl: Option<u32>, default: u32, max: u32) -> Result<u32, FerryError> {
    match ttl {
        None => Ok(default),
        Some(0) => Err(FerryError::BadRequest(
            "ttl_minutes must be at least 1".into(),
        )),
        Some(t) if t > max => Err(FerryError::BadRequest(format!(
            "ttl_minutes {t} exceeds this function's limit of {max} minutes"
        ))),
        Some(t) => Ok(t),
    }
}

/// Parse the caller's public key; only one ssh-ed25519 key line. Returns the key re-encoded
/// (`ssh-ed25519 BASE64`, the caller's comment dropped).
pub fn check_public_key(text: &str) -> Result<String, FerryError> {
    let bad = |m: &str| Err(FerryError::BadRequest(format!("public_key: {m}")));
    if text.contains("PRIVATE KEY") {
        return bad("this is a private key; send only the public key line (the .pub file)");
    }
    let line = text.trim();
    if line.is_empty() {
        return bad("is empty");
    }
    if line.contains('\n') || line.contains('\r') {
        return bad("must be exactly one line");
    }
    let key = match PublicKey::from_openssh(line) {
        Ok(k) => k,
        Err(e) => return bad(&format!("not an OpenSSH public key line ({e})")),
    };
    if key.algorithm() != Algorithm::Ed25519 {
        return bad(&format!(
            "only ssh-ed25519 keys are accepted, not {}",
            key.algorithm()
        ));
    }
    let mut key = key;
    key.set_comment("");
    match key.to_openssh() {
        Ok(s) => Ok(s.trim().to_string()),
        Err(e) => bad(&format!("cannot re-encode the key ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(r: Result<impl std::fmt::Debug, FerryError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let e = msg(parse_build(
            json!({"site": "home", "instance_type": "m5.24xlarge"}),
        ));
        assert!(e.contains("unknown field `instance_type`"), "{e}");
        let e = msg(parse_clean(json!({"session": "fs-1", "force": true})));
        assert!(e.contains("unknown field `force`"), "{e}");
    }

    #[test]
    fn site_names() {
        for good in ["home", "office-1", "a", "lab.example_2"] {
            check_site(good).unwrap();
        }
        for bad in [
            "",
            "Home",
            "../x",
            "a/b",
            "-a",
            "a-",
            "a..b",
            "x y",
            &"a".repeat(64),
        ] {
            assert!(
                msg(check_site(bad)).contains("not a valid site name"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ttl_limits() {
        assert_eq!(check_ttl(None, 30, 60).unwrap(), 30);
        assert_eq!(check_ttl(Some(60), 30, 60).unwrap(), 60);
        assert!(
            msg(check_ttl(Some(61), 30, 60))
                .contains("exceeds this function's limit of 60 minutes")
        );
        assert!(msg(check_ttl(Some(0), 30, 60)).contains("at least 1"));
    }

    #[test]
    fn public_keys() {
        let k = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHHJ7v6mV3mSgNS7QOTtzxDCHD/QfhUKpJ6Chy1R5rOk some comment";
        assert_eq!(
            check_public_key(k).unwrap(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHHJ7v6mV3mSgNS7QOTtzxDCHD/QfhUKpJ6Chy1R5rOk"
        );
        assert!(msg(check_public_key("ssh-ed25519 AAAA")).contains("not an OpenSSH public key"));
        assert!(msg(check_public_key(&format!("{k}\n{k}"))).contains("exactly one line"));
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDGl0iCq1PyD+lDH7OfZVZuNdJ0Y+aDTXr1a1ouW5xoC1Wx7I8Ze2DdrNgT9M3UrbyrOHQUqT+VQ2VhQJ8Txe9B9bk2Hm7wJFVNEVsN9xPZJ2fJTGDFlqjCZaKN2MxJyz+F0xA9nbyJXJlMYKL+2iRMbnObsbHLl7dwQBk4xvbRJQ== x";
        let e = msg(check_public_key(rsa));
        assert!(
            e.contains("only ssh-ed25519") || e.contains("not an OpenSSH"),
            "{e}"
        );
        let e = msg(check_public_key(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
        ));
        assert!(e.contains("private key") && !e.contains("b3BlbnNz"), "{e}");
    }

    #[test]
    fn clean_needs_exactly_one_mode() {
        assert!(msg(parse_clean(json!({}))).contains("give \"session\""));
        assert!(msg(parse_clean(json!(["fs-a"]))).contains("expected a JSON object"));
        assert!(msg(parse_build(json!(["home", null, 5]))).contains("expected a JSON object"));
        assert!(msg(parse_clean(json!({"session": "fs-a", "sweep": true}))).contains("not both"));
        assert!(
            msg(parse_clean(json!({"session": "../../etc"}))).contains("not a Ferry session id")
        );
        assert!(parse_clean(json!({"sweep": true})).unwrap().sweep);
    }

    #[test]
    fn the_ids_ferry_build_makes_are_the_ids_ferry_clean_takes() {
        for t in [0, 1_796_000_000, 253_402_300_799] {
            let now = time::OffsetDateTime::from_unix_timestamp(t).unwrap();
            let id = crate::session::new_session_id(now);
            assert!(check_session_id(&id).is_ok(), "{id}");
            assert!(parse_clean(json!({ "session": id })).is_ok(), "{id}");
        }
    }
}
