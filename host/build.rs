//! Builds the embedded policy components (`guest/ring`, in its `ring` and
//! `exclusive` flavours, `guest/spill` and `guest/disk`) for wasm32-wasip2
//! and leaves them in OUT_DIR for `include_bytes!`.
//!
//! The nested cargo uses its own target directory, so it never waits on the
//! lock of the build that runs this script.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("host/ sits in the workspace root");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    for watched in [
        // The guest profile lives in the workspace manifest.
        "Cargo.toml",
        "wit",
        "guest/core/src",
        "guest/core/Cargo.toml",
        "guest/ring/src",
        "guest/ring/Cargo.toml",
        "guest/spill/src",
        "guest/spill/Cargo.toml",
        "guest/disk/src",
        "guest/disk/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    stamp_version(root);
    let target_dir = root.join("target").join("guest");
    let ring = "execd-policy-ring";
    build_guest(root, &target_dir, ring, &[], &out_dir.join("ring.wasm"));
    let exclusive = ["--features", "exclusive"];
    build_guest(
        root,
        &target_dir,
        ring,
        &exclusive,
        &out_dir.join("exclusive.wasm"),
    );
    let spill = "execd-policy-spill";
    build_guest(root, &target_dir, spill, &[], &out_dir.join("spill.wasm"));
    let disk = "execd-policy-disk";
    build_guest(root, &target_dir, disk, &[], &out_dir.join("disk.wasm"));
}

fn build_guest(root: &Path, target_dir: &Path, package: &str, extra: &[&str], dest: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--package", package, "--profile", "guest"])
        .args(["--target", TARGET])
        .arg("--target-dir")
        .arg(target_dir)
        .args(extra);
    // The outer build's flags are for the host target, not for wasm.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for the policy guest: {e}"));
    if !status.success() {
        panic!(
            "building the embedded policy for {TARGET} failed. Is the target installed? \
             Run `rustup toolchain install` in the repository (it reads rust-toolchain.toml)."
        );
    }
    let built = target_dir
        .join(TARGET)
        .join("guest")
        .join(format!("{}.wasm", package.replace('-', "_")));
    std::fs::copy(&built, dest)
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", built.display(), dest.display()));
}

/// What `--version` prints beside the crate version: the commit built
/// (`unknown` outside a git checkout) and the WIT package version.
fn stamp_version(root: &Path) {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
    };
    // A build without `.git` (a container's, deploy/Dockerfile) passes the
    // commit in the environment instead.
    println!("cargo:rerun-if-env-changed=EXECD_GIT_COMMIT");
    let commit = env::var("EXECD_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=EXECD_GIT_COMMIT={commit}");
    // Rebuilt when HEAD moves: the files that say where it is. Only files
    // that exist, since a missing one would make cargo rerun every build.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    for path in watched.into_iter().flatten() {
        let path = root.join(path);
        if path.is_file() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let wit = std::fs::read_to_string(root.join("wit").join("policy.wit")).unwrap_or_default();
    let version = wit
        .lines()
        .find_map(|line| line.trim().strip_prefix("package execd:resume@"))
        .map(|rest| rest.trim_end_matches(';').to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=EXECD_WIT_VERSION={version}");
}
