"""Signs a Footpath identity token (docs/identity.md) with the standard library only.

Run as a script, it prints the token of the docs' worked example; a site's server
imports identity_token() and passes exp = int(time.time()) + 3600.
"""
import base64
import hashlib
import hmac
import json


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def identity_token(secret: str, claims: dict) -> str:
    header = b64url(b'{"alg":"HS256","typ":"JWT"}')
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
    signing_input = header + "." + payload
    signature = hmac.new(
        secret.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256
    ).digest()
    return signing_input + "." + b64url(signature)


if __name__ == "__main__":
    print(
        identity_token(
            "change-me-to-32-random-bytes-hex",
            {"aud": "shop", "email": "ann@example.com", "exp": 1795504514, "sub": "user-42"},
        )
    )
