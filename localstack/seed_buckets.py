"""Create the S3 buckets a LocalStack instance should start with (a LocalStack ready hook).

LocalStack state lives in memory, so buckets must be created on every start. The launcher
(`convex_offload.devservers.localstack`) copies this file into
`$FILESYSTEM_ROOT/etc/localstack/init/ready.d/` and points `CONVEX_OFFLOAD_LOCALSTACK_SEED` at a JSON file:

    {"endpoint_url": "http://127.0.0.1:4566", "region": "us-east-1",
     "buckets": [{"name": "a"},
                 {"name": "b", "cors_allowed_origins": ["http://localhost:3000"], "encryption": "AES256"}]}

LocalStack runs ready hooks inside its own process with `exec(code, {})`, so this file cannot rely on
`__file__` or `__name__ == "__main__"`. It also runs by hand against any S3 endpoint:

    localstack/.venv/bin/python localstack/seed_buckets.py seed.json

Any exception marks the hook ERROR in `/_localstack/init/ready`, which the launcher reports as a failed start.
"""

import json
import os
import sys

import boto3
from botocore.config import Config

SEED_ENV = "CONVEX_OFFLOAD_LOCALSTACK_SEED"


def load_seed(path):
    with open(path, encoding="utf-8") as f:
        seed = json.load(f)
    for bucket in seed["buckets"]:
        if not isinstance(bucket.get("name"), str):
            raise ValueError(f"bucket without a name in {path}: {bucket!r}")
    return seed


def s3_client(seed):
    return boto3.session.Session().client(
        "s3",
        endpoint_url=seed["endpoint_url"],
        region_name=seed["region"],
        aws_access_key_id=seed.get("access_key", "test"),
        aws_secret_access_key=seed.get("secret_key", "test"),
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def create_bucket(s3, region, bucket):
    name = bucket["name"]
    # us-east-1 (and R2's "auto") take no LocationConstraint; every other region needs one.
    if region in ("us-east-1", "auto", ""):
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})

    origins = bucket.get("cors_allowed_origins") or []
    if origins:
        # What a browser needs to GET/PUT through presigned URLs and read the ETag of an upload.
        s3.put_bucket_cors(
            Bucket=name,
            CORSConfiguration={
                "CORSRules": [
                    {
                        "AllowedOrigins": list(origins),
                        "AllowedMethods": ["GET", "PUT", "HEAD"],
                        "AllowedHeaders": ["*"],
                        "ExposeHeaders": ["ETag"],
                        "MaxAgeSeconds": 3600,
                    }
                ]
            },
        )

    encryption = bucket.get("encryption")
    if encryption:
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": encryption}}]
            },
        )


def seed_buckets(path):
    seed = load_seed(path)
    s3 = s3_client(seed)
    for bucket in seed["buckets"]:
        create_bucket(s3, seed["region"], bucket)
    names = ", ".join(b["name"] for b in seed["buckets"]) or "(none)"
    print(f"convex-offload: seeded buckets: {names}", flush=True)


def main(argv):
    path = argv[1] if len(argv) > 1 else os.environ.get(SEED_ENV)
    if not path:
        raise SystemExit(f"usage: seed_buckets.py SEED.json (or set {SEED_ENV})")
    seed_buckets(path)


# `exec(code, {})` leaves `__name__` to the builtins module, whose name is "builtins".
if __name__ in ("__main__", "builtins"):
    main(sys.argv if __name__ == "__main__" else [])
