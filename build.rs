//! Puts the git revision into `deputy --version`, so a binary says what it was built from.

fn main() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rev =
        git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown revision".into());
    println!("cargo:rustc-env=DEPUTY_GIT_REV={rev}");
    // A checkout moves HEAD; a new commit moves the branch's ref. Git says where both live: in
    // a worktree `.git` is a file, and naming a file that does not exist (`.git/HEAD`) makes
    // cargo rebuild deputy on every command.
    println!("cargo:rerun-if-changed=build.rs");
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in std::iter::once("HEAD").chain(branch.as_deref()) {
        if let Some(path) = git(&["rev-parse", "--git-path", name]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}
