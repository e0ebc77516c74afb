"""``python -m direct sms-service|notification-service|echo ...`` (``benchmarks/`` on the path)."""

from __future__ import annotations

import argparse
import sys

from pigeon.config import load_settings
from pigeon.errors import PigeonError


def main(argv: list[str] | None = None) -> int:
    """Run one of the two baseline services until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m direct", description=__doc__)
    commands = parser.add_subparsers(dest="service", required=True)
    sms = commands.add_parser("sms-service", help="calls the provider and waits")
    sms.add_argument("--host", default="127.0.0.1")
    sms.add_argument("--port", type=int, required=True)
    notify = commands.add_parser("notification-service", help="calls the SMS service and waits")
    notify.add_argument("--host", default="127.0.0.1")
    notify.add_argument("--port", type=int, required=True)
    notify.add_argument("--sms-url", required=True, help="base URL of the SMS service")
    notify.add_argument("--api-key", required=True, help="the one API key it accepts")
    echo = commands.add_parser("echo", help="validates and answers 202, stores nothing (E)")
    echo.add_argument("--host", default="127.0.0.1")
    echo.add_argument("--port", type=int, required=True)
    echo.add_argument("--api-key", required=True, help="the one API key it accepts")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except PigeonError as exc:
        print(f"direct: error: {exc}", file=sys.stderr)
        return 2

    from direct.serve import serve

    if args.service == "echo":
        from direct.echo import create_app as echo_app

        serve(echo_app(settings, api_key=args.api_key), args.host, args.port)
    elif args.service == "sms-service":
        from direct.sms_service import create_app as sms_app

        serve(sms_app(settings), args.host, args.port)
    else:
        from direct.notification_service import create_app as notification_app

        app = notification_app(settings, sms_url=args.sms_url, api_key=args.api_key)
        serve(app, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
