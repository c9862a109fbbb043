//! Each crate's header says what it must never depend on; this test holds the headers to it.
//! It reads `cargo metadata` (the resolved graph, all features), follows every crate's normal
//! and build dependencies transitively (dev-dependencies do not ship), and fails when a crate
//! reaches something its header forbids. Each rule below quotes the header it checks; change
//! both together.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// SSH libraries (Ferry runs the system's OpenSSH instead; `ssh-key`, a key-format crate, is
/// not one).
const SSH_LIBRARIES: &[&str] = &[
    "ssh2",
    "libssh2-sys",
    "russh",
    "russh-keys",
    "thrussh",
    "thrussh-keys",
    "openssh",
    "openssh-sftp-client",
    "async-ssh2-lite",
    "makiko",
];

/// What a name in a rule stands for.
fn matches(rule: &str, krate: &str) -> bool {
    match rule {
        "AWS" => krate.starts_with("aws-"),
        "AWS SDK" => krate.starts_with("aws-sdk-"),
        "SSH library" => SSH_LIBRARIES.contains(&krate),
        // Ferry's own SSH layers count as "SSH" too.
        "SSH" => {
            SSH_LIBRARIES.contains(&krate)
                || matches!(krate, "ferry-ssh" | "ferry-remote" | "ferry-collect")
        }
        // ferry-contract sits under every other Ferry crate.
        "any other Ferry crate" => krate.starts_with("ferry-") && krate != "ferry-contract",
        name => krate == name,
    }
}

/// (crate, header file, forbidden, the header's words)
const RULES: &[(&str, &str, &[&str], &str)] = &[
    (
        "ferry-repo",
        "crates/ferry-repo/src/lib.rs",
        &["AWS", "SSH", "ferry-s3", "ferry-gate", "ferry-cloud"],
        "Must never depend on AWS or SSH crates",
    ),
    (
        "ferry-proto",
        "crates/ferry-proto/src/lib.rs",
        &["AWS", "SSH", "ferry-repo"],
        "Must never depend on AWS, SSH or the repository engine.",
    ),
    (
        "ferry-collect",
        "crates/ferry-collect/src/lib.rs",
        &["AWS", "SSH library", "ferry-cloud", "ferry-s3"],
        "Must never depend on AWS (or any cloud crate), nor on an SSH library",
    ),
    (
        "ferry-remote",
        "crates/ferry-remote/src/lib.rs",
        &["AWS", "SSH library"],
        "Must never depend on AWS crates or an SSH library",
    ),
    (
        "ferry-ssh",
        "crates/ferry-ssh/src/lib.rs",
        &["AWS", "SSH library"],
        "Must never depend on AWS crates or an SSH library.",
    ),
    (
        "ferry-s3",
        "crates/ferry-s3/src/lib.rs",
        &["SSH", "ferry-gate", "ferry-cli"],
        "Must never depend on SSH crates, the gate or the CLI.",
    ),
    (
        "ferry-gate",
        "crates/ferry-gate/src/lib.rs",
        &["SSH", "ferry-cli"],
        "Must never depend on SSH crates,\n//! the CLI",
    ),
    (
        "ferry-cloud",
        "crates/ferry-cloud/src/lib.rs",
        &["SSH", "ferry-cli"],
        "Must never depend on SSH, on the repository engine's internals or on the CLI.",
    ),
    (
        "ferry-lambda",
        "crates/ferry-lambda/src/main.rs",
        &["ferry-repo", "SSH", "ferry-cli"],
        "Must never depend on\n//! the repository engine, SSH crates, the CLI",
    ),
    (
        "ferry-contract",
        "crates/ferry-contract/src/lib.rs",
        &["AWS", "SSH", "ferry-repo", "any other Ferry crate"],
        "Must never depend on the AWS SDK, SSH, the repository engine\n//! or any other Ferry crate",
    ),
    (
        "ferry-run",
        "crates/ferry-run/src/lib.rs",
        &[
            "ferry-cli",
            "clap",
            "indicatif",
            "ferry-cloud",
            "ferry-s3",
            "aws-sdk-s3",
            "aws-sdk-ec2",
            "aws-sdk-iam",
            "aws-sdk-eventbridge",
            "aws-sdk-cloudwatchlogs",
        ],
        "Must never depend on the CLI (ferry-cli, clap, indicatif), the test kit, or any AWS\n//! service but Lambda",
    ),
    (
        "ferry-localcloud",
        "crates/ferry-localcloud/src/main.rs",
        &["AWS SDK"],
        "it never uses the AWS SDK",
    ),
];

/// Product crates: none may depend on the test kit or the local-cloud tooling.
const PRODUCT: &[&str] = &[
    "ferry-cli",
    "ferry-contract",
    "ferry-run",
    "ferry-repo",
    "ferry-proto",
    "ferry-collect",
    "ferry-remote",
    "ferry-ssh",
    "ferry-s3",
    "ferry-gate",
    "ferry-cloud",
    "ferry-lambda",
];

fn root() -> PathBuf {
    ferry_testkit::workspace_root()
}

