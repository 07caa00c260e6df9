"""In-memory datasets: records and optional labels as NumPy arrays, CSV loading,
splits, shuffling, k-fold cross-validation and train/test splitting.

>>> import numpy as np
>>> from neuronika.data.dataset import Dataset
>>> data = Dataset(np.arange(10.0).reshape(5, 2), np.array([0, 1, 0, 1, 1]))
>>> len(data), data[1]
(5, (array([2., 3.]), np.int64(1)))
>>> [(len(train), len(test)) for train, test in data.kfold(2)]
[(2, 3), (3, 2)]
"""
from __future__ import annotations

import csv
import io
import math
import os
from numbers import Integral, Real

import numpy as np

from .. import random as _random

DEFAULT_DTYPE = np.float32

__all__ = ["Dataset", "from_csv", "train_test_split"]


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


def _rng(seed):
    """A generator from ``seed``; without one, neuronika's (reproducible under manual_seed)."""
    return _random.generator() if seed is None else np.random.default_rng(seed)


def _check_seed(name, shuffle, seed):
    if seed is not None and not shuffle:
        raise ValueError(f"{name}: seed={seed!r} is given but shuffle=False; pass shuffle=True "
                         f"to shuffle, or drop the seed")


class Dataset:
    """Records of shape ``(N, ...)`` and optional labels of shape ``(N, ...)``.

    ``data[i]`` is ``(record, label)`` (or the record alone when there are no labels);
    ``data[a:b]`` is a Dataset viewing the same arrays; ``data[[i, j, ...]]`` (integer
    or boolean arrays) is a Dataset over copies.

    >>> import numpy as np
    >>> data = Dataset(np.zeros((4, 3)), np.arange(4))
    >>> data[1:3].records.shape, data[[3, 0]].labels
    ((2, 3), array([3, 0]))
    """

    __slots__ = ("records", "labels")

    def __init__(self, records, labels=None):
        records = np.asarray(records)
        if records.ndim == 0:
            raise ValueError("Dataset: records must have at least one dimension (N, ...), "
                             "got a 0-dim array")
        if labels is not None:
            labels = np.asarray(labels)
            if labels.ndim == 0:
                raise ValueError("Dataset: labels must have at least one dimension (N, ...), "
                                 "got a 0-dim array")
            if labels.shape[0] != records.shape[0]:
                raise ValueError(f"Dataset: records and labels differ in length: "
                                 f"{records.shape[0]} records (shape {records.shape}) but "
                                 f"{labels.shape[0]} labels (shape {labels.shape})")
        self.records = records
        self.labels = labels

    # ---- container ------------------------------------------------------------------
    def __len__(self) -> int:
        return self.records.shape[0]

    def __getitem__(self, key):
        if _is_int(key):
            n = len(self)
            if not -n <= key < n:
                raise IndexError(f"Dataset: index {key} is out of range for {n} rows")
            if self.labels is None:
                return self.records[key]
            return self.records[key], self.labels[key]
        if isinstance(key, slice):
            return self._take(key)
        if isinstance(key, (list, tuple, np.ndarray, range)):
            index = np.asarray(key)
            if index.size == 0:
                index = index.astype(np.intp)
            if index.ndim != 1:
                raise IndexError(f"Dataset: an index array must be 1-dim, got shape {index.shape}")
            if index.dtype == bool:
                if index.shape[0] != len(self):
                    raise IndexError(f"Dataset: a boolean mask must have one entry per row: "
                                     f"{len(self)} rows, mask of length {index.shape[0]}")
            elif index.dtype.kind in "iu":
                n = len(self)
                bad = index[(index < -n) | (index >= n)]
                if bad.size:
                    raise IndexError(f"Dataset: index {int(bad[0])} is out of range for {n} rows")
            else:
                raise IndexError(f"Dataset: an index array must hold integers or booleans, "
                                 f"got dtype {index.dtype}")
            return self._take(index)
        raise TypeError(f"Dataset: indices are ints, slices or integer/boolean arrays, "
                        f"not {type(key).__name__}")

    def _take(self, index):
        labels = None if self.labels is None else self.labels[index]
        return Dataset(self.records[index], labels)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self):
        labels = "no labels" if self.labels is None else \
            f"labels {self.labels.shape} {self.labels.dtype}"
        return f"Dataset({len(self)} rows: records {self.records.shape} {self.records.dtype}, {labels})"

    # ---- construction ---------------------------------------------------------------
    @classmethod
    def from_csv(cls, path, labels=None, header=True, delimiter=",", dtype=DEFAULT_DTYPE,
                 converters=None) -> "Dataset":
        """See :func:`from_csv`."""
        return from_csv(path, labels=labels, header=header, delimiter=delimiter, dtype=dtype,
                        converters=converters)

    # ---- splitting ------------------------------------------------------------------
    def shuffle(self, seed=None) -> "Dataset":
        """A copy with the rows in random order; the same ``seed`` gives the same order.
        Without a seed, neuronika's generator is used (reproducible under ``manual_seed``)."""
        return self._take(_rng(seed).permutation(len(self)))

    def split(self, lengths, shuffle=None, seed=None) -> list:
        """Split into consecutive parts of the given ``lengths`` (ints summing to ``len``) or
        ``fractions`` (floats in [0, 1] summing to 1). Fractions become lengths as in
        ``torch.utils.data.random_split``: each is floored, then the rows left over go one
        each to the first parts. With ``shuffle=True`` the rows are permuted first,
        reproducibly with ``seed``; ``shuffle`` defaults to True when a ``seed`` is given
        (``split([0.8, 0.2], seed=0)``) and to False otherwise.

        >>> import numpy as np
        >>> [len(part) for part in Dataset(np.arange(10)).split([0.5, 0.3, 0.2])]
        [5, 3, 2]
        >>> [len(part) for part in Dataset(np.arange(11)).split([0.5, 0.5])]
        [6, 5]
        """
        if shuffle is None:
            shuffle = seed is not None
        _check_seed("split", shuffle, seed)
        lengths = _lengths(lengths, len(self))
        order = _rng(seed).permutation(len(self)) if shuffle else None
        parts, start = [], 0
        for length in lengths:
            stop = start + length
            parts.append(self._take(slice(start, stop) if order is None else order[start:stop]))
            start = stop
        return parts

    def kfold(self, k: int, shuffle=False, seed=None):
        """Yield ``k`` ``(train, test)`` pairs for k-fold cross-validation.

        The test folds are consecutive chunks of the rows (of the shuffled rows with
        ``shuffle=True``); the first ``len % k`` folds hold one row more. The train set
        is every other row, in order. For 5 rows and ``k=2``: test rows 0-2 with train rows
        3-4, then test rows 3-4 with train rows 0-2.

        >>> import numpy as np
        >>> [(train.records.tolist(), test.records.tolist())
        ...  for train, test in Dataset(np.arange(5)).kfold(2)]
        [([3, 4], [0, 1, 2]), ([0, 1, 2], [3, 4])]
        """
        _check_seed("kfold", shuffle, seed)
        n = len(self)
        if not _is_int(k) or k < 2:
            raise ValueError(f"kfold: k must be an int >= 2, got {k!r}")
        if k > n:
            raise ValueError(f"kfold: k = {k} folds need at least {k} rows, the dataset has {n}")
        order = _rng(seed).permutation(n) if shuffle else np.arange(n)
        return _kfold(self, order, int(k))

    def train_test_split(self, test_size=0.25, shuffle=True, seed=None):
        """See :func:`train_test_split`."""
        return train_test_split(self, test_size=test_size, shuffle=shuffle, seed=seed)


