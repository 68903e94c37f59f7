"""``detect.outputs``: the overwrite rule every tool follows, checked on real files.

References are the file system itself: bytes and inode numbers before and
after, the listing of the folders, and a second process for the lock.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detect.errors import InputError
from detect.outputs import (LOCK, MARKER, FolderLock, atomic_path, check_file_output, check_not_input,
                            claim_folder, folder_kind, remove_stale_temporaries, replaced_folder, same_path,
                            temporary_sibling, write_json_atomic, write_text_atomic)


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


# ---- atomic files ------------------------------------------------------------------

def test_an_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "a" / "b.json"
    write_json_atomic(path, {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
    inode = path.stat().st_ino
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"x": 1} and path.stat().st_ino == inode
    assert listing(tmp_path / "a") == ["b.json"]  # no temporary left behind
    write_text_atomic(path, "new")
    assert path.read_text() == "new" and path.stat().st_ino != inode  # a new file renamed over the old
    with pytest.raises(ValueError):
        write_json_atomic(path, {"x": float("nan")})
    assert path.read_text() == "new"


def test_atomic_path_keeps_the_suffixes_writers_choose_formats_by(tmp_path):
    with atomic_path(tmp_path / "best.weights.h5") as tmp:
        assert tmp.name.endswith(".weights.h5") and tmp.parent == tmp_path
        tmp.write_bytes(b"w")
    assert (tmp_path / "best.weights.h5").read_bytes() == b"w"


# ---- inputs are never outputs --------------------------------------------------------

def test_an_input_is_recognised_by_path_link_and_inode(tmp_path):
    photo = tmp_path / "photos" / "a.jpg"
    photo.parent.mkdir()
    photo.write_bytes(b"jpeg")
    os.link(photo, tmp_path / "hard.jpg")
    os.symlink(photo, tmp_path / "soft.jpg")
    for name in ("photos/a.jpg", "photos/../photos/a.jpg", "hard.jpg", "soft.jpg"):
        assert same_path(tmp_path / name, photo)
        with pytest.raises(InputError, match="is an input of this command"):
            check_not_input(tmp_path / name, [photo], "--json")
    for folder in ("photos", "."):  # a folder holding an input
        with pytest.raises(InputError, match="holds an input of this command"):
            check_not_input(tmp_path / folder, [photo])
    check_not_input(tmp_path / "photos" / "annotated", [photo])  # a new folder beside the input is fine
    # Inside an input folder (a dataset root): what exists there is input, a new path is not.
    with pytest.raises(InputError, match="is inside an input of this command"):
        check_not_input(photo, [tmp_path / "photos"])
    check_not_input(tmp_path / "photos" / "new.json", [tmp_path / "photos"])
    assert not same_path(tmp_path / "other.jpg", photo)


# ---- file outputs ------------------------------------------------------------------

def test_a_file_output_is_new_or_overwrite_and_never_an_input(tmp_path):
    out = tmp_path / "dets.json"
    assert check_file_output(out, "--json") == out and not out.exists()  # checking writes nothing
    out.write_text("earlier")
    with pytest.raises(InputError, match="already exists; choose a new --json or pass --overwrite"):
        check_file_output(out, "--json")
    check_file_output(out, "--json", overwrite=True)
    with pytest.raises(InputError, match="is an input"):
        check_file_output(out, "--json", overwrite=True, inputs=[out])
    with pytest.raises(InputError, match="is a folder"):
        check_file_output(tmp_path, "--json", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot write here"):  # its parent is a file: found before any work
        check_file_output(tmp_path / "file" / "dets.json", "--json")
    assert out.read_text() == "earlier" and listing(tmp_path) == ["dets.json", "file"]


# ---- folder outputs ------------------------------------------------------------------

def test_a_folder_is_claimed_only_if_new_empty_or_the_tools_own(tmp_path):
    out = claim_folder(tmp_path / "new" / "out", "detect", "tools/detect.py")
    assert folder_kind(out) == "detect" and listing(out) == [MARKER]
    (out / "1.jpg").write_bytes(b"drawn")
    assert claim_folder(out, "detect", "tools/detect.py") == out  # its own: written into again
    empty = tmp_path / "empty"
    empty.mkdir()
    assert folder_kind(claim_folder(empty, "detect", "tools/detect.py")) == "detect"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="was not created by tools/detect.py.*--exist-ok"):
        claim_folder(mine, "detect", "tools/detect.py")
    with pytest.raises(InputError, match="was not created by tools/export.py"):
        claim_folder(out, "saved_model", "tools/export.py")  # another tool's kind is foreign too
    claim_folder(mine, "detect", "tools/detect.py", exist_ok=True)
    assert listing(mine) == ["notes.txt"]  # allowed, but not marked as the tool's
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        claim_folder(tmp_path / "file", "detect", "tools/detect.py", exist_ok=True)


def test_a_replaced_folder_swaps_in_whole_and_a_failure_keeps_the_old_one(tmp_path):
    out = tmp_path / "export"
    with replaced_folder(out, "saved_model", "tools/export.py") as tmp:
        assert tmp.parent == tmp_path and tmp != out and not out.exists()
        (tmp / "v1").write_text("1")
    assert listing(out) == [MARKER, "v1"]
    with pytest.raises(RuntimeError):
        with replaced_folder(out, "saved_model", "tools/export.py") as tmp:
            (tmp / "v2").write_text("2")
            raise RuntimeError("the export failed")
    assert listing(out) == [MARKER, "v1"] and listing(tmp_path) == ["export", f"export/{MARKER}", "export/v1"]
    with replaced_folder(out, "saved_model", "tools/export.py") as tmp:
        (tmp / "v2").write_text("2")
    assert listing(out) == [MARKER, "v2"] and listing(tmp_path) == ["export", f"export/{MARKER}", "export/v2"]


def test_a_replaced_folder_refuses_foreign_folders_and_inputs_even_with_overwrite(tmp_path):
    run = tmp_path / "runs" / "shapes"
    run.mkdir(parents=True)
    (run / "best.weights.h5").write_bytes(b"weights")
    for target in (run, tmp_path / "runs"):
        with pytest.raises(InputError, match="was not created by tools/export.py.*--overwrite"):
            with replaced_folder(target, "saved_model", "tools/export.py"):
                pass
        with pytest.raises(InputError, match="(is|holds) an input"):
            with replaced_folder(target, "saved_model", "tools/export.py", overwrite=True,
                                 inputs=[run / "best.weights.h5"]):
                pass
    assert listing(tmp_path) == ["runs", "runs/shapes", "runs/shapes/best.weights.h5"]


def test_stale_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = temporary_sibling(out, "tmp", dead)
    live = temporary_sibling(out, "tmp")  # this process's
    for folder in (stale, live):
        folder.mkdir()
    remove_stale_temporaries(out)
    assert not stale.exists() and live.exists()


# ---- locks -------------------------------------------------------------------------

HOLD = ("import sys, time\nfrom detect.outputs import FolderLock\n"
        "FolderLock(sys.argv[1], 'a training').acquire()\nprint('held', flush=True)\ntime.sleep(60)\n")


def test_a_lock_refuses_a_second_holder_and_dies_with_its_process(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=rf"a training \(pid {holder.pid} on .*\) is writing this folder"):
            FolderLock(tmp_path, "a training").acquire()
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the kernel drops the lock
        holder.wait()
    assert (tmp_path / LOCK).exists()  # the killed holder's file is left ...
    with FolderLock(tmp_path, "a training"):  # ... and is no obstacle
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK).exists()


def test_written_files_get_the_permissions_a_plain_write_gives(tmp_path):
    # mkstemp makes 0600 files: renamed into place as they are, every output would turn private.
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    write_json_atomic(tmp_path / "atomic.json", {})
    with atomic_path(tmp_path / "w.weights.h5") as tmp:
        tmp.write_bytes(b"w")
    for name in ("atomic.json", "w.weights.h5"):
        assert (tmp_path / name).stat().st_mode == plain.stat().st_mode
