//! `/api/v1/events`: one snapshot of the running system at once and then every second, as
//! server-sent events; `/api/v1/history`: what the store kept of the last minutes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::{Interval, MissedTickBehavior};

use super::{
    App, Daemon, HISTORY_RANGE_SECS, bad_request, error, no_pool, pool_param, with_checks,
};

/// The most event streams open at once; one more gets 503.
pub const MAX_EVENT_STREAMS: usize = 32;
/// How often an event stream sends a snapshot.
pub const EVENT_INTERVAL: Duration = Duration::from_secs(1);

/// What one stream carries along.
struct Feed {
    daemon: Arc<dyn Daemon>,
    pool: Option<String>,
    ticks: Interval,
    stopped: Option<watch::Receiver<bool>>,
    /// Held for the life of the stream.
    _permit: OwnedSemaphorePermit,
}

impl Feed {
    /// The next event, or `None` once the server stops or the pool is gone.
    async fn next(&mut self) -> Option<Event> {
        let Feed {
            daemon,
            pool,
            ticks,
            stopped,
            ..
        } = self;
        let stop = async {
            match stopped.as_mut() {
                // An error means the server is gone: stop as well.
                Some(rx) => {
                    let _ = rx.wait_for(|stopped| *stopped).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = stop => None,
            _ = ticks.tick() => {
                // Off the server's threads: a snapshot may wait for a lock (the model's while
                // it trains).
                let (daemon, pool) = (daemon.clone(), pool.clone());
                let body = tokio::task::spawn_blocking(move || {
                    let snapshot = daemon.snapshot(pool.as_deref())?;
                    Some(with_checks(&*daemon, snapshot).to_string())
                })
                .await
                .ok()??;
                Some(Event::default().event("snapshot").data(body))
            }
        }
    }
}

fn stream(feed: Feed) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(event), feed))
    })
}

/// `GET /api/v1/events?pool=NAME`: a `snapshot` event at once and one every
/// [`EVENT_INTERVAL`], each the JSON of [`Daemon::snapshot`] with the readiness checks.
pub(super) async fn events(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let pool = match pool_param(&params) {
        Ok(p) => p.map(str::to_owned),
        Err(e) => return bad_request(e),
    };
    if app.daemon.snapshot(pool.as_deref()).is_none() {
        return no_pool(pool.as_deref());
    }
    let Ok(permit) = app.streams.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{MAX_EVENT_STREAMS} event streams are open already, the most served at once; \
                 close a dashboard or retry later"
            ),
        );
    };
    let mut ticks = tokio::time::interval(EVENT_INTERVAL);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let feed = Feed {
        daemon: app.daemon,
        pool,
        ticks,
        stopped: app.stopped,
        _permit: permit,
    };
    Sse::new(stream(feed))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `GET /api/v1/history?range_secs=60..=3600&pool=NAME`: [`Daemon::history`].
pub(super) async fn history(
    State(daemon): State<Arc<dyn Daemon>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let pool = match pool_param(&params) {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    let (lo, hi) = (*HISTORY_RANGE_SECS.start(), *HISTORY_RANGE_SECS.end());
    let range = match params.get("range_secs") {
        None => 300,
        Some(text) => match text.parse::<u64>() {
            Ok(n) if HISTORY_RANGE_SECS.contains(&n) => n,
            _ => return bad_request(format!("range_secs={text:?}, expected {lo} to {hi}")),
        },
    };
    match daemon.history(pool, range) {
        Ok(Some(answer)) => axum::Json(answer).into_response(),
        Ok(None) => no_pool(pool),
        Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, why),
    }
}
