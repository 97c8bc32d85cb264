#![allow(clippy::unwrap_used)]

use super::*;
use pb::client_to_server::Frame as C;
use pb::server_to_client::Frame as S;

/// Move frames both ways until both sides are quiet; the server answers every call with
/// `answer`. Returns the client's results.
fn run(
    c: &mut Client,
    s: &mut Server,
    answer: &dyn Fn(&Call) -> Result<Vec<u8>, Status>,
) -> Vec<CallResult> {
    let mut results = vec![];
    for _ in 0..10_000 {
        let mut moved = false;
        while let Some(f) = s.poll_transmit() {
            moved = true;
            results.extend(c.on_frame(f).unwrap());
        }
        while let Some(f) = c.poll_transmit() {
            moved = true;
            for call in s.on_frame(f).unwrap() {
                s.respond(call.stream, answer(&call));
            }
        }
        if !moved {
            return results;
        }
    }
    panic!("no quiescence");
}

fn echo(call: &Call) -> Result<Vec<u8>, Status> {
    let mut v = call.method.clone().into_bytes();
    v.extend_from_slice(&call.request);
    Ok(v)
}

#[test]
fn unary_calls_round_trip_in_both_revisions() {
    for negotiated in [false, true] {
        let (mut c, mut s) = (Client::new(negotiated), Server::new(negotiated));
        let small = c.call("/m.S/A", b"hi".to_vec());
        let empty = c.call("/m.S/B", vec![]);
        // Larger than the window and than a chunk: needs chunking and window updates.
        let big_req: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let big = c.call("/m.S/C", big_req.clone());
        let mut r = run(&mut c, &mut s, &echo);
        r.sort_by_key(|x| x.stream);
        assert_eq!(r.len(), 3, "negotiated={negotiated}");
        assert_eq!(
            r[0],
            CallResult {
                stream: small,
                result: Ok(b"/m.S/Ahi".to_vec())
            }
        );
        assert_eq!(
            r[1],
            CallResult {
                stream: empty,
                result: Ok(b"/m.S/B".to_vec())
            }
        );
        let mut want = b"/m.S/C".to_vec();
        want.extend_from_slice(&big_req);
        assert_eq!((r[2].stream, r[2].result.clone()), (big, Ok(want)));
        assert_eq!(c.revision(), Some(if negotiated { 1 } else { 0 }));
        assert_eq!(c.open_calls(), 0);
        assert_eq!(s.open_streams(), 0);
    }
}

#[test]
fn errors_come_back_as_status() {
    let (mut c, mut s) = (Client::new(true), Server::new(true));
    let id = c.call("/m.S/Nope", b"x".to_vec());
    let r = run(&mut c, &mut s, &|_| {
        Err(Status::new(code::UNIMPLEMENTED, "no such method"))
    });
    assert_eq!(
        r,
        vec![CallResult {
            stream: id,
            result: Err(Status::new(12, "no such method"))
        }]
    );
}

#[test]
fn the_client_frames_are_what_the_protocol_says() {
    let mut c = Client::new(true);
    let id = c.call("/management.AgentService/Hello", vec![1, 2, 3]);
    assert_eq!(id, 1, "stream ids start at one (as the Go client's)");
    assert!(
        c.poll_transmit().is_none(),
        "nothing before the server's settings"
    );
    c.on_frame(pb::ServerToClient {
        stream_id: -1,
        frame: Some(S::Settings(pb::Settings {
            supported_protocol_revisions: vec![0, 1],
            initial_window_size: 65536,
        })),
    })
    .unwrap();
    let f: Vec<_> = std::iter::from_fn(|| c.poll_transmit()).collect();
    assert_eq!(f.len(), 3, "{f:?}");
    assert!(f.iter().all(|x| x.stream_id == 1));
    match &f[0].frame {
        Some(C::NewStream(n)) => {
            assert_eq!(n.method_name, "/management.AgentService/Hello");
            assert_eq!(n.protocol_revision, 1);
            assert_eq!(n.initial_window_size, WINDOW);
        }
        x => panic!("{x:?}"),
    }
    assert_eq!(
        f[1].frame,
        Some(C::RequestMessage(pb::MessageData {
            size: 3,
            data: vec![1, 2, 3]
        }))
    );
    assert_eq!(f[2].frame, Some(C::HalfClose(())));
    // The answer: headers, message, close with OK.
    let mut out = vec![];
    for frame in [
        S::ResponseHeaders(pb::Metadata::default()),
        S::ResponseMessage(pb::MessageData {
            size: 2,
            data: vec![9, 9],
        }),
        S::CloseStream(pb::CloseStream {
            response_trailers: None,
            status: None,
        }),
    ] {
        out.extend(
            c.on_frame(pb::ServerToClient {
                stream_id: 1,
                frame: Some(frame),
            })
            .unwrap(),
        );
    }
    assert_eq!(
        out,
        vec![CallResult {
            stream: 1,
            result: Ok(vec![9, 9])
        }]
    );
    // Window update for the consumed two bytes.
    let wu: Vec<_> = std::iter::from_fn(|| c.poll_transmit()).collect();
    assert!(
        wu.iter()
            .all(|x| matches!(x.frame, Some(C::WindowUpdate(_)))),
        "{wu:?}"
    );
}

