"""Every setting is documented in the README with its CDS_ name; a wrong one stops the command with one clear line."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cds_service.settings import Settings, unknown_setting_names

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text()
    missing = [f"CDS_{name.upper()}" for name in Settings.model_fields if f"`CDS_{name.upper()}`" not in text]
    assert missing == []


def run_cli(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    return subprocess.run([sys.executable, "-m", "cds_service", *args], env=base | {"CDS_DATA_DIR": str(tmp_path)} | env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)


@pytest.mark.parametrize(("env", "named"), [
    ({"CDS_FHIR_ALLOWED_SERVERS": "http://fhir.example.org/fhir"}, "CDS_FHIR_ALLOWED_SERVERS"),
    ({"CDS_LOG_LEVEL": "bogus"}, "CDS_LOG_LEVEL"),
    ({"CDS_MAX_BODY_BYTES": "5"}, "CDS_MAX_BODY_BYTES"),
    ({"CDS_PATIENT_HASH_KEY": "short-secret"}, "CDS_PATIENT_HASH_KEY"),
    ({"CDS_JWT_MAX_LIFETIME_SECONDS": "0"}, "CDS_JWT_MAX_LIFETIME_SECONDS"),
    ({"CDS_FHIR_ALLOWED_SERVERS": '["ftp://fhir.example.org"]'}, "CDS_FHIR_ALLOWED_SERVERS"),
    ({"CDS_TRUSTED_ISSUERS": '{"https://ehr.example.org": "http://ehr.example.org/jwks"}'}, "CDS_TRUSTED_ISSUERS"),
    ({"CDS_TRUSTED_ISSUERS": '{"https://ehr.example.org": {"jwks": "https://ehr.example.org/jwks", "fhirServers": ["fhir"]}}'},
     "CDS_TRUSTED_ISSUERS"),
    ({"CDS_PUBLIC_BASE_URL": "cds.example.org"}, "CDS_PUBLIC_BASE_URL"),  # every aud would fail: 401 on every call
    ({"CDS_PUBLIC_BASE_URL": "https://cds.example.org/b12?"}, "CDS_PUBLIC_BASE_URL"),
    ({"CDS_DB_TIMEOUT": "inf"}, "CDS_DB_TIMEOUT"),  # no bound at all; on PostgreSQL it was an OverflowError
    ({"CDS_REQUEST_DEADLINE_SECONDS": "nan"}, "CDS_REQUEST_DEADLINE_SECONDS"),
    ({"CDS_CORS_ORIGINS": '["https://ehr.example.org/"]'}, "CDS_CORS_ORIGINS"),  # no Origin ends in a slash
    ({"CDS_CORS_ORIGINS": '["ehr.example.org"]'}, "CDS_CORS_ORIGINS"),  # every preflight would fail, silently
    ({"CDS_CORS_ORIGINS": '["https://ehr.exämple.org"]'}, "CDS_CORS_ORIGINS"),  # browsers send the xn-- form
    ({"CDS_LOG_FORMAT": "yaml"}, "CDS_LOG_FORMAT"),
    ({"CDS_TIMEZONE": "Central Time"}, "CDS_TIMEZONE"),
    ({"CDS_TIMEZONE": "../../etc/passwd"}, "CDS_TIMEZONE"),
    ({"CDS_TIMEZONE": "America"}, "CDS_TIMEZONE"),  # a folder of zones: OSError, not ZoneInfoNotFoundError
    ({"CDS_DATABASE_URL": "short-secret"}, "CDS_DATABASE_URL"),
    ({"CDS_DATABASE_URL": "postgresql://cds:short-secret@db.example.org:port/cds"}, "CDS_DATABASE_URL"),
    ({"CDS_DATABASE_URL": "mysql://cds:short-secret@db.example.org/cds"}, "CDS_DATABASE_URL"),
    ({"CDS_DATABASE_URL": "postgresql+nosuchdriver://cds:short-secret@db.example.org/cds"}, "CDS_DATABASE_URL"),
])
def test_a_wrong_setting_is_one_line_naming_it_not_a_traceback(env: dict[str, str], named: str, tmp_path: Path) -> None:
    done = run_cli(["report"], env, tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"cds-service: configuration error: {named}") and "Traceback" not in done.stderr
    assert "short-secret" not in done.stderr and ", not " not in done.stderr  # a secret: neither it nor its length


def test_serve_refuses_to_start_with_a_jwks_file_that_gives_no_key(tmp_path: Path) -> None:
    (tmp_path / "empty.json").write_text('{"keys": []}')
    for jwks, why in ((str(tmp_path / "missing.json"), "No such file"), (str(tmp_path / "empty.json"), "no usable signing key")):
        done = run_cli(["serve", "--port", "0"], {"CDS_TRUSTED_ISSUERS": json.dumps({"https://ehr.example.org": jwks})}, tmp_path)
        assert done.returncode == 2, done.stderr
        assert "CDS_TRUSTED_ISSUERS https://ehr.example.org: JWKS file" in done.stderr and why in done.stderr


@pytest.mark.parametrize(("env", "named"), [
    ({"CDS_DATABASE_URL": "mysql://cds:short-secret@db.example.org/cds"}, "CDS_DATABASE_URL: no driver for mysql"),
    ({"CDS_DATABASE_URL": "postgresql://cds:short-secret@db.example.org:port/cds"}, "CDS_DATABASE_URL: not a database URL"),
    ({"CDS_DATA_DIR": "/proc/no-such-dir"}, "CDS_DATA_DIR: No such file or directory: /proc/no-such-dir"),
])
def test_serve_with_workers_stops_at_a_wrong_setting_instead_of_restarting_workers_forever(
    env: dict[str, str], named: str, tmp_path: Path
) -> None:
    """These surfaced only in each worker's app factory: under --workers 2 uvicorn restarted the
    failed workers twice a second, a traceback each time, and the command never ended."""
    done = run_cli(["serve", "--port", "0", "--workers", "2"], env, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if not line.startswith("{")]  # besides the JSON log
    assert errors == [f"cds-service: configuration error: {named}" + errors[0].split(named, 1)[1]] if errors else False
    assert "short-secret" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "99999"], "argument --port: 99999 is not between 0 and 65535"),  # bound 34463, logged 99999
    (["--port", "-1"], "argument --port: -1 is not between 0 and 65535"),
    (["--workers", "0"], "argument --workers: 0 is less than 1"),  # ran one worker
])
def test_serve_refuses_a_port_or_worker_count_out_of_range(args: list[str], message: str, tmp_path: Path) -> None:
    done = run_cli(["serve", *args], {}, tmp_path)
    assert done.returncode == 2 and done.stderr.splitlines()[-1] == f"cds-service serve: error: {message}"


def test_a_short_hash_key_is_told_in_characters_and_log_format_takes_any_case(tmp_path: Path) -> None:
    done = run_cli(["report"], {"CDS_PATIENT_HASH_KEY": "short-secret"}, tmp_path)
    assert "CDS_PATIENT_HASH_KEY: Value error, must be at least 16 characters" in done.stderr, done.stderr
    assert Settings(log_format="JSON").log_format == "json"  # as CDS_LOG_LEVEL takes INFO or info


def test_a_misspelt_setting_is_named_not_silently_ignored() -> None:
    environ = {"CDS_DATABSE_URL": "postgresql://db/cds", "cds_log_level": "info", "CDS_DATA_DIR": "/srv", "PATH": "/bin",
               "CDS_SOAK_SECONDS": "60"}  # the soak test's own
    assert unknown_setting_names(environ) == ["CDS_DATABSE_URL"]


def test_serve_on_a_port_already_taken_exits_5_not_the_knowledge_errors_3(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        done = run_cli(["serve", "--port", str(taken.getsockname()[1])], {}, tmp_path)
    assert done.returncode == 5, done.stderr[-2000:]
    assert "could not listen on 127.0.0.1:" in done.stderr and "Address already in use" in done.stderr


def test_serve_refuses_an_sqlite_database_it_cannot_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only mount holding a migrated database is a misconfiguration, not an outage to wait
    out (found by the operator review: the service started, /healthz said ok, every audit record
    was lost). Root ignores chmod and a read-only mount needs privileges the suite lacks, so the
    file system's answer is stood in for: access(W_OK) fails, as it does on a read-only mount."""
    from cds_service import cli
    from cds_service.errors import ConfigurationError
    from cds_service.settings import Settings
    from cds_service.storage import Storage

    settings = Settings(data_dir=tmp_path, patient_hash_key="test-patient-hash-key")
    Storage(settings).ensure_schema()
    cli._check_storage(settings)  # writable: starts
    real_access = os.access
    monkeypatch.setattr(cli.os, "access", lambda path, mode: mode != os.W_OK and real_access(path, mode))
    with pytest.raises(ConfigurationError, match=r"^CDS_DATA_DIR: not writable .*cds\.sqlite3"):
        cli._check_storage(settings)
    url = f"sqlite:///{tmp_path / 'cds.sqlite3'}"
    with pytest.raises(ConfigurationError, match="^CDS_DATABASE_URL: not writable"):
        cli._check_storage(settings.model_copy(update={"database_url": url}))


def test_cors_origins_are_kept_as_browsers_send_them() -> None:
    """Lower case and without the scheme's default port: 'https://EHR.example.org:443' would match
    no Origin header a browser sends (found in the diff review)."""
    from cds_service.settings import Settings

    origins = ["https://EHR.example.org:443", "http://a.example:80", "http://b.example:8080", "https://c.example:80", "*"]
    assert Settings(cors_origins=origins).cors_origins == [
        "https://ehr.example.org", "http://a.example", "http://b.example:8080", "https://c.example:80", "*"]
