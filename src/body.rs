//! Request heads and bodies under deadlines, on every route.
//!
//! actix-web times out a request's head (`client_request_timeout`) but never its body: a client
//! that sent a head announcing 100 bytes and then one byte held its connection, and a file
//! descriptor, forever, and about a thousand such clients stopped the service for everyone
//! (issue 15). [`Bounded`], a middleware around the whole app, does two things:
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
//! actix times out only the *first* head of a connection, too: on a kept-alive connection,
//! once one byte of the next request has arrived, nothing ends it. [`Deadlined`] wraps each
//! connection's socket and gives the next head a deadline, [`NEXT_HEAD_TIMEOUT`] after the
//! previous answer; [`Bounded`] tells it when a request starts (no deadline while it is being
//! answered: the body has its own, and a decision may wait for an upstream) and when its answer
//! is written.
//!
//! `POST /auth` does not pass through [`Bounded`]: `server::auth_direct` reads its body under
//! the same [`Deadline`] and hands it to the answer ([`HeldRequest::Owned`]) when it did not
//! read it to its end, at no cost for a body read whole.
//!
//! MediaMTX sends its whole body at once, right behind the head: none of this ever touches it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{forward_ready, Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::error::PayloadError;
use actix_web::rt::time::{sleep_until, Instant, Sleep};
use actix_web::web::Bytes;
use actix_web::HttpMessage;
use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long a client has to send a request's body once its head has arrived. MediaMTX sends
/// both in one write; a couple of seconds is ample even for a loaded machine.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a kept-alive connection has, after an answer, to send the next request's head
/// entirely: the idle time actix allows (`server::KEEP_ALIVE`, after which it closes an idle
/// connection by itself), then as long as the first head of a connection gets
/// (`server::HEAD_TIMEOUT`).
pub const NEXT_HEAD_TIMEOUT: Duration = Duration::from_secs(7);

/// The middleware: see the module's documentation. (A `Transform` of its own rather than
/// `middleware::from_fn`, which boxes the inner service's future on every request.)
pub struct Bounded;

impl<S, B> Transform<S, ServiceRequest> for Bounded
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: Unpin,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<Held>;
    type Error = actix_web::Error;
    type Transform = BoundedService<S>;
    type InitError = ();
    type Future = std::future::Ready<Result<BoundedService<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        std::future::ready(Ok(BoundedService { service }))
    }
}

/// [`Bounded`] around the app's service, one per worker.
pub struct BoundedService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for BoundedService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: Unpin,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<Held>;
    type Error = actix_web::Error;
    type Future = BoundedCall<S::Future>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        // The connection's next-head deadline is off until this request's answer is written
        // (or the request fails on the way: the guard is dropped then).
        let answered = Answered::start(req.conn_data::<Rc<NextHead>>());
        let payload = req.take_payload();
        // No body (a GET, or a POST with Content-Length: 0): nothing to time or to hold.
        let body = (!matches!(payload, Payload::None)).then(|| {
            let body = Rc::new(RefCell::new(Deadline::new(payload, Instant::now())));
            let shared: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
                Box::pin(Shared(Rc::clone(&body)));
            req.set_payload(Payload::from(shared));
            body
        });
        BoundedCall {
            call: self.service.call(req),
            held: Some((body, answered)),
        }
    }
}

/// The inner service's answer, its body then held with the request's.
pub struct BoundedCall<F> {
    call: F,
    held: Option<(Option<Rc<RefCell<Deadline>>>, Answered)>,
}

impl<F, B> Future for BoundedCall<F>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>> + Unpin,
    B: MessageBody + 'static,
{
    type Output = Result<ServiceResponse<Held>, actix_web::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let res = std::task::ready!(Pin::new(&mut this.call).poll(cx))?;
        let (body, answered) = this.held.take().expect("polled after completion");
        let body = body.map(HeldRequest::Shared);
        Poll::Ready(Ok(res.map_body(|_, b| Held::new(b, body, answered))))
    }
}

/// Whether an error reading a body is [`Bounded`]'s timeout.
pub fn is_timeout(e: &PayloadError) -> bool {
    matches!(e, PayloadError::Io(e) if e.kind() == io::ErrorKind::TimedOut)
}

/// The request's body with its deadline. The timer is only started when the body is not all
/// there yet, so a request that arrives whole costs no timer, and no clock read beyond the one
/// its head's arrival was timed with.
///
/// "Not all there" is not the first poll's answer: actix polls the handler once as soon as the
/// head is parsed (`eager_poll`), before it has parsed the body that came in the same read,
/// and then again, in the same pass, once it has. Only a body still missing at that second
/// poll starts the timer. (`chunked_and_trickled_bodies_end` and
/// `a_head_without_its_body_is_answered_408` in the slow-client tests would catch an actix
/// that stopped polling twice.)
pub struct Deadline {
    payload: Payload,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    expired: bool,
    eager_poll: bool,
}

