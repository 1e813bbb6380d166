"""Where the work runs: :mod:`gencli.engines.local` scores and samples in this process, chunk by
chunk, so memory stays flat whatever the row count.
"""
