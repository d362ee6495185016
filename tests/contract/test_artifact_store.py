"""The artifact store contract: a local folder (`local`) and S3 on moto's server (`s3`) alike.

Damage is done behind the store's back, straight in the backend (a file under the folder, an
object put with boto3), as a failing disk or another tool would do it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mloop.domain.digests import digest_bytes
from mloop.errors import CorruptArtifact, NotFound
from mloop.store.artifacts.cas import SMALL_FILE, ArtifactStore, key_of

LARGE = SMALL_FILE + (1 << 20) + 7  # over the small-file limit: takes the staged path


def overwrite(artifact_uri: str, digest: str, data: bytes | None) -> None:
    """Replace (or, with None, remove) an object's bytes directly in the backend."""
    key = key_of(digest)
    if artifact_uri.startswith("s3://"):
        import boto3

        bucket, _, prefix = artifact_uri.removeprefix("s3://").partition("/")
        client = boto3.client("s3")  # AWS_ENDPOINT_URL points at the moto server
        if data is None:
            client.delete_object(Bucket=bucket, Key=f"{prefix}/{key}")
        else:
            client.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=data)
        return
    path = Path(artifact_uri) / key
    if data is None:
        path.unlink()
    else:
        path.write_bytes(data)


def flipped(data: bytes) -> bytes:
    """The same length, one bit different."""
    return bytes([data[0] ^ 1]) + data[1:]


def test_identical_bytes_are_stored_once(artifact_store: ArtifactStore) -> None:
    first = artifact_store.put_bytes(b"hello")
    second = artifact_store.put_bytes(b"hello")
    other = artifact_store.put_bytes(b"world")

    assert first == second == digest_bytes(b"hello")
    assert sorted(d for d, _, _ in artifact_store.iter_objects()) == sorted([first, other])
    assert artifact_store.read_bytes(first) == b"hello"