def _kfold(data, order, k):
    n = len(order)
    base, extra = divmod(n, k)
    start = 0
    for fold in range(k):
        stop = start + base + (1 if fold < extra else 0)
        train = np.concatenate([order[:start], order[stop:]])
        yield data._take(train), data._take(order[start:stop])
        start = stop


def _lengths(lengths, n):
    try:
        lengths = list(lengths)
    except TypeError:
        raise TypeError(f"split: give a sequence of lengths or fractions, "
                        f"not {type(lengths).__name__}") from None
    if not lengths:
        raise ValueError("split: give at least one length or fraction")
    if all(_is_int(v) for v in lengths):
        if any(v < 0 for v in lengths):
            raise ValueError(f"split: lengths must not be negative, got {lengths}")
        if sum(lengths) != n:
            raise ValueError(f"split: lengths {lengths} add up to {sum(lengths)}, "
                             f"but the dataset has {n} rows")
        return [int(v) for v in lengths]
    if not all(isinstance(v, Real) and not isinstance(v, (bool, np.bool_)) for v in lengths):
        raise TypeError(f"split: lengths are ints and fractions are floats, got {lengths}")
    if any(not 0 <= v <= 1 for v in lengths):
        raise ValueError(f"split: fractions must be in [0, 1], got {lengths}; "
                         f"give ints for lengths")
    if not math.isclose(sum(lengths), 1.0, abs_tol=1e-9):
        raise ValueError(f"split: fractions {lengths} add up to {sum(lengths)}, not 1")
    counts = [math.floor(n * v) for v in lengths]
    for i in range(n - sum(counts)):
        counts[i % len(counts)] += 1
    return counts


