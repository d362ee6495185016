"""The traffic split: which version of a deployment answers one request, and whether a shadow
gets a copy of it.

A `Router` is built once per deployment (a table of cumulative weights) and asked per request.
Every request maps to a point in [0, 100): with a sticky key (a user id from a header or a
payload field) the point is a keyed BLAKE2b hash of the key, so the same key always lands on the
same version, in every server process and on every machine (Python's `hash()` is salted per
process); without one, a uniform draw from the random source the caller passes (seeded in
tests). The hash is keyed by the endpoint and the deployment's sequence, as A/B tools key it by
the experiment: one user is not in the first 10% of every endpoint at once, and the variant a
user had in the last test does not decide the one they get in the next (a carry-over that
would bias it).

Later versions take the top of the range: a canary at 10% takes [90, 100), at 25% [75, 100), so
the keys that saw the canary at 10% still see it at 25%, and a rollback moves only those keys.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Collection, Sequence

from mloop.domain.endpoint import DeployedVersion, Deployment
from mloop.domain.names import ModelRef
from mloop.errors import InvalidInput

_SPAN = 2**64  # the hash's range, mapped onto the weights' total


class Router:
    """Chooses a version per request in O(log n) for n versions, from precomputed sums."""

    __slots__ = ("_bounds", "_hasher", "_total", "versions")

    def __init__(self, versions: Sequence[DeployedVersion], salt: str = "") -> None:
        """`versions` with their weights (those at 0 never answer); `salt` keys the hash
        (`ENDPOINT/SEQUENCE` from `for_deployment`, see the module's docstring)."""
        self.versions = tuple(v for v in versions if v.weight > 0)
        if not self.versions:
            raise InvalidInput(
                "no version takes traffic: every weight is 0",
                "give at least one version a weight above 0",
            )
        bounds, total = [], 0
        for version in self.versions:
            total += version.weight
            bounds.append(total)
        self._bounds = tuple(bounds)
        self._total = total
        self._hasher = hashlib.blake2b(digest_size=8, key=salt.encode()[:64])

    @classmethod
    def for_deployment(
        cls, deployment: Deployment, ready: Collection[ModelRef] | None = None
    ) -> Router:
        """The router of `deployment` in one server: a version whose slot is not `ready` there
        yet gives its share to the ready version with the largest one, so no request waits for a
        model still loading. None means all are ready."""
        versions = deployment.versions
        if ready is not None:
            up = [v for v in versions if v.model in ready and v.weight > 0]
            if not up:
                raise InvalidInput(
                    f"no version of endpoint {deployment.endpoint!r} that takes traffic is ready",
                    "wait for the readiness check, or see `mloop endpoints status`",
                )
            spare = sum(v.weight for v in versions if v.model not in ready)
            heir = max(up, key=lambda v: v.weight)
            versions = tuple(
                DeployedVersion(v.model, v.role, v.weight + spare) if v is heir else v
                for v in versions
                if v.model in ready
            )
        return cls(versions, salt=f"{deployment.endpoint}/{deployment.sequence}")

    def point(self, key: str | bytes) -> int:
        """Where a sticky key lands in [0, total): the same key, the same point, everywhere."""
        hasher = self._hasher.copy()
        hasher.update(key.encode() if isinstance(key, str) else key)
        return int.from_bytes(hasher.digest(), "big") * self._total // _SPAN

    def choose(self, key: str | bytes | None, rng: random.Random) -> DeployedVersion:
        """The version for one request: by its sticky `key`, or, without one, at random.

        Example:
            >>> from mloop.domain.endpoint import Role
            >>> a = DeployedVersion(ModelRef("churn", 3), Role.VARIANT, 50)
            >>> b = DeployedVersion(ModelRef("churn", 4), Role.VARIANT, 50)
            >>> router = Router((a, b), salt="web")
            >>> router.choose("user-7", random.Random()) == router.choose("user-7", random.Random())
            True
        """
        at = int(rng.random() * self._total) if key is None else self.point(key)
        return self.versions[bisect.bisect_right(self._bounds, at)]


def mirror(fraction: float, rng: random.Random) -> bool:
    """Whether a shadow gets a copy of this request: true for `fraction` of them on average.

    Example:
        >>> mirror(1.0, random.Random(0)), mirror(0.0, random.Random(0))
        (True, False)
    """
    return rng.random() < fraction
