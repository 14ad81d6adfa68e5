//! Against a standard client (tokio-tungstenite), after a real opening handshake.

use futures::{SinkExt, StreamExt};
use herd_ws::Incoming;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

use crate::support::{client_pair, received};

/// Payload lengths at each edge of the three length encodings.
const LENGTHS: [usize; 8] = [0, 1, 125, 126, 127, 65_535, 65_536, 300_000];

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + len) as u8).collect()
}

async fn next(client: &mut WebSocketStream<TcpStream>) -> Message {
    client.next().await.unwrap().unwrap()
}

async fn send_frame(client: &mut WebSocketStream<TcpStream>, data: &[u8], kind: Data, fin: bool) {
    let frame = Frame::message(data.to_vec(), OpCode::Data(kind), fin);
    client.send(Message::Frame(frame)).await.unwrap();
}

#[tokio::test]
async fn text_both_ways() {
    let (mut server, mut client) = client_pair().await;
    server.send_text("hello, wörld").await.unwrap();
    assert_eq!(
        next(&mut client).await,
        Message::Text("hello, wörld".into())
    );
    client
        .send(Message::Text("{\"type\":\"eof\"}".into()))
        .await
        .unwrap();
    assert_eq!(
        received(&mut server).await,
        Incoming::Text("{\"type\":\"eof\"}".into())
    );
}

#[tokio::test]
async fn server_messages_of_every_length_encoding() {
    let (mut server, mut client) = client_pair().await;
    for len in LENGTHS {
        // From three parts, one of them empty: the frame is the parts joined.
        let data = pattern(len);
        let (a, b) = data.split_at(len / 3);
        server.send_binary(&[a, b"", b]).await.unwrap();
        assert_eq!(
            next(&mut client).await,
            Message::Binary(data.into()),
            "{len}"
        );
        let text = "é".repeat(len / 2);
        server.send_text(&text).await.unwrap();
        assert_eq!(next(&mut client).await, Message::Text(text.into()), "{len}");
    }
}

#[tokio::test]
async fn client_messages_of_every_length_encoding() {
    let (mut server, mut client) = client_pair().await;
    for len in LENGTHS {
        let data = pattern(len);
        client
            .send(Message::Binary(data.clone().into()))
            .await
            .unwrap();
        assert_eq!(
            received(&mut server).await,
            Incoming::Binary(data.into()),
            "{len}"
        );
        let text = "x".repeat(len);
        client
            .send(Message::Text(text.clone().into()))
            .await
            .unwrap();
        assert_eq!(received(&mut server).await, Incoming::Text(text), "{len}");
    }
}

#[tokio::test]
async fn a_ping_is_answered_by_the_caller_only() {
    let (mut server, mut client) = client_pair().await;
    client
        .send(Message::Ping(b"hi".to_vec().into()))
        .await
        .unwrap();
    client.send(Message::Text("after".into())).await.unwrap();
    assert_eq!(
        received(&mut server).await,
        Incoming::Ping(b"hi".to_vec().into())
    );
    assert_eq!(received(&mut server).await, Incoming::Text("after".into()));
    // Had the connection answered the ping by itself, its pong would come first.
    server.send_text("first").await.unwrap();
    server.send_pong(b"hi").await.unwrap();
    assert_eq!(next(&mut client).await, Message::Text("first".into()));
    assert_eq!(
        next(&mut client).await,
        Message::Pong(b"hi".to_vec().into())
    );
}

#[tokio::test]
async fn pongs_are_dropped() {
    let (mut server, mut client) = client_pair().await;
    client
        .send(Message::Pong(b"unasked".to_vec().into()))
        .await
        .unwrap();
    client.send(Message::Text("after".into())).await.unwrap();
    assert_eq!(received(&mut server).await, Incoming::Text("after".into()));
}

#[tokio::test]
async fn fragmented_messages_with_control_frames_between_fragments() {
    let (mut server, mut client) = client_pair().await;
    // Text cut inside a two-byte character, a ping between its fragments.
    let text = "grüße".as_bytes();
    send_frame(&mut client, &text[..3], Data::Text, false).await;
    client
        .send(Message::Ping(b"p".to_vec().into()))
        .await
        .unwrap();
    send_frame(&mut client, &text[3..], Data::Continue, true).await;
    // Binary in three fragments, a pong (dropped) and a ping between them, one empty.
    send_frame(&mut client, b"frag", Data::Binary, false).await;
    client
        .send(Message::Pong(b"q".to_vec().into()))
        .await
        .unwrap();
    send_frame(&mut client, b"", Data::Continue, false).await;
    client
        .send(Message::Ping(b"r".to_vec().into()))
        .await
        .unwrap();
    send_frame(&mut client, b"ment", Data::Continue, true).await;

    assert_eq!(
        received(&mut server).await,
        Incoming::Ping(b"p".to_vec().into())
    );
    assert_eq!(received(&mut server).await, Incoming::Text("grüße".into()));
    assert_eq!(
        received(&mut server).await,
        Incoming::Ping(b"r".to_vec().into())
    );
    assert_eq!(
        received(&mut server).await,
        Incoming::Binary(b"fragment".to_vec().into())
    );
}

#[tokio::test]
async fn client_close_ends_recv_and_its_code_is_echoed() {
    let (mut server, mut client) = client_pair().await;
    let bye = CloseFrame {
        code: CloseCode::Away,
        reason: "bye".into(),
    };
    client.close(Some(bye)).await.unwrap();
    assert_eq!(received(&mut server).await, Incoming::Close);
    assert!(server.recv().await.is_none());
    server.close().await.unwrap();
    match next(&mut client).await {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Away),
        other => panic!("expected the echoed close, got {other:?}"),
    }
}

#[tokio::test]
async fn server_close_reaches_the_client_and_ends_sending() {
    let (mut server, mut client) = client_pair().await;
    server.close().await.unwrap();
    server.close().await.unwrap();
    assert_eq!(next(&mut client).await, Message::Close(None));
    // The client sends its answering close as it reads on, and then sees the stream end.
    assert!(client.next().await.is_none());
    let err = server.send_text("late").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
    // The client's answering close is the last thing the server reads.
    assert_eq!(received(&mut server).await, Incoming::Close);
    assert!(server.recv().await.is_none());
}
