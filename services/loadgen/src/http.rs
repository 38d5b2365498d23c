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
    /// The URL's path with `/orders` appended.
    path: String,
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
        Ok(Self {
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_owned(),
            path: format!("{}/orders", uri.path().trim_end_matches('/')),
        })
    }
}

type Driver = http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;

pub(crate) struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    /// The connection's I/O, polled only while a request is on it: nothing else reads from it
    /// between requests, so it needs no task of its own.
    driver: Pin<Box<Driver>>,
    /// The driver has finished (the connection is closed) and must not be polled again.
    ended: bool,
}

impl Connection {
    pub(crate) async fn open(target: &Target) -> anyhow::Result<Self> {
        let stream = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .with_context(|| format!("connect to {}", target.authority))?;
        stream.set_nodelay(true)?;
        let (sender, driver) = http1::handshake(TokioIo::new(stream)).await?;
        Ok(Self {
            sender,
            driver: Box::pin(driver),
            ended: false,
        })
    }

    /// Whether the connection can take a request: false when the order API closed it since the
    /// last response (`Connection: close`, an idle timeout), found before anything is sent on it.
    pub(crate) async fn ready(&mut self) -> bool {
        if self.ended {
            return false;
        }
        tokio::select! {
            biased;
            _ = self.driver.as_mut() => {
                self.ended = true;
                false
            }
            ready = self.sender.ready() => ready.is_ok(),
        }
    }

    /// Posts a JSON body and reads the whole response. An error leaves the connection unusable.
    pub(crate) async fn post(
        &mut self,
        target: &Target,
        body: Vec<u8>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = Request::post(target.path.as_str())
            .header(HOST, target.authority.as_str())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        anyhow::ensure!(!self.ended, "the connection is closed");
        let sender = &mut self.sender;
        let exchange = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        let mut exchange = std::pin::pin!(exchange);
        tokio::select! {
            biased;
            result = &mut exchange => result,
            ended = self.driver.as_mut() => {
                self.ended = true;
                ended?;
                // Closed after a response (`Connection: close`): the response, read in full
                // before the close, is still there; a request cut short fails.
                exchange.await
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
                path: "/orders".into(),
            }
        );
        let t = Target::parse("http://order.shop.svc/api/").expect("valid");
        assert_eq!((t.port, t.path.as_str()), (80, "/api/orders"));
        let t = Target::parse("http://[::1]:9000").expect("valid");
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        for bad in ["https://order:8443", "order:8080", "not a url"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
