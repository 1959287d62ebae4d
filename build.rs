//! Puts the git revision into `deputy --version`, so a binary says what it was built from, and
//! packs the binary's relocations where the toolchain can.

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
    if relr_links() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
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

/// Whether the binary can use a packed (RELR) table of its relative relocations. The usual
/// table is 1.1 MB that the loader reads at every start; packed it is 17 KB, and 2 MB less of
/// the binary ends up in memory (BENCHMARKS.md). It needs glibc 2.36+ and GNU ld 2.38+ (or
/// lld), so a test link with the flag decides, on Linux with glibc and no cross-compiling; an
/// older GNU ld only warns that it ignores the flag.
fn relr_links() -> bool {
    use std::io::Write;
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("TARGET") != var("HOST") || !var("TARGET").ends_with("-linux-gnu") {
        return false;
    }
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".into());
    let out = std::path::Path::new(&var("OUT_DIR")).join("relr-probe");
    let probe = std::process::Command::new(linker)
        .args(["-x", "c", "-", "-Wl,-z,pack-relative-relocs", "-o"])
        .arg(&out)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut probe) = probe else {
        return false;
    };
    let wrote = probe
        .stdin
        .take()
        .is_some_and(|mut s| s.write_all(b"int main(void) { return 0; }\n").is_ok());
    let linked = probe.wait().is_ok_and(|s| s.success());
    let _ = std::fs::remove_file(&out);
    wrote && linked
}
