"""`python -m lorafast` / the `lorafast` console script."""

import argparse
import json
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="lorafast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print build_info() as JSON")
    demo = sub.add_parser("demo", help="write a small checkpoint, memory-map it back, print build_info()")
    demo.add_argument("--out", help="folder to keep the checkpoint in (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.command == "info":
        import lorafast

        print(json.dumps(lorafast.build_info(), indent=2))
    elif args.command == "demo":
        from lorafast.demo import run_demo

        return run_demo(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
