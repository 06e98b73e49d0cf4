//! A request body with a deadline for the whole body, not per chunk: a client dripping one
//! byte every few seconds would reset a per-chunk timer forever, while the body limit alone
//! bounds only memory, not time.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

use crate::limits::ConnCounters;

/// The error a [`DeadlineBody`] yields once its deadline passes; [`super::ApiError`] turns it
/// into `408 body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within {0:?}")]
pub struct BodyTimedOut(pub Duration);

/// `inner`, failing with [`BodyTimedOut`] once `limit` has passed since it was wrapped.
pub(crate) struct DeadlineBody {
    inner: Body,
    sleep: Pin<Box<Sleep>>,
    limit: Duration,
    counters: Arc<ConnCounters>,
}

impl DeadlineBody {
    pub(crate) fn wrap(inner: Body, limit: Duration, counters: Arc<ConnCounters>) -> Body {
        Body::new(Self {
            inner,
            sleep: Box::pin(tokio::time::sleep(limit)),
            limit,
            counters,
        })
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        // Data already received is delivered even at the deadline; only waiting is cut short.
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.counters.body_timeouts_total.fetch_add(1, Relaxed);
                Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(this.limit)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `e` or any error below it is a [`BodyTimedOut`].
pub(crate) fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimedOut>() {
            return true;
        }
        cur = err.source();
    }
    false
}
