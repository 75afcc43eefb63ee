// Keyboard use for the inbox. Queue: j/k move, Enter or o opens, x selects for batch approval.
// Draft: j/k next/previous draft, a approve (on a flagged draft: tick the box first, Space),
// e edit, r reject, g regenerate, u back to the queue.
"use strict";
(function () {
  const page = document.body.dataset.page;
  const typing = (el) => el && (el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
    (el.tagName === "INPUT" && el.type !== "checkbox"));

  // One submit per form: a double click sends one request (the server refuses a second anyway).
  document.querySelectorAll("form[method=post]").forEach((form) => {
    form.addEventListener("submit", (ev) => {
      if (form.dataset.sent) { ev.preventDefault(); return; }
      form.dataset.sent = "1";
      form.querySelectorAll("button[type=submit]").forEach((b) => { b.disabled = true; });
    });
  });

  if (page === "queue") {
    const rows = Array.from(document.querySelectorAll("tr.row"));
    let at = -1;
    const select = (i) => {
      if (!rows.length) return;
      at = Math.max(0, Math.min(rows.length - 1, i));
      rows.forEach((r) => r.classList.remove("selected"));
      rows[at].classList.add("selected");
      rows[at].scrollIntoView({ block: "nearest" });
    };
    rows.forEach((r, i) => r.addEventListener("click", (ev) => {
      if (ev.target.closest("input, a")) return;
      window.location = r.dataset.href;
    }));
    document.querySelectorAll("input.select-all").forEach((box) => {
      box.addEventListener("change", () => {
        box.closest("form").querySelectorAll("input[name=ids]").forEach((c) => { c.checked = box.checked; });
      });
    });
    document.addEventListener("keydown", (ev) => {
      if (typing(ev.target) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      if (ev.key === "j") { select(at + 1); ev.preventDefault(); }
      else if (ev.key === "k") { select(at - 1); ev.preventDefault(); }
      else if ((ev.key === "Enter" || ev.key === "o") && at >= 0) { window.location = rows[at].dataset.href; ev.preventDefault(); }
      else if (ev.key === "x" && at >= 0) {
        const box = rows[at].querySelector("input[name=ids]");
        if (box) box.checked = !box.checked;
        ev.preventDefault();
      }
    });
  }

  if (page === "draft") {
    const go = (id) => { const a = document.getElementById(id); if (a) window.location = a.href; };
    const focus = (id) => { const el = document.getElementById(id); if (el) { el.focus(); el.select && id !== "edit-text" && el.select(); } };
    const text = document.getElementById("edit-text");
    if (text) text.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); document.getElementById("edit-approve").click(); }
    });
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && typing(ev.target)) { ev.target.blur(); return; }
      if (typing(ev.target) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      const keys = {
        j: () => go("next"), k: () => go("prev"), u: () => go("back"),
        a: () => {
          // A flagged draft is sent only once its box is ticked: `a` goes to the box first.
          const box = document.getElementById("confirm-flagged");
          if (box && !box.checked) { box.focus(); return; }
          const b = document.getElementById("approve"); if (b) b.click();
        },
        e: () => focus("edit-text"), r: () => focus("reject-reason"), g: () => focus("regen-instructions"),
      };
      const fn = keys[ev.key];
      if (fn) { ev.preventDefault(); fn(); }
    });
  }
})();
