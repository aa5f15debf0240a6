"""`load_dataset`, `Dataset` and `DatasetDict` with the names and behaviour of Hugging Face `datasets`.

A Dataset is a table held in memory as one numpy array per column: numeric columns are typed
arrays, text and ragged (token id list) columns are object arrays. Selection, shuffling and
splitting index those arrays, so no Python loop runs over rows; `train_test_split` and
`shuffle` draw the same `numpy.random.default_rng(seed).permutation` as `datasets`.
"""

import csv
import glob
import json
import os
import sys
from math import ceil, floor

import numpy as np

__all__ = ["Dataset", "DatasetDict", "List", "Value", "load_dataset"]

_SPLIT_NAMES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing", "eval", "evaluation"),
}
_BUILDER_EXTENSIONS = {"csv": (".csv",), "json": (".json", ".jsonl"), "parquet": (".parquet",)}


class Value:
    """A scalar feature type, e.g. Value('int64'), Value('string')."""

    def __init__(self, dtype):
        self.dtype = dtype

    def __repr__(self):
        return f"Value('{self.dtype}')"

    def __eq__(self, other):
        return isinstance(other, Value) and other.dtype == self.dtype


class List:
    """A variable-length list feature, e.g. List(Value('int32')) for token ids."""

    def __init__(self, feature):
        self.feature = feature

    def __repr__(self):
        return f"List({self.feature!r})"

    def __eq__(self, other):
        return isinstance(other, List) and other.feature == self.feature


def _object_array(values):
    # one Python object per row (strings, None, lists), without numpy broadcasting lists
    return np.fromiter(values, dtype=object, count=len(values))


