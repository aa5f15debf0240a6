"""Model-folder resolution: local folders, the Hugging Face cache layout (checked against
huggingface_hub itself), and the errors of a miss."""

import os
import pathlib

import pytest
from huggingface_hub import snapshot_download

from lorafast.hub import find_weights, resolve_model_folder

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_cache(hub_dir, repo_id, commit=COMMIT, ref="main"):
    repo = hub_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "hf"


def test_existing_local_folder(tmp_path):
    assert resolve_model_folder(tmp_path) == str(tmp_path)
    assert resolve_model_folder(str(tmp_path)) == str(tmp_path)


def test_relative_local_folder_wins_over_cache(hf_home):
    make_cache(hf_home / "hub", "org/name")
    local = pathlib.Path("org/name")
    local.mkdir(parents=True)
    assert resolve_model_folder("org/name") == str(local.resolve())


def test_cache_snapshot_equals_huggingface_hub(hf_home):
    snapshot = make_cache(hf_home / "hub", "my-org/my-model")
    ours = resolve_model_folder("my-org/my-model")
    assert ours == str(snapshot)
    ref = snapshot_download("my-org/my-model", local_files_only=True, cache_dir=str(hf_home / "hub"))
    assert os.path.realpath(ours) == os.path.realpath(ref)


def test_cache_without_org_and_hf_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    monkeypatch.chdir(tmp_path)
    snapshot = make_cache(tmp_path / "elsewhere", "roberta-large")
    assert resolve_model_folder("roberta-large") == str(snapshot)


def test_cache_dir_argument_replaces_the_cache(hf_home, tmp_path):
    snapshot = make_cache(tmp_path / "mine", "org/c")
    assert resolve_model_folder("org/c", cache_dir=tmp_path / "mine") == str(snapshot)
    with pytest.raises(FileNotFoundError, match="models--org--c"):
        resolve_model_folder("org/c")


def test_revision_by_ref_or_commit(hf_home):
    snapshot = make_cache(hf_home / "hub", "org/m", ref="v1")
    assert resolve_model_folder("org/m", revision="v1") == str(snapshot)
    assert resolve_model_folder("org/m", revision=COMMIT) == str(snapshot)


def test_default_cache_is_under_home(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    snapshot = make_cache(tmp_path / ".cache" / "huggingface" / "hub", "org/x")
    assert resolve_model_folder("org/x") == str(snapshot)


def test_miss_names_every_place_looked(hf_home):
    with pytest.raises(FileNotFoundError) as info:
        resolve_model_folder("org/absent")
    message = str(info.value)
    assert "'org/absent' not found" in message and "downloads nothing" in message
    assert str(pathlib.Path("org/absent").resolve()) in message
    assert str(hf_home / "hub" / "models--org--absent" / "refs" / "main") in message


def test_miss_with_a_ref_but_no_snapshot(hf_home):
    snapshot = make_cache(hf_home / "hub", "org/half")
    snapshot.rename(snapshot.parent / "other")
    with pytest.raises(FileNotFoundError, match=str(snapshot)):
        resolve_model_folder("org/half")


def test_path_that_is_not_an_id_only_looks_locally(hf_home):
    with pytest.raises(FileNotFoundError) as info:
        resolve_model_folder("/no/such/folder/here")
    assert "/no/such/folder/here" in str(info.value) and "models--" not in str(info.value)


def test_file_instead_of_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        resolve_model_folder(tmp_path / "f")
    with pytest.raises(ValueError):
        resolve_model_folder("")


def test_shared_model_folders_resolve(shared):
    folder = resolve_model_folder(shared / "models" / "roberta-large")
    assert os.path.isfile(os.path.join(folder, "config.json"))


def test_find_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="no weights in"):
        find_weights(str(tmp_path))
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="convert|Convert") as info:
        find_weights(str(tmp_path))
    assert "pytorch_model.bin" in str(info.value) and "safetensors" in str(info.value)
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert find_weights(str(tmp_path)) == ([str(tmp_path / "model.safetensors")], None)


def test_index_shard_outside_folder_is_rejected(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": {"a": "../x.safetensors"}}')
    with pytest.raises(ValueError, match="not a file name"):
        find_weights(str(tmp_path))
