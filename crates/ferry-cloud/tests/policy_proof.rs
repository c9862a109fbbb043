//! Runs the policy proof against the documents this crate generates: parliament finds nothing,
//! every case of the authorization matrix comes out as DESIGN.md's trust table says (evaluated by
//! principalmapper), every statement is needed by some case, and moto (IAM checks on) lets the
//! backup user's keys invoke but not touch S3, EC2 or IAM. The Python side lives in
//! scripts/policy-proof/ and runs in the project's .venv (scripts/install-deps.sh).

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    ferry_testkit::workspace_root()
}

fn python() -> PathBuf {
    let root = workspace_root();
    let py = root.join(".venv/bin/python");
    if !py.exists() {
        let st = Command::new("bash")
            .arg(root.join("scripts/install-deps.sh"))
            .status()
            .expect("running scripts/install-deps.sh");
        assert!(st.success(), "scripts/install-deps.sh failed");
    }
    py
}

fn run(script: &str, dir: &Path) -> String {
    let out = Command::new(python())
        .arg(workspace_root().join("scripts/policy-proof").join(script))
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

#[test]
fn parliament_and_evaluator_accept_every_document_and_matrix_case() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = ferry_cloud::policy::example_inputs().unwrap();
    ferry_cloud::policy::dump_documents(&inputs, dir.path()).unwrap();
    ferry_cloud::verify::dump_matrix(&inputs, dir.path()).unwrap();
    let out = run("proof.py", dir.path());
    assert!(out.contains("0 findings"), "{out}");
    let cases = out
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| #"))
        .count();
    assert!(cases >= 40, "only {cases} matrix cases:\n{out}");
    assert!(out.contains(&format!("{cases} passed, 0 failed")), "{out}");

    // docs/SECURITY.md prints the same matrix (regenerate it with scripts/policy-proof/run.sh).
    let doc = std::fs::read_to_string(workspace_root().join("docs/SECURITY.md")).unwrap();
    // Only the matrix's own section: other tables of the file may have numbered rows too.
    let doc = doc
        .split_once("### Authorization matrix")
        .map(|(_, rest)| rest.split("\n### ").next().unwrap_or(rest))
        .unwrap_or_else(|| panic!("docs/SECURITY.md has no '### Authorization matrix' section"))
        .to_string();
    let rows = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("| ") && l[2..].starts_with(|c: char| c.is_ascii_digit()))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        rows(&doc),
        rows(&out),
        "docs/SECURITY.md's matrix is stale: paste the output of scripts/policy-proof/run.sh"
    );
}

#[test]
fn proof_catches_a_weakened_bucket_policy() {
    // The proof must be able to fail: drop the no-overwrite statement and expect a mismatch.
    let dir = tempfile::tempdir().unwrap();
    let inputs = ferry_cloud::policy::example_inputs().unwrap();
    ferry_cloud::policy::dump_documents(&inputs, dir.path()).unwrap();
    ferry_cloud::verify::dump_matrix(&inputs, dir.path()).unwrap();
    let path = dir.path().join("backup-bucket-policy.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let st = doc["Statement"].as_array_mut().unwrap();
    let before = st.len();
    st.retain(|s| s["Sid"] != "DenyPutWithoutIfNoneMatch");
    assert_eq!(st.len(), before - 1);
    std::fs::write(&path, serde_json::to_string(&doc).unwrap()).unwrap();
    let out = Command::new(python())
        .arg(workspace_root().join("scripts/policy-proof/proof.py"))
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "weakened policy passed:\n{stdout}");
    assert!(stdout.contains("MISMATCH"), "{stdout}");
}

#[test]
fn moto_with_iam_checks_denies_the_backup_user_everything_but_invoke() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = ferry_cloud::policy::example_inputs().unwrap();
    ferry_cloud::policy::dump_documents(&inputs, dir.path()).unwrap();
    ferry_cloud::verify::dump_matrix(&inputs, dir.path()).unwrap();
    let out = run("moto_check.py", dir.path());
    assert!(out.contains(" passed, 0 failed"), "{out}");
    assert!(out.contains("backup-user cannot s3:GetObject"), "{out}");
    assert!(out.contains("backup-user can invoke"), "{out}");
}
