// Page behaviour that must not be inline (the Content-Security-Policy allows no inline script).
// A form with data-confirm="Question?" asks before it is sent.
document.addEventListener("submit", (event) => {
  const question = event.target.dataset && event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});