def _to_column(values):
    """A 1-D numpy column from a list/array of row values."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        return values.astype(object) if values.dtype.kind in "US" else values
    if hasattr(values, "numpy") and callable(values.numpy):  # a torch tensor
        values = values.numpy()
        if values.ndim == 1:
            return values
    values = list(values)
    if values and not isinstance(values[0], (str, bytes, list, tuple, np.ndarray, dict, type(None))):
        try:
            arr = np.asarray(values)
        except (ValueError, TypeError):
            arr = None
        if arr is not None and arr.ndim == 1 and arr.dtype.kind in "iufb":
            return arr.astype(np.int64) if arr.dtype.kind in "iu" else arr
    if values and isinstance(values[0], np.ndarray):
        values = [v.tolist() for v in values]
    return _object_array(values)


def _feature_of(column):
    kind = column.dtype.kind
    if kind == "b":
        return Value("bool")
    if kind in "iuf":
        return Value(str(column.dtype))
    first = next((v for v in column if v is not None), None)
    if isinstance(first, str):
        return Value("string")
    if isinstance(first, (list, tuple)):
        inner = next((v for v in first), 0)
        return List(Value("float32" if isinstance(inner, float) else "int32"))
    if isinstance(first, bool):
        return Value("bool")
    if isinstance(first, int):
        return Value("int64")
    if isinstance(first, float):
        return Value("float64")
    return Value("null") if first is None else Value(type(first).__name__)


def _python_value(value):
    return value.item() if isinstance(value, np.generic) else value


def _format_column(column, fmt):
    if fmt is None:
        return column.tolist()
    if column.dtype == object:
        first = next((v for v in column if v is not None), None)
        if isinstance(first, (list, tuple)):
            lengths = {len(v) for v in column}
            if len(lengths) == 1:
                column = np.asarray(column.tolist())
            else:
                column = _object_array([np.asarray(v) for v in column])
                if fmt == "torch":
                    import torch

                    return [torch.as_tensor(v) for v in column]
                return column
        elif fmt == "numpy" and isinstance(first, str) and all(isinstance(v, str) for v in column):
            column = column.astype(str)
    if fmt == "torch":
        import torch

        return torch.as_tensor(column) if column.dtype != object else column.tolist()
    return column


def _format_value(value, fmt):
    if fmt is None:
        return _python_value(value)
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    if fmt == "torch" and isinstance(value, (np.ndarray, np.generic)) and value.dtype != object:
        import torch

        return torch.as_tensor(value)
    return value


class Dataset:
    """An in-memory table with the `datasets.Dataset` API used by training scripts."""

    def __init__(self, columns, format_type=None, format_columns=None):
        self._columns = {name: _to_column(values) for name, values in columns.items()}
        lengths = {name: len(col) for name, col in self._columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns have different lengths: {lengths}")
        self._num_rows = next(iter(lengths.values()), 0)
        self._format = format_type
        self._format_columns = format_columns

    # construction ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, mapping):
        return cls(dict(mapping))

    @classmethod
    def from_list(cls, rows):
        names = list(rows[0].keys()) if rows else []
        return cls({name: [row.get(name) for row in rows] for name in names})

    @classmethod
    def from_pandas(cls, df):
        columns = {}
        for name in df.columns:
            col = df[name].to_numpy()
            if col.dtype == object:
                col = _object_array([None if (isinstance(v, float) and v != v) else v for v in col])
            columns[str(name)] = col
        return cls(columns)

    def _new(self, columns):
        return Dataset(columns, self._format, self._format_columns)

    # description ----------------------------------------------------------------------------
    @property
    def num_rows(self):
        return self._num_rows

    @property
    def column_names(self):
        return list(self._columns)

    @property
    def features(self):
        return {name: _feature_of(col) for name, col in self._columns.items()}

    @property
    def shape(self):
        return (self._num_rows, len(self._columns))

    @property
    def format(self):
        return {"type": self._format, "columns": self._format_columns or self.column_names}

    def __len__(self):
        return self._num_rows

    def __repr__(self):
        return f"Dataset({{\n    features: {self.column_names},\n    num_rows: {self._num_rows}\n}})"

    # access ---------------------------------------------------------------------------------
    def _formatted_names(self):
        if self._format_columns is None:
            return self.column_names
        return [n for n in self.column_names if n in self._format_columns]

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self._columns:
                raise KeyError(f"column {key!r} not in the dataset (columns: {self.column_names})")
            fmt = self._format if key in self._formatted_names() else None
            return _format_column(self._columns[key], fmt)
        if isinstance(key, (int, np.integer)):
            index = int(key)
            if not -self._num_rows <= index < self._num_rows:
                raise IndexError(f"index {index} is out of range for a dataset of {self._num_rows} rows")
            names = self._formatted_names()
            return {
                n: _format_value(c[index], self._format if n in names else None)
                for n, c in self._columns.items()
            }
        if isinstance(key, slice):
            return self.select(range(self._num_rows)[key])._as_batch()
        if isinstance(key, (list, tuple, np.ndarray, range)):
            return self.select(key)._as_batch()
        raise TypeError(f"a dataset is indexed by a column name, int, slice or list, not {type(key).__name__}")

    def _as_batch(self):
        names = self._formatted_names()
        return {n: _format_column(c, self._format if n in names else None) for n, c in self._columns.items()}

    def __iter__(self):
        for i in range(self._num_rows):
            yield self[i]

    def to_dict(self):
        return {n: c.tolist() for n, c in self._columns.items()}

    def to_list(self):
        return [dict(zip(self._columns, row)) for row in zip(*(c.tolist() for c in self._columns.values()))]

    def to_pandas(self):
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("Dataset.to_pandas() needs pandas: pip install pandas") from e
        return pd.DataFrame({n: c.tolist() if c.dtype == object else c for n, c in self._columns.items()})

    def column(self, name):
        """The raw numpy column (no formatting)."""
        return self[name] if name not in self._columns else self._columns[name]

    # formatting -----------------------------------------------------------------------------
    def set_format(self, type=None, columns=None, **kwargs):
        if type not in (None, "numpy", "np", "torch", "pt", "python"):
            raise ValueError(f"format type {type!r} is not supported: use None, 'numpy' or 'torch'")
        type = {"np": "numpy", "pt": "torch", "python": None}.get(type, type)
        if type == "torch":
            try:
                import torch  # noqa: F401
            except ImportError as e:
                raise ImportError("set_format('torch') needs torch installed") from e
        if columns is not None:
            missing = [c for c in columns if c not in self._columns]
            if missing:
                raise ValueError(f"set_format columns {missing} are not in the dataset {self.column_names}")
        self._format = type
        self._format_columns = list(columns) if columns is not None else None

    def reset_format(self):
        self.set_format(None)

    def with_format(self, type=None, columns=None, **kwargs):
        out = self._new(self._columns)
        out.set_format(type, columns)
        return out

    # transforms -----------------------------------------------------------------------------
    def select(self, indices):
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -self._num_rows or idx.max() >= self._num_rows):
            raise IndexError(f"select: indices out of range for a dataset of {self._num_rows} rows")
        return self._new({n: c[idx] for n, c in self._columns.items()})

    def shuffle(self, seed=None, generator=None, **kwargs):
        if generator is None:
            generator = np.random.default_rng(seed)
        return self.select(generator.permutation(self._num_rows))

    def train_test_split(self, test_size=None, train_size=None, shuffle=True, seed=None, generator=None,
                         **kwargs):
        n_train, n_test = _split_sizes(self._num_rows, test_size, train_size)
        if shuffle:
            if generator is None:
                generator = np.random.default_rng(seed)
            permutation = generator.permutation(self._num_rows)
            test_idx, train_idx = permutation[:n_test], permutation[n_test : n_test + n_train]
        else:
            train_idx, test_idx = np.arange(n_train), np.arange(n_train, n_train + n_test)
        return DatasetDict({"train": self.select(train_idx), "test": self.select(test_idx)})

    def rename_column(self, original_column_name, new_column_name):
        return self.rename_columns({original_column_name: new_column_name})

    def rename_columns(self, column_mapping):
        missing = [c for c in column_mapping if c not in self._columns]
        if missing:
            raise ValueError(f"rename: columns {missing} are not in the dataset {self.column_names}")
        renamed = {column_mapping.get(n, n): c for n, c in self._columns.items()}
        if len(renamed) != len(self._columns):
            raise ValueError(f"rename {column_mapping} would give two columns the same name")
        return self._new(renamed)

    def remove_columns(self, column_names):
        names = [column_names] if isinstance(column_names, str) else list(column_names)
        missing = [c for c in names if c not in self._columns]
        if missing:
            raise ValueError(f"remove_columns: columns {missing} are not in the dataset {self.column_names}")
        return self._new({n: c for n, c in self._columns.items() if n not in names})

    def select_columns(self, column_names):
        names = [column_names] if isinstance(column_names, str) else list(column_names)
        missing = [c for c in names if c not in self._columns]
        if missing:
            raise ValueError(f"select_columns: columns {missing} are not in the dataset {self.column_names}")
        return self._new({n: self._columns[n] for n in names})

    def add_column(self, name, column):
        if name in self._columns:
            raise ValueError(f"column {name!r} already exists")
        return self._new({**self._columns, name: _to_column(column)})

    def map(self, function=None, with_indices=False, input_columns=None, batched=False, batch_size=1000,
            remove_columns=None, fn_kwargs=None, **kwargs):
        remove = [remove_columns] if isinstance(remove_columns, str) else list(remove_columns or [])
        missing = [c for c in remove if c not in self._columns]
        if missing:
            raise ValueError(f"map: remove_columns {missing} are not in the dataset {self.column_names}")
        if function is None:
            return self.remove_columns(remove) if remove else self
        call = _Caller(function, with_indices, input_columns, fn_kwargs)
        if batched:
            size = self._num_rows if batch_size is None or batch_size <= 0 else batch_size
            outputs = [call(self._batch(start, size), range(start, min(start + size, self._num_rows)))
                       for start in range(0, max(self._num_rows, 1), size)] if self._num_rows else []
        else:
            outputs = [_batched_output(call(self._row(i), i)) for i in range(self._num_rows)]
        return self._merge(outputs, remove)

    def _batch(self, start, size):
        return {n: c[start : start + size].tolist() for n, c in self._columns.items()}

    def _row(self, i):
        return {n: _python_value(c[i]) for n, c in self._columns.items()}

    def _merge(self, outputs, remove):
        kept = {n: c for n, c in self._columns.items() if n not in remove}
        outputs = [o for o in outputs if o is not None]
        if not outputs:
            return self._new(kept)
        names = list(outputs[0].keys())
        new = {}
        for name in names:
            parts = [o[name] for o in outputs]
            new[name] = _to_column([v for part in parts for v in _rows_of(part)])
        lengths = {len(c) for c in new.values()}
        if kept and lengths and lengths != {self._num_rows} and any(n not in new for n in kept):
            raise ValueError(
                f"map: the function returned {lengths.pop()} rows for {self._num_rows} inputs; "
                f"remove the other columns with remove_columns= (kept: {list(kept)})"
            )
        return self._new({**kept, **new})

    def filter(self, function, with_indices=False, input_columns=None, batched=False, batch_size=1000,
               fn_kwargs=None, **kwargs):
        call = _Caller(function, with_indices, input_columns, fn_kwargs)
        if batched:
            size = self._num_rows if batch_size is None or batch_size <= 0 else batch_size
            keep = [np.asarray(call(self._batch(s, size), range(s, min(s + size, self._num_rows))), dtype=bool)
                    for s in range(0, self._num_rows, size)]
            mask = np.concatenate(keep) if keep else np.zeros(0, dtype=bool)
        else:
            mask = np.fromiter((bool(call(self._row(i), i)) for i in range(self._num_rows)), dtype=bool,
                               count=self._num_rows)
        return self.select(np.flatnonzero(mask))

    def unique(self, column):
        return list(dict.fromkeys(self._columns[column].tolist()))

    def sort(self, column, reverse=False, **kwargs):
        order = np.argsort(self._columns[column], kind="stable")
        return self.select(order[::-1] if reverse else order)


def _rows_of(part):
    if isinstance(part, np.ndarray) and part.ndim > 1:
        return list(part)
    if hasattr(part, "tolist") and not isinstance(part, (list, np.ndarray)):
        return part.tolist()
    return part


def _batched_output(row_output):
    if row_output is None:
        return None
    if not isinstance(row_output, dict):
        raise TypeError(f"map: the function must return a dict or None, not {type(row_output).__name__}")
    return {k: [v] for k, v in row_output.items()}


class _Caller:
    def __init__(self, function, with_indices, input_columns, fn_kwargs):
        self.function, self.with_indices, self.fn_kwargs = function, with_indices, fn_kwargs or {}
        self.input_columns = [input_columns] if isinstance(input_columns, str) else input_columns

    def __call__(self, example, index):
        args = [example] if self.input_columns is None else [example[c] for c in self.input_columns]
        if self.with_indices:
            args.append(list(index) if isinstance(index, range) else index)
        out = self.function(*args, **self.fn_kwargs)
        if isinstance(out, dict) and not isinstance(index, range):
            return out
        if hasattr(out, "keys") and not isinstance(out, dict):  # BatchEncoding and friends
            out = {k: out[k] for k in out.keys()}
        return out


def _split_sizes(n_samples, test_size, train_size):
    """train_test_split sizes exactly as datasets (sklearn's rule): test rounds up, train down."""
    if test_size is None and train_size is None:
        test_size = 0.25
    for name, size in (("test_size", test_size), ("train_size", train_size)):
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, (int, float)):
            raise ValueError(f"Invalid value for {name}: {size!r}")
        if (isinstance(size, int) and not 0 < size < n_samples) or (isinstance(size, float) and not 0 < size < 1):
            raise ValueError(
                f"{name}={size} should be either positive and smaller than the number of samples "
                f"{n_samples} or a float in the (0, 1) range"
            )
    if isinstance(train_size, float) and isinstance(test_size, float) and train_size + test_size > 1:
        raise ValueError(f"The sum of test_size and train_size = {train_size + test_size} should be <= 1")
    n_test = ceil(test_size * n_samples) if isinstance(test_size, float) else test_size
    n_train = floor(train_size * n_samples) if isinstance(train_size, float) else train_size
    if train_size is None:
        n_train = n_samples - n_test
    elif test_size is None:
        n_test = n_samples - n_train
    if n_train + n_test > n_samples:
        raise ValueError(f"train_size + test_size = {n_train + n_test} exceeds the {n_samples} samples")
    if n_train == 0:
        raise ValueError(f"With n_samples={n_samples}, test_size={test_size} and train_size={train_size}, "
                         "the train set would be empty")
    return int(n_train), int(n_test)


