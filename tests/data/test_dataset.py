import numpy as np
import pytest

from neuronika.data.dataset import Dataset, from_csv, train_test_split


def make(n=10, labels=True):
    records = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    return Dataset(records, np.arange(n) if labels else None)


# ---- construction and indexing ------------------------------------------------------
def test_len_and_int_index():
    data = make(5)
    assert len(data) == 5
    record, label = data[2]
    np.testing.assert_array_equal(record, [4, 5])
    assert label == 2
    record, label = data[-1]
    assert label == 4
    with pytest.raises(IndexError, match="out of range"):
        data[5]
    assert isinstance(data.records, np.ndarray) and isinstance(data.labels, np.ndarray)


def test_index_without_labels_gives_record():
    data = make(3, labels=False)
    assert data.labels is None
    np.testing.assert_array_equal(data[1], [2, 3])
    assert len(list(data)) == 3


def test_slice_is_view_and_array_index_is_copy():
    data = make(6)
    part = data[1:4]
    assert isinstance(part, Dataset) and len(part) == 3
    assert np.shares_memory(part.records, data.records)
    np.testing.assert_array_equal(part.labels, [1, 2, 3])
    picked = data[[5, 0]]
    np.testing.assert_array_equal(picked.labels, [5, 0])
    assert not np.shares_memory(picked.records, data.records)
    picked = data[np.array([True, False] * 3)]
    np.testing.assert_array_equal(picked.labels, [0, 2, 4])
    with pytest.raises(IndexError):
        data[[0, 6]]
    with pytest.raises(TypeError):
        data["a"]


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="3 records .* 2 labels"):
        Dataset(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="0-dim"):
        Dataset(np.float32(1.0))


# ---- CSV ----------------------------------------------------------------------------
def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


IRIS = """a,b,species,c
1.0,2.0,setosa,3.5
4,5,virginica,6
7,8,setosa,9
"""
CLASSES = ["setosa", "virginica"]


def test_csv_header_label_by_name_with_converter(tmp_path):
    path = write(tmp_path, IRIS)
    data = Dataset.from_csv(path, labels=["species"], converters={"species": CLASSES.index})
    assert data.records.dtype == np.float32
    np.testing.assert_array_equal(data.records, [[1, 2, 3.5], [4, 5, 6], [7, 8, 9]])
    assert data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.labels, [0, 1, 0])


def test_csv_label_by_index_and_module_function(tmp_path):
    path = write(tmp_path, IRIS)
    data = from_csv(str(path), labels=[2], converters={2: CLASSES.index})
    np.testing.assert_array_equal(data.labels, [0, 1, 0])
    assert data.records.shape == (3, 3)
    # a single name works too, and several label columns give (N, k) labels
    data = from_csv(path, labels="c", converters={"species": CLASSES.index})
    np.testing.assert_array_equal(data.labels, [3.5, 6, 9])
    assert data.labels.dtype == np.float32
    np.testing.assert_array_equal(data.records[:, 2], [0, 1, 0])
    data = from_csv(path, labels=[0, "c"], converters={"species": CLASSES.index})
    assert data.labels.shape == (3, 2) and data.records.shape == (3, 2)


def test_csv_integer_label_column_is_int(tmp_path):
    path = write(tmp_path, "x,y,label\n0.5,1,2\n1.5,2,0\n")
    data = from_csv(path, labels=["label"], dtype=np.float64)
    assert data.records.dtype == np.float64
    assert data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.labels, [2, 0])


