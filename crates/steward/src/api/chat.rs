//! Chat over HTTP: conversations, members, history and sending (REST), the
//! real-time socket (`GET /chat/ws`, a WebSocket), and the employer's read of
//! its tenant's chat.
//!
//! The socket authenticates like every route, with the session token, which a
//! browser cannot put in a header of a WebSocket request; so it is also taken
//! from a `bearer.<token>` entry of `Sec-WebSocket-Protocol` (offer
//! `steward.chat.v1` beside it: the server selects that one and never echoes
//! the token), or from `?access_token=` (which proxies may log: prefer the
//! other two). Tokens are never logged; the request log names the route only.
//!
//! Frames are JSON text: the client sends `send`, `delivered` and `read`
//! ([`ClientFrame`]); the server sends `message`, `sent`, `marked`, `status`
//! and `error` ([`ServerFrame`]). A malformed frame gets an `error` frame and
//! the connection stays open; a frame larger than the socket's limit (eight
//! times the maximum message size, at least 64 KiB) closes it (code 1009), as
//! the WebSocket library does. The session is checked again every
//! [`SESSION_RECHECK`]; logging out, disabling the account or erasing the user
//! closes their sockets at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiPath, ApiQuery, bearer};
use super::files::{FileBody, file_response};
use super::{ApiError, ApiJson, ApiResult, AppState, Authed, ErrorBody, blocking};
use crate::access::Actor;
use crate::accounts;
use crate::chat::attachments::{self, Attachment};
use crate::chat::conversations::{
    self, Conversation, ConversationKind, ConversationPage, NewConversation,
};
use crate::chat::history;
use crate::chat::hub::{Outbox, Registration};
use crate::chat::writer::Reply;
use crate::chat::{self, Author, Chat, Mark, Message, MessagePage, ServerFrame};
use crate::error::Error;

/// The subprotocol the socket speaks (selected when offered).
pub const PROTOCOL: &str = "steward.chat.v1";
/// How often an open socket's session is checked again.
pub const SESSION_RECHECK: Duration = Duration::from_secs(30);
/// Frames written to a socket before it is flushed.
const WRITE_BURST: usize = 256;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_conversations, create_conversation))
        .routes(routes!(get_conversation))
        .routes(routes!(add_member))
        .routes(routes!(remove_member))
        .routes(routes!(list_messages, send_message))
        .routes(routes!(mark_delivered))
        .routes(routes!(mark_read))
        .routes(routes!(upload_attachment))
        .routes(routes!(get_attachment, delete_attachment))
        .routes(routes!(attachment_content))
        .routes(routes!(socket))
        .routes(routes!(employer_conversations))
        .routes(routes!(employer_messages))
}

/// The caller as a chat author (checks and their key, on a blocking thread).
async fn author(s: &AppState, actor: Actor) -> ApiResult<Author> {
    let c = s.chat.clone();
    blocking(s, move |_| c.author(&actor)).await
}

/// A page size from the query: a number, checked by the domain.
fn limit(raw: Option<&str>) -> Result<Option<i64>, Error> {
    raw.map(|l| {
        l.trim().parse::<i64>().map_err(|_| {
            Error::invalid(
                "limit",
                format!("limit must be a whole number from 1 to {}", chat::MAX_LIMIT),
            )
        })
    })
    .transpose()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 200; default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// The newest message id you hold (0 for all): the page holds the messages
    /// after it, oldest first. Ids in a conversation increase in the order
    /// messages were stored, so a client that reconnects (to any server)
    /// resumes from here with nothing missed or repeated. With a `cursor`,
    /// the cursor's page stops at this id.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub after: Option<String>,
    /// 1 to 200; default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    pub kind: ConversationKind,
    /// Subject ids of the other members (users of your tenant).
    pub members: Vec<String>,
    /// A group's title (1 to 200 characters); not for direct conversations.
    pub title: Option<String>,
}

