"""Whose fault an error answer says it is, at a real model server on 127.0.0.1.

A request the checks refuse is the client's mistake (4xx); what a model's own code raises on a
checked request is the model's (`model_failed`, a 500, with the traceback in the server's log);
and every code the server sends is one the error registry knows, with the status it gives.
"""

from __future__ import annotations

import ast
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

import mloop.errors
import mloop.server
from mloop.domain.model import ColumnSpec, Signature
from mloop.errors import ERRORS_BY_CODE, MloopError, ModelFailed
from mloop.sdk.python_model import PythonModel
from mloop.server.inference import ServeSettings, create_app
from mloop.services.serving.batch import predict_frame
from mloop.services.serving.predictor import LoadedModel
from tests.integration.serving_helpers import Slow, running
from tests.integration.test_serving import metric
from tests.servers import wait_for

SIGNATURE = Signature((ColumnSpec("x", "float64"), ColumnSpec("y", "float64")))
JSON = {"content-type": "application/json"}


class Broken(PythonModel):
    """A model with a bug of its own: it adds a number to a string."""

    def predict(self, batch: Any) -> Any:
        return [int(row[0]) + "1" for row in batch]  # TypeError: int + str


class Unanswerable(PythonModel):
    """Predicts something no answer can hold: the server's own serialization fails."""

    def predict(self, batch: Any) -> Any:
        return np.array([object() for _ in range(len(batch))], dtype=object)


def broken() -> LoadedModel:
    return LoadedModel("broken", 1, Broken(), SIGNATURE)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with running(create_app(broken())) as base:
        yield base


def test_a_models_own_type_error_is_a_500_logged_and_counted(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="mloop.server"):
        answer = httpx.post(url + "/invocations", json={"inputs": [[1.0, 2.0]]})
    assert answer.status_code == 500, answer.text
    error = answer.json()["error"]
    assert error["code"] == "model_failed"
    assert error["message"].startswith("broken:1 failed to predict: TypeError: ")
    assert "the traceback is in the server's log" in error["hint"]
    logged = [r for r in caplog.records if r.name == "mloop.server" and r.exc_info]
    assert logged and logged[0].exc_info is not None
    assert logged[0].exc_info[0] is TypeError
    assert metric(url, "mloop_requests_total", endpoint="invocations", status="500") >= 1
    # the Open Inference Protocol says the same, in its own shape
    tensor = {"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}
    inputs = [tensor, {**tensor, "name": "y"}]
    oip = httpx.post(url + "/v2/models/broken/infer", json={"inputs": inputs})
    assert oip.status_code == 500 and oip.json()["code"] == "model_failed"


def test_the_clients_mistake_at_the_same_model_is_still_a_422(url: str) -> None:
    short = httpx.post(url + "/invocations", json={"inputs": [[1.0]]})
    assert short.status_code == 422
    assert short.json()["error"]["code"] == "validation_failed"


class Strict(PythonModel):
    """Refuses rows of the wrong width, as scikit-learn does when no signature checked them."""

    def predict(self, batch: Any) -> Any:
        if np.asarray(batch).shape[1] != 2:
            raise ValueError(f"X has {np.asarray(batch).shape[1]} features, expecting 2")
        return np.asarray(batch)[:, 0]


def test_without_a_signature_what_the_model_refuses_is_the_inputs_fault() -> None:
    # Nothing checked the input before the model ran: a wrong width is the client's (422), and
    # the model's own words say why; batch scoring says the same.
    unsigned = LoadedModel("strict", 1, Strict(), None)
    with running(create_app(unsigned)) as base:
        answer = httpx.post(base + "/invocations", json={"inputs": [[1.0]]})
        right = httpx.post(base + "/invocations", json={"inputs": [[1.0, 2.0]]})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_failed"
    assert "strict:1 refused the input: ValueError: X has 1 features" in error["message"]
    assert "no signature" in error["hint"]
    assert right.status_code == 200 and right.json() == {"predictions": [1.0]}
    with pytest.raises(MloopError, match="refused the input") as caught:
        predict_frame(unsigned, pd.DataFrame({"x": [1.0]}), "rows.csv")
    assert caught.value.code == "validation_failed"


def test_batch_scoring_reports_the_models_own_error_as_the_models() -> None:
    frame = pd.DataFrame({"x": [1.0], "y": [2.0]})
    with pytest.raises(ModelFailed, match=r"rows.csv: broken:1 failed to predict: TypeError"):
        predict_frame(broken(), frame, "rows.csv")


def _status_and_code(answer: httpx.Response) -> tuple[int, str]:
    error = answer.json()
    code = error["code"] if isinstance(error["error"], str) else error["error"]["code"]
    return answer.status_code, code


def _provoked() -> Iterator[tuple[int, str]]:
    """An answer with each code the model server sends, provoked as a client would."""
    rows = {"inputs": [[1.0, 2.0]]}
    with running(create_app(broken(), ServeSettings(max_body_bytes=4096))) as base:
        yield _status_and_code(httpx.get(base + "/nowhere"))
        yield _status_and_code(httpx.post(base + "/v2/models/other/infer", json=rows))
        yield _status_and_code(httpx.get(base + "/invocations"))
        yield _status_and_code(httpx.post(base + "/invocations", content=b"1", headers={}))
        yield _status_and_code(httpx.post(base + "/invocations", json={"x": "1" * 5000}))
        yield _status_and_code(httpx.post(base + "/invocations", content=b"{", headers=JSON))
        yield _status_and_code(httpx.post(base + "/invocations", json={"inputs": [[1.0]]}))
        yield _status_and_code(httpx.post(base + "/invocations", json=rows))
        # a head over the limit is refused below the app, before any route
        big = {"x-padding": "a" * 70 * 1024}
        yield _status_and_code(httpx.get(base + "/healthz", headers=big))
    with running(create_app(broken(), ServeSettings(max_connections=1))) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))):  # holds the one connection
            yield _status_and_code(httpx.get(base + "/healthz"))
    token = ServeSettings(token_sha256=b"\0" * 32)
    with running(create_app(broken(), token)) as base:
        yield _status_and_code(httpx.post(base + "/invocations", json=rows))
    # One predict slot and no queue: while a slow request holds the slot, the next is turned away.
    slow, wide = Slow(2.0), {"inputs": [[0.0] * 30]}
    with running(create_app(slow, ServeSettings(max_concurrency=1, max_queue=0))) as base:
        holder = threading.Thread(
            target=httpx.post, args=(base + "/invocations",), kwargs={"json": wide, "timeout": 30}
        )
        holder.start()
        wait_for(lambda: bool(slow.sizes), 10, "the first request to hold the slot")
        yield _status_and_code(httpx.post(base + "/invocations", json=wide))
        holder.join()
    with running(create_app(Slow(0.5), ServeSettings(timeout=0.05))) as base:
        yield _status_and_code(httpx.post(base + "/invocations", json={"inputs": [[0.0] * 30]}))
    unanswerable = LoadedModel("odd", 1, Unanswerable(), SIGNATURE)
    with running(create_app(unanswerable)) as base:
        yield _status_and_code(httpx.post(base + "/invocations", json=rows))


