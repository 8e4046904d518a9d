"""The command line of a bench script that takes no options.

`--help` prints the script's docstring and any other argument is refused, both before the
long run starts and before it rewrites its files in bench/results/.
"""

import argparse


def parse_no_options(doc: str | None) -> None:
    """Print `doc` for --help and exit; exit 2 naming any argument given."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
