// The adjudication page: send a task's final ranking through the API (POST), in place.
import { api, uuid } from "./common.js";

function status(form, message, problem = false) {
  const node = form.querySelector(".form-status");
  node.textContent = message;
  node.classList.toggle("problem", problem);
}

// Rank numbers to the API's groups, best first; equal numbers are a tie. Null if one is missing.
function groups(form) {
  const byRank = new Map();
  for (const row of form.querySelectorAll("tbody tr")) {
    const rank = row.querySelector("select[name=rank]").value;
    if (!rank) return null;
    if (!byRank.has(Number(rank))) byRank.set(Number(rank), []);
    byRank.get(Number(rank)).push(row.dataset.id);
  }
  return Array.from(byRank.keys()).sort((a, b) => a - b).map((rank) => byRank.get(rank));
}

async function submit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const ranking = groups(form);
  if (!ranking) {
    status(form, gettext("Give every answer a rank first."), true);
    return;
  }
  form.dataset.clientId = form.dataset.clientId || uuid(); // a retry is stored once
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  status(form, gettext("Saving…"));
  const note = form.querySelector("input[name=note]").value;
  const res = await api("POST", form.dataset.url, { ranking, note, client_id: form.dataset.clientId });
  if (!res.ok) {
    button.disabled = false;
    status(form, res.data.detail, true); // the ranks chosen stay as they are
    return;
  }
  for (const control of form.querySelectorAll("select, input")) control.disabled = true;
  status(form, gettext("Adjudicated: this ranking is final."));
  form.closest("article").classList.add("is-done");
}

for (const form of document.querySelectorAll("form.adjudicate-form")) form.addEventListener("submit", submit);
