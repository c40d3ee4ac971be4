"""Datasets from the Hub: a dataset repo holding the zip (fake Hub, two revisions), unsafe archives refused, and
``s4eca-prepare-data --push_to_hub`` publishing parquet (through a test double of HfApi) that the loaders read back
as the same rows."""

from __future__ import annotations

import json
import re
import shutil
import stat
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from huggingface_hub import CommitInfo, HfApi, RepoUrl
from rrsisd_layout import good_layout

from s4eca_peft.data import load_refsegrs, load_rrsisd, prepare_data_main, write_refsegrs_layout
from s4eca_peft.data.hub import MANIFEST, unpack_zip
from s4eca_peft.data.masks import encode_mask
from s4eca_peft.data.validation import DataValidationWarning

REPO = "owner/refsegrs"
SPLITS = {"train": 3, "val": 2, "test": 2}


def zip_folder(folder: Path, archive: Path, top: str = "RefSegRS") -> Path:
    """``folder`` zipped under one top-level folder, as datasets are distributed."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                handle.write(path, f"{top}/{path.relative_to(folder).as_posix()}")
    return archive


def rows(dataset) -> list[dict]:
    """Every row with the image decoded to pixels and the mask to a boolean array."""
    return [dict(row, image=np.asarray(row["image"].convert("RGB"))) for row in dataset]


def assert_same_rows(loaded, expected) -> None:
    actual, wanted = rows(loaded), rows(expected)
    assert len(actual) == len(wanted) > 0
    for a, b in zip(actual, wanted):
        assert {k: a[k] for k in ("expression", "image_id", "sample_id", "category")} == {
            k: b[k] for k in ("expression", "image_id", "sample_id", "category")}
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["mask"], b["mask"])
        assert ("category_mask" in a) == ("category_mask" in b)
        if "category_mask" in b:
            np.testing.assert_array_equal(a["category_mask"], b["category_mask"])


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("refsegrs")
    return {name: write_refsegrs_layout(root / name, SPLITS, image_size=32, seed=seed)
            for name, seed in (("v1", 0), ("v2", 1))}


def publish_zip(hub, folder: Path, staging: Path) -> str:
    zip_folder(folder, staging / "RefSegRS.zip")
    (staging / "README.md").write_text("RefSegRS, as distributed")
    return hub.add_repo(REPO, staging, repo_type="dataset")


def test_a_hub_zip_is_unpacked_into_the_cache_and_read_at_each_revision(folders, fake_hub, tmp_path):
    first = publish_zip(fake_hub, folders["v1"], tmp_path / "repo1")
    publish_zip(fake_hub, folders["v2"], tmp_path / "repo2")  # main moves on
    cache = tmp_path / "cache"
    pinned = load_refsegrs(REPO, "val", revision=first, cache_dir=cache)
    assert_same_rows(pinned, load_refsegrs(folders["v1"], "val"))
    assert_same_rows(load_refsegrs(REPO, "val", cache_dir=cache), load_refsegrs(folders["v2"], "val"))
    assert (cache / "s4eca-unpacked" / "datasets--owner--refsegrs" / first / "RefSegRS" / "RefSegRS").is_dir()
    assert any(path.startswith(f"/datasets/{REPO}/resolve/{first}/") for _, path in fake_hub.requests)
    fake_hub.requests.clear()
    assert_same_rows(load_refsegrs(REPO, "train", revision=first, cache_dir=cache), load_refsegrs(folders["v1"], "train"))
    assert not any("/resolve/" in path for _, path in fake_hub.requests)  # the unpacked folder is reused


def test_the_unpacked_folder_is_validated_like_a_local_one(folders, fake_hub, tmp_path):
    broken = shutil.copytree(folders["v1"], tmp_path / "broken")
    (broken / "output_phrase_val.txt").unlink()
    publish_zip(fake_hub, broken, tmp_path / "repo")
    with pytest.raises(FileNotFoundError, match=r"RefSegRS layout: missing file .*output_phrase_val\.txt"):
        load_refsegrs(REPO, "val", cache_dir=tmp_path / "cache")


def test_hub_errors_name_the_repo_and_revision(folders, fake_hub, tmp_path):
    publish_zip(fake_hub, folders["v1"], tmp_path / "repo")
    with pytest.raises(ValueError, match=rf"Revision 'v9' does not exist in Hub dataset repo '{REPO}'"):
        load_refsegrs(REPO, "val", revision="v9", cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="Hub dataset repo 'owner/missing' was not found"):
        load_rrsisd("owner/missing", "val", cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="is a folder, not a Hub dataset repo: revision 'v1' cannot apply"):
        load_refsegrs(folders["v1"], "val", revision="v1")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("no data")
    fake_hub.add_repo("owner/empty", empty, repo_type="dataset")
    with pytest.raises(ValueError, match=r"holds neither s4eca_dataset.json .* nor exactly one .zip \(found \[\]\)"):
        load_refsegrs("owner/empty", "val", cache_dir=tmp_path / "cache")


def _entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info


@pytest.mark.parametrize("name, mode, refused", [
    ("../escape.txt", stat.S_IFREG | 0o644, "not a relative path"),
    ("data/../../escape.txt", stat.S_IFREG | 0o644, "not a relative path"),
    ("/tmp/escape.txt", stat.S_IFREG | 0o644, "not a relative path"),
    ("C:/escape.txt", stat.S_IFREG | 0o644, "not a relative path"),
    ("data\\..\\escape.txt", stat.S_IFREG | 0o644, "not a relative path"),
    ("link", stat.S_IFLNK | 0o777, "is a symbolic link"),
    ("fifo", stat.S_IFIFO | 0o644, "not a plain file or folder"),
])
def test_unsafe_archive_entries_are_refused_and_nothing_is_written(tmp_path, name, mode, refused):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("images/ok.txt", "fine")
        handle.writestr(_entry(name, mode), "/etc/passwd" if "link" in name else "payload")
    target = tmp_path / "out" / "unpacked"
    with pytest.raises(ValueError, match=rf"evil\.zip'.*{refused}"):
        unpack_zip(archive, target)
    assert not target.exists() and list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()


def test_duplicate_entries_and_damaged_archives_are_refused(tmp_path):
    archive = tmp_path / "twice.zip"
    with zipfile.ZipFile(archive, "w") as handle, pytest.warns(UserWarning, match="Duplicate name"):
        handle.writestr("a.txt", "one")
        handle.writestr("a.txt", "two")
    with pytest.raises(ValueError, match="entry 'a.txt' appears twice"):
        unpack_zip(archive, tmp_path / "out")
    (tmp_path / "bad.zip").write_bytes(b"PK not really")
    with pytest.raises(ValueError, match="is not a readable zip archive"):
        unpack_zip(tmp_path / "bad.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- prepared datasets: push, read back
@pytest.fixture
def hub_api(tmp_path):
    """HfApi with its network calls replaced: ``create_commit`` writes the committed files into a folder (the
    published repo), checked against the real signatures by autospec."""
    published = tmp_path / "published"

    def commit(self, repo_id, operations, **kwargs):
        for operation in operations:
            target = published / operation.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(Path(operation.path_or_fileobj).read_bytes())
        return CommitInfo(commit_url=f"https://huggingface.co/datasets/{repo_id}/commit/0123", commit_message="m",
                          commit_description="", oid="0123")

    with (
        mock.patch.object(HfApi, "create_repo", autospec=True, return_value=RepoUrl("https://huggingface.co/datasets/me/prepared")) as repo,
        mock.patch.object(HfApi, "create_commit", autospec=True, side_effect=commit) as create_commit,
    ):
        yield mock.Mock(create_repo=repo, create_commit=create_commit, published=published)


@pytest.mark.parametrize("dataset", ["refsegrs", "rrsisd"])
def test_prepare_data_pushes_parquet_that_the_loaders_read_back_identically(dataset, folders, hub_api, fake_hub,
                                                                               tmp_path, capsys):
    root = folders["v1"] if dataset == "refsegrs" else good_layout(tmp_path / "rrsisd")
    load = load_refsegrs if dataset == "refsegrs" else load_rrsisd
    code = prepare_data_main(["--dataset", dataset, "--data_dir", str(root), "--push_to_hub", "me/prepared"])
    assert code == 0 and "Published" in capsys.readouterr().out
    assert hub_api.create_repo.call_args.args[1] == "me/prepared"
    assert hub_api.create_repo.call_args.kwargs["repo_type"] == "dataset"
    assert hub_api.create_commit.call_args.kwargs["repo_type"] == "dataset"
    manifest = json.loads((hub_api.published / MANIFEST).read_text())
    assert manifest["dataset"] == dataset
    assert all(name.endswith(".parquet") for split in manifest["splits"].values() for name in split["files"])

    commit = fake_hub.add_repo("me/prepared", hub_api.published, repo_type="dataset")
    for split in ("train", "val", "test"):
        local = load(root, split)
        if len(local):
            assert_same_rows(load("me/prepared", split, revision=commit, cache_dir=tmp_path / "cache"), local)
    with pytest.raises(ValueError, match=f"holds a prepared '{dataset}' dataset, not"):
        (load_rrsisd if dataset == "refsegrs" else load_refsegrs)("me/prepared", "val", cache_dir=tmp_path / "cache")


BAD_ROWS = {  # row of the val shard -> (its corruption, the problem kind the loaders report)
    0: ("rle", "malformed_record"),
    1: ("mask_size", "wrong_mask_size"),
    2: ("empty_mask", "empty_mask"),
    3: ("expression", "missing_expression"),
    4: ("split", "malformed_record"),
    5: ("unknown_split", "malformed_record"),
    6: ("image", "unreadable_file"),
}


def corrupt(row: dict, how: str) -> dict:
    """One prepared row made invalid in one way, as a damaged or hand-edited parquet file could hold it."""
    size = row["mask"]["size"]
    if how == "rle":  # runs that cover more pixels than the size says: pycocotools must never decode them
        return dict(row, mask={"size": size, "counts": encode_mask(np.ones((size[0] + 9, size[1]), bool))["counts"]})
    if how == "mask_size":
        return dict(row, mask=encode_mask(np.ones((size[0] + 1, size[1]), bool)))
    if how == "empty_mask":
        return dict(row, mask=encode_mask(np.zeros(size, bool)))
    if how == "expression":
        return dict(row, expression="   ")
    if how == "split":
        return dict(row, split="train")
    if how == "unknown_split":
        return dict(row, split="dev")
    return dict(row, image={"bytes": b"II*\x00 not really a TIFF", "path": row["image"]["path"]})


@pytest.fixture
def damaged_repo(tmp_path, fake_hub) -> tuple[str, Path]:
    """A prepared RefSegRS on the fake Hub whose val shard holds one invalid row per kind of problem, then good
    rows; returns (commit, the folder the good rows come from)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from s4eca_peft.data.hub import write_prepared_dataset
    from s4eca_peft.data.refsegrs import scan_refsegrs

    root = write_refsegrs_layout(tmp_path / "refsegrs", {"train": 1, "val": len(BAD_ROWS) + 2, "test": 1},
                                 image_size=32, seed=3)
    records = {split: records for split, (records, _) in scan_refsegrs(root).items()}
    write_prepared_dataset(records, "refsegrs", tmp_path / "prepared")
    (shard,) = (tmp_path / "prepared" / "data").glob("val-*.parquet")
    table = pq.read_table(shard)
    rows = [corrupt(row, BAD_ROWS[n][0]) if n in BAD_ROWS else row for n, row in enumerate(table.to_pylist())]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    return fake_hub.add_repo("me/damaged", tmp_path / "prepared", repo_type="dataset"), root