class DatasetDict(dict):
    """A dict of named splits; the Dataset transforms apply to every split."""

    def _apply(self, method, *args, **kwargs):
        return DatasetDict({k: getattr(v, method)(*args, **kwargs) for k, v in self.items()})

    def map(self, *args, **kwargs):
        return self._apply("map", *args, **kwargs)

    def filter(self, *args, **kwargs):
        return self._apply("filter", *args, **kwargs)

    def rename_column(self, *args, **kwargs):
        return self._apply("rename_column", *args, **kwargs)

    def rename_columns(self, *args, **kwargs):
        return self._apply("rename_columns", *args, **kwargs)

    def remove_columns(self, *args, **kwargs):
        return self._apply("remove_columns", *args, **kwargs)

    def select_columns(self, *args, **kwargs):
        return self._apply("select_columns", *args, **kwargs)

    def with_format(self, *args, **kwargs):
        return self._apply("with_format", *args, **kwargs)

    def shuffle(self, seed=None, **kwargs):
        return self._apply("shuffle", seed=seed, **kwargs)

    def set_format(self, type=None, columns=None, **kwargs):
        for v in self.values():
            v.set_format(type, columns)

    def reset_format(self):
        self.set_format(None)

    @property
    def column_names(self):
        return {k: v.column_names for k, v in self.items()}

    @property
    def num_rows(self):
        return {k: v.num_rows for k, v in self.items()}

    def __repr__(self):
        body = "".join(f"    {k}: " + repr(v).replace("\n", "\n    ") + "\n" for k, v in self.items())
        return "DatasetDict({\n" + body + "})"


