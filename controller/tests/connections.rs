//! The controller's Kubernetes clients against the real API server: they speak HTTP/2 (ALPN),
//! and the live-state watches share connections, a new one opening when one carries its share
//! of streams (`argo_drift_cluster::connect`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use argo_drift_cluster::connect::{self, WatchConnections};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use support::*;

/// The HTTP version the API server answered `client`'s request for `/version` with.
async fn version_spoken(client: &kube::Client) -> http::Version {
    let request = http::Request::get("/version")
        .body(kube::client::Body::empty())
        .unwrap();
    let response = client.send(request).await.unwrap();
    assert!(response.status().is_success(), "{:?}", response.status());
    response.version()
}

#[tokio::test]
async fn the_api_server_is_spoken_to_over_http2() {
    let config = admin_config().await;
    let client = connect::client(&config).unwrap();
    assert_eq!(version_spoken(&client).await, http::Version::HTTP_2);
    // kube's own client, for comparison: one HTTP/1.1 connection per request in flight.
    let kube_client = kube::Client::try_from(config).unwrap();
    assert_eq!(version_spoken(&kube_client).await, http::Version::HTTP_11);
}

#[tokio::test]
async fn watches_past_a_connections_share_open_another_and_each_sees_its_changes() {
    let admin = client().await;
    let connections = WatchConnections::new(admin_config().await, 2);
    let mut watches = Vec::new();
    for _ in 0..5 {
        let namespace = fresh_namespace(&admin, "conn").await;
        let place = connections.place().unwrap();
        assert_eq!(version_spoken(&place.client()).await, http::Version::HTTP_2);
        let api: Api<ConfigMap> = Api::namespaced(place.client(), &namespace);
        let stream = watcher::watcher(api, watcher::Config::default()).boxed();
        watches.push((namespace, place, stream));
    }
    // Two watches on each of the first two connections, the fifth on a third.
    assert_eq!(connections.connections(), 3);

    // Every watch lists, then sees the ConfigMap created in its namespace.
    for (namespace, _, stream) in &mut watches {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "seen"}, "data": {"k": "v"}}))
                .unwrap();
        Api::<ConfigMap>::namespaced(admin.clone(), namespace)
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(event) = stream.next().await {
                match event.unwrap() {
                    Event::Apply(o) | Event::InitApply(o)
                        if o.metadata.name.as_deref() == Some("seen") =>
                    {
                        return true;
                    }
                    _ => {}
                }
            }
            false
        })
        .await;
        assert_eq!(seen, Ok(true), "the watch in {namespace} saw its ConfigMap");
    }

    // A place given back makes room: the next watch goes there, no fourth connection.
    let (_, freed, _) = watches.remove(0);
    drop(freed);
    let again = connections.place().unwrap();
    assert_eq!(connections.connections(), 3);
    drop(again);
    // A connection is closed with its last watch.
    let (_, freed, _) = watches.pop().unwrap();
    drop(freed);
    assert_eq!(connections.connections(), 2);
    watches.clear();
    assert_eq!(connections.connections(), 0);
}
