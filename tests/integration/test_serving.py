"""The model server against real HTTP on 127.0.0.1: endpoints, payloads, errors, limits,
micro-batching, metrics, workers and graceful stop."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mloop._version import __version__
from mloop.errors import InvalidInput
from mloop.server.inference import ServeSettings, create_app
from mloop.server.workers import SWITCH_INTERVAL
from mloop.services.serving.settings import LIMITS, Limit, Unit
from tests.integration.serving_helpers import (
    Recording,
    Slow,
    cancer,
    cancer_model,
    mixed,
    running,
    split_body,
)
from tests.servers import prometheus, wait_for

ROOT = Path(__file__).resolve().parents[2]
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with running(create_app(cancer())) as base:
        yield base


@pytest.fixture
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as c:
        yield c


def data(n: int = 3) -> tuple[np.ndarray, list[str], np.ndarray]:
    model, _, features, names = cancer_model()
    rows = features[:n]
    return rows, list(names), model.predict(rows)


def metric(base: str, sample_name: str, **labels: str) -> float:
    text = httpx.get(base + "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                return float(sample.value)
    return 0.0


# endpoints ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/healthz", {"status": "ok"}),
        ("/readyz", {"ready": True, "model": "cancer:3"}),
        ("/ping", {"status": "ok"}),
        ("/v2/health/live", {"live": True}),
        ("/v2/health/ready", {"ready": True, "model": "cancer:3"}),
        ("/v2/models/cancer/ready", {"ready": True, "model": "cancer:3"}),
        ("/v2", {"name": "mloop", "version": __version__, "extensions": ["binary_tensor_data"]}),
    ],
)
def test_health_endpoints(client: httpx.Client, path: str, expected: dict[str, Any]) -> None:
    answer = client.get(path)
    assert answer.status_code == 200
    assert answer.json() == expected
    assert answer.headers["mloop-model"] == "cancer:3"


def test_model_metadata_lists_the_signature(client: httpx.Client) -> None:
    _, names, _ = data()
    for path in ("/v2/models/cancer", "/v2/models/cancer/versions/3"):
        body = client.get(path).json()
        assert body["name"] == "cancer" and body["versions"] == ["3"]
        assert [i["name"] for i in body["inputs"]] == names
        assert {i["datatype"] for i in body["inputs"]} == {"FP64"}


def test_openapi_document_describes_the_routes(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert {"/invocations", "/v2/models/cancer/infer", "/metrics", "/readyz"} <= set(
        document["paths"]
    )
    assert "mean radius" in document["components"]["schemas"]["Row"]["properties"]


def test_every_answer_names_the_model_version(client: httpx.Client) -> None:
    rows, names, _ = data(1)
    answers = [
        client.post("/invocations", json=split_body(rows, names)),
        client.post("/invocations", content=b"{", headers=JSON),
        client.get("/metrics"),
        client.get("/nowhere"),
        client.delete("/invocations"),
    ]
    assert [a.status_code for a in answers] == [200, 400, 200, 404, 405]
    assert {a.headers["mloop-model"] for a in answers} == {"cancer:3"}
    # served on its own, a model is its own endpoint and its version the stable variant
    assert {a.headers["mloop-endpoint"] for a in answers} == {"cancer"}
    assert {a.headers["mloop-variant"] for a in answers} == {"stable"}


# MLflow payloads ---------------------------------------------------------------------------
def _shapes() -> dict[str, Any]:
    rows, names, _ = data()
    records = [dict(zip(names, row, strict=True)) for row in rows.tolist()]
    return {
        "split": split_body(rows, names),
        "split-reordered": {
            "dataframe_split": {
                "index": [5, 6, 7],
                "columns": names[::-1],
                "data": rows[:, ::-1].tolist(),
            }
        },
        "records": {"dataframe_records": records},
        "instances": {"instances": rows.tolist()},
        "instances-records": {"instances": records},
        "inputs": {"inputs": rows.tolist()},
        "inputs-columns": {"inputs": {n: rows[:, i].tolist() for i, n in enumerate(names)}},
    }


@pytest.mark.parametrize("shape", list(_shapes()))
def test_mlflow_payload_shapes(client: httpx.Client, shape: str) -> None:
    _, _, expected = data()
    answer = client.post("/invocations", json=_shapes()[shape])
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": expected.tolist()}


def test_an_mlflow_client_works_unchanged(url: str) -> None:
    import mlflow.pyfunc.scoring_server.client as scoring  # MLflow's own client (dev extra)
    import pandas as pd

    rows, names, expected = data()
    port = int(url.rsplit(":", 1)[1])
    client = scoring.ScoringServerClient("127.0.0.1", port)
    client.wait_server_ready(timeout=10)
    for payload in (pd.DataFrame(rows, columns=names), rows):
        predictions = client.invoke(payload).get_predictions()
        assert predictions.iloc[:, 0].tolist() == expected.tolist()


# Open Inference Protocol -------------------------------------------------------------------
def test_oip_infer_with_one_tensor_per_column(client: httpx.Client) -> None:
    rows, names, expected = data()
    inputs = [
        {"name": n, "shape": [3], "datatype": "FP64", "data": rows[:, i].tolist()}
        for i, n in enumerate(names)
    ]
    answer = client.post("/v2/models/cancer/infer", json={"id": "req-1", "inputs": inputs})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "model_name": "cancer",
        "model_version": "3",
        "id": "req-1",
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [3], "data": expected.tolist()}
        ],
    }


def test_oip_infer_with_one_table_tensor(client: httpx.Client) -> None:
    rows, _, expected = data()
    tensor = {
        "name": "input-0",
        "shape": [3, 30],
        "datatype": "FP64",
        "data": rows.ravel().tolist(),
    }
    for path in ("/v2/models/cancer/infer", "/v2/models/cancer/versions/3/infer"):
        answer = client.post(path, json={"inputs": [tensor]})
        assert answer.json()["outputs"][0]["data"] == expected.tolist()


def test_oip_for_another_model_is_404(client: httpx.Client) -> None:
    answer = client.post("/v2/models/other/infer", json={"inputs": []})
    assert answer.status_code == 404
    # the protocol's error shape: "error" is the message; mloop's code and hint sit beside it
    error = answer.json()
    assert error["error"] == "this server serves model 'cancer', not 'other'"
    assert (error["code"], error["hint"]) == ("model_not_found", "use /v2/models/cancer/infer")


def test_an_open_inference_protocol_client_works_unchanged(url: str) -> None:
    # tritonclient: NVIDIA's client for the protocol (KServe v2), as Triton users call a server
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    rows, _, expected = data(3)
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("cancer")
    metadata = client.get_model_metadata("cancer")
    assert metadata["versions"] == ["3"] and len(metadata["inputs"]) == 30
    table = triton.InferInput("input-0", list(rows.shape), "FP64")
    table.set_data_from_numpy(rows, binary_data=False)
    answer = client.infer("cancer", [table], request_id="req-7")
    assert answer.get_response()["id"] == "req-7"
    assert answer.as_numpy("predict").tolist() == expected.tolist()
    short = triton.InferInput("input-0", [1, 3], "FP64")
    short.set_data_from_numpy(rows[:1, :3], binary_data=False)
    with pytest.raises(InferenceServerException) as refused:
        client.infer("cancer", [short])
    assert refused.value.status() == "422"
    assert "row 0 has 3 values, expected 30" in refused.value.message()
    binary = triton.InferInput("input-0", list(rows.shape), "FP64")
    binary.set_data_from_numpy(rows)  # the binary tensor extension, tritonclient's default
    answer = client.infer("cancer", [binary])  # and binary outputs, as it asks by default
    assert answer.as_numpy("predict").tolist() == expected.tolist()
    assert answer.get_output("predict")["parameters"]["binary_data_size"] == 3 * 8
    client.close()


def test_kserve_v1_predict_and_readiness(client: httpx.Client) -> None:
    rows, _, expected = data(2)
    answer = client.post("/v1/models/cancer:predict", json={"instances": rows.tolist()})
    assert answer.status_code == 200
    assert answer.json() == {"predictions": expected.tolist()}
    assert answer.headers["mloop-model"] == "cancer:3"
    assert client.get("/v1/models/cancer").json() == {"name": "cancer", "ready": True}
    other = client.post("/v1/models/other:predict", json={"instances": rows.tolist()})
    assert other.status_code == 404 and "not 'other'" in other.json()["error"]["message"]
    short = client.post("/v1/models/cancer:predict", json={"instances": [[1.0]]})
    assert short.status_code == 422


def test_oip_takes_json_with_or_without_a_content_type(url: str) -> None:
    rows, _, expected = data(1)
    body = json.dumps(
        {
            "inputs": [
                {"name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": rows[0].tolist()}
            ]
        }
    ).encode()
    infer = url + "/v2/models/cancer/infer"
    untyped = httpx.post(infer, content=body)  # tritonclient and KServe's client send no type
    assert untyped.status_code == 200
    assert untyped.json()["outputs"][0]["data"] == expected.tolist()
    # MLflow's scoring protocol insists on one, as MLflow's own server does
    assert httpx.post(url + "/invocations", content=body).status_code == 415
    # Triton's examples send binary-extension bodies as octet-stream: without the header
    # saying where the JSON ends, the body is all JSON
    octets = httpx.post(infer, content=body, headers={"content-type": "application/octet-stream"})
    assert octets.status_code == 200
    text = httpx.post(infer, content=body, headers={"content-type": "text/plain"})
    assert text.status_code == 415 and "binary tensor data extension" in text.json()["hint"]
    bad = httpx.post(infer, content=b"{", headers=JSON)
    assert bad.status_code == 400 and isinstance(bad.json()["error"], str)


def test_mixed_types_over_both_protocols() -> None:
    row = {"age": 61, "income": None, "region": "east", "member": True}
    expected = mixed().predict(_frame([row])).tolist()
    inputs = [
        {"name": "age", "shape": [1], "datatype": "INT64", "data": [61]},
        {"name": "income", "shape": [1], "datatype": "FP64", "data": [None]},
        {"name": "region", "shape": [1], "datatype": "BYTES", "data": ["east"]},
        {"name": "member", "shape": [1], "datatype": "BOOL", "data": [True]},
    ]
    with running(create_app(mixed())) as base, httpx.Client(base_url=base) as client:
        answer = client.post("/invocations", json={"dataframe_records": [row]})
        assert answer.json() == {"predictions": expected}
        answer = client.post("/v2/models/mixed/infer", json={"inputs": inputs})
        assert answer.status_code == 422  # null is not FP64 data in OIP
        inputs[1]["data"] = [52_000.0]
        answer = client.post("/v2/models/mixed/infer", json={"inputs": inputs})
        assert answer.status_code == 200 and answer.json()["outputs"][0]["datatype"] == "INT64"
        bad = client.post("/invocations", json={"dataframe_records": [{**row, "region": 3}]})
        assert bad.status_code == 422
        assert "column 'region' (row 0): expected string" in bad.json()["error"]["message"]


def _frame(records: list[dict[str, Any]]) -> Any:
    import pandas as pd

    return pd.DataFrame(records).astype({"income": float})


# client mistakes ---------------------------------------------------------------------------
def _with(row_change: dict[int, Any] | None = None, drop: int | None = None) -> bytes:
    rows, names, _ = data(2)
    table = rows.tolist()
    columns = list(names)
    for col, value in (row_change or {}).items():
        table[1][col] = value
    if drop is not None:
        del columns[drop]
        for row in table:
            del row[drop]
    # json.dumps writes NaN and Infinity literals, as MLflow's client does
    return json.dumps({"dataframe_split": {"columns": columns, "data": table}}).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_with(drop=3), "missing column 'mean area'"),
        (_with({4: "abc"}), "column 'mean smoothness' (row 1): expected float64, got string 'abc'"),
        (_with({0: float("nan")}), "column 'mean radius' (row 1): got a missing value"),
        (_with({0: None}), "column 'mean radius' (row 1): got a missing value"),
        (_with({2: float("inf")}), "column 'mean perimeter' (row 1): got inf"),
        (_with({2: [1, 2]}), "column 'mean perimeter' (row 1): expected float64, got a list"),
        (b'{"dataframe_split": {"data": [[1, 2]]}}', "row 0 has 2 values, expected 30"),
        (b'{"rows": [[1]]}', "exactly one of dataframe_split"),
        (b"[1, 2]", "a JSON object"),
    ],
    ids=["missing", "string", "nan", "null", "inf", "nested", "short-row", "unknown-key", "array"],
)
def test_signature_errors_are_422_naming_the_column(
    client: httpx.Client, body: bytes, message: str
) -> None:
    answer = client.post("/invocations", content=body, headers=JSON)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["hint"]  # its own, or where to read the inputs
    assert message in error["message"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b'{"inputs": [[1, 2', JSON, 400, "invalid_input"),
        (b"", JSON, 400, "invalid_input"),
        (b"\xff\xfe\x00", JSON, 400, "invalid_input"),
        (b"[" * 10_000 + b"]" * 10_000, JSON, 400, "invalid_input"),
        (b'{"inputs": ' * 10_000 + b"1" + b"}" * 10_000, JSON, 400, "invalid_input"),
        (b"{}", {"content-type": "text/plain"}, 415, "unsupported_media_type"),
        (
            b"{}",
            {"content-type": "application/json; charset=latin-1"},
            415,
            "unsupported_media_type",
        ),
        (b"{}", {}, 415, "unsupported_media_type"),
    ],
    ids=[
        "truncated",
        "empty",
        "not-utf8",
        "deep-arrays",
        "deep-objects",
        "text",
        "charset",
        "none",
    ],
)
def test_client_mistakes_are_clear_4xx_and_the_server_keeps_serving(
    url: str, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    before = metric(url, "mloop_requests_total", endpoint="invocations", status="500")
    answer = httpx.post(url + "/invocations", content=body, headers=headers)
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code
    assert answer.json()["error"]["hint"]
    rows, names, expected = data(1)
    again = httpx.post(url + "/invocations", json=split_body(rows, names))
    assert again.json() == {"predictions": expected.tolist()}
    assert metric(url, "mloop_requests_total", endpoint="invocations", status="500") == before


def test_a_huge_content_length_is_answered_before_the_body(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000000\r\n\r\n{"
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"]["code"] == "payload_too_large"


def _read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP answer off `sock` (head, body), read by its content-length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection in the middle of an answer"
        body += chunk
    return head.lower(), body


def test_an_answer_before_its_body_tells_the_client_the_connection_closes(url: str) -> None:
    """A 404 decided on the head while the body is still on its way closes the connection after
    it: the answer says so, or the client's next request on it finds it gone (httpx:
    "Server disconnected without sending a response", seen under load in CI)."""
    host, port = url.removeprefix("http://").split(":")
    body = b'{"instances": [[1.0]]}'
    head = (
        b"POST /v1/models/other:predict HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)  # the body never comes
        answer, _ = _read_answer(sock)
        assert answer.startswith(b"http/1.1 404")
        assert b"connection: close" in answer
        assert sock.recv(1) == b""  # and it does close
    # Sent whole, the same request is answered the same way and its connection stays open.
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body)
        answer, _ = _read_answer(sock)
        assert answer.startswith(b"http/1.1 404")
        assert b"connection: close" not in answer
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer, reply = _read_answer(sock)
        assert answer.startswith(b"http/1.1 200") and json.loads(reply) == {"status": "ok"}


def test_a_chunked_body_over_the_limit_is_stopped() -> None:
    settings = ServeSettings(max_body_bytes=10_000)

    def chunks() -> Iterator[bytes]:
        yield b'{"inputs": ['
        for _ in range(1000):
            yield b"[1.0, 2.0, 3.0], "

    with running(create_app(cancer(), settings)) as base:
        answer = httpx.post(base + "/invocations", content=chunks(), headers=JSON)
        assert answer.status_code == 413
        assert "10000 bytes" in answer.json()["error"]["message"]
        assert httpx.get(base + "/healthz").status_code == 200


# limits --------------------------------------------------------------------------------------
def test_a_slow_model_gets_504_with_json_and_health_stays_up() -> None:
    rows, names, _ = data(1)
    slow = Slow(1.5)
    with running(create_app(slow, ServeSettings(timeout=0.3))) as base:
        started = time.monotonic()
        answer = httpx.post(base + "/invocations", json=split_body(rows, names), timeout=10)
        assert answer.status_code == 504
        assert answer.json()["error"]["code"] == "timeout"
        assert time.monotonic() - started < 1.5  # answered at the time-out, not after predict
        assert httpx.get(base + "/healthz").status_code == 200


def test_past_concurrency_and_queue_comes_503_with_retry_after() -> None:
    rows, names, _ = data(1)
    body = split_body(rows, names)
    settings = ServeSettings(max_concurrency=1, max_queue=1, timeout=30)
    with running(create_app(Slow(0.5), settings)) as base:
        answers: list[httpx.Response] = []

        def post() -> None:
            answers.append(httpx.post(base + "/invocations", json=body, timeout=30))

        threads = [threading.Thread(target=post) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) >= 2 and statuses.count(503) >= 1
    assert set(statuses) == {200, 503}
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["error"]["code"] == "overloaded"


# micro-batching --------------------------------------------------------------------------------
def test_concurrent_single_rows_are_merged_into_fewer_predict_calls() -> None:
    rows, names, expected = data(16)
    recording = Recording(cancer(), delay=0.05)  # slow enough that requests pile up meanwhile
    with running(create_app(recording)) as base:
        answers: list[tuple[int, Any]] = []

        def post(i: int) -> None:
            body = split_body(rows[i : i + 1], names)
            answers.append((i, httpx.post(base + "/invocations", json=body).json()))

        threads = [threading.Thread(target=post, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sum(recording.sizes) == 16
    assert len(recording.sizes) < 16 and max(recording.sizes) > 1
    assert all(answer == {"predictions": [expected[i]]} for i, answer in answers)


def test_a_large_client_batch_is_split_to_the_max_batch_size() -> None:
    model, _, features, names = cancer_model()
    rows = np.resize(features, (1000, 30))
    recording = Recording(cancer())
    settings = ServeSettings(max_batch_size=100)
    with running(create_app(recording, settings)) as base:
        answer = httpx.post(base + "/invocations", json=split_body(rows, names), timeout=30)
        assert answer.json() == {"predictions": model.predict(rows).tolist()}
        batched = metric(base, "mloop_batch_rows_count")
    assert max(recording.sizes) <= 100 and sum(recording.sizes) == 1000
    assert batched == len(recording.sizes)


# metrics -------------------------------------------------------------------------------------
def test_metrics_count_requests_by_status() -> None:
    rows, names, _ = data(1)
    with running(create_app(cancer("counted", 1))) as base, httpx.Client(base_url=base) as c:
        for _ in range(3):
            c.post("/invocations", json=split_body(rows, names))
        c.post("/invocations", json={"inputs": [[1.0]]})
        c.post("/invocations", content=b"nope", headers=JSON)
        text = c.get("/metrics")
        assert text.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(text.text)}
        assert metric(base, "mloop_requests_total", endpoint="invocations", status="200") == 3
        assert metric(base, "mloop_requests_total", endpoint="invocations", status="422") == 1
        assert metric(base, "mloop_requests_total", endpoint="invocations", status="400") == 1
        assert metric(base, "mloop_request_duration_seconds_count", endpoint="invocations") == 5
        assert metric(base, "mloop_model_info", name="counted", version="1") == 1
    for name in (
        "mloop_requests_in_flight",
        "mloop_batch_rows",
        "mloop_model_load_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds",
    ):
        assert name in families


# processes -----------------------------------------------------------------------------------
class Served:
    def __init__(self, *args: str) -> None:
        command = [sys.executable, "-m", "tests.integration.serving_helpers", *args]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        assert self.url.startswith("http://"), self.process.stderr.read()  # type: ignore[union-attr]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def test_a_real_prometheus_scrapes_the_server() -> None:
    with running(create_app(cancer())) as base, prometheus([base]) as prom:
        rows, names, _ = data(2)
        for _ in range(3):
            assert httpx.post(base + "/invocations", json=split_body(rows, names)).is_success
        httpx.post(base + "/invocations", content=b"{", headers=JSON)  # one 400

        def query(expression: str) -> list[dict[str, Any]]:
            answer = httpx.get(prom + "/api/v1/query", params={"query": expression}).json()
            assert answer["status"] == "success", answer
            return list(answer["data"]["result"])

        def scraped() -> bool:
            found = query('mloop_requests_total{endpoint="invocations",status="200"}')
            return bool(found) and float(found[0]["value"][1]) == 3.0

        wait_for(scraped, 60, "prometheus scraping the model server")
        assert query('up{job="mloop"}')[0]["value"][1] == "1"
        [bad] = query('mloop_requests_total{endpoint="invocations",status="400"}')
        assert bad["value"][1] == "1"
        [info] = query("mloop_model_info")
        assert (info["metric"]["name"], info["metric"]["version"]) == ("cancer", "3")
        # the latency histogram works with PromQL's quantile function
        [p99] = query(
            "histogram_quantile(0.99, sum by (le) "
            '(mloop_request_duration_seconds_bucket{endpoint="invocations"}))'
        )
        assert 0 < float(p99["value"][1]) < 60
        [rows_per_call] = query("sum(mloop_batch_rows_sum)")
        assert float(rows_per_call["value"][1]) == 6.0  # 3 requests of 2 rows


def test_a_token_guards_everything_but_health_checks() -> None:
    import hashlib

    token = "s3cret-token-for-the-tests"
    settings = ServeSettings(token_sha256=hashlib.sha256(token.encode()).digest())
    rows, names, expected = data(1)
    with running(create_app(cancer(), settings)) as base:
        predict = base + "/invocations"
        missing = httpx.post(predict, json=split_body(rows, names))
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["error"]["code"] == "unauthorized"
        wrong = {"authorization": "Bearer not-the-token-at-all"}
        assert httpx.post(predict, json=split_body(rows, names), headers=wrong).status_code == 401
        basic = {"authorization": f"Basic {token}"}
        assert httpx.post(predict, json=split_body(rows, names), headers=basic).status_code == 401
        right = {"authorization": f"Bearer {token}"}
        answer = httpx.post(predict, json=split_body(rows, names), headers=right)
        assert answer.json() == {"predictions": expected.tolist()}
        for path in ("/metrics", "/v2/models/cancer", "/openapi.json", "/no-such-route"):
            assert httpx.get(base + path).status_code == 401, path
        v2 = httpx.post(base + "/v2/models/cancer/infer", json={"inputs": []})
        assert v2.status_code == 401 and isinstance(v2.json()["error"], str)
        for path in ("/healthz", "/readyz", "/v2/health/ready", "/v2/models/cancer/ready"):
            assert httpx.get(base + path).status_code == 200, path  # probes carry no token
        text = httpx.get(base + "/metrics", headers=right).text  # Prometheus sends the token
        assert 'mloop_requests_total{endpoint="invocations",status="401"} 3.0' in text


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MLOOP_SERVE_TOKEN": "short"}, "at least 16 characters"),
        ({"MLOOP_SERVE_TOKEN": "has a space in the middle"}, "without spaces"),
    ],
)
def test_a_weak_token_is_refused_before_serving(env: dict[str, str], message: str) -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "mloop", "serve", "churn:1"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
    )
    assert answer.returncode != 0
    assert message in answer.stderr and "secrets.token_urlsafe" in answer.stderr


def test_the_token_comes_from_a_file_or_the_environment_and_only_its_digest_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from mloop.cli.serve import token_digest
    from mloop.errors import InvalidInput

    secret = "a-token-from-a-kubernetes-secret"
    (tmp_path / "token").write_text(secret + "\n")
    assert token_digest(tmp_path / "token") == hashlib.sha256(secret.encode()).digest()
    with pytest.raises(InvalidInput, match="cannot read the token file"):
        token_digest(tmp_path / "missing")
    monkeypatch.delenv("MLOOP_SERVE_TOKEN", raising=False)
    assert token_digest(None) is None  # no token: an open server
    monkeypatch.setenv("MLOOP_SERVE_TOKEN", secret)
    assert token_digest(None) == hashlib.sha256(secret.encode()).digest()
    assert "MLOOP_SERVE_TOKEN" not in os.environ  # not inherited by what the model starts


def test_two_workers_answer_from_two_pids() -> None:
    served = Served("pid", "--workers", "2", "--delay", "0.02")
    try:
        rows, names, _ = data(1)
        pids: set[int] = set()

        def post() -> None:
            for _ in range(5):  # a new connection each time: the kernel picks a worker
                answer = httpx.post(served.url + "/invocations", json=split_body(rows, names))
                pids.add(answer.json()["predictions"][0])

        threads = [threading.Thread(target=post) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(pids) == 2 and os.getpid() not in pids
        assert (
            metric(served.url, "mloop_requests_total", endpoint="invocations", status="200") == 40
        )
        assert metric(served.url, "mloop_workers") == 2
    finally:
        assert served.stop() == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_worker_takes_the_gil_back_from_its_other_threads_within_a_millisecond(
    workers: str,
) -> None:
    served = Served("switch", "--workers", workers)
    try:
        rows, names, _ = data(1)
        answer = httpx.post(served.url + "/invocations", json=split_body(rows, names))
        assert answer.json()["predictions"] == [SWITCH_INTERVAL] and SWITCH_INTERVAL <= 0.001
    finally:
        assert served.stop() == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_finishes_the_request_in_flight_refuses_new_ones_and_exits_0(workers: str) -> None:
    served = Served("slow", "--workers", workers, "--delay", "2.0")
    rows, names, _ = data(1)
    answers: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: answers.append(
            httpx.post(served.url + "/invocations", json=split_body(rows, names), timeout=30)
        )
    )
    thread.start()
    wait_for(lambda: metric(served.url, "mloop_requests_in_flight") == 1, 10, "the slow request")
    served.process.send_signal(signal.SIGTERM)

    def refused() -> bool:
        try:
            httpx.get(served.url + "/healthz", timeout=0.5)
        except httpx.ConnectError:
            return True
        except httpx.TransportError:
            return False
        return False

    wait_for(refused, 10, "refusing new connections")
    assert thread.is_alive()  # refused while the slow request was still being answered
    thread.join(30)
    assert [a.status_code for a in answers] == [200]
    assert served.process.wait(timeout=30) == 0


def test_the_cli_imports_the_server_only_to_serve() -> None:
    code = (
        "import sys\n"
        "from mloop.cli.main import build_parser\n"
        "build_parser(['--help'])\n"
        "assert not [m for m in sys.modules if m.startswith('mloop.server')], 'imported'\n"
        "build_parser(['serve', '--help'])\n"
        "assert not [m for m in sys.modules if m.startswith('mloop.server')], 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    help_text = subprocess.run(
        [sys.executable, "-m", "mloop", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--workers" in help_text and "--max-batch-size" in help_text


def serve_options(*options: str) -> argparse.Namespace:
    from mloop.cli.main import build_parser

    argv = ["serve", "churn:1", *options]
    return build_parser(argv).parse_args(argv)


def test_the_cli_defaults_are_the_server_settings() -> None:
    from mloop.cli.serve import byte_size

    given = serve_options()
    assert ServeSettings(**{limit.field: getattr(given, limit.field) for limit in LIMITS}) == (
        ServeSettings()
    )
    assert given.predict_in == ServeSettings().predict_mode
    assert byte_size("16MiB") == ServeSettings().max_body_bytes
    with pytest.raises(argparse.ArgumentTypeError, match="not a size"):
        byte_size("lots")


def written(limit: Limit, value: float) -> str:
    """A value of the limit's field as its option is written."""
    return repr(value * 1000) if limit.unit is Unit.MILLISECONDS else repr(value)


