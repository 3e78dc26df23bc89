// The progress page: save edits to recent submissions through the API (PATCH), in place.
import { api, clock } from "./common.js";

function status(form, message, problem = false) {
  const node = form.querySelector(".form-status");
  node.textContent = message;
  node.classList.toggle("problem", problem);
}

// Rank numbers to the API's groups, best first; equal numbers are a tie.
function rankingBody(form) {
  const rows = Array.from(form.querySelectorAll("tbody tr"));
  const byRank = new Map();
  const ratings = {};
  const flags = {};
  for (const row of rows) {
    const id = row.dataset.id;
    const rank = Number(row.querySelector("select[name=rank]").value);
    if (!byRank.has(rank)) byRank.set(rank, []);
    byRank.get(rank).push(id);
    const rating = row.querySelector("select[name=rating]").value;
    if (rating) ratings[id] = Number(rating);
    const chosen = Array.from(row.querySelectorAll("input[name=flag]:checked"), (input) => input.value);
    if (chosen.length) flags[id] = chosen;
  }
  const ranking = Array.from(byRank.keys()).sort((a, b) => a - b).map((rank) => byRank.get(rank));
  const none_acceptable = form.querySelector("input[name=none_acceptable]").checked;
  return { ranking, ratings, flags, none_acceptable };
}

async function save(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const button = form.querySelector("button[type=submit]");
  const body = form.classList.contains("edit-ranking")
    ? rankingBody(form)
    : { text: form.querySelector("textarea[name=text]").value };
  button.disabled = true;
  status(form, "Saving…");
  const res = await api("PATCH", form.dataset.url, body);
  button.disabled = false;
  if (res.ok) status(form, `Saved ${clock(res.data.updated_at)}`);
  else status(form, res.data.detail, true); // what was typed stays in the form
}

for (const form of document.querySelectorAll("form.edit-form")) form.addEventListener("submit", save);
