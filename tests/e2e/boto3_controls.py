#!/usr/bin/env python3
"""End-to-end: boto3 setting a bucket's controls as web consoles and backup tools do:
lifecycle rules (keep N days of versions), CORS rules and the preflight a browser
sends, ACLs with what they make public, ownership controls, bucket policies, and a
browser form upload signed by boto3's generate_presigned_post.

usage: boto3_controls.py ENDPOINT ACCESS_KEY SECRET_KEY
Prints one PASS/FAIL line per step and "N passed, M failed"; exits 1 on any failure.
"""
import json
import sys
import urllib.error
import urllib.request

from steps import client, error_code, finish, step

endpoint, access, secret = sys.argv[1:4]
c = client(endpoint, access, secret)
B = "boto3-controls"

KEEP_VERSIONS = {
    "Rules": [
        {
            "ID": "keep-14-days",
            "Status": "Enabled",
            "Filter": {"And": {"Prefix": "jobs/", "ObjectSizeGreaterThan": 0}},
            "NoncurrentVersionExpiration": {"NoncurrentDays": 14, "NewerNoncurrentVersions": 2},
        },
        {
            "ID": "stale-uploads",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3},
        },
    ]
}


def lifecycle():
    assert error_code(lambda: c.get_bucket_lifecycle_configuration(Bucket=B)) == \
        "NoSuchLifecycleConfiguration"
    c.put_bucket_lifecycle_configuration(Bucket=B, LifecycleConfiguration=KEEP_VERSIONS)
    got = c.get_bucket_lifecycle_configuration(Bucket=B)["Rules"]
    assert [r["ID"] for r in got] == ["keep-14-days", "stale-uploads"], got
    assert got[0]["Filter"]["And"] == {"Prefix": "jobs/", "ObjectSizeGreaterThan": 0}, got
    assert got[0]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 14,
                                                     "NewerNoncurrentVersions": 2}, got
    bad = {"Rules": [{"ID": "x", "Status": "Enabled", "Filter": {"Prefix": ""},
                      "Expiration": {"Days": 0}}]}
    assert error_code(lambda: c.put_bucket_lifecycle_configuration(
        Bucket=B, LifecycleConfiguration=bad)) == "InvalidArgument"
    dup = {"Rules": [dict(KEEP_VERSIONS["Rules"][1]), dict(KEEP_VERSIONS["Rules"][1])]}
    assert error_code(lambda: c.put_bucket_lifecycle_configuration(
        Bucket=B, LifecycleConfiguration=dup)) == "InvalidArgument"
    # Refused configurations left the rules as they were.
    assert len(c.get_bucket_lifecycle_configuration(Bucket=B)["Rules"]) == 2
    c.delete_bucket_lifecycle(Bucket=B)
    assert error_code(lambda: c.get_bucket_lifecycle_configuration(Bucket=B)) == \
        "NoSuchLifecycleConfiguration"


