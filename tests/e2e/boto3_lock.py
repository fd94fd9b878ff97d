#!/usr/bin/env python3
"""End-to-end: boto3 doing what backup software does with Object Lock.

Veeam: per-object COMPLIANCE retention through the PUT headers, retention extended
with PutObjectRetention, the SOSAPI documents, and a 1,000-key DeleteObjects of
versions whose retention ran out while the younger ones stay. Commvault: GOVERNANCE
retention that a privileged key bypasses and a backup key cannot. Legal hold on
and off.

usage: boto3_lock.py ENDPOINT ACCESS_KEY SECRET_KEY BACKUP_KEY BACKUP_SECRET PRIV_KEY PRIV_SECRET HOARD
(the backup key holds readwrite on bucket "commvault", the privileged key bypass-governance;
HOARD is the binary, for `hoard quota`, with HOARD_ENDPOINT and the root keys set)
Prints one PASS/FAIL line per step and "N passed, M failed"; exits 1 on any failure.
"""
import datetime
import sys
import time
import xml.etree.ElementTree as ET

from steps import client, error_code, finish, step

endpoint, access, secret, backup_key, backup_secret, priv_key, priv_secret = sys.argv[1:8]
SOS = ".system-d26a9498-cb7c-4a87-a44a-8ae204f5ba6c/"
root = client(endpoint, access, secret)
backup = client(endpoint, backup_key, backup_secret)
priv = client(endpoint, priv_key, priv_secret)


def refused(code, fn):
    got = error_code(fn)
    assert got == code, f"{got} instead of {code}"


def in_secs(s):
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=s)


state = {}


def veeam_bucket():
    root.create_bucket(Bucket="vbr", ObjectLockEnabledForBucket=True)
    cfg = root.get_object_lock_configuration(Bucket="vbr")["ObjectLockConfiguration"]
    assert cfg["ObjectLockEnabled"] == "Enabled", cfg
    assert root.get_bucket_versioning(Bucket="vbr")["Status"] == "Enabled"


def veeam_sosapi():
    system = root.get_object(Bucket="vbr", Key=SOS + "system.xml")
    assert system["ContentType"] == "application/xml", system["ContentType"]
    doc = ET.fromstring(system["Body"].read())
    assert doc.tag == "SystemInfo"
    assert doc.find("ProtocolCapabilities/CapacityInfo").text == "true"
    assert doc.find("SystemRecommendations/S3MultiObjectDeleteLimit").text == "1000"
    assert int(doc.find("SystemRecommendations/KbBlockSize").text) == 1024
    cap = ET.fromstring(root.get_object(Bucket="vbr", Key=SOS + "capacity.xml")["Body"].read())
    total, avail, used = (int(cap.find(n).text) for n in ("Capacity", "Available", "Used"))
    assert total > 0 and 0 <= avail <= total and used == total - avail, (total, avail, used)
    head = root.head_object(Bucket="vbr", Key=SOS + "capacity.xml")
    assert head["ContentLength"] > 0 and head["ETag"]
    # Not in a listing of the bucket, in one of the folder.
    keys = [o["Key"] for o in root.list_objects_v2(Bucket="vbr").get("Contents", [])]
    assert not any(k.startswith(SOS) for k in keys), keys
    listed = root.list_objects_v2(Bucket="vbr", Prefix=SOS).get("Contents", [])
    assert [o["Key"] for o in listed] == [SOS + "capacity.xml", SOS + "system.xml"], listed


