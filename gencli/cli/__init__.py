"""The command line: the click group and the one error boundary (:mod:`gencli.cli.main`), one
module per command or close pair, and the shared options. Nothing in the library imports it.
"""
