/*
 * Herald live notifications.
 *
 * Fetches short-lived credentials for this user's own topic, connects with MQTT.js over
 * WebSocket and keeps the bell, a toast and the notifications list up to date without reloads.
 *
 * - Credentials expire: the client reconnects with fresh ones a minute before they do, and after
 *   any drop with exponential backoff (1 s doubling to 30 s, with jitter).
 * - After every (re)connect it asks the API for `?after_seq=<last seq seen>`, so nothing sent while
 *   it was away is missed (and it does the same when a message's seq skips one).
 * - Items are keyed by id: a grouped item that gains activity ("Ana and 2 others liked …") comes
 *   again with the same id and a higher seq and replaces its line, moving to the top; one whose
 *   group shrank comes with the same seq and is replaced where it is; `removed` drops items.
 *   Nothing is ever shown twice.
 * - The bell shows the unseen count (`seen`: the user opened the notifications somewhere); items
 *   stay unread (styled) until read.
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
  // Everything up to this seq was on the server when the page was rendered: an item we have not
  // met yet whose seq is at or below it is an old item changing in place, not news.
  var pageSeq = lastSeq;
  // Each count shown is the one of the newest message that carried it (ordered by seq; at equal
  // seq a read / seen / removed message beats a notification, which it always follows).
  var counts = {
    unseen: { value: null, seq: lastSeq, rank: 1 },
    unread: { value: null, seq: lastSeq, rank: 1 },
  };
  var known = new Map(); // notification id → the seq we last showed for it
  var client = null;
  var refreshTimer = null;
  var retryTimer = null;
  var attempt = 0;
  var connecting = false;
  var gapFetch = null;

  document.querySelectorAll("#notification-list li[data-id]").forEach(function (li) {
    known.set(Number(li.dataset.id), Number(li.dataset.seq) || 0);
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

  function newer(slot, seq, rank) {
    return seq > slot.seq || (seq === slot.seq && rank >= slot.rank);
  }

  function setCounts(message, seq, rank) {
    if (typeof seq !== "number") return;
    var badge = document.getElementById("bell-count");
    if (typeof message.unread_count === "number" && newer(counts.unread, seq, rank)) {
      counts.unread = { value: message.unread_count, seq: seq, rank: rank };
      if (badge) badge.dataset.unread = String(message.unread_count);
    }
    if (typeof message.unseen_count === "number" && newer(counts.unseen, seq, rank)) {
      var count = message.unseen_count;
      counts.unseen = { value: count, seq: seq, rank: rank };
      if (!badge) return;
      badge.textContent = String(count);
      badge.dataset.unseen = String(count);
      badge.classList.toggle("is-zero", count === 0);
      var bell = badge.closest(".bell");
      if (bell) bell.setAttribute("aria-label", "Notifications, " + count + " new");
    }
  }

  function safeUrl(url) {
    // Only same-site paths: a message can never turn a link into javascript: or another origin.
    return typeof url === "string" && url.charAt(0) === "/" && url.charAt(1) !== "/" ? url : "/notifications/";
  }

  function toast(text, url) {
    var box = document.getElementById("toasts");
    if (!box || typeof text !== "string") return;
    var el = document.createElement("div");
    el.className = "toast";
    el.setAttribute("role", "status");
    var link = document.createElement("a");
    link.href = safeUrl(url);
    link.textContent = text;
    el.appendChild(link);
    box.appendChild(el);
    setTimeout(function () { el.remove(); }, 6000);
  }

  function initial(actor) {
    var name = (actor && (actor.display_name || actor.username)) || "?";
    return Array.from(String(name))[0].toUpperCase();
  }

  function avatars(n) {
    var box = document.createElement("span");
    box.className = "avatars";
    box.setAttribute("aria-hidden", "true");
    var actors = Array.isArray(n.actors) && n.actors.length ? n.actors.slice(0, 3) : [n.actor];
    actors.forEach(function (actor) {
      var a = document.createElement("span");
      a.className = "avatar tiny";
      a.textContent = initial(actor);
      box.appendChild(a);
    });
    var more = (Number(n.count) || 1) - actors.length;
    if (more > 0) {
      var extra = document.createElement("span");
      extra.className = "avatar tiny more";
      extra.textContent = "+" + more;
      box.appendChild(extra);
    }
    return box;
  }

  function listItem(n, fresh) {
    var li = document.createElement("li");
    li.className = "notification" + (n.read ? "" : " unread") + (fresh ? " is-new" : "") +
      " kind-" + String(n.kind).replace(/[^a-z_]/g, "");
    li.dataset.id = String(n.id);
    li.dataset.seq = String(n.seq);
    li.dataset.count = String(Number(n.count) || 1);
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
    button.appendChild(avatars(n));
    button.appendChild(text);
    button.appendChild(time);
    form.appendChild(button);
    li.appendChild(form);
    return li;
  }

  function listElement() {
    var list = document.getElementById("notification-list");
    // An older page (?before=) shows history: live items belong on the first page only.
    return list && !new URLSearchParams(location.search).has("before") ? list : null;
  }

  function findItem(list, id) {
    return Array.prototype.find.call(list.children, function (li) { return li.dataset.id === String(id); });
  }

  function placeInList(n, fresh) {
    var list = listElement();
    if (!list) return;
    var empty = document.getElementById("no-notifications");
    if (empty) empty.remove();
    var current = findItem(list, n.id);
    if (current && Number(current.dataset.seq) === Number(n.seq)) {
      // The same activity again (someone left the group, or a push retried): replaced in place.
      current.replaceWith(listItem(n, fresh || current.classList.contains("is-new")));
      return;
    }
    var item = listItem(n, fresh);
    if (current) current.remove(); // bumped: it moves up to where its new seq belongs
    // Keep the list ordered by seq even when catch-up and live messages interleave.
    var next = Array.prototype.find.call(list.children, function (li) {
      return Number(li.dataset.seq) < Number(n.seq);
    });
    list.insertBefore(item, next || null);
  }

  function showNotification(n, live) {
    var id = Number(n.id);
    var seq = Number(n.seq);
    if (!id || !seq) return;
    var before = known.has(id) ? known.get(id) : null;
    if (before !== null && seq < before) return; // an older state of an item already shown
    var news = before === null ? seq > pageSeq : seq > before;
    if (live && seq > lastSeq + 1 && !gapFetch) {
      // Something between lastSeq and this one has not arrived (a push still owed): fetch it.
      gapFetch = catchUp(CATCH_UP_URL + lastSeq).then(function () { gapFetch = null; });
    }
    known.set(id, seq);
    lastSeq = Math.max(lastSeq, seq);
    placeInList(n, news);
    // A retried push of an old event (delivered late by deliver_pending) updates the list quietly.
    if (live && news && Date.now() - Date.parse(n.created_at) < TOAST_MAX_AGE_MS) toast(n.text, n.url);
  }

  function markRead(ids) {
    document.querySelectorAll("#notification-list li.unread").forEach(function (li) {
      if (ids === null || ids.indexOf(Number(li.dataset.id)) !== -1) li.classList.remove("unread");
    });
  }

  function removeItems(ids) {
    var list = document.getElementById("notification-list");
    ids.forEach(function (id) {
      known.delete(Number(id));
      if (!list) return;
      var li = findItem(list, Number(id));
      if (li) li.remove();
    });
    if (list && !list.querySelector("li[data-id]") && !document.getElementById("no-notifications")) {
      var empty = document.createElement("li");
      empty.className = "empty";
      empty.id = "no-notifications";
      empty.textContent = "Nothing yet. When people follow you, like, mention or comment, it shows up here.";
      list.appendChild(empty);
    }
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
      setCounts(message, message.seq, 0);
    } else if (message.type === "read") {
      markRead(message.all ? null : message.ids || []);
      setCounts(message, message.seq, 1);
    } else if (message.type === "seen") {
      setCounts({ unseen_count: typeof message.unseen_count === "number" ? message.unseen_count : 0 }, message.seq, 1);
    } else if (message.type === "removed") {
      removeItems(Array.isArray(message.ids) ? message.ids : []);
      setCounts(message, message.seq, 1);
    } else if (message.type === "test") {
      toast(typeof message.text === "string" ? message.text : "Test push.", "/notifications/");
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
        setCounts(page, page.last_seq, 1);
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
