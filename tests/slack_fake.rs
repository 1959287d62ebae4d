//! Checks the fake Slack in `support::slack` against the real slack-morphism client and Socket
//! Mode listener that deputy's adapter is built on: if slack-morphism cannot parse what the
//! fake sends, or the fake misreads what slack-morphism sends, the adapter's tests would be
//! testing a fiction.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use support::slack::{DirectMessage, FakeSlack, Mention, APP_TOKEN, BOT_TOKEN, BOT_USER};
use tokio::sync::mpsc;

type Connector = SlackClientHyperConnector<HttpConnector>;
type Client = SlackClient<Connector>;

/// What the listener's callbacks saw, handed to them through the listener's user state.
struct Seen {
    events: mpsc::UnboundedSender<SlackPushEventCallback>,
    /// The app id from each hello.
    hellos: mpsc::UnboundedSender<String>,
}

/// Errors the listener reported, such as a frame it could not parse (which it still acks).
static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn token(value: &str) -> SlackApiToken {
    SlackApiToken::new(SlackApiTokenValue(value.into()))
}

// Listener callbacks are plain `fn`s, so the test's channels travel in the user state.
async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let states = states.read().await;
    states
        .get_user_state::<Seen>()
        .unwrap()
        .events
        .send(event)
        .unwrap();
    Ok(())
}

fn on_error(
    err: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<Client>,
    _states: SlackClientEventsUserState,
) -> HttpStatusCode {
    ERRORS.lock().unwrap().push(err.to_string());
    HttpStatusCode::OK
}

/// The next thing a callback passed on; on a timeout, the listener's errors say why.
async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
        Ok(item) => item.unwrap(),
        Err(_) => panic!(
            "no callback within 30 s; listener errors: {:?}",
            ERRORS.lock().unwrap()
        ),
    }
}

fn api_error(err: SlackClientError) -> String {
    match err {
        SlackClientError::ApiError(e) => e.code,
        other => panic!("expected a Slack API error, got {other:?}"),
    }
}

