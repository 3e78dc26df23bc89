// The queue: lease the next task and show it, keep the lease alive with heartbeats, submit or
// skip it, and load the next one. Prompts and answers are untrusted: they are only ever shown
// through the API's sanitised `html` fields, everything else goes in with textContent.
import { clock, conversationTurns } from "../common.js";
import * as client from "./api.js";
import { clientIdFor, forgetTask } from "./store.js";
import { setupDemonstration, demonstrationBody, hasDraft, forgetDraft } from "./demonstration.js";
import { setupRanking, rankingBody, rankingTouched, focusBoard } from "./ranking.js";
import {
  el, state, show, hide, announce, showError, clearError, showNotice, setBusy, showLease,
  orderConfirmOpen, showOrderConfirm, hideOrderConfirm,
} from "./page.js";

const TEXT = {
  roles: { system: gettext("System"), user: gettext("User"), assistant: gettext("Assistant") },
  progress: (today, total) => interpolate(gettext("%(today)s done today · %(total)s in total"), { today, total }, true),
  allDone: gettext("All done — nothing left for you in this project. Thank you!"),
  ranking: gettext("Ranking"),
  demonstration: gettext("Demonstration"),
  leaseLost: gettext("Lease lost"),
  submitting: gettext("Submitting…"),
  submitted: (taskId, time) => interpolate(gettext("Task #%(taskId)s submitted at %(time)s."), { taskId, time }, true),
  skipped: (taskId) => interpolate(gettext("Task #%(taskId)s skipped."), { taskId }, true),
  skipTask: gettext("Skip task"),
  skipAnyway: gettext("Skip anyway"),
};
const HEARTBEAT_MS = 30000;

let heartbeatTimer = null;

export async function refreshProgress() {
  const res = await client.progress();
  if (res.ok) el.progress.textContent = TEXT.progress(res.data.today, res.data.total);
}

export async function loadNext() {
  stopHeartbeat();
  state.task = null;
  hide(el.task);
  hide(el.notice);
  show(el.loading);
  const res = await client.nextTask();
  hide(el.loading);
  if (res.status === 204) {
    showNotice(TEXT.allDone, { retry: true });
    el.lease.textContent = "";
  } else if (!res.ok) {
    showNotice(res.data.detail, { retry: true }); // 409: the project is paused
    el.lease.textContent = "";
  } else {
    startTask(res.data);
  }
}

function startTask(data) {
  state.task = data;
  clearError();
  hideOrderConfirm();
  el.task.dataset.kind = data.kind; // which skip shortcut the button shows
  el.taskId.textContent = `#${data.id}`;
  el.kindPill.textContent = data.kind === "ranking" ? TEXT.ranking : TEXT.demonstration;
  el.kindPill.className = `pill pill-${data.kind}`;
  renderConversation(data.messages);
  show(el.task);
  if (data.kind === "ranking") setupRanking(data.candidates);
  else setupDemonstration(data);
  showLease(data.lease_expires_at);
  startHeartbeat();
  if (el.task.getBoundingClientRect().top < 0) el.task.scrollIntoView({ block: "start" });
}

function renderConversation(messages) {
  el.conversation.replaceChildren(...conversationTurns(messages, TEXT.roles));
}

// --- heartbeat --------------------------------------------------------------------------------
function startHeartbeat() {
  stopHeartbeat();
  heartbeatTimer = window.setInterval(heartbeat, HEARTBEAT_MS);
}

function stopHeartbeat() {
  window.clearInterval(heartbeatTimer);
  heartbeatTimer = null;
}

async function heartbeat() {
  if (!state.task) return;
  const taskId = state.task.id;
  const res = await client.heartbeat(taskId);
  if (!state.task || state.task.id !== taskId) return;
  if (res.ok) {
    showLease(res.data.lease_expires_at);
  } else if (res.status === 403 || res.status === 409) {
    stopHeartbeat();
    el.lease.textContent = TEXT.leaseLost;
    showError(res.data.detail);
  }
}

// --- submit and skip --------------------------------------------------------------------------
// A ranking whose order was never touched goes only once the annotator says so: asShown (Shift+
// Enter, the confirmation's button), or a second submit while the confirmation is open.
export async function submit({ asShown = false } = {}) {
  const task = state.task;
  if (!task || state.busy) return;
  clearError();
  const kind = task.kind === "demonstration" ? "demonstration" : "ranking";
  if (kind === "ranking" && !asShown && !rankingTouched() && !orderConfirmOpen()) {
    showOrderConfirm();
    return;
  }
  hideOrderConfirm();
  const body = kind === "demonstration" ? demonstrationBody() : rankingBody();
  if (!body) return; // demonstrationBody showed why
  await send(kind, { ...body, client_id: clientIdFor(task.id) });
}

async function send(kind, body) {
  const taskId = state.task.id;
  setBusy(true);
  el.submitStatus.textContent = TEXT.submitting;
  const res = await client.submit(taskId, kind, body);
  setBusy(false);
  el.submitStatus.textContent = "";
  if (!res.ok) {
    showError(res.data.detail); // the text and the ranking stay as they are
    return;
  }
  finishTask(taskId, TEXT.submitted(taskId, clock()));
}

function finishTask(taskId, message) {
  forgetTask(taskId);
  forgetDraft();
  announce(message);
  el.lastAction.textContent = message;
  refreshProgress();
  loadNext();
}

export function openSkip() {
  if (!state.task || state.busy) return;
  const draft = state.task.kind === "demonstration" && hasDraft();
  el.skipWarning.hidden = !draft;
  el.skipConfirm.textContent = draft ? TEXT.skipAnyway : TEXT.skipTask;
  el.skipReason.value = "";
  el.skipDialog.showModal();
  el.skipReason.focus();
}

async function skip() {
  if (!state.task || state.busy) return;
  const taskId = state.task.id;
  setBusy(true);
  el.skipConfirm.disabled = true;
  const res = await client.skip(taskId, el.skipReason.value);
  setBusy(false);
  el.skipConfirm.disabled = false;
  el.skipDialog.close();
  if (!res.ok) {
    showError(res.data.detail);
    return;
  }
  finishTask(taskId, TEXT.skipped(taskId));
}

// "Keep ranking": back to the board, where the annotator was.
export function keepRanking() {
  hideOrderConfirm();
  focusBoard();
}

export function initQueue() {
  el.submit.addEventListener("click", () => submit());
  el.orderConfirmYes.addEventListener("click", () => submit({ asShown: true }));
  el.orderConfirmNo.addEventListener("click", keepRanking);
  el.skipOpen.addEventListener("click", openSkip);
  el.skipForm.addEventListener("submit", (event) => {
    event.preventDefault();
    skip();
  });
  el.skipCancel.addEventListener("click", () => el.skipDialog.close());
  el.noticeRetry.addEventListener("click", loadNext);
}