@pytest.mark.parametrize("limit", LIMITS, ids=[limit.option for limit in LIMITS])
def test_each_option_takes_the_range_its_field_declares(
    limit: Limit, capsys: pytest.CaptureFixture[str]
) -> None:
    low = limit.low + (0.5 if limit.unit is Unit.SECONDS else 0)  # seconds: above 0
    for value in (low, limit.high):
        assert getattr(serve_options(limit.option, written(limit, value)), limit.field) == value
    for value in (limit.low - 1, limit.high * 2):
        with pytest.raises(SystemExit):
            serve_options(limit.option, written(limit, value))
        assert f"argument {limit.option}:" in capsys.readouterr().err
        with pytest.raises(InvalidInput, match=f"{limit.field} .* is out of range") as caught:
            ServeSettings(**{limit.field: value})  # made in code, not by the CLI
        assert caught.value.hint == f"set {limit.option} within it"
    if limit.unit is Unit.SECONDS:
        with pytest.raises(InvalidInput, match="above 0"):
            ServeSettings(**{limit.field: 0.0})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "99999"], "argument --port: not a port: '99999' (0-65535"),
        (["--max-body-size", "12zz"], "argument --max-body-size: not a size: '12zz'"),
    ],
)
def test_bad_serve_options_are_one_line_errors(args: list[str], message: str) -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "mloop", "serve", "churn:1", *args],
        capture_output=True,
        text=True,
    )
    assert answer.returncode == 2
    assert message in answer.stderr
    assert "Traceback" not in answer.stderr


@pytest.mark.parametrize(
    ("host", "hint"),
    [
        ("192.0.2.1", "192.0.2.1 is not an address of this machine"),  # TEST-NET-1
        ("nosuchhost.invalid", "not a host name this machine can resolve"),
    ],
)
def test_an_address_that_cannot_be_bound_says_which_option_to_fix(host: str, hint: str) -> None:
    from mloop.errors import ConfigError
    from mloop.server.workers import bind_socket

    with pytest.raises(ConfigError) as caught:
        bind_socket(host, 0)
    assert hint in (caught.value.hint or "")


def test_a_port_in_use_says_so() -> None:
    from mloop.errors import ConfigError
    from mloop.server.workers import bind_socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(ConfigError) as caught:
            bind_socket("127.0.0.1", taken.getsockname()[1])
    assert "pick another port with --port" in (caught.value.hint or "")