#[tokio::test]
async fn slack_morphism_talks_to_the_fake() {
    let fake = FakeSlack::start().await;
    let slack = fake.state.clone();
    let client = Arc::new(Client::new(
        Connector::with_connector(HttpConnector::new()).with_slack_api_url(&fake.api_url),
    ));
    let bot = token(BOT_TOKEN);

    let me = client.open_session(&bot).auth_test().await.unwrap();
    assert_eq!(me.user_id.0, BOT_USER);
    let wrong = client.open_session(&token("xoxb-wrong")).auth_test().await;
    assert_eq!(api_error(wrong.unwrap_err()), "invalid_auth");

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (hellos_tx, mut hellos) = mpsc::unbounded_channel();
    let seen = Seen {
        events: events_tx,
        hellos: hellos_tx,
    };
    let environment = Arc::new(
        SlackClientEventsListenerEnvironment::new(client.clone())
            .with_user_state(seen)
            .with_error_handler(on_error),
    );
    // One connection (the default second one would connect 5 s later), and a ping every
    // second with a reconnect once no pong came for 2 s, so the fake's pongs are exercised
    // within the test.
    let config = SlackClientSocketModeConfig::new()
        .with_max_connections_count(1)
        .with_ping_interval_in_seconds(1)
        .with_ping_failure_threshold_times(1);
    let listener = SlackClientSocketModeListener::new(
        &config,
        environment,
        SlackSocketModeListenerCallbacks::new()
            .with_push_events(on_push)
            .with_hello_events(|hello, _client, states| async move {
                // A closure, because `SlackSocketModeHelloEvent` cannot be named: slack-morphism's
                // `socket_mode` module shadows the model module of the same name.
                let states = states.read().await;
                let seen = states.get_user_state::<Seen>().unwrap();
                seen.hellos.send(hello.connection_info.app_id.0).unwrap();
            }),
    );
    listener.listen_for(&token(APP_TOKEN)).await.unwrap();
    listener.start().await;
    slack.wait_connected().await;
    let hello = next(&mut hellos).await;
    assert_eq!(hello, support::slack::APP_ID);

    // An app_mention arrives typed, not as `Unknown`, and the reply goes to its thread.
    let mention = Mention {
        team: "T0TEAM".into(),
        channel: "C0GENERAL".into(),
        user: "U0ALICE".into(),
        text: format!("<@{BOT_USER}> deploy prod"),
        ts: "1700000000.000100".into(),
        thread_ts: None,
        event_id: "Ev0MENTION".into(),
    };
    let envelope = slack.send_mention(mention.clone()).await;
    let event = next(&mut events).await;
    assert_eq!(event.team_id.0, "T0TEAM");
    assert_eq!(event.event_id.0, "Ev0MENTION");
    assert_eq!(event.api_app_id.0, support::slack::APP_ID);
    assert_eq!(
        event.authorizations.as_ref().unwrap()[0].user_id.0,
        BOT_USER
    );
    let SlackEventCallbackBody::AppMention(m) = event.event else {
        panic!("not parsed as an app_mention: {:?}", event.event);
    };
    assert_eq!(m.channel.0, "C0GENERAL");
    assert_eq!(m.user.0, "U0ALICE");
    assert_eq!(m.content.text.as_deref(), Some("<@U0BOT> deploy prod"));
    assert!(m.content.blocks.is_some());
    assert_eq!(
        m.origin.channel, None,
        "slack-morphism reads `channel` at the top level"
    );
    let thread = m.origin.thread_ts.clone().unwrap_or(m.origin.ts.clone());

    let session = client.open_session(&bot);
    let reply = session
        .chat_post_message(
            &SlackApiChatPostMessageRequest::new(
                m.channel.clone(),
                SlackMessageContent::new().with_text("deploying".into()),
            )
            .with_thread_ts(thread),
        )
        .await
        .unwrap();
    assert_eq!(reply.channel.0, "C0GENERAL");
    assert!(slack.wait_acked(&envelope).await < Duration::from_secs(3));
    let posted = slack.wait_posted(1).await;
    assert_eq!(posted[0].method, "chat.postMessage");
    assert_eq!(posted[0].channel, "C0GENERAL");
    assert_eq!(posted[0].text, "deploying");
    assert_eq!(posted[0].thread_ts.as_deref(), Some("1700000000.000100"));
    assert_eq!(posted[0].token, BOT_TOKEN);

    // Slack's retry carries the same event_id in a new envelope; slack-morphism does not
    // expose retry_attempt, so deduplicating is up to the event_id.
    let retry = slack.send_mention(mention).await;
    assert_ne!(retry, envelope);
    assert_eq!(next(&mut events).await.event_id.0, "Ev0MENTION");
    slack.wait_acked(&retry).await;

    // A direct message is a `message` event in an IM channel.
    let dm = slack
        .send_dm(DirectMessage {
            team: "T0TEAM".into(),
            channel: "D0ALICE".into(),
            user: "U0ALICE".into(),
            text: "status".into(),
            ts: "1700000001.000200".into(),
            event_id: "Ev0DM".into(),
        })
        .await;
    let event = next(&mut events).await;
    let SlackEventCallbackBody::Message(msg) = event.event else {
        panic!("not parsed as a message: {:?}", event.event);
    };
    assert_eq!(msg.origin.channel.unwrap().0, "D0ALICE");
    assert_eq!(msg.origin.channel_type.unwrap().0, "im");
    assert_eq!(msg.sender.user.unwrap().0, "U0ALICE");
    assert_eq!(msg.content.unwrap().text.as_deref(), Some("status"));
    assert_eq!(msg.subtype, None);
    slack.wait_acked(&dm).await;
    assert_eq!(slack.acks().len(), 3);

    // Ephemeral replies, opening a DM, a text over the limit and a method the fake lacks.
    let im = session
        .conversations_open(
            &SlackApiConversationsOpenRequest::new().with_users(vec!["U0ALICE".into()]),
        )
        .await
        .unwrap();
    assert_eq!(im.channel.id.0, "DU0ALICE");
    session
        .chat_post_ephemeral(&SlackApiChatPostEphemeralRequest::new(
            "C0GENERAL".into(),
            "U0ALICE".into(),
            SlackMessageContent::new().with_text("only you".into()),
        ))
        .await
        .unwrap();
    slack.fail_next("chat.postMessage", "ratelimited");
    let limited = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            "C0GENERAL".into(),
            SlackMessageContent::new().with_text("too fast".into()),
        ))
        .await;
    assert!(matches!(limited, Err(SlackClientError::RateLimitError(_))));
    let long = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            "C0GENERAL".into(),
            SlackMessageContent::new().with_text("x".repeat(40_001)),
        ))
        .await;
    assert_eq!(api_error(long.unwrap_err()), "msg_too_long");
    let unknown = session
        .users_info(&SlackApiUsersInfoRequest::new("U0ALICE".into()))
        .await;
    assert_eq!(api_error(unknown.unwrap_err()), "unknown_method");
    let posted = slack.posted();
    assert_eq!(posted.len(), 2);
    assert_eq!(posted[1].method, "chat.postEphemeral");
    assert_eq!(posted[1].user.as_deref(), Some("U0ALICE"));

    // Three pings sent means each was answered in time; one connection means no reconnect.
    slack.wait_pings(3).await;
    assert_eq!(
        slack.api_calls(),
        [
            "auth.test",
            "auth.test",
            "apps.connections.open",
            "chat.postMessage",
            "conversations.open",
            "chat.postEphemeral",
            "chat.postMessage",
            "chat.postMessage",
            "users.info",
        ]
    );
    assert_eq!(*ERRORS.lock().unwrap(), Vec::<String>::new());
    listener.shutdown().await;
}

