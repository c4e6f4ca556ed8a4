//! Kubernetes clients that speak HTTP/2 when the API server offers it, as client-go's do.
//!
//! kube's own client offers only HTTP/1.1 (kube-client 5.0.0, `ConfigExt::
//! rustls_https_connector_with_connector` enables HTTP/1 alone), so every watch holds a TCP and
//! TLS connection of its own, with its buffers, for as long as it runs. A replica watches a
//! (kind, namespace) pair per application namespace — over a thousand at fleet scale. Over
//! HTTP/2 a watch is one stream of a shared connection instead.
//!
//! The API server limits the streams it allows on one connection (kube-apiserver's
//! `--http2-max-streams-per-connection`; 0, its default, means Go's default of 250), and a
//! request over that limit waits until another stream ends — for a watch, minutes. So watches
//! are spread over several connections ([`WatchConnections`]), at most [`STREAMS_PER_CONNECTION`]
//! on each, which leaves room on every connection for the lists a watch makes when it starts.
//!
//! The layers are kube's own (base URI, retries, authentication, extra headers and
//! impersonation, timeouts), built from the same [`kube::Config`], so a client from here
//! authenticates and verifies the server exactly as `kube::Client::try_from` would.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::ConfigExt as _;
use kube::Client;
use tower::ServiceBuilder;

use crate::lock;

/// Watches one connection carries at most: well under Go's default limit of 250 streams.
pub const STREAMS_PER_CONNECTION: usize = 100;

/// An HTTP/2 connection that answers no PING within this long is closed, and its requests fail
/// (a watch then starts again on a new connection). client-go pings after 30 s without a
/// frame and gives up 15 s later (`ReadIdleTimeout`, `PingTimeout` in client-go's
/// `transport/cache.go`); these are the same.
const PING_EVERY: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// How much the server may send on a stream, and on a connection, before we have read it.
/// What it sends ahead waits in our memory (over HTTP/1.1 it waited in the kernel's socket
/// buffer), so hyper's defaults (2 MiB a stream, 5 MiB a connection) are lowered: a watch reads
/// its events as they come, and the lists at start-up are read at the pace analysis takes them.
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;

/// A client for `config` that speaks HTTP/2 when the server offers it (ALPN `h2`, else
/// HTTP/1.1), its requests counted in [`crate::metrics::kube_requests`]. Every request of one
/// client shares one connection (HTTP/2) or its pool (HTTP/1.1).
pub fn client(config: &kube::Config) -> Result<Client, kube::Error> {
    if config.proxy_url.is_some() {
        // A proxy (a cluster Secret's `proxyUrl`): kube's own stack tunnels through it, or says
        // why it cannot; this one does not, and must not silently connect around it.
        return Ok(kube::client::ClientBuilder::try_from(config.clone())?
            .with_layer(&tower::util::MapRequestLayer::new(
                crate::metrics::count_request::<kube::client::Body>,
            ))
            .build());
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let mut https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls_pki_types::ServerName::try_from(name.clone()).map_err(|e| {
            kube::Error::RustlsTls(kube::client::RustlsTlsError::InvalidServerName(e))
        })?;
        https = https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let mut connector =
        hyper_timeout::TimeoutConnector::new(https.enable_all_versions().wrap_connector(http));
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let http_client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .http2_keep_alive_interval(PING_EVERY)
            .http2_keep_alive_timeout(PING_TIMEOUT)
            .http2_keep_alive_while_idle(true)
            .http2_initial_stream_window_size(STREAM_WINDOW)
            .http2_initial_connection_window_size(CONNECTION_WINDOW)
            .build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.default_retry.then(|| {
            tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry())
        }))
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_request(crate::metrics::count_request::<kube::client::Body>)
        .map_err(tower::BoxError::from)
        .service(http_client);
    Ok(kube::client::ClientBuilder::new(service, config.default_namespace.clone()).build())
}

/// The connections a cluster's watches use: a watch takes a place on a connection with room
/// ([`WatchConnections::place`]) and gives it back when it ends (the [`Place`] is dropped). A
/// connection with no watches left is closed with its last client.
pub struct WatchConnections {
    config: kube::Config,
    per_connection: usize,
    connections: Arc<Mutex<Vec<Connection>>>,
}

struct Connection {
    id: u64,
    client: Client,
    watches: usize,
}

/// A watch's place on a connection.
pub struct Place {
    client: Client,
    id: u64,
    connections: Arc<Mutex<Vec<Connection>>>,
}

impl Place {
    /// The client whose connection this place is on.
    pub fn client(&self) -> Client {
        self.client.clone()
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut connections = lock(&self.connections);
        if let Some(i) = connections.iter().position(|c| c.id == self.id) {
            connections[i].watches -= 1;
            if connections[i].watches == 0 {
                connections.swap_remove(i);
            }
        }
    }
}

impl WatchConnections {
    pub fn new(config: kube::Config, per_connection: usize) -> WatchConnections {
        WatchConnections {
            config,
            per_connection: per_connection.max(1),
            connections: Arc::default(),
        }
    }

    /// A place for one more watch: on the fullest connection that has room (so connections
    /// fill up before new ones open), or on a new connection.
    pub fn place(&self) -> Result<Place, kube::Error> {
        let mut connections = lock(&self.connections);
        let fullest = connections
            .iter()
            .enumerate()
            .filter(|(_, c)| c.watches < self.per_connection)
            .max_by_key(|(_, c)| c.watches)
            .map(|(i, _)| i);
        let i = match fullest {
            Some(i) => i,
            None => {
                let id = connections.iter().map(|c| c.id + 1).max().unwrap_or(0);
                connections.push(Connection {
                    id,
                    client: client(&self.config)?,
                    watches: 0,
                });
                connections.len() - 1
            }
        };
        let connection = &mut connections[i];
        connection.watches += 1;
        Ok(Place {
            client: connection.client.clone(),
            id: connection.id,
            connections: self.connections.clone(),
        })
    }

    /// The connections open for watches now.
    pub fn connections(&self) -> usize {
        lock(&self.connections).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster behind a proxy is left to kube's own stack, which tunnels through it or says
    /// why it cannot; it is never connected to directly.
    #[test]
    fn a_proxied_cluster_is_never_connected_to_around_its_proxy() {
        let mut config = kube::Config::new("https://10.0.0.1:6443".parse().unwrap());
        config.proxy_url = Some("http://proxy.internal:3128".parse().unwrap());
        let error = client(&config)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let kube_error = kube::Client::try_from(config)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(error, kube_error);
        assert!(error.contains("proxy"), "{error}");
    }
}
