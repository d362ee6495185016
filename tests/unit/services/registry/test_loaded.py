"""What a loaded model version knows of its text inputs: the categories its training data held."""

from __future__ import annotations

from mloop.domain.dataset import ColumnProfile, TableProfile
from mloop.domain.model import ColumnSpec, Signature
from mloop.services.registry.loaded import training_categories

SIGNATURE = Signature(
    (ColumnSpec("plan", "string"), ColumnSpec("city", "string"), ColumnSpec("age", "int64"))
)


def text(name: str, top: dict[str, int], distinct: int) -> ColumnProfile:
    total = sum(top.values())
    return ColumnProfile(
        name, "string", "categorical", total, 0, top=tuple(top.items()), distinct=distinct
    )


def test_only_columns_whose_profile_lists_every_value_have_known_categories() -> None:
    train = TableProfile(
        "train.csv",
        10,
        (
            text("plan", {"monthly": 6, "yearly": 4}, 2),
            text("city", {"paris": 5, "oslo": 3}, 7),  # top 2 of 7: the rest is unknown
            ColumnProfile("age", "int64", "numeric", 10, 0, min=1, max=9),
            text("label", {"yes": 5, "no": 5}, 2),  # not an input
        ),
    )
    assert training_categories(SIGNATURE, [train]) == {"plan": frozenset({"monthly", "yearly"})}


def test_categories_add_up_over_tables_unless_one_table_cannot_tell() -> None:
    first = TableProfile(
        "a.csv", 3, (text("plan", {"monthly": 3}, 1), text("city", {"oslo": 3}, 1))
    )
    second = TableProfile(
        "b.csv", 3, (text("plan", {"weekly": 3}, 1), text("city", {"rome": 1, "bern": 1}, 3))
    )
    found = training_categories(SIGNATURE, [first, second])
    assert found == {"plan": frozenset({"monthly", "weekly"})}
    assert training_categories(None, [first]) == {}