/// slack-morphism joins the base URL and the method with a `/` of its own.
#[tokio::test]
async fn api_url_takes_no_trailing_slash() {
    let fake = FakeSlack::start().await;
    let client = Client::new(
        Connector::with_connector(HttpConnector::new())
            .with_slack_api_url(&format!("{}/", fake.api_url)),
    );
    let err = client.open_session(&token(BOT_TOKEN)).auth_test().await;
    assert!(
        matches!(err, Err(SlackClientError::HttpError(_))),
        "{err:?}"
    );
    assert_eq!(fake.state.api_calls(), ["404 /api//auth.test"]);
}

/// What the command and interaction callbacks saw.
struct Interactive {
    commands: mpsc::UnboundedSender<SlackCommandEvent>,
    interactions: mpsc::UnboundedSender<SlackInteractionEvent>,
}

async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let states = states.read().await;
    let seen = states.get_user_state::<Interactive>().unwrap();
    seen.commands.send(event).unwrap();
    Ok(SlackCommandEventResponse::new(SlackMessageContent::new()))
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackInteractionResponse> {
    let states = states.read().await;
    let seen = states.get_user_state::<Interactive>().unwrap();
    seen.interactions.send(event).unwrap();
    Ok(SlackInteractionResponse::Empty)
}

