// deputy's web chat page. The token comes from the URL fragment (#token=…, never sent to any
// server) or from the embedding page by postMessage; it travels to deputy in the WebSocket
// subprotocol list. Replies are rendered as text nodes: nothing from the server is parsed as
// HTML. Links open in a new tab.
(function () {
  "use strict";
  var origins = [];
  try { origins = JSON.parse(document.querySelector('meta[name="deputy-origins"]').content); } catch (e) {}
  var log = document.getElementById("log");
  var status = document.getElementById("status");
  var form = document.getElementById("send");
  var input = document.getElementById("text");
  var button = document.getElementById("go");
  var token = null, ws = null, opened = false, expired = false, retries = 0, busyRow = null;

  var hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    token = hash.get("token");
    // Out of the address bar and history.
    history.replaceState(null, "", location.pathname + location.search);
  }

  function setStatus(text, bad) {
    status.textContent = text;
    status.className = bad ? "bad" : "";
  }

  function enable(on) {
    input.disabled = !on;
    button.disabled = !on;
    if (on) input.focus();
  }

  // Text with links (http/https only) and `code`, as DOM nodes.
  function render(el, text) {
    var re = /(https?:\/\/[^\s<>"'`]+)|`([^`\n]+)`/g, last = 0, m;
    while ((m = re.exec(text)) !== null) {
      var used = m[0];
      el.appendChild(document.createTextNode(text.slice(last, m.index)));
      if (m[1]) {
        used = m[1].replace(/[).,;:!?\]]+$/, "");
        var a = document.createElement("a");
        a.href = used;
        a.textContent = used;
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        el.appendChild(a);
      } else {
        var code = document.createElement("code");
        code.textContent = m[2];
        el.appendChild(code);
      }
      last = m.index + used.length;
      re.lastIndex = last;
    }
    el.appendChild(document.createTextNode(text.slice(last)));
  }

  function add(kind, text, bad) {
    var li = document.createElement("li");
    li.className = kind + (bad ? " bad" : "");
    render(li, text);
    log.appendChild(li);
    log.scrollTop = log.scrollHeight;
    return li;
  }

  function busy(on) {
    if (on && !busyRow) {
      busyRow = add("busy", "…");
    } else if (!on && busyRow) {
      busyRow.remove();
      busyRow = null;
    }
  }

  // Asks the embedding page for a (fresh) token; it answers with {type:"deputy-token"}.
  function askParent() {
    if (window.parent !== window) {
      window.parent.postMessage({ type: "deputy-need-token" }, "*");
      return true;
    }
    return false;
  }

  window.addEventListener("message", function (ev) {
    var ownOrigin = location.origin;
    if (ev.origin !== ownOrigin && origins.indexOf(ev.origin) < 0) return;
    var d = ev.data;
    if (d && d.type === "deputy-token" && typeof d.token === "string") {
      token = d.token;
      expired = false;
      if (!ws) connect();
    }
  });

  function connect() {
    if (!token) {
      setStatus("waiting for a sign-in token", false);
      if (!askParent()) {
        setStatus("no sign-in token", true);
        add("note", "This page needs a sign-in token from the site it is embedded in (#token=… in its address).", true);
      }
      return;
    }
    opened = false;
    setStatus("connecting…", false);
    var url = new URL("chat/ws", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.hash = "";
    try {
      ws = new WebSocket(url.href, ["deputy", token]);
    } catch (e) {
      ws = null;
      setStatus("cannot connect", true);
      return;
    }
    ws.onopen = function () { opened = true; retries = 0; };
    ws.onmessage = function (ev) {
      var m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m.type === "hello") {
        setStatus("connected as " + m.name, false);
        enable(true);
      } else if (m.type === "reply") {
        busy(false);
        add("bot", m.text);
      } else if (m.type === "busy") {
        busy(m.on);
      } else if (m.type === "error") {
        add("note", m.text, true);
      } else if (m.type === "expired") {
        expired = true;
        add("note", m.text, true);
      }
    };
    ws.onclose = function (ev) {
      ws = null;
      busy(false);
      enable(false);
      if (ev.code === 4001 || expired) {
        token = null;
        setStatus("session expired", true);
        if (askParent()) {
          add("note", "Getting a fresh sign-in from the site…");
        } else {
          add("note", "Reload the page to sign in again.", true);
        }
        return;
      }
      if (!opened) {
        // The upgrade was refused (a bad or expired token, an origin not allowed, too many
        // tabs): the browser does not say which. Ask the site for a fresh token once.
        setStatus("not connected", true);
        if (retries === 0 && askParent()) {
          token = null;
          retries++;
          return;
        }
        add("note", "deputy refused the connection: the sign-in token may have expired, or you have too many chat tabs open. Reload the page to try again.", true);
        return;
      }
      setStatus("reconnecting…", true);
      retries++;
      setTimeout(connect, Math.min(30000, 1000 * Math.pow(2, retries)));
    };
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = input.value.trim();
    if (!text || !ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify({ type: "message", text: text }));
    // A key typed here stays out of the transcript.
    add("me", text.replace(/(\bsetkey\s+)\S.*/i, "$1••••••"));
    input.value = "";
  });

  input.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });

  connect();
})();
