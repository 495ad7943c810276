"""Print a token for one space and user, signed with the server's AUTH_SECRET.

    AUTH_SECRET=... .venv/bin/python scripts/mint_token.py --space my-space --user alice [--ttl 86400]

--space '*' makes a token for any space (an app's own token, e.g. for createSpace
with a random id). The secret is read from AUTH_SECRET (or --auth-secret).
"""

from __future__ import annotations

import argparse
import os
import sys

from server.auth import DEFAULT_TTL_SECONDS, mint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--space", required=True, help="space id, or * for any space")
    parser.add_argument("--user", required=True, help="user id (1..128 characters)")
    parser.add_argument("--ttl", type=float, default=DEFAULT_TTL_SECONDS, help="seconds until it expires")
    parser.add_argument(
        "--auth-secret", default=os.environ.get("AUTH_SECRET", ""), help="default: $AUTH_SECRET"
    )
    args = parser.parse_args(argv)
    try:
        print(mint(args.auth_secret, args.space, args.user, args.ttl))
    except ValueError as e:
        parser.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
