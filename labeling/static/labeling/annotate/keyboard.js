// The keyboard map: every shortcut of the page (the help dialog, opened with ? or its button,
// lists them). Keys do nothing while a dialog is open (it has the keyboard; Esc closes it), nor,
// except Ctrl+Enter to submit, while the focus is in a text field.
import { RATINGS, el, state, announce } from "./page.js";
import { submit, openSkip } from "./queue.js";
import * as board from "./ranking.js";

function isTyping(target) {
  if (!target || !target.closest) return false;
  if (target.closest("textarea, select, [contenteditable=''], [contenteditable='true']")) return true;
  return target.tagName === "INPUT" && !["checkbox", "radio", "button", "submit", "reset"].includes(target.type);
}

function onKeyDown(event) {
  if (document.querySelector("dialog[open]")) return; // the open dialog has the keyboard; Esc closes it
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    submit();
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
    submit();
  } else if (event.key === "s" || event.key === "S") {
    event.preventDefault();
    openSkip();
  } else if (task.kind === "ranking" && rankingKey(event)) {
    event.preventDefault();
  }
}

// Returns whether the key was a ranking shortcut.
function rankingKey(event) {
  const key = event.key;
  const lower = key.length === 1 ? key.toLowerCase() : key;
  const id = board.focusedCardId();
  if (key === "ArrowUp" || key === "ArrowDown") {
    const delta = key === "ArrowUp" ? -1 : 1;
    if (event.shiftKey) {
      if (id) board.moveBy(id, delta);
    } else {
      board.focusStep(id, delta);
    }
    return true;
  }
  if (lower === "k" || lower === "j") {
    if (id) board.moveBy(id, lower === "k" ? -1 : 1);
    return true;
  }
  if (lower === "t") {
    if (id) board.toggleTie(id);
    return true;
  }
  if (lower === "n") {
    board.toggleNoneAcceptable();
    return true;
  }
  if (RATINGS.includes(Number(key))) {
    if (id) board.setRating(id, Number(key));
    else announce("Focus an answer first: press its letter.");
    return true;
  }
  if (/^[a-z]$/.test(lower)) return board.focusLabel(lower.toUpperCase());
  return false;
}

export function initKeyboard() {
  document.addEventListener("keydown", onKeyDown);
  el.helpOpen.addEventListener("click", () => el.help.showModal());
}
