"""``ztui``: the live dashboard. Options match ``zcli`` so ``zcli dashboard`` can exec it.

Textual is imported only once the options are parsed, so ``ztui --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys

from tui.connection import resolve


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ztui",
        description="Live dashboard of a management node: overview, views, events, actions.",
        epilog="Keys: ':' views, '/' filter, '?' help, 'q' quit. See the help screen for the rest.",
    )
    p.add_argument(
        "--endpoint", help="unix:PATH, tcp://HOST:PORT or tls://HOST:PORT (env ZMN_ENDPOINT)"
    )
    p.add_argument(
        "--session", help="session UUID (env ZMN_SESSION; default the one saved by zcli login)"
    )
    p.add_argument(
        "--read-only", action="store_true", help="show everything, change nothing: no actions"
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.version:
        from zmn import __version__

        print(f"ztui {__version__}")
        return 0
    endpoint, session = resolve(args.endpoint, args.session)
    from tui.app import ZtuiApp

    ZtuiApp(endpoint, session, read_only=args.read_only).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
