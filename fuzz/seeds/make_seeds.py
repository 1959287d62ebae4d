#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/ (run from fuzz/).

Seeds are realistic inputs: the shipped packs, token answers shaped like X's and GitHub's,
Slack and Discord events shaped like tests/support's fakes (which follow the real wire format).
The fuzzer grows the corpora from them; `cargo fuzz cmin` keeps them small.
"""
import base64, hashlib, hmac, json, os, pathlib

HERE = pathlib.Path(__file__).resolve().parent.parent
CORPUS = HERE / "corpus"

def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)

# dispatch: lines are messages (">" a DM, "#" from the admin).
dispatch = {
    "help": "@deputy help",
    "build": "deputy: jenkins build deploy a=1 b=2",
    "typo": "@deputy jenkins bild deploy",
    "chatter": "just chatting about jenkins",
    "public-key": "@deputy j setkey alice:11a2b3c4d5e6f7a8",
    "link-and-use": ">jenkins setkey alice:11a2b3c4d5e6f7a8\n@deputy j build deploy env=prod\n@deputy j last deploy\n@deputy j whoami\n>j logout",
    "oauth1": "@deputy t setupauth\n@deputy t auth 748256\n@deputy t search rustlang",
    "oauth2": "@deputy gh setupauth\n@deputy gh auth 123456\n@deputy gh issues rust-lang/rust",
    "admin": ">gitlab setkey glpat-abcdefghij\n#admin stats\n#admin links alice\n#admin revoke alice gitlab\n@deputy admin stats",
    "gitlab": ">gl setkey glpat-abcdefghij\n!gl issues group/name\n!gl issue grp/proj \"a title with 'quotes'\"",
    "quotes": "!j build \"unclosed",
    "spellings": ">help\n>gitlab help\n>gl set up auth\n>gl set-key\n>GL WhoAmI",
    "mention": "<@42> j jobs\nDeputy, x search rust lang\n@deputy",
    "hostile": ">j setkey a:b\n@deputy j last ../admin\n@deputy j build x '\r\nX-Evil: 1'\n@deputy j last %2e%2e\n@deputy j last '{{ 7*7 }}'",
}
for k, v in dispatch.items():
    put("dispatch", k, v)

# pack_load: the shipped packs and a few authoring mistakes.
for p in sorted((HERE.parent / "commands").glob("*.toml")):
    put("pack_load", p.stem, p.read_text())
good = '''[service]
name = "jenkins"
prefixes = ["jenkins", "j"]
summary = "Jenkins"
base_url = "https://jenkins.example.com"
auth = { kind = "basic", hint = "user:token" }

[[command]]
name = "build"
help = "Start a build"
args = ["job", "params*"]
method = "POST"
path = "/job/{{ job | urlencode }}/buildWithParameters"
query = "{{ params | join('&') }}"
headers = { X-Job = "{{ job }}" }
reply = """
Started {{ job }}
{% for p in params %}{{ p }}{% endfor %}"""
'''
put("pack_load", "good", good)
put("pack_load", "bad-template", good.replace("{{ job | urlencode }}", "{{ job | urlencode"))
put("pack_load", "unknown-var", good.replace("{{ params | join('&') }}", "{{ parms }}"))
put("pack_load", "bad-reply", good.replace("{% endfor %}", ""))
put("pack_load", "oauth2", '''[service]
name = "x"
prefixes = ["x"]
base_url = "https://api.example.com"

[service.auth]
kind = "oauth2"
grant = "authorization_code"
authorize_url = "/authorize"
token_url = "https://auth.example.com/token"
revocation_url = "/revoke"
client_auth = "basic"
scopes = ["read"]

[[command]]
name = "post"
help = "x"
method = "PUT"
path = "/p/{{ a | segment }}"
args = ["a", "b?", "rest..."]
scopes = ["write"]
allow = ["ops"]
response = "text"
timeout_secs = 5
''')

# render_args: a byte picking the request (14 in the shipped packs, in load order: github
# issues, issue, whoami; gitlab projects, issues, issue, whoami; jenkins build, last, jobs,
# whoami; twitter search, tweet, whoami), then what the user typed after the command.
render = [
    (0, "rust-lang/rust"), (1, 'o/r "a title with \'quotes\'"'), (2, ""), (3, ""),
    (4, "group/name"), (5, "grp/proj Fix the build"), (6, ""), (7, "deploy a=1 b=2"),
    (8, "deploy"), (9, ""), (10, ""), (11, "rustlang café"), (12, "hello world"), (13, ""),
    (8, "../admin"), (7, "deploy 'x=1&y=2' '\r\nX-Evil: 1'"), (0, "../../user"),
    (11, "%2e%2e {{ 7*7 }} {% raw %}"), (4, "a/../b"), (1, 'o/r "{\\"json\\": 1}"'),
]
for i, (pick, args) in enumerate(render):
    put("render_args", f"{i:02}", bytes([pick]) + args.encode())

# oauth1_token: X's request-token and access-token answers, and what else comes back.
oauth1 = {
    "request": "oauth_token=Z6eEdO8MOmk394WozF5oKyuAv855l4Mlqo7hhlSLik&oauth_token_secret=Kd75W4OQfb2oJTV0vzGzeXftVAwgMnEK9MumzYcM&oauth_callback_confirmed=true",
    "access": "oauth_token=6253282-eWudHldSbIaelX7swmsiHImEL4KinwaGloHANdrY&oauth_token_secret=2EEfA6BG5ly3sR3XjE0IBSnlQu4ZrUzPiYTmrkVU&user_id=6253282&screen_name=twitterapi",
    "problem": "oauth_problem=token_rejected",
    "html": "<html><body>Whoa there!</body></html>",
    "encoded": "oauth_token=a%2Bb%20c&oauth_token_secret=%E2%82%AC&screen_name=",
}
for k, v in oauth1.items():
    put("oauth1_token", k, v)

# oauth2_token: flags (bit 0 device flow, bits 1-2 status 200/400/401/500, bit 3 charset),
# then bodies separated by 0xFF.
token = {"access_token": "gho_16C7e42F292c6912E7710c838347Ae178B4a", "token_type": "bearer",
         "expires_in": 28800, "refresh_token": "ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c3", "scope": "read:user repo"}
device = {"device_code": "3584d83530557fdd1f46af8289938c8ef79f9dc5", "user_code": "WDJB-MJHT",
          "verification_uri": "https://github.com/login/device", "expires_in": 900, "interval": 5}
J = lambda v: json.dumps(v).encode()
oauth2 = {
    "refresh": b"\x00" + J(token),
    "minimal": b"\x08" + J({"access_token": "a", "token_type": "Bearer"}),
    "invalid-grant": b"\x02" + J({"error": "invalid_grant", "error_description": "The refresh token is invalid."}),
    "invalid-client": b"\x04" + J({"error": "invalid_client"}),
    "server-error": b"\x06" + b"<html>oops</html>",
    "github-scopes": b"\x00" + J({**token, "scope": "repo,gist"}),
    "device": b"\x01" + J(device) + b"\xff" + J({"error": "authorization_pending"}) + b"\xff"
              + J({"error": "slow_down", "interval": 10}) + b"\xff" + J({**token, "scope": "repo,gist"}),
    "device-denied": b"\x09" + J({**device, "verification_uri_complete": "https://github.com/login/device?user_code=WDJB-MJHT"})
                     + b"\xff" + J({"error": "access_denied"}),
    "device-refused": b"\x03" + J({"error": "unauthorized_client"}),
}
for k, v in oauth2.items():
    put("oauth2_token", k, v)

# seal_open: mode 1 seals these credentials (as the brain stores them) and opens them again;
# mode 0 opens envelopes as found in the brain: right key id with a wrong tag, an unknown key,
# an unknown version, a short one.
creds = [
    {"kind": "api_key", "secret": "alice:11a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6", "linked_at": 1790000000},
    {"kind": "oauth1", "token": "6253282-eWudHldSbIaelX7swmsiHImEL4KinwaGloHANdrY", "token_secret": "2EEfA6BG5ly3sR3XjE0IBSnlQu4ZrUzPiYTmrkVU", "user_id": "6253282", "screen_name": "twitterapi", "linked_at": 1790000000},
    {"kind": "oauth2", "access_token": "gho_16C7e42F292c6912E7710c838347Ae178B4a", "refresh_token": None, "expires_at": 1790028800, "scopes": ["read:user"], "linked_at": 1790000000},
]
for i, c in enumerate(creds):
    put("seal_open", f"seal-{c['kind']}", b"\x01" + J(c))
secret = base64.b64decode("aGVsbG8gdGhpcyBpcyBhIHRlc3Qgc2VjcmV0IGtleSAxMjM0NTY3OA==")
prk = hmac.new(b"deputy-brain-v1", secret, hashlib.sha256).digest()
key_id = hmac.new(prk, b"key id\x01", hashlib.sha256).digest()[:8]
nonce = bytes(range(24))
put("seal_open", "wrong-tag", b"\x00" + b"\x01" + key_id + nonce + b"\x00" * 40)
put("seal_open", "unknown-key", b"\x00" + b"\x01" + b"\x07" * 8 + nonce + b"\x00" * 40)
put("seal_open", "version-2", b"\x00" + b"\x02" + key_id + nonce + b"\x00" * 40)
put("seal_open", "short", b"\x00" + b"\x01" + key_id)

# slack_event: Socket Mode frames as Slack sends them (tests/support/slack.rs's shapes).
def envelope(event, team="T0TEAM", event_id="Ev0001"):
    return {
        "envelope_id": "e0a1b2c3-0000-4000-8000-000000000001",
        "payload": {
            "token": "fake-verification-token", "team_id": team, "context_team_id": team,
            "context_enterprise_id": None, "api_app_id": "A0APP", "event": event,
            "type": "event_callback", "event_id": event_id, "event_time": 1700000000,
            "authorizations": [{"enterprise_id": None, "team_id": team, "user_id": "U0BOT",
                                "is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": False, "event_context": "4-fake-Ev0001",
        },
        "type": "events_api", "accepts_response_payload": False,
        "retry_attempt": 0, "retry_reason": "",
    }
def blocks(text):
    return [{"type": "rich_text", "block_id": "fAkE1", "elements": [{"type": "rich_text_section",
             "elements": [{"type": "user", "user_id": "U0BOT"}, {"type": "text", "text": text}]}]}]
mention = {"client_msg_id": "c11e0000-0000-4000-8000-000000000001", "type": "app_mention",
           "text": "<@U0BOT> jenkins last deploy", "user": "U0ALICE", "ts": "1700000000.000100",
           "blocks": blocks(" jenkins last deploy"), "team": "T0TEAM", "channel": "C0GENERAL",
           "event_ts": "1700000000.000100"}
dm = {"client_msg_id": "c11e0000-0000-4000-8000-000000000002", "type": "message",
      "text": "jenkins setkey alice:tok", "user": "U0ALICE", "ts": "1700000001.000200",
      "blocks": blocks("jenkins setkey alice:tok"), "team": "T0TEAM", "channel": "D0ALICE",
      "event_ts": "1700000001.000200", "channel_type": "im"}
slack = {
    "mention": envelope(mention),
    "mention-thread": envelope({**mention, "thread_ts": "1699999999.000001"}),
    "dm": envelope(dm),
    "dm-edit": envelope({**dm, "subtype": "message_changed"}),
    "dm-bot": envelope({**dm, "bot_id": "B0BOT", "user": "U0BOT"}),
    "channel-message": envelope({**dm, "channel_type": "channel", "channel": "C0GENERAL"}),
    "hello": {"type": "hello", "num_connections": 1, "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060}, "connection_info": {"app_id": "A0APP"}},
    "disconnect": {"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "applink-fake"}},
}
for k, v in slack.items():
    put("slack_event", k, J(v))

# discord_event: gateway frames (tests/support/discord.rs's shapes).
def user(uid, name, bot=False):
    u = {"id": str(uid), "username": name, "discriminator": "0", "global_name": None if bot else name,
         "avatar": None, "public_flags": 0}
    if bot:
        u["bot"] = True
    return u
def msg(content, guild=True, author=None, mentions=()):
    m = {"id": "1100000000000000001", "channel_id": "1200000000000000001",
         "author": author or user(1000000000000000001, "alice"), "content": content,
         "timestamp": "2026-12-05T11:00:00.000000+00:00", "edited_timestamp": None, "tts": False,
         "mention_everyone": False, "mentions": list(mentions), "mention_roles": [],
         "attachments": [], "embeds": [], "components": [], "pinned": False, "type": 0, "flags": 0}
    if guild:
        m["guild_id"] = "1300000000000000001"
        m["member"] = {"roles": [], "joined_at": "2024-01-01T00:00:00.000000+00:00",
                       "deaf": False, "mute": False, "flags": 0, "pending": False}
    return m
frame = lambda d, t="MESSAGE_CREATE", s=2: {"op": 0, "s": s, "t": t, "d": d}
discord = {
    "mention": frame(msg("<@4242> jenkins last deploy", mentions=[user(4242, "deputy", True)])),
    "mention-nick": frame(msg("<@!4242> help", mentions=[user(4242, "deputy", True)])),
    "dm": frame(msg("jenkins setkey alice:tok", guild=False)),
    "bot": frame(msg("Started deploy", author=user(4242, "deputy", True))),
    "reply": frame({**msg("@deputy j jobs"), "type": 19, "message_reference": {"message_id": "1100000000000000000", "channel_id": "1200000000000000001"}}),
    "hello": {"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None},
    "ack": {"op": 11, "d": None},
}
for k, v in discord.items():
    put("discord_event", k, J(v))
