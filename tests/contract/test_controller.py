"""The controller's store (`store.controller`) on every implementation: an iteration begun with
its Event and trigger state in one write, one open iteration per pipeline, moves refused when
another controller moved it first, fire history for cool-downs, and leases taken over only
once they expire."""

from __future__ import annotations

import dataclasses

import pytest

from mloop.domain.controller import Iteration, IterationState, Outcome, TriggerState
from mloop.domain.event import Event
from mloop.errors import Conflict, NotFound
from mloop.store.metadata.protocol import MetadataStore
from tests.contract.records import T0

KEY = "triggers.train[0].new_data"


def _iteration(id: str = "a" * 32, pipeline: str = "train", at: float = T0) -> Iteration:
    return Iteration(
        id, pipeline, KEY, "new_data", "1,200 new rows >= 1,000", IterationState.TRIGGERED,
        at, at, {"new_rows": 1200, "threshold": 1000, "files": ["landing/ünï.csv"]},
    )  # fmt: skip


def _event(action: str, at: float = T0) -> Event:
    return Event(at, "controller", action, "pipeline/train", "why", {"n": 1})


def test_an_iteration_begins_with_its_event_and_trigger_state(
    metadata_store: MetadataStore,
) -> None:
    it = _iteration()
    metadata_store.controller.begin(
        it, _event("controller.triggered"), TriggerState(KEY, T0, {"rows": 1}, fired=T0)
    )

    assert metadata_store.controller.get(it.id) == it
    assert metadata_store.controller.current("train") == it
    assert metadata_store.controller.current("score") is None
    assert metadata_store.controller.trigger_states()[KEY] == TriggerState(
        KEY, T0, {"rows": 1}, fired=T0
    )
    assert [e.action for e in metadata_store.events.find("pipeline/train")] == [
        "controller.triggered"
    ]
    with pytest.raises(Conflict, match="in progress"):  # one at a time per pipeline
        metadata_store.controller.begin(
            _iteration("b" * 32), _event("controller.triggered"), TriggerState(KEY)
        )
    assert [i.id for i in metadata_store.controller.recent()] == [it.id]
    with pytest.raises(NotFound):
        metadata_store.controller.get("c" * 32)


def test_advance_is_compare_and_set_and_done_frees_the_pipeline(
    metadata_store: MetadataStore,
) -> None:
    it = _iteration()
    metadata_store.controller.begin(it, _event("controller.triggered"), TriggerState(KEY))
    moved = dataclasses.replace(
        it, state=IterationState.TRAINING, dataset="churn:3", updated=T0 + 5
    )
    metadata_store.controller.advance(moved, IterationState.TRIGGERED)
    with pytest.raises(Conflict):  # a second controller working from the old state
        metadata_store.controller.advance(
            moved, IterationState.TRIGGERED, _event("controller.retrained")
        )
    assert len(metadata_store.events.find("pipeline/train")) == 1  # the refused Event too

    done = dataclasses.replace(
        moved, state=IterationState.DONE, outcome=Outcome.FAILED, error="step 'train' failed",
        run_id="r" * 32, model="churn:4", endpoint="churn", deployment=7,
    )  # fmt: skip
    metadata_store.controller.advance(
        done, IterationState.TRAINING, _event("controller.failed", T0 + 6)
    )
    assert metadata_store.controller.get(it.id) == done
    assert metadata_store.controller.current("train") is None
    assert metadata_store.controller.outcomes() == {"failed": 1}
    later = _iteration("b" * 32, at=T0 + 100)
    metadata_store.controller.begin(
        later, _event("controller.triggered"), TriggerState(KEY, fired=T0 + 100)
    )
    assert [i.id for i in metadata_store.controller.recent()] == [later.id, it.id]
    assert [i.id for i in metadata_store.controller.recent(limit=1)] == [later.id]
    assert metadata_store.controller.fires(KEY, T0) == [T0, T0 + 100]
    assert metadata_store.controller.fires(KEY, T0 + 1) == [T0 + 100]
    assert metadata_store.controller.fires("triggers.train[1].schedule", 0) == []


def test_trigger_states_are_replaced_whole(metadata_store: MetadataStore) -> None:
    metadata_store.controller.save_trigger(
        TriggerState(KEY, T0, {"error": "gone"}, failures=2, error="gone")
    )
    state = TriggerState(KEY, T0 + 1, {"new_rows": 3}, fired=T0, mark=T0 - 60)
    metadata_store.controller.save_trigger(state, _event("controller.suppressed"))
    assert metadata_store.controller.trigger_states() == {KEY: state}
    assert metadata_store.events.find("pipeline/train")[0].action == "controller.suppressed"


def test_a_lease_has_one_holder_until_it_expires_or_is_released(
    metadata_store: MetadataStore,
) -> None:
    assert metadata_store.controller.lease("controller", "host-a:1", T0, ttl=30)
    assert metadata_store.controller.lease(
        "controller", "host-a:1", T0 + 20, ttl=30
    )  # renewed to T0 + 50
    assert not metadata_store.controller.lease("controller", "host-b:2", T0 + 40, ttl=30)
    assert metadata_store.controller.holder("controller", T0 + 40) == "host-a:1"
    assert metadata_store.controller.lease(
        "controller", "host-b:2", T0 + 51, ttl=30
    )  # a expired: taken over
    assert not metadata_store.controller.lease("controller", "host-a:1", T0 + 52, ttl=30)
    metadata_store.controller.release("controller", "host-a:1")  # not a's to give
    assert metadata_store.controller.holder("controller", T0 + 52) == "host-b:2"
    metadata_store.controller.release("controller", "host-b:2")
    assert metadata_store.controller.holder("controller", T0 + 52) is None
    assert metadata_store.controller.lease("controller", "host-a:1", T0 + 53, ttl=30)
    assert metadata_store.controller.lease(
        "other", "host-b:2", T0 + 53, ttl=30
    )  # leases are per name
    # a holder known to be dead is replaced before its lease runs out, and only that one
    assert not metadata_store.controller.lease(
        "controller", "host-c:3", T0 + 54, ttl=30, replacing="host-b:2"
    )
    assert metadata_store.controller.lease(
        "controller", "host-c:3", T0 + 54, ttl=30, replacing="host-a:1"
    )
    assert metadata_store.controller.holder("controller", T0 + 54) == "host-c:3"
