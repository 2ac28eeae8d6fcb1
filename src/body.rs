//! Request bodies under a deadline, on every route.
//!
//! actix-web times out a request's head (`client_request_timeout`) but never its body: a client
//! that sent a head announcing 100 bytes and then one byte held its connection, and a file
//! descriptor, forever, and about a thousand such clients stopped the service for everyone
//! (issue 15). [`bounded`], a middleware around the whole app, does two things:
//!
//! - A body must arrive within [`BODY_TIMEOUT`] of its head. Past that, reading it fails with an
//!   error [`is_timeout`] recognises, and `/auth` answers 408.
//! - A body nobody read to its end closes the connection once the answer is sent. actix does
//!   that by itself for a body of announced length, but a chunked body whose reader went away
//!   is drained to its end first, with no time limit at all: a client that stops mid-chunk
//!   after any answer (even `/healthz`'s) would hold the connection again. So the body stays
//!   referenced until the response is written, which makes actix close instead of drain (and
//!   wait at most `client_disconnect_timeout` for the client to close first).
//!
//! MediaMTX sends its whole body at once, right behind the head: none of this ever touches it.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::rt::time::{sleep_until, Instant, Sleep};
use actix_web::web::Bytes;
use actix_web::HttpMessage;
use futures_core::Stream;

/// How long a client has to send a request's body once its head has arrived. MediaMTX sends
/// both in one write; a couple of seconds is ample even for a loaded machine.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(2);

/// The middleware: see the module's documentation.
pub async fn bounded(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<Held>, actix_web::Error> {
    let payload = req.take_payload();
    // No body (a GET, or a POST with Content-Length: 0): nothing to time or to hold.
    if matches!(payload, Payload::None) {
        let res = next.call(req).await?;
        return Ok(res.map_body(|_, body| Held::new(body, None)));
    }
    let body = Rc::new(RefCell::new(Deadline {
        payload,
        deadline: Instant::now() + BODY_TIMEOUT,
        sleep: None,
        expired: false,
    }));
    let shared: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(Shared(Rc::clone(&body)));
    req.set_payload(Payload::from(shared));
    let res = next.call(req).await?;
    Ok(res.map_body(|_, b| Held::new(b, Some(body))))
}

/// Whether an error reading a body is [`bounded`]'s timeout.
pub fn is_timeout(e: &actix_web::Error) -> bool {
    matches!(e.as_error::<PayloadError>(), Some(PayloadError::Io(e)) if e.kind() == io::ErrorKind::TimedOut)
}

/// The request's body with its deadline. The timer is only started when the body is not all
/// there yet, so a request that arrives whole costs a clock read, not a timer.
struct Deadline {
    payload: Payload,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    expired: bool,
}

impl Deadline {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, PayloadError>>> {
        // Checked before each read, so a body trickling in a byte at a time ends too.
        if self.expired || Instant::now() >= self.deadline {
            return self.expire();
        }
        match Pin::new(&mut self.payload).poll_next(cx) {
            Poll::Pending => {}
            ready => return ready,
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => self.expire(),
            Poll::Pending => Poll::Pending,
        }
    }

    /// One error, then the end of the stream.
    fn expire(&mut self) -> Poll<Option<Result<Bytes, PayloadError>>> {
        if std::mem::replace(&mut self.expired, true) {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Err(PayloadError::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            "request body not received in time",
        )))))
    }
}

/// What the handler reads: the body, shared with the response that will hold it.
struct Shared(Rc<RefCell<Deadline>>);

impl Stream for Shared {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Never borrowed elsewhere while polled: the response only holds the Rc.
        self.0.borrow_mut().poll_next(cx)
    }
}

/// A response body that keeps the request's body referenced until the response is written:
/// actix then closes a connection whose request body was left unread instead of draining it.
pub struct Held {
    body: BoxBody,
    _request: Option<Rc<RefCell<Deadline>>>,
}

impl Held {
    fn new(body: impl MessageBody + 'static, request: Option<Rc<RefCell<Deadline>>>) -> Self {
        Held {
            body: BoxBody::new(body),
            _request: request,
        }
    }
}

impl MessageBody for Held {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }

    // `try_into_bytes` keeps its default (`Err(self)`): turning the response into bare bytes
    // would let go of the request body before the response is written.
}
