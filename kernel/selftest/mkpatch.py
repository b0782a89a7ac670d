#!/usr/bin/env python3
"""Write the kselftest patch of the series from kernel/selftest/process_vm_exec/.

The sources here are the one copy; the patch (kernel/patches/PATCH) adds them as
tools/testing/selftests/process_vm_exec/ and lists the directory in the
selftests Makefile, as the RFC's own patch 4/4 did.  tests/test_kernel_attacks.py
checks that the patch in the series is what this script writes.

    python kernel/selftest/mkpatch.py          # rewrite the patch
    python kernel/selftest/mkpatch.py --check  # exit 1 if it is stale
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "process_vm_exec"
PATCH = HERE.parent / "patches" / "0006-selftests-process_vm_exec-attack-tests.patch"
FILES = [".gitignore", "Makefile", "config", "process_vm_exec_test.c"]
DEST = "tools/testing/selftests/process_vm_exec"

HEADER = """\
From: vmexec-bench <vmexec-bench@example.invalid>
Date: Thu, 26 Nov 2026 11:10:00 +0000
Subject: [PATCH 6/6] selftests: process_vm_exec: the port under attack

A kselftest (kselftest_harness.h, TAP output) for process_vm_exec():
argument checks (EINVAL, ESRCH, EFAULT), permissions (another uid, a
non-dumpable target, a non-dumpable caller attacked while it borrows),
lifecycles (signals in and outside the mask, target killed or exiting
and caller killed mid-borrow, exec by a sibling thread, concurrent
borrowers, 10,000 cycles without a leak), guest faults and the caller's
signal dispositions, FPU/FS base/PKRU (expected failures while the state
is shared), mm->owner and OOM under a memory cgroup, a core dump while
borrowing, /proc/PID/mem and process_vm_readv of a borrowing caller, and
a seeded fuzz run of 100,000 calls.

Generated from kernel/selftest/process_vm_exec/ in vmexec-bench
(kernel/selftest/mkpatch.py).
---
"""

MAKEFILE_HUNK = """\
--- a/tools/testing/selftests/Makefile
+++ b/tools/testing/selftests/Makefile
@@ -80,4 +80,5 @@
 TARGETS += prctl
 TARGETS += proc
+TARGETS += process_vm_exec
 TARGETS += pstore
 TARGETS += ptrace
"""


def new_file(name: str, text: str) -> str:
    lines = text.splitlines(keepends=True)
    assert lines and lines[-1].endswith("\n"), f"{name}: must end with a newline"
    body = "".join("+" + line for line in lines)
    return (f"diff --git a/{DEST}/{name} b/{DEST}/{name}\nnew file mode 100644\n"
            f"--- /dev/null\n+++ b/{DEST}/{name}\n@@ -0,0 +1,{len(lines)} @@\n{body}")


def render() -> str:
    parts = [HEADER, MAKEFILE_HUNK]
    parts += [new_file(name, (SOURCE / name).read_text()) for name in FILES]
    return "".join(parts) + "-- \n2.39.5\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if PATCH.read_text() != text:
            print(f"{PATCH.name} is stale: run python {Path(__file__).relative_to(HERE.parent.parent)}")
            return 1
        return 0
    PATCH.write_text(text)
    print(f"wrote {PATCH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
