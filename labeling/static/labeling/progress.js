// The progress page: edit recent submissions in place, with the annotate page's own ranking
// board (annotate/board.js) and answer editor (annotate/editor.js), saved through the API
// (PATCH); and take back a skipped task while it is still open (POST tasks/<id>/unskip/).
import { api, clock } from "./common.js";
import { createBoard } from "./annotate/board.js";
import { createEditor } from "./annotate/editor.js";

const TEXT = {
  saving: gettext("Saving…"),
  saved: (time) => interpolate(gettext("Saved %(time)s"), { time }, true),
  empty: gettext("The answer is empty. Write the ideal answer before saving."),
  takingBack: gettext("Taking it back…"),
  takenBack: (time) => interpolate(gettext("It is yours again, reserved until %(time)s."), { time }, true),
  labelNow: gettext("Label it now"),
};

const $ = (id) => document.getElementById(id);
const root = $("progress");
const settings = root ? root.dataset : {};
const json = (node) => (node ? JSON.parse(node.textContent) : null);
const FLAGS = json($("flag-names")) || [];
const RATINGS = json($("rating-values")) || [];

function announce(message) {
  const announcer = $("announcer");
  announcer.textContent = "";
  window.setTimeout(() => { announcer.textContent = message; }, 30);
}

function setStatus(form, message, problem = false) {
  const node = form.querySelector(".form-status");
  node.textContent = message;
  node.classList.toggle("problem", problem);
}

// Ctrl+Enter (⌘+Enter) saves the form, as it submits on the annotate page.
function saveOnCtrlEnter(form) {
  form.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
}

async function save(form, body) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  setStatus(form, TEXT.saving);
  const res = await api("PATCH", form.dataset.url, body);
  button.disabled = false;
  if (res.ok) setStatus(form, TEXT.saved(clock(res.data.updated_at)));
  else setStatus(form, res.data.detail, true); // what was changed stays on the page
  return res;
}

function setupRankingForm(form) {
  const data = json(form.querySelector("script[type='application/json']"));
  const article = form.closest(".submission");
  const board = createBoard({
    list: form.querySelector(".cards"),
    none: form.querySelector("input[name=none_acceptable]"),
    candidates: data.candidates,
    initial: data,
    flagNames: FLAGS,
    ratingValues: RATINGS,
    ratingScale: settings.ratingScale,
    announce,
  });
  saveOnCtrlEnter(form);
  form.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing || event.ctrlKey || event.metaKey || event.altKey) return;
    if (board.handleKey(event)) event.preventDefault();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const res = await save(form, board.body());
    if (!res.ok) return;
    // The summary above the board says what is stored now.
    article.querySelector(".ranking-summary").textContent = board.summary(res.data.ranking);
    article.querySelector(".none-note").hidden = !res.data.none_acceptable;
  });
}

function setupDemonstrationForm(form) {
  const text = form.querySelector(".editor-text");
  const editor = createEditor({
    text,
    preview: form.querySelector(".editor-preview"),
    tabWrite: form.querySelector(".editor-tab-write"),
    tabPreview: form.querySelector(".editor-tab-preview"),
    counter: form.querySelector(".counter"),
    overLimit: form.querySelector(".over-limit"),
    maxChars: Number(settings.maxChars),
    render: (value) => api("POST", settings.markdown, { text: value }),
  });
  saveOnCtrlEnter(form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!text.value.trim()) {
      setStatus(form, TEXT.empty, true);
      return;
    }
    const tooLong = editor.tooLong();
    if (tooLong) {
      setStatus(form, tooLong, true);
      return;
    }
    await save(form, { text: text.value });
  });
}

// Undo a skip: the task is leased to me again, and the annotate page serves it.
async function unskip(button) {
  const status = button.closest(".skipped-task").querySelector(".unskip-status");
  button.disabled = true;
  status.classList.remove("problem");
  status.textContent = TEXT.takingBack;
  const res = await api("POST", button.dataset.url);
  if (!res.ok) {
    status.textContent = res.data.detail;
    status.classList.add("problem");
    button.disabled = res.status !== 0; // only a lost connection is worth trying again as it is
    return;
  }
  const link = document.createElement("a");
  link.href = button.dataset.annotate;
  link.textContent = TEXT.labelNow;
  status.replaceChildren(TEXT.takenBack(clock(res.data.lease_expires_at)), " ", link);
  button.hidden = true;
  announce(status.textContent);
}

if (root) {
  for (const form of document.querySelectorAll("form.edit-ranking")) setupRankingForm(form);
  for (const form of document.querySelectorAll("form.edit-demonstration")) setupDemonstrationForm(form);
  for (const button of document.querySelectorAll("button.unskip")) button.addEventListener("click", () => unskip(button));
}
