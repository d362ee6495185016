#!/usr/bin/env bash
# `make demo`: the README's tour, word for word. Every ```sh block of the "A tour" section runs,
# in order, in one shell started at the repository root, each command echoed before it runs.
# Temporary folders (the tour makes its project with mktemp) are removed at the end.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
TMPDIR="$(mktemp -d -t mloop-demo-XXXXXX)"
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

python3 - "$REPO/README.md" > "$TMPDIR/tour.sh" <<'PY'
import re
import shlex
import sys

text = open(sys.argv[1], encoding="utf-8").read()
tour = text.split("## A tour", 1)[1].split("\n## ", 1)[0]
print("set -euo pipefail")
print("trap 'kill $(jobs -p) 2>/dev/null || true' EXIT")  # servers the tour started, if it stops early
for block in re.findall(r"```sh\n(.*?)```", tour, flags=re.S):
    for line in block.splitlines():
        if not line.strip():
            continue
        shown = "printf '\\n\\033[1m$ %s\\033[0m\\n' " + shlex.quote(line.split("  #")[0].rstrip())
        print(shown)
        print(line)
PY
bash "$TMPDIR/tour.sh"
printf '\nThe tour ran in %s (removed now).\n' "$TMPDIR"
