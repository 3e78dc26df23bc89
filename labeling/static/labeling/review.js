// The review page: take the next demonstration waiting for review, then accept it, edit it (the
// diff of the edit is shown once saved) or reject it with a reason, and load the next one. The
// prompt and the answers are untrusted: they are only shown through the API's sanitised `html`
// fields; everything else goes in with textContent.
import { api, clock, conversationTurns, formatNumber, uuid } from "./common.js";

const $ = (id) => document.getElementById(id);
const root = $("review");
const API = root ? root.dataset.api : "";
const PROJECT = root ? root.dataset.project : "";
const MAX_CHARS = root ? Number(root.dataset.maxChars) : 0;
const ROLE_NAMES = { system: gettext("System"), user: gettext("User"), assistant: gettext("Assistant") };
// "Answer #12 accepted at 14:05." by verdict.
const VERDICT_DONE = {
  accept: gettext("Answer #%(id)s accepted at %(time)s."),
  edit: gettext("Answer #%(id)s edited at %(time)s."),
  reject: gettext("Answer #%(id)s rejected at %(time)s."),
};

const el = {
  lastAction: $("last-action"), lastReview: $("last-review"), lastReviewTitle: $("last-review-title"),
  lastDiff: $("last-diff"),
  notice: $("notice"), noticeText: $("notice-text"), noticeRetry: $("notice-retry"), loading: $("loading"),
  item: $("item"), itemId: $("item-id"), itemReviews: $("item-reviews"), goldPill: $("gold-pill"),
  conversation: $("conversation"), answer: $("answer"), referencePanel: $("reference-panel"), reference: $("reference"),
  editForm: $("edit-form"), editText: $("edit-text"), editCount: $("edit-count"), editReason: $("edit-reason"),
  editCancel: $("edit-cancel"), rejectForm: $("reject-form"), rejectReason: $("reject-reason"),
  rejectCancel: $("reject-cancel"), error: $("form-error"), accept: $("accept"), editOpen: $("edit-open"),
  rejectOpen: $("reject-open"), status: $("status"), announcer: $("announcer"),
};

const state = { item: null, busy: false };
const clientIds = {}; // one per answer, reused by every retry: a repeated verdict is stored once

function announce(message) {
  el.announcer.textContent = "";
  window.setTimeout(() => { el.announcer.textContent = message; }, 30);
}

function showError(message) {
  el.error.textContent = message;
  el.error.hidden = false;
}

function clearError() {
  el.error.textContent = "";
  el.error.hidden = true;
}

function showNotice(message) {
  el.item.hidden = true;
  el.loading.hidden = true;
  el.noticeText.textContent = message;
  el.notice.hidden = false;
}

function setBusy(on) {
  state.busy = on;
  for (const button of [el.accept, el.editOpen, el.rejectOpen, $("edit-save"), $("reject-confirm")]) button.disabled = on;
  el.status.textContent = on ? gettext("Saving…") : "";
}

function showMarkdown(node, html, text) {
  if (typeof html === "string") node.innerHTML = html; // sanitised by the server
  else node.textContent = text || "";
}

function renderConversation(messages) {
  el.conversation.replaceChildren(...conversationTurns(messages, ROLE_NAMES));
}

// Word-level segments {op, text} as struck-through deletions and underlined insertions.
function renderDiff(node, segments) {
  const parts = segments.map((segment) => {
    const tag = segment.op === "insert" ? "ins" : segment.op === "delete" ? "del" : "span";
    const part = document.createElement(tag);
    part.textContent = segment.text;
    return part;
  });
  node.replaceChildren(...parts);
}

function closeForms() {
  el.editForm.hidden = true;
  el.rejectForm.hidden = true;
}

async function loadNext() {
  state.item = null;
  closeForms();
  clearError();
  el.item.hidden = true;
  el.notice.hidden = true;
  el.loading.hidden = false;
  const res = await api("GET", `${API}reviews/next/?project=${PROJECT}&render=html`);
  el.loading.hidden = true;
  if (res.status === 204) showNotice(gettext("Nothing left to review in this project. Thank you!"));
  else if (!res.ok) showNotice(res.data.detail);
  else showItem(res.data);
}

