"""The one atomic writer: crash safety, fsync of file and directory, and every atomic write going through it."""

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from streamguard import atomic
from streamguard.atomic import atomic_path, atomic_write, write_bytes_atomic


class Crash(RuntimeError):
    pass


def _others(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_write_replaces_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "sub" / "state.json"
    write_bytes_atomic(target, b"old")
    write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new" and _others(target) == []
    with atomic_write(target, "w") as f:
        f.write("caf\u00e9\n")
    assert target.read_bytes() == "caf\u00e9\n".encode()


def test_crash_between_write_and_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    write_bytes_atomic(target, b"old contents")
    seen = {}

    def crash(src, dst):
        seen["tmp"] = Path(src)
        seen["tmp_bytes"] = Path(src).read_bytes()  # written and complete, not yet renamed
        raise Crash("power cut before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(Crash):
        write_bytes_atomic(target, b"new contents, longer than the old")
    assert seen["tmp_bytes"] == b"new contents, longer than the old"
    assert seen["tmp"].parent == target.parent and seen["tmp"].name.startswith(f".{target.name}.")
    assert target.read_bytes() == b"old contents"
    assert _others(target) == []  # the temporary file is removed


def test_error_while_writing_keeps_the_old_file(tmp_path):
    target = tmp_path / "data.jsonl"
    write_bytes_atomic(target, b"old\n")
    with pytest.raises(Crash):
        with atomic_write(target, "w") as f:
            f.write("half a ")
            raise Crash("writer failed")
    assert target.read_bytes() == b"old\n" and _others(target) == []


def test_killed_process_leaves_only_a_hidden_temp_file(tmp_path):
    """A real crash (the process dies between write and rename): nothing partial under the final name."""
    target = tmp_path / "store" / "lr_cache" / "key.json"
    write_bytes_atomic(target, b'{"lr": 1}')
    code = textwrap.dedent(f"""
        import os
        from streamguard.atomic import write_bytes_atomic
        os.replace = lambda *a: os._exit(9)
        write_bytes_atomic({str(target)!r}, b'{{"lr": 2, "pad": "' + b'x' * 100000 + b'"}}')
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert res.returncode == 9, res.stderr
    assert target.read_bytes() == b'{"lr": 1}'
    (left,) = _others(target)
    assert left.startswith(".key.json.tmp-")
    from streamguard.storage.local import LocalStore

    assert LocalStore(tmp_path / "store").list() == ["lr_cache/key.json"]  # the store never lists it


def test_file_fsynced_before_rename_then_directory_fsynced(tmp_path, monkeypatch):
    target = tmp_path / "ckpt" / "last.pt"
    target.parent.mkdir()
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync_dir" if stat.S_ISDIR(st.st_mode) else "fsync_file", (st.st_dev, st.st_ino)))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", None))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_bytes_atomic(target, b"weights")
    d = os.stat(target.parent)
    f = os.stat(target)
    assert events == [("fsync_file", (f.st_dev, f.st_ino)), ("replace", None), ("fsync_dir", (d.st_dev, d.st_ino))]


def test_atomic_path_serves_writers_that_open_the_file_themselves(tmp_path):
    torch = pytest.importorskip("torch")
    a, b = tmp_path / "a" / "shard.pt", tmp_path / "b" / "shard.pt"
    for p in (a, b):
        with atomic_path(p) as tmp:
            torch.save({"x": torch.arange(5)}, tmp)
    assert a.read_bytes() == b.read_bytes()  # the random part of the temp name does not reach the file
    assert torch.load(a, weights_only=True)["x"].tolist() == [0, 1, 2, 3, 4]


def _writers(tmp_path):
    from streamguard.data.samples import Sample, write_samples
    from streamguard.data.synthetic import write_demo_dataset
    from streamguard.graphs.shards import write_shard
    from streamguard.jsonio import write_json_atomic
    from streamguard.storage.local import LocalStore

    store = LocalStore(tmp_path / "store")
    src = tmp_path / "src.bin"
    src.write_bytes(b"model bytes")
    return {
        "jsonio.write_json_atomic": (tmp_path / "j" / "m.json", lambda p: write_json_atomic(p, {"a": 1})),
        "samples.write_samples": (tmp_path / "s" / "train.jsonl",
                                  lambda p: write_samples(p, [Sample(id="1", func="int f(void){return 0;}",
                                                                     target=0)])),
        "synthetic.write_demo_dataset": (tmp_path / "d" / "demo.jsonl", lambda p: write_demo_dataset(p, n=4)),
        "shards.write_shard": (tmp_path / "g" / "train-00000.pt", lambda p: write_shard(p, [])),
        "LocalStore.put_bytes": (store.root / "k" / "obj.json", lambda p: store.put_bytes("k/obj.json", b"{}")),
        "LocalStore.put_file": (store.root / "m" / "model.pt", lambda p: store.put_file("m/model.pt", src)),
    }


WRITERS = ["jsonio.write_json_atomic", "samples.write_samples", "synthetic.write_demo_dataset", "shards.write_shard",
           "LocalStore.put_bytes", "LocalStore.put_file"]


@pytest.mark.parametrize("name", WRITERS)
def test_every_atomic_write_goes_through_the_one_writer(tmp_path, monkeypatch, name):
    writers = _writers(tmp_path)
    assert sorted(writers) == sorted(WRITERS)
    path, write = writers[name]
    write(path)
    old = path.read_bytes()
    synced = []
    monkeypatch.setattr(atomic, "fsync_dir", lambda d: synced.append(Path(d)))
    write(path)
    assert synced == [path.parent]

    def crash(*_a):
        raise Crash("crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    path.write_bytes(old)
    with pytest.raises(Crash):
        write(path)
    assert path.read_bytes() == old and _others(path) == []
