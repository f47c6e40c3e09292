"""Print ``name==floor`` for every dependency of pyproject.toml, one a line (for ``make test-min``).

The floor of a dependency is the version of its ``>=`` specifier; a dependency without one is an
error, so that every declared dependency has a floor the min-versions job installs. Names given
with ``--except`` are left out (torch: the job installs the CPU build that constraints.txt pins,
since any other torch release pulls a multi-GB CUDA build).

    python .ci/min_requirements.py [--except torch] [pyproject.toml]
"""

from __future__ import annotations

import argparse
import re
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REQUIREMENT = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?P<specs>[^;]*)(?:;.*)?$")


def floors(dependencies: list[str], skip: set[str]) -> list[str]:
    lines = []
    for requirement in dependencies:
        match = REQUIREMENT.match(requirement)
        if match is None:
            raise SystemExit(f"cannot parse the dependency {requirement!r}")
        name = match["name"]
        if name.lower() in skip:
            continue
        lows = [spec.strip()[2:].strip() for spec in match["specs"].split(",") if spec.strip().startswith(">=")]
        if len(lows) != 1:
            raise SystemExit(f"dependency {requirement!r} needs exactly one '>=' floor for the min-versions job")
        lines.append(f"{name}=={lows[0]}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", nargs="?", default="pyproject.toml")
    parser.add_argument("--except", dest="skip", action="append", default=[], metavar="NAME",
                        help="leave this dependency out (repeatable)")
    args = parser.parse_args(argv)
    with open(args.pyproject, "rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    sys.stdout.write("".join(line + "\n" for line in floors(dependencies, {s.lower() for s in args.skip})))


if __name__ == "__main__":
    main()
