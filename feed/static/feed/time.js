/*
 * Relative times, the same rules as the `ago` template filter (feed/templatetags/reltime.py):
 * "just now", "1 minute ago", "5 minutes ago", "1 hour ago", "3 hours ago", "yesterday",
 * "3 days ago", then "Nov 3" (this year) or "Nov 3, 2025".
 *
 * Every <time datetime="…"> in the page is rewritten with it now and every minute, so a page left
 * open does not go stale (and items added later, live, are kept up to date too). Dates are shown in
 * the browser's time zone.
 *
 * window.heraldTime.ago(date, now, timeZone) is the formatter; refresh(root) rewrites the <time>
 * elements under root. (Also loadable in node: module.exports, for the parity test.)
 */
(function (root) {
  "use strict";

  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  var MINUTE = 60, HOUR = 3600, DAY = 86400;

  function parts(date, timeZone) {
    // Month, day and year of `date` in timeZone (the browser's own when undefined).
    if (!timeZone) return { year: date.getFullYear(), month: date.getMonth() + 1, day: date.getDate() };
    var out = {};
    new Intl.DateTimeFormat("en-US", { timeZone: timeZone, year: "numeric", month: "numeric", day: "numeric" })
      .formatToParts(date)
      .forEach(function (p) { if (p.type !== "literal") out[p.type] = Number(p.value); });
    return out;
  }

  function ago(date, now, timeZone) {
    date = date instanceof Date ? date : new Date(date);
    now = now === undefined ? new Date() : now instanceof Date ? now : new Date(now);
    if (isNaN(date.getTime())) return "";
    var seconds = (now.getTime() - date.getTime()) / 1000;
    var n;
    if (seconds < MINUTE) return "just now";
    if (seconds < HOUR) {
      n = Math.floor(seconds / MINUTE);
      return n === 1 ? "1 minute ago" : n + " minutes ago";
    }
    if (seconds < DAY) {
      n = Math.floor(seconds / HOUR);
      return n === 1 ? "1 hour ago" : n + " hours ago";
    }
    n = Math.floor(seconds / DAY);
    if (n === 1) return "yesterday";
    if (n < 7) return n + " days ago";
    var local = parts(date, timeZone);
    var today = parts(now, timeZone);
    var label = MONTHS[local.month - 1] + " " + local.day;
    return local.year === today.year ? label : label + ", " + local.year;
  }

  var api = { ago: ago };

  if (typeof module !== "undefined" && module.exports) {
    module.exports = api;
    return;
  }

  api.refresh = function (scope) {
    var now = new Date();
    (scope || document).querySelectorAll("time[datetime]").forEach(function (el) {
      var text = ago(el.getAttribute("datetime"), now);
      if (text && el.textContent !== text) el.textContent = text;
    });
  };
  root.heraldTime = api;

  function start() {
    api.refresh();
    setInterval(api.refresh, 60 * 1000);
    // Timers sleep in background tabs: catch up as soon as the page is looked at again.
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") api.refresh();
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})(typeof window !== "undefined" ? window : this);
