//! `s3_error` owns the mapping of the stores' errors to S3 errors: a missing bucket,
//! an internal failure (logged, never shown to the client), and every `MetaError`.
//! The S3 surface, the admin API and the replica endpoints all answer through it.

use s3s::{S3Error, S3ErrorCode, s3_error};

use crate::meta::MetaError;

pub(crate) fn no_such_bucket() -> S3Error {
    s3_error!(NoSuchBucket, "The specified bucket does not exist")
}

pub(crate) fn internal(what: &str, e: &(dyn std::error::Error + 'static)) -> S3Error {
    if unavailable(e) {
        tracing::warn!(error = %e, "{what}");
        return s3_error!(
            ServiceUnavailable,
            "The metadata database is not reachable; please retry."
        );
    }
    tracing::error!(error = %e, "{what}");
    S3Error::with_message(
        S3ErrorCode::InternalError,
        "We encountered an internal error. Please try again.",
    )
}

/// Whether `e`, or an error it wraps, is the metadata database being unreachable:
/// the client gets 503 and retries, whichever path met it.
fn unavailable(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if matches!(
            e.downcast_ref::<MetaError>(),
            Some(MetaError::Unavailable(_))
        ) {
            return true;
        }
        next = e.source();
    }
    false
}

pub(crate) fn meta_error(e: MetaError) -> S3Error {
    match e {
        MetaError::NoSuchBucket => no_such_bucket(),
        MetaError::BucketExists => {
            s3_error!(
                BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it."
            )
        }
        MetaError::BucketNotEmpty => s3_error!(
            BucketNotEmpty,
            "The bucket you tried to delete is not empty"
        ),
        MetaError::NoSuchUpload => s3_error!(
            NoSuchUpload,
            "The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
        ),
        MetaError::NoSuchKey => s3_error!(NoSuchKey, "The specified key does not exist."),
        MetaError::NoSuchVersion => {
            s3_error!(NoSuchVersion, "The specified version does not exist.")
        }
        MetaError::DeleteMarker => s3_error!(
            MethodNotAllowed,
            "The specified method is not allowed against a delete marker."
        ),
        MetaError::InvalidPart(n) => s3_error!(
            InvalidPart,
            "Part {n} was uploaded again while the upload completed; its entity tag no longer matches."
        ),
        MetaError::QuotaExceeded(msg) => {
            tracing::info!(%msg, "write refused by a quota");
            let mut e = S3Error::with_message(S3ErrorCode::Custom("QuotaExceeded".into()), msg);
            e.set_status_code(http::StatusCode::FORBIDDEN);
            e
        }
        MetaError::Unfit(msg) => S3Error::with_message(S3ErrorCode::InvalidRequest, msg),
        MetaError::ObjectLocked(msg) => {
            tracing::info!(%msg, "refused by Object Lock");
            S3Error::with_message(S3ErrorCode::AccessDenied, msg)
        }
        MetaError::PreconditionFailed => s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        ),
        MetaError::InvalidBucketState(msg) => {
            S3Error::with_message(S3ErrorCode::InvalidBucketState, msg)
        }
        other => internal("metadata operation failed", &other),
    }
}

/// S3's message for an error code, for the errors s3s answers without one (a
/// malformed bucket name, a missing length, a method a resource does not take).
pub fn standard_message(code: &str) -> &'static str {
    match code {
        "InvalidBucketName" => "The specified bucket is not valid.",
        "MissingContentLength" => "You must provide the Content-Length HTTP header.",
        "IncompleteBody" => {
            "You did not provide the number of bytes specified by the Content-Length HTTP header."
        }
        "MethodNotAllowed" => "The specified method is not allowed against this resource.",
        "MaxMessageLengthExceeded" => "Your request was too big.",
        "MalformedXML" => {
            "The XML you provided was not well-formed or did not validate against our published schema."
        }
        "AccessDenied" => "Access Denied",
        "NoSuchBucket" => "The specified bucket does not exist",
        "NoSuchKey" => "The specified key does not exist.",
        "NotImplemented" => "A header you provided implies functionality that is not implemented.",
        "InternalError" => "We encountered an internal error. Please try again.",
        "SignatureDoesNotMatch" => {
            "The request signature we calculated does not match the signature you provided. Check your key and signing method."
        }
        "InvalidAccessKeyId" => "The AWS access key Id you provided does not exist in our records.",
        "RequestTimeTooSkewed" => {
            "The difference between the request time and the server's time is too large."
        }
        _ => "The request was refused; see the error code.",
    }
}

/// An S3 error whose code s3s does not know, with the status S3 answers it with.
pub(crate) fn custom(code: &'static str, message: &str, status: http::StatusCode) -> S3Error {
    let mut e = S3Error::with_message(S3ErrorCode::Custom(code.into()), message.to_owned());
    e.set_status_code(status);
    e
}
