//! Answers the API's WebSocket upgrade requests (live output): checks the request's headers
//! with herd-ws, answers `101 Switching Protocols`, and once hyper hands over the upgraded
//! connection runs the handler on a [`herd_ws::WsConn`] over it. The protocol itself is
//! herd-ws's.
//!
//! Only HTTP/1.1 upgrades are accepted (what `herd` and browsers use); no extensions; the one
//! subprotocol `herd` when a client offers it (the dashboard does, with its key beside it).

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::WriteHalf;

type Io = TokioIo<hyper::upgrade::Upgraded>;

/// The one subprotocol herd's WebSocket speaks (the messages of herd-api's `attach`), named
/// by clients that offer subprotocols.
pub const PROTOCOL: &str = "herd";
/// An upgraded HTTP connection.
pub type Sock = herd_ws::WsConn<WriteHalf<Io>>;

/// The subprotocols an upgrade request offers (`Sec-WebSocket-Protocol`), in order.
pub fn offered_protocols(h: &http::HeaderMap) -> impl Iterator<Item = &str> {
    h.get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Answers a WebSocket upgrade request; once the connection is upgraded, `serve` runs with it.
/// A request that is not a valid upgrade gets a 400 with a one-line error.
pub fn upgrade<F, Fut>(mut req: Request, serve: F) -> Response
where
    F: FnOnce(Sock) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let accept = match herd_ws::accept_key(req.headers()) {
        Ok(a) => a,
        Err(e) => {
            let body = serde_json::json!({ "error": e.to_string() }).to_string();
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
        }
    };
    let offers_herd = offered_protocols(req.headers()).any(|p| p == PROTOCOL);
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let (r, w) = tokio::io::split(TokioIo::new(upgraded));
                serve(herd_ws::WsConn::new(r, w)).await;
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    let mut res = Response::new(axum::body::Body::empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    // A browser offers subprotocols (`herd`, and `herd-key.<key>` carrying its API key) and
    // closes a connection whose answer picks none: pick `herd`, never echo the key.
    if offers_herd {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(PROTOCOL),
        );
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use futures::{SinkExt, StreamExt};
    use herd_ws::Incoming;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::tungstenite::Message;

    /// Echoes text and binary messages back until the client closes.
    async fn echo(mut sock: Sock) {
        while let Some(Ok(msg)) = sock.recv().await {
            let sent = match msg {
                Incoming::Text(t) => sock.send_text(&t).await,
                Incoming::Binary(b) => sock.send_binary(&[&b[..1], &b[1..]]).await,
                Incoming::Ping(p) => sock.send_pong(&p).await,
                Incoming::Close => break,
            };
            if sent.is_err() {
                return;
            }
        }
        let _ = sock.close().await;
    }

    async fn server() -> std::net::SocketAddr {
        let app = Router::new().route("/ws", get(|req: Request| async { upgrade(req, echo) }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(crate::listen::serve(listener, app, None));
        addr
    }

    #[tokio::test]
    async fn picks_the_herd_subprotocol_and_never_echoes_a_key() {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let addr = server().await;
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        req.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("herd, herd-key.hk_0011_secret"),
        );
        let (mut client, res) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(res.headers()[header::SEC_WEBSOCKET_PROTOCOL], "herd");
        client.send(Message::Text("hi".into())).await.unwrap();
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::Text("hi".into())
        );
        // A client that offers none gets none.
        let (_, res) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .unwrap();
        assert!(res.headers().get(header::SEC_WEBSOCKET_PROTOCOL).is_none());
    }

    #[tokio::test]
    async fn upgrades_through_the_http_server() {
        let addr = server().await;
        let (mut client, res) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
        client.send(Message::Text("hello".into())).await.unwrap();
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::Text("hello".into())
        );
        let big = vec![3u8; 100_000];
        client
            .send(Message::Binary(big.clone().into()))
            .await
            .unwrap();
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::Binary(big.into())
        );
        client.close(None).await.unwrap();
        assert!(matches!(
            client.next().await,
            Some(Ok(Message::Close(_))) | None
        ));
    }

    #[tokio::test]
    async fn a_plain_request_gets_a_one_line_error() {
        let addr = server().await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /ws HTTP/1.1\r\nHost: herd\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut res = String::new();
        c.read_to_string(&mut res).await.unwrap();
        assert!(res.starts_with("HTTP/1.1 400"), "{res}");
        assert!(res.contains("connect with a WebSocket client"), "{res}");
    }
}
