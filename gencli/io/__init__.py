"""Files in and out: reading tables (CSV, TSV, NPY, Parquet, stdin), streaming them in
chunks, writing tables and files atomically, and the console on stderr.

The lowest layer above :mod:`gencli.errors`: it knows nothing of models.
"""
