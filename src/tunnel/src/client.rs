//! The tunnel client: starts unary calls (the provider's role in a reverse tunnel).

use std::collections::{BTreeMap, VecDeque};

use crate::flow::{Incoming, Outgoing, Piece};
use crate::{code, pb, Status, TunnelError, WINDOW};

use pb::client_to_server::Frame as Out;
use pb::server_to_client::Frame as In;

/// The end of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    pub stream: i64,
    pub result: Result<Vec<u8>, Status>,
}

#[derive(Debug)]
enum Ctl {
    HalfClose,
}

#[derive(Debug)]
struct Stream {
    out: Outgoing<Ctl>,
    inc: Incoming,
    response: Option<Vec<u8>>,
}

#[derive(Debug)]
pub struct Client {
    /// Both sides asked for revision one: nothing may be sent before the server's Settings.
    negotiated: bool,
    /// (revision, the server's initial window), once known.
    settings: Option<(i32, u32)>,
    next_id: i64,
    streams: BTreeMap<i64, Stream>,
    /// Calls started before the Settings arrived.
    waiting: VecDeque<(i64, String, Vec<u8>)>,
    out: VecDeque<pb::ClientToServer>,
}

impl Client {
    /// `negotiated`: we and the peer both sent `grpctunnel-negotiate: on`.
    pub fn new(negotiated: bool) -> Self {
        Self {
            negotiated,
            settings: (!negotiated).then_some((0, 0)),
            // The Go client pre-increments from 0: the first stream is 1.
            next_id: 1,
            streams: BTreeMap::new(),
            waiting: VecDeque::new(),
            out: VecDeque::new(),
        }
    }

    /// The revision in use, once settled.
    pub fn revision(&self) -> Option<i32> {
        self.settings.map(|(r, _)| r)
    }

    /// Calls started and not finished.
    pub fn open_calls(&self) -> usize {
        self.streams.len() + self.waiting.len()
    }

    /// Start a unary call of `method` (e.g. `/management.AgentService/Hello`); its result comes
    /// back from [`Client::on_frame`] with the returned stream id.
    pub fn call(&mut self, method: &str, request: Vec<u8>) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        match self.settings {
            Some(s) => self.open(id, method, &request, s),
            None => self.waiting.push_back((id, method.to_string(), request)),
        }
        id
    }

    fn open(&mut self, id: i64, method: &str, request: &[u8], (rev, server_window): (i32, u32)) {
        let flow = rev >= 1;
        self.out.push_back(pb::ClientToServer {
            stream_id: id,
            frame: Some(Out::NewStream(pb::NewStream {
                method_name: method.to_string(),
                request_headers: Some(pb::Metadata::default()),
                initial_window_size: if flow { WINDOW } else { 0 },
                protocol_revision: rev,
            })),
        });
        let mut out = Outgoing::new(flow.then_some(server_window));
        out.message(request);
        out.control(Ctl::HalfClose);
        self.streams.insert(
            id,
            Stream {
                out,
                inc: Incoming::new(flow.then_some(WINDOW)),
                response: None,
            },
        );
    }

    /// Give up on a call (a timeout in the shell): the server is told, its result never comes.
    pub fn cancel(&mut self, stream: i64) {
        self.waiting.retain(|(id, _, _)| *id != stream);
        if self.streams.remove(&stream).is_some() {
            self.out.push_back(pb::ClientToServer {
                stream_id: stream,
                frame: Some(Out::Cancel(())),
            });
        }
    }

    /// A frame from the tunnel server. An error means the tunnel must be closed (every open
    /// call has failed).
    pub fn on_frame(&mut self, f: pb::ServerToClient) -> Result<Vec<CallResult>, TunnelError> {
        let id = f.stream_id;
        let Some(frame) = f.frame else {
            return Err(TunnelError::Unexpected("empty frame"));
        };
        if let In::Settings(s) = frame {
            if id != -1 || !self.negotiated || self.settings.is_some() {
                return Err(TunnelError::Unexpected("settings"));
            }
            let revs = &s.supported_protocol_revisions;
            let rev = if revs.contains(&1) {
                1
            } else if revs.is_empty() || revs.contains(&0) {
                0
            } else {
                return Err(TunnelError::Revision(revs.first().copied().unwrap_or(-1)));
            };
            if rev == 1 && s.initial_window_size == 0 {
                return Err(TunnelError::Unexpected("revision one with a zero window"));
            }
            self.settings = Some((rev, s.initial_window_size));
            while let Some((id, m, r)) = self.waiting.pop_front() {
                self.open(id, &m, &r, (rev, s.initial_window_size));
            }
            return Ok(vec![]);
        }
        if self.settings.is_none() {
            return Err(TunnelError::Unexpected("a frame before the settings"));
        }
        let Some(st) = self.streams.get_mut(&id) else {
            // Late frames of a call we cancelled are normal; anything ahead of us is not.
            if id >= 1 && id < self.next_id {
                return Ok(vec![]);
            }
            return Err(TunnelError::UnknownStream(id));
        };
        let done = match frame {
            In::ResponseHeaders(_) => {
                if st.response.is_some() {
                    return Err(TunnelError::Unexpected("headers after the response"));
                }
                None
            }
            In::ResponseMessage(m) => {
                let msg = st.inc.first(m.size, m.data)?;
                Self::got(st, msg)?
            }
            In::MoreResponseData(d) => {
                let msg = st.inc.more(d)?;
                Self::got(st, msg)?
            }
            In::WindowUpdate(n) => {
                st.out.grant(n);
                None
            }
            In::CloseStream(c) => {
                let status = c.status.unwrap_or_default();
                Some(if status.code != code::OK {
                    Err(Status::new(status.code, status.message))
                } else {
                    st.response.take().ok_or_else(|| {
                        Status::new(code::INTERNAL, "the call ended without a response")
                    })
                })
            }
            In::Settings(_) => return Err(TunnelError::Unexpected("settings")),
        };
        let grant = st.inc.take_grant();
        match done {
            Some(result) => {
                self.streams.remove(&id);
                Ok(vec![CallResult { stream: id, result }])
            }
            None => {
                if grant > 0 {
                    self.out.push_back(pb::ClientToServer {
                        stream_id: id,
                        frame: Some(Out::WindowUpdate(grant)),
                    });
                }
                Ok(vec![])
            }
        }
    }

    fn got(
        st: &mut Stream,
        msg: Option<Vec<u8>>,
    ) -> Result<Option<Result<Vec<u8>, Status>>, TunnelError> {
        if let Some(m) = msg {
            if st.response.is_some() {
                return Err(TunnelError::Unexpected("a second response to a unary call"));
            }
            st.response = Some(m);
        }
        Ok(None)
    }

    /// The next frame to send, if any.
    pub fn poll_transmit(&mut self) -> Option<pb::ClientToServer> {
        if let Some(f) = self.out.pop_front() {
            return Some(f);
        }
        for (id, st) in self.streams.iter_mut() {
            if let Some(p) = st.out.next() {
                let frame = match p {
                    Piece::Data {
                        first: Some(size),
                        bytes,
                    } => Out::RequestMessage(pb::MessageData { size, data: bytes }),
                    Piece::Data { first: None, bytes } => Out::MoreRequestData(bytes),
                    Piece::Control(Ctl::HalfClose) => Out::HalfClose(()),
                };
                return Some(pb::ClientToServer {
                    stream_id: *id,
                    frame: Some(frame),
                });
            }
        }
        None
    }
}
