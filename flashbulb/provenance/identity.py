"""The key and certificate chain flashbulb signs content credentials with.

An operator names their own (PEM files, `[provenance] signing_cert` and `signing_key`). Otherwise,
on first start, flashbulb makes a local CA and a signing certificate it issued in
`<data_dir>/provenance/`, both labelled self-signed: C2PA readers then validate the signature and
the hard binding and report the signer as untrusted, until they are told to trust that CA.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

FOLDER = "provenance"
CHAIN, KEY, CA = "signer-chain.pem", "signer-key.pem", "local-ca.pem"
SELF_SIGNED = "flashbulb (self-signed)"
_YEARS = 10


@dataclasses.dataclass(frozen=True)
class SigningIdentity:
    chain_pem: bytes  # the signing certificate first, then the certificates that issued it
    key_pem: bytes
    anchor_pem: bytes  # the root this server trusts its own signatures by (its local CA; empty for an operator's)
    self_signed: bool


def load(data_dir: Path, cert: Path | None = None, key: Path | None = None) -> SigningIdentity:
    if cert or key:
        if not (cert and key):
            raise ValueError("[provenance] signing_cert and signing_key go together")
        return SigningIdentity(Path(cert).read_bytes(), Path(key).read_bytes(), b"", self_signed=False)
    folder = Path(data_dir) / FOLDER
    if not (folder / KEY).exists():
        _make(folder)
    return SigningIdentity((folder / CHAIN).read_bytes(), (folder / KEY).read_bytes(), (folder / CA).read_bytes(), True)


def _make(folder: Path) -> None:
    """A local CA and a signing certificate it issued, written whole or not at all: several servers
    starting on one data dir at once all end up with the same pair."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    until = now + datetime.timedelta(days=365 * _YEARS)
    ca_key, signer_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name, signer_name = _name("flashbulb local CA"), _name("flashbulb content credentials")

    def usage(*, sign_certs: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=not sign_certs,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=sign_certs,
            crl_sign=sign_certs,
            encipher_only=False,
            decipher_only=False,
        )

    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign_certs=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # C2PA's certificate profile: an end-entity certificate for signatures, with an extended key
    # usage it recognises (emailProtection), issued by a CA (a lone self-signed leaf is refused).
    signer = (
        x509.CertificateBuilder()
        .subject_name(signer_name)
        .issuer_name(ca_name)
        .public_key(signer_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign_certs=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    staging = Path(tempfile.mkdtemp(prefix=".provenance-", dir=folder.parent))
    (staging / CHAIN).write_bytes(signer.public_bytes(pem) + ca.public_bytes(pem))
    (staging / CA).write_bytes(ca.public_bytes(pem))
    key_file = staging / KEY
    key_file.write_bytes(signer_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(key_file, 0o600)
    try:
        staging.rename(folder)
    except OSError:  # another server made it first: theirs is kept
        for file in staging.iterdir():
            file.unlink()
        staging.rmdir()


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, SELF_SIGNED),
        ]
    )