def test_parquet_rows_are_validated_again_and_invalid_ones_skipped_naming_file_and_row(damaged_repo, tmp_path):
    commit, root = damaged_repo
    with pytest.warns(DataValidationWarning, match=r"RefSegRS val: kept 2 samples, skipped 7"):
        loaded = load_refsegrs("me/damaged", "val", revision=commit, cache_dir=tmp_path / "cache")
    local = load_refsegrs(root, "val")
    assert_same_rows(loaded, local.select(range(len(BAD_ROWS), len(local))))  # exactly the good rows, decoded
    with pytest.raises(ValueError, match="strict=True") as error:
        load_refsegrs("me/damaged", "val", revision=commit, cache_dir=tmp_path / "cache", strict=True)
    details = str(error.value)
    for number, (how, kind) in BAD_ROWS.items():
        assert re.search(rf"{kind}: .*\n(    .*\n)*    data/val-00000-of-00001\.parquet row {number}: ", details), how
    assert "RLE runs cover" in details and "in a file listed for split 'val'" in details
    assert "cannot read the encoded image" in details and "expression is empty" in details
    train = load_refsegrs("me/damaged", "train", revision=commit, cache_dir=tmp_path / "cache", strict=True)
    assert len(train) == 1  # the other splits are untouched


def test_rle_runs_are_read_as_pycocotools_reads_them():
    from s4eca_peft.data.masks import rle_runs

    rng = np.random.default_rng(0)
    for _ in range(50):
        height, width = rng.integers(1, 40, 2)
        mask = rng.random((height, width)) < rng.random()
        runs = rle_runs(encode_mask(mask)["counts"])
        assert sum(runs) == mask.size and sum(runs[1::2]) == mask.sum() and min(runs) >= 0
    for counts in ("\x7f", "0" * 3 + "`"):  # outside the alphabet; a run cut off
        with pytest.raises(ValueError, match="RLE counts"):
            rle_runs(counts)


