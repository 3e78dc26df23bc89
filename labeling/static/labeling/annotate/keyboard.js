// The keyboard map: every shortcut of the page (the help dialog, opened with ? or its button,
// lists them). Keys do nothing while a dialog is open (it has the keyboard; Esc closes it), nor,
// except Ctrl+Enter to submit and Alt+S to skip, while the focus is in a text field.
import { el, state, orderConfirmOpen } from "./page.js";
import { submit, openSkip, keepRanking } from "./queue.js";
import { rankingKey } from "./ranking.js";

function isTyping(target) {
  if (!target || !target.closest) return false;
  if (target.closest("textarea, select, [contenteditable=''], [contenteditable='true']")) return true;
  return target.tagName === "INPUT" && !["checkbox", "radio", "button", "submit", "reset"].includes(target.type);
}

// Alt+S skips from anywhere, the answer editor included, where a plain s is a letter. The
// physical key: on a Mac, Option+S types "ß".
const isSkipShortcut = (event) => event.altKey && !event.ctrlKey && !event.metaKey && event.code === "KeyS";

function onKeyDown(event) {
  if (document.querySelector("dialog[open]")) return; // the open dialog has the keyboard; Esc closes it
  if (isSkipShortcut(event)) {
    event.preventDefault();
    openSkip();
    return;
  }
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    submit();
    return;
  }
  if (event.key === "Escape" && orderConfirmOpen()) {
    event.preventDefault();
    keepRanking();
    return;
  }
  if (event.isComposing || event.ctrlKey || event.metaKey || event.altKey || isTyping(event.target)) return;
  if (event.key === "?") {
    event.preventDefault();
    el.help.showModal();
    return;
  }
  const task = state.task;
  if (!task || state.busy) return;
  if (event.key === "Enter") {
    if (event.target.closest("button, a, summary, input, [role='tab']")) return; // let them do their own thing
    event.preventDefault();
    submit({ asShown: event.shiftKey }); // Shift+Enter: the order as shown, without asking
  } else if (event.key === "s" || event.key === "S") {
    event.preventDefault();
    openSkip();
  } else if (task.kind === "ranking" && rankingKey(event)) {
    event.preventDefault();
  }
}

export function initKeyboard() {
  document.addEventListener("keydown", onKeyDown);
  el.helpOpen.addEventListener("click", () => el.help.showModal());
}
