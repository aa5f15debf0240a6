"""`python -m lorafast` / the `lorafast` console script."""

import argparse
import json
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="lorafast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print build_info() as JSON")
    args = parser.parse_args(argv)
    if args.command == "info":
        import lorafast

        print(json.dumps(lorafast.build_info(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