# loading ------------------------------------------------------------------------------------


# pandas.read_csv's default missing-value strings (what the datasets csv builder uses)
_CSV_NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
           "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]


_CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)  # the largest the csv module takes on every platform


def _parse_csv_column(values):
    """Typed column from csv strings, as pandas infers it: int64, float64, else str with None for NA."""
    strings = np.asarray(values, dtype=object)
    empty = np.isin(strings, _CSV_NA)
    if not empty.any():
        for dtype in (np.int64, np.float64):
            try:
                return strings.astype(str).astype(dtype)
            except (ValueError, OverflowError):
                continue
    out = strings.copy()
    out[empty] = None
    try:  # numbers with gaps: pandas reads float64 with NaN, which datasets shows as None
        out[~empty] = strings[~empty].astype(str).astype(np.float64).astype(object)
    except (ValueError, OverflowError):
        pass
    return out


def _csv_encoding(encoding):
    """pandas.read_csv (the datasets csv builder) skips a UTF-8 byte order mark before the header."""
    encoding = encoding or "utf-8"
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def _decoding_error(path, encoding, error):
    """A ValueError naming the file, the line and the byte that `encoding` cannot decode."""
    encoding = "utf-8" if encoding == "utf-8-sig" else encoding  # the same bytes, offsets from the file's start
    with open(path, "rb") as f:
        data = f.read()
    try:
        data.decode(encoding)
        where = ""
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        where = f" line {line} (byte {e.start}, {data[e.start:e.start + 1]!r})"
    return ValueError(f"{path}:{where} is not valid {encoding} ({error.reason}); pass the file's encoding, e.g. "
                      f"load_dataset('csv', data_files=..., encoding='latin-1')")


