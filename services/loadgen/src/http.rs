//! A keep-alive HTTP/1.1 connection to the order API, driven by the task that sends on it.

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use tokio::net::TcpStream;

/// Where orders go: `POST <order URL>/orders`, parsed once.
#[derive(Debug, PartialEq)]
pub(crate) struct Target {
    /// The host to connect to (an IPv6 address without its brackets).
    host: String,
    port: u16,
    /// The `Host` header: the URL's authority as given.
    authority: String,
    /// The request target: the URL's path with `/orders` appended.
    uri: Uri,
}

impl Target {
    pub(crate) fn parse(order_url: &str) -> anyhow::Result<Self> {
        let uri: Uri = order_url
            .parse()
            .with_context(|| format!("order URL `{order_url}`"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "order URL `{order_url}`: only http:// is supported (the load generator speaks plain HTTP/1.1)"
        );
        let authority = uri
            .authority()
            .with_context(|| format!("order URL `{order_url}` has no host"))?;
        anyhow::ensure!(
            !authority.as_str().contains('@') && uri.query().is_none(),
            "order URL `{order_url}`: give the API's base URL, without credentials or a query"
        );
        Ok(Self {
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_owned(),
            uri: format!("{}/orders", uri.path().trim_end_matches('/')).parse()?,
        })
    }
}

type Driver = http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// A request that failed, and whether it may have reached the order API.
pub(crate) struct Failure {
    pub(crate) error: anyhow::Error,
    /// False when the request was never written (the connection had closed): it can be sent
    /// again on a new connection without the API seeing it twice.
    pub(crate) written: bool,
}

impl Failure {
    fn unwritten(error: impl Into<anyhow::Error>) -> Self {
        Self {
            error: error.into(),
            written: false,
        }
    }

    fn written(error: impl Into<anyhow::Error>) -> Self {
        Self {
            error: error.into(),
            written: true,
        }
    }
}

pub(crate) struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    /// The connection's I/O, polled only while a request is on it: nothing else reads from it
    /// between requests, so it needs no task of its own. `None` once it has ended; dropping it
    /// fails whatever was still queued on it.
    driver: Option<Pin<Box<Driver>>>,
}

impl Connection {
    pub(crate) async fn open(target: &Target) -> anyhow::Result<Self> {
        let stream = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .with_context(|| format!("connect to {}", target.authority))?;
        stream.set_nodelay(true).context("set TCP_NODELAY")?;
        let (sender, driver) = http1::handshake(TokioIo::new(stream)).await?;
        Ok(Self {
            sender,
            driver: Some(Box::pin(driver)),
        })
    }

    /// Whether the connection can take a request: false when the order API closed it since the
    /// last response (`Connection: close`, an idle timeout), found before anything is sent on it.
    pub(crate) async fn ready(&mut self) -> bool {
        let Some(driver) = self.driver.as_mut() else {
            return false;
        };
        tokio::select! {
            biased;
            _ = driver.as_mut() => {
                self.driver = None;
                false
            }
            ready = self.sender.ready() => ready.is_ok(),
        }
    }

    /// Posts a JSON body and reads the whole response. A failure leaves the connection unusable.
    pub(crate) async fn post(
        &mut self,
        target: &Target,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let request = Request::post(target.uri.clone())
            .header(HOST, target.authority.as_str())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(Failure::unwritten)?;
        let Some(driver) = self.driver.as_mut() else {
            return Err(Failure::unwritten(anyhow::anyhow!(
                "the connection is closed"
            )));
        };
        let sender = &mut self.sender;
        let exchange = async {
            sender.ready().await.map_err(Failure::unwritten)?;
            let response = sender.try_send_request(request).await.map_err(|e| {
                let written = e.message().is_none();
                Failure {
                    error: e.into_error().into(),
                    written,
                }
            })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(Failure::written)?
                .to_bytes();
            Ok((status, body))
        };
        let mut exchange = std::pin::pin!(exchange);
        tokio::select! {
            biased;
            result = &mut exchange => result,
            ended = driver.as_mut() => {
                // Dropped, the driver fails a request still queued on it as never written; a
                // response read in full before the close (`Connection: close`) is still there.
                self.driver = None;
                match (exchange.await, ended) {
                    (Ok(response), _) => Ok(response),
                    // The connection's own error says more than the request's.
                    (Err(failure), Err(e)) => Err(Failure {
                        error: e.into(),
                        written: failure.written,
                    }),
                    (Err(failure), Ok(())) => Err(failure),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_url_gives_address_host_header_and_path() {
        let t = Target::parse("http://127.0.0.1:8080").expect("valid");
        assert_eq!(
            t,
            Target {
                host: "127.0.0.1".into(),
                port: 8080,
                authority: "127.0.0.1:8080".into(),
                uri: Uri::from_static("/orders"),
            }
        );
        let t = Target::parse("http://order.shop.svc/api/").expect("valid");
        assert_eq!((t.port, t.uri.path()), (80, "/api/orders"));
        let t = Target::parse("http://[::1]:9000").expect("valid");
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        for bad in [
            "https://order:8443",
            "order:8080",
            "not a url",
            "http://user:secret@order:8080",
            "http://order:8080/?debug=1",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
