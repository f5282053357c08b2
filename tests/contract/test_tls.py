"""contract.tls: one SSL context for every client; errors name the file, never a secret."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from contract.errors import ConfigError
from contract.tls import TlsSettings

MAKE_CERTS = Path(__file__).resolve().parents[2] / "deploy" / "edge" / "make-certs.sh"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed: apt-get install -y openssl")
    out = tmp_path_factory.mktemp("certs")
    subprocess.run(
        ["sh", str(MAKE_CERTS), str(out), "sg-operator"], check=True, capture_output=True
    )
    subprocess.run(
        ["openssl", "pkey", "-in", str(out / "sg-operator.key"), "-aes256",
         "-passout", "pass:right-phrase", "-out", str(out / "encrypted.key")],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return out


def test_a_context_verifies_the_server_with_the_ca(certs: Path) -> None:
    ctx = TlsSettings(ca_file=certs / "ca.crt").ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert any(
        c["subject"] == ((("commonName", "SensorGate broker CA"),),) for c in ctx.get_ca_certs()
    )


def test_an_encrypted_client_key_loads_with_its_passphrase(certs: Path) -> None:
    settings = TlsSettings(
        ca_file=certs / "ca.crt",
        cert_file=certs / "sg-operator.crt",
        key_file=certs / "encrypted.key",
        key_password=SecretStr("right-phrase"),
    )
    settings.ssl_context()
    wrong = settings.model_copy(update={"key_password": SecretStr("wrong-phrase")})
    with pytest.raises(ConfigError) as info:
        wrong.ssl_context()
    assert info.value.field == "tls.cert_file"
    assert "wrong-phrase" not in str(info.value)
    assert "right-phrase" not in str(info.value)


def test_an_unreadable_file_is_named(certs: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        TlsSettings(ca_file=tmp_path / "missing.crt").ssl_context()
    assert info.value.field == "tls.ca_file"
    assert "missing.crt" in info.value.reason
    not_a_cert = tmp_path / "junk.crt"
    not_a_cert.write_text("junk\n")
    with pytest.raises(ConfigError, match=r"junk\.crt"):
        TlsSettings(
            ca_file=certs / "ca.crt", cert_file=not_a_cert, key_file=not_a_cert
        ).ssl_context()


@pytest.mark.parametrize(
    "fields",
    [
        {"cert_file": "/c.crt"},
        {"key_file": "/c.key"},
        {"key_password": "x"},
        {"server_name": " "},
    ],
)
def test_incomplete_settings_are_refused(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        TlsSettings(**fields)  # type: ignore[arg-type]


def test_insecure_skip_verify_turns_checking_off() -> None:
    ctx = TlsSettings(insecure_skip_verify=True).ssl_context()
    assert (ctx.check_hostname, ctx.verify_mode) == (False, ssl.CERT_NONE)
