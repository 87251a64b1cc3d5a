"""The one rule by which every benchmark script appends rows to its CSV file in benchmarks/results/: a file has one
header that names every column. Rows are appended under it; when rows bring a column the header lacks, the file is
rewritten once with the header widened (earlier rows get empty cells there), so that no value ever sits in an
unnamed column. The rewrite goes through a temporary file and a rename, so an interrupted run leaves the old file
whole."""

from __future__ import annotations

import csv
import os


def append_rows(path: str, rows: list[dict], fields: list[str] | None = None) -> str:
    """Append rows to the CSV file at path (created with its header if missing) and return path.

    Columns: the file's own header, then those of fields it lacks (fields=None: every key of the rows, in the order
    first seen). With fields given, keys of a row outside them are not written. Missing values are written empty.
    """
    wanted = list(fields) if fields is not None else list(dict.fromkeys(k for r in rows for k in r))
    old_header: list[str] = []
    if os.path.exists(path):
        with open(path, newline="") as f:
            old_header = next(csv.reader(f), [])
    header = old_header + [k for k in wanted if k not in old_header]
    if old_header and header == old_header:
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=header, restval="", extrasaction="ignore").writerows(rows)
        return path
    old_rows: list[dict] = []
    if old_header:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            next(reader)
            for cells in reader:
                if len(cells) > len(old_header):
                    raise ValueError(f"{path}: a row has {len(cells)} cells under a header of {len(old_header)} "
                                     f"columns; name the extra columns in its header first")
                old_rows.append(dict(zip(old_header, cells)))
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(old_rows)
        writer.writerows(rows)
    os.replace(tmp, path)
    return path
