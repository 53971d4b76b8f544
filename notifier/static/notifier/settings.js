/*
 * The notification settings page (templates/notifier/settings.html), loaded there only.
 *
 * 1. The matrix: turning a kind's in-app box off mutes it, so its Web Push and email boxes are
 *    disabled at once (as the server renders them). A disabled box is not sent with the form, so
 *    on submit a hidden field carries each disabled ticked box's choice: the server keeps it for
 *    when the kind is unmuted. The form works the same without this script.
 * 2. "Notify me on this device": nothing is asked on page load (the state is read from what the
 *    browser already has: permission, service worker, subscription). Only a click turns it on:
 *    the permission prompt, the service worker at the site root, pushManager.subscribe with the
 *    server's VAPID key, and the subscription POSTed to the API; a click again unsubscribes and
 *    DELETEs it. The state shows in words: on, off, blocked by the browser, not supported, not
 *    set up on this server.
 */
(function () {
  "use strict";

  // ---- 1. The matrix ---------------------------------------------------------------------------
  var form = document.getElementById("channel-matrix-form");
  if (form) {
    var rowOf = function (kind) { return document.getElementById("kind-" + kind); };
    var channelBoxes = function (row) {
      return Array.prototype.filter.call(row.querySelectorAll("input[type=checkbox]"), function (box) {
        return box.dataset.column !== "in_app";
      });
    };
    form.addEventListener("change", function (event) {
      var box = event.target;
      if (!box || box.dataset.column !== "in_app") return;
      var row = rowOf(box.value);
      if (!row) return;
      var muted = !box.checked;
      row.classList.toggle("is-muted", muted);
      var note = document.getElementById("muted-note-" + box.value);
      if (note) note.hidden = !muted;
      channelBoxes(row).forEach(function (other) {
        other.disabled = muted;
        if (muted) other.setAttribute("aria-describedby", "muted-note-" + box.value);
        else other.removeAttribute("aria-describedby");
      });
    });
    form.addEventListener("submit", function () {
      form.querySelectorAll("input[type=hidden][data-keeps]").forEach(function (el) { el.remove(); });
      form.querySelectorAll("input[type=checkbox]:disabled:checked").forEach(function (box) {
        var keep = document.createElement("input");
        keep.type = "hidden";
        keep.name = box.name;
        keep.value = box.value;
        keep.dataset.keeps = box.id;
        box.parentNode.parentNode.appendChild(keep);
      });
    });
  }

  // ---- 2. This device's push switch ------------------------------------------------------------
  var button = document.getElementById("push-switch");
  var stateBox = document.getElementById("push-state");
  if (!button || !stateBox) return;

  var WORDS = {
    checking: "Checking this browser…",
    off: "Off: this device gets no notifications while Herald is closed.",
    on: "On: this device shows a notification when no Herald tab is open.",
    working: "One moment…",
    blocked: "Blocked by your browser. Allow notifications for this site in the browser's site settings, then try again.",
    unsupported: "This browser cannot receive push notifications.",
    unconfigured: "Push notifications are not set up on this server.",
    error: "That did not work. Try again in a moment.",
  };

  function show(state, detail) {
    stateBox.dataset.state = state;
    stateBox.textContent = detail || WORDS[state];
    button.setAttribute("aria-pressed", state === "on" ? "true" : "false");
    button.disabled = state === "checking" || state === "working" || state === "blocked" ||
      state === "unsupported" || state === "unconfigured";
    button.dataset.state = state;
  }

  function cookie(name) {
    var match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : "";
  }

  function send(method, body) {
    return fetch(button.dataset.subscriptions, {
      method: method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": cookie("csrftoken") },
      body: JSON.stringify(body),
    }).then(function (response) {
      if (!response.ok) throw new Error("the server answered " + response.status);
      return response;
    });
  }

  // The VAPID public key, base64url as the API gives it, as the bytes subscribe() wants.
  function keyBytes(base64url) {
    var base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    base64 += "===".slice((base64.length + 3) % 4);
    var raw = window.atob(base64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  function sameKey(subscription, bytes) {
    var had = subscription && subscription.options && subscription.options.applicationServerKey;
    if (!had) return true; // the browser does not say: assume it is the one it was made with
    var a = new Uint8Array(had);
    return a.length === bytes.length && a.every(function (b, i) { return b === bytes[i]; });
  }

  var supported = "serviceWorker" in navigator && "PushManager" in window && "Notification" in window &&
    window.isSecureContext;
  var serverKey = null;
  var scope = button.dataset.worker.replace(/[^/]*$/, ""); // the worker's folder: the site root

  function registration() {
    return navigator.serviceWorker.getRegistration(scope);
  }

  function currentSubscription() {
    return registration().then(function (reg) { return reg ? reg.pushManager.getSubscription() : null; });
  }

  // The server's list of this user's devices, by the SHA-256 of each endpoint (hex).
  var mine = (button.dataset.mine || "").split(" ").filter(Boolean);

  function endpointHash(endpoint) {
    return window.crypto.subtle.digest("SHA-256", new TextEncoder().encode(endpoint)).then(function (digest) {
      return Array.prototype.map.call(new Uint8Array(digest), function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
    });
  }

  function remember(endpoint, on) {
    return endpointHash(endpoint).then(function (hash) {
      mine = mine.filter(function (h) { return h !== hash; });
      if (on) mine.push(hash);
    });
  }

  // On when the browser has a subscription and it is one of this user's devices: a browser whose
  // subscription carries another account's pushes (that session ended without logging out) is
  // off here, and turning it on moves the subscription to this user.
  function refresh() {
    if (Notification.permission === "denied") return Promise.resolve(show("blocked"));
    return currentSubscription().then(function (subscription) {
      if (!subscription || Notification.permission !== "granted") return show("off");
      return endpointHash(subscription.endpoint).then(function (hash) { show(mine.indexOf(hash) === -1 ? "off" : "on"); });
    });
  }

  function turnOn() {
    show("working");
    // Asked first, straight from the click: the browser's prompt needs the user's gesture (and
    // answers at once, with no prompt, when the permission is already given or refused).
    return Promise.resolve(Notification.requestPermission()).then(function (permission) {
      if (permission !== "granted") {
        show(permission === "denied" ? "blocked" : "off");
        return null;
      }
      return navigator.serviceWorker.register(button.dataset.worker, { scope: scope })
        .then(function () { return navigator.serviceWorker.ready; })
        .then(function (reg) {
          var bytes = keyBytes(serverKey);
          return reg.pushManager.getSubscription().then(function (old) {
            // Made with another key (the server's keys changed): the push service would refuse it.
            return old && !sameKey(old, bytes) ? old.unsubscribe() : null;
          }).then(function () {
            return reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: bytes });
          });
        })
        .then(function (subscription) {
          return send("POST", subscription.toJSON()).then(function () {
            return remember(subscription.endpoint, true).then(function () { show("on"); });
          }, function (error) {
            // The server did not keep it: a subscription nobody sends to is dropped here too.
            return subscription.unsubscribe().then(function () { throw error; });
          });
        });
    });
  }

  function turnOff() {
    show("working");
    return currentSubscription().then(function (subscription) {
      if (!subscription) return show("off");
      var endpoint = subscription.endpoint;
      // Both, whatever the other's outcome: a subscription the browser dropped is one the push
      // service answers 410 for, and the server deletes it then.
      return send("DELETE", { endpoint: endpoint }).catch(function () { return null; })
        .then(function () { return subscription.unsubscribe(); })
        .then(function () { return remember(endpoint, false); })
        .then(function () { show("off"); });
    });
  }

  button.addEventListener("click", function () {
    var on = button.getAttribute("aria-pressed") === "true";
    (on ? turnOff() : turnOn()).catch(function () {
      show(Notification.permission === "denied" ? "blocked" : "error");
      refreshLater();
    });
  });

  function refreshLater() {
    window.setTimeout(function () {
      if (stateBox.dataset.state === "error") refresh().catch(function () { /* stays "error" */ });
    }, 4000);
  }

  if (!supported) {
    show("unsupported");
    return;
  }
  show("checking");
  fetch(button.dataset.config, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (response) { return response.ok ? response.json() : {}; })
    .then(function (config) {
      serverKey = config && typeof config.vapid_public_key === "string" ? config.vapid_public_key : null;
      if (!serverKey) return show("unconfigured");
      return refresh();
    })
    .catch(function () { show("error", "Could not reach Herald to check this device. Reload the page to try again."); });
})();