def test_csv_no_labels(tmp_path):
    data = from_csv(write(tmp_path, "x,y\n1,2\n3,4\n"))
    assert data.labels is None
    np.testing.assert_array_equal(data.records, [[1, 2], [3, 4]])


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_csv_delimiters(tmp_path, delimiter):
    text = "\n".join(delimiter.join(row) for row in [["a", "b", "y"], ["1", "2", "0"],
                                                       ["3", "4", "1"]]) + "\n"
    data = from_csv(write(tmp_path, text), labels=["y"], delimiter=delimiter)
    np.testing.assert_array_equal(data.records, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(data.labels, [0, 1])


def test_csv_no_header(tmp_path):
    path = write(tmp_path, "1,2,cat\n3,4,dog\n\n")      # a trailing blank line is skipped
    data = from_csv(path, labels=[-1], header=False, converters={2: ["cat", "dog"].index})
    np.testing.assert_array_equal(data.records, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(data.labels, [0, 1])
    with pytest.raises(ValueError, match="header=False"):
        from_csv(path, labels=["y"], header=False)


def test_csv_quoted_fields(tmp_path):
    data = from_csv(write(tmp_path, 'a,"name, long"\n1,"2"\n'), labels=["name, long"])
    np.testing.assert_array_equal(data.labels, [2])


def test_csv_wrong_field_count(tmp_path):
    path = write(tmp_path, "a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(ValueError) as info:
        from_csv(path)
    message = str(info.value)
    assert str(path) in message and "line 3" in message and "'c'" in message
    path = write(tmp_path, "a,b,c\n1,2,3\n4,5,6\n7,8,9,10\n", "extra.csv")
    with pytest.raises(ValueError, match=r"line 4: 4 fields, expected 3.*'c'"):
        from_csv(path)
    path = write(tmp_path, "1,2,3\n4,5\n", "noheader.csv")
    with pytest.raises(ValueError, match=r"line 2: 2 fields, expected 3 \(column 2 is missing"):
        from_csv(path, header=False)


def test_csv_bad_number(tmp_path):
    path = write(tmp_path, "a,b,c\n1,2,3\n4,oops,6\n")
    with pytest.raises(ValueError) as info:
        from_csv(path)
    message = str(info.value)
    assert str(path) in message and "line 3" in message and "column 'b'" in message
    assert "'oops'" in message
    path = write(tmp_path, "1,2,3\n4,5,x\n", "noheader.csv")
    with pytest.raises(ValueError, match=r"noheader\.csv: line 2, column 2"):
        from_csv(path, header=False)
    # a string label without a converter is an error too
    path = write(tmp_path, IRIS, "iris.csv")
    with pytest.raises(ValueError, match=r"line 2, column 'species'.*converter"):
        from_csv(path, labels=["species"])


def test_csv_converter_error(tmp_path):
    path = write(tmp_path, IRIS + "1,2,versicolor,3\n")
    with pytest.raises(ValueError) as info:
        from_csv(path, labels=["species"], converters={"species": CLASSES.index})
    message = str(info.value)
    assert str(path) in message and "line 5" in message and "column 'species'" in message
    assert "versicolor" in message
    assert isinstance(info.value.__cause__, ValueError)


def test_csv_empty_and_header_only(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        from_csv(write(tmp_path, "", "empty.csv"))
    with pytest.raises(ValueError, match="header but no data rows"):
        from_csv(write(tmp_path, "a,b\n", "header.csv"))
    with pytest.raises(ValueError, match="empty"):
        from_csv(write(tmp_path, "", "empty2.csv"), header=False)


def test_csv_bad_column_names(tmp_path):
    path = write(tmp_path, IRIS)
    with pytest.raises(ValueError, match="'nope' is not in the header"):
        from_csv(path, labels=["nope"])
    with pytest.raises(ValueError, match="out of range"):
        from_csv(path, labels=[7])
    with pytest.raises(ValueError, match="'nope' is not in the header"):
        from_csv(path, converters={"nope": float})


# ---- splits -------------------------------------------------------------------------
def test_split_by_lengths():
    parts = make(10).split([3, 7])
    assert [len(p) for p in parts] == [3, 7]
    np.testing.assert_array_equal(parts[0].labels, [0, 1, 2])
    np.testing.assert_array_equal(parts[1].labels, np.arange(3, 10))
    with pytest.raises(ValueError, match="add up to 9"):
        make(10).split([3, 6])
    with pytest.raises(ValueError, match="negative"):
        make(10).split([11, -1])


def test_split_by_fractions():
    assert [len(p) for p in make(10).split([0.5, 0.3, 0.2])] == [5, 3, 2]
    # floor then one each from the first: 7 * [0.5, 0.25, 0.25] -> [3, 1, 1] + [1, 1, 0]
    assert [len(p) for p in make(7).split([0.5, 0.25, 0.25])] == [4, 2, 1]
    with pytest.raises(ValueError, match="not 1"):
        make(10).split([0.5, 0.2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        make(10).split([1.5, -0.5])


def test_split_shuffled_is_reproducible_and_a_partition():
    a = make(20).split([0.5, 0.5], shuffle=True, seed=3)
    b = make(20).split([0.5, 0.5], shuffle=True, seed=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.labels, y.labels)
    assert sorted(np.concatenate([p.labels for p in a]).tolist()) == list(range(20))
    assert a[0].labels.tolist() != list(range(10))
    # a seed alone shuffles; an explicit shuffle=False with a seed is an error
    c = make(20).split([0.5, 0.5], seed=3)
    np.testing.assert_array_equal(c[0].labels, a[0].labels)
    with pytest.raises(ValueError, match="shuffle=False"):
        make(10).split([5, 5], shuffle=False, seed=1)


def test_shuffle_reproducible():
    data = make(30)
    a, b, c = data.shuffle(seed=1), data.shuffle(seed=1), data.shuffle(seed=2)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.records, b.records)
    assert a.labels.tolist() != c.labels.tolist()
    assert sorted(a.labels.tolist()) == list(range(30))
    # records and labels stay paired
    np.testing.assert_array_equal(a.records[:, 0], 2 * a.labels)


def test_kfold_five_rows_two_folds():
    folds = list(Dataset(np.arange(5)).kfold(2))
    assert len(folds) == 2
    (train0, test0), (train1, test1) = folds
    assert test0.records.tolist() == [0, 1, 2] and train0.records.tolist() == [3, 4]
    assert test1.records.tolist() == [3, 4] and train1.records.tolist() == [0, 1, 2]


@pytest.mark.parametrize("n, k", [(10, 3), (7, 7), (12, 4), (9, 2), (11, 5)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_kfold_partitions(n, k, shuffle):
    seed = 0 if shuffle else None
    folds = list(make(n).kfold(k, shuffle=shuffle, seed=seed))
    assert len(folds) == k
    seen = []
    for i, (train, test) in enumerate(folds):
        assert len(test) == n // k + (1 if i < n % k else 0)
        assert len(train) + len(test) == n
        assert set(train.labels.tolist()).isdisjoint(test.labels.tolist())
        seen += test.labels.tolist()
    assert sorted(seen) == list(range(n))


def test_kfold_errors():
    with pytest.raises(ValueError, match="k must be"):
        list(make(5).kfold(1))
    with pytest.raises(ValueError, match="at least 6 rows"):
        make(5).kfold(6)


def test_train_test_split_dataset():
    train, test = train_test_split(make(10), test_size=0.25, seed=0)
    assert (len(train), len(test)) == (7, 3)          # ceil(2.5) test rows
    assert sorted(train.labels.tolist() + test.labels.tolist()) == list(range(10))
    again, _ = train_test_split(make(10), test_size=0.25, seed=0)
    np.testing.assert_array_equal(train.labels, again.labels)
    train, test = make(10).train_test_split(test_size=4, shuffle=False)
    assert test.labels.tolist() == [6, 7, 8, 9] and train.labels.tolist() == list(range(6))


def test_train_test_split_arrays():
    train, test = train_test_split(np.zeros((8, 3)), np.arange(8), test_size=2, shuffle=False)
    assert train.records.shape == (6, 3) and test.labels.tolist() == [6, 7]
    train, test = train_test_split(np.zeros((8, 3)), test_size=0.5, seed=1)
    assert test.labels is None and len(test) == 4
    with pytest.raises(ValueError, match="at least one row"):
        train_test_split(make(4), test_size=4)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        train_test_split(make(4), test_size=1.5)
    with pytest.raises(ValueError, match="own"):
        train_test_split(make(4), np.arange(4))


# ---- encodings and values the dtype cannot hold (issue 11) --------------------------------------

def test_csv_that_is_not_utf8_names_file_line_and_column(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("x,name,y\n1,2,3\n4,caf\xe9,6\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.csv: line 3, column 'name': .*\\xe9.*not UTF-8"):
        from_csv(path, converters={"name": len})
    path.write_bytes("1,2\n\xff,3\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.csv: line 2, column 0: .*not UTF-8"):
        from_csv(path, header=False)
    path.write_bytes(b"\xef\xbb\xbfx,y\n1,2\n")          # a byte-order mark is fine
    assert from_csv(path, labels="y").labels.tolist() == [2]


@pytest.mark.parametrize("text, kwargs, words", [
    ("x,y\n1,2\n3,99999999999999999999\n", {"labels": "y"}, ["line 3, column 'y'", "99999999999999999999", "int64"]),
    ("x,y\n1,2\n300,4\n", {"dtype": np.int8}, ["line 3, column 'x'", "300", "int8"]),
    ("x,y\n1,2\n3e39,4\n", {}, ["line 3, column 'x'", "3e+39", "float32"]),
    ("x,y\n1,2\n1.5,4\n", {"dtype": np.int32}, ["line 3, column 'x'", "1.5", "not an integer"]),
])
def test_csv_values_the_dtype_cannot_hold_name_file_line_and_column(tmp_path, text, kwargs, words):
    path = write(tmp_path, text, "big.csv")
    with pytest.raises(ValueError) as info:
        from_csv(path, **kwargs)
    for word in ["big.csv"] + words:
        assert word in str(info.value), str(info.value)


def test_csv_integer_records_keep_every_digit(tmp_path):
    path = write(tmp_path, "x\n9007199254740993\n", "wide.csv")
    assert from_csv(path, dtype=np.int64).records.tolist() == [[9007199254740993]]