def veeam_quota_capacity():
    import subprocess
    out = subprocess.run(
        [sys.argv[8], "quota", "set", "--bucket", "vbr", "10GiB"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    cap = ET.fromstring(root.get_object(Bucket="vbr", Key=SOS + "capacity.xml")["Body"].read())
    total, avail, used = (int(cap.find(n).text) for n in ("Capacity", "Available", "Used"))
    assert total == 10 * 1024**3, total
    assert used == state.get("logical", 0) and avail == total - used, (total, avail, used)


def veeam_writes_locked_blocks():
    state["blocks"] = {}
    state["logical"] = 0
    for i in range(1000):
        # Older blocks expire in a few seconds, the last 100 in a week.
        secs = 3 if i < 900 else 7 * 86400
        body = f"block {i} ".encode() * 64
        r = root.put_object(
            Bucket="vbr",
            Key=f"Veeam/Backup/job/blocks/{i:04d}",
            Body=body,
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=in_secs(secs),
        )
        state["blocks"][i] = r["VersionId"]
        state["logical"] += len(body)
    head = root.head_object(Bucket="vbr", Key="Veeam/Backup/job/blocks/0999")
    assert head["ObjectLockMode"] == "COMPLIANCE", head


def veeam_extends_retention():
    key, vid = "Veeam/Backup/job/blocks/0999", state["blocks"][999]
    until = in_secs(30 * 86400).replace(microsecond=0)
    root.put_object_retention(
        Bucket="vbr", Key=key, VersionId=vid,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until},
    )
    got = root.get_object_retention(Bucket="vbr", Key=key, VersionId=vid)["Retention"]
    assert got["RetainUntilDate"] == until, got
    refused("AccessDenied", lambda: root.put_object_retention(
        Bucket="vbr", Key=key, VersionId=vid,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": in_secs(86400)},
    ))


def veeam_deletes_expired_versions():
    time.sleep(4)  # the first 900 retentions run out
    objects = [
        {"Key": f"Veeam/Backup/job/blocks/{i:04d}", "VersionId": v}
        for i, v in state["blocks"].items()
    ]
    out = root.delete_objects(Bucket="vbr", Delete={"Objects": objects, "Quiet": False})
    deleted = {d["Key"] for d in out.get("Deleted", [])}
    errors = {e["Key"]: e["Code"] for e in out.get("Errors", [])}
    assert len(deleted) == 900, len(deleted)
    assert len(errors) == 100 and set(errors.values()) == {"AccessDenied"}, errors
    for i in range(900, 1000):
        key = f"Veeam/Backup/job/blocks/{i:04d}"
        got = root.get_object(Bucket="vbr", Key=key, VersionId=state["blocks"][i])
        assert got["Body"].read() == f"block {i} ".encode() * 64


def commvault_governance():
    root.create_bucket(Bucket="commvault", ObjectLockEnabledForBucket=True)
    root.put_object_lock_configuration(
        Bucket="commvault",
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 14}},
        },
    )
    vid = backup.put_object(Bucket="commvault", Key="CV_MAGNETIC/V_1/CHUNK_1", Body=b"c" * 4096)["VersionId"]
    head = backup.head_object(Bucket="commvault", Key="CV_MAGNETIC/V_1/CHUNK_1")
    assert head["ObjectLockMode"] == "GOVERNANCE", head
    for who in (backup, root):
        refused("AccessDenied", lambda: who.delete_object(
            Bucket="commvault", Key="CV_MAGNETIC/V_1/CHUNK_1", VersionId=vid,
            BypassGovernanceRetention=True))
    refused("AccessDenied", lambda: priv.delete_object(
        Bucket="commvault", Key="CV_MAGNETIC/V_1/CHUNK_1", VersionId=vid))
    priv.delete_object(
        Bucket="commvault", Key="CV_MAGNETIC/V_1/CHUNK_1", VersionId=vid, BypassGovernanceRetention=True)
    refused("NoSuchVersion", lambda: root.get_object(
        Bucket="commvault", Key="CV_MAGNETIC/V_1/CHUNK_1", VersionId=vid))


def legal_hold_on_and_off():
    vid = root.put_object(Bucket="commvault", Key="case/mail.pst", Body=b"evidence")["VersionId"]
    # The default retention applies; lift it with the bypass, then hold.
    priv.put_object_retention(
        Bucket="commvault", Key="case/mail.pst", VersionId=vid, Retention={},
        BypassGovernanceRetention=True)
    root.put_object_legal_hold(Bucket="commvault", Key="case/mail.pst", VersionId=vid,
                               LegalHold={"Status": "ON"})
    got = root.get_object_legal_hold(Bucket="commvault", Key="case/mail.pst", VersionId=vid)
    assert got["LegalHold"]["Status"] == "ON", got
    refused("AccessDenied", lambda: priv.delete_object(
        Bucket="commvault", Key="case/mail.pst", VersionId=vid, BypassGovernanceRetention=True))
    root.put_object_legal_hold(Bucket="commvault", Key="case/mail.pst", VersionId=vid,
                               LegalHold={"Status": "OFF"})
    root.delete_object(Bucket="commvault", Key="case/mail.pst", VersionId=vid)


step("Veeam: a bucket with Object Lock has versioning Enabled", veeam_bucket)
step("Veeam: SOSAPI system.xml and capacity.xml parse, listed only by their folder", veeam_sosapi)
step("Veeam: 1,000 blocks with COMPLIANCE retention in the PUT headers", veeam_writes_locked_blocks)
step("Veeam: capacity.xml follows a bucket quota and the bytes written", veeam_quota_capacity)
step("Veeam: retention extended with PutObjectRetention, never shortened", veeam_extends_retention)
step("Veeam: a 1,000-key DeleteObjects removes the expired versions, keeps the young", veeam_deletes_expired_versions)
step("Commvault: GOVERNANCE yields to a privileged key's bypass, not to a backup key", commvault_governance)
step("legal hold on blocks a bypass, off lets the version go", legal_hold_on_and_off)
finish()