def _error_classes_the_server_names() -> set[type[MloopError]]:
    """Every error class the server's code names: the codes its answers can carry (besides
    those of the MloopErrors the services raise, which pass through `from_error`)."""
    named: set[type[MloopError]] = set()
    for path in Path(mloop.server.__file__).parent.glob("*.py"):
        # workers.py starts servers: its errors stop `mloop serve`; monitor.py's thread logs
        # its errors and answers no request
        if path.name in ("workers.py", "monitor.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            found = getattr(mloop.errors, node.id, None) if isinstance(node, ast.Name) else None
            if (
                isinstance(found, type)
                and issubclass(found, MloopError)
                and found is not MloopError
            ):
                named.add(found)
    return named


def test_every_code_the_server_sends_is_in_the_registry_with_its_status() -> None:
    sent = list(_provoked())
    assert [(status, code) for status, code in sent if code not in ERRORS_BY_CODE] == []
    assert [(s, c) for s, c in sent if ERRORS_BY_CODE[c].http_status != s] == []
    codes = {code for _, code in sent}
    named = {cls.code for cls in _error_classes_the_server_names()}
    # every class the server names is answered above, but a client too slow to send its
    # request (tests/integration/test_serving_limits.py waits for that one)
    assert named - codes == {"request_timeout"}
    assert {"model_failed", "validation_failed", "invalid_input"} <= codes


def test_the_server_builds_no_error_body_from_a_bare_code() -> None:
    for path in Path(mloop.server.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "error_body"
            ):
                assert not isinstance(node.args[0], ast.Constant), f"{path.name}:{node.lineno}"
