"""One exception hierarchy under mapshare.Error, mirroring the Rust
variants, with the Rust message and the variant's fields."""

import pytest

import mapshare

VARIANTS = """NotFound IsDirectory NotAFile Empty PermissionDenied AlreadyExists
WindowOutOfRange Overflow ZeroLength OutOfBounds Misaligned ReadOnly Busy
Lagged Truncated NoSpace InvalidName Unsupported SpecialFileSystem
NotMapshare ByteOrderMismatch UnsupportedVersion WrongKind TypeMismatch
BadChecksum Corrupted Timeout LeaseTableFull OwnerDied Poisoned
NotRecoverable RepairNotApplicable ForkedChild RoleTaken Disconnected
PeerDied Deleted TooLarge Io""".split()


def test_every_variant_is_an_exported_subclass_of_error():
    assert issubclass(mapshare.Error, Exception)
    for name in VARIANTS:
        cls = getattr(mapshare, name)
        assert issubclass(cls, mapshare.Error), name
        assert cls is not mapshare.Error
        assert name in mapshare.__all__
    assert "Error" in mapshare.__all__


def test_errors_carry_path_and_the_rust_message(tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    with pytest.raises(mapshare.IsDirectory) as e:
        mapshare.Region.open(d)
    assert e.value.path == str(d) and str(d) in str(e.value)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(mapshare.Empty) as e:
        mapshare.Region.open(empty)
    assert e.value.path == str(empty)
    with pytest.raises(mapshare.ZeroLength) as e:
        mapshare.Region.create(tmp_path / "zero", 0)
    assert e.value.path == str(tmp_path / "zero")


def test_a_plain_file_is_not_mapshare(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"not a mapshare file at all" * 200)
    with pytest.raises(mapshare.NotMapshare) as e:
        mapshare.SnapshotReader(plain)
    assert e.value.path == str(plain)
    with pytest.raises(mapshare.NotMapshare):
        mapshare.SharedFile.open(plain, timeout=0)


def test_opening_a_file_as_the_wrong_kind_is_wrong_kind(tmp_path):
    q = tmp_path / "q"
    mapshare.Producer(q, 4096).close()
    with pytest.raises(mapshare.WrongKind) as e:
        mapshare.SnapshotReader(q)
    assert e.value.path == str(q)
    assert e.value.expected and e.value.found
    with pytest.raises(mapshare.WrongKind):
        mapshare.SharedFile.open(q)


def test_catching_the_base_class_catches_every_variant(tmp_path):
    caught = []
    for action in [
        lambda: mapshare.Region.open(tmp_path / "none"),
        lambda: mapshare.Region.shm_open("bad/name"),
        lambda: mapshare.SnapshotReader(tmp_path / "none"),
    ]:
        try:
            action()
        except mapshare.Error as e:
            caught.append(type(e).__name__)
    assert caught == ["NotFound", "InvalidName", "NotFound"]
