/*
 * Herald live notifications.
 *
 * Fetches short-lived credentials for this user's own topic, connects with MQTT.js over
 * WebSocket and keeps the bell, a toast and the notifications list up to date without reloads.
 *
 * - Credentials expire: the client reconnects with fresh ones a minute before they do, and after
 *   any drop with exponential backoff (1 s doubling to 30 s, with jitter).
 * - After every (re)connect it asks the API for `?after_seq=<last seq seen>`, so nothing sent while
 *   it was away is missed; notifications are keyed by id, so nothing is shown twice.
 * - Text from messages is inserted with textContent only, never as HTML.
 */
(function () {
  "use strict";

  var body = document.body;
  if (!body || !body.dataset.live || typeof window.mqtt === "undefined") return;

  var CREDENTIALS_URL = "/api/notifications/credentials/";
  var CATCH_UP_URL = "/api/notifications/?after_seq=";
  var REFRESH_BEFORE_EXPIRY_MS = 60 * 1000;
  var MAX_BACKOFF_MS = 30 * 1000;
  var TOAST_MAX_AGE_MS = 2 * 60 * 1000;

  var lastSeq = parseInt(body.dataset.lastSeq || "0", 10) || 0;
  var badgeSeq = lastSeq; // seq of the newest message whose unread_count the badge shows
  var seen = new Set();
  var client = null;
  var refreshTimer = null;
  var retryTimer = null;
  var attempt = 0;
  var connecting = false;

  document.querySelectorAll("#notification-list li[data-id]").forEach(function (li) {
    seen.add(Number(li.dataset.id));
  });

  function cookie(name) {
    var match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : "";
  }

  function setState(state) {
    var el = document.getElementById("live-state");
    if (el) {
      el.dataset.state = state;
      el.title = state === "live" ? "Live" : state === "reconnecting" ? "Reconnecting…" : "Offline";
    }
    body.dataset.liveState = state;
  }

  function setBadge(count, seq) {
    if (typeof count !== "number" || seq < badgeSeq) return;
    badgeSeq = seq;
    var badge = document.getElementById("bell-count");
    if (!badge) return;
    badge.textContent = String(count);
    badge.dataset.unread = String(count);
    badge.classList.toggle("is-zero", count === 0);
    var bell = badge.closest(".bell");
    if (bell) bell.setAttribute("aria-label", "Notifications, " + count + " unread");
  }

  function safeUrl(url) {
    // Only same-site paths: a message can never turn a link into javascript: or another origin.
    return typeof url === "string" && url.charAt(0) === "/" && url.charAt(1) !== "/" ? url : "/notifications/";
  }

  function toast(message) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var el = document.createElement("div");
    el.className = "toast";
    el.setAttribute("role", "status");
    var link = document.createElement("a");
    link.href = safeUrl(message.url);
    link.textContent = message.text;
    el.appendChild(link);
    box.appendChild(el);
    setTimeout(function () { el.remove(); }, 6000);
  }

  function listItem(n) {
    var li = document.createElement("li");
    li.className = "notification unread is-new kind-" + String(n.kind).replace(/[^a-z_]/g, "");
    li.dataset.id = String(n.id);
    li.dataset.seq = String(n.seq);
    var form = document.createElement("form");
    form.method = "post";
    form.action = "/notifications/" + Number(n.id) + "/read/";
    [["csrfmiddlewaretoken", cookie("csrftoken")], ["open", "1"]].forEach(function (pair) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = pair[0];
      input.value = pair[1];
      form.appendChild(input);
    });
    var button = document.createElement("button");
    button.className = "notification-open";
    var text = document.createElement("span");
    text.className = "notification-text";
    text.textContent = n.text;
    var time = document.createElement("time");
    time.dateTime = n.created_at;
    time.textContent = "just now";
    button.appendChild(text);
    button.appendChild(time);
    form.appendChild(button);
    li.appendChild(form);
    return li;
  }

  function insertInList(n) {
    var list = document.getElementById("notification-list");
    if (!list || new URLSearchParams(location.search).has("before")) return;
    var empty = document.getElementById("no-notifications");
    if (empty) empty.remove();
    var item = listItem(n);
    // Keep the list ordered by seq even when catch-up and live messages interleave.
    var next = Array.prototype.find.call(list.children, function (li) {
      return Number(li.dataset.seq) < n.seq;
    });
    list.insertBefore(item, next || null);
  }

  function showNotification(n, live) {
    if (seen.has(n.id)) return;
    seen.add(n.id);
    lastSeq = Math.max(lastSeq, n.seq);
    insertInList(n);
    // A retried push of an old event (delivered late by deliver_pending) updates the list quietly.
    if (live && Date.now() - Date.parse(n.created_at) < TOAST_MAX_AGE_MS) toast(n);
  }

  function markRead(ids) {
    document.querySelectorAll("#notification-list li.unread").forEach(function (li) {
      if (ids === null || ids.indexOf(Number(li.dataset.id)) !== -1) li.classList.remove("unread");
    });
  }

  function onMessage(topic, payload) {
    var message;
    try {
      message = JSON.parse(new TextDecoder().decode(payload));
    } catch (e) {
      return;
    }
    if (!message || message.v !== 1) return;
    if (message.type === "notification") {
      showNotification(message, true);
      setBadge(message.unread_count, message.seq);
    } else if (message.type === "read") {
      markRead(message.all ? null : message.ids || []);
      setBadge(message.unread_count, message.seq);
    }
  }

  function catchUp(url) {
    return fetch(url || CATCH_UP_URL + lastSeq, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("catch-up failed: " + response.status);
        return response.json();
      })
      .then(function (page) {
        page.results.forEach(function (n) { showNotification(n, false); });
        setBadge(page.unread_count, page.last_seq);
        if (page.next) return catchUp(page.next);
      })
      .catch(function () { /* the next reconnect tries again */ });
  }

  function fetchCredentials() {
    return fetch(CREDENTIALS_URL, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": cookie("csrftoken"), Accept: "application/json" },
    }).then(function (response) {
      if (!response.ok) throw new Error("credentials refused: " + response.status);
      return response.json();
    });
  }

  function scheduleReconnect() {
    if (retryTimer) return;
    setState("reconnecting");
    var delay = Math.min(MAX_BACKOFF_MS, 1000 * Math.pow(2, attempt));
    delay = delay / 2 + Math.random() * delay / 2;
    attempt += 1;
    retryTimer = setTimeout(function () {
      retryTimer = null;
      connect();
    }, delay);
  }

  function connect() {
    if (connecting) return;
    connecting = true;
    if (!client) setState("reconnecting");
    fetchCredentials()
      .then(function (creds) {
        var next = window.mqtt.connect(creds.url, {
          clientId: creds.client_id,
          username: creds.username,
          password: creds.password,
          protocolVersion: 4,
          clean: true,
          reconnectPeriod: 0, // reconnects need fresh credentials: handled here, not by MQTT.js
          connectTimeout: 10 * 1000,
          keepalive: 30,
        });
        next.on("connect", function () {
          next.subscribe(creds.topics.notifications, { qos: 1 }, function (err, granted) {
            if (err || !granted || !granted.length || granted[0].qos === 128) {
              next.end(true);
              return;
            }
            var previous = client;
            client = next;
            connecting = false;
            attempt = 0;
            setState("live");
            if (previous) previous.end(true); // make before break: no gap while refreshing
            catchUp();
            scheduleRefresh(creds.expires_at);
          });
        });
        next.on("message", onMessage);
        next.on("close", function () {
          if (next === client) {
            client = null;
            scheduleReconnect();
          } else if (connecting && next !== client) {
            connecting = false;
            next.removeAllListeners("close");
            scheduleReconnect();
          }
        });
        next.on("error", function () { next.end(true); });
      })
      .catch(function () {
        connecting = false;
        scheduleReconnect();
      });
  }

  function scheduleRefresh(expiresAt) {
    clearTimeout(refreshTimer);
    var wait = Date.parse(expiresAt) - Date.now() - REFRESH_BEFORE_EXPIRY_MS;
    // (setTimeout fires at once past 2^31-1 ms; credentials never live that long, but be safe.)
    refreshTimer = setTimeout(connect, Math.min(Math.max(wait, 5 * 1000), 24 * 3600 * 1000));
  }

  // The page may have been restored from the back/forward cache, or woken from sleep.
  window.addEventListener("online", function () { if (!client) connect(); });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && !client && !connecting) connect();
  });

  window.heraldLive = { state: function () { return body.dataset.liveState; }, lastSeq: function () { return lastSeq; } };
  connect();
})();
