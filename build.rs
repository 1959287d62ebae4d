//! Puts the git revision into `deputy --version`, so a binary says what it was built from; packs
//! the binary's relocations and, in a release build, orders its functions, where the toolchain
//! can.

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
    if let Some(list) = symbol_order() {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={list}");
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
    // `build/order-symbols.py` asks for the link map it reads the binary's layout from.
    println!("cargo:rerun-if-env-changed=DEPUTY_LINK_MAP");
    if let Ok(map) = std::env::var("DEPUTY_LINK_MAP") {
        println!("cargo:rustc-link-arg-bins=-Wl,-Map={map}");
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
    if var("TARGET") != var("HOST") || !var("TARGET").ends_with("-linux-gnu") {
        return false;
    }
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".into());
    let out = std::path::Path::new(&var("OUT_DIR")).join("relr-probe");
    let mut cc = std::process::Command::new(linker);
    cc.args(["-x", "c", "-", "-Wl,-z,pack-relative-relocs", "-o"])
        .arg(&out);
    probe_links(cc, &out, b"int main(void) { return 0; }\n")
}

/// Runs a test link of `source` (on stdin) into `out`, then removes `out`: whether it linked.
fn probe_links(mut cmd: std::process::Command, out: &std::path::Path, source: &[u8]) -> bool {
    use std::io::Write;
    let probe = cmd
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
        .is_some_and(|mut s| s.write_all(source).is_ok());
    let linked = probe.wait().is_ok_and(|s| s.success());
    let _ = std::fs::remove_file(out);
    wrote && linked
}

/// A build script variable cargo sets, or "" when it does not.
fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// The release link's function order: `build/symbol-order.txt` (made by
/// `build/order-symbols.py`) lists the functions that a start and the first commands run, and
/// lld puts them next to each other at the front of `.text`. Scattered, they made the kernel map
/// 7 MB of the binary at start; together, about 2 (BENCHMARKS.md). The names carry hashes of
/// the compiler, the profile, the features and `Cargo.lock`, so a build that differs just finds
/// fewer of them (lld skips a name it lacks, silently with `--no-warn-symbol-ordering`). A test
/// link with rustc itself, with the same flags, decides whether the linker takes the list: GNU
/// ld does not.
fn symbol_order() -> Option<String> {
    let list = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("build/symbol-order.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    if var("PROFILE") != "release" || var("TARGET") != var("HOST") || !list.exists() {
        return None;
    }
    let list = list.to_str()?.to_string();
    let out = std::path::Path::new(&var("OUT_DIR")).join("order-probe");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    let mut rustc = std::process::Command::new(rustc);
    rustc
        .args(["-", "--crate-name", "order_probe", "--crate-type=bin", "-o"])
        .arg(&out)
        .arg(format!("-Clink-arg=-Wl,--symbol-ordering-file={list}"))
        .arg("-Clink-arg=-Wl,--no-warn-symbol-ordering")
        .args(flags.split('\x1f').filter(|f| !f.is_empty()));
    if !probe_links(rustc, &out, b"fn main() {}\n") {
        // Not an error, but idle memory is several MB higher (BENCHMARKS.md).
        println!("cargo:warning=the linker does not take build/symbol-order.txt: the release binary is not ordered");
        return None;
    }
    Some(list)
}
