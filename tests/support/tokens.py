"""Firebase ID tokens signed by RS256 keys minted here, and the keys published the way
Google publishes its own (a JSON map of key id to X.509 certificate, with Cache-Control):
the only way to prove that forged, expired and misaddressed tokens are refused."""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

ISSUER_PREFIX = "https://securetoken.google.com/"


@dataclass
class SigningKey:
    kid: str
    private_pem: bytes
    certificate_pem: str

    @classmethod
    def mint(cls, kid: str) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.test")])
        start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
        certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                       .public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(start)
                       .not_valid_after(start + datetime.timedelta(days=30))
                       .sign(key, hashes.SHA256()))
        private = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return cls(kid, private, certificate.public_bytes(serialization.Encoding.PEM).decode())

    def sign(self, claims: dict[str, Any], kid: str | None = None) -> str:
        signer = crypt.RSASigner.from_string(self.private_pem, kid or self.kid)
        token: bytes = jwt.encode(signer, claims)
        return token.decode()


@dataclass
class TokenMint:
    """Signs tokens for a Firebase project with a published key; `outsider` is a key of the
    same kind that was never published (a forger's)."""

    project: str
    published: SigningKey = field(default_factory=lambda: SigningKey.mint("published-key"))
    outsider: SigningKey = field(default_factory=lambda: SigningKey.mint("published-key"))
    certs_url: str = ""
    fetches: int = 0

    def claims(self, uid: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER_PREFIX + self.project, "aud": self.project, "auth_time": now - 60,
            "user_id": uid, "sub": uid, "iat": now - 60, "exp": now + 3600,
            "firebase": {"identities": {}, "sign_in_provider": "password"}}
        claims.update(overrides)
        return {key: value for key, value in claims.items() if value is not None}

    def token(self, uid: str, **overrides: Any) -> str:
        return self.published.sign(self.claims(uid, **overrides))

    def forged(self, uid: str) -> str:
        """Right claims and the published key's id, signed by another key."""
        return self.outsider.sign(self.claims(uid))

    def unsigned(self, uid: str) -> str:
        """As the Auth emulator issues them: alg none, no signature."""
        def part(value: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
        return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(self.claims(uid))}."


@contextmanager
def published_keys(mint: TokenMint) -> Iterator[TokenMint]:
    """Serve the mint's published key as Google serves its securetoken certificates."""
    body = json.dumps({mint.published.kid: mint.published.certificate_pem}).encode()

    class Certs(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            mint.fetches += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Cache-Control", "public, max-age=3600")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Certs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    mint.certs_url = f"http://127.0.0.1:{server.server_address[1]}/robot/v1/metadata/x509/securetoken"
    try:
        yield mint
    finally:
        server.shutdown()
        server.server_close()


def emulator_user(emulator_host: str, email: str) -> tuple[str, str]:
    """Sign a user up on the Firebase Auth emulator as the app's frontend does: its uid and
    the ID token the frontend would send."""
    answer = requests.post(
        f"http://{emulator_host}/identitytoolkit.googleapis.com/v1/accounts:signUp?key=any",
        json={"email": email, "password": "a-secret-1", "returnSecureToken": True}, timeout=10)
    answer.raise_for_status()
    body = answer.json()
    return body["localId"], body["idToken"]
