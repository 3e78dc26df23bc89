// The demonstration task: the answer editor (editor.js, shared with the progress page) with
// drafts autosaved to the server, and to this browser until the server has them.
import { clock } from "../common.js";
import * as client from "./api.js";
import { createEditor } from "./editor.js";
import { store, draftKey } from "./store.js";
import { MAX_CHARS, el, state, show, hide, showError, showLease } from "./page.js";

const TEXT = {
  draftRestored: gettext("Draft restored"),
  localRestored: gettext("Restored unsaved text from this browser"),
  unsaved: gettext("Unsaved changes…"),
  saving: gettext("Saving…"),
  saved: (time) => interpolate(gettext("Saved %(time)s"), { time }, true),
  notSaved: (detail) => interpolate(gettext("Not saved to the server: %(detail)s Your text is kept in this browser."), { detail }, true),
  empty: gettext("The answer is empty. Write the ideal answer before submitting."),
};

const AUTOSAVE_DELAY_MS = 1000;

let editor = null;
let saveTimer = null;
let dirty = false; // the textarea holds text the server has not saved
let saving = false;

export function setupDemonstration(data) {
  hide(el.rankPanel);
  show(el.demoPanel);
  editor.selectTab("write");
  window.clearTimeout(saveTimer);
  let text = data.draft || "";
  let status = data.draft ? TEXT.draftRestored : "";
  dirty = false;
  // A copy the server never confirmed is newer than the server's: prefer it, and save it.
  const local = store.get(draftKey(data.id));
  if (local && local.synced === false && typeof local.text === "string" && local.text !== text) {
    text = local.text;
    status = TEXT.localRestored;
    dirty = true;
    scheduleSave();
  }
  el.text.value = text;
  editor.updateCounter();
  setSaveStatus(status);
  el.text.focus({ preventScroll: true });
}

function setSaveStatus(message, problem = false) {
  el.saveStatus.textContent = message;
  el.saveStatus.classList.toggle("problem", problem);
}

function onDraftInput() {
  if (!state.task) return;
  dirty = true;
  store.set(draftKey(state.task.id), { text: el.text.value, synced: false });
  setSaveStatus(TEXT.unsaved);
  scheduleSave();
}

function scheduleSave(delay = AUTOSAVE_DELAY_MS) {
  window.clearTimeout(saveTimer);
  saveTimer = window.setTimeout(saveDraft, delay);
}

export async function saveDraft({ keepalive = false } = {}) {
  window.clearTimeout(saveTimer);
  const task = state.task;
  if (!task || task.kind !== "demonstration" || !dirty) return;
  if (saving) {
    scheduleSave(); // one save at a time, so an older text never lands after a newer one
    return;
  }
  const taskId = task.id;
  const text = el.text.value;
  dirty = false;
  saving = true;
  setSaveStatus(TEXT.saving);
  const res = await client.saveDraft(taskId, text, { keepalive });
  saving = false;
  if (!state.task || state.task.id !== taskId) return;
  if (res.ok) {
    if (el.text.value === text) store.set(draftKey(taskId), { text, synced: true });
    setSaveStatus(dirty ? TEXT.unsaved : TEXT.saved(clock(res.data.saved_at)));
    if (res.data.lease_expires_at) showLease(res.data.lease_expires_at);
  } else {
    dirty = true;
    setSaveStatus(TEXT.notSaved(res.data.detail), true);
    if (res.status === 0) scheduleSave(10000); // offline: try again shortly
  }
}

// The body to submit, or null (with the reason shown) when the answer cannot go yet.
export function demonstrationBody() {
  const text = el.text.value;
  if (!text.trim()) {
    showError(TEXT.empty);
    return null;
  }
  const tooLong = editor.tooLong();
  if (tooLong) {
    showError(tooLong);
    return null;
  }
  window.clearTimeout(saveTimer);
  return { text };
}

export const hasDraft = () => el.text.value.trim() !== "";

// The task is done (submitted or skipped): nothing is left to save.
export function forgetDraft() {
  dirty = false;
  window.clearTimeout(saveTimer);
}

export function initDemonstration() {
  editor = createEditor({
    text: el.text,
    preview: el.preview,
    tabWrite: el.tabWrite,
    tabPreview: el.tabPreview,
    counter: el.counter,
    overLimit: el.overLimit,
    maxChars: MAX_CHARS,
    render: client.renderMarkdown,
  });
  el.text.addEventListener("input", onDraftInput);
  el.text.addEventListener("blur", () => saveDraft());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") saveDraft({ keepalive: true });
  });
  window.addEventListener("pagehide", () => saveDraft({ keepalive: true }));
}
