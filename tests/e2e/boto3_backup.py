#!/usr/bin/env python3
"""End-to-end: boto3 doing what backup tools do: multipart uploads (by hand, with
CRC32 part checksums, and through the managed transfer), an aborted upload, copy with
REPLACE and range GETs.

usage: boto3_backup.py ENDPOINT ACCESS_KEY SECRET_KEY
Prints one PASS/FAIL line per step and "N passed, M failed"; exits 1 on any failure.
"""
import hashlib
import io
import os
import sys

from boto3.s3.transfer import TransferConfig

from steps import client, error_code, finish, step

endpoint, access, secret = sys.argv[1:4]
c = client(endpoint, access, secret)
MIB = 1024 * 1024
B = "boto3-backup"
parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(2 * MIB + 17)]
whole = b"".join(parts)


def multipart_three_parts():
    up = c.create_multipart_upload(Bucket=B, Key="full.vbk", ChecksumAlgorithm="CRC32",
                                   Metadata={"job": "veeam"})
    uid = up["UploadId"]
    done = []
    for n, p in enumerate(parts, 1):
        r = c.upload_part(Bucket=B, Key="full.vbk", UploadId=uid, PartNumber=n, Body=p,
                          ChecksumAlgorithm="CRC32")
        assert r["ETag"].strip('"') == hashlib.md5(p).hexdigest()
        assert "ChecksumCRC32" in r, r
        done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    listed = c.list_parts(Bucket=B, Key="full.vbk", UploadId=uid)["Parts"]
    assert [p["Size"] for p in listed] == [len(p) for p in parts]
    out = c.complete_multipart_upload(Bucket=B, Key="full.vbk", UploadId=uid,
                                      MultipartUpload={"Parts": done})
    md5s = b"".join(hashlib.md5(p).digest() for p in parts)
    assert out["ETag"].strip('"') == f"{hashlib.md5(md5s).hexdigest()}-3", out["ETag"]
    assert out.get("ChecksumCRC32", "").endswith("-3"), out
    got = c.get_object(Bucket=B, Key="full.vbk")
    assert got["Body"].read() == whole
    assert got["Metadata"] == {"job": "veeam"}
    head = c.head_object(Bucket=B, Key="full.vbk", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == out["ChecksumCRC32"], head
    assert c.head_object(Bucket=B, Key="full.vbk", PartNumber=3)["PartsCount"] == 3


def abort_another():
    uid = c.create_multipart_upload(Bucket=B, Key="partial.vib")["UploadId"]
    c.upload_part(Bucket=B, Key="partial.vib", UploadId=uid, PartNumber=1, Body=parts[0])
    listed = c.list_multipart_uploads(Bucket=B).get("Uploads", [])
    assert [u["Key"] for u in listed] == ["partial.vib"], listed
    c.abort_multipart_upload(Bucket=B, Key="partial.vib", UploadId=uid)
    assert c.list_multipart_uploads(Bucket=B).get("Uploads", []) == []
    assert error_code(lambda: c.list_parts(Bucket=B, Key="partial.vib", UploadId=uid)) == "NoSuchUpload"
    assert error_code(lambda: c.head_object(Bucket=B, Key="partial.vib")) in ("404", "NoSuchKey")


def managed_transfer():
    data = os.urandom(21 * MIB)
    cfg = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB, max_concurrency=4)
    c.upload_fileobj(io.BytesIO(data), B, "managed.bin", Config=cfg)
    assert c.head_object(Bucket=B, Key="managed.bin")["ETag"].strip('"').endswith("-3")
    back = io.BytesIO()
    c.download_fileobj(B, "managed.bin", back, Config=cfg)
    assert back.getvalue() == data


def copy_replace():
    c.copy_object(Bucket=B, Key="copy.vbk", CopySource={"Bucket": B, "Key": "full.vbk"},
                  MetadataDirective="REPLACE", Metadata={"job": "copy"}, ContentType="application/x-vbk")
    head = c.head_object(Bucket=B, Key="copy.vbk")
    assert head["Metadata"] == {"job": "copy"}, head["Metadata"]
    assert head["ContentType"] == "application/x-vbk"
    assert head["ContentLength"] == len(whole)
    assert c.get_object(Bucket=B, Key="copy.vbk")["Body"].read() == whole


def range_gets():
    cases = {
        "bytes=0-0": whole[0:1],
        f"bytes={5 * MIB - 5}-{5 * MIB + 4}": whole[5 * MIB - 5:5 * MIB + 5],
        "bytes=-100": whole[-100:],
        f"bytes={len(whole) - 10}-": whole[-10:],
        f"bytes=100-{len(whole) + 1000}": whole[100:],
    }
    for r, want in cases.items():
        got = c.get_object(Bucket=B, Key="full.vbk", Range=r)
        assert got["Body"].read() == want, r
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206, r
    assert error_code(lambda: c.get_object(Bucket=B, Key="full.vbk", Range=f"bytes={len(whole)}-")) == "InvalidRange"


def versions_and_delete_markers():
    vb = "boto3-versions"
    c.create_bucket(Bucket=vb)
    c.put_bucket_versioning(Bucket=vb, VersioningConfiguration={"Status": "Enabled"})
    ids = [c.put_object(Bucket=vb, Key="db.bak", Body=p)["VersionId"] for p in parts[:2]]
    marker = c.delete_object(Bucket=vb, Key="db.bak")
    assert marker["DeleteMarker"] is True
    assert error_code(lambda: c.get_object(Bucket=vb, Key="db.bak")) == "NoSuchKey"
    listed = c.list_object_versions(Bucket=vb)
    assert [v["VersionId"] for v in listed["Versions"]] == ids[::-1], listed["Versions"]
    assert [m["VersionId"] for m in listed["DeleteMarkers"]] == [marker["VersionId"]]
    assert listed["DeleteMarkers"][0]["IsLatest"] is True
    assert c.get_object(Bucket=vb, Key="db.bak", VersionId=ids[0])["Body"].read() == parts[0]
    # Restore the previous version by copying it over the delete marker.
    c.copy_object(Bucket=vb, Key="db.bak", CopySource={"Bucket": vb, "Key": "db.bak", "VersionId": ids[0]})
    assert c.get_object(Bucket=vb, Key="db.bak")["Body"].read() == parts[0]
    every = c.list_object_versions(Bucket=vb)
    doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in every.get("Versions", []) + every.get("DeleteMarkers", [])]
    out = c.delete_objects(Bucket=vb, Delete={"Objects": doomed})
    assert len(out["Deleted"]) == len(doomed) == 4, out
    c.delete_bucket(Bucket=vb)


def cleanup():
    keys = [o["Key"] for o in c.list_objects_v2(Bucket=B).get("Contents", [])]
    out = c.delete_objects(Bucket=B, Delete={"Objects": [{"Key": k} for k in keys]})
    assert len(out.get("Deleted", [])) == len(keys) and not out.get("Errors")
    c.delete_bucket(Bucket=B)


step("create bucket", lambda: c.create_bucket(Bucket=B))
step("multipart: 3 parts with CRC32, ListParts, complete, composite checksum, PartsCount", multipart_three_parts)
step("abort another upload", abort_another)
step("managed transfer: 21 MiB up and down in 8 MiB parts, 4 threads", managed_transfer)
step("copy with REPLACE", copy_replace)
step("range GETs: first byte, across a part boundary, suffix, open-ended, past the end", range_gets)
step("versioning: list versions, delete markers, restore by copy, delete every version", versions_and_delete_markers)
step("delete_objects and delete bucket", cleanup)

finish()
