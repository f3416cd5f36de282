"""Configuration: buckets one by one, routing rules, thresholds; from TOML and/or the environment.

Environment variables start with `CONVEX_OFFLOAD_` and nest with `__`
(`CONVEX_OFFLOAD_BUCKETS__IMAGES__PROVIDER=s3`); they override the TOML file, and keyword
arguments override both. A bad value fails at start-up with `BucketConfigError` naming the field
(`buckets.images.presign_ttl: ...`). Buckets are private unless `public_base_url` is set.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from convex_offload.errors import BucketConfigError

Provider = Literal["s3", "r2", "convex", "local", "memory"]
MAX_PRESIGN_TTL = 7 * 24 * 3600
_PREFIX = re.compile(r"^(?:[A-Za-z0-9._-]+/)*$")
_ORIGIN = re.compile(r"^https?://[^/\s]+$")
_SERVE_URL = re.compile(r"^https?://[^/\s?#]+(?:/[^\s?#]*)?$")
_TOML_FILE: ContextVar[Path | None] = ContextVar("convex_offload_toml_file", default=None)


class BucketConfig(BaseModel):
    """One bucket: where objects go, how they are stored, and what it accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Provider
    bucket: str | None = Field(None, description="The S3/R2 bucket name (s3, r2).")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (LocalStack, MinIO, R2).")
    region: str | None = None
    account_id: str | None = Field(
        None, description="Cloudflare account id: the R2 endpoint is derived from it."
    )
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    profile: str | None = Field(None, description="A named AWS profile instead of keys.")
    path: Path | None = Field(None, description="The folder of a local bucket.")
    prefix: str = Field("", description="Key prefix: empty, or path segments each ending with '/'.")
    public_base_url: str | None = Field(None, description="Public/CDN base URL; unset means private.")
    presign_ttl: Annotated[int, Field(ge=1, le=MAX_PRESIGN_TTL)] = 900
    sse: Literal["AES256", "aws:kms"] | None = None
    kms_key_id: str | None = None
    storage_class: str | None = None
    max_object_bytes: Annotated[int, Field(gt=0)] = 100 << 20
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        60, description="Connect/read timeout of one request to the bucket."
    )
    max_attempts: Annotated[int, Field(ge=1, le=10)] = Field(
        4, description="Attempts per request, retries included (throttling, 5xx, broken connections)."
    )
    allowed_types: list[str] = Field(default_factory=lambda: ["*/*"])
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins that must be allowed to GET (checked by `doctor`)."
    )
    active_content: Literal["attachment", "refuse"] = Field(
        "attachment", description="HTML/SVG/JS: stored with Content-Disposition: attachment, or refused."
    )
    serve_url: str | None = Field(
        None,
        description="A local bucket served over HTTP (`convex-offload dev`): its base URL; access "
        "URLs are then signed and expire after presign_ttl. Needs `signing_key`.",
    )
    signing_key: SecretStr | None = Field(
        None, description="The HMAC-SHA256 key signing a served local bucket's URLs (at least 16 chars)."
    )

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not _ORIGIN.match(origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com (or *)")
        return origins

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.provider in ("s3", "r2") and not self.bucket:
            raise ValueError(f"a {self.provider} bucket needs `bucket` (its bucket name)")
        if self.provider == "r2":
            if not (self.endpoint_url or self.account_id):
                raise ValueError("an r2 bucket needs `endpoint_url` or `account_id`")
            if self.sse == "aws:kms":
                raise ValueError('R2 does not support SSE-KMS (`sse = "aws:kms"`)')
        if self.provider == "local" and self.path is None:
            raise ValueError("a local bucket needs `path` (its folder)")
        if self.kms_key_id and self.sse != "aws:kms":
            raise ValueError('`kms_key_id` needs `sse = "aws:kms"`')
        if not _PREFIX.match(self.prefix) or ".." in self.prefix.split("/"):
            raise ValueError(f"`prefix` {self.prefix!r} must be empty or path segments each ending with '/'")
        if self.public_base_url is not None and not self.public_base_url.startswith(("https://", "http://")):
            raise ValueError("`public_base_url` must be an http(s) URL")
        if self.serve_url is not None:
            if self.provider != "local":
                raise ValueError("`serve_url` is for local buckets (others have their own URLs)")
            if not _SERVE_URL.match(self.serve_url):
                raise ValueError("`serve_url` must be an http(s) URL like http://127.0.0.1:8788/b/<bucket>")
            if self.signing_key is None:
                raise ValueError("`serve_url` needs `signing_key` (served URLs are signed)")
        if self.signing_key is not None and len(self.signing_key.get_secret_value()) < 16:
            raise ValueError("`signing_key` must be at least 16 characters")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("`access_key_id` and `secret_access_key` go together")
        return self

    @property
    def effective_endpoint(self) -> str | None:
        """The endpoint to talk to: explicit, or R2's from the account id."""
        if self.endpoint_url:
            return self.endpoint_url
        if self.provider == "r2" and self.account_id:
            return f"https://{self.account_id}.r2.cloudflarestorage.com"
        return None

    def accepts_type(self, mime: str) -> bool:
        """Whether `allowed_types` (globs like `image/*`) admits `mime`."""
        return any(fnmatch.fnmatchcase(mime, pattern) for pattern in self.allowed_types)


class RoutingRule(BaseModel):
    """Send matching attachments to `bucket`; the first rule that matches wins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str
    types: list[str] = Field(default_factory=lambda: ["*/*"], description="MIME globs of the sniffed type.")
    min_bytes: Annotated[int, Field(ge=0)] = 0
    max_bytes: Annotated[int, Field(gt=0)] | None = None
    tenants: list[str] = Field(
        default_factory=lambda: ["*"], description="Globs of the tenant (resource id)."
    )

    def matches(self, mime: str, size: int, tenant: str) -> bool:
        """Whether an attachment of this type, size and tenant goes to this rule's bucket."""
        return (
            any(fnmatch.fnmatchcase(mime, p) for p in self.types)
            and size >= self.min_bytes
            and (self.max_bytes is None or size <= self.max_bytes)
            and any(fnmatch.fnmatchcase(tenant, p) for p in self.tenants)
        )


class OffloadConfig(BaseSettings):
    """Everything the offloader needs. Build with `OffloadConfig.load(path)` or directly."""

    model_config = SettingsConfigDict(
        env_prefix="CONVEX_OFFLOAD_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    convex_url: str | None = Field(
        None, validation_alias=AliasChoices("convex_url", "CONVEX_OFFLOAD_CONVEX_URL", "CONVEX_URL")
    )
    convex_admin_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices(
            "convex_admin_key", "CONVEX_OFFLOAD_CONVEX_ADMIN_KEY", "CONVEX_ADMIN_KEY"
        ),
    )
    convex_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = Field(
        30, description="Timeout of one request to Convex (retried, bounded, when safe)."
    )
    buckets: dict[str, BucketConfig] = Field(default_factory=dict)
    default_bucket: str | None = None
    rules: list[RoutingRule] = Field(default_factory=list)
    inline_threshold: Annotated[int, Field(ge=0)] = Field(
        16 << 10, description="Decoded payloads smaller than this stay inline."
    )
    record_inline_budget: Annotated[int, Field(ge=0)] = Field(
        64 << 10, description="Inline payload bytes one record may keep; the largest beyond it are offloaded."
    )
    bare_base64_min_bytes: Annotated[int, Field(ge=1)] = Field(
        48 << 10, description="Bare base64 outside known byte fields is considered from this decoded size."
    )
    max_record_bytes: Annotated[int, Field(gt=0, le=1 << 20)] = Field(
        1 << 20, description="Largest Convex document a rewritten record may make."
    )
    concurrency: Annotated[int, Field(ge=1, le=256)] = Field(16, description="Uploads in flight at once.")
    restore_concurrency: Annotated[int, Field(ge=1, le=256)] = 16
    cache_bytes: Annotated[int, Field(ge=0)] = 128 << 20
    max_depth: Annotated[int, Field(ge=2, le=512)] = 64
    max_payloads_per_record: Annotated[int, Field(ge=1, le=1000)] = Field(
        1000, description="Attachments one record may hold (a message with more is refused)."
    )
    max_image_pixels: Annotated[int, Field(ge=1)] = Field(
        178_956_970,
        description="Largest width x height an image may declare (a decompression bomb is refused); "
        "Pillow's own bomb limit.",
    )
    lease_seconds: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] = Field(
        900, description="How long an upload's lease protects it from gc until its record is written."
    )
    claim_seconds: Annotated[float, Field(gt=0, le=24 * 3600)] = Field(
        600, description="How long a deletion claim holds an object (a collector that dies lets go then)."
    )
    type_mismatch: Literal["error", "allow"] = Field(
        "error", description="What to do when a payload's bytes are not of its declared type."
    )
    tenant_mode: Literal["resource", "global"] = Field(
        "resource", description="Content-addressed keys are scoped per resource id, or shared."
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.buckets:
            default = self.default_bucket or next(iter(self.buckets))
            if default not in self.buckets:
                raise ValueError(
                    f"`default_bucket` {default!r} is not one of the buckets {sorted(self.buckets)}"
                )
            object.__setattr__(self, "default_bucket", default)
        for index, rule in enumerate(self.rules):
            if rule.bucket not in self.buckets:
                raise ValueError(f"rules.{index}.bucket {rule.bucket!r} is not one of {sorted(self.buckets)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment, then the TOML file given to `load`."""
        toml = _TOML_FILE.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> OffloadConfig:
        """Load from a TOML file (optional), the environment and `overrides`.

        Raises `BucketConfigError` naming the field when anything is wrong.
        """
        toml_path = Path(path) if path is not None else None
        if toml_path is not None:
            if not toml_path.is_file():
                raise BucketConfigError(f"config file {toml_path} does not exist")
            try:
                tomllib.loads(toml_path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise BucketConfigError(f"config file {toml_path}: {exc}") from None
        token = _TOML_FILE.set(toml_path)
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise BucketConfigError(describe_validation_error(exc)) from None
        finally:
            _TOML_FILE.reset(token)

    def bucket(self, name: str) -> BucketConfig:
        """The bucket called `name`; `BucketConfigError` if there is none."""
        try:
            return self.buckets[name]
        except KeyError:
            raise BucketConfigError(f"no bucket named {name!r} is configured") from None

    def route(self, mime: str, size: int, tenant: str) -> str:
        """The bucket an attachment goes to: the first matching rule, else the default bucket."""
        for rule in self.rules:
            if rule.matches(mime, size, tenant):
                return rule.bucket
        if self.default_bucket is None:
            raise BucketConfigError("no buckets are configured")
        return self.default_bucket


def describe_validation_error(exc: ValidationError) -> str:
    """`field.path: message` for each problem pydantic found, without echoing secret input."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "config"
        lines.append(f"{where}: {error['msg']}")
    return "invalid convex-offload configuration: " + "; ".join(lines)
