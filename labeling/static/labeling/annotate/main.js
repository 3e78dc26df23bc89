// The annotate page's entry module: lease a task, show the conversation, write a demonstration
// or rank the answers, submit, and load the next one. The parts:
//   page.js           settings, elements, shared state, view helpers
//   api.js            the annotator's API endpoints (on common.js's fetch wrapper)
//   store.js          local storage: drafts, client ids, preferences
//   queue.js          lease, heartbeat, submit, skip, next
//   demonstration.js  the answer with autosave, in the editor (editor.js)
//   ranking.js        the ranking, on the board (board.js; cards.js draws its cards)
//   keyboard.js       the shortcuts
// editor.js and board.js are the progress page's too (progress.js), for editing a submission.
import { root, PROJECT, el } from "./page.js";
import { store, guidelinesClosedKey } from "./store.js";
import { initQueue, refreshProgress, loadNext } from "./queue.js";
import { initDemonstration } from "./demonstration.js";
import { initKeyboard } from "./keyboard.js";

function rememberGuidelines() {
  if (!el.guidelines) return;
  const closedKey = guidelinesClosedKey(PROJECT);
  if (store.get(closedKey)) el.guidelines.open = false;
  el.guidelines.addEventListener("toggle", () => store.set(closedKey, !el.guidelines.open));
}

if (root) {
  initKeyboard();
  initQueue();
  initDemonstration();
  rememberGuidelines();
  refreshProgress();
  loadNext();
}
