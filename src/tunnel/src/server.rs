//! The tunnel server: answers unary calls (the agent's role in a reverse tunnel).

use std::collections::{BTreeMap, VecDeque};

use crate::flow::{Incoming, Outgoing, Piece};
use crate::{code, pb, Status, TunnelError, WINDOW};

use pb::client_to_server::Frame as In;
use pb::server_to_client::Frame as Out;

/// A complete request: answer it with [`Server::respond`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub stream: i64,
    pub method: String,
    pub request: Vec<u8>,
}

#[derive(Debug)]
enum Ctl {
    Headers,
    Close(Status),
}

#[derive(Debug)]
struct Stream {
    method: String,
    inc: Incoming,
    out: Outgoing<Ctl>,
    request: Option<Vec<u8>>,
    /// Half-closed by the client (the call was handed out or refused).
    done_receiving: bool,
}

#[derive(Debug)]
pub struct Server {
    negotiated: bool,
    last_id: Option<i64>,
    streams: BTreeMap<i64, Stream>,
    out: VecDeque<pb::ServerToClient>,
}

impl Server {
    /// `negotiated`: both sides sent `grpctunnel-negotiate: on`; the Settings frame goes first.
    pub fn new(negotiated: bool) -> Self {
        let mut out = VecDeque::new();
        if negotiated {
            out.push_back(pb::ServerToClient {
                stream_id: -1,
                frame: Some(Out::Settings(pb::Settings {
                    supported_protocol_revisions: vec![0, 1],
                    initial_window_size: WINDOW,
                })),
            });
        }
        Self {
            negotiated,
            last_id: None,
            streams: BTreeMap::new(),
            out,
        }
    }

    /// A frame from the tunnel client; complete calls come back. An error means the tunnel
    /// must be closed.
    pub fn on_frame(&mut self, f: pb::ClientToServer) -> Result<Vec<Call>, TunnelError> {
        let id = f.stream_id;
        let Some(frame) = f.frame else {
            return Err(TunnelError::Unexpected("empty frame"));
        };
        if let In::NewStream(n) = frame {
            if let Some(last) = self.last_id {
                if id <= last {
                    return Err(TunnelError::StreamIdOrder { id, last });
                }
            } else if id < 0 {
                return Err(TunnelError::StreamIdOrder { id, last: -1 });
            }
            self.last_id = Some(id);
            let rev = n.protocol_revision;
            let ok_rev = rev == 0 || (rev == 1 && self.negotiated);
            let flow = rev == 1;
            let mut st = Stream {
                method: n.method_name,
                inc: Incoming::new(flow.then_some(WINDOW)),
                out: Outgoing::new(flow.then_some(n.initial_window_size)),
                request: None,
                done_receiving: false,
            };
            if !ok_rev {
                st.done_receiving = true;
                st.out.control(Ctl::Close(Status::new(
                    code::UNAVAILABLE,
                    format!("server does not support protocol revision {rev}"),
                )));
            }
            self.streams.insert(id, st);
            return Ok(vec![]);
        }
        let Some(st) = self.streams.get_mut(&id) else {
            // Frames for a stream we already closed (a cancel racing our answer) are normal.
            if self.last_id.is_some_and(|l| id <= l) {
                return Ok(vec![]);
            }
            return Err(TunnelError::UnknownStream(id));
        };
        let mut calls = vec![];
        match frame {
            In::RequestMessage(m) if !st.done_receiving => {
                let msg = st.inc.first(m.size, m.data)?;
                Self::got(st, msg)?;
            }
            In::MoreRequestData(d) if !st.done_receiving => {
                let msg = st.inc.more(d)?;
                Self::got(st, msg)?;
            }
            // After half-close (or a refused revision): nothing more is read on this stream.
            In::RequestMessage(_) | In::MoreRequestData(_) => {}
            In::HalfClose(()) => {
                if !st.done_receiving {
                    st.done_receiving = true;
                    match st.request.take() {
                        Some(request) => calls.push(Call {
                            stream: id,
                            method: st.method.clone(),
                            request,
                        }),
                        None => st.out.control(Ctl::Close(Status::new(
                            code::INVALID_ARGUMENT,
                            "a unary call without a request message",
                        ))),
                    }
                }
            }
            In::Cancel(()) => {
                self.streams.remove(&id);
                return Ok(vec![]);
            }
            In::WindowUpdate(n) => st.out.grant(n),
            In::NewStream(_) => return Err(TunnelError::Unexpected("new_stream")),
        }
        let grant = st.inc.take_grant();
        if grant > 0 {
            self.out.push_back(pb::ServerToClient {
                stream_id: id,
                frame: Some(Out::WindowUpdate(grant)),
            });
        }
        Ok(calls)
    }

    fn got(st: &mut Stream, msg: Option<Vec<u8>>) -> Result<(), TunnelError> {
        if let Some(m) = msg {
            if st.request.is_some() {
                return Err(TunnelError::Unexpected("a second request on a unary call"));
            }
            st.request = Some(m);
        }
        Ok(())
    }

    /// Answer call `stream` (ignored when the client cancelled it meanwhile).
    pub fn respond(&mut self, stream: i64, result: Result<Vec<u8>, Status>) {
        let Some(st) = self.streams.get_mut(&stream) else {
            return;
        };
        st.out.control(Ctl::Headers);
        match result {
            Ok(bytes) => {
                st.out.message(&bytes);
                st.out.control(Ctl::Close(Status::new(code::OK, "")));
            }
            Err(s) => st.out.control(Ctl::Close(s)),
        }
    }

    /// The next frame to send, if any.
    pub fn poll_transmit(&mut self) -> Option<pb::ServerToClient> {
        if let Some(f) = self.out.pop_front() {
            return Some(f);
        }
        let mut closed = None;
        let mut frame = None;
        for (id, st) in self.streams.iter_mut() {
            if let Some(p) = st.out.next() {
                let f = match p {
                    Piece::Data {
                        first: Some(size),
                        bytes,
                    } => Out::ResponseMessage(pb::MessageData { size, data: bytes }),
                    Piece::Data { first: None, bytes } => Out::MoreResponseData(bytes),
                    Piece::Control(Ctl::Headers) => Out::ResponseHeaders(pb::Metadata::default()),
                    Piece::Control(Ctl::Close(s)) => {
                        closed = Some(*id);
                        Out::CloseStream(pb::CloseStream {
                            response_trailers: Some(pb::Metadata::default()),
                            status: Some(crate::google::rpc::Status {
                                code: s.code,
                                message: s.message,
                                details: vec![],
                            }),
                        })
                    }
                };
                frame = Some(pb::ServerToClient {
                    stream_id: *id,
                    frame: Some(f),
                });
                break;
            }
        }
        if let Some(id) = closed {
            self.streams.remove(&id);
        }
        frame
    }

    /// Calls open (received or being answered).
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }
}