def train_test_split(data, labels=None, *, test_size=0.25, shuffle=True, seed=None):
    """Split into ``(train, test)`` Datasets.

    ``data`` is a Dataset, or a records array (with ``labels`` an optional labels
    array). ``test_size`` is a fraction in (0, 1) of the rows (rounded up, as in
    scikit-learn) or a count of rows; both parts must be non-empty. With ``shuffle``
    (the default) the rows are permuted first, reproducibly with ``seed``; without it
    the test set is the last rows.

    >>> import numpy as np
    >>> train, test = train_test_split(np.arange(10), test_size=0.3, shuffle=False)
    >>> train.records.tolist(), test.records.tolist()
    ([0, 1, 2, 3, 4, 5, 6], [7, 8, 9])
    """
    _check_seed("train_test_split", shuffle, seed)
    if isinstance(data, Dataset):
        if labels is not None:
            raise ValueError("train_test_split: labels are given with a Dataset, which has its own; "
                             "give either a Dataset or records and labels arrays")
    else:
        data = Dataset(data, labels)
    n = len(data)
    if _is_int(test_size):
        n_test = int(test_size)
    elif isinstance(test_size, Real) and not isinstance(test_size, (bool, np.bool_)):
        if not 0 < test_size < 1:
            raise ValueError(f"train_test_split: a fractional test_size must be in (0, 1), "
                             f"got {test_size}")
        n_test = math.ceil(test_size * n)
    else:
        raise TypeError(f"train_test_split: test_size is a fraction or a count of rows, "
                        f"not {type(test_size).__name__}")
    if not 0 < n_test < n:
        raise ValueError(f"train_test_split: test_size={test_size!r} gives {n_test} test rows of "
                         f"{n}; both the train and the test set must have at least one row")
    order = _rng(seed).permutation(n) if shuffle else np.arange(n)
    n_train = n - n_test
    return data._take(order[:n_train]), data._take(order[n_train:])


