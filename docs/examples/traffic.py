"""Send predict requests to an mloop server and count who answered: the tour's stand-in for an
application's traffic.

    python docs/examples/traffic.py http://127.0.0.1:8770 data/churn-holdout.csv --seconds 20

Rows of the CSV file (its label column dropped) are sent one per request as MLflow's
`dataframe_records`, over one kept-alive connection, each with a user id in the `x-user`
header (for sticky A/B assignment). Every answer names the version that gave it in its
`mloop-model` header; the counts per version and per status are printed at the end (and every
`--every` seconds, and when stopped with SIGTERM). `--scale COLUMN=FACTOR` multiplies a
numeric column first: the world changing under the model (prices went up), for drift to see.
`--feedback` sends the truth as well: each answer's label (the CSV's label column) is posted to
`POST /feedback` under the answer's `mloop-request-id`, 50 at a time, as the business would
report it later; `--rate` bounds the requests per second. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import signal
import time
import urllib.parse
from collections import Counter


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8770")
    parser.add_argument("rows", help="a CSV file of rows to send")
    parser.add_argument("--label", default="churned", help="the column to drop (default churned)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to send (10)")
    parser.add_argument("--requests", type=int, default=0, help="stop after N requests (0: no)")
    parser.add_argument("--users", type=int, default=500, help="distinct user ids (500)")
    parser.add_argument("--every", type=float, default=5.0, help="print counts this often (5 s)")
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second (0: no cap)")
    parser.add_argument(
        "--feedback", action="store_true", help="post each answer's label to /feedback"
    )
    parser.add_argument(
        "--scale",
        action="append",
        default=[],
        metavar="COLUMN=FACTOR",
        help="multiply a numeric column's values (repeatable), e.g. monthly_charges=1.6",
    )
    args = parser.parse_args()
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))  # `kill`: print, then end

    rows = read_rows(args.rows, args.label)
    labels = read_labels(args.rows, args.label) if args.feedback else []
    truth: list[dict[str, object]] = []  # labels not posted yet
    for column, factor in (_scaling(text, parser) for text in args.scale):
        for row in rows:
            if isinstance(row.get(column), int | float):
                row[column] = round(row[column] * factor, 4)  # type: ignore[operator]
    where = urllib.parse.urlsplit(args.url)
    conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port or 80, timeout=30)
    answered: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    sent, failed, labelled = 0, 0, 0
    start = last = time.monotonic()
    while (
        not stopped
        and time.monotonic() - start < args.seconds
        and (not args.requests or sent < args.requests)
    ):
        if args.rate:
            time.sleep(max(0.0, start + sent / args.rate - time.monotonic()))
        body = json.dumps({"dataframe_records": [rows[sent % len(rows)]]})
        headers = {"content-type": "application/json", "x-user": f"user-{sent % args.users}"}
        try:
            conn.request("POST", "/invocations", body, headers)
            reply = conn.getresponse()
            reply.read()
        except (OSError, http.client.HTTPException):
            failed += 1
            conn.close()
            continue
        finally:
            sent += 1
        statuses[reply.status] += 1
        answered[reply.getheader("mloop-model") or "?"] += 1
        if labels and reply.status == 200:
            request_id = reply.getheader("mloop-request-id")
            truth.append({"request_id": request_id, "label": labels[(sent - 1) % len(rows)]})
            if len(truth) >= 50:
                labelled += post_feedback(conn, truth)
        if time.monotonic() - last >= args.every:
            last = time.monotonic()
            print(
                _shown(sent, answered, statuses, failed, labelled if labels else None), flush=True
            )
    if truth:
        labelled += post_feedback(conn, truth)
    print(_shown(sent, answered, statuses, failed, labelled if labels else None), flush=True)
    return 0


def post_feedback(conn: http.client.HTTPConnection, truth: list[dict[str, object]]) -> int:
    """Post the labels gathered so far (and forget them); how many the server stored."""
    body = json.dumps({"feedback": truth})
    truth.clear()
    try:
        conn.request("POST", "/feedback", body, {"content-type": "application/json"})
        reply = conn.getresponse()
        answer = reply.read()
    except (OSError, http.client.HTTPException):
        conn.close()
        return 0
    return int(json.loads(answer)["labels"]["stored"]) if reply.status == 200 else 0


def read_rows(path: str, label: str) -> list[dict[str, object]]:
    """The CSV file's rows without the `label` column, each cell as the JSON value it stands
    for (a number where it reads as one)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _value(v) for k, v in r.items() if k != label} for r in csv.DictReader(f)]


def read_labels(path: str, label: str) -> list[object]:
    """The CSV file's `label` column, row by row."""
    with open(path, newline="", encoding="utf-8") as f:
        return [_value(r[label]) for r in csv.DictReader(f)]


def _value(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _scaling(text: str, parser: argparse.ArgumentParser) -> tuple[str, float]:
    column, _, factor = text.partition("=")
    try:
        return column, float(factor)
    except ValueError:
        parser.error(f"--scale takes COLUMN=FACTOR, such as monthly_charges=1.6, not {text!r}")


def _shown(
    sent: int, answered: Counter[str], statuses: Counter[int], failed: int, labelled: int | None
) -> str:
    models = ", ".join(f"{m}: {n}" for m, n in sorted(answered.items()))
    codes = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
    said = f"{sent} requests; answered by {models}; status {codes}; connection errors {failed}"
    return said + ("" if labelled is None else f"; labels stored {labelled}")


if __name__ == "__main__":
    raise SystemExit(main())
