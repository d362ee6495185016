"""Simulate users of an A/B test: each asks the endpoint once, then converts or not, and the
conversions are posted back to the server's `POST /feedback`: the tour's stand-in for an
application that reports what its users did.

    python docs/examples/ab_users.py http://127.0.0.1:8770 data/churn-holdout.csv \\
        --users 4000 --rate 0.10 --better churn:4 --lift 0.08

User `ab-N` sends one row in the `x-user` header's name (deploy with `--sticky header:x-user`)
and reads which version answered from the `mloop-model` header. It converts with chance
`--rate`, or `--rate + --lift` when `--better` answered: the effect the test has to find. The
outcomes (1 converted, 0 not) go back in batches keyed by the user, as `{"key": "ab-N",
"outcome": 1}`; the counts per version are printed at the end. Only the standard library
(and `traffic.py` beside it).
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import urllib.parse
from collections import Counter

from traffic import read_rows  # the tour's other client, beside this file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8770")
    parser.add_argument("rows", help="a CSV file of rows to send")
    parser.add_argument("--label", default="churned", help="the column to drop (default churned)")
    parser.add_argument("--users", type=int, default=4000, help="users, one request each (4000)")
    parser.add_argument("--rate", type=float, default=0.10, help="conversion rate (0.10)")
    parser.add_argument("--better", default="", help="the version (NAME:V) users like more")
    parser.add_argument("--lift", type=float, default=0.08, help="its extra conversion (0.08)")
    parser.add_argument("--header", default="x-user", help="the sticky header (x-user)")
    parser.add_argument("--seed", type=int, default=None, help="for a repeatable simulation")
    args = parser.parse_args()
    chance = random.Random(args.seed)  # noqa: S311 - a simulation, not a secret

    rows = read_rows(args.rows, args.label)
    where = urllib.parse.urlsplit(args.url)
    conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port or 80, timeout=30)
    users: Counter[str] = Counter()
    converted: Counter[str] = Counter()
    pending: list[dict[str, object]] = []
    for n in range(args.users):
        user = f"ab-{n}"
        body = json.dumps({"dataframe_records": [rows[n % len(rows)]]})
        headers = {"content-type": "application/json", args.header: user}
        status, reply = _post(conn, "/invocations", body, headers)
        if status != 200:
            raise SystemExit(f"the server answered {status}: {reply.read()[:300]!r}")
        version = reply.getheader("mloop-model") or "?"
        reply.read()
        rate = args.rate + (args.lift if version == args.better else 0.0)
        outcome = int(chance.random() < rate)
        users[version] += 1
        converted[version] += outcome
        pending.append({"key": user, "outcome": outcome})
        if len(pending) >= 200 or n == args.users - 1:
            status, reply = _post(conn, "/feedback", json.dumps({"feedback": pending}), {})
            answer = reply.read()
            if status != 200:
                raise SystemExit(f"/feedback answered {status}: {answer[:300]!r}")
            pending = []
    for version in sorted(users):
        share = converted[version] / users[version]
        print(f"{version}: {users[version]} users, {converted[version]} converted ({share:.1%})")
    return 0


def _post(
    conn: http.client.HTTPConnection, path: str, body: str, headers: dict[str, str]
) -> tuple[int, http.client.HTTPResponse]:
    conn.request("POST", path, body, {"content-type": "application/json", **headers})
    reply = conn.getresponse()
    return reply.status, reply


if __name__ == "__main__":
    raise SystemExit(main())
