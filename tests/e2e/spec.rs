//! `specs/execd-api.yaml` against the server's source: every error code the
//! host can send is in the spec's `ErrorCode` enum (schemathesis flags a
//! missing one only when its fuzzing happens to provoke it), and the enum
//! and the list that explains it name the same codes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the repository")
        .to_path_buf()
}

/// A code as the contract spells them: `SESSION_BUSY`, `NOT_FOUND`.
fn is_code(s: &str) -> bool {
    s.contains('_')
        && s.len() >= 6
        && s.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        && !s.starts_with('_')
}

/// The `ErrorCode` schema: its enum, and the codes its description lists
/// as "- `CODE` (status)".
fn spec_codes() -> (BTreeSet<String>, BTreeSet<String>) {
    let spec = std::fs::read_to_string(repo().join("specs/execd-api.yaml")).expect("the spec");
    let start = spec
        .find("\n    ErrorCode:\n")
        .expect("an ErrorCode schema");
    // The schema's lines, up to the next schema (indented four spaces).
    let lines: Vec<&str> = spec[start + 1..]
        .lines()
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("     "))
        .collect();
    let mut listed = BTreeSet::new();
    let mut enumerated = BTreeSet::new();
    let mut in_enum = false;
    for line in lines {
        let trimmed = line.trim();
        if trimmed == "enum:" {
            in_enum = true;
            continue;
        }
        if in_enum {
            if let Some(code) = trimmed.strip_prefix("- ") {
                enumerated.insert(code.to_string());
            }
        } else if let Some(rest) = trimmed.strip_prefix("- `")
            && let Some((code, _)) = rest.split_once('`')
        {
            listed.insert(code.to_string());
        }
    }
    (enumerated, listed)
}

/// String literals that look like codes on lines of `host/src` that also
/// name a status code, or just after one (`ApiError::new(StatusCode::X,
/// "CODE", ...)` over one line or several).
fn source_codes() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    let mut dirs = vec![repo().join("host/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("a source directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a source file");
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let near_status = lines[i.saturating_sub(2)..=i]
                    .iter()
                    .any(|l| l.contains("StatusCode::"));
                if !near_status {
                    continue;
                }
                for literal in line.split('"').skip(1).step_by(2) {
                    if is_code(literal) {
                        codes.insert(literal.to_string());
                    }
                }
            }
        }
    }
    codes
}

#[test]
fn the_spec_names_every_error_code_the_host_sends() {
    let (enumerated, listed) = spec_codes();
    assert!(enumerated.len() > 20, "parsed the enum: {enumerated:?}");
    assert_eq!(
        enumerated, listed,
        "the ErrorCode enum and its description disagree"
    );
    let sent = source_codes();
    assert!(
        sent.contains("SESSION_BUSY") && sent.contains("INVALID_IDEMPOTENCY_KEY"),
        "found the codes in the source: {sent:?}"
    );
    let missing: Vec<&String> = sent.difference(&enumerated).collect();
    assert!(
        missing.is_empty(),
        "codes the host sends that specs/execd-api.yaml lacks: {missing:?}"
    );
}