#[tokio::test]
async fn slack_morphism_reads_the_fakes_slash_commands_clicks_and_modals() {
    let fake = FakeSlack::start().await;
    let slack = fake.state.clone();
    let client = Arc::new(Client::new(
        Connector::with_connector(HttpConnector::new()).with_slack_api_url(&fake.api_url),
    ));
    let (commands_tx, mut commands) = mpsc::unbounded_channel();
    let (interactions_tx, mut interactions) = mpsc::unbounded_channel();
    let environment = Arc::new(
        SlackClientEventsListenerEnvironment::new(client.clone())
            .with_user_state(Interactive {
                commands: commands_tx,
                interactions: interactions_tx,
            })
            .with_error_handler(on_error),
    );
    let listener = SlackClientSocketModeListener::new(
        &SlackClientSocketModeConfig::new().with_max_connections_count(1),
        environment,
        SlackSocketModeListenerCallbacks::new()
            .with_command_events(on_command)
            .with_interaction_events(on_interaction),
    );
    listener.listen_for(&token(APP_TOKEN)).await.unwrap();
    listener.start().await;
    let bot = token(BOT_TOKEN);
    let session = client.open_session(&bot);

    // A slash command arrives typed, with its trigger, and is acked with the callback's payload.
    let env = slack
        .send_slash_command("T0TEAM", "C0GENERAL", "U0ALICE", "jenkins setkey")
        .await;
    let command = next(&mut commands).await;
    assert_eq!(command.command.0, "/deputy");
    assert_eq!(command.text.as_deref(), Some("jenkins setkey"));
    assert_eq!(
        (command.team_id.0.as_str(), command.user_id.0.as_str()),
        ("T0TEAM", "U0ALICE")
    );
    assert_eq!(command.channel_id.0, "C0GENERAL");
    slack.wait_acked(&env).await;
    assert_eq!(slack.ack_payload(&env), Some(serde_json::json!({})));

    // Its trigger opens one modal, once.
    let input = SlackBlockPlainTextInputElement::new()
        .with_action_id("secret".into())
        .with_placeholder("user:token".into());
    let view = SlackView::Modal(
        SlackModalView::new(
            "Link jenkins".into(),
            vec![SlackInputBlock::new(
                "Your jenkins key".into(),
                SlackInputBlockElement::PlainTextInput(input),
            )
            .with_block_id("deputy_secret".into())
            .into()],
        )
        .with_submit("Link".into())
        .with_callback_id("cb-1".into())
        .with_private_metadata("C0GENERAL".into()),
    );
    let opened = session
        .views_open(&SlackApiViewsOpenRequest::new(
            command.trigger_id.clone(),
            view.clone(),
        ))
        .await
        .unwrap();
    let views = slack.views();
    assert_eq!(opened.view.state_params.id.0, views[0].id);
    assert_eq!(views[0].callback_id, "cb-1");
    assert_eq!(views[0].private_metadata, "C0GENERAL");
    assert_eq!(views[0].user, "U0ALICE");
    let again = session
        .views_open(&SlackApiViewsOpenRequest::new(command.trigger_id, view))
        .await;
    assert_eq!(api_error(again.unwrap_err()), "expired_trigger_id");

    // The submission carries the typed value where slack-morphism's view state puts it.
    let env = slack
        .submit_view(&views[0].id, "U0ALICE", "alice:tok")
        .await;
    let SlackInteractionEvent::ViewSubmission(submitted) = next(&mut interactions).await else {
        panic!("not a view_submission");
    };
    assert_eq!(submitted.user.id.0, "U0ALICE");
    assert_eq!(submitted.team.id.0, "T0TEAM");
    let SlackView::Modal(modal) = &submitted.view.view else {
        panic!("not a modal");
    };
    assert_eq!(modal.callback_id.as_ref().unwrap().0, "cb-1");
    assert_eq!(modal.private_metadata.as_deref(), Some("C0GENERAL"));
    let state = submitted.view.state_params.state.as_ref().unwrap();
    let value = &state.values[&SlackBlockId::new("deputy_secret".into())]
        [&SlackActionId::new("secret".into())];
    assert_eq!(value.value.as_deref(), Some("alice:tok"));
    slack.wait_acked(&env).await;
    assert_eq!(
        slack.ack_payload(&env),
        None,
        "an empty ack closes the modal"
    );

    // Buttons go out in blocks; a click on one comes back as block_actions with a trigger.
    let button = |id: &str, label: &str| {
        SlackActionBlockElement::Button(
            SlackBlockButtonElement::new(label.into())
                .with_action_id(id.into())
                .with_style(SlackBlockButtonStyle::Danger),
        )
    };
    session
        .chat_post_ephemeral(&SlackApiChatPostEphemeralRequest::new(
            "C0GENERAL".into(),
            "U0ALICE".into(),
            SlackMessageContent::new()
                .with_text("Sure?".into())
                .with_blocks(vec![
                    SlackSectionBlock::new()
                        .with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(
                            "Sure?".into(),
                        )))
                        .into(),
                    SlackActionsBlock::new(vec![button("dp1.yes", "Confirm")]).into(),
                ]),
        ))
        .await
        .unwrap();
    let posted = slack.wait_posted(1).await;
    assert_eq!(
        posted[0].buttons(),
        [(
            "dp1.yes".to_string(),
            "Confirm".to_string(),
            Some("danger".to_string())
        )]
    );
    let env = slack
        .click("T0TEAM", "C0GENERAL", "U0ALICE", "dp1.yes", true)
        .await;
    let SlackInteractionEvent::BlockActions(click) = next(&mut interactions).await else {
        panic!("not block_actions");
    };
    assert_eq!(click.user.as_ref().unwrap().id.0, "U0ALICE");
    assert_eq!(click.channel.as_ref().unwrap().id.0, "C0GENERAL");
    assert_eq!(click.actions.as_ref().unwrap()[0].action_id.0, "dp1.yes");
    assert!(!click.trigger_id.0.is_empty());
    slack.wait_acked(&env).await;

    // Blocks Slack would refuse are refused.
    let bad = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            "C0GENERAL".into(),
            SlackMessageContent::new()
                .with_text("x".into())
                .with_blocks(vec![SlackSectionBlock::new()
                    .with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(
                        "x".repeat(3001),
                    )))
                    .into()]),
        ))
        .await;
    assert!(api_error(bad.unwrap_err()).starts_with("invalid_blocks"));
    assert_eq!(*ERRORS.lock().unwrap(), Vec::<String>::new());
    listener.shutdown().await;
}
