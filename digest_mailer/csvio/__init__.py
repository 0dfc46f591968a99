"""Subscriber CSV files: reading spreadsheet exports, writing exports. Pure: no store.

- :mod:`~digest_mailer.csvio.decoding`: a file's bytes as text lines, in its encoding;
- :mod:`~digest_mailer.csvio.reading`: the rows as subscribers to add (:func:`read_csv`),
  with every row left out reported and why;
- :mod:`~digest_mailer.csvio.attributes`: the extra columns kept per subscriber;
- :mod:`~digest_mailer.csvio.writing`: exports, every cell spreadsheet-safe, written
  whole to a private file.

This package is the public entry: the names below are importable from here. Importing a
file into the store and exporting the store is the store's side,
:mod:`digest_mailer.csv_transfer`.
"""

from digest_mailer.csvio.attributes import (
    MAX_ATTRIBUTE_NAME,
    MAX_ATTRIBUTE_VALUE,
    MAX_ATTRIBUTES,
    dump_attributes,
    load_attributes,
    merge_attributes,
)
from digest_mailer.csvio.decoding import decode_file
from digest_mailer.csvio.reading import (
    DELIMITERS,
    EMAIL_HEADERS,
    FIRST_HEADERS,
    LAST_HEADERS,
    MAX_ATTRIBUTE_COLUMNS,
    NAME_HEADERS,
    STORE_HEADERS,
    TEST_DOMAIN_HINT,
    Entry,
    Invalid,
    Note,
    ParsedCsv,
    read_csv,
    sniff_delimiter,
)
from digest_mailer.csvio.writing import (
    EXPORT_FIELDS,
    FORMULA_STARTS,
    SafeWriter,
    from_spreadsheet_safe,
    spreadsheet_safe,
    write_csv,
    write_private_file,
)

__all__ = [
    "DELIMITERS", "EMAIL_HEADERS", "EXPORT_FIELDS", "FIRST_HEADERS", "FORMULA_STARTS",
    "LAST_HEADERS", "MAX_ATTRIBUTES", "MAX_ATTRIBUTE_COLUMNS", "MAX_ATTRIBUTE_NAME",
    "MAX_ATTRIBUTE_VALUE", "NAME_HEADERS", "STORE_HEADERS", "TEST_DOMAIN_HINT", "Entry",
    "Invalid", "Note", "ParsedCsv", "SafeWriter", "decode_file", "dump_attributes",
    "from_spreadsheet_safe", "load_attributes", "merge_attributes", "read_csv",
    "sniff_delimiter", "spreadsheet_safe", "write_csv", "write_private_file",
]  # fmt: skip
