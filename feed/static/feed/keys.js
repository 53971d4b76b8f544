/* Keyboard shortcuts, as people know them from other feeds: j / k move between posts, g h goes
 * home, g n to notifications, ? shows them all. Never while typing in a field, never with a
 * modifier held (the browser's own shortcuts stay the browser's). */
(function () {
  "use strict";

  var dialog = document.getElementById("shortcuts");
  var pendingG = null; // "g" was pressed: the next key says where to go, within a second

  function typing(target) {
    if (!(target instanceof Element)) return false;
    return target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName);
  }

  function posts() {
    return Array.prototype.slice.call(document.querySelectorAll("article.post:not([hidden])")); // not one waiting to be deleted
  }

  function move(step) {
    var all = posts();
    if (!all.length) return;
    var current = document.activeElement && document.activeElement.closest
      ? document.activeElement.closest("article.post") : null;
    var index = all.indexOf(current);
    var next = all[Math.min(all.length - 1, Math.max(0, index === -1 ? 0 : index + step))];
    if (!next.hasAttribute("tabindex")) next.setAttribute("tabindex", "-1");
    next.focus();
    next.scrollIntoView({ block: "nearest" });
  }

  function go(key) {
    var link = document.querySelector('[data-shortcut="g ' + key + '"]');
    if (link) window.location.assign(link.getAttribute("href"));
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (dialog && dialog.open) return; // the dialog handles its own keys (Esc closes it)
    var key = event.key;
    if (pendingG !== null) {
      clearTimeout(pendingG);
      pendingG = null;
      if (key === "h" || key === "n") {
        event.preventDefault();
        go(key);
        return;
      }
    }
    if (key === "g") {
      pendingG = setTimeout(function () { pendingG = null; }, 1000);
    } else if (key === "j" || key === "k") {
      event.preventDefault();
      move(key === "j" ? 1 : -1);
    } else if (key === "?" && dialog && typeof dialog.showModal === "function") {
      event.preventDefault();
      dialog.showModal();
    }
  });

  if (dialog) {
    dialog.addEventListener("click", function (event) {
      if (event.target.closest("[data-close]")) dialog.close();
    });
  }
})();
