"""`paitho-tenant`: the tenant's own command line."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="paitho-tenant")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the tenant app")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    if args.command == "serve":
        import uvicorn

        from paitho_tenant.app import create_app

        conninfo = os.environ.get("PAITHO_TENANT_DB")
        if not conninfo:
            print("paitho-tenant: PAITHO_TENANT_DB is not set", file=sys.stderr)
            return 2
        app = create_app(conninfo, os.environ.get("PAITHO_TENANT_SLUG", "tenant"))
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
