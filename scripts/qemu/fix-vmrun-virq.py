#!/usr/bin/env python3
"""Applies ivc's fix for a lost interrupt request to a QEMU 10.0 source tree.

QEMU's emulated VMRUN (target/i386/tcg/system/svm_helper.c, helper_vmrun)
sets CPU_INTERRUPT_VIRQ in cs->interrupt_request on the vCPU thread without
holding the BQL, while the I/O thread sets bits in the same word with it
held (cpu_interrupt). A plain read-modify-write from each side can lose the
other's bit. This wraps that one update in bql_lock()/bql_unlock(), the way
cpu_reset_interrupt() protects its own. See scripts/build-qemu.sh and
docs/testing.md.

Usage: fix-vmrun-virq.py QEMU_SOURCE_DIR
"""

import sys
from pathlib import Path

UPDATE = "cs->interrupt_request |= CPU_INTERRUPT_VIRQ;"
INCLUDE_AFTER = '#include "qemu/log.h"\n'
MAIN_LOOP = '#include "qemu/main-loop.h"\n'


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    path = Path(sys.argv[1]) / "target/i386/tcg/system/svm_helper.c"
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.strip() == UPDATE]
    if len(hits) != 1:
        print(f"{path}: expected the VIRQ update once, found it {len(hits)} times", file=sys.stderr)
        return 1
    i = hits[0]
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    lines[i] = f"{indent}bql_lock();\n{lines[i]}{indent}bql_unlock();\n"
    text = "".join(lines)
    if MAIN_LOOP not in text:
        if INCLUDE_AFTER not in text:
            print(f"{path}: no {INCLUDE_AFTER.strip()} to put the BQL header after", file=sys.stderr)
            return 1
        text = text.replace(INCLUDE_AFTER, INCLUDE_AFTER + MAIN_LOOP, 1)
    path.write_text(text)
    print(f"patched {path}: BQL held around the VIRQ request in helper_vmrun")
    return 0


if __name__ == "__main__":
    sys.exit(main())
