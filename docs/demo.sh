#!/usr/bin/env bash
# `make demo`: the README's tour, word for word. Every ```sh block of the "A tour" section runs,
# in order, in one shell started at the repository root, each command echoed before it runs.
# Temporary folders (the tour makes its project with mktemp) are removed at the end, unless
# --keep (what `make demo` passes): then the end says where the tour's last project is and
# what to look at in it.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1
TMPDIR="$(mktemp -d -t mloop-demo-XXXXXX)"
export TMPDIR
[ "$KEEP" = 1 ] || trap 'rm -rf "$TMPDIR"' EXIT

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
print('pwd > "$TMPDIR/.project"')  # where the tour ended: its last project
PY
bash "$TMPDIR/tour.sh"
if [ "$KEEP" = 0 ]; then
    printf '\nThe tour ran in %s (removed now).\n' "$TMPDIR"
    exit 0
fi
PROJECT="$(cat "$TMPDIR/.project")"
cat <<EOF

The tour ran in $TMPDIR; its last project, where the loop ran, is kept. Where to look:
  cd $PROJECT && export PATH="$REPO/.venv/bin:\$PATH"
  mloop events pipeline/train         the controller's decisions: trigger, retrain, gates, promote, rollback
  mloop controller status             the triggers, and the loop's iterations with their outcomes
  mloop endpoints history web         each rollout, with the canary's analysis
  loop.html, report.html              the monitor reports (drift, accuracy from feedback, errors)
  monitoring/mloop-dashboard.json     the Grafana dashboard (import it with a Prometheus data source)
  monitoring/prometheus.yml.example   Prometheus's scrape of the servers' /metrics (add the controller's
                                      --metrics-port, 9108 in the tour: mloop_controller_*)
Remove it with: rm -rf $TMPDIR
EOF
