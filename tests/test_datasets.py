"""lorafast.load_dataset / Dataset / DatasetDict against Hugging Face datasets."""

import json

import numpy as np
import pytest

import lorafast
from lorafast import datasets as lds

hf = pytest.importorskip("datasets")


def tweets(shared, name="train.csv"):
    return str(shared / "data" / "disaster_tweets" / name)


@pytest.fixture(scope="module")
def hf_train(shared):
    return hf.load_dataset("csv", data_files=tweets(shared), split="train")


@pytest.fixture(scope="module")
def lf_train(shared):
    return lds.load_dataset("csv", data_files=tweets(shared), split="train")


def test_csv_equals_datasets(hf_train, lf_train):
    assert lf_train.column_names == hf_train.column_names
    assert len(lf_train) == len(hf_train) == 7613
    assert lf_train.to_dict() == hf_train.to_dict()
    assert lf_train[0] == hf_train[0]
    assert lf_train[5:9] == hf_train[5:9]
    assert {k: str(v) for k, v in lf_train.features.items()}["id"] == str(hf_train.features["id"])


def test_split_parity(hf_train, lf_train):
    ref = hf_train.train_test_split(train_size=0.8, seed=42)
    ours = lf_train.train_test_split(train_size=0.8, seed=42)
    assert (len(ours["train"]), len(ours["test"])) == (6090, 1523)
    assert ours["train"][0]["id"] == 5285
    assert ours["train"]["id"] == list(ref["train"]["id"])
    assert ours["test"]["id"] == list(ref["test"]["id"])
    df = ours["train"].to_pandas()
    pos = len(df) / (2 * df.target.value_counts()[1])
    neg = len(df) / (2 * df.target.value_counts()[0])
    assert (pos, neg) == (1.1622137404580153, 0.877521613832853)
    for kwargs in ({"test_size": 0.1, "seed": 3}, {"test_size": 100, "seed": 0}, {"train_size": 50, "test_size": 20,
                                                                                    "seed": 7}):
        a = lf_train.train_test_split(**kwargs)
        b = hf_train.train_test_split(**kwargs)
        assert a["train"]["id"] == list(b["train"]["id"]) and a["test"]["id"] == list(b["test"]["id"])
    a = lf_train.train_test_split(test_size=0.2, shuffle=False)
    b = hf_train.train_test_split(test_size=0.2, shuffle=False)
    assert a["test"]["id"] == list(b["test"]["id"])


def test_transforms_match_datasets(hf_train, lf_train):
    def upper(batch):
        return {"text": [t.upper() for t in batch["text"]], "n": [len(t) for t in batch["text"]]}

    kw = dict(batched=True, remove_columns=["keyword", "location"])
    a = lf_train.select(range(300)).map(upper, **kw).rename_column("target", "label")
    b = hf_train.select(range(300)).map(upper, **kw).rename_column("target", "label")
    assert a.column_names == b.column_names
    assert a.to_dict() == b.to_dict()
    a = lf_train.shuffle(seed=1).select(range(50)).filter(lambda r: r["target"] == 1)
    b = hf_train.shuffle(seed=1).select(range(50)).filter(lambda r: r["target"] == 1)
    assert a.to_dict() == b.to_dict()
    a = lf_train.select(range(20)).map(lambda r: {"len": len(r["text"])})
    b = hf_train.select(range(20)).map(lambda r: {"len": len(r["text"])})
    assert a["len"] == list(b["len"])
    assert lf_train.remove_columns("text").column_names == hf_train.remove_columns("text").column_names


def test_ragged_columns_and_formats():
    ds = lorafast.Dataset.from_dict({"input_ids": [[1, 2, 3], [4], [5, 6]], "label": [0, 1, 0]})
    assert ds[1] == {"input_ids": [4], "label": 1}
    ds.set_format("numpy")
    assert isinstance(ds["label"], np.ndarray) and ds["label"].tolist() == [0, 1, 0]
    assert ds[0]["input_ids"].tolist() == [1, 2, 3]
    torch = pytest.importorskip("torch")
    ds.set_format("torch")
    assert isinstance(ds[0]["input_ids"], torch.Tensor) and ds[2]["label"].item() == 0
    ds.set_format(None)
    assert ds["input_ids"] == [[1, 2, 3], [4], [5, 6]]
    ref = hf.Dataset.from_dict({"input_ids": [[1, 2, 3], [4], [5, 6]], "label": [0, 1, 0]})
    assert [r for r in ds] == [r for r in ref]


