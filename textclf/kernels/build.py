"""Compile textclf's native kernels for this machine: ``python -m textclf.kernels.build``.

Builds ``_textclf_kernels.so`` next to this file from ``lstm_kernels.cc`` and
``adam_kernels.cc`` with the C++ compiler (``$CXX``, else ``c++``),
TensorFlow's own compile and link flags (``tf.sysconfig``) and
``-march=native``, and records the TensorFlow version and CPU flags it was
built for (``_textclf_kernels.json``), which the loader checks. The result is
written under a temporary name and renamed, so an interrupted build leaves no
half-written library. Exits 0 without building when there is no compiler (the
layers then run their graph loops), unless ``--require`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from ..runtime import import_tensorflow
from . import BUILD_INFO, LIBRARY, SOURCES, cpu_flags


def compile_command(output) -> list[str]:
    """The compiler command line that builds the library at ``output``."""
    tf = import_tensorflow()
    compiler = os.environ.get("CXX", "c++")
    # -DNDEBUG: without it every Eigen block access is bounds-checked. The two
    # warnings are TensorFlow's headers' own (deprecated Status, GCC 12's
    # hardware_destructive_interference_size), not this source's.
    return [compiler, "-shared", "-fPIC", "-O3", "-march=native", "-DNDEBUG",
            "-Wno-deprecated-declarations", "-Wno-interference-size",
            *tf.sysconfig.get_compile_flags(), *map(str, SOURCES), "-o", str(output),
            *tf.sysconfig.get_link_flags()]


def up_to_date() -> bool:
    """True when the library exists, is newer than its source and this build
    script (its flags), and matches this TensorFlow and CPU."""
    from . import build_problem

    newest_input = max(*(source.stat().st_mtime for source in SOURCES),
                       Path(__file__).stat().st_mtime)
    return (LIBRARY.exists() and LIBRARY.stat().st_mtime >= newest_input
            and build_problem(import_tensorflow().__version__) is None)


def build() -> None:
    """Compile the library and its build record (raises CalledProcessError)."""
    tf = import_tensorflow()
    partial = LIBRARY.with_name(LIBRARY.name + ".partial")
    command = compile_command(partial)
    print("textclf: building native kernels:", shlex.join(command[:6]), "...", file=sys.stderr)
    try:
        subprocess.run(command, check=True)
        os.replace(partial, LIBRARY)
    finally:
        partial.unlink(missing_ok=True)
    BUILD_INFO.write_text(json.dumps({"tensorflow": tf.__version__,
                                      "cpu_flags": sorted(cpu_flags())}, indent=1) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--require", action="store_true",
                        help="fail (exit 1) when there is no C++ compiler")
    args = parser.parse_args(argv)
    if not args.force and up_to_date():
        return 0
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        print("textclf: no C++ compiler found (set CXX): native kernels not built, "
              "the LSTM runs its graph loop", file=sys.stderr)
        return 1 if args.require else 0
    try:
        build()
    except subprocess.CalledProcessError as error:
        print(f"textclf: building native kernels failed (exit {error.returncode}); "
              "the LSTM runs its graph loop", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