#[test]
fn the_server_sends_settings_first_and_respects_the_client_window() {
    let mut s = Server::new(true);
    let first = s.poll_transmit().unwrap();
    assert_eq!(first.stream_id, -1);
    assert!(
        matches!(first.frame, Some(S::Settings(ref x)) if x.supported_protocol_revisions.contains(&1) && x.initial_window_size > 0)
    );
    let new = |id, window| pb::ClientToServer {
        stream_id: id,
        frame: Some(C::NewStream(pb::NewStream {
            method_name: "/a/b".into(),
            request_headers: None,
            initial_window_size: window,
            protocol_revision: 1,
        })),
    };
    s.on_frame(new(0, 10)).unwrap();
    s.on_frame(pb::ClientToServer {
        stream_id: 0,
        frame: Some(C::RequestMessage(pb::MessageData {
            size: 0,
            data: vec![],
        })),
    })
    .unwrap();
    let calls = s
        .on_frame(pb::ClientToServer {
            stream_id: 0,
            frame: Some(C::HalfClose(())),
        })
        .unwrap();
    assert_eq!(calls.len(), 1);
    s.respond(0, Ok(vec![7; 25]));
    let sent: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
    let data: usize = sent
        .iter()
        .map(|f| match &f.frame {
            Some(S::ResponseMessage(m)) => m.data.len(),
            Some(S::MoreResponseData(d)) => d.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(data, 10, "only the client's window goes out: {sent:?}");
    s.on_frame(pb::ClientToServer {
        stream_id: 0,
        frame: Some(C::WindowUpdate(100)),
    })
    .unwrap();
    let rest: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
    assert!(matches!(
        rest.last().unwrap().frame,
        Some(S::CloseStream(_))
    ));
    assert_eq!(s.open_streams(), 0);
    // Stream ids only grow.
    assert_eq!(
        s.on_frame(new(0, 10)),
        Err(TunnelError::StreamIdOrder { id: 0, last: 0 })
    );
}

#[test]
fn peers_breaking_the_rules_are_refused() {
    // Data beyond our window.
    let mut s = Server::new(true);
    s.on_frame(pb::ClientToServer {
        stream_id: 5,
        frame: Some(C::NewStream(pb::NewStream {
            method_name: "/a/b".into(),
            request_headers: None,
            initial_window_size: 1,
            protocol_revision: 1,
        })),
    })
    .unwrap();
    let too_much = vec![0u8; (WINDOW + 1) as usize];
    let r = s.on_frame(pb::ClientToServer {
        stream_id: 5,
        frame: Some(C::RequestMessage(pb::MessageData {
            size: WINDOW + 1,
            data: too_much,
        })),
    });
    assert_eq!(r, Err(TunnelError::WindowExceeded));
    // A chunk longer than the announced size; a huge announced size; an unknown stream.
    let mut c = Client::new(false);
    let id = c.call("/a/b", vec![]);
    assert_eq!(
        c.on_frame(pb::ServerToClient {
            stream_id: id,
            frame: Some(S::ResponseMessage(pb::MessageData {
                size: 1,
                data: vec![1, 2]
            }))
        }),
        Err(TunnelError::BadChunk)
    );
    let id = c.call("/a/b", vec![]);
    assert!(matches!(
        c.on_frame(pb::ServerToClient {
            stream_id: id,
            frame: Some(S::ResponseMessage(pb::MessageData {
                size: u32::MAX,
                data: vec![]
            }))
        }),
        Err(TunnelError::TooLarge(_))
    ));
    assert_eq!(
        c.on_frame(pb::ServerToClient {
            stream_id: 99,
            frame: Some(S::CloseStream(pb::CloseStream::default()))
        }),
        Err(TunnelError::UnknownStream(99))
    );
    // Settings are only for a negotiated tunnel, once.
    let mut c = Client::new(false);
    assert!(c
        .on_frame(pb::ServerToClient {
            stream_id: -1,
            frame: Some(S::Settings(pb::Settings::default()))
        })
        .is_err());
    // A revision-one stream on a tunnel that did not negotiate is closed with an error.
    let mut s = Server::new(false);
    s.on_frame(pb::ClientToServer {
        stream_id: 0,
        frame: Some(C::NewStream(pb::NewStream {
            method_name: "/a/b".into(),
            request_headers: None,
            initial_window_size: 9,
            protocol_revision: 1,
        })),
    })
    .unwrap();
    assert!(
        matches!(s.poll_transmit().unwrap().frame, Some(S::CloseStream(ref c)) if c.status.as_ref().unwrap().code == code::UNAVAILABLE)
    );
}

#[test]
fn a_cancelled_call_is_forgotten_on_both_sides() {
    let (mut c, mut s) = (Client::new(true), Server::new(true));
    let id = c.call("/a/slow", b"x".to_vec());
    // Settings + the call reach the server, which does not answer yet.
    while let Some(f) = s.poll_transmit() {
        c.on_frame(f).unwrap();
    }
    let mut calls = vec![];
    while let Some(f) = c.poll_transmit() {
        calls.extend(s.on_frame(f).unwrap());
    }
    assert_eq!(calls.len(), 1);
    c.cancel(id);
    while let Some(f) = c.poll_transmit() {
        s.on_frame(f).unwrap();
    }
    s.respond(id, Ok(vec![1]));
    let after: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
    assert!(
        after
            .iter()
            .all(|f| matches!(f.frame, Some(S::WindowUpdate(_)))),
        "no answer to a cancelled call: {after:?}"
    );
    assert_eq!((c.open_calls(), s.open_streams()), (0, 0));
}
