//! `idle_body` owns the request body's idle timeout: a body that brings no byte for
//! the configured time while the server waits for it ends with an S3
//! `400 RequestTimeout` error, so that the upload fails, releases its stream slot
//! and its references, and the client is told why.
//!
//! Invariants:
//! - Only time spent waiting for the client counts: the clock starts when the server
//!   asks for the next frame and stops when one arrives, so a server that is slow to
//!   read (a stream slot, a commit) never times a client out.
//! - A slow body that keeps moving is never cut: every frame restarts the clock.
//!
//! It also carries the length hint s3s reads: s3s refuses an unsigned body whose
//! length it cannot know before reading (411 MissingContentLength), while S3
//! accepts a PutObject or UploadPart sent with plain `Transfer-Encoding: chunked`.
//! For those (chosen by `server`) the body claims the largest length a PUT may
//! have (`unknown_length`); nothing in hoard trusts the hint: ingest counts the
//! bytes that arrive and holds them to the same limit.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use s3s::{S3Error, S3ErrorCode, StdError};
use tokio::time::{Instant, Sleep};

pub struct IdleTimeout<B> {
    inner: Pin<Box<B>>,
    idle: Duration,
    clock: Pin<Box<Sleep>>,
    waiting: bool,
    claimed_length: Option<u64>,
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, idle: Duration) -> IdleTimeout<B> {
        IdleTimeout {
            inner: Box::pin(inner),
            idle,
            clock: Box::pin(tokio::time::sleep(idle)),
            waiting: false,
            claimed_length: None,
        }
    }

    /// A chunked body of unknown length claims `max` bytes to s3s (see above).
    pub fn unknown_length(mut self, max: u64) -> IdleTimeout<B> {
        self.claimed_length = Some(max);
        self
    }
}

/// The error a body that stalled ends with (as S3 words it).
pub fn request_timeout() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::RequestTimeout,
        "Your socket connection to the server was not read from or written to within the timeout period. Idle connections will be closed.",
    )
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<StdError>,
{
    type Data = Bytes;
    type Error = StdError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StdError>>> {
        let this = &mut *self;
        if !this.waiting {
            this.clock.as_mut().reset(Instant::now() + this.idle);
            this.waiting = true;
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.clock.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    tracing::info!(
                        idle_secs = this.idle.as_secs(),
                        "request body stalled; aborted"
                    );
                    Poll::Ready(Some(Err(Box::new(request_timeout()))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.claimed_length {
            Some(max) => SizeHint::with_exact(max),
            None => self.inner.size_hint(),
        }
    }
}
