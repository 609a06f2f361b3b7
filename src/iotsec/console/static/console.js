// The console's only script: confirmations, Ctrl+Enter to run a query, and a feed form that
// shows the fields of the kind chosen.
// Loaded as a file (the Content-Security-Policy allows no inline script); pages work without it.
"use strict";

document.addEventListener("submit", (event) => {
  const button = event.submitter;
  const question = (button && button.dataset.confirm) || event.target.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

document.addEventListener("keydown", (event) => {
  const target = event.target;
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && target.id === "q") {
    event.preventDefault();
    const run = document.getElementById("run");
    if (run) {
      target.form.requestSubmit(run);
    }
  }
});

// A feed form shows the fieldsets of its kind only (without this script, it shows them all;
// the server sends only the chosen kind's fields either way).
function showFeedFields(form) {
  const kind = form.elements.kind.value;
  for (const set of form.querySelectorAll("fieldset[data-kinds]")) {
    set.hidden = !set.dataset.kinds.split(" ").includes(kind);
  }
}

document.addEventListener("change", (event) => {
  const form = event.target.form;
  if (event.target.name === "kind" && form && form.hasAttribute("data-feed-form")) {
    showFeedFields(form);
  }
});

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form[data-feed-form]").forEach(showFeedFields);
});