function showItem(data) {
  state.item = data;
  el.itemId.textContent = `#${data.demonstration}`;
  const reviewsSoFar = ngettext("%(done)s of %(required)s review so far", "%(done)s of %(required)s reviews so far", data.reviews_required);
  el.itemReviews.textContent = interpolate(reviewsSoFar, { done: data.reviews, required: data.reviews_required }, true);
  el.goldPill.hidden = !data.gold;
  renderConversation(data.messages);
  showMarkdown(el.answer, data.html, data.text);
  el.referencePanel.hidden = !data.reference;
  if (data.reference) showMarkdown(el.reference, data.reference_html, data.reference);
  el.item.hidden = false;
  el.accept.focus({ preventScroll: true });
}

function updateCount() {
  const count = Array.from(el.editText.value).length; // code points, as the server counts
  el.editCount.textContent = interpolate(gettext("%(count)s / %(limit)s characters"), { count: formatNumber(count), limit: formatNumber(MAX_CHARS) }, true);
  el.editCount.classList.toggle("over", count > MAX_CHARS);
}

function openEdit() {
  if (!state.item || state.busy) return;
  el.rejectForm.hidden = true;
  el.editText.value = state.item.text;
  el.editReason.value = "";
  updateCount();
  el.editForm.hidden = false;
  el.editText.focus();
}

function openReject() {
  if (!state.item || state.busy) return;
  el.editForm.hidden = true;
  el.rejectReason.value = "";
  el.rejectForm.hidden = false;
  el.rejectReason.focus();
}

async function send(body) {
  const item = state.item;
  if (!item || state.busy) return;
  clearError();
  const id = item.demonstration;
  clientIds[id] = clientIds[id] || uuid();
  setBusy(true);
  const res = await api("POST", `${API}demonstrations/${id}/reviews/`, { ...body, client_id: clientIds[id] });
  setBusy(false);
  if (!res.ok) {
    showError(res.data.detail); // what was typed stays in the form
    return;
  }
  const message = interpolate(VERDICT_DONE[res.data.verdict], { id, time: clock() }, true);
  el.lastAction.textContent = message;
  announce(message);
  el.lastReview.hidden = res.data.verdict !== "edit";
  if (res.data.verdict === "edit") {
    el.lastReviewTitle.textContent = interpolate(gettext("Your edit of answer #%(id)s"), { id }, true);
    renderDiff(el.lastDiff, res.data.diff_segments);
  }
  loadNext();
}

const accept = () => send({ verdict: "accept" });
const saveEdit = () => send({ verdict: "edit", text: el.editText.value, reason: el.editReason.value });
const reject = () => send({ verdict: "reject", reason: el.rejectReason.value });

function isTyping(target) {
  if (!target || !target.closest) return false;
  if (target.closest("textarea, select, [contenteditable=''], [contenteditable='true']")) return true;
  return target.tagName === "INPUT" && !["checkbox", "radio", "button", "submit", "reset"].includes(target.type);
}

function onKeyDown(event) {
  if (!state.item) return;
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !el.editForm.hidden) {
    event.preventDefault();
    saveEdit();
    return;
  }
  if (event.key === "Escape" && !(el.editForm.hidden && el.rejectForm.hidden)) {
    event.preventDefault();
    closeForms();
    el.accept.focus();
    return;
  }
  if (event.isComposing || event.ctrlKey || event.metaKey || event.altKey || isTyping(event.target)) return;
  const key = event.key.toLowerCase();
  const action = { a: accept, e: openEdit, r: openReject }[key];
  if (action && !state.busy) {
    event.preventDefault();
    action();
  }
}

if (root) {
  el.accept.addEventListener("click", accept);
  el.editOpen.addEventListener("click", openEdit);
  el.rejectOpen.addEventListener("click", openReject);
  el.editText.addEventListener("input", updateCount);
  el.editForm.addEventListener("submit", (event) => { event.preventDefault(); saveEdit(); });
  el.rejectForm.addEventListener("submit", (event) => { event.preventDefault(); reject(); });
  el.editCancel.addEventListener("click", closeForms);
  el.rejectCancel.addEventListener("click", closeForms);
  el.noticeRetry.addEventListener("click", loadNext);
  document.addEventListener("keydown", onKeyDown);
  loadNext();
}