/// Your conversations, oldest first (`last_message_id` orders them by activity).
#[utoipa::path(get, path = "/chat/conversations", tag = "chat", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = ConversationPage), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
async fn list_conversations(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<ConversationPage>> {
    blocking(&s, move |core| {
        conversations::list(core, &a, q.cursor.as_deref(), limit(q.limit.as_deref())?)
    })
    .await
    .map(Json)
}

/// Start a conversation with users of your tenant: `direct` (one other user;
/// if it exists already, it is returned with 200) or `group` (you are its owner).
#[utoipa::path(post, path = "/chat/conversations", tag = "chat", security(("bearer" = [])),
    request_body = CreateConversation,
    responses((status = 201, body = Conversation), (status = 200, body = Conversation),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_conversation(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiJson(req): ApiJson<CreateConversation>,
) -> ApiResult<(StatusCode, Json<Conversation>)> {
    blocking(&s, move |core| {
        conversations::create(
            core,
            &a,
            NewConversation {
                kind: req.kind,
                members: req.members,
                title: req.title,
            },
        )
    })
    .await
    .map(|(c, created)| {
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        (status, Json(c))
    })
}

/// One of your conversations, with its members.
#[utoipa::path(get, path = "/chat/conversations/{conversation_id}", tag = "chat",
    security(("bearer" = [])), params(("conversation_id" = String, Path)),
    responses((status = 200, body = Conversation), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn get_conversation(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Conversation>> {
    blocking(&s, move |core| conversations::get(core, &a, &id))
        .await
        .map(Json)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub subject_id: String,
}

/// Add a user of your tenant to a group you are in.
#[utoipa::path(post, path = "/chat/conversations/{conversation_id}/members", tag = "chat",
    security(("bearer" = [])), params(("conversation_id" = String, Path)),
    request_body = AddMember,
    responses((status = 200, body = Conversation), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn add_member(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<AddMember>,
) -> ApiResult<Json<Conversation>> {
    blocking(&s, move |core| {
        conversations::add_member(core, &a, &id, &req.subject_id)
    })
    .await
    .map(Json)
}

/// Leave a group (your own subject id), or, as its owner, remove a member.
#[utoipa::path(delete, path = "/chat/conversations/{conversation_id}/members/{member_id}",
    tag = "chat", security(("bearer" = [])),
    params(("conversation_id" = String, Path),
           ("member_id" = String, Path, description = "The member's subject id")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn remove_member(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath((id, member)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    blocking(&s, move |core| {
        conversations::remove_member(core, &a, &id, &member)
    })
    .await
    .map(|()| StatusCode::NO_CONTENT)
}

/// A page of a conversation's history: newest first, or with `after` the
/// messages after an id, oldest first. Your own messages carry every
/// recipient's status; others' messages carry your own (`state`).
#[utoipa::path(get, path = "/chat/conversations/{conversation_id}/messages", tag = "chat",
    security(("bearer" = [])), params(("conversation_id" = String, Path), HistoryQuery),
    responses((status = 200, body = MessagePage), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn list_messages(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<MessagePage>> {
    blocking(&s, move |core| {
        history::history(
            core,
            &a,
            &id,
            history::Position::parse(q.cursor.as_deref(), q.after.as_deref())?,
            limit(q.limit.as_deref())?,
        )
    })
    .await
    .map(Json)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// The text: at most the configured size (16 KiB by default); not empty
    /// unless the message carries files.
    #[serde(default)]
    pub body: String,
    /// Ids of your pending uploads to this conversation (at most 10).
    #[serde(default)]
    pub attachments: Vec<String>,
    /// Your own id for the message (at most 64 characters), echoed back.
    #[schema(max_length = 64)]
    pub client_id: Option<String>,
}

/// Send a message; answered once it is stored, and pushed to the other
/// members' open sockets.
#[utoipa::path(post, path = "/chat/conversations/{conversation_id}/messages", tag = "chat",
    security(("bearer" = [])), params(("conversation_id" = String, Path)),
    request_body = SendMessage,
    responses((status = 201, body = Message), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn send_message(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<SendMessage>,
) -> ApiResult<(StatusCode, Json<Message>)> {
    let author = author(&s, a).await?;
    let m = s
        .chat
        .send(&author, &id, &req.body, &req.attachments, req.client_id)
        .await?;
    Ok((StatusCode::CREATED, Json(m)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRequest {
    /// Every message of yours in the conversation up to this id.
    #[schema(minimum = 1)]
    pub up_to: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Marked {
    /// Receipts that moved forward (already delivered or read ones stay).
    pub changed: u64,
}

/// Mark messages you received in a conversation, up to an id, as delivered.
#[utoipa::path(post, path = "/chat/conversations/{conversation_id}/delivered", tag = "chat",
    security(("bearer" = [])), params(("conversation_id" = String, Path)),
    request_body = MarkRequest,
    responses((status = 200, body = Marked), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn mark_delivered(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<MarkRequest>,
) -> ApiResult<Json<Marked>> {
    mark(s, a, id, Mark::Delivered, req.up_to).await
}

/// Mark messages you received in a conversation, up to an id, as read.
#[utoipa::path(post, path = "/chat/conversations/{conversation_id}/read", tag = "chat",
    security(("bearer" = [])), params(("conversation_id" = String, Path)),
    request_body = MarkRequest,
    responses((status = 200, body = Marked), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn mark_read(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<MarkRequest>,
) -> ApiResult<Json<Marked>> {
    mark(s, a, id, Mark::Read, req.up_to).await
}

async fn mark(s: AppState, a: Actor, id: String, m: Mark, up_to: i64) -> ApiResult<Json<Marked>> {
    let author = author(&s, a).await?;
    let changed = s.chat.mark(&author, &id, m, up_to).await?;
    Ok(Json(Marked { changed }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The file's name on the device (kept, encrypted).
    pub name: Option<String>,
}

/// Upload a file to send in a conversation: the body is the file itself, with
/// its type in `Content-Type` (the type found in the content must agree: an
/// image, video, audio or PDF file), at most the configured size (25 MiB by
/// default). It stays pending until you send a message naming its id.
#[utoipa::path(post, path = "/chat/conversations/{conversation_id}/attachments", tag = "chat",
    security(("bearer" = [])), params(("conversation_id" = String, Path), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
                 description = "The file: JPEG, PNG, GIF, WebP, HEIF, MP4, QuickTime, WebM, WAV, MP3, Ogg or PDF"),
    responses((status = 201, body = Attachment), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 415, body = ErrorBody)))]
async fn upload_attachment(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    file: FileBody,
) -> ApiResult<(StatusCode, Json<Attachment>)> {
    let content_type = file.content_type;
    let up = attachments::Upload {
        content_type,
        name: q.name,
    };
    attachments::upload(s.core.clone(), a, id, up, file.stream)
        .await
        .map(|f| (StatusCode::CREATED, Json(f)))
        .map_err(ApiError::from)
}

/// A file's details (members of its conversation; a pending upload, its sender).
#[utoipa::path(get, path = "/chat/attachments/{attachment_id}", tag = "chat",
    security(("bearer" = [])), params(("attachment_id" = String, Path)),
    responses((status = 200, body = Attachment), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn get_attachment(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Attachment>> {
    blocking(&s, move |core| attachments::get(core, &a, &id))
        .await
        .map(Json)
}

/// Delete a file you uploaded and have not sent yet (a sent one stays with its
/// message: 409).
#[utoipa::path(delete, path = "/chat/attachments/{attachment_id}", tag = "chat",
    security(("bearer" = [])), params(("attachment_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
async fn delete_attachment(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    blocking(&s, move |core| attachments::delete(core, &a, &id))
        .await
        .map(|()| StatusCode::NO_CONTENT)
}

/// The file itself, decrypted as it streams (members of its conversation).
#[utoipa::path(get, path = "/chat/attachments/{attachment_id}/content", tag = "chat",
    security(("bearer" = [])), params(("attachment_id" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn attachment_content(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let (item, stream) = attachments::download(s.core.clone(), a, id).await?;
    Ok(file_response(
        &item.content_type,
        item.size,
        Body::from_stream(stream),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EmployerQuery {
    /// Why the employer reads: a purpose of the chat category (`security` by
    /// default, or `provision`).
    pub purpose: Option<String>,
    pub cursor: Option<String>,
    /// 1 to 200; default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
}

const EMPLOYER_PURPOSE: &str = "security";

/// The employer's view of its tenant's conversations (the tenant's admin), as
/// the policy allows: each read is audited as a disclosure to `employer` for
/// every person it shows; a policy without that recipient refuses it (403).
#[utoipa::path(get, path = "/tenants/{tenant_id}/chat/conversations", tag = "chat",
    security(("bearer" = [])), params(("tenant_id" = String, Path), EmployerQuery),
    responses((status = 200, body = ConversationPage), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn employer_conversations(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath(tenant_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<EmployerQuery>,
) -> ApiResult<Json<ConversationPage>> {
    blocking(&s, move |core| {
        let purpose = q.purpose.as_deref().unwrap_or(EMPLOYER_PURPOSE);
        history::employer_conversations(
            core,
            &a,
            &tenant_id,
            purpose,
            q.cursor.as_deref(),
            limit(q.limit.as_deref())?,
        )
    })
    .await
    .map(Json)
}

/// The employer's read of one of its tenant's conversations: messages with
/// every recipient's status, newest first; audited like the list.
#[utoipa::path(get, path = "/tenants/{tenant_id}/chat/conversations/{conversation_id}/messages",
    tag = "chat", security(("bearer" = [])),
    params(("tenant_id" = String, Path), ("conversation_id" = String, Path), EmployerQuery),
    responses((status = 200, body = MessagePage), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn employer_messages(
    State(s): State<AppState>,
    Authed(a): Authed,
    ApiPath((tenant_id, id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<EmployerQuery>,
) -> ApiResult<Json<MessagePage>> {
    blocking(&s, move |core| {
        let purpose = q.purpose.as_deref().unwrap_or(EMPLOYER_PURPOSE);
        history::employer_history(
            core,
            &a,
            &tenant_id,
            &id,
            purpose,
            q.cursor.as_deref(),
            limit(q.limit.as_deref())?,
        )
    })
    .await
    .map(Json)
}

// ---------------------------------------------------------------------------
// The socket
// ---------------------------------------------------------------------------

use steward_wire::ClientFrame;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SocketQuery {
    /// The session token, for clients that can neither set a header nor a
    /// subprotocol (proxies may log query strings: prefer those).
    pub access_token: Option<String>,
}

/// The caller of the socket and their session token.
struct SocketAuth {
    actor: Actor,
    token: String,
}

/// The token of a `bearer.<token>` subprotocol entry.
fn protocol_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.trim().strip_prefix("bearer."))
        .find(|t| !t.is_empty() && t.len() <= 256)
        .map(str::to_owned)
}

impl FromRequestParts<AppState> for SocketAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let query = axum::extract::Query::<SocketQuery>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.body_text(), None))?;
        let token = bearer(parts)
            .or_else(|| protocol_token(&parts.headers))
            .or(query
                .0
                .access_token
                .filter(|t| !t.is_empty() && t.len() <= 256))
            .ok_or_else(|| ApiError::from(Error::Unauthenticated))?;
        let t = token.clone();
        let actor = blocking(state, move |core| accounts::authenticate(core, &t)).await?;
        Ok(SocketAuth { actor, token })
    }
}

/// The largest frame a socket reads: room for a maximal message body with
/// every character escaped, and at least 64 KiB.
fn frame_limit(max_body: usize) -> usize {
    max_body
        .saturating_mul(8)
        .saturating_add(4096)
        .max(64 * 1024)
}

/// The real-time chat socket (WebSocket). Frames: see `ClientFrame` and
/// `ServerFrame` in the schemas. Authenticate with `Authorization: Bearer`, a
/// `bearer.<token>` subprotocol next to `steward.chat.v1`, or `access_token`.
#[utoipa::path(get, path = "/chat/ws", tag = "chat", security(("bearer" = [])),
    params(SocketQuery),
    responses((status = 101, description = "Switching Protocols: the chat socket"),
              (status = 400, body = ErrorBody, description = "not a WebSocket request"),
              (status = 401, body = ErrorBody),
              (status = 429, body = ErrorBody, description = "the user already has 16 chat sockets open on this server (Retry-After)")))]
async fn socket(
    State(s): State<AppState>,
    auth: SocketAuth,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let ws = upgrade.map_err(|e| {
        ApiError::new(
            e.status(),
            "invalid",
            format!(
                "this route is a WebSocket: connect with an Upgrade: websocket request ({})",
                e.body_text()
            ),
            None,
        )
    })?;
    let author = Arc::new(author(&s, auth.actor.clone()).await?);
    // Registered (its place taken) and recorded before the upgrade is answered:
    // once the client sees the socket open, it receives every message stored
    // after that.
    let Some(reg) = s.chat.hub().register(
        &author.subject_id,
        steward_crypto::token::hash_token(&auth.token),
    ) else {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sockets",
            format!(
                "you have {} chat sockets open on this server: close one first",
                chat::hub::MAX_SOCKETS_PER_SUBJECT
            ),
            None,
        );
        e.retry_after = Some(5);
        return Err(e);
    };
    let connection_id = {
        let (a, t, ip) = (author.clone(), auth.token.clone(), peer.ip().to_string());
        blocking(&s, move |core| {
            chat::connection_opened(core, &a, &t, Some(&ip))
        })
        .await?
    };
    // From here until its end is recorded, a stopping server waits for it.
    let alive = s.chat.hub().track();

    let max = frame_limit(s.core.settings.chat_max_message_bytes);
    let failed = (
        s.clone(),
        author.clone(),
        connection_id.clone(),
        alive.clone(),
    );
    Ok(ws
        .protocols([PROTOCOL])
        .max_message_size(max)
        .max_frame_size(max)
        .on_failed_upgrade(move |_| {
            let (s, author, id, alive) = failed;
            tokio::spawn(async move {
                closed(&s, author, id).await;
                drop(alive);
            });
        })
        .on_upgrade(move |socket| async move {
            connection(s, author, auth.token, connection_id, reg, socket).await;
            drop(alive);
        }))
}

/// Records the end of a connection.
async fn closed(s: &AppState, author: Arc<Author>, id: String) {
    let core = s.core.clone();
    if let Err(e) = run_blocking(move || chat::connection_closed(&core, &author, &id)).await {
        tracing::warn!(error = %e, "could not record the end of a chat connection");
    }
}

/// Runs domain code on the blocking pool, keeping the domain error.
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> crate::error::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("task failed: {e}")))?
}

/// Frames a socket may send a second, on average, and in a burst. A frame over the
/// budget is answered with an `error` frame (`rate_limited`, its `client_id`
/// echoed) and not carried out; the socket stays open. Per socket, in memory.
const FRAMES_PER_SECOND: u32 = 50;
const FRAME_BURST: u32 = 200;

/// A token bucket: [`FRAME_BURST`] frames, refilled at [`FRAMES_PER_SECOND`].
struct Budget {
    tokens: f64,
    at: tokio::time::Instant,
}

impl Budget {
    fn new(now: tokio::time::Instant) -> Budget {
        Budget {
            tokens: f64::from(FRAME_BURST),
            at: now,
        }
    }

    /// Takes one frame's token; false when none is left.
    fn take(&mut self, now: tokio::time::Instant) -> bool {
        let refill =
            now.saturating_duration_since(self.at).as_secs_f64() * f64::from(FRAMES_PER_SECOND);
        self.tokens = (self.tokens + refill).min(f64::from(FRAME_BURST));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One socket, from upgrade to close.
async fn connection(
    state: AppState,
    author: Arc<Author>,
    token: String,
    connection_id: String,
    mut reg: Registration,
    socket: WebSocket,
) {
    let chat = state.chat.clone();
    let mut budget = Budget::new(tokio::time::Instant::now());
    let (mut sink, mut stream) = socket.split();
    let mut recheck = tokio::time::interval_at(
        tokio::time::Instant::now() + SESSION_RECHECK,
        SESSION_RECHECK,
    );
    let reason = loop {
        tokio::select! {
            biased;
            () = reg.cancel.cancelled() => {
                break Some(if chat.hub().is_closing() {
                    if drain(&mut sink, &mut reg).await.is_err() {
                        break None;
                    }
                    (1001, "the server is stopping")
                } else {
                    (1008, "closed by the server: the session ended, or the connection fell behind; reconnect and read the history")
                });
            }
            frame = reg.frames.recv() => {
                let Some(frame) = frame else { break None };
                if write_frames(&mut sink, frame, &mut reg.frames).await.is_err() {
                    break None;
                }
            }
            msg = stream.next() => match msg {
                None | Some(Ok(WsMessage::Close(_))) => break None,
                Some(Err(e)) => break Some(read_error(e)),
                Some(Ok(WsMessage::Text(text))) => on_text(&chat, &author, &reg.outbox, &mut budget, text.as_str()).await,
                Some(Ok(WsMessage::Binary(_))) => {
                    let e = Error::Invalid {
                        field: None,
                        message: "binary frames are not accepted: send JSON text frames".into(),
                    };
                    reg.outbox.push(&ServerFrame::error(None, &e).to_text());
                }
                // Pings are answered by the WebSocket library.
                Some(Ok(_)) => {}
            },
            _ = recheck.tick() => {
                let (core, t) = (state.core.clone(), token.clone());
                if let Err(Error::Unauthenticated) =
                    run_blocking(move || accounts::authenticate(&core, &t)).await
                {
                    break Some((1008, "the session ended: log in again"));
                }
            }
        }
    };
    if let Some((code, why)) = reason {
        let _ = sink.send(close(code, why)).await;
    }
    drop(reg);
    closed(&state, author, connection_id).await;
}

/// The close code and reason for a frame the socket could not read.
fn read_error(e: axum::Error) -> (u16, &'static str) {
    let inner = e.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => (
            1009,
            "frame too large: a message body has at most the configured size",
        ),
        Some(tungstenite::Error::Utf8(_)) => (1007, "a text frame was not UTF-8"),
        _ => (1002, "the frame could not be read"),
    }
}

fn close(code: u16, reason: &str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }))
}

/// Writes `first` and whatever else is queued (up to [`WRITE_BURST`]), then
/// flushes once.
async fn write_frames<S>(
    sink: &mut S,
    first: Arc<str>,
    more: &mut tokio::sync::mpsc::Receiver<Arc<str>>,
) -> Result<(), axum::Error>
where
    S: futures_util::Sink<WsMessage, Error = axum::Error> + Unpin,
{
    sink.feed(WsMessage::Text(Utf8Bytes::from(&*first))).await?;
    for _ in 0..WRITE_BURST {
        match more.try_recv() {
            Ok(frame) => sink.feed(WsMessage::Text(Utf8Bytes::from(&*frame))).await?,
            Err(_) => break,
        }
    }
    sink.flush().await
}

/// Handles one text frame; every answer goes through the connection's outbox.
async fn on_text(chat: &Chat, author: &Author, outbox: &Outbox, budget: &mut Budget, text: &str) {
    let (frame, client_id) = match parse_frame(text) {
        Ok(parsed) => parsed,
        Err((e, client_id)) => {
            outbox.push(&ServerFrame::error(client_id, &e).to_text());
            return;
        }
    };
    if !budget.take(tokio::time::Instant::now()) {
        let e = Error::RateLimited(format!(
            "more than {FRAMES_PER_SECOND} frames a second (bursts of {FRAME_BURST}): this \
             frame was not carried out; send it again"
        ));
        outbox.push(&ServerFrame::error(client_id, &e).to_text());
        return;
    }
    let reply = Reply::Socket(outbox.clone());
    // Counted until the writer answers, so that a stopping server writes the
    // answer before it closes the socket.
    outbox.queued();
    let queued = match frame {
        ClientFrame::Send(f) => {
            chat.queue_send(
                author,
                &f.conversation_id,
                &f.body,
                &f.attachments,
                f.client_id,
                reply,
            )
            .await
        }
        ClientFrame::Delivered(f) => {
            chat.queue_mark(
                author,
                &f.conversation_id,
                Mark::Delivered,
                f.up_to,
                f.client_id,
                reply,
            )
            .await
        }
        ClientFrame::Read(f) => {
            chat.queue_mark(
                author,
                &f.conversation_id,
                Mark::Read,
                f.up_to,
                f.client_id,
                reply,
            )
            .await
        }
    };
    if let Err(e) = queued {
        outbox.answered();
        outbox.push(&ServerFrame::error(client_id, &e).to_text());
    }
}

/// How long a stopping server waits for the answers to a socket's queued
/// operations before it closes the socket.
pub const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// A stopping server: writes what the socket's outbox holds until the writer
/// has answered every operation the socket queued (committed or refused), at
/// most [`DRAIN_WAIT`]. Reading has stopped, so nothing new is queued.
async fn drain<S>(sink: &mut S, reg: &mut Registration) -> Result<(), axum::Error>
where
    S: futures_util::Sink<WsMessage, Error = axum::Error> + Unpin,
{
    let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
    loop {
        while let Ok(frame) = reg.frames.try_recv() {
            sink.feed(WsMessage::Text(Utf8Bytes::from(&*frame))).await?;
        }
        if reg.outbox.pending() == 0 || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sink.flush().await
}

/// Parses a client frame; on failure, the error and the frame's `client_id`
/// (when it has a usable one) to echo.
fn parse_frame(text: &str) -> Result<(ClientFrame, Option<String>), (Error, Option<String>)> {
    steward_wire::parse_frame(text).map_err(|e| {
        (
            Error::Invalid {
                field: e.field,
                message: e.message,
            },
            e.client_id,
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_budget_allows_a_burst_then_the_rate() {
        let start = tokio::time::Instant::now();
        let mut b = Budget::new(start);
        for _ in 0..FRAME_BURST {
            assert!(b.take(start));
        }
        assert!(!b.take(start));
        // A tenth of a second later: a tenth of a second's frames.
        let later = start + Duration::from_millis(100);
        let allowed = (0..FRAME_BURST).filter(|_| b.take(later)).count();
        assert_eq!(allowed, FRAMES_PER_SECOND as usize / 10);
        // Idle for long: the burst again, never more.
        let much_later = later + Duration::from_secs(3600);
        let allowed = (0..2 * FRAME_BURST).filter(|_| b.take(much_later)).count();
        assert_eq!(allowed, FRAME_BURST as usize);
    }

    #[test]
    fn a_refused_frame_is_an_invalid_error_with_its_client_id() {
        let Err((e, id)) = parse_frame(r#"{"type":"read","up_to":"ten","client_id":"c9"}"#) else {
            panic!("parsed");
        };
        assert_eq!((e.field(), id.as_deref()), (Some("up_to"), Some("c9")));
        assert!(matches!(e, Error::Invalid { .. }));
    }

    #[test]
    fn the_token_comes_from_a_bearer_subprotocol() {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "steward.chat.v1, bearer.abc_DEF-123".parse().unwrap(),
        );
        assert_eq!(protocol_token(&h).as_deref(), Some("abc_DEF-123"));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "steward.chat.v1".parse().unwrap(),
        );
        assert_eq!(protocol_token(&h), None);
    }
}
