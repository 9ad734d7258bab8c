//! One request in, one response out: the question read from a decoded request (hickory-server
//! decodes it), `answer` asked, the answer sent back authoritative. Anything but one standard
//! query is refused without looking at the view.

use std::sync::Arc;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::sync::watch;

use super::answer::{View, answer};

/// The EDNS version flotted speaks.
const EDNS_VERSION: u8 = 0;

pub(super) struct Handler {
    view: watch::Receiver<Arc<View>>,
    ttl: u32,
}

impl Handler {
    pub(super) fn new(view: watch::Receiver<Arc<View>>, ttl: u32) -> Self {
        Self { view, ttl }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        // EDNS answered with EDNS (RFC 6891), which lets a UDP answer use the client's
        // payload size; a version above ours is BADVERS.
        let edns = request.edns.as_ref().map(|theirs| {
            let mut ours = Edns::new();
            ours.set_max_payload(theirs.max_payload().max(512));
            ours.set_version(EDNS_VERSION);
            ours
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let refuse = |code: ResponseCode| {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = code;
            metadata
        };
        let bad_version = request
            .edns
            .as_ref()
            .is_some_and(|e| e.version() > EDNS_VERSION);
        let result = if bad_version {
            let response = builder.build_no_records(refuse(ResponseCode::BADVERS));
            response_handle.send_response(response).await
        } else if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            let response = builder.build_no_records(refuse(ResponseCode::NotImp));
            response_handle.send_response(response).await
        } else {
            match request.request_info() {
                Err(_) => {
                    // Not exactly one question.
                    let response = builder.build_no_records(refuse(ResponseCode::FormErr));
                    response_handle.send_response(response).await
                }
                Ok(info) => {
                    let view = self.view.borrow().clone();
                    let query = info.query;
                    let a = answer(
                        &view,
                        &query.name().into(),
                        query.query_type(),
                        query.query_class(),
                        self.ttl,
                    );
                    let mut metadata = refuse(a.code);
                    metadata.authoritative = a.code != ResponseCode::Refused;
                    let response = builder.build(
                        metadata,
                        a.answers.iter(),
                        std::iter::empty(),
                        a.soa.iter(),
                        a.additionals.iter(),
                    );
                    response_handle.send_response(response).await
                }
            }
        };
        match result {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, src = %request.src(), "cannot send a DNS response");
                Header {
                    metadata: refuse(ResponseCode::ServFail),
                    counts: HeaderCounts::default(),
                }
                .into()
            }
        }
    }
}
