/*
 * Herald's service worker, served at the site root (/sw.js) so its scope is every page.
 * Registered by the settings page's "Notify me on this device" switch (settings.js), never on
 * page load. It has no fetch handler: pages load as they would without it.
 *
 * - push: the payload is a notification message (README "Topics and messages": v, type, id, seq,
 *   kind, text, url, actor, count, …). Every Herald window hears of it (postMessage); when one of
 *   them is visible (a page with live toasts: not the admin's or the API docs'), nothing is shown,
 *   because that page's live connection already showed its toast ("not twice"). Otherwise one system notification, tagged by the notification's id, so a
 *   group that gains activity ("Ana and 2 others liked …") replaces its own and alerts again.
 *   Text is shown as text: the system draws it, nothing is parsed as HTML.
 * - notificationclick: it goes to /notifications/<id>/open/, which marks it read (in every tab)
 *   and redirects to the item, in a Herald tab that is already open (focused and navigated) or in
 *   a new one.
 */
"use strict";

var SITE_ICON = "{{ site_icon|escapejs }}";
var TITLES = {
  comment: "New comment", reply: "New reply", mention: "You were mentioned", like: "New like",
  follow: "New follower", new_post: "New post",
};

self.addEventListener("install", function () { self.skipWaiting(); });
self.addEventListener("activate", function (event) { event.waitUntil(self.clients.claim()); });

function scopeUrl(path) {
  return new URL(path, self.registration.scope).href;
}

// Only this site's own addresses (an avatar on the media bucket is the one exception: https).
function iconUrl(actor) {
  var small = actor && actor.avatar && actor.avatar.small;
  if (typeof small === "string" && small) {
    try {
      var url = new URL(small, self.registration.scope);
      if (url.origin === self.location.origin || url.protocol === "https:") return url.href;
    } catch (e) { /* the site icon, then */ }
  }
  return scopeUrl(SITE_ICON);
}

function heraldWindows() {
  return self.clients.matchAll({ type: "window", includeUncontrolled: true });
}

// A window whose page shows live toasts (live.js runs on every page but the admin's and the API's).
function showsToasts(client) {
  var path = new URL(client.url).pathname;
  var root = new URL(self.registration.scope).pathname;
  return !/^(admin|api)\//.test(path.slice(root.length));
}

function parse(event) {
  if (!event.data) return null;
  try {
    return event.data.json();
  } catch (e) {
    return null;
  }
}

self.addEventListener("push", function (event) {
  var message = parse(event);
  if (!message || message.v !== 1 || message.type !== "notification" || !Number(message.id)) return;
  event.waitUntil(heraldWindows().then(function (windows) {
    windows.forEach(function (client) { client.postMessage({ herald: "push", message: message }); });
    if (windows.some(function (client) { return client.visibilityState === "visible" && showsToasts(client); })) {
      return null;
    }
    var bumped = Number(message.count) > 1;
    return self.registration.showNotification(TITLES[message.kind] || "Herald", {
      body: typeof message.text === "string" ? message.text : "",
      icon: iconUrl(message.actor),
      tag: "herald-" + Number(message.id),
      renotify: bumped,
      timestamp: Date.parse(message.created_at) || Date.now(),
      data: { id: Number(message.id), url: typeof message.url === "string" ? message.url : "" },
    });
  }));
});

// A window showing one of this site's pages: the focused or visible one first.
function pick(windows) {
  var rank = function (c) { return c.focused ? 0 : c.visibilityState === "visible" ? 1 : 2; };
  return windows.slice().sort(function (a, b) { return rank(a) - rank(b); })[0] || null;
}

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var data = event.notification.data || {};
  var id = Number(data.id);
  var target = scopeUrl(id ? "notifications/" + id + "/open/" : "notifications/");
  event.waitUntil(self.clients.matchAll({ type: "window" }).then(function (controlled) {
    var client = pick(controlled);
    if (!client) return self.clients.openWindow(target);
    // Focus first (the click allows it once), then navigate; a window that cannot be navigated
    // (it closed meanwhile) leaves a new one to open.
    return Promise.resolve(client.focus()).catch(function () { return client; })
      .then(function (focused) { return (focused || client).navigate(target); })
      .then(function (navigated) { return navigated || self.clients.openWindow(target); })
      .catch(function () { return self.clients.openWindow(target); });
  }));
});
