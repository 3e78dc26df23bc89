// The demonstration editor: write the ideal answer, with a character counter, a server-rendered
// preview, and drafts autosaved to the server (and to this browser until the server has them).
import { clock } from "../common.js";
import * as client from "./api.js";
import { store, draftKey } from "./store.js";
import { MAX_CHARS, el, state, show, hide, showError, showLease } from "./page.js";

const AUTOSAVE_DELAY_MS = 1000;

let saveTimer = null;
let dirty = false; // the textarea holds text the server has not saved
let saving = false;

const charCount = (text) => Array.from(text).length; // code points, as the server counts

export function setupDemonstration(data) {
  hide(el.rankPanel);
  show(el.demoPanel);
  selectTab("write");
  window.clearTimeout(saveTimer);
  let text = data.draft || "";
  let status = data.draft ? "Draft restored" : "";
  dirty = false;
  // A copy the server never confirmed is newer than the server's: prefer it, and save it.
  const local = store.get(draftKey(data.id));
  if (local && local.synced === false && typeof local.text === "string" && local.text !== text) {
    text = local.text;
    status = "Restored unsaved text from this browser";
    dirty = true;
    scheduleSave();
  }
  el.text.value = text;
  updateCounter();
  setSaveStatus(status);
  el.text.focus({ preventScroll: true });
}

function updateCounter() {
  const count = charCount(el.text.value);
  const over = count > MAX_CHARS;
  el.counter.textContent = `${count.toLocaleString()} / ${MAX_CHARS.toLocaleString()} characters`;
  el.counter.classList.toggle("over", over);
  el.overLimit.hidden = !over;
  el.overLimit.textContent = over
    ? `Your answer is ${(count - MAX_CHARS).toLocaleString()} characters over the limit of ${MAX_CHARS.toLocaleString()}. Shorten it before submitting.`
    : "";
  return count;
}

function setSaveStatus(message, problem = false) {
  el.saveStatus.textContent = message;
  el.saveStatus.classList.toggle("problem", problem);
}

function onDraftInput() {
  if (!state.task) return;
  dirty = true;
  store.set(draftKey(state.task.id), { text: el.text.value, synced: false });
  updateCounter();
  setSaveStatus("Unsaved changes…");
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
  setSaveStatus("Saving…");
  const res = await client.saveDraft(taskId, text, { keepalive });
  saving = false;
  if (!state.task || state.task.id !== taskId) return;
  if (res.ok) {
    if (el.text.value === text) store.set(draftKey(taskId), { text, synced: true });
    setSaveStatus(dirty ? "Unsaved changes…" : `Saved ${clock(res.data.saved_at)}`);
    if (res.data.lease_expires_at) showLease(res.data.lease_expires_at);
  } else {
    dirty = true;
    setSaveStatus(`Not saved to the server: ${res.data.detail} Your text is kept in this browser.`, true);
    if (res.status === 0) scheduleSave(10000); // offline: try again shortly
  }
}

async function selectTab(which) {
  const preview = which === "preview";
  el.tabWrite.setAttribute("aria-selected", String(!preview));
  el.tabPreview.setAttribute("aria-selected", String(preview));
  el.text.hidden = preview;
  el.preview.hidden = !preview;
  if (!preview) return;
  if (!el.text.value.trim()) {
    el.preview.textContent = "Nothing to preview yet.";
    return;
  }
  el.preview.textContent = "Rendering…";
  const res = await client.renderMarkdown(el.text.value);
  if (res.ok) el.preview.innerHTML = res.data.html; // sanitised by the server
  else el.preview.textContent = res.data.detail;
}

// The body to submit, or null (with the reason shown) when the answer cannot go yet.
export function demonstrationBody() {
  const text = el.text.value;
  if (!text.trim()) {
    showError("The answer is empty. Write the ideal answer before submitting.");
    return null;
  }
  if (updateCounter() > MAX_CHARS) {
    showError(el.overLimit.textContent);
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
  el.tabWrite.addEventListener("click", () => selectTab("write").then(() => el.text.focus()));
  el.tabPreview.addEventListener("click", () => selectTab("preview"));
  el.text.addEventListener("input", onDraftInput);
  el.text.addEventListener("blur", () => saveDraft());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") saveDraft({ keepalive: true });
  });
  window.addEventListener("pagehide", () => saveDraft({ keepalive: true }));
}
