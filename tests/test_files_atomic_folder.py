"""`atomic_write_folder`: a folder is replaced whole, and a process killed at any point leaves the old or the new one."""

from __future__ import annotations

import itertools
import os
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from s4eca_peft import files
from s4eca_peft.files import atomic_write_folder, exchange_paths, recover_folder_swap

OLD = {"adapter_config.json": "old config", "adapter_model.safetensors": "old weights", "s4eca_base/config.json": "old"}
NEW = {"adapter_config.json": "new config", "adapter_model.safetensors": "new weights", "s4eca_base/config.json": "new",
       "s4eca_metadata.json": "new metadata"}


class Killed(BaseException):
    """Stands for the process being killed: nothing after it runs (cleanup in ``finally`` blocks fails too)."""


class Killer:
    """Counts the steps of a folder write (each file written, rename, exchange, removal) and kills at step ``at``."""

    def __init__(self, at: int) -> None:
        self.at, self.steps, self.fired_at = at, 0, None

    def step(self, what: str) -> None:
        self.steps += 1
        if self.fired_at is not None or self.steps >= self.at:
            self.fired_at = self.fired_at or what
            raise Killed(what)

    def wrap(self, what: str, real: Callable) -> Callable:
        def call(*args, **kwargs):
            self.step(what)
            return real(*args, **kwargs)

        return call


def writer(contents: dict[str, str], step: Callable[[str], None] = lambda what: None) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        for name, text in contents.items():
            step("write")
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)

    return write


def contents(folder: Path) -> dict[str, str] | None:
    if not folder.exists():
        return None
    return {p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "rename-aside"])
def test_a_kill_at_any_point_leaves_the_old_or_the_new_folder_whole(tmp_path, monkeypatch, exchange):
    outcomes = []
    for at in itertools.count(1):
        target = tmp_path / f"kill-{at}" / "adapter"
        atomic_write_folder(target, writer(OLD))
        killer = Killer(at)
        with monkeypatch.context() as patch:
            patch.setattr(os, "rename", killer.wrap("rename", os.rename))
            patch.setattr(shutil, "rmtree", killer.wrap("rmtree", shutil.rmtree))
            patch.setattr(files, "exchange_paths",
                          killer.wrap("exchange", exchange_paths if exchange else lambda first, second: False))
            try:
                atomic_write_folder(target, writer(NEW, killer.step))
            except Killed:
                pass
        seen = contents(target)
        if killer.fired_at == "write":
            assert seen == OLD, f"killed while writing (step {at}): the previous folder must be intact"
        elif exchange:
            assert seen in (OLD, NEW), f"killed at step {at} ({killer.fired_at}): {seen}"
        else:  # between the two renames the folder is aside, whole, until the next start puts it back
            assert seen in (OLD, NEW, None), f"killed at step {at} ({killer.fired_at}): {seen}"
        recover_folder_swap(target)
        after = contents(target)
        assert after in (OLD, NEW), f"killed at step {at} ({killer.fired_at}), after recovery: {after}"
        assert [p.name for p in target.parent.iterdir()] == ["adapter"], "a temporary or set-aside folder was left"
        outcomes.append((killer.fired_at, seen is not None, after == NEW))
        if killer.fired_at is None:
            assert after == NEW
            break
    fired = [what for what, _, _ in outcomes]
    assert fired.count("write") == len(NEW)
    assert fired.count("exchange") == 1 and fired.count("rename") == (0 if exchange else 2)
    if not exchange:
        assert (("rename", False, False)) in outcomes  # the kill between the two renames was reached and recovered


def test_a_new_folder_and_a_failing_write(tmp_path):
    target = tmp_path / "runs" / "adapter"
    atomic_write_folder(target, writer(OLD))
    assert contents(target) == OLD

    def fail(folder: Path) -> None:
        writer(NEW)(folder)
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write_folder(target, fail)
    assert contents(target) == OLD and [p.name for p in target.parent.iterdir()] == ["adapter"]


def test_check_replaceable_keeps_the_old_folder(tmp_path):
    target = tmp_path / "adapter"
    atomic_write_folder(target, writer(OLD))

    def refuse(old: Path, new: Path) -> None:
        assert contents(new) == NEW and contents(old) == OLD
        raise ValueError(f"{old} holds something else")

    with pytest.raises(ValueError, match="holds something else"):
        atomic_write_folder(target, writer(NEW), check_replaceable=refuse)
    assert contents(target) == OLD and [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_a_file_or_a_link_is_not_replaced(tmp_path):
    (tmp_path / "file").write_text("keep")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    for name in ("file", "link"):
        with pytest.raises(NotADirectoryError, match=f"'{tmp_path / name}' is not a folder"):
            atomic_write_folder(tmp_path / name, writer(NEW))
    assert (tmp_path / "file").read_text() == "keep" and (tmp_path / "link").is_symlink()
    assert not list((tmp_path / "elsewhere").iterdir())


@pytest.mark.skipif(sys.platform != "linux", reason="renameat2 is Linux's")
def test_exchange_swaps_two_folders_in_one_call(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "from-a").write_text("a")
    (tmp_path / "b").mkdir()
    assert exchange_paths(tmp_path / "a", tmp_path / "b") is True
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["from-a"] and not list((tmp_path / "a").iterdir())
    with pytest.raises(FileNotFoundError, match="cannot swap"):
        exchange_paths(tmp_path / "missing", tmp_path / "b")


def test_the_folder_and_its_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_folder(tmp_path / "adapter", writer(NEW))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "adapter").stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "adapter").rglob("*") if p.is_file()} == {0o644}
