//! A deadline for the whole request body of every route, so that a client that sends
//! its body slowly (one byte now and then) cannot hold a connection and a handler for
//! longer than `body_read_timeout_seconds`, whatever the route reads the body with.
//!
//! tower-http's `RequestBodyTimeout` restarts its timer at every frame, which is what a
//! slow client defeats; here the deadline is fixed when the request head has arrived.
//! Ingest handlers answer 408 (see `batch::read_body`); routes that read the body with
//! axum's `Bytes` answer axum's 400 naming the deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::AppState;

/// The body did not arrive within the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request body did not arrive within {seconds} seconds")]
pub struct BodyDeadlineElapsed {
    pub seconds: u64,
}

/// Whether `error` (or one of its sources) is a [`BodyDeadlineElapsed`].
pub fn is_deadline_elapsed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<BodyDeadlineElapsed>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// The middleware: gives every request that may carry a body a [`DeadlineBody`].
pub(super) async fn body_deadline(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let seconds = state.config().body_read_timeout_seconds;
    let request = request.map(|body| Body::new(DeadlineBody::new(body, seconds)));
    next.run(request).await
}

/// A body that fails with [`BodyDeadlineElapsed`] once its deadline has passed, both
/// while waiting for data and when data arrives late. The timer is made only when the
/// body is not ready at once, so a body that came with its head costs no timer.
pub struct DeadlineBody {
    inner: Body,
    deadline: Instant,
    seconds: u64,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    pub fn new(inner: Body, seconds: u64) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Instant::now() + Duration::from_secs(seconds),
            seconds,
            sleep: None,
        }
    }

    fn elapsed(&self) -> axum::Error {
        axum::Error::new(BodyDeadlineElapsed {
            seconds: self.seconds,
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
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(_))) if Instant::now() >= this.deadline => {
                Poll::Ready(Some(Err(this.elapsed())))
            }
            Poll::Ready(frame) => Poll::Ready(frame),
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(this.elapsed()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
