//! Puts the git revision into `deputy --version`, so a binary says what it was built from.

fn main() {
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown revision".into());
    println!("cargo:rustc-env=DEPUTY_GIT_REV={rev}");
    // A new commit moves the branch ref; a checkout moves HEAD.
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
