//! The house rules that can be checked by reading the tree: every module says what it is for,
//! errors are typed outside the binary, input paths never unwrap, audit actions and
//! security-event types are spelled only in their registries, and the API and the gateway
//! reach the store only through the platform's services. (The owned-table registry is checked
//! against the live schema of both backends by the store suite, `schema.rs`.)

use std::path::{Path, PathBuf};

use rampart_core::{AuditAction, SecurityEventType};

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// Every `.rs` file below `dir`, skipping build output.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|name| name != "target") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The library crates (every crate but the binary and the test kit).
fn library_crates() -> Vec<PathBuf> {
    let crates = root().join("crates");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&crates)
        .expect("crates/")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.join("Cargo.toml").is_file())
        .filter(|path| path.file_name().is_some_and(|name| name != "rampart" && name != "rampart-testkit"))
        .collect();
    found.sort();
    assert!(found.len() >= 8, "the library crates were not found: {found:?}");
    found
}

/// The production lines of a source file: everything before a trailing `#[cfg(test)] mod`,
/// with line numbers; nothing for a file of tests.
fn production_lines(path: &Path) -> Vec<(usize, String)> {
    if path.file_name().is_some_and(|name| name == "tests.rs") {
        return Vec::new();
    }
    let text = std::fs::read_to_string(path).expect("read source");
    let lines: Vec<&str> = text.lines().collect();
    let mut kept = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let next = lines.get(index + 1).map(|next| next.trim_start()).unwrap_or_default();
        if line.trim() == "#[cfg(test)]" && next.starts_with("mod ") {
            break;
        }
        if !line.trim_start().starts_with("//") {
            kept.push((index + 1, (*line).to_owned()));
        }
    }
    kept
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

/// The `[dependencies]` section of a manifest (not dev- or build-dependencies).
fn dependencies(manifest: &Path) -> String {
    let text = std::fs::read_to_string(manifest).expect("read manifest");
    let mut section = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with('[') {
            inside = line.trim() == "[dependencies]";
        } else if inside {
            section.push_str(line);
            section.push('\n');
        }
    }
    section
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    let missing: Vec<String> = rust_files(&root().join("crates"))
        .into_iter()
        .filter(|path| !std::fs::read_to_string(path).expect("read").starts_with("//!"))
        .map(|path| relative(&path))
        .collect();
    assert!(missing.is_empty(), "modules without a `//!` line: {missing:#?}");
}

#[test]
fn anyhow_is_for_the_binary_only() {
    let mut offenders = Vec::new();
    for krate in library_crates() {
        if dependencies(&krate.join("Cargo.toml")).lines().any(|line| line.starts_with("anyhow")) {
            offenders.push(relative(&krate.join("Cargo.toml")));
        }
        for path in rust_files(&krate.join("src")) {
            for (number, line) in production_lines(&path) {
                if line.contains("anyhow") {
                    offenders.push(format!("{}:{number}", relative(&path)));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "library crates answer typed errors, not anyhow: {offenders:#?}");
}

#[test]
fn input_paths_never_unwrap() {
    // A panic on input is a denial of service. The crypto crate's two `expect`s state
    // invariants of fixed-size keys and are not reachable from input; every other library
    // crate answers an error instead.
    let patterns = [".unwrap()", ".expect(", "panic!(", "unreachable!(", "unimplemented!(", "todo!("];
    let mut offenders = Vec::new();
    for krate in library_crates() {
        let is_crypto = krate.file_name().is_some_and(|name| name == "rampart-crypto");
        for path in rust_files(&krate.join("src")) {
            for (number, line) in production_lines(&path) {
                let found = patterns.iter().find(|pattern| line.contains(*pattern));
                if let Some(pattern) = found
                    && !(is_crypto && *pattern == ".expect(")
                {
                    offenders.push(format!("{}:{number}: {}", relative(&path), line.trim()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "panicking calls on production paths: {offenders:#?}");
}

#[test]
fn audit_actions_and_event_types_are_spelled_only_in_their_registries() {
    let registry = root().join("crates/rampart-core/src/registry.rs");
    let mut words: Vec<&str> = AuditAction::ALL.iter().map(|action| action.as_str()).collect();
    words.extend(SecurityEventType::ALL.iter().map(|kind| kind.as_str()));
    let mut offenders = Vec::new();
    for krate in library_crates().into_iter().chain([root().join("crates/rampart")]) {
        for path in rust_files(&krate.join("src")) {
            // The API's error codes (SPEC §1) are a vocabulary of their own that happens to
            // share the word `rate_limited`.
            if path == registry || path.ends_with("rampart-api/src/error.rs") {
                continue;
            }
            for (number, line) in production_lines(&path) {
                for word in &words {
                    if line.contains(&format!("\"{word}\"")) {
                        offenders.push(format!("{}:{number}: {word}", relative(&path)));
                    }
                }
            }
        }
    }
    assert!(offenders.is_empty(), "use the registry's variant instead of the word: {offenders:#?}");
}

#[test]
fn the_api_and_the_gateway_reach_the_store_only_through_the_platform() {
    let mut offenders = Vec::new();
    for name in ["rampart-api", "rampart-gateway"] {
        let krate = root().join("crates").join(name);
        if dependencies(&krate.join("Cargo.toml")).lines().any(|line| line.starts_with("rampart-store")) {
            offenders.push(format!("{name}/Cargo.toml"));
        }
        for path in rust_files(&krate.join("src")) {
            for (number, line) in production_lines(&path) {
                if line.contains("rampart_store") {
                    offenders.push(format!("{}:{number}", relative(&path)));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "the store is the platform's: {offenders:#?}");
}
