//! A watch that starts over with a complete list after every error, pausing per
//! [`WatchBackoff`] between attempts.
//!
//! kube's `watcher` recovers from a connection error by re-watching from the last
//! resourceVersion, and when that works it yields nothing: its user cannot tell whether the
//! cache is current again, or whether it ever will be (an idle cluster sends no event). A fresh
//! watcher begins with a list whose `InitDone` says exactly that, as client-go's reflector
//! relists after a failed watch. The price is one list per failure, and after an outage long
//! enough to expire the resourceVersion (`410 Gone`) kube's watcher relists anyway.

use std::fmt::Debug;
use std::time::Duration;

use futures::stream::{BoxStream, Stream, StreamExt};
use kube::Resource;
use kube::api::Api;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;

use super::backoff::WatchBackoff;

/// Watches `api` like `watcher(api, config)`, but after each error (yielded, so its user can
/// react at once) it drops that watcher, waits for the backoff and starts a fresh one. The
/// backoff resets when the watch itself has delivered a change, not on the first `Ok` item (a
/// fresh watcher yields `Init` before its list request is even sent) nor at `InitDone`: a
/// server that lists but refuses the watch (429 under load, a proxy cutting long requests)
/// would otherwise get a full list at the first delay, forever. On an idle cluster the delay
/// stays where the last failure left it, at most the cap. `resource` names the watch in logs.
pub fn relisting_watcher<K>(
    resource: &'static str,
    api: Api<K>,
    config: watcher::Config,
    backoff: WatchBackoff,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let state = Relisting {
        resource,
        api,
        config,
        backoff,
        current: None,
        pause: None,
    };
    futures::stream::unfold(state, |mut state| async move {
        let item = state.next().await;
        Some((item, state))
    })
}

struct Relisting<K: 'static> {
    resource: &'static str,
    api: Api<K>,
    config: watcher::Config,
    backoff: WatchBackoff,
    /// The watcher in use; `None` after an error.
    current: Option<BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>>,
    /// How long to wait before building the next watcher.
    pause: Option<Duration>,
}

impl<K> Relisting<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    async fn next(&mut self) -> Result<watcher::Event<K>, watcher::Error> {
        loop {
            // The pause follows the error rather than preceding it, so the user hears of the
            // error (and readiness drops) at once.
            if let Some(pause) = self.pause.take() {
                tokio::time::sleep(pause).await;
            }
            let current = self
                .current
                .get_or_insert_with(|| watcher(self.api.clone(), self.config.clone()).boxed());
            match current.next().await {
                Some(Ok(event)) => {
                    if matches!(event, watcher::Event::Apply(_) | watcher::Event::Delete(_)) {
                        self.backoff.reset();
                    }
                    return Ok(event);
                }
                Some(Err(error)) => {
                    self.current = None;
                    let pause = self.backoff.next_delay();
                    self.pause = Some(pause);
                    tracing::warn!(
                        resource = self.resource,
                        error = %error,
                        retry_in = ?pause,
                        "watch failed; starting over with a full list"
                    );
                    return Err(error);
                }
                // kube's watcher never ends; if it did, a fresh one (after a pause, so this
                // cannot spin) is the only way on.
                None => {
                    self.current = None;
                    self.pause = Some(self.backoff.next_delay());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response, StatusCode};
    use k8s_openapi::api::core::v1::Pod;
    use kube::Client;
    use kube::client::Body;
    use serde_json::json;

    fn reply(status: StatusCode, body: serde_json::Value) -> Response<Body> {
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("a response")
    }

    fn failure() -> Response<Body> {
        reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500,
                   "reason": "InternalError", "message": "etcd is down"}),
        )
    }

    fn pod_list(resource_version: &str) -> Response<Body> {
        reply(
            StatusCode::OK,
            json!({"kind": "PodList", "apiVersion": "v1",
                   "metadata": {"resourceVersion": resource_version},
                   "items": [{"metadata": {"name": "web-1", "namespace": "ns",
                                           "resourceVersion": resource_version}}]}),
        )
    }

    fn is_watch(request: &Request<Body>) -> bool {
        request
            .uri()
            .query()
            .is_some_and(|query| query.contains("watch=true"))
    }

    fn kind(item: &Result<watcher::Event<Pod>, watcher::Error>) -> &'static str {
        match item {
            Ok(watcher::Event::Init) => "Init",
            Ok(watcher::Event::InitApply(_)) => "InitApply",
            Ok(watcher::Event::InitDone) => "InitDone",
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => "Change",
            Err(_) => "Error",
        }
    }

    #[tokio::test]
    async fn every_error_is_followed_by_a_complete_list_not_a_resumed_watch() {
        let (service, mut server) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api: Api<Pod> = Api::namespaced(Client::new(service, "ns"), "ns");
        let tiny = Duration::from_millis(1);
        let mut items = std::pin::pin!(relisting_watcher(
            "pods",
            api,
            watcher::Config::default(),
            WatchBackoff::new(tiny, tiny)
        ));
        let mut seen = Vec::new();

        // A list that fails; the fresh watcher's list succeeds.
        let answers = async {
            let (request, send) = server.next_request().await.expect("a first list");
            assert!(!is_watch(&request), "{}", request.uri());
            send.send_response(failure());
            let (request, send) = server.next_request().await.expect("a second list");
            assert!(!is_watch(&request), "{}", request.uri());
            send.send_response(pod_list("5"));
            // The watch from the list's version fails to start ...
            let (request, send) = server.next_request().await.expect("a watch");
            assert!(is_watch(&request), "{}", request.uri());
            send.send_response(failure());
            // ... and what follows is a full list again, where kube's watcher alone would
            // retry the watch from resourceVersion 5 and yield nothing when that worked.
            let (request, send) = server.next_request().await.expect("a third list");
            assert!(!is_watch(&request), "{}", request.uri());
            send.send_response(pod_list("7"));
        };
        let consume = async {
            for _ in 0..9 {
                let item = items.next().await.expect("the stream never ends");
                seen.push(kind(&item));
            }
        };
        tokio::join!(answers, consume);
        assert_eq!(
            seen,
            [
                "Init",
                "Error",
                "Init",
                "InitApply",
                "InitDone",
                "Error",
                "Init",
                "InitApply",
                "InitDone"
            ]
        );
    }
}