def _read_csv(path, delimiter=",", **kwargs):
    encoding = _csv_encoding(kwargs.get("encoding"))
    limit = csv.field_size_limit()
    csv.field_size_limit(_CSV_FIELD_LIMIT)  # pandas has no field size limit
    try:
        with open(path, newline="", encoding=encoding) as f:
            reader = csv.reader(f, delimiter=delimiter)
            try:
                header = next(reader)
            except StopIteration:
                raise ValueError(f"{path}: the csv file is empty (no header row)") from None
            rows = list(reader)
    except UnicodeDecodeError as e:
        raise _decoding_error(path, encoding, e) from None
    except csv.Error as e:
        raise ValueError(f"{path}: line {reader.line_num}: {e}") from None
    finally:
        csv.field_size_limit(limit)
    bad = next((i for i, r in enumerate(rows) if len(r) != len(header)), None)
    if bad is not None:
        raise ValueError(f"{path}: data row {bad + 1} has {len(rows[bad])} fields, the header has {len(header)}")
    if not rows:
        return {name: np.zeros(0, dtype=object) for name in header}
    cols = list(zip(*rows))
    return {name: _parse_csv_column(col) for name, col in zip(header, cols)}


def _read_json(path, field=None, **kwargs):
    with open(path, encoding=kwargs.get("encoding", "utf-8")) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: neither a JSON document nor JSON lines ({e})") from None
    if field is not None:
        if not isinstance(data, dict) or field not in data:
            raise ValueError(f"{path}: field {field!r} not found")
        data = data[field]
    if isinstance(data, dict):
        if all(isinstance(v, list) for v in data.values()):
            return dict(data)
        data = [data]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError(f"{path}: expected a list of objects, JSON lines or a dict of columns")
    names = list(dict.fromkeys(k for r in data[:1000] for k in r))
    return {name: [r.get(name) for r in data] for name in names}


def _read_parquet(path, **kwargs):
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError(f"reading {path} needs pyarrow: pip install pyarrow (lorafast[parquet])") from e
    table = pq.read_table(path)
    return {name: table.column(name).to_pylist() for name in table.column_names}


_READERS = {"csv": _read_csv, "json": _read_json, "parquet": _read_parquet}


