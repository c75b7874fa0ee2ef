#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd, from PyPI) for hookrelay's email tests.

    smtp_server.py --out FILE [--tls starttls|implicit|none --cert PEM --key PEM]
                   [--auth USER:PASSWORD] [--max-rcpt N]

Listens on a free loopback port and prints `listening PORT` once ready. Every message it
takes is appended to FILE as one JSON line: envelope sender and recipients, the raw
message and its headers and parts as Python's email parser reads them, whether the session
was encrypted, who authenticated, and which connection (counted from 1) it came on.

Recipients choose how they are answered by their local part, so a test can ask for each
reply the protocol has:
  r550-…  RCPT refused for good (550 5.1.1)     r450-…  RCPT refused for now (450 4.2.1)
  d451-…  DATA answered 451 4.3.0 (transient)   d554-…  DATA answered 554 5.7.1 (permanent)
More than --max-rcpt recipients in one transaction get 452 4.5.3 (too many recipients).
"""

import argparse
import asyncio
import email
import email.policy
import itertools
import json
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, out, max_rcpt, implicit, connection):
        self.out = out
        self.max_rcpt = max_rcpt
        self.implicit = implicit
        self.connection = connection

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0]
        if local.startswith("r550-"):
            return "550 5.1.1 mailbox unavailable"
        if local.startswith("r450-"):
            return "450 4.2.1 mailbox busy, try later"
        if self.max_rcpt and len(envelope.rcpt_tos) >= self.max_rcpt:
            return "452 4.5.3 too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        locals_ = [a.split("@", 1)[0] for a in envelope.rcpt_tos]
        if any(l.startswith("d554-") for l in locals_):
            return "554 5.7.1 message rejected"
        if any(l.startswith("d451-") for l in locals_):
            return "451 4.3.0 local error in processing"
        # Read back by the standard library's parser, not by the code that wrote it.
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.original_content.decode("utf-8", "replace"),
            "headers": {k.lower(): str(v) for k, v in msg.items()},
            "content_type": msg.get_content_type(),
            "parts": [
                {"type": part.get_content_type(), "content": part.get_content()}
                for part in msg.walk()
                if not part.is_multipart()
            ],
            "tls": self.implicit or session.ssl is not None,
            "connection": self.connection,
            "auth": session.auth_data.login.decode() if session.authenticated else None,
        }
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 2.0.0 queued"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--tls", choices=["starttls", "implicit", "none"], default="none")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth")
    p.add_argument("--max-rcpt", type=int, default=0)
    args = p.parse_args()

    context = None
    if args.tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    implicit = args.tls == "implicit"

    def authenticator(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword) or not args.auth:
            return AuthResult(success=False, handled=False)
        user, password = args.auth.split(":", 1)
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    connections = itertools.count(1)

    def factory():
        return SMTP(
            Handler(args.out, args.max_rcpt, implicit, next(connections)),
            hostname="smtp.test",
            tls_context=context if args.tls == "starttls" else None,
            require_starttls=args.tls == "starttls",
            auth_required=bool(args.auth),
            # With implicit TLS the session is encrypted from the start, which aiosmtpd
            # does not see; AUTH is then over TLS all the same.
            auth_require_tls=args.tls == "starttls",
            authenticator=authenticator if args.auth else None,
            enable_SMTPUTF8=True,
        )

    async def serve():
        server = await asyncio.get_running_loop().create_server(
            factory, "127.0.0.1", 0, ssl=context if implicit else None
        )
        print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