def test_json_parquet_and_folder(tmp_path, lf_train):
    sub = lf_train.select(range(40))
    rows = sub.to_list()
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    for name in ("rows.jsonl", "rows.json"):
        a = lds.load_dataset("json", data_files=str(tmp_path / name))["train"]
        b = hf.load_dataset("json", data_files=str(tmp_path / name))["train"]
        assert a.to_dict() == b.to_dict()
    sub.to_pandas().to_parquet(tmp_path / "rows.parquet")
    a = lds.load_dataset("parquet", data_files=[str(tmp_path / "rows.parquet")], split="train")
    assert a.to_dict() == sub.to_dict()
    folder = tmp_path / "folder"
    folder.mkdir()
    sub = sub.select_columns(["id", "text", "target"])
    sub.select(range(30)).to_pandas().to_csv(folder / "train.csv", index=False)
    sub.select(range(30, 40)).to_pandas().to_csv(folder / "test.csv", index=False)
    a = lds.load_dataset(str(folder))
    b = hf.load_dataset(str(folder))
    assert sorted(a) == sorted(b) == ["test", "train"]
    assert a["test"].to_dict() == b["test"].to_dict()


def test_hub_cache_and_dict_ops(tmp_path, monkeypatch, lf_train):
    snap = tmp_path / "hub" / "datasets--someone--tweets" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    lf_train.select(range(10)).to_pandas().to_csv(snap / "train.csv", index=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    dd = lorafast.load_dataset("someone/tweets")
    assert len(dd["train"]) == 10
    split = dd["train"].train_test_split(test_size=0.3, seed=0)
    split["val"] = split.pop("test")
    assert sorted(split) == ["train", "val"]
    with pytest.raises(FileNotFoundError, match="someone/other"):
        lorafast.load_dataset("someone/other")


def test_bad_input(tmp_path, lf_train):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        lds.load_dataset("csv", data_files=str(tmp_path / "nope.csv"))
    with pytest.raises(ValueError, match="test_size"):
        lf_train.train_test_split(test_size=1.5)
    with pytest.raises(ValueError, match="zzz"):
        lf_train.remove_columns(["zzz"])
    with pytest.raises(KeyError, match="zzz"):
        lf_train["zzz"]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3\n")
    with pytest.raises(ValueError, match="row 2"):
        lds.load_dataset("csv", data_files=str(bad))


def test_notebook_steps_on_a_dataset_dict_match_datasets(shared):
    """data_files as a dict of splits, then the notebook's DatasetDict steps: split, pop/assign a
    split, batched map with remove_columns over every split, rename_column, set_format."""
    files = {"train": tweets(shared), "test": tweets(shared, "test.csv")}
    results = []
    for lib in (lds, hf):
        dataset = lib.load_dataset("csv", data_files=files)
        data = dataset["train"].train_test_split(train_size=0.8, seed=42)
        data["val"] = data.pop("test")
        data["test"] = dataset["test"].select(range(100))
        data = lib.DatasetDict({k: v.select(range(100)) for k, v in data.items()})
        out = data.map(lambda e: {"input_ids": [[len(w) for w in t.split()] for t in e["text"]]}, batched=True,
                       remove_columns=["id", "keyword", "location", "text"]).rename_column("target", "label")
        out.set_format("numpy")
        results.append(out)
    ours, ref = results
    assert dict(ours.num_rows) == dict(ref.num_rows) == {"train": 100, "val": 100, "test": 100}
    assert list(ours) == list(ref) == ["train", "val", "test"]
    for split in ours:
        assert ours[split].column_names == ref[split].column_names == ["label", "input_ids"]
        assert ours[split]["label"].tolist() == np.asarray(ref[split]["label"]).tolist()
        assert [x.tolist() for x in ours[split]["input_ids"]] == [np.asarray(x).tolist() for x in ref[split]["input_ids"]]
    assert dict(lds.load_dataset("csv", data_files=files).num_rows) == {"train": 7613, "test": 3263}
