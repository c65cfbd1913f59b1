"""``--tls-profile``: sslyze (a scanner no one here wrote) scans a real server and finds it
compliant with Mozilla's server-side TLS configuration of that name (sslyze's own
checker, guidelines v5.7), apart from the trust of the throwaway test CA."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
import sslyze
import trustme
from sslyze.mozilla_tls_profile.tls_config_checker import (
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)

from aiotcp.config import Config
from aiotcp.frontdoor.context import build_server_context
from support.process import ServerProcess

# Mozilla's certificate rules apply to the test certificate as well: modern allows a
# lifespan of 90 days at most.
CERT_DAYS = 60
# What this test does not hold the server to: a test CA is trusted by no store.
NOT_CHECKED = {"certificate_path_validation"}


@pytest.fixture(scope="module")
def short_lived_cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    now = datetime.datetime.now(datetime.UTC)
    leaf = trustme.CA().issue_cert(
        "localhost", "127.0.0.1", not_before=now - datetime.timedelta(days=1),
        not_after=now + datetime.timedelta(days=CERT_DAYS),
    )  # fmt: skip
    path = tmp_path_factory.mktemp("profile-cert") / "server.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(path))
    return path


def mozilla_issues(port: int, profile: str) -> dict[str, str]:
    """What sslyze's Mozilla checker says is wrong with the server on ``port``."""
    request = sslyze.ServerScanRequest(
        server_location=sslyze.ServerNetworkLocation("localhost", port, ip_address="127.0.0.1"),
        scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    )
    scanner = sslyze.Scanner()
    scanner.queue_scans([request])
    (result,) = list(scanner.get_results())
    assert result.scan_status == sslyze.ServerScanStatusEnum.COMPLETED, result.connectivity_error_trace
    wanted = MozillaTlsConfiguration.get(TlsConfigurationEnum(profile))
    try:
        check_server_against_tls_configuration(result, wanted)
    except ServerNotCompliantWithTlsConfiguration as e:
        return {k: v for k, v in e.issues.items() if k not in NOT_CHECKED}
    return {}


@pytest.mark.parametrize("profile", ["intermediate", "modern"])
def test_sslyze_finds_the_server_compliant_with_its_mozilla_profile(
    short_lived_cert: Path, profile: str
) -> None:
    """Scanning is slow (hundreds of handshakes) and the TLS is aiotcp's own, not the
    loop's: one loop is enough."""
    args = ["--tls-cert", str(short_lived_cert), "--tls-key", str(short_lived_cert),
            "--tls-profile", profile, "--no-access-log", "--log-level", "warning"]  # fmt: skip
    with ServerProcess(args) as server:
        assert mozilla_issues(server.port, profile) == {}
        assert server.alive()


def test_intermediate_is_the_default_and_offers_only_aead_suites(short_lived_cert: Path) -> None:
    ctx = build_server_context(Config(tls_cert=str(short_lived_cert), tls_key=str(short_lived_cert)))
    assert Config().tls_profile == "intermediate"
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    tls12 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all("GCM" in n or "CHACHA20" in n for n in tls12), tls12