# ---- CSV ----------------------------------------------------------------------------
def from_csv(path, labels=None, header=True, delimiter=",", dtype=DEFAULT_DTYPE,
             converters=None) -> Dataset:
    """Load a Dataset from a CSV file with Python's ``csv`` module.

    ``labels`` names the label columns (indices, or names when there is a header; a
    single index or name is accepted too); they are taken out of the records. One label
    column gives labels of shape ``(N,)``, several ``(N, k)``; no label columns give a
    Dataset without labels. ``converters`` maps a column (index or name) to a function
    of the field's text, e.g. ``{"species": classes.index}``. Fields without a converter
    must parse as numbers. Records have ``dtype``; labels are int64 when every label
    value is an int (a converter's int, or an integer field such as ``2``), else
    ``dtype``. Blank lines are skipped.

    The file is read as UTF-8 (a byte-order mark is skipped). A malformed row (wrong
    number of fields, a field that is not a number and has no converter, a converter that
    raises), bytes that are not UTF-8, or a value that ``dtype`` cannot hold (an integer
    out of its range, a float that would become inf, a fraction for an integer dtype; an
    integer label out of int64's range) raise ValueError naming the file, the 1-based
    line (the header is line 1) and the column (its name when there is a header, else its
    index). Nothing is half-loaded: the function returns a full Dataset or raises.
    """
    path = os.fspath(path)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"from_csv: {dtype!r} is not a dtype") from None
    if dtype.kind not in "iuf":
        raise TypeError(f"from_csv: records are numbers: give an integer or float dtype, got {dtype}")
    converters = dict(converters or {})
    rows = []
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(_not_utf8(path, raw, error, delimiter, header)) from None
    with io.StringIO(text, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        names = None
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue                      # blank line
            if header and names is None:
                names = [name.strip() for name in row]
                continue
            rows.append((reader.line_num, row))
    if names is None and not rows:
        raise ValueError(f"{path}: the file is empty (no header and no rows)")
    if not rows:
        raise ValueError(f"{path}: the file has a header but no data rows")
    width = len(names) if names is not None else len(rows[0][1])

    def column(col):
        return repr(names[col]) if names is not None else str(col)

    def resolve(key, what):
        if _is_int(key):
            if not -width <= key < width:
                raise ValueError(f"{path}: {what} column index {key} is out of range for "
                                 f"{width} columns")
            return int(key) % width
        if isinstance(key, str):
            if names is None:
                raise ValueError(f"{path}: {what} column {key!r} is a name, but header=False; "
                                 f"give column indices")
            if names.count(key) > 1:
                raise ValueError(f"{path}: {what} column {key!r} appears {names.count(key)} "
                                 f"times in the header")
            if key not in names:
                raise ValueError(f"{path}: {what} column {key!r} is not in the header {names}")
            return names.index(key)
        raise TypeError(f"{path}: {what} columns are indices or names, not {type(key).__name__}")

    if labels is None:
        labels = []
    elif _is_int(labels) or isinstance(labels, str):
        labels = [labels]
    label_cols = [resolve(key, "label") for key in labels]
    if len(set(label_cols)) != len(label_cols):
        raise ValueError(f"{path}: a label column is given twice: {list(labels)}")
    record_cols = [c for c in range(width) if c not in label_cols]
    if not record_cols:
        raise ValueError(f"{path}: every column is a label column; no record columns are left")
    convert = {}
    for key, fn in converters.items():
        col = resolve(key, "converter")
        if col in convert:
            raise ValueError(f"{path}: two converters given for column {column(col)}")
        if not callable(fn):
            raise TypeError(f"{path}: the converter for column {column(col)} is not callable")
        convert[col] = fn

    integer_records = dtype.kind in "iu"

    def parse(line, col, text, is_label):
        where = f"{path}: line {line}, column {column(col)}"
        fn = convert.get(col)
        if fn is not None:
            try:
                value = fn(text)
            except Exception as error:
                raise ValueError(f"{where}: the converter raised {type(error).__name__}: "
                                 f"{error} (field {text!r})") from error
            if _is_int(value):
                value = int(value)
            else:
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    raise ValueError(f"{where}: the converter returned {value!r}, "
                                     f"which is not a number (field {text!r})") from None
            return _fits(where, value, np.dtype(np.int64) if is_label and isinstance(value, int) else dtype)
        stripped = text.strip()
        if not stripped:
            raise ValueError(f"{where}: the field is empty")
        if is_label or integer_records:
            try:
                value = int(stripped)
            except ValueError:
                pass
            else:
                return _fits(where, value, np.dtype(np.int64) if is_label else dtype)
        try:
            value = float(stripped)
        except ValueError:
            raise ValueError(f"{where}: {text!r} is not a number; give a converter for this "
                             f"column to map it to one") from None
        return _fits(where, value, dtype)

    records, label_rows = [], []
    for line, row in rows:
        if len(row) != width:
            if len(row) < width:
                detail = f"column {column(len(row))} is missing"
            else:
                detail = (f"unexpected extra field at column {width}" if names is None else
                          f"unexpected extra field after the last column {column(width - 1)}")
            raise ValueError(f"{path}: line {line}: {len(row)} fields, expected {width} "
                             f"({detail})")
        records.append([parse(line, c, row[c], False) for c in record_cols])
        label_rows.append([parse(line, c, row[c], True) for c in label_cols])

    try:
        record_array = np.array(records, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"{path}: cannot store the records as {np.dtype(dtype)}: {error}") from error
    if not label_cols:
        return Dataset(record_array)
    all_int = all(_is_int(v) for row in label_rows for v in row)
    label_array = np.array(label_rows, dtype=np.int64 if all_int else dtype)
    if len(label_cols) == 1:
        label_array = label_array[:, 0]
    return Dataset(record_array, label_array)


def _fits(where, value, dtype):
    """``value`` (a Python int or float parsed from a field) if ``dtype`` holds it as it is;
    otherwise a ValueError at ``where`` (the file, line and column)."""
    if dtype.kind in "iu":
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{where}: {value!r} is not an integer, and the records are {dtype} "
                                 f"(give dtype=np.float32 for fractions)")
            value = int(value)
        info = np.iinfo(dtype)
        if not info.min <= value <= info.max:
            raise ValueError(f"{where}: the integer {value} is too large for {dtype} (range "
                             f"[{info.min}, {info.max}])")
        return value
    if isinstance(value, int):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
    else:
        number = value
    if math.isfinite(number) and abs(number) > float(np.finfo(dtype).max) or \
            (isinstance(value, int) and math.isinf(number)):
        raise ValueError(f"{where}: {value!r} is too large for {dtype} (largest finite value "
                         f"{float(np.finfo(dtype).max):.8g}); it would become inf")
    return value


def _not_utf8(path, raw, error, delimiter, header):
    """The message for a file that is not UTF-8: the file, line and column of the first bad byte."""
    start = error.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
    line_start = raw.rfind(b"\n", 0, start) + 1
    line = raw.count(b"\n", 0, start) + 1
    prefix = raw[line_start:start].decode("utf-8", errors="replace")
    col = len(next(csv.reader([prefix], delimiter=delimiter), [""])) - 1 if prefix else 0
    column = str(col)
    if header and line > 1:
        first = raw[:raw.find(b"\n")] if b"\n" in raw else raw
        names = next(csv.reader([first.decode("utf-8-sig", errors="replace").strip("\r")],
                                delimiter=delimiter), [])
        if col < len(names):
            column = repr(names[col].strip())
    bad = raw[error.start:error.end]
    return (f"{path}: line {line}, column {column}: the byte(s) {bad!r} are not UTF-8 text; from_csv "
            f"reads UTF-8: save the file in that encoding")
