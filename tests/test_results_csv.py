"""benchmarks/results_csv.py: every benchmark script's rows land under named columns, whatever columns later runs
add, and earlier rows are kept."""

import csv
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from results_csv import append_rows  # noqa: E402  (a benchmarks module, not a package module)


def read(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_new_file_gets_a_header_from_the_rows(tmp_path):
    path = str(tmp_path / "r.csv")
    assert append_rows(path, [{"a": 1, "b": "x"}, {"b": "y", "c": 2.5}]) == path
    assert read(path) == [["a", "b", "c"], ["1", "x", ""], ["", "y", "2.5"]]


def test_rows_with_the_same_columns_are_appended(tmp_path):
    path = str(tmp_path / "r.csv")
    append_rows(path, [{"a": 1, "b": 2}])
    append_rows(path, [{"b": 4, "a": 3}])
    assert read(path) == [["a", "b"], ["1", "2"], ["3", "4"]]


def test_a_new_column_widens_the_header_and_keeps_earlier_rows(tmp_path):
    path = str(tmp_path / "r.csv")
    append_rows(path, [{"a": 1, "b": 2}, {"a": 3, "b": 4}])
    append_rows(path, [{"a": 5, "c": 6}])
    assert read(path) == [["a", "b", "c"], ["1", "2", ""], ["3", "4", ""], ["5", "", "6"]]
    assert os.listdir(tmp_path) == ["r.csv"]  # the rewrite left no temporary file
    rows = list(csv.DictReader(open(path, newline="")))
    assert rows[-1] == {"a": "5", "b": "", "c": "6"} and None not in rows[-1]


def test_given_fields_order_the_columns_and_drop_other_keys(tmp_path):
    path = str(tmp_path / "r.csv")
    append_rows(path, [{"z": 1, "a": 2, "extra": 3}], ["a", "z", "m"])
    assert read(path) == [["a", "z", "m"], ["2", "1", ""]]
    append_rows(path, [{"a": 7, "n": 8}], ["a", "n"])  # the file's order stays, n joins at the end
    assert read(path) == [["a", "z", "m", "n"], ["2", "1", "", ""], ["7", "", "", "8"]]


def test_a_row_with_unnamed_cells_is_refused_and_the_file_left_alone(tmp_path):
    path = str(tmp_path / "r.csv")
    with open(path, "w") as f:
        f.write("a,b\n1,2,3\n")
    with pytest.raises(ValueError, match="3 cells under a header of 2 columns"):
        append_rows(path, [{"c": 1}])
    assert open(path).read() == "a,b\n1,2,3\n"


def test_the_recorded_results_name_every_column():
    results = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "results")
    for name in sorted(os.listdir(results)):
        if name.endswith(".csv"):
            rows = read(os.path.join(results, name))
            assert all(len(r) <= len(rows[0]) for r in rows[1:]), name
