"""Run the command line as ``python -m gencli``."""

from gencli.cli import main

if __name__ == "__main__":
    main()
