"""``python -m zcli.gen completions|man|check [--out DIR]``; see :mod:`zcli.gen`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zcli.gen import ROOT, build_catalogue, generate, stale, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zcli.gen", description=__doc__)
    parser.add_argument("kind", choices=["completions", "man", "all", "check"])
    parser.add_argument("--out", type=Path, default=ROOT, help="root to write into")
    args = parser.parse_args(argv)
    catalogue = build_catalogue()
    kinds = ["completions", "man"] if args.kind in ("all", "check") else [args.kind]
    if args.kind == "check":
        old = [rel for kind in kinds for rel in stale(generate(kind, catalogue), args.out)]
        for rel in old:
            print(f"stale: {rel} (run make completions man)", file=sys.stderr)
        return 1 if old else 0
    for kind in kinds:
        for path in write(generate(kind, catalogue), args.out):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
