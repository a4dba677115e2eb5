"""Firebase ID tokens signed by RS256 keys minted here, and the keys published the way
Google publishes its own (a JSON map of key id to X.509 certificate, with Cache-Control):
the only way to prove that forged, expired and misaddressed tokens are refused."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
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
from cryptography.hazmat.primitives.asymmetric import ec, rsa
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

    def sign_without_kid(self, claims: dict[str, Any]) -> str:
        token: bytes = jwt.encode(crypt.RSASigner.from_string(self.private_pem), claims)
        return token.decode()

    def jwk(self) -> dict[str, str]:
        """The public key as a JWK set publishes it."""
        numbers = serialization.load_pem_private_key(
            self.private_pem, None).public_key().public_numbers()

        def uint(value: int) -> str:
            raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                "n": uint(numbers.n), "e": uint(numbers.e)}


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A JWS in compact form from its parts, signed by whoever computed `signature`."""
    return ".".join((b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()),
                     b64(signature)))


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

    def unsigned(self, uid: str, **overrides: Any) -> str:
        """As the Auth emulator issues them: alg none, no signature."""
        return compact({"alg": "none", "typ": "JWT"}, self.claims(uid, **overrides))

    def without_kid(self, uid: str) -> str:
        """Signed by the published key, but naming no key."""
        return self.published.sign_without_kid(self.claims(uid))

    def unknown_kid(self, uid: str) -> str:
        """Signed by the published key under an id that was never published."""
        return self.published.sign(self.claims(uid), kid="never-published")

    def hs256_with_certificate(self, uid: str) -> str:
        """The classic confusion: HMAC keyed with the public certificate's PEM."""
        header = {"alg": "HS256", "typ": "JWT", "kid": self.published.kid}
        unsigned = compact(header, self.claims(uid)).rsplit(".", 1)[0]
        mac = hmac.new(self.published.certificate_pem.encode(), unsigned.encode(),
                       hashlib.sha256).digest()
        return f"{unsigned}.{b64(mac)}"

    def es256(self, uid: str) -> str:
        """Signed with an EC key under the published key's id (ES256 is in the lists of
        algorithms of the usual libraries)."""
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        token: bytes = jwt.encode(crypt.ES256Signer.from_string(pem, self.published.kid),
                                  self.claims(uid))
        return token.decode()


@contextmanager
def published_keys(mint: TokenMint, jwks: bool = False) -> Iterator[TokenMint]:
    """Serve the mint's published key as Google serves its securetoken certificates, or as
    its JWK set (`jwks`)."""
    document: dict[str, Any] = (
        {"keys": [mint.published.jwk()]} if jwks
        else {mint.published.kid: mint.published.certificate_pem})
    body = json.dumps(document).encode()

    class Certs(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            mint.fetches += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Cache-Control", "public, max-age=3600")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any, **__: Any) -> None:
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
