"""A bounded fuzz run of the C tokenizers: tests/fuzz/fuzz_tokenizers.c (the libFuzzer target)
with the tests/fuzz/fuzz_main.c driver, built with AddressSanitizer and UndefinedBehaviorSanitizer,
over random bytes (mostly invalid UTF-8) and random Unicode text, for the three families."""

import os
import pathlib
import shutil
import subprocess
import sysconfig

REPO = pathlib.Path(__file__).resolve().parent.parent
FUZZ = REPO / "tests" / "fuzz"


def build_fuzzer(out):
    cc = os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc").split()[0]
    assert shutil.which(cc), f"no C compiler {cc!r} to build the fuzz harness (set CC)"
    sources = [FUZZ / "fuzz_tokenizers.c", FUZZ / "fuzz_main.c", REPO / "csrc" / "core" / "error.c"]
    sources += sorted((REPO / "csrc" / "tokenizers").glob("*.c"))
    gen = REPO / "csrc" / "generated" / "unicode_tables.h"
    assert gen.is_file(), f"{gen} is missing: build the package first (python setup.py build_ext --inplace)"
    cmd = [cc, "-std=c11", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
           "-fno-omit-frame-pointer", "-Wall", "-Wextra", "-Werror", f"-I{REPO / 'csrc'}",
           *map(str, sources), "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"building the fuzz harness failed:\n{' '.join(cmd)}\n{done.stderr}"


def test_fuzz_tokenizers_sanitized(tmp_path):
    exe = tmp_path / "fuzz_tokenizers"
    build_fuzzer(exe)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1", UBSAN_OPTIONS="print_stacktrace=1")
    for seed in ("1", "2"):
        done = subprocess.run([str(exe), "3000", seed], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, f"fuzz run (seed {seed}) failed:\n{done.stdout}\n{done.stderr[-4000:]}"
        assert "3000 inputs, no failure" in done.stdout
    # replaying a corpus file (as for a crash found by libFuzzer)
    crash = tmp_path / "input"
    crash.write_bytes(bytes([0, 0, 0]) + "abc".encode())
    done = subprocess.run([str(exe), str(crash)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
