"""`sophia` command line (installed as a console script). Stage entry points stay
`python -m sophia.<stage>`; this holds the tools people run by hand."""

from __future__ import annotations

import argparse
from pathlib import Path

from sophia.cli import main as cli_main


def main() -> None:
    p = argparse.ArgumentParser(prog="sophia", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="answer a request with an exported bundle on this machine (LiteRT)")
    run.add_argument("--bundle", required=True, type=Path, help="results/export/<model>/bundle")
    what = run.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt", help="a request (generate mode) or code to summarise")
    what.add_argument("--file", type=Path, help="summarise mode: a file of code")
    run.add_argument("--graph", choices=["auto", "kv", "window"], default="auto",
                     help="KV-cache decode (default when the bundle has it) or the fixed window")
    run.add_argument("--no-prefill", action="store_true",
                     help="kv: feed the prompt one decode step per token instead of through the prefill graph")
    run.add_argument("--max-new-tokens", type=int)
    run.add_argument("--threads", type=int, default=2)
    run.add_argument("--no-stop", action="store_true",
                     help="ignore EOS and the stop strings: answer exactly --max-new-tokens tokens (parity checks)")
    run.add_argument("--json", action="store_true", help="print one JSON object (tokens, text, timings)")
    from sophia.serve.cli import add_parser as add_serve

    add_serve(sub)
    args = p.parse_args()

    def go() -> None:
        if args.command == "serve":
            from sophia.serve.cli import run as serve

            serve(args)
            return
        from sophia.export import runner

        if args.file is not None:
            args.prompt = args.file.read_text(encoding="utf-8")
        runner.run(args)

    cli_main(go)


if __name__ == "__main__":
    main()