def _concat(parts):
    names = list(parts[0])
    for p in parts[1:]:
        if list(p) != names:
            raise ValueError(f"data files have different columns: {names} vs {list(p)}")
    if len(parts) == 1:
        return parts[0]
    out = {}
    for n in names:
        cols = [_to_column(p[n]) for p in parts]
        if len({c.dtype.kind for c in cols}) > 1:
            cols = [c.astype(object) for c in cols]
        out[n] = np.concatenate(cols)
    return out


def _load_files(builder, files, reader_kwargs):
    paths = []
    for pattern in [files] if isinstance(files, (str, os.PathLike)) else list(files):
        pattern = os.fspath(pattern)
        found = sorted(glob.glob(pattern)) if any(ch in pattern for ch in "*?[") else [pattern]
        if not found or not all(os.path.isfile(p) for p in found):
            raise FileNotFoundError(f"data file not found: {pattern}")
        paths += found
    return Dataset(_concat([_READERS[builder](p, **reader_kwargs) for p in paths]))


def _split_of(filename):
    stem = os.path.basename(filename).lower()
    for split, names in _SPLIT_NAMES.items():
        for name in names:
            for sep in "-_.":
                if stem.startswith(name + sep) or (sep + name + sep) in stem:
                    return split
    return None


def _folder_data_files(folder):
    """datasets' convention: files named after splits (train*.csv, test*.csv, ...), else all 'train'."""
    files = [os.path.join(root, f) for root, _, names in os.walk(folder) for f in names
             if not f.startswith(".")]
    by_builder = {b: [f for f in files if f.endswith(exts)] for b, exts in _BUILDER_EXTENSIONS.items()}
    builder = max(by_builder, key=lambda b: len(by_builder[b]))
    chosen = sorted(by_builder[builder])
    if not chosen:
        raise FileNotFoundError(f"no csv, json or parquet data files in {folder}")
    splits = {}
    for f in chosen:
        splits.setdefault(_split_of(f) or "train", []).append(f)
    return builder, splits


def _hub_cache_folder(dataset_id):
    home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
    roots = [os.environ.get("HF_HUB_CACHE"), os.environ.get("HUGGINGFACE_HUB_CACHE"), os.path.join(home, "hub")]
    looked = []
    for root in [r for r in roots if r]:
        repo = os.path.join(root, "datasets--" + dataset_id.replace("/", "--"))
        looked.append(repo)
        snapshots = os.path.join(repo, "snapshots")
        ref = os.path.join(repo, "refs", "main")
        if os.path.isfile(ref):
            with open(ref) as f:
                path = os.path.join(snapshots, f.read().strip())
            if os.path.isdir(path):
                return path, looked
        revs = sorted(glob.glob(os.path.join(snapshots, "*")), key=os.path.getmtime)
        if revs:
            return revs[-1], looked
    return None, looked


def load_dataset(path, name=None, data_dir=None, data_files=None, split=None, **kwargs):
    """`datasets.load_dataset` for local data: the "csv", "json" and "parquet" builders with
    data_files (a path, a list, or a dict of splits), a local folder, or a dataset id found in
    the local Hugging Face cache. Nothing is downloaded."""
    reader_kwargs = {k: kwargs[k] for k in ("delimiter", "sep", "field", "encoding") if k in kwargs}
    if "sep" in reader_kwargs:
        reader_kwargs["delimiter"] = reader_kwargs.pop("sep")
    if path in _READERS:
        builder = path
        if data_files is None:
            if data_dir is None:
                raise ValueError(f'load_dataset("{path}") needs data_files= (a path, a list or a dict of splits)')
            _, splits = _folder_data_files(data_dir)
        else:
            splits = data_files if isinstance(data_files, dict) else {"train": data_files}
    else:
        folder = os.path.join(path, data_dir) if data_dir else path
        if not os.path.isdir(folder):
            cached, looked = _hub_cache_folder(path)
            if cached is None:
                raise FileNotFoundError(
                    f"dataset {path!r} is not a local folder nor in the Hugging Face cache "
                    f"(looked in {', '.join(looked)}); nothing is downloaded"
                )
            folder = os.path.join(cached, data_dir) if data_dir else cached
        builder, splits = _folder_data_files(folder)
        if data_files is not None:
            files = data_files if isinstance(data_files, dict) else {"train": data_files}
            splits = {k: [os.path.join(folder, f) for f in ([v] if isinstance(v, str) else v)]
                      for k, v in files.items()}
    result = DatasetDict({s: _load_files(builder, files, reader_kwargs) for s, files in splits.items()})
    if split is not None:
        if split not in result:
            raise ValueError(f"split {split!r} not found; available splits: {list(result)}")
        return result[split]
    return result
