#!/usr/bin/env python3
"""Source files over the length a reader takes in at once must say why.

    scripts/long-files.py [--max N] DIR...    exit 1 naming each offender

A `.rs` file under the given folders with more than N lines (600 by
default) must carry, in its first 40 lines, a comment line holding
"Why it is long:" and the reason. Generated code is not kept in these
folders.
"""
import argparse
import sys
from pathlib import Path

MARK = "Why it is long:"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=600)
    parser.add_argument("dirs", nargs="+")
    args = parser.parse_args()
    offenders = []
    for folder in args.dirs:
        for path in sorted(Path(folder).rglob("*.rs")):
            lines = path.read_text().splitlines()
            head = lines[:40]
            explained = any(MARK in line and line.lstrip().startswith("//") for line in head)
            if len(lines) > args.max and not explained:
                offenders.append(f"{path}: {len(lines)} lines, and no '{MARK}' comment at its top")
    for line in offenders:
        print(line)
    return 1 if offenders else 0


if __name__ == "__main__":
    sys.exit(main())
