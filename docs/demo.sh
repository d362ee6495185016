#!/usr/bin/env bash
# `make demo`: the README tour, start to end, in a fresh project under a temporary folder.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$REPO/.venv/bin:$PATH"
WORK="$(mktemp -d -t mloop-demo-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }

run mloop init sales-forecast
cd sales-forecast
run cp "$REPO/docs/examples/train.py" "$REPO/docs/examples/make_sales.py" .
run git init -q .
run sh -c 'echo "data/" > .gitignore'
run git add .gitignore train.py make_sales.py
run git -c user.email=demo@example.com -c user.name=demo commit -qm "training code"

run python make_sales.py data/sales.csv --seed 0
run mloop data add sales data/sales.csv -m "first month"
run mloop data show sales

run python train.py --alpha 0.1
run python train.py --alpha 10

run python make_sales.py data/sales.csv --seed 1
run mloop data status
run mloop data add sales data/sales.csv -m "second month"
run mloop data diff sales:1 sales:2
run python train.py --alpha 0.1

run mloop runs list
run mloop runs list --filter "params.alpha < 1 or metrics.rmse < 5" --sort metrics.rmse
RUNS=$(mloop runs list --json | python -c "import json,sys; print(' '.join(r['id'][:8] for r in json.load(sys.stdin)[:2]))")
run mloop runs compare $RUNS
LATEST=${RUNS%% *}
run mloop runs show $LATEST
run mloop lineage $LATEST --upstream
run mloop lineage dataset/sales:1 --downstream
run mloop data checkout sales:1 --to restored
run mloop fsck --full
run mloop events --limit 5
run mloop config show
printf '\nThe demo project was in %s (removed on exit).\n' "$WORK"
