"""An SMTP server for argo-drift's email tests: aiosmtpd with STARTTLS, implicit TLS or plain,
optionally requiring AUTH. Every accepted message goes into a maildir with two headers added by
the server, X-Test-TLS (yes/no) and X-Test-Auth (the login, or "-"), so a test can see how the
message arrived. Prints "ready" once it listens."""

import argparse
import logging
import warnings
import mailbox
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main():
    # aiosmtpd warns about its own test-only settings (AUTH over implicit TLS, deprecations).
    warnings.filterwarnings("ignore")
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--mode", choices=["none", "starttls", "implicit"], default="none")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password")
    a = p.parse_args()

    box = mailbox.Maildir(a.maildir, create=True)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
            login = "-"
            if isinstance(session.auth_data, LoginPassword):
                login = session.auth_data.login.decode()
            raw = (
                f"X-Test-TLS: {'yes' if tls else 'no'}\r\nX-Test-Auth: {login}\r\n"
                f"X-Test-Rcpt: {','.join(envelope.rcpt_tos)}\r\n"
            ).encode() + envelope.original_content
            box.add(raw)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == a.user
            and auth_data.password.decode() == a.password
        )
        # handled=False: aiosmtpd then answers 535 itself (its default, True, sends nothing).
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    context = None
    if a.mode != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(a.cert, a.key)
    kwargs = {}
    if a.user:
        kwargs.update(authenticator=authenticator, auth_required=True, # aiosmtpd does not count implicit TLS as TLS here, and would then not offer AUTH at
        # all; that connection is encrypted from the first byte anyway.
        auth_require_tls=a.mode == "starttls")
    if a.mode == "starttls":
        kwargs.update(tls_context=context, require_starttls=True)
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=a.port,
        ssl_context=context if a.mode == "implicit" else None,
        server_hostname="localhost",
        **kwargs,
    )
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
