//! Hand-written frames: the exact bytes on the wire, and the malformed, oversize and
//! truncated input a standard client never sends.

use herd_ws::{Incoming, MAX_INCOMING, ProtocolError};
use tokio::io::AsyncWriteExt;

use crate::support::{
    BINARY, CLOSE, CONT, FIN, PING, PONG, TEXT, expect_close, frame, head, raw_pair,
    read_server_frame, received, refused,
};

#[tokio::test]
async fn server_frames_use_the_shortest_length_encoding() {
    let (mut server, mut c) = raw_pair().await;
    let cases: [(usize, &[u8]); 5] = [
        (0, &[0x82, 0]),
        (125, &[0x82, 125]),
        (126, &[0x82, 126, 0, 126]),
        (65_535, &[0x82, 126, 0xFF, 0xFF]),
        (65_536, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
    ];
    for (len, header) in cases {
        let data = vec![0xA5; len];
        server.send_binary(&[&data]).await.unwrap();
        let f = read_server_frame(&mut c).await;
        assert_eq!(f.header, header, "{len}");
        assert_eq!(f.payload, data, "{len}");
    }
    server.send_text("t").await.unwrap();
    assert_eq!(read_server_frame(&mut c).await.header, [FIN | TEXT, 1]);
    server.send_pong(&[7; 200]).await.unwrap();
    let pong = read_server_frame(&mut c).await;
    assert_eq!((pong.b0, pong.payload.len()), (FIN | PONG, 125));
}

#[tokio::test]
async fn client_frames_of_every_length_encoding() {
    let (mut server, mut c) = raw_pair().await;
    for len in [0usize, 1, 7, 125, 126, 65_535, 65_536, 200_003] {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        c.write_all(&frame(FIN | BINARY, &data)).await.unwrap();
        assert_eq!(
            received(&mut server).await,
            Incoming::Binary(data.into()),
            "{len}"
        );
    }
}

#[tokio::test]
async fn unmasked_client_frame_is_refused() {
    let (mut server, mut c) = raw_pair().await;
    c.write_all(&[FIN | BINARY, 0x01, 0x00]).await.unwrap();
    assert_eq!(refused(&mut server).await, ProtocolError::Unmasked);
    server.close().await.unwrap();
    expect_close(&mut c, Some(1002)).await;
}

#[tokio::test]
async fn reserved_bits_are_refused() {
    for rsv in [0x40, 0x20, 0x10] {
        let (mut server, mut c) = raw_pair().await;
        c.write_all(&frame(FIN | rsv | TEXT, b"x")).await.unwrap();
        assert_eq!(
            refused(&mut server).await,
            ProtocolError::ReservedBits,
            "{rsv:#x}"
        );
    }
}

#[tokio::test]
async fn reserved_opcodes_are_refused() {
    for op in [0x3, 0x7, 0xB, 0xF] {
        let (mut server, mut c) = raw_pair().await;
        c.write_all(&frame(FIN | op, b"")).await.unwrap();
        assert_eq!(refused(&mut server).await, ProtocolError::UnknownOpcode(op));
    }
}

#[tokio::test]
async fn continuation_without_a_start_is_refused() {
    let (mut server, mut c) = raw_pair().await;
    c.write_all(&frame(FIN | CONT, b"orphan")).await.unwrap();
    assert_eq!(
        refused(&mut server).await,
        ProtocolError::UnexpectedContinuation
    );
    server.close().await.unwrap();
    expect_close(&mut c, Some(1002)).await;
}

#[tokio::test]
async fn a_new_message_inside_a_fragmented_one_is_refused() {
    let (mut server, mut c) = raw_pair().await;
    c.write_all(&frame(BINARY, b"first half")).await.unwrap();
    c.write_all(&frame(FIN | TEXT, b"interloper"))
        .await
        .unwrap();
    assert_eq!(refused(&mut server).await, ProtocolError::UnfinishedMessage);
}

#[tokio::test]
async fn a_fragmented_control_frame_is_refused() {
    for op in [PING, PONG, CLOSE] {
        let (mut server, mut c) = raw_pair().await;
        c.write_all(&frame(op, b"part")).await.unwrap();
        assert_eq!(refused(&mut server).await, ProtocolError::FragmentedControl);
    }
}

#[tokio::test]
async fn a_control_frame_longer_than_125_is_refused() {
    for op in [PING, PONG, CLOSE] {
        let (mut server, mut c) = raw_pair().await;
        c.write_all(&frame(FIN | op, &[b'p'; 126])).await.unwrap();
        assert_eq!(refused(&mut server).await, ProtocolError::ControlTooLong);
    }
    // 125 is the most a control frame may carry.
    let (mut server, mut c) = raw_pair().await;
    c.write_all(&frame(FIN | PING, &[b'p'; 125])).await.unwrap();
    assert_eq!(
        received(&mut server).await,
        Incoming::Ping(vec![b'p'; 125].into())
    );
}

/// The header alone is sent: a server that read (or allocated) the payload before checking
/// its length would wait for bytes that never come instead of refusing.
#[tokio::test]
async fn an_oversize_frame_is_refused_at_its_header() {
    for len in [MAX_INCOMING as u64 + 1, 1 << 40, u64::MAX] {
        let (mut server, mut c) = raw_pair().await;
        c.write_all(&head(FIN | BINARY, len)).await.unwrap();
        assert_eq!(refused(&mut server).await, ProtocolError::TooLarge, "{len}");
        server.close().await.unwrap();
        expect_close(&mut c, Some(1009)).await;
    }
}

#[tokio::test]
async fn a_fragmented_message_growing_over_the_limit_is_refused_at_that_header() {
    let (mut server, mut c) = raw_pair().await;
    let first = vec![1u8; 1 << 20];
    c.write_all(&frame(TEXT, &first)).await.unwrap();
    c.write_all(&frame(CONT, &first)).await.unwrap();
    let rest = (MAX_INCOMING - 2 * first.len()) as u64;
    c.write_all(&head(FIN | CONT, rest + 1)).await.unwrap();
    assert_eq!(refused(&mut server).await, ProtocolError::TooLarge);
}

#[tokio::test]
async fn a_message_of_exactly_the_limit_is_accepted() {
    let (mut server, mut c) = raw_pair().await;
    let half = vec![0x5Au8; MAX_INCOMING / 2];
    let writer = tokio::spawn(async move {
        c.write_all(&frame(BINARY, &half)).await.unwrap();
        c.write_all(&frame(FIN | CONT, &half)).await.unwrap();
        c
    });
    match received(&mut server).await {
        Incoming::Binary(b) => {
            assert_eq!(b.len(), MAX_INCOMING);
            assert!(b.iter().all(|&x| x == 0x5A));
        }
        other => panic!("expected the whole message, got {other:?}"),
    }
    writer.await.unwrap();
}

#[tokio::test]
async fn invalid_utf8_text_is_refused() {
    let cases: [&[&[u8]]; 3] = [
        &[b"ok \xC3\x28"],
        &[b"fine so far", b" then \xFF"],
        // A character begun in the last fragment and never finished.
        &[b"caf", b"\xC3"],
    ];
    for fragments in cases {
        let (mut server, mut c) = raw_pair().await;
        for (i, f) in fragments.iter().enumerate() {
            let op = if i == 0 { TEXT } else { CONT };
            let fin = if i + 1 == fragments.len() { FIN } else { 0 };
            c.write_all(&frame(fin | op, f)).await.unwrap();
        }
        assert_eq!(
            refused(&mut server).await,
            ProtocolError::InvalidUtf8,
            "{fragments:?}"
        );
        server.close().await.unwrap();
        expect_close(&mut c, Some(1007)).await;
    }
}

#[tokio::test]
async fn close_frames() {
    let mut with_reason = 1000u16.to_be_bytes().to_vec();
    with_reason.extend_from_slice("done ✓".as_bytes());
    let mut bad_reason = 1000u16.to_be_bytes().to_vec();
    bad_reason.extend_from_slice(b"\xFF");
    // Payload, and the code the server's close echoes (Err: refused).
    type Echo = Result<Option<u16>, ProtocolError>;
    let cases: Vec<(Vec<u8>, Echo)> = vec![
        (vec![], Ok(None)),
        (with_reason, Ok(Some(1000))),
        (1001u16.to_be_bytes().to_vec(), Ok(Some(1001))),
        (4000u16.to_be_bytes().to_vec(), Ok(Some(4000))),
        (vec![0x03], Err(ProtocolError::BadClose)),
        (999u16.to_be_bytes().to_vec(), Err(ProtocolError::BadClose)),
        (1005u16.to_be_bytes().to_vec(), Err(ProtocolError::BadClose)),
        (1006u16.to_be_bytes().to_vec(), Err(ProtocolError::BadClose)),
        (2000u16.to_be_bytes().to_vec(), Err(ProtocolError::BadClose)),
        (bad_reason, Err(ProtocolError::BadClose)),
    ];
    for (payload, want) in cases {
        let (mut server, mut c) = raw_pair().await;
        c.write_all(&frame(FIN | CLOSE, &payload)).await.unwrap();
        let echoed = match want {
            Ok(code) => {
                assert_eq!(received(&mut server).await, Incoming::Close, "{payload:?}");
                assert!(server.recv().await.is_none());
                code
            }
            Err(e) => {
                assert_eq!(refused(&mut server).await, e, "{payload:?}");
                Some(1002)
            }
        };
        server.close().await.unwrap();
        expect_close(&mut c, echoed).await;
    }
}

#[tokio::test]
async fn nothing_is_read_after_the_client_close() {
    let (mut server, mut c) = raw_pair().await;
    c.write_all(&frame(FIN | CLOSE, b"")).await.unwrap();
    c.write_all(&frame(FIN | TEXT, b"too late")).await.unwrap();
    assert_eq!(received(&mut server).await, Incoming::Close);
    assert!(server.recv().await.is_none());
}

#[tokio::test]
async fn the_server_close_frame_is_sent_once() {
    let (mut server, mut c) = raw_pair().await;
    server.send_text("last words").await.unwrap();
    server.close().await.unwrap();
    server.close().await.unwrap();
    assert!(server.send_binary(&[b"late"]).await.is_err());
    assert!(server.send_pong(b"late").await.is_err());
    assert_eq!(read_server_frame(&mut c).await.payload, b"last words");
    // One close frame, then the end of the stream.
    expect_close(&mut c, None).await;
}

#[tokio::test]
async fn end_of_stream_between_frames_ends_recv() {
    let (mut server, mut c) = raw_pair().await;
    c.write_all(&frame(FIN | TEXT, b"bye")).await.unwrap();
    c.shutdown().await.unwrap();
    assert_eq!(received(&mut server).await, Incoming::Text("bye".into()));
    assert!(server.recv().await.is_none());
}

#[tokio::test]
async fn end_of_stream_inside_a_frame_is_an_error() {
    for cut in [1, 3, 6, 9] {
        let (mut server, mut c) = raw_pair().await;
        let f = frame(FIN | BINARY, b"truncated");
        c.write_all(&f[..cut]).await.unwrap();
        c.shutdown().await.unwrap();
        match server.recv().await {
            Some(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{cut}"),
            other => panic!("expected an error at byte {cut}, got {other:?}"),
        }
    }
}
