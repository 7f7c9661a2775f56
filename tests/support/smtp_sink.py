"""A real SMTP server for tests (aiosmtpd): writes each accepted message to
OUT_DIR/N.eml and refuses recipients at @reject.test with a permanent 550.

usage: smtp_sink.py PORT OUT_DIR [plain|starttls|tls CERT KEY]
With starttls or tls, AUTH is offered (after TLS) and accepts only
m4watch / s3cret-smtp. Prints "ready" once it accepts connections; runs until killed.
"""
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

port, out = int(sys.argv[1]), sys.argv[2]
if os.environ.get("SMTP_SINK_DEBUG"):
    import logging

    logging.basicConfig(level=logging.DEBUG)
mode = sys.argv[3] if len(sys.argv) > 3 else "plain"


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.endswith("@reject.test"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        n = len([f for f in os.listdir(out) if f.endswith(".eml")])
        tmp = os.path.join(out, f"{n}.tmp")
        with open(tmp, "wb") as f:
            f.write(b"X-Envelope-From: " + envelope.mail_from.encode() + b"\r\n")
            f.write(b"X-Envelope-To: " + ",".join(envelope.rcpt_tos).encode() + b"\r\n")
            tls = server.transport.get_extra_info("ssl_object") is not None
            f.write(f"X-Sink-TLS: {tls}\r\n".encode())
            f.write(f"X-Sink-Auth: {session.authenticated}\r\n".encode())
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(out, f"{n}.eml"))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"m4watch" and auth_data.password == b"s3cret-smtp"
    # handled=False: let aiosmtpd answer 535 itself on a failure.
    return AuthResult(success=ok, handled=False)


kwargs = {}
if mode in ("starttls", "tls"):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[4], sys.argv[5])
    kwargs["authenticator"] = authenticator
    if mode == "starttls":
        kwargs["tls_context"] = ctx
        kwargs["require_starttls"] = True
    else:
        kwargs["ssl_context"] = ctx
        # aiosmtpd only counts STARTTLS as TLS when deciding to offer AUTH; this
        # connection is TLS from the first byte.
        kwargs["auth_require_tls"] = False
controller = Controller(Handler(), hostname="127.0.0.1", port=port, **kwargs)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