def preflight(origin, method):
    req = urllib.request.Request(f"{endpoint}/{B}/upload.bin", method="OPTIONS", headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type,x-amz-date"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


def cors():
    assert error_code(lambda: c.get_bucket_cors(Bucket=B)) == "NoSuchCORSConfiguration"
    status, _ = preflight("https://console.example", "PUT")
    assert status == 403, status
    c.put_bucket_cors(Bucket=B, CORSConfiguration={"CORSRules": [{
        "AllowedOrigins": ["https://*.example"], "AllowedMethods": ["PUT", "GET"],
        "AllowedHeaders": ["content-type", "x-amz-*"], "ExposeHeaders": ["ETag"]}]})
    rules = c.get_bucket_cors(Bucket=B)["CORSRules"]
    assert rules[0]["AllowedOrigins"] == ["https://*.example"], rules
    status, h = preflight("https://console.example", "PUT")
    assert status == 200, status
    assert h["Access-Control-Allow-Origin"] == "https://console.example", dict(h)
    assert h["Access-Control-Allow-Headers"] == "content-type, x-amz-date", dict(h)
    status, h = preflight("https://console.example", "DELETE")
    assert status == 403 and "Access-Control-Allow-Origin" not in h, (status, dict(h))
    c.delete_bucket_cors(Bucket=B)
    assert error_code(lambda: c.get_bucket_cors(Bucket=B)) == "NoSuchCORSConfiguration"


def anonymous_status(path):
    try:
        with urllib.request.urlopen(f"{endpoint}/{path}") as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def acls():
    A = "boto3-acl"
    c.create_bucket(Bucket=A)
    c.put_object(Bucket=A, Key="backup.vbk", Body=b"veeam", ACL="bucket-owner-full-control")
    c.put_object(Bucket=A, Key="status.json", Body=b"{}", ACL="public-read")
    assert anonymous_status(f"{A}/status.json") == 200
    assert anonymous_status(f"{A}/backup.vbk") == 403
    assert anonymous_status(f"{A}?list-type=2") == 403
    grants = c.get_object_acl(Bucket=A, Key="status.json")["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL", "READ"], grants
    owner = c.get_bucket_acl(Bucket=A)["Owner"]
    assert owner["ID"] == c.list_buckets()["Owner"]["ID"], owner
    c.put_bucket_acl(Bucket=A, AccessControlPolicy={"Owner": owner, "Grants": [
        {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
         "Permission": "READ"}]})
    assert anonymous_status(f"{A}?list-type=2") == 200
    assert error_code(lambda: c.put_bucket_ownership_controls(Bucket=A, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})) == \
        "InvalidBucketAclWithObjectOwnership"
    c.put_bucket_acl(Bucket=A, ACL="private")
    c.put_bucket_ownership_controls(Bucket=A, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    assert error_code(lambda: c.put_object(Bucket=A, Key="x", Body=b"x", ACL="public-read")) == \
        "AccessControlListNotSupported"
    assert anonymous_status(f"{A}/status.json") == 403
    for key in ("backup.vbk", "status.json"):
        c.delete_object(Bucket=A, Key=key)
    c.delete_bucket(Bucket=A)


def policies():
    P = "boto3-policy"
    c.create_bucket(Bucket=P)
    for key in ("public/readme.txt", "keep/full.vbk", "private.txt"):
        c.put_object(Bucket=P, Key=key, Body=key.encode())
    assert error_code(lambda: c.get_bucket_policy(Bucket=P)) == "NoSuchBucketPolicy"
    doc = {"Version": "2012-10-17", "Statement": [
        {"Sid": "PublicReadme", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{P}/public/*"},
        {"Sid": "KeepBackups", "Effect": "Deny", "Principal": {"AWS": "*"},
         "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
         "Resource": f"arn:aws:s3:::{P}/keep/*"}]}
    bad = dict(doc, Statement=[dict(doc["Statement"][0], Action="s3:GetObjet")])
    assert error_code(lambda: c.put_bucket_policy(Bucket=P, Policy=json.dumps(bad))) == \
        "MalformedPolicy"
    c.put_bucket_policy(Bucket=P, Policy=json.dumps(doc))
    assert json.loads(c.get_bucket_policy(Bucket=P)["Policy"]) == doc
    assert c.get_bucket_policy_status(Bucket=P)["PolicyStatus"]["IsPublic"] is True
    assert anonymous_status(f"{P}/public/readme.txt") == 200
    assert anonymous_status(f"{P}/private.txt") == 403
    assert error_code(lambda: c.delete_object(Bucket=P, Key="keep/full.vbk")) == "AccessDenied"
    result = c.delete_objects(Bucket=P, Delete={"Objects": [
        {"Key": "keep/full.vbk"}, {"Key": "private.txt"}]})
    assert [e["Key"] for e in result.get("Errors", [])] == ["keep/full.vbk"], result
    assert [d["Key"] for d in result.get("Deleted", [])] == ["private.txt"], result
    c.delete_bucket_policy(Bucket=P)
    assert error_code(lambda: c.get_bucket_policy(Bucket=P)) == "NoSuchBucketPolicy"
    assert anonymous_status(f"{P}/public/readme.txt") == 403
    for key in ("public/readme.txt", "keep/full.vbk"):
        c.delete_object(Bucket=P, Key=key)
    c.delete_bucket(Bucket=P)


def form_post(fields, filename, data):
    boundary = "----boto3formboundary"
    body = b""
    for k, v in fields.items():
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'
                 f'{v}\r\n').encode()
    body += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
             f'filename="{filename}"\r\nContent-Type: text/plain\r\n\r\n').encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{endpoint}/{B}", data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def presigned_post():
    post = c.generate_presigned_post(
        Bucket=B, Key="inbox/${filename}",
        Fields={"success_action_status": "201"},
        Conditions=[{"success_action_status": "201"}, ["content-length-range", 1, 1024]],
        ExpiresIn=300)
    status, body = form_post(post["fields"], "notes.txt", b"from a browser")
    assert status == 201, (status, body)
    assert "<Key>inbox/notes.txt</Key>" in body, body
    assert c.get_object(Bucket=B, Key="inbox/notes.txt")["Body"].read() == b"from a browser"
    status, body = form_post(post["fields"], "big.txt", b"x" * 2000)
    assert status == 400 and "EntityTooLarge" in body, (status, body)
    c.delete_object(Bucket=B, Key="inbox/notes.txt")


step("create bucket", lambda: c.create_bucket(Bucket=B))
step("lifecycle: keep 14 days and 2 versions, abort stale uploads; validated; deleted", lifecycle)
step("cors: rules round-trip, preflights allowed and refused, deleted", cors)
step("acls: canned on PUT, anonymous reads as granted, policy XML, BucketOwnerEnforced", acls)
step("policies: validated, public read of a prefix, Deny over root's deletes, status, deleted",
     policies)
step("presigned POST: a browser form with ${filename}, 201, content-length-range",
     presigned_post)
step("delete bucket", lambda: c.delete_bucket(Bucket=B))

finish()
