//! Policy builds: components of this workspace's policy crates, built
//! for the tests that load them.

use std::time::Duration;

use tokio::process::Command;

/// Builds a policy crate of this workspace for wasm32-wasip2 (with
/// `feature`, if any) and returns the path of a copy of its component, named
/// after the feature. Builds are serialized: one cargo target dir, one output
/// name per package.
pub async fn build_policy(package: &str, feature: Option<&str>) -> std::path::PathBuf {
    static BUILDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _serial = BUILDS.lock().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target_dir = root.join("target").join("guest");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--package",
            package,
            "--profile",
            "guest",
        ])
        .args(["--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target_dir);
    if let Some(feature) = feature {
        cmd.args(["--features", feature]);
    }
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    let status = tokio::time::timeout(Duration::from_secs(600), cmd.status())
        .await
        .expect("policy build in time")
        .expect("run cargo");
    assert!(status.success(), "building {package} {feature:?} failed");
    let built = target_dir
        .join("wasm32-wasip2/guest")
        .join(format!("{}.wasm", package.replace('-', "_")));
    let copies = root.join("target").join("test-policies");
    std::fs::create_dir_all(&copies).expect("create test-policies dir");
    let copy = copies.join(format!("{package}-{}.wasm", feature.unwrap_or("default")));
    std::fs::copy(&built, &copy).expect("copy built policy");
    copy
}
