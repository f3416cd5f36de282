"""Configuration: TOML and environment, one bucket at a time; bad values name their field."""

from __future__ import annotations

from pathlib import Path

import pytest

from convex_offload.config import BucketConfig, OffloadConfig
from convex_offload.errors import BucketConfigError

GOOD = """
convex_url = "https://happy-animal-123.convex.cloud"
convex_admin_key = "prod|secret-admin-key"
inline_threshold = 8192
default_bucket = "images"

[buckets.images]
provider = "s3"
bucket = "chat-images"
region = "eu-west-1"
prefix = "chat/"
sse = "aws:kms"
kms_key_id = "arn:aws:kms:eu-west-1:111122223333:key/abc"
allowed_types = ["image/*"]

[buckets.docs]
provider = "r2"
bucket = "chat-docs"
account_id = "0123456789abcdef"
public_base_url = "https://docs.example.com"

[buckets.files]
provider = "convex"

[[rules]]
bucket = "docs"
types = ["application/pdf"]
max_bytes = 10485760
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "convex-offload.toml"
    path.write_text(text)
    return path


def test_loads_buckets_rules_and_settings_from_toml(tmp_path: Path) -> None:
    config = OffloadConfig.load(write(tmp_path, GOOD))
    assert config.inline_threshold == 8192
    assert config.bucket("images").sse == "aws:kms"
    assert config.bucket("docs").effective_endpoint == "https://0123456789abcdef.r2.cloudflarestorage.com"
    assert config.route("application/pdf", 1000, "u") == "docs"
    assert config.route("application/pdf", 20 << 20, "u") == "images", "over the rule's max_bytes"
    assert config.route("image/png", 10, "u") == "images"
    assert config.bucket("images").public_base_url is None, "private unless a public URL is configured"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEX_OFFLOAD_INLINE_THRESHOLD", "1")
    monkeypatch.setenv("CONVEX_OFFLOAD_BUCKETS__IMAGES__REGION", "us-east-2")
    config = OffloadConfig.load(write(tmp_path, GOOD.replace('region = "eu-west-1"\n', "")))
    assert config.inline_threshold == 1
    assert config.bucket("images").region == "us-east-2"


def test_convex_url_and_key_from_the_usual_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEX_URL", "https://x.convex.cloud")
    monkeypatch.setenv("CONVEX_ADMIN_KEY", "k")
    config = OffloadConfig.load(buckets={"local": {"provider": "local", "path": "/tmp/x"}})
    assert config.convex_url == "https://x.convex.cloud"
    assert config.convex_admin_key is not None
    assert "k" not in repr(config.convex_admin_key)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('region = "eu-west-1"', "presign_ttl = 9999999"),
            r"buckets\.images\.presign_ttl: Input should be less",
        ),
        (('provider = "s3"', 'provider = "gcs"'), r"buckets\.images\.provider: Input should be"),
        (('prefix = "chat/"', 'prefix = "../up"'), r"buckets\.images: .*prefix"),
        (('default_bucket = "images"', 'default_bucket = "nope"'), r"default_bucket.*'nope'"),
        (('bucket = "docs"', 'bucket = "missing"'), r"rules\.0\.bucket 'missing'"),
        (("inline_threshold = 8192", "inline_threshold = -1"), r"inline_threshold: Input should be greater"),
        (('public_base_url = "https://docs.example.com"', 'sse = "aws:kms"'), r"buckets\.docs: .*SSE-KMS"),
    ],
)
def test_bad_values_fail_naming_the_field(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    assert change[0] in GOOD
    with pytest.raises(BucketConfigError, match=expected) as caught:
        OffloadConfig.load(write(tmp_path, GOOD.replace(*change)))
    assert "secret-admin-key" not in str(caught.value)


def test_missing_file_and_broken_toml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(BucketConfigError, match="does not exist"):
        OffloadConfig.load(tmp_path / "absent.toml")
    with pytest.raises(BucketConfigError, match="config file"):
        OffloadConfig.load(write(tmp_path, "buckets = [unclosed"))


def test_bucket_rules() -> None:
    with pytest.raises(ValueError, match="needs `bucket`"):
        BucketConfig(provider="s3")
    with pytest.raises(ValueError, match="needs `path`"):
        BucketConfig(provider="local")
    with pytest.raises(ValueError, match="go together"):
        BucketConfig(provider="s3", bucket="b", access_key_id="a")
    images = BucketConfig(provider="s3", bucket="b", allowed_types=["image/*"])
    assert images.accepts_type("image/webp")
    assert not images.accepts_type("text/html")
