#!/usr/bin/env python3
"""The mutation score per module of the last ``mutmut run`` (``scripts/mutation``).

Reads ``mutmut results --all true`` and prints, per mutated module: the mutants, how
many were killed, timed out, survived, had no test reaching them, and anything else
(suspicious, segfault, not checked), with the score killed / total. With ``--list``,
also every mutant that was not killed, by name (``mutmut show NAME`` prints its diff).
``--json FILE`` writes the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTMUT = ROOT / ".venv" / "bin" / "mutmut"
COLUMNS = ("killed", "timeout", "survived", "no tests")
# awsops.decommission.journal.xǁJournalǁopen__mutmut_3, awsops.x.rules.x_decide__mutmut_1
_NAME = re.compile(r"^(?P<module>[\w.]+?)\.x[_ǁ].*__mutmut_\d+$")


def parse(lines: list[str]) -> dict[str, dict[str, str]]:
    """module -> mutant name -> status, from ``mutmut results --all true``."""
    by_module: dict[str, dict[str, str]] = defaultdict(dict)
    for line in lines:
        name, sep, status = line.strip().rpartition(": ")
        match = _NAME.match(name) if sep else None
        if match:
            by_module[match["module"]][name] = status
    return dict(sorted(by_module.items()))


def table(by_module: dict[str, dict[str, str]]) -> list[str]:
    head = f"{'module':36} {'total':>6} " + " ".join(f"{c:>9}" for c in COLUMNS)
    out = [head + f" {'other':>6} {'score':>7}"]
    grand: Counter[str] = Counter()
    for module, mutants in [*by_module.items(), ("all", {})]:
        counts = Counter(mutants.values()) if module != "all" else grand
        total = sum(counts.values())
        if module != "all":
            grand.update(counts)
        other = total - sum(counts[c] for c in COLUMNS)
        score = f"{100.0 * counts['killed'] / total:6.1f}%" if total else "     -"
        cells = " ".join(f"{counts[c]:>9}" for c in COLUMNS)
        out.append(f"{module:36} {total:>6} {cells} {other:>6} {score:>7}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="name every mutant not killed")
    parser.add_argument("--json", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    results = subprocess.run(
        [str(MUTMUT), "results", "--all", "true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    by_module = parse(results)
    if not by_module:
        print("no mutmut results: run scripts/mutation first", file=sys.stderr)
        return 2
    print("\n".join(table(by_module)))
    if args.list:
        for mutants in by_module.values():
            for name, status in mutants.items():
                if status != "killed":
                    print(f"{status:>9}  {name}")
    if args.json:
        args.json.write_text(json.dumps(by_module, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
