"""What `POST /feedback` takes, item by item, on a real routing table: labels by request id
(also on an endpoint routed by a sticky key, where outcomes need the key), outcomes as before,
both in one item; a bad item refuses the batch and is named."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from mloop.domain.feedback import Label
from mloop.errors import InvalidInput
from mloop.sdk.python_model import PythonModel
from mloop.server import feedback
from mloop.server.inference import endpoint_app
from mloop.server.slots import ServedVersion, ServingPlan, Table
from mloop.services.serving.predictor import LoadedModel


class Echo(PythonModel):
    def predict(self, batch: Any) -> Any:
        return batch


def _table(sticky: str | None = None) -> Table:
    plan = ServingPlan("web", (ServedVersion("m:1"),), sticky=sticky, outcome="rate")
    return endpoint_app(plan, {"m:1": LoadedModel("m", 1, Echo(), None)}).table


def _parse(items: Any, table: Table | None = None) -> feedback.Feedback:
    return feedback.parse(orjson.dumps(items), table or _table(), at=7.0)


def test_labels_outcomes_and_both_in_one_batch() -> None:
    parsed = _parse(
        {
            "feedback": [
                {"request_id": "a", "label": "churned"},
                {"request_id": "b", "label": 2.5, "row": 3},
                {"key": "c", "outcome": True},
                {"request_id": "d", "label": False, "outcome": 0},
            ]
        }
    )

    assert parsed.items == 4
    assert parsed.labels == [
        Label("a", "churned", 7.0, "http"),
        Label("b", 2.5, 7.0, "http", 3),
        Label("d", False, 7.0, "http"),
    ]
    assert parsed.outcomes == [(b"c", 1.0), (b"d", 0.0)]
    counted = feedback.count(_table(), parsed)
    assert counted.plain() == {"accepted": 4, "versions": {"m:1": 2}}  # no label stored: no key


def test_a_sticky_endpoint_takes_labels_by_request_id_and_outcomes_by_key() -> None:
    sticky = _table("header:x-user")
    parsed = _parse(
        [
            {"request_id": "r1", "label": 1},
            {"key": "u7", "request_id": "r2", "label": 0, "outcome": 1},
        ],
        sticky,
    )
    assert [x.request_id for x in parsed.labels] == ["r1", "r2"] and parsed.outcomes == [
        (b"u7", 1.0)
    ]

    with pytest.raises(
        InvalidInput,
        match="item 0 names a request id, but endpoint 'web' assigns variants by header:x-user",
    ):
        _parse([{"request_id": "r1", "label": 1, "outcome": 1}], sticky)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"request_id": "a"}, "has neither an outcome nor a label"),
        ({"label": 1}, "has request id None, not a text"),
        ({"request_id": "a", "label": None}, "has label None"),
        ({"request_id": "a", "label": [1]}, "has label [1]"),
        ({"request_id": "a", "label": ""}, "has a label of 0 characters"),
        ({"request_id": "a" * 1001, "label": 1}, "has a request id of 1001 characters"),
        ({"request_id": "a", "label": 1, "row": -1}, "has row -1"),
        (
            {"request_id": "a", "label": 1, "outcome": 3},
            "has outcome 3, but the test counts a rate",
        ),
    ],
)
def test_a_bad_item_refuses_the_batch_naming_it(item: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=f"feedback item 1 {message}".replace("[", r"\[")):
        _parse([{"request_id": "ok", "label": 1}, item])


def test_a_server_that_logs_nothing_refuses_labels_with_a_way_out() -> None:
    with pytest.raises(InvalidInput, match="keeps no prediction log on this server") as caught:
        feedback.store(None, "web", [Label("a", 1, 7.0, "http")])
    assert caught.value.hint == feedback.NO_LOG_HINT
