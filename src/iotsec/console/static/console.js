// The console's only script: confirmations, and Ctrl+Enter to run a query.
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