/// Workspace crate name → every crate it reaches through normal or build dependencies.
fn closures() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--all-features",
            "--locked",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let name_of: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    // id → ids of its shipped dependencies
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].as_str() != Some("dev"))
            })
            .map(|d| d["pkg"].as_str().unwrap())
            .collect();
        edges.insert(node["id"].as_str().unwrap(), deps);
    }
    let mut result = BTreeMap::new();
    for member in meta["workspace_members"].as_array().unwrap() {
        let start = member.as_str().unwrap();
        let mut seen = BTreeSet::new();
        let mut todo = vec![start];
        while let Some(id) = todo.pop() {
            for &d in edges.get(id).map(Vec::as_slice).unwrap_or(&[]) {
                if seen.insert(d) {
                    todo.push(d);
                }
            }
        }
        result.insert(
            name_of[start].to_string(),
            seen.iter().map(|id| name_of[id].to_string()).collect(),
        );
    }
    result
}

#[test]
fn no_crate_depends_on_what_its_header_forbids() {
    let all = closures();
    let mut broken = Vec::new();
    for (krate, header, forbidden, words) in RULES {
        let text = std::fs::read_to_string(root().join(header)).unwrap();
        assert!(
            text.contains(words),
            "{header} no longer says {words:?}: update this rule with the header"
        );
        let reach = all
            .get(*krate)
            .unwrap_or_else(|| panic!("{krate} is not a workspace crate"));
        for dep in reach {
            if let Some(rule) = forbidden.iter().find(|r| matches(r, dep)) {
                broken.push(format!(
                    "{krate} depends on {dep} ({rule}); {header}: {words:?}"
                ));
            }
        }
    }
    for krate in PRODUCT {
        let reach = &all[*krate];
        for tooling in ["ferry-testkit", "ferry-localcloud"] {
            if reach.contains(tooling) {
                broken.push(format!(
                    "product crate {krate} depends on {tooling} (crates/ferry-testkit/src/lib.rs: \
                     only as a dev-dependency)"
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_rules_catch_a_forbidden_dependency() {
    // Negative control: the matcher recognises what the rules name.
    assert!(matches("AWS", "aws-sdk-s3") && matches("AWS", "aws-smithy-types"));
    assert!(matches("AWS SDK", "aws-sdk-ec2") && !matches("AWS SDK", "aws-smithy-types"));
    assert!(matches("SSH", "ferry-remote") && matches("SSH", "russh"));
    assert!(matches("SSH library", "ssh2") && !matches("SSH library", "ferry-ssh"));
    assert!(!matches("SSH", "ssh-key") && !matches("SSH library", "ssh-key"));
    // And the graph is real: the gate ships with the S3 sink, which reaches the AWS SDK.
    let all = closures();
    assert!(all["ferry-gate"].contains("aws-sdk-s3"));
    assert!(all["ferry-cloud"].contains("aws-sdk-iam"));
    assert!(!all["ferry-repo"].iter().any(|d| d.starts_with("aws-")));
}

/// Direct normal (shipped, optional included) dependencies between workspace crates.
fn direct_edges() -> BTreeSet<(String, String)> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "cargo metadata failed");
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let members: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut edges = BTreeSet::new();
    for p in packages {
        let from = p["name"].as_str().expect("name");
        for d in p["dependencies"].as_array().expect("dependencies") {
            let to = d["name"].as_str().expect("dependency name");
            if d["kind"].is_null() && members.contains(to) {
                edges.insert((from.to_string(), to.to_string()));
            }
        }
    }
    edges
}

/// The edges drawn in docs/ARCHITECTURE.md's mermaid picture (`id[crate]` nodes, `a --> b`).
fn drawn_edges(doc: &str) -> BTreeSet<(String, String)> {
    let mut names = BTreeMap::new();
    let mut pairs = Vec::new();
    for line in doc.lines().map(str::trim) {
        if let Some((id, rest)) = line.split_once('[')
            && let Some(name) = rest.strip_suffix(']')
            && name.starts_with("ferry-")
        {
            names.insert(id.to_string(), name.to_string());
        } else if let Some((a, b)) = line.split_once(" --> ") {
            pairs.push((a.trim().to_string(), b.trim().to_string()));
        }
    }
    pairs
        .into_iter()
        .map(|(a, b)| {
            let name = |id: &str| {
                names
                    .get(id)
                    .unwrap_or_else(|| panic!("ARCHITECTURE.md: edge from/to unknown node {id}"))
                    .clone()
            };
            (name(&a), name(&b))
        })
        .collect()
}

#[test]
fn the_architecture_picture_is_the_dependency_graph() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let drawn = drawn_edges(&doc);
    let real = direct_edges();
    let missing: Vec<_> = real.difference(&drawn).collect();
    let extra: Vec<_> = drawn.difference(&real).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/ARCHITECTURE.md's picture differs from Cargo.toml: not drawn {missing:?}; \
         drawn but not a dependency {extra:?}"
    );
    // Negative control: a picture with one arrow less or one more is caught.
    let mut fewer = drawn.clone();
    fewer.pop_first();
    assert_ne!(fewer, real);
    let mut more = drawn.clone();
    more.insert(("ferry-repo".into(), "ferry-cli".into()));
    assert_ne!(more, real);
}