def test_a_shard_without_the_prepared_columns_is_refused_naming_it(tmp_path, fake_hub):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "prepared"
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.table({"image": [b"x"], "text": ["a"]}), folder / "data" / "val-00000-of-00001.parquet")
    manifest = {"dataset": "refsegrs", "splits": {"val": {"files": ["data/val-00000-of-00001.parquet"]}}}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    commit = fake_hub.add_repo("me/odd", folder, repo_type="dataset")
    with pytest.raises(ValueError, match=r"val-00000-of-00001\.parquet' \(split 'val'\) has columns \['image', 'text'\]"):
        load_refsegrs("me/odd", "val", revision=commit, cache_dir=tmp_path / "cache")


def test_strict_push_stops_when_records_are_invalid(folders, hub_api, tmp_path):
    root = shutil.copytree(folders["v1"], tmp_path / "bad")
    (root / "masks" / "0.tif").unlink()
    assert prepare_data_main(["--dataset", "refsegrs", "--data_dir", str(root), "--strict", "--push_to_hub", "me/x"]) == 1
    hub_api.create_commit.assert_not_called()


def test_training_and_evaluation_read_a_hub_dataset_at_a_revision(folders, fake_hub, tmp_path):
    from s4eca_peft.data.loaders import build_datasets
    from s4eca_peft.training.arguments import DataArguments, parse_eval_args

    first = publish_zip(fake_hub, folders["v1"], tmp_path / "repo1")
    publish_zip(fake_hub, folders["v2"], tmp_path / "repo2")
    splits = build_datasets(DataArguments(dataset="refsegrs", data_dir=REPO, data_revision=first, image_size=32), 0)
    for split in ("train", "val", "test"):
        assert_same_rows(splits[split], load_refsegrs(folders["v1"], split))
    assert parse_eval_args(["--adapter", "a", "--dataset", "refsegrs", "--data_dir", REPO,
                            "--data_revision", first]).data_revision == first
    with pytest.raises(ValueError, match="`data_revision` .* not to --dataset synthetic"):
        DataArguments(data_revision=first)