impl Deadline {
    /// `payload`, to arrive within [`BODY_TIMEOUT`] of `head`, when its head arrived.
    pub fn new(payload: Payload, head: Instant) -> Self {
        Deadline {
            payload,
            deadline: head + BODY_TIMEOUT,
            sleep: None,
            expired: false,
            eager_poll: true,
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

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // Checked before each read, so a body trickling in a byte at a time ends too. Only a
        // body that has had to wait has a timer, and the timer knows whether it has fired: no
        // clock read. (A body that never waited arrived within its deadline.)
        if this.expired || this.sleep.as_ref().is_some_and(|s| s.is_elapsed()) {
            return this.expire();
        }
        match Pin::new(&mut this.payload).poll_next(cx) {
            Poll::Pending if std::mem::take(&mut this.eager_poll) => return Poll::Pending,
            Poll::Pending => {}
            ready => {
                this.eager_poll = false;
                return ready;
            }
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => this.expire(),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// What the handler reads: the body, shared with the response that will hold it.
struct Shared(Rc<RefCell<Deadline>>);

impl Stream for Shared {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Never borrowed elsewhere while polled: the response only holds the Rc.
        Pin::new(&mut *self.0.borrow_mut()).poll_next(cx)
    }
}

/// A response body that keeps the request's body referenced until the response is written:
/// actix then closes a connection whose request body was left unread instead of draining it.
/// Dropped once written, it starts the connection's deadline for its next head.
pub struct Held {
    body: BoxBody,
    _request: Option<HeldRequest>,
    _answered: Answered,
}

/// The request body a response holds: shared with the handler that read it ([`Bounded`]), or
/// handed over by it (`/auth`, which reads its body itself and gives it up only when it did not
/// read it to its end).
pub enum HeldRequest {
    Shared(Rc<RefCell<Deadline>>),
    Owned(Deadline),
}

impl Held {
    pub fn new(
        body: impl MessageBody + 'static,
        request: Option<HeldRequest>,
        answered: Answered,
    ) -> Self {
        Held {
            body: BoxBody::new(body),
            _request: request,
            _answered: answered,
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

/// The deadline of a connection's next request head, shared by its socket ([`Deadlined`]) and
/// the middleware ([`Bounded`]) through the connection's data. `None` before the first request
/// (actix's own head timeout covers it) and while a request is being answered.
#[derive(Debug, Default)]
pub struct NextHead(Cell<Option<Instant>>);

/// A request being answered; dropped when its answer is written (or abandoned), which starts
/// the deadline for the connection's next head.
pub struct Answered {
    next_head: Option<Rc<NextHead>>,
    /// When the answer was ready, if the handler read the clock then anyway (`/auth`'s
    /// latency): the next head's deadline counts from it, with no clock read of its own.
    at: Cell<Option<Instant>>,
}

impl Answered {
    pub fn start(next_head: Option<&Rc<NextHead>>) -> Self {
        let next_head = next_head.map(Rc::clone);
        if let Some(n) = &next_head {
            n.0.set(None);
        }
        Answered {
            next_head,
            at: Cell::new(None),
        }
    }

    /// The answer was ready at `at`; it is written right away.
    pub fn ready_at(&self, at: Instant) {
        self.at.set(Some(at));
    }
}

impl Drop for Answered {
    fn drop(&mut self) {
        if let Some(n) = &self.next_head {
            let at = self.at.get().unwrap_or_else(Instant::now);
            n.0.set(Some(at + NEXT_HEAD_TIMEOUT));
        }
    }
}

/// A connection's socket whose reads fail with `TimedOut` once the next head's deadline
/// ([`NextHead`]) has passed; actix then drops the connection. Reads are only ever late while
/// actix waits for data, so the deadline is only looked at then.
///
/// One timer per connection, armed lazily: a deadline that moved later (every answer moves it)
/// leaves the timer where it was, and when it fires early it is set again to the deadline in
/// force. Under steady traffic a connection's timer is touched once per [`NEXT_HEAD_TIMEOUT`],
/// not once per request.
pub struct Deadlined<T> {
    io: T,
    next_head: Rc<NextHead>,
    timer: Option<Pin<Box<Sleep>>>,
    /// The waker the timer was last polled with. While it stands and the timer has not fired
    /// (it fires no later than the deadline in force: deadlines only move later), the timer need
    /// not be polled again: the reader is woken by then. Every answer moves the deadline, so
    /// this is what keeps a request from costing a timer poll and a waker clone.
    armed: Option<Waker>,
}

impl<T> Deadlined<T> {
    pub fn new(io: T) -> Self {
        Deadlined {
            io,
            next_head: Rc::default(),
            timer: None,
            armed: None,
        }
    }

    /// For the connection's data, where [`Bounded`] finds it.
    pub fn next_head(&self) -> Rc<NextHead> {
        Rc::clone(&self.next_head)
    }

    /// Called when a read found no data: `Ready(Err)` once the deadline has passed, else
    /// `Pending` with the timer armed to wake the reader by then.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(deadline) = self.next_head.0.get() else {
            return Poll::Pending;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        if let Some(waker) = &self.armed {
            if timer.deadline() <= deadline && waker.will_wake(cx.waker()) && !timer.is_elapsed() {
                return Poll::Pending;
            }
        }
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                self.armed = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if timer.deadline() >= deadline {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "next request head not received in time",
                )));
            }
            // Fired for an earlier deadline: set again, for the one in force.
            timer.as_mut().reset(deadline);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Deadlined<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => this.poll_deadline(cx),
            ready => ready,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Deadlined<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
