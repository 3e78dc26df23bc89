// The annotate page itself: its settings (data attributes on #annotate and the two JSON blocks),
// its elements, the state every part shares, and small view helpers.
import { clock } from "../common.js";

const TEXT = {
  lease: (time) => interpolate(gettext("Reserved for you until %(time)s"), { time }, true),
  leaseTitle: gettext("The task returns to the pool if this page stops sending heartbeats."),
};

const $ = (id) => document.getElementById(id);
const json = (id) => {
  const node = $(id);
  return node ? JSON.parse(node.textContent) : [];
};

export const root = $("annotate");
const data = root ? root.dataset : {};
export const API = data.api;
export const PROJECT = data.project;
export const MAX_CHARS = Number(data.maxChars);
export const FLAGS = json("flag-names");
export const RATINGS = json("rating-values");
export const RATING_SCALE = data.ratingScale || "";

export const el = {
  progress: $("progress-counter"), lastAction: $("last-action"), lease: $("lease"), guidelines: $("guidelines"),
  notice: $("notice"), noticeText: $("notice-text"), noticeRetry: $("notice-retry"), loading: $("loading"),
  task: $("task"), taskId: $("task-id"), kindPill: $("kind-pill"), conversation: $("conversation"),
  demoPanel: $("demo-panel"), text: $("demo-text"), preview: $("demo-preview"),
  tabWrite: $("tab-write"), tabPreview: $("tab-preview"), counter: $("char-count"),
  saveStatus: $("save-status"), overLimit: $("over-limit"),
  rankPanel: $("rank-panel"), cards: $("cards"), none: $("none-acceptable"),
  error: $("form-error"), submit: $("submit"), submitStatus: $("submit-status"), skipOpen: $("skip-open"),
  orderConfirm: $("order-confirm"), orderConfirmText: $("order-confirm-text"), orderConfirmYes: $("order-confirm-yes"),
  orderConfirmNo: $("order-confirm-no"),
  skipDialog: $("skip-dialog"), skipForm: $("skip-form"), skipReason: $("skip-reason"),
  skipWarning: $("skip-draft-warning"), skipConfirm: $("skip-confirm"), skipCancel: $("skip-cancel"),
  help: $("help-dialog"), helpOpen: $("help-open"), announcer: $("announcer"),
};

export const state = {
  task: null, // the leased task, as GET tasks/next/ returned it
  busy: false, // a submit or skip is in flight
};

export const show = (node) => { node.hidden = false; };
export const hide = (node) => { node.hidden = true; };

export function announce(message) {
  el.announcer.textContent = "";
  window.setTimeout(() => { el.announcer.textContent = message; }, 30);
}

export function showError(message) {
  el.error.textContent = message;
  show(el.error);
}

export function clearError() {
  el.error.textContent = "";
  hide(el.error);
}

export function showNotice(message, { retry = false } = {}) {
  hide(el.task);
  hide(el.loading);
  el.noticeText.textContent = message;
  el.noticeRetry.hidden = !retry;
  show(el.notice);
}

export function setBusy(on) {
  state.busy = on;
  el.submit.disabled = on;
  el.skipOpen.disabled = on;
}

export function showLease(iso) {
  el.lease.textContent = TEXT.lease(clock(iso));
  el.lease.title = TEXT.leaseTitle;
}

// "You have not changed the order. Submit it as shown?" (queue.js asks it before a ranking whose
// order was never touched goes; the answer is a second Enter, its button, or Esc to go back).
export const orderConfirmOpen = () => !el.orderConfirm.hidden;

export function showOrderConfirm() {
  show(el.orderConfirm);
  announce(el.orderConfirmText.textContent);
  el.orderConfirmYes.focus({ preventScroll: true });
}

export function hideOrderConfirm() {
  hide(el.orderConfirm);
}
