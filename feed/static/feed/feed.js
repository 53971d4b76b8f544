// Page behaviour that must not be inline (the Content-Security-Policy allows no inline script).
// Everything here is progressive: the pages work without it.
(function () {
  "use strict";

  // --- The account menu (a <details> in the navbar): Escape or a click elsewhere closes it.
  const menu = document.getElementById("account-menu");
  if (menu) {
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || !menu.open) return;
      menu.open = false;
      menu.querySelector("summary").focus();
    });
    document.addEventListener("click", (event) => {
      if (menu.open && !menu.contains(event.target)) menu.open = false;
    });
  }

  // --- Deleting a post or a comment (a form with data-delete="post|comment" and data-api, its
  // DELETE URL). An in-page dialog asks; once confirmed the item disappears and "Post deleted ·
  // Undo" shows for UNDO_MS. The DELETE request itself waits out that time, so Undo only has to
  // not send it: nothing is deleted and restored on the server, and the removal of the
  // notifications about it happens once, as for any delete. Leaving the page, or hiding the tab (a
  // phone may then discard it without another event), sends what is still waiting at once, with
  // fetch's keepalive, so a delete the user saw happen is never lost. One waits at a time: a second
  // delete sends the first. Without script the form posts to the page's delete URL, as before.
  const UNDO_MS = 5000;
  const deleteDialog = document.getElementById("delete-dialog");
  const undoBar = document.getElementById("undo-bar");
  let waiting = null; // {form, kind, id, hidden: [the elements it took off the page], timer}

  function itemOf(form) {
    return form.closest("article.post, li.comment");
  }

  // What disappears with it: a post's own page shows its mute form and comments too.
  function partsOf(form, kind) {
    const item = itemOf(form);
    const parts = item ? [item] : [];
    if (kind === "post" && item) {
      const id = item.id.replace("post-", "");
      document.querySelectorAll(`#mute-form, [data-live-post="${id}"]`).forEach((el) => parts.push(el));
    }
    return parts;
  }

  function ask(kind) {
    return new Promise((resolve) => {
      document.getElementById("delete-dialog-title").textContent = `Delete this ${kind}?`;
      deleteDialog.returnValue = "";
      deleteDialog.addEventListener("close", () => resolve(deleteDialog.returnValue === "confirm"), { once: true });
      deleteDialog.showModal();
    });
  }

  function showBar(children) {
    undoBar.replaceChildren(...children);
  }

  function clearBar() {
    undoBar.replaceChildren();
  }

  function fail(entry, text) {
    entry.hidden.forEach((el) => { el.hidden = false; });
    const p = document.createElement("span");
    p.textContent = `Error: the ${entry.kind} was not deleted. ${text}`;
    showBar([p]);
    setTimeout(() => { if (undoBar.firstChild === p) clearBar(); }, 2 * UNDO_MS);
  }

  function gone(entry) {
    const item = entry.hidden[0];
    if (entry.kind === "post" && document.querySelector(`[data-live-post="${item.id.replace("post-", "")}"]`)) {
      window.location.assign("/"); // its own page has nothing left to show
      return;
    }
    const next = item.nextElementSibling;
    if (undoBar.contains(document.activeElement)) {
      (next && next.querySelector("a, button") || document.getElementById("main")).focus();
    }
    entry.hidden.forEach((el) => el.remove());
    // The post's page puts back "No comments yet." and re-reads the comment count (live.js).
    document.dispatchEvent(new CustomEvent("herald:deleted", { detail: { kind: entry.kind, id: entry.id } }));
  }

  function send() {
    const entry = waiting;
    if (!entry) return;
    waiting = null;
    clearTimeout(entry.timer);
    clearBar();
    const token = entry.form.querySelector("[name=csrfmiddlewaretoken]");
    fetch(entry.form.dataset.api, {
      method: "DELETE", credentials: "same-origin", keepalive: true,
      headers: { "X-CSRFToken": token ? token.value : "", Accept: "application/json" },
    }).then((response) => {
      if (response.ok || response.status === 404) gone(entry); // 404: it is gone already
      else if (response.status === 429) fail(entry, "Too many actions at once. Try again shortly.");
      else fail(entry, "Reload the page and try again.");
    }, () => fail(entry, "Herald could not be reached. Check your connection and try again."));
  }

  function undo() {
    const entry = waiting;
    if (!entry) return;
    waiting = null;
    clearTimeout(entry.timer);
    clearBar();
    entry.hidden.forEach((el) => { el.hidden = false; });
    const button = entry.form.querySelector("button");
    if (button) button.focus();
  }

  function deleteLater(form, kind) {
    send(); // the one still waiting goes now
    const hidden = partsOf(form, kind);
    if (!hidden.length) return;
    hidden.forEach((el) => { el.hidden = true; });
    waiting = { form, kind, hidden, id: Number(hidden[0].id.replace(/^\D+/, "")), timer: setTimeout(send, UNDO_MS) };
    const text = document.createElement("span");
    text.textContent = `${kind === "post" ? "Post" : "Comment"} deleted`;
    const dot = document.createElement("span");
    dot.setAttribute("aria-hidden", "true");
    dot.textContent = "·";
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Undo";
    button.addEventListener("click", undo);
    showBar([text, dot, button]);
    button.focus();
  }

  if (deleteDialog && undoBar) {
    document.addEventListener("submit", (event) => {
      const form = event.target;
      const kind = form instanceof HTMLFormElement && form.dataset.delete;
      if (!kind || !form.dataset.api || typeof deleteDialog.showModal !== "function") return;
      event.preventDefault();
      const opener = form.querySelector("button");
      ask(kind).then((confirmed) => {
        if (confirmed) deleteLater(form, kind);
        else if (opener) opener.focus();
      });
    });
    // The dialog keeps the keyboard: Tab and Shift+Tab go round its buttons (Escape cancels).
    deleteDialog.addEventListener("keydown", (event) => {
      if (event.key !== "Tab") return;
      const buttons = [...deleteDialog.querySelectorAll("button")];
      const at = buttons.indexOf(document.activeElement);
      const to = (at + (event.shiftKey ? -1 : 1) + buttons.length) % buttons.length;
      event.preventDefault();
      buttons[to].focus();
    });
    window.addEventListener("pagehide", send);
    document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") send(); });
  }

  // --- Character counters: "1,987 left" under a textarea with a maxlength (the composer and the
  // comment form). They count characters as the server does (code points: an emoji is one, not
  // two UTF-16 units), so with script the counter is the limit, not maxlength (which counts units
  // and would stop at 1,000 emoji): the attribute moves to data-maxlength, the count goes negative
  // past the limit, the field is marked invalid and the form is not sent. Without script, the
  // HTML's maxlength still applies, and the server refuses longer text either way. The counter
  // describes the field (aria-describedby); a separate polite live region says how much is left
  // at most every few seconds, and only near the limit, so typing is not drowned in speech.
  const WARN_BELOW = 100;
  const ANNOUNCE_EVERY_MS = 3000;
  const numbers = new Intl.NumberFormat("en-US");

  function characters(text) {
    // Code points, as the server's len() counts them (the browser sends line breaks as CRLF,
    // which the server turns back into one "\n").
    let n = 0;
    for (const _ of text) n += 1;
    return n;
  }

  function left(textarea) {
    return Number(textarea.dataset.maxlength) - characters(textarea.value);
  }

  function isOver(textarea) {
    return Boolean(textarea.dataset.maxlength) && left(textarea) < 0;
  }

  function counterText(n) {
    return n >= 0 ? `${numbers.format(n)} left` : `${numbers.format(-n)} over the limit`;
  }

  function describe(field, id) {
    const ids = (field.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
    if (!ids.includes(id)) field.setAttribute("aria-describedby", [...ids, id].join(" "));
  }

  function setUpCounter(textarea) {
    if (textarea.dataset.counter) return;
    textarea.dataset.counter = "1";
    textarea.dataset.maxlength = textarea.getAttribute("maxlength");
    textarea.removeAttribute("maxlength");
    // A field the server sent back with its error stays marked as such until it is edited: then
    // the error ("cannot be empty") no longer describes what the box holds, and goes.
    let serverInvalid = textarea.getAttribute("aria-invalid") === "true";
    let markedOver = false;
    const id = `${textarea.id}-count`;
    const counter = document.createElement("span");
    counter.className = "char-count";
    counter.id = id;
    const live = document.createElement("span");
    live.className = "sr-only";
    live.setAttribute("aria-live", "polite");
    live.dataset.counterLive = "1";
    const foot = textarea.form && textarea.form.querySelector(".composer-foot");
    if (foot) foot.prepend(counter, live);
    else textarea.after(counter, live);
    describe(textarea, id);

    let lastAnnounced = 0;
    let pending = null;
    function announce() {
      pending = null;
      lastAnnounced = Date.now();
      const n = left(textarea);
      live.textContent = n < WARN_BELOW ? counterText(n) : "";
    }
    function mark(n) {
      counter.textContent = counterText(n);
      counter.classList.toggle("is-warning", n < WARN_BELOW);
      counter.classList.toggle("is-over", n < 0);
      if (n < 0) {
        textarea.setAttribute("aria-invalid", "true");
        markedOver = true;
      } else if (markedOver) {
        markedOver = false;
        if (serverInvalid) textarea.setAttribute("aria-invalid", "true");
        else textarea.removeAttribute("aria-invalid");
      }
    }
    function clearServerError() {
      if (!serverInvalid) return;
      serverInvalid = false;
      const errorId = `${textarea.id}-error`;
      const error = document.getElementById(errorId);
      if (error) error.remove();
      const ids = (textarea.getAttribute("aria-describedby") || "").split(/\s+/).filter((id) => id && id !== errorId);
      if (ids.length) textarea.setAttribute("aria-describedby", ids.join(" "));
      else textarea.removeAttribute("aria-describedby");
      if (!markedOver) textarea.removeAttribute("aria-invalid");
    }
    function update() {
      clearServerError();
      const n = left(textarea);
      mark(n);
      if (n >= WARN_BELOW) {
        live.textContent = "";
        return;
      }
      if (pending) return;
      const wait = Math.max(0, lastAnnounced + ANNOUNCE_EVERY_MS - Date.now());
      pending = setTimeout(announce, wait);
    }
    textarea.addEventListener("input", update);
    mark(left(textarea));
    textarea.counterOver = () => {
      // The form was not sent: say so now, whatever the throttle.
      clearTimeout(pending);
      pending = null;
      lastAnnounced = Date.now();
      live.textContent = `Too long: ${counterText(left(textarea))}.`;
    };
  }

  // A form with a field over its limit is not sent (captured before htmx's own submit handler).
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    const over = [...form.querySelectorAll("textarea[data-counter]")].find(isOver);
    if (!over) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    over.focus();
    if (over.counterOver) over.counterOver();
  }, true);

  // --- Pictures straight to storage (a form with data-direct-upload: S3 storage, where API
  // Gateway would refuse a big photo sent through Herald). On submit with a chosen file: ask
  // Herald for a presigned POST, send the file there, put the key it answered in the hidden
  // `upload` field, clear the file input (the file never goes to Herald) and submit again the
  // normal way, so htmx (or the browser) sends the form with its key. Any failure is the picture
  // field's error, as the server would show it, and the rest of the form is kept.
  function firstError(answer) {
    const errors = answer && answer.errors ? Object.values(answer.errors) : [];
    return (errors.length && errors[0][0]) || (answer && answer.detail) || "";
  }

  async function uploadDirect(form, file) {
    const token = form.querySelector("[name=csrfmiddlewaretoken]");
    let response;
    try {
      response = await fetch(form.dataset.directUpload, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": token ? token.value : "" },
        body: JSON.stringify({ content_type: file.type || "application/octet-stream" }),
      });
    } catch (error) {
      throw new Error("Herald could not be reached. Check your connection and try again.");
    }
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(firstError(answer) || "The picture could not be sent. Reload the page and try again.");
    const body = new FormData();
    Object.entries(answer.fields).forEach(([name, value]) => body.append(name, value));
    body.append("file", file); // last: S3 ignores fields after the file
    try {
      response = await fetch(answer.url, { method: "POST", body });
    } catch (error) {
      throw new Error("The picture could not be sent. Check your connection and try again.");
    }
    if (!response.ok) throw new Error("The picture was refused: choose a JPEG, PNG, WebP or GIF of at most 10 MB.");
    return answer.key;
  }

  function pictureError(input, text) {
    const id = `${input.id}-error`;
    const old = document.getElementById(id);
    if (old) old.remove();
    const p = document.createElement("p");
    p.className = "error";
    p.id = id;
    const prefix = document.createElement("span");
    prefix.className = "error-prefix";
    prefix.textContent = "Error:";
    p.append(prefix, ` ${text}`);
    const field = input.closest(".composer-picture-field, .field");
    (field || input.parentElement).append(p);
    if (field) field.classList.add("has-error");
    input.setAttribute("aria-invalid", "true");
    describe(input, id);
    input.focus();
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.directUpload) return;
    const input = form.querySelector("input[type=file]");
    const key = form.querySelector("input[name=upload]");
    if (form.dataset.uploading) {
      event.preventDefault(); // a second click while the picture is on its way
      event.stopImmediatePropagation();
      return;
    }
    if (!input || !key || !input.files.length) return; // nothing to send first: the normal way
    event.preventDefault();
    event.stopImmediatePropagation(); // before htmx's own submit handler
    const submitter = event.submitter;
    form.dataset.uploading = "1";
    uploadDirect(form, input.files[0]).then((uploaded) => {
      delete form.dataset.uploading;
      key.value = uploaded;
      input.value = "";
      // Disabled, the emptied input is not even an empty part; the form's data is read during
      // requestSubmit (by htmx or the browser), so it is enabled again for the next picture.
      input.disabled = true;
      try {
        form.requestSubmit(submitter && submitter.form === form ? submitter : undefined);
      } finally {
        input.disabled = false;
      }
    }, (error) => {
      delete form.dataset.uploading;
      pictureError(input, error.message);
    });
  }, true);

  function setUp(root) {
    root.querySelectorAll(".composer-form textarea[maxlength], .comment-form textarea[maxlength]").forEach(setUpCounter);
    root.querySelectorAll(".composer-picture").forEach(setUpPicture);
  }

  // --- The composer's picture: the alt-text field shows once a picture is chosen (or when it holds
  // text or an error), so an empty composer stays small; without JavaScript both always show.
  function setUpPicture(box) {
    const file = box.querySelector("input[type=file]");
    const alt = box.querySelector("input[type=text]");
    const altField = alt && alt.closest(".composer-picture-field");
    if (!file || !altField) return;
    const sync = () => {
      altField.hidden = !(file.files.length || alt.value || altField.classList.contains("has-error"));
    };
    file.addEventListener("change", sync);
    sync();
  }

  // --- Errors: the first invalid field of the page gets the focus on load (its error paragraph
  // describes it, so a screen reader reads the message).
  function focusFirstInvalid(root) {
    const field = root.querySelector("[aria-invalid='true']");
    if (field) {
      field.focus();
      return true;
    }
    return false;
  }

  setUp(document);
  focusFirstInvalid(document);

  // --- htmx (like, follow, comment, post without a page load).
  document.addEventListener("htmx:load", (event) => setUp(event.detail.elt));

  document.addEventListener("htmx:afterSwap", (event) => {
    const form = event.detail.elt;
    if (!(form instanceof Element) || !form.matches(".composer-form, .comment-form")) return;
    // Set up at once, in the task that swapped it in: htmx:load comes only after the settle delay,
    // and what is typed before then must clear the error all the same.
    setUp(form);
    // A form swapped in with an error focuses its field (else htmx keeps the focus on the button).
    focusFirstInvalid(form);
  });

  // A comment or post that also arrives live is kept once by live.js (keepOnce).

  // htmx swaps no error answer (429 too many writes, 403, 500): say so next to the form, or,
  // when the server could not be reached, fall back to a normal submission.
  function formError(form, text) {
    let p = form.querySelector(".request-error");
    if (!p) {
      p = document.createElement("p");
      p.className = "error request-error";
      p.setAttribute("role", "alert");
      form.append(p);
    }
    p.textContent = `Error: ${text}`;
  }

  document.addEventListener("htmx:beforeRequest", (event) => {
    const form = event.detail.elt;
    const old = form instanceof Element && form.querySelector(".request-error");
    if (old) old.remove();
  });

  document.addEventListener("htmx:responseError", (event) => {
    const xhr = event.detail.xhr;
    const form = event.detail.elt;
    if (!(form instanceof HTMLFormElement)) return;
    if (xhr.status === 429) {
      const wait = xhr.getResponseHeader("Retry-After");
      formError(form, `Too many actions at once. Try again${wait ? ` in ${wait} seconds` : " shortly"}.`);
    } else if (xhr.status === 404) {
      formError(form, "This no longer exists (it may have been deleted).");
    } else {
      formError(form, "That did not work. Reload the page and try again.");
    }
  });

  document.addEventListener("htmx:sendError", (event) => {
    const form = event.detail.elt;
    if (form instanceof HTMLFormElement) formError(form, "Herald could not be reached. Check your connection and try again.");
  });
})();
