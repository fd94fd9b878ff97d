#!/usr/bin/env python3
"""End-to-end: boto3 against a real hoard, path-style and virtual-hosted-style.

usage: boto3_styles.py ENDPOINT ACCESS_KEY SECRET_KEY
Virtual-hosted-style requests go to BUCKET.localhost:PORT; this script resolves
*.localhost to 127.0.0.1 itself, since not every resolver does.
Prints one PASS/FAIL line per step and "N passed, M failed".
"""
import hashlib
import os
import socket
import sys

from steps import client, error_code, finish, step

_getaddrinfo = socket.getaddrinfo


def _resolve_localhost(host, *args, **kwargs):
    if isinstance(host, str) and host.endswith(".localhost"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _resolve_localhost

endpoint, access, secret = sys.argv[1:4]
port = endpoint.rsplit(":", 1)[1]


def styled(style, url):
    return client(url, access, secret, addressing_style=style)


data = os.urandom(3 * 1024 * 1024 + 123)
for style, url in [("path", endpoint), ("virtual", f"http://localhost:{port}")]:
    c = styled(style, url)
    b = f"boto3-{style}"

    def put_get():
        c.put_object(Bucket=b, Key="dir/obj", Body=data, Metadata={"k": "v"}, ContentType="application/x-b")
        got = c.get_object(Bucket=b, Key="dir/obj")
        assert got["Body"].read() == data
        assert got["Metadata"] == {"k": "v"}
        assert got["ContentType"] == "application/x-b"
        assert got["ETag"].strip('"') == hashlib.md5(data).hexdigest()

    def ranged():
        got = c.get_object(Bucket=b, Key="dir/obj", Range="bytes=1000-1999")["Body"].read()
        assert got == data[1000:2000]

    def listing():
        c.put_object(Bucket=b, Key="top", Body=b"x")
        out = c.list_objects_v2(Bucket=b, Delimiter="/")
        assert [o["Key"] for o in out.get("Contents", [])] == ["top"]
        assert [p["Prefix"] for p in out.get("CommonPrefixes", [])] == ["dir/"]

    def missing():
        assert error_code(lambda: c.get_object(Bucket=b, Key="nope")) == "NoSuchKey"
        assert error_code(lambda: c.head_bucket(Bucket="no-such-bucket-here")) in ("404", "NoSuchBucket")

    def cleanup():
        c.delete_object(Bucket=b, Key="dir/obj")
        c.delete_object(Bucket=b, Key="top")
        c.delete_bucket(Bucket=b)

    step(f"{style}: create bucket", lambda: c.create_bucket(Bucket=b))
    step(f"{style}: put and get with metadata", put_get)
    step(f"{style}: ranged get", ranged)
    step(f"{style}: list with delimiter", listing)
    step(f"{style}: errors for missing key and bucket", missing)
    step(f"{style}: delete objects and bucket", cleanup)

finish()
