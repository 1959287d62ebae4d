#!/usr/bin/env python3
"""Writes build/symbol-order.txt: the functions the release binary runs when it starts and
when it answers as-user commands, in the order lld should put them at the front of .text.

Scattered over 19 MB of code, the 1.6 MB a start runs made the kernel map about 7 MB of the
binary (it maps 64 KiB around each page it faults in); placed together, about 2 (BENCHMARKS.md).

Run it from the repository after a change to Cargo.lock, the toolchain or the release profile
(the symbol names carry their hashes; a stale list only orders fewer functions):

    python3 build/order-symbols.py && cargo build --release

It needs valgrind. It builds the release binary with a link map (DEPUTY_LINK_MAP, see
build.rs), runs two starts (one of them idling 15 s) and the load generator's three kinds
through `deputy shell` under callgrind, maps each instruction run to the input section lld placed it from, and writes the
sections' symbols: the start's first, then the commands'.
"""

import bisect
import glob
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.path.join(TARGET, "release", "deputy")
LOADGEN = os.path.join(TARGET, "release", "examples", "loadgen")
MAP = os.path.join(TARGET, "release", "deputy.map")
OUT = os.path.join(ROOT, "build", "symbol-order.txt")
# Long enough for the timers an idle deputy runs (sled's pool wakes once a second).
IDLE_SECONDS = 15
# Any key works: the runs use a brain in a temporary folder.
SECRET = "aGVsbG8gdGhpcyBpcyBhIHRlc3Qgc2VjcmV0IGtleSAxMjM0NTY3OA=="


def text_sections(path):
    """The input sections of the output .text: (address, size, symbol) sorted by address. The
    symbol is the section's own name (rustc and the C libraries give each function a section,
    `.text.<symbol>`), else the first symbol in it (assembly puts many in one `.text`)."""
    line_re = re.compile(r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+ (.*)$")
    sections, in_text, bare = [], False, None
    with open(path) as f:
        for line in f:
            m = line_re.match(line.rstrip("\n"))
            if not m:
                continue
            rest = m.group(3)
            depth = len(rest) - len(rest.lstrip(" "))
            if depth == 0:
                in_text, bare = rest.strip() == ".text", None
                continue
            if not in_text:
                continue
            start, size = int(m.group(1), 16), int(m.group(2), 16)
            if depth == 8:
                bare = None
                s = re.search(r":\(\.text\.(?:unlikely\.|hot\.|startup\.)?([^)]+)\)$", rest)
                if s:
                    sections.append((start, size, s.group(1)))
                elif rest.endswith(":(.text)") and size:
                    bare = (start, size)
            elif depth == 16 and bare:
                # The map shows Rust names demangled; a bare `.text` holds C or assembly names.
                sections.append((bare[0], bare[1], rest.strip()))
                bare = None
    sections.sort()
    return sections


def entered(outputs, binary):
    """Every address of `binary` callgrind saw an instruction run at (--dump-instr=yes): a
    function reached by a jump, not a call, has no entry of its own in the call graph."""
    addrs = set()
    for path in outputs:
        ob = None
        with open(path) as f:
            for line in f:
                if line.startswith("ob="):
                    ob = line[3:].strip()
                elif line.startswith("0x") and ob == binary:
                    addrs.add(int(line.split()[0], 16))
    return addrs


def symbols(addrs, sections, starts):
    """The sections the addresses fall in, in the order they sit now."""
    found = {}
    for a in addrs:
        i = bisect.bisect_right(starts, a) - 1
        if i >= 0 and a < sections[i][0] + sections[i][1]:
            found[i] = sections[i][2]
    return [found[i] for i in sorted(found)]


def main():
    # The binary alone, as `cargo build --release` and the Dockerfile build it: building an
    # example with it adds dev-dependencies' features to shared crates, which changes their
    # symbols' hashes, and the list would match that build only.
    subprocess.run(["cargo", "build", "--release", "--locked", "--example", "loadgen"],
                   cwd=ROOT, check=True)
    env = dict(os.environ, DEPUTY_LINK_MAP=MAP)
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "deputy"],
                   cwd=ROOT, env=env, check=True)
    sections = text_sections(MAP)
    starts = [s[0] for s in sections]
    with tempfile.TemporaryDirectory() as tmp:
        wrapper = os.path.join(tmp, "deputy-under-callgrind")
        with open(wrapper, "w") as f:
            f.write(
                "#!/bin/sh\nexec valgrind --tool=callgrind --dump-instr=yes --compress-strings=no "
                f"--compress-pos=no --callgrind-out-file={tmp}/$CG_RUN.%p {BIN} \"$@\" "
                f"2>>{tmp}/valgrind.log\n"
            )
        os.chmod(wrapper, 0o755)
        config = os.path.join(tmp, "deputy.toml")
        with open(config, "w") as f:
            f.write(f'[bot]\npacks = "{ROOT}/commands"\n[brain]\npath = "{tmp}/brain"\n')
        run_env = dict(os.environ, DEPUTY_SECRET=SECRET, CG_RUN="start")
        # A start that makes the brain, then one that opens it and idles past sled's and
        # tokio's timers.
        subprocess.run(
            [wrapper, "--config", config, "shell"], input=b"help\nping\n", env=run_env,
            stdout=subprocess.DEVNULL, check=True,
        )
        idle = subprocess.Popen(
            [wrapper, "--config", config, "shell"], stdin=subprocess.PIPE, env=run_env,
            stdout=subprocess.DEVNULL,
        )
        time.sleep(IDLE_SECONDS)
        idle.stdin.close()
        if idle.wait() != 0:
            sys.exit("deputy failed in the idle run; see valgrind.log")
        for kind in ["apikey", "oauth1", "oauth2"]:
            subprocess.run(
                [LOADGEN, "--bin", wrapper, "--kind", kind, "--users", "20", "--messages", "400"],
                cwd=ROOT, env=dict(run_env, CG_RUN="commands"), stdout=subprocess.DEVNULL,
                check=True,
            )
        start = symbols(entered(glob.glob(f"{tmp}/start.*"), BIN), sections, starts)
        commands = symbols(entered(glob.glob(f"{tmp}/commands.*"), BIN), sections, starts)
    seen, order = set(), []
    for name in start + commands:
        if name not in seen:
            seen.add(name)
            order.append(name)
    size = {s[2]: s[1] for s in sections}
    with open(OUT, "w") as f:
        f.write("".join(name + "\n" for name in order))
    print(
        f"{OUT}: {len(order)} functions, {sum(size[n] for n in order) / 1e6:.2f} MB "
        f"({len(set(start))} run by a start); now `cargo build --release`",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
