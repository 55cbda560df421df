#!/usr/bin/env python3
"""Prints a bearer token (HS256 JWT) for a user, signed with the local jwt_secret.

The secret comes from SPIN_VARIABLE_JWT_SECRET, else from the development
secret `make up` keeps in .spin/jwt_secret. Standard library only.

    make -s token [SUB=0b6f1a53-6c1f-4d7e-9a43-2f1f4a0c9b1e] [TTL=3600]
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import time
import uuid


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", required=True, help="the user id (UUID), the token's sub")
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    parser.add_argument("--secret-file", default=".spin/jwt_secret")
    parser.add_argument("--issuer", default=os.environ.get("SPIN_VARIABLE_JWT_ISSUER", ""))
    parser.add_argument("--audience", default=os.environ.get("SPIN_VARIABLE_JWT_AUDIENCE", ""))
    args = parser.parse_args()
    try:
        uuid.UUID(args.user)
    except ValueError:
        print(f"USER must be a UUID, got {args.user!r}", file=sys.stderr)
        return 2
    secret = os.environ.get("SPIN_VARIABLE_JWT_SECRET")
    if not secret:
        try:
            with open(args.secret_file, encoding="utf-8") as f:
                secret = f.read().strip()
        except FileNotFoundError:
            print(f"no SPIN_VARIABLE_JWT_SECRET and no {args.secret_file}: run `make up` once", file=sys.stderr)
            return 2
    now = int(time.time())
    claims = {"sub": args.user, "iat": now, "exp": now + args.ttl}
    if args.issuer:
        claims["iss"] = args.issuer
    if args.audience:
        claims["aud"] = args.audience
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = b64(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest())
    print(f"{header}.{payload}.{signature}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
