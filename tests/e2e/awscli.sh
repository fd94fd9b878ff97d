#!/usr/bin/env bash
# End-to-end: the real aws-cli and curl (presigned and virtual-hosted-style requests)
# against a real hoard on 127.0.0.1. Prints one
# PASS/FAIL line per step and a closing "N passed, M failed" line; exits non-zero on
# any failure.
# Usage: tests/e2e/awscli.sh PATH/TO/hoard
HOARD=${1:?usage: awscli.sh PATH/TO/hoard}
source "$(dirname "$0")/lib.sh"
EP="--endpoint-url http://$ADDR"
aws() { command aws $EP "$@"; }
export EP WORK
export -f aws

head -c 20971520 /dev/urandom > "$WORK/big.bin"
head -c 104857600 /dev/urandom > "$WORK/huge.bin"
head -c 1000 /dev/urandom > "$WORK/small.bin"
: > "$WORK/empty.bin"
mkdir -p "$WORK/tree/sub"
for i in 1 2 3; do head -c $((i * 70000)) /dev/urandom > "$WORK/tree/f$i"; done
head -c 5000 /dev/urandom > "$WORK/tree/sub/g"

step "mb" aws s3 mb s3://e2e-bucket
step "create-bucket again by its owner answers 200, as us-east-1 does" aws s3api create-bucket --bucket e2e-bucket
step "cp 20 MiB up" aws s3 cp "$WORK/big.bin" s3://e2e-bucket/data/big.bin
step "cp small and empty up" bash -c "command aws $EP s3 cp '$WORK/small.bin' s3://e2e-bucket/data/small.bin && command aws $EP s3 cp '$WORK/empty.bin' s3://e2e-bucket/empty"
step "cp 100 MiB up goes multipart" bash -c "command aws $EP s3 cp '$WORK/huge.bin' s3://e2e-bucket/data/huge.bin && command aws $EP s3api head-object --bucket e2e-bucket --key data/huge.bin --query ETag --output text | grep -q -- '-[0-9]*\"\$'"
step "cp 100 MiB down has the same sha256" bash -c "command aws $EP s3 cp s3://e2e-bucket/data/huge.bin '$WORK/huge.back' && [ \"\$(sha256sum < '$WORK/huge.bin')\" = \"\$(sha256sum < '$WORK/huge.back')\" ]"
step "cp 20 MiB down is byte-identical" bash -c "command aws $EP s3 cp s3://e2e-bucket/data/big.bin '$WORK/big.back' && cmp '$WORK/big.bin' '$WORK/big.back'"
step "cp --recursive up" aws s3 cp --recursive "$WORK/tree" s3://e2e-bucket/tree/
# aws-cli sends Expect: 100-continue on every PUT, empty ones too; without the interim
# 100 it misreads the connection's next answer and stalls a minute.
mkdir -p "$WORK/empties"
for i in 1 2 3 4; do : > "$WORK/empties/e$i"; head -c $((i * 3000)) /dev/urandom > "$WORK/empties/f$i"; done
empties_copy() {
  aws s3 mb s3://e2e-empties >/dev/null
  local started=$SECONDS
  aws s3 cp --recursive "$WORK/empties" s3://e2e-empties/
  [ $((SECONDS - started)) -lt 20 ] || { echo "took $((SECONDS - started)) s"; return 1; }
  [ "$(aws s3 ls s3://e2e-empties/ | wc -l)" -eq 8 ]
}
step_fn "cp --recursive of a tree with empty files does not stall" empties_copy
step "ls --recursive lists every key" bash -c "[ \$(command aws $EP s3 ls --recursive s3://e2e-bucket/ | wc -l) -eq 8 ]"
step "ls with delimiter shows prefixes" bash -c "command aws $EP s3 ls s3://e2e-bucket/ | grep -q 'PRE data/' && command aws $EP s3 ls s3://e2e-bucket/ | grep -q 'PRE tree/'"
step "sync down matches" bash -c "command aws $EP s3 sync s3://e2e-bucket/tree '$WORK/tree.back' && diff -r '$WORK/tree' '$WORK/tree.back'"
step "head-object ETag is MD5" bash -c "[ \"\$(command aws $EP s3api head-object --bucket e2e-bucket --key data/small.bin --query ETag --output text)\" = \"\\\"\$(md5sum '$WORK/small.bin' | cut -d' ' -f1)\\\"\" ]"
step "put-object with metadata round-trips" bash -c "command aws $EP s3api put-object --bucket e2e-bucket --key meta --body '$WORK/small.bin' --content-type text/x-e2e --metadata job=nightly,Tier=gold >/dev/null && command aws $EP s3api head-object --bucket e2e-bucket --key meta | tee /dev/stderr | grep -q '\"job\": \"nightly\"' && command aws $EP s3api head-object --bucket e2e-bucket --key meta | grep -q 'text/x-e2e'"
step "get-object --range" bash -c "command aws $EP s3api get-object --bucket e2e-bucket --key data/big.bin --range bytes=100-199 '$WORK/range' >/dev/null && cmp '$WORK/range' <(tail -c +101 '$WORK/big.bin' | head -c 100)"
step "get-object with unsatisfiable range is 416" bash -c "command aws $EP s3api get-object --bucket e2e-bucket --key data/small.bin --range bytes=5000-6000 '$WORK/x' 2>&1 | grep -q InvalidRange"
step "list-objects-v2 with prefix and delimiter" bash -c "command aws $EP s3api list-objects-v2 --bucket e2e-bucket --prefix tree/ --delimiter / --query 'CommonPrefixes[].Prefix' --output text | grep -qx 'tree/sub/'"
step "list-objects (v1) paginates" bash -c "[ \$(command aws $EP s3api list-objects --bucket e2e-bucket --page-size 2 --query 'Contents[].Key' --output text | wc -w) -eq 9 ]"
s3api_multipart() {
  local id e1 e2
  id=$(aws s3api create-multipart-upload --bucket e2e-bucket --key mpu --query UploadId --output text)
  head -c 5242880 "$WORK/huge.bin" > "$WORK/p1"; tail -c 1000 "$WORK/huge.bin" > "$WORK/p2"
  e1=$(aws s3api upload-part --bucket e2e-bucket --key mpu --upload-id "$id" --part-number 1 --body "$WORK/p1" --query ETag --output text)
  e2=$(aws s3api upload-part --bucket e2e-bucket --key mpu --upload-id "$id" --part-number 2 --body "$WORK/p2" --query ETag --output text)
  [ "$(aws s3api list-parts --bucket e2e-bucket --key mpu --upload-id "$id" --query 'length(Parts)')" = 2 ]
  aws s3api list-multipart-uploads --bucket e2e-bucket --query 'Uploads[].Key' --output text | grep -qx mpu
  aws s3api complete-multipart-upload --bucket e2e-bucket --key mpu --upload-id "$id" \
    --multipart-upload "{\"Parts\":[{\"PartNumber\":1,\"ETag\":$e1},{\"PartNumber\":2,\"ETag\":$e2}]}"
  aws s3api get-object --bucket e2e-bucket --key mpu "$WORK/mpu.back" >/dev/null
  cmp "$WORK/mpu.back" <(cat "$WORK/p1" "$WORK/p2")
  [ "$(aws s3api head-object --bucket e2e-bucket --key mpu --part-number 2 --query PartsCount)" = 2 ]
}
s3api_abort() {
  local id
  id=$(aws s3api create-multipart-upload --bucket e2e-bucket --key aborted --query UploadId --output text)
  aws s3api upload-part --bucket e2e-bucket --key aborted --upload-id "$id" --part-number 1 --body "$WORK/small.bin" >/dev/null
  aws s3api abort-multipart-upload --bucket e2e-bucket --key aborted --upload-id "$id"
  aws s3api list-parts --bucket e2e-bucket --key aborted --upload-id "$id" 2>&1 | grep -q NoSuchUpload
}
s3api_upload_part_copy() {
  local id e1 e2
  id=$(aws s3api create-multipart-upload --bucket e2e-bucket --key joined --query UploadId --output text)
  e1=$(aws s3api upload-part-copy --bucket e2e-bucket --key joined --upload-id "$id" --part-number 1 \
    --copy-source e2e-bucket/data/big.bin --copy-source-range bytes=0-5242879 --query CopyPartResult.ETag --output text)
  e2=$(aws s3api upload-part-copy --bucket e2e-bucket --key joined --upload-id "$id" --part-number 2 \
    --copy-source e2e-bucket/data/big.bin --copy-source-range bytes=5242880-20971519 --query CopyPartResult.ETag --output text)
  aws s3api complete-multipart-upload --bucket e2e-bucket --key joined --upload-id "$id" \
    --multipart-upload "{\"Parts\":[{\"PartNumber\":1,\"ETag\":$e1},{\"PartNumber\":2,\"ETag\":$e2}]}" >/dev/null
  aws s3api get-object --bucket e2e-bucket --key joined "$WORK/joined.back" >/dev/null
  cmp "$WORK/joined.back" "$WORK/big.bin"
}
s3api_copy() {
  aws s3api copy-object --bucket e2e-bucket --key copied --copy-source e2e-bucket/meta \
    --metadata-directive REPLACE --content-type text/x-replaced --metadata job=weekly >/dev/null
  aws s3api head-object --bucket e2e-bucket --key copied | grep -q '"job": "weekly"'
  aws s3api head-object --bucket e2e-bucket --key copied | grep -q 'text/x-replaced'
  aws s3api copy-object --bucket e2e-bucket --key copied2 --copy-source e2e-bucket/meta \
    --copy-source-if-match '"0000"' 2>&1 | grep -q PreconditionFailed
}
s3api_delete_objects() {
  aws s3api put-object --bucket e2e-bucket --key del/1 --body "$WORK/small.bin" >/dev/null
  aws s3api put-object --bucket e2e-bucket --key del/2 --body "$WORK/small.bin" >/dev/null
  [ "$(aws s3api delete-objects --bucket e2e-bucket --delete '{"Objects":[{"Key":"del/1"},{"Key":"del/2"}]}' --query 'length(Deleted)')" = 2 ]
  [ -z "$(aws s3api list-objects-v2 --bucket e2e-bucket --prefix del/ --query 'Contents[].Key' --output text | grep -v None)" ]
}
s3api_versioning() {
  local v1 v2 marker
  aws s3api create-bucket --bucket e2e-versions >/dev/null
  aws s3api put-bucket-versioning --bucket e2e-versions --versioning-configuration Status=Enabled
  [ "$(aws s3api get-bucket-versioning --bucket e2e-versions --query Status --output text)" = Enabled ]
  v1=$(aws s3api put-object --bucket e2e-versions --key doc --body "$WORK/small.bin" --query VersionId --output text)
  v2=$(aws s3api put-object --bucket e2e-versions --key doc --body "$WORK/tree/f1" --query VersionId --output text)
  [ "$v1" != "$v2" ]
  aws s3api get-object --bucket e2e-versions --key doc --version-id "$v1" "$WORK/v1.back" >/dev/null
  cmp "$WORK/v1.back" "$WORK/small.bin"
  marker=$(aws s3api delete-object --bucket e2e-versions --key doc --query VersionId --output text)
  aws s3api head-object --bucket e2e-versions --key doc 2>&1 | grep -q 404
  [ "$(aws s3api list-object-versions --bucket e2e-versions --query 'length(Versions)')" = 2 ]
  [ "$(aws s3api list-object-versions --bucket e2e-versions --query 'DeleteMarkers[0].VersionId' --output text)" = "$marker" ]
  aws s3api delete-object --bucket e2e-versions --key doc --version-id "$marker" >/dev/null
  aws s3api get-object --bucket e2e-versions --key doc "$WORK/v2.back" >/dev/null
  cmp "$WORK/v2.back" "$WORK/tree/f1"
  for v in "$v1" "$v2"; do aws s3api delete-object --bucket e2e-versions --key doc --version-id "$v" >/dev/null; done
  aws s3api delete-bucket --bucket e2e-versions
}
s3api_tagging() {
  aws s3api put-object --bucket e2e-bucket --key tagged --body "$WORK/small.bin" --tagging 'job=nightly&tier=gold' >/dev/null
  aws s3api get-object-tagging --bucket e2e-bucket --key tagged --query 'TagSet[?Key==`job`].Value' --output text | grep -qx nightly
  aws s3api put-object-tagging --bucket e2e-bucket --key tagged --tagging 'TagSet=[{Key=owner,Value=ops}]'
  aws s3api get-object-tagging --bucket e2e-bucket --key tagged --query 'TagSet[0].Key' --output text | grep -qx owner
  aws s3api delete-object-tagging --bucket e2e-bucket --key tagged
  [ "$(aws s3api get-object-tagging --bucket e2e-bucket --key tagged --query 'length(TagSet)')" = 0 ]
  aws s3api put-bucket-tagging --bucket e2e-bucket --tagging 'TagSet=[{Key=team,Value=backup}]'
  aws s3api get-bucket-tagging --bucket e2e-bucket --query 'TagSet[0].Value' --output text | grep -qx backup
  aws s3api delete-bucket-tagging --bucket e2e-bucket
  aws s3api get-bucket-tagging --bucket e2e-bucket 2>&1 | grep -q NoSuchTagSet
  aws s3api delete-object --bucket e2e-bucket --key tagged
}
s3api_attributes() {
  [ "$(aws s3api get-object-attributes --bucket e2e-bucket --key data/huge.bin --object-attributes ObjectSize ObjectParts --query ObjectSize)" = 104857600 ]
  [ "$(aws s3api get-object-attributes --bucket e2e-bucket --key data/huge.bin --object-attributes ObjectParts --query ObjectParts.TotalPartsCount)" -gt 1 ]
}
s3api_not_implemented() {
  aws s3api get-bucket-website --bucket e2e-bucket 2>&1 | grep -q NotImplemented
}
s3api_lifecycle() {
  aws s3 mb s3://e2e-rules
  aws s3api put-bucket-lifecycle-configuration --bucket e2e-rules --lifecycle-configuration \
    '{"Rules":[{"ID":"keep-30-days","Status":"Enabled","Filter":{"Prefix":"backups/"},"NoncurrentVersionExpiration":{"NoncurrentDays":30,"NewerNoncurrentVersions":3},"AbortIncompleteMultipartUpload":{"DaysAfterInitiation":7}}]}'
  [ "$(aws s3api get-bucket-lifecycle-configuration --bucket e2e-rules --query 'Rules[0].[ID,NoncurrentVersionExpiration.NoncurrentDays,NoncurrentVersionExpiration.NewerNoncurrentVersions]' --output text)" = "keep-30-days	30	3" ]
  ! aws s3api put-bucket-lifecycle-configuration --bucket e2e-rules --lifecycle-configuration \
    '{"Rules":[{"ID":"cold","Status":"Enabled","Filter":{},"Transitions":[{"Days":30,"StorageClass":"GLACIER"}]}]}' 2>"$WORK/lc.err"
  grep -q NotImplemented "$WORK/lc.err"
  # A pass keeps an upload that is not yet stale.
  aws s3api create-multipart-upload --bucket e2e-rules --key backups/fresh >/dev/null
  "$HOARD" lifecycle run --endpoint "http://$ADDR" | grep -q 'uploads aborted 0'
  aws s3api list-multipart-uploads --bucket e2e-rules --query 'Uploads[].Key' --output text | grep -qx backups/fresh
  aws s3api delete-bucket-lifecycle --bucket e2e-rules
  ! aws s3api get-bucket-lifecycle-configuration --bucket e2e-rules 2>"$WORK/lc.err"
  grep -q NoSuchLifecycleConfiguration "$WORK/lc.err"
}
s3api_cors() {
  aws s3 mb s3://e2e-cors
  aws s3api put-bucket-cors --bucket e2e-cors --cors-configuration \
    '{"CORSRules":[{"AllowedOrigins":["https://console.example"],"AllowedMethods":["GET","PUT"],"AllowedHeaders":["*"],"ExposeHeaders":["ETag"],"MaxAgeSeconds":300}]}'
  aws s3api get-bucket-cors --bucket e2e-cors --query 'CORSRules[0].AllowedOrigins[0]' --output text | grep -qx https://console.example
  curl -s -D "$WORK/pre.h" -o /dev/null -X OPTIONS -H 'Origin: https://console.example' \
    -H 'Access-Control-Request-Method: PUT' -H 'Access-Control-Request-Headers: content-type' "http://$ADDR/e2e-cors/x"
  grep -qi '^access-control-allow-origin: https://console.example' "$WORK/pre.h"
  grep -qi '^access-control-max-age: 300' "$WORK/pre.h"
  [ "$(curl -s -o /dev/null -w '%{http_code}' -X OPTIONS -H 'Origin: https://other.example' \
    -H 'Access-Control-Request-Method: PUT' "http://$ADDR/e2e-cors/x")" = 403 ]
  ! aws s3api put-bucket-cors --bucket e2e-cors --cors-configuration \
    '{"CORSRules":[{"AllowedOrigins":["*"],"AllowedMethods":["PATCH"]}]}' 2>"$WORK/cors.err"
  grep -q InvalidRequest "$WORK/cors.err"
  aws s3api delete-bucket-cors --bucket e2e-cors
  ! aws s3api get-bucket-cors --bucket e2e-cors 2>"$WORK/cors.err"
  grep -q NoSuchCORSConfiguration "$WORK/cors.err"
}
s3api_acl() {
  local code
  code() { curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/$1"; }
  aws s3api create-bucket --bucket e2e-acl --acl public-read
  aws s3api get-bucket-acl --bucket e2e-acl --query 'Grants[1].[Grantee.URI,Permission]' --output text | grep -q 'AllUsers.READ'
  aws s3 cp "$WORK/small.bin" s3://e2e-acl/open --acl public-read
  aws s3 cp "$WORK/small.bin" s3://e2e-acl/closed
  curl -sf "http://$ADDR/e2e-acl/open" -o "$WORK/anon" && cmp "$WORK/anon" "$WORK/small.bin"
  [ "$(code e2e-acl/closed)" = 403 ]
  curl -sf "http://$ADDR/e2e-acl?list-type=2" | grep -q '<Key>closed</Key>'
  aws s3api put-object-acl --bucket e2e-acl --key closed --acl public-read
  [ "$(code e2e-acl/closed)" = 200 ]
  ! aws s3api put-object --bucket e2e-acl --key bad --acl public --body "$WORK/small.bin" 2>"$WORK/acl.err"
  grep -q InvalidArgument "$WORK/acl.err"
  aws s3api put-public-access-block --bucket e2e-acl --public-access-block-configuration IgnorePublicAcls=true
  [ "$(code e2e-acl/open)" = 403 ]
  aws s3api delete-public-access-block --bucket e2e-acl
  [ "$(code e2e-acl/open)" = 200 ]
  aws s3 rm --recursive s3://e2e-acl && aws s3 rb s3://e2e-acl
}
s3api_policy() {
  local code
  code() { curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/$1"; }
  aws s3 mb s3://e2e-policy
  aws s3 cp "$WORK/small.bin" s3://e2e-policy/pub/file
  aws s3 cp "$WORK/small.bin" s3://e2e-policy/keep/file
  cat >"$WORK/policy.json" <<'JSON'
{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::e2e-policy/pub/*"},
 {"Effect":"Deny","Principal":"*","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::e2e-policy/keep/*"}]}
JSON
  sed 's/s3:GetObject/s3:GetObjekt/' "$WORK/policy.json" >"$WORK/bad-policy.json"
  ! aws s3api put-bucket-policy --bucket e2e-policy --policy "file://$WORK/bad-policy.json" 2>"$WORK/policy.err"
  grep -q MalformedPolicy "$WORK/policy.err"
  aws s3api put-bucket-policy --bucket e2e-policy --policy "file://$WORK/policy.json"
  aws s3api get-bucket-policy --bucket e2e-policy --query Policy --output text | grep -q 'e2e-policy/keep'
  [ "$(aws s3api get-bucket-policy-status --bucket e2e-policy --query PolicyStatus.IsPublic --output text)" = True ]
  [ "$(code e2e-policy/pub/file)" = 200 ] && [ "$(code e2e-policy/keep/file)" = 403 ]
  ! aws s3 rm s3://e2e-policy/keep/file 2>"$WORK/policy.err"
  grep -q AccessDenied "$WORK/policy.err"
  aws s3api delete-bucket-policy --bucket e2e-policy
  [ "$(code e2e-policy/pub/file)" = 403 ]
  aws s3 rm --recursive s3://e2e-policy && aws s3 rb s3://e2e-policy
}
quota_refusal() {
  aws s3 mb s3://e2e-quota
  "$HOARD" quota set --bucket e2e-quota 1MiB --endpoint "http://$ADDR"
  aws s3 cp "$WORK/small.bin" s3://e2e-quota/fits
  ! aws s3 cp "$WORK/big.bin" s3://e2e-quota/big 2>"$WORK/quota.err"
  grep -q 'QuotaExceeded' "$WORK/quota.err" && grep -q 'over its quota' "$WORK/quota.err"
  [ "$(aws s3 ls s3://e2e-quota/ | wc -l)" -eq 1 ]
  aws s3 rm s3://e2e-quota/fits && aws s3 rb s3://e2e-quota
}
writeonly_user() {
  aws s3 mb s3://e2e-drop
  "$HOARD" user add dropper --grant e2e-drop=writeonly --endpoint "http://$ADDR" >"$WORK/dropper"
  local ak sk
  ak=$(sed -n 's/^ *access key: //p' "$WORK/dropper"); sk=$(sed -n 's/^ *secret key: //p' "$WORK/dropper")
  # The write-only user uploads (multipart too) but cannot list or read back.
  AWS_ACCESS_KEY_ID=$ak AWS_SECRET_ACCESS_KEY=$sk aws s3 cp "$WORK/huge.bin" s3://e2e-drop/full.bak
  ! AWS_ACCESS_KEY_ID=$ak AWS_SECRET_ACCESS_KEY=$sk aws s3 ls s3://e2e-drop/ 2>"$WORK/drop.err"
  grep -q AccessDenied "$WORK/drop.err"
  ! AWS_ACCESS_KEY_ID=$ak AWS_SECRET_ACCESS_KEY=$sk aws s3 cp s3://e2e-drop/full.bak "$WORK/drop.back" 2>"$WORK/drop.err"
  grep -q '403' "$WORK/drop.err"
  # Root reads what it wrote.
  aws s3 cp s3://e2e-drop/full.bak "$WORK/drop.back" && cmp "$WORK/huge.bin" "$WORK/drop.back"
  "$HOARD" user remove dropper --endpoint "http://$ADDR"
  ! AWS_ACCESS_KEY_ID=$ak AWS_SECRET_ACCESS_KEY=$sk aws s3 cp "$WORK/small.bin" s3://e2e-drop/late 2>/dev/null
  aws s3 rm s3://e2e-drop/full.bak && aws s3 rb s3://e2e-drop
}
export HOARD ADDR
step_fn "a writeonly user uploads with aws-cli but cannot list or read; removed, it is refused" writeonly_user
step_fn "a cp beyond a bucket quota fails with QuotaExceeded and stores nothing" quota_refusal
step_fn "s3api versioning: enable, versions, delete marker, get by version, delete versions" s3api_versioning
step_fn "s3api object and bucket tagging" s3api_tagging
step_fn "s3api get-object-attributes" s3api_attributes
step_fn "s3api lifecycle: put, get, transitions refused, a pass keeps a fresh upload, delete" s3api_lifecycle
step_fn "s3api cors: put, get, curl preflights allowed and refused, bad method refused, delete" s3api_cors
step_fn "s3api acl: public-read bucket and object read by curl, private refused, put-object-acl, bad canned ACL, IgnorePublicAcls" s3api_acl
step_fn "s3api policy: validated, public read of a prefix by curl, Deny over root's delete, status, deleted" s3api_policy
step_fn "s3api: an operation hoard does not implement is NotImplemented" s3api_not_implemented
step_fn "s3api multipart: create, upload-part, list-parts, list-multipart-uploads, complete, part-number" s3api_multipart
step_fn "s3api abort-multipart-upload" s3api_abort
step_fn "s3api upload-part-copy with ranges" s3api_upload_part_copy
step_fn "s3api copy-object REPLACE and if-match" s3api_copy
step_fn "s3api delete-objects" s3api_delete_objects
step "presigned GET with curl" bash -c "curl -sf \"\$(command aws $EP s3 presign s3://e2e-bucket/data/small.bin --expires-in 60)\" -o '$WORK/presigned' && cmp '$WORK/presigned' '$WORK/small.bin'"
step "virtual-hosted-style GET with curl SigV4" bash -c "curl -sf --aws-sigv4 'aws:amz:us-east-1:s3' --user \"$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY\" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' --connect-to e2e-bucket.localhost:$PORT:127.0.0.1:$PORT http://e2e-bucket.localhost:$PORT/data/small.bin -o '$WORK/vhost' && cmp '$WORK/vhost' '$WORK/small.bin'"
step "stats show the bucket" bash -c "'$HOARD' stats --endpoint http://$ADDR | tee /dev/stderr | grep -q '^e2e-bucket '"
step "metrics are exposed" bash -c "curl -sf http://$ADDR/metrics | grep -q 'hoard_s3_requests_total{operation=\"PutObject\"}'"
step "rb of a non-empty bucket is refused" bash -c "command aws $EP s3 rb s3://e2e-bucket 2>&1 | grep -q BucketNotEmpty"
step "rm --recursive" aws s3 rm --recursive s3://e2e-bucket/
step "rb" aws s3 rb s3://e2e-bucket
https_with_generated_ca() {
  "$HOARD" serve --tls --listen 127.0.0.1:0 --data-dir "$WORK/tlsdata" >"$WORK/tls.stdout" 2>"$WORK/tls.log" &
  local pid=$! addr=
  trap "kill -9 $pid 2>/dev/null" EXIT
  for _ in $(seq 1 100); do
    addr=$(sed -n 's|^hoard: listening on https://||p' "$WORK/tls.stdout"); [ -n "$addr" ] && break; sleep 0.1
  done
  [ -n "$addr" ]
  local tep="--endpoint-url https://$addr"
  AWS_CA_BUNDLE="$WORK/tlsdata/tls/ca.pem" command aws $tep s3 mb s3://e2e-tls
  AWS_CA_BUNDLE="$WORK/tlsdata/tls/ca.pem" command aws $tep s3 cp "$WORK/big.bin" s3://e2e-tls/big.bin
  AWS_CA_BUNDLE="$WORK/tlsdata/tls/ca.pem" command aws $tep s3 cp s3://e2e-tls/big.bin "$WORK/big.tls"
  cmp "$WORK/big.bin" "$WORK/big.tls"
  # Without the CA, aws-cli refuses the certificate.
  ! command aws $tep s3 ls 2>"$WORK/tls.err"
  grep -qi 'certificate verify failed\|SSL' "$WORK/tls.err"
}
step_fn "aws-cli over HTTPS trusting the generated CA (AWS_CA_BUNDLE); refused without it" https_with_generated_ca
finish
