"""Shared by the boto3 end-to-end scripts: named steps that print one PASS/FAIL line
each, the closing "N passed, M failed" with the exit status, and a boto3 client that
does not retry (a retry would hide the first answer)."""
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

_counts = {"passed": 0, "failed": 0}


def step(name, fn):
    try:
        fn()
        _counts["passed"] += 1
        print(f"PASS {name}")
    except Exception as e:  # report and go on
        _counts["failed"] += 1
        print(f"FAIL {name}: {e!r}")


def finish():
    print(f"{_counts['passed']} passed, {_counts['failed']} failed")
    sys.exit(1 if _counts["failed"] else 0)


def client(endpoint, access, secret, **s3):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3=s3 or None, retries={"max_attempts": 1}),
    )


def error_code(fn):
    """The S3 error code `fn` fails with, or None when it succeeds."""
    try:
        fn()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None
