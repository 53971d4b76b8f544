/*
 * Herald live notifications.
 *
 * Fetches short-lived credentials for this user's own topic, connects with MQTT.js over
 * WebSocket and keeps the bell, a toast and the notifications list up to date without reloads.
 *
 * - Credentials expire: the client reconnects with fresh ones a minute before they do, and after
 *   any drop: every 0.75–1.5 s for the first 12 s (a broker restart, a blip), then with
 *   exponential backoff (1 s doubling to 30 s, with jitter).
 * - After every (re)connect it asks the API for `?after_seq=<last seq seen>`, so nothing sent while
 *   it was away is missed (and it does the same when a message's seq skips one). So that a push
 *   that is lost with nothing after it is not missing for long either, it asks again when the tab
 *   becomes visible and every half minute while it is (SYNC_MS): a conditional request
 *   (If-None-Match) that the server answers 304 from one primary-key read when nothing is new.
 * - Items are keyed by id: a grouped item that gains activity ("Ana and 2 others liked …") comes
 *   again with the same id and a higher seq and replaces its line, moving to the top; one whose
 *   group shrank comes with the same seq and is replaced where it is; `removed` drops items.
 *   Nothing is ever shown twice. Live rows go under the list's "Today" heading, only into the tab
 *   they belong in (`data-filter`); `unread` (marked unread in some tab) shows rows unread again.
 * - The bell shows the unseen count (`seen`: the user opened the notifications somewhere); items
 *   stay unread (styled) until read.
 * - The tab title starts with the unseen count, "(3) Home · Herald", kept in step with the badge.
 * - Toasts: at most three shown (one on a phone), the rest counted in a "+N more" link to the
 *   notifications page; each has a Dismiss button, and they wait while hovered or focused. A
 *   notification's toast opens it through its mark-read URL (it goes read in every tab); a grouped
 *   item that gains activity while its toast is up changes that toast in place. On the home page a
 *   followed author's new post shows only the "N new posts" button (the bell still counts it).
 * - The navbar shows the connection state in words ("Live", "Reconnecting…", "Offline"): MQTT
 *   keep-alive pings every few seconds find a dead connection within 10 s, and the browser's
 *   `offline` event at once.
 * - On a post page (an element with data-live-post="<id>") it also subscribes to that post's public
 *   topic: new comments appear in place (once each, by id, with their mentions linked and, on
 *   your own, a Delete button; a reply under its comment), removed ones go (their replies stay,
 *   as comments), edits replace the post's or a comment's text and show "edited" with the time,
 *   and the comment and like counts follow (see
 *   feed/live.py for the messages). Messages are numbered per post (`seq`); one that arrives after
 *   a newer one is dropped. Once subscribed (and after every reconnect, when the tab becomes
 *   visible, and on the same half-minute timer) the page asks the post API whether anything
 *   happened since what it shows, and only then re-reads the comments; a message whose seq skips
 *   one (another was lost on the way) has them re-read at once.
 * - On the home page, `new_post` news shows a "N new posts" button that inserts the new cards
 *   (rendered by the server, GET /feed/newer/?after=<newest id shown>) without a reload.
 * - With Web Push on for this device, the service worker passes each push to the page as well
 *   (shown once by id, like any other way a notification comes).
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
  // For this long after a drop, it is retried every 0.75–1.5 s (each attempt with fresh credentials:
  // a dozen requests, well inside the credentials throttle): a broker restart or a network blip is
  // over within seconds, and the page should be live again within a second or two of it. Only then
  // does the wait double.
  var FAST_RETRY_MS = 12 * 1000;
  var FAST_RETRY_DELAY_MS = 1500;
  var KEEPALIVE_S = 5; // a dead connection is noticed within 1.5 × this (MQTT.js's keep-alive timeout)
  var options = window.heraldLiveOptions || {}; // (tests shorten toasts' lives and the sync timer)
  var TOAST_MS = Number(options.toastMs) || 6000;
  // While the tab is visible, how often it asks whether a push was lost (answered 304 when not).
  var SYNC_MS = Number(options.syncMs) || 30 * 1000;
  var MAX_TOASTS = 3;
  var MAX_TOASTS_NARROW = 1;
  var NEWER_URL = "/feed/newer/?after=";
  var STATE_LABELS = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline",
    off: "Offline", "signed-out": "Signed out" };

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
  var droppedAt = null; // when the live connection was lost (null while live)

  function meetRows() {
    document.querySelectorAll("#notification-list li[data-id]").forEach(function (li) {
      if (!known.has(Number(li.dataset.id))) known.set(Number(li.dataset.id), Number(li.dataset.seq) || 0);
    });
  }
  meetRows();
  // Older rows appended by infinite scroll are items this page shows too.
  document.addEventListener("htmx:afterSettle", meetRows);

  // Every request this script makes goes through here, so `heraldLive.idle()` can say when none
  // is in flight (a page that has caught up after connecting).
  var inFlight = 0;
  function request(url, options) {
    inFlight += 1;
    return fetch(url, options).finally(function () { inFlight -= 1; });
  }

  // `run` (which returns a promise) once at a time: asked again while it runs, it runs once more
  // when it is done (what changed meanwhile may not be in the answer on its way). A run that fails
  // (the server busy, the network gone for a moment) is tried again 1–2 s later, up to 3 times in
  // a row; after that the next occasion (timer, reconnect, a message) tries.
  var RETRIES = 3;
  function oneAtATime(run) {
    var running = null;
    var again = false;
    var failures = 0;
    var retry = null;
    return function next() {
      if (running) {
        again = true;
        return running;
      }
      again = false;
      clearTimeout(retry);
      retry = null;
      running = Promise.resolve().then(run)
        .then(function () { failures = 0; }, function () {
          failures += 1;
          if (failures <= RETRIES && !again) retry = setTimeout(next, 1000 + Math.random() * 1000);
        })
        .then(function () {
          running = null;
          if (again) return next();
        });
      return running;
    };
  }

  function cookie(name) {
    var match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : "";
  }

  function setState(state) {
    // Without a network there is nothing to reconnect to until the browser says it is back.
    if ((state === "reconnecting" || state === "connecting") && navigator.onLine === false) state = "offline";
    var el = document.getElementById("live-state");
    if (el) {
      var label = STATE_LABELS[state] || "Offline";
      el.dataset.state = state;
      el.title = state === "live" ? "Live updates on" : label;
      var text = el.querySelector(".live-label");
      if (!text) {
        text = document.createElement("span");
        text.className = "live-label";
        el.appendChild(text);
      }
      if (text.textContent !== label) text.textContent = label;
    }
    body.dataset.liveState = state;
  }

  // "(3) Home · Herald": the badge's number in the tab title, gone at 0.
  var baseTitle = document.title.replace(/^\(\d+\)\s+/, "");
  function setTitle(count) {
    var title = count > 0 ? "(" + count + ") " + baseTitle : baseTitle;
    if (document.title !== title) document.title = title;
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
      badge.dataset.unseen = String(count);
      setTitle(count);
      // Every badge of the page says it: the navbar's bell and, on phones, the tab bar's.
      document.querySelectorAll(".bell-count").forEach(function (el) {
        el.textContent = String(count);
        el.classList.toggle("is-zero", count === 0);
        var link = el.closest("a");
        // The tab bar's link says it in words after its visible "Notifications" (an aria-label
        // there would hide what it shows); the icon-only bell says it in its label.
        var words = link && link.querySelector(".bell-words");
        if (words) words.textContent = count ? " " + count + " new" : "";
        else if (link) link.setAttribute("aria-label", count ? "Notifications " + count + " new" : "Notifications");
      });
    }
  }

  function safeUrl(url) {
    // Only same-site paths: a message can never turn a link into javascript: or another origin.
    return typeof url === "string" && url.charAt(0) === "/" && url.charAt(1) !== "/" ? url : "/notifications/";
  }

  // ---- Toasts -------------------------------------------------------------------------------
  // Newest last; only the newest MAX_TOASTS are shown, the older ones wait (hidden, their time
  // running) and are counted by "+N more". Time stops for all while the box is hovered or focused.
  var narrow = window.matchMedia ? window.matchMedia("(max-width: 600px)") : null;
  var toastTimers = new Map(); // toast element → {left: ms, since: time started | null, timer}
  var toastsHovered = false;
  var toastsFocused = false;

  function toastBox() {
    return document.getElementById("toasts");
  }

  function toastList(box) {
    return Array.prototype.filter.call(box.children, function (el) { return el.classList.contains("toast"); });
  }

  function layoutToasts() {
    var box = toastBox();
    if (!box) return;
    var all = toastList(box);
    var limit = narrow && narrow.matches ? MAX_TOASTS_NARROW : MAX_TOASTS;
    all.forEach(function (el, i) { el.hidden = i < all.length - limit; });
    var more = Math.max(0, all.length - limit);
    var pill = box.querySelector(".toast-more");
    if (more && !pill) {
      pill = document.createElement("a");
      pill.className = "toast-more";
      pill.href = "/notifications/";
      box.insertBefore(pill, box.firstChild);
    }
    if (pill) {
      pill.hidden = !more;
      pill.textContent = "+" + more + " more";
      pill.setAttribute("aria-label", more + " more notification" + (more === 1 ? "" : "s"));
    }
    body.classList.toggle("has-toasts", all.length > 0);
  }

  function toastsPaused() {
    return toastsHovered || toastsFocused;
  }

  function runToast(el) {
    var t = toastTimers.get(el);
    if (!t || t.timer || toastsPaused()) return;
    t.since = Date.now();
    t.timer = setTimeout(function () { dismissToast(el); }, Math.max(t.left, 0));
  }

  function holdToast(el) {
    var t = toastTimers.get(el);
    if (!t || !t.timer) return;
    clearTimeout(t.timer);
    t.timer = null;
    t.left -= Date.now() - t.since;
  }

  function dismissToast(el) {
    var t = toastTimers.get(el);
    if (t) clearTimeout(t.timer);
    toastTimers.delete(el);
    if (el.dataset.id && toastsById.get(Number(el.dataset.id)) === el) toastsById.delete(Number(el.dataset.id));
    var hadFocus = el.contains(document.activeElement);
    el.remove();
    layoutToasts();
    if (hadFocus) {
      // Keyboard users stay in the toasts rather than being thrown back to the top of the page.
      var box = toastBox();
      var next = box && box.querySelector(".toast:not([hidden]) .toast-close");
      if (next) next.focus();
    }
  }

  function setUpToastBox() {
    var box = toastBox();
    if (!box) return;
    function update() {
      toastTimers.forEach(function (t, el) { if (toastsPaused()) holdToast(el); else runToast(el); });
    }
    box.addEventListener("mouseenter", function () { toastsHovered = true; update(); });
    box.addEventListener("mouseleave", function () { toastsHovered = false; update(); });
    box.addEventListener("focusin", function () { toastsFocused = true; update(); });
    box.addEventListener("focusout", function (event) {
      if (event.relatedTarget && box.contains(event.relatedTarget)) return;
      toastsFocused = false;
      update();
    });
    box.addEventListener("keydown", function (event) {
      var el = event.key === "Escape" && event.target.closest && event.target.closest(".toast");
      if (el) dismissToast(el);
    });
    if (narrow && narrow.addEventListener) narrow.addEventListener("change", layoutToasts);
  }

  // A notification's toast, by its id: a grouped item that gains activity while its toast is up
  // changes that toast ("Ana and 2 others liked …") rather than stacking another.
  var toastsById = new Map();

  // Following a notification's toast goes through its open URL (POST, like its line in the list):
  // it is marked read, in every tab, and the server sends the browser on to what it is about. A
  // middle or modified click opens the link itself, as any link would.
  function openThroughServer(event, id) {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    var form = postForm("/notifications/" + Number(id) + "/read/", { open: "1" });
    form.hidden = true;
    body.appendChild(form);
    form.submit();
  }

  function toast(text, url, id, actor) {
    var box = toastBox();
    if (!box || typeof text !== "string") return;
    var shown = id ? toastsById.get(id) : null;
    if (shown && shown.isConnected) {
      shown.querySelector("a").textContent = text;
      shown.querySelector("a").href = safeUrl(url);
      var face = avatarNode(actor, "tiny", true);
      if (face) shown.querySelector("a").prepend(face);
      var t = toastTimers.get(shown);
      if (t) {
        clearTimeout(t.timer);
        t.timer = null;
        t.left = TOAST_MS; // news again: it gets its full time again
        runToast(shown);
      }
      return;
    }
    var el = document.createElement("div");
    el.className = "toast";
    var link = document.createElement("a");
    link.href = safeUrl(url);
    link.textContent = text;
    var picture = avatarNode(actor, "tiny", true);
    if (picture) link.prepend(picture);
    if (id) {
      el.dataset.id = String(id);
      toastsById.set(id, el);
      link.addEventListener("click", function (event) { openThroughServer(event, id); });
    }
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", "Dismiss");
    close.title = "Dismiss";
    close.addEventListener("click", function () { dismissToast(el); });
    el.appendChild(link);
    el.appendChild(close);
    box.appendChild(el);
    toastTimers.set(el, { left: TOAST_MS, since: null, timer: null });
    layoutToasts();
    runToast(el);
  }

  function initial(actor) {
    var name = (actor && (actor.display_name || actor.username)) || "?";
    return Array.from(String(name))[0].toUpperCase();
  }

  // A picture's URL from a message: a same-site path or an https: URL (the bucket's), nothing else.
  function imageUrl(url) {
    if (typeof url !== "string") return null;
    if (url.charAt(0) === "/" && url.charAt(1) !== "/") return url;
    return /^https:\/\/[^\s"'<>]+$/.test(url) ? url : null;
  }

  // The actor's picture (an <img> node, never markup), or their initial when they have none
  // (nothing, with `bare`: where a name stands alone, as in toasts).
  function avatarNode(actor, size, bare) {
    var urls = actor && actor.avatar;
    var src = urls && imageUrl(urls.small);
    if (!src && bare) return null;
    if (!src) {
      var span = document.createElement("span");
      span.className = "avatar " + size;
      span.setAttribute("aria-hidden", "true");
      span.textContent = initial(actor);
      return span;
    }
    var img = document.createElement("img");
    img.className = "avatar " + size;
    img.src = src;
    var twice = imageUrl(urls.medium);
    if (twice) img.srcset = twice + " 2x";
    img.width = 28;
    img.height = 28;
    img.alt = "";
    return img;
  }

  function avatars(n) {
    var box = document.createElement("span");
    box.className = "avatars";
    box.setAttribute("aria-hidden", "true");
    var actors = Array.isArray(n.actors) && n.actors.length ? n.actors.slice(0, 3) : [n.actor];
    actors.forEach(function (actor) {
      box.appendChild(avatarNode(actor, "tiny"));
    });
    // "+N" counts people; a new-posts item's count is of one author's posts.
    var more = n.kind === "new_post" ? 0 : (Number(n.count) || 1) - actors.length;
    if (more > 0) {
      var extra = document.createElement("span");
      extra.className = "avatar tiny more";
      extra.textContent = "+" + more;
      box.appendChild(extra);
    }
    return box;
  }

  // A POST form as the server renders one: the CSRF token and these hidden fields.
  function postForm(action, fields) {
    var form = document.createElement("form");
    form.method = "post";
    form.action = action;
    var pairs = [["csrfmiddlewaretoken", cookie("csrftoken")]].concat(Object.entries(fields));
    pairs.forEach(function (pair) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = pair[0];
      input.value = pair[1];
      form.appendChild(input);
    });
    return form;
  }

  // The kind's icon and its words for screen readers, from the page's <template id="kind-icons">
  // (rendered by the same include as the server's rows).
  function kindIcon(kind) {
    var icons = document.getElementById("kind-icons");
    var found = icons && Array.prototype.find.call(icons.content.children, function (el) {
      return el.dataset.kind === kind;
    });
    return found ? { icon: found.cloneNode(true), label: found.dataset.label } : null;
  }

  // "Mark as unread" / "Mark as read" beside a row, as templates/notifier/_notification.html has them.
  function toggleForm(n, which) {
    var action = "/notifications/" + Number(n.id) + "/" + which + "/";
    var form = postForm(action, {});
    form.className = "notification-toggle mark-" + which;
    form.setAttribute("hx-post", action);
    form.setAttribute("hx-target", "closest li.notification");
    form.setAttribute("hx-swap", "outerHTML");
    var label = which === "unread" ? "Mark as unread" : "Mark as read";
    var button = document.createElement("button");
    button.className = "icon-button";
    button.title = label;
    button.setAttribute("aria-label", label);
    var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "16");
    svg.setAttribute("height", "16");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var dot = document.createElementNS("http://www.w3.org/2000/svg", "circle");
    dot.setAttribute("cx", "12");
    dot.setAttribute("cy", "12");
    dot.setAttribute("r", "5");
    if (which === "unread") {
      dot.setAttribute("fill", "currentColor");
    } else {
      dot.setAttribute("fill", "none");
      dot.setAttribute("stroke", "currentColor");
      dot.setAttribute("stroke-width", "2");
    }
    svg.appendChild(dot);
    button.appendChild(svg);
    form.appendChild(button);
    return form;
  }

  function listItem(n, fresh) {
    var li = document.createElement("li");
    var kind = String(n.kind).replace(/[^a-z_]/g, "");
    li.className = "notification" + (n.read ? "" : " unread") + (fresh ? " is-new" : "") + " kind-" + kind;
    li.dataset.id = String(n.id);
    li.dataset.seq = String(n.seq);
    li.dataset.count = String(Number(n.count) || 1);
    li.dataset.section = "today";
    var dot = document.createElement("span");
    dot.className = "unread-dot";
    dot.setAttribute("role", "img");
    dot.setAttribute("aria-label", "Unread");
    var form = postForm("/notifications/" + Number(n.id) + "/read/", { open: "1" });
    form.className = "notification-main";
    var button = document.createElement("button");
    button.className = "notification-open";
    var text = document.createElement("span");
    text.className = "notification-text";
    text.textContent = n.text;
    var time = document.createElement("time");
    time.dateTime = n.created_at;
    time.textContent = "just now";
    var people = avatars(n);
    var kindInfo = kindIcon(kind);
    button.appendChild(people);
    if (kindInfo) {
      people.appendChild(kindInfo.icon);
      var label = document.createElement("span");
      label.className = "sr-only kind-label";
      label.textContent = kindInfo.label + ":";
      button.appendChild(label);
    }
    button.appendChild(text);
    button.appendChild(time);
    form.appendChild(button);
    li.appendChild(dot);
    li.appendChild(form);
    li.appendChild(toggleForm(n, "unread"));
    li.appendChild(toggleForm(n, "read"));
    if (window.htmx && window.htmx.process) window.htmx.process(li);
    return li;
  }

  // Live rows are news: they go under "Today", which the list starts with (made when it has none).
  function todayHeading(list) {
    var first = list.querySelector("li.notification-section");
    if (first && first.dataset.section === "today") return first;
    var heading = document.createElement("li");
    heading.className = "notification-section";
    heading.dataset.section = "today";
    var h2 = document.createElement("h2");
    h2.textContent = "Today";
    heading.appendChild(h2);
    list.insertBefore(heading, list.firstChild);
    return heading;
  }

  // A heading left with no row under it (its rows were removed) goes too.
  function tidyHeadings(list) {
    list.querySelectorAll("li.notification-section").forEach(function (heading) {
      var next = heading.nextElementSibling;
      if (!next || !next.dataset.id) heading.remove();
    });
  }

  function listElement() {
    var list = document.getElementById("notification-list");
    // An older page (?before=) shows history: live items belong on the first page only.
    return list && !new URLSearchParams(location.search).has("before") ? list : null;
  }

  // The "Mentions and replies" tab lists only those kinds (the server's notifier.inbox).
  function belongsInList(list, n) {
    return list.dataset.filter !== "mentions" || n.kind === "mention" || n.kind === "reply";
  }

  function findItem(list, id) {
    return Array.prototype.find.call(list.children, function (li) { return li.dataset.id === String(id); });
  }

  function placeInList(n, fresh) {
    var list = listElement();
    if (!list || !belongsInList(list, n)) return;
    var empty = document.getElementById("no-notifications");
    if (empty) empty.remove();
    var current = findItem(list, n.id);
    if (current && Number(current.dataset.seq) === Number(n.seq)) {
      // The same activity again (someone left the group, or a push retried): replaced in place.
      var again = listItem(n, fresh || current.classList.contains("is-new"));
      again.dataset.section = current.dataset.section || "today";
      current.replaceWith(again);
      return;
    }
    var item = listItem(n, fresh);
    if (current) current.remove(); // bumped: it moves up to where its new seq belongs
    var heading = todayHeading(list);
    // Keep the list ordered by seq even when catch-up and live messages interleave (rows only:
    // headings and the loader have no seq).
    var next = Array.prototype.find.call(list.children, function (li) {
      return li.dataset.seq && Number(li.dataset.seq) < Number(n.seq);
    });
    // Under Today: never above its heading, and not below another section's heading.
    if (next && next.previousElementSibling && next.previousElementSibling.classList.contains("notification-section") &&
        next.previousElementSibling !== heading) next = next.previousElementSibling;
    list.insertBefore(item, next || document.getElementById("notifications-more"));
    tidyHeadings(list);
  }

  function showNotification(n, live) {
    var id = Number(n.id);
    var seq = Number(n.seq);
    if (!id || !seq) return;
    var before = known.has(id) ? known.get(id) : null;
    if (before !== null && seq < before) return; // an older state of an item already shown
    var news = before === null ? seq > pageSeq : seq > before;
    if (live && seq > lastSeq + 1) {
      // Something between lastSeq and this one has not arrived (a push still owed): fetch it.
      catchUpNow(lastSeq);
    }
    known.set(id, seq);
    lastSeq = Math.max(lastSeq, seq);
    placeInList(n, news);
    if (news && n.kind === "new_post") newPostArrived(n);
    if (news && n.kind === "mention") mentionArrived(n);
    // News gets a toast whichever way it came first: by push, or by the catch-up that follows every
    // (re)connect (which can win the race against the push of something that happened just then).
    // A retried push of an old event (delivered late by deliver_pending) updates the list quietly.
    // On the home page a followed author's new post has its banner ("1 new post"): no toast too.
    var banner = n.kind === "new_post" && newPostsBox && newPostsButton;
    if (news && !banner && Date.now() - Date.parse(n.created_at) < TOAST_MAX_AGE_MS) toast(n.text, n.url, id, n.actor);
  }

  function markRead(ids) {
    document.querySelectorAll("#notification-list li.unread").forEach(function (li) {
      if (ids === null || ids.indexOf(Number(li.dataset.id)) !== -1) li.classList.remove("unread");
    });
  }

  // Marked unread again (here or in another tab): its dot and "Mark as read" come back.
  function markUnread(ids) {
    document.querySelectorAll("#notification-list li.notification[data-id]").forEach(function (li) {
      if (ids.indexOf(Number(li.dataset.id)) !== -1) li.classList.add("unread");
    });
  }

  function removeItems(ids) {
    var list = document.getElementById("notification-list");
    ids.forEach(function (id) {
      known.delete(Number(id));
      newPostGone(Number(id));
      var shown = toastsById.get(Number(id)); // a toast must not lead to what is gone
      if (shown) dismissToast(shown);
      if (!list) return;
      var li = findItem(list, Number(id));
      if (li) li.remove();
    });
    if (list) tidyHeadings(list);
    if (list && !list.querySelector("li[data-id]") && !document.getElementById("no-notifications")) {
      var empty = document.createElement("li");
      empty.className = "empty";
      empty.id = "no-notifications";
      empty.textContent = "Nothing yet. When people follow you, like, mention or comment, it shows up here.";
      list.appendChild(empty);
    }
  }

  // ---- The "N new posts" button on the home page -----------------------------------------------
  var newPostsBox = document.getElementById("new-posts");
  var newPostsButton = document.getElementById("new-posts-button");
  var newPostKeys = new Set(); // the posts (by id, when the message's url names one) counted so far
  var keysByItem = new Map(); // notification id → the keys it counted (an item goes: so do they)
  var loadingNewer = false;

  function newestShown() {
    return Number(newPostsBox && newPostsBox.dataset.after) || 0;
  }

  function postOf(n) {
    var match = /^\/posts\/(\d+)\/$/.exec(String(n.url || "")); // a post itself, not a comment on it
    return match ? Number(match[1]) : 0;
  }

  function showNewPostCount() {
    var count = newPostKeys.size;
    newPostsButton.textContent = count === 1 ? "1 new post" : count + " new posts";
    newPostsButton.hidden = count === 0;
  }

  function countNewPost(n, key) {
    newPostKeys.add(key);
    if (!keysByItem.has(Number(n.id))) keysByItem.set(Number(n.id), new Set());
    keysByItem.get(Number(n.id)).add(key);
    showNewPostCount();
  }

  function newPostArrived(n) {
    if (!newPostsBox || !newPostsButton) return;
    var postId = postOf(n);
    // Already on the page (the fan-out may come after the page was rendered with the post in it).
    if (postId && (postId <= newestShown() || document.getElementById("post-" + postId))) return;
    countNewPost(n, postId ? "post:" + postId : "item:" + n.id + ":" + n.seq);
  }

  // Someone you follow who mentions you in a post tells you once, with a mention rather than a
  // new_post. Whether that post belongs on your home feed is the server's to say: ask it (a
  // mention reaches only the few people named, so this is a rare request).
  function mentionArrived(n) {
    var postId = postOf(n);
    if (!newPostsBox || !newPostsButton || !postId || postId <= newestShown()) return;
    request(NEWER_URL + (postId - 1), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : ""; })
      .then(function (html) {
        if (html.indexOf('id="post-' + postId + '"') !== -1 && !document.getElementById("post-" + postId)) {
          countNewPost(n, "post:" + postId);
        }
      })
      .catch(function () { /* the post still shows on reload */ });
  }

  // A post deleted before it was shown: its item was removed, and it no longer counts.
  function newPostGone(itemId) {
    var keys = keysByItem.get(itemId);
    if (!keys || !newPostsButton) return;
    keysByItem.delete(itemId);
    keys.forEach(function (key) { newPostKeys.delete(key); });
    showNewPostCount();
  }

  function showNewerPosts() {
    if (loadingNewer || !newPostsBox) return;
    loadingNewer = true;
    newPostsButton.setAttribute("aria-busy", "true");
    request(NEWER_URL + newestShown(), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("newer posts: " + response.status);
        return response.text();
      })
      .then(function (html) {
        // Server-rendered, autoescaped cards (feed/_post.html): safe to insert as HTML.
        var template = document.createElement("template");
        template.innerHTML = html;
        var cards = [];
        var newest = newestShown();
        Array.prototype.forEach.call(template.content.querySelectorAll("article[id^='post-']"), function (card) {
          var id = Number(card.id.slice("post-".length));
          if (!id || document.getElementById(card.id)) return; // never twice
          cards.push(card);
          newest = Math.max(newest, id);
        });
        var feed = document.getElementById("feed");
        var before = feed ? feed.firstChild : newPostsBox.nextSibling;
        cards.forEach(function (card) {
          (feed || newPostsBox.parentNode).insertBefore(card, before);
          if (window.htmx && window.htmx.process) window.htmx.process(card);
        });
        var first = cards[0] || null;
        newPostsBox.dataset.after = String(newest);
        newPostKeys.clear();
        keysByItem.clear();
        newPostsButton.hidden = true;
        newPostsButton.textContent = "";
        if (first) {
          var empty = document.querySelector("main .empty.card");
          if (empty) empty.remove();
          if (window.heraldTime) window.heraldTime.refresh();
          first.tabIndex = -1; // where keyboard and screen reader users continue reading
          first.focus();
        }
      })
      .catch(function () { /* the button stays: the user may try again */ })
      .then(function () {
        loadingNewer = false;
        newPostsButton.removeAttribute("aria-busy");
      });
  }

  if (newPostsButton) newPostsButton.addEventListener("click", showNewerPosts);

  // The same comment or post can arrive twice: by push and by the writer's own no-reload form
  // (htmx appends the server's rendering). Whatever comes second goes; a server-rendered item
  // (with its author's controls) wins over one built from a message.
  function keepOnce(container, selector, deep) {
    if (!container || !window.MutationObserver) return;
    new MutationObserver(function () {
      var seen = new Map();
      container.querySelectorAll(selector).forEach(function (el) {
        var earlier = seen.get(el.id);
        if (!earlier) {
          seen.set(el.id, el);
        } else if (earlier.dataset.live && !el.dataset.live) {
          earlier.replaceWith(el);
          seen.set(el.id, el);
        } else {
          el.remove();
        }
      });
    }).observe(container, { childList: true, subtree: Boolean(deep) }); // deep: replies in their threads too
  }
  keepOnce(document.getElementById("feed"), "article.post[id]");

  // ---- A post page: its public topic --------------------------------------------------------
  var postBox = document.querySelector("[data-live-post]");
  var livePost = postBox ? Number(postBox.dataset.livePost) || 0 : 0;
  // The post's live_seq that what the page shows is up to date with (rendered, then moved by each
  // message applied and by each re-read of the post).
  var postSeq = postBox ? Number(postBox.dataset.liveSeq) || 0 : 0;
  var postTopic = null;
  var syncTouched = null; // while re-reading comments: ids that messages added or removed meanwhile
  // A message skipped a seq (one was lost on the way): the comments are re-read even though the
  // post's live_seq may be no further than the message that showed the gap.
  var postGap = false;

  function subscribePost(mqttClient, creds) {
    if (!livePost || !creds.topics || typeof creds.topics.post_comments !== "string") return;
    postTopic = creds.topics.post_comments.replace("/+/", "/" + livePost + "/");
    mqttClient.subscribe(postTopic, { qos: 1 }, function (err, granted) {
      if (err || !granted || !granted.length || granted[0].qos === 128) return; // comments show on reload
      // What happened before this subscription (since the page was rendered, or during a drop) was
      // published to nobody here: ask the API.
      syncPostNow();
    });
  }

  function getJson(url) {
    return request(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) throw new Error(url + ": " + r.status);
      return r.json();
    });
  }

  // One read of the post says whether anything was missed (its live_seq moved, or a message
  // showed a gap); only then are the comments re-read. Their list is read after the post, so it
  // holds everything up to that seq; messages newer than it keep arriving meanwhile and win over
  // the list for the ids they touch (and their counts, newer than the post's, stay).
  function syncPost() {
    var base = "/api/posts/" + livePost + "/";
    var gap = postGap;
    postGap = false;
    return getJson(base)
      .then(function (post) {
        var seq = Number(post.live_seq) || 0;
        if (seq <= postSeq && !gap) return;
        if (seq >= postSeq) {
          postSeq = seq;
          postCounts({ post: livePost, comment_count: post.comment_count, like_count: post.like_count });
        }
        if (post.edited_at) edited({ target: "post", id: livePost, text: post.text, mentions: post.mentions, edited_at: post.edited_at });
        var touched = (syncTouched = new Set());
        var ids = new Set();
        function page(url) {
          return getJson(url).then(function (data) {
            (data.results || []).forEach(function (c) {
              ids.add(Number(c.id));
              if (!touched.has(Number(c.id))) commentArrived(c);
            });
            if (data.next) return page(data.next);
          });
        }
        return page(base + "comments/")
          .then(function () {
            document.querySelectorAll("#comment-list li.comment[id^='comment-']").forEach(function (li) {
              var id = Number(li.id.slice("comment-".length));
              if (!ids.has(id) && !touched.has(id)) commentRemoved(id);
            });
          })
          .finally(function () { if (syncTouched === touched) syncTouched = null; });
      })
      .catch(function (error) {
        if (gap) postGap = true; // still to repair: the next occasion (timer, reconnect) re-reads
        throw error;
      });
  }

  var syncPostNow = oneAtATime(syncPost);

  // This page deleted one of its comments (feed.js, after its Undo time): it goes, and the post is
  // re-read for its counts even if the live message about it never comes.
  document.addEventListener("herald:deleted", function (event) {
    if (!livePost || event.detail.kind !== "comment") return;
    commentRemoved(event.detail.id);
    postGap = true;
    syncPostNow();
  });

  function plural(n, word) {
    return word + (n === 1 ? "" : "s");
  }

  function setCount(el, n, word) {
    el.textContent = String(n);
    // "3 comments": the word after the number follows it.
    var next = el.nextSibling;
    var words = new RegExp("^(\\s*)" + word + "s?\\b");
    if (next && next.nodeType === 3 && words.test(next.textContent)) {
      next.textContent = next.textContent.replace(words, "$1" + plural(n, word));
    }
    var button = el.closest("[aria-label]");
    var label = button && button.getAttribute("aria-label");
    if (label && /^Like, \d+ likes?$/.test(label) && word === "like") {
      button.setAttribute("aria-label", "Like, " + n + " " + plural(n, "like"));
    }
  }

  function postCounts(message) {
    var card = document.getElementById("post-" + Number(message.post));
    if (!card) return;
    if (typeof message.comment_count === "number") {
      card.querySelectorAll(".comment-count").forEach(function (el) { setCount(el, message.comment_count, "comment"); });
    }
    if (typeof message.like_count === "number") {
      card.querySelectorAll(".like-count").forEach(function (el) { setCount(el, message.like_count, "like"); });
    }
  }

  function commentItem(c) {
    var li = document.createElement("li");
    li.className = "comment is-new";
    li.id = "comment-" + Number(c.id);
    li.dataset.live = "1"; // built from a message (see keepOnce)
    var author = c.author || {};
    var name = document.createElement(author.username ? "a" : "span");
    name.className = "author";
    if (author.username) name.href = "/u/" + encodeURIComponent(author.username) + "/";
    name.textContent = author.display_name || author.username || "Someone";
    var face = avatarNode(author, "small"); // beside the name, as the server renders it
    var when = document.createElement("span");
    when.className = "time";
    var time = document.createElement("time");
    time.dateTime = String(c.created_at || "");
    time.textContent = window.heraldTime ? window.heraldTime.ago(c.created_at) : "just now";
    when.appendChild(time);
    var text = document.createElement("div");
    text.className = "comment-text is-live";
    text.append.apply(text, withLinks(String(c.text || ""), c.mentions));
    var textBox = document.createElement("div"); // as templates/feed/_writing_text.html: edits find it
    textBox.className = "writing-body";
    textBox.id = "comment-body-" + Number(c.id);
    textBox.appendChild(text);
    li.append(face, name, " ", when, " ", textBox);
    if (c.edited_at) markEdited(textBox, c.edited_at);
    li.append(" ", replyBox(c.id, name.textContent));
    if (author.username && author.username === body.dataset.username) li.append(" ", editLink(c.id), " ", deleteForm(c.id));
    if (!c.parent) {
      li.classList.remove("reply");
      var thread = document.createElement("ol"); // where its replies go
      thread.className = "replies";
      thread.id = "replies-" + Number(c.id);
      li.appendChild(thread);
    } else {
      li.classList.add("reply");
    }
    return li;
  }

  // ---- Edits (the `edit` message, and what a re-read finds): the text is rebuilt as a new
  // comment's is, and an "edited" mark with its time (the full date in its title) follows it.
  function markEdited(textBox, editedAt) {
    var mark = Array.prototype.find.call(textBox.children, function (el) { return el.classList.contains("edited"); });
    if (!mark) {
      mark = document.createElement("span");
      mark.className = "edited";
      mark.append("edited ", document.createElement("time"));
      textBox.appendChild(mark);
    }
    var time = mark.querySelector("time");
    time.dateTime = String(editedAt);
    var date = new Date(editedAt);
    time.title = "Edited " + (isNaN(date) ? String(editedAt) : date.toLocaleString());
    time.textContent = window.heraldTime ? window.heraldTime.ago(editedAt) : "just now";
  }

  function shownEdit(textBox) {
    var time = textBox.querySelector(":scope > .edited time");
    return time ? time.getAttribute("datetime") : null;
  }

  function edited(m) {
    var kind = m.target === "post" ? "post" : "comment";
    var textBox = document.getElementById(kind + "-body-" + Number(m.id));
    // Not shown, or being edited in this tab (the form is in its place): the form's Save or
    // Cancel brings the server's rendering back.
    if (!textBox || textBox.tagName === "FORM" || !m.edited_at) return;
    var shown = shownEdit(textBox);
    if (shown && Date.parse(shown) >= Date.parse(m.edited_at)) return; // this one or a newer one is shown
    var text = textBox.querySelector(":scope > ." + kind + "-text");
    if (!text) return;
    text.classList.add("is-live");
    text.replaceChildren.apply(text, withLinks(String(m.text || ""), m.mentions));
    markEdited(textBox, m.edited_at);
  }

  // As the server's with_mentions filter: "@name" links to the profile when that user was mentioned
  // (the message lists them); everything else stays text.
  var MENTION = /(^|[^\p{L}\p{N}_@])@([A-Za-z0-9_]{1,30})(?![\p{L}\p{N}_])/gu;

  function withMentions(text, mentions) {
    var known = new Map();
    (Array.isArray(mentions) ? mentions : []).forEach(function (u) {
      if (typeof u === "string") known.set(u.toLowerCase(), u);
    });
    var parts = [];
    var at = 0;
    var match;
    MENTION.lastIndex = 0;
    while ((match = MENTION.exec(text)) !== null) {
      var username = known.get(match[2].toLowerCase());
      if (!username) continue;
      var start = match.index + match[1].length;
      parts.push(text.slice(at, start));
      var a = document.createElement("a");
      a.className = "mention";
      a.href = "/u/" + encodeURIComponent(username) + "/";
      a.textContent = "@" + match[2];
      parts.push(a);
      at = start + 1 + match[2].length;
    }
    parts.push(text.slice(at));
    return parts.filter(function (p) { return p !== ""; });
  }

  // As the server's feed.text.find_links / link_href (the same patterns, see there): only http(s)
  // and "www." URLs become links, built as <a> elements whose text is the URL as written.
  var URL_START = /[Hh][Tt][Tt][Pp][Ss]?:\/\/|[Ww][Ww][Ww]\./g; // ASCII only: no "ſ" for "s"
  var URL_BODY = /[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u2069\u3000\ufeff<>"'`\\]*/uy;
  var URL_NOT_AFTER = /[\p{L}\p{N}_@.\-\/:+%&=~]$/u;
  var URL_HOST_END = /[\/?#]/;
  var HAS_ALNUM = /[\p{L}\p{N}]/u;
  var HREF_SAFE = /^[A-Za-z0-9\-._~:\/?#\[\]@!$&()*+,;=]$/;
  var HEX2 = /^[0-9A-Fa-f]{2}$/;
  var LINK_REL = "nofollow ugc noopener";

  function trimUrl(url) {
    var opened = url.split("(").length - 1;
    var closed = url.split(")").length - 1;
    var end = url.length;
    while (end) {
      var last = url[end - 1];
      if (".,;:!?".indexOf(last) >= 0) end -= 1;
      else if (last === ")" && closed > opened) { closed -= 1; end -= 1; }
      else break;
    }
    return url.slice(0, end);
  }

  function linkHref(url) {
    var schemeEnd = url.indexOf("://");
    url = schemeEnd >= 0 ? url.slice(0, schemeEnd).toLowerCase() + url.slice(schemeEnd) : "https://" + url;
    var out = "";
    var chars = Array.from(url); // code points, as the server counts them
    for (var i = 0; i < chars.length; i++) {
      var ch = chars[i];
      if (HREF_SAFE.test(ch)) out += ch;
      else if (ch === "%" && HEX2.test((chars[i + 1] || "") + (chars[i + 2] || ""))) out += ch;
      else if (ch.length === 1 && ch >= "\ud800" && ch <= "\udfff") out += "%3F"; // a lone surrogate
      else out += encodeURIComponent(ch).replace(/[!'()*~]/g, function (c) {
        return "%" + c.charCodeAt(0).toString(16).toUpperCase();
      });
    }
    return out;
  }

  function findLinks(text) {
    var spans = [];
    var pos = 0;
    var match;
    URL_START.lastIndex = 0;
    while ((match = URL_START.exec(text)) !== null) {
      var start = match.index;
      if (start < pos || (start && URL_NOT_AFTER.test(text.slice(Math.max(0, start - 2), start)))) continue;
      URL_BODY.lastIndex = start + match[0].length;
      var bodyEnd = URL_BODY.lastIndex + URL_BODY.exec(text)[0].length;
      pos = bodyEnd;
      var url = trimUrl(text.slice(start, bodyEnd));
      var rest = url.slice(match[0].length); // the host and what follows
      var cut = rest.search(URL_HOST_END);
      var host = cut >= 0 ? rest.slice(0, cut) : rest;
      if (host.indexOf("@") >= 0 || !HAS_ALNUM.test(host)) continue;
      spans.push([start, start + url.length]);
    }
    return spans;
  }

  // URLs first (a mention inside a URL stays part of it), then mentions in the text between them
  // (a URL never ends right before an "@", so the slices see the same mentions as the server).
  function withLinks(text, mentions) {
    var parts = [];
    var at = 0;
    findLinks(text).forEach(function (span) {
      parts.push.apply(parts, withMentions(text.slice(at, span[0]), mentions));
      var url = text.slice(span[0], span[1]);
      var a = document.createElement("a");
      a.setAttribute("href", linkHref(url));
      a.setAttribute("rel", LINK_REL);
      a.textContent = url;
      parts.push(a);
      at = span[1];
    });
    parts.push.apply(parts, withMentions(text.slice(at), mentions));
    return parts;
  }

  // Your own comment, arriving from another tab: the same Delete form the server renders.
  function deleteForm(commentId) {
    var action = "/comments/" + Number(commentId) + "/delete/";
    var form = postForm(action, { post: String(livePost) });
    form.className = "inline";
    form.dataset.delete = "comment"; // feed.js asks, then sends the API's DELETE (with Undo)
    form.dataset.api = "/api/comments/" + Number(commentId) + "/";
    var button = document.createElement("button");
    button.className = "action danger";
    button.textContent = "Delete";
    form.appendChild(button);
    return form;
  }

  // The Reply box and the Edit link the server renders (templates/feed/_comment.html), for a
  // comment built from a message: the same plain forms, sent by htmx.
  function replyBox(commentId, authorName) {
    var id = Number(commentId);
    var box = document.createElement("details");
    box.className = "reply-box";
    box.id = "reply-box-" + id;
    var summary = document.createElement("summary");
    summary.className = "action";
    summary.textContent = "Reply";
    var action = "/posts/" + livePost + "/";
    var form = postForm(action, { parent: String(id) });
    form.className = "reply-form";
    form.noValidate = true;
    form.setAttribute("hx-post", action);
    form.setAttribute("hx-target", "this");
    form.setAttribute("hx-swap", "outerHTML");
    var label = document.createElement("label");
    label.className = "sr-only";
    label.htmlFor = "reply-text-" + id;
    label.textContent = "Reply to " + authorName;
    var text = document.createElement("textarea");
    text.name = "text";
    text.id = "reply-text-" + id;
    text.rows = 2;
    text.maxLength = 2000;
    text.placeholder = "Reply to " + authorName + "…";
    var foot = document.createElement("div");
    foot.className = "composer-foot";
    var button = document.createElement("button");
    button.className = "button small";
    button.id = "reply-button-" + id;
    button.textContent = "Reply";
    foot.appendChild(button);
    form.append(label, text, foot);
    box.append(summary, form);
    return box;
  }

  function editLink(commentId) {
    var url = "/comments/" + Number(commentId) + "/edit/";
    var a = document.createElement("a");
    a.className = "action edit-link";
    a.href = url;
    a.setAttribute("hx-get", url);
    a.setAttribute("hx-target", "#comment-body-" + Number(commentId));
    a.setAttribute("hx-swap", "outerHTML");
    a.textContent = "Edit";
    return a;
  }

  function commentArrived(c) {
    var list = document.getElementById("comment-list");
    var id = c && Number(c.id);
    if (list && id && document.getElementById("comment-" + id)) {
      if (c.edited_at) edited({ target: "comment", id: id, text: c.text, mentions: c.mentions, edited_at: c.edited_at });
      return; // never twice (a re-read may still bring its newer text)
    }
    if (!list || !id) return;
    // A reply goes under its comment, in its thread (or, its comment not shown, in the list).
    var thread = c.parent && document.getElementById("replies-" + Number(c.parent));
    if (thread) list = thread;
    var empty = list.querySelector("li.empty");
    if (empty) empty.remove();
    // In id order, even if two arrive out of order.
    var next = Array.prototype.find.call(list.querySelectorAll(":scope > li.comment[id^='comment-']"), function (li) {
      return Number(li.id.slice("comment-".length)) > id;
    });
    var item = commentItem(c);
    list.insertBefore(item, next || null);
  }

  function commentRemoved(id) {
    var li = document.getElementById("comment-" + Number(id));
    var list = document.getElementById("comment-list");
    // Its replies stay, as comments of their own (as the server keeps them), in id order.
    var orphans = li ? li.querySelectorAll(":scope > ol.replies > li.comment") : [];
    if (li) li.remove();
    Array.prototype.forEach.call(orphans, function (reply) {
      reply.classList.remove("reply");
      var replyId = Number(reply.id.slice("comment-".length));
      var next = Array.prototype.find.call(list.querySelectorAll(":scope > li.comment[id^='comment-']"), function (el) {
        return Number(el.id.slice("comment-".length)) > replyId;
      });
      list.insertBefore(reply, next || null);
    });
    if (list && !list.querySelector("li.comment") && !list.querySelector("li.empty")) {
      var empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = "No comments yet.";
      list.appendChild(empty);
    }
  }

  if (livePost) keepOnce(document.getElementById("comment-list"), "li.comment[id]", true);

  function onPostMessage(message) {
    if (Number(message.post) !== livePost) return;
    var seq = Number(message.seq) || 0;
    if (seq) {
      if (seq <= postSeq) return; // older than what the page shows: it crossed a newer one
      if (seq > postSeq + 1) postGap = true; // one between them was lost (or is still on its way)
      postSeq = seq;
    }
    if (postGap) syncPostNow(); // (it reads the post after this message is applied)
    if (syncTouched && message.comment) syncTouched.add(Number(message.type === "comment" ? message.comment.id : message.comment));
    if (message.type === "comment") commentArrived(message.comment);
    else if (message.type === "comment_removed") commentRemoved(message.comment);
    else if (message.type === "edit") edited(message);
    else if (message.type !== "post_counts") return;
    postCounts(message);
  }

  function onMessage(topic, payload) {
    var message;
    try {
      message = JSON.parse(new TextDecoder().decode(payload));
    } catch (e) {
      return;
    }
    if (!message || message.v !== 1) return;
    if (postTopic && topic === postTopic) {
      onPostMessage(message);
    } else if (message.type === "notification") {
      showNotification(message, true);
      setCounts(message, message.seq, 0);
    } else if (message.type === "read") {
      markRead(message.all ? null : message.ids || []);
      setCounts(message, message.seq, 1);
    } else if (message.type === "unread") {
      markUnread(Array.isArray(message.ids) ? message.ids : []);
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

  // The last catch-up that listed nothing: its URL and the ETag of that answer. Asking the same
  // again sends it back, and the server answers 304 when nothing changed.
  var quiet = { url: null, tag: null };

  function catchUp(url) {
    var headers = { Accept: "application/json" };
    if (url === quiet.url) headers["If-None-Match"] = quiet.tag;
    // no-store: the tag is this script's to send; the browser's cache keeps nothing of this.
    return request(url, { credentials: "same-origin", cache: "no-store", headers: headers })
      .then(function (response) {
        if (response.status === 304) return null; // nothing new since the same question last time
        if (!response.ok) throw new Error("catch-up failed: " + response.status);
        var tag = response.headers.get("ETag");
        return response.json().then(function (page) {
          quiet = tag && !page.results.length ? { url: url, tag: tag } : { url: null, tag: null };
          return page;
        });
      })
      .then(function (page) {
        if (!page) return;
        page.results.forEach(function (n) { showNotification(n, false); });
        setCounts(page, page.last_seq, 1);
        if (page.next) return catchUp(page.next);
      });
  }

  // Catch up after `from` (by default the last seq shown). Callers ask whenever they like; one
  // catch-up runs at a time, after the lowest seq anyone asked for (a gap reported meanwhile is
  // not lost), and a failed one leaves that seq for the next occasion.
  var catchUpFrom = null;
  var catchingUp = oneAtATime(function () {
    var after = catchUpFrom === null ? lastSeq : catchUpFrom;
    catchUpFrom = null;
    return catchUp(CATCH_UP_URL + after).catch(function (error) {
      catchUpFrom = catchUpFrom === null ? after : Math.min(catchUpFrom, after);
      throw error;
    });
  });

  function catchUpNow(from) {
    var after = typeof from === "number" ? from : lastSeq;
    catchUpFrom = catchUpFrom === null ? after : Math.min(catchUpFrom, after);
    return catchingUp();
  }

  // ---- The slow timer: a lost push with nothing after it -----------------------------------------
  var syncTimer = null;

  function syncNow() {
    if (signedOut || loggingOut) return;
    catchUpNow();
    if (livePost) syncPostNow();
  }

  function scheduleSync() {
    clearTimeout(syncTimer);
    syncTimer = null;
    if (document.visibilityState !== "visible" || signedOut || loggingOut) return; // a hidden tab asks when it is shown
    syncTimer = setTimeout(function () {
      syncNow();
      scheduleSync();
    }, SYNC_MS);
  }

  // Credentials live for minutes and a page for seconds: the next page in the same tab reuses the
  // ones this page holds (handed over in sessionStorage on pagehide, which only this tab reads)
  // instead of asking for new ones on every page load, which is slow (an STS call on AWS) and
  // throttled. A page takes them out of storage as it starts, so a tab duplicated while it is
  // open (sessionStorage is copied) asks for its own: two connections with one client id would
  // keep closing each other. Reconnects and refreshes always ask for new ones.
  var HANDOVER_KEY = "herald.live.credentials";
  var held = null; // the credentials of the current connection

  function handedOver() {
    try {
      var raw = window.sessionStorage.getItem(HANDOVER_KEY);
      window.sessionStorage.removeItem(HANDOVER_KEY);
      var creds = raw ? JSON.parse(raw) : null;
      var left = creds ? Date.parse(creds.expires_at) - Date.now() : 0;
      if (creds && creds.user === body.dataset.user && left > 2 * REFRESH_BEFORE_EXPIRY_MS) return creds;
    } catch (e) { /* storage refused (private mode): ask the server */ }
    return null;
  }

  // Logging out leaves nothing behind: the hand-over is dropped (the server also answers the
  // log-out with Clear-Site-Data) and this page's connection closes before the next page loads.
  var loggingOut = false;
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form || !/\/accounts\/logout\/$/.test(form.getAttribute("action") || "")) return;
    loggingOut = true;
    held = null;
    try { window.sessionStorage.removeItem(HANDOVER_KEY); } catch (e) { /* nothing stored */ }
    if (client) {
      var leaving = client;
      client = null;
      leaving.end(true);
    }
  }, true);

  window.addEventListener("pagehide", function (event) {
    if (loggingOut || !held || !client || event.persisted) return; // a page kept in the back/forward cache keeps them
    try {
      window.sessionStorage.setItem(HANDOVER_KEY, JSON.stringify(Object.assign({ user: body.dataset.user }, held)));
    } catch (e) { return; /* the next page asks the server */ }
    // Close now rather than when the page is torn down: the next page connects with the same client
    // id, and the broker should have seen this one go first.
    var leaving = client;
    client = null;
    leaving.end(true);
  });

  function fetchCredentials() {
    return request(CREDENTIALS_URL, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": cookie("csrftoken"), Accept: "application/json" },
    }).then(function (response) {
      if (response.status === 401 || response.status === 403) {
        signedOut = true; // logged out elsewhere (or the password changed): no point retrying
        throw new Error("signed out");
      }
      if (!response.ok) throw new Error("credentials refused: " + response.status);
      return response.json();
    });
  }

  var signedOut = false;

  function scheduleReconnect() {
    if (signedOut || loggingOut) {
      setState(signedOut ? "signed-out" : "off");
      return;
    }
    if (retryTimer) return;
    setState("reconnecting");
    if (droppedAt === null) droppedAt = Date.now();
    // Within FAST_RETRY_MS of the drop: 0.75–1.5 s. Then 1 s doubling to 30 s (jittered the same
    // way), so that many pages do not come back at the same moment after a long outage.
    var delay = FAST_RETRY_DELAY_MS;
    if (Date.now() - droppedAt >= FAST_RETRY_MS) {
      delay = Math.min(MAX_BACKOFF_MS, 1000 * Math.pow(2, attempt));
      attempt += 1;
    }
    delay = delay / 2 + Math.random() * delay / 2;
    retryTimer = setTimeout(function () {
      retryTimer = null;
      // The API usually works while the broker does not: each attempt also asks it (a 304 while
      // nothing is new), so what happens during an outage shows without waiting for its end.
      syncNow();
      connect();
    }, delay);
  }

  var firstConnect = true;

  function connect() {
    if (connecting) return;
    connecting = true;
    if (!client) setState(firstConnect ? "connecting" : "reconnecting");
    var reused = firstConnect ? handedOver() : null;
    firstConnect = false;
    (reused ? Promise.resolve(reused) : fetchCredentials())
      .then(function (creds) {
        var next = window.mqtt.connect(creds.url, {
          clientId: creds.client_id,
          username: creds.username,
          password: creds.password,
          protocolVersion: 4,
          clean: true,
          reconnectPeriod: 0, // reconnects need fresh credentials: handled here, not by MQTT.js
          connectTimeout: 10 * 1000,
          keepalive: KEEPALIVE_S, // the emulator and AWS IoT answer PINGREQ
        });
        next.on("connect", function () {
          next.subscribe(creds.topics.notifications, { qos: 1 }, function (err, granted) {
            if (err || !granted || !granted.length || granted[0].qos === 128) {
              next.end(true);
              return;
            }
            var previous = client;
            client = next;
            held = creds;
            connecting = false;
            attempt = 0;
            setState("live");
            if (previous) previous.end(true); // make before break: no gap while refreshing
            droppedAt = null;
            subscribePost(next, creds);
            catchUpNow();
            scheduleSync(); // just caught up: the timer starts again from now
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
  window.addEventListener("online", function () {
    if (client) return;
    clearTimeout(retryTimer); // back online: try now, not after the backoff
    retryTimer = null;
    attempt = 0;
    droppedAt = null;
    if (!connecting) connect();
  });
  // The network went away: say so at once, and drop the connection (its socket is gone too; MQTT.js
  // would find out at the next keep-alive). `online` connects again and catches up.
  window.addEventListener("offline", function () {
    var current = client;
    client = null;
    setState("offline");
    if (current) current.end(true);
  });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "visible") {
      scheduleSync(); // stops the timer
      return;
    }
    if (!client && !connecting) connect(); // …which catches up once connected
    else syncNow();
    scheduleSync();
  });

  // With "Notify me on this device" on, the service worker (/sw.js) hears of every notification
  // by Web Push too and tells each Herald window, where it shows nothing itself while one is
  // visible. The same message as the live connection's: shown once by id and seq, whichever way
  // comes first, so a page whose live connection is down still gets its toast.
  if (navigator.serviceWorker && navigator.serviceWorker.addEventListener) {
    navigator.serviceWorker.addEventListener("message", function (event) {
      var data = event.data;
      var message = data && data.herald === "push" ? data.message : null;
      if (!message || message.v !== 1 || message.type !== "notification") return;
      showNotification(message, true);
      setCounts(message, Number(message.seq), 0);
    });
  }

  window.heraldLive = {
    state: function () { return body.dataset.liveState; },
    lastSeq: function () { return lastSeq; },
    clientId: function () { return held ? held.client_id : null; },
    idle: function () { return inFlight === 0 && !connecting; },
  };
  setUpToastBox();
  var stateBox = document.getElementById("live-state");
  if (stateBox) stateBox.dataset.started = "1";
  var startBadge = document.getElementById("bell-count");
  if (startBadge) setTitle(Number(startBadge.dataset.unseen) || 0);
  connect();
  scheduleSync();
})();
