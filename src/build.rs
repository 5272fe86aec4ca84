//! Build script: records the git commit the binary is built from, for
//! `assent --version`, and rebuilds when a migration is added (the
//! migrations are embedded in the binary).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    println!("cargo:rerun-if-env-changed=ASSENT_GIT_COMMIT");
    println!("cargo:rerun-if-changed=migrations");
    let commit = std::env::var("ASSENT_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=ASSENT_GIT_COMMIT={commit}");
}
