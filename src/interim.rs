//! `interim` owns the interim `100 Continue` for HTTP/1.1 requests that ask for one
//! (`Expect: 100-continue`) but carry an empty body. hyper sends the interim
//! response only when a body is read, so such a request would get its final answer
//! without one, and aws-cli (botocore), which always waits for it on a PUT, then
//! misreads that connection's next response and stalls for a minute.
//!
//! The connection's writer is wrapped in [`ContinueIo`]; the request handler, which
//! sees the parsed request, arms the connection's [`Continue`] flag, and the next
//! bytes written on that connection, the final response's head, are preceded by
//! `HTTP/1.1 100 Continue`. HTTP/1.1 answers one request at a time per connection,
//! so the armed flag always belongs to the response written next.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// One connection's flag: armed, the next response is preceded by the interim one.
#[derive(Clone, Default)]
pub struct Continue(Arc<AtomicBool>);

impl Continue {
    /// Arms the flag when `req` is an HTTP/1.1 request expecting `100 Continue`
    /// whose body is empty (hyper sends the interim response for the others).
    pub fn arm_for<B>(&self, req: &http::Request<B>, has_body: bool) {
        let expects = req
            .headers()
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if expects && !has_body && req.version() == http::Version::HTTP_11 {
            self.0.store(true, Ordering::Release);
        }
    }
}

/// A connection's stream, writing the interim response when its flag is armed.
pub struct ContinueIo<S> {
    inner: S,
    flag: Continue,
    /// Bytes of the interim response still to write.
    owed: usize,
}

impl<S> ContinueIo<S> {
    pub fn new(inner: S, flag: Continue) -> ContinueIo<S> {
        ContinueIo {
            inner,
            flag,
            owed: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> ContinueIo<S> {
    /// Writes what is owed of the interim response first; Ready once none is.
    fn poll_owed(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.owed == 0 && self.flag.0.swap(false, Ordering::AcqRel) {
            self.owed = CONTINUE.len();
        }
        while self.owed > 0 {
            let from = CONTINUE.len() - self.owed;
            match Pin::new(&mut self.inner).poll_write(cx, &CONTINUE[from..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.owed -= n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ContinueIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ContinueIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.poll_owed(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_write(cx, buf),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.poll_owed(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.poll_owed(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