@pytest.mark.parametrize("size", [0, 1000, LARGE], ids=["empty", "small", "large"])
def test_files_are_stored_once_and_read_back(
    artifact_store: ArtifactStore, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    one, two = tmp_path / "one.bin", tmp_path / "two.bin"
    one.write_bytes(data)
    two.write_bytes(data)

    digest, stored_size, stored = artifact_store.put_path(one)
    again = artifact_store.put_path(two)

    assert (digest, stored_size, stored) == (digest_bytes(data), size, True)
    assert again == (digest, size, False)
    assert [(d, s) for d, s, _ in artifact_store.iter_objects()] == [(digest, size)]
    assert artifact_store.read_bytes(digest) == data
    with artifact_store.open(digest) as fh:
        assert fh.read() == data
    artifact_store.export(digest, tmp_path / "out" / "copy.bin")
    assert (tmp_path / "out" / "copy.bin").read_bytes() == data
    assert os.listdir(tmp_path / "out") == ["copy.bin"]


def test_a_known_digest_skips_storing(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"weights")
    digest, _, _ = artifact_store.put_path(path)

    assert artifact_store.put_path(path, known_digest=digest) == (digest, 7, False)


def test_exists_size_and_delete(artifact_store: ArtifactStore) -> None:
    digest = artifact_store.put_bytes(b"12345")
    missing = digest_bytes(b"never stored")

    assert (artifact_store.exists(digest), artifact_store.size(digest)) == (True, 5)
    assert (artifact_store.exists(missing), artifact_store.size(missing)) == (False, None)
    artifact_store.delete(digest)
    artifact_store.delete(digest)  # deleting twice is fine
    assert (artifact_store.exists(digest), artifact_store.size(digest)) == (False, None)
    assert list(artifact_store.iter_objects()) == []
    with pytest.raises(NotFound):
        artifact_store.read_bytes(digest)
    with pytest.raises(NotFound):
        artifact_store.open(digest)
    with pytest.raises(NotFound):
        artifact_store.require(digest)


def test_iter_objects_lists_every_object_with_size_and_time(artifact_store: ArtifactStore) -> None:
    blobs = [b"a", b"bb", b"ccc" * 1000]
    digests = [artifact_store.put_bytes(b) for b in blobs]

    found = {d: (s, t) for d, s, t in artifact_store.iter_objects()}

    assert {d: s for d, (s, _) in found.items()} == {
        d: len(b) for d, b in zip(digests, blobs, strict=True)
    }
    assert all(t > 0 for _, t in found.values())


@pytest.mark.parametrize("size", [100, LARGE], ids=["small", "large"])
def test_every_read_path_refuses_corrupt_bytes(
    artifact_store: ArtifactStore, artifact_uri: str, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    digest = artifact_store.put_bytes(data)
    overwrite(artifact_uri, digest, flipped(data))

    with pytest.raises(CorruptArtifact, match=digest[:12]):
        artifact_store.read_bytes(digest)
    with pytest.raises(CorruptArtifact), artifact_store.open(digest) as fh:
        fh.read()
    with pytest.raises(CorruptArtifact):
        artifact_store.export(digest, tmp_path / "out" / "copy.bin")
    assert os.listdir(tmp_path / "out") == []  # neither the file nor a temporary one


def test_check_reports_missing_wrong_size_and_corrupt_objects(
    artifact_store: ArtifactStore, artifact_uri: str
) -> None:
    healthy, short, flip, gone = (
        artifact_store.put_bytes(b"healthy"),
        artifact_store.put_bytes(b"will shrink"),
        artifact_store.put_bytes(b"will flip"),
        artifact_store.put_bytes(b"will vanish"),
    )
    overwrite(artifact_uri, short, b"shrunk")
    overwrite(artifact_uri, flip, flipped(b"will flip"))
    overwrite(artifact_uri, gone, None)

    assert artifact_store.check(healthy, 7, full=True) is None
    assert artifact_store.check(gone, 11, full=False) == "missing"
    assert artifact_store.check(short, 11, full=False) == "size is 6 bytes, expected 11"
    assert artifact_store.check(flip, 9, full=False) is None  # only a full check reads
    assert artifact_store.check(flip, 9, full=True) == "content does not match its digest"
    assert artifact_store.check(flip, None, full=True) == "content does not match its digest"


def test_changes_made_elsewhere_are_seen_after_a_listing(
    artifact_store: ArtifactStore, artifact_uri: str
) -> None:
    """Like `mloop fsck` after `mloop gc` ran on another machine: no stale cached answers."""
    kept, gone = artifact_store.put_bytes(b"kept"), artifact_store.put_bytes(b"short-lived")
    assert len(list(artifact_store.iter_objects())) == 2

    overwrite(artifact_uri, gone, None)

    assert artifact_store.check(gone, 11, full=False) == "missing"
    assert (artifact_store.exists(gone), artifact_store.size(gone)) == (False, None)
    assert [d for d, _, _ in artifact_store.iter_objects()] == [kept]


def test_stores_open_on_one_place_in_many_threads_write_the_same_object(
    artifact_uri: str,
) -> None:
    # as threads that each open the project (and so its store) save one environment listing
    import threading

    from mloop.store import open_artifact_store

    data = b"the same package listing\n" * 100
    stores = [open_artifact_store(artifact_uri) for _ in range(8)]
    digests: list[str] = []
    errors: list[BaseException] = []

    def write(store: ArtifactStore, start: threading.Barrier) -> None:
        start.wait(timeout=30)  # every thread writes at the same moment
        try:
            digests.append(store.put_bytes(data))
        except BaseException as exc:
            errors.append(exc)

    for _ in range(5):
        start = threading.Barrier(len(stores))
        threads = [threading.Thread(target=write, args=(s, start)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert errors == []
    assert digests == [digest_bytes(data)] * len(stores) * 5
    assert stores[0].read_bytes(digest_bytes(data)) == data
